//! `general_settings.opentelemetry`: where Envoy's own OpenTelemetry tracer (and, when
//! asked, its OTLP access logger and stats sink) sends what it records. Parsed and
//! validated once with the rest of the config; the renderer
//! ([`crate::render::tracing`]) turns it into Envoy config.
//!
//! What the module leaves for the spans beyond the access log's facts is read here too:
//! the request's parameters, the answer's id and finish reasons ([`AnswerFacts`]) and, for
//! the models and keys with `capture_content`, the request and the answer's text, masked
//! and capped ([`captured_input`], [`capped`]).
//!
//! Header values that are secrets (Langfuse's basic auth, an API key) are read from
//! Envoy's environment (`os.environ/NAME`), never written in a file: the rendered config
//! carries `%ENVIRONMENT(NAME)%`, which Envoy expands when it sends.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::model::{check_env_name, ConfigError, Endpoint, Secret};
use crate::openai::chat::ChatRequest;

const AT: &str = "general_settings.opentelemetry";

/// The section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOpenTelemetry {
    endpoint: String,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    sampling_rate: Option<f64>,
    #[serde(default)]
    service_name: Option<String>,
    #[serde(default)]
    access_log: Option<bool>,
    #[serde(default)]
    metrics: Option<bool>,
    #[serde(default)]
    capture_max_bytes: Option<u64>,
}

/// How spans (and logs, metrics) travel to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP over gRPC (`grpc`), e.g. a collector's port 4317.
    Grpc,
    /// OTLP over HTTP with protobuf bodies (`http/protobuf`), e.g. Langfuse, Phoenix's
    /// `/v1/traces`.
    HttpProtobuf,
}

/// The validated section.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenTelemetry {
    /// OTLP over gRPC or HTTP.
    pub protocol: OtlpProtocol,
    /// The collector. For HTTP, `base_path` is the full path spans are posted to.
    pub endpoint: Endpoint,
    /// Headers sent with every export, by lower-case name; secrets from the environment.
    pub headers: Vec<(String, Secret)>,
    /// Share of client requests traced, in percent (Envoy's random sampling, which
    /// decides for requests with a client's `traceparent` too).
    pub sampling_percent: f64,
    /// `service.name` of every span.
    pub service_name: String,
    /// Also send each access-log record through Envoy's OTLP access logger (gRPC only).
    pub access_log: bool,
    /// Also send Envoy's stats through its OTLP stats sink (gRPC only).
    pub metrics: bool,
    /// Most bytes of a captured prompt or answer put on a span; the rest is cut, and the
    /// cut marked.
    pub capture_max_bytes: usize,
}

impl OpenTelemetry {
    /// The environment variables the export's headers are read from (by Envoy, not by
    /// the filter).
    pub fn env_names(&self) -> impl Iterator<Item = &str> {
        self.headers.iter().filter_map(|(_, v)| v.env_name())
    }
}

/// Filter state the downstream instance writes, with tracing on, for
/// `gen_ai.request.max_tokens`.
pub const REQUEST_MAX_TOKENS_STATE: &str = "llm_request_max_tokens";
/// Filter state the downstream instance writes, with tracing on, for
/// `gen_ai.request.temperature`.
pub const REQUEST_TEMPERATURE_STATE: &str = "llm_request_temperature";

/// The request's values for span attributes, as (filter state, value): only those the
/// client set, so a request without them costs no write.
pub fn request_span_values(request: &ChatRequest) -> Vec<(&'static str, String)> {
    let mut values = Vec::new();
    if let Some(n) = request.max_completion_tokens.or(request.max_tokens) {
        values.push((REQUEST_MAX_TOKENS_STATE, n.to_string()));
    }
    if let Some(t) = request.temperature {
        values.push((REQUEST_TEMPERATURE_STATE, t.to_string()));
    }
    values
}

/// Filter state the upstream instance writes, with tracing on, for `gen_ai.response.id`.
pub const RESPONSE_ID_STATE: &str = "llm_response_id";
/// Filter state for `gen_ai.response.finish_reasons`: a JSON array in a string
/// (`["stop"]`), as Envoy's tracer gives every custom tag a string value.
pub const FINISH_REASONS_STATE: &str = "llm_finish_reasons";
/// Filter state of a captured request's messages (OpenInference's `input.value`).
pub const INPUT_STATE: &str = "llm_capture_input";
/// `application/json` when the captured messages are whole (`input.mime_type`); unset for
/// cut ones, which are then plain text.
pub const INPUT_TYPE_STATE: &str = "llm_capture_input_type";
/// Filter state of a captured answer's text (OpenInference's `output.value`).
pub const OUTPUT_STATE: &str = "llm_capture_output";
/// `text/plain` beside a captured answer (`output.mime_type`): Phoenix would otherwise
/// take the output for JSON, as it does for the one it makes of the response's id and
/// model.
pub const OUTPUT_TYPE_STATE: &str = "llm_capture_output_type";

