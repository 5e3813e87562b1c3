//! Validation of the client's chat request, done once by the downstream instance so that
//! no malformed request reaches a provider.

use serde_json::Value;

use crate::error::GatewayError;
use crate::json;
use crate::messages_api::{self, InboundApi};
use crate::openai::{ChatRequest, Content, Role};
use crate::responses_api::ResponsesCall;

/// Parses and checks a `/v1/chat/completions` body. Errors are 400s naming the field.
pub fn parse_chat_request(body: &[u8]) -> Result<ChatRequest, GatewayError> {
    // Well-formed requests, the common case, parse straight into their type; only a body
    // that fails is parsed again, as a generic value, to say which field is at fault.
    let request = match serde_json::from_slice::<ChatRequest>(body) {
        Ok(r) if !r.model.is_empty() && !r.messages.is_empty() => r,
        _ => return Err(explain_invalid(body)),
    };
    check_messages(&request)?;
    check_parameters(&request)?;
    Ok(request)
}

/// The chat form of a request of `api`, validated: what the downstream instance routes by
/// and every attempt translates from. `responses` is the Responses call already parsed
/// from `body`, if any.
pub fn validate_chat(
    api: InboundApi,
    body: &[u8],
    responses: Option<&ResponsesCall>,
) -> Result<ChatRequest, GatewayError> {
    match (responses, api) {
        (Some(call), _) => parse_chat_request(&call.chat_body),
        (None, InboundApi::Responses) => {
            parse_chat_request(&crate::responses_api::parse(body)?.chat_body)
        }
        (None, InboundApi::Chat) => parse_chat_request(body),
        (None, api) => messages_api::request::parse(body, api == InboundApi::CountTokens)
            .and_then(|v| messages_api::request::to_chat_request(&v)),
    }
}

/// Why `body` is not a chat request, naming the field at fault.
fn explain_invalid(body: &[u8]) -> GatewayError {
    match invalid_field(body) {
        Err(e) => e,
        // The typed parse failed where the field-by-field one did not (a duplicate key).
        Ok(()) => {
            GatewayError::invalid_request(match serde_json::from_slice::<ChatRequest>(body) {
                Err(e) => format!("request body is not a valid chat request: {e}"),
                Ok(_) => "request body is not a valid chat request".to_string(),
            })
        }
    }
}

fn invalid_field(body: &[u8]) -> Result<(), GatewayError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(GatewayError::invalid_request(
            "request body is empty: send a JSON object with `model` and `messages`",
        ));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        GatewayError::invalid_request(format!("request body is not valid JSON: {e}"))
            .with_code("invalid_json")
    })?;
    let Some(object) = value.as_object() else {
        return Err(GatewayError::invalid_request(
            "request body must be a JSON object with `model` and `messages`",
        ));
    };
    match object.get("model") {
        Some(Value::String(m)) if !m.is_empty() => {}
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(GatewayError::invalid_param(
                "model",
                "`model` is required: name one of the models listed by GET /v1/models",
            ))
        }
        Some(_) => {
            return Err(GatewayError::invalid_param(
                "model",
                "`model` must be a string",
            ))
        }
    }
    match object.get("messages") {
        Some(Value::Array(a)) if !a.is_empty() => {}
        Some(Value::Array(_)) => {
            return Err(GatewayError::invalid_param(
                "messages",
                "`messages` must contain at least one message",
            ))
        }
        None | Some(Value::Null) => {
            return Err(GatewayError::invalid_param(
                "messages",
                "`messages` is required",
            ))
        }
        Some(_) => {
            return Err(GatewayError::invalid_param(
                "messages",
                "`messages` must be an array",
            ))
        }
    }
    json::path::from_value::<ChatRequest>(&value).map_err(|e| {
        let message = format!("invalid `{}`: {}", e.path, e.message);
        GatewayError::invalid_param(e.path, message)
    })?;
    Ok(())
}

/// A quick, provider-neutral estimate of a request's prompt size in tokens (about four
/// bytes of text per token, plus per-message and per-image overheads). Used to pick a
/// deployment whose context window fits before any provider is called.
pub fn estimate_prompt_tokens(request: &ChatRequest) -> u64 {
    let mut bytes: u64 = 0;
    let mut extra: u64 = 0;
    for m in &request.messages {
        extra += 4;
        match &m.content {
            Some(Content::Text(t)) => bytes += t.len() as u64,
            Some(Content::Parts(parts)) => {
                for p in parts {
                    if let Some(t) = &p.text {
                        bytes += t.len() as u64;
                    }
                    if p.image_url.is_some() {
                        extra += 765; // a high-detail 1024x1024 image
                    }
                }
            }
            None => {}
        }
        for c in m.tool_calls.iter().flatten() {
            bytes += (c.function.name.len() + c.function.arguments.len()) as u64;
        }
    }
    for t in request.tools.iter().flatten() {
        bytes += t.function.name.len() as u64;
        bytes += t.function.description.as_ref().map_or(0, |d| d.len()) as u64;
        bytes += t.function.parameters.as_ref().map_or(0, |p| p.get().len()) as u64;
    }
    bytes.div_ceil(4) + extra
}

