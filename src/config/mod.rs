//! The gateway configuration: parsed once, validated into typed values.
//!
//! The file a user writes is LiteLLM-shaped (`model_list`, `litellm_params`,
//! `general_settings`), so a LiteLLM `config.yaml` needs few changes. The same document,
//! as JSON, is the plugin configuration both filter instances receive; the renderer and
//! `on_configure` run the same validation, so a config that renders also loads.
//!
//! Every error names the field (`model_list[2].litellm_params.api_key`) and the fix.

use std::collections::HashSet;

use serde::Deserialize;
use serde_json::Value;

use crate::pricing::PriceOverride;
use crate::provider::registry::Prices;
use crate::provider::ProviderKind;

pub mod chains;
pub mod keys;
pub mod mint;
pub mod model;
pub mod periods;
mod provider_params;
pub(crate) mod raw;

use model::{
    check_env_name, parse_host_port, Alias, ConfigError, Deployment, Endpoint, ModelMode, Secret,
};
use raw::{RawConfig, RawGeneralSettings, RawParams, RawRateLimitService};

/// Which of the two filter instances a plugin configuration is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FilterRole {
    /// In the HTTP connection manager: authentication, validation, routing by model.
    Downstream,
    /// In the router's `upstream_http_filters`: per-attempt translation and credentials.
    Upstream,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPluginConfig {
    role: FilterRole,
    config: Value,
}

/// The plugin configuration each filter instance receives: its role and the gateway config.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConfig {
    /// Which instance this is.
    pub role: FilterRole,
    /// The validated gateway configuration.
    pub gateway: GatewayConfig,
}

impl PluginConfig {
    /// Parses `{"role": "downstream"|"upstream", "config": {...gateway config...}}`.
    pub fn from_json(bytes: &[u8]) -> Result<PluginConfig, ConfigError> {
        let raw: RawPluginConfig = serde_json::from_slice(bytes).map_err(|e| {
            ConfigError::new(
                "",
                format!("plugin configuration must be {{\"role\": \"downstream\"|\"upstream\", \"config\": {{...}}}}: {e}"),
            )
        })?;
        let gateway = GatewayConfig::from_value(raw.config).map_err(|e| ConfigError {
            field: if e.field.is_empty() {
                "config".to_string()
            } else {
                format!("config.{}", e.field)
            },
            message: e.message,
        })?;
        Ok(PluginConfig {
            role: raw.role,
            gateway,
        })
    }
}

/// Listener and process settings used by the renderer.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneralSettings {
    /// Address the gateway listens on.
    pub listen_address: String,
    /// Port the gateway listens on.
    pub listen_port: u16,
    /// Envoy admin port (bound to 127.0.0.1).
    pub admin_port: u16,
    /// CA bundle for provider TLS.
    pub ca_bundle: String,
    /// Overall request timeout in seconds (LLM answers are slow).
    pub request_timeout_secs: f64,
    /// Largest request body accepted, in bytes.
    pub max_request_body_bytes: u64,
    /// Most bytes one Envoy worker holds for requests in flight (bodies being read, parsed
    /// requests waiting for their answer, stream events being assembled); a request that
    /// would pass it gets a 503. It bounds the Wasm memory of every worker.
    pub max_buffered_bytes_per_worker: u64,
    /// Envoy's global rate limit service, when limits are shared across replicas.
    pub rate_limit_service: Option<RateLimitService>,
    /// Where Envoy's OpenTelemetry tracer sends spans; no tracing when absent.
    pub opentelemetry: Option<crate::otel::OpenTelemetry>,
    /// Where Vertex AI access tokens come from: a server speaking the metadata server's
    /// token protocol (`general_settings.gcp_token_url`); the path is the token's.
    pub gcp_token_url: Endpoint,
    /// The shared spend ledger (Redis behind webdis); budgets are per process without it.
    pub spend_store: Option<crate::limits::ledger::SpendStore>,
    /// The response cache (in shared data, or in the spend store when there is one).
    pub response_cache: Option<crate::cache::ResponseCache>,
    /// The access log's token counts and cost are JSON numbers rather than decimal text
    /// (`general_settings.access_log_numbers`): Envoy's typed CEL formatter reads them, at
    /// about 46,000 instructions a request.
    pub access_log_numbers: bool,
}

/// The GCE / GKE metadata server's token of the default service account.
pub const DEFAULT_GCP_TOKEN_URL: &str =
    "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token";

/// Where Envoy's global rate limit service (the gRPC `RateLimitService`, e.g.
/// envoyproxy/ratelimit) is and how Envoy uses it
/// (`general_settings.rate_limit_service`).
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitService {
    /// Host name or IP address.
    pub host: String,
    /// gRPC port (plaintext HTTP/2).
    pub port: u16,
    /// The domain every descriptor is sent under (`llm_gateway` unless set).
    pub domain: String,
    /// How long a request waits for the service's answer, in seconds.
    pub timeout_secs: f64,
    /// Refuse requests (500) when the service cannot answer, instead of serving them.
    pub failure_mode_deny: bool,
}

/// The domain used when `rate_limit_service.domain` is not set.
pub const DEFAULT_RATE_LIMIT_DOMAIN: &str = "llm_gateway";

/// The validated gateway configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayConfig {
    /// Aliases in the order they first appear.
    pub aliases: Vec<Alias>,
    /// All deployments, in file order.
    pub deployments: Vec<Deployment>,
    /// The master key clients present as `Authorization: Bearer ...`.
    pub master_key: Secret,
    /// Listener and process settings.
    pub general: GeneralSettings,
    /// Groups of deployments tried in one attempt, by alias and `order`.
    pub tiers: Vec<crate::config::chains::Tier>,
    /// The routes the downstream instance can pick and the renderer renders.
    pub routes: Vec<crate::config::chains::RoutePlan>,
    /// Retry and outlier-detection settings.
    pub router: crate::config::chains::RouterSettings,
    /// Virtual keys and teams (`virtual_keys`, `teams`), and the master key's entry.
    pub keys: crate::config::keys::KeyTable,
}

