//! Admission and settlement: requests per minute, tokens per minute, parallel requests and
//! dollar budgets per virtual key and team, held in a shared [`store::Store`] so that they
//! hold across all Envoy worker VMs at once.
//!
//! The store is modelled on Envoy's shared data: process-wide, values with a version
//! (`cas`), and a write that succeeds only if the version is unchanged. Every
//! read-modify-write here is a compare-and-swap loop bounded by [`store::MAX_CAS_TRIES`];
//! when it runs out the request is refused with a 503 rather than admitted unaccounted
//! (fail closed), and nothing loops forever or panics. Each key and team has one record in
//! the store holding all its counters ([`records`]).
//!
//! # Request lifecycle
//!
//! [`admission::admit`] checks, in order, parallel requests (key, then team), requests per
//! minute, tokens per minute and the budget, and then counts the request: one request and
//! its estimated prompt tokens in this minute, one parallel slot and the worst-case cost as
//! a reservation. If the team's record refuses after the key's was written, the key's
//! increments are rolled back, so a refused request leaves nothing behind. A limit that
//! refuses answers with a [`refusal::Refusal`]. [`settlement::settle`] (once, when the
//! request ends) frees the slot and the reservation and adds the real cost and tokens.
//!
//! Beside these: the shared spend [`ledger`] (budgets across Envoy instances) and the
//! [`byte_budget`] of one worker.

pub mod admission;
pub mod byte_budget;
pub mod ledger;
pub mod records;
pub mod refusal;
pub mod settlement;
pub mod store;

/// What the tests of every part share: key tables, request facts, a fixed instant.
#[cfg(test)]
mod fixtures {
    use super::admission::{admit, Admission, RequestFacts};
    use super::records::Record;
    use super::refusal::Refusal;
    use super::store::{MemoryStore, Store};
    use crate::auth;
    use crate::config::keys::{find_key, KeyTable, VirtualKey};
    use crate::config::GatewayConfig;
    use crate::usage::Usage;
    use serde_json::{json, Value};

    /// 2026-03-14T12:00:10Z: a Saturday in the middle of a month, 10 s into its minute.
    pub(super) const NOW: u64 = 1_773_489_610;

    pub(super) fn keys(keys: Value, teams: Value) -> KeyTable {
        GatewayConfig::from_value(json!({
            "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/m"}}],
            "general_settings": {"master_key": "sk-master"},
            "virtual_keys": keys,
            "teams": teams,
        }))
        .unwrap()
        .keys
    }

    pub(super) fn entry(name: &str, extra: Value) -> Value {
        let mut v = json!({"name": name, "key_sha256": auth::digest_hex(&auth::digest(name))});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    }

    pub(super) fn key<'a>(t: &'a KeyTable, name: &str) -> &'a VirtualKey {
        find_key(t, &auth::digest(name)).unwrap()
    }

    /// 100 prompt tokens at 1 µ$/token, 200 output tokens at 2 µ$/token: 500 µ$ worst case.
    pub(super) fn facts() -> RequestFacts {
        RequestFacts {
            estimated_prompt_tokens: 100,
            max_output_tokens: 200,
            input_price_per_token: 1e-6,
            output_price_per_token: 2e-6,
        }
    }

    pub(super) fn usage(prompt: u64, completion: u64) -> Usage {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            ..Usage::default()
        }
    }

    /// The record stored under `k`, decoded.
    pub(super) fn raw(store: &MemoryStore, k: &str) -> Record {
        Record::decode(&store.get(k).unwrap().0).unwrap()
    }

    pub(super) fn admit_key(
        store: &MemoryStore,
        t: &KeyTable,
        name: &str,
        f: &RequestFacts,
        now: u64,
    ) -> Result<Admission, Refusal> {
        let k = key(t, name);
        admit(store, k, t.team_of(k), f, now)
    }
}
