//! Stream translation against recorded-shape fixtures, replayed at every split point.
//!
//! Each `tests/fixtures/<provider>/stream_<case>/` holds the client's request
//! (`openai_request.json`), the provider's wire stream (`upstream.sse`) and the stream the
//! client must receive (`openai.sse`). The output is compared event by event as JSON; then
//! the same upstream bytes are cut into two pieces at every offset, three pieces over a
//! sweep, single bytes, and rewritten with CRLF and CR line ends: every variant must give
//! byte-identical output, because an SSE stream can be split anywhere by the network.

use llm_gateway::messages_api::InboundApi;
use llm_gateway::provider::RequestFromBody;
use std::path::{Path, PathBuf};

use llm_gateway::provider::anthropic::stream::{self as anthropic_stream, AnthropicStream};
mod common;

use llm_gateway::provider::native::NativeStream;
use llm_gateway::provider::registry::WireApi;
use llm_gateway::provider::{translator_for, ProviderKind, StreamPreamble, Translator};
use llm_gateway::usage::Usage;
use serde_json::{json, Value};

const NOW: u64 = 1_700_000_000;

/// What the tests drive: the provider's translator, built from the client's request.
trait Subject {
    fn push(&mut self, chunk: &[u8], end_of_stream: bool, out: &mut Vec<u8>);
    fn usage(&self) -> Option<Usage>;
    fn preamble(&mut self, buffered: &[u8], end_of_stream: bool) -> StreamPreamble;
}

impl Subject for Box<dyn Translator> {
    fn push(&mut self, chunk: &[u8], end_of_stream: bool, out: &mut Vec<u8>) {
        self.stream(chunk, end_of_stream, out);
    }
    fn usage(&self) -> Option<Usage> {
        self.stream_usage()
    }
    fn preamble(&mut self, buffered: &[u8], end_of_stream: bool) -> StreamPreamble {
        self.stream_preamble(buffered, end_of_stream)
    }
}

/// The Anthropic stream translator on its own, used only while the Anthropic request
/// translation is not built yet (it reports exactly that); the stream does not depend on it.
impl Subject for AnthropicStream {
    fn push(&mut self, chunk: &[u8], end_of_stream: bool, out: &mut Vec<u8>) {
        NativeStream::push(self, chunk, end_of_stream, out);
    }
    fn usage(&self) -> Option<Usage> {
        NativeStream::usage(self)
    }
    fn preamble(&mut self, buffered: &[u8], end_of_stream: bool) -> StreamPreamble {
        anthropic_stream::preamble(buffered, end_of_stream)
    }
}

const ANTHROPIC_REQUEST_STUB: &str = "anthropic translation is not implemented yet";

struct Case {
    provider: ProviderKind,
    name: String,
    request: Vec<u8>,
    upstream: Vec<u8>,
    expected: Vec<u8>,
}

impl Case {
    fn subject(&self) -> Box<dyn Subject> {
        let target = common::target_for(self.provider);
        let mut translator = translator_for(self.provider);
        match translator.request_from_body(InboundApi::Chat, &self.request, &target) {
            Ok(upstream) => {
                assert!(translator.is_stream(), "{}: not a stream", self.name);
                let body: Value = serde_json::from_slice(&upstream.body).unwrap();
                if self.provider == ProviderKind::Gemini {
                    // Gemini streams by endpoint, not by a body field.
                    assert!(
                        upstream.path.ends_with(":streamGenerateContent?alt=sse"),
                        "{}: {}",
                        self.name,
                        upstream.path
                    );
                } else if self.provider.spec().wire == WireApi::BedrockConverse {
                    // So does Bedrock.
                    assert!(upstream.path.ends_with("/converse-stream"), "{}", self.name);
                } else {
                    assert_eq!(body["stream"], true, "{}", self.name);
                }
                if matches!(
                    self.provider.spec().wire,
                    WireApi::OpenAiChat | WireApi::AzureOpenAi
                ) {
                    // Usage is always asked upstream, whatever the client asked.
                    assert_eq!(body["stream_options"]["include_usage"], true);
                }
                Box::new(translator)
            }
            Err(e)
                if self.provider == ProviderKind::Anthropic
                    && e.message == ANTHROPIC_REQUEST_STUB =>
            {
                let request: Value = serde_json::from_slice(&self.request).unwrap();
                let wants_usage = request["stream_options"]["include_usage"] == true;
                Box::new(AnthropicStream::new(wants_usage, NOW))
            }
            Err(e) => panic!("{}: request refused: {e}", self.name),
        }
    }

