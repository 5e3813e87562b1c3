//! OpenAI chat request → Gemini `generateContent` request.
//!
//! Reference: <https://ai.google.dev/api/generate-content>. What does not map one to one:
//!
//! - System and developer messages, wherever they appear, become `systemInstruction`
//!   (one text part each, in order).
//! - Roles are `user` and `model`; consecutive turns of one role are merged. Tool results
//!   are `functionResponse` parts of a user turn, placed before the other parts of that turn.
//!   Gemini matches results to calls by function NAME, so the name is looked up from the
//!   earlier assistant call with the result's `tool_call_id`. `response` must be an object:
//!   a result that is a JSON object is sent as that object, other JSON as
//!   `{"result": <that value>}` and plain text as `{"result": "<the text>"}`.
//! - Tool-call ids that carry a thought signature (`<id>__thought__<signature>`, see
//!   `super::response`) put it back on their `functionCall` part, which Gemini 3 requires.
//!   Ids are not sent to Gemini.
//! - Tool parameters and `json_schema` formats are sent as JSON Schema
//!   (`parametersJsonSchema`, `responseJsonSchema`), not converted to Gemini's OpenAPI
//!   subset: `$ref`, `anyOf` and `additionalProperties` survive. Keywords outside the subset
//!   Gemini documents are removed (see [`gemini_json_schema`]).
//! - Images: `data:` URLs become `inlineData`, http(s) URLs `fileData` with the media type
//!   guessed from the extension (or left for Gemini to sniff). Audio and inline files
//!   become `inlineData` too.
//! - `reasoning_effort` becomes a thinking budget with `includeThoughts`, so that the
//!   reasoning comes back as `reasoning_content`; `none` sets the budget to 0.
//! - `n` becomes `candidateCount`; penalties are sent only when not 0 (some models refuse
//!   them outright). Parameters Gemini cannot honour (logprobs, `logit_bias`,
//!   `parallel_tool_calls: false`) are refused with a 400 unless the deployment sets
//!   `drop_params`. `user` and `metadata` change nothing observable and are dropped.
//! - No output limit is sent unless the client gives one: Gemini's defaults fit its
//!   thinking models, a small gateway default would cut their answers short.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::schema::{
    Blob, Content, FileData, FunctionCall, FunctionCallingConfig, FunctionCallingMode,
    FunctionDeclaration, FunctionResponse, GenerateContentRequest, GenerationConfig, Part,
    ThinkingConfig, Tool, ToolConfig,
};
use crate::error::GatewayError;
use crate::openai::{
    ChatRequest, Content as ChatContent, ContentPart, Message, Role, ToolCall, ToolChoice,
};
use crate::provider::common::{
    call_arguments, check_function_tool, check_logprobs_and_bias, function_role_error,
    missing_image_url, missing_tool_call_id, move_to_front, parse_chat_request, parse_data_url,
    parse_response_format, part_text, part_type_error, reasoning_budget, required_json_schema,
    split_thought_signature, stop_sequences, unknown_format_type, ParamPolicy,
};
use crate::provider::Target;

pub use crate::provider::common::TranslatedRequest;

/// Gemini's roles.
const USER: &str = "user";
const MODEL: &str = "model";

/// The thinking budget for `reasoning_effort`; `none` sets it to 0.
fn thinking_config(effort: Option<&str>) -> Result<Option<ThinkingConfig>, GatewayError> {
    let Some(effort) = effort else {
        return Ok(None);
    };
    Ok(Some(match reasoning_budget(effort)? {
        None => ThinkingConfig {
            include_thoughts: None,
            thinking_budget: Some(0),
        },
        Some(budget) => ThinkingConfig {
            include_thoughts: Some(true),
            thinking_budget: Some(budget),
        },
    }))
}

