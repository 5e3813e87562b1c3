//! `POST /v1/embeddings`: OpenAI's embeddings API, validated once by the downstream
//! instance and translated per attempt for the deployment that answers.
//!
//! The OpenAI family (OpenAI, Azure OpenAI, the OpenAI-compatible presets) gets the
//! client's body with only the model rewritten, and its answer back as sent (a `base64`
//! answer stays bytes). Gemini (`batchEmbedContents`), Cohere (`/v2/embed`), Bedrock's
//! Titan Text Embeddings and Cohere Embed (`InvokeModel`) and Vertex AI's text embeddings
//! (`:predict`) are translated both ways ([`translate`]). Everything here is kept apart
//! from the chat path: the downstream instance branches off by path before any chat work
//! is done.
//!
//! References: <https://platform.openai.com/docs/api-reference/embeddings/create>,
//! <https://ai.google.dev/api/embeddings#method:-models.batchembedcontents>,
//! <https://docs.cohere.com/reference/embed>,
//! <https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-titan-embed-text.html>,
//! <https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-embed.html>,
//! <https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/text-embeddings-api>.

pub mod translate;

use serde_json::Value;

use crate::config::model::{Deployment, ModelMode};
use crate::error::GatewayError;
use crate::provider::registry::{ProviderSpec, WireApi};
use crate::usage::UsageBound;

/// The most inputs OpenAI takes in one request.
pub const MAX_INPUTS: usize = 2048;
/// The most texts one Gemini `batchEmbedContents` call takes.
pub const GEMINI_MAX_INPUTS: usize = 100;
/// The most texts one Cohere `/v2/embed` call takes (on Bedrock too).
pub const COHERE_MAX_INPUTS: usize = 96;
/// The most instances one Vertex AI `:predict` call takes (`gemini-embedding-001`: one).
pub const VERTEX_MAX_INPUTS: usize = 250;

/// The embeddings API a deployment's model speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// OpenAI's `/embeddings` (OpenAI, Azure, the compatible family).
    OpenAi,
    /// Gemini's `batchEmbedContents`.
    Gemini,
    /// Cohere's `/v2/embed`.
    Cohere,
    /// Amazon Titan Text Embeddings on Bedrock (`InvokeModel`): one text a call.
    Titan,
    /// Cohere Embed on Bedrock (`InvokeModel`).
    BedrockCohere,
    /// Vertex AI's text embeddings (`:predict`).
    VertexPredict,
}

impl Api {
    /// The embeddings API of `model` on a provider, `None` when there is none: on Bedrock
    /// the model family decides (ids may carry an inference profile's `us.` prefix).
    pub fn of(spec: &ProviderSpec, model: &str) -> Option<Api> {
        Some(match spec.wire {
            WireApi::OpenAiChat | WireApi::AzureOpenAi => Api::OpenAi,
            WireApi::GeminiGenerate => Api::Gemini,
            WireApi::CohereChat => Api::Cohere,
            WireApi::VertexGemini => Api::VertexPredict,
            WireApi::BedrockConverse if model.contains("titan-embed-text") => Api::Titan,
            WireApi::BedrockConverse if model.contains("cohere.embed") => Api::BedrockCohere,
            _ => return None,
        })
    }

    /// The most inputs one call takes (`usize::MAX`: OpenAI's own limit only).
    fn max_inputs(self, model: &str) -> usize {
        match self {
            Api::OpenAi => usize::MAX,
            Api::Gemini => GEMINI_MAX_INPUTS,
            Api::Cohere | Api::BedrockCohere => COHERE_MAX_INPUTS,
            Api::Titan => 1,
            Api::VertexPredict if model.contains("gemini-embedding") => 1,
            Api::VertexPredict => VERTEX_MAX_INPUTS,
        }
    }
}

/// What the client asked to embed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A string or an array of strings.
    Texts(Vec<String>),
    /// An array of token ids, or an array of such arrays (OpenAI family only).
    Tokens {
        /// How many token arrays (inputs).
        inputs: usize,
        /// How many tokens in all.
        tokens: u64,
    },
}

/// A validated embeddings request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddingsRequest {
    /// The alias asked for.
    pub model: String,
    /// What to embed.
    pub input: Input,
    /// `dimensions`: the length of each vector, where the model can shorten it.
    pub dimensions: Option<u64>,
    /// `encoding_format: base64`: vectors as base64 of little-endian float32.
    pub base64: bool,
    /// `input_type` (an extension, as in LiteLLM): what the texts are for. Cohere's names
    /// (`search_document`, `search_query`, `classification`, `clustering`) or Gemini's task
    /// types (`RETRIEVAL_DOCUMENT`, ...).
    pub input_type: Option<String>,
}