    /// Feeds `pieces` in order, the last one with `end_of_stream`.
    fn run(&self, pieces: &[&[u8]]) -> Vec<u8> {
        let mut subject = self.subject();
        let mut out = Vec::new();
        let last = pieces.len().saturating_sub(1);
        for (i, piece) in pieces.iter().enumerate() {
            subject.push(piece, i == last, &mut out);
        }
        if pieces.is_empty() {
            subject.push(b"", true, &mut out);
        }
        out
    }

    fn run_with_usage(&self, input: &[u8]) -> (Vec<u8>, Option<Usage>) {
        let mut subject = self.subject();
        let mut out = Vec::new();
        subject.push(input, false, &mut out);
        subject.push(b"", true, &mut out);
        (out, subject.usage())
    }
}

fn load(provider: ProviderKind) -> Vec<Case> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(provider.name());
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("stream_"))
        })
        .collect();
    dirs.sort();
    dirs.into_iter()
        .map(|dir| Case {
            provider,
            name: format!(
                "{}/{}",
                provider.name(),
                dir.file_name().unwrap().to_string_lossy()
            ),
            request: std::fs::read(dir.join("openai_request.json")).unwrap(),
            upstream: upstream_bytes(&dir),
            // Missing only before `GOLDEN_BLESS=1` wrote it (see `check_case`).
            expected: std::fs::read(dir.join("openai.sse")).unwrap_or_default(),
        })
        .collect()
}

/// The provider's wire stream: `upstream.sse`, or for binary event streams (Bedrock)
/// `upstream.frames.json` ([`common::encode_frames`]).
fn upstream_bytes(dir: &Path) -> Vec<u8> {
    if let Ok(sse) = std::fs::read(dir.join("upstream.sse")) {
        return sse;
    }
    common::encode_frames(&std::fs::read(dir.join("upstream.frames.json")).unwrap())
}

fn case(provider: ProviderKind, name: &str) -> Case {
    load(provider)
        .into_iter()
        .find(|c| c.name.ends_with(&format!("/{name}")))
        .unwrap()
}

/// Parses an OpenAI stream strictly: only `data: <payload>\n\n` events, JSON or `[DONE]`.
fn events(name: &str, bytes: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(bytes).unwrap();
    assert!(
        text.ends_with("\n\n"),
        "{name}: output must end with a blank line"
    );
    text.strip_suffix("\n\n")
        .unwrap()
        .split("\n\n")
        .map(|event| {
            let payload = event
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("{name}: not a data event: {event:?}"));
            assert!(!payload.contains('\n'), "{name}: multi-line event");
            if payload == "[DONE]" {
                json!("[DONE]")
            } else {
                serde_json::from_str(payload)
                    .unwrap_or_else(|e| panic!("{name}: bad JSON {payload}: {e}"))
            }
        })
        .collect()
}

