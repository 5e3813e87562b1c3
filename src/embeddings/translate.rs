//! Per-attempt translation of an embeddings request, behind the same [`Translator`] trait
//! as chat so that the shell's answer handling (status, key scrubbing, usage, cost) is the
//! same. Embeddings never stream.
//!
//! - **OpenAI family**: the client's body with `model` rewritten, the answer as sent
//!   (floats or base64 bytes untouched); usage from its `usage`.
//! - **Gemini** (`models/{m}:batchEmbedContents`): one request per text, with
//!   `outputDimensionality` from `dimensions` and `taskType` from `input_type`. Gemini
//!   reports no usage: the gateway's estimate of the input (about four bytes a token) is
//!   the usage, priced as such, and the answer says so (`x-llm-usage-estimated: true`).
//!   Base64 is the float32 little-endian bytes of Gemini's floats, as OpenAI sends them.
//! - **Cohere** (`/v2/embed`): `texts`, `input_type` (`search_document` unless the client
//!   names one), `embedding_types` `float` or `base64` from `encoding_format`,
//!   `output_dimension` from `dimensions`; usage from `meta.billed_units.input_tokens`.
//! - **Bedrock** (`/model/{id}/invoke`, signed by Envoy like Converse): Titan Text
//!   Embeddings takes one `inputText` (and `dimensions`; `normalize: true` for V2) and
//!   answers `{"embedding", "inputTextTokenCount"}`; Cohere Embed takes Cohere's body
//!   without `model`, always `float` (Bedrock has no `base64` type), and answers
//!   `{"embeddings": [[...]] | {"float": [[...]]}}` with its token count only in the
//!   `x-amzn-bedrock-input-token-count` header (the estimate, said so, without it).
//! - **Vertex AI** (`publishers/google/models/{m}:predict`): `instances[]` of `{content,
//!   task_type}`, `parameters.outputDimensionality`; the answer's `predictions[].embeddings`
//!   hold `values` and `statistics.token_count`, the usage.

use serde_json::Value;

use super::{cohere_input_type, gemini_task_type, Api, EmbeddingsRequest, Input};
use crate::error::{ErrorKind, GatewayError};
use crate::json::scan::Scan;
use crate::provider::registry::{ProviderSpec, WireApi};
use crate::provider::{
    bedrock, cohere, gemini, join_path, openai_compatible, openai_family, vertex, ClientRequest,
    ProviderKind, Target, TranslatedResponse, Translator, UpstreamRequest, Validated,
};
use crate::usage::Usage;

/// The translator of one embeddings attempt to a deployment of `kind`, guarded like chat's.
pub fn translator_for(kind: ProviderKind) -> Box<dyn Translator> {
    Box::new(crate::provider::Guarded::new(Box::new(
        EmbeddingsTranslator {
            spec: kind.spec(),
            api: Api::OpenAi,
            model: String::new(),
            base64: false,
            estimated_tokens: 0,
            estimated: false,
            header_tokens: None,
            error_type: String::new(),
            no_token: false,
        },
    )))
}

/// Translator for one embeddings attempt.
struct EmbeddingsTranslator {
    spec: &'static ProviderSpec,
    /// The embeddings API the upstream model speaks.
    api: Api,
    /// The upstream model, for the translated answer's `model`.
    model: String,
    /// The client asked for base64.
    base64: bool,
    /// The request's estimated tokens (the usage of an answer that reports none).
    estimated_tokens: u64,
    /// The answer's usage is the estimate.
    estimated: bool,
    /// Bedrock's `x-amzn-bedrock-input-token-count`.
    header_tokens: Option<u64>,
    /// Bedrock's `x-amzn-errortype`.
    error_type: String,
    /// A Vertex AI attempt without an access token: a 503 whatever the answer.
    no_token: bool,
}

