//! A Responses request read once, and the same request as an OpenAI chat request.
//!
//! Field by field (<https://platform.openai.com/docs/api-reference/responses/create>):
//! `instructions` becomes the first system message; `input` (a string, or items: messages
//! with `input_text`/`input_image`/`output_text` parts, `function_call` and
//! `function_call_output` items) becomes the messages; `reasoning` items are dropped (the
//! bridge keeps no state, and no other provider can read OpenAI's reasoning); `tools`
//! (function tools), `tool_choice`, `text.format` (`json_schema`, `json_object`),
//! `reasoning.effort`, `max_output_tokens`, `temperature`, `top_p` and
//! `parallel_tool_calls` map to their chat names.

use serde_json::{Map, Value};

use super::write::{key, raw_field, sep, str_field, string, value_field};
use super::ResponsesCall;
use crate::error::GatewayError;

/// Request fields a Response object repeats.
const ECHOED: &[&str] = &[
    "instructions",
    "tools",
    "tool_choice",
    "temperature",
    "top_p",
    "max_output_tokens",
    "parallel_tool_calls",
    "text",
    "reasoning",
    "metadata",
    "user",
];

/// Parses a `/v1/responses` body. Malformed requests are 400s naming the field; what only
/// the bridge cannot take is kept in [`ResponsesCall::bridge_refusal`].
pub fn parse(body: &[u8]) -> Result<ResponsesCall, GatewayError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        GatewayError::invalid_request(format!("request body is not valid JSON: {e}"))
            .with_code("invalid_json")
    })?;
    let Value::Object(request) = value else {
        return Err(GatewayError::invalid_request(
            "request body must be a JSON object with `model` and `input`",
        ));
    };
    let model = match request.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.as_str(),
        _ => {
            return Err(GatewayError::invalid_param(
                "model",
                "`model` is required: name one of the models listed by GET /v1/models",
            ))
        }
    };
    let continues_stored = ["previous_response_id", "conversation"]
        .into_iter()
        .find(|f| request.get(*f).is_some_and(|v| !v.is_null()));
    let mut b = ChatBuilder::default();
    match request.get("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => b.message("system", &text_content(s)),
        Some(_) => {
            return Err(GatewayError::invalid_param(
                "instructions",
                "`instructions` must be a string",
            ))
        }
    }
    match request.get("input") {
        Some(Value::String(s)) => b.message("user", &text_content(s)),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                b.item(i, item)?;
            }
        }
        None | Some(Value::Null) if continues_stored.is_some() => {}
        _ => {
            return Err(GatewayError::invalid_param(
                "input",
                "`input` is required: a string or an array of input items",
            ))
        }
    }
    b.flush();
    if b.count == 0 {
        // Only a stored conversation can answer without input: OpenAI gets the body as it
        // is, and this stand-in is only what admission counts.
        if continues_stored.is_none() {
            return Err(GatewayError::invalid_param(
                "input",
                "`input` must contain at least one message",
            ));
        }
        b.message("user", b"\"\"");
    }
    let mut chat = Vec::with_capacity(body.len() + 128);
    chat.push(b'{');
    str_field(&mut chat, "model", model);
    key(&mut chat, "messages");
    chat.push(b'[');
    chat.extend_from_slice(&b.messages);
    chat.push(b']');
    let stream = request.get("stream") == Some(&Value::Bool(true));
    if stream {
        raw_field(&mut chat, "stream", "true");
        raw_field(&mut chat, "stream_options", r#"{"include_usage":true}"#);
    }
    let mut refusal = b.refusal;
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("max_output_tokens", "max_tokens"),
        ("parallel_tool_calls", "parallel_tool_calls"),
    ] {
        if let Some(v) = request.get(from).filter(|v| !v.is_null()) {
            value_field(&mut chat, to, v);
        }
    }
    if let Some(tools) = request.get("tools").filter(|v| !v.is_null()) {
        let why = write_tools(&mut chat, tools)?;
        refusal = refusal.or(why);
    }
    if let Some(choice) = request.get("tool_choice").filter(|v| !v.is_null()) {
        if let Err(why) = write_tool_choice(&mut chat, choice)? {
            refusal = refusal.or(Some(why));
        }
    }
    if let Some(format) = request.get("text").and_then(|t| t.get("format")) {
        write_response_format(&mut chat, format)?;
    }
    if let Some(effort) = request
        .get("reasoning")
        .and_then(|r| r.get("effort"))
        .filter(|v| !v.is_null())
    {
        value_field(&mut chat, "reasoning_effort", effort);
    }
    chat.push(b'}');
    if request.get("prompt").is_some_and(|v| !v.is_null()) {
        refusal = refusal.or(Some(bridge_refusal(
            "prompt",
            "`prompt` names a prompt template stored at OpenAI",
        )));
    }
    let mut echo = Map::new();
    for f in ECHOED {
        if let Some(v) = request.get(*f) {
            echo.insert(f.to_string(), v.clone());
        }
    }
    Ok(ResponsesCall {
        chat_body: chat,
        stream,
        continues_stored,
        bridge_refusal: refusal,
        echo,
    })
}

