//! Response objects (<https://platform.openai.com/docs/api-reference/responses/object>):
//! written from a chat completion for the bridge, and read for usage on the way through.

use serde_json::{Map, Value};

use super::write::{key, num_field, raw_field, sep, str_field, string, value_or};
use crate::usage::Usage;

/// Writes a Response's `usage` object.
pub fn write_usage(out: &mut Vec<u8>, u: &Usage) {
    out.push(b'{');
    num_field(out, "input_tokens", u.prompt_tokens);
    key(out, "input_tokens_details");
    out.push(b'{');
    num_field(out, "cached_tokens", u.cache_read_tokens);
    out.push(b'}');
    num_field(out, "output_tokens", u.completion_tokens);
    key(out, "output_tokens_details");
    out.push(b'{');
    num_field(out, "reasoning_tokens", u.reasoning_tokens);
    out.push(b'}');
    num_field(out, "total_tokens", u.total_tokens());
    out.push(b'}');
}

/// The gateway's usage from a Response's `usage`.
pub fn usage_of(usage: &Value) -> Option<Usage> {
    let n = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
    Some(Usage {
        prompt_tokens: usage.get("input_tokens")?.as_u64()?,
        completion_tokens: n(usage.get("output_tokens")),
        cache_read_tokens: n(usage.pointer("/input_tokens_details/cached_tokens")),
        cache_write_tokens: 0,
        cache_write_1h_tokens: 0,
        reasoning_tokens: n(usage.pointer("/output_tokens_details/reasoning_tokens")),
        reported_cost_micro_usd: None,
    })
}

/// What identifies one answer: its ids derive from the chat completion's, so a Response is
/// the same for the same answer.
#[derive(Debug, Clone, Default)]
pub struct Head {
    /// `resp_...`
    pub id: String,
    /// Seconds since the epoch.
    pub created: u64,
    /// The model that answered.
    pub model: String,
}

