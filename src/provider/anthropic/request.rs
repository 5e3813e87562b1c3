//! OpenAI chat request → Anthropic Messages request.
//!
//! Reference: <https://docs.anthropic.com/en/api/messages>. What does not map one to one:
//!
//! - System and developer messages, wherever they appear, become the top-level `system`
//!   (text pieces joined by a blank line; blocks when any piece carries `cache_control`).
//! - Anthropic needs strict user/assistant alternation, so consecutive turns of one role are
//!   merged; tool results are user turns, and within a user turn they come first, as
//!   Anthropic requires.
//! - Empty text is dropped: Anthropic rejects empty text blocks and empty messages.
//! - `reasoning_effort` becomes a thinking budget. Anthropic refuses `temperature` and
//!   `top_p` with thinking, so both are dropped then; it also only allows `tool_choice`
//!   auto or none with thinking, so a forced choice with reasoning is a 400 here.
//! - Anthropic's models since Claude Opus 4.1 refuse `temperature` and `top_p` together.
//!   Of the two, one that changes nothing is left out (`top_p` 1 keeps every token;
//!   `temperature` 1 is Anthropic's default); two that both matter are a 400 naming
//!   `top_p`, or with `drop_params` `temperature` alone is sent (`one_sampler`).
//! - `response_format` `json_schema` becomes a forced tool whose input is the answer (the
//!   response side turns that call back into `content`); `json_object` becomes a system
//!   instruction. Anthropic's own structured outputs are still a beta.
//! - Parameters Anthropic cannot honour (logprobs, `logit_bias`, non-zero penalties) are
//!   refused with a 400 rather than silently ignored, unless the deployment sets
//!   `drop_params` (see [`ParamPolicy`]); `n` > 1 is always refused. OpenAI-only fields
//!   that change nothing observable (`seed`, `metadata`, ...) are dropped.

use super::schema::{
    ContentBlockParam, MediaSource, MessageParam, MessageRole, MessagesRequest, Metadata,
    SystemPrompt, TextBlockParam, ThinkingConfig, ToolChoiceParam, ToolParam, ToolResultContent,
};
use crate::error::GatewayError;
use crate::json::raw::RawJson;
use crate::json::text::JsonText;
use crate::openai::{
    ChatRequest, Content, ContentPart, ImageUrl, Message, Role, ThinkingBlock, ToolCall, ToolChoice,
};
use crate::provider::common::{
    call_arguments, check_function_tool, check_logprobs_and_bias, function_role_error,
    missing_image_url, missing_tool_call_id, move_to_front, parse_chat_request, parse_data_url,
    parse_response_format, part_type_error, required_json_schema, split_thought_signature,
    stop_sequences, unknown_format_type, ParamPolicy,
};
use crate::provider::Target;
use serde_json::Value;

/// The translated request and what the response side must remember.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslatedRequest {
    /// Anthropic JSON body.
    pub body: Vec<u8>,
    /// The client asked for a stream.
    pub stream: bool,
    /// The client asked for a usage chunk (`stream_options.include_usage`).
    pub client_wants_usage: bool,
    /// The tool standing in for `response_format: json_schema`: a call to it is the answer
    /// and goes back to the client as `message.content`.
    pub json_response_tool: Option<String>,
    /// Parameters left out under the deployment's `drop_params`.
    pub dropped: Vec<String>,
}

/// Tool name used for `json_schema` when the schema has no name.
const DEFAULT_JSON_TOOL_NAME: &str = "json_response";

/// System instruction standing in for `response_format: json_object`.
const JSON_OBJECT_INSTRUCTION: &str = "Respond with a single JSON object.";

/// The thinking budget for `reasoning_effort`; 1024 is Anthropic's minimum.
fn thinking_budget(effort: Option<&str>) -> Result<Option<u64>, GatewayError> {
    match effort {
        None | Some("none") => Ok(None),
        Some("minimal" | "low") => Ok(Some(1024)),
        Some("medium") => Ok(Some(4096)),
        Some("high") => Ok(Some(16384)),
        Some(other) => Err(GatewayError::invalid_param(
            "reasoning_effort",
            format!(
                "`reasoning_effort` `{other}` is not supported; use minimal, low, medium, high or none"
            ),
        )),
    }
}

