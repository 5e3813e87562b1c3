//! Benchmark data shared by the criterion benches, the instruction-count driver and (via
//! `driver fixtures <dir>`) the end-to-end load harness, so that every measurement uses
//! the same bytes.
//!
//! Request bodies are chat conversations of a target size: a system prompt, then user and
//! assistant turns of up to 1 KB each, always ending with a user turn. The text is
//! deterministic pseudo-prose with the characters real prompts carry (quotes, newlines,
//! non-ASCII), so JSON escaping costs what it costs in production. Provider answers are
//! canned OpenAI-compatible and Anthropic bodies, JSON and SSE, and Bedrock Converse and
//! Gemini JSON bodies.

#![allow(dead_code)]

use llm_gateway::provider::{ProviderKind, ProviderOptions, Target};
use serde_json::{json, Value};

/// The model placeholder in request bodies; the harness replaces it with an alias.
pub const MODEL_PLACEHOLDER: &str = "__MODEL__";

/// Content deltas in every streamed answer.
pub const STREAM_DELTAS: usize = 200;

/// Prompt sizes measured (bytes of request body).
pub const PROMPT_SIZES: &[(&str, usize)] =
    &[("1k", 1024), ("10k", 10 * 1024), ("100k", 100 * 1024)];

#[rustfmt::skip]
const WORDS: &[&str] = &[
    "the", "gateway", "translates", "each", "request", "between", "providers", "and", "answers",
    "with", "tokens", "streamed", "latency", "throughput", "Envoy", "filter", "model", "prompt",
    "context", "window", "naïve", "café", "\"quoted\"", "tool", "call", "result", "JSON",
    "schema", "a", "of", "to", "in", "is", "that", "for", "on", "it", "measure", "honestly",
    "cost", "per", "core", "budget", "retry", "fallback", "order",
];

/// Deterministic generator (64-bit LCG).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn word(&mut self) -> &'static str {
        WORDS[(self.next() as usize) % WORDS.len()]
    }
}

/// About `len` bytes of prose: sentences of 6-17 words, a newline every few sentences.
fn prose(rng: &mut Rng, len: usize) -> String {
    let mut s = String::with_capacity(len + 32);
    let mut in_sentence = 0;
    let mut sentences = 0;
    while s.len() < len {
        let w = rng.word();
        if in_sentence == 0 {
            let mut c = w.chars();
            if let Some(first) = c.next() {
                s.extend(first.to_uppercase());
                s.push_str(c.as_str());
            }
        } else {
            s.push(' ');
            s.push_str(w);
        }
        in_sentence += 1;
        if in_sentence >= 6 + (rng.next() % 12) as usize {
            s.push('.');
            in_sentence = 0;
            sentences += 1;
            s.push(if sentences % 4 == 0 { '\n' } else { ' ' });
        }
    }
    s
}

fn encoded_len(v: &Value) -> usize {
    serde_json::to_vec(v).map(|b| b.len()).unwrap_or(0)
}

/// A chat request body of about `size` bytes for `model`.
pub fn chat_request(model: &str, size: usize, stream: bool) -> Vec<u8> {
    let mut rng = Rng(size as u64 ^ 0x9e37_79b9);
    let mut messages = vec![json!({"role": "system", "content": prose(&mut rng, 200)})];
    let mut body = json!({
        "model": model,
        "messages": [],
        "max_tokens": 512,
        "temperature": 0.7,
    });
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    let overhead = encoded_len(&body) + encoded_len(&json!(messages));
    let mut used = overhead;
    let mut user = true;
    while used < size {
        let want = (size - used).saturating_sub(40).clamp(64, 1000);
        let m = json!({"role": if user { "user" } else { "assistant" }, "content": prose(&mut rng, want)});
        used += encoded_len(&m) + 1;
        messages.push(m);
        user = !user;
    }
    if user {
        // The last turn was the assistant's: the client asks the next question.
        messages.push(json!({"role": "user", "content": "Please go on."}));
    }
    body["messages"] = Value::Array(messages);
    serde_json::to_vec(&body).unwrap_or_default()
}