impl GatewayConfig {
    /// Parses and validates a JSON document.
    pub fn from_json(bytes: &[u8]) -> Result<GatewayConfig, ConfigError> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| ConfigError::new("", format!("not valid JSON: {e}")))?;
        GatewayConfig::from_value(value)
    }

    /// Validates an already parsed document (JSON, or YAML converted to JSON values).
    pub fn from_value(value: Value) -> Result<GatewayConfig, ConfigError> {
        let raw: RawConfig = crate::json::path::from_value(&value)
            .map_err(|e| ConfigError::new(e.path, e.message))?;
        validate(raw)
    }

    /// The alias named `name`.
    pub fn alias(&self, name: &str) -> Option<&Alias> {
        self.aliases.iter().find(|a| a.name == name)
    }

    /// Whether the gateway fetches Google Cloud access tokens: some Vertex AI deployment
    /// has no static token (`api_key`).
    pub fn fetches_gcp_tokens(&self) -> bool {
        self.deployments.iter().any(|d| {
            d.provider.spec().credential == crate::provider::registry::Credential::GoogleOAuth
                && d.api_key.is_none()
        })
    }

    /// Some model name or virtual key has its messages and answers captured on spans.
    pub fn captures_content(&self) -> bool {
        self.aliases.iter().any(|a| a.capture_content)
            || self.keys.keys.iter().any(|k| k.capture_content)
    }

    /// The deployment with id `id`.
    pub fn deployment(&self, id: &str) -> Option<&Deployment> {
        self.deployments.iter().find(|d| d.id == id)
    }

    /// Every environment variable the config reads, sorted and unique.
    pub fn env_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .deployments
            .iter()
            .filter_map(|d| d.api_key.as_ref().and_then(|k| k.env_name()))
            .chain(self.master_key.env_name())
            .map(str::to_string)
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Every environment variable Envoy's process needs: [`Self::env_names`] (read by the
    /// filter) and those only Envoy itself reads (the OpenTelemetry export's headers).
    pub fn envoy_env_names(&self) -> Vec<String> {
        let mut names = self.env_names();
        if let Some(otel) = &self.general.opentelemetry {
            names.extend(otel.env_names().map(str::to_string));
        }
        names.sort_unstable();
        names.dedup();
        names
    }
}

/// `capture_content` as written: only with tracing, and the same on every entry of a model
/// name. Checked where configs are checked and rendered (the CLI), which every config
/// Envoy loads has passed; the module, where each check costs size, takes a name's first
/// entry.
#[cfg(not(target_arch = "wasm32"))]
fn check_capture(raw: &RawConfig, tracing: bool) -> Result<(), ConfigError> {
    const NEEDS_TRACING: &str = "needs `general_settings.opentelemetry`: the captured messages travel on spans; add that section or remove this field";
    for (i, e) in raw.model_list.iter().enumerate() {
        let at = || format!("model_list[{i}].model_info.capture_content");
        let capture = e.model_info.capture_content;
        if capture && !tracing {
            return Err(ConfigError::new(at(), NEEDS_TRACING));
        }
        let mut earlier = raw.model_list.iter().take(i);
        if earlier.any(|f| f.model_name == e.model_name && f.model_info.capture_content != capture)
        {
            return Err(ConfigError::new(
                at(),
                "differs from an earlier entry of the same model_name: capture is decided per model name; set it the same on each of its entries",
            ));
        }
    }
    match raw.virtual_keys.iter().position(|k| k.capture_content) {
        Some(i) if !tracing => Err(ConfigError::new(
            format!("virtual_keys[{i}].capture_content"),
            NEEDS_TRACING,
        )),
        _ => Ok(()),
    }
}

