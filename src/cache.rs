//! The response cache: exact match on the normalized request, opt-in per model alias or
//! key, with a time to live. A hit is answered by the gateway without a provider call and
//! costs nothing.
//!
//! Pure: the key of a request, the entry format, LiteLLM's per-request controls and the
//! replay of a cached answer as a stream. `src/filter/` reads and writes the entries: in
//! Envoy's shared data by default (a fixed number of slots, since shared data cannot
//! delete keys: memory stays bounded at `slots × max_entry_bytes`), or in the spend store
//! (Redis, `SET ... EX ttl`) when `general_settings.spend_store` is set, shared by every
//! replica.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::model::ConfigError;

const AT: &str = "general_settings.response_cache";

/// Fields of `general_settings.response_cache`.
const FIELDS: [&str; 6] = [
    "models",
    "keys",
    "ttl_seconds",
    "scope",
    "slots",
    "max_entry_bytes",
];

/// A list of names of the section.
fn names(map: &serde_json::Map<String, Value>, field: &str) -> Result<Vec<String>, ConfigError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str().map(str::to_string).ok_or_else(|| {
                    ConfigError::new(format!("{AT}.{field}[{i}]"), "must be a string")
                })
            })
            .collect(),
        Some(_) => Err(ConfigError::new(
            format!("{AT}.{field}"),
            "must be a list of names",
        )),
    }
}

/// Whose requests share entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Each key its own entries.
    Key,
    /// The keys of a team share them (a key without a team: its own).
    Team,
}

/// The validated section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseCache {
    /// Aliases whose requests are cached.
    pub models: Vec<String>,
    /// Keys whose requests are cached, whatever the alias.
    pub keys: Vec<String>,
    /// Life of an entry unless the request says otherwise.
    pub ttl_secs: u64,
    /// Who shares entries.
    pub scope: Scope,
    /// Slots of the in-process cache.
    pub slots: u32,
    /// Largest answer stored.
    pub max_entry_bytes: u32,
}

impl ResponseCache {
    /// Whether requests of `key` to `alias` are cached.
    pub fn applies(&self, alias: &str, key: &str) -> bool {
        self.models.iter().any(|m| m == alias) || self.keys.iter().any(|k| k == key)
    }
}

pub(crate) fn validate(
    raw: &Value,
    aliases: &[String],
    keys: &[String],
) -> Result<ResponseCache, ConfigError> {
    use crate::limits::ledger::{bounded, section, text};
    let map = section(raw, AT, &FIELDS)?;
    let models = names(map, "models")?;
    let cached_keys = names(map, "keys")?;
    for (i, m) in models.iter().enumerate() {
        if !aliases.contains(m) {
            return Err(ConfigError::new(
                format!("{AT}.models[{i}]"),
                format!("`{m}` is not a model_name of model_list"),
            ));
        }
    }
    for (i, k) in cached_keys.iter().enumerate() {
        if !keys.contains(k) {
            return Err(ConfigError::new(
                format!("{AT}.keys[{i}]"),
                format!("`{k}` is not the name of a virtual_keys entry"),
            ));
        }
    }
    if models.is_empty() && cached_keys.is_empty() {
        return Err(ConfigError::new(
            format!("{AT}.models"),
            "name the model aliases (models) or virtual keys (keys) whose answers are cached",
        ));
    }
    let scope = match text(map, AT, "scope")? {
        None | Some("key") => Scope::Key,
        Some("team") => Scope::Team,
        Some(s) => {
            return Err(ConfigError::new(
                format!("{AT}.scope"),
                format!("`{s}` is not a scope: write `key` (each key its own entries) or `team` (a team's keys share them)"),
            ))
        }
    };
    let ttl_secs = bounded(map, AT, "ttl_seconds", 300, (1, 2_592_000))?;
    let slots = bounded(map, AT, "slots", 256, (1, 65_536))? as u32;
    let max_entry_bytes = bounded(map, AT, "max_entry_bytes", 65_536, (256, 4_194_304))? as u32;
    Ok(ResponseCache {
        models,
        keys: cached_keys,
        ttl_secs,
        scope,
        slots,
        max_entry_bytes,
    })
}

/// LiteLLM's per-request `cache` object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Controls {
    /// `no-cache`: do not answer from the cache.
    pub no_cache: bool,
    /// `no-store`: do not store this answer.
    pub no_store: bool,
    /// `ttl`: this answer's life, in seconds.
    pub ttl: Option<u64>,
    /// `s-maxage`: accept only entries at most this old, in seconds.
    pub s_maxage: Option<u64>,
}

impl Controls {
    /// Reads `cache` of the request body.
    pub fn of(body: &Value) -> Controls {
        let Some(c) = body.get("cache") else {
            return Controls::default();
        };
        let flag = |k: &str| c.get(k).and_then(Value::as_bool).unwrap_or(false);
        let secs = |k: &str| c.get(k).and_then(Value::as_u64);
        Controls {
            no_cache: flag("no-cache"),
            no_store: flag("no-store"),
            ttl: secs("ttl"),
            s_maxage: secs("s-maxage"),
        }
    }
}

