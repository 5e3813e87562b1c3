//! OpenAI streamed chat completion chunks (`chat.completion.chunk`).
//!
//! Reference: <https://platform.openai.com/docs/api-reference/chat-streaming>.

use serde::Serialize;

use super::chat::UsageBody;
use crate::bytes::find;
use crate::error::GatewayError;
use crate::sse::last_events;

/// The line that ends every OpenAI stream.
pub const DONE_EVENT: &[u8] = b"data: [DONE]\n\n";

/// The `object` of every chunk.
pub const CHUNK_OBJECT: &str = "chat.completion.chunk";

/// What one chunk adds, borrowed from the translator's state and the provider's event
/// (nothing is copied just to be written); the default is the empty delta `{}`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct DeltaRef<'a> {
    /// `assistant`, first chunk only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'a str>,
    /// Text fragment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a str>,
    /// Reasoning fragment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<&'a str>,
    /// Complete signed reasoning blocks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking_blocks: Option<&'a [ThinkingBlockRef<'a>]>,
    /// Tool-call fragments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<&'a [ToolCallDeltaRef<'a>]>,
}

/// A complete signed reasoning block ([`super::chat::ThinkingBlock`]'s wire form).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ThinkingBlockRef<'a> {
    /// `thinking` or `redacted_thinking`.
    #[serde(rename = "type")]
    pub kind: &'a str,
    /// The full reasoning text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking: Option<&'a str>,
    /// The provider's signature over the block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<&'a str>,
    /// Encrypted payload of a redacted block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<&'a str>,
}

/// A fragment of one tool call; `id`, `type` and `name` come only in its first fragment.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ToolCallDeltaRef<'a> {
    /// Which call of this turn (0, 1, ...).
    pub index: u32,
    /// Call id, first fragment only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    /// `function`, first fragment only.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'a str>,
    /// Name (first fragment) and argument text.
    pub function: FunctionDeltaRef<'a>,
}

/// Function part of a tool-call fragment.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FunctionDeltaRef<'a> {
    /// Function name, first fragment only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    /// A piece of the JSON argument string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<&'a str>,
}

/// The writer of every `chat.completion.chunk` the gateway makes. It holds the bytes every
/// chunk of one stream starts with, `data: {"id":...,"object":...,"created":...,"model":...,
/// "choices":[`, serialized once per stream instead of once per event. What it writes is
/// byte for byte what serde writes for the same chunk (checked by the tests).
#[derive(Debug, Clone, Default)]
pub struct ChunkHead {
    bytes: Vec<u8>,
}

impl ChunkHead {
    /// The head of chunks with this id, creation time and model.
    pub fn new(id: &str, created: u64, model: &str) -> ChunkHead {
        let mut head = ChunkHead::default();
        head.set(id, created, model);
        head
    }

    /// Rewrites the head in place (the model can change mid-stream).
    pub fn set(&mut self, id: &str, created: u64, model: &str) {
        let b = &mut self.bytes;
        b.clear();
        b.extend_from_slice(b"data: {\"id\":");
        // Writing plain data into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *b, id);
        b.extend_from_slice(b",\"object\":");
        let _ = serde_json::to_writer(&mut *b, CHUNK_OBJECT);
        b.extend_from_slice(b",\"created\":");
        let _ = serde_json::to_writer(&mut *b, &created);
        b.extend_from_slice(b",\"model\":");
        let _ = serde_json::to_writer(&mut *b, model);
        b.extend_from_slice(b",\"choices\":[");
    }

    /// Appends the chunk with one choice: `index`, `delta` and `finish_reason`.
    pub fn write_choice(
        &self,
        out: &mut Vec<u8>,
        index: u32,
        delta: &DeltaRef<'_>,
        finish_reason: Option<&str>,
    ) {
        out.extend_from_slice(&self.bytes);
        out.extend_from_slice(b"{\"index\":");
        let _ = serde_json::to_writer(&mut *out, &index);
        out.extend_from_slice(b",\"delta\":");
        write_delta(out, delta);
        match finish_reason {
            None => out.extend_from_slice(b",\"finish_reason\":null}]}\n\n"),
            Some(reason) => {
                out.extend_from_slice(b",\"finish_reason\":");
                let _ = serde_json::to_writer(&mut *out, reason);
                out.extend_from_slice(b"}]}\n\n");
            }
        }
    }

    /// Appends the usage chunk: no choices, and `usage`.
    pub fn write_usage(&self, out: &mut Vec<u8>, usage: &UsageBody) {
        out.extend_from_slice(&self.bytes);
        out.extend_from_slice(b"],\"usage\":");
        let _ = serde_json::to_writer(&mut *out, usage);
        out.extend_from_slice(b"}\n\n");
    }
}

