//! Shared helpers for golden tests: fixed targets, case directories, JSON comparison with a
//! readable diff, and the runner that drives a translator through every case of a provider.
//!
//! A case is a directory `tests/fixtures/<provider>/<case>/` holding some of:
//!
//! | file | what |
//! |---|---|
//! | `openai_request.json` | the client's body |
//! | `upstream_request.json` | the body the gateway must send upstream |
//! | `upstream_response.json` (or `.txt` for a non-JSON body) | the provider's answer, sent as is |
//! | `upstream_status` | the provider's status (default 200) |
//! | `openai_response.json` | what the client must get |
//! | `expected_status` | the client's status (default 200; 400 for a refused request) |
//!
//! A case may hold only the request pair, only the response pair, or both. A case with
//! `openai_request.json` and `openai_response.json` but no upstream files is a refused
//! request: the translator must answer that error. JSON is compared as values, never bytes.
//! Directories named `stream_*` and files named `stream_*` belong to the streaming tests.
//!
//! `tests/fixtures/<provider>/corpus/` is not a case: it holds the provider's snapshots of
//! the shared request corpus (`tests/corpus.rs`).
//!
//! Set `GOLDEN_BLESS=1` to overwrite mismatching expected files with what the translator
//! produced (then review the diff before committing).

#![allow(dead_code)]

use llm_gateway::messages_api::InboundApi;
use llm_gateway::provider::RequestFromBody;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use llm_gateway::openai::UsageBody;
use llm_gateway::provider::registry::{Credential, WireApi};
use llm_gateway::provider::{translator_for, ProviderKind, ProviderOptions, Target};
use llm_gateway::usage::Usage;
use serde_json::Value;

/// `created` of every translated answer.
pub const NOW: u64 = 1_700_000_000;

/// Default provider options, shared by the fixed targets.
pub static OPTIONS: LazyLock<ProviderOptions> = LazyLock::new(ProviderOptions::default);

/// The Anthropic deployment every Anthropic case is translated for.
pub fn anthropic_target() -> Target<'static> {
    target_for(ProviderKind::Anthropic)
}

/// The OpenAI deployment every OpenAI-compatible case is translated for.
pub fn openai_target() -> Target<'static> {
    target_for(ProviderKind::OpenAi)
}

/// The Gemini deployment every Gemini case is translated for.
pub fn gemini_target() -> Target<'static> {
    target_for(ProviderKind::Gemini)
}

/// The fixed target of each provider, from its registry entry: its example model, the
/// path of its default API base (a typical one where `api_base` is required) and a test
/// key shaped for its credential style (none for keyless servers).
pub fn target_for(kind: ProviderKind) -> Target<'static> {
    let spec = kind.spec();
    let base = spec.default_api_base.unwrap_or(match spec.wire {
        WireApi::AzureOpenAi => "https://example-resource.openai.azure.com",
        WireApi::BedrockConverse => "https://bedrock-runtime.us-east-1.amazonaws.com",
        // What the config makes of `vertex_project: my-project` in us-central1.
        WireApi::VertexGemini | WireApi::VertexAnthropic => {
            "https://us-central1-aiplatform.googleapis.com/v1/projects/my-project/locations/us-central1"
        }
        _ => "http://vllm.internal:8000/v1",
    });
    let after_scheme = base.split_once("://").map_or(base, |(_, rest)| rest);
    let base_path = after_scheme
        .find('/')
        .map_or("", |i| &after_scheme[i..])
        .trim_end_matches('/');
    let api_key = match spec.credential {
        Credential::Bearer => Some("sk-test"),
        Credential::XApiKey => Some("sk-ant-test"),
        Credential::GoogApiKey => Some("AIza-test-key"),
        Credential::ApiKeyHeader => Some("azure-test-key"),
        Credential::Query(_) => Some("test-key"),
        Credential::None | Credential::AwsSigV4 => None,
        Credential::GoogleOAuth => Some("ya29.test-access-token"),
    };
    Target {
        upstream_model: spec.example_model,
        base_path,
        api_key,
        now_unix_secs: NOW,
        options: &OPTIONS,
    }
}

/// A gateway config with one deployment, alias `m`, of these `litellm_params`.
pub fn one_deployment(
    params: &Value,
) -> Result<llm_gateway::config::GatewayConfig, llm_gateway::config::model::ConfigError> {
    llm_gateway::config::GatewayConfig::from_value(serde_json::json!({
        "general_settings": {"master_key": "os.environ/LLM_GATEWAY_MASTER_KEY"},
        "model_list": [{"model_name": "m", "litellm_params": params}],
    }))
}

