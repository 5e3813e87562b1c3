//! The client's body as it goes upstream: `model` set to the deployment's model, the
//! gateway-only fields removed and, for a stream, usage asked for. The fast way splices
//! these edits into the client's bytes; the general way parses, edits and writes the body
//! again, and the fast way declines whenever the two could disagree.

use serde_json::{Map, Value};

use crate::error::GatewayError;
use crate::json::scan::Scan;

/// The client's body as it goes upstream, and what the translator learnt from it.
#[derive(Debug, PartialEq)]
pub(super) struct Forwarded {
    pub(super) body: Vec<u8>,
    pub(super) stream: bool,
    pub(super) client_wants_usage: bool,
}

/// The general way: the body parsed into values, edited, and written again.
pub(super) fn forward_reparsed(
    body: &[u8],
    upstream_model: &str,
    edit: impl FnOnce(&mut Map<String, Value>) -> Result<(), GatewayError>,
) -> Result<Forwarded, GatewayError> {
    let mut value: Map<String, Value> = serde_json::from_slice(body).map_err(|e| {
        GatewayError::invalid_request(format!("request body is not a JSON object: {e}"))
    })?;
    edit(&mut value)?;
    // LiteLLM's per-request cache controls are the gateway's, not the provider's.
    value.remove("cache");
    value.insert("model".into(), Value::String(upstream_model.to_string()));
    if let Some(Value::Array(messages)) = value.get_mut("messages") {
        for m in messages.iter_mut() {
            if let Value::Object(m) = m {
                for f in GATEWAY_ONLY_MESSAGE_FIELDS {
                    m.remove(*f);
                }
            }
        }
    }
    let stream = matches!(value.get("stream"), Some(Value::Bool(true)));
    let mut client_wants_usage = false;
    if stream {
        let options = value
            .entry("stream_options")
            .or_insert_with(|| Value::Object(Map::new()));
        if !options.is_object() {
            *options = Value::Object(Map::new());
        }
        if let Value::Object(o) = options {
            client_wants_usage = matches!(o.get("include_usage"), Some(Value::Bool(true)));
            o.insert("include_usage".into(), Value::Bool(true));
        }
    }
    let body = serde_json::to_vec(&value)
        .map_err(|e| GatewayError::internal(format!("could not encode request: {e}")))?;
    Ok(Forwarded {
        body,
        stream,
        client_wants_usage,
    })
}

/// The client's body with `model` set to `upstream_model` and nothing else changed (an
/// embeddings request), the fast way when it can be taken.
pub(crate) fn with_model(body: &[u8], upstream_model: &str) -> Result<Vec<u8>, GatewayError> {
    if let Some(f) = std::str::from_utf8(body)
        .ok()
        .and_then(|text| forward_verbatim(text, upstream_model))
    {
        return Ok(f.body);
    }
    let mut value: Map<String, Value> = serde_json::from_slice(body).map_err(|e| {
        GatewayError::invalid_request(format!("request body is not a JSON object: {e}"))
    })?;
    value.insert("model".into(), Value::String(upstream_model.to_string()));
    serde_json::to_vec(&value)
        .map_err(|e| GatewayError::internal(format!("could not encode request: {e}")))
}