fn check_messages(request: &ChatRequest) -> Result<(), GatewayError> {
    for (i, m) in request.messages.iter().enumerate() {
        match m.role {
            Role::Tool => {
                if m.tool_call_id.as_deref().unwrap_or("").is_empty() {
                    return Err(GatewayError::invalid_param(
                        format!("messages[{i}].tool_call_id"),
                        format!("messages[{i}] has role `tool` but no `tool_call_id`"),
                    ));
                }
            }
            Role::Assistant => {
                if let Some(calls) = &m.tool_calls {
                    for (j, c) in calls.iter().enumerate() {
                        if c.id.is_empty() || c.function.name.is_empty() {
                            return Err(GatewayError::invalid_param(
                                format!("messages[{i}].tool_calls[{j}]"),
                                format!("messages[{i}].tool_calls[{j}] needs an `id` and a `function.name`"),
                            ));
                        }
                    }
                }
            }
            Role::System | Role::Developer | Role::User | Role::Function => {
                if m.content.is_none() {
                    return Err(GatewayError::invalid_param(
                        format!("messages[{i}].content"),
                        format!("messages[{i}] has no `content`"),
                    ));
                }
            }
        }
        if let Some(Content::Parts(parts)) = &m.content {
            for (j, p) in parts.iter().enumerate() {
                let ok = match p.kind.as_str() {
                    "text" => p.text.is_some(),
                    "image_url" => p.image_url.is_some(),
                    "input_audio" => p.input_audio.is_some(),
                    "file" => p.file.is_some(),
                    "refusal" => p.refusal.is_some(),
                    _ => true,
                };
                if !ok {
                    return Err(GatewayError::invalid_param(
                        format!("messages[{i}].content[{j}]"),
                        format!(
                            "messages[{i}].content[{j}] has type `{}` but no `{}` field",
                            p.kind, p.kind
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

fn check_parameters(request: &ChatRequest) -> Result<(), GatewayError> {
    if let Some(t) = request.temperature {
        if !(0.0..=2.0).contains(&t) {
            return Err(GatewayError::invalid_param(
                "temperature",
                "`temperature` must be between 0 and 2",
            ));
        }
    }
    if let Some(p) = request.top_p {
        if !(0.0..=1.0).contains(&p) {
            return Err(GatewayError::invalid_param(
                "top_p",
                "`top_p` must be between 0 and 1",
            ));
        }
    }
    if request.output_limit() == Some(0) {
        return Err(GatewayError::invalid_param(
            "max_tokens",
            "`max_tokens` must be at least 1",
        ));
    }
    if request.n == Some(0) {
        return Err(GatewayError::invalid_param("n", "`n` must be at least 1"));
    }
    if let Some(tools) = &request.tools {
        for (i, t) in tools.iter().enumerate() {
            crate::provider::common::check_function_tool(i, t)?;
            if t.function.name.is_empty() {
                return Err(GatewayError::invalid_param(
                    format!("tools[{i}].function.name"),
                    format!("tools[{i}].function.name is empty"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param_of(body: &str) -> (u16, Option<String>, String) {
        let e = parse_chat_request(body.as_bytes()).unwrap_err();
        (e.status, e.param, e.message)
    }

    /// A well-formed request parses.
    #[test]
    fn accepts_valid() {
        let r = parse_chat_request(
            br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true},"unknown_vendor_field":1}"#,
        )
        .unwrap();
        assert!(r.is_stream());
        assert!(r.wants_stream_usage());
    }

    /// Each kind of bad input is a 400 that names the field.
    #[test]
    fn refuses_bad_input() {
        assert_eq!(param_of("").0, 400);
        assert_eq!(param_of("{not json").0, 400);
        assert_eq!(param_of("[1]").0, 400);
        assert_eq!(
            param_of(r#"{"messages":[{"role":"user","content":"x"}]}"#)
                .1
                .as_deref(),
            Some("model")
        );
        assert_eq!(
            param_of(r#"{"model":3,"messages":[]}"#).1.as_deref(),
            Some("model")
        );
        assert_eq!(param_of(r#"{"model":"m"}"#).1.as_deref(), Some("messages"));
        assert_eq!(
            param_of(r#"{"model":"m","messages":{}}"#).1.as_deref(),
            Some("messages")
        );
        assert_eq!(
            param_of(r#"{"model":"m","messages":[]}"#).1.as_deref(),
            Some("messages")
        );
        let (_, p, m) = param_of(r#"{"model":"m","messages":[{"role":"robot","content":"x"}]}"#);
        assert_eq!(p.as_deref(), Some("messages[0].role"));
        assert!(m.contains("robot"), "{m}");
        let (_, p, _) = param_of(r#"{"model":"m","messages":[{"role":"tool","content":"x"}]}"#);
        assert_eq!(p.as_deref(), Some("messages[0].tool_call_id"));
        let (_, p, _) =
            param_of(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":7}"#);
        assert_eq!(p.as_deref(), Some("temperature"));
        let (_, p, _) = param_of(
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url"}]}]}"#,
        );
        assert_eq!(p.as_deref(), Some("messages[0].content[0]"));
        let (_, p, _) = param_of(
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":"many"}"#,
        );
        assert_eq!(p.as_deref(), Some("max_tokens"));
    }
}