/// Client body used to set up the translator when a case has only the response pair.
pub const MINIMAL_REQUEST: &[u8] =
    br#"{"model":"alias","messages":[{"role":"user","content":"Hi"}]}"#;

/// A one-message chat request to `model` with the top-level fields of `extra` set.
pub fn chat_body(model: &str, extra: Value) -> Value {
    let mut body =
        serde_json::json!({"model": model, "messages": [{"role": "user", "content": "Hi"}]});
    for (k, v) in extra.as_object().expect("extra fields are an object") {
        body[k] = v.clone();
    }
    body
}

/// A translator of `kind` that has taken the chat request `body` for its default target.
#[allow(dead_code)]
pub fn chat_translator(
    kind: ProviderKind,
    body: &[u8],
) -> Box<dyn llm_gateway::provider::Translator> {
    let mut t = translator_for(kind);
    t.request_from_body(InboundApi::Chat, body, &target_for(kind))
        .unwrap_or_else(|e| panic!("{kind:?} refused the request: {e}"));
    t
}

/// A Messages API translator of `kind` for `target`'s model that has taken the Messages
/// request `body`, and the upstream request it made.
pub fn messages_translator(
    kind: ProviderKind,
    body: &[u8],
    target: &Target<'_>,
) -> (
    Box<dyn llm_gateway::provider::Translator>,
    llm_gateway::provider::UpstreamRequest,
) {
    let mut t = llm_gateway::messages_api::translator::translator(
        kind,
        InboundApi::Messages,
        target.upstream_model,
    );
    let up = t
        .request_from_body(InboundApi::Messages, body, target)
        .unwrap_or_else(|e| panic!("{kind:?} refused the Messages request: {e}"));
    (t, up)
}

/// A Messages API request to Claude with what a pass-through keeps as the client wrote it:
/// thinking blocks with their signatures, a cache mark, `metadata` and `top_k`.
pub fn claude_messages_request() -> Value {
    serde_json::json!({
        "model": "claude-alias", "max_tokens": 64, "top_k": 5, "metadata": {"user_id": "u1"},
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "t", "signature": "sig-1"},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "text", "text": "hello"}]},
            {"role": "user", "content": "again"}]
    })
}

/// The directory of a provider's fixtures that holds its snapshots of the shared request
/// corpus (`tests/corpus.rs`), not a case.
pub const CORPUS_DIR: &str = "corpus";

/// File names of the non-streamed cases.
pub const CASE_FILES: &[&str] = &[
    "openai_request.json",
    "upstream_request.json",
    "upstream_response.json",
    "upstream_response.txt",
    "upstream_status",
    "openai_response.json",
    "expected_status",
];

/// One case directory.
#[derive(Debug, Clone)]
pub struct Case {
    /// Directory name.
    pub name: String,
    /// Directory path.
    pub dir: PathBuf,
}

impl Case {
    /// Path of one file of the case.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// True when the case has this file.
    pub fn has(&self, file: &str) -> bool {
        self.path(file).is_file()
    }

    /// The raw bytes of a file, when present.
    pub fn bytes(&self, file: &str) -> Option<Vec<u8>> {
        let path = self.path(file);
        path.is_file().then(|| {
            fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        })
    }

    /// A JSON file, when present; panics naming the file when it is not valid JSON.
    pub fn json(&self, file: &str) -> Option<Value> {
        self.bytes(file).map(|b| {
            serde_json::from_slice(&b)
                .unwrap_or_else(|e| panic!("{}/{file} is not valid JSON: {e}", self.name))
        })
    }

    /// A status file (a number), when present.
    pub fn status(&self, file: &str) -> Option<u16> {
        self.bytes(file).map(|b| {
            String::from_utf8_lossy(&b)
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("{}/{file} is not a status code: {e}", self.name))
        })
    }
}

/// Root of the fixtures.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
}

