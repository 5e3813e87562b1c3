//! An Anthropic Messages request: checked once, passed through with `model` rewritten, or
//! turned into the OpenAI chat request the provider translators take.
//!
//! Reference: <https://docs.anthropic.com/en/api/messages> (request body). The mapping to
//! Chat Completions: `system` → a system message; `text` and `image` blocks → parts;
//! `tool_use` → `tool_calls`; `tool_result` → `tool` messages; custom tools → function
//! tools; `tool_choice` `auto`/`any`/`none`/`tool`; `stop_sequences` → `stop`;
//! `thinking` → `reasoning_effort`. Thinking blocks of earlier turns carry Anthropic's
//! signatures, which no other provider can check: they are left out. Prompt caching
//! marks, `top_k`, `metadata`, `service_tier` and other Anthropic-only controls have no
//! Chat Completions equivalent and are left out too. Server tools (web search, code
//! execution, ...) and `document` blocks run only at Anthropic: a 400 names them.

use serde_json::Value;

use crate::error::GatewayError;
use crate::json::scan::Scan;
use crate::openai::ChatRequest;

/// Checks the fields every Messages request needs and returns the body as a value.
pub fn parse(body: &[u8], count_tokens: bool) -> Result<Value, GatewayError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        GatewayError::invalid_request(format!("request body is not valid JSON: {e}"))
    })?;
    let Some(o) = v.as_object() else {
        return Err(GatewayError::invalid_request(
            "request body must be a JSON object with `model`, `messages` and `max_tokens`",
        ));
    };
    match o.get("model") {
        Some(Value::String(m)) if !m.is_empty() => {}
        _ => {
            return Err(GatewayError::invalid_param(
                "model",
                "`model` is required: name one of the models listed by GET /v1/models",
            ))
        }
    }
    match o.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => {}
        _ => {
            return Err(GatewayError::invalid_param(
                "messages",
                "`messages` must be a non-empty array",
            ))
        }
    }
    let max_tokens = o.get("max_tokens").and_then(Value::as_u64).unwrap_or(0);
    if !count_tokens && max_tokens == 0 {
        return Err(GatewayError::invalid_param(
            "max_tokens",
            "`max_tokens` is required: a positive integer",
        ));
    }
    Ok(v)
}

/// The chat request the downstream instance routes and accounts by. Lenient: what has no
/// Chat Completions form is left out (it still counts through the body's length).
pub fn to_chat_request(v: &Value) -> Result<ChatRequest, GatewayError> {
    let bytes = to_chat(v, false)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        GatewayError::invalid_request(format!("request body is not a valid Messages request: {e}"))
    })
}

/// The OpenAI chat body for a provider that does not speak Messages; refuses (400, naming
/// the field) what that provider could not honour.
pub fn to_chat_body(body: &[u8]) -> Result<Vec<u8>, GatewayError> {
    let v = parse(body, false)?;
    to_chat(&v, true)
}

fn refuse(param: String, what: &str) -> GatewayError {
    GatewayError::invalid_param(
        param.clone(),
        format!("{param}: {what} runs only on Anthropic deployments; this model is served by another provider"),
    )
}

/// Appends a JSON value (a string is quoted and escaped).
fn put<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let _ = serde_json::to_writer(&mut *out, value);
}

