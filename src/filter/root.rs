//! The root context: reads and validates the plugin configuration once per VM, resolves
//! secrets from the environment, and hands the result to every request context.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

use super::downstream::DownstreamHttp;
use super::host::{self, Buffer};
use super::upstream::UpstreamHttp;
use crate::auth::{self, KeyDigest};
use crate::config::{FilterRole, GatewayConfig, PluginConfig};
use crate::error::GatewayError;

/// Everything a request context needs, shared read-only.
pub struct Runtime {
    /// The validated gateway configuration.
    pub config: GatewayConfig,
    /// Digest of the master key.
    pub master_key: KeyDigest,
    /// Provider keys, aligned with `config.deployments` (`None`: keyless or missing).
    pub provider_keys: Vec<Option<String>>,
}

/// The downstream root's writer of queued settlements, with the store configured.
struct SpendFlush {
    store: crate::limits::ledger::SpendStore,
    subjects: Vec<crate::limits::ledger::Subject>,
    flusher: super::spend::Flusher,
}

/// Root context of either instance.
#[derive(Default)]
pub struct GatewayRoot {
    role: Option<FilterRole>,
    runtime: Option<Rc<Runtime>>,
    /// This root fetches Vertex AI access tokens (upstream instance, Vertex deployments
    /// without a static token).
    fetches_gcp_tokens: bool,
    /// The token fetch this root has in flight, and when it started (Unix seconds).
    gcp_token_call: Option<(u32, u64)>,
    spend: Option<SpendFlush>,
}

impl Context for GatewayRoot {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _: usize,
    ) {
        if self.gcp_token_call.is_some_and(|(c, _)| c == token) {
            self.gcp_token_call = None;
            super::gcp_token::on_answer(body_size);
            return;
        }
        if let Some(f) = &mut self.spend {
            let (status, body) = super::spend::answer(num_headers, body_size);
            f.flusher.answered(token, status, &body);
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl RootContext for GatewayRoot {
    fn on_configure(&mut self, size: usize) -> bool {
        let bytes = match host::get_buffer(Buffer::PluginConfiguration, 0, size) {
            Ok(b) => b,
            Err(e) => {
                log::error!("cannot read the plugin configuration (host status {})", e.0);
                return false;
            }
        };
        let plugin = match PluginConfig::from_json(&bytes) {
            Ok(p) => p,
            Err(e) => {
                log::error!("{e}");
                return false;
            }
        };
        let master = match plugin.gateway.master_key.resolve(&env) {
            Some(k) => k,
            None => {
                log::error!(
                    "invalid gateway config: general_settings.master_key: environment variable `{}` is not set for Envoy; export it or list it in vm_config.environment_variables",
                    plugin.gateway.master_key.env_name().unwrap_or("?")
                );
                return false;
            }
        };
        if let Err(e) = crate::preflight::refuse_exposed_demo_key(&plugin.gateway, &master) {
            log::error!("{e}");
            return false;
        }
        // A missing key is said once, by `llm-gateway check`/`render`; each request it
        // fails says so in its 401.
        let provider_keys = plugin
            .gateway
            .deployments
            .iter()
            .map(|d| d.api_key.as_ref().and_then(|k| k.resolve(&env)))
            .collect();
        if plugin.role == FilterRole::Downstream {
            // Records exist before traffic, so every later write is a compare-and-swap.
            crate::limits::records::prepare(&super::store::SharedData, &plugin.gateway.keys);
            if let Some(store) = &plugin.gateway.general.spend_store {
                let subjects = super::spend::all_subjects(&plugin.gateway.keys);
                let period = u32::try_from(store.flush_interval_ms).unwrap_or(200);
                if !subjects.is_empty() && host::set_tick_period(period).is_ok() {
                    self.spend = Some(SpendFlush {
                        store: store.clone(),
                        subjects,
                        flusher: super::spend::Flusher::new(),
                    });
                }
            }
        }
        // Both instances share the VM, and so this limit: the last configured wins, and
        // both carry the same configuration.
        super::worker_bytes::set_limit(plugin.gateway.general.max_buffered_bytes_per_worker);
        self.fetches_gcp_tokens =
            plugin.role == FilterRole::Upstream && plugin.gateway.fetches_gcp_tokens();
        if self.fetches_gcp_tokens {
            super::gcp_token::prepare();
            if let Err(e) = host::set_tick_period(1000) {
                log::error!(
                    "cannot tick to refresh Vertex AI tokens (host status {})",
                    e.0
                );
            }
        }
        self.role = Some(plugin.role);
        self.runtime = Some(Rc::new(Runtime {
            master_key: auth::digest(&master),
            provider_keys,
            config: plugin.gateway,
        }));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Returning None would make the SDK panic; an unconfigured root (which Envoy should
        // never run) answers every request with a 500 instead.
        match (self.role, self.runtime.clone()) {
            (Some(FilterRole::Downstream), Some(rt)) => Some(Box::new(DownstreamHttp::new(rt))),
            (Some(FilterRole::Upstream), Some(rt)) => Some(Box::new(UpstreamHttp::new(rt))),
            _ => Some(Box::new(Unconfigured)),
        }
    }

    fn on_tick(&mut self) {
        if let Some(f) = &mut self.spend {
            let SpendFlush {
                store,
                subjects,
                flusher,
            } = f;
            flusher.tick(&Ticker, store, subjects);
        }
        if self.fetches_gcp_tokens {
            self.refresh_gcp_token();
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl GatewayRoot {
    /// Starts a Vertex AI token fetch when one is due and none is in flight.
    fn refresh_gcp_token(&mut self) {
        let now = host::now_nanos() / 1_000_000_000;
        // A call Envoy never answered (it always should) stops holding this root back.
        if let Some((_, started)) = self.gcp_token_call {
            if now < started.saturating_add(crate::provider::vertex::token::FETCH_TIMEOUT_SECS) {
                return;
            }
            self.gcp_token_call = None;
        }
        let Some(rt) = self.runtime.clone() else {
            return;
        };
        // The SDK's call, not a host wrapper: the SDK must register the call to hand its
        // answer to this root. It panics only on statuses Envoy never returns for a call
        // (Envoy answers Ok, BadArgument or InternalFailure, which come back as errors).
        let dispatch = |headers: &[(&str, &str)], millis: u32| {
            self.dispatch_http_call(
                super::gcp_token::CLUSTER,
                headers.to_vec(),
                None,
                Vec::new(),
                std::time::Duration::from_millis(u64::from(millis)),
            )
            .map_err(|s| s as u32)
        };
        self.gcp_token_call = super::gcp_token::tick(&rt.config.general.gcp_token_url, &dispatch)
            .map(|call| (call, now));
    }
}

/// Dispatches on behalf of the root context (the SDK routes the answer to the context
/// that was active when the call was made, the root here).
struct Ticker;

impl Context for Ticker {}

/// Answers every request with a 500: the plugin has no valid configuration.
struct Unconfigured;

impl Context for Unconfigured {}

impl HttpContext for Unconfigured {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let e = GatewayError::internal("the gateway is not configured");
        // In the shape of the client's API: no mapper rewrites the filter's own replies.
        let path = host::header_text(host::Map::RequestHeaders, ":path").unwrap_or_default();
        let body = if path.starts_with("/v1/messages") {
            crate::messages_api::gateway_error_json(&e)
        } else {
            e.to_json()
        };
        let _ = host::send_local_response(e.status, &[("content-type", "application/json")], &body);
        Action::Pause
    }
}
