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

use super::{push_json, push_str};
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

/// Writes a JSON object member by member, commas included.
struct Members<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Members<'a> {
    fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Members { out, first: true }
    }

    /// Starts member `name`; the caller writes its value.
    fn key(&mut self, name: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    fn value<T: serde::Serialize + ?Sized>(&mut self, name: &str, v: &T) {
        push_json(self.key(name), v);
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

/// Translates an already parsed OpenAI chat request for Converse.
pub fn translate_chat(
    chat: &ChatRequest,
    target: &Target<'_>,
) -> Result<ConverseRequest, GatewayError> {
    check_images(chat)?;
    let built = build_request(chat, target, "Bedrock")?;
    let r = built.request;
    let mut out = Vec::with_capacity(1024);
    let mut body = Members::open(&mut out);
    let mut has_tool_blocks = false;
    let messages = body.key("messages");
    messages.push(b'[');
    for (i, m) in r.messages.iter().enumerate() {
        if i > 0 {
            messages.push(b',');
        }
        messages.extend_from_slice(match m.role {
            MessageRole::User => b"{\"role\":\"user\",\"content\":[",
            MessageRole::Assistant => b"{\"role\":\"assistant\",\"content\":[",
        });
        for (j, block) in m.content.iter().enumerate() {
            has_tool_blocks |= matches!(
                block,
                ContentBlockParam::ToolUse { .. } | ContentBlockParam::ToolResult { .. }
            );
            if j > 0 {
                messages.push(b',');
            }
            push_block(messages, block);
        }
        messages.extend_from_slice(b"]}");
    }
    messages.push(b']');
    if let Some(system) = &r.system {
        let out = body.key("system");
        out.push(b'[');
        match system {
            SystemPrompt::Text(t) => text_block(out, t),
            SystemPrompt::Blocks(list) => {
                for (i, b) in list.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    text_block(out, &b.text);
                    if b.cache_control.is_some() {
                        out.extend_from_slice(CACHE_POINT);
                    }
                }
            }
        }
        out.push(b']');
    }
    let max_tokens =
        (chat.output_limit().is_some() || r.thinking.is_some()).then_some(r.max_tokens);
    if max_tokens.is_some()
        || r.temperature.is_some()
        || r.top_p.is_some()
        || r.stop_sequences.is_some()
    {
        let mut inference = Members::open(body.key("inferenceConfig"));
        if let Some(n) = max_tokens {
            inference.value("maxTokens", &n);
        }
        if let Some(t) = r.temperature {
            inference.value("temperature", &t);
        }
        if let Some(p) = r.top_p {
            inference.value("topP", &p);
        }
        if let Some(stop) = &r.stop_sequences {
            inference.value("stopSequences", stop);
        }
        inference.close();
    }
    if let Some(tools) = &r.tools {
        let choice: Option<&[u8]> = match &r.tool_choice {
            None | Some(ToolChoiceParam::Auto { .. }) => Some(b"{\"auto\":{}}"),
            Some(ToolChoiceParam::Any { .. }) => Some(b"{\"any\":{}}"),
            Some(ToolChoiceParam::Tool { .. }) => Some(b""),
            Some(ToolChoiceParam::None) => None,
        };
        if choice.is_some() || has_tool_blocks {
            let mut config = Members::open(body.key("toolConfig"));
            let list = config.key("tools");
            list.push(b'[');
            for (i, t) in tools.iter().enumerate() {
                if i > 0 {
                    list.push(b',');
                }
                list.extend_from_slice(b"{\"toolSpec\":");
                let mut spec = Members::open(list);
                spec.value("name", &t.name);
                if let Some(d) = &t.description {
                    spec.value("description", d);
                }
                let schema = spec.key("inputSchema");
                schema.extend_from_slice(b"{\"json\":");
                push_json(schema, &t.input_schema);
                schema.push(b'}');
                spec.close();
                list.push(b'}');
            }
            list.push(b']');
            if let Some(choice) = choice {
                let out = config.key("toolChoice");
                if let Some(ToolChoiceParam::Tool { name, .. }) = &r.tool_choice {
                    out.extend_from_slice(b"{\"tool\":{\"name\":");
                    push_str(out, name);
                    out.extend_from_slice(b"}}");
                } else {
                    out.extend_from_slice(choice);
                }
            }
            config.close();
        }
    }
    if let Some(ThinkingConfig::Enabled { budget_tokens }) = r.thinking {
        body.key("additionalModelRequestFields").extend_from_slice(
            format!("{{\"thinking\":{{\"type\":\"enabled\",\"budget_tokens\":{budget_tokens}}}}}")
                .as_bytes(),
        );
    }
    body.close();
    Ok(ConverseRequest {
        translated: TranslatedRequest {
            body: out,
            stream: chat.is_stream(),
            client_wants_usage: chat.is_stream() && chat.wants_stream_usage(),
            dropped: built.dropped,
        },
        json_response_tool: built.json_response_tool,
    })
}

/// Follows a block that carries a prompt-caching mark.
const CACHE_POINT: &[u8] = b",{\"cachePoint\":{\"type\":\"default\"}}";

fn text_block(out: &mut Vec<u8>, text: &crate::json::text::JsonText) {
    out.extend_from_slice(b"{\"text\":");
    push_json(out, text);
    out.push(b'}');
}

/// Appends the Converse form of one Messages content block (two with a cache point).
fn push_block(out: &mut Vec<u8>, block: &ContentBlockParam) {
    let cached = match block {
        ContentBlockParam::Text {
            text,
            cache_control,
        } => {
            text_block(out, text);
            cache_control.is_some()
        }
        ContentBlockParam::Image {
            source,
            cache_control,
        } => {
            media(out, source, false);
            cache_control.is_some()
        }
        ContentBlockParam::Document {
            source,
            cache_control,
        } => {
            media(out, source, true);
            cache_control.is_some()
        }
        ContentBlockParam::ToolUse { id, name, input } => {
            out.extend_from_slice(b"{\"toolUse\":");
            let mut m = Members::open(out);
            m.value("toolUseId", id);
            m.value("name", name);
            m.value("input", input);
            m.close();
            out.push(b'}');
            false
        }
        ContentBlockParam::ToolResult {
            tool_use_id,
            content,
        } => {
            out.extend_from_slice(b"{\"toolResult\":{\"toolUseId\":");
            push_str(out, tool_use_id);
            out.extend_from_slice(b",\"content\":[");
            match content {
                Some(ToolResultContent::Text(t)) => text_block(out, t),
                Some(ToolResultContent::Blocks(blocks)) if !blocks.is_empty() => {
                    for (i, b) in blocks.iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        push_block(out, b);
                    }
                }
                // Converse needs at least one content block in a result.
                _ => out.extend_from_slice(b"{\"text\":\"\"}"),
            }
            out.extend_from_slice(b"]}}");
            false
        }
        ContentBlockParam::Thinking {
            thinking,
            signature,
        } => {
            out.extend_from_slice(b"{\"reasoningContent\":{\"reasoningText\":");
            let mut m = Members::open(out);
            m.value("text", thinking);
            m.value("signature", signature);
            m.close();
            out.extend_from_slice(b"}}");
            false
        }
        ContentBlockParam::RedactedThinking { data } => {
            out.extend_from_slice(b"{\"reasoningContent\":{\"redactedContent\":");
            push_str(out, data);
            out.extend_from_slice(b"}}");
            false
        }
    };
    if cached {
        out.extend_from_slice(CACHE_POINT);
    }
}

/// An image or PDF block from inline bytes. URLs never reach here ([`check_images`]).
fn media(out: &mut Vec<u8>, source: &MediaSource, document: bool) {
    let (media_type, data) = match source {
        MediaSource::Base64 { media_type, data } => (media_type.as_str(), data.as_str()),
        MediaSource::Url { url } => ("", url.as_str()),
    };
    if document {
        out.extend_from_slice(
            b"{\"document\":{\"format\":\"pdf\",\"name\":\"document\",\"source\":{\"bytes\":",
        );
    } else {
        out.extend_from_slice(b"{\"image\":{\"format\":");
        push_str(out, media_type.strip_prefix("image/").unwrap_or(media_type));
        out.extend_from_slice(b",\"source\":{\"bytes\":");
    }
    push_str(out, data);
    out.extend_from_slice(b"}}}");
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
