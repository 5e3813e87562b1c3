//! Google OAuth2 access tokens for Vertex AI, without the host: the token server's answer,
//! the record every worker shares, and when to fetch the next one.
//!
//! The shell (`filter::gcp_token`) fetches `GET <gcp_token_url>` with `Metadata-Flavor:
//! Google` (the metadata server of GCE and GKE Workload Identity; reference:
//! <https://cloud.google.com/compute/docs/access/authenticate-workloads#applications>),
//! which answers `{"access_token": "...", "expires_in": 3599, "token_type": "Bearer"}`,
//! and keeps the token in Envoy's shared data. One fetch runs at a time across workers: a
//! lease in shared data says until when a fetch may be running. Each worker keeps a copy of
//! the record ([`LocalCopy`]), refreshed by its tick, so that an attempt reads no shared data.

/// The Envoy cluster the renderer emits for the token server.
pub const CLUSTER: &str = "llm_gcp_token";
/// Shared-data key of the current token.
pub const TOKEN_KEY: &str = "llm_gateway.gcp_token";
/// Shared-data key of the fetch lease: the second until which a fetch may be running.
pub const LEASE_KEY: &str = "llm_gateway.gcp_token.lease";
/// How long a fetch may take before another worker may start one, in seconds.
pub const FETCH_TIMEOUT_SECS: u64 = 5;
/// After a failed fetch, the wait before the next, in seconds.
pub const RETRY_AFTER_SECS: u64 = 1;

/// A token as every worker sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedToken {
    /// When it was fetched (Unix seconds).
    pub fetched_at: u64,
    /// When it expires (Unix seconds).
    pub expires_at: u64,
    /// The access token itself: never logged.
    pub token: String,
}

impl SharedToken {
    /// The shared-data record: `fetched_at` and `expires_at` (little-endian u64), then
    /// the token.
    pub fn encode(&self) -> Vec<u8> {
        let mut record = Vec::with_capacity(16 + self.token.len());
        record.extend_from_slice(&self.fetched_at.to_le_bytes());
        record.extend_from_slice(&self.expires_at.to_le_bytes());
        record.extend_from_slice(self.token.as_bytes());
        record
    }

    /// Reads a record written by [`encode`](Self::encode).
    pub fn decode(bytes: &[u8]) -> Option<SharedToken> {
        let fetched_at = read_u64(bytes.get(..8)?)?;
        let expires_at = read_u64(bytes.get(8..16)?)?;
        let token = std::str::from_utf8(bytes.get(16..)?).ok()?;
        (!token.is_empty()).then(|| SharedToken {
            fetched_at,
            expires_at,
            token: token.to_string(),
        })
    }

    /// Whether a request sent now may carry it: it has at least a second left.
    pub fn usable(&self, now: u64) -> bool {
        now.saturating_add(1) < self.expires_at
    }

    /// Whether the next token should be fetched now: when half its lifetime or less than
    /// four minutes is left, whichever comes first (the metadata server hands out a new
    /// token once the one it caches has less than five minutes left).
    pub fn needs_refresh(&self, now: u64) -> bool {
        let lifetime = self.expires_at.saturating_sub(self.fetched_at);
        let margin = (lifetime / 2).min(240);
        now.saturating_add(margin) >= self.expires_at
    }
}

/// A worker's copy of the shared record: reading shared data costs an attempt about 21,000
/// Envoy instructions, reading this copy nothing.
#[derive(Debug, Default)]
pub struct LocalCopy {
    /// The shared record's version (its cas) when copied.
    cas: u32,
    /// The copied token (`None`: none yet, or the record could not be read).
    pub token: Option<SharedToken>,
}

impl LocalCopy {
    /// Takes the shared record read at version `cas`, decoding it only when it changed.
    pub fn update(&mut self, record: &[u8], cas: u32) {
        if self.token.is_none() || cas != self.cas {
            self.token = SharedToken::decode(record);
            self.cas = cas;
        }
    }

    /// The token an attempt sent at `now` may carry: the copy's while it is usable, else
    /// the shared record's, read once through `read` (a tick may not have run since it
    /// changed). `None`: no usable token anywhere.
    pub fn get(&mut self, now: u64, read: impl FnOnce() -> Option<(Vec<u8>, u32)>) -> Option<&str> {
        if !self.token.as_ref().is_some_and(|t| t.usable(now)) {
            if let Some((record, cas)) = read() {
                self.update(&record, cas);
            }
        }
        self.token
            .as_ref()
            .filter(|t| t.usable(now))
            .map(|t| t.token.as_str())
    }
}

/// Whether a fetch should start now, given the shared token (if any).
pub fn fetch_due(current: Option<&SharedToken>, now: u64) -> bool {
    current.is_none_or(|t| t.needs_refresh(now))
}

