//! The configuration file as written: serde types, no validation. [`super`] validates
//! them into typed values; every field here is named in its errors.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub(crate) model_list: Vec<RawModelEntry>,
    #[serde(default)]
    pub(crate) general_settings: RawGeneralSettings,
    #[serde(default)]
    pub(crate) router_settings: RawRouterSettings,
    #[serde(default)]
    pub(crate) virtual_keys: Vec<crate::config::keys::RawVirtualKey>,
    #[serde(default)]
    pub(crate) teams: Vec<crate::config::keys::RawTeam>,
}

/// `router_settings`, LiteLLM's names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouterSettings {
    #[serde(default)]
    pub(crate) fallbacks: Option<RawFallbacks>,
    #[serde(default)]
    pub(crate) context_window_fallbacks: Option<RawFallbacks>,
    #[serde(default)]
    pub(crate) allowed_fails: Option<u32>,
    #[serde(default)]
    pub(crate) cooldown_time: Option<f64>,
    #[serde(default)]
    pub(crate) per_try_timeout: Option<f64>,
    #[serde(default)]
    pub(crate) per_try_idle_timeout: Option<f64>,
    #[serde(default)]
    pub(crate) routing_strategy: Option<String>,
    #[serde(default)]
    pub(crate) num_retries: Option<u32>,
}

/// Fallback lists: LiteLLM's `[{"a": ["b"]}, ...]` or the plain map `{"a": ["b"]}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawFallbacks {
    List(Vec<BTreeMap<String, Vec<String>>>),
    Map(BTreeMap<String, Vec<String>>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawModelEntry {
    pub(crate) model_name: String,
    #[serde(alias = "params")]
    pub(crate) litellm_params: RawParams,
    #[serde(default)]
    pub(crate) model_info: RawModelInfo,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawParams {
    pub(crate) model: String,
    #[serde(default)]
    pub(crate) provider: Option<String>,
    #[serde(default)]
    pub(crate) api_base: Option<String>,
    #[serde(default)]
    pub(crate) api_key: Option<String>,
    #[serde(default)]
    pub(crate) anthropic_version: Option<String>,
    /// Azure: the `api-version` (or `v1` for the v1 path).
    #[serde(default)]
    pub(crate) api_version: Option<String>,
    /// Azure: an Entra ID bearer token from the environment, instead of `api_key`.
    #[serde(default)]
    pub(crate) azure_ad_token: Option<String>,
    /// Bedrock: the AWS region (`us-east-1` when unset).
    #[serde(default)]
    pub(crate) aws_region_name: Option<String>,
    /// Vertex AI: the Google Cloud project.
    #[serde(default)]
    pub(crate) vertex_project: Option<String>,
    /// Vertex AI: the region, or `global`.
    #[serde(default)]
    pub(crate) vertex_location: Option<String>,
    /// Drop parameters the provider cannot honour instead of refusing them (LiteLLM's name).
    #[serde(default)]
    pub(crate) drop_params: Option<bool>,
    #[serde(default)]
    pub(crate) timeout: Option<f64>,
    #[serde(default)]
    pub(crate) weight: Option<u32>,
    #[serde(default)]
    pub(crate) order: Option<u32>,
    #[serde(default)]
    pub(crate) input_cost_per_token: Option<f64>,
    #[serde(default)]
    pub(crate) output_cost_per_token: Option<f64>,
    #[serde(default)]
    pub(crate) cache_read_input_token_cost: Option<f64>,
    #[serde(default)]
    pub(crate) cache_creation_input_token_cost: Option<f64>,
    #[serde(default)]
    pub(crate) cache_creation_input_token_cost_above_1hr: Option<f64>,
    #[serde(default)]
    pub(crate) output_cost_per_reasoning_token: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawModelInfo {
    #[serde(default)]
    pub(crate) id: Option<String>,
    /// The model a deployment runs under another name (an Azure deployment, a hosted open
    /// model), as LiteLLM names it: priced from the built-in table by this name.
    #[serde(default)]
    pub(crate) base_model: Option<String>,
    #[serde(default)]
    pub(crate) max_output_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) max_input_tokens: Option<u64>,
    /// LiteLLM's `mode`: `chat` or `embedding`.
    #[serde(default)]
    pub(crate) mode: Option<String>,
    /// Prompts and answers of this model name on its spans (see
    /// [`Alias::capture_content`](super::model::Alias::capture_content)).
    #[serde(default)]
    pub(crate) capture_content: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGeneralSettings {
    #[serde(default)]
    pub(crate) master_key: Option<String>,
    #[serde(default)]
    pub(crate) listen_address: Option<String>,
    #[serde(default)]
    pub(crate) listen_port: Option<u16>,
    #[serde(default)]
    pub(crate) admin_port: Option<u16>,
    #[serde(default)]
    pub(crate) ca_bundle: Option<String>,
    #[serde(default)]
    pub(crate) request_timeout: Option<f64>,
    #[serde(default)]
    pub(crate) max_request_body_bytes: Option<u64>,
    #[serde(default)]
    pub(crate) max_buffered_bytes_per_worker: Option<u64>,
    #[serde(default)]
    pub(crate) rate_limit_service: Option<RawRateLimitService>,
    #[serde(default)]
    pub(crate) opentelemetry: Option<crate::otel::RawOpenTelemetry>,
    #[serde(default)]
    pub(crate) gcp_token_url: Option<String>,
    #[serde(default)]
    pub(crate) spend_store: Option<Value>,
    #[serde(default)]
    pub(crate) response_cache: Option<Value>,
    #[serde(default)]
    pub(crate) access_log_numbers: bool,
}

/// `general_settings.rate_limit_service`: Envoy's global rate limit service.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRateLimitService {
    pub(crate) address: String,
    #[serde(default)]
    pub(crate) domain: Option<String>,
    #[serde(default)]
    pub(crate) timeout: Option<f64>,
    #[serde(default)]
    pub(crate) failure_mode_deny: Option<bool>,
}