impl Translator for EmbeddingsTranslator {
    fn request(
        &mut self,
        client: ClientRequest<'_>,
        target: &Target<'_>,
    ) -> Result<UpstreamRequest, GatewayError> {
        let Validated::Embeddings(request) = client.validated else {
            return Err(GatewayError::internal(
                "a chat request reached an embeddings translator",
            ));
        };
        let body = client.body;
        self.model = target.upstream_model.to_string();
        self.base64 = request.base64;
        self.estimated_tokens = request.estimated_tokens();
        self.api = request.check_input(self.spec, target.upstream_model)?;
        let key = target.api_key;
        let bearer = || key.map(|k| ("authorization", format!("Bearer {k}")));
        let model = target.upstream_model;
        // Only the OpenAI family takes token ids (`check_input`).
        let texts: &[String] = match &request.input {
            Input::Texts(texts) => texts,
            Input::Tokens { .. } => &[],
        };
        let (path, headers, body) = match self.api {
            Api::Gemini => (
                gemini::method_path(target.base_path, model, "batchEmbedContents"),
                key.map(|k| ("x-goog-api-key", k.to_string()))
                    .into_iter()
                    .collect(),
                gemini_request(request, texts, model),
            ),
            Api::Cohere => (
                cohere_path(target.base_path),
                bearer().into_iter().collect(),
                cohere_request(request, texts, Some(model)),
            ),
            Api::Titan | Api::BedrockCohere => {
                // The signature covers the Host: the final one is set here, as for Converse.
                let host = target.options.host.clone().map(|h| (":authority", h));
                (
                    bedrock::model_path(target.base_path, model, "invoke"),
                    host.into_iter().chain(bearer()).collect(),
                    if self.api == Api::Titan {
                        titan_request(request, texts, model)
                    } else {
                        cohere_request(request, texts, None)
                    },
                )
            }
            Api::VertexPredict => {
                self.no_token = key.is_none();
                (
                    vertex::model_path(target.base_path, "google", model, "predict"),
                    bearer().into_iter().collect(),
                    vertex_request(request, texts),
                )
            }
            Api::OpenAi => (
                openai_path(self.spec, target),
                openai_family::credential_header(self.spec, target)
                    .into_iter()
                    .collect(),
                openai_compatible::with_model(body, model)?,
            ),
        };
        Ok(UpstreamRequest {
            path,
            headers,
            body,
            dropped: Vec::new(),
        })
    }

    fn is_stream(&self) -> bool {
        false
    }

    fn response_headers(&mut self, headers: &[(&[u8], &[u8])]) {
        let find = |name| crate::header_map::find(headers, name);
        self.error_type = find("x-amzn-errortype")
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        self.header_tokens = find("x-amzn-bedrock-input-token-count")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse().ok());
    }

    fn response_status(&self, upstream_status: u16) -> u16 {
        let bedrock = matches!(self.api, Api::Titan | Api::BedrockCohere);
        match bedrock::response::exception_status(&self.error_type) {
            _ if self.no_token => 503,
            Some((status, _)) if bedrock && upstream_status >= 400 => status,
            _ if upstream_status == 529 => 503,
            _ => upstream_status,
        }
    }

    fn response(&mut self, upstream_status: u16, body: &[u8]) -> TranslatedResponse {
        let status = self.response_status(upstream_status);
        if self.no_token {
            return TranslatedResponse::error(&vertex::VertexTranslator::no_token_error());
        }
        if !(200..300).contains(&upstream_status) {
            let error = match self.api {
                Api::Gemini | Api::VertexPredict => {
                    gemini::response::provider_error(upstream_status, status, body)
                }
                Api::Cohere => cohere::response::provider_error(upstream_status, status, body),
                Api::Titan | Api::BedrockCohere => bedrock::response::provider_error(
                    upstream_status,
                    status,
                    &self.error_type,
                    body,
                ),
                Api::OpenAi => openai_compatible::openai_error(status, body),
            };
            return TranslatedResponse::error(&error);
        }
        let answer = match self.api {
            Api::OpenAi => openai_answer(body),
            _ => self.translated_answer(body),
        };
        match answer {
            Ok((body, usage)) => TranslatedResponse {
                status,
                body,
                usage: Some(usage),
            },
            Err(why) => TranslatedResponse::error(&bad_upstream(self.spec.display_name, why)),
        }
    }

    fn stream(&mut self, _chunk: &[u8], _end_of_stream: bool, _out: &mut Vec<u8>) {}

    fn stream_usage(&self) -> Option<Usage> {
        None
    }

    fn usage_estimated(&self) -> bool {
        self.estimated
    }
}

/// `/embeddings` under the base, or Azure's deployment path.
fn openai_path(spec: &ProviderSpec, target: &Target<'_>) -> String {
    if spec.wire != WireApi::AzureOpenAi {
        return join_path(target.base_path, "/embeddings");
    }
    match &target.options.azure_api_version {
        Some(version) => join_path(
            target.base_path,
            &format!(
                "/openai/deployments/{}/embeddings?api-version={version}",
                target.upstream_model
            ),
        ),
        None => join_path(target.base_path, "/openai/v1/embeddings"),
    }
}