/// The non-streamed cases of `provider` (a directory under `tests/fixtures`), sorted by name.
///
/// Panics when a directory has no file a case can have, so a misspelt file is never
/// silently skipped.
pub fn cases(provider: &str) -> Vec<Case> {
    let root = fixtures_dir().join(provider);
    let entries =
        fs::read_dir(&root).unwrap_or_else(|e| panic!("cannot list {}: {e}", root.display()));
    let mut cases = Vec::new();
    for entry in entries {
        let dir = entry
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", root.display()))
            .path();
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // `corpus/` holds the shared corpus's snapshots (`tests/corpus.rs`).
        if !dir.is_dir() || name.starts_with("stream_") || name == CORPUS_DIR {
            continue;
        }
        let case = Case { name, dir };
        if !CASE_FILES.iter().any(|f| case.has(f)) {
            let only_stream_files = fs::read_dir(&case.dir)
                .map(|files| {
                    files
                        .flatten()
                        .all(|f| f.file_name().to_string_lossy().starts_with("stream_"))
                })
                .unwrap_or(false);
            assert!(
                only_stream_files,
                "{provider}/{} has none of the case files {CASE_FILES:?}",
                case.name
            );
            continue;
        }
        cases.push(case);
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    cases
}

/// Differences between two JSON values, one line per differing path (`$.a[1].b`).
pub fn json_diff(expected: &Value, actual: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff_at("$", expected, actual, &mut out);
    out
}

fn diff_at(path: &str, expected: &Value, actual: &Value, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                let p = format!("{path}.{k}");
                match a.get(k) {
                    Some(av) => diff_at(&p, ev, av, out),
                    None => out.push(format!("{p}: missing (expected {})", short(ev))),
                }
            }
            for (k, av) in a {
                if !e.contains_key(k) {
                    out.push(format!("{path}.{k}: unexpected (got {})", short(av)));
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                diff_at(&format!("{path}[{i}]"), ev, av, out);
            }
            if e.len() != a.len() {
                out.push(format!(
                    "{path}: expected {} items, got {}",
                    e.len(),
                    a.len()
                ));
            }
        }
        // 1 and 1.0 are the same number on the wire.
        (Value::Number(e), Value::Number(a)) if e.as_f64() == a.as_f64() => {}
        (e, a) if e == a => {}
        (e, a) => out.push(format!("{path}: expected {}, got {}", short(e), short(a))),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 120 {
        let head: String = s.chars().take(117).collect();
        format!("{head}...")
    } else {
        s
    }
}

/// Compares `actual` with the expected file `file` of `case`; a failure is described in
/// `failures`. With `GOLDEN_BLESS=1` the file is rewritten instead.
pub fn check_json(case: &Case, file: &str, actual: &Value, failures: &mut Vec<String>) {
    let Some(expected) = case.json(file) else {
        failures.push(format!("{}: {file} is missing", case.name));
        return;
    };
    let diff = json_diff(&expected, actual);
    if diff.is_empty() {
        return;
    }
    if std::env::var_os("GOLDEN_BLESS").is_some() {
        let pretty = serde_json::to_string_pretty(actual).unwrap_or_default() + "\n";
        fs::write(case.path(file), pretty).unwrap_or_else(|e| panic!("cannot bless {file}: {e}"));
        return;
    }
    let mut msg = format!("{}: {file} differs:\n", case.name);
    for line in &diff {
        let _ = writeln!(msg, "    {line}");
    }
    let _ = write!(
        msg,
        "  actual {file}:\n{}",
        serde_json::to_string_pretty(actual).unwrap_or_default()
    );
    failures.push(msg);
}

/// Checks a status; a failure is described in `failures`.
pub fn check_status(
    case: &Case,
    what: &str,
    expected: u16,
    actual: u16,
    failures: &mut Vec<String>,
) {
    if expected != actual {
        failures.push(format!(
            "{}: {what} expected {expected}, got {actual}",
            case.name
        ));
    }
}

/// Parses a body the translator produced; a failure is described in `failures`.
pub fn parse_output(
    case: &Case,
    what: &str,
    body: &[u8],
    failures: &mut Vec<String>,
) -> Option<Value> {
    match serde_json::from_slice(body) {
        Ok(v) => Some(v),
        Err(e) => {
            failures.push(format!(
                "{}: {what} is not JSON ({e}): {}",
                case.name,
                String::from_utf8_lossy(body)
            ));
            None
        }
    }
}