/// A tool-calling request: three tools with JSON schemas, an earlier call and its result,
/// and a follow-up question.
pub fn tools_request(model: &str) -> Vec<u8> {
    let mut rng = Rng(7);
    let body = json!({
        "model": model,
        "max_tokens": 512,
        "messages": [
            {"role": "system", "content": prose(&mut rng, 200)},
            {"role": "user", "content": "What is the weather in Paris? Then open a ticket if it rains."},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_weather_1", "type": "function", "function": {
                    "name": "get_weather", "arguments": "{\"city\":\"Paris\",\"unit\":\"celsius\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_weather_1",
             "content": "{\"temp_c\":14,\"conditions\":\"light rain\",\"wind_kph\":18}"},
            {"role": "user", "content": prose(&mut rng, 300)},
        ],
        "tools": [
            {"type": "function", "function": {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "parameters": {"type": "object", "properties": {
                    "city": {"type": "string", "description": "City name"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}
                }, "required": ["city"]}}},
            {"type": "function", "function": {
                "name": "search_docs",
                "description": "Full-text search over the internal documentation.",
                "parameters": {"type": "object", "properties": {
                    "query": {"type": "string"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 50}
                }, "required": ["query"]}}},
            {"type": "function", "function": {
                "name": "create_ticket",
                "description": "Open a ticket in the tracker.",
                "parameters": {"type": "object", "properties": {
                    "title": {"type": "string"},
                    "body": {"type": "string"},
                    "priority": {"type": "string", "enum": ["low", "normal", "high"]},
                    "labels": {"type": "array", "items": {"type": "string"}}
                }, "required": ["title", "body"]}}}
        ],
        "tool_choice": "auto",
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

fn answer_text() -> String {
    prose(&mut Rng(42), 300)
}

/// A non-streamed OpenAI-compatible `chat.completion`.
pub fn openai_answer() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": "chatcmpl-bench0001",
        "object": "chat.completion",
        "created": 1_700_000_000u64,
        "model": "bench-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer_text(), "refusal": null},
                     "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 260, "completion_tokens": 70, "total_tokens": 330,
                  "prompt_tokens_details": {"cached_tokens": 0}},
        "system_fingerprint": "fp_bench"
    }))
    .unwrap_or_default()
}

/// An OpenAI-shaped 429.
pub fn openai_429() -> Vec<u8> {
    serde_json::to_vec(&json!({"error": {
        "message": "Rate limit reached for requests. Please try again in 20ms.",
        "type": "requests", "param": null, "code": "rate_limit_exceeded"}}))
    .unwrap_or_default()
}

/// A non-streamed Anthropic `message`.
pub fn anthropic_answer() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": "msg_bench0001",
        "type": "message",
        "role": "assistant",
        "model": "claude-bench",
        "content": [{"type": "text", "text": answer_text()}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {"input_tokens": 260, "output_tokens": 70,
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    }))
    .unwrap_or_default()
}

/// A non-streamed AWS Bedrock Converse answer (the same text and usage).
pub fn bedrock_answer() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "output": {"message": {"role": "assistant", "content": [{"text": answer_text()}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 260, "outputTokens": 70, "totalTokens": 330},
        "metrics": {"latencyMs": 412}
    }))
    .unwrap_or_default()
}

/// A non-streamed Gemini `generateContent` answer, as Gemini on Vertex AI sends it.
pub fn gemini_answer() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "candidates": [{"content": {"role": "model", "parts": [{"text": answer_text()}]},
                        "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 260, "candidatesTokenCount": 70, "totalTokenCount": 330},
        "modelVersion": "gemini-bench",
        "responseId": "bench0001"
    }))
    .unwrap_or_default()
}

/// An Anthropic answer that calls a tool.
pub fn anthropic_tool_answer() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": "msg_bench0002",
        "type": "message",
        "role": "assistant",
        "model": "claude-bench",
        "content": [
            {"type": "text", "text": "It is raining in Paris, so I will open a ticket."},
            {"type": "tool_use", "id": "toolu_bench01", "name": "create_ticket",
             "input": {"title": "Rain in Paris", "body": "Light rain, 14 °C, wind 18 km/h.",
                       "priority": "normal", "labels": ["weather", "paris"]}}
        ],
        "stop_reason": "tool_use",
        "stop_sequence": null,
        "usage": {"input_tokens": 410, "output_tokens": 62}
    }))
    .unwrap_or_default()
}

fn delta_words() -> Vec<String> {
    let mut rng = Rng(99);
    (0..STREAM_DELTAS)
        .map(|i| {
            if i == 0 {
                "Sure".to_string()
            } else {
                format!(" {}", rng.word())
            }
        })
        .collect()
}

fn sse(out: &mut Vec<u8>, event: Option<&str>, data: &Value) {
    if let Some(e) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(e.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&serde_json::to_vec(data).unwrap_or_default());
    out.extend_from_slice(b"\n\n");
}

