//! Request-side helpers shared by the translating providers (Anthropic, Gemini): parsing
//! the client body, `data:` URLs, and the unsupported-parameter policy (`drop_params`).

use serde_json::Value;

use super::ProviderOptions;
use crate::error::GatewayError;
use crate::json;
use crate::openai::{ChatRequest, ContentPart, JsonSchemaFormat, ResponseFormat, Tool, ToolCall};
use crate::sse::{SseDecoder, SseError};

/// A translated request and what the response side must remember (Gemini, Cohere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslatedRequest {
    /// The provider's JSON body.
    pub body: Vec<u8>,
    /// The client asked for a stream.
    pub stream: bool,
    /// The client asked for a usage chunk (`stream_options.include_usage`).
    pub client_wants_usage: bool,
    /// Parameters left out under the deployment's `drop_params`.
    pub dropped: Vec<String>,
}

/// The request's `response_format`, `None` when absent or null; a malformed one is a 400
/// naming the field inside it.
pub fn parse_response_format(chat: &ChatRequest) -> Result<Option<ResponseFormat>, GatewayError> {
    let Some(value) = chat.response_format.as_ref().filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    json::path::from_value(value).map(Some).map_err(|e| {
        let param = if e.path.is_empty() {
            "response_format".to_string()
        } else {
            format!("response_format.{}", e.path)
        };
        let message = format!("invalid `{param}`: {}", e.message);
        GatewayError::invalid_param(param, message)
    })
}

/// Parses the client body, naming the field that does not fit.
pub fn parse_chat_request(body: &[u8]) -> Result<ChatRequest, GatewayError> {
    // The common case parses straight into the type; a body that fails is parsed again,
    // as a generic value, to name the field at fault.
    serde_json::from_slice(body).map_err(|e| {
        let invalid = || {
            GatewayError::invalid_request(format!("request body is not a valid chat request: {e}"))
        };
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
            return invalid();
        };
        match json::path::from_value::<ChatRequest>(&value) {
            Err(e) if !e.path.is_empty() => {
                let message = format!("invalid `{}`: {}", e.path, e.message);
                GatewayError::invalid_param(e.path, message)
            }
            _ => invalid(),
        }
    })
}

/// Moves the items `first` picks before the others, keeping the order within each group
/// (a stable partition: cheaper in code than a stable sort, and free when already so).
pub fn move_to_front<T>(items: &mut Vec<T>, first: impl Fn(&T) -> bool) {
    let mut rest = items.iter().skip_while(|x| first(x));
    if !rest.any(&first) {
        return;
    }
    let (mut front, back): (Vec<T>, Vec<T>) = std::mem::take(items).into_iter().partition(&first);
    front.extend(back);
    *items = front;
}

/// Splits `data:<mime>;base64,<data>` into media type (lowercased) and data; `param` names
/// the field in the error.
pub fn parse_data_url(url: &str, param: &str) -> Result<(String, String), GatewayError> {
    let bad = || {
        GatewayError::invalid_param(
            param.to_string(),
            format!("{param} must be a `data:<media type>;base64,<data>` URL"),
        )
    };
    let rest = url.strip_prefix("data:").ok_or_else(bad)?;
    let (header, data) = rest.split_once(',').ok_or_else(bad)?;
    let media_type = header
        .strip_suffix(";base64")
        .ok_or_else(bad)?
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if media_type.is_empty() || data.is_empty() {
        return Err(bad());
    }
    Ok((media_type, data.to_string()))
}

/// Separates a Gemini thought signature from the tool-call id that carries it:
/// `<call id>__thought__<signature>`, the convention LiteLLM established, so that clients
/// and tools that already know it keep working.
pub const THOUGHT_SIGNATURE_SEPARATOR: &str = "__thought__";

/// Splits a tool-call id into the id proper and the Gemini thought signature it carries.
pub fn split_thought_signature(id: &str) -> (&str, Option<&str>) {
    match id.split_once(THOUGHT_SIGNATURE_SEPARATOR) {
        Some((base, signature)) if !signature.is_empty() => (base, Some(signature)),
        Some((base, _)) => (base, None),
        None => (id, None),
    }
}