/// `/v2/embed` under the base (a base already ending in `/v2` is used as is).
fn cohere_path(base_path: &str) -> String {
    let base = base_path.trim_end_matches('/');
    if base.ends_with("/v2") {
        join_path(base, "/embed")
    } else {
        join_path(base, "/v2/embed")
    }
}

/// Appends `text` as a JSON string.
fn push_str(out: &mut Vec<u8>, text: &str) {
    // Writing a string into a vector cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// `{"requests": [{"model", "content": {"parts": [{"text"}]}, "taskType"?,
/// "outputDimensionality"?}, ...]}`.
fn gemini_request(request: &EmbeddingsRequest, texts: &[String], model: &str) -> Vec<u8> {
    let mut common = b"{\"model\":".to_vec();
    let prefixed = model.starts_with("models/") || model.starts_with("tunedModels/");
    push_str(
        &mut common,
        &if prefixed {
            model.to_string()
        } else {
            format!("models/{model}")
        },
    );
    if let Some(task) = request.input_type.as_deref().and_then(gemini_task_type) {
        common.extend_from_slice(b",\"taskType\":");
        push_str(&mut common, task);
    }
    if let Some(d) = request.dimensions {
        common.extend_from_slice(format!(",\"outputDimensionality\":{d}").as_bytes());
    }
    let size: usize = texts.iter().map(|t| t.len() + common.len() + 40).sum();
    let mut out = Vec::with_capacity(size + 16);
    out.extend_from_slice(b"{\"requests\":[");
    for (i, text) in texts.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&common);
        out.extend_from_slice(b",\"content\":{\"parts\":[{\"text\":");
        push_str(&mut out, text);
        out.extend_from_slice(b"}]}}");
    }
    out.extend_from_slice(b"]}");
    out
}

/// `{"model", "texts", "input_type", "embedding_types", "output_dimension"?}`; on Bedrock
/// (`model: None`) without `model`, and `float` always.
fn cohere_request(request: &EmbeddingsRequest, texts: &[String], model: Option<&str>) -> Vec<u8> {
    let input_type = request
        .input_type
        .as_deref()
        .and_then(cohere_input_type)
        .unwrap_or("search_document");
    let size: usize = texts.iter().map(|t| t.len() + 4).sum();
    let mut out = Vec::with_capacity(size + 160);
    if let Some(model) = model {
        out.extend_from_slice(b"{\"model\":");
        push_str(&mut out, model);
        out.push(b',');
    } else {
        out.push(b'{');
    }
    out.extend_from_slice(b"\"texts\":[");
    for (i, text) in texts.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_str(&mut out, text);
    }
    out.extend_from_slice(b"],\"input_type\":");
    push_str(&mut out, input_type);
    out.extend_from_slice(if request.base64 && model.is_some() {
        b",\"embedding_types\":[\"base64\"]"
    } else {
        b",\"embedding_types\":[\"float\"]"
    });
    if let Some(d) = request.dimensions {
        out.extend_from_slice(format!(",\"output_dimension\":{d}").as_bytes());
    }
    out.push(b'}');
    out
}

/// Titan's `{"inputText", "dimensions"?, "normalize"?}`: the one text (`check_input`);
/// `normalize` (V2 only) as Titan's default, `true`, like OpenAI's unit vectors.
fn titan_request(request: &EmbeddingsRequest, texts: &[String], model: &str) -> Vec<u8> {
    let text = texts.first().map_or("", String::as_str);
    let mut out = Vec::with_capacity(text.len() + 64);
    out.extend_from_slice(b"{\"inputText\":");
    push_str(&mut out, text);
    if let Some(d) = request.dimensions {
        out.extend_from_slice(b",\"dimensions\":");
        out.extend_from_slice(d.to_string().as_bytes());
    }
    if model.contains("text-v2") {
        out.extend_from_slice(b",\"normalize\":true");
    }
    out.push(b'}');
    out
}

/// Vertex AI's `{"instances": [{"content", "task_type"?}], "parameters":
/// {"outputDimensionality"}?}`.
fn vertex_request(request: &EmbeddingsRequest, texts: &[String]) -> Vec<u8> {
    let task = request.input_type.as_deref().and_then(gemini_task_type);
    let size: usize = texts.iter().map(|t| t.len() + 48).sum();
    let mut out = Vec::with_capacity(size + 64);
    out.extend_from_slice(b"{\"instances\":[");
    for (i, text) in texts.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"content\":");
        push_str(&mut out, text);
        if let Some(task) = task {
            out.extend_from_slice(b",\"task_type\":");
            push_str(&mut out, task);
        }
        out.push(b'}');
    }
    out.push(b']');
    if let Some(d) = request.dimensions {
        out.extend_from_slice(b",\"parameters\":{\"outputDimensionality\":");
        out.extend_from_slice(d.to_string().as_bytes());
        out.push(b'}');
    }
    out.push(b'}');
    out
}

