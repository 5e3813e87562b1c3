//! Which headers cross the gateway, in each direction.
//!
//! Both directions are allow-lists: a provider receives only what it needs to answer, and
//! a client receives only what describes the answer, never the provider account's
//! cookies, organisation or credentials. Each list is applied to the header map the shell
//! read once, and yields only the changes that map needs: each is a host call (thousands
//! of Envoy instructions), and replacing the whole map costs more still, since Envoy then
//! removes and adds every header.

use std::borrow::Cow;

/// Client request headers every provider receives as the client sent them: the request
/// line (pseudo-headers other than `:path`, which the attempt sets) and what describes the
/// client or ties the request to its trace. Everything else the client sent (cookies,
/// proxy credentials, its own keys, vendor headers) stays at the gateway. The gateway
/// adds `content-type`, `content-length` and the provider's own headers
/// ([`crate::provider::UpstreamRequest::headers`]).
pub const FORWARDED_REQUEST_HEADERS: &[&str] = &[
    ":method",
    ":scheme",
    ":authority",
    "accept",
    "user-agent",
    "x-request-id",
    "traceparent",
    "tracestate",
];

/// One header, name and value, borrowed where it could be.
pub type Header<'a> = (Cow<'a, [u8]>, Cow<'a, [u8]>);

/// The changes an allow-list makes to a header map: removals first, then replacements.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HeaderChanges<'a> {
    /// Headers to remove.
    pub remove: Vec<&'a [u8]>,
    /// Headers to set (replacing any value).
    pub set: Vec<Header<'a>>,
}

impl<'a> HeaderChanges<'a> {
    /// Adds `set`, skipping what `present` already holds with the same value.
    fn set_all(&mut self, present: &[(&[u8], &[u8])], set: &'a [(&'a str, Cow<'a, str>)]) {
        for (name, value) in set {
            if crate::header_map::find(present, name) != Some(value.as_bytes()) {
                self.set.push((
                    Cow::Borrowed(name.as_bytes()),
                    Cow::Borrowed(value.as_bytes()),
                ));
            }
        }
    }
}

/// The changes that make `present` (the request's map as it reached the attempt) what the
/// attempt sends: every header but the pseudo-headers, those of
/// [`FORWARDED_REQUEST_HEADERS`] and those `set` replaces is removed, then `set` applied.
pub fn request_changes<'a>(
    present: &[(&'a [u8], &'a [u8])],
    set: &'a [(&'a str, Cow<'a, str>)],
) -> HeaderChanges<'a> {
    let mut changes = HeaderChanges::default();
    for &(name, _) in present {
        let kept = name.starts_with(b":")
            || FORWARDED_REQUEST_HEADERS
                .iter()
                .any(|f| f.as_bytes() == name)
            || set.iter().any(|(n, _)| n.as_bytes() == name);
        if !kept {
            changes.remove.push(name);
        }
    }
    changes.set_all(present, set);
    changes
}

/// Provider response headers the client receives unchanged: what describes the answer
/// itself, and when to retry it.
pub const KEPT_RESPONSE_HEADERS: &[&str] = &[
    ":status",
    "content-type",
    "content-length",
    "cache-control",
    "date",
    "retry-after",
    "retry-after-ms",
];

/// Provider response headers the client receives under another name: the provider
/// account's rate limits (the gateway's own `x-ratelimit-*` describe the client's virtual
/// key) and the provider's request id, which its support asks for. `(prefix, new prefix)`;
/// a prefix that is a whole name renames that header only.
pub const RENAMED_RESPONSE_HEADERS: &[(&str, &str)] = &[
    ("x-ratelimit-", "x-llm-provider-ratelimit-"),
    ("anthropic-ratelimit-", "x-llm-provider-ratelimit-"),
    ("x-request-id", "x-llm-provider-request-id"),
    ("request-id", "x-llm-provider-request-id"),
];

/// The client's name for the provider response header `name`, `None` when the client
/// does not get it.
pub fn client_response_name(name: &[u8]) -> Option<Cow<'_, [u8]>> {
    if KEPT_RESPONSE_HEADERS.iter().any(|k| k.as_bytes() == name) {
        return Some(Cow::Borrowed(name));
    }
    RENAMED_RESPONSE_HEADERS
        .iter()
        .find_map(|(prefix, renamed)| {
            let rest = name.strip_prefix(prefix.as_bytes())?;
            let whole_name = !prefix.ends_with('-');
            (!whole_name || rest.is_empty()).then(|| [renamed.as_bytes(), rest].concat())
        })
        .map(Cow::Owned)
}