/// The thinking token budget for `reasoning_effort`, shared by the providers that take a
/// budget (Gemini, Cohere); `None` for `none` (thinking off). An unknown effort is a 400.
pub fn reasoning_budget(effort: &str) -> Result<Option<u64>, GatewayError> {
    Ok(Some(match effort {
        "none" => return Ok(None),
        "minimal" => 512,
        "low" => 1024,
        "medium" => 8192,
        "high" => 24576,
        other => {
            return Err(GatewayError::invalid_param(
                "reasoning_effort",
                format!(
                    "`reasoning_effort` `{other}` is not supported; use minimal, low, medium, high or none"
                ),
            ))
        }
    }))
}

/// The stop sequences without empty strings (providers reject them); an all-empty list is
/// no list.
pub fn stop_sequences(chat: &ChatRequest) -> Option<Vec<String>> {
    chat.stop
        .clone()
        .map(|s| {
            s.into_vec()
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
        })
        .filter(|s| !s.is_empty())
}

/// Refuses a tool that is not a function, naming `tools[i].type`.
pub fn check_function_tool(i: usize, tool: &Tool) -> Result<(), GatewayError> {
    if tool.kind == "function" {
        return Ok(());
    }
    Err(GatewayError::invalid_param(
        format!("tools[{i}].type"),
        format!(
            "tools[{i}].type `{}` is not supported; use `function`",
            tool.kind
        ),
    ))
}

/// The text of a `text` part `j` of message `i`, or a 400 naming it.
pub fn part_text(i: usize, j: usize, p: &ContentPart) -> Result<String, GatewayError> {
    p.text
        .as_ref()
        .map(|t| t.text().into_owned())
        .ok_or_else(|| {
            GatewayError::invalid_param(
                format!("messages[{i}].content[{j}].text"),
                format!("messages[{i}].content[{j}] has type `text` but no `text`"),
            )
        })
}

/// A 400 naming the type of part `j` of message `i`, and why it cannot be sent.
pub fn part_type_error(i: usize, j: usize, kind: &str, why: &str) -> GatewayError {
    GatewayError::invalid_param(
        format!("messages[{i}].content[{j}].type"),
        format!("messages[{i}].content[{j}] has type `{kind}`: {why}"),
    )
}

/// The arguments of call `j` of message `i` as a JSON object (`{}` when empty), which
/// Anthropic's `input` and Gemini's `args` must be; anything else is a 400 naming them.
pub fn call_arguments(i: usize, j: usize, call: &ToolCall) -> Result<Value, GatewayError> {
    let param = format!("messages[{i}].tool_calls[{j}].function.arguments");
    let arguments = call.function.arguments.trim();
    let args = if arguments.is_empty() {
        Value::Object(serde_json::Map::new())
    } else {
        json::path::from_str::<Value>(arguments).map_err(|e| {
            GatewayError::invalid_param(param.clone(), format!("{param} is not valid JSON: {e}"))
        })?
    };
    if !args.is_object() {
        return Err(GatewayError::invalid_param(
            param.clone(),
            format!("{param} must be a JSON object"),
        ));
    }
    Ok(args)
}

/// A 400 for message `i` in the legacy `function` role, which `provider`'s models cannot
/// take.
pub fn function_role_error(i: usize, provider: &str) -> GatewayError {
    GatewayError::invalid_param(
        format!("messages[{i}].role"),
        format!(
            "messages[{i}] has the legacy role `function`, which {provider} models cannot take; use `tool` messages with `tool_call_id`"
        ),
    )
}

/// A 400 for tool message `i` without a `tool_call_id`.
pub fn missing_tool_call_id(i: usize) -> GatewayError {
    GatewayError::invalid_param(
        format!("messages[{i}].tool_call_id"),
        format!("messages[{i}] has role `tool` but no `tool_call_id`"),
    )
}

/// A 400 for an `image_url` part `j` of message `i` without its `image_url`.
pub fn missing_image_url(i: usize, j: usize) -> GatewayError {
    GatewayError::invalid_param(
        format!("messages[{i}].content[{j}].image_url"),
        format!("messages[{i}].content[{j}] has type `image_url` but no `image_url`"),
    )
}