/// A 400 for what the bridge has no equivalent for.
fn bridge_refusal(param: &str, what: &str) -> GatewayError {
    GatewayError::invalid_param(
        param,
        format!("{what}, which this model's provider cannot take through the gateway's Responses bridge (it keeps no state and speaks chat completions); route the request to an OpenAI or Azure OpenAI deployment"),
    )
    .with_code("unsupported_by_provider")
}

/// A 400 about `param`: "`param` <rule>".
fn invalid(param: String, rule: &str) -> GatewayError {
    let message = format!("`{param}` {rule}");
    GatewayError::invalid_param(param, message)
}

/// A JSON string as a message's content.
fn text_content(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 2);
    string(&mut out, s);
    out
}

/// The chat messages, written as the input items are read.
#[derive(Default)]
struct ChatBuilder {
    /// Messages written so far, comma separated.
    messages: Vec<u8>,
    count: usize,
    /// The assistant turn being assembled: its text and its tool calls, since a turn's
    /// text and calls come as separate items.
    pending: Option<(Option<String>, Vec<u8>)>,
    refusal: Option<GatewayError>,
}

impl ChatBuilder {
    /// Keeps the bridge's refusal of `param`, whose value is `value`.
    fn refuse(&mut self, param: String, value: &str) {
        if self.refusal.is_none() {
            self.refusal = Some(bridge_refusal(&param, &format!("`{param}` is `{value}`")));
        }
    }

