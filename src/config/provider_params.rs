//! The `litellm_params` fields that belong to one provider: the API base (required where
//! the provider has no default), the key and its style, and the options a provider owns
//! (its registry entry lists them). Each error names the field and the fix.

use super::{check_env_name, ConfigError, RawParams, Secret};
use crate::provider::registry::{OwnedOption, ProviderSpec, WireApi, ALL_OWNED_OPTIONS};
use crate::provider::{ProviderOptions, AZURE_DEFAULT_API_VERSION};

/// The deployment's API base: its own, or the provider's default.
pub(super) fn api_base(
    params: &RawParams,
    spec: &ProviderSpec,
    at: &dyn Fn(&str) -> String,
) -> Result<String, ConfigError> {
    if let Some(base) = &params.api_base {
        return Ok(base.clone());
    }
    if spec.wire == WireApi::BedrockConverse {
        let region = aws_region(params, at)?;
        return Ok(format!("https://bedrock-runtime.{region}.amazonaws.com"));
    }
    if matches!(spec.wire, WireApi::VertexGemini | WireApi::VertexAnthropic) {
        let location = vertex_location(params, at)?;
        return Ok(format!(
            "https://{}",
            crate::provider::vertex::host_for(location)
        ));
    }
    match spec.default_api_base {
        Some(base) => Ok(base.to_string()),
        None => Err(ConfigError::new(
            at("litellm_params.api_base"),
            format!(
                "is required for {} deployments (it has no default): set it to {}",
                spec.display_name,
                match spec.wire {
                    WireApi::AzureOpenAi =>
                        "your resource's endpoint, e.g. `https://<resource>.openai.azure.com`",
                    _ => "the server's OpenAI-compatible base, e.g. `http://<host>:8000/v1`",
                }
            ),
        )),
    }
}

/// The region used when a Bedrock deployment names none (LiteLLM's default too).
pub const DEFAULT_AWS_REGION: &str = "us-east-1";

/// A Bedrock deployment's `aws_region_name`, checked (it becomes part of a host name).
fn aws_region(params: &RawParams, at: &dyn Fn(&str) -> String) -> Result<String, ConfigError> {
    let region = params
        .aws_region_name
        .as_deref()
        .unwrap_or(DEFAULT_AWS_REGION);
    let valid = !region.is_empty()
        && region.len() <= 32
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        return Err(ConfigError::new(
            at("litellm_params.aws_region_name"),
            format!(
                "`{region}` is not an AWS region: write one such as `us-east-1` or `eu-central-1`"
            ),
        ));
    }
    Ok(region.to_string())
}

/// The value set for an owned option, if any.
fn owned_value(params: &RawParams, option: OwnedOption) -> Option<&String> {
    match option {
        OwnedOption::AnthropicVersion => params.anthropic_version.as_ref(),
        OwnedOption::ApiVersion => params.api_version.as_ref(),
        OwnedOption::AzureAdToken => params.azure_ad_token.as_ref(),
        OwnedOption::AwsRegionName => params.aws_region_name.as_ref(),
        OwnedOption::VertexProject => params.vertex_project.as_ref(),
        OwnedOption::VertexLocation => params.vertex_location.as_ref(),
    }
}

/// `vertex_location`, checked: it becomes part of the host name and the path.
fn vertex_location<'a>(
    params: &'a RawParams,
    at: &dyn Fn(&str) -> String,
) -> Result<&'a str, ConfigError> {
    let location = params
        .vertex_location
        .as_deref()
        .unwrap_or(crate::provider::vertex::DEFAULT_LOCATION);
    if !path_word(location) {
        return Err(ConfigError::new(
            at("litellm_params.vertex_location"),
            format!("`{location}` is not a Vertex AI location: write a region such as `us-central1` or `europe-west4`, or `global`"),
        ));
    }
    Ok(location)
}