/// A 2xx body that is not what the provider documents: a 502 Envoy can fall back on.
#[inline(never)]
fn bad_upstream(provider: &str, why: &str) -> GatewayError {
    GatewayError::new(
        ErrorKind::Api,
        format!(
            "the provider returned a body that is not a valid {provider} embeddings answer: {why}"
        ),
    )
    .with_status(502)
    .with_code("bad_upstream_response")
}

/// An OpenAI-family answer, kept as sent; its usage read without building the vectors.
fn openai_answer(body: &[u8]) -> Result<(Vec<u8>, Usage), &'static str> {
    let mut scan = Scan::new(body);
    let (mut data, mut usage, mut error) = (false, None, false);
    let scanned = scan.object(|scan, key| {
        scan.space();
        let start = scan.at;
        let first = scan.peek();
        scan.skip_value()?;
        match key {
            b"data" => data = first == Some(b'['),
            b"usage" => usage = body.get(start..scan.at),
            b"error" => error = first != Some(b'n'),
            _ => {}
        }
        Some(())
    });
    scan.space();
    // Passed on as sent: the whole body must be the one object.
    if scanned.is_none() || scan.at != body.len() || !data || error {
        return Err("no `data` list");
    }
    let prompt = usage
        .and_then(|u| serde_json::from_slice::<Value>(u).ok())
        .and_then(|u| u.get("prompt_tokens").and_then(Value::as_u64));
    Ok((
        body.to_vec(),
        Usage {
            prompt_tokens: prompt.unwrap_or(0),
            ..Usage::default()
        },
    ))
}