/// Response headers Envoy itself replaces or strips on the way to the client (`server`
/// is overwritten by the connection manager, the others are hop-by-hop): left to it,
/// which saves a host call each.
const LEFT_TO_ENVOY: &[&str] = &[
    "server",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// The changes that make `present` (the provider's response map) what the client
/// receives: headers it may not see are removed, renamed ones moved to their
/// [`RENAMED_RESPONSE_HEADERS`] name, every value kept passed through `scrub` (the
/// attempt's key may be echoed anywhere), those named in `drop` removed, then `set`
/// applied.
pub fn response_changes<'a>(
    present: &[(&'a [u8], &'a [u8])],
    set: &'a [(&'a str, Cow<'a, str>)],
    drop: &[&str],
    scrub: impl Fn(&'a [u8]) -> Cow<'a, [u8]>,
) -> HeaderChanges<'a> {
    let mut changes = HeaderChanges::default();
    let is_set = |name: &[u8]| set.iter().any(|(n, _)| n.as_bytes() == name);
    for &(name, value) in present {
        if is_set(name) || LEFT_TO_ENVOY.iter().any(|n| n.as_bytes() == name) {
            continue;
        }
        if drop.iter().any(|d| d.as_bytes() == name) {
            changes.remove.push(name);
            continue;
        }
        match client_response_name(name) {
            None => changes.remove.push(name),
            Some(Cow::Borrowed(_)) => {
                if let Cow::Owned(scrubbed) = scrub(value) {
                    changes
                        .set
                        .push((Cow::Borrowed(name), Cow::Owned(scrubbed)));
                }
            }
            Some(renamed) => {
                changes.remove.push(name);
                if !is_set(&renamed) {
                    changes.set.push((renamed, scrub(value)));
                }
            }
        }
    }
    changes.set_all(present, set);
    changes
}

/// The `retry-after` Envoy's rate-limited retry back-off can read (whole seconds), when
/// the provider's own differs: an HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`) becomes the
/// seconds from `now_unix_secs` to it, and a missing `retry-after` is taken from
/// `retry-after-ms` (OpenAI's), rounded up. `None`: nothing to change, or nothing to read.
pub fn retry_after_seconds(
    retry_after: Option<&[u8]>,
    retry_after_ms: Option<&[u8]>,
    now_unix_secs: u64,
) -> Option<u64> {
    let text = |v: &[u8]| {
        std::str::from_utf8(v)
            .ok()
            .map(str::trim)
            .map(str::to_owned)
    };
    match retry_after.and_then(text) {
        Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => None,
        Some(v) => http_date_unix_secs(&v).map(|at| at.saturating_sub(now_unix_secs)),
        None => {
            // Whole milliseconds, or with a fraction (read as one more): no float parser,
            // which would cost the module some 20 KB.
            let ms = retry_after_ms.and_then(text)?;
            let (whole, fraction) = ms.split_once('.').unwrap_or((&ms, ""));
            if !fraction.bytes().all(|b| b.is_ascii_digit()) || whole.starts_with('+') {
                return None;
            }
            let ms = whole.parse::<u64>().ok()? + u64::from(fraction.bytes().any(|b| b != b'0'));
            Some(ms.div_ceil(1000))
        }
    }
}