/// Fields that do not change the answer: how it travels, who asked, and the controls.
const IGNORED: [&str; 6] = [
    "stream",
    "stream_options",
    "user",
    "metadata",
    "cache",
    "model",
];

/// The entry key of a request: SHA-256 (hex) over the scope, the alias and the body with
/// [`IGNORED`] fields removed, keys sorted (serde_json's map is ordered), so the same
/// question in another order or with other transport options finds the same entry.
pub fn request_key(body: &Value, alias: &str, scope: &str) -> String {
    let mut h = Sha256::new();
    h.update(scope.as_bytes());
    h.update([0]);
    h.update(alias.as_bytes());
    h.update([0]);
    if let Value::Object(map) = body {
        for (k, v) in map {
            if !IGNORED.contains(&k.as_str()) {
                h.update(k.as_bytes());
                h.update([0]);
                h.update(v.to_string().as_bytes());
                h.update([0]);
            }
        }
    }
    let digest = h.finalize();
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The shared-data slot of an entry key.
pub fn slot_of(key: &str, slots: u32) -> String {
    let n = key
        .get(..8)
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .unwrap_or(0)
        % slots.max(1);
    format!("llm_gateway.v1.cache.{n}")
}

/// An entry as stored: `<created> <expires> <key>\n<answer>`.
pub fn encode_entry(key: &str, created: u64, ttl: u64, answer: &[u8]) -> Vec<u8> {
    let mut out = format!("{created} {} {key}\n", created.saturating_add(ttl)).into_bytes();
    out.extend_from_slice(answer);
    out
}

/// The answer of an entry, if it is `key`'s, unexpired at `now` and (with `s_maxage`)
/// young enough.
pub fn decode_entry<'a>(
    entry: &'a [u8],
    key: &str,
    now: u64,
    s_maxage: Option<u64>,
) -> Option<&'a [u8]> {
    let nl = entry.iter().position(|b| *b == b'\n')?;
    let (head, rest) = entry.split_at(nl);
    let head = std::str::from_utf8(head).ok()?;
    let mut parts = head.split(' ');
    let created: u64 = parts.next()?.parse().ok()?;
    let expires: u64 = parts.next()?.parse().ok()?;
    if parts.next()? != key || now >= expires {
        return None;
    }
    if s_maxage.is_some_and(|m| now.saturating_sub(created) > m) {
        return None;
    }
    rest.get(1..)
}

/// The Redis key of an entry in the spend store.
pub fn store_key(key: &str) -> String {
    format!("llmgw:cache:{key}")
}

/// The webdis request reading an entry.
pub fn store_get_body(key: &str) -> Vec<u8> {
    crate::limits::ledger::command_body("GET", &[store_key(key).as_bytes()])
}

/// The webdis request writing an entry that Redis drops after `ttl` seconds.
pub fn store_set_body(key: &str, entry: &[u8], ttl: u64) -> Vec<u8> {
    let ttl = ttl.to_string();
    crate::limits::ledger::command_body(
        "SET",
        &[store_key(key).as_bytes(), entry, b"EX", ttl.as_bytes()],
    )
}

/// The entry in webdis's answer to [`store_get_body`] (`{"GET":"..."}`); `None` for a
/// miss, an error or an answer that is not one.
pub fn store_get_entry(status: u16, body: &[u8]) -> Option<Vec<u8>> {
    if status != 200 {
        return None;
    }
    let v: Value = serde_json::from_slice(body).ok()?;
    Some(v.get("GET")?.as_str()?.as_bytes().to_vec())
}