/// The fast way, for nearly every body: the client's bytes copied with the few edits
/// [`forward_reparsed`] makes (the model, gateway-only message fields, the stream's usage
/// request) spliced in, instead of building a value of every field and escaping every
/// string again (most of this translator's time). The result reads as the same JSON;
/// only key order and whitespace may differ. `None`, and the general way, whenever the two
/// could disagree: anything [`Scan`] refuses (it takes only what serde_json takes), a key
/// with escapes, a repeated top-level key, a repeated key the edits look at.
pub(super) fn forward_verbatim(text: &str, upstream_model: &str) -> Option<Forwarded> {
    let bytes = text.as_bytes();
    let mut scan = Scan::new(bytes);
    // (start, end, replacement) in body order; an insertion has start == end.
    let mut edits: Vec<(usize, usize, Vec<u8>)> = Vec::new();
    let mut keys: Vec<&[u8]> = Vec::new();
    let mut model = None;
    let mut stream = false;
    let mut options = None;
    let mut last_value_end = 0;
    scan.object(|scan, key| {
        // A repeated key, or the gateway's `cache` controls to remove: the general way.
        if keys.contains(&key) || key == b"cache" {
            return None;
        }
        keys.push(key);
        scan.space();
        let start = scan.at;
        match (key, scan.peek()?) {
            (b"messages", b'[') => strip_gateway_fields(scan, &mut edits)?,
            (b"stream_options", b'{') => options = Some(StreamOptions::object(scan)?),
            _ => scan.skip_value()?,
        }
        let end = scan.at;
        match key {
            b"model" => model = Some((start, end)),
            b"stream" => stream = bytes.get(start..end)? == b"true",
            b"stream_options" if options.is_none() => {
                options = Some(StreamOptions::Other { start, end })
            }
            _ => {}
        }
        last_value_end = end;
        Some(())
    })?;
    scan.space();
    if scan.at != bytes.len() || keys.is_empty() {
        return None;
    }
    let model_json = serde_json::to_vec(upstream_model).ok()?;
    match model {
        Some((start, end)) => edits.push((start, end, model_json)),
        None => {
            let mut member = b",\"model\":".to_vec();
            member.extend_from_slice(&model_json);
            edits.push((last_value_end, last_value_end, member));
        }
    }
    let mut client_wants_usage = false;
    if stream {
        const INCLUDE: &[u8] = b"\"include_usage\":true";
        match options {
            Some(StreamOptions::Object {
                include_usage: Some((start, end)),
                ..
            }) => {
                client_wants_usage = bytes.get(start..end)? == b"true";
                if !client_wants_usage {
                    edits.push((start, end, b"true".to_vec()));
                }
            }
            Some(StreamOptions::Object {
                close,
                empty,
                include_usage: None,
            }) => {
                let mut member = if empty { Vec::new() } else { b",".to_vec() };
                member.extend_from_slice(INCLUDE);
                edits.push((close, close, member));
            }
            Some(StreamOptions::Other { start, end }) => {
                edits.push((start, end, [b"{", INCLUDE, b"}"].concat()));
            }
            None => edits.push((
                last_value_end,
                last_value_end,
                [b",\"stream_options\":{", INCLUDE, b"}"].concat(),
            )),
        }
    }
    // Stable: two insertions at the end of the object keep the order they were made in.
    edits.sort_unstable_by_key(|(start, _, _)| *start);
    let mut out = Vec::with_capacity(bytes.len() + 64);
    let mut at = 0;
    for (start, end, replacement) in edits {
        out.extend_from_slice(bytes.get(at..start)?);
        out.extend_from_slice(&replacement);
        at = end;
    }
    out.extend_from_slice(bytes.get(at..)?);
    Some(Forwarded {
        body: out,
        stream,
        client_wants_usage,
    })
}

/// Where `stream_options` is in the body.
enum StreamOptions {
    /// An object: the position of its closing brace, and of `include_usage`'s value.
    Object {
        close: usize,
        empty: bool,
        include_usage: Option<(usize, usize)>,
    },
    /// Any other value.
    Other { start: usize, end: usize },
}

impl StreamOptions {
    /// Reads the object at the scan; a repeated `include_usage` is refused.
    fn object(scan: &mut Scan<'_>) -> Option<StreamOptions> {
        let mut include_usage = None;
        let mut empty = true;
        scan.object(|scan, key| {
            empty = false;
            scan.space();
            let start = scan.at;
            scan.skip_value()?;
            if key == b"include_usage" {
                if include_usage.is_some() {
                    return None;
                }
                include_usage = Some((start, scan.at));
            }
            Some(())
        })?;
        Some(StreamOptions::Object {
            close: scan.at - 1,
            empty,
            include_usage,
        })
    }
}