impl Head {
    /// From a chat completion's (or chunk's) `id`, `created` and `model`.
    pub fn of(chat: &Value) -> Head {
        let raw = chat.get("id").and_then(Value::as_str).unwrap_or("gateway");
        let raw = raw.strip_prefix("chatcmpl-").unwrap_or(raw);
        let mut id = String::from("resp_");
        for b in raw.bytes().take(64) {
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
                id.push(char::from(b));
            }
        }
        Head {
            id,
            created: chat.get("created").and_then(Value::as_u64).unwrap_or(0),
            model: chat
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        }
    }

    /// The id of output item `n`, of `kind` (`msg`, `fc`, `rs`).
    pub fn item_id(&self, kind: &str, n: usize) -> String {
        let base = self.id.strip_prefix("resp_").unwrap_or(&self.id);
        format!("{kind}_{base}_{n}")
    }

    /// Writes the Response object with `status`, the `output` items (JSON text, comma
    /// separated), `usage` and, when it failed, `error` (JSON text); `echo` holds the
    /// request fields a Response repeats.
    pub fn write_response(
        &self,
        out: &mut Vec<u8>,
        status: &str,
        output: &[u8],
        usage: Option<&Usage>,
        error: Option<&[u8]>,
        echo: &Map<String, Value>,
    ) {
        out.push(b'{');
        str_field(out, "id", &self.id);
        str_field(out, "object", "response");
        num_field(out, "created_at", self.created);
        str_field(out, "status", status);
        raw_field(out, "background", "false");
        key(out, "error");
        out.extend_from_slice(error.unwrap_or(b"null"));
        let incomplete = if status == "incomplete" {
            r#"{"reason":"max_output_tokens"}"#
        } else {
            "null"
        };
        raw_field(out, "incomplete_details", incomplete);
        for (field, default) in [("instructions", "null"), ("max_output_tokens", "null")] {
            value_or(out, field, echo.get(field), default);
        }
        str_field(out, "model", &self.model);
        key(out, "output");
        out.push(b'[');
        out.extend_from_slice(output);
        out.push(b']');
        for (field, default) in [
            ("parallel_tool_calls", "true"),
            ("previous_response_id", "null"),
            ("reasoning", r#"{"effort":null,"summary":null}"#),
            ("store", "false"),
            ("temperature", "null"),
            ("text", r#"{"format":{"type":"text"}}"#),
            ("tool_choice", r#""auto""#),
            ("tools", "[]"),
            ("top_p", "null"),
            ("truncation", r#""disabled""#),
            ("user", "null"),
            ("metadata", "{}"),
        ] {
            value_or(out, field, echo.get(field), default);
        }
        key(out, "usage");
        match usage {
            Some(u) => write_usage(out, u),
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
    }
}

/// `completed`, or `incomplete` when the output limit cut the answer.
pub fn status_of(finish_reason: Option<&str>) -> &'static str {
    match finish_reason {
        Some("length") => "incomplete",
        _ => "completed",
    }
}

/// The `output_text` content part holding `text`.
pub fn write_text_part(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(br#"{"type":"output_text","annotations":[],"logprobs":[],"text":"#);
    string(out, text);
    out.push(b'}');
}

/// A message item; `text` is `None` while it is in progress (no content yet).
pub fn write_message_item(out: &mut Vec<u8>, id: &str, text: Option<&str>) {
    out.extend_from_slice(br#"{"type":"message","role":"assistant""#);
    str_field(out, "id", id);
    str_field(
        out,
        "status",
        if text.is_some() {
            "completed"
        } else {
            "in_progress"
        },
    );
    key(out, "content");
    out.push(b'[');
    if let Some(t) = text {
        write_text_part(out, t);
    }
    out.extend_from_slice(b"]}");
}

/// A function call item; `arguments` is `None` while it is in progress.
pub fn write_call_item(
    out: &mut Vec<u8>,
    id: &str,
    call_id: &str,
    name: &str,
    arguments: Option<&str>,
) {
    out.extend_from_slice(br#"{"type":"function_call""#);
    str_field(out, "id", id);
    str_field(out, "call_id", call_id);
    str_field(out, "name", name);
    str_field(out, "arguments", arguments.unwrap_or(""));
    str_field(
        out,
        "status",
        if arguments.is_some() {
            "completed"
        } else {
            "in_progress"
        },
    );
    out.push(b'}');
}

/// A reasoning item holding the provider's reasoning text (`None`: in progress).
pub fn write_reasoning_item(out: &mut Vec<u8>, id: &str, text: Option<&str>) {
    out.extend_from_slice(br#"{"type":"reasoning","summary":[]"#);
    str_field(out, "id", id);
    if let Some(t) = text {
        out.extend_from_slice(br#","content":[{"type":"reasoning_text","text":"#);
        string(out, t);
        out.extend_from_slice(b"}]");
    }
    out.push(b'}');
}

fn text_of(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// A chat completion (as the chat translators write it) as a Response object.
pub fn from_chat_completion(
    chat: &Value,
    usage: Option<&Usage>,
    echo: &Map<String, Value>,
) -> Vec<u8> {
    let head = Head::of(chat);
    let choice = chat.pointer("/choices/0");
    let message = choice.and_then(|c| c.get("message"));
    let mut output = Vec::with_capacity(512);
    let mut n = 0;
    if let Some(r) = text_of(message.and_then(|m| m.get("reasoning_content"))) {
        write_reasoning_item(&mut output, &head.item_id("rs", n), Some(r));
        n += 1;
    }
    if let Some(t) = text_of(message.and_then(|m| m.get("content"))) {
        sep(&mut output);
        write_message_item(&mut output, &head.item_id("msg", n), Some(t));
        n += 1;
    }
    let calls = message
        .and_then(|m| m.get("tool_calls"))
        .and_then(Value::as_array);
    for c in calls.into_iter().flatten() {
        let text = |p: &str| c.pointer(p).and_then(Value::as_str);
        sep(&mut output);
        write_call_item(
            &mut output,
            &head.item_id("fc", n),
            text("/id").unwrap_or_default(),
            text("/function/name").unwrap_or_default(),
            Some(text("/function/arguments").unwrap_or("{}")),
        );
        n += 1;
    }
    let finish = choice
        .and_then(|c| c.get("finish_reason"))
        .and_then(Value::as_str);
    let mut out = Vec::with_capacity(output.len() + 1024);
    head.write_response(&mut out, status_of(finish), &output, usage, None, echo);
    out
}
