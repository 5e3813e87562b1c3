//! The downstream instance's `/v1/embeddings`: the same governance as chat (key, allowed
//! models, limits and budgets reserved from the input's size), kept off the chat path.

use std::rc::Rc;

use proxy_wasm::types::Action;

use super::{DownstreamHttp, HandedRequest};
use crate::config::keys;
use crate::config::model::Deployment;
use crate::config::GatewayConfig;
use crate::embeddings::{self, EmbeddingsRequest};
use crate::error::GatewayError;
use crate::filter::host::{self, Buffer};
use crate::limits::admission::RequestFacts;
use crate::routing;

/// A chat request to an alias whose deployments are all embedding models.
pub(super) fn chat_to_embedding_model(alias: &str) -> GatewayError {
    GatewayError::invalid_param(
        "model",
        format!(
            "`{alias}` is an embedding model: send it to POST /v1/embeddings, or name a chat model"
        ),
    )
    .with_code("model_not_chat")
}

/// The deployments a route may reach, fallbacks included.
fn route_deployments<'c>(
    config: &'c GatewayConfig,
    route: &'c crate::config::chains::RoutePlan,
) -> impl Iterator<Item = &'c Deployment> {
    route
        .tiers
        .iter()
        .filter_map(|t| config.tiers.get(*t))
        .flat_map(|t| t.deployments.iter())
        .filter_map(|d| config.deployments.get(*d))
}

/// What admission reserves: the input's estimated tokens at the dearest input price on
/// the route; embeddings produce no output tokens.
fn facts(
    config: &GatewayConfig,
    route: &crate::config::chains::RoutePlan,
    request: &EmbeddingsRequest,
) -> RequestFacts {
    let input = route_deployments(config, route)
        .filter_map(|d| d.price)
        .map(|p| p.input)
        .max()
        .unwrap_or(0);
    RequestFacts {
        estimated_prompt_tokens: request.estimated_tokens(),
        max_output_tokens: 0,
        // Prices are pico-USD per token.
        input_price_per_token: input as f64 * 1e-12,
        output_price_per_token: 0.0,
    }
}

impl DownstreamHttp {
    /// The whole embeddings body is in: validates it, checks that every deployment the
    /// route may reach can embed it, admits the request and routes it.
    pub(super) fn route_embeddings(&mut self, body_size: usize) -> Action {
        let body = match host::get_buffer(Buffer::RequestBody, 0, body_size) {
            Ok(b) => b,
            Err(e) => {
                log::error!("cannot read the request body (host status {})", e.0);
                return self
                    .reply_error(&GatewayError::internal("could not read the request body"));
            }
        };
        let request = match embeddings::parse_request(&body) {
            Ok(r) => r,
            Err(e) => return self.reply_error(&e),
        };
        let runtime = Rc::clone(&self.runtime);
        let config = &runtime.config;
        let alias = match routing::resolve_alias(config, &request.model) {
            Ok(a) => a,
            Err(e) => return self.reply_error(&e),
        };
        self.alias = Some(alias.name.clone());
        if let Err(e) = keys::check_model(self.virtual_key(), &alias.name) {
            return self.reply_error(&e);
        }
        let route = match routing::choose_route(config, alias, request.estimated_tokens()) {
            Ok(r) => r,
            Err(e) => return self.reply_error(&e),
        };
        // Refused here rather than by an attempt: an attempt's refusal is final, so a
        // deployment that cannot take the request would stop the fallbacks after it.
        if let Some(e) =
            route_deployments(config, route).find_map(|d| request.check_deployment(d).err())
        {
            return self.reply_error(&e);
        }
        if let Err(action) = self.admit(&|| facts(config, route, &request)) {
            return action;
        }
        self.pass_gates(HandedRequest::Embeddings, &route.key, body)
    }
}