/// `capture_max_bytes` when the section sets none.
pub const DEFAULT_CAPTURE_MAX_BYTES: usize = 16_384;

/// Bytes kept past the cap until keys are masked, so that a key the cut runs through is
/// still recognised whole.
const KEY_MARGIN: usize = 256;

/// The longest start of `text` of at most `n` bytes.
#[inline(never)]
fn prefix(text: &str, n: usize) -> &str {
    let mut end = n.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

/// `text`, the start of `total` bytes, ready for a span: key-shaped words masked as in
/// every message the gateway quotes ([`crate::secrets::redact_key_like`]), and past `cap`
/// cut at a character boundary and marked. Also says whether it is whole.
pub fn capped(text: &str, total: usize, cap: usize) -> (String, bool) {
    let masked = crate::secrets::redact_key_like(text);
    if total <= cap {
        return (masked.into_owned(), true);
    }
    let mut out = prefix(&masked, cap).to_string();
    let _ = std::fmt::Write::write_fmt(&mut out, format_args!("...[truncated: {total} bytes]"));
    (out, false)
}

/// A captured request for `input.value`: its body as the client sent it (JSON: the
/// messages, a Messages request's `system`, the parameters; what OpenInference's own
/// OpenAI instrumentation records), [`capped`]. `None` for a body that is not text.
pub fn captured_input(body: &[u8], cap: usize) -> Option<(String, bool)> {
    let start = body.get(..body.len().min(cap + KEY_MARGIN))?;
    let text = match std::str::from_utf8(start) {
        Ok(text) => text,
        // Cut inside a character: up to it.
        Err(e) => std::str::from_utf8(start.get(..e.valid_up_to())?).ok()?,
    };
    Some(capped(text, body.len(), cap))
}

/// What the answer the client gets says about itself, for its span: its id, its finish
/// reasons and, for a captured request, its text. Read by key in the client's shape
/// (OpenAI's chat completion and chunks, or Anthropic's message and events for a Messages
/// client), from a whole JSON body or whole stream events alike, so every provider is
/// read the same way after its translation.
///
/// A key is its quoted name followed by a colon, which a JSON string cannot hold
/// unescaped: what matches is a key. The first `id` is the answer's (a tool call's comes
/// after it), and only string values count (`"finish_reason":null` does not).
#[derive(Debug, Default)]
pub struct AnswerFacts {
    /// The answer's id.
    pub id: Option<String>,
    /// The finish reasons as a JSON array, once there is one.
    reasons: Vec<u8>,
    /// The text so far (up to the cap and a margin), when captured.
    text: Option<String>,
    /// Bytes of text there were in all.
    text_len: usize,
    cap: usize,
}

/// The string values of one key in a text, in order (see [`AnswerFacts`]).
struct Strings<'a> {
    bytes: &'a [u8],
    key: &'static [u8],
    from: usize,
}

impl<'a> Strings<'a> {
    /// The next value's JSON literal (quotes included) and whether it has escapes.
    #[inline(never)]
    fn next(&mut self) -> Option<(&'a [u8], bool)> {
        loop {
            let rest = self.bytes.get(self.from..)?;
            let mut s = crate::json::scan::Scan {
                bytes: self.bytes,
                at: self.from + crate::bytes::find(rest, self.key)? + self.key.len(),
            };
            self.from = s.at;
            if !s.take(b':') {
                continue;
            }
            s.space();
            if s.peek() != Some(b'"') {
                continue;
            }
            let start = s.at;
            let (_, escaped) = s.string()?;
            self.from = s.at;
            return Some((self.bytes.get(start..s.at)?, escaped));
        }
    }
}

