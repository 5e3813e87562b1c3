//! `/v1/responses` translation against fixtures, streams replayed at every split point.
//!
//! Each `tests/fixtures/responses/<case>/` holds:
//!
//! | file | what |
//! |---|---|
//! | `provider` | the deployment's provider (`openai`, `azure`, `anthropic`, `gemini`, ...) |
//! | `request.json` | the client's Responses request |
//! | `upstream_request.json` | the body the gateway sends upstream (golden) |
//! | `upstream.sse` / `upstream_response.json` | the provider's stream or answer |
//! | `upstream_status` | the provider's status (default 200) |
//! | `expected.sse` / `expected_response.json` | what the client gets (golden) |
//! | `expected_status` | the client's status (default 200) |
//! | `usage.json` | the usage the gateway accounts (golden) |
//! | `expected_error.json` | a refused request: the error the client gets (golden) |
//!
//! A stream must give byte-identical output however the provider's bytes are split (two
//! pieces at every offset, three over a sweep, single bytes). `GOLDEN_BLESS=1` rewrites the
//! golden files from what the translation produced.

mod common;

use llm_gateway::messages_api::InboundApi;
use llm_gateway::provider::RequestFromBody;
use std::fs;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use llm_gateway::provider::{ProviderKind, Translator};
use llm_gateway::responses_api;
use serde_json::Value;

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/responses");
    let mut dirs: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 10, "{} cases", dirs.len());
    dirs
}

fn bless() -> bool {
    std::env::var("GOLDEN_BLESS").is_ok_and(|v| v == "1")
}

fn read(dir: &Path, name: &str) -> Option<Vec<u8>> {
    fs::read(dir.join(name)).ok()
}

/// Compares `actual` with the golden file `name` (as JSON values when `json`).
fn golden(dir: &Path, name: &str, actual: &[u8], json: bool) {
    let path = dir.join(name);
    let expected = fs::read(&path).ok();
    let same = match (&expected, json) {
        (Some(e), true) => {
            serde_json::from_slice::<Value>(e).ok() == serde_json::from_slice::<Value>(actual).ok()
        }
        (Some(e), false) => e == actual,
        (None, _) => false,
    };
    if same {
        return;
    }
    if bless() {
        let bytes = if json {
            let v: Value = serde_json::from_slice(actual).unwrap();
            let mut s = serde_json::to_vec_pretty(&v).unwrap();
            s.push(b'\n');
            s
        } else {
            actual.to_vec()
        };
        fs::write(&path, bytes).unwrap();
        return;
    }
    panic!(
        "{}: differs (GOLDEN_BLESS=1 rewrites it)\n--- expected\n{}\n--- actual\n{}",
        path.display(),
        String::from_utf8_lossy(expected.as_deref().unwrap_or_default()),
        String::from_utf8_lossy(actual)
    );
}

struct Case {
    kind: ProviderKind,
    request: Vec<u8>,
}

impl Case {
    fn load(dir: &Path) -> Case {
        let name = fs::read_to_string(dir.join("provider")).unwrap();
        let kind = ProviderKind::from_name(name.trim()).unwrap();
        Case {
            kind,
            request: read(dir, "request.json").unwrap(),
        }
    }

    fn translator(
        &self,
    ) -> Result<(Box<dyn Translator>, Vec<u8>), llm_gateway::error::GatewayError> {
        let call = responses_api::parse(&self.request)?;
        let mut t = responses_api::translator_for(self.kind, Rc::new(call));
        let target = common::target_for(self.kind);
        let upstream = t.request_from_body(InboundApi::Responses, &self.request, &target)?;
        Ok((t, upstream.body))
    }

    fn stream(&self, pieces: &[&[u8]]) -> (String, Option<llm_gateway::usage::Usage>) {
        let (mut t, _) = self.translator().unwrap();
        let mut out = Vec::new();
        let last = pieces.len().saturating_sub(1);
        for (i, p) in pieces.iter().enumerate() {
            t.stream(p, i == last, &mut out);
        }
        (String::from_utf8_lossy(&out).into_owned(), t.stream_usage())
    }
}

