//! The validated pieces the configuration's sections share (secrets, endpoints,
//! deployments, aliases) and its one error type. A leaf: [`super::chains`],
//! [`super::keys`] and the other sections build on it, and [`super`] assembles them.

use std::fmt;

use crate::pricing::Price;
use crate::provider::{ProviderKind, ProviderOptions};

/// Prefix that makes a config value read from the environment, as in LiteLLM.
pub const ENV_PREFIX: &str = "os.environ/";

/// A configuration error: the field at fault and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Path of the field, e.g. `model_list[0].litellm_params.model`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "invalid gateway config: {}", self.message)
        } else {
            write!(
                f,
                "invalid gateway config: {}: {}",
                self.field, self.message
            )
        }
    }
}

impl std::error::Error for ConfigError {}

/// Where a secret comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// `os.environ/NAME`: read from the Envoy process environment.
    Env(String),
    /// Written in the config (allowed for the master key only).
    Literal(String),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Env(name) => write!(f, "Env({name})"),
            Secret::Literal(_) => write!(f, "Literal(<redacted>)"),
        }
    }
}

impl Secret {
    pub(crate) fn parse(value: &str) -> Secret {
        match value.strip_prefix(ENV_PREFIX) {
            Some(name) => Secret::Env(name.to_string()),
            None => Secret::Literal(value.to_string()),
        }
    }

    /// The secret's value, reading the environment through `env`.
    pub fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
        match self {
            Secret::Env(name) => env(name).filter(|v| !v.is_empty()),
            Secret::Literal(v) => Some(v.clone()),
        }
    }

    /// The environment variable it names, if any.
    pub fn env_name(&self) -> Option<&str> {
        match self {
            Secret::Env(name) => Some(name),
            Secret::Literal(_) => None,
        }
    }
}

/// Scheme, host, port and path prefix of a deployment's `api_base`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `https` (true) or `http`.
    pub tls: bool,
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Path prefix without a trailing slash (may be empty).
    pub base_path: String,
}

impl Endpoint {
    /// Parses `http(s)://host[:port][/path]`.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!(
                "`{url}` must start with http:// or https:// (e.g. https://api.openai.com/v1)"
            ));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if path.contains('?') || path.contains('#') {
            return Err(format!("`{url}` must not carry a query or fragment"));
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            // IPv6 literal: [::1]:8080
            let end = bracketed
                .find(']')
                .ok_or_else(|| format!("`{url}` has an unterminated IPv6 address"))?;
            let host = &bracketed[..end];
            let after = &bracketed[end + 1..];
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(format!("`{url}` has text after the IPv6 address")),
            };
            (host.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(format!("`{url}` has no host"));
        }
        if host.contains('@') {
            return Err(format!(
                "`{url}` must not carry credentials; use `api_key: os.environ/NAME`"
            ));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("`{url}` has an invalid port `{p}`"))?,
            None if tls => 443,
            None => 80,
        };
        Ok(Endpoint {
            tls,
            host,
            port,
            base_path: path.trim_end_matches('/').to_string(),
        })
    }

    /// True when the host is an IP address (no DNS, no SNI).
    pub fn host_is_ip(&self) -> bool {
        self.host.parse::<std::net::IpAddr>().is_ok()
    }
}

/// One real model behind an alias.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    /// Stable id: `model_info.id`, or derived from the alias. Names the Envoy cluster and is
    /// what the endpoint metadata carries to the upstream filter instance.
    pub id: String,
    /// The alias (client-facing model name) it serves.
    pub alias: String,
    /// The provider API it speaks.
    pub provider: ProviderKind,
    /// The provider's model name.
    pub upstream_model: String,
    /// Where it is.
    pub endpoint: Endpoint,
    /// Its provider key; `None` for keyless local servers.
    pub api_key: Option<Secret>,
    /// Provider-specific settings.
    pub options: ProviderOptions,
    /// Upstream timeout in seconds.
    pub timeout_secs: f64,
    /// Share of traffic among deployments of the same tier (`litellm_params.weight`).
    pub weight: u32,
    /// Priority: lower is tried first (`litellm_params.order`).
    pub order: u32,
    /// Largest prompt it accepts, in tokens (`model_info.max_input_tokens`).
    pub max_input_tokens: Option<u64>,
    /// Its token price: the built-in price of `upstream_model` with the `litellm_params`
    /// price fields applied. `None`: unpriced, counted apart and never guessed.
    pub price: Option<Price>,
    /// What it answers (`model_info.mode`, else known from the price table); `None`: not
    /// known, both endpoints are tried.
    pub mode: Option<ModelMode>,
}

/// What a model answers: chat completions or embeddings (LiteLLM's `model_info.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelMode {
    /// `chat`: `/v1/chat/completions`.
    Chat,
    /// `embedding`: `/v1/embeddings`.
    Embedding,
}

/// A client-facing model name and the deployments behind it, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Alias {
    /// The name clients put in `model`.
    pub name: String,
    /// Indices into [`GatewayConfig::deployments`], primary first.
    pub deployments: Vec<usize>,
    /// The mode all its deployments share, when known: a chat request to an embedding
    /// model is refused at once.
    pub mode: Option<ModelMode>,
    /// Its requests' messages and answers go on their spans (`model_info.capture_content`,
    /// the same on every entry of the name).
    pub capture_content: bool,
}

pub(crate) fn check_env_name(name: &str, field: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes().first().is_some_and(u8::is_ascii_digit);
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!("`{ENV_PREFIX}{name}` does not name a valid environment variable (letters, digits, _)"),
        ))
    }
}

/// Splits `host:port` (`[v6]:port` for IPv6 literals).
pub(crate) fn parse_host_port(address: &str) -> Result<(String, u16), &'static str> {
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or("has an unterminated IPv6 address")?;
        (host, after.strip_prefix(':').ok_or("has no port")?)
    } else {
        address.rsplit_once(':').ok_or("has no port")?
    };
    if host.is_empty() {
        return Err("has no host");
    }
    if address.contains("://") || host.contains('/') || host.contains('@') {
        return Err("must be a plain address, without scheme, path or credentials");
    }
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or("has an invalid port")?;
    Ok((host.to_string(), port))
}
