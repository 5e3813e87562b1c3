//! What the OpenAI-compatible presets and Azure OpenAI do differently from OpenAI, applied
//! by the OpenAI translator from the provider's registry entry: its paths and credential
//! header, the parameters it rejects, where it puts reasoning text, and Azure's content
//! filter errors.

use serde_json::{Map, Value};

use super::common::{logit_bias_set, ParamPolicy};
use super::registry::{ProviderSpec, ToolCallIds, WireApi};
use super::{join_path, Target};
use crate::error::GatewayError;

/// The `:path` of a chat completion for this provider.
pub fn chat_path(spec: &ProviderSpec, target: &Target<'_>) -> String {
    if spec.wire != WireApi::AzureOpenAi {
        return join_path(target.base_path, "/chat/completions");
    }
    match &target.options.azure_api_version {
        Some(version) => join_path(
            target.base_path,
            &format!(
                "/openai/deployments/{}/chat/completions?api-version={version}",
                target.upstream_model
            ),
        ),
        None => join_path(target.base_path, "/openai/v1/chat/completions"),
    }
}

/// The header carrying the attempt's key, in the provider's style (or as a bearer token
/// when the deployment's key is an OAuth token).
pub fn credential_header(
    spec: &ProviderSpec,
    target: &Target<'_>,
) -> Option<(&'static str, String)> {
    let key = target.api_key?;
    if target.options.bearer_token {
        return Some(("authorization", format!("Bearer {key}")));
    }
    spec.credential.header(key)
}

/// True when `body` holds `"key"`.
fn mentions(body: &[u8], key: &str) -> bool {
    let quoted = format!("\"{key}\"");
    body.windows(quoted.len()).any(|w| w == quoted.as_bytes())
}

/// True when the request may need one of the provider's request quirks (a rejected
/// parameter, tool-call ids to map): the common case (none) keeps the translator's fast
/// path.
pub fn may_need_request_quirks(spec: &ProviderSpec, body: &[u8]) -> bool {
    spec.quirks
        .rejected_params
        .iter()
        .any(|p| mentions(body, p))
        || (spec.quirks.tool_call_ids != ToolCallIds::Any && mentions(body, "tool_calls"))
}

/// True when `value` of `param` would change the answer; defaults (`n: 1`,
/// `logprobs: false`, `logit_bias: {}`, `tools: []`, a zero penalty) do not.
fn changes_answer(param: &str, value: &Value) -> bool {
    match (param, value) {
        (_, Value::Null) => false,
        ("logit_bias", v) => logit_bias_set(Some(v)),
        ("n", v) => v.as_f64() != Some(1.0),
        ("parallel_tool_calls", Value::Bool(b)) => !*b,
        ("tool_choice", Value::String(s)) => s != "auto" && s != "none",
        (_, Value::Bool(b)) => *b,
        (_, Value::Array(a)) => !a.is_empty(),
        (_, Value::Number(n)) => n.as_f64() != Some(0.0),
        _ => true,
    }
}

/// Applies the provider's request quirks: its rejected parameters are removed (one that
/// would change the answer is refused by name, 400 `unsupported_parameter`, unless the
/// deployment drops parameters, and then reported as dropped; one set to a default is
/// removed quietly), and tool-call ids are mapped to the form it accepts.
pub fn apply_request_quirks(
    spec: &ProviderSpec,
    target: &Target<'_>,
    request: &mut Map<String, Value>,
) -> Result<Vec<String>, GatewayError> {
    let mut policy = ParamPolicy::new(spec.display_name, target.options);
    for param in spec.quirks.rejected_params {
        if let Some(value) = request.remove(*param) {
            if changes_answer(param, &value) {
                policy.unsupported(param, "")?;
            }
        }
    }
    if spec.quirks.tool_call_ids == ToolCallIds::Alphanumeric9 {
        if let Some(Value::Array(messages)) = request.get_mut("messages") {
            messages.iter_mut().for_each(map_tool_call_ids);
        }
    }
    Ok(policy.into_dropped())
}

/// Maps the tool-call ids of one message (an assistant's calls, a tool result's id).
fn map_tool_call_ids(message: &mut Value) {
    if let Some(Value::String(id)) = message.get_mut("tool_call_id") {
        *id = alphanumeric9(id);
    }
    if let Some(Value::Array(calls)) = message.get_mut("tool_calls") {
        for call in calls {
            if let Some(Value::String(id)) = call.get_mut("id") {
                *id = alphanumeric9(id);
            }
        }
    }
}

/// `id` itself when it is nine of `a-z A-Z 0-9`, else nine such characters derived from it
/// (FNV-1a, base 62): the same id always maps to the same one, so calls and their results
/// still pair up.
fn alphanumeric9(id: &str) -> String {
    if id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return id.to_string();
    }
    const DIGITS: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    (0..9)
        .map(|_| {
            let digit = DIGITS.get((hash % 62) as usize).copied().unwrap_or(b'0');
            hash /= 62;
            char::from(digit)
        })
        .collect()
}