/// Invariants every translated stream keeps, whatever happened upstream.
fn check_invariants(name: &str, got: &[Value]) {
    let done = got.iter().filter(|e| *e == "[DONE]").count();
    assert_eq!(done, 1, "{name}: exactly one [DONE]");
    assert_eq!(got.last().unwrap(), "[DONE]", "{name}: [DONE] last");
    let chunks: Vec<&Value> = got.iter().filter(|e| e.get("choices").is_some()).collect();
    // One finish_reason at most per choice (several choices when `n` > 1).
    let mut finished: Vec<&Value> = chunks
        .iter()
        .filter(|c| c["choices"][0]["finish_reason"].is_string())
        .map(|c| &c["choices"][0]["index"])
        .collect();
    let finishes = finished.len();
    finished.dedup();
    finished.sort_by_key(|i| i.as_u64());
    finished.dedup();
    assert_eq!(
        finished.len(),
        finishes,
        "{name}: one finish_reason per choice at most"
    );
    if let Some(first) = chunks.first() {
        for c in &chunks {
            assert_eq!(c["id"], first["id"], "{name}: one id");
            assert_eq!(c["created"], first["created"], "{name}: one created");
            assert_eq!(c["model"], first["model"], "{name}: one model");
        }
    }
}

fn crlf(input: &[u8], end: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() * 2);
    for &b in input {
        if b == b'\n' {
            out.extend_from_slice(end);
        } else {
            out.push(b);
        }
    }
    out
}

/// Every cut into two pieces (also, with `separate_eos`, with the end of stream signalled
/// by an extra empty push).
fn check_two_piece_splits(case: &Case, input: &[u8], whole: &[u8], separate_eos: bool) {
    for i in 0..=input.len() {
        let (a, b) = input.split_at(i);
        assert_eq!(case.run(&[a, b]), whole, "{}: split at {i}", case.name);
        if separate_eos {
            assert_eq!(
                case.run(&[a, b, b""]),
                whole,
                "{}: split at {i} + eos",
                case.name
            );
        }
    }
}

/// Largest fixture cut at every pair of offsets (the sweep is quadratic).
const FULL_THREE_PIECE_LIMIT: usize = 400;

/// Three pieces: every pair of cuts for small fixtures; for larger ones every pair of cuts
/// up to 3 bytes apart (two cuts inside one CRLF pair, escape or UTF-8 character, or around
/// a one-byte piece) plus a coarse grid of pairs over the whole input.
fn check_three_piece_splits(case: &Case, input: &[u8], whole: &[u8]) {
    let n = input.len();
    let full = n <= FULL_THREE_PIECE_LIMIT;
    for i in 0..=n {
        for j in i..=n {
            if !(full || j - i <= 3 || (i % 41 == 0 && j % 43 == 0)) {
                continue;
            }
            let got = case.run(&[&input[..i], &input[i..j], &input[j..]]);
            assert_eq!(got, whole, "{}: split at {i},{j}", case.name);
        }
    }
}

fn check_bytewise(case: &Case, input: &[u8], whole: &[u8]) {
    let pieces: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(case.run(&pieces), whole, "{}: 1-byte chunks", case.name);
    let mut with_eos = pieces.clone();
    with_eos.push(b"");
    assert_eq!(
        case.run(&with_eos),
        whole,
        "{}: 1-byte chunks + eos",
        case.name
    );
}

fn check_case(case: &Case) {
    let whole = case.run(&[&case.upstream]);
    if std::env::var_os("GOLDEN_BLESS").is_some() && case.expected.is_empty() {
        // A new fixture's expected stream, written once for review.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(&case.name);
        std::fs::write(dir.join("openai.sse"), &whole).unwrap();
        return;
    }
    let got = events(&case.name, &whole);
    let expected = events(&case.name, &case.expected);
    assert_eq!(
        got,
        expected,
        "{}: got\n{}",
        case.name,
        String::from_utf8_lossy(&whole)
    );
    check_invariants(&case.name, &got);

    check_two_piece_splits(case, &case.upstream, &whole, true);
    check_three_piece_splits(case, &case.upstream, &whole);
    check_bytewise(case, &case.upstream, &whole);

    // Line ends are SSE's; a binary event stream has none.
    let line_ends: &[&[u8]] = if case.provider.spec().wire == WireApi::BedrockConverse {
        &[]
    } else {
        &[b"\r\n", b"\r"]
    };
    for &end in line_ends {
        let variant = crlf(&case.upstream, end);
        assert_eq!(
            case.run(&[&variant]),
            whole,
            "{}: {end:?} line ends",
            case.name
        );
        if end == b"\r\n" {
            // Includes every cut between a CR and its LF.
            check_two_piece_splits(case, &variant, &whole, false);
        }
        check_bytewise(case, &variant, &whole);
    }

    // A usage chunk, when sent, carries exactly what the gateway records.
    let (_, usage) = case.run_with_usage(&case.upstream);
    if let Some(chunk) = got
        .iter()
        .find(|e| e.get("usage").is_some_and(|u| !u.is_null()))
    {
        let usage = usage.unwrap_or_else(|| panic!("{}: usage not recorded", case.name));
        let sent = &chunk["usage"];
        assert_eq!(sent["prompt_tokens"], usage.prompt_tokens, "{}", case.name);
        assert_eq!(
            sent["completion_tokens"], usage.completion_tokens,
            "{}",
            case.name
        );
        assert_eq!(sent["total_tokens"], usage.total_tokens(), "{}", case.name);
    }
}