/// Translates an OpenAI chat request body for Anthropic.
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
    translate_chat_as(chat, target, None)
}

/// [`translate_chat`] for a host that wants the API version in the body and the model in
/// the path (Vertex AI's `rawPredict`): `body_version` is that version.
pub fn translate_chat_as(
    chat: &ChatRequest,
    target: &Target<'_>,
    body_version: Option<&str>,
) -> Result<TranslatedRequest, GatewayError> {
    let mut built = build_request(chat, target, "Anthropic")?;
    if let Some(version) = body_version {
        built.request.anthropic_version = Some(version.to_string());
        built.request.model = String::new();
    }
    let mut body = Vec::with_capacity(size_hint(chat));
    serde_json::to_writer(&mut body, &built.request).map_err(|e| {
        GatewayError::internal(format!("could not encode the Anthropic request: {e}"))
    })?;
    Ok(TranslatedRequest {
        body,
        stream: chat.is_stream(),
        client_wants_usage: chat.is_stream() && chat.wants_stream_usage(),
        json_response_tool: built.json_response_tool,
        dropped: built.dropped,
    })
}

/// The Messages request for `chat`, before it is encoded: also the model of the
/// translations that speak Claude's conversation shape in another envelope (Bedrock's
/// Converse). `provider` names the provider in refusals.
#[derive(Debug)]
pub struct BuiltRequest {
    /// The request.
    pub request: MessagesRequest,
    /// See [`TranslatedRequest::json_response_tool`].
    pub json_response_tool: Option<String>,
    /// Parameters left out under the deployment's `drop_params`.
    pub dropped: Vec<String>,
}

/// Builds the Messages request for `chat` (see [`BuiltRequest`]).
pub fn build_request(
    chat: &ChatRequest,
    target: &Target<'_>,
    provider: &'static str,
) -> Result<BuiltRequest, GatewayError> {
    let mut policy = ParamPolicy::new(provider, target.options);
    refuse_unsupported(chat, &mut policy)?;

    let mut system = SystemBuilder::default();
    let messages = map_messages(&chat.messages, &mut system)?;
    if messages.is_empty() {
        return Err(GatewayError::invalid_param(
            "messages",
            "`messages` needs at least one non-empty user or assistant message",
        ));
    }

    let format = response_format(chat)?;
    if matches!(format, Format::JsonObject) {
        system.push(JSON_OBJECT_INSTRUCTION.into(), None);
    }
    let budget = thinking_budget(chat.reasoning_effort.as_deref())?;
    let json_schema = match format {
        Format::JsonSchema(tool) => Some(tool),
        Format::Text | Format::JsonObject => None,
    };
    let json_response_tool = json_schema.as_ref().map(|t| t.name.clone());
    let (tools, tool_choice) = map_tools(chat, json_schema, budget.is_some())?;

    let mut max_tokens = chat
        .output_limit()
        .unwrap_or(target.options.default_max_tokens);
    if let Some(budget) = budget {
        // The thinking budget is part of max_tokens and must stay below it.
        if max_tokens <= budget {
            max_tokens = budget.saturating_add(target.options.default_max_tokens);
        }
    }
    // Anthropic rejects empty stop sequences; an all-empty list is no list.
    let stop_sequences = stop_sequences(chat);
    let thinking = budget.map(|budget_tokens| ThinkingConfig::Enabled { budget_tokens });
    let (temperature, top_p) = if thinking.is_some() {
        (None, None)
    } else {
        one_sampler(chat, &mut policy)?
    };
    let request = MessagesRequest {
        anthropic_version: None,
        model: target.upstream_model.to_string(),
        max_tokens,
        messages,
        system: system.build(),
        temperature,
        top_p,
        stop_sequences,
        stream: chat.is_stream().then_some(true),
        metadata: chat.user.clone().map(|user_id| Metadata { user_id }),
        tools,
        tool_choice,
        thinking,
    };
    Ok(BuiltRequest {
        request,
        json_response_tool,
        dropped: policy.into_dropped(),
    })
}

