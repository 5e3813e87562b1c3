//! Which headers cross the gateway, in each direction.
//!
//! Both directions are allow-lists: a provider receives only what it needs to answer, and
//! a client receives only what describes the answer, never the provider account's
//! cookies, organisation or credentials. Each list is applied to the header map the shell
//! read once, and the result replaces the map in one host call (a host call costs
//! thousands of Envoy instructions; one removal per unwanted header would cost many).

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

/// The request headers one attempt sends: those of `present` (the map as it reached the
/// attempt) that [`FORWARDED_REQUEST_HEADERS`] names and `set` does not, then `set`.
pub fn upstream_request_headers<'a>(
    present: &[(&'a [u8], &'a [u8])],
    set: &'a [(&'a str, Cow<'a, str>)],
) -> Vec<(&'a [u8], &'a [u8])> {
    let mut out: Vec<(&[u8], &[u8])> = Vec::with_capacity(present.len() + set.len());
    let is_set = |name: &[u8]| set.iter().any(|(n, _)| n.as_bytes() == name);
    for &(name, value) in present {
        let forwarded = FORWARDED_REQUEST_HEADERS
            .iter()
            .any(|f| f.as_bytes() == name);
        if forwarded && !is_set(name) {
            out.push((name, value));
        }
    }
    // Pseudo-headers come first in a header map.
    let (pseudo, regular): (Vec<_>, Vec<_>) = set
        .iter()
        .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
        .partition(|(n, _)| n.starts_with(b":"));
    let at = out.iter().take_while(|(n, _)| n.starts_with(b":")).count();
    out.splice(at..at, pseudo);
    out.extend(regular);
    out
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

/// One header, name and value, borrowed where it could be.
pub type Header<'a> = (Cow<'a, [u8]>, Cow<'a, [u8]>);

/// The response headers the client receives: those of `present` (the provider's map)
/// that it may see, renamed as [`RENAMED_RESPONSE_HEADERS`] says and with every value
/// passed through `scrub` (the attempt's key may be echoed anywhere), minus those `set`
/// replaces and those named in `drop`, then `set`.
pub fn client_response_headers<'a>(
    present: &[(&'a [u8], &'a [u8])],
    set: &'a [(&'a str, Cow<'a, str>)],
    drop: &[&str],
    scrub: impl Fn(&'a [u8]) -> Cow<'a, [u8]>,
) -> Vec<Header<'a>> {
    let mut out: Vec<Header<'a>> = Vec::with_capacity(present.len() + set.len());
    for &(name, value) in present {
        let Some(client_name) = client_response_name(name) else {
            continue;
        };
        let replaced = set.iter().any(|(n, _)| n.as_bytes() == &*client_name)
            || drop.iter().any(|d| d.as_bytes() == &*client_name);
        if !replaced {
            out.push((client_name, scrub(value)));
        }
    }
    for (name, value) in set {
        let entry = (
            Cow::Borrowed(name.as_bytes()),
            Cow::Borrowed(value.as_bytes()),
        );
        if name.starts_with(':') {
            out.insert(0, entry);
        } else {
            out.push(entry);
        }
    }
    out
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
    /// pseudo-headers stay first.
    #[test]
    fn requests_carry_only_the_allow_list() {
        let present: Vec<(&[u8], &[u8])> = vec![
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":authority", b"gw"),
            (b":path", b"/v1/chat/completions"),
            (b"content-type", b"application/json"),
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
        let out = upstream_request_headers(&present, &set);
        assert_eq!(
            names(&out),
            [
                ":method",
                ":scheme",
                ":authority",
                ":path",
                "user-agent",
                "x-request-id",
                "traceparent",
                "content-type",
                "x-api-key",
                "anthropic-version",
                "content-length"
            ]
        );
        assert_eq!(out[8].1, b"sk-provider");
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
        let out = client_response_headers(&present, &set, &["content-length"], scrub);
        assert_eq!(
            names(&out),
            [
                ":status",
                "content-type",
                "x-llm-provider-ratelimit-remaining-requests",
                "x-llm-provider-ratelimit-tokens-limit",
                "x-llm-provider-request-id",
                "retry-after",
                "x-llm-provider"
            ]
        );
        assert_eq!(&*out[0].1, b"503");
        assert_eq!(&*out[5].1, b"sk-***");
        assert_eq!(
            client_response_name(b"request-id").as_deref(),
            Some(&b"x-llm-provider-request-id"[..])
        );
        assert_eq!(client_response_name(b"request-ids"), None);
    }
}