/// The preamble never changes what `stream` produces from the same bytes afterwards, and
/// its verdict only moves from `NeedMore` to a final answer as bytes arrive.
fn check_preamble_consumes_nothing(case: &Case) {
    let whole = case.run(&[&case.upstream]);
    let input = &case.upstream;
    let mut decided: Option<StreamPreamble> = None;
    for i in 0..=input.len() {
        let mut subject = case.subject();
        let verdict = subject.preamble(&input[..i], false);
        match (&decided, &verdict) {
            (None, StreamPreamble::NeedMore) => {}
            (None, v) => decided = Some(v.clone()),
            (Some(d), v) => assert_eq!(d, v, "{}: verdict changed at {i}", case.name),
        }
        // Whatever the verdict, feeding the same bytes afterwards gives the same stream.
        let mut out = Vec::new();
        subject.push(&input[..i], false, &mut out);
        subject.push(&input[i..], true, &mut out);
        assert_eq!(
            out, whole,
            "{}: preamble at {i} changed the stream",
            case.name
        );
    }
    let mut subject = case.subject();
    let at_end = subject.preamble(input, true);
    assert_ne!(at_end, StreamPreamble::NeedMore, "{}", case.name);
}

fn expect_usage(case: &Case, prompt: u64, completion: u64) {
    let (_, usage) = case.run_with_usage(&case.upstream);
    let usage = usage.unwrap_or_else(|| panic!("{}: no usage", case.name));
    assert_eq!(
        (usage.prompt_tokens, usage.completion_tokens),
        (prompt, completion),
        "{}",
        case.name
    );
}

/// One test per fixture, so that they run in parallel and fail by name.
macro_rules! fixture_tests {
    ($($test:ident: $provider:ident / $case:literal;)*) => {
        $(
            #[test]
            fn $test() {
                check_case(&case(ProviderKind::$provider, $case));
            }
        )*

        /// Every fixture directory has its test above: none is silently skipped.
        #[test]
        fn every_fixture_is_tested() {
            let listed = [$(format!("{}/{}", ProviderKind::$provider.name(), $case)),*];
            for &provider in ProviderKind::ALL {
                for case in load(provider) {
                    assert!(listed.contains(&case.name), "{} has no test", case.name);
                }
            }
        }
    };
}