/// Writes `delta` as its `Serialize` does; the text-only deltas of nearly every chunk
/// without going through a serializer per field.
fn write_delta(out: &mut Vec<u8>, delta: &DeltaRef<'_>) {
    if delta.thinking_blocks.is_some() || delta.tool_calls.is_some() {
        let _ = serde_json::to_writer(&mut *out, delta);
        return;
    }
    let fields = [
        (&b"\"role\":"[..], delta.role),
        (b"\"content\":", delta.content),
        (b"\"reasoning_content\":", delta.reasoning_content),
    ];
    let mut separator = b'{';
    for (key, value) in fields {
        if let Some(text) = value {
            out.push(separator);
            separator = b',';
            out.extend_from_slice(key);
            let _ = serde_json::to_writer(&mut *out, text);
        }
    }
    if separator == b'{' {
        out.push(b'{');
    }
    out.push(b'}');
}

/// Appends an in-stream error event `data: {"error": {...}}\n\n`: once the 200 and its
/// headers are sent this is the only way to report a failure, and the OpenAI SDKs raise on
/// a data payload with an `error` key.
pub fn write_error_event(out: &mut Vec<u8>, error: &GatewayError) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&error.to_json());
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chunk with every kind of delta field, escapes included, reads back as OpenAI's shape.
    #[test]
    fn chunks_have_openais_shape() {
        let calls = [ToolCallDeltaRef {
            index: 1,
            id: Some("toolu_1"),
            kind: Some("function"),
            function: FunctionDeltaRef {
                name: Some("f"),
                arguments: Some(""),
            },
        }];
        let blocks = [ThinkingBlockRef {
            kind: "thinking",
            thinking: Some("t"),
            signature: Some("s"),
            data: None,
        }];
        let delta = DeltaRef {
            role: Some("assistant"),
            content: Some("c\"\n"),
            reasoning_content: Some("r"),
            thinking_blocks: Some(&blocks),
            tool_calls: Some(&calls),
        };
        let mut out = Vec::new();
        ChunkHead::new("chatcmpl-1", 7, "m").write_choice(&mut out, 0, &delta, Some("stop"));
        let json = out
            .strip_prefix(b"data: ")
            .and_then(|r| r.strip_suffix(b"\n\n"))
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(json).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "id": "chatcmpl-1",
                "object": CHUNK_OBJECT,
                "created": 7,
                "model": "m",
                "choices": [{
                    "index": 0,
                    "delta": {
                        "role": "assistant",
                        "content": "c\"\n",
                        "reasoning_content": "r",
                        "thinking_blocks": [{"type": "thinking", "thinking": "t", "signature": "s"}],
                        "tool_calls": [{
                            "index": 1,
                            "id": "toolu_1",
                            "type": "function",
                            "function": {"name": "f", "arguments": ""}
                        }]
                    },
                    "finish_reason": "stop"
                }]
            })
        );
        // The empty delta is `{}`.
        assert_eq!(serde_json::to_string(&DeltaRef::default()).unwrap(), "{}");
    }
}

/// Who answered a streamed request, and at what cost: added to the usage chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerMeta<'a> {
    /// Provider that answered.
    pub provider: &'a str,
    /// Provider's model that answered.
    pub upstream_model: &'a str,
    /// Deployment id that answered.
    pub deployment: &'a str,
    /// Envoy attempts it took.
    pub attempts: u64,
    /// Cost in micro-USD; `None` when the model is unpriced.
    pub cost_micro_usd: Option<u64>,
}

/// Adds the gateway's metadata to the usage chunk in `out` (a `data:` event whose
/// `choices` is empty and which carries `usage`): `usage.cost_usd` and an `llm_gateway`
/// object with provider, model, deployment and attempts. The OpenAI SDK keeps unknown
/// fields, so clients can read them. Other events are left byte for byte. Returns whether
/// a usage chunk was found.
///
/// The usage chunk is a stream's last chunk, so only the last two events of a piece are
/// looked at (it may be followed by `[DONE]`): a long stream's text is not scanned again
/// for every piece.
pub fn annotate_usage_chunk(out: &mut Vec<u8>, meta: &AnswerMeta<'_>) -> bool {
    let tail = last_events(out, 2);
    // Cheap test first: most pieces of a stream carry no usage at all.
    if find(tail, b"\"usage\"").is_none() {
        return false;
    }
    let head_len = out.len().saturating_sub(tail.len());
    let mut rewritten: Vec<u8> = Vec::with_capacity(out.len() + 160);
    rewritten.extend_from_slice(out.get(..head_len).unwrap_or_default());
    let mut found = false;
    let mut rest: &[u8] = tail;
    while !rest.is_empty() {
        let (event, next) = match find(rest, b"\n\n") {
            Some(i) => rest.split_at_checked(i + 2).unwrap_or((rest, &[])),
            None => (rest, &[][..]),
        };
        match annotate_event(event, meta) {
            Some(new_event) if !found => {
                rewritten.extend_from_slice(&new_event);
                found = true;
            }
            _ => rewritten.extend_from_slice(event),
        }
        rest = next;
    }
    if found {
        *out = rewritten;
    }
    found
}