/// The next object value of `key` in `bytes` from `*from` on (see [`AnswerFacts`]), its
/// braces included.
#[inline(never)]
fn object_of<'a>(bytes: &'a [u8], key: &[u8], from: &mut usize) -> Option<&'a [u8]> {
    loop {
        let rest = bytes.get(*from..)?;
        let mut s = crate::json::scan::Scan {
            bytes,
            at: *from + crate::bytes::find(rest, key)? + key.len(),
        };
        *from = s.at;
        if !s.take(b':') {
            continue;
        }
        s.space();
        if s.peek() != Some(b'{') {
            continue;
        }
        let start = s.at;
        s.skip_value()?;
        *from = s.at;
        return bytes.get(start..s.at);
    }
}

/// The text of a JSON string literal.
fn text_of(literal: &[u8], escaped: bool) -> Option<std::borrow::Cow<'_, str>> {
    if escaped {
        return serde_json::from_slice::<String>(literal)
            .ok()
            .map(Into::into);
    }
    let inner = literal.get(1..literal.len().saturating_sub(1))?;
    std::str::from_utf8(inner).ok().map(Into::into)
}

impl AnswerFacts {
    /// Bytes the captured text holds (0 when nothing is captured): counted against the
    /// worker's byte limit with the stream's own buffers.
    pub fn held_bytes(&self) -> usize {
        self.text.as_ref().map_or(0, String::capacity)
    }

    /// Facts to read; `capture`: the text too, cut at this many bytes.
    pub fn new(capture: Option<usize>) -> Self {
        AnswerFacts {
            text: capture.map(|_| String::new()),
            cap: capture.unwrap_or(0),
            ..AnswerFacts::default()
        }
    }

    /// Reads a whole JSON answer or whole stream events; `anthropic`: in the Messages
    /// API's shape.
    pub fn read(&mut self, bytes: &[u8], anthropic: bool) {
        let strings = |key| Strings {
            bytes,
            key,
            from: 0,
        };
        if self.id.is_none() {
            if let Some((literal, escaped)) = strings(b"\"id\"").next() {
                self.id = text_of(literal, escaped).map(std::borrow::Cow::into_owned);
            }
        }
        let (reason_key, text_key): (&'static [u8], &'static [u8]) = if anthropic {
            (b"\"stop_reason\"", b"\"text\"")
        } else {
            (b"\"finish_reason\"", b"\"content\"")
        };
        let mut reasons = strings(reason_key);
        // One per choice; a stream that says more is not believed beyond this.
        while let Some((literal, _)) = reasons.next().filter(|_| self.reasons.len() < 1024) {
            match self.reasons.pop() {
                Some(_) => self.reasons.push(b','),
                None => self.reasons.push(b'['),
            }
            self.reasons.extend_from_slice(literal);
            self.reasons.push(b']');
        }
        let Some(text) = self.text.as_mut() else {
            return;
        };
        let mut add = |within: &[u8]| {
            let mut pieces = Strings {
                bytes: within,
                key: text_key,
                from: 0,
            };
            while let Some((literal, escaped)) = pieces.next() {
                if let Some(piece) = text_of(literal, escaped) {
                    self.text_len += piece.len();
                    let room = (self.cap + KEY_MARGIN).saturating_sub(text.len());
                    text.push_str(prefix(&piece, room));
                }
            }
        };
        // A whole answer (JSON, not stream events) or Anthropic's shape: every text key.
        let answer = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        if anthropic || answer {
            return add(bytes);
        }
        // A chunk's text is in its `delta`s: a chunk may also repeat the text so far in a
        // `message` (Perplexity's do), which is not more text.
        let (mut from, mut chunks) = (0, false);
        while let Some(delta) = object_of(bytes, b"\"delta\"", &mut from) {
            chunks = true;
            add(delta);
        }
        if !chunks {
            add(bytes);
        }
    }

    /// `gen_ai.response.finish_reasons` as a JSON array (`["stop"]`), if the answer gave
    /// any.
    pub fn finish_reasons(&self) -> Option<&[u8]> {
        (!self.reasons.is_empty()).then_some(&self.reasons[..])
    }

    /// The captured text for `output.value` ([`capped`]), if captured and not empty.
    pub fn captured_text(&self) -> Option<String> {
        let text = self.text.as_deref().filter(|t| !t.is_empty())?;
        Some(capped(text, self.text_len, self.cap).0)
    }
}

/// `service.name` when the section sets none.
pub const DEFAULT_SERVICE_NAME: &str = "llm-gateway";

/// Where OTLP/HTTP spans go when the endpoint has no path (the OTLP default).
pub const DEFAULT_TRACES_PATH: &str = "/v1/traces";

