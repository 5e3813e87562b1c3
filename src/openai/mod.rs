//! The client-facing API: OpenAI Chat Completions wire types, no mapping logic.

pub mod chat;
pub mod stream;

pub use chat::*;
pub use stream::*;

/// Path of the chat endpoint.
pub const CHAT_COMPLETIONS_PATH: &str = "/v1/chat/completions";
/// Path of the model list.
pub const MODELS_PATH: &str = "/v1/models";