/// The annotated form of one `data: {...}\n\n` event, if it is the usage chunk.
fn annotate_event(event: &[u8], meta: &AnswerMeta<'_>) -> Option<Vec<u8>> {
    let json = event.strip_prefix(b"data: ")?.strip_suffix(b"\n\n")?;
    find(json, b"\"usage\"")?;
    let serde_json::Value::Object(mut chunk) = serde_json::from_slice(json).ok()? else {
        return None;
    };
    let empty_choices = chunk
        .get("choices")
        .and_then(|c| c.as_array())
        .is_some_and(|c| c.is_empty());
    if !empty_choices {
        return None;
    }
    let serde_json::Value::Object(usage) = chunk.get_mut("usage")? else {
        return None;
    };
    if let Some(c) = meta.cost_micro_usd {
        if let Some(n) = serde_json::Number::from_f64(c as f64 / 1_000_000.0) {
            usage.insert("cost_usd".into(), serde_json::Value::Number(n));
        }
    }
    chunk.insert(
        "llm_gateway".into(),
        serde_json::json!({
            "provider": meta.provider,
            "model": meta.upstream_model,
            "deployment": meta.deployment,
            "attempts": meta.attempts,
            "cost_usd": meta.cost_micro_usd.map(|c| c as f64 / 1_000_000.0),
        }),
    );
    let encoded = serde_json::to_vec(&chunk).ok()?;
    let mut e = Vec::with_capacity(encoded.len() + 8);
    e.extend_from_slice(b"data: ");
    e.extend_from_slice(&encoded);
    e.extend_from_slice(b"\n\n");
    Some(e)
}

#[cfg(test)]
mod head_tests {
    use super::*;

    /// The oracle: a chunk as serde writes it, which the head must match byte for byte.
    #[derive(Serialize)]
    struct ChunkRef<'a> {
        id: &'a str,
        object: &'a str,
        created: u64,
        model: &'a str,
        choices: &'a [ChoiceRef<'a>],
        #[serde(skip_serializing_if = "Option::is_none")]
        usage: Option<&'a UsageBody>,
    }

    #[derive(Serialize)]
    struct ChoiceRef<'a> {
        index: u32,
        delta: DeltaRef<'a>,
        finish_reason: Option<&'a str>,
    }

    fn write_chunk_ref(out: &mut Vec<u8>, chunk: &ChunkRef<'_>) {
        out.extend_from_slice(b"data: ");
        serde_json::to_writer(&mut *out, chunk).unwrap();
        out.extend_from_slice(b"\n\n");
    }

    /// The cached head writes what serde writes for the chunk, escapes and usage included.
    #[test]
    fn head_matches_chunk_ref() {
        let usage = UsageBody {
            prompt_tokens: 3,
            completion_tokens: 4,
            total_tokens: 7,
            ..UsageBody::default()
        };
        for (id, model) in [("chatcmpl-\"x\\\n\u{1}", "m\u{e9}\u{7f}"), ("", "")] {
            for created in [0, u64::MAX] {
                let mut head = ChunkHead::new("old", 1, "old");
                head.set(id, created, model);
                let calls = [ToolCallDeltaRef {
                    index: 1,
                    id: None,
                    kind: None,
                    function: FunctionDeltaRef {
                        name: None,
                        arguments: Some("{\"a"),
                    },
                }];
                let deltas = [
                    DeltaRef::default(),
                    DeltaRef {
                        content: Some("a\"b\n\u{2028}"),
                        ..DeltaRef::default()
                    },
                    DeltaRef {
                        role: Some("assistant"),
                        content: Some(""),
                        ..DeltaRef::default()
                    },
                    DeltaRef {
                        reasoning_content: Some("\\r"),
                        ..DeltaRef::default()
                    },
                    DeltaRef {
                        role: Some("r"),
                        reasoning_content: Some("x"),
                        ..DeltaRef::default()
                    },
                    DeltaRef {
                        tool_calls: Some(&calls),
                        ..DeltaRef::default()
                    },
                ];
                let cases = [(0, None), (3, Some("length")), (u32::MAX, Some("\""))];
                for ((index, finish), delta) in cases.into_iter().cycle().zip(deltas) {
                    let choices = [ChoiceRef {
                        index,
                        delta,
                        finish_reason: finish,
                    }];
                    let chunk = ChunkRef {
                        id,
                        object: CHUNK_OBJECT,
                        created,
                        model,
                        choices: &choices,
                        usage: None,
                    };
                    let (mut a, mut b) = (Vec::new(), Vec::new());
                    write_chunk_ref(&mut a, &chunk);
                    head.write_choice(&mut b, index, &delta, finish);
                    assert_eq!(a, b);
                }
                let chunk = ChunkRef {
                    id,
                    object: CHUNK_OBJECT,
                    created,
                    model,
                    choices: &[],
                    usage: Some(&usage),
                };
                let (mut a, mut b) = (Vec::new(), Vec::new());
                write_chunk_ref(&mut a, &chunk);
                head.write_usage(&mut b, &usage);
                assert_eq!(a, b);
            }
        }
    }
}