/// Seconds since the Unix epoch of an IMF-fixdate (RFC 9110 5.6.7), the form every current
/// server sends: `Sun, 06 Nov 1994 08:49:37 GMT`.
fn http_date_unix_secs(date: &str) -> Option<u64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mut parts = date.split_ascii_whitespace();
    let (_weekday, day, month, year, time, zone) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if zone != "GMT" || parts.next().is_some() {
        return None;
    }
    let day: u64 = day.parse().ok()?;
    let month = MONTHS.iter().position(|m| *m == month)? as u64 + 1;
    let year: u64 = year.parse().ok()?;
    let mut hms = time.split(':').map(|n| n.parse::<u64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if !(1..=31).contains(&day) || year < 1970 || h > 23 || m > 59 || s > 60 || hms.next().is_some()
    {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm, years from March).
    let (y, mo) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(days * 86_400 + h * 3_600 + m * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names<N: AsRef<[u8]>, V>(h: &[(N, V)]) -> Vec<String> {
        h.iter()
            .map(|(n, _)| String::from_utf8_lossy(n.as_ref()).into_owned())
            .collect()
    }

    /// Only the allow-listed client headers reach a provider, with what the attempt sets;
    /// what already has the right value is left alone.
    #[test]
    fn requests_carry_only_the_allow_list() {
        let present: Vec<(&[u8], &[u8])> = vec![
            (b":method", b"POST"),
            (b":authority", b"gw"),
            (b":path", b"/v1/chat/completions"),
            (b"content-type", b"application/json"),
            (b"content-length", b"120"),
            (b"cookie", b"session=1"),
            (b"proxy-authorization", b"Basic eA=="),
            (b"x-api-key", b"sk-client"),
            (b"user-agent", b"OpenAI/Python"),
            (b"x-llm-route", b"claude"),
            (b"x-forwarded-proto", b"http"),
            (b"x-request-id", b"r1"),
            (b"traceparent", b"00-1-2-01"),
            (b"anthropic-beta", b"client-chosen"),
        ];
        let set: Vec<(&str, Cow<'_, str>)> = vec![
            (":path", "/v1/messages".into()),
            ("content-type", "application/json".into()),
            ("x-api-key", "sk-provider".into()),
            ("anthropic-version", "2023-06-01".into()),
            ("content-length", "13".into()),
        ];
        let c = request_changes(&present, &set);
        assert_eq!(
            names(&c.remove.iter().map(|n| (*n, ())).collect::<Vec<_>>()),
            [
                "cookie",
                "proxy-authorization",
                "x-llm-route",
                "x-forwarded-proto",
                "anthropic-beta"
            ]
        );
        assert_eq!(
            names(&c.set),
            [":path", "x-api-key", "anthropic-version", "content-length"]
        );
        assert_eq!(&*c.set[1].1, b"sk-provider");
    }

    /// Cookies, organisation and unknown headers are dropped, the provider's rate limits
    /// and request id renamed, values scrubbed, and what the gateway sets wins.
    #[test]
    fn responses_carry_only_what_describes_the_answer() {
        let present: Vec<(&[u8], &[u8])> = vec![
            (b":status", b"200"),
            (b"content-type", b"application/json"),
            (b"content-length", b"99"),
            (b"set-cookie", b"__cf_bm=x"),
            (b"openai-organization", b"org-secret"),
            (b"x-ratelimit-remaining-requests", b"4999"),
            (b"anthropic-ratelimit-tokens-limit", b"100"),
            (b"x-request-id", b"req_1"),
            (b"x-echo", b"sk-provider-key"),
            (b"retry-after", b"sk-provider-key"),
            (b"x-request-idx", b"no"),
            (b"server", b"provider-frontend"),
        ];
        let set: Vec<(&str, Cow<'_, str>)> = vec![
            (":status", "503".into()),
            ("x-llm-provider", "openai".into()),
        ];
        fn scrub(v: &[u8]) -> Cow<'_, [u8]> {
            if v == b"sk-provider-key" {
                Cow::Owned(b"sk-***".to_vec())
            } else {
                Cow::Borrowed(v)
            }
        }
        let c = response_changes(&present, &set, &["content-length"], scrub);
        assert_eq!(
            names(&c.remove.iter().map(|n| (*n, ())).collect::<Vec<_>>()),
            [
                "content-length",
                "set-cookie",
                "openai-organization",
                "x-ratelimit-remaining-requests",
                "anthropic-ratelimit-tokens-limit",
                "x-request-id",
                "x-echo",
                "x-request-idx"
            ]
        );
        assert_eq!(
            names(&c.set),
            [
                "x-llm-provider-ratelimit-remaining-requests",
                "x-llm-provider-ratelimit-tokens-limit",
                "x-llm-provider-request-id",
                "retry-after",
                ":status",
                "x-llm-provider"
            ]
        );
        assert_eq!(&*c.set[3].1, b"sk-***");
        assert_eq!(&*c.set[4].1, b"503");
        assert_eq!(
            client_response_name(b"request-id").as_deref(),
            Some(&b"x-llm-provider-request-id"[..])
        );
        assert_eq!(client_response_name(b"request-ids"), None);
    }

    #[test]
    fn retry_after_in_the_forms_providers_send_becomes_seconds() {
        let now = 1_445_412_480; // Wed, 21 Oct 2015 07:28:00 GMT
        let date = Some(&b"Wed, 21 Oct 2015 07:28:30 GMT"[..]);
        assert_eq!(retry_after_seconds(date, None, now), Some(30));
        assert_eq!(retry_after_seconds(date, None, now + 100), Some(0));
        assert_eq!(
            http_date_unix_secs("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            http_date_unix_secs("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(0)
        );
        assert_eq!(
            http_date_unix_secs("Tue, 29 Feb 2028 23:59:59 GMT"),
            Some(1_835_481_599)
        );
        // Seconds are already what Envoy reads.
        assert_eq!(retry_after_seconds(Some(b"2"), Some(b"1500"), now), None);
        assert_eq!(retry_after_seconds(None, Some(b"1500"), now), Some(2));
        assert_eq!(retry_after_seconds(None, Some(b"20.5"), now), Some(1));
        for bad in [
            "soon",
            "Wed, 21 Oct 2015 07:28:30 PST",
            "Wed, 32 Oct 2015 07:28:30 GMT",
            "-1",
            "",
        ] {
            assert_eq!(
                retry_after_seconds(Some(bad.as_bytes()), None, now),
                None,
                "{bad}"
            );
        }
        assert_eq!(retry_after_seconds(None, Some(b"-5"), now), None);
        assert_eq!(retry_after_seconds(None, None, now), None);
    }
}
