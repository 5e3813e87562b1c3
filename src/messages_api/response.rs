//! A translator's OpenAI chat completion → an Anthropic Message.
//!
//! Reference: <https://docs.anthropic.com/en/api/messages> (response body). Reasoning text
//! becomes a `thinking` block (unsigned: only Anthropic signs), text a `text` block, tool
//! calls `tool_use` blocks with their arguments parsed. Usage follows Anthropic's meaning:
//! `input_tokens` excludes the cache reads and writes reported beside it.

use serde_json::Value;

use crate::usage::Usage;

/// Anthropic's `stop_reason` for an OpenAI `finish_reason`.
pub fn stop_reason(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// A tool call's `arguments` text as the `input` object (an object, whatever was sent).
fn write_tool_input(out: &mut Vec<u8>, arguments: &str) {
    let trimmed = arguments.trim();
    let is_object = trimmed.starts_with('{')
        && serde_json::from_str::<&serde_json::value::RawValue>(trimmed).is_ok();
    if is_object {
        out.extend_from_slice(trimmed.as_bytes());
    } else if trimmed.is_empty() {
        out.extend_from_slice(b"{}");
    } else {
        out.extend_from_slice(b"{\"arguments\":");
        quoted(out, arguments);
        out.push(b'}');
    }
}

fn text(x: Option<&Value>) -> &str {
    x.and_then(Value::as_str).unwrap_or("")
}

fn quoted(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}

/// The Message for a chat completion; `model` is what the client asked for. `None` when
/// the body is not a chat completion.
pub fn to_message(body: &[u8], model: &str, usage: Option<&Usage>) -> Option<Vec<u8>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let choice = v.get("choices")?.get(0)?;
    let message = choice.get("message")?;
    let id = v.get("id").and_then(Value::as_str).unwrap_or("");
    let mut out = Vec::with_capacity(body.len() + 256);
    out.extend_from_slice(b"{\"id\":");
    quoted(&mut out, &message_id(id));
    out.extend_from_slice(br#","type":"message","role":"assistant","model":"#);
    quoted(&mut out, model);
    out.extend_from_slice(br#","content":["#);
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
    };
    if let Some(r) = message
        .get("reasoning_content")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
    {
        sep(&mut out);
        out.extend_from_slice(br#"{"type":"thinking","thinking":"#);
        quoted(&mut out, r);
        out.extend_from_slice(br#","signature":""}"#);
    }
    if let Some(t) = message
        .get("content")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        sep(&mut out);
        out.extend_from_slice(br#"{"type":"text","text":"#);
        quoted(&mut out, t);
        out.push(b'}');
    }
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let f = call.get("function");
        sep(&mut out);
        out.extend_from_slice(br#"{"type":"tool_use","id":"#);
        quoted(&mut out, text(call.get("id")));
        out.extend_from_slice(br#","name":"#);
        quoted(&mut out, text(f.and_then(|f| f.get("name"))));
        out.extend_from_slice(br#","input":"#);
        write_tool_input(&mut out, text(f.and_then(|f| f.get("arguments"))));
        out.push(b'}');
    }
    let finish = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .unwrap_or("stop");
    out.extend_from_slice(br#"],"stop_reason":""#);
    out.extend_from_slice(stop_reason(finish).as_bytes());
    out.extend_from_slice(br#"","stop_sequence":null,"usage":"#);
    super::stream::write_usage(&mut out, &usage.copied().unwrap_or_default());
    out.push(b'}');
    Some(out)
}

/// An Anthropic-looking message id from the provider's completion id.
pub fn message_id(id: &str) -> String {
    let id = id.strip_prefix("chatcmpl-").unwrap_or(id);
    if id.starts_with("msg_") {
        id.to_string()
    } else {
        format!("msg_{id}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn completion_to_message() {
        let body = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt","choices":[{"index":0,"message":{"role":"assistant","content":"hi","reasoning_content":"hmm","tool_calls":[{"id":"call_1","type":"function","function":{"name":"get","arguments":"{\"a\":1}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":10,"completion_tokens":3,"total_tokens":13}}"#;
        let u = Usage {
            prompt_tokens: 10,
            completion_tokens: 3,
            cache_read_tokens: 4,
            ..Usage::default()
        };
        let m: Value =
            serde_json::from_slice(&to_message(body, "alias", Some(&u)).unwrap()).unwrap();
        assert_eq!(
            m,
            json!({"id":"msg_1","type":"message","role":"assistant","model":"alias",
              "content":[{"type":"thinking","thinking":"hmm","signature":""},{"type":"text","text":"hi"},
                {"type":"tool_use","id":"call_1","name":"get","input":{"a":1}}],
              "stop_reason":"tool_use","stop_sequence":null,
              "usage":{"input_tokens":6,"output_tokens":3,"cache_read_input_tokens":4,"cache_creation_input_tokens":0}})
        );
    }
}
