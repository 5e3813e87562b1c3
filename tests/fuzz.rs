//! Property-based fuzzing of every parser and translator of the native core.
//!
//! Stable Rust has no `cargo fuzz`, so this is a seeded, time-bounded mutation fuzzer that
//! runs in plain `cargo test`. Inputs start from the golden fixtures (`tests/fixtures/**`)
//! and a few built-in seeds and are mutated
//!
//! * byte-wise: bit flips, random bytes, truncations, deletions, repeats, splices with other
//!   seeds, dictionary tokens, invalid UTF-8;
//! * JSON-wise: values of the wrong type, huge and odd numbers, deep nesting, long strings,
//!   duplicate keys, lone surrogates, subtrees grafted from other seeds, a provider key
//!   planted in a string (the provider echoing the key);
//! * event-wise for streams: events dropped, repeated, reordered, borrowed from another
//!   provider's stream, unknown event types, error events, pretty-printed (multi-line)
//!   payloads, CR/CRLF line ends, BOMs, comments; then cut into random chunks.
//!
//! Every call runs under `catch_unwind` (a panic kills the Wasm VM in Envoy), and every
//! output is checked:
//!
//! * a translated answer is a JSON object with `choices` or `error`, its status in
//!   100..600, an error exactly when the status is 4xx/5xx, and its accounted usage is the
//!   usage the client sees;
//! * a translated stream is a sequence of complete `data:` events, valid UTF-8, JSON
//!   objects until exactly one final `data: [DONE]` once the stream has ended, an error
//!   event only right before `[DONE]`, at most one `finish_reason` per choice when the gateway
//!   translates; the same bytes give the same output however they are chunked; the
//!   stream's verdict on its first event does not change as more bytes arrive;
//! * the provider key given in `Target::api_key` appears only in the request headers:
//!   never in an upstream body or path, in a refusal, in an error answer or error event
//!   (even when the provider's error quotes it), nor anywhere in an output whose input did
//!   not contain it;
//! * request paths and header values carry no control characters (no header injection);
//! * the accounting store survives any value (another version, garbage, numbers at the
//!   edge of `u64`) with an admission or a 429/503 refusal;
//! * a validated config never holds a provider key written in the file, and renders.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `FUZZ_SECONDS` | `3` | seconds per target (there are ten; the test harness runs them on all cores) |
//! | `FUZZ_SEED` | fixed | base seed (decimal or `0x` hex); the same seed replays the same inputs |
//!
//! A failing input is written under `target/tmp/fuzz-failures/` in the layout of
//! `tests/regressions/`: move it there (and fix the bug) and `regressions` replays it on
//! every run. Regression files are `<target>/<name>` with the provider, status and usage
//! flag in the name where the target needs them (see [`replay`]).

mod common;

use llm_gateway::messages_api::InboundApi;
use llm_gateway::provider::RequestFromBody;
use std::fs;
use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use llm_gateway::auth;
use llm_gateway::config::keys;
use llm_gateway::config::model::Secret;
use llm_gateway::config::periods::{self, BudgetDuration};
use llm_gateway::config::{GatewayConfig, PluginConfig};
use llm_gateway::limits::admission::{admit, rate_limit_headers, RequestFacts};
use llm_gateway::limits::records::prepare;
use llm_gateway::limits::refusal::format_dollars;
use llm_gateway::limits::settlement::{settle, spend, Account, Settlement};
use llm_gateway::limits::store::{key_store_key, team_store_key, MemoryStore, Store};
use llm_gateway::openai::{annotate_usage_chunk, AnswerMeta, UsageBody};
use llm_gateway::pricing::{self, PriceOverride};
use llm_gateway::provider::registry::WireApi;
use llm_gateway::provider::{
    translator_for, ProviderKind, ProviderOptions, StreamPreamble, Target, TranslatedResponse,
};
use llm_gateway::render::{render_bootstrap, render_dynamic, RenderOptions};
use llm_gateway::request::{estimate_prompt_tokens, parse_chat_request};
use llm_gateway::routing;
use llm_gateway::sse::{scan_first_event, write_event, SseDecoder, SseEvent};
use llm_gateway::usage::Usage;
use serde_json::{json, Value};

// =============================================================================================
// Harness

/// Seconds per target.
fn budget() -> Duration {
    let secs = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(3.0);
    Duration::from_secs_f64(secs)
}

fn base_seed() -> u64 {
    let Ok(s) = std::env::var("FUZZ_SEED") else {
        return 0x5EED_F011_A76A_7E00;
    };
    let s = s.trim();
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).unwrap_or(0),
        None => s.parse().unwrap_or(0),
    }
}

/// Every target runs at least this many inputs, however short the budget.
const MIN_INPUTS: u64 = 200;
/// A target stops after this many failing inputs (they are usually one bug).
const MAX_FAILURES: usize = 3;

/// SplitMix64: small, fast, and good enough to drive mutations.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// True with probability `num/den`.
    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.next() % den < num
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A length skewed towards small values, sometimes large.
    fn len(&mut self, max: usize) -> usize {
        match self.below(10) {
            0..=5 => self.below(8.min(max + 1)),
            6..=8 => self.below(256.min(max + 1)),
            _ => self.below(max + 1),
        }
    }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)
    })
}

/// One fuzz input: what it is and how to write it as a regression file.
trait FuzzInput {
    /// Path under the target's regression directory, and the bytes of the file.
    fn regression_file(&self, stem: &str) -> (String, Vec<u8>);
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

fn failures_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures")
}