impl EmbeddingsRequest {
    /// How many vectors the request asks for.
    pub fn input_count(&self) -> usize {
        match &self.input {
            Input::Texts(t) => t.len(),
            Input::Tokens { inputs, .. } => *inputs,
        }
    }

    /// Its prompt size in tokens: exact for token ids; for text, the gateway's usual
    /// estimate of about four bytes a token (`request::estimate_prompt_tokens`), per text.
    /// Reserved against limits and budgets, and reported as the usage of a provider that
    /// reports none (Gemini).
    pub fn estimated_tokens(&self) -> u64 {
        match &self.input {
            Input::Texts(texts) => texts.iter().map(|t| (t.len() as u64).div_ceil(4)).sum(),
            Input::Tokens { tokens, .. } => *tokens,
        }
    }

    /// The most usage the request can cause: every byte a token, no output.
    pub fn usage_bound(body_len: u64) -> UsageBound {
        UsageBound {
            prompt_tokens: body_len.saturating_add(1 << 16),
            output_tokens: 0,
        }
    }

    /// Whether `deployment` can answer this request; a 400 naming the field when not.
    pub fn check_deployment(&self, deployment: &Deployment) -> Result<(), GatewayError> {
        let spec = deployment.provider.spec();
        if deployment.mode == Some(ModelMode::Chat) || spec.wire == WireApi::AnthropicMessages {
            return Err(GatewayError::invalid_param(
                "model",
                format!(
                    "`{}` cannot embed: deployment `{}` ({} `{}`) is a chat model; name an embedding model (`model_info.mode: embedding`)",
                    deployment.alias, deployment.id, spec.display_name, deployment.upstream_model
                ),
            )
            .with_code("model_not_embedding"));
        }
        if Api::of(spec, &deployment.upstream_model).is_none() {
            return Err(GatewayError::invalid_param(
                "model",
                format!(
                    "`{}` cannot embed: deployment `{}` ({} `{}`) has no embeddings API the gateway translates; route the alias to an OpenAI-compatible, Azure, Gemini or Cohere embedding model, Titan Text Embeddings or Cohere Embed on Bedrock, or a Vertex AI text embedding model",
                    deployment.alias, deployment.id, spec.display_name, deployment.upstream_model
                ),
            )
            .with_code("model_not_embedding"));
        }
        self.check_input(spec, &deployment.upstream_model).map(drop)
    }

    /// The embeddings API `model` speaks on `spec`'s provider, if this input fits it:
    /// the OpenAI family takes anything OpenAI does; the others take text only, and a
    /// bounded number of texts per call (Titan and `gemini-embedding-001` on Vertex AI
    /// one).
    pub fn check_input(&self, spec: &ProviderSpec, model: &str) -> Result<Api, GatewayError> {
        let Some(api) = Api::of(spec, model) else {
            return Err(GatewayError::invalid_param(
                "model",
                format!(
                    "{} `{model}` has no embeddings API the gateway translates",
                    spec.display_name
                ),
            )
            .with_code("model_not_embedding"));
        };
        let limit = api.max_inputs(model);
        let why = match &self.input {
            _ if api == Api::OpenAi => return Ok(api),
            Input::Tokens { .. } => "token ids; send text".to_string(),
            Input::Texts(t) if t.len() > 1 && limit == 1 => format!(
                "{} items; {} embeds one input per request: send one text per request",
                t.len(),
                if api == Api::Titan { "Titan" } else { model }
            ),
            Input::Texts(t) if t.len() > limit => {
                format!("{} items; it takes at most {limit} a request", t.len())
            }
            Input::Texts(_) => return Ok(api),
        };
        Err(GatewayError::invalid_param(
            "input",
            format!("`input` has {why} ({})", spec.display_name),
        ))
    }
}