/// Translates an OpenAI chat request body for Gemini.
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
    let mut policy = ParamPolicy::new("Gemini", target.options);
    check_logprobs_and_bias(chat, &mut policy)?;
    if chat.n == Some(0) {
        return Err(GatewayError::invalid_param("n", "`n` must be at least 1"));
    }

    let (system, contents) = map_messages(&chat.messages)?;
    if contents.is_empty() {
        return Err(GatewayError::invalid_param(
            "messages",
            "`messages` needs at least one non-empty user or assistant message",
        ));
    }
    let (tools, tool_config) = map_tools(chat, &mut policy)?;
    let (response_mime_type, response_json_schema) = response_format(chat)?;
    let generation_config = GenerationConfig {
        stop_sequences: stop_sequences(chat),
        response_mime_type,
        response_json_schema,
        candidate_count: chat.n.filter(|n| *n > 1),
        max_output_tokens: chat.output_limit(),
        temperature: chat.temperature,
        top_p: chat.top_p,
        seed: chat.seed,
        presence_penalty: chat.presence_penalty.filter(|v| *v != 0.0),
        frequency_penalty: chat.frequency_penalty.filter(|v| *v != 0.0),
        thinking_config: thinking_config(chat.reasoning_effort.as_deref())?,
    };
    let request = GenerateContentRequest {
        contents,
        system_instruction: system,
        tools,
        tool_config,
        generation_config: (generation_config != GenerationConfig::default())
            .then_some(generation_config),
    };
    let body = serde_json::to_vec(&request)
        .map_err(|e| GatewayError::internal(format!("could not encode the Gemini request: {e}")))?;
    Ok(TranslatedRequest {
        body,
        stream: chat.is_stream(),
        client_wants_usage: chat.is_stream() && chat.wants_stream_usage(),
        dropped: policy.into_dropped(),
    })
}

/// Builds the turn list; empty turns are skipped and same-role turns merged.
#[derive(Default)]
struct Turns {
    contents: Vec<Content>,
}

impl Turns {
    fn push(&mut self, role: &str, parts: Vec<Part>) {
        if parts.is_empty() {
            return;
        }
        match self.contents.last_mut() {
            Some(last) if last.role.as_deref() == Some(role) => last.parts.extend(parts),
            _ => self.contents.push(Content {
                role: Some(role.to_string()),
                parts,
            }),
        }
    }

    fn finish(mut self) -> Vec<Content> {
        for c in &mut self.contents {
            if c.role.as_deref() == Some(USER) {
                // Results first, as they answer the model turn just before.
                move_to_front(&mut c.parts, |p| p.function_response.is_some());
            }
        }
        self.contents
    }
}

fn map_messages(messages: &[Message]) -> Result<(Option<Content>, Vec<Content>), GatewayError> {
    let mut system = Vec::new();
    let mut turns = Turns::default();
    // Tool-call id (with and without its signature) → function name, from the assistant
    // messages seen so far; a later call with the same id wins.
    let mut call_names: HashMap<String, String> = HashMap::new();
    for (i, m) in messages.iter().enumerate() {
        match m.role {
            Role::System | Role::Developer => system.extend(system_parts(i, m)?),
            Role::User => turns.push(USER, user_parts(i, m.content.as_ref())?),
            Role::Assistant => {
                for call in m.tool_calls.iter().flatten() {
                    let (base, _) = split_thought_signature(&call.id);
                    call_names.insert(call.id.clone(), call.function.name.clone());
                    call_names.insert(base.to_string(), call.function.name.clone());
                }
                turns.push(MODEL, model_parts(i, m)?);
            }
            Role::Tool => turns.push(USER, tool_result_parts(i, m, &call_names)?),
            Role::Function => return Err(function_role_error(i, "Gemini")),
        }
    }
    let system = (!system.is_empty()).then_some(Content {
        role: None,
        parts: system,
    });
    Ok((system, turns.finish()))
}

fn text_part(text: String) -> Part {
    Part {
        text: Some(text),
        ..Part::default()
    }
}

fn push_text(parts: &mut Vec<Part>, text: String) {
    // Gemini rejects empty text parts.
    if !text.is_empty() {
        parts.push(text_part(text));
    }
}

fn system_parts(i: usize, m: &Message) -> Result<Vec<Part>, GatewayError> {
    let mut parts = Vec::new();
    match &m.content {
        None => {}
        Some(ChatContent::Text(text)) => push_text(&mut parts, text.text().into_owned()),
        Some(ChatContent::Parts(content)) => {
            for (j, p) in content.iter().enumerate() {
                if p.kind != "text" {
                    return Err(part_type_error(
                        i,
                        j,
                        &p.kind,
                        "system and developer messages can only contain text",
                    ));
                }
                push_text(&mut parts, part_text(i, j, p)?);
            }
        }
    }
    Ok(parts)
}

