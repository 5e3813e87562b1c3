//! OpenAI chat request → Cohere v2 Chat request.
//!
//! Reference: <https://docs.cohere.com/reference/chat>. What does not map one to one:
//!
//! - System and developer messages stay in place as `system` messages (text only).
//! - An assistant message with tool calls carries its text as `tool_plan`, the field
//!   Cohere documents for the text that comes with calls (`super::response` returns a plan
//!   as `content`, so it round-trips). Earlier reasoning is not sent back.
//! - Tool results are `tool` messages with `tool_call_id` and the result as text.
//! - Images (`https:` and `data:` URLs) pass as `image_url` parts; audio and files are
//!   refused by name, Cohere's chat takes neither.
//! - `tool_choice`: `required` → `REQUIRED`, `none` → `NONE`, `auto` → left out. Cohere
//!   cannot be told which function to call, nor held to one call per turn: a named choice
//!   and `parallel_tool_calls: false` are refused unless `drop_params`.
//! - `response_format`: `json_object` → `{"type": "json_object"}`, `json_schema` → the same
//!   with the schema as `json_schema`.
//! - `top_p` → `p`; `stop` → `stop_sequences`; penalties are sent only when not 0.
//! - `reasoning_effort` → `thinking` (`none` disables it; the others enable it with the
//!   token budget every translating provider uses).
//! - `n` > 1 is refused (Cohere answers one message); logprobs and `logit_bias` are
//!   refused unless `drop_params`. `user` and `metadata` change nothing observable and are
//!   dropped.

use super::schema::{
    ChatRequest as CohereRequest, FunctionCall, FunctionDef, ImageUrl, Message, ResponseFormat,
    Thinking, Tool, ToolCall, UserContent, UserPart,
};
use crate::error::GatewayError;
use crate::openai::{ChatRequest, Content, ContentPart, Message as ChatMessage, Role, ToolChoice};
use crate::provider::common::{
    check_function_tool, check_logprobs_and_bias, function_role_error, missing_image_url,
    missing_tool_call_id, parse_chat_request, parse_response_format, part_text, part_type_error,
    reasoning_budget, required_json_schema, stop_sequences, unknown_format_type, ParamPolicy,
};
use crate::provider::Target;

pub use crate::provider::common::TranslatedRequest;

/// Translates an OpenAI chat request body for Cohere.
pub fn translate_request(
    body: &[u8],
    target: &Target<'_>,
) -> Result<TranslatedRequest, GatewayError> {
    translate_chat(&parse_chat_request(body)?, target)
}

/// [`translate_request`] from a request already parsed (by the downstream instance).
pub fn translate_chat(
    chat: &ChatRequest,
    target: &Target<'_>,
) -> Result<TranslatedRequest, GatewayError> {
    let mut policy = ParamPolicy::new("Cohere", target.options);
    check_logprobs_and_bias(chat, &mut policy)?;
    match chat.n {
        Some(0) => return Err(GatewayError::invalid_param("n", "`n` must be at least 1")),
        Some(n) if n > 1 => {
            return Err(GatewayError::invalid_param(
                "n",
                "`n` > 1 is not supported by Cohere models, which answer with one message; send 1 or omit it",
            )
            .with_code("unsupported_parameter"))
        }
        _ => {}
    }
    let messages = map_messages(&chat.messages)?;
    if !messages
        .iter()
        .any(|m| matches!(m, Message::User { .. } | Message::Tool { .. }))
    {
        return Err(GatewayError::invalid_param(
            "messages",
            "`messages` needs at least one user message",
        ));
    }
    let (tools, tool_choice) = map_tools(chat, &mut policy)?;
    let request = CohereRequest {
        model: target.upstream_model,
        messages,
        tools,
        tool_choice,
        response_format: response_format(chat)?,
        max_tokens: chat.output_limit(),
        temperature: chat.temperature,
        p: chat.top_p,
        stop_sequences: stop_sequences(chat),
        seed: chat.seed,
        frequency_penalty: chat.frequency_penalty.filter(|v| *v != 0.0),
        presence_penalty: chat.presence_penalty.filter(|v| *v != 0.0),
        thinking: thinking(chat.reasoning_effort.as_deref())?,
        stream: chat.is_stream(),
    };
    let body = serde_json::to_vec(&request)
        .map_err(|e| GatewayError::internal(format!("could not encode the Cohere request: {e}")))?;
    Ok(TranslatedRequest {
        body,
        stream: chat.is_stream(),
        client_wants_usage: chat.is_stream() && chat.wants_stream_usage(),
        dropped: policy.into_dropped(),
    })
}

