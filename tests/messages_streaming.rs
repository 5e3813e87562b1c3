//! `POST /v1/messages` streams against recorded-shape fixtures, replayed at every split
//! point (the pattern of `tests/streaming.rs`).
//!
//! Each `tests/fixtures/messages/stream_<provider>_<case>/` holds the client's Anthropic
//! request (`messages_request.json`), the provider (`provider`), the provider's wire stream
//! (`upstream.sse`, or Bedrock's event stream written out as `upstream.frames.json`) and
//! the stream the client must receive (`messages.sse`). The output is
//! compared event by event as JSON; then the same upstream bytes are cut into two pieces at
//! every offset, three pieces around every offset, single bytes, and rewritten with CRLF
//! line ends: every variant must give byte-identical output. `GOLDEN_BLESS=1` rewrites
//! `messages.sse`.

use llm_gateway::messages_api::InboundApi;
use llm_gateway::provider::RequestFromBody;
use std::path::{Path, PathBuf};

mod common;

use llm_gateway::messages_api::translator::translator;
use llm_gateway::provider::{ProviderKind, Translator};
use llm_gateway::usage::Usage;
use serde_json::Value;

struct Case {
    name: String,
    dir: PathBuf,
    provider: ProviderKind,
    request: Vec<u8>,
    upstream: Vec<u8>,
    /// The upstream is AWS's binary event stream (Claude on Bedrock through InvokeModel).
    frames: bool,
}

impl Case {
    /// Anthropic's own stream, passed on as it came (Claude on Bedrock: unwrapped).
    fn passed_through(&self) -> bool {
        self.provider == ProviderKind::Anthropic || self.frames
    }
}

impl Case {
    fn run(&self, pieces: &[&[u8]]) -> (Vec<u8>, Option<Usage>) {
        let mut t: Box<dyn Translator> = translator(
            self.provider,
            InboundApi::Messages,
            common::target_for(self.provider).upstream_model,
        );
        let target = common::target_for(self.provider);
        t.request_from_body(InboundApi::Messages, &self.request, &target)
            .unwrap_or_else(|e| panic!("{}: request refused: {e}", self.name));
        assert!(t.is_stream(), "{}", self.name);
        let mut out = Vec::new();
        let last = pieces.len().saturating_sub(1);
        for (i, piece) in pieces.iter().enumerate() {
            t.stream(piece, i == last, &mut out);
        }
        (out, t.stream_usage())
    }
}

fn cases() -> Vec<Case> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/messages");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.into_iter()
        .map(|dir| {
            let provider = std::fs::read_to_string(dir.join("provider")).unwrap();
            let frames = dir.join("upstream.frames.json");
            let (upstream, frames) = match std::fs::read(&frames) {
                Ok(json) => (common::encode_frames(&json), true),
                Err(_) => (std::fs::read(dir.join("upstream.sse")).unwrap(), false),
            };
            Case {
                name: dir.file_name().unwrap().to_string_lossy().into_owned(),
                provider: ProviderKind::from_name(provider.trim()).unwrap(),
                request: std::fs::read(dir.join("messages_request.json")).unwrap(),
                upstream,
                frames,
                dir,
            }
        })
        .collect()
}

/// Parses an Anthropic stream strictly: `event: <type>\ndata: <json>\n\n`, the event name
/// repeating the data's `type`.
fn events(name: &str, bytes: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(bytes).unwrap();
    assert!(text.ends_with("\n\n"), "{name}: must end with a blank line");
    text.strip_suffix("\n\n")
        .unwrap()
        .split("\n\n")
        .map(|event| {
            let (head, data) = event
                .split_once('\n')
                .unwrap_or_else(|| panic!("{name}: {event:?}"));
            let kind = head.strip_prefix("event: ").unwrap();
            let v: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(v["type"], kind, "{name}: event name and type");
            v
        })
        .collect()
}

/// What every stream keeps: it starts with `message_start`, each block opens and closes
/// in order with its own index, and it ends with `message_stop` or an `error`.
fn check_sequence(name: &str, got: &[Value]) {
    let kinds: Vec<&str> = got.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let last = *kinds.last().unwrap();
    assert!(
        matches!(last, "message_stop" | "error"),
        "{name}: ends with {last}"
    );
    if last == "message_stop" {
        assert_eq!(kinds[0], "message_start", "{name}");
        assert_eq!(kinds[kinds.len() - 2], "message_delta", "{name}");
    }
    let mut open: Option<u64> = None;
    let mut next = 0;
    for e in got {
        match e["type"].as_str().unwrap() {
            "content_block_start" => {
                assert!(open.is_none(), "{name}: block opened inside another");
                assert_eq!(e["index"], next, "{name}: block index");
                open = e["index"].as_u64();
            }
            "content_block_delta" => assert_eq!(e["index"].as_u64(), open, "{name}: delta"),
            "content_block_stop" => {
                assert_eq!(e["index"].as_u64(), open, "{name}: stop");
                open = None;
                next += 1;
            }
            _ => {}
        }
    }
}