fixture_tests! {
    anthropic_text: Anthropic / "stream_text";
    anthropic_text_usage: Anthropic / "stream_text_usage";
    anthropic_tool_call: Anthropic / "stream_tool_call";
    anthropic_parallel_tool_calls: Anthropic / "stream_parallel_tool_calls";
    anthropic_tool_no_arguments: Anthropic / "stream_tool_no_arguments";
    anthropic_thinking: Anthropic / "stream_thinking";
    anthropic_max_tokens: Anthropic / "stream_max_tokens";
    anthropic_mid_error: Anthropic / "stream_mid_error";
    anthropic_first_error: Anthropic / "stream_first_error";
    anthropic_truncated: Anthropic / "stream_truncated";
    anthropic_ping_unknown: Anthropic / "stream_ping_unknown";
    anthropic_malformed: Anthropic / "stream_malformed";
    openai_text: OpenAi / "stream_text";
    openai_text_usage: OpenAi / "stream_text_usage";
    openai_tool_calls: OpenAi / "stream_tool_calls";
    openai_error: OpenAi / "stream_error";
    openai_first_error: OpenAi / "stream_first_error";
    openai_truncated: OpenAi / "stream_truncated";
    openai_missing_done: OpenAi / "stream_missing_done";
    openai_malformed: OpenAi / "stream_malformed";
    gemini_text_usage: Gemini / "stream_text_usage";
    gemini_text_no_usage: Gemini / "stream_text_no_usage";
    gemini_finish_in_own_event: Gemini / "stream_finish_in_own_event";
    gemini_tool_calls: Gemini / "stream_tool_calls";
    gemini_reasoning: Gemini / "stream_reasoning";
    gemini_max_tokens: Gemini / "stream_max_tokens";
    gemini_safety_midway: Gemini / "stream_safety_midway";
    gemini_n_candidates: Gemini / "stream_n_candidates";
    gemini_error_mid_stream: Gemini / "stream_error_mid_stream";
    gemini_error_first_event: Gemini / "stream_error_first_event";
    gemini_blocked_prompt: Gemini / "stream_blocked_prompt";
    gemini_malformed_function_call: Gemini / "stream_malformed_function_call";
    gemini_truncated: Gemini / "stream_truncated";
    gemini_malformed_event: Gemini / "stream_malformed_event";
    cohere_text: Cohere / "stream_text";
    cohere_text_usage: Cohere / "stream_text_usage";
    cohere_tool_calls: Cohere / "stream_tool_calls";
    cohere_thinking: Cohere / "stream_thinking";
    cohere_max_tokens: Cohere / "stream_max_tokens";
    cohere_first_error: Cohere / "stream_first_error";
    cohere_mid_error: Cohere / "stream_mid_error";
    cohere_generation_error: Cohere / "stream_generation_error";
    cohere_truncated: Cohere / "stream_truncated";
    cohere_malformed: Cohere / "stream_malformed";
    bedrock_text_usage: Bedrock / "stream_text_usage";
    bedrock_tool_call: Bedrock / "stream_tool_call";
    bedrock_thinking: Bedrock / "stream_thinking";
    bedrock_max_tokens: Bedrock / "stream_max_tokens";
    bedrock_first_error: Bedrock / "stream_first_error";
    bedrock_mid_error: Bedrock / "stream_mid_error";
    bedrock_truncated: Bedrock / "stream_truncated";
    bedrock_corrupt_frame: Bedrock / "stream_corrupt_frame";
    azure_content_filter: Azure / "stream_content_filter";
    azure_tool_calls: Azure / "stream_tool_calls";
    azure_error: Azure / "stream_error";
    azure_first_error: Azure / "stream_first_error";
    azure_truncated: Azure / "stream_truncated";
    azure_prompt_filter_with_usage: Azure / "stream_prompt_filter_with_usage";
    groq_reasoning: Groq / "stream_reasoning";
    groq_x_groq_usage: Groq / "stream_x_groq_usage";
    groq_x_groq_usage_not_asked: Groq / "stream_x_groq_usage_not_asked";
    groq_usage_top_level_too: Groq / "stream_usage_top_level_too";
    perplexity_citations: Perplexity / "stream_citations";
    openrouter_usage_cost: OpenRouter / "stream_usage_cost";
    openrouter_reasoning: OpenRouter / "stream_reasoning";
    together_reasoning: Together / "stream_reasoning";
    cerebras_reasoning: Cerebras / "stream_reasoning";
    ollama_reasoning: Ollama / "stream_reasoning";
    vllm_reasoning: Vllm / "stream_reasoning";
}