/// Reads the `messages` array at the scan and records, for each message object with a
/// gateway-only field, the object written again without it.
fn strip_gateway_fields(
    scan: &mut Scan<'_>,
    edits: &mut Vec<(usize, usize, Vec<u8>)>,
) -> Option<()> {
    let bytes = scan.bytes;
    scan.at += 1;
    if scan.take(b']') {
        return Some(());
    }
    loop {
        scan.space();
        if scan.peek()? == b'{' {
            let start = scan.at;
            // Members as (start of key, end of value); whether one is dropped.
            let mut members: Vec<(usize, usize, bool)> = Vec::new();
            scan.object(|scan, key| {
                // The key is a slice of the body; its quote comes just before it.
                let key_start = (key.as_ptr() as usize).checked_sub(bytes.as_ptr() as usize)? - 1;
                let drop = GATEWAY_ONLY_MESSAGE_FIELDS
                    .iter()
                    .any(|f| f.as_bytes() == key);
                scan.skip_value()?;
                members.push((key_start, scan.at, drop));
                Some(())
            })?;
            if members.iter().any(|m| m.2) {
                let mut object = b"{".to_vec();
                for (i, (from, to, _)) in members.iter().filter(|m| !m.2).enumerate() {
                    if i > 0 {
                        object.push(b',');
                    }
                    object.extend_from_slice(bytes.get(*from..*to)?);
                }
                object.push(b'}');
                edits.push((start, scan.at, object));
            }
        } else {
            scan.skip_value()?;
        }
        if scan.take(b']') {
            return Some(());
        }
        if !scan.take(b',') {
            return None;
        }
    }
}

/// Message fields other gateways invented for reasoning round trips; OpenAI-compatible
/// servers reject or ignore them, so they are removed before forwarding.
const GATEWAY_ONLY_MESSAGE_FIELDS: &[&str] = &["thinking_blocks", "reasoning_content"];

#[cfg(test)]
mod tests {
    use super::*;