/// Renames the provider's reasoning field to `reasoning_content` in each choice's
/// `container` (`message` or `delta`); true when something was renamed.
pub fn rename_reasoning(chunk: &mut Value, field: &str, container: &str) -> bool {
    let mut renamed = false;
    let Some(Value::Array(choices)) = chunk.get_mut("choices") else {
        return false;
    };
    for choice in choices {
        let Some(Value::Object(inner)) = choice.get_mut(container) else {
            continue;
        };
        if inner.contains_key("reasoning_content") {
            continue;
        }
        if let Some(text) = inner.remove(field) {
            if text.is_string() {
                inner.insert("reasoning_content".into(), text);
                renamed = true;
            } else {
                inner.insert(field.to_string(), text);
            }
        }
    }
    renamed
}

/// Renames the reasoning field of a complete answer; `None` when nothing changes.
pub fn answer_with_reasoning_renamed(spec: &ProviderSpec, body: &[u8]) -> Option<Vec<u8>> {
    let field = spec.quirks.reasoning_field?;
    let quoted = format!("\"{field}\"");
    if !body.windows(quoted.len()).any(|w| w == quoted.as_bytes()) {
        return None;
    }
    let mut value: Value = serde_json::from_slice(body).ok()?;
    if !rename_reasoning(&mut value, field, "message") {
        return None;
    }
    serde_json::to_vec(&value).ok()
}

/// A stream payload with its reasoning field renamed; `None` when nothing changes.
pub fn chunk_with_reasoning_renamed(spec: &ProviderSpec, payload: &str) -> Option<Value> {
    let field = spec.quirks.reasoning_field?;
    if !payload.contains(&format!("\"{field}\"")) {
        return None;
    }
    let mut value: Value = crate::json::path::from_str(payload).ok()?;
    rename_reasoning(&mut value, field, "delta").then_some(value)
}

/// The OpenAI usage chunk that tells a client the usage a stream chunk carries in
/// `<field>.usage` (Groq's `x_groq`): the chunk with `choices: []` and that usage as its
/// `usage`; `None` when the chunk has no such usage.
pub fn nested_stream_usage(payload: &str, field: &str) -> Option<Value> {
    if !payload.contains(field) {
        return None;
    }
    let Ok(Value::Object(mut chunk)) = crate::json::path::from_str::<Value>(payload) else {
        return None;
    };
    let usage = chunk.remove(field)?.get_mut("usage")?.take();
    if !usage.is_object() {
        return None;
    }
    chunk.insert("choices".into(), Value::Array(Vec::new()));
    chunk.insert("usage".into(), usage);
    Some(Value::Object(chunk))
}

/// The client's error body for an Azure error: the OpenAI-shaped error with Azure's
/// `innererror` (the content filter's verdict per category) kept, as the OpenAI SDK
/// exposes it on the raised error's body.
pub fn keep_inner_error(error: &GatewayError, upstream_body: &[u8]) -> Vec<u8> {
    let inner = serde_json::from_slice::<Value>(upstream_body)
        .ok()
        .and_then(|mut v| v.get_mut("error")?.get_mut("innererror").map(Value::take));
    let Some(mut inner) = inner else {
        return error.to_json();
    };
    crate::secrets::redact_value(&mut inner);
    match serde_json::from_slice::<Value>(&error.to_json()) {
        Ok(mut v) => {
            if let Some(Value::Object(e)) = v.get_mut("error") {
                e.insert("innererror".into(), inner);
            }
            serde_json::to_vec(&v).unwrap_or_else(|_| error.to_json())
        }
        Err(_) => error.to_json(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Defaults never count as set.
    #[test]
    fn defaults_change_nothing() {
        for (p, v) in [
            ("n", json!(1)),
            ("logprobs", json!(false)),
            ("top_logprobs", json!(0)),
            ("logit_bias", json!({})),
            ("tools", json!([])),
            ("parallel_tool_calls", json!(true)),
            ("tool_choice", json!("auto")),
            ("presence_penalty", json!(0.0)),
        ] {
            assert!(!changes_answer(p, &v), "{p}");
        }
        for (p, v) in [
            ("n", json!(2)),
            ("logprobs", json!(true)),
            ("logit_bias", json!({"1": 2})),
            ("presence_penalty", json!(0.5)),
            ("tool_choice", json!("required")),
        ] {
            assert!(changes_answer(p, &v), "{p}");
        }
    }

    /// Ids other than nine alphanumerics map to nine, stably; valid ones stay.
    #[test]
    fn tool_call_ids_for_mistral() {
        assert_eq!(alphanumeric9("D681PevKs"), "D681PevKs");
        let a = alphanumeric9("call_DdmO9pD3xa9XTPNJ32zg2hcA");
        assert_eq!(a, alphanumeric9("call_DdmO9pD3xa9XTPNJ32zg2hcA"));
        assert!(
            a.len() == 9 && a.bytes().all(|b| b.is_ascii_alphanumeric()),
            "{a}"
        );
        assert_ne!(a, alphanumeric9("call_other"));
    }

    /// `reasoning` becomes `reasoning_content`; an existing `reasoning_content` wins.
    #[test]
    fn reasoning_is_renamed() {
        let mut v = json!({"choices": [{"delta": {"reasoning": "r"}}, {"delta": {"reasoning_content": "a", "reasoning": "b"}}]});
        assert!(rename_reasoning(&mut v, "reasoning", "delta"));
        assert_eq!(v["choices"][0]["delta"], json!({"reasoning_content": "r"}));
        assert_eq!(v["choices"][1]["delta"]["reasoning_content"], "a");
    }
}
