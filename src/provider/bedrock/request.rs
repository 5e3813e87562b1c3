//! OpenAI chat request → Bedrock Converse request.
//!
//! Reference: <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html>
//! and the content-block types of the same guide. The conversation is first built as a
//! Claude Messages request by the Anthropic translator (system prompt lifted out,
//! alternating turns, tool results first in user turns, thinking budget, `json_schema` as
//! a forced tool), which is the shape Converse takes for every model family; this module
//! only re-writes it in Converse's envelope:
//!
//! - `system` → `system: [{text}]`, a `cache_control` mark → a `cachePoint` block after it;
//! - text / image (base64 bytes) / PDF document / toolUse / toolResult / reasoningContent
//!   content blocks; Converse takes no image URLs, so an `https:` image is a 400 naming it;
//! - `max_tokens`, `temperature`, `top_p`, `stop` → `inferenceConfig`; the output limit is
//!   sent only when the client set one (or thinking needs one): each model family has its
//!   own maximum;
//! - tools → `toolConfig` (`toolSpec` with `inputSchema.json`), `tool_choice` auto / any /
//!   tool; Converse has no "none", so `none` sends the tools (needed when the conversation
//!   holds tool calls) without a choice, or no tools at all;
//! - `reasoning_effort` → `additionalModelRequestFields.thinking` (Claude's extended
//!   thinking, passed through to the model).

use serde_json::{json, Map, Value};

use crate::error::GatewayError;
use crate::openai::{ChatRequest, Content};
use crate::provider::anthropic::request::build_request;
use crate::provider::anthropic::schema::{
    ContentBlockParam, MediaSource, MessageRole, SystemPrompt, ThinkingConfig, ToolChoiceParam,
    ToolResultContent,
};
use crate::provider::common::TranslatedRequest;
use crate::provider::Target;

/// What the answer side keeps besides [`TranslatedRequest`].
#[derive(Debug)]
pub struct ConverseRequest {
    /// The encoded request and the stream flags.
    pub translated: TranslatedRequest,
    /// The tool standing in for `response_format: json_schema`.
    pub json_response_tool: Option<String>,
}

/// Translates an already parsed OpenAI chat request for Converse.
pub fn translate_chat(
    chat: &ChatRequest,
    target: &Target<'_>,
) -> Result<ConverseRequest, GatewayError> {
    check_images(chat)?;
    let built = build_request(chat, target, "Bedrock")?;
    let r = built.request;
    let mut body = Map::new();
    let mut has_tool_blocks = false;
    let messages: Vec<Value> = r
        .messages
        .iter()
        .map(|m| {
            let role = match m.role {
                MessageRole::User => "user",
                MessageRole::Assistant => "assistant",
            };
            let mut content = Vec::with_capacity(m.content.len());
            for block in &m.content {
                has_tool_blocks |= matches!(
                    block,
                    ContentBlockParam::ToolUse { .. } | ContentBlockParam::ToolResult { .. }
                );
                push_block(&mut content, block);
            }
            json!({"role": role, "content": content})
        })
        .collect();
    body.insert("messages".into(), Value::Array(messages));
    if let Some(system) = &r.system {
        let mut blocks = Vec::new();
        match system {
            SystemPrompt::Text(t) => blocks.push(json!({"text": t.text()})),
            SystemPrompt::Blocks(list) => {
                for b in list {
                    blocks.push(json!({"text": b.text.text()}));
                    if b.cache_control.is_some() {
                        blocks.push(cache_point());
                    }
                }
            }
        }
        body.insert("system".into(), Value::Array(blocks));
    }
    let mut inference = Map::new();
    if chat.output_limit().is_some() || r.thinking.is_some() {
        inference.insert("maxTokens".into(), r.max_tokens.into());
    }
    if let Some(t) = r.temperature {
        inference.insert("temperature".into(), t.into());
    }
    if let Some(p) = r.top_p {
        inference.insert("topP".into(), p.into());
    }
    if let Some(stop) = r.stop_sequences {
        inference.insert("stopSequences".into(), stop.into());
    }
    if !inference.is_empty() {
        body.insert("inferenceConfig".into(), Value::Object(inference));
    }
    if let Some(tools) = &r.tools {
        let choice = match &r.tool_choice {
            None | Some(ToolChoiceParam::Auto { .. }) => Some(json!({"auto": {}})),
            Some(ToolChoiceParam::Any { .. }) => Some(json!({"any": {}})),
            Some(ToolChoiceParam::Tool { name, .. }) => Some(json!({"tool": {"name": name}})),
            Some(ToolChoiceParam::None) => None,
        };
        if choice.is_some() || has_tool_blocks {
            let specs: Vec<Value> = tools
                .iter()
                .map(|t| {
                    let mut spec = json!({"name": t.name, "inputSchema": {"json": t.input_schema}});
                    if let Some(d) = &t.description {
                        spec["description"] = d.as_str().into();
                    }
                    json!({"toolSpec": spec})
                })
                .collect();
            let mut config = json!({ "tools": specs });
            if let Some(choice) = choice {
                config["toolChoice"] = choice;
            }
            body.insert("toolConfig".into(), config);
        }
    }
    if let Some(ThinkingConfig::Enabled { budget_tokens }) = r.thinking {
        body.insert(
            "additionalModelRequestFields".into(),
            json!({"thinking": {"type": "enabled", "budget_tokens": budget_tokens}}),
        );
    }
    let encoded = serde_json::to_vec(&Value::Object(body)).map_err(|e| {
        GatewayError::internal(format!("could not encode the Converse request: {e}"))
    })?;
    Ok(ConverseRequest {
        translated: TranslatedRequest {
            body: encoded,
            stream: chat.is_stream(),
            client_wants_usage: chat.is_stream() && chat.wants_stream_usage(),
            dropped: built.dropped,
        },
        json_response_tool: built.json_response_tool,
    })
}