    /// LiteLLM's `cache` controls never reach the provider.
    #[test]
    fn cache_controls_are_not_forwarded() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"cache":{"no-cache":true}}"#;
        assert!(forward_verbatim(std::str::from_utf8(body).unwrap(), "up").is_none());
        let out = forward_reparsed(body, "up", |_| Ok(())).unwrap();
        let v: Value = serde_json::from_slice(&out.body).unwrap();
        assert!(v.get("cache").is_none() && v["model"] == "up");
    }

    /// The two ways of forwarding a body: the fast one must agree with the general one
    /// (same JSON, same stream flags) on everything it takes.
    fn agree(body: &[u8]) -> Option<Forwarded> {
        let fast = std::str::from_utf8(body)
            .ok()
            .and_then(|t| forward_verbatim(t, "up-\"model\u{e9}"));
        let fast = fast?;
        let slow = forward_reparsed(body, "up-\"model\u{e9}", |_| Ok(())).unwrap_or_else(|e| {
            panic!(
                "only the fast way took {:?}: {e:?}",
                String::from_utf8_lossy(body)
            )
        });
        let read = |b: &[u8]| serde_json::from_slice::<Value>(b).unwrap();
        assert_eq!(
            read(&fast.body),
            read(&slow.body),
            "{}",
            String::from_utf8_lossy(body)
        );
        assert_eq!(
            (fast.stream, fast.client_wants_usage),
            (slow.stream, slow.client_wants_usage),
            "{}",
            String::from_utf8_lossy(body)
        );
        Some(fast)
    }

    /// Every edit the general way makes, made in place; the rest of the body byte for byte.
    #[test]
    fn verbatim_forwarding_agrees_with_reparsing() {
        let taken = [
            &br#"{"model":"alias","messages":[{"role":"user","content":"caf\u00e9 \"q\"\n"}],"top_k":3}"#[..],
            br#" { "messages" : [ ] , "model" : 7 } "#,
            br#"{"messages":[{"role":"assistant","content":"x","thinking_blocks":[{"a":1}],"reasoning_content":"r"}],"model":"a"}"#,
            br#"{"messages":[{"reasoning_content":"r","role":"assistant"},{"thinking_blocks":[]},"odd",3],"model":"a"}"#,
            br#"{"model":"a","messages":[{"role":"user","content":"x"}],"stream":true}"#,
            br#"{"model":"a","messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"include_usage":true}}"#,
            br#"{"model":"a","messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"include_usage":false,"x":1}}"#,
            br#"{"model":"a","messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"x":{"include_usage":true}}}"#,
            br#"{"model":"a","messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{}}"#,
            br#"{"stream_options":null,"stream":true,"model":"a","messages":[]}"#,
            br#"{"model":"a","messages":[],"stream":false,"stream_options":{"include_usage":true}}"#,
            br#"{"messages":[{"role":"user","content":[{"type":"text","text":"\ud83d\ude00"}]}],"stream":true}"#,
            br#"{"model":"a","messages":[],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"x":{"type":"number","minimum":-1.5e3}}}}}]}"#,
        ];
        for body in taken {
            assert!(agree(body).is_some(), "{}", String::from_utf8_lossy(body));
        }
        // Untouched parts keep the client's bytes.
        let f = agree(
            br#"{"model":"alias","messages":[{"role":"user","content":"caf\u00e9"}], "n" : 1}"#,
        )
        .unwrap();
        assert_eq!(
            f.body,
            "{\"model\":\"up-\\\"model\u{e9}\",\"messages\":[{\"role\":\"user\",\"content\":\"caf\\u00e9\"}], \"n\" : 1}"
                .as_bytes()
        );
        // What the general way must decide.
        for body in [
            &br#"{"model":"a","model":"b","messages":[]}"#[..],
            br#"{"model":"a","messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"include_usage":false,"include_usage":true}}"#,
            br#"{"mod\u0065l":"a","messages":[]}"#,
            br#"{"model":"a","messages":[]} x"#,
            br#"{"model":"a","messages":[01]}"#,
            br#"{}"#,
            br#"[]"#,
            b"{\"model\":\"\xff\"}",
            br#"{"model":"a","messages":[{"role":"user","content":"\udfff\ud800"}]}"#,
            br#"{"model":"a","messages":[{"role":"user","content":"\ud800x"}]}"#,
            format!("{{\"model\":\"a\",\"x\":{}1{}}}", "[".repeat(127), "]".repeat(127)).as_bytes(),
        ] {
            assert!(
                std::str::from_utf8(body)
                    .ok()
                    .and_then(|t| forward_verbatim(t, "m"))
                    .is_none(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    /// Mutations of the bodies above and of the golden requests: the fast way either
    /// declines or agrees with the general way.
    #[test]
    fn verbatim_forwarding_agrees_on_mutations() {
        let mut seeds: Vec<Vec<u8>> = vec![
            br#"{"model":"a","messages":[{"role":"assistant","content":"x","thinking_blocks":[],"reasoning_content":"r"}],"stream":true,"stream_options":{"include_usage":false}}"#.to_vec(),
        ];
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openai");
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            if let Ok(b) = std::fs::read(entry.path().join("openai_request.json")) {
                seeds.push(b);
            }
        }
        assert!(seeds.len() >= 3);
        let tokens: &[&[u8]] = &[
            b"\"stream\":true,",
            b"\"stream_options\":",
            b"\"include_usage\":",
            b"true",
            b"null",
            b"{",
            b"}",
            b"[",
            b"]",
            b",",
            b":",
            b"\"",
            b"\\",
            b"\"model\":",
            b"\"reasoning_content\":",
            b"\"thinking_blocks\":",
            b" ",
            b"1e999",
            b"-0",
            b"\\u00e9",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let mut taken = 0;
        for round in 0..20_000 {
            let mut body = seeds[round % seeds.len()].clone();
            for _ in 0..1 + next(3) {
                let at = next(body.len() + 1);
                match next(3) {
                    0 => {
                        let t = tokens[next(tokens.len())];
                        body.splice(at..at, t.iter().copied());
                    }
                    1 if at < body.len() => {
                        let end = (at + 1 + next(8)).min(body.len());
                        body.drain(at..end);
                    }
                    _ => {
                        let t = tokens[next(tokens.len())];
                        let end = (at + t.len()).min(body.len());
                        body.splice(at..end, t.iter().copied());
                    }
                }
            }
            let agreed = std::panic::catch_unwind(|| agree(&body));
            match agreed {
                Ok(Some(_)) => taken += 1,
                Ok(None) => {}
                Err(_) => panic!("disagreement on {}", String::from_utf8_lossy(&body)),
            }
        }
        // The mutations must reach the fast way often, or this tests nothing.
        assert!(
            taken > 2_000,
            "only {taken} mutated bodies took the fast way"
        );
    }
}