/// Runs `check` on inputs from `gen` until the budget is spent; panics listing failures.
fn run_target<I: FuzzInput>(
    target: &str,
    gen: impl Fn(&mut Rng) -> I,
    check: impl Fn(&I) -> Result<(), String>,
) {
    let seed = base_seed();
    let started = Instant::now();
    let deadline = started + budget();
    let mut failures = Vec::new();
    let mut n: u64 = 0;
    while n < MIN_INPUTS || Instant::now() < deadline {
        let mut rng = Rng::new(seed ^ fnv(target) ^ n.wrapping_mul(0xA076_1D64_78BD_642F));
        let input = gen(&mut rng);
        let verdict = match catch_unwind(AssertUnwindSafe(|| check(&input))) {
            Ok(Ok(())) => None,
            Ok(Err(why)) => Some(why),
            Err(p) => Some(format!("PANIC: {}", panic_message(p.as_ref()))),
        };
        if let Some(mut why) = verdict {
            if why.len() > 2000 {
                let cut = (0..=2000)
                    .rev()
                    .find(|i| why.is_char_boundary(*i))
                    .unwrap_or(0);
                why.truncate(cut);
                why.push_str("...");
            }
            let (name, bytes) = input.regression_file(&format!("seed{seed:x}-n{n}"));
            let path = failures_dir().join(target).join(&name);
            if let Some(dir) = path.parent() {
                let _ = fs::create_dir_all(dir);
            }
            let _ = fs::write(&path, &bytes);
            let preview: String = String::from_utf8_lossy(&bytes).chars().take(600).collect();
            failures.push(format!(
                "{target} input #{n} (FUZZ_SEED={seed:#x}): {why}\n  input saved to {}\n  input: {preview:?}",
                path.display()
            ));
            if failures.len() >= MAX_FAILURES {
                break;
            }
        }
        n += 1;
    }
    eprintln!(
        "fuzz {target}: {n} inputs in {:.1}s, {} failing",
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failing inputs:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

// =============================================================================================
// Seeds

fn fixtures_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
}

fn regressions_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("regressions")
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// A non-streamed answer seed.
struct ResponseSeed {
    kind: ProviderKind,
    status: u16,
    body: Vec<u8>,
    request: Option<Vec<u8>>,
}

/// A streamed answer seed.
struct StreamSeed {
    kind: ProviderKind,
    request: Vec<u8>,
    upstream: Vec<u8>,
}

struct Corpus {
    requests: Vec<Vec<u8>>,
    responses: Vec<ResponseSeed>,
    streams: Vec<StreamSeed>,
    configs: Vec<Vec<u8>>,
    /// Every JSON document of the fixtures, for grafting subtrees.
    values: Vec<Value>,
}

fn provider_of_dir(dir: &Path) -> Option<ProviderKind> {
    let name = dir.file_name()?.to_str()?;
    ProviderKind::ALL.iter().copied().find(|k| k.name() == name)
}

fn read_status(path: &Path) -> Option<u16> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

static CORPUS: LazyLock<Corpus> = LazyLock::new(|| {
    let mut c = Corpus {
        requests: vec![MINIMAL_REQUEST.to_vec(), STREAM_REQUEST.to_vec()],
        responses: Vec::new(),
        streams: Vec::new(),
        configs: Vec::new(),
        values: Vec::new(),
    };
    let root = fixtures_root();
    let mut providers: Vec<PathBuf> = fs::read_dir(&root)
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    providers.sort();
    for pdir in providers {
        let Some(kind) = provider_of_dir(&pdir) else {
            continue;
        };
        let mut cases: Vec<PathBuf> = fs::read_dir(&pdir)
            .map(|r| {
                r.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default();
        cases.sort();
        for case in cases {
            let request = fs::read(case.join("openai_request.json")).ok();
            if let Some(r) = &request {
                c.requests.push(r.clone());
            }
            for f in files_under(&case) {
                let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
                let Ok(bytes) = fs::read(&f) else { continue };
                if name.ends_with(".json") {
                    if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
                        c.values.push(v);
                    }
                }
                let bytes = if name == "upstream.frames.json" {
                    common::encode_frames(&bytes)
                } else {
                    bytes
                };
                if (name.ends_with(".sse") || name == "upstream.frames.json")
                    && name.starts_with("upstream")
                {
                    c.streams.push(StreamSeed {
                        kind,
                        request: request.clone().unwrap_or_else(|| STREAM_REQUEST.to_vec()),
                        upstream: bytes,
                    });
                } else if name.starts_with("upstream_response") {
                    c.responses.push(ResponseSeed {
                        kind,
                        status: read_status(&case.join("upstream_status")).unwrap_or(200),
                        body: bytes,
                        request: request.clone(),
                    });
                }
            }
        }
    }
    // Configs: the example config, and richer ones with keys, teams and routing settings.
    let yaml_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("envoy/gateway.yaml");
    if let Ok(text) = fs::read_to_string(yaml_path) {
        if let Ok(v) = serde_norway::from_str::<Value>(&text) {
            c.configs.push(serde_json::to_vec(&v).unwrap_or_default());
        }
    }
    for v in [rich_config(), keyed_config()] {
        c.configs.push(serde_json::to_vec(&v).unwrap_or_default());
        c.values.push(v);
    }
    c
});

const MINIMAL_REQUEST: &[u8] = br#"{"model":"alias","messages":[{"role":"user","content":"Hi"}]}"#;
const STREAM_REQUEST: &[u8] = br#"{"model":"alias","messages":[{"role":"user","content":"Hi"}],"stream":true,"stream_options":{"include_usage":true}}"#;

fn rich_config() -> Value {
    json!({
        "model_list": [
            {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o", "api_key": "os.environ/OPENAI_API_KEY", "weight": 3, "timeout": 30}},
            {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": "http://127.0.0.1:8000/v1", "order": 2}},
            {"model_name": "claude", "litellm_params": {"model": "anthropic/claude-sonnet-4-5", "api_key": "os.environ/ANTHROPIC_API_KEY", "anthropic_version": "2023-06-01"},
             "model_info": {"id": "claude-main", "max_output_tokens": 8192, "max_input_tokens": 200000}},
            {"model_name": "big", "litellm_params": {"model": "openai/custom", "api_base": "https://[::1]:8443/v1", "input_cost_per_token": 0.000003, "output_cost_per_token": 0.000015}},
        ],
        "router_settings": {
            "fallbacks": [{"gpt": ["claude"]}],
            "context_window_fallbacks": [{"claude": ["big"]}],
            "allowed_fails": 2, "cooldown_time": 10, "per_try_timeout": 20, "per_try_idle_timeout": 5
        },
        "general_settings": {"master_key": "os.environ/LLM_GATEWAY_MASTER_KEY", "listen_port": 4000, "admin_port": 9901,
                             "request_timeout": 300, "max_request_body_bytes": 1048576}
    })
}

fn keyed_config() -> Value {
    let sha = |s: &str| auth::digest_hex(&auth::digest(s));
    json!({
        "model_list": [
            {"model_name": "alias", "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": "http://127.0.0.1:8000/v1"}},
            {"model_name": "claude", "litellm_params": {"model": "anthropic/claude-sonnet-4-5", "api_key": "os.environ/ANTHROPIC_API_KEY"}},
        ],
        "general_settings": {"master_key": "sk-master-literal"},
        "virtual_keys": [
            {"name": "k1", "key_sha256": sha("sk-k1"), "team": "t1", "models": ["ali*", "claude"], "rpm_limit": 5, "tpm_limit": 100000,
             "max_parallel_requests": 2, "max_budget": 1.5, "budget_duration": "daily", "expires": "2099-12-31T23:59:59Z"},
            {"name": "k2", "key_sha256": sha("sk-k2"), "max_budget": 0.000001, "budget_duration": "monthly"},
            {"name": "k3", "key_sha256": sha("sk-k3"), "team": "t1", "expires": "2020-01-01"},
        ],
        "teams": [{"name": "t1", "rpm_limit": 7, "max_parallel_requests": 3, "max_budget": 2, "budget_duration": "weekly"}]
    })
}

// =============================================================================================
// Mutations

#[rustfmt::skip]
const DICT_BYTES: &[&[u8]] = &[
    b"\"", b"\\", b"{", b"}", b"[", b"]", b",", b":", b"null", b"true", b"-1", b"1e999",
    b"18446744073709551616", b"-9223372036854775809", b"1E-400", b"\"\\ud800\"", b"\xff",
    b"\xc3", b"\xed\xa0\x80", b"\xef\xbb\xbf", b"\0", b"\n", b"\r", b"\r\n", b"\n\n", b"data: ",
    b"data:", b"event: ", b": ping\n\n", b"data: [DONE]\n\n", b"id: \0\n", b"retry: 1\n",
    b"event: error\n", b"\"error\":", b"\"choices\":[]", b"\"usage\":{}",
];

#[rustfmt::skip]
const DICT_KEYS: &[&str] = &[
    "model", "messages", "role", "content", "name", "tool_calls", "tool_call_id", "function",
    "arguments", "tools", "tool_choice", "stream", "stream_options", "include_usage",
    "max_tokens", "max_completion_tokens", "n", "temperature", "top_p", "stop",
    "response_format", "json_schema", "schema", "reasoning_effort", "thinking_blocks",
    "reasoning_content", "type", "index", "delta", "choices", "usage", "error", "message", "id",
    "input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens",
    "cache_creation", "ephemeral_1h_input_tokens", "ephemeral_5m_input_tokens",
    "prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details",
    "completion_tokens_details", "cached_tokens", "reasoning_tokens", "finish_reason",
    "content_block", "text", "partial_json", "thinking", "signature", "data", "stop_reason",
    "stop_sequence", "candidates", "usageMetadata", "parts", "functionCall", "finishReason",
    "promptTokenCount", "candidatesTokenCount", "thoughtsTokenCount", "image_url", "url",
    "parallel_tool_calls", "user", "seed", "logit_bias", "metadata", "code", "param", "refusal",
    "file", "input_audio", "cache_control", "system", "input", "status", "model_list",
    "litellm_params", "model_info", "general_settings", "router_settings", "fallbacks",
    "api_key", "api_base", "virtual_keys", "teams", "key_sha256", "max_budget",
    "budget_duration", "expires", "rpm_limit", "tpm_limit", "max_parallel_requests", "",
];

#[rustfmt::skip]
const DICT_STRINGS: &[&str] = &[
    "system", "developer", "user", "assistant", "tool", "function", "text", "image_url",
    "input_audio", "file", "refusal", "message_start", "content_block_start",
    "content_block_delta", "content_block_stop", "message_delta", "message_stop", "ping",
    "error", "tool_use", "thinking", "redacted_thinking", "server_tool_use",
    "web_search_tool_result", "text_delta", "input_json_delta", "thinking_delta",
    "signature_delta", "citations_delta", "end_turn", "max_tokens", "stop_sequence", "refusal",
    "pause_turn", "stop", "length", "tool_calls", "content_filter", "auto", "none", "required",
    "json_object", "json_schema", "low", "medium", "high", "minimal",
    "data:image/png;base64,AAAA", "data:;base64,", "data:image/png;base64", "https://x/y.png",
    "STOP", "MAX_TOKENS", "SAFETY", "[DONE]", "overloaded_error", "rate_limit_error",
    "authentication_error", "invalid_request_error", "api_error", "os.environ/", "os.environ/X",
    "openai/gpt-4o", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash",
    "http://127.0.0.1:1/v1", "https://", "daily", "weekly", "monthly", "total", "*", "",
    "\u{0}", "\u{FEFF}", "🎉", "é", "\n\n", "\r", "data: x\n\n",
];

/// The provider key each target is configured with; the marker is what a leak check looks
/// for (a redaction that keeps part of the key is still a leak).
const KEY_MARKER: &str = "PLANTEDkeyQ9x7";

fn planted_key(kind: ProviderKind) -> &'static str {
    match kind.name() {
        "anthropic" => "sk-ant-api03-PLANTEDkeyQ9x7_ab-CDEF0123456789wxyz",
        "gemini" => "AIzaSyPLANTEDkeyQ9x7_abCDEF0123456789wxyz",
        _ => "sk-proj-PLANTEDkeyQ9x7_abCDEF0123456789wxyz",
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    let n = needle.as_bytes();
    !n.is_empty() && hay.windows(n.len()).any(|w| w == n)
}

fn interesting_value(rng: &mut Rng) -> Value {
    match rng.below(22) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(false),
        3 => json!(0),
        4 => json!(-1),
        5 => json!(u64::MAX),
        6 => json!(i64::MIN),
        7 => json!(1.5),
        8 => json!(1e300),
        9 => json!(-0.0),
        10 => json!(""),
        11 => json!(rng.pick(DICT_STRINGS)),
        12 => json!([]),
        13 => json!({}),
        14 => json!([null]),
        15 => json!({"": null}),
        16 => Value::String(long_string(rng)),
        17 => {
            let mut v = json!("deep");
            for _ in 0..rng.below(160) {
                v = if rng.chance(1, 2) {
                    json!([v])
                } else {
                    json!({"a": v})
                };
            }
            v
        }
        18 => json!(4_294_967_296u64),
        19 => json!(65536),
        20 => json!(u32::MAX),
        _ => json!(rng.next()),
    }
}

fn long_string(rng: &mut Rng) -> String {
    let unit = *rng.pick(&["a", "é", "🎉", "\\", "\"", "\n", " ", "x\u{0}"]);
    let max = if rng.chance(1, 8) { 100_000 } else { 2_000 };
    unit.repeat(1 + rng.below(max))
}

/// Where a random walk from the root stops: member or element indices.
fn random_path(rng: &mut Rng, mut v: &Value) -> Vec<usize> {
    let mut path = Vec::new();
    loop {
        let go_deeper = rng.chance(3, 4);
        let next = match v {
            Value::Object(m) if go_deeper && !m.is_empty() => {
                let i = rng.below(m.len());
                m.values().nth(i).map(|n| (i, n))
            }
            Value::Array(a) if go_deeper && !a.is_empty() => {
                let i = rng.below(a.len());
                a.get(i).map(|n| (i, n))
            }
            _ => None,
        };
        match next {
            Some((i, n)) => {
                path.push(i);
                v = n;
            }
            None => return path,
        }
    }
}

fn node_at<'a>(v: &'a mut Value, path: &[usize]) -> &'a mut Value {
    let Some((&i, rest)) = path.split_first() else {
        return v;
    };
    let is_container = matches!(v, Value::Object(_) | Value::Array(_));
    if !is_container {
        return v;
    }
    match v {
        Value::Object(m) => match m.values_mut().nth(i) {
            Some(n) => node_at(n, rest),
            None => unreachable!("path from random_path"),
        },
        Value::Array(a) => node_at(&mut a[i], rest),
        _ => unreachable!(),
    }
}

/// A random node of `root`.
fn random_node<'a>(rng: &mut Rng, root: &'a mut Value) -> &'a mut Value {
    let path = random_path(rng, root);
    node_at(root, &path)
}