fn user_parts(i: usize, content: Option<&ChatContent>) -> Result<Vec<Part>, GatewayError> {
    let mut parts = Vec::new();
    match content {
        None => {}
        Some(ChatContent::Text(text)) => push_text(&mut parts, text.text().into_owned()),
        Some(ChatContent::Parts(content)) => {
            for (j, p) in content.iter().enumerate() {
                match p.kind.as_str() {
                    "text" => push_text(&mut parts, part_text(i, j, p)?),
                    "image_url" => parts.push(image_part(i, j, p)?),
                    "input_audio" => parts.push(audio_part(i, j, p)?),
                    "file" => parts.push(file_part(i, j, p)?),
                    other => {
                        return Err(part_type_error(
                            i,
                            j,
                            other,
                            "this content part type is not supported by Gemini models",
                        ))
                    }
                }
            }
        }
    }
    Ok(parts)
}

/// Text first, then the calls, each with the thought signature its id carries. Earlier
/// reasoning (`reasoning_content`, `thinking_blocks`) is not sent: Gemini keeps its
/// reasoning context through the signatures only.
fn model_parts(i: usize, m: &Message) -> Result<Vec<Part>, GatewayError> {
    let mut parts = Vec::new();
    match &m.content {
        None => {}
        Some(ChatContent::Text(text)) => push_text(&mut parts, text.text().into_owned()),
        Some(ChatContent::Parts(content)) => {
            for (j, p) in content.iter().enumerate() {
                match p.kind.as_str() {
                    "text" => push_text(&mut parts, part_text(i, j, p)?),
                    "refusal" => push_text(&mut parts, p.refusal.clone().unwrap_or_default()),
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
    if parts.is_empty() {
        if let Some(refusal) = &m.refusal {
            push_text(&mut parts, refusal.clone());
        }
    }
    for (j, call) in m.tool_calls.iter().flatten().enumerate() {
        parts.push(function_call_part(i, j, call)?);
    }
    Ok(parts)
}

fn function_call_part(i: usize, j: usize, call: &ToolCall) -> Result<Part, GatewayError> {
    let args = call_arguments(i, j, call)?;
    let (_, signature) = split_thought_signature(&call.id);
    Ok(Part {
        function_call: Some(FunctionCall {
            id: None,
            name: call.function.name.clone(),
            args: Some(args),
        }),
        thought_signature: signature.map(str::to_string),
        ..Part::default()
    })
}

/// A `functionResponse` part carrying the name of the call it answers; images and files
/// in the result follow as parts of their own.
fn tool_result_parts(
    i: usize,
    m: &Message,
    call_names: &HashMap<String, String>,
) -> Result<Vec<Part>, GatewayError> {
    let Some(id) = m.tool_call_id.as_deref().filter(|id| !id.is_empty()) else {
        return Err(missing_tool_call_id(i));
    };
    let param = format!("messages[{i}].tool_call_id");
    let name = call_names
        .get(id)
        .or_else(|| call_names.get(split_thought_signature(id).0))
        .ok_or_else(|| {
            GatewayError::invalid_param(
                param.clone(),
                format!(
                    "{param} `{}` matches no tool call of an earlier assistant message; Gemini needs the called function's name",
                    split_thought_signature(id).0
                ),
            )
        })?;
    let (text, extra) = match &m.content {
        None => (String::new(), Vec::new()),
        Some(ChatContent::Text(text)) => (text.text().into_owned(), Vec::new()),
        Some(content @ ChatContent::Parts(_)) => {
            let mut text = String::new();
            let mut extra = Vec::new();
            for p in user_parts(i, Some(content))? {
                match p.text {
                    Some(t) => text.push_str(&t),
                    None => extra.push(p),
                }
            }
            (text, extra)
        }
    };
    let response = match crate::json::path::from_str::<Value>(&text) {
        Ok(object @ Value::Object(_)) => object,
        parsed => {
            let result = parsed.unwrap_or(Value::String(text));
            let mut wrapped = Map::new();
            wrapped.insert("result".to_string(), result);
            Value::Object(wrapped)
        }
    };
    let mut parts = vec![Part {
        function_response: Some(FunctionResponse {
            name: name.clone(),
            response,
        }),
        ..Part::default()
    }];
    parts.extend(extra);
    Ok(parts)
}

fn inline(mime_type: String, data: String) -> Part {
    Part {
        inline_data: Some(Blob { mime_type, data }),
        ..Part::default()
    }
}

fn file_uri(uri: &str, mime_type: Option<String>) -> Part {
    Part {
        file_data: Some(FileData {
            mime_type: mime_type.or_else(|| mime_from_extension(uri).map(str::to_string)),
            file_uri: uri.to_string(),
        }),
        ..Part::default()
    }
}

fn is_http_url(url: &str) -> bool {
    url.starts_with("https://") || url.starts_with("http://")
}

fn image_part(i: usize, j: usize, p: &ContentPart) -> Result<Part, GatewayError> {
    let param = format!("messages[{i}].content[{j}].image_url.url");
    let Some(image) = &p.image_url else {
        return Err(missing_image_url(i, j));
    };
    let url = image.url.as_str();
    if url.starts_with("data:") {
        let (mime_type, data) = parse_data_url(url, &param)?;
        return Ok(inline(mime_type, data));
    }
    if is_http_url(url) {
        return Ok(file_uri(url, None));
    }
    Err(GatewayError::invalid_param(
        param.clone(),
        format!("{param} must be an http(s) URL or a base64 `data:` URL"),
    ))
}

/// `input_audio`: base64 data and a format (`wav`, `mp3`, ...).
fn audio_part(i: usize, j: usize, p: &ContentPart) -> Result<Part, GatewayError> {
    let base = format!("messages[{i}].content[{j}].input_audio");
    let audio = p.input_audio.as_ref().and_then(Value::as_object);
    let data = audio
        .and_then(|a| a.get("data"))
        .and_then(Value::as_str)
        .filter(|d| !d.is_empty())
        .ok_or_else(|| {
            GatewayError::invalid_param(
                format!("{base}.data"),
                format!("{base}.data must be base64 audio"),
            )
        })?;
    let format = audio
        .and_then(|a| a.get("format"))
        .and_then(Value::as_str)
        .unwrap_or("wav")
        .to_ascii_lowercase();
    let mime_type = match format.as_str() {
        "mp3" | "mpeg" => "audio/mp3".to_string(),
        other => format!("audio/{other}"),
    };
    Ok(inline(mime_type, data.to_string()))
}

/// A `file` part: inline `file_data`, or a `file_id` that is a URL Gemini can fetch (a
/// Files API URI); OpenAI file ids mean nothing to Gemini.
fn file_part(i: usize, j: usize, p: &ContentPart) -> Result<Part, GatewayError> {
    let base = format!("messages[{i}].content[{j}].file");
    let file = p.file.as_ref().and_then(Value::as_object);
    let field = |name: &str| file.and_then(|f| f.get(name)).and_then(Value::as_str);
    if let Some(data) = field("file_data") {
        let (mime_type, data) = parse_data_url(data, &format!("{base}.file_data"))?;
        return Ok(inline(mime_type, data));
    }
    if let Some(id) = field("file_id") {
        if is_http_url(id) {
            return Ok(file_uri(id, field("format").map(str::to_string)));
        }
        return Err(GatewayError::invalid_param(
            format!("{base}.file_id"),
            format!("{base}.file_id must be a Gemini Files API URI (https://...); send other files inline as `file_data`"),
        ));
    }
    Err(GatewayError::invalid_param(
        base.clone(),
        format!("{base} needs `file_data` with a `data:<media type>;base64,...` URL"),
    ))
}

/// The media type of a URL's file extension, for the types Gemini reads.
fn mime_from_extension(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let name = path.rsplit('/').next().unwrap_or_default();
    let (_, ext) = name.rsplit_once('.')?;
    Some(match ext.to_ascii_lowercase().as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        "mp3" => "audio/mp3",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        _ => return None,
    })
}

/// `response_format` → `responseMimeType` and `responseJsonSchema`.
fn response_format(chat: &ChatRequest) -> Result<(Option<String>, Option<Value>), GatewayError> {
    let Some(format) = parse_response_format(chat)? else {
        return Ok((None, None));
    };
    let json = Some("application/json".to_string());
    match format.kind.as_str() {
        "text" => Ok((None, None)),
        "json_object" => Ok((json, None)),
        "json_schema" => {
            let spec = required_json_schema(format.json_schema)?;
            Ok((json, spec.schema.as_ref().map(gemini_json_schema)))
        }
        other => Err(unknown_format_type(other)),
    }
}

/// Tools and `tool_choice`. Without tools no `toolConfig` is sent: there is nothing to
/// choose from.
fn map_tools(
    chat: &ChatRequest,
    policy: &mut ParamPolicy,
) -> Result<(Option<Vec<Tool>>, Option<ToolConfig>), GatewayError> {
    let mut declarations = Vec::new();
    for (i, t) in chat.tools.iter().flatten().enumerate() {
        check_function_tool(i, t)?;
        // Gemini's schema dialect differs: this translation looks inside the schema.
        let parameters = match &t.function.parameters {
            Some(raw) => Some(raw.to_value().map_err(|e| {
                GatewayError::invalid_param(
                    format!("tools[{i}].function.parameters"),
                    format!("`tools[{i}].function.parameters` is not valid JSON: {e}"),
                )
            })?),
            None => None,
        };
        declarations.push(FunctionDeclaration {
            name: t.function.name.clone(),
            description: t.function.description.clone(),
            parameters_json_schema: parameters
                .as_ref()
                .filter(|s| takes_arguments(s))
                .map(gemini_json_schema),
        });
    }
    if declarations.is_empty() {
        return Ok((None, None));
    }
    let config = |mode, names: Option<Vec<String>>| ToolConfig {
        function_calling_config: FunctionCallingConfig {
            mode,
            allowed_function_names: names,
        },
    };
    let tool_config = match &chat.tool_choice {
        None => None,
        Some(ToolChoice::Mode(mode)) => Some(match mode.as_str() {
            "auto" => config(FunctionCallingMode::Auto, None),
            "required" => config(FunctionCallingMode::Any, None),
            "none" => config(FunctionCallingMode::None, None),
            other => {
                return Err(GatewayError::invalid_param(
                    "tool_choice",
                    format!("`tool_choice` `{other}` is not supported; use none, auto, required or a named function"),
                ))
            }
        }),
        Some(ToolChoice::Named(named)) => {
            let name = &named.function.name;
            if !declarations.iter().any(|d| &d.name == name) {
                return Err(GatewayError::invalid_param(
                    "tool_choice.function.name",
                    format!("`tool_choice` names `{name}`, which is not in `tools`"),
                ));
            }
            Some(config(FunctionCallingMode::Any, Some(vec![name.clone()])))
        }
    };
    let calls_possible = !matches!(
        tool_config,
        Some(ToolConfig {
            function_calling_config: FunctionCallingConfig {
                mode: FunctionCallingMode::None,
                ..
            }
        })
    );
    // Gemini has no switch for one call per turn; the model may still call several.
    if calls_possible && chat.parallel_tool_calls == Some(false) {
        policy.unsupported("parallel_tool_calls", "or send true")?;
    }
    Ok((
        Some(vec![Tool {
            function_declarations: declarations,
        }]),
        tool_config,
    ))
}

/// False for an object schema that admits no arguments (no properties, no free-form
/// extra keys): Gemini expresses a function without arguments by leaving the schema out.
fn takes_arguments(schema: &Value) -> bool {
    let Some(object) = schema.as_object() else {
        return true;
    };
    let no_arguments = object.iter().all(|(key, value)| match key.as_str() {
        "type" => value.as_str() == Some("object"),
        "properties" => value.as_object().is_some_and(Map::is_empty),
        "required" => value.as_array().is_some_and(Vec::is_empty),
        "additionalProperties" => value == &Value::Bool(false),
        "$schema" | "title" | "description" => true,
        _ => false,
    });
    !(no_arguments && object.contains_key("type"))
}

/// Schema keywords Gemini documents for its JSON Schema fields; others are removed.
const SCHEMA_KEYWORDS: &[&str] = &[
    "$id",
    "$defs",
    "$ref",
    "$anchor",
    "type",
    "format",
    "title",
    "description",
    "enum",
    "items",
    "prefixItems",
    "minItems",
    "maxItems",
    "minimum",
    "maximum",
    "anyOf",
    "oneOf",
    "properties",
    "additionalProperties",
    "required",
    "propertyOrdering",
];

/// An OpenAI JSON Schema restricted to the keywords Gemini documents for
/// `parametersJsonSchema` and `responseJsonSchema`.
///
/// Other keywords (`$schema`, `default`, `examples`, `pattern`, `minLength`, `strict`, ...)
/// are removed rather than risk a 400; they only narrow what the model may produce. A
/// string or number `const` becomes a one-value `enum`; `allOf` with a single schema is
/// merged into its parent; next to a `$ref` only `$` keywords are kept, as Gemini requires.
/// Property names are never touched.
pub fn gemini_json_schema(schema: &Value) -> Value {
    let Some(object) = schema.as_object() else {
        return schema.clone();
    };
    let mut merged = object.clone();
    if let Some(Value::Array(all)) = merged.get("allOf").cloned() {
        if let [Value::Object(only)] = all.as_slice() {
            merged.remove("allOf");
            for (k, v) in only {
                merged.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    let mut out = Map::new();
    let has_ref = merged.contains_key("$ref");
    for (key, value) in &merged {
        if has_ref && !key.starts_with('$') {
            continue;
        }
        let mapped = match key.as_str() {
            "properties" | "$defs" => match value {
                Value::Object(map) => Value::Object(
                    map.iter()
                        .map(|(name, s)| (name.clone(), gemini_json_schema(s)))
                        .collect(),
                ),
                other => other.clone(),
            },
            "items" | "additionalProperties" => gemini_json_schema(value),
            "prefixItems" | "anyOf" | "oneOf" => match value {
                Value::Array(list) => Value::Array(list.iter().map(gemini_json_schema).collect()),
                other => other.clone(),
            },
            "const" if (value.is_string() || value.is_number()) && !merged.contains_key("enum") => {
                out.insert("enum".to_string(), Value::Array(vec![value.clone()]));
                continue;
            }
            k if SCHEMA_KEYWORDS.contains(&k) => value.clone(),
            _ => continue,
        };
        out.insert(key.clone(), mapped);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Unsupported keywords go, property names stay, `const` and `allOf` are folded.
    #[test]
    fn schema_conversion() {
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "default": {"type": "string", "default": "x", "pattern": "^a", "minLength": 1},
                "kind": {"const": "fixed"},
                "flag": {"const": true},
                "nested": {"allOf": [{"$ref": "#/$defs/N"}], "description": "dropped by $ref"}
            },
            "required": ["default"],
            "$defs": {"N": {"type": "array", "items": {"type": "integer", "examples": [1]}}}
        });
        assert_eq!(
            gemini_json_schema(&schema),
            json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "default": {"type": "string"},
                    "kind": {"enum": ["fixed"]},
                    "flag": {},
                    "nested": {"$ref": "#/$defs/N"}
                },
                "required": ["default"],
                "$defs": {"N": {"type": "array", "items": {"type": "integer"}}}
            })
        );
    }

    /// Object schemas without properties declare a function without arguments.
    #[test]
    fn argument_free_functions() {
        assert!(!takes_arguments(&json!({"type": "object"})));
        assert!(!takes_arguments(
            &json!({"type": "object", "properties": {}, "required": [], "additionalProperties": false})
        ));
        assert!(takes_arguments(
            &json!({"type": "object", "properties": {"a": {"type": "string"}}})
        ));
        assert!(takes_arguments(&json!({"anyOf": [{"type": "object"}]})));
        assert!(takes_arguments(
            &json!({"type": "object", "additionalProperties": {"type": "string"}})
        ));
        assert!(takes_arguments(&json!({})));
    }

    /// Extensions map to the media types Gemini reads; unknown ones are left to Gemini.
    #[test]
    fn mime_types() {
        assert_eq!(
            mime_from_extension("https://x/a/photo.JPG?sig=1"),
            Some("image/jpeg")
        );
        assert_eq!(
            mime_from_extension("https://x/doc.pdf#p=2"),
            Some("application/pdf")
        );
        assert_eq!(mime_from_extension("https://x/image"), None);
        assert_eq!(mime_from_extension("https://x.example/a.bin"), None);
    }
}