/// Vertex AI deployments: the path of their project and location,
/// `/v1/projects/{vertex_project}/locations/{vertex_location}`, which the base path ends
/// with; `None` for other providers.
pub(super) fn vertex_resource(
    params: &RawParams,
    spec: &ProviderSpec,
    at: &dyn Fn(&str) -> String,
) -> Result<Option<String>, ConfigError> {
    if !matches!(spec.wire, WireApi::VertexGemini | WireApi::VertexAnthropic) {
        return Ok(None);
    }
    let project = match params.vertex_project.as_deref() {
        Some(p) if path_word(p) => p,
        Some(p) => {
            return Err(ConfigError::new(
                at("litellm_params.vertex_project"),
                format!("`{p}` is not a Google Cloud project id: use its id (lowercase letters, digits and -), not its name"),
            ))
        }
        None => {
            return Err(ConfigError::new(
                at("litellm_params.vertex_project"),
                "is required for Vertex AI deployments: set it to your Google Cloud project id",
            ))
        }
    };
    let location = vertex_location(params, at)?;
    Ok(Some(format!("/v1/projects/{project}/locations/{location}")))
}

/// 1-63 characters from a-z 0-9 - (project ids, locations).
fn path_word(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A key from the environment (`os.environ/NAME`); a key written in the file is refused.
fn env_secret(value: &str, field: &str) -> Result<Secret, ConfigError> {
    match Secret::parse(value) {
        Secret::Env(name) => {
            check_env_name(&name, field)?;
            Ok(Secret::Env(name))
        }
        Secret::Literal(_) => Err(ConfigError::new(
            field,
            "provider keys must not be written in the config: use `os.environ/NAME` and set NAME in Envoy's environment",
        )),
    }
}

/// The deployment's key and provider options, validated against what the provider owns.
pub(super) fn key_and_options(
    params: &RawParams,
    spec: &ProviderSpec,
    upstream_model: &str,
    at: &dyn Fn(&str) -> String,
) -> Result<(Option<Secret>, ProviderOptions), ConfigError> {
    for option in ALL_OWNED_OPTIONS {
        if owned_value(params, *option).is_some() && !spec.options.contains(option) {
            let owners: Vec<&str> = crate::provider::registry::PROVIDERS
                .iter()
                .filter(|p| p.options.contains(option))
                .map(|p| p.name)
                .collect();
            return Err(ConfigError::new(
                at(&format!("litellm_params.{}", option.field())),
                format!(
                    "applies to {} deployments only, not {}; remove it",
                    owners.join(", "),
                    spec.name
                ),
            ));
        }
    }
    let mut options = ProviderOptions::default();
    let mut api_key = match params.api_key.as_deref() {
        None => None,
        Some(k) => Some(env_secret(k, &at("litellm_params.api_key"))?),
    };
    if let Some(v) = &params.anthropic_version {
        if v.trim().is_empty() {
            return Err(ConfigError::new(
                at("litellm_params.anthropic_version"),
                "is empty; omit it to use 2023-06-01",
            ));
        }
        options.anthropic_version = v.clone();
    }
    if spec.wire == WireApi::BedrockConverse {
        options.aws_region = Some(aws_region(params, at)?);
    }
    if spec.wire == WireApi::AzureOpenAi {
        if !valid_deployment_name(upstream_model) {
            return Err(ConfigError::new(
                at("litellm_params.model"),
                format!("`azure/{upstream_model}`: the Azure deployment name must be 1-64 characters from A-Z a-z 0-9 . _ -; write `azure/<deployment>`"),
            ));
        }
        options.azure_api_version = match params.api_version.as_deref() {
            None => Some(AZURE_DEFAULT_API_VERSION.to_string()),
            Some("v1") => None,
            Some(v) if valid_api_version(v) => Some(v.to_string()),
            Some(v) => {
                return Err(ConfigError::new(
                    at("litellm_params.api_version"),
                    format!("`{v}` is not an Azure api-version: write a date version such as `{AZURE_DEFAULT_API_VERSION}` (or `2025-04-01-preview`), `v1` for the v1 path, or omit it for {AZURE_DEFAULT_API_VERSION}"),
                ))
            }
        };
        if let Some(token) = &params.azure_ad_token {
            if api_key.is_some() {
                return Err(ConfigError::new(
                    at("litellm_params.azure_ad_token"),
                    "is set together with `api_key`: use one, the `api-key` header or an Entra ID bearer token",
                ));
            }
            api_key = Some(env_secret(token, &at("litellm_params.azure_ad_token"))?);
            options.bearer_token = true;
        }
    }
    Ok((api_key, options))
}

/// Azure deployment names go into the path unescaped.
fn valid_deployment_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `YYYY-MM-DD` with an optional `-preview`.
fn valid_api_version(v: &str) -> bool {
    let date = v.strip_suffix("-preview").unwrap_or(v);
    date.len() == 10
        && date.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        })
}
