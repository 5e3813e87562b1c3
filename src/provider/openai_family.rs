//! What the OpenAI-compatible presets and Azure OpenAI do differently from OpenAI, applied
//! by the OpenAI translator from the provider's registry entry: its paths and credential
//! header, the parameters it rejects, where it puts reasoning text, and Azure's content
//! filter errors.

use serde_json::{Map, Value};

use super::common::{logit_bias_set, ParamPolicy};
use super::registry::{ProviderSpec, WireApi};
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

/// True when the body may hold one of the provider's rejected parameters as a key: the
/// common case (none) keeps the translator's fast path.
pub fn may_hold_rejected(spec: &ProviderSpec, body: &[u8]) -> bool {
    spec.quirks.rejected_params.iter().any(|param| {
        let quoted = format!("\"{param}\"");
        body.windows(quoted.len()).any(|w| w == quoted.as_bytes())
    })
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

/// Removes the provider's rejected parameters from the request: one that would change the
/// answer is refused by name (400, `unsupported_parameter`) unless the deployment drops
/// parameters, and then reported as dropped; one set to a default is removed quietly.
pub fn remove_rejected(
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
    Ok(policy.into_dropped())
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
    let mut value: Value = serde_json::from_str(payload).ok()?;
    rename_reasoning(&mut value, field, "delta").then_some(value)
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

    /// `reasoning` becomes `reasoning_content`; an existing `reasoning_content` wins.
    #[test]
    fn reasoning_is_renamed() {
        let mut v = json!({"choices": [{"delta": {"reasoning": "r"}}, {"delta": {"reasoning_content": "a", "reasoning": "b"}}]});
        assert!(rename_reasoning(&mut v, "reasoning", "delta"));
        assert_eq!(v["choices"][0]["delta"], json!({"reasoning_content": "r"}));
        assert_eq!(v["choices"][1]["delta"]["reasoning_content"], "a");
    }
}