/// About the size of the Anthropic body, so that it is allocated once rather than grown
/// by doubling: the message texts plus some room for everything else.
fn size_hint(chat: &ChatRequest) -> usize {
    let texts: usize = chat
        .messages
        .iter()
        .map(|m| match &m.content {
            Some(Content::Text(t)) => t.len() + 64,
            _ => 256,
        })
        .sum();
    texts + 1024
}

/// The schema of a tool that takes no arguments (Anthropic requires one).
fn no_arguments() -> Result<RawJson, GatewayError> {
    RawJson::parse(r#"{"type":"object","properties":{}}"#)
        .ok_or_else(|| GatewayError::internal("the empty tool schema is not JSON"))
}

/// Refuses parameters Anthropic cannot honour (or drops them, when the deployment allows):
/// the client would otherwise get a different answer than it asked for without knowing it.
/// `n` > 1 is refused even then: dropping it would return one choice where several were
/// asked for.
fn refuse_unsupported(chat: &ChatRequest, policy: &mut ParamPolicy) -> Result<(), GatewayError> {
    if chat.n.is_some_and(|n| n > 1) {
        return Err(GatewayError::invalid_param(
            "n",
            "`n` greater than 1 is not supported by Anthropic models; send one request per choice",
        ));
    }
    check_logprobs_and_bias(chat, policy)?;
    // SDKs often send the penalties as 0; only a value that would change the answer counts.
    for (name, value) in [
        ("presence_penalty", chat.presence_penalty),
        ("frequency_penalty", chat.frequency_penalty),
    ] {
        if value.is_some_and(|v| v != 0.0) {
            policy.unsupported(name, "or send 0")?;
        }
    }
    if chat.temperature.is_some_and(|t| t > 1.0) {
        return Err(GatewayError::invalid_param(
            "temperature",
            "`temperature` must be between 0 and 1 for Anthropic models",
        ));
    }
    Ok(())
}

/// The `temperature` and `top_p` to send: at most one of them, as Anthropic's current
/// models take (they answer 400 to both). A value that changes nothing is left out first:
/// `top_p` 1 (every token stays in the nucleus), then `temperature` 1 (Anthropic's
/// default). Two values that both change the answer are the client's to choose between,
/// unless the deployment drops parameters; then `temperature` is kept.
fn one_sampler(
    chat: &ChatRequest,
    policy: &mut ParamPolicy,
) -> Result<(Option<f64>, Option<f64>), GatewayError> {
    match (chat.temperature, chat.top_p) {
        (Some(_), Some(p)) if p >= 1.0 => Ok((chat.temperature, None)),
        (Some(1.0), Some(_)) => Ok((None, chat.top_p)),
        (Some(_), Some(_)) => {
            policy.unsupported(
                "top_p",
                "when you send `temperature` (Anthropic's current models take one of the two, not both)",
            )?;
            Ok((chat.temperature, None))
        }
        (temperature, top_p) => Ok((temperature, top_p)),
    }
}

/// Collects system and developer text, in order, for the top-level `system`.
#[derive(Default)]
struct SystemBuilder {
    blocks: Vec<TextBlockParam>,
}

impl SystemBuilder {
    fn push(&mut self, text: JsonText, cache_control: Option<Value>) {
        if !text.is_empty() {
            self.blocks.push(TextBlockParam {
                text,
                cache_control,
            });
        }
    }

    /// A plain string unless a block must carry `cache_control`.
    fn build(self) -> Option<SystemPrompt> {
        if self.blocks.is_empty() {
            None
        } else if self.blocks.iter().any(|b| b.cache_control.is_some()) {
            Some(SystemPrompt::Blocks(self.blocks))
        } else {
            let texts: Vec<JsonText> = self.blocks.into_iter().map(|b| b.text).collect();
            Some(SystemPrompt::Text(JsonText::join(&texts, "\n\n")))
        }
    }
}

/// Builds the alternating message list; empty turns are skipped and same-role turns merged.
#[derive(Default)]
struct Turns {
    messages: Vec<MessageParam>,
}

impl Turns {
    fn push(&mut self, role: MessageRole, blocks: Vec<ContentBlockParam>) {
        if blocks.is_empty() {
            return;
        }
        match self.messages.last_mut() {
            Some(last) if last.role == role => last.content.extend(blocks),
            _ => self.messages.push(MessageParam {
                role,
                content: blocks,
            }),
        }
    }

    fn finish(mut self) -> Vec<MessageParam> {
        for m in &mut self.messages {
            if m.role == MessageRole::User {
                // Anthropic wants tool results before any other block of a user turn.
                move_to_front(&mut m.content, |b| {
                    matches!(b, ContentBlockParam::ToolResult { .. })
                });
            }
        }
        self.messages
    }
}

fn map_messages(
    messages: &[Message],
    system: &mut SystemBuilder,
) -> Result<Vec<MessageParam>, GatewayError> {
    let mut turns = Turns::default();
    for (i, m) in messages.iter().enumerate() {
        match m.role {
            Role::System | Role::Developer => system_text(i, m, system)?,
            Role::User => turns.push(MessageRole::User, user_blocks(i, m.content.as_ref())?),
            Role::Assistant => turns.push(MessageRole::Assistant, assistant_blocks(i, m)?),
            Role::Tool => turns.push(MessageRole::User, vec![tool_result(i, m)?]),
            Role::Function => return Err(function_role_error(i, "Anthropic")),
        }
    }
    Ok(turns.finish())
}

fn system_text(i: usize, m: &Message, system: &mut SystemBuilder) -> Result<(), GatewayError> {
    match &m.content {
        None => {}
        Some(Content::Text(text)) => system.push(text.clone(), None),
        Some(Content::Parts(parts)) => {
            for (j, p) in parts.iter().enumerate() {
                if p.kind != "text" {
                    return Err(part_type_error(
                        i,
                        j,
                        &p.kind,
                        "system and developer messages can only contain text",
                    ));
                }
                system.push(part_text(i, j, p)?, p.cache_control.clone());
            }
        }
    }
    Ok(())
}

fn user_blocks(
    i: usize,
    content: Option<&Content>,
) -> Result<Vec<ContentBlockParam>, GatewayError> {
    let mut blocks = Vec::new();
    match content {
        None => {}
        Some(Content::Text(text)) => push_text(&mut blocks, text.clone(), None),
        Some(Content::Parts(parts)) => {
            for (j, p) in parts.iter().enumerate() {
                match p.kind.as_str() {
                    "text" => push_text(&mut blocks, part_text(i, j, p)?, p.cache_control.clone()),
                    "image_url" => blocks.push(image_block(i, j, p)?),
                    "file" => blocks.push(file_block(i, j, p)?),
                    "input_audio" => {
                        return Err(part_type_error(
                            i,
                            j,
                            &p.kind,
                            "audio input is not supported by Anthropic models",
                        ))
                    }
                    other => {
                        return Err(part_type_error(
                            i,
                            j,
                            other,
                            "this content part type is not supported by Anthropic models",
                        ))
                    }
                }
            }
        }
    }
    Ok(blocks)
}

/// Thinking blocks first (Anthropic checks them against the tool calls that follow), then
/// text, then tool calls.
fn assistant_blocks(i: usize, m: &Message) -> Result<Vec<ContentBlockParam>, GatewayError> {
    let mut blocks = Vec::new();
    if let Some(thinking) = &m.thinking_blocks {
        for (k, b) in thinking.iter().enumerate() {
            blocks.push(thinking_block(i, k, b)?);
        }
    }
    let text_start = blocks.len();
    match &m.content {
        None => {}
        Some(Content::Text(text)) => push_text(&mut blocks, text.clone(), None),
        Some(Content::Parts(parts)) => {
            for (j, p) in parts.iter().enumerate() {
                match p.kind.as_str() {
                    "text" => push_text(&mut blocks, part_text(i, j, p)?, p.cache_control.clone()),
                    "refusal" => push_text(
                        &mut blocks,
                        p.refusal.clone().unwrap_or_default().into(),
                        None,
                    ),
                    other => {
                        return Err(part_type_error(
                            i,
                            j,
                            other,
                            "assistant messages can only contain text",
                        ))
                    }
                }
            }
        }
    }
    if blocks.len() == text_start {
        if let Some(refusal) = &m.refusal {
            push_text(&mut blocks, refusal.as_str().into(), None);
        }
    }
    if let Some(calls) = &m.tool_calls {
        for (j, call) in calls.iter().enumerate() {
            blocks.push(tool_use(i, j, call)?);
        }
    }
    Ok(blocks)
}

fn thinking_block(
    i: usize,
    k: usize,
    b: &ThinkingBlock,
) -> Result<ContentBlockParam, GatewayError> {
    let field = |name: &str| format!("messages[{i}].thinking_blocks[{k}].{name}");
    match b.kind.as_str() {
        "thinking" => {
            let Some(signature) = b.signature.clone().filter(|s| !s.is_empty()) else {
                return Err(GatewayError::invalid_param(
                    field("signature"),
                    format!(
                        "{} is missing: Anthropic only accepts thinking blocks with the signature it returned",
                        field("signature")
                    ),
                ));
            };
            Ok(ContentBlockParam::Thinking {
                thinking: b.thinking.clone().unwrap_or_default(),
                signature,
            })
        }
        "redacted_thinking" => match b.data.clone() {
            Some(data) => Ok(ContentBlockParam::RedactedThinking { data }),
            None => Err(GatewayError::invalid_param(
                field("data"),
                format!(
                    "{} is missing on a `redacted_thinking` block",
                    field("data")
                ),
            )),
        },
        other => Err(GatewayError::invalid_param(
            field("type"),
            format!(
                "{} `{other}` is not supported; use `thinking` or `redacted_thinking`",
                field("type")
            ),
        )),
    }
}

fn tool_use(i: usize, j: usize, call: &ToolCall) -> Result<ContentBlockParam, GatewayError> {
    Ok(ContentBlockParam::ToolUse {
        id: split_thought_signature(&call.id).0.to_string(),
        name: call.function.name.clone(),
        input: call_arguments(i, j, call)?,
    })
}

fn tool_result(i: usize, m: &Message) -> Result<ContentBlockParam, GatewayError> {
    // Ids from a Gemini answer carry its thought signature, which Anthropic's id pattern
    // refuses; the id proper still pairs the call with its result.
    let Some(tool_use_id) = m
        .tool_call_id
        .as_deref()
        .map(|id| split_thought_signature(id).0.to_string())
        .filter(|id| !id.is_empty())
    else {
        return Err(missing_tool_call_id(i));
    };
    let content = match &m.content {
        None => None,
        Some(Content::Text(text)) => Some(text.clone())
            .filter(|t| !t.is_empty())
            .map(ToolResultContent::Text),
        Some(content @ Content::Parts(_)) => {
            let blocks = user_blocks(i, Some(content))?;
            (!blocks.is_empty()).then_some(ToolResultContent::Blocks(blocks))
        }
    };
    Ok(ContentBlockParam::ToolResult {
        tool_use_id,
        content,
    })
}

fn push_text(blocks: &mut Vec<ContentBlockParam>, text: JsonText, cache_control: Option<Value>) {
    if !text.is_empty() {
        blocks.push(ContentBlockParam::Text {
            text,
            cache_control,
        });
    }
}

fn part_text(i: usize, j: usize, p: &ContentPart) -> Result<JsonText, GatewayError> {
    p.text.clone().ok_or_else(|| {
        GatewayError::invalid_param(
            format!("messages[{i}].content[{j}].text"),
            format!("messages[{i}].content[{j}] has type `text` but no `text`"),
        )
    })
}

fn image_block(i: usize, j: usize, p: &ContentPart) -> Result<ContentBlockParam, GatewayError> {
    let param = format!("messages[{i}].content[{j}].image_url.url");
    let Some(ImageUrl { url, .. }) = &p.image_url else {
        return Err(missing_image_url(i, j));
    };
    let cache_control = p.cache_control.clone();
    if url.starts_with("data:") {
        let (media_type, data) = parse_data_url(url, &param)?;
        let source = MediaSource::Base64 { media_type, data };
        // A PDF sent as an image URL is what some clients do; Anthropic reads it as a document.
        if source_is_pdf(&source) {
            return Ok(ContentBlockParam::Document {
                source,
                cache_control,
            });
        }
        return Ok(ContentBlockParam::Image {
            source,
            cache_control,
        });
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(ContentBlockParam::Image {
            source: MediaSource::Url { url: url.clone() },
            cache_control,
        });
    }
    Err(GatewayError::invalid_param(
        param.clone(),
        format!("{param} must be an http(s) URL or a base64 `data:` URL"),
    ))
}

fn source_is_pdf(source: &MediaSource) -> bool {
    matches!(source, MediaSource::Base64 { media_type, .. } if media_type == "application/pdf")
}

/// A `file` part: inline PDF data only (Anthropic cannot read OpenAI file ids).
fn file_block(i: usize, j: usize, p: &ContentPart) -> Result<ContentBlockParam, GatewayError> {
    let base = format!("messages[{i}].content[{j}].file");
    let file = p.file.as_ref().and_then(Value::as_object);
    if let Some(data) = file
        .and_then(|f| f.get("file_data"))
        .and_then(Value::as_str)
    {
        let param = format!("{base}.file_data");
        let (media_type, data) = parse_data_url(data, &param)?;
        if media_type != "application/pdf" {
            return Err(GatewayError::invalid_param(
                param,
                format!("files of type `{media_type}` are not supported by Anthropic models; send a PDF"),
            ));
        }
        return Ok(ContentBlockParam::Document {
            source: MediaSource::Base64 { media_type, data },
            cache_control: p.cache_control.clone(),
        });
    }
    if file.is_some_and(|f| f.contains_key("file_id")) {
        return Err(GatewayError::invalid_param(
            format!("{base}.file_id"),
            format!("{base}.file_id is not supported by Anthropic models; send the PDF inline as `file_data`"),
        ));
    }
    Err(GatewayError::invalid_param(
        base.clone(),
        format!("{base} needs `file_data` with a `data:application/pdf;base64,...` URL"),
    ))
}

/// What `response_format` asks for.
enum Format {
    Text,
    JsonObject,
    JsonSchema(ToolParam),
}

fn response_format(chat: &ChatRequest) -> Result<Format, GatewayError> {
    let Some(format) = parse_response_format(chat)? else {
        return Ok(Format::Text);
    };
    match format.kind.as_str() {
        "text" => Ok(Format::Text),
        "json_object" => Ok(Format::JsonObject),
        "json_schema" => {
            let spec = required_json_schema(format.json_schema)?;
            let name = spec
                .name
                .unwrap_or_else(|| DEFAULT_JSON_TOOL_NAME.to_string());
            let valid_name = !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid_name {
                return Err(GatewayError::invalid_param(
                    "response_format.json_schema.name",
                    "`response_format.json_schema.name` must be 1 to 64 characters of a-z, A-Z, 0-9, _ or -",
                ));
            }
            Ok(Format::JsonSchema(ToolParam {
                name,
                description: Some(spec.description.unwrap_or_else(|| {
                    "Answer by calling this tool: its input is the final response, as JSON matching the schema.".to_string()
                })),
                input_schema: match &spec.schema {
                    Some(schema) => RawJson::from_value(schema).ok_or_else(|| {
                        GatewayError::internal("could not write response_format.json_schema.schema")
                    })?,
                    None => RawJson::parse(r#"{"type":"object"}"#)
                        .ok_or_else(|| GatewayError::internal("the default schema is not JSON"))?,
                },
                cache_control: None,
            }))
        }
        other => Err(unknown_format_type(other)),
    }
}

/// Maps tools and `tool_choice`, adding the `json_schema` stand-in tool when asked.
///
/// With the stand-in and no client tools, the stand-in is forced. With client tools too,
/// the model must call some tool (`any`): a client tool, or the stand-in to answer.
fn map_tools(
    chat: &ChatRequest,
    json_tool: Option<ToolParam>,
    thinking: bool,
) -> Result<(Option<Vec<ToolParam>>, Option<ToolChoiceParam>), GatewayError> {
    let mut tools = Vec::new();
    for (i, t) in chat.tools.iter().flatten().enumerate() {
        check_function_tool(i, t)?;
        tools.push(ToolParam {
            name: t.function.name.clone(),
            description: t.function.description.clone(),
            input_schema: match &t.function.parameters {
                Some(schema) => schema.clone(),
                None => no_arguments()?,
            },
            cache_control: t.cache_control.clone(),
        });
    }
    let disable_parallel = (chat.parallel_tool_calls == Some(false)).then_some(true);
    let mut choice = if tools.is_empty() {
        // Nothing to choose from: Anthropic rejects a tool_choice without tools.
        None
    } else {
        match &chat.tool_choice {
            None => disable_parallel.map(|_| ToolChoiceParam::Auto {
                disable_parallel_tool_use: disable_parallel,
            }),
            Some(ToolChoice::Mode(mode)) => Some(match mode.as_str() {
                "auto" => ToolChoiceParam::Auto {
                    disable_parallel_tool_use: disable_parallel,
                },
                "required" => ToolChoiceParam::Any {
                    disable_parallel_tool_use: disable_parallel,
                },
                "none" => ToolChoiceParam::None,
                other => {
                    return Err(GatewayError::invalid_param(
                        "tool_choice",
                        format!("`tool_choice` `{other}` is not supported; use none, auto, required or a named function"),
                    ))
                }
            }),
            Some(ToolChoice::Named(named)) => {
                let name = &named.function.name;
                if !tools.iter().any(|t| &t.name == name) {
                    return Err(GatewayError::invalid_param(
                        "tool_choice.function.name",
                        format!("`tool_choice` names `{name}`, which is not in `tools`"),
                    ));
                }
                Some(ToolChoiceParam::Tool {
                    name: name.clone(),
                    disable_parallel_tool_use: disable_parallel,
                })
            }
        }
    };
    let mut forced_by = "tool_choice";
    if let Some(json_tool) = json_tool {
        if tools.iter().any(|t| t.name == json_tool.name) {
            return Err(GatewayError::invalid_param(
                "response_format.json_schema.name",
                format!(
                    "`response_format.json_schema.name` `{}` is also the name of a tool; rename one of them",
                    json_tool.name
                ),
            ));
        }
        let client_tools_usable =
            !tools.is_empty() && !matches!(choice, Some(ToolChoiceParam::None));
        choice = match choice {
            // The client named one of its own tools: that call comes first.
            keep @ Some(ToolChoiceParam::Tool { .. }) => keep,
            _ if client_tools_usable => {
                forced_by = "response_format";
                Some(ToolChoiceParam::Any {
                    disable_parallel_tool_use: disable_parallel,
                })
            }
            _ => {
                forced_by = "response_format";
                Some(ToolChoiceParam::Tool {
                    name: json_tool.name.clone(),
                    disable_parallel_tool_use: Some(true),
                })
            }
        };
        tools.push(json_tool);
    }
    let forced = matches!(
        choice,
        Some(ToolChoiceParam::Any { .. } | ToolChoiceParam::Tool { .. })
    );
    if thinking && forced {
        return Err(GatewayError::invalid_param(
            forced_by,
            format!(
                "`{forced_by}` forces a tool call, which Anthropic models cannot combine with thinking; drop `reasoning_effort` or let the model choose (`tool_choice` auto)"
            ),
        ));
    }
    Ok(((!tools.is_empty()).then_some(tools), choice))
}