/// `reasoning_effort` → `thinking`.
fn thinking(effort: Option<&str>) -> Result<Option<Thinking>, GatewayError> {
    let Some(effort) = effort else {
        return Ok(None);
    };
    Ok(Some(match reasoning_budget(effort)? {
        None => Thinking {
            kind: "disabled",
            token_budget: None,
        },
        Some(budget) => Thinking {
            kind: "enabled",
            token_budget: Some(budget),
        },
    }))
}

fn map_messages(messages: &[ChatMessage]) -> Result<Vec<Message>, GatewayError> {
    let mut out = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        match m.role {
            Role::System | Role::Developer => {
                let content = text_only(i, m.content.as_ref(), "system and developer messages")?;
                if !content.is_empty() {
                    out.push(Message::System { content });
                }
            }
            Role::User => out.push(Message::User {
                content: user_content(i, m.content.as_ref())?,
            }),
            Role::Assistant => out.extend(assistant(i, m)?),
            Role::Tool => out.push(tool_result(i, m)?),
            Role::Function => return Err(function_role_error(i, "Cohere")),
        }
    }
    Ok(out)
}

/// The text of a message that may hold only text parts.
fn text_only(i: usize, content: Option<&Content>, what: &str) -> Result<String, GatewayError> {
    match content {
        None => Ok(String::new()),
        Some(Content::Text(text)) => Ok(text.text().into_owned()),
        Some(Content::Parts(parts)) => {
            let mut text = String::new();
            for (j, p) in parts.iter().enumerate() {
                match p.kind.as_str() {
                    "text" => text.push_str(&part_text(i, j, p)?),
                    "refusal" => text.push_str(p.refusal.as_deref().unwrap_or_default()),
                    other => {
                        return Err(part_type_error(
                            i,
                            j,
                            other,
                            &format!("{what} can only contain text"),
                        ))
                    }
                }
            }
            Ok(text)
        }
    }
}

fn user_content(i: usize, content: Option<&Content>) -> Result<UserContent, GatewayError> {
    let parts = match content {
        None => return Ok(UserContent::Text(String::new())),
        Some(Content::Text(text)) => return Ok(UserContent::Text(text.text().into_owned())),
        Some(Content::Parts(parts)) => parts,
    };
    let mut out = Vec::with_capacity(parts.len());
    for (j, p) in parts.iter().enumerate() {
        match p.kind.as_str() {
            "text" => out.push(UserPart::Text {
                text: part_text(i, j, p)?,
            }),
            "image_url" => out.push(image_part(i, j, p)?),
            other => {
                return Err(part_type_error(
                    i,
                    j,
                    other,
                    "Cohere models take only text and image_url parts",
                ))
            }
        }
    }
    Ok(UserContent::Parts(out))
}

fn image_part(i: usize, j: usize, p: &ContentPart) -> Result<UserPart, GatewayError> {
    let Some(image) = &p.image_url else {
        return Err(missing_image_url(i, j));
    };
    let url = image.url.as_str();
    if !(url.starts_with("https://") || url.starts_with("http://") || url.starts_with("data:")) {
        let param = format!("messages[{i}].content[{j}].image_url.url");
        return Err(GatewayError::invalid_param(
            param.clone(),
            format!("{param} must be an http(s) URL or a base64 `data:` URL"),
        ));
    }
    Ok(UserPart::ImageUrl {
        image_url: ImageUrl {
            url: url.to_string(),
            detail: image.detail.clone(),
        },
    })
}