    /// Writes the assistant turn being assembled.
    fn flush(&mut self) {
        let Some((text, calls)) = self.pending.take() else {
            return;
        };
        let out = &mut self.messages;
        sep(out);
        out.extend_from_slice(br#"{"role":"assistant","content":"#);
        match &text {
            Some(t) => string(out, t),
            None => out.extend_from_slice(b"null"),
        }
        if !calls.is_empty() {
            out.extend_from_slice(br#","tool_calls":["#);
            out.extend_from_slice(&calls);
            out.push(b']');
        }
        out.push(b'}');
        self.count += 1;
    }

    /// A message of `role` whose content is the JSON text `content`.
    fn message(&mut self, role: &str, content: &[u8]) {
        self.flush();
        let out = &mut self.messages;
        sep(out);
        out.push(b'{');
        str_field(out, "role", role);
        key(out, "content");
        out.extend_from_slice(content);
        out.push(b'}');
        self.count += 1;
    }

    /// One input item.
    fn item(&mut self, i: usize, item: &Value) -> Result<(), GatewayError> {
        let Value::Object(o) = item else {
            return Err(invalid(format!("input[{i}]"), "must be an object"));
        };
        let kind = match o.get("type") {
            Some(Value::String(t)) => t.as_str(),
            None if o.contains_key("role") => "message",
            _ => {
                return Err(invalid(
                    format!("input[{i}].type"),
                    "is required (or a `role` for a message)",
                ))
            }
        };
        match kind {
            "message" => self.input_message(i, o),
            "function_call" => {
                let call_id = text_field(o, i, "call_id")?;
                let name = text_field(o, i, "name")?;
                let arguments = o.get("arguments").and_then(Value::as_str).unwrap_or("{}");
                // Calls made in one turn belong to one assistant message.
                let (_, calls) = self.pending.get_or_insert_with(Default::default);
                sep(calls);
                calls.push(b'{');
                str_field(calls, "id", call_id);
                raw_field(calls, "type", "\"function\"");
                key(calls, "function");
                calls.push(b'{');
                str_field(calls, "name", name);
                str_field(calls, "arguments", arguments);
                calls.extend_from_slice(b"}}");
                Ok(())
            }
            "function_call_output" => {
                let call_id = text_field(o, i, "call_id")?;
                let output = match o.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(parts)) => {
                        let mut text = String::new();
                        for (j, p) in parts.iter().enumerate() {
                            match p.get("type").and_then(Value::as_str) {
                                Some("input_text" | "output_text") => text.push_str(
                                    p.get("text").and_then(Value::as_str).unwrap_or_default(),
                                ),
                                other => self.refuse(
                                    format!("input[{i}].output[{j}].type"),
                                    other.unwrap_or("?"),
                                ),
                            }
                        }
                        text
                    }
                    _ => {
                        return Err(invalid(
                            format!("input[{i}].output"),
                            "must be a string or an array of parts",
                        ))
                    }
                };
                self.flush();
                let out = &mut self.messages;
                sep(out);
                out.extend_from_slice(br#"{"role":"tool""#);
                str_field(out, "tool_call_id", call_id);
                str_field(out, "content", &output);
                out.push(b'}');
                self.count += 1;
                Ok(())
            }
            // The bridge is stateless and no other provider reads OpenAI's reasoning.
            "reasoning" => Ok(()),
            other => {
                self.refuse(format!("input[{i}].type"), other);
                Ok(())
            }
        }
    }

    fn input_message(&mut self, i: usize, o: &Map<String, Value>) -> Result<(), GatewayError> {
        let role = match o.get("role").and_then(Value::as_str) {
            Some("user") => "user",
            Some("assistant") => "assistant",
            Some("system" | "developer") => "system",
            _ => {
                return Err(invalid(
                    format!("input[{i}].role"),
                    "must be user, assistant, system or developer",
                ))
            }
        };
        // Text parts joined, or the parts as chat parts when one is not text.
        let mut texts: Vec<&str> = Vec::new();
        let mut parts: Vec<u8> = Vec::new();
        let mut only_text = true;
        match o.get("content") {
            Some(Value::String(s)) => texts.push(s),
            Some(Value::Array(items)) => {
                for (j, p) in items.iter().enumerate() {
                    let param = format!("input[{i}].content[{j}]");
                    match p.get("type").and_then(Value::as_str) {
                        Some(t @ ("input_text" | "output_text" | "text" | "refusal")) => {
                            let field = if t == "refusal" { "refusal" } else { "text" };
                            let Some(text) = p.get(field).and_then(Value::as_str) else {
                                return Err(invalid(
                                    format!("{param}.{field}"),
                                    "must be a string",
                                ));
                            };
                            texts.push(text);
                            sep(&mut parts);
                            parts.extend_from_slice(br#"{"type":"text","text":"#);
                            string(&mut parts, text);
                            parts.push(b'}');
                        }
                        Some("input_image") => {
                            let Some(url) = p.get("image_url").and_then(Value::as_str) else {
                                let file = p.get("file_id").and_then(Value::as_str);
                                self.refuse(format!("{param}.file_id"), file.unwrap_or("?"));
                                continue;
                            };
                            only_text = false;
                            sep(&mut parts);
                            parts.extend_from_slice(br#"{"type":"image_url","image_url":{"url":"#);
                            string(&mut parts, url);
                            if let Some(d) = p.get("detail").and_then(Value::as_str) {
                                str_field(&mut parts, "detail", d);
                            }
                            parts.extend_from_slice(b"}}");
                        }
                        Some(other) => {
                            self.refuse(format!("{param}.type"), other);
                        }
                        None => return Err(invalid(format!("{param}.type"), "is required")),
                    }
                }
            }
            _ => {
                return Err(invalid(
                    format!("input[{i}].content"),
                    "must be a string or an array of parts",
                ))
            }
        }
        if role == "assistant" {
            // Its text, then any calls that follow it.
            self.flush();
            self.pending = Some((Some(texts.concat()), Vec::new()));
            return Ok(());
        }
        if only_text {
            self.message(role, &text_content(&texts.join("\n")));
        } else {
            let mut content = Vec::with_capacity(parts.len() + 2);
            content.push(b'[');
            content.extend_from_slice(&parts);
            content.push(b']');
            self.message(role, &content);
        }
        Ok(())
    }
}

fn text_field<'a>(
    o: &'a Map<String, Value>,
    i: usize,
    name: &str,
) -> Result<&'a str, GatewayError> {
    match o.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        _ => Err(invalid(
            format!("input[{i}].{name}"),
            "must be a non-empty string",
        )),
    }
}