/// An OpenAI-compatible stream: role chunk, [`STREAM_DELTAS`] content chunks, the finish
/// chunk, the usage chunk and `[DONE]`.
pub fn openai_stream() -> Vec<u8> {
    let mut out = Vec::new();
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-bench0003", "object": "chat.completion.chunk",
               "created": 1_700_000_000u64, "model": "bench-model", "system_fingerprint": "fp_bench",
               "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
    };
    sse(
        &mut out,
        None,
        &chunk(json!({"role": "assistant", "content": ""}), Value::Null),
    );
    for w in delta_words() {
        sse(&mut out, None, &chunk(json!({"content": w}), Value::Null));
    }
    sse(&mut out, None, &chunk(json!({}), json!("stop")));
    sse(
        &mut out,
        None,
        &json!({"id": "chatcmpl-bench0003", "object": "chat.completion.chunk",
                "created": 1_700_000_000u64, "model": "bench-model", "choices": [],
                "usage": {"prompt_tokens": 260, "completion_tokens": STREAM_DELTAS, "total_tokens": 260 + STREAM_DELTAS}}),
    );
    out.extend_from_slice(b"data: [DONE]\n\n");
    out
}

/// An Anthropic stream: `message_start`, `content_block_start`, `ping`,
/// [`STREAM_DELTAS`] text deltas, `content_block_stop`, `message_delta`, `message_stop`.
/// Written in Anthropic's own key order (`type` first), not serde_json's sorted one.
pub fn anthropic_stream() -> Vec<u8> {
    let mut out = Vec::new();
    let mut event = |name: &str, data: &str| {
        out.extend_from_slice(format!("event: {name}\ndata: {data}\n\n").as_bytes());
    };
    event(
        "message_start",
        r#"{"type":"message_start","message":{"id":"msg_bench0003","type":"message","role":"assistant","model":"claude-bench","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":260,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}"#,
    );
    event(
        "content_block_start",
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    );
    event("ping", r#"{"type": "ping"}"#);
    for w in delta_words() {
        let text = serde_json::to_string(&w).unwrap_or_default();
        event(
            "content_block_delta",
            &format!(
                r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":{text}}}}}"#
            ),
        );
    }
    event(
        "content_block_stop",
        r#"{"type":"content_block_stop","index":0}"#,
    );
    event(
        "message_delta",
        &format!(
            r#"{{"type":"message_delta","delta":{{"stop_reason":"end_turn","stop_sequence":null}},"usage":{{"output_tokens":{STREAM_DELTAS}}}}}"#
        ),
    );
    event("message_stop", r#"{"type":"message_stop"}"#);
    out
}

/// The events of a stream in wire form, one slice per event (blank line included), as a
/// provider flushes them.
pub fn split_events(stream: &[u8]) -> Vec<&[u8]> {
    let mut events = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < stream.len() {
        if stream[i] == b'\n' && stream[i + 1] == b'\n' {
            events.push(&stream[start..i + 2]);
            start = i + 2;
            i += 2;
        } else {
            i += 1;
        }
    }
    if start < stream.len() {
        events.push(&stream[start..]);
    }
    events
}

/// The gateway config the native benches route with (same aliases as `bench/gateway.yaml`,
/// which the load harness uses).
pub fn gateway_config() -> Value {
    json!({
        "model_list": [
            {"model_name": "bench-openai", "litellm_params": {"model": "openai/bench-model",
              "api_base": "http://127.0.0.1:18001/openai/v1", "api_key": "os.environ/BENCH_PROVIDER_KEY"}},
            {"model_name": "bench-anthropic", "litellm_params": {"model": "anthropic/claude-bench",
              "api_base": "http://127.0.0.1:18001/anthropic", "api_key": "os.environ/BENCH_PROVIDER_KEY"}}
        ],
        "general_settings": {"master_key": "sk-bench-master"}
    })
}

/// The client key of [`gateway_config`].
pub const MASTER_KEY: &str = "sk-bench-master";

/// The gateway alias the benches route each measured provider to.
pub fn alias(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Anthropic => "bench-anthropic",
        _ => "bench-openai",
    }
}

/// What an attempt to a bench deployment of `kind` knows about it.
pub fn target(kind: ProviderKind, options: &ProviderOptions) -> Target<'_> {
    Target {
        upstream_model: match kind {
            ProviderKind::Anthropic => "claude-bench",
            _ => "bench-model",
        },
        base_path: match kind {
            ProviderKind::Anthropic => "/anthropic",
            _ => "/openai/v1",
        },
        api_key: Some("sk-provider-bench"),
        now_unix_secs: 1_700_000_000,
        options,
    }
}