fn mutate_value(rng: &mut Rng, root: &mut Value, key: &str) {
    let graft = {
        let values = &CORPUS.values;
        (!values.is_empty()).then(|| {
            let mut donor = rng.pick(values).clone();
            random_node(rng, &mut donor).clone()
        })
    };
    let node = random_node(rng, root);
    match rng.below(12) {
        0 | 1 => *node = interesting_value(rng),
        2 => match node {
            Value::Object(m) if !m.is_empty() => {
                let k = m
                    .keys()
                    .nth(rng.below(m.len()))
                    .cloned()
                    .unwrap_or_default();
                m.remove(&k);
            }
            Value::Array(a) if !a.is_empty() => {
                let i = rng.below(a.len());
                a.remove(i);
            }
            other => *other = Value::Null,
        },
        3 | 4 => {
            if let Value::Object(m) = node {
                m.insert(rng.pick(DICT_KEYS).to_string(), interesting_value(rng));
            } else if let Value::Array(a) = node {
                let i = rng.below(a.len() + 1);
                a.insert(i, interesting_value(rng));
            } else {
                *node = interesting_value(rng);
            }
        }
        5 => {
            if let Some(g) = graft {
                *node = g;
            }
        }
        6 => {
            if let Value::Array(a) = node {
                if let Some(first) = a.first().cloned() {
                    for _ in 0..rng.len(2_000) {
                        a.push(first.clone());
                    }
                }
            }
        }
        7 => *node = json!(rng.pick(DICT_STRINGS)),
        8 => {
            // The provider (or a client) quoting the key.
            *node = json!(format!("Incorrect API key provided: {key}. See the docs."));
        }
        9 => {
            if let Value::Number(n) = node {
                *node = json!(n.to_string());
            } else if let Value::String(s) = node {
                if let Ok(n) = s.parse::<f64>() {
                    *node = json!(n);
                } else {
                    *node = json!(s.len());
                }
            }
        }
        10 => {
            let mut v = node.take();
            for _ in 0..1 + rng.below(140) {
                v = json!([v]);
            }
            *node = v;
        }
        _ => {
            if let Value::String(s) = node {
                let cut = rng.below(s.len() + 1);
                let cut = (0..=cut)
                    .rev()
                    .find(|i| s.is_char_boundary(*i))
                    .unwrap_or(0);
                s.truncate(cut);
            } else {
                *node = Value::String(long_string(rng));
            }
        }
    }
}

/// Serializes with quirks a strict serializer never produces: duplicate keys, odd number
/// spellings, escapes of lone surrogates, whitespace and newlines between tokens.
fn write_json(rng: &mut Rng, v: &Value, out: &mut Vec<u8>, quirks: bool) {
    let quirk = |rng: &mut Rng| quirks && rng.chance(1, 40);
    match v {
        Value::Object(m) => {
            out.push(b'{');
            let mut first = true;
            for (k, val) in m {
                if !first {
                    out.push(b',');
                }
                first = false;
                if quirk(rng) {
                    out.extend_from_slice(b"\n ");
                }
                out.extend_from_slice(&serde_json::to_vec(k).unwrap_or_default());
                out.push(b':');
                if quirk(rng) {
                    // The same key twice: which value wins must not matter for safety.
                    let dup = interesting_value(rng);
                    write_json(rng, &dup, out, false);
                    out.push(b',');
                    out.extend_from_slice(&serde_json::to_vec(k).unwrap_or_default());
                    out.push(b':');
                }
                write_json(rng, val, out, quirks);
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, val) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(rng, val, out, quirks);
            }
            out.push(b']');
        }
        Value::Number(_) if quirk(rng) => {
            let odd: &[&str] = &[
                "1e999",
                "-1e999",
                "18446744073709551616",
                "-9223372036854775809",
                "1E-400",
                "-0",
                "0.0000000000000000000000000000001",
                "123456789012345678901234567890",
                "1.0",
                "4294967296",
            ];
            out.extend_from_slice(rng.pick(odd).as_bytes());
        }
        Value::String(_) if quirk(rng) => {
            let odd: &[&str] = &[
                "\"\\ud800\"",
                "\"\\udfff\\ud800\"",
                "\"\\u0000\"",
                "\"a\\/b\"",
                "\"\\uD83D\\uDE00\"",
            ];
            out.extend_from_slice(rng.pick(odd).as_bytes());
        }
        other => out.extend_from_slice(&serde_json::to_vec(other).unwrap_or_default()),
    }
}

/// Byte-level mutations.
fn mutate_bytes(rng: &mut Rng, data: &mut Vec<u8>, donors: &[&[u8]]) {
    for _ in 0..1 + rng.below(4) {
        let len = data.len();
        match rng.below(11) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = rng.next() as u8;
            }
            2 => {
                let i = rng.below(len + 1);
                let tok = rng.pick(DICT_BYTES);
                data.splice(i..i, tok.iter().copied());
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = rng.len(len - i);
                data.drain(i..i + n);
            }
            4 => data.truncate(rng.below(len + 1)),
            5 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.len(len - i - 1);
                let piece: Vec<u8> = data[i..i + n].to_vec();
                let times = 1 + rng.len(64);
                let at = rng.below(data.len() + 1);
                let rep: Vec<u8> = piece
                    .iter()
                    .copied()
                    .cycle()
                    .take(piece.len() * times)
                    .collect();
                data.splice(at..at, rep);
            }
            6 if !donors.is_empty() => {
                let donor = rng.pick(donors);
                let cut_self = rng.below(len + 1);
                let cut_donor = rng.below(donor.len() + 1);
                data.truncate(cut_self);
                data.extend_from_slice(&donor[cut_donor..]);
            }
            7 => {
                let i = rng.below(len + 1);
                let bad: &[&[u8]] = &[
                    b"\xff",
                    b"\xc3",
                    b"\xe2\x82",
                    b"\xed\xa0\x80",
                    b"\xf4\x90\x80\x80",
                    b"\xc0\xaf",
                ];
                let tok = rng.pick(bad);
                data.splice(i..i, tok.iter().copied());
            }
            8 => {
                // A digit run becomes a huge number.
                if let Some(i) = (0..len)
                    .map(|_| rng.below(len))
                    .find(|&i| data[i].is_ascii_digit())
                {
                    let end = (i..len).find(|&j| !data[j].is_ascii_digit()).unwrap_or(len);
                    let big: &[&[u8]] = &[
                        b"18446744073709551616",
                        b"99999999999999999999999",
                        b"4294967296",
                        b"0",
                    ];
                    let tok = rng.pick(big);
                    data.splice(i..end, tok.iter().copied());
                }
            }
            9 if len > 0 => {
                let i = rng.below(len);
                let j = rng.below(len);
                data.swap(i, j);
            }
            _ => {
                let i = rng.below(len + 1);
                let n = rng.len(64);
                let noise: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                data.splice(i..i, noise);
            }
        }
    }
}

/// A JSON-aware mutation of `seed` when it is JSON (falls back to bytes).
fn mutate_json_doc(rng: &mut Rng, seed: &[u8], key: &str, donors: &[&[u8]]) -> Vec<u8> {
    let mut out = seed.to_vec();
    match serde_json::from_slice::<Value>(seed) {
        Ok(mut v) if rng.chance(4, 5) => {
            for _ in 0..1 + rng.below(3) {
                mutate_value(rng, &mut v, key);
            }
            out.clear();
            if rng.chance(1, 10) {
                out = serde_json::to_vec_pretty(&v).unwrap_or_default();
            } else {
                let quirks = rng.chance(1, 3);
                write_json(rng, &v, &mut out, quirks);
            }
            if rng.chance(1, 6) {
                mutate_bytes(rng, &mut out, donors);
            }
        }
        _ => mutate_bytes(rng, &mut out, donors),
    }
    out
}