/// Runs one case through a fresh translator of `kind`; returns the failures.
pub fn run_case(kind: ProviderKind, target: &Target<'_>, case: &Case) -> Vec<String> {
    let mut failures = Vec::new();
    let mut translator = translator_for(kind);
    let upstream_response = case
        .bytes("upstream_response.json")
        .or_else(|| case.bytes("upstream_response.txt"));
    let refused_request = case.has("openai_request.json")
        && !case.has("upstream_request.json")
        && upstream_response.is_none();

    let request = case.bytes("openai_request.json");
    let translated = translator.request_from_body(
        InboundApi::Chat,
        request.as_deref().unwrap_or(MINIMAL_REQUEST),
        target,
    );
    match translated {
        Ok(up) if request.is_some() => {
            if refused_request {
                failures.push(format!(
                    "{}: the request was expected to be refused but was translated",
                    case.name
                ));
            }
            if case.has("upstream_request.json") {
                if let Some(actual) =
                    parse_output(case, "upstream request", &up.body, &mut failures)
                {
                    check_json(case, "upstream_request.json", &actual, &mut failures);
                }
            }
        }
        Ok(_) => {}
        Err(e) if refused_request => {
            check_status(
                case,
                "status",
                case.status("expected_status").unwrap_or(400),
                e.status,
                &mut failures,
            );
            if let Some(actual) = parse_output(case, "error", &e.to_json(), &mut failures) {
                check_json(case, "openai_response.json", &actual, &mut failures);
            }
            return failures;
        }
        Err(e) => {
            failures.push(format!("{}: request refused: {e}", case.name));
            return failures;
        }
    }

    if let Some(body) = upstream_response {
        let upstream_status = case.status("upstream_status").unwrap_or(200);
        let translated = translator.response(upstream_status, &body);
        check_status(
            case,
            "status",
            case.status("expected_status").unwrap_or(200),
            translated.status,
            &mut failures,
        );
        if let Some(actual) = parse_output(case, "response", &translated.body, &mut failures) {
            // The usage the gateway accounts must be the usage the client sees.
            let shown = actual.get("usage").filter(|u| !u.is_null()).map(|u| {
                serde_json::from_value::<UsageBody>(u.clone()).map(|b| Usage::from_body(&b))
            });
            // The cost a provider reports is accounted, not shown as a token count.
            let tokens = translated.usage.map(|u| Usage {
                reported_cost_micro_usd: None,
                ..u
            });
            match (tokens, shown) {
                (None, None) => {}
                (Some(accounted), Some(Ok(shown))) if accounted == shown => {}
                (accounted, shown) => failures.push(format!(
                    "{}: accounted usage {accounted:?} but the body shows {shown:?}",
                    case.name
                )),
            }
            check_json(case, "openai_response.json", &actual, &mut failures);
        }
    } else if case.has("openai_response.json") && !refused_request {
        failures.push(format!(
            "{}: openai_response.json without an upstream response",
            case.name
        ));
    }
    failures
}

/// Runs every case of `provider` and panics listing all failures (not only the first).
pub fn run_all(provider: &str, kind: ProviderKind, target: &Target<'_>) -> usize {
    let cases = cases(provider);
    assert!(
        !cases.is_empty(),
        "no cases under tests/fixtures/{provider}"
    );
    let failures: Vec<String> = cases
        .iter()
        .flat_map(|c| run_case(kind, target, c))
        .collect();
    assert!(
        failures.is_empty(),
        "{} failures in {} {provider} golden cases:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
    cases.len()
}

/// A Bedrock stream fixture (`upstream.frames.json`) in AWS's binary event-stream framing:
/// the frames are written out readably as a list of `{"event": <type>, "payload": <JSON>}`,
/// `{"exception": <type>, "payload": <JSON>}`, `{"chunk": <JSON>}` for an InvokeModel
/// `chunk` event (the JSON base64-encoded in its payload's `bytes`), or
/// `{"corrupt": <the same>}` for a frame whose message checksum is wrong.
pub fn encode_frames(json: &[u8]) -> Vec<u8> {
    use llm_gateway::provider::bedrock::eventstream::{encode, encode_event};
    let frames: Vec<Value> = serde_json::from_slice(json).expect("frames are JSON");
    let mut out = Vec::new();
    for f in &frames {
        let (f, corrupt) = match f.get("corrupt") {
            Some(inner) => (inner, true),
            None => (f, false),
        };
        let payload = f["payload"].to_string();
        let mut bytes = if let Some(chunk) = f.get("chunk") {
            let bytes = base64(chunk.to_string().as_bytes());
            encode_event("chunk", &serde_json::json!({"bytes": bytes}).to_string())
        } else if let Some(event) = f["event"].as_str() {
            encode_event(event, &payload)
        } else {
            let kind = f["exception"].as_str().expect("an event or an exception");
            encode(
                &[
                    (":exception-type", kind),
                    (":content-type", "application/json"),
                    (":message-type", "exception"),
                ],
                payload.as_bytes(),
            )
        };
        if corrupt {
            if let Some(last) = bytes.last_mut() {
                *last ^= 0xFF;
            }
        }
        out.extend_from_slice(&bytes);
    }
    out
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= group.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