/// Text, or with calls the text as `tool_plan` and the calls with their arguments checked;
/// nothing for an empty turn.
fn assistant(i: usize, m: &ChatMessage) -> Result<Option<Message>, GatewayError> {
    let mut text = text_only(i, m.content.as_ref(), "assistant messages")?;
    if text.is_empty() {
        text = m.refusal.clone().unwrap_or_default();
    }
    let text = (!text.is_empty()).then_some(text);
    let calls = m.tool_calls.as_deref().unwrap_or_default();
    if calls.is_empty() {
        // An empty turn says nothing; Cohere refuses an assistant message without content.
        return Ok(text.map(|content| Message::Assistant {
            content: Some(content),
            tool_plan: None,
            tool_calls: None,
        }));
    }
    let mut tool_calls = Vec::with_capacity(calls.len());
    for (j, call) in calls.iter().enumerate() {
        let param = format!("messages[{i}].tool_calls[{j}].function.arguments");
        let arguments = call.function.arguments.trim();
        let arguments = if arguments.is_empty() {
            "{}"
        } else {
            arguments
        };
        if let Err(e) = crate::json::path::from_str::<serde_json::Value>(arguments) {
            return Err(GatewayError::invalid_param(
                param.clone(),
                format!("{param} is not valid JSON: {e}"),
            ));
        }
        tool_calls.push(ToolCall {
            id: Some(call.id.clone()),
            kind: "function".to_string(),
            function: FunctionCall {
                name: Some(call.function.name.clone()),
                arguments: Some(arguments.to_string()),
            },
        });
    }
    Ok(Some(Message::Assistant {
        content: None,
        tool_plan: text,
        tool_calls: Some(tool_calls),
    }))
}

fn tool_result(i: usize, m: &ChatMessage) -> Result<Message, GatewayError> {
    let Some(id) = m.tool_call_id.as_deref().filter(|id| !id.is_empty()) else {
        return Err(missing_tool_call_id(i));
    };
    Ok(Message::Tool {
        tool_call_id: id.to_string(),
        content: text_only(i, m.content.as_ref(), "tool messages")?,
    })
}

/// `response_format` → Cohere's `json_object` format.
fn response_format(chat: &ChatRequest) -> Result<Option<ResponseFormat>, GatewayError> {
    let Some(format) = parse_response_format(chat)? else {
        return Ok(None);
    };
    match format.kind.as_str() {
        "text" => Ok(None),
        "json_object" => Ok(Some(ResponseFormat {
            kind: "json_object",
            json_schema: None,
        })),
        "json_schema" => {
            let spec = required_json_schema(format.json_schema)?;
            Ok(Some(ResponseFormat {
                kind: "json_object",
                json_schema: spec.schema,
            }))
        }
        other => Err(unknown_format_type(other)),
    }
}

/// Tools and `tool_choice`. Without tools no choice is sent: there is nothing to choose.
fn map_tools<'a>(
    chat: &'a ChatRequest,
    policy: &mut ParamPolicy,
) -> Result<(Option<Vec<Tool<'a>>>, Option<&'static str>), GatewayError> {
    let mut tools = Vec::new();
    for (i, t) in chat.tools.iter().flatten().enumerate() {
        check_function_tool(i, t)?;
        tools.push(Tool {
            kind: "function",
            function: FunctionDef {
                name: &t.function.name,
                description: t.function.description.as_deref(),
                parameters: t.function.parameters.as_ref(),
            },
        });
    }
    if tools.is_empty() {
        return Ok((None, None));
    }
    let choice = match &chat.tool_choice {
        None => None,
        Some(ToolChoice::Mode(mode)) => match mode.as_str() {
            "auto" => None,
            "required" => Some("REQUIRED"),
            "none" => Some("NONE"),
            other => {
                return Err(GatewayError::invalid_param(
                    "tool_choice",
                    format!("`tool_choice` `{other}` is not supported; use none, auto or required"),
                ))
            }
        },
        Some(ToolChoice::Named(_)) => {
            // Cohere's choice is REQUIRED or NONE, never one function by name.
            policy.unsupported("tool_choice", "or send `required`")?;
            None
        }
    };
    // Cohere has no switch for one call per turn; the model may still call several.
    if choice != Some("NONE") && chat.parallel_tool_calls == Some(false) {
        policy.unsupported("parallel_tool_calls", "or send true")?;
    }
    Ok((Some(tools), choice))
}
