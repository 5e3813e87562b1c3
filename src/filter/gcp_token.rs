//! Fetches Vertex AI's OAuth2 access tokens and shares them with every worker.
//!
//! The upstream instance's root context ticks every second while the config has Vertex AI
//! deployments without a static token. On a tick, when the shared token is missing or due
//! for refresh and no other worker holds the fetch lease, it takes the lease (a
//! compare-and-swap in shared data) and calls the token server through the cluster the
//! renderer emits. The answer goes into shared data. Every tick also copies the shared
//! record into this worker's [`LocalCopy`] when its version changed, and attempts read that
//! copy (shared data only when the copy is expired or missing). The pure parts (answer,
//! record, copy, timing) live in `provider::vertex::token`. The token itself is never
//! logged.

use std::cell::RefCell;

use super::host::{self, Buffer, Map};
use crate::config::model::Endpoint;
use crate::provider::vertex::token::{
    self, LocalCopy, FETCH_TIMEOUT_SECS, LEASE_KEY, RETRY_AFTER_SECS, TOKEN_KEY,
};

/// The Envoy cluster of the token server (`general_settings.gcp_token_url`).
pub const CLUSTER: &str = token::CLUSTER;

thread_local! {
    /// This worker's copy of the shared token (one VM per worker, shared by both instances).
    static LOCAL: RefCell<LocalCopy> = RefCell::default();
}

fn read_shared() -> Option<(Vec<u8>, u32)> {
    host::get_shared_data(TOKEN_KEY).ok().flatten()
}

fn now_secs() -> u64 {
    host::now_nanos() / 1_000_000_000
}

/// Creates the fetch lease when absent, so that taking it is always a compare-and-swap.
pub fn prepare() {
    if let Ok(None) = host::get_shared_data(LEASE_KEY) {
        let _ = host::set_shared_data(LEASE_KEY, &token::lease(0), 0);
    }
}

/// The root context's HTTP call: headers and timeout (ms) in, the call's token or the host
/// status out.
pub type Dispatch<'a> = dyn Fn(&[(&str, &str)], u32) -> Result<u32, u32> + 'a;

/// The token an attempt may carry now, if there is one.
pub fn current() -> Option<String> {
    let now = now_secs();
    LOCAL.with_borrow_mut(|local| local.get(now, read_shared).map(str::to_string))
}

/// On a tick: refreshes this worker's copy of the shared token, then starts a fetch when
/// one is due and this worker wins the lease, through `dispatch` (the root context's HTTP
/// call, which the SDK must register to route the answer back). Returns the call's token.
pub fn tick(url: &Endpoint, dispatch: &Dispatch<'_>) -> Option<u32> {
    let now = now_secs();
    let due = LOCAL.with_borrow_mut(|local| {
        if let Some((record, cas)) = read_shared() {
            local.update(&record, cas);
        }
        token::fetch_due(local.token.as_ref(), now)
    });
    if !due {
        return None;
    }
    let (lease, cas) = match host::get_shared_data(LEASE_KEY).ok().flatten() {
        Some(found) => found,
        None => {
            prepare();
            return None;
        }
    };
    if !token::lease_free(Some(&lease), now) {
        return None;
    }
    let until = token::lease(now.saturating_add(FETCH_TIMEOUT_SECS));
    host::set_shared_data(LEASE_KEY, &until, cas).ok()?;
    let authority = if url.port == 80 {
        url.host.clone()
    } else {
        format!("{}:{}", url.host, url.port)
    };
    let headers = [
        (":method", "GET"),
        (":path", url.base_path.as_str()),
        (":authority", authority.as_str()),
        ("metadata-flavor", "Google"),
    ];
    let timeout = u32::try_from(FETCH_TIMEOUT_SECS.saturating_sub(1) * 1000).unwrap_or(4000);
    match dispatch(&headers, timeout) {
        Ok(call) => Some(call),
        Err(status) => {
            log::warn!(
                "could not call the Google Cloud token server (host status {status}); retrying"
            );
            release(false);
            None
        }
    }
}

/// Frees the lease: at once after a success, after a pause after a failure.
fn release(ok: bool) {
    let until = if ok {
        0
    } else {
        now_secs().saturating_add(RETRY_AFTER_SECS)
    };
    let _ = host::set_shared_data(LEASE_KEY, &token::lease(until), 0);
}

/// The token server answered the call: shares the token, or says why not.
pub fn on_answer(body_size: usize) {
    let status = host::get_header(Map::HttpCallResponseHeaders, ":status")
        .ok()
        .flatten()
        .unwrap_or_default();
    let result = match status.as_slice() {
        b"200" => host::get_buffer(Buffer::HttpCallResponseBody, 0, body_size)
            .map_err(|_| "its body could not be read")
            .and_then(|body| token::parse_answer(&body, now_secs())),
        b"" => Err("no answer (unreachable or timed out)"),
        _ => Err("a status other than 200"),
    };
    match result {
        Ok(t) => {
            let ok = host::set_shared_data(TOKEN_KEY, &t.encode(), 0).is_ok();
            if ok {
                log::info!(
                    "Vertex AI access token refreshed; it expires in {} s",
                    t.expires_at.saturating_sub(t.fetched_at)
                );
            }
            release(ok);
        }
        Err(why) => {
            log::warn!(
                "the Google Cloud token server (general_settings.gcp_token_url) failed: {why} ({}); Vertex AI requests get 503 until it answers",
                String::from_utf8_lossy(&status)
            );
            release(false);
        }
    }
}