/// The `input_type` values accepted, and their Gemini task type and Cohere input type.
const INPUT_TYPES: &[(&str, &str, &str)] = &[
    ("search_document", "RETRIEVAL_DOCUMENT", "search_document"),
    ("search_query", "RETRIEVAL_QUERY", "search_query"),
    ("classification", "CLASSIFICATION", "classification"),
    ("clustering", "CLUSTERING", "clustering"),
    (
        "RETRIEVAL_DOCUMENT",
        "RETRIEVAL_DOCUMENT",
        "search_document",
    ),
    ("RETRIEVAL_QUERY", "RETRIEVAL_QUERY", "search_query"),
    ("CLASSIFICATION", "CLASSIFICATION", "classification"),
    ("CLUSTERING", "CLUSTERING", "clustering"),
    ("SEMANTIC_SIMILARITY", "SEMANTIC_SIMILARITY", "clustering"),
    ("QUESTION_ANSWERING", "QUESTION_ANSWERING", "search_query"),
    ("FACT_VERIFICATION", "FACT_VERIFICATION", "search_query"),
    (
        "CODE_RETRIEVAL_QUERY",
        "CODE_RETRIEVAL_QUERY",
        "search_query",
    ),
];

/// Gemini's `taskType` for an accepted `input_type`.
pub fn gemini_task_type(input_type: &str) -> Option<&'static str> {
    INPUT_TYPES
        .iter()
        .find(|(name, ..)| *name == input_type)
        .map(|(_, gemini, _)| *gemini)
}

/// Cohere's `input_type` for an accepted `input_type`.
pub fn cohere_input_type(input_type: &str) -> Option<&'static str> {
    INPUT_TYPES
        .iter()
        .find(|(name, ..)| *name == input_type)
        .map(|(.., cohere)| *cohere)
}

/// A 400 naming `param` (one call site each, not one copy of the conversions each).
#[inline(never)]
fn invalid(param: &str, message: &str) -> GatewayError {
    GatewayError::invalid_param(param, message)
}

/// Parses and checks a `/v1/embeddings` body. Errors are 400s naming the field.
pub fn parse_request(body: &[u8]) -> Result<EmbeddingsRequest, GatewayError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(GatewayError::invalid_request(
            "request body is empty: send a JSON object with `model` and `input`",
        ));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        GatewayError::invalid_request(format!("request body is not valid JSON: {e}"))
            .with_code("invalid_json")
    })?;
    let Some(object) = value.as_object() else {
        return Err(GatewayError::invalid_request(
            "request body must be a JSON object with `model` and `input`",
        ));
    };
    let model = match object.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(invalid(
                "model",
                "`model` is required: name one of the models listed by GET /v1/models",
            ))
        }
        Some(_) => return Err(invalid("model", "`model` must be a string")),
    };
    let input = parse_input(object.get("input"))?;
    let dimensions = match object.get("dimensions") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(d) if d >= 1 => Some(d),
            _ => {
                return Err(invalid(
                    "dimensions",
                    "`dimensions` must be a positive integer",
                ))
            }
        },
    };
    let base64 = match object.get("encoding_format") {
        None | Some(Value::Null) => false,
        Some(Value::String(f)) if f == "float" => false,
        Some(Value::String(f)) if f == "base64" => true,
        Some(_) => {
            return Err(invalid(
                "encoding_format",
                "`encoding_format` must be `float` or `base64`",
            ))
        }
    };
    let input_type = match object.get("input_type") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) if gemini_task_type(t).is_some() => Some(t.clone()),
        Some(_) => return Err(invalid(
            "input_type",
            "`input_type` must be search_document, search_query, classification, clustering or a Gemini task type (RETRIEVAL_DOCUMENT, ...)",
        )),
    };
    match object.get("user") {
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(_) => return Err(invalid("user", "`user` must be a string")),
    }
    Ok(EmbeddingsRequest {
        model,
        input,
        dimensions,
        base64,
        input_type,
    })
}

