//! Routing by model alias, and the names the two filter instances and the rendered Envoy
//! config agree on (routing header, endpoint metadata, response headers).

use serde::Serialize;

use crate::config::chains::{RouteKind, RoutePlan};
use crate::config::model::Alias;
use crate::config::GatewayConfig;
use crate::error::{ErrorKind, GatewayError};

/// Request header the downstream instance sets to the alias; the rendered routes match on
/// it. Clients cannot set it: the downstream instance always overwrites or removes it.
pub const ROUTE_HEADER: &str = "x-llm-route";

/// Endpoint metadata namespace (`filter_metadata`) that names a deployment.
pub const METADATA_NAMESPACE: &str = "llm_gateway";
/// Key, in [`METADATA_NAMESPACE`], of the deployment id.
pub const METADATA_DEPLOYMENT_KEY: &str = "deployment";

/// Response header: the provider that answered.
pub const PROVIDER_HEADER: &str = "x-llm-provider";
/// Response header: the provider's model that answered.
pub const MODEL_HEADER: &str = "x-llm-model";
/// Response header: the deployment id that answered.
pub const DEPLOYMENT_HEADER: &str = "x-llm-deployment";
/// Response header: how many attempts Envoy made.
pub const ATTEMPTS_HEADER: &str = "x-llm-attempts";
/// Response header: input tokens (non-streamed answers).
pub const PROMPT_TOKENS_HEADER: &str = "x-llm-prompt-tokens";
/// Response header: output tokens (non-streamed answers).
pub const COMPLETION_TOKENS_HEADER: &str = "x-llm-completion-tokens";
/// Response header: input tokens served from the prompt cache (non-streamed answers).
pub const CACHED_TOKENS_HEADER: &str = "x-llm-cached-tokens";
/// Response header: `true` when the token counts are the gateway's estimate because the
/// provider reports none (Gemini embeddings).
pub const USAGE_ESTIMATED_HEADER: &str = "x-llm-usage-estimated";

/// Filter state (`wasm.` prefixed for Envoy) naming the virtual key of the request, set
/// by the downstream instance when the global rate limit is on, never for the master key.
/// Envoy's rate limit filter builds its per-key descriptors from it, on the request path
/// and at stream end alike (request headers would not do: the upstream instance removes
/// internal headers from the very map the filter reads when the stream ends).
pub const LIMIT_KEY_STATE: &str = "llm_limit_key";
/// Filter state naming the virtual key's team, like [`LIMIT_KEY_STATE`].
pub const LIMIT_TEAM_STATE: &str = "llm_limit_team";
/// Filter state the upstream instance writes when an answer ends: its input plus output
/// tokens.
pub const TOTAL_TOKENS_STATE: &str = "llm_total_tokens";
/// Filter state the upstream instance writes when an answer ends: its cost in micro-USD
/// (0 when unpriced).
pub const COST_STATE: &str = "llm_cost_micro_usd";
/// Filter state the upstream instance writes when an answer ends, only when tracing is
/// configured: its cost in USD as a decimal (a span attribute; Envoy cannot divide).
pub const COST_USD_STATE: &str = "llm_cost_usd";
/// Key, in [`METADATA_NAMESPACE`] route metadata, of the GenAI operation (`chat`).
pub const OPERATION_METADATA_KEY: &str = "operation";
/// Filter state naming the API the client called (`embeddings`, `messages`,
/// `count_tokens`, `responses`; `chat` only when tracing is on), for the access log.
pub const OPERATION_STATE: &str = "llm_operation";
/// Filter state the upstream instance writes, without a hand-off, when the usage it
/// published is the answer's final one.
pub const ANSWER_COMPLETE_STATE: &str = "llm_answer_complete";
/// Filter state the upstream instance writes, without a hand-off, when a provider
/// reported usage its request cannot have caused.
pub const USAGE_REJECTED_STATE: &str = "llm_usage_rejected";

/// Response header: cost of the answer in USD (non-streamed answers; 0 when unpriced).
pub const COST_HEADER: &str = "x-llm-cost-usd";

/// Headers by which clients present credentials. The downstream instance removes them all
/// after authentication, so a client's key never reaches a provider.
pub const CLIENT_CREDENTIAL_HEADERS: &[&str] =
    &["authorization", "x-api-key", "api-key", "x-goog-api-key"];

/// Request headers that only the gateway itself may set.
pub const INTERNAL_REQUEST_HEADERS: &[&str] = &[ROUTE_HEADER];

/// Response code details of the filter's own local replies, so that the rendered
/// `local_reply_config` can tell them (already OpenAI-shaped) from Envoy's.
pub const LOCAL_REPLY_DETAILS: &str = "llm_gateway";

/// The alias a request asks for, or a 404 naming it.
pub fn resolve_alias<'a>(
    config: &'a GatewayConfig,
    model: &str,
) -> Result<&'a Alias, GatewayError> {
    config.alias(model).ok_or_else(|| {
        GatewayError::new(
            ErrorKind::NotFound,
            format!("The model `{model}` does not exist or you do not have access to it. GET /v1/models lists the available models."),
        )
        .with_param("model")
        .with_code("model_not_found")
    })
}

