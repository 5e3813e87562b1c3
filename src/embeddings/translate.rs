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

use serde_json::Value;

use super::{cohere_input_type, gemini_task_type, EmbeddingsRequest, Input};
use crate::error::{ErrorKind, GatewayError};
use crate::json::scan::Scan;
use crate::provider::registry::{ProviderSpec, WireApi};
use crate::provider::{
    cohere, gemini, join_path, openai_compatible, openai_family, ClientRequest, ProviderKind,
    Target, TranslatedResponse, Translator, UpstreamRequest, Validated,
};
use crate::usage::Usage;

/// The translator of one embeddings attempt to a deployment of `kind`, guarded like chat's.
pub fn translator_for(kind: ProviderKind) -> Box<dyn Translator> {
    Box::new(crate::provider::Guarded::new(Box::new(
        EmbeddingsTranslator {
            spec: kind.spec(),
            model: String::new(),
            base64: false,
            estimated_tokens: 0,
        },
    )))
}

/// Translator for one embeddings attempt.
struct EmbeddingsTranslator {
    spec: &'static ProviderSpec,
    /// The upstream model, for the translated answer's `model`.
    model: String,
    /// The client asked for base64.
    base64: bool,
    /// The request's estimated tokens (Gemini's usage).
    estimated_tokens: u64,
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
        request.check_input(self.spec)?;
        let key = target.api_key;
        let (path, header, body) = match (self.spec.wire, &request.input) {
            (WireApi::GeminiGenerate, Input::Texts(texts)) => (
                gemini::method_path(
                    target.base_path,
                    target.upstream_model,
                    "batchEmbedContents",
                ),
                key.map(|k| ("x-goog-api-key", k.to_string())),
                gemini_request(request, texts, target.upstream_model),
            ),
            (WireApi::CohereChat, Input::Texts(texts)) => (
                cohere_path(target.base_path),
                key.map(|k| ("authorization", format!("Bearer {k}"))),
                cohere_request(request, texts, target.upstream_model),
            ),
            (wire, _) if !wire.embeds() => {
                return Err(GatewayError::invalid_param(
                    "model",
                    format!(
                        "{} embeddings are not translated by the gateway",
                        self.spec.display_name
                    ),
                ))
            }
            _ => (
                openai_path(self.spec, target),
                openai_family::credential_header(self.spec, target),
                openai_compatible::with_model(body, target.upstream_model)?,
            ),
        };
        Ok(UpstreamRequest {
            path,
            headers: header.into_iter().collect(),
            body,
            dropped: Vec::new(),
        })
    }

    fn is_stream(&self) -> bool {
        false
    }

    fn response(&mut self, upstream_status: u16, body: &[u8]) -> TranslatedResponse {
        let status = self.response_status(upstream_status);
        if !(200..300).contains(&upstream_status) {
            let error = match self.spec.wire {
                WireApi::GeminiGenerate => {
                    gemini::response::provider_error(upstream_status, status, body)
                }
                WireApi::CohereChat => {
                    cohere::response::provider_error(upstream_status, status, body)
                }
                _ => openai_compatible::openai_error(status, body),
            };
            return TranslatedResponse::error(&error);
        }
        let answer = match self.spec.wire {
            WireApi::GeminiGenerate | WireApi::CohereChat => self.translated_answer(body),
            _ => openai_answer(body),
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
        self.spec.wire == WireApi::GeminiGenerate
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

/// `{"model", "texts", "input_type", "embedding_types", "output_dimension"?}`.
fn cohere_request(request: &EmbeddingsRequest, texts: &[String], model: &str) -> Vec<u8> {
    let input_type = request
        .input_type
        .as_deref()
        .and_then(cohere_input_type)
        .unwrap_or("search_document");
    let size: usize = texts.iter().map(|t| t.len() + 4).sum();
    let mut out = Vec::with_capacity(size + 160);
    out.extend_from_slice(b"{\"model\":");
    push_str(&mut out, model);
    out.extend_from_slice(b",\"texts\":[");
    for (i, text) in texts.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_str(&mut out, text);
    }
    out.extend_from_slice(b"],\"input_type\":");
    push_str(&mut out, input_type);
    out.extend_from_slice(if request.base64 {
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
    /// Gemini's `{"embeddings": [{"values": [...]}, ...]}` (no usage: the estimate) or
    /// Cohere's `{"embeddings": {"float": [[...]]} | {"base64": ["..."]}, "meta":
    /// {"billed_units": {"input_tokens"}}}` → OpenAI's list.
    fn translated_answer(&self, body: &[u8]) -> Result<(Vec<u8>, Usage), &'static str> {
        let value: Value = serde_json::from_slice(body).map_err(|_| "not JSON")?;
        let gemini = self.spec.wire == WireApi::GeminiGenerate;
        let mut list = value.get("embeddings");
        let mut prompt_tokens = self.estimated_tokens;
        if !gemini {
            list = list.and_then(|e| e.get(if self.base64 { "base64" } else { "float" }));
            let meta = value.get("meta");
            let tokens = |path: &str| {
                meta.and_then(|m| m.get(path))
                    .and_then(|u| u.get("input_tokens"))
                    .and_then(Value::as_u64)
            };
            prompt_tokens = tokens("billed_units")
                .or_else(|| tokens("tokens"))
                .unwrap_or(0);
        }
        let vectors = list
            .and_then(Value::as_array)
            .ok_or("no list of embeddings")?
            .iter()
            .map(
                |item| match item.get("values").filter(|_| gemini).unwrap_or(item) {
                    Value::Array(floats) if floats.iter().all(Value::is_number) => {
                        Some(Vector::Floats(floats))
                    }
                    Value::String(b) if !gemini => Some(Vector::Base64(b)),
                    _ => None,
                },
            )
            .collect::<Option<Vec<_>>>()
            .ok_or("an embedding that is not a list of numbers")?;
        let usage = Usage {
            prompt_tokens,
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