#[test]
fn preamble_consumes_nothing() {
    for &provider in ProviderKind::ALL {
        for case in load(provider) {
            check_preamble_consumes_nothing(&case);
        }
    }
}

/// An `error` first event of a 200 stream becomes a retryable status before headers go out.
#[test]
fn anthropic_first_event_error_fails_preamble() {
    let case = case(ProviderKind::Anthropic, "stream_first_error");
    let mut subject = case.subject();
    let StreamPreamble::Fail(response) = subject.preamble(&case.upstream, false) else {
        panic!("expected Fail");
    };
    assert_eq!(response.status, 503);
    let body: Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(
        body,
        json!({"error": {"message": "Overloaded", "type": "overloaded_error",
            "param": null, "code": "overloaded_error"}})
    );
    // Pings and comments before it are skipped; a rate limit maps to 429.
    let rate = b": keep-alive\n\nevent: ping\ndata: {\"type\": \"ping\"}\n\nevent: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"Number of request tokens has exceeded your per-minute rate limit\"}}\n\n";
    let StreamPreamble::Fail(response) = subject.preamble(rate, false) else {
        panic!("expected Fail");
    };
    assert_eq!(response.status, 429);
    // Until the first event is complete the shell must wait; a good start proceeds.
    assert_eq!(
        subject.preamble(&case.upstream[..20], false),
        StreamPreamble::NeedMore
    );
    let text = self::case(ProviderKind::Anthropic, "stream_text");
    assert_eq!(
        text.subject().preamble(&text.upstream, false),
        StreamPreamble::Proceed
    );
    // Pings alone keep the shell waiting, but not beyond 64 KiB.
    let pings = b"event: ping\ndata: {\"type\": \"ping\"}\n\n".repeat(2000);
    assert_eq!(
        subject.preamble(&pings[..1000], false),
        StreamPreamble::NeedMore
    );
    assert_eq!(subject.preamble(&pings, false), StreamPreamble::Proceed);
}