fn cache_point() -> Value {
    json!({"cachePoint": {"type": "default"}})
}

/// Converse image formats by media type.
fn image_format(media_type: &str) -> &str {
    media_type.strip_prefix("image/").unwrap_or(media_type)
}

/// Appends the Converse form of one Messages content block (two with a cache point).
fn push_block(out: &mut Vec<Value>, block: &ContentBlockParam) {
    let (value, cached) = match block {
        ContentBlockParam::Text {
            text,
            cache_control,
        } => (json!({"text": text.text()}), cache_control.is_some()),
        ContentBlockParam::Image {
            source,
            cache_control,
        } => (media(source, false), cache_control.is_some()),
        ContentBlockParam::Document {
            source,
            cache_control,
        } => (media(source, true), cache_control.is_some()),
        ContentBlockParam::ToolUse { id, name, input } => (
            json!({"toolUse": {"toolUseId": id, "name": name, "input": input}}),
            false,
        ),
        ContentBlockParam::ToolResult {
            tool_use_id,
            content,
        } => {
            let mut parts = Vec::new();
            match content {
                None => {}
                Some(ToolResultContent::Text(t)) => parts.push(json!({"text": t.text()})),
                Some(ToolResultContent::Blocks(blocks)) => {
                    for b in blocks {
                        push_block(&mut parts, b);
                    }
                }
            }
            if parts.is_empty() {
                // Converse needs at least one content block in a result.
                parts.push(json!({"text": ""}));
            }
            (
                json!({"toolResult": {"toolUseId": tool_use_id, "content": parts}}),
                false,
            )
        }
        ContentBlockParam::Thinking {
            thinking,
            signature,
        } => (
            json!({"reasoningContent": {"reasoningText": {"text": thinking, "signature": signature}}}),
            false,
        ),
        ContentBlockParam::RedactedThinking { data } => (
            json!({"reasoningContent": {"redactedContent": data}}),
            false,
        ),
    };
    out.push(value);
    if cached {
        out.push(cache_point());
    }
}

/// An image or PDF block from inline bytes. URLs never reach here ([`check_images`]).
fn media(source: &MediaSource, document: bool) -> Value {
    let (media_type, data) = match source {
        MediaSource::Base64 { media_type, data } => (media_type.as_str(), data.as_str()),
        MediaSource::Url { url } => ("", url.as_str()),
    };
    if document {
        json!({"document": {"format": "pdf", "name": "document", "source": {"bytes": data}}})
    } else {
        json!({"image": {"format": image_format(media_type), "source": {"bytes": data}}})
    }
}

/// Converse takes image bytes, not URLs: an image given by URL is a 400 naming it.
fn check_images(chat: &ChatRequest) -> Result<(), GatewayError> {
    for (i, m) in chat.messages.iter().enumerate() {
        let Some(Content::Parts(parts)) = &m.content else {
            continue;
        };
        for (j, p) in parts.iter().enumerate() {
            let url = p.image_url.as_ref().map(|u| u.url.as_str());
            if p.kind == "image_url" && url.is_some_and(|u| !u.starts_with("data:")) {
                let param = format!("messages[{i}].content[{j}].image_url.url");
                return Err(GatewayError::invalid_param(
                    param.clone(),
                    format!("{param}: Bedrock takes images as bytes, not URLs; send a base64 `data:` URL"),
                ));
            }
        }
    }
    Ok(())
}