/// Characters allowed in aliases: they travel in a routing header and in stat names.
fn valid_alias(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/@+".contains(&b))
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Turns an alias into a deployment id: `claude-3.5/sonnet` -> `claude-3_5_sonnet`.
fn id_from_alias(alias: &str) -> String {
    alias
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(56)
        .collect()
}

fn validate(raw: RawConfig) -> Result<GatewayConfig, ConfigError> {
    if raw.model_list.is_empty() {
        return Err(ConfigError::new(
            "model_list",
            "is empty; add at least one entry with `model_name` and `litellm_params.model`",
        ));
    }
    let general = validate_general(&raw.general_settings)?;
    let master_key = match raw.general_settings.master_key.as_deref() {
        Some(k) if !k.trim().is_empty() => Secret::parse(k),
        _ => {
            return Err(ConfigError::new(
                "general_settings.master_key",
                "is required: set it to `os.environ/LLM_GATEWAY_MASTER_KEY` (recommended) or a literal key starting with `sk-`",
            ))
        }
    };
    if let Secret::Env(name) = &master_key {
        check_env_name(name, "general_settings.master_key")?;
    }

    // Count deployments per alias so single-deployment aliases get the plain alias as id.
    let mut per_alias: Vec<(&str, usize)> = Vec::new();
    for entry in &raw.model_list {
        if let Some(n) =
            crate::config::chains::sorted_entry(&mut per_alias, entry.model_name.as_str())
        {
            *n += 1;
        }
    }

    let mut aliases: Vec<Alias> = Vec::new();
    let mut deployments: Vec<Deployment> = Vec::new();
    let mut seen_ids: HashSet<String> = HashSet::new();
    let mut ordinal: Vec<(&str, usize)> = Vec::new();

    for (i, entry) in raw.model_list.iter().enumerate() {
        let at = |field: &str| format!("model_list[{i}].{field}");
        let alias = entry.model_name.as_str();
        if !valid_alias(alias) {
            return Err(ConfigError::new(
                at("model_name"),
                format!("`{alias}` is not a valid model name: use 1-128 characters from A-Z a-z 0-9 and - _ . : / @ +"),
            ));
        }
        let n = match crate::config::chains::sorted_entry(&mut ordinal, alias) {
            Some(n) => {
                *n += 1;
                *n
            }
            None => 1,
        };
        let id = match &entry.model_info.id {
            Some(id) => {
                if !valid_id(id) {
                    return Err(ConfigError::new(
                        at("model_info.id"),
                        format!(
                            "`{id}` is not a valid id: use 1-64 characters from A-Z a-z 0-9 - _"
                        ),
                    ));
                }
                id.clone()
            }
            None if crate::config::chains::sorted_get(&per_alias, &alias)
                .copied()
                .unwrap_or(0)
                > 1 =>
            {
                format!("{}-{}", id_from_alias(alias), n)
            }
            None => id_from_alias(alias),
        };
        if !seen_ids.insert(id.clone()) {
            return Err(ConfigError::new(
                at("model_info.id"),
                format!("deployment id `{id}` is used twice; give each deployment a distinct `model_info.id`"),
            ));
        }

        let params = &entry.litellm_params;
        let (provider, upstream_model) = provider_and_model(params, &at)?;
        let spec = provider.spec();
        let api_base = provider_params::api_base(params, spec, &at)?;
        let mut endpoint = Endpoint::parse(&api_base)
            .map_err(|m| ConfigError::new(at("litellm_params.api_base"), m))?;
        if let Some(resource) = provider_params::vertex_resource(params, spec, &at)? {
            endpoint.base_path.push_str(&resource);
        }
        let (api_key, mut options) =
            provider_params::key_and_options(params, spec, &upstream_model, &at)?;
        options.drop_params = params.drop_params.unwrap_or(false);
        if spec.wire == crate::provider::registry::WireApi::BedrockConverse {
            // Signed by Envoy after the module: the Host the router would write later is
            // set by the module (see `provider::bedrock`).
            options.host = Some(endpoint.host.clone());
        }
        if let Some(m) = entry.model_info.max_output_tokens {
            if m == 0 {
                return Err(ConfigError::new(
                    at("model_info.max_output_tokens"),
                    "must be at least 1",
                ));
            }
            options.default_max_tokens = m;
        }
        let timeout_secs = match params.timeout {
            Some(t) if !(t > 0.0 && t <= 86_400.0) => {
                return Err(ConfigError::new(
                    at("litellm_params.timeout"),
                    "must be a number of seconds between 0 and 86400",
                ))
            }
            Some(t) => t,
            None => general.request_timeout_secs,
        };

        // The built-in table lists the models of the providers that publish them under
        // these names (the presets' under `<provider>/<model>`); elsewhere (Azure
        // deployment names, hosted open models) the deployment's `base_model` names the
        // row, or only its own prices apply.
        let base_model = match entry.model_info.base_model.as_deref().map(str::trim) {
            Some(name) => {
                // `azure/gpt-4o` as LiteLLM writes it: the table knows `gpt-4o`; a preset's
                // row (`groq/openai/gpt-oss-120b`) is named whole.
                let tail = name.rsplit_once('/').map_or(name, |(_, model)| model);
                let name = if crate::pricing::lookup(name).is_some() {
                    name
                } else {
                    tail
                };
                if crate::pricing::lookup(name).is_none() {
                    return Err(ConfigError::new(
                        at("model_info.base_model"),
                        format!(
                            "`{name}` has no built-in price: name a model the table lists (e.g. `gpt-4o`), \
                             or set `litellm_params.input_cost_per_token` and `output_cost_per_token`"
                        ),
                    ));
                }
                Some(name.to_string())
            }
            None => None,
        };
        let listed_as = match spec.prices {
            Prices::Listed => Some(upstream_model.clone()),
            Prices::Scoped => Some(format!("{}/{upstream_model}", spec.name)),
            Prices::Reported | Prices::Free | Prices::Unlisted => None,
        };
        let overrides = PriceOverride {
            input_cost_per_token: params.input_cost_per_token,
            output_cost_per_token: params.output_cost_per_token,
            cache_read_input_token_cost: params.cache_read_input_token_cost,
            cache_creation_input_token_cost: params.cache_creation_input_token_cost,
            cache_creation_input_token_cost_above_1hr: params
                .cache_creation_input_token_cost_above_1hr,
            output_cost_per_reasoning_token: params.output_cost_per_reasoning_token,
        };
        let price = match (&base_model, &listed_as) {
            (Some(name), _) | (None, Some(name)) => crate::pricing::resolve(name, &overrides),
            (None, None) if spec.prices == Prices::Free => crate::pricing::resolve_free(&overrides),
            (None, None) => crate::pricing::resolve("", &overrides),
        }
        .map_err(|e| ConfigError::new(at(&format!("litellm_params.{}", e.field)), e.message))?;

        let mode = match entry.model_info.mode.as_deref() {
            Some("chat") => Some(ModelMode::Chat),
            Some("embedding")
                if crate::embeddings::Api::of(spec, &upstream_model).is_none() =>
            {
                return Err(ConfigError::new(
                    at("model_info.mode"),
                    format!(
                        "{} `{upstream_model}` has no embeddings API the gateway translates: use `chat`, or an OpenAI-compatible, Azure, Gemini or Cohere embedding model, Titan Text Embeddings or Cohere Embed on Bedrock, or a Vertex AI text embedding model",
                        spec.display_name
                    ),
                ))
            }
            Some("embedding") => Some(ModelMode::Embedding),
            Some(other) => {
                return Err(ConfigError::new(
                    at("model_info.mode"),
                    format!(
                        "`{other}` is not a mode the gateway serves: use `chat` or `embedding`"
                    ),
                ))
            }
            None if spec.wire == crate::provider::registry::WireApi::AnthropicMessages => {
                Some(ModelMode::Chat)
            }
            None => listed_as
                .as_deref()
                .and_then(crate::pricing::is_embedding_model)
                .map(|e| {
                    if e {
                        ModelMode::Embedding
                    } else {
                        ModelMode::Chat
                    }
                }),
        };
        if let Some(other) = sigv4_region_clash(&deployments, &endpoint, &options, &api_key) {
            return Err(ConfigError::new(
                at("litellm_params.aws_region_name"),
                format!("differs from deployment `{other}`'s at the same host `{}`: Envoy signs for one region per Bedrock host; give them the same `aws_region_name`", endpoint.host),
            ));
        }
        let index = deployments.len();
        deployments.push(Deployment {
            id,
            alias: alias.to_string(),
            provider,
            upstream_model,
            endpoint,
            api_key,
            options,
            timeout_secs,
            weight: match params.weight {
                Some(0) => {
                    return Err(ConfigError::new(
                        at("litellm_params.weight"),
                        "must be at least 1 (remove the deployment to stop sending it traffic)",
                    ))
                }
                Some(w) => w,
                None => 1,
            },
            order: params.order.unwrap_or(1),
            max_input_tokens: match entry.model_info.max_input_tokens {
                Some(0) => {
                    return Err(ConfigError::new(
                        at("model_info.max_input_tokens"),
                        "must be at least 1",
                    ))
                }
                m => m,
            },
            price,
            mode,
        });
        match aliases.iter_mut().find(|a| a.name == alias) {
            Some(a) => {
                a.deployments.push(index);
                if a.mode != mode {
                    a.mode = None;
                }
            }
            None => aliases.push(Alias {
                name: alias.to_string(),
                deployments: vec![index],
                mode,
                capture_content: entry.model_info.capture_content,
            }),
        }
    }

    let router = crate::config::chains::router_settings(&raw.router_settings)?;
    let (tiers, routes) =
        crate::config::chains::build(&aliases, &deployments, &raw.router_settings)?;
    let longest_timeout = deployments
        .iter()
        .map(|d| d.timeout_secs)
        .fold(general.request_timeout_secs, f64::max);
    let keys = crate::config::keys::validate(
        &raw.virtual_keys,
        &raw.teams,
        &aliases,
        &master_key,
        longest_timeout,
    )?;
    #[cfg(not(target_arch = "wasm32"))]
    check_capture(&raw, general.opentelemetry.is_some())?;
    let mut general = general;
    if let Some(c) = &raw.general_settings.response_cache {
        let names = |it: &mut dyn Iterator<Item = &String>| it.cloned().collect::<Vec<_>>();
        general.response_cache = Some(crate::cache::validate(
            c,
            &names(&mut aliases.iter().map(|a| &a.name)),
            &names(&mut keys.keys.iter().map(|k| &k.name)),
        )?);
    }
    Ok(GatewayConfig {
        aliases,
        deployments,
        master_key,
        general,
        tiers,
        routes,
        router,
        keys,
    })
}

fn provider_and_model(
    params: &RawParams,
    at: &dyn Fn(&str) -> String,
) -> Result<(ProviderKind, String), ConfigError> {
    let known = ProviderKind::ALL
        .iter()
        .map(|p| p.name())
        .collect::<Vec<_>>()
        .join(", ");
    let (prefix, rest) = match params.model.split_once('/') {
        Some((p, r)) => (Some(p), r),
        None => (None, params.model.as_str()),
    };
    let provider = match (&params.provider, prefix) {
        (Some(p), _) => ProviderKind::from_name(p).ok_or_else(|| {
            ConfigError::new(
                at("litellm_params.provider"),
                format!("unknown provider `{p}`; known providers: {known}"),
            )
        })?,
        (None, Some(p)) => ProviderKind::from_name(p).ok_or_else(|| {
            ConfigError::new(
                at("litellm_params.model"),
                format!("unknown provider prefix `{p}/`; write `<provider>/<model>` with one of: {known}"),
            )
        })?,
        (None, None) => {
            return Err(ConfigError::new(
                at("litellm_params.model"),
                format!(
                    "`{}` names no provider; write `<provider>/<model>` (e.g. `openai/gpt-4o`) with one of: {known}",
                    params.model
                ),
            ))
        }
    };
    // With an explicit `provider`, the whole `model` is the upstream name unless it repeats
    // the provider as a prefix.
    let upstream = match (&params.provider, prefix) {
        (Some(_), Some(p)) if ProviderKind::from_name(p) == Some(provider) => rest,
        (Some(_), _) => params.model.as_str(),
        (None, _) => rest,
    };
    // `vertex_ai/claude-*` is Claude on Vertex AI: the model names the publisher.
    let provider = match provider {
        ProviderKind::VertexGemini if crate::provider::vertex::is_anthropic_model(upstream) => {
            ProviderKind::VertexAnthropic
        }
        p => p,
    };
    if upstream.trim().is_empty() {
        return Err(ConfigError::new(
            at("litellm_params.model"),
            "names no model after the provider prefix",
        ));
    }
    Ok((provider, upstream.to_string()))
}

fn validate_general(raw: &RawGeneralSettings) -> Result<GeneralSettings, ConfigError> {
    let request_timeout_secs = match raw.request_timeout {
        Some(t) if !(t > 0.0 && t <= 86_400.0) => {
            return Err(ConfigError::new(
                "general_settings.request_timeout",
                "must be a number of seconds between 0 and 86400",
            ))
        }
        Some(t) => t,
        None => 600.0,
    };
    let max_request_body_bytes = match raw.max_request_body_bytes {
        Some(0) => {
            return Err(ConfigError::new(
                "general_settings.max_request_body_bytes",
                "must be at least 1",
            ))
        }
        Some(n) if n > 256 * 1024 * 1024 => {
            return Err(ConfigError::new(
                "general_settings.max_request_body_bytes",
                "must be at most 268435456 (256 MiB)",
            ))
        }
        Some(n) => n,
        None => 16 * 1024 * 1024,
    };
    let max_buffered_bytes_per_worker = match raw.max_buffered_bytes_per_worker {
        Some(n) if n < max_request_body_bytes => {
            return Err(ConfigError::new(
                "general_settings.max_buffered_bytes_per_worker",
                format!("must be at least max_request_body_bytes ({max_request_body_bytes}), or no request of the largest size could ever be served"),
            ))
        }
        Some(n) => n,
        None => max_request_body_bytes.saturating_mul(4),
    };
    let rate_limit_service = raw
        .rate_limit_service
        .as_ref()
        .map(validate_rate_limit_service)
        .transpose()?;
    let opentelemetry = raw
        .opentelemetry
        .as_ref()
        .map(crate::otel::validate)
        .transpose()?;
    let gcp_token_url = Endpoint::parse(
        raw.gcp_token_url
            .as_deref()
            .unwrap_or(DEFAULT_GCP_TOKEN_URL),
    )
    .map_err(|m| ConfigError::new("general_settings.gcp_token_url", m))?;
    let spend_store = raw
        .spend_store
        .as_ref()
        .map(crate::limits::ledger::validate)
        .transpose()?;
    Ok(GeneralSettings {
        rate_limit_service,
        opentelemetry,
        gcp_token_url,
        spend_store,
        // Validated with the aliases and keys it names.
        response_cache: None,
        listen_address: raw
            .listen_address
            .clone()
            // Only this machine until the user opens it (and has a key of their own).
            .unwrap_or_else(|| "127.0.0.1".to_string()),
        listen_port: raw.listen_port.unwrap_or(4000),
        admin_port: raw.admin_port.unwrap_or(9901),
        ca_bundle: raw
            .ca_bundle
            .clone()
            .unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".to_string()),
        request_timeout_secs,
        max_request_body_bytes,
        max_buffered_bytes_per_worker,
        access_log_numbers: raw.access_log_numbers,
    })
}

fn validate_rate_limit_service(raw: &RawRateLimitService) -> Result<RateLimitService, ConfigError> {
    const AT: &str = "general_settings.rate_limit_service";
    let (host, port) = parse_host_port(raw.address.trim()).map_err(|e| {
        ConfigError::new(
            format!("{AT}.address"),
            format!(
                "`{}` {e}; write `host:port`, e.g. `ratelimit:8081` or `127.0.0.1:8081`",
                raw.address
            ),
        )
    })?;
    let domain = match raw.domain.as_deref() {
        None => DEFAULT_RATE_LIMIT_DOMAIN.to_string(),
        Some(d)
            if !d.is_empty()
                && d.len() <= 128
                && d
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
        {
            d.to_string()
        }
        Some(d) => {
            return Err(ConfigError::new(
                format!("{AT}.domain"),
                format!("`{d}` is not a valid domain: use 1-128 characters from A-Z a-z 0-9 - _ . (it must equal the `domain` of the rate limit service's config)"),
            ))
        }
    };
    let timeout_secs = match raw.timeout {
        None => 0.1,
        Some(t) if t > 0.0 && t <= 60.0 => t,
        Some(_) => {
            return Err(ConfigError::new(
                format!("{AT}.timeout"),
                "must be a number of seconds above 0 and at most 60 (e.g. 0.1)",
            ))
        }
    };
    Ok(RateLimitService {
        host,
        port,
        domain,
        timeout_secs,
        failure_mode_deny: raw.failure_mode_deny.unwrap_or(false),
    })
}

/// A Bedrock deployment signed by Envoy (no API key) at the host of `endpoint`, for another
/// region than `options`: Envoy's signer for a host signs for one region.
fn sigv4_region_clash<'a>(
    deployments: &'a [Deployment],
    endpoint: &Endpoint,
    options: &crate::provider::ProviderOptions,
    api_key: &Option<Secret>,
) -> Option<&'a str> {
    if options.aws_region.is_none() || api_key.is_some() {
        return None;
    }
    deployments
        .iter()
        .find(|d| {
            d.api_key.is_none()
                && d.options.aws_region.is_some()
                && d.endpoint.host == endpoint.host
                && d.options.aws_region != options.aws_region
        })
        .map(|d| d.id.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(v: Value) -> Result<GatewayConfig, ConfigError> {
        GatewayConfig::from_value(v)
    }

    fn minimal() -> Value {
        json!({
            "model_list": [
                {"model_name": "gpt-4o", "litellm_params": {"model": "openai/gpt-4o", "api_key": "os.environ/OPENAI_API_KEY"}},
                {"model_name": "claude", "litellm_params": {"model": "anthropic/claude-sonnet-4-5", "api_key": "os.environ/ANTHROPIC_API_KEY"}},
                {"model_name": "local", "litellm_params": {"model": "openai/llama3", "api_base": "http://127.0.0.1:8000/v1"}}
            ],
            "general_settings": {"master_key": "sk-1234"}
        })
    }

    /// A LiteLLM-shaped config validates into deployments with provider defaults.
    #[test]
    fn parses_litellm_shape() {
        let c = cfg(minimal()).unwrap();
        assert_eq!(c.aliases.len(), 3);
        let d = &c.deployments[1];
        assert_eq!(d.provider, ProviderKind::Anthropic);
        assert_eq!(d.upstream_model, "claude-sonnet-4-5");
        assert_eq!(d.endpoint.host, "api.anthropic.com");
        assert_eq!(d.endpoint.port, 443);
        assert!(d.endpoint.tls);
        assert_eq!(d.api_key, Some(Secret::Env("ANTHROPIC_API_KEY".into())));
        let local = &c.deployments[2];
        assert!(!local.endpoint.tls);
        assert_eq!(local.endpoint.base_path, "/v1");
        assert_eq!(local.api_key, None);
        assert_eq!(c.env_names(), vec!["ANTHROPIC_API_KEY", "OPENAI_API_KEY"]);
    }

    /// Several entries with one `model_name` form one alias with ordered deployments.
    #[test]
    fn groups_deployments_by_alias() {
        let c = cfg(json!({
            "model_list": [
                {"model_name": "smart", "litellm_params": {"model": "anthropic/a"}},
                {"model_name": "smart", "litellm_params": {"model": "openai/b"}}
            ],
            "general_settings": {"master_key": "sk-x"}
        }))
        .unwrap();
        assert_eq!(c.aliases.len(), 1);
        assert_eq!(c.aliases[0].deployments, vec![0, 1]);
        assert_eq!(c.deployments[0].id, "smart-1");
        assert_eq!(c.deployments[1].id, "smart-2");
    }

    fn err(v: Value) -> ConfigError {
        cfg(v).unwrap_err()
    }

    /// Errors name the field and say how to fix it.
    #[test]
    fn errors_name_the_field() {
        let mut v = minimal();
        v["model_list"][1]["litellm_params"]["api_key"] = json!("sk-ant-real-key");
        let e = err(v);
        assert_eq!(e.field, "model_list[1].litellm_params.api_key");
        assert!(e.message.contains("os.environ/NAME"), "{e}");
        assert!(!e.to_string().contains("sk-ant-real-key"));

        let mut v = minimal();
        v["model_list"][0]["litellm_params"]["model"] = json!("mystery/x");
        let e = err(v);
        assert_eq!(e.field, "model_list[0].litellm_params.model");
        assert!(e.message.contains("mystery"), "{e}");

        let mut v = minimal();
        v["model_list"][0]["litellm_params"]["modle"] = json!("x");
        let e = err(v);
        assert_eq!(e.field, "model_list[0].litellm_params.modle");
        assert!(e.message.contains("unknown field `modle`"), "{e}");

        let mut v = minimal();
        v["general_settings"] = json!({});
        assert_eq!(err(v).field, "general_settings.master_key");

        let mut v = minimal();
        v["model_list"][2]["litellm_params"]["api_base"] = json!("ftp://x");
        assert_eq!(err(v).field, "model_list[2].litellm_params.api_base");

        let mut v = minimal();
        v["model_list"][0]["model_name"] = json!("bad name");
        assert_eq!(err(v).field, "model_list[0].model_name");

        let mut v = minimal();
        v["general_settings"]["max_request_body_bytes"] = json!(1000);
        v["general_settings"]["max_buffered_bytes_per_worker"] = json!(999);
        let e = err(v);
        assert_eq!(e.field, "general_settings.max_buffered_bytes_per_worker");
        assert!(
            e.message.contains("at least max_request_body_bytes (1000)"),
            "{e}"
        );
        let mut v = minimal();
        v["general_settings"]["max_request_body_bytes"] = json!(1000);
        assert_eq!(cfg(v).unwrap().general.max_buffered_bytes_per_worker, 4000);

        let e = err(json!({"model_list": []}));
        assert_eq!(e.field, "model_list");

        let e = err(json!({"model_list": "x"}));
        assert_eq!(e.field, "model_list");
    }

    /// Duplicate deployment ids are refused.
    #[test]
    fn duplicate_ids() {
        let e = err(json!({
            "model_list": [
                {"model_name": "a", "litellm_params": {"model": "openai/x"}, "model_info": {"id": "same"}},
                {"model_name": "b", "litellm_params": {"model": "openai/y"}, "model_info": {"id": "same"}}
            ],
            "general_settings": {"master_key": "sk-x"}
        }));
        assert_eq!(e.field, "model_list[1].model_info.id");
    }

    /// URLs with ports, paths and IPv6 hosts parse.
    #[test]
    fn endpoint_parsing() {
        let e = Endpoint::parse("http://127.0.0.1:18080/v1/").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.base_path.as_str()),
            ("127.0.0.1", 18080, "/v1")
        );
        assert!(e.host_is_ip());
        let e = Endpoint::parse("https://[::1]:8443").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 8443));
        assert!(Endpoint::parse("https://host:0").is_err());
        assert!(Endpoint::parse("https://user:pw@host").is_err());
        assert!(Endpoint::parse("https://").is_err());
    }

    /// Deployments carry the built-in price of their upstream model; unknown models are
    /// unpriced.
    #[test]
    fn deployments_are_priced() {
        let c = cfg(minimal()).unwrap();
        assert_eq!(c.deployments[0].price, crate::pricing::lookup("gpt-4o"));
        assert_eq!(
            c.deployments[1].price.map(|p| p.cache_write),
            Some(3_750_000)
        );
        assert_eq!(c.deployments[2].price, None);
    }

    /// An Azure deployment (or a hosted open model) names the model it runs in
    /// `model_info.base_model`, as LiteLLM does, and is priced as that model; a name the
    /// table does not know is refused, naming the field.
    #[test]
    fn base_model_prices_a_deployment_under_another_name() {
        let azure = |base: Value| {
            let mut v = minimal();
            v["model_list"] = json!([{
                "model_name": "chat",
                "litellm_params": {"model": "azure/prod-4o", "api_base": "https://acme.openai.azure.com",
                                   "api_version": "2024-10-21", "api_key": "os.environ/AZURE_API_KEY"},
                "model_info": {"base_model": base}
            }]);
            cfg(v)
        };
        let c = azure(json!("azure/gpt-4o")).unwrap();
        assert_eq!(c.deployments[0].price, crate::pricing::lookup("gpt-4o"));
        assert_eq!(
            azure(json!("gpt-4o-mini")).unwrap().deployments[0].price,
            crate::pricing::lookup("gpt-4o-mini")
        );
        let mut v = minimal();
        v["model_list"][0]["model_info"] = json!({"base_model": "gpt-4o-mini"});
        assert_eq!(
            cfg(v).unwrap().deployments[0].price,
            crate::pricing::lookup("gpt-4o-mini")
        );
        let e = azure(json!("gpt-9-turbo")).unwrap_err();
        assert!(e.to_string().contains("model_info.base_model"), "{e}");
        assert!(
            e.to_string()
                .contains("`gpt-9-turbo` has no built-in price"),
            "{e}"
        );
    }

    /// LiteLLM's price fields override the table or price an unknown model.
    #[test]
    fn price_overrides() {
        let mut v = minimal();
        v["model_list"][1]["litellm_params"]["cache_read_input_token_cost"] = json!(0.0000001);
        v["model_list"][1]["litellm_params"]["cache_creation_input_token_cost_above_1hr"] =
            json!(0.000007);
        v["model_list"][2]["litellm_params"]["input_cost_per_token"] = json!(0);
        v["model_list"][2]["litellm_params"]["output_cost_per_token"] = json!(0.0000002);
        let c = cfg(v).unwrap();
        let claude = c.deployments[1].price.unwrap();
        assert_eq!(
            (claude.input, claude.cache_read, claude.cache_write_1h),
            (3_000_000, 100_000, 7_000_000)
        );
        let local = c.deployments[2].price.unwrap();
        assert_eq!(
            (local.input, local.output, local.reasoning),
            (0, 200_000, 200_000)
        );
    }

    /// Price errors name the field and the fix.
    #[test]
    fn price_errors_name_the_field() {
        let mut v = minimal();
        v["model_list"][2]["litellm_params"]["input_cost_per_token"] = json!(0.000001);
        let e = err(v);
        assert_eq!(
            e.field,
            "model_list[2].litellm_params.output_cost_per_token"
        );
        assert!(e.message.contains("llama3"), "{e}");

        let mut v = minimal();
        v["model_list"][0]["litellm_params"]["input_cost_per_token"] = json!(-1e-6);
        let e = err(v);
        assert_eq!(e.field, "model_list[0].litellm_params.input_cost_per_token");
        assert!(e.message.contains("0 or more"), "{e}");

        let mut v = minimal();
        v["model_list"][0]["litellm_params"]["output_cost_per_token"] = json!(10);
        let e = err(v);
        assert_eq!(
            e.field,
            "model_list[0].litellm_params.output_cost_per_token"
        );
        assert!(e.message.contains("per token"), "{e}");

        let mut v = minimal();
        v["model_list"][0]["litellm_params"]["output_cost_per_reasoning_token"] = json!("cheap");
        assert_eq!(
            err(v).field,
            "model_list[0].litellm_params.output_cost_per_reasoning_token"
        );
    }

    /// Secrets never print.
    #[test]
    fn secret_debug_is_redacted() {
        assert_eq!(
            format!("{:?}", Secret::Literal("sk-secret".into())),
            "Literal(<redacted>)"
        );
    }

    /// Gemini deployments get Google's endpoint; `drop_params` is off unless set.
    #[test]
    fn gemini_and_drop_params() {
        let c = cfg(json!({
            "model_list": [
                {"model_name": "flash", "litellm_params": {"model": "gemini/gemini-2.5-flash", "api_key": "os.environ/GEMINI_API_KEY", "drop_params": true}},
                {"model_name": "studio", "litellm_params": {"model": "google_ai_studio/gemini-2.5-pro", "api_key": "os.environ/GEMINI_API_KEY"}}
            ],
            "general_settings": {"master_key": "sk-x"}
        }))
        .unwrap();
        let flash = &c.deployments[0];
        assert_eq!(flash.provider, ProviderKind::Gemini);
        assert_eq!(flash.upstream_model, "gemini-2.5-flash");
        assert_eq!(flash.endpoint.host, "generativelanguage.googleapis.com");
        assert_eq!(flash.endpoint.base_path, "");
        assert!(flash.options.drop_params);
        let studio = &c.deployments[1];
        assert_eq!(studio.provider, ProviderKind::Gemini);
        assert!(!studio.options.drop_params);
    }

    /// Cohere deployments (`cohere/<model>`) get Cohere's endpoint.
    #[test]
    fn cohere_prefix_and_endpoint() {
        let c = cfg(json!({
            "model_list": [
                {"model_name": "command", "litellm_params": {"model": "cohere/command-a-03-2025", "api_key": "os.environ/COHERE_API_KEY"}}
            ],
            "general_settings": {"master_key": "sk-x"}
        }))
        .unwrap();
        let d = &c.deployments[0];
        assert_eq!(d.provider, ProviderKind::Cohere);
        assert_eq!(d.upstream_model, "command-a-03-2025");
        assert_eq!(d.endpoint.host, "api.cohere.com");
        assert_eq!(d.endpoint.base_path, "");
    }

    /// Bedrock deployments (`bedrock/<model id>`): the region's endpoint and the Host the
    /// module sets for the signer; a region that is not one, `aws_region_name` elsewhere,
    /// and two regions for one signed host are refused by field.
    #[test]
    fn bedrock_region_endpoint_and_refusals() {
        let one = |params: Value| {
            json!({"model_list": [{"model_name": "b", "litellm_params": params}],
                   "general_settings": {"master_key": "sk-x"}})
        };
        let c = cfg(one(json!({"model": "bedrock/eu.anthropic.claude-sonnet-4-5-20250929-v1:0", "aws_region_name": "eu-central-1"}))).unwrap();
        let d = &c.deployments[0];
        assert_eq!(d.provider, ProviderKind::Bedrock);
        assert_eq!(
            d.endpoint.host,
            "bedrock-runtime.eu-central-1.amazonaws.com"
        );
        assert_eq!(d.options.host.as_deref(), Some(d.endpoint.host.as_str()));
        assert_eq!(d.options.aws_region.as_deref(), Some("eu-central-1"));
        assert!(d.price.is_some());
        let d = &cfg(one(json!({"model": "bedrock/amazon.nova-pro-v1:0"})))
            .unwrap()
            .deployments[0];
        assert_eq!(d.endpoint.host, "bedrock-runtime.us-east-1.amazonaws.com");

        let e = err(one(
            json!({"model": "bedrock/m", "aws_region_name": "EU Central"}),
        ));
        assert_eq!(e.field, "model_list[0].litellm_params.aws_region_name");
        let e = err(one(
            json!({"model": "openai/gpt-4o", "aws_region_name": "us-east-1"}),
        ));
        assert!(e.message.contains("bedrock"), "{}", e.message);
        let e = err(json!({"model_list": [
            {"model_name": "a", "litellm_params": {"model": "bedrock/m", "api_base": "https://vpce.example", "aws_region_name": "us-east-1"}},
            {"model_name": "b", "litellm_params": {"model": "bedrock/m", "api_base": "https://vpce.example", "aws_region_name": "eu-west-1"}}
        ], "general_settings": {"master_key": "sk-x"}}));
        assert_eq!(e.field, "model_list[1].litellm_params.aws_region_name");
    }

    /// `spend_store` and `response_cache` are read with the rest; the cache's names are
    /// checked against the aliases and keys.
    #[test]
    fn spend_store_and_response_cache() {
        let c = cfg(minimal()).unwrap();
        assert!(c.general.spend_store.is_none() && c.general.response_cache.is_none());
        let mut v = minimal();
        v["general_settings"]["spend_store"] =
            json!({"address": "127.0.0.1:7379", "budget_failure_mode": "open"});
        v["general_settings"]["response_cache"] = json!({"models": ["claude"], "ttl_seconds": 5});
        let c = cfg(v.clone()).unwrap();
        assert_eq!(
            c.general.spend_store.unwrap().budget_failure_mode,
            crate::limits::ledger::BudgetFailureMode::Open
        );
        assert_eq!(c.general.response_cache.unwrap().ttl_secs, 5);
        v["general_settings"]["response_cache"] = json!({"models": ["claude"], "keys": ["nobody"]});
        assert_eq!(
            cfg(v.clone()).unwrap_err().field,
            "general_settings.response_cache.keys[0]"
        );
        v["general_settings"]["spend_store"] = json!({"address": "nowhere"});
        assert_eq!(
            cfg(v).unwrap_err().field,
            "general_settings.spend_store.address"
        );
    }

    /// `rate_limit_service`: defaults, and errors that name the field.
    #[test]
    fn rate_limit_service() {
        assert_eq!(cfg(minimal()).unwrap().general.rate_limit_service, None);

        let mut v = minimal();
        v["general_settings"]["rate_limit_service"] = json!({"address": "ratelimit:8081"});
        let rls = cfg(v).unwrap().general.rate_limit_service.unwrap();
        assert_eq!(
            rls,
            RateLimitService {
                host: "ratelimit".into(),
                port: 8081,
                domain: "llm_gateway".into(),
                timeout_secs: 0.1,
                failure_mode_deny: false,
            }
        );

        let mut v = minimal();
        v["general_settings"]["rate_limit_service"] = json!({
            "address": "[::1]:9000", "domain": "gw-prod", "timeout": 0.25, "failure_mode_deny": true
        });
        let rls = cfg(v).unwrap().general.rate_limit_service.unwrap();
        assert_eq!((rls.host.as_str(), rls.port), ("::1", 9000));
        assert_eq!(rls.domain, "gw-prod");
        assert_eq!(rls.timeout_secs, 0.25);
        assert!(rls.failure_mode_deny);

        let bad = |field: &str, value: Value| {
            let mut v = minimal();
            let mut rls = json!({"address": "127.0.0.1:8081"});
            rls[field] = value;
            v["general_settings"]["rate_limit_service"] = rls;
            err(v)
        };
        for address in [
            "ratelimit",
            "ratelimit:0",
            "ratelimit:99999",
            ":8081",
            "grpc://rl:8081",
            "[::1:8081",
        ] {
            let e = bad("address", json!(address));
            assert_eq!(
                e.field, "general_settings.rate_limit_service.address",
                "{address}"
            );
            assert!(e.message.contains("host:port"), "{e}");
        }
        let e = bad("domain", json!("has space"));
        assert_eq!(e.field, "general_settings.rate_limit_service.domain");
        assert!(e.message.contains("has space"), "{e}");
        assert_eq!(
            bad("domain", json!("")).field,
            "general_settings.rate_limit_service.domain"
        );
        for t in [json!(0), json!(-1), json!(61)] {
            assert_eq!(
                bad("timeout", t).field,
                "general_settings.rate_limit_service.timeout"
            );
        }
        assert_eq!(
            bad("failure_mode_deny", json!("yes")).field,
            "general_settings.rate_limit_service.failure_mode_deny"
        );
        let e = bad("adress", json!("x:1"));
        assert_eq!(e.field, "general_settings.rate_limit_service.adress");
        assert!(e.message.contains("unknown field `adress`"), "{e}");
        let mut v = minimal();
        v["general_settings"]["rate_limit_service"] = json!({"domain": "x"});
        let e = err(v);
        assert_eq!(e.field, "general_settings.rate_limit_service");
        assert!(e.message.contains("address"), "{e}");
    }
}