/// Appends `"name":`, after a comma unless it opens the object.
fn key(out: &mut Vec<u8>, name: &str) {
    if out.last() != Some(&b'{') {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

fn text_of(v: Option<&Value>) -> &str {
    v.and_then(Value::as_str).unwrap_or("")
}

/// The Anthropic request `v` as an OpenAI chat request body (strict: refuse what cannot
/// map). Written as text straight away: no second value tree is built.
pub fn to_chat(v: &Value, strict: bool) -> Result<Vec<u8>, GatewayError> {
    let mut out = Vec::with_capacity(1024);
    out.push(b'{');
    key(&mut out, "model");
    put(&mut out, text_of(v.get("model")));
    key(&mut out, "messages");
    out.push(b'[');
    let mut count = 0usize;
    let system = |out: &mut Vec<u8>, text: &str| {
        out.extend_from_slice(br#"{"role":"system","content":"#);
        put(out, text);
        out.push(b'}');
    };
    match v.get("system") {
        Some(Value::String(s)) => {
            system(&mut out, s);
            count += 1;
        }
        Some(Value::Array(blocks)) => {
            let text: Vec<&str> = blocks.iter().map(|b| text_of(b.get("text"))).collect();
            system(&mut out, &text.join("\n"));
            count += 1;
        }
        _ => {}
    }
    let list = v.get("messages").and_then(Value::as_array);
    for (i, m) in list.into_iter().flatten().enumerate() {
        let role = text_of(m.get("role"));
        if !matches!(role, "user" | "assistant" | "system") {
            return Err(GatewayError::invalid_param(
                format!("messages[{i}].role"),
                "`role` must be `user`, `assistant` or `system`",
            ));
        }
        match m.get("content") {
            // Instructions between turns (Claude Code sends them): a system message.
            Some(Value::Array(blocks)) if role == "system" => {
                let text: Vec<&str> = blocks.iter().map(|b| text_of(b.get("text"))).collect();
                if count > 0 {
                    out.push(b',');
                }
                count += 1;
                system(&mut out, &text.join("\n"));
            }
            Some(Value::String(text)) => {
                if count > 0 {
                    out.push(b',');
                }
                count += 1;
                out.extend_from_slice(b"{\"role\":");
                put(&mut out, role);
                out.extend_from_slice(b",\"content\":");
                put(&mut out, text);
                out.push(b'}');
            }
            Some(Value::Array(blocks)) => {
                count += message_blocks(i, role, blocks, strict, count > 0, &mut out)?;
            }
            _ => {
                return Err(GatewayError::invalid_param(
                    format!("messages[{i}].content"),
                    "`content` must be a string or an array of content blocks",
                ))
            }
        }
    }
    out.push(b']');
    for (from, to) in [
        ("max_tokens", "max_tokens"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("stop_sequences", "stop"),
    ] {
        if let Some(x) = v.get(from).filter(|x| x.is_number() || x.is_array()) {
            key(&mut out, to);
            put(&mut out, x);
        }
    }
    if is_stream(v) {
        out.extend_from_slice(br#","stream":true,"stream_options":{"include_usage":true}"#);
    }
    if let Some(effort) = reasoning_effort(v.get("thinking")) {
        key(&mut out, "reasoning_effort");
        put(&mut out, effort);
    }
    let mut tools = 0usize;
    for (i, t) in v
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let kind = t.get("type").and_then(Value::as_str).unwrap_or("custom");
        if kind != "custom" {
            if strict {
                return Err(refuse(
                    format!("tools[{i}]"),
                    &format!("the server tool `{kind}`"),
                ));
            }
            continue;
        }
        out.extend_from_slice(if tools == 0 { b",\"tools\":[" } else { b"," });
        tools += 1;
        out.extend_from_slice(br#"{"type":"function","function":{"name":"#);
        put(&mut out, text_of(t.get("name")));
        if let Some(d) = t.get("description").and_then(Value::as_str) {
            key(&mut out, "description");
            put(&mut out, d);
        }
        key(&mut out, "parameters");
        match t.get("input_schema") {
            Some(schema) => put(&mut out, schema),
            None => out.extend_from_slice(br#"{"type":"object"}"#),
        }
        out.extend_from_slice(b"}}");
    }
    if tools > 0 {
        out.push(b']');
        if let Some(choice) = v.get("tool_choice") {
            key(&mut out, "tool_choice");
            match text_of(choice.get("type")) {
                "any" => out.extend_from_slice(br#""required""#),
                "none" => out.extend_from_slice(br#""none""#),
                "tool" => {
                    out.extend_from_slice(br#"{"type":"function","function":{"name":"#);
                    put(&mut out, text_of(choice.get("name")));
                    out.extend_from_slice(b"}}");
                }
                _ => out.extend_from_slice(br#""auto""#),
            }
            if choice
                .get("disable_parallel_tool_use")
                .and_then(Value::as_bool)
                == Some(true)
            {
                out.extend_from_slice(br#","parallel_tool_calls":false"#);
            }
        }
    }
    out.push(b'}');
    Ok(out)
}

/// Anthropic's thinking budget as an OpenAI reasoning effort.
fn reasoning_effort(thinking: Option<&Value>) -> Option<&'static str> {
    let t = thinking?;
    match t.get("type").and_then(Value::as_str)? {
        "enabled" => Some(
            match t.get("budget_tokens").and_then(Value::as_u64).unwrap_or(0) {
                0..=4095 => "low",
                4096..=16383 => "medium",
                _ => "high",
            },
        ),
        "adaptive" => Some("medium"),
        _ => None,
    }
}

/// One message's blocks: `tool` messages for its tool results (first: they answer the
/// previous assistant turn), then one chat message with its text, images and tool calls.
/// Returns how many messages were written; `comma` when one precedes them.
fn message_blocks(
    i: usize,
    role: &str,
    blocks: &[Value],
    strict: bool,
    mut comma: bool,
    out: &mut Vec<u8>,
) -> Result<usize, GatewayError> {
    let mut written = 0;
    let mut texts: Vec<&str> = Vec::new();
    let mut images: Vec<String> = Vec::new();
    let mut calls: Vec<&Value> = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let kind = text_of(b.get("type"));
        let at = || format!("messages[{i}].content[{j}]");
        match kind {
            "text" => texts.push(text_of(b.get("text"))),
            "image" if role == "user" => match image_url(b.get("source")) {
                Some(url) => images.push(url),
                None if strict => return Err(refuse(at(), "this image source")),
                None => {}
            },
            "tool_use" if role == "assistant" => calls.push(b),
            "tool_result" if role == "user" => {
                let mut content = match b.get("content") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(items)) => items
                        .iter()
                        .filter_map(|x| x.get("text").and_then(Value::as_str))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    _ => String::new(),
                };
                if b.get("is_error").and_then(Value::as_bool) == Some(true) {
                    content.insert_str(0, "Error: ");
                }
                if std::mem::replace(&mut comma, true) {
                    out.push(b',');
                }
                written += 1;
                out.extend_from_slice(br#"{"role":"tool","tool_call_id":"#);
                put(out, text_of(b.get("tool_use_id")));
                out.extend_from_slice(b",\"content\":");
                put(out, &content);
                out.push(b'}');
            }
            // Signed by Anthropic; no other provider can take them back.
            "thinking" | "redacted_thinking" => {}
            other if strict => {
                return Err(refuse(at(), &format!("the `{other}` content block")));
            }
            _ => {}
        }
    }
    if texts.is_empty() && images.is_empty() && calls.is_empty() {
        return Ok(written);
    }
    if comma {
        out.push(b',');
    }
    out.extend_from_slice(b"{\"role\":");
    put(out, role);
    out.extend_from_slice(b",\"content\":");
    if images.is_empty() {
        if texts.is_empty() {
            out.extend_from_slice(b"null");
        } else {
            put(out, &texts.concat());
        }
    } else {
        out.push(b'[');
        for (n, t) in texts.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            out.extend_from_slice(br#"{"type":"text","text":"#);
            put(out, t);
            out.push(b'}');
        }
        for (n, url) in images.iter().enumerate() {
            if n > 0 || !texts.is_empty() {
                out.push(b',');
            }
            out.extend_from_slice(br#"{"type":"image_url","image_url":{"url":"#);
            put(out, url);
            out.extend_from_slice(b"}}");
        }
        out.push(b']');
    }
    if !calls.is_empty() {
        out.extend_from_slice(b",\"tool_calls\":[");
        for (n, c) in calls.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"id\":");
            put(out, text_of(c.get("id")));
            out.extend_from_slice(br#","type":"function","function":{"name":"#);
            put(out, text_of(c.get("name")));
            out.extend_from_slice(b",\"arguments\":");
            let arguments = match c.get("input") {
                Some(input) => serde_json::to_string(input).unwrap_or_default(),
                None => "{}".to_string(),
            };
            put(out, &arguments);
            out.extend_from_slice(b"}}");
        }
        out.push(b']');
    }
    out.push(b'}');
    Ok(written + 1)
}

/// An image block's source as a URL (`data:` for base64).
fn image_url(source: Option<&Value>) -> Option<String> {
    let s = source?;
    match s.get("type").and_then(Value::as_str)? {
        "base64" => Some(format!(
            "data:{};base64,{}",
            s.get("media_type").and_then(Value::as_str)?,
            s.get("data").and_then(Value::as_str)?
        )),
        "url" => s.get("url").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

/// The body with its top-level `model` set to `model`, every other byte kept; `None` when
/// the body is not a JSON object with a `model`.
pub fn rewrite_model(body: &[u8], model: &str) -> Option<Vec<u8>> {
    let mut scan = Scan::new(body);
    let mut span = None;
    scan.object(|scan, key| {
        scan.space();
        let start = scan.at;
        scan.skip_value()?;
        if key == b"model" {
            span = Some((start, scan.at));
        }
        Some(())
    });
    let (start, end) = match span {
        Some(s) => s,
        None => {
            // Keys with escapes and other bodies the scanner refuses: the general way.
            let mut v: Value = serde_json::from_slice(body).ok()?;
            v.as_object_mut()?
                .insert("model".into(), Value::String(model.into()));
            return serde_json::to_vec(&v).ok();
        }
    };
    let quoted = serde_json::to_vec(model).ok()?;
    let mut out = Vec::with_capacity(body.len() + quoted.len());
    out.extend_from_slice(body.get(..start)?);
    out.extend_from_slice(&quoted);
    out.extend_from_slice(body.get(end..)?);
    Some(out)
}

/// The body without `model` (and the members in `drop`) and with `anthropic_version` set
/// to `version`, as Claude on Vertex AI and Bedrock take it (the model is in the path);
/// `None` when the body is not a JSON object.
pub fn model_to_version(body: &[u8], version: &str, drop: &[&str]) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let object = v.as_object_mut()?;
    object.remove("model");
    for name in drop {
        object.remove(*name);
    }
    object.insert("anthropic_version".into(), Value::String(version.into()));
    serde_json::to_vec(&v).ok()
}

/// Whether the request asks for a stream.
pub fn is_stream(v: &Value) -> bool {
    v.get("stream").and_then(Value::as_bool) == Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn model_rewritten_everything_else_kept() {
        let body = br#"{"model" : "claude-alias","messages":[{"role":"user","content":[{"type":"text","text":"hi","cache_control":{"type":"ephemeral"}}]}],"thinking":{"type":"enabled","budget_tokens":1024},"max_tokens":9}"#;
        let out = rewrite_model(body, "claude-sonnet-4-5").unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            String::from_utf8_lossy(body).replace("\"claude-alias\"", "\"claude-sonnet-4-5\"")
        );
    }

    #[test]
    fn maps_to_chat() {
        let body = br#"{"model":"m","max_tokens":100,"system":[{"type":"text","text":"be brief"}],
          "messages":[{"role":"user","content":"weather?"},
            {"role":"assistant","content":[{"type":"thinking","thinking":"t","signature":"s"},{"type":"text","text":"calling"},{"type":"tool_use","id":"toolu_1","name":"get","input":{"city":"Paris"}}]},
            {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"sunny"}]},{"type":"text","text":"thanks"}]}],
          "tools":[{"name":"get","description":"d","input_schema":{"type":"object"}}],
          "tool_choice":{"type":"any","disable_parallel_tool_use":true},
          "stop_sequences":["X"],"stream":true,"thinking":{"type":"enabled","budget_tokens":10000},"top_k":5}"#;
        let chat: Value = serde_json::from_slice(&to_chat_body(body).unwrap()).unwrap();
        assert_eq!(
            chat,
            json!({"model":"m","max_tokens":100,"stop":["X"],"stream":true,"stream_options":{"include_usage":true},
              "reasoning_effort":"medium","tool_choice":"required","parallel_tool_calls":false,
              "tools":[{"type":"function","function":{"name":"get","description":"d","parameters":{"type":"object"}}}],
              "messages":[{"role":"system","content":"be brief"},{"role":"user","content":"weather?"},
                {"role":"assistant","content":"calling","tool_calls":[{"id":"toolu_1","type":"function","function":{"name":"get","arguments":"{\"city\":\"Paris\"}"}}]},
                {"role":"tool","tool_call_id":"toolu_1","content":"sunny"},{"role":"user","content":"thanks"}]})
        );
        crate::request::parse_chat_request(&serde_json::to_vec(&chat).unwrap()).unwrap();
    }

    #[test]
    fn refusals_name_the_field() {
        let server_tool = br#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"}],"tools":[{"type":"web_search_20250305","name":"web_search"}]}"#;
        let e = to_chat_body(server_tool).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("tools[0]"));
        // Lenient for routing and accounting.
        let v = parse(server_tool, false).unwrap();
        assert!(to_chat_request(&v).is_ok());
        let tools = br#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],"tools":[{"name":"t","input_schema":{"type":"object","properties":{}}}]}"#;
        let chat = to_chat_request(&parse(tools, false).unwrap()).unwrap();
        assert_eq!(
            chat.tools.unwrap()[0]
                .function
                .parameters
                .as_ref()
                .unwrap()
                .get(),
            r#"{"properties":{},"type":"object"}"#
        );
        let mid_system = br#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"},{"role":"system","content":"be kind"},{"role":"system","content":[{"type":"text","text":"and brief"}]}]}"#;
        let chat: Value = serde_json::from_slice(&to_chat_body(mid_system).unwrap()).unwrap();
        assert_eq!(
            chat["messages"][1],
            json!({"role":"system","content":"be kind"})
        );
        assert_eq!(
            chat["messages"][2],
            json!({"role":"system","content":"and brief"})
        );
        let e = parse(
            br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
            false,
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("max_tokens"));
        assert!(parse(
            br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
            true
        )
        .is_ok());
    }
}