/// Frame-wise mutation of an AWS event stream (Bedrock): frames dropped, repeated or
/// swapped, payloads mutated as JSON, and re-encoded with valid checksums so that the
/// translation behind the decoder is reached; sometimes raw byte damage on top (bad CRCs,
/// impossible lengths).
fn mutate_frames(rng: &mut Rng, seed: &[u8], donors: &[&[u8]]) -> Vec<u8> {
    use llm_gateway::provider::bedrock::eventstream::{encode, EventStreamDecoder};
    let mut frames: Vec<(String, String, String, Vec<u8>)> = Vec::new();
    let mut d = EventStreamDecoder::default();
    d.feed(seed, |m| {
        frames.push((
            m.message_type.to_string(),
            m.event_type.to_string(),
            m.exception_type.to_string(),
            m.payload.to_vec(),
        ));
        std::ops::ControlFlow::Continue(())
    });
    for _ in 0..1 + rng.below(3) {
        let n = frames.len();
        match rng.below(6) {
            0 if n > 0 => {
                frames.remove(rng.below(n));
            }
            1 if n > 0 => {
                let i = rng.below(n);
                let f = frames[i].clone();
                frames.insert(rng.below(n + 1), f);
            }
            2 if n > 1 => {
                let i = rng.below(n - 1);
                frames.swap(i, i + 1);
            }
            3 if n > 0 => {
                let i = rng.below(n);
                frames[i].0 = rng.pick(&["event", "exception", "error", ""]).to_string();
            }
            _ if n > 0 => {
                let i = rng.below(n);
                frames[i].3 = mutate_json_doc(rng, &frames[i].3, "", donors);
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (message_type, event_type, exception_type, payload) in &frames {
        out.extend(encode(
            &[
                (":message-type", message_type),
                (":event-type", event_type),
                (":exception-type", exception_type),
            ],
            payload,
        ));
    }
    if rng.chance(1, 6) {
        mutate_bytes(rng, &mut out, donors);
    }
    out
}

/// Event-wise mutation of an SSE stream.
fn mutate_sse(rng: &mut Rng, seed: &[u8], kind: ProviderKind, donors: &[&[u8]]) -> Vec<u8> {
    let key = planted_key(kind);
    let text = String::from_utf8_lossy(seed)
        .replace("\r\n", "\n")
        .replace('\r', "\n");
    let mut events: Vec<String> = text
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(str::to_string)
        .collect();
    for _ in 0..1 + rng.below(3) {
        let n = events.len();
        match rng.below(12) {
            0 if n > 0 => {
                events.remove(rng.below(n));
            }
            1 if n > 0 => {
                let i = rng.below(n);
                let e = events[i].clone();
                events.insert(rng.below(n + 1), e);
            }
            2 if n > 1 => {
                let i = rng.below(n - 1);
                events.swap(i, i + 1);
            }
            3 => {
                // An event from another stream, maybe another provider's.
                let donor = rng.pick(&CORPUS.streams);
                let dtext = String::from_utf8_lossy(&donor.upstream).replace("\r\n", "\n");
                let devents: Vec<&str> = dtext
                    .split("\n\n")
                    .filter(|e| !e.trim().is_empty())
                    .collect();
                if !devents.is_empty() {
                    let e = rng.pick(&devents).to_string();
                    events.insert(rng.below(n + 1), e);
                }
            }
            4 => events.truncate(rng.below(n + 1)),
            5 | 6 if n > 0 => {
                // Mutate one payload as JSON; sometimes spread it over several data lines.
                let i = rng.below(n);
                let (head, payload): (Vec<&str>, Vec<&str>) =
                    events[i].split('\n').partition(|l| !l.starts_with("data:"));
                let data: String = payload
                    .iter()
                    .map(|l| {
                        let v = &l[5..];
                        v.strip_prefix(' ').unwrap_or(v)
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                let mutated = match serde_json::from_str::<Value>(&data) {
                    Ok(mut v) => {
                        mutate_value(rng, &mut v, key);
                        if rng.chance(1, 4) {
                            serde_json::to_string_pretty(&v).unwrap_or_default()
                        } else {
                            let mut b = Vec::new();
                            let quirks = rng.chance(1, 4);
                            write_json(rng, &v, &mut b, quirks);
                            String::from_utf8_lossy(&b).into_owned()
                        }
                    }
                    Err(_) => data,
                };
                let mut e: Vec<String> = head.iter().map(|s| s.to_string()).collect();
                for line in mutated.split('\n') {
                    e.push(format!("data: {line}"));
                }
                events[i] = e.join("\n");
            }
            7 => {
                // The provider's error, quoting the key.
                let msg = format!("Incorrect API key provided: {key}");
                let e = match rng.below(4) {
                    0 => format!(
                        "event: error\ndata: {}",
                        json!({"type": "error", "error": {"type": "authentication_error", "message": msg}})
                    ),
                    1 => format!(
                        "data: {}",
                        json!({"error": {"message": msg, "type": "invalid_request_error", "code": "invalid_api_key"}})
                    ),
                    2 => format!(
                        "data: {}",
                        json!({"error": {"code": 401, "message": msg, "status": "UNAUTHENTICATED"}})
                    ),
                    _ => format!(
                        "event: error\ndata: {}",
                        json!({"type": "error", "error": {"type": "overloaded_error", "message": msg}})
                    ),
                };
                events.insert(rng.below(n + 1), e);
            }
            8 => {
                let e = *rng.pick(&[
                    "event: mystery_event\ndata: {\"type\":\"mystery_event\",\"x\":1}",
                    "event: ping\ndata: {\"type\": \"ping\"}",
                    ": keep-alive",
                    "retry: 1000",
                    "id: 7\ndata: {}",
                    "data: [DONE]",
                    "data:",
                    "event: message_stop\ndata: {\"type\":\"message_stop\"}",
                    "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}",
                    "data: not json",
                    "data: [1,2]",
                    "data: \"str\"",
                ]);
                events.insert(rng.below(n + 1), e.to_string());
            }
            9 if n > 0 => {
                let i = rng.below(n);
                let rest: Vec<String> = events[i]
                    .split('\n')
                    .filter(|l| !l.starts_with("event:"))
                    .map(str::to_string)
                    .collect();
                events[i] = format!(
                    "event: {}\n{}",
                    rng.pick(DICT_STRINGS).replace(['\n', '\r'], ""),
                    rest.join("\n")
                );
            }
            _ => {}
        }
    }
    let nl = match rng.below(10) {
        0 => "\r\n",
        1 => "\r",
        _ => "\n",
    };
    let mut out = String::new();
    if rng.chance(1, 20) {
        out.push('\u{FEFF}');
    }
    for e in &events {
        out.push_str(&e.replace('\n', nl));
        out.push_str(nl);
        out.push_str(nl);
    }
    let mut bytes = out.into_bytes();
    if rng.chance(1, 5) {
        mutate_bytes(rng, &mut bytes, donors);
    }
    bytes
}

/// Random cut points for a body of `len` bytes (sorted, within bounds).
fn random_cuts(rng: &mut Rng, len: usize) -> Vec<usize> {
    if len < 4096 && rng.chance(1, 8) {
        return (1..len).collect();
    }
    let mut cuts: Vec<usize> = (0..rng.below(10)).map(|_| rng.below(len + 1)).collect();
    cuts.sort_unstable();
    cuts
}

fn pieces<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut from = 0;
    for &c in cuts {
        let c = c.min(bytes.len()).max(from);
        out.push(&bytes[from..c]);
        from = c;
    }
    out.push(&bytes[from..]);
    out
}

fn donors_of(items: &[Vec<u8>]) -> Vec<&[u8]> {
    items.iter().map(Vec::as_slice).collect()
}

// =============================================================================================
// Oracles

fn with_target<R>(kind: ProviderKind, f: impl FnOnce(&Target<'_>) -> R) -> R {
    let options = ProviderOptions::default();
    let target = Target {
        upstream_model: "fuzz-model-1",
        base_path: if kind.spec().wire == WireApi::OpenAiChat {
            "/v1"
        } else {
            ""
        },
        api_key: Some(planted_key(kind)),
        now_unix_secs: 1_700_000_000,
        options: &options,
    };
    f(&target)
}

/// An OpenAI error envelope: `{"error": {"message": str, "type": str, ...}}`.
fn check_error_body(v: &Value) -> Result<(), String> {
    let e = v
        .get("error")
        .and_then(Value::as_object)
        .ok_or("`error` is not an object")?;
    if !e.get("message").is_some_and(Value::is_string) {
        return Err("error.message is not a string".into());
    }
    if !e.get("type").is_some_and(Value::is_string) {
        return Err("error.type is not a string".into());
    }
    Ok(())
}

fn check_status(status: u16) -> Result<(), String> {
    if (100..600).contains(&status) {
        Ok(())
    } else {
        Err(format!("status {status} is not an HTTP status"))
    }
}

fn no_control(what: &str, s: &str) -> Result<(), String> {
    if s.bytes().any(|b| b < 0x20 || b == 0x7f) {
        Err(format!("{what} carries a control character: {s:?}"))
    } else {
        Ok(())
    }
}

/// A translated non-streamed answer.
/// `key` is the attempt's provider key: never in an error. Nothing of it (its marker) may
/// appear unless the input held it (a corrupted echo of the key is the provider's text).
fn check_response(t: &TranslatedResponse, key: &str, input_has_marker: bool) -> Result<(), String> {
    check_status(t.status)?;
    let v: Value = serde_json::from_slice(&t.body).map_err(|e| {
        format!(
            "answer body is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&t.body)
        )
    })?;
    if !v.is_object() {
        return Err("answer body is not a JSON object".into());
    }
    // A completion may carry odd extra members (an `error` next to `choices` included).
    let has_choices = v.get("choices").is_some_and(Value::is_array);
    let is_error = !has_choices && v.get("error").is_some_and(|e| !e.is_null());
    if !is_error && !has_choices {
        return Err("answer has neither `choices` nor `error`".into());
    }
    if is_error {
        check_error_body(&v)?;
    }
    if t.status >= 400 && !is_error {
        return Err(format!("status {} with a non-error body", t.status));
    }
    if is_error && t.status < 400 {
        return Err(format!("an error body with status {}", t.status));
    }
    if is_error && contains(&t.body, key) {
        return Err("the provider key appears in an error answer".into());
    }
    if !input_has_marker && contains(&t.body, KEY_MARKER) {
        return Err("the provider key appears in the answer".into());
    }
    if !is_error {
        let shown = v
            .get("usage")
            .filter(|u| !u.is_null())
            .and_then(|u| serde_json::from_value::<UsageBody>(u.clone()).ok())
            .map(|b| Usage::from_body(&b));
        if let (Some(accounted), Some(shown)) = (t.usage, shown) {
            // A reported cost (OpenRouter's) is accounted, not shown as a token count.
            let tokens = Usage {
                reported_cost_micro_usd: None,
                ..accounted
            };
            if tokens != shown {
                return Err(format!(
                    "accounted usage {accounted:?} but the body shows {shown:?}"
                ));
            }
        }
    }
    Ok(())
}

/// Replaces `\uD800`..`\uDFFF` escapes by `\uFFFD`.
fn neutralize_surrogates(data: &str) -> std::borrow::Cow<'_, str> {
    if !data.contains("\\u") {
        return data.into();
    }
    let b = data.as_bytes();
    let mut out = String::with_capacity(data.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() && b[i + 1] == b'\\' {
            out.push_str("\\\\");
            i += 2;
            continue;
        }
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'u') && i + 6 <= b.len() {
            let hex = data.get(i + 2..i + 6).unwrap_or("");
            if let Ok(cp) = u16::from_str_radix(hex, 16) {
                if (0xD800..=0xDFFF).contains(&cp) {
                    out.push_str("\\uFFFD");
                    i += 6;
                    continue;
                }
            }
        }
        let ch = data[i..].chars().next().unwrap_or('\0');
        out.push(ch);
        i += ch.len_utf8();
    }
    out.into()
}

/// A translated stream (so far): complete `data:` events, JSON objects then one `[DONE]`.
fn check_stream(
    out: &[u8],
    ended: bool,
    translating: bool,
    key: &str,
    input_has_marker: bool,
) -> Result<(), String> {
    let text = std::str::from_utf8(out).map_err(|e| format!("stream output is not UTF-8: {e}"))?;
    if !out.is_empty() && !text.ends_with("\n\n") {
        return Err("stream output ends inside an event".into());
    }
    for line in text.split('\n') {
        if !(line.is_empty() || line.starts_with("data: ")) {
            return Err(format!("stream output line is not `data: `: {line:?}"));
        }
    }
    let mut d = SseDecoder::default();
    d.push(out);
    let mut events = Vec::new();
    while let Some(e) = d.next_event() {
        events.push(e);
    }
    let mut done = 0;
    let mut finishes: std::collections::BTreeMap<u64, usize> = std::collections::BTreeMap::new();
    let mut after_error = false;
    for (i, e) in events.iter().enumerate() {
        if done > 0 {
            return Err(format!("event after [DONE]: {:?}", e.data));
        }
        if e.data == "[DONE]" {
            done += 1;
            continue;
        }
        if after_error {
            return Err("an event follows an error event before [DONE]".into());
        }
        // A lone surrogate escape (`\ud800`) is the provider's own text: JSON parsers of
        // the SDKs accept it (Python, JavaScript); serde_json does not, so it is neutralized.
        let v: Value = match serde_json::from_str(&neutralize_surrogates(&e.data)) {
            Ok(v) => v,
            // Valid, only deeper than this checker's parser goes (clients go deeper).
            Err(err) if err.to_string().contains("recursion limit") => continue,
            // `1e999` passed through from the provider: the SDKs read it as infinity.
            Err(err) if !translating && err.to_string().contains("number out of range") => continue,
            Err(err) => return Err(format!("event {i} is not JSON ({err}): {:?}", e.data)),
        };
        let Some(obj) = v.as_object() else {
            return Err(format!("event {i} is not a JSON object: {:?}", e.data));
        };
        let is_error = obj.get("error").is_some_and(|e| !e.is_null());
        if is_error {
            after_error = true;
            if translating {
                check_error_body(&v)?;
            }
            if contains(e.data.as_bytes(), key) {
                return Err("the provider key appears in an error event".into());
            }
        } else if translating {
            let choices = obj
                .get("choices")
                .and_then(Value::as_array)
                .ok_or_else(|| format!("chunk without `choices`: {:?}", e.data))?;
            for c in choices {
                if c.get("finish_reason").is_some_and(|f| !f.is_null()) {
                    let index = c.get("index").and_then(Value::as_u64).unwrap_or(0);
                    *finishes.entry(index).or_insert(0) += 1;
                }
            }
        }
    }
    if let Some((index, n)) = finishes.iter().find(|(_, n)| **n > 1) {
        return Err(format!("{n} finish_reason chunks for choice {index}"));
    }
    if ended && done != 1 {
        return Err(format!("ended stream has {done} [DONE] events"));
    }
    if !input_has_marker && contains(out, KEY_MARKER) {
        return Err("the provider key appears in the stream".into());
    }
    Ok(())
}

// =============================================================================================
// Targets

// --- config --------------------------------------------------------------------------------

struct BytesInput(Vec<u8>, &'static str);

impl FuzzInput for BytesInput {
    fn regression_file(&self, stem: &str) -> (String, Vec<u8>) {
        (format!("{stem}.{}", self.1), self.0.clone())
    }
}

fn gen_config(rng: &mut Rng) -> BytesInput {
    let c = &CORPUS;
    let donors = donors_of(&c.configs);
    let seed = rng.pick(&c.configs);
    BytesInput(
        mutate_json_doc(rng, seed, "sk-ant-api03-PLANTEDkeyQ9x7_ab", &donors),
        "json",
    )
}

fn check_config(input: &BytesInput) -> Result<(), String> {
    let bytes = &input.0;
    let parsed = GatewayConfig::from_json(bytes);
    let mut wrapped = br#"{"role":"upstream","config":"#.to_vec();
    wrapped.extend_from_slice(bytes);
    wrapped.push(b'}');
    let plugin = PluginConfig::from_json(&wrapped);
    if parsed.is_ok() != plugin.is_ok() {
        return Err(format!(
            "the gateway config and its plugin form disagree: {:?} vs {:?}",
            parsed.as_ref().err(),
            plugin.as_ref().err()
        ));
    }
    let config = match parsed {
        Ok(c) => c,
        Err(e) => {
            if e.message.is_empty() {
                return Err("a config error without a message".into());
            }
            let _ = e.to_string();
            return Ok(());
        }
    };
    for d in &config.deployments {
        if let Some(Secret::Literal(_)) = d.api_key {
            return Err(format!(
                "deployment `{}` holds a provider key written in the file",
                d.id
            ));
        }
    }
    let _ = config.env_names();
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let options = RenderOptions {
        wasm_path: "/x/llm_gateway.wasm".to_string(),
    };
    let rendered = render_bootstrap(&config, &doc, &options);
    serde_json::to_vec(&rendered).map_err(|e| e.to_string())?;
    let _ = render_dynamic(&config, &doc, &options, "/tmp/dyn");
    let body = routing::models_list_json(&config, 1, |_| true);
    serde_json::from_slice::<Value>(&body).map_err(|e| format!("models list: {e}"))?;
    for alias in &config.aliases {
        for estimate in [0, 1, 4096, 1 << 40, u64::MAX] {
            if let Err(e) = routing::choose_route(&config, alias, estimate) {
                check_status(e.status)?;
            }
        }
        for k in &config.keys.keys {
            let _ = keys::check_model(k, &alias.name);
        }
    }
    // Every key and team can be prepared, admitted and settled.
    let store = MemoryStore::new();
    prepare(&store, &config.keys);
    let request = parse_chat_request(MINIMAL_REQUEST).map_err(|e| e.to_string())?;
    for route in &config.routes {
        let facts = RequestFacts::for_route(&config, route, &request);
        let _ = facts.worst_case_micro_usd();
        for k in &config.keys.keys {
            match admit(&store, k, config.keys.team_of(k), &facts, 1_773_489_610) {
                Ok(a) => {
                    let _ = settle(&store, a, Settlement::Failed, 1_773_489_611);
                }
                Err(r) => check_status(r.error.status)?,
            }
        }
    }
    Ok(())
}

// --- client requests -----------------------------------------------------------------------

static ROUTING_CONFIG: LazyLock<GatewayConfig> = LazyLock::new(|| {
    let mut v = keyed_config();
    if let (Some(Value::Array(list)), Value::Array(extra)) =
        (v.get_mut("model_list"), rich_config()["model_list"].clone())
    {
        list.extend(extra);
    }
    GatewayConfig::from_value(v).unwrap_or_else(|e| panic!("fuzz config: {e}"))
});

fn gen_request(rng: &mut Rng) -> BytesInput {
    let c = &CORPUS;
    let donors = donors_of(&c.requests);
    let seed = rng.pick(&c.requests);
    let key = planted_key(*rng.pick(ProviderKind::ALL));
    BytesInput(mutate_json_doc(rng, seed, key, &donors), "json")
}

fn check_request(input: &BytesInput) -> Result<(), String> {
    let body = &input.0;
    let has_key = contains(body, KEY_MARKER);
    match parse_chat_request(body) {
        Ok(request) => {
            let estimate = estimate_prompt_tokens(&request);
            let config = &*ROUTING_CONFIG;
            if let Ok(alias) = routing::resolve_alias(config, &request.model) {
                match routing::choose_route(config, alias, estimate) {
                    Ok(route) => {
                        let facts = RequestFacts::for_route(config, route, &request);
                        let _ = facts.worst_case_micro_usd();
                        let store = MemoryStore::new();
                        for k in &config.keys.keys {
                            let _ = keys::check_model(k, &alias.name);
                            if let Ok(a) =
                                admit(&store, k, config.keys.team_of(k), &facts, 1_773_489_610)
                            {
                                settle(&store, a, Settlement::Failed, 1_773_489_611)
                                    .map_err(|e| format!("settle: {e}"))?;
                            }
                        }
                    }
                    Err(e) => check_status(e.status)?,
                }
            }
        }
        Err(e) => {
            if !(400..500).contains(&e.status) {
                return Err(format!("a refused request answers {}", e.status));
            }
            let v: Value = serde_json::from_slice(&e.to_json()).map_err(|e| e.to_string())?;
            check_error_body(&v)?;
        }
    }
    for &kind in ProviderKind::ALL {
        let mut t = translator_for(kind);
        let result = with_target(kind, |target| {
            t.request_from_body(InboundApi::Chat, body, target)
        });
        match result {
            Ok(up) => {
                no_control("upstream path", &up.path)?;
                if !up.path.starts_with('/') {
                    return Err(format!("{}: upstream path {:?}", kind.name(), up.path));
                }
                for (name, value) in &up.headers {
                    no_control(name, value)?;
                    if name.bytes().any(|b| b.is_ascii_uppercase() || b <= b' ') {
                        return Err(format!("header name {name:?}"));
                    }
                }
                serde_json::from_slice::<Value>(&up.body)
                    .map_err(|e| format!("{}: upstream body is not JSON: {e}", kind.name()))?;
                if !has_key && (contains(&up.body, KEY_MARKER) || up.path.contains(KEY_MARKER)) {
                    return Err(format!(
                        "{}: the provider key is in the upstream body or path",
                        kind.name()
                    ));
                }
                let _ = t.is_stream();
            }
            Err(e) => {
                check_status(e.status)?;
                if e.status < 400 {
                    return Err(format!("{}: refusal with status {}", kind.name(), e.status));
                }
                let json = e.to_json();
                check_error_body(&serde_json::from_slice(&json).map_err(|e| e.to_string())?)?;
                if !has_key && contains(&json, KEY_MARKER) {
                    return Err(format!("{}: the provider key is in a refusal", kind.name()));
                }
            }
        }
    }
    Ok(())
}

// --- non-streamed answers ------------------------------------------------------------------

struct ResponseInput {
    kind: ProviderKind,
    status: u16,
    request: Vec<u8>,
    body: Vec<u8>,
}

/// The client body on one line (the first line of a response or stream regression file).
fn one_line(request: &[u8]) -> Vec<u8> {
    serde_json::from_slice::<Value>(request)
        .ok()
        .and_then(|v| serde_json::to_vec(&v).ok())
        .unwrap_or_else(|| {
            request
                .iter()
                .map(|&b| if b == b'\n' { b' ' } else { b })
                .collect()
        })
}

impl FuzzInput for ResponseInput {
    fn regression_file(&self, stem: &str) -> (String, Vec<u8>) {
        // The request goes first, on its own line; the body follows.
        let mut bytes = one_line(&self.request);
        bytes.push(b'\n');
        bytes.extend_from_slice(&self.body);
        (
            format!("{}-{}-{stem}.txt", self.kind.name(), self.status),
            bytes,
        )
    }
}

#[rustfmt::skip]
const STATUSES: &[u16] = &[
    200, 200, 200, 201, 204, 206, 400, 401, 402, 403, 404, 408, 409, 413, 422, 429, 499, 500,
    501, 502, 503, 504, 529, 100, 302,
];

fn gen_response(rng: &mut Rng) -> ResponseInput {
    let c = &CORPUS;
    let seeds: Vec<&ResponseSeed> = c.responses.iter().collect();
    let donors: Vec<&[u8]> = seeds.iter().map(|s| s.body.as_slice()).collect();
    let seed = rng.pick(&seeds);
    let kind = if rng.chance(1, 6) {
        *rng.pick(ProviderKind::ALL)
    } else {
        seed.kind
    };
    let status = match rng.below(4) {
        0 => *rng.pick(STATUSES),
        1 => 100 + rng.below(500) as u16,
        _ => seed.status,
    };
    let request = match (&seed.request, rng.below(6)) {
        (_, 0) => STREAM_REQUEST.to_vec(),
        (Some(r), 1..=3) => r.clone(),
        _ => MINIMAL_REQUEST.to_vec(),
    };
    let body = if rng.chance(1, 12) {
        seed.body.clone()
    } else {
        mutate_json_doc(rng, &seed.body, planted_key(kind), &donors)
    };
    ResponseInput {
        kind,
        status,
        request,
        body,
    }
}

fn check_response_input(input: &ResponseInput) -> Result<(), String> {
    let mut t = translator_for(input.kind);
    if with_target(input.kind, |target| {
        t.request_from_body(InboundApi::Chat, &input.request, target)
    })
    .is_err()
    {
        return Ok(()); // the shell never gets here for a refused request
    }
    let client_status = t.response_status(input.status);
    check_status(client_status)?;
    let translated = t.response(input.status, &input.body);
    let has_marker = contains(&input.body, KEY_MARKER) || contains(&input.request, KEY_MARKER);
    check_response(&translated, planted_key(input.kind), has_marker)
        .map_err(|e| format!("{}: {e}", input.kind.name()))
}

// --- streams -------------------------------------------------------------------------------

struct StreamInput {
    kind: ProviderKind,
    request: Vec<u8>,
    upstream: Vec<u8>,
    cuts: Vec<usize>,
    /// The shell may see the end of stream with the last bytes or on an empty call after.
    separate_eos: bool,
}

impl FuzzInput for StreamInput {
    fn regression_file(&self, stem: &str) -> (String, Vec<u8>) {
        let mut bytes = one_line(&self.request);
        bytes.push(b'\n');
        bytes.extend_from_slice(&self.upstream);
        (format!("{}-{stem}.sse", self.kind.name()), bytes)
    }
}

fn gen_stream(rng: &mut Rng) -> StreamInput {
    let c = &CORPUS;
    let donors: Vec<&[u8]> = c.streams.iter().map(|s| s.upstream.as_slice()).collect();
    let seed = rng.pick(&c.streams);
    let kind = if rng.chance(1, 8) {
        *rng.pick(ProviderKind::ALL)
    } else {
        seed.kind
    };
    let mut request = seed.request.clone();
    if rng.chance(1, 4) {
        // Flip whether the client wants the usage chunk.
        if let Ok(mut v) = serde_json::from_slice::<Value>(&request) {
            let wants = v["stream_options"]["include_usage"] == true;
            v["stream_options"] = json!({"include_usage": !wants});
            request = serde_json::to_vec(&v).unwrap_or(request);
        }
    }
    let upstream = if rng.chance(1, 15) {
        seed.upstream.clone()
    } else if seed.kind == ProviderKind::Bedrock {
        mutate_frames(rng, &seed.upstream, &donors)
    } else {
        mutate_sse(rng, &seed.upstream, kind, &donors)
    };
    let cuts = random_cuts(rng, upstream.len());
    StreamInput {
        kind,
        request,
        upstream,
        cuts,
        separate_eos: rng.chance(1, 3),
    }
}

fn run_stream(input: &StreamInput, cuts: &[usize], separate_eos: bool) -> Result<Vec<u8>, String> {
    let mut t = translator_for(input.kind);
    with_target(input.kind, |target| {
        t.request_from_body(InboundApi::Chat, &input.request, target)
    })
    .map_err(|e| format!("request refused: {e}"))?;
    let has_key = contains(&input.upstream, KEY_MARKER);
    // The OpenAI-compatible family passes the provider's chunks through.
    let translating = !matches!(
        input.kind.spec().wire,
        WireApi::OpenAiChat | WireApi::AzureOpenAi
    );
    let key = planted_key(input.kind);
    let parts = pieces(&input.upstream, cuts);
    let mut out = Vec::new();
    let last = parts.len() - 1;
    let mut done_at: Option<usize> = None;
    for (i, p) in parts.iter().enumerate() {
        let eos = i == last && !separate_eos;
        t.stream(p, eos, &mut out);
        let _ = t.stream_usage();
        // Cheap checks after every piece; the whole output is checked at the end.
        if !out.is_empty() && !out.ends_with(b"\n\n") {
            return Err(format!("after piece {i} the output ends inside an event"));
        }
        match done_at {
            Some(len) if out.len() != len => {
                return Err(format!("output after [DONE] (piece {i})"));
            }
            None if out.ends_with(b"data: [DONE]\n\n") => done_at = Some(out.len()),
            _ => {}
        }
    }
    if separate_eos {
        t.stream(b"", true, &mut out);
    }
    check_stream(&out, true, translating, key, has_key)?;
    // What the shell adds to the usage chunk keeps the stream well-formed.
    let mut annotated = out.clone();
    annotate_usage_chunk(
        &mut annotated,
        &AnswerMeta {
            provider: input.kind.name(),
            upstream_model: "fuzz-model-1",
            deployment: "d1",
            attempts: 2,
            cost_micro_usd: Some(1234),
        },
    );
    check_stream(&annotated, true, translating, key, has_key)
        .map_err(|e| format!("annotated: {e}"))?;
    Ok(out)
}

fn check_stream_input(input: &StreamInput) -> Result<(), String> {
    let mut t = translator_for(input.kind);
    if with_target(input.kind, |target| {
        t.request_from_body(InboundApi::Chat, &input.request, target)
    })
    .is_err()
    {
        return Ok(());
    }
    if !t.is_stream() {
        return Err("a streamed request is not a stream".into());
    }
    // The verdict on the first event, from every prefix the shell may hold.
    let full = t.stream_preamble(&input.upstream, true);
    let has_key = contains(&input.upstream, KEY_MARKER);
    if let StreamPreamble::Fail(answer) = &full {
        check_response(answer, planted_key(input.kind), has_key)?;
        if answer.status < 400 {
            return Err(format!("a failed stream start answers {}", answer.status));
        }
    }
    let mut prefix_end = 0;
    // At most ~16 prefixes: a scan reads the whole prefix, and byte-wise cuts are many.
    let stride = input.cuts.len() / 16 + 1;
    for &c in input
        .cuts
        .iter()
        .step_by(stride)
        .chain([input.upstream.len()].iter())
    {
        let c = c.max(prefix_end).min(input.upstream.len());
        prefix_end = c;
        let eos = c == input.upstream.len();
        match t.stream_preamble(&input.upstream[..c], eos) {
            StreamPreamble::NeedMore => {}
            v if c < input.upstream.len()
                && v != full
                && !matches!(full, StreamPreamble::NeedMore) =>
            {
                return Err(format!(
                    "the stream's verdict changes with more bytes: {v:?} at {c} bytes, {full:?} at the end"
                ));
            }
            _ => {}
        }
    }
    let chunked = run_stream(input, &input.cuts, input.separate_eos)?;
    let whole = run_stream(input, &[], false)?;
    if chunked != whole {
        return Err(format!(
            "chunking changes the output:\n  whole:   {:?}\n  chunked: {:?}",
            String::from_utf8_lossy(&whole),
            String::from_utf8_lossy(&chunked)
        ));
    }
    Ok(())
}

// --- the SSE decoder -----------------------------------------------------------------------

struct SseInput {
    bytes: Vec<u8>,
    cuts: Vec<usize>,
    limit: usize,
}

impl FuzzInput for SseInput {
    fn regression_file(&self, stem: &str) -> (String, Vec<u8>) {
        (
            format!("limit{}-{stem}.sse", self.limit),
            self.bytes.clone(),
        )
    }
}

fn gen_sse(rng: &mut Rng) -> SseInput {
    let c = &CORPUS;
    let donors: Vec<&[u8]> = c.streams.iter().map(|s| s.upstream.as_slice()).collect();
    let seed = rng.pick(&c.streams);
    let mut bytes = mutate_sse(rng, &seed.upstream, seed.kind, &donors);
    if rng.chance(1, 2) {
        mutate_bytes(rng, &mut bytes, &donors);
    }
    let cuts = random_cuts(rng, bytes.len());
    let limit = if rng.chance(1, 4) {
        1 + rng.below(4096)
    } else {
        SseDecoder::DEFAULT_LIMIT
    };
    SseInput { bytes, cuts, limit }
}

fn decode(bytes: &[u8], cuts: &[usize], limit: usize) -> (Vec<SseEvent>, bool) {
    let mut d = SseDecoder::with_limit(limit);
    let mut events = Vec::new();
    for p in pieces(bytes, cuts) {
        d.feed(p, |e| {
            events.push(e.to_event());
            ControlFlow::Continue(())
        });
    }
    d.finish();
    (events, d.error().is_some())
}

fn check_sse(input: &SseInput) -> Result<(), String> {
    let (chunked, failed) = decode(&input.bytes, &input.cuts, input.limit);
    for e in &chunked {
        if e.data.contains('\r') {
            return Err(format!("data with CR: {:?}", e.data));
        }
        if let Some(name) = &e.event {
            if name.contains(['\n', '\r']) || name.is_empty() {
                return Err(format!("event name {name:?}"));
            }
        }
        if e.id
            .as_deref()
            .is_some_and(|id| id.contains(['\0', '\n', '\r']))
        {
            return Err(format!("id {:?}", e.id));
        }
        if e.data.len() > input.limit {
            return Err(format!(
                "event of {} bytes past the limit {}",
                e.data.len(),
                input.limit
            ));
        }
        // What write_event writes decodes to the same event.
        let mut wire = Vec::new();
        write_event(&mut wire, e.event.as_deref(), &e.data);
        let mut d = SseDecoder::default();
        d.push(&wire);
        let again = d.next_event();
        let expected = SseEvent {
            id: None,
            ..e.clone()
        };
        if again.as_ref() != Some(&expected) {
            return Err(format!(
                "write_event roundtrip: {expected:?} became {again:?}"
            ));
        }
    }
    if input.limit == SseDecoder::DEFAULT_LIMIT {
        let (whole, whole_failed) = decode(&input.bytes, &[], input.limit);
        if (whole, whole_failed) != (chunked.clone(), failed) {
            return Err("chunking changes the decoded events".into());
        }
        // The queueing interface gives the same events.
        let mut d = SseDecoder::default();
        let mut queued = Vec::new();
        for p in pieces(&input.bytes, &input.cuts) {
            d.push(p);
            while let Some(e) = d.next_event() {
                queued.push(e);
            }
        }
        if queued != chunked {
            return Err("push/next_event differ from feed".into());
        }
    }
    let _ = scan_first_event(&input.bytes, |e| (e.data.len() > 3).then_some(e.data.len()));
    Ok(())
}

// --- the accounting store ------------------------------------------------------------------

struct StoreInput {
    key_value: Option<Vec<u8>>,
    team_value: Option<Vec<u8>>,
    key_index: usize,
    now: u64,
    later: u64,
    usage: Option<(Usage, u64)>,
    prompt_tokens: u64,
}

impl FuzzInput for StoreInput {
    fn regression_file(&self, stem: &str) -> (String, Vec<u8>) {
        let mut text = format!(
            "key={}\nnow={}\nlater={}\nprompt={}\n",
            self.key_index, self.now, self.later, self.prompt_tokens
        );
        if let Some((u, cost)) = &self.usage {
            text.push_str(&format!(
                "usage={} {} {} {} {} {cost}\n",
                u.prompt_tokens,
                u.completion_tokens,
                u.cache_read_tokens,
                u.cache_write_tokens,
                u.reasoning_tokens
            ));
        }
        let mut bytes = text.into_bytes();
        for (name, value) in [
            ("key_value", &self.key_value),
            ("team_value", &self.team_value),
        ] {
            if let Some(v) = value {
                bytes.extend_from_slice(name.as_bytes());
                bytes.push(b'=');
                bytes.extend_from_slice(v);
                bytes.push(b'\n');
            }
        }
        (format!("{stem}.txt"), bytes)
    }
}

impl StoreInput {
    /// Reads the regression format written by `regression_file` (values end at the line end).
    fn parse(bytes: &[u8]) -> Result<StoreInput, String> {
        let mut input = StoreInput {
            key_value: None,
            team_value: None,
            key_index: 0,
            now: NOW,
            later: NOW,
            usage: None,
            prompt_tokens: 0,
        };
        for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let eq = line
                .iter()
                .position(|&b| b == b'=')
                .ok_or("a line without `=`")?;
            let (name, value) = (&line[..eq], &line[eq + 1..]);
            let text = String::from_utf8_lossy(value);
            let num = |s: &str| s.trim().parse::<u64>().map_err(|e| format!("{s:?}: {e}"));
            match name {
                b"key" => input.key_index = num(&text)? as usize,
                b"now" => input.now = num(&text)?,
                b"later" => input.later = num(&text)?,
                b"prompt" => input.prompt_tokens = num(&text)?,
                b"usage" => {
                    let n: Vec<u64> = text.split(' ').map(num).collect::<Result<_, _>>()?;
                    let [p, c, cr, cw, r, cost] = n[..] else {
                        return Err("usage needs six numbers".into());
                    };
                    input.usage = Some((
                        Usage {
                            prompt_tokens: p,
                            completion_tokens: c,
                            cache_read_tokens: cr,
                            cache_write_tokens: cw,
                            cache_write_1h_tokens: 0,
                            reasoning_tokens: r,
                            reported_cost_micro_usd: None,
                        },
                        cost,
                    ));
                }
                b"key_value" => input.key_value = Some(value.to_vec()),
                b"team_value" => input.team_value = Some(value.to_vec()),
                _ => return Err(format!("unknown field {text:?}")),
            }
        }
        if input.key_index >= ROUTING_CONFIG.keys.keys.len() {
            return Err("no such key".into());
        }
        Ok(input)
    }
}

const NOW: u64 = 1_773_489_610;
const LAST_SECOND_OF_9999: u64 = 253_402_300_799;

fn interesting_u64(rng: &mut Rng) -> u64 {
    let random = rng.next();
    *rng.pick(&[
        0,
        1,
        59,
        60,
        NOW,
        NOW / 60,
        NOW / 86_400,
        u64::MAX,
        u64::MAX - 1,
        u64::MAX / 2,
        u64::MAX / 60,
        u64::MAX / 86_400,
        u32::MAX as u64,
        1 << 53,
        random,
    ])
}

fn valid_record(rng: &mut Rng) -> Vec<u8> {
    // Real records, from real admissions.
    let config = &*ROUTING_CONFIG;
    let store = MemoryStore::new();
    let key = &config.keys.keys[0];
    let facts = RequestFacts {
        estimated_prompt_tokens: rng.below(1000) as u64,
        max_output_tokens: 100,
        input_price_per_token: 1e-6,
        output_price_per_token: 1e-6,
    };
    let _ = admit(&store, key, config.keys.team_of(key), &facts, NOW);
    store
        .get(&key_store_key(&key.name))
        .map(|(v, _)| v)
        .unwrap_or_else(|| b"v1 0 0 0 t0 0 0 0 0 0 0 0".to_vec())
}

fn mutate_record(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(base).into_owned();
    let mut tokens: Vec<String> = text.split(' ').map(str::to_string).collect();
    for _ in 0..1 + rng.below(4) {
        let n = tokens.len();
        if n == 0 {
            break;
        }
        let i = rng.below(n);
        match rng.below(6) {
            0 | 1 => tokens[i] = interesting_u64(rng).to_string(),
            2 => {
                tokens[i] = format!(
                    "{}{}",
                    rng.pick(&["d", "w", "m", "t", "x", "D", ""]),
                    interesting_u64(rng)
                )
            }
            3 => {
                tokens[i] = rng
                    .pick(&["", "-1", "18446744073709551616", "v2", "1.5", " ", "+1"])
                    .to_string()
            }
            4 => {
                tokens.remove(i);
            }
            _ => tokens.insert(i, "0".to_string()),
        }
    }
    let mut bytes = tokens.join(" ").into_bytes();
    if rng.chance(1, 6) {
        mutate_bytes(rng, &mut bytes, &[]);
    }
    bytes
}

fn gen_store(rng: &mut Rng) -> StoreInput {
    let base = valid_record(rng);
    let value = |rng: &mut Rng| match rng.below(5) {
        0 => None,
        1 => Some(base.clone()),
        _ => Some(mutate_record(rng, &base)),
    };
    // The clock is the host's: any time up to the year 9999, never garbage.
    let now = match rng.below(8) {
        0 => *rng.pick(&[0, 1, 59, 60, 86_399, LAST_SECOND_OF_9999]),
        1 => rng.next() % LAST_SECOND_OF_9999,
        _ => NOW + rng.below(10_000_000) as u64,
    };
    StoreInput {
        key_value: value(rng),
        team_value: value(rng),
        key_index: rng.below(ROUTING_CONFIG.keys.keys.len()),
        now,
        later: if rng.chance(1, 2) {
            now
        } else {
            now.saturating_add(rng.below(100_000) as u64)
        },
        usage: rng.chance(2, 3).then(|| {
            (
                Usage {
                    prompt_tokens: interesting_u64(rng),
                    completion_tokens: interesting_u64(rng),
                    cache_read_tokens: rng.below(100) as u64,
                    cache_write_tokens: 0,
                    cache_write_1h_tokens: 0,
                    reasoning_tokens: rng.below(10) as u64,
                    reported_cost_micro_usd: None,
                },
                interesting_u64(rng),
            )
        }),
        prompt_tokens: if rng.chance(1, 4) {
            interesting_u64(rng)
        } else {
            rng.below(5000) as u64
        },
    }
}

fn check_store(input: &StoreInput) -> Result<(), String> {
    let config = &*ROUTING_CONFIG;
    let key = &config.keys.keys[input.key_index];
    let team = config.keys.team_of(key);
    let store = MemoryStore::new();
    if let Some(v) = &input.key_value {
        let _ = store.set(&key_store_key(&key.name), v, None);
    }
    if let (Some(v), Some(t)) = (&input.team_value, team) {
        let _ = store.set(&team_store_key(&t.name), v, None);
    }
    let facts = RequestFacts {
        estimated_prompt_tokens: input.prompt_tokens,
        max_output_tokens: 1000,
        input_price_per_token: 3e-6,
        output_price_per_token: 15e-6,
    };
    let before = spend(&store, Account::Key(key), input.now);
    match admit(&store, key, team, &facts, input.now) {
        Ok(admission) => {
            for (name, value) in rate_limit_headers(&admission) {
                no_control(name, value.as_str())?;
            }
            let during = spend(&store, Account::Key(key), input.now);
            if during.in_flight < 1 && !key.is_master {
                return Err(format!("admitted but not in flight: {during:?}"));
            }
            let how = match input.usage {
                Some((usage, cost_micro_usd)) => Settlement::Used {
                    usage,
                    cost_micro_usd,
                },
                None if input.prompt_tokens % 3 == 0 => Settlement::Failed,
                None if input.prompt_tokens % 3 == 1 => Settlement::Reservation,
                None => Settlement::Unreported {
                    delivered_bytes: input.prompt_tokens.wrapping_mul(7),
                    so_far: None,
                },
            };
            settle(&store, admission, how, input.later).map_err(|e| format!("settle: {e}"))?;
            let after = spend(&store, Account::Key(key), input.now);
            // Settling frees the slot it took (a slot taken then is never still held).
            if input.later == input.now && after.in_flight > before.in_flight {
                return Err(format!(
                    "settled request still in flight: before {before:?}, after {after:?}"
                ));
            }
        }
        Err(refusal) => {
            if !matches!(refusal.error.status, 429 | 503) {
                return Err(format!("refusal with status {}", refusal.error.status));
            }
            check_error_body(
                &serde_json::from_slice(&refusal.error.to_json()).map_err(|e| e.to_string())?,
            )?;
            for (name, value) in refusal.headers() {
                no_control(name, value.as_str())?;
            }
        }
    }
    if let Some(t) = team {
        let _ = spend(&store, Account::Team(t), input.later);
    }
    let _ = prepare(&store, &config.keys);
    Ok(())
}

// --- pricing, keys, periods ----------------------------------------------------------------

struct TextInput(String, u64, f64);

impl FuzzInput for TextInput {
    fn regression_file(&self, stem: &str) -> (String, Vec<u8>) {
        (
            format!("{stem}.txt"),
            format!("{}\n{}\n{}\n", self.1, self.2, self.0).into_bytes(),
        )
    }
}

#[rustfmt::skip]
const MODEL_NAMES: &[&str] = &[
    "gpt-4o", "gpt-4o-mini-2024-07-18", "claude-sonnet-4-5-20250929",
    "claude-opus-4-1@20250805", "models/gemini-2.5-flash", "gemini-2.5-pro-001", "o3",
    "o4-mini-latest", "GPT-4O", " gpt-4o ", "gpt-4o-2024-08-06", "gpt-4o-", "gpt-4o-20250",
    "claude-3-5-haiku-latest",
];

#[rustfmt::skip]
const EXPIRIES: &[&str] = &[
    "2026-12-31T23:59:59Z", "2026-02-29", "2024-02-29", "9999-12-31T23:59:59.999999999+23:59",
    "1970-01-01T00:00:00-23:59", "1970-01-01T00:00:00+00:01", "2026-12-31t23:59:60z",
    "2026-12-31 23:59:59Z", "0000-01-01", "2026-13-01",
];

fn gen_text(rng: &mut Rng) -> TextInput {
    let seeds: Vec<&str> = MODEL_NAMES.iter().chain(EXPIRIES).copied().collect();
    let mut bytes = rng.pick(&seeds).as_bytes().to_vec();
    if rng.chance(4, 5) {
        let donors: Vec<&[u8]> = seeds.iter().map(|s| s.as_bytes()).collect();
        mutate_bytes(rng, &mut bytes, &donors);
    }
    let f = *rng.pick(&[
        0.0,
        -0.0,
        1e-12,
        3e-6,
        0.01,
        0.0100001,
        1e308,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -1.0,
        f64::MIN_POSITIVE,
        5e-324,
        1e9,
        1e9 + 1.0,
    ]);
    TextInput(
        String::from_utf8_lossy(&bytes).into_owned(),
        interesting_u64(rng),
        f,
    )
}

fn check_text(input: &TextInput) -> Result<(), String> {
    let TextInput(text, n, f) = input;
    let (n, f) = (*n, *f);
    // Pricing.
    let _ = pricing::lookup(text);
    let _ = pricing::micro_usd(f);
    let o = PriceOverride {
        input_cost_per_token: Some(f),
        output_cost_per_token: (n % 2 == 0).then_some(f),
        cache_read_input_token_cost: (n % 3 == 0).then_some(f),
        cache_creation_input_token_cost: None,
        cache_creation_input_token_cost_above_1hr: (n % 11 == 0).then_some(f),
        output_cost_per_reasoning_token: (n % 5 == 0).then_some(f),
    };
    let usage = Usage {
        prompt_tokens: n,
        completion_tokens: n / 3,
        cache_read_tokens: n / 2,
        cache_write_tokens: n / 5,
        cache_write_1h_tokens: n / 13,
        reasoning_tokens: n / 7,
        reported_cost_micro_usd: None,
    };
    for over in [o, PriceOverride::default()] {
        if let Ok(Some(price)) = pricing::resolve(text, &over) {
            let micro = pricing::cost_micro_usd(&usage, &price);
            let _ = pricing::cost_usd(&usage, &price);
            let _ = pricing::format_usd(micro);
        }
    }
    let _ = pricing::format_usd(n);
    let _ = format_dollars(n);
    let _ = keys::usd_to_micro(f);
    let facts = RequestFacts {
        estimated_prompt_tokens: n,
        max_output_tokens: n,
        input_price_per_token: f,
        output_price_per_token: f,
    };
    let _ = facts.worst_case_micro_usd();
    // Keys and periods.
    match periods::parse_expiry(text) {
        Ok(t) => {
            let _ = periods::format_utc(t);
        }
        Err(m) if m.is_empty() => return Err("an expiry error without a message".into()),
        Err(_) => {}
    }
    let _ = periods::format_utc(n);
    for d in BudgetDuration::ALL {
        let p = d.period(n);
        let _ = (p.start_unix_secs(), p.end_unix_secs(), p.label());
    }
    let pattern: String = text.chars().rev().collect();
    let _ = keys::wildcard_match(&pattern, text);
    let _ = keys::wildcard_match(text, "gpt-4o-mini");
    if !keys::wildcard_match(text, text) && !text.contains('*') {
        return Err("a pattern without `*` does not match itself".into());
    }
    if let Some(token) = auth::bearer_token(text) {
        let _ = auth::digest(token);
    }
    Ok(())
}

// =============================================================================================
// Tests: one per target, then the regression files.

#[test]
fn fuzz_config() {
    run_target("config", gen_config, check_config);
}

#[test]
fn fuzz_request() {
    run_target("request", gen_request, check_request);
}

#[test]
fn fuzz_response() {
    run_target("response", gen_response, check_response_input);
}

#[test]
fn fuzz_stream() {
    run_target("stream", gen_stream, check_stream_input);
}

#[test]
fn fuzz_sse() {
    run_target("sse", gen_sse, check_sse);
}

#[test]
fn fuzz_store() {
    run_target("store", gen_store, check_store);
}

#[test]
fn fuzz_text() {
    run_target("text", gen_text, check_text);
}

/// The seeds themselves pass every check (so a failure is the mutation's doing).
#[test]
fn seeds_pass() {
    let c = &*CORPUS;
    assert!(c.responses.len() > 10 && c.streams.len() > 10 && c.requests.len() > 10);
    let mut failures = Vec::new();
    for s in &c.responses {
        let input = ResponseInput {
            kind: s.kind,
            status: s.status,
            request: s
                .request
                .clone()
                .unwrap_or_else(|| MINIMAL_REQUEST.to_vec()),
            body: s.body.clone(),
        };
        if let Err(e) = check_response_input(&input) {
            failures.push(format!("response seed: {e}"));
        }
    }
    for s in &c.streams {
        let input = StreamInput {
            kind: s.kind,
            request: s.request.clone(),
            upstream: s.upstream.clone(),
            cuts: (1..s.upstream.len()).step_by(7).collect(),
            separate_eos: true,
        };
        if let Err(e) = check_stream_input(&input) {
            failures.push(format!("stream seed: {e}"));
        }
    }
    for r in &c.requests {
        if let Err(e) = check_request(&BytesInput(r.clone(), "json")) {
            failures.push(format!("request seed: {e}"));
        }
    }
    for cfg in &c.configs {
        if let Err(e) = check_config(&BytesInput(cfg.clone(), "json")) {
            failures.push(format!("config seed: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Replays every file of `tests/regressions/` through its target's checks.
///
/// | directory | file name | content |
/// |---|---|---|
/// | `config/` | any | a gateway config (JSON) |
/// | `request/` | any | a client body |
/// | `response/` | `<provider>-<status>-*` | the client body, a newline, the provider's body |
/// | `stream/` | `<provider>-*` | the client body, a newline, the provider's stream |
/// | `sse/` | `limit<N>-*` | a stream for the decoder |
/// | `store/` | any | `name=value` lines: key index, now, later, prompt, usage, the stored values |
/// | `text/` | any | a number, a float, then the text (pricing, expiry, patterns) |
///
/// Streams are replayed whole, split at every byte offset, and byte by byte.
#[test]
fn regressions() {
    let files = files_under(&regressions_root());
    let mut failures = Vec::new();
    for path in &files {
        let Some(target) = path
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
        else {
            continue;
        };
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') || name.ends_with(".md") {
            continue;
        }
        let bytes = fs::read(path).unwrap_or_default();
        let result = catch_unwind(AssertUnwindSafe(|| replay(target, name, &bytes)));
        let verdict = match result {
            Ok(r) => r,
            Err(p) => Err(format!("PANIC: {}", panic_message(p.as_ref()))),
        };
        if let Err(e) = verdict {
            failures.push(format!("{}: {e}", path.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn split_first_line(bytes: &[u8]) -> (Vec<u8>, Vec<u8>) {
    match bytes.iter().position(|&b| b == b'\n') {
        Some(i) => (bytes[..i].to_vec(), bytes[i + 1..].to_vec()),
        None => (bytes.to_vec(), Vec::new()),
    }
}

fn replay(target: &str, name: &str, bytes: &[u8]) -> Result<(), String> {
    let provider = |name: &str| {
        let p = name.split('-').next().unwrap_or("");
        ProviderKind::ALL
            .iter()
            .copied()
            .find(|k| k.name() == p)
            .ok_or_else(|| format!("no provider named `{p}`"))
    };
    match target {
        "config" => check_config(&BytesInput(bytes.to_vec(), "json")),
        "request" => check_request(&BytesInput(bytes.to_vec(), "json")),
        "response" => {
            let status = name
                .split('-')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or("no status in the file name")?;
            let (request, body) = split_first_line(bytes);
            check_response_input(&ResponseInput {
                kind: provider(name)?,
                status,
                request,
                body,
            })
        }
        "stream" => {
            let (request, upstream) = split_first_line(bytes);
            let kind = provider(name)?;
            let len = upstream.len();
            let mut cut_sets: Vec<Vec<usize>> = vec![vec![], (1..len).collect()];
            cut_sets.extend((0..=len).map(|i| vec![i]));
            for cuts in cut_sets {
                for separate_eos in [false, true] {
                    check_stream_input(&StreamInput {
                        kind,
                        request: request.clone(),
                        upstream: upstream.clone(),
                        cuts: cuts.clone(),
                        separate_eos,
                    })?;
                }
            }
            Ok(())
        }
        "sse" => {
            let limit = name
                .strip_prefix("limit")
                .and_then(|s| s.split('-').next())
                .and_then(|s| s.parse().ok())
                .unwrap_or(SseDecoder::DEFAULT_LIMIT);
            let len = bytes.len();
            for cuts in [vec![], (1..len).collect::<Vec<_>>()] {
                check_sse(&SseInput {
                    bytes: bytes.to_vec(),
                    cuts,
                    limit,
                })?;
            }
            Ok(())
        }
        "store" => check_store(&StoreInput::parse(bytes)?),
        "text" => {
            let text = String::from_utf8_lossy(bytes);
            let mut lines = text.splitn(3, '\n');
            let n = lines.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            let f = lines.next().and_then(|s| s.parse().ok()).unwrap_or(0.0);
            let t = lines
                .next()
                .unwrap_or("")
                .trim_end_matches('\n')
                .to_string();
            check_text(&TextInput(t, n, f))
        }
        other => Err(format!("unknown regression target `{other}`")),
    }
}