/// Header names whose values are credentials: they must come from the environment.
fn is_credential_header(name: &str) -> bool {
    ["auth", "key", "token", "secret", "password", "cookie"]
        .iter()
        .any(|w| name.contains(w))
}

fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(':')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

pub(crate) fn validate(raw: &RawOpenTelemetry) -> Result<OpenTelemetry, ConfigError> {
    let protocol = match raw.protocol.as_deref() {
        None | Some("http/protobuf") | Some("http") => OtlpProtocol::HttpProtobuf,
        Some("grpc") => OtlpProtocol::Grpc,
        Some(p) => {
            return Err(ConfigError::new(
                format!("{AT}.protocol"),
                format!("`{p}` is not an OTLP protocol: use `http/protobuf` (default; Langfuse, Phoenix on :6006) or `grpc` (a collector on :4317)"),
            ))
        }
    };
    let mut endpoint = Endpoint::parse(raw.endpoint.trim()).map_err(|e| {
        ConfigError::new(
            format!("{AT}.endpoint"),
            format!("{e}; write the collector's URL, e.g. `http://otel-collector:4318/v1/traces` or, with `protocol: grpc`, `http://otel-collector:4317`"),
        )
    })?;
    match protocol {
        OtlpProtocol::HttpProtobuf if endpoint.base_path.is_empty() => {
            endpoint.base_path = DEFAULT_TRACES_PATH.to_string();
        }
        OtlpProtocol::Grpc if !endpoint.base_path.is_empty() => {
            return Err(ConfigError::new(
                format!("{AT}.endpoint"),
                format!("`{}` has a path, which OTLP over gRPC does not use: write only `http(s)://host:port`, or set `protocol: http/protobuf` for an HTTP endpoint", raw.endpoint),
            ))
        }
        _ => {}
    }
    let mut headers = Vec::new();
    for (name, value) in &raw.headers {
        let field = format!("{AT}.headers.{name}");
        let lower = name.to_ascii_lowercase();
        if !valid_header_name(&lower) {
            return Err(ConfigError::new(
                field,
                "is not a valid header name: use letters, digits and - _ .",
            ));
        }
        let secret = Secret::parse(value);
        match &secret {
            Secret::Env(env) => check_env_name(env, &field)?,
            Secret::Literal(_) if is_credential_header(&lower) => {
                return Err(ConfigError::new(
                    field,
                    "looks like a credential and must not be written in the config: use `os.environ/NAME` and set NAME in Envoy's environment (for Langfuse, NAME holds `Basic <base64 of public_key:secret_key>`)",
                ))
            }
            // Envoy would read `%...%` as a formatter command.
            Secret::Literal(v) if v.contains('%') || v.is_empty() => {
                return Err(ConfigError::new(
                    field,
                    "must be a non-empty value without `%` (or `os.environ/NAME`)",
                ))
            }
            Secret::Literal(_) => {}
        }
        headers.push((lower, secret));
    }
    let sampling_percent =
        match raw.sampling_rate {
            None => 100.0,
            Some(r) if (0.0..=1.0).contains(&r) => r * 100.0,
            Some(_) => return Err(ConfigError::new(
                format!("{AT}.sampling_rate"),
                "must be a share between 0 and 1 (e.g. 0.1 traces one request in ten; default 1)",
            )),
        };
    let service_name = match raw.service_name.as_deref() {
        None => DEFAULT_SERVICE_NAME.to_string(),
        Some(s) if !s.trim().is_empty() && s.len() <= 128 && !s.contains('%') => s.to_string(),
        Some(_) => {
            return Err(ConfigError::new(
                format!("{AT}.service_name"),
                "must be 1-128 characters without `%` (default `llm-gateway`)",
            ))
        }
    };
    let access_log = raw.access_log.unwrap_or(false);
    let metrics = raw.metrics.unwrap_or(false);
    if protocol != OtlpProtocol::Grpc {
        for (on, what) in [(access_log, "access_log"), (metrics, "metrics")] {
            if on {
                return Err(ConfigError::new(
                    format!("{AT}.{what}"),
                    "needs `protocol: grpc`: the gateway sends OTLP logs and metrics over gRPC only; point `endpoint` at the collector's gRPC port (4317) or leave this off",
                ));
            }
        }
    }
    let capture_max_bytes = match raw.capture_max_bytes {
        None => DEFAULT_CAPTURE_MAX_BYTES,
        Some(n @ 64..=1_048_576) => n as usize,
        Some(_) => {
            return Err(ConfigError::new(
                format!("{AT}.capture_max_bytes"),
                "must be between 64 and 1048576 bytes (default 16384): the most of a captured prompt or answer put on a span",
            ))
        }
    };
    Ok(OpenTelemetry {
        capture_max_bytes,
        protocol,
        endpoint,
        headers,
        sampling_percent,
        service_name,
        access_log,
        metrics,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::GatewayConfig;
    use serde_json::{json, Value};

    fn with_otel(otel: Value) -> Value {
        json!({
            "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/gpt-4o", "api_base": "http://127.0.0.1:8000/v1"}}],
            "general_settings": {"master_key": "sk-x", "opentelemetry": otel},
        })
    }

    fn error(otel: Value) -> (String, String) {
        let e = GatewayConfig::from_value(with_otel(otel)).unwrap_err();
        (e.field, e.message)
    }

    /// Defaults: OTLP/HTTP to `/v1/traces`, every request traced, service `llm-gateway`.
    #[test]
    fn defaults() {
        let c = GatewayConfig::from_value(with_otel(json!({"endpoint": "http://127.0.0.1:6006"})))
            .unwrap();
        let o = c.general.opentelemetry.clone().unwrap();
        assert_eq!(o.protocol, super::OtlpProtocol::HttpProtobuf);
        assert_eq!(o.endpoint.host, "127.0.0.1");
        assert_eq!(o.endpoint.port, 6006);
        assert_eq!(o.endpoint.base_path, "/v1/traces");
        assert_eq!(o.sampling_percent, 100.0);
        assert_eq!(o.service_name, "llm-gateway");
        assert!(!o.access_log && !o.metrics);
        // Secrets in headers stay in Envoy's environment, not in the filter's.
        assert_eq!(c.env_names(), Vec::<String>::new());
    }

    /// Langfuse: an HTTPS path kept as written and basic auth from the environment.
    #[test]
    fn langfuse_shape() {
        let c = GatewayConfig::from_value(with_otel(json!({
            "endpoint": "https://cloud.langfuse.com/api/public/otel/v1/traces",
            "headers": {"Authorization": "os.environ/LANGFUSE_AUTH", "x-project": "demo"},
            "sampling_rate": 0.25,
        })))
        .unwrap();
        let o = c.general.opentelemetry.unwrap();
        assert!(o.endpoint.tls);
        assert_eq!(o.endpoint.port, 443);
        assert_eq!(o.endpoint.base_path, "/api/public/otel/v1/traces");
        assert_eq!(
            o.headers,
            vec![
                (
                    "authorization".to_string(),
                    crate::config::model::Secret::Env("LANGFUSE_AUTH".into())
                ),
                (
                    "x-project".to_string(),
                    crate::config::model::Secret::Literal("demo".into())
                ),
            ]
        );
        assert_eq!(o.sampling_percent, 25.0);
    }

    /// Every error names the field and the fix.
    #[test]
    fn errors_name_the_field() {
        let at = |f: &str| format!("general_settings.opentelemetry.{f}");
        let cases = [
            (
                json!({"endpoint": "collector:4317"}),
                at("endpoint"),
                "http://",
            ),
            (
                json!({"endpoint": "http://c:4317/v1/traces", "protocol": "grpc"}),
                at("endpoint"),
                "gRPC",
            ),
            (
                json!({"endpoint": "http://c:4318", "protocol": "thrift"}),
                at("protocol"),
                "http/protobuf",
            ),
            (
                json!({"endpoint": "http://c:4318", "headers": {"Authorization": "Basic abc"}}),
                at("headers.Authorization"),
                "os.environ/NAME",
            ),
            (
                json!({"endpoint": "http://c:4318", "headers": {"x-api-key": "k"}}),
                at("headers.x-api-key"),
                "os.environ/NAME",
            ),
            (
                json!({"endpoint": "http://c:4318", "headers": {"x-a": "os.environ/1BAD"}}),
                at("headers.x-a"),
                "valid environment variable",
            ),
            (
                json!({"endpoint": "http://c:4318", "headers": {"x-a": "%REQ(x)%"}}),
                at("headers.x-a"),
                "`%`",
            ),
            (
                json!({"endpoint": "http://c:4318", "headers": {"bad header": "v"}}),
                at("headers.bad header"),
                "header name",
            ),
            (
                json!({"endpoint": "http://c:4318", "sampling_rate": 5}),
                at("sampling_rate"),
                "between 0 and 1",
            ),
            (
                json!({"endpoint": "http://c:4318", "service_name": ""}),
                at("service_name"),
                "1-128",
            ),
            (
                json!({"endpoint": "http://c:4318", "access_log": true}),
                at("access_log"),
                "protocol: grpc",
            ),
            (
                json!({"endpoint": "http://c:4318", "metrics": true}),
                at("metrics"),
                "protocol: grpc",
            ),
            (
                json!({"endpoint": "http://c:4318", "sample": 1}),
                at("sample"),
                "",
            ),
            (
                json!({}),
                "general_settings.opentelemetry".to_string(),
                "endpoint",
            ),
        ];
        for (otel, field, fix) in cases {
            let (f, m) = error(otel.clone());
            assert_eq!(f, field, "{otel}: {m}");
            assert!(m.contains(fix), "{otel}: {m}");
        }
    }

    /// Only what the client set is written, `max_completion_tokens` first.
    #[test]
    fn request_values() {
        let parse = |body: &str| crate::request::parse_chat_request(body.as_bytes()).unwrap();
        let none = parse(r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#);
        assert!(super::request_span_values(&none).is_empty());
        let both = parse(
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":50,"max_completion_tokens":70,"temperature":0.7}"#,
        );
        assert_eq!(
            super::request_span_values(&both),
            vec![
                (super::REQUEST_MAX_TOKENS_STATE, "70".to_string()),
                (super::REQUEST_TEMPERATURE_STATE, "0.7".to_string()),
            ]
        );
    }

    /// `capture_max_bytes`: 16 KiB by default, bounded, named when wrong.
    #[test]
    fn capture_cap() {
        let cap = |otel: Value| {
            GatewayConfig::from_value(with_otel(otel))
                .map(|c| c.general.opentelemetry.unwrap().capture_max_bytes)
        };
        assert_eq!(cap(json!({"endpoint": "http://c:4318"})).unwrap(), 16_384);
        assert_eq!(
            cap(json!({"endpoint": "http://c:4318", "capture_max_bytes": 4096})).unwrap(),
            4096
        );
        for bad in [0, 63, 1_048_577] {
            let e =
                cap(json!({"endpoint": "http://c:4318", "capture_max_bytes": bad})).unwrap_err();
            assert_eq!(e.field, "general_settings.opentelemetry.capture_max_bytes");
            assert!(e.message.contains("between 64 and 1048576"), "{e}");
        }
    }

    fn model(alias: &str, capture: Option<bool>) -> Value {
        let mut m = json!({"model_name": alias, "litellm_params": {"model": "openai/gpt-4o", "api_base": "http://127.0.0.1:8000/v1"}});
        if let Some(c) = capture {
            m["model_info"] = json!({"capture_content": c});
        }
        m
    }

    /// Capture is per model name or per key, needs the section, and is the same on every
    /// entry of a name.
    #[test]
    fn capture_content_per_model_and_key() {
        let key = |capture: bool| json!({"name": "alice", "key_sha256": "ab".repeat(32), "capture_content": capture});
        let config = |models: Value, keys: Value, otel: bool| {
            let mut v = json!({"model_list": models, "virtual_keys": keys, "general_settings": {"master_key": "sk-x"}});
            if otel {
                v["general_settings"]["opentelemetry"] = json!({"endpoint": "http://c:4318"});
            }
            GatewayConfig::from_value(v)
        };
        let c = config(
            json!([
                model("a", Some(true)),
                model("a", Some(true)),
                model("b", None)
            ]),
            json!([]),
            true,
        )
        .unwrap();
        assert!(c.aliases[0].capture_content && !c.aliases[1].capture_content);
        assert!(c.captures_content());
        let c = config(json!([model("a", None)]), json!([key(true)]), true).unwrap();
        assert!(c.keys.keys[0].capture_content && !c.keys.master().capture_content);
        assert!(c.captures_content());
        let c = config(json!([model("a", Some(false))]), json!([key(false)]), false).unwrap();
        assert!(!c.captures_content());

        let e = config(
            json!([model("a", None), model("a", Some(true))]),
            json!([]),
            true,
        )
        .unwrap_err();
        assert_eq!(e.field, "model_list[1].model_info.capture_content");
        assert!(e.message.contains("each of its entries"), "{e}");
        let e = config(json!([model("a", Some(true))]), json!([]), false).unwrap_err();
        assert_eq!(e.field, "model_list[0].model_info.capture_content");
        assert!(e.message.contains("general_settings.opentelemetry"), "{e}");
        let e = config(json!([model("a", None)]), json!([key(true)]), false).unwrap_err();
        assert_eq!(e.field, "virtual_keys[0].capture_content");
        assert!(e.message.contains("general_settings.opentelemetry"), "{e}");
    }

    const KEY: &str = "sk-proj-0123456789abcdefABCDEF";

    /// The body as sent, as JSON; keys masked, also right after a JSON escape.
    #[test]
    fn captured_input() {
        let chat = format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":"key:\n{KEY} ok"}}],"stream":true}}"#
        );
        let (json, whole) = super::captured_input(chat.as_bytes(), 1024).unwrap();
        assert!(whole);
        assert_eq!(
            json,
            r#"{"model":"m","messages":[{"role":"user","content":"key:\nsk-*** ok"}],"stream":true}"#
        );
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["messages"][0]["role"], "user");
        // A Messages request's `system` is part of it.
        let messages =
            r#"{"model":"m","system":"Be brief.","messages":[{"role":"user","content":"hi"}]}"#;
        assert_eq!(
            super::captured_input(messages.as_bytes(), 1024).unwrap(),
            (messages.to_string(), true)
        );
    }

    /// Past the cap: cut at a character boundary, marked with the whole size, not JSON.
    #[test]
    fn captured_input_is_capped() {
        let body = format!(
            r#"{{"messages":[{{"role":"user","content":"{}"}}]}}"#,
            "é".repeat(300)
        );
        let (json, whole) = super::captured_input(body.as_bytes(), 64).unwrap();
        assert!(!whole);
        let (kept, marker) = json.split_once("...[truncated: ").unwrap();
        assert!(kept.len() <= 64 && kept.len() >= 63, "{kept}");
        assert!(body.starts_with(kept));
        assert_eq!(marker, format!("{} bytes]", body.len()));
        // A cut inside a character past the margin too.
        let (json, _) = super::captured_input(body.as_bytes(), 64 + 1).unwrap();
        assert!(json.ends_with(&format!("...[truncated: {} bytes]", body.len())));
        // A key the cut runs through is masked whole, not shown in part.
        for cap in [76, 80, 84, 90] {
            let body = format!(
                r#"{{"messages":[{{"role":"user","content":"{} {KEY}"}}]}}"#,
                "x".repeat(50)
            );
            let (json, _) = super::captured_input(body.as_bytes(), cap).unwrap();
            assert!(!json.contains("sk-p") && !json.contains("0123"), "{json}");
        }
    }

    fn read(parts: &[&str], anthropic: bool, capture: Option<usize>) -> super::AnswerFacts {
        let mut facts = super::AnswerFacts::new(capture);
        for p in parts {
            facts.read(p.as_bytes(), anthropic);
        }
        facts
    }

    fn reasons(facts: &super::AnswerFacts) -> Option<String> {
        facts
            .finish_reasons()
            .map(|r| String::from_utf8(r.to_vec()).unwrap())
    }

    /// A chat completion: the id, one reason per choice, the text of every choice.
    #[test]
    fn chat_completion_facts() {
        let body = r#"{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"A \"quoted\"\nline","tool_calls":[{"id":"call_9","type":"function","function":{"name":"f","arguments":"{\"finish_reason\":\"x\",\"content\":\"y\"}"}}]},"finish_reason":"tool_calls"},{"index":1,"message":{"role":"assistant","content":null},"logprobs":{"content":[]},"finish_reason":"length"}],"usage":{"prompt_tokens":1}}"#;
        let facts = read(&[body], false, Some(1024));
        assert_eq!(facts.id.as_deref(), Some("chatcmpl-1"));
        assert_eq!(
            reasons(&facts).as_deref(),
            Some(r#"["tool_calls","length"]"#)
        );
        assert_eq!(facts.captured_text().as_deref(), Some("A \"quoted\"\nline"));
        // Without capture, no text; an answer without these, nothing.
        assert_eq!(read(&[body], false, None).captured_text(), None);
        let empty = read(&[r#"{"object":"list","data":[]}"#], false, Some(64));
        assert!(empty.id.is_none() && reasons(&empty).is_none() && empty.captured_text().is_none());
    }

    /// Chat chunks, one event per piece: the first id, the reasons that are strings, the
    /// deltas' text joined; whitespace as another server writes it.
    #[test]
    fn chat_stream_facts() {
        let events = [
            "data: {\"id\":\"chatcmpl-7\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
            "data: {\"id\": \"chatcmpl-7\", \"choices\": [{\"index\": 0, \"delta\": {\"content\": \"Hel\"}, \"finish_reason\": null}]}\n\ndata: {\"id\":\"chatcmpl-7\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo \\u00e9\"},\"finish_reason\":null}]}\n\n",
            "data: {\"id\":\"chatcmpl-7\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: {\"id\":\"chatcmpl-7\",\"choices\":[],\"usage\":{\"prompt_tokens\":3}}\n\ndata: [DONE]\n\n",
        ];
        let facts = read(&events, false, Some(1024));
        assert_eq!(facts.id.as_deref(), Some("chatcmpl-7"));
        assert_eq!(reasons(&facts).as_deref(), Some(r#"["stop"]"#));
        assert_eq!(facts.captured_text().as_deref(), Some("Hello é"));
    }

    /// Chunks that also carry the text so far in a `message` (Perplexity's): the deltas'
    /// text only, once, whichever comes first.
    #[test]
    fn chat_stream_facts_with_message_so_far() {
        let events = [
            "data: {\"id\":\"p-1\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"It \"},\"delta\":{\"role\":\"assistant\",\"content\":\"It \"},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"was.\"},\"finish_reason\":\"stop\",\"index\":0,\"message\":{\"content\":\"It was.\"}}],\"id\":\"p-1\"}\n\n",
        ];
        let facts = read(&events, false, Some(1024));
        assert_eq!(facts.captured_text().as_deref(), Some("It was."));
        assert_eq!(
            read(&[&events.concat()], false, Some(1024))
                .captured_text()
                .as_deref(),
            Some("It was.")
        );
    }

    /// Anthropic's shape for a Messages client: the message id (not a tool's), its
    /// `stop_reason`, the text blocks.
    #[test]
    fn messages_facts() {
        let body = r#"{"id":"msg_01","type":"message","role":"assistant","content":[{"type":"text","text":"Let me look."},{"type":"tool_use","id":"toolu_1","name":"f","input":{}}],"stop_reason":"tool_use","stop_sequence":null}"#;
        let facts = read(&[body], true, Some(1024));
        assert_eq!(facts.id.as_deref(), Some("msg_01"));
        assert_eq!(reasons(&facts).as_deref(), Some(r#"["tool_use"]"#));
        assert_eq!(facts.captured_text().as_deref(), Some("Let me look."));
        let events = [
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_02\",\"content\":[],\"stop_reason\":null}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"}}\n\n",
        ];
        let facts = read(&events, true, Some(1024));
        assert_eq!(facts.id.as_deref(), Some("msg_02"));
        assert_eq!(reasons(&facts).as_deref(), Some(r#"["end_turn"]"#));
        assert_eq!(facts.captured_text().as_deref(), Some("Hi"));
    }

    /// A long answer is capped and marked with its whole size; a key it quotes is masked.
    #[test]
    fn captured_text_is_capped_and_scrubbed() {
        let piece = format!(
            "data: {{\"choices\":[{{\"delta\":{{\"content\":\"{}\"}}}}]}}\n\n",
            "ab".repeat(50)
        );
        let pieces: Vec<&str> = std::iter::repeat_n(piece.as_str(), 20).collect();
        let facts = read(&pieces, false, Some(64));
        let text = facts.captured_text().unwrap();
        assert_eq!(
            text,
            format!("{}...[truncated: 2000 bytes]", "ab".repeat(32))
        );
        let body = format!(r#"{{"choices":[{{"message":{{"content":"Your key is {KEY}."}}}}]}}"#);
        let facts = read(&[&body], false, Some(64));
        assert_eq!(
            facts.captured_text().as_deref(),
            Some("Your key is sk-***.")
        );
    }

    /// gRPC with the OTLP access logger and stats sink.
    #[test]
    fn grpc_with_logs_and_metrics() {
        let c = GatewayConfig::from_value(with_otel(json!({
            "endpoint": "http://otel-collector:4317", "protocol": "grpc",
            "access_log": true, "metrics": true, "service_name": "gw-eu",
        })))
        .unwrap();
        let o = c.general.opentelemetry.unwrap();
        assert_eq!(o.protocol, super::OtlpProtocol::Grpc);
        assert!(o.access_log && o.metrics);
        assert_eq!(o.service_name, "gw-eu");
    }
}
