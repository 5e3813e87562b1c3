//! An OpenAI-compatible LLM gateway that runs inside Envoy as a proxy-wasm filter.
//!
//! The crate is a **pure core** (configuration, routing, translation, SSE, usage, errors),
//! which knows nothing of proxy-wasm and is tested natively, and a **thin shell**
//! ([`filter`], wasm only) that talks to the host. One `.wasm` is loaded twice: a downstream
//! instance in the HTTP connection manager (authentication, validation, routing by model)
//! and an upstream instance in the router's `upstream_http_filters` (per-attempt
//! translation and provider credentials).

#![deny(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        // A panic kills the Wasm VM: no indexing that can be out of bounds either (use
        // `get`, `split_at_checked`, patterns). Tests may index.
        clippy::indexing_slicing,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]

pub mod auth;
pub mod bytes;
pub mod cache;
pub mod config;
pub mod embeddings;
pub mod error;
pub mod hashing;
pub mod header_map;
pub mod header_policy;
pub mod json;
pub mod limits;
pub mod messages_api;
pub mod metrics;
pub mod openai;
pub mod otel;
pub mod preflight;
pub mod pricing;
pub mod provider;
pub mod request;
pub mod responses_api;
pub mod routing;
pub mod secrets;
pub mod sse;
pub mod usage;

// The renderers (CLI only, never in Envoy) fill JSON documents they built themselves by
// key (`doc["static_resources"] = ...`), which is indexing in clippy's eyes.
#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::indexing_slicing)]
pub mod render;

#[cfg(target_arch = "wasm32")]
pub mod filter;