impl EmbeddingsTranslator {
    /// The provider's list of vectors and its token count → OpenAI's list:
    /// Gemini's `{"embeddings": [{"values"}]}` (no usage), Cohere's `{"embeddings":
    /// {"float": [[...]]} | {"base64": [...]}, "meta": {"billed_units": {"input_tokens"}}}`,
    /// Titan's `{"embedding", "inputTextTokenCount"}`, Cohere on Bedrock's `{"embeddings":
    /// [[...]] | {"float": [[...]]}}` (tokens in a header) and Vertex AI's `{"predictions":
    /// [{"embeddings": {"values", "statistics": {"token_count"}}}]}`. Without a count the
    /// estimate is the usage.
    fn translated_answer(&mut self, body: &[u8]) -> Result<(Vec<u8>, Usage), &'static str> {
        let value: Value = serde_json::from_slice(body).map_err(|_| "not JSON")?;
        let embeddings = value.get("embeddings");
        let float = if self.base64 { "base64" } else { "float" };
        let (list, tokens) = match self.api {
            Api::Cohere => {
                let meta = value.get("meta");
                let tokens = |path: &str| {
                    meta.and_then(|m| m.get(path))
                        .and_then(|u| u.get("input_tokens"))
                        .and_then(Value::as_u64)
                };
                let billed = tokens("billed_units").or_else(|| tokens("tokens"));
                (embeddings.and_then(|e| e.get(float)), billed.or(Some(0)))
            }
            Api::BedrockCohere => (
                embeddings.and_then(|e| e.get("float").or(Some(e))),
                self.header_tokens,
            ),
            Api::Titan => (
                value.get("embedding"),
                value
                    .get("inputTextTokenCount")
                    .and_then(Value::as_u64)
                    .or(self.header_tokens),
            ),
            Api::VertexPredict => {
                let list = value.get("predictions");
                let statistics = |p: &Value| p.get("embeddings")?.get("statistics").cloned();
                let count = |s: Value| s.get("token_count").or(s.get("tokenCount"))?.as_u64();
                let tokens = list.and_then(Value::as_array).and_then(|l| {
                    l.iter()
                        .map(|p| statistics(p).and_then(count))
                        .sum::<Option<u64>>()
                });
                (list, tokens)
            }
            _ => (embeddings, None),
        };
        let list = list.ok_or("no list of embeddings")?;
        // Titan's answer is one vector, not a list of them.
        let items = match self.api {
            Api::Titan => std::slice::from_ref(list),
            _ => list.as_array().ok_or("no list of embeddings")?.as_slice(),
        };
        let vectors = items
            .iter()
            .map(|item| {
                let item = match self.api {
                    Api::Gemini => item.get("values")?,
                    Api::VertexPredict => item.get("embeddings")?.get("values")?,
                    _ => item,
                };
                match item {
                    Value::Array(floats) if floats.iter().all(Value::is_number) => {
                        Some(Vector::Floats(floats))
                    }
                    Value::String(b) if self.api == Api::Cohere => Some(Vector::Base64(b)),
                    _ => None,
                }
            })
            .collect::<Option<Vec<_>>>()
            .ok_or("an embedding that is not a list of numbers")?;
        self.estimated = tokens.is_none();
        let usage = Usage {
            prompt_tokens: tokens.unwrap_or(self.estimated_tokens),
            ..Usage::default()
        };
        Ok((self.openai_list(vectors, usage), usage))
    }

    /// OpenAI's `{"object": "list", "data": [{"object": "embedding", "index", "embedding"}],
    /// "model", "usage": {"prompt_tokens", "total_tokens"}}`.
    fn openai_list(&self, vectors: Vec<Vector<'_>>, usage: Usage) -> Vec<u8> {
        let mut out = Vec::with_capacity(4096);
        out.extend_from_slice(br#"{"object":"list","data":["#);
        for (i, vector) in vectors.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(br#"{"object":"embedding","index":"#);
            out.extend_from_slice(i.to_string().as_bytes());
            out.extend_from_slice(br#","embedding":"#);
            match vector {
                Vector::Floats(floats) if self.base64 => {
                    out.push(b'"');
                    base64_f32(floats, &mut out);
                    out.push(b'"');
                }
                Vector::Floats(floats) => {
                    // Numbers only (checked): writing them cannot fail.
                    let _ = serde_json::to_writer(&mut out, floats);
                }
                Vector::Base64(text) => push_str(&mut out, text),
            }
            out.push(b'}');
        }
        out.extend_from_slice(br#"],"model":"#);
        push_str(&mut out, &self.model);
        let tokens = usage.prompt_tokens.to_string();
        out.extend_from_slice(br#","usage":{"prompt_tokens":"#);
        out.extend_from_slice(tokens.as_bytes());
        out.extend_from_slice(br#","total_tokens":"#);
        out.extend_from_slice(tokens.as_bytes());
        out.extend_from_slice(b"}}");
        out
    }
}

/// One vector of an answer.
enum Vector<'v> {
    /// JSON numbers.
    Floats(&'v [Value]),
    /// Base64 the provider already encoded.
    Base64(&'v str),
}

/// Appends the base64 of `floats` (numbers) as little-endian float32, what OpenAI's
/// `base64` holds.
fn base64_f32(floats: &[Value], out: &mut Vec<u8>) {
    let mut bytes = Vec::with_capacity(floats.len() * 4);
    for f in floats {
        bytes.extend_from_slice(&(f.as_f64().unwrap_or(0.0) as f32).to_le_bytes());
    }
    base64(&bytes, out);
}

/// Standard base64 with padding.
fn base64(bytes: &[u8], out: &mut Vec<u8>) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sextet = |n: u32, shift: u32| ALPHABET.get(((n >> shift) & 63) as usize).copied();
    for chunk in bytes.chunks(3) {
        let b = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (b(0) << 16) | (b(1) << 8) | b(2);
        for (k, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if k <= chunk.len() {
                out.extend(sextet(n, shift));
            } else {
                out.push(b'=');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            let mut out = Vec::new();
            base64(plain.as_bytes(), &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), encoded);
        }
        let mut out = Vec::new();
        base64_f32(&[Value::from(1.0)], &mut out);
        // 1.0f32 = 0x3f800000, little-endian 00 00 80 3f.
        assert_eq!(String::from_utf8(out).unwrap(), "AACAPw==");
    }

    #[test]
    fn model_is_rewritten_in_place() {
        let body = br#"{ "input" : ["a"], "model":"alias", "dimensions": 8 }"#;
        let out = openai_compatible::with_model(body, "text-embedding-3-small").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{ "input" : ["a"], "model":"text-embedding-3-small", "dimensions": 8 }"#
        );
        // Escaped keys take the general way.
        let out = openai_compatible::with_model(br#"{"\u006dodel":"a","input":"x"}"#, "m").unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            (v["model"].as_str(), v["input"].as_str()),
            (Some("m"), Some("x"))
        );
    }
}