/// A cached chat completion replayed as OpenAI's stream: per choice, one chunk with the
/// whole message as its delta and its finish reason; the usage chunk when asked; then
/// `[DONE]`.
pub fn replay_as_stream(answer: &[u8], include_usage: bool) -> Option<Vec<u8>> {
    let v: Value = serde_json::from_slice(answer).ok()?;
    let field = |k: &str| {
        v.get(k)
            .map_or_else(|| "null".to_string(), Value::to_string)
    };
    let head = format!(
        "data: {{\"id\":{},\"object\":\"chat.completion.chunk\",\"created\":{},\"model\":{},",
        field("id"),
        field("created"),
        field("model")
    );
    let mut out = String::new();
    for choice in v.get("choices")?.as_array()? {
        let index = choice
            .get("index")
            .map_or_else(|| "0".into(), Value::to_string);
        let mut message = choice.get("message").cloned().unwrap_or(Value::Null);
        if let Some(calls) = message.get_mut("tool_calls").and_then(Value::as_array_mut) {
            for (i, call) in calls.iter_mut().enumerate() {
                if let Some(c) = call.as_object_mut() {
                    c.insert("index".into(), Value::from(i));
                }
            }
        }
        let finish = choice
            .get("finish_reason")
            .map_or_else(|| "\"stop\"".into(), Value::to_string);
        out.push_str(&format!(
            "{head}\"choices\":[{{\"index\":{index},\"delta\":{message},\"finish_reason\":{finish}}}]}}\n\n"
        ));
    }
    if include_usage {
        out.push_str(&format!(
            "{head}\"choices\":[],\"usage\":{}}}\n\n",
            field("usage")
        ));
    }
    out.push_str("data: [DONE]\n\n");
    Some(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(v: Value) -> Value {
        v
    }

    #[test]
    fn config_defaults_and_errors_name_the_field() {
        let aliases = vec!["gpt".to_string()];
        let keys = vec!["alice".to_string()];
        let c = validate(&raw(json!({"models": ["gpt"]})), &aliases, &keys).unwrap();
        assert_eq!((c.ttl_secs, c.scope, c.slots), (300, Scope::Key, 256));
        assert!(c.applies("gpt", "bob") && !c.applies("other", "bob"));
        for (v, field) in [
            (json!({"models": ["nope"]}), "models[0]"),
            (json!({"keys": ["nope"]}), "keys[0]"),
            (json!({}), "models"),
            (json!({"models": ["gpt"], "scope": "world"}), "scope"),
            (json!({"models": ["gpt"], "ttl_seconds": 0}), "ttl_seconds"),
            (json!({"models": ["gpt"], "slots": 0}), "slots"),
            (
                json!({"models": ["gpt"], "max_entry_bytes": 1}),
                "max_entry_bytes",
            ),
        ] {
            let e = validate(&raw(v), &aliases, &keys).unwrap_err();
            assert_eq!(e.field, format!("{AT}.{field}"));
        }
    }

    #[test]
    fn the_key_ignores_transport_and_order_but_not_content_or_scope() {
        let a = json!({"model": "x", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.5});
        let b = json!({"temperature": 0.5, "stream": true, "user": "u", "cache": {"ttl": 5},
                       "messages": [{"content": "hi", "role": "user"}], "model": "y"});
        assert_eq!(
            request_key(&a, "gpt", "key:a"),
            request_key(&b, "gpt", "key:a")
        );
        assert_ne!(
            request_key(&a, "gpt", "key:a"),
            request_key(&a, "gpt", "key:b")
        );
        assert_ne!(
            request_key(&a, "gpt", "key:a"),
            request_key(&a, "other", "key:a")
        );
        let c = json!({"model": "x", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.7});
        assert_ne!(
            request_key(&a, "gpt", "key:a"),
            request_key(&c, "gpt", "key:a")
        );
        let k = request_key(&a, "gpt", "key:a");
        assert_eq!(k.len(), 64);
        assert!(slot_of(&k, 16).starts_with("llm_gateway.v1.cache."));
    }

    #[test]
    fn entries_expire_and_belong_to_their_key() {
        let e = encode_entry("k1", 100, 10, b"{\"a\":1}");
        assert_eq!(decode_entry(&e, "k1", 105, None), Some(&b"{\"a\":1}"[..]));
        assert_eq!(decode_entry(&e, "k1", 110, None), None);
        assert_eq!(decode_entry(&e, "k2", 105, None), None);
        assert_eq!(decode_entry(&e, "k1", 105, Some(2)), None);
        assert_eq!(decode_entry(b"garbage", "k1", 105, None), None);
    }

    #[test]
    fn store_requests_and_answers() {
        let set = String::from_utf8(store_set_body("ab", b"1 2 ab\n{\"x\":\"a/b\"}", 9)).unwrap();
        assert_eq!(
            set,
            "SET/llmgw%3Acache%3Aab/1%202%20ab%0A%7B%22x%22%3A%22a%2Fb%22%7D/EX/9"
        );
        assert_eq!(
            String::from_utf8(store_get_body("ab")).unwrap(),
            "GET/llmgw%3Acache%3Aab"
        );
        assert_eq!(
            store_get_entry(200, br#"{"GET":"1 2 ab\n{}"}"#),
            Some(b"1 2 ab\n{}".to_vec())
        );
        assert_eq!(store_get_entry(200, br#"{"GET":null}"#), None);
        assert_eq!(store_get_entry(503, b""), None);
    }

    #[test]
    fn controls() {
        let c = Controls::of(&json!({"cache": {"no-cache": true, "ttl": 7, "s-maxage": 3}}));
        assert_eq!(
            c,
            Controls {
                no_cache: true,
                no_store: false,
                ttl: Some(7),
                s_maxage: Some(3)
            }
        );
        assert_eq!(Controls::of(&json!({})), Controls::default());
    }

    #[test]
    fn replay_as_a_stream() {
        let answer = json!({"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi",
                "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}});
        let sse = replay_as_stream(answer.to_string().as_bytes(), true).unwrap();
        let text = String::from_utf8(sse).unwrap();
        let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 3);
        let first: Value = serde_json::from_str(events[0].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(first["object"], "chat.completion.chunk");
        assert_eq!(first["choices"][0]["delta"]["content"], "Hi");
        assert_eq!(first["choices"][0]["delta"]["tool_calls"][0]["index"], 0);
        assert_eq!(first["choices"][0]["finish_reason"], "stop");
        assert!(events[1].contains("\"total_tokens\":3"));
        assert_eq!(events[2], "data: [DONE]");
        assert!(replay_as_stream(b"not json", false).is_none());
    }
}