fn parse_input(input: Option<&Value>) -> Result<Input, GatewayError> {
    const SHAPES: &str = "a string, an array of strings, or an array (or arrays) of token ids";
    let items: &[Value] = match input {
        None | Some(Value::Null) => {
            return Err(GatewayError::invalid_param(
                "input",
                format!("`input` is required: {SHAPES}"),
            ))
        }
        Some(Value::Array(items)) if items.first().is_some_and(Value::is_number) => {
            std::slice::from_ref(input.unwrap_or(&Value::Null))
        }
        Some(Value::Array(items)) => items,
        Some(one) => std::slice::from_ref(one),
    };
    if items.is_empty() || items.len() > MAX_INPUTS {
        return Err(GatewayError::invalid_param(
            "input",
            format!("`input` must hold 1 to {MAX_INPUTS} items"),
        ));
    }
    let single = !matches!(input, Some(Value::Array(a)) if std::ptr::eq(a.as_slice(), items));
    let token = |v: &Value| v.as_u64().is_some_and(|t| t <= u64::from(u32::MAX));
    let mut texts = Vec::new();
    let mut tokens = 0u64;
    for (i, item) in items.iter().enumerate() {
        match item {
            Value::String(s) if !s.is_empty() && tokens == 0 => texts.push(s.clone()),
            Value::Array(ids) if !ids.is_empty() && ids.iter().all(token) && texts.is_empty() => {
                tokens = tokens.saturating_add(ids.len() as u64)
            }
            _ => {
                let param = if single {
                    "input".to_string()
                } else {
                    format!("input[{i}]")
                };
                return Err(GatewayError::invalid_param(
                    param.clone(),
                    format!(
                        "`{param}` is empty or of the wrong type: `input` is {SHAPES}, all alike"
                    ),
                )
                .with_code("invalid_input"));
            }
        }
    }
    Ok(if texts.is_empty() {
        Input::Tokens {
            inputs: items.len(),
            tokens,
        }
    } else {
        Input::Texts(texts)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(body: &str) -> GatewayError {
        parse_request(body.as_bytes()).unwrap_err()
    }

    /// Every shape of `input` OpenAI takes.
    #[test]
    fn inputs() {
        let r = parse_request(br#"{"model":"e","input":"hello world"}"#).unwrap();
        assert_eq!(r.input, Input::Texts(vec!["hello world".into()]));
        assert_eq!(r.estimated_tokens(), 3);
        let r = parse_request(
            br#"{"model":"e","input":["a","bcdef"],"encoding_format":"base64","dimensions":256}"#,
        )
        .unwrap();
        assert_eq!(r.input_count(), 2);
        assert_eq!(r.estimated_tokens(), 3);
        assert!(r.base64);
        assert_eq!(r.dimensions, Some(256));
        let r = parse_request(br#"{"model":"e","input":[1,2,3]}"#).unwrap();
        assert_eq!(
            r.input,
            Input::Tokens {
                inputs: 1,
                tokens: 3
            }
        );
        let r = parse_request(br#"{"model":"e","input":[[1,2],[3]]}"#).unwrap();
        assert_eq!(
            r.input,
            Input::Tokens {
                inputs: 2,
                tokens: 3
            }
        );
        assert_eq!(r.estimated_tokens(), 3);
    }

    /// Bad input is a 400 naming the field.
    #[test]
    fn refusals_name_the_field() {
        for (body, param) in [
            (r#"{"input":"x"}"#, "model"),
            (r#"{"model":"e"}"#, "input"),
            (r#"{"model":"e","input":""}"#, "input"),
            (r#"{"model":"e","input":[]}"#, "input"),
            (r#"{"model":"e","input":["a",""]}"#, "input[1]"),
            (r#"{"model":"e","input":["a",1]}"#, "input[1]"),
            (r#"{"model":"e","input":[1,-2]}"#, "input"),
            (r#"{"model":"e","input":[[1],[]]}"#, "input[1]"),
            (r#"{"model":"e","input":[[1],[2,"x"]]}"#, "input[1]"),
            (r#"{"model":"e","input":3}"#, "input"),
            (
                r#"{"model":"e","input":"x","encoding_format":"int8"}"#,
                "encoding_format",
            ),
            (r#"{"model":"e","input":"x","dimensions":0}"#, "dimensions"),
            (
                r#"{"model":"e","input":"x","input_type":"poetry"}"#,
                "input_type",
            ),
            (r#"{"model":"e","input":"x","user":3}"#, "user"),
        ] {
            let e = error(body);
            assert_eq!(
                (e.status, e.param.as_deref()),
                (400, Some(param)),
                "{body}: {e}"
            );
        }
        let many = format!(
            r#"{{"model":"e","input":[{}]}}"#,
            vec!["\"a\""; 2049].join(",")
        );
        assert_eq!(error(&many).param.as_deref(), Some("input"));
        assert_eq!(error("").status, 400);
        assert_eq!(error("[1]").status, 400);
    }

    /// Both vocabularies of `input_type` map to each provider's.
    #[test]
    fn input_types() {
        assert_eq!(gemini_task_type("search_query"), Some("RETRIEVAL_QUERY"));
        assert_eq!(
            cohere_input_type("RETRIEVAL_DOCUMENT"),
            Some("search_document")
        );
        assert_eq!(gemini_task_type("nope"), None);
    }
}
