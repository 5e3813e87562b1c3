//! The proxy-wasm shell: the only code that talks to Envoy.
//!
//! One module, loaded twice. The plugin configuration's `role` picks the instance:
//! [`downstream::DownstreamHttp`] in the HTTP connection manager and
//! [`upstream::UpstreamHttp`] in the router's `upstream_http_filters`. Both need
//! `allow_on_headers_stop_iteration: true` so that headers can wait for the body.

mod cache;
mod downstream;
mod gcp_token;
mod handoff;
mod host;
mod root;
mod spend;
mod stats;
mod store;
mod upstream;
mod worker_bytes;

use proxy_wasm::traits::RootContext;
use proxy_wasm::types::LogLevel;

#[allow(missing_docs, unsafe_code)]
mod entry {
    use super::*;
    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Info);
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(root::GatewayRoot::default()) });
    }}
}