/// Picks the route for a request: the alias's primary route, or, when the prompt is
/// estimated to be too large for the primary tier, the context-window route for its size.
/// A prompt too large for every tier is a 400 that says how large it is.
pub fn choose_route<'a>(
    config: &'a GatewayConfig,
    alias: &Alias,
    estimated_prompt_tokens: u64,
) -> Result<&'a RoutePlan, GatewayError> {
    let mut primary = None;
    let mut best: Option<&RoutePlan> = None;
    for r in config.routes.iter().filter(|r| r.alias == alias.name) {
        match r.kind {
            RouteKind::Primary => primary = Some(r),
            RouteKind::ContextWindow { above_tokens } if estimated_prompt_tokens > above_tokens => {
                best = Some(r)
            }
            RouteKind::ContextWindow { .. } => {}
        }
    }
    let Some(primary) = primary else {
        return Err(GatewayError::internal(format!(
            "no route for model `{}`",
            alias.name
        )));
    };
    let first_limit = primary
        .tiers
        .first()
        .and_then(|t| config.tiers.get(*t))
        .and_then(|t| t.max_input_tokens);
    match first_limit {
        Some(limit) if estimated_prompt_tokens > limit => best
            .filter(|r| {
                r.tiers
                    .first()
                    .and_then(|t| config.tiers.get(*t))
                    .is_some_and(|t| t.max_input_tokens.is_none_or(|l| estimated_prompt_tokens <= l))
            })
            .ok_or_else(|| {
            let largest = config
                .routes
                .iter()
                .filter(|r| r.alias == alias.name)
                .flat_map(|r| r.tiers.iter())
                .filter_map(|t| config.tiers.get(*t).and_then(|t| t.max_input_tokens))
                .max()
                .unwrap_or(limit);
            GatewayError::invalid_param(
                "messages",
                format!(
                    "This request's prompt is about {estimated_prompt_tokens} tokens, more than any deployment of `{}` accepts (at most {largest}). Shorten the messages or configure a larger model in context_window_fallbacks.",
                    alias.name
                ),
            )
            .with_code("context_length_exceeded")
        }),
        _ => Ok(primary),
    }
}

#[derive(Serialize)]
struct ModelList<'a> {
    object: &'static str,
    data: Vec<ModelEntry<'a>>,
}

#[derive(Serialize)]
struct ModelEntry<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

/// The `GET /v1/models` body: every alias the key may use, in config order.
pub fn models_list_json(
    config: &GatewayConfig,
    created: u64,
    allowed: impl Fn(&str) -> bool,
) -> Vec<u8> {
    let list = ModelList {
        object: "list",
        data: config
            .aliases
            .iter()
            .filter(|a| allowed(&a.name))
            .map(|a| ModelEntry {
                id: &a.name,
                object: "model",
                created,
                owned_by: "llm-gateway",
            })
            .collect(),
    };
    serde_json::to_vec(&list).unwrap_or_else(|_| br#"{"object":"list","data":[]}"#.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> GatewayConfig {
        GatewayConfig::from_value(json!({
            "model_list": [
                {"model_name": "a", "litellm_params": {"model": "openai/x"}},
                {"model_name": "b", "litellm_params": {"model": "anthropic/y"}}
            ],
            "general_settings": {"master_key": "sk-m"}
        }))
        .unwrap()
    }

    /// Known aliases resolve; unknown ones are a 404 that names the alias.
    #[test]
    fn resolves() {
        let c = config();
        assert_eq!(resolve_alias(&c, "b").unwrap().name, "b");
        let e = resolve_alias(&c, "zzz").unwrap_err();
        assert_eq!(e.status, 404);
        assert!(e.message.contains("`zzz`"));
    }

    /// Large prompts go to the first tier that fits; too large for all is a 400.
    #[test]
    fn context_window_choice() {
        let c = GatewayConfig::from_value(json!({
            "model_list": [
                {"model_name": "s", "litellm_params": {"model": "openai/s"}, "model_info": {"max_input_tokens": 100}},
                {"model_name": "b", "litellm_params": {"model": "openai/b"}, "model_info": {"max_input_tokens": 1000}}
            ],
            "general_settings": {"master_key": "sk-m"},
            "router_settings": {"context_window_fallbacks": [{"s": ["b"]}]}
        }))
        .unwrap();
        let s = c.alias("s").unwrap();
        assert_eq!(choose_route(&c, s, 50).unwrap().key, "s");
        assert_eq!(choose_route(&c, s, 100).unwrap().key, "s");
        assert_eq!(choose_route(&c, s, 101).unwrap().key, "s#ctx100");
        let e = choose_route(&c, s, 5000).unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(e.code.as_deref(), Some("context_length_exceeded"));
        assert!(
            e.message.contains("5000") && e.message.contains("1000"),
            "{}",
            e.message
        );
    }

    /// The model list is OpenAI-shaped.
    #[test]
    fn model_list() {
        let v: serde_json::Value =
            serde_json::from_slice(&models_list_json(&config(), 5, |_| true)).unwrap();
        assert_eq!(v["object"], "list");
        assert_eq!(
            v["data"][1],
            json!({"id": "b", "object": "model", "created": 5, "owned_by": "llm-gateway"})
        );
    }
}
