//! The proxy-wasm shell (wasm only).