/// The `json_schema` of a `json_schema` response format, or a 400 when it is missing.
pub fn required_json_schema(
    spec: Option<JsonSchemaFormat>,
) -> Result<JsonSchemaFormat, GatewayError> {
    spec.ok_or_else(|| {
        GatewayError::invalid_param(
            "response_format.json_schema",
            "`response_format.json_schema` is required when the type is `json_schema`",
        )
    })
}

/// A 400 for a `response_format.type` other than text, json_object or json_schema.
pub fn unknown_format_type(kind: &str) -> GatewayError {
    GatewayError::invalid_param(
        "response_format.type",
        format!("`response_format.type` `{kind}` is not supported; use text, json_object or json_schema"),
    )
}

/// `chatcmpl-<id>` from the provider's answer id, or `fallback` when it sent none.
pub fn completion_id(id: Option<&str>, fallback: &str) -> String {
    match id.filter(|id| !id.is_empty()) {
        Some(id) => format!("chatcmpl-{id}"),
        None => fallback.to_string(),
    }
}

/// A gateway-made stream failure (the status is not seen once the 200 is sent).
pub fn stream_error(message: &str) -> GatewayError {
    GatewayError::new(crate::error::ErrorKind::Api, message)
        .with_status(502)
        .with_code("stream_error")
}

/// Why a stream with an end event (Anthropic, Cohere) that has not reached it must stop:
/// the decoder gave up on an oversized event, or the body ended. At `end_of_stream` the
/// decoder is finished.
pub fn unfinished_stream_error(
    decoder: &mut SseDecoder,
    end_of_stream: bool,
) -> Option<GatewayError> {
    if let Some(e) = oversized_event_error(decoder) {
        return Some(e);
    }
    end_of_stream.then(|| {
        decoder.finish();
        stream_error("the provider's stream ended before completion")
    })
}

/// The stream error for a decoder that gave up on an event larger than its limit.
pub fn oversized_event_error(decoder: &SseDecoder) -> Option<GatewayError> {
    match decoder.error() {
        Some(SseError::EventTooLarge { limit }) => Some(stream_error(&format!(
            "the provider sent a stream event larger than {limit} bytes"
        ))),
        _ => None,
    }
}

/// Longest part of a non-JSON error body quoted back to the client.
const SNIPPET_CHARS: usize = 200;

/// The message for an error body that is not the provider's JSON (an HTML page from a
/// proxy, plain text): its first words, whitespace collapsed.
pub fn unparsed_error_message(upstream_status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let words: Vec<&str> = text.split_whitespace().collect();
    let snippet: String = words.join(" ").chars().take(SNIPPET_CHARS).collect();
    if snippet.is_empty() {
        format!("the provider answered {upstream_status} with an empty body")
    } else {
        format!("the provider answered {upstream_status}: {snippet}")
    }
}

/// True when `logit_bias` would change the answer (an empty map or null does not).
pub fn logit_bias_set(bias: Option<&Value>) -> bool {
    match bias {
        None | Some(Value::Null) => false,
        Some(Value::Object(m)) => !m.is_empty(),
        Some(_) => true,
    }
}

/// The deployment's policy for parameters its provider cannot honour.
///
/// By default such a parameter is refused with a 400 naming it: silently ignoring it would
/// give the client a different answer than it asked for without telling it. With
/// `drop_params: true` (LiteLLM's name) the parameter is left out and recorded, so that
/// the shell can log a warning. Callers only report parameters set to a value that would
/// change the answer: defaults such as `presence_penalty: 0` are never a reason to refuse.
#[derive(Debug)]
pub struct ParamPolicy {
    provider: &'static str,
    drop: bool,
    dropped: Vec<String>,
}

impl ParamPolicy {
    /// The policy of a deployment of `provider` (its display name, for messages).
    pub fn new(provider: &'static str, options: &ProviderOptions) -> Self {
        ParamPolicy {
            provider,
            drop: options.drop_params,
            dropped: Vec::new(),
        }
    }