#[cfg(test)]
mod annotate_tests {
    use super::*;

    fn meta(cost: Option<u64>) -> AnswerMeta<'static> {
        AnswerMeta {
            provider: "anthropic",
            upstream_model: "claude-sonnet-4-5",
            deployment: "claude",
            attempts: 2,
            cost_micro_usd: cost,
        }
    }

    /// The usage chunk gains cost and metadata; other events are untouched.
    #[test]
    fn annotates_the_usage_chunk() {
        let mut out = b"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: {\"id\":\"x\",\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}}\n\ndata: [DONE]\n\n".to_vec();
        assert!(annotate_usage_chunk(&mut out, &meta(Some(126))));
        let text = String::from_utf8(out).unwrap();
        let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 3);
        assert!(events[0].contains("finish_reason"));
        let v: serde_json::Value =
            crate::json::path::from_str(events[1].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(v["usage"]["cost_usd"], 0.000126);
        assert_eq!(v["usage"]["total_tokens"], 3);
        assert_eq!(v["llm_gateway"]["attempts"], 2);
        assert_eq!(v["llm_gateway"]["provider"], "anthropic");
        assert_eq!(events[2], "data: [DONE]");
    }

    /// The usage chunk is found even when `[DONE]` comes in a later piece.
    #[test]
    fn annotates_without_done() {
        let mut out = b"data: {\"id\":\"x\",\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}}\n\n".to_vec();
        assert!(annotate_usage_chunk(&mut out, &meta(Some(6))));
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("data: {") && text.ends_with("}\n\n"),
            "{text}"
        );
        assert!(
            text.contains("\"cost_usd\":6e-6") || text.contains("\"cost_usd\":0.000006"),
            "{text}"
        );
    }

    /// Only a piece's last two events are looked at; what comes before stays byte for byte.
    #[test]
    fn annotates_only_at_the_end_of_a_piece() {
        let usage = "data: {\"id\":\"x\",\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}}\n\n";
        let content = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n";
        let before = content.repeat(3);
        let mut out = format!("{before}{usage}data: [DONE]\n\n").into_bytes();
        assert!(annotate_usage_chunk(&mut out, &meta(Some(6))));
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(&before), "{text}");
        assert!(text.contains("\"llm_gateway\""), "{text}");
        assert!(text.ends_with("}\n\ndata: [DONE]\n\n"), "{text}");
        // A usage chunk with two events after it is not the stream's last chunk.
        let original = format!("{usage}{content}{content}").into_bytes();
        let mut out = original.clone();
        assert!(!annotate_usage_chunk(&mut out, &meta(Some(6))));
        assert_eq!(out, original);
    }

    /// A content chunk that happens to carry usage (some servers do) is not the usage chunk.
    #[test]
    fn ignores_usage_on_content_chunks() {
        let original = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}],\"usage\":{\"prompt_tokens\":1}}\n\n".to_vec();
        let mut out = original.clone();
        assert!(!annotate_usage_chunk(&mut out, &meta(None)));
        assert_eq!(out, original);
    }

    /// Without a usage chunk (the client did not ask) nothing changes.
    #[test]
    fn leaves_streams_without_usage_alone() {
        let original = b"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n".to_vec();
        let mut out = original.clone();
        assert!(!annotate_usage_chunk(&mut out, &meta(None)));
        assert_eq!(out, original);
        let mut out = b"data: [DONE]\n\n".to_vec();
        assert!(!annotate_usage_chunk(&mut out, &meta(None)));
    }
}