/// Writes function tools as chat tools; returns the first other tool type as the bridge's
/// refusal.
fn write_tools(chat: &mut Vec<u8>, tools: &Value) -> Result<Option<GatewayError>, GatewayError> {
    let Value::Array(tools) = tools else {
        return Err(GatewayError::invalid_param(
            "tools",
            "`tools` must be an array",
        ));
    };
    let mut out = Vec::new();
    let mut refusal = None;
    for (i, t) in tools.iter().enumerate() {
        match t.get("type").and_then(Value::as_str) {
            Some("function") => {
                let Some(name) = t
                    .get("name")
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                else {
                    return Err(invalid(
                        format!("tools[{i}].name"),
                        "is required for a function tool",
                    ));
                };
                sep(&mut out);
                out.extend_from_slice(br#"{"type":"function","function":{"name":"#);
                string(&mut out, name);
                for f in ["description", "parameters", "strict"] {
                    if let Some(v) = t.get(f).filter(|v| !v.is_null()) {
                        value_field(&mut out, f, v);
                    }
                }
                out.extend_from_slice(b"}}");
            }
            Some(other) => {
                if refusal.is_none() {
                    let param = format!("tools[{i}].type");
                    let what =
                        format!("`{param}` is `{other}` (only `function` tools can be bridged)");
                    refusal = Some(bridge_refusal(&param, &what));
                }
            }
            None => return Err(invalid(format!("tools[{i}].type"), "is required")),
        }
    }
    if !out.is_empty() {
        key(chat, "tools");
        chat.push(b'[');
        chat.extend_from_slice(&out);
        chat.push(b']');
    }
    Ok(refusal)
}

/// Writes `tool_choice` in chat's form; the inner error is why the bridge cannot take it.
fn write_tool_choice(
    chat: &mut Vec<u8>,
    choice: &Value,
) -> Result<Result<(), GatewayError>, GatewayError> {
    match choice {
        Value::String(mode) if matches!(mode.as_str(), "auto" | "none" | "required") => {
            str_field(chat, "tool_choice", mode);
            Ok(Ok(()))
        }
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("function") => match o.get("name").and_then(Value::as_str) {
                Some(name) => {
                    key(chat, "tool_choice");
                    chat.extend_from_slice(br#"{"type":"function","function":{"name":"#);
                    string(chat, name);
                    chat.extend_from_slice(b"}}");
                    Ok(Ok(()))
                }
                None => Err(GatewayError::invalid_param(
                    "tool_choice.name",
                    "`tool_choice.name` is required for a function",
                )),
            },
            Some(other) => Ok(Err(bridge_refusal(
                "tool_choice.type",
                &format!("`tool_choice.type` is `{other}`"),
            ))),
            None => Err(GatewayError::invalid_param(
                "tool_choice.type",
                "`tool_choice.type` is required",
            )),
        },
        _ => Err(GatewayError::invalid_param(
            "tool_choice",
            "`tool_choice` must be auto, none, required or an object",
        )),
    }
}

/// Writes `text.format` as chat's `response_format`.
fn write_response_format(chat: &mut Vec<u8>, format: &Value) -> Result<(), GatewayError> {
    match format.get("type").and_then(Value::as_str) {
        None if format.is_null() => Ok(()),
        Some("text") => Ok(()),
        Some("json_object") => {
            raw_field(chat, "response_format", r#"{"type":"json_object"}"#);
            Ok(())
        }
        Some("json_schema") => {
            if format.get("schema").is_none_or(Value::is_null) {
                return Err(GatewayError::invalid_param(
                    "text.format.schema",
                    "`text.format.schema` is required for `json_schema`",
                ));
            }
            key(chat, "response_format");
            chat.extend_from_slice(br#"{"type":"json_schema","json_schema":{"#);
            for f in ["name", "schema", "strict", "description"] {
                if let Some(v) = format.get(f).filter(|v| !v.is_null()) {
                    value_field(chat, f, v);
                }
            }
            chat.extend_from_slice(b"}}");
            Ok(())
        }
        _ => Err(GatewayError::invalid_param(
            "text.format.type",
            "`text.format.type` must be text, json_object or json_schema",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chat(body: Value) -> Value {
        let call = parse(body.to_string().as_bytes()).unwrap();
        serde_json::from_slice(&call.chat_body).unwrap()
    }

    #[test]
    fn a_string_input_is_one_user_message() {
        let c = chat(
            json!({"model": "m", "input": "hi", "instructions": "be brief",
            "max_output_tokens": 50, "stream": true}),
        );
        assert_eq!(
            c,
            json!({"model": "m", "messages": [
                {"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
                "max_tokens": 50, "stream": true, "stream_options": {"include_usage": true}})
        );
    }

    #[test]
    fn a_tool_round_trip_becomes_chat_messages() {
        let c = chat(json!({"model": "m", "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call", "call_id": "c1", "name": "get", "arguments": "{\"a\":1}"},
            {"type": "function_call", "call_id": "c2", "name": "get", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "rain"}]}],
            "tools": [{"type": "function", "name": "get", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "get"},
            "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}, "strict": true}},
            "reasoning": {"effort": "low"}}));
        assert_eq!(
            c["messages"][0],
            json!({"role": "user", "content": "weather?"})
        );
        assert_eq!(c["messages"][1]["tool_calls"].as_array().unwrap().len(), 2);
        assert_eq!(
            c["messages"][3],
            json!({"role": "tool", "tool_call_id": "c2", "content": "rain"})
        );
        assert_eq!(c["tools"][0]["function"]["name"], "get");
        assert_eq!(c["tool_choice"]["function"]["name"], "get");
        assert_eq!(c["response_format"]["json_schema"]["name"], "x");
        assert_eq!(c["reasoning_effort"], "low");
    }

    #[test]
    fn other_tools_are_refused_by_the_bridge_only() {
        let call = parse(
            br#"{"model":"m","input":"x","tools":[{"type":"function","name":"f"},{"type":"web_search"}]}"#,
        )
        .unwrap();
        let e = call.bridge_refusal.unwrap();
        assert_eq!(e.status, 400);
        assert_eq!(e.param.as_deref(), Some("tools[1].type"));
        assert!(e.message.contains("web_search"), "{}", e.message);
    }

    #[test]
    fn malformed_requests_name_the_field() {
        for (body, param) in [
            (json!({"input": "x"}), "model"),
            (json!({"model": "m"}), "input"),
            (json!({"model": "m", "input": [1]}), "input[0]"),
            (
                json!({"model": "m", "input": [{"role": "bot", "content": "x"}]}),
                "input[0].role",
            ),
            (
                json!({"model": "m", "input": "x", "tools": [{"type": "function"}]}),
                "tools[0].name",
            ),
            (
                json!({"model": "m", "input": "x", "text": {"format": {"type": "yaml"}}}),
                "text.format.type",
            ),
        ] {
            let e = parse(body.to_string().as_bytes()).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {}", e.message);
        }
    }

    #[test]
    fn a_stored_conversation_is_noted() {
        let call =
            parse(br#"{"model":"m","previous_response_id":"resp_1","input":"more"}"#).unwrap();
        assert_eq!(call.continues_stored, Some("previous_response_id"));
    }
}