fn crlf(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() * 2);
    for &b in input {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

#[test]
fn messages_streams_at_every_split_point() {
    let bless = std::env::var_os("GOLDEN_BLESS").is_some();
    let all = cases();
    assert!(all.len() >= 8, "fixtures missing");
    for case in &all {
        let (whole, usage) = case.run(&[&case.upstream]);
        let expected_path = case.dir.join("messages.sse");
        let got = events(&case.name, &whole);
        if bless {
            std::fs::write(&expected_path, &whole).unwrap();
        }
        let expected = events(&case.name, &std::fs::read(&expected_path).unwrap());
        assert_eq!(
            got,
            expected,
            "{}: got\n{}",
            case.name,
            String::from_utf8_lossy(&whole)
        );
        check_sequence(&case.name, &got);
        if case.provider == ProviderKind::Anthropic {
            assert_eq!(whole, case.upstream, "{}: passed through as is", case.name);
        }
        // `message_delta` carries exactly the usage the gateway records.
        if let Some(delta) = got.iter().find(|e| e["type"] == "message_delta") {
            let u = usage.unwrap_or_else(|| panic!("{}: no usage recorded", case.name));
            assert_eq!(
                delta["usage"]["output_tokens"], u.completion_tokens,
                "{}",
                case.name
            );
            if !case.passed_through() {
                let input = delta["usage"]["input_tokens"].as_u64().unwrap()
                    + delta["usage"]["cache_read_input_tokens"].as_u64().unwrap()
                    + delta["usage"]["cache_creation_input_tokens"]
                        .as_u64()
                        .unwrap();
                assert_eq!(input, u.prompt_tokens, "{}", case.name);
            }
        }
        let input = &case.upstream;
        for i in 0..=input.len() {
            let (a, b) = input.split_at(i);
            assert_eq!(case.run(&[a, b]).0, whole, "{}: split at {i}", case.name);
            for j in i..(i + 4).min(input.len()) {
                let three = [&input[..i], &input[i..j], &input[j..]];
                assert_eq!(case.run(&three).0, whole, "{}: split at {i},{j}", case.name);
            }
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(case.run(&bytes).0, whole, "{}: 1-byte pieces", case.name);
        if !case.passed_through() {
            // A pass-through forwards the provider's own line ends.
            let variant = crlf(input);
            assert_eq!(case.run(&[&variant]).0, whole, "{}: CRLF", case.name);
        }
    }
}

/// A stream cut anywhere ends cleanly: with `message_stop` or one `error` event, never
/// with a half-written event, and nothing follows the end.
#[test]
fn messages_streams_cut_anywhere_end_cleanly() {
    for case in cases() {
        if case.passed_through() {
            continue; // passed through as it came
        }
        for end in 0..=case.upstream.len() {
            let (out, _) = case.run(&[&case.upstream[..end]]);
            let got = events(&case.name, &out);
            let last = got.last().unwrap()["type"].as_str().unwrap().to_string();
            assert!(
                matches!(last.as_str(), "message_stop" | "error"),
                "{}: cut at {end} ends with {last}",
                case.name
            );
            let ends = got
                .iter()
                .filter(|e| matches!(e["type"].as_str(), Some("message_stop" | "error")))
                .count();
            assert_eq!(ends, 1, "{}: cut at {end}", case.name);
        }
    }
}

/// Requests of every wrong shape are refused with a 400 (or mapped), never a panic, by
/// both translators.
#[test]
fn malformed_messages_requests_are_refused() {
    let bodies: &[&str] = &[
        "",
        "[]",
        "null",
        r#"{"model":1,"max_tokens":1,"messages":[{"role":"user","content":"x"}]}"#,
        r#"{"model":"m","max_tokens":"1","messages":[{"role":"user","content":"x"}]}"#,
        r#"{"model":"m","max_tokens":1,"messages":{}}"#,
        r#"{"model":"m","max_tokens":1,"messages":[1]}"#,
        r#"{"model":"m","max_tokens":1,"messages":[{"role":"tool","content":"x"}]}"#,
        r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":7}]}"#,
        r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[1,"x",{"type":7}]}]}"#,
        r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"file","file_id":"f"}}]}]}"#,
        r#"{"model":"m","max_tokens":1,"messages":[{"role":"assistant","content":[{"type":"tool_use","id":3,"name":null,"input":"x"}]}]}"#,
        r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":null,"content":5,"is_error":"yes"}]}]}"#,
        r#"{"model":"m","max_tokens":1,"system":5,"tools":"x","tool_choice":"auto","thinking":"on","stop_sequences":"s","messages":[{"role":"user","content":"x"}]}"#,
        r#"{"model":"m","max_tokens":1,"tools":[1,{"name":5,"input_schema":"s"}],"tool_choice":{"type":"tool"},"messages":[{"role":"user","content":"x"}]}"#,
        r#"{"model":"m","max_tokens":1,"messages":[{"role":"system","content":[{"text":5}]}]}"#,
    ];
    for kind in [
        ProviderKind::OpenAi,
        ProviderKind::Gemini,
        ProviderKind::Cohere,
        ProviderKind::Anthropic,
    ] {
        let target = common::target_for(kind);
        for body in bodies {
            let mut t = translator(kind, InboundApi::Messages, target.upstream_model);
            if let Err(e) = t.request_from_body(InboundApi::Messages, body.as_bytes(), &target) {
                assert_eq!(e.status, 400, "{kind:?} {body}: {e}");
            }
        }
    }
}