fn usage_json(u: Option<llm_gateway::usage::Usage>) -> Vec<u8> {
    let v = u.map(|u| {
        serde_json::json!({"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "cached_tokens": u.cache_read_tokens, "reasoning_tokens": u.reasoning_tokens})
    });
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn responses_cases() {
    for dir in cases() {
        let case = Case::load(&dir);
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let (mut t, upstream_body) = match case.translator() {
            Ok(x) => x,
            Err(e) => {
                assert!(
                    read(&dir, "upstream.sse").is_none()
                        && read(&dir, "upstream_response.json").is_none(),
                    "{name}: refused: {e:?}"
                );
                golden(&dir, "expected_error.json", &e.to_json(), true);
                let status = read(&dir, "expected_status").map_or(400, |s| {
                    String::from_utf8(s).unwrap().trim().parse().unwrap()
                });
                assert_eq!(e.status, status, "{name}");
                continue;
            }
        };
        golden(&dir, "upstream_request.json", &upstream_body, true);
        if let Some(sse) = read(&dir, "upstream.sse") {
            assert!(t.is_stream(), "{name}: not a stream");
            let (out, usage) = case.stream(&[&sse]);
            golden(&dir, "expected.sse", out.as_bytes(), false);
            golden(&dir, "usage.json", &usage_json(usage), true);
            check_events(&name, &out, case.kind);
            for at in 0..=sse.len() {
                let (a, b) = sse.split_at(at);
                assert_eq!(case.stream(&[a, b]).0, out, "{name}: split at {at}");
            }
            for at in (0..sse.len()).step_by(7) {
                let end = (at + 13).min(sse.len());
                let pieces = [&sse[..at], &sse[at..end], &sse[end..]];
                assert_eq!(case.stream(&pieces).0, out, "{name}: split at {at}, {end}");
            }
            let bytes: Vec<&[u8]> = sse.chunks(1).collect();
            assert_eq!(case.stream(&bytes).0, out, "{name}: byte by byte");
        } else if let Some(body) = read(&dir, "upstream_response.json") {
            assert!(!t.is_stream(), "{name}: a stream");
            let status = read(&dir, "upstream_status").map_or(200, |s| {
                String::from_utf8(s).unwrap().trim().parse().unwrap()
            });
            let answer = t.response(status, &body);
            golden(&dir, "expected_response.json", &answer.body, true);
            golden(&dir, "usage.json", &usage_json(answer.usage), true);
            let expected = read(&dir, "expected_status").map_or(200, |s| {
                String::from_utf8(s).unwrap().trim().parse().unwrap()
            });
            assert_eq!(answer.status, expected, "{name}");
        }
    }
}

/// What every translated stream must be: `sequence_number` 0, 1, 2, ... on every event,
/// the event name equal to its `type`, and one final event at the end.
fn check_events(name: &str, text: &str, kind: ProviderKind) {
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    let mut last = "";
    for (n, e) in events.iter().enumerate() {
        let mut lines = e.lines();
        let event = lines.next().unwrap().strip_prefix("event: ").unwrap();
        let data: Value =
            serde_json::from_str(lines.next().unwrap().strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(data["type"], event, "{name}");
        if !responses_api::speaks_responses(kind) {
            assert_eq!(data["sequence_number"], n as u64, "{name}: {e}");
        }
        last = event;
    }
    assert!(
        matches!(
            last,
            "response.completed" | "response.incomplete" | "response.failed"
        ),
        "{name}: ends with {last}"
    );
}

/// Every test the Responses section of `docs/conformance.md` cites exists: case
/// directories, Rust test functions (`file.rs::name`) and pytest functions (`file.py::name`).
#[test]
fn endpoint_table_cites_existing_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = fs::read_to_string(root.join("docs/conformance.md")).unwrap();
    let start = doc.find("### `POST /v1/responses`").unwrap();
    let section = &doc[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut cited = 0;
    for (n, piece) in section.split('`').enumerate() {
        if n % 2 == 0 || !(piece.starts_with("tests/") || piece.starts_with("src/")) {
            continue;
        }
        cited += 1;
        match piece.split_once("::") {
            Some((file, name)) => {
                let source = fs::read_to_string(root.join(file))
                    .unwrap_or_else(|_| panic!("`{piece}`: no file {file}"));
                let def = if file.ends_with(".py") { "def " } else { "fn " };
                assert!(
                    source.contains(&format!("{def}{name}(")),
                    "`{piece}`: no test {name} in {file}"
                );
            }
            None => assert!(root.join(piece).is_dir(), "`{piece}`: no such case"),
        }
    }
    assert!(cited >= 20, "{cited} citations");
}

/// A small deterministic generator for the mutation test.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Mutates `bytes` a few times: a byte changed, removed, duplicated, or a JSON-ish token
/// inserted.
fn mutate(rng: &mut XorShift, bytes: &[u8]) -> Vec<u8> {
    const TOKENS: &[&[u8]] = &[
        b"null",
        b"[]",
        b"{}",
        b"\"",
        b"\\u0000",
        b"-1",
        b"1e999",
        b"\n\n",
        b"data: ",
        b"{\"error\":{}}",
        b"\"type\":\"function_call\"",
        b"\"index\":7",
        b"[DONE]",
    ];
    let mut out = bytes.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(4) {
            0 if at < out.len() => out[at] = rng.next() as u8,
            1 if at < out.len() => {
                out.remove(at);
            }
            2 => {
                let end = (at + rng.below(40)).min(out.len());
                let copy = out[at..end].to_vec();
                out.splice(at..at, copy);
            }
            _ => {
                let token = TOKENS[rng.below(TOKENS.len())];
                out.splice(at..at, token.iter().copied());
            }
        }
    }
    out
}

/// Mutated requests, streams and answers never panic, and what a bridged stream writes is
/// always well-formed events.
#[test]
fn mutated_inputs_never_panic() {
    let mut rng = XorShift(0x5eed_1234_abcd_0042);
    for dir in cases() {
        let case = Case::load(&dir);
        for _ in 0..150 {
            let request = mutate(&mut rng, &case.request);
            if let Ok(call) = responses_api::parse(&request) {
                let mut t = responses_api::translator_for(case.kind, Rc::new(call));
                let _ = t.request_from_body(
                    InboundApi::Responses,
                    &request,
                    &common::target_for(case.kind),
                );
            }
        }
        let Ok((_, _)) = case.translator() else {
            continue;
        };
        if let Some(sse) = read(&dir, "upstream.sse") {
            for _ in 0..150 {
                let bytes = mutate(&mut rng, &sse);
                let cut = rng.below(bytes.len() + 1);
                let (out, _) = case.stream(&[&bytes[..cut], &bytes[cut..]]);
                if responses_api::speaks_responses(case.kind) {
                    continue;
                }
                for event in out.split("\n\n").filter(|e| !e.is_empty()) {
                    let data = event.lines().nth(1).and_then(|l| l.strip_prefix("data: "));
                    let parsed = data.and_then(|d| serde_json::from_str::<Value>(d).ok());
                    assert!(parsed.is_some(), "{}: {event}", dir.display());
                }
            }
        }
        if let Some(body) = read(&dir, "upstream_response.json") {
            for _ in 0..150 {
                let (mut t, _) = case.translator().unwrap();
                let answer = t.response(200, &mutate(&mut rng, &body));
                assert!(
                    serde_json::from_slice::<Value>(&answer.body).is_ok(),
                    "{}",
                    dir.display()
                );
            }
        }
    }
}