/// OpenAI-compatible: a first payload with `error` fails with the status its code names.
#[test]
fn openai_first_event_error_fails_preamble() {
    let case = case(ProviderKind::OpenAi, "stream_first_error");
    let mut subject = case.subject();
    let StreamPreamble::Fail(response) = subject.preamble(&case.upstream, false) else {
        panic!("expected Fail");
    };
    assert_eq!(response.status, 429);
    let body: Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Rate limit reached"));
    for (payload, status) in [
        (
            r#"{"error":{"message":"busy","type":"server_error","code":null}}"#,
            503,
        ),
        (r#"{"error":"plain string"}"#, 503),
        (
            r#"{"error":{"object":"error","message":"too long","type":"BadRequestError","param":null,"code":400}}"#,
            400,
        ),
    ] {
        let bytes = format!("data: {payload}\n\n");
        let StreamPreamble::Fail(r) = subject.preamble(bytes.as_bytes(), false) else {
            panic!("expected Fail for {payload}");
        };
        assert_eq!(r.status, status, "{payload}");
    }
    let text = self::case(ProviderKind::OpenAi, "stream_text");
    assert_eq!(
        text.subject().preamble(&text.upstream, false),
        StreamPreamble::Proceed
    );
}

/// Usage is recorded whether or not the client asked for the chunk, and never summed.
#[test]
fn usage_recorded_always() {
    let a = ProviderKind::Anthropic;
    expect_usage(&case(a, "stream_text"), 25, 15);
    expect_usage(&case(a, "stream_text_usage"), 145, 15);
    expect_usage(&case(a, "stream_tool_call"), 472, 89);
    expect_usage(&case(a, "stream_thinking"), 60, 412);
    // Partial usage survives an error: what was spent is still accounted.
    expect_usage(&case(a, "stream_mid_error"), 20, 1);
    let o = ProviderKind::OpenAi;
    expect_usage(&case(o, "stream_text"), 9, 12);
    expect_usage(&case(o, "stream_text_usage"), 9, 12);
    let text = events(
        "t",
        &case(o, "stream_text").run(&[&case(o, "stream_text").upstream]),
    );
    assert!(text
        .iter()
        .all(|e| e.get("usage").is_none_or(Value::is_null)));
}

/// Groq's streams report usage in `x_groq.usage` on the chunk that finishes (and lately at
/// the top level too): recorded either way, never twice, whether or not the client asked;
/// a client that asked gets it as an OpenAI usage chunk (`choices: []`) before `[DONE]`.
#[test]
fn groq_x_groq_usage_is_recorded() {
    let g = ProviderKind::Groq;
    expect_usage(&case(g, "stream_x_groq_usage"), 23, 19);
    expect_usage(&case(g, "stream_x_groq_usage_not_asked"), 23, 19);
    expect_usage(&case(g, "stream_usage_top_level_too"), 42, 8);
    let asked = case(g, "stream_x_groq_usage");
    let got = events("asked", &asked.run(&[&asked.upstream]));
    let usage_chunks: Vec<&Value> = got
        .iter()
        .filter(|e| e.get("usage").is_some_and(|u| !u.is_null()))
        .collect();
    assert_eq!(usage_chunks.len(), 1);
    assert_eq!(usage_chunks[0]["choices"], json!([]));
    assert_eq!(usage_chunks[0]["usage"]["total_tokens"], 42);
    assert_eq!(got[got.len() - 2], *usage_chunks[0]);
    for name in [
        "stream_x_groq_usage_not_asked",
        "stream_usage_top_level_too",
    ] {
        let c = case(g, name);
        let got = events(name, &c.run(&[&c.upstream]));
        let usage_chunks = got
            .iter()
            .filter(|e| e.get("usage").is_some_and(|u| !u.is_null()))
            .count();
        assert_eq!(
            usage_chunks,
            usize::from(name != "stream_x_groq_usage_not_asked")
        );
    }
    // Other providers' `x_groq` members are just members.
    let mut other = common::target_for(ProviderKind::OpenAi);
    other.upstream_model = "m";
    let mut t = translator_for(ProviderKind::OpenAi);
    t.request_from_body(InboundApi::Chat, &asked.request, &other)
        .unwrap();
    let mut out = Vec::new();
    t.stream(&asked.upstream, true, &mut out);
    assert!(t.stream_usage().is_none());
}

/// OpenRouter reports what it charged in `usage.cost`: recorded with the usage.
#[test]
fn openrouter_stream_reports_its_cost() {
    let c = case(ProviderKind::OpenRouter, "stream_usage_cost");
    let (_, usage) = c.run_with_usage(&c.upstream);
    assert_eq!(usage.unwrap().reported_cost_micro_usd, Some(1_234));
}

/// Gemini repeats its running totals in several events: the last report counts, never a
/// sum; thoughts count as completion tokens; what was spent before an error is kept.
#[test]
fn gemini_usage_is_the_last_cumulative_report() {
    let g = ProviderKind::Gemini;
    expect_usage(&case(g, "stream_text_usage"), 7, 10);
    expect_usage(&case(g, "stream_text_no_usage"), 4, 3);
    expect_usage(&case(g, "stream_reasoning"), 7, 86);
    expect_usage(&case(g, "stream_tool_calls"), 30, 32);
    expect_usage(&case(g, "stream_error_mid_stream"), 7, 1);
}

/// A long stream through the public interface: output is produced per event and memory
/// does not grow with the stream.
#[test]
fn long_stream_is_incremental() {
    let case = case(ProviderKind::Anthropic, "stream_text");
    let mut subject = case.subject();
    let mut out = Vec::new();
    let start_end = case.upstream.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
    subject.push(&case.upstream[..start_end], false, &mut out);
    subject.push(b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n", false, &mut out);
    for i in 0..10_000 {
        out.clear();
        let event = format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"t{i} \"}}}}\n\n");
        subject.push(event.as_bytes(), false, &mut out);
        let got = events("long", &out);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["choices"][0]["delta"]["content"], format!("t{i} "));
    }
}