fn read_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// The lease record: the second until which a fetch may run (little-endian u64).
pub fn lease(until: u64) -> [u8; 8] {
    until.to_le_bytes()
}

/// Whether the lease is free at `now` (a record that cannot be read is free).
pub fn lease_free(lease: Option<&[u8]>, now: u64) -> bool {
    lease.and_then(read_u64).is_none_or(|until| until <= now)
}

/// Reads the token server's answer (status 200): the token and its lifetime. The error
/// names what was wrong, never the token.
pub fn parse_answer(body: &[u8], now: u64) -> Result<SharedToken, &'static str> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| "the answer is not JSON")?;
    let token = v
        .get("access_token")
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or("the answer has no usable `access_token`")?;
    let expires_in = v
        .get("expires_in")
        .and_then(|e| e.as_u64())
        .filter(|e| *e > 1)
        .ok_or("the answer has no positive `expires_in`")?;
    if let Some(kind) = v.get("token_type").and_then(|t| t.as_str()) {
        if !kind.eq_ignore_ascii_case("bearer") {
            return Err("the `token_type` is not Bearer");
        }
    }
    Ok(SharedToken {
        fetched_at: now,
        expires_at: now.saturating_add(expires_in),
        token: token.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_record_and_refresh() {
        let t = parse_answer(
            br#"{"access_token":"ya29.abc","expires_in":3599,"token_type":"Bearer"}"#,
            1000,
        )
        .unwrap();
        assert_eq!(t.expires_at, 4599);
        assert_eq!(SharedToken::decode(&t.encode()), Some(t.clone()));
        assert!(t.usable(4597) && !t.usable(4598));
        // Four minutes before expiry for long-lived tokens.
        assert!(!t.needs_refresh(4358) && t.needs_refresh(4359));
        // Half the lifetime for short ones.
        let short = parse_answer(br#"{"access_token":"x","expires_in":4}"#, 10).unwrap();
        assert!(!short.needs_refresh(11) && short.needs_refresh(12));
        assert!(fetch_due(None, 0));
    }

    #[test]
    fn bad_answers_name_the_field_not_the_token() {
        for (body, says) in [
            (&b"<html>"[..], "not JSON"),
            (br#"{"expires_in":10}"#, "access_token"),
            (
                br#"{"access_token":"secret-1","expires_in":0}"#,
                "expires_in",
            ),
            (
                br#"{"access_token":"secret-2","expires_in":9,"token_type":"mac"}"#,
                "token_type",
            ),
        ] {
            let e = parse_answer(body, 0).unwrap_err();
            assert!(e.contains(says) && !e.contains("secret"), "{e}");
        }
        assert_eq!(SharedToken::decode(&[0; 16]), None);
        assert_eq!(SharedToken::decode(b"short"), None);
    }

    #[test]
    fn the_local_copy_serves_while_usable_and_reads_shared_data_once_otherwise() {
        let record = |token: &str, expires_at: u64| {
            let t = SharedToken {
                fetched_at: 0,
                expires_at,
                token: token.into(),
            };
            t.encode()
        };
        let mut local = LocalCopy::default();
        // Nothing copied yet: shared data is read once; nothing there, no token.
        let mut reads = 0;
        assert_eq!(
            local.get(5, || {
                reads += 1;
                None
            }),
            None
        );
        assert_eq!(reads, 1);
        // The tick copies the record; attempts then read no shared data.
        local.update(&record("old", 10), 7);
        assert_eq!(local.get(8, || unreachable!()), Some("old"));
        // The same version is not decoded again, a new one is.
        local.update(&record("ignored", 99), 7);
        assert_eq!(local.get(8, || unreachable!()), Some("old"));
        local.update(&record("new", 20), 8);
        assert_eq!(local.get(8, || unreachable!()), Some("new"));
        // Expired (less than a second left): never used; shared data is read once.
        let mut reads = 0;
        let fresh = record("fresher", 40);
        assert_eq!(
            local.get(19, || {
                reads += 1;
                Some((fresh.clone(), 9))
            }),
            Some("fresher")
        );
        assert_eq!(reads, 1);
        // Shared data holds no usable token either: none (the attempt answers 503).
        assert_eq!(local.get(39, || Some((fresh.clone(), 9))), None);
        assert_eq!(local.get(39, || Some((b"junk".to_vec(), 10))), None);
        assert!(local.token.is_none());
    }

    #[test]
    fn lease_records() {
        assert!(lease_free(None, 5));
        assert!(lease_free(Some(&lease(5)), 5));
        assert!(!lease_free(Some(&lease(6)), 5));
        assert!(lease_free(Some(b"junk"), 5));
    }
}