    /// `param` is set to a value the provider cannot honour: a 400, or recorded as dropped.
    /// `how_to_omit` completes "omit it ..." in the message (e.g. "or send 0").
    pub fn unsupported(&mut self, param: &str, how_to_omit: &str) -> Result<(), GatewayError> {
        if self.drop {
            self.dropped.push(param.to_string());
            return Ok(());
        }
        let omit = if how_to_omit.is_empty() {
            "omit it".to_string()
        } else {
            format!("omit it {how_to_omit}")
        };
        Err(GatewayError::invalid_param(
            param,
            format!(
                "`{param}` is not supported by {} models; {omit}, or have the operator set `drop_params: true` on the deployment to drop unsupported parameters",
                self.provider
            ),
        )
        .with_code("unsupported_parameter"))
    }

    /// The parameters dropped so far.
    pub fn into_dropped(self) -> Vec<String> {
        self.dropped
    }
}

/// Reports the OpenAI-only log-probability and bias parameters when they are set to
/// something that would change the answer.
pub fn check_logprobs_and_bias(
    chat: &ChatRequest,
    policy: &mut ParamPolicy,
) -> Result<(), GatewayError> {
    if chat.logprobs == Some(true) {
        policy.unsupported("logprobs", "or send false")?;
    }
    if chat.top_logprobs.is_some_and(|n| n > 0) {
        policy.unsupported("top_logprobs", "or send 0")?;
    }
    if logit_bias_set(chat.logit_bias.as_ref()) {
        policy.unsupported("logit_bias", "or send {}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Refused by name by default; recorded, in order, with `drop_params`.
    #[test]
    fn policy() {
        let strict = ProviderOptions::default();
        let mut p = ParamPolicy::new("Test", &strict);
        let e = p.unsupported("logprobs", "or send false").unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(e.param.as_deref(), Some("logprobs"));
        assert_eq!(e.code.as_deref(), Some("unsupported_parameter"));
        assert!(e.message.contains("drop_params"), "{}", e.message);

        let lenient = ProviderOptions {
            drop_params: true,
            ..ProviderOptions::default()
        };
        let mut p = ParamPolicy::new("Test", &lenient);
        p.unsupported("logprobs", "").unwrap();
        p.unsupported("logit_bias", "").unwrap();
        assert_eq!(p.into_dropped(), vec!["logprobs", "logit_bias"]);
    }

    /// Only values that change the answer count as set.
    #[test]
    fn bias() {
        assert!(!logit_bias_set(None));
        assert!(!logit_bias_set(Some(&Value::Null)));
        assert!(!logit_bias_set(Some(&serde_json::json!({}))));
        assert!(logit_bias_set(Some(&serde_json::json!({"1": 5}))));
    }

    /// The signature is whatever follows the first separator.
    #[test]
    fn thought_signatures() {
        assert_eq!(split_thought_signature("call_1"), ("call_1", None));
        assert_eq!(
            split_thought_signature("call_1__thought__Q2k+/=="),
            ("call_1", Some("Q2k+/=="))
        );
        assert_eq!(
            split_thought_signature("call_1__thought__"),
            ("call_1", None)
        );
    }

    /// Media type lowercased, parameters after it ignored.
    #[test]
    fn data_urls() {
        assert_eq!(
            parse_data_url("data:Image/PNG;name=x;base64,AAA", "p").unwrap(),
            ("image/png".to_string(), "AAA".to_string())
        );
        assert!(parse_data_url("data:image/png,AAA", "p").is_err());
        assert!(parse_data_url("data:;base64,AAA", "p").is_err());
        assert!(parse_data_url("https://x", "p").is_err());
    }

    #[test]
    fn move_to_front_keeps_the_order_within_each_group() {
        let mut v = vec![1, 2, 3, 4, 5, 6];
        move_to_front(&mut v, |x| x % 2 == 0);
        assert_eq!(v, [2, 4, 6, 1, 3, 5]);
        let mut done = vec![2, 4, 1];
        move_to_front(&mut done, |x| x % 2 == 0);
        assert_eq!(done, [2, 4, 1]);
        let mut none: Vec<i32> = vec![];
        move_to_front(&mut none, |x| x % 2 == 0);
        assert!(none.is_empty());
    }
}
