//! What a traced answer leaves for its span (`otel::AnswerFacts`: `gen_ai.response.id`,
//! `gen_ai.response.finish_reasons` and the captured text), for every provider's recorded
//! answers, JSON and streamed, in the chat shape and in the Messages API's: each answer
//! is translated as the gateway translates it, read key by key as the module reads it
//! (a stream one event per piece), and compared with what a full parse of the same
//! answer says.

mod common;

use std::fs;
use std::path::Path;

use common::{cases, encode_frames, fixtures_dir, target_for, Case};
use llm_gateway::messages_api::{translator::translator, InboundApi};
use llm_gateway::otel::AnswerFacts;
use llm_gateway::provider::{translator_for, ProviderKind, RequestFromBody, Translator};
use llm_gateway::secrets::redact_key_like;
use serde_json::Value;

/// What a full parse says: the id, the finish reasons, the text.
#[derive(Debug, Default, PartialEq)]
struct Said {
    id: Option<String>,
    reasons: Vec<String>,
    text: String,
}

fn push_str(into: &mut Vec<String>, v: &Value) {
    if let Some(s) = v.as_str() {
        into.push(s.to_string());
    }
}

/// A chat completion, parsed.
fn said_by_completion(v: &Value) -> Said {
    let mut said = Said {
        id: v["id"].as_str().map(str::to_string),
        ..Said::default()
    };
    for choice in v["choices"].as_array().into_iter().flatten() {
        push_str(&mut said.reasons, &choice["finish_reason"]);
        said.text += choice["message"]["content"].as_str().unwrap_or_default();
    }
    said
}

/// The JSON of each `data:` event (not `[DONE]`).
fn data_events(sse: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(sse)
        .split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect()
}

/// A chat stream, parsed.
fn said_by_chunks(sse: &[u8]) -> Said {
    let mut said = Said::default();
    for chunk in data_events(sse) {
        if said.id.is_none() {
            said.id = chunk["id"].as_str().map(str::to_string);
        }
        for choice in chunk["choices"].as_array().into_iter().flatten() {
            push_str(&mut said.reasons, &choice["finish_reason"]);
            said.text += choice["delta"]["content"].as_str().unwrap_or_default();
        }
    }
    said
}

/// A Messages stream, parsed.
fn said_by_events(sse: &[u8]) -> Said {
    let mut said = Said::default();
    for event in data_events(sse) {
        match event["type"].as_str() {
            Some("message_start") => said.id = event["message"]["id"].as_str().map(str::to_string),
            Some("message_delta") => push_str(&mut said.reasons, &event["delta"]["stop_reason"]),
            Some("content_block_start") => {
                said.text += event["content_block"]["text"].as_str().unwrap_or_default()
            }
            Some("content_block_delta") => {
                said.text += event["delta"]["text"].as_str().unwrap_or_default()
            }
            _ => {}
        }
    }
    said
}

/// What the module's reader finds in `pieces`.
fn read(pieces: &[&[u8]], anthropic: bool) -> Said {
    let mut facts = AnswerFacts::new(Some(1 << 20));
    for p in pieces {
        facts.read(p, anthropic);
    }
    Said {
        id: facts.id.clone(),
        reasons: facts
            .finish_reasons()
            .map(|r| serde_json::from_slice(r).expect("finish reasons are a JSON array"))
            .unwrap_or_default(),
        text: facts.captured_text().unwrap_or_default(),
    }
}

/// The stream's events, each a piece, as the translators write them.
fn events_of(out: &[u8]) -> Vec<&[u8]> {
    let mut pieces = Vec::new();
    let mut rest = out;
    while let Some(i) = rest.windows(2).position(|w| w == b"\n\n") {
        let (event, next) = rest.split_at(i + 2);
        pieces.push(event);
        rest = next;
    }
    pieces
}

fn check(what: &str, said: Said, stream: Option<&[u8]>, whole: &[u8], anthropic: bool) -> Said {
    let expected = Said {
        text: redact_key_like(&said.text).into_owned(),
        ..said
    };
    let pieces = stream.map_or_else(|| vec![whole], events_of);
    let found = read(&pieces, anthropic);
    assert_eq!(found, expected, "{what}");
    // Read in other pieces, the same.
    assert_eq!(read(&[whole], anthropic), expected, "{what} in one piece");
    expected
}

fn stream_upstream(dir: &Path) -> Vec<u8> {
    match fs::read(dir.join("upstream.frames.json")) {
        Ok(frames) => encode_frames(&frames),
        Err(_) => fs::read(dir.join("upstream.sse")).unwrap(),
    }
}

/// A captured answer's text counts against the worker's byte limit, and only while captured.
#[test]
fn captured_text_is_held_bytes() {
    let chunk = br#"data: {"id":"c","choices":[{"index":0,"delta":{"content":"hello there"},"finish_reason":null}]}"#;
    let mut off = AnswerFacts::new(None);
    off.read(chunk, false);
    assert_eq!(off.held_bytes(), 0);
    let mut on = AnswerFacts::new(Some(1 << 20));
    on.read(chunk, false);
    assert!(
        on.held_bytes() >= "hello there".len(),
        "{}",
        on.held_bytes()
    );
}

#[test]
fn every_provider_answer_is_read_as_parsed() {
    let (mut json, mut streams, mut with_reasons) = (0, 0, 0);
    let mut providers = Vec::new();
    for entry in fs::read_dir(fixtures_dir()).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let Some(kind) = ProviderKind::from_name(&name) else {
            continue;
        };
        let target = target_for(kind);
        // JSON answers.
        for case in cases(&name) {
            let Case { dir: case_dir, .. } = &case;
            let Some(body) = case.bytes("upstream_response.json") else {
                continue;
            };
            let request = case
                .bytes("openai_request.json")
                .unwrap_or_else(|| common::MINIMAL_REQUEST.to_vec());
            let mut t = translator_for(kind);
            if t.request_from_body(InboundApi::Chat, &request, &target)
                .is_err()
                || t.is_stream()
            {
                continue;
            }
            let answer = t.response(case.status("upstream_status").unwrap_or(200), &body);
            if !(200..300).contains(&answer.status) {
                continue;
            }
            let v: Value = serde_json::from_slice(&answer.body).unwrap();
            let what = format!("{}", case_dir.display());
            let said = check(&what, said_by_completion(&v), None, &answer.body, false);
            json += 1;
            with_reasons += usize::from(!said.reasons.is_empty() && said.id.is_some());
        }
        // Streams.
        for entry in fs::read_dir(&dir).unwrap() {
            let case = entry.unwrap().path();
            let case_name = case.file_name().unwrap().to_string_lossy().into_owned();
            if !case_name.starts_with("stream_") || !case.join("openai.sse").is_file() {
                continue;
            }
            let mut t = translator_for(kind);
            t.request_from_body(
                InboundApi::Chat,
                &fs::read(case.join("openai_request.json")).unwrap(),
                &target,
            )
            .unwrap();
            let mut out = Vec::new();
            t.stream(&stream_upstream(&case), true, &mut out);
            let what = format!("{}", case.display());
            let said = check(&what, said_by_chunks(&out), Some(&out), &out, false);
            streams += 1;
            with_reasons += usize::from(!said.reasons.is_empty() && said.id.is_some());
        }
        providers.push(name);
    }
    // Messages API streams, in Anthropic's shape, from every kind of provider.
    let root = fixtures_dir().join("messages");
    for entry in fs::read_dir(&root).unwrap() {
        let case = entry.unwrap().path();
        if !case.is_dir() {
            continue;
        }
        let provider = fs::read_to_string(case.join("provider")).unwrap();
        let kind = ProviderKind::from_name(provider.trim()).unwrap();
        let target = target_for(kind);
        let mut t: Box<dyn Translator> =
            translator(kind, InboundApi::Messages, target.upstream_model);
        t.request_from_body(
            InboundApi::Messages,
            &fs::read(case.join("messages_request.json")).unwrap(),
            &target,
        )
        .unwrap();
        let mut out = Vec::new();
        // Claude on Bedrock answers in AWS event-stream frames.
        t.stream(&stream_upstream(&case), true, &mut out);
        let what = format!("{}", case.display());
        let said = check(&what, said_by_events(&out), Some(&out), &out, true);
        streams += 1;
        with_reasons += usize::from(!said.reasons.is_empty() && said.id.is_some());
    }
    providers.sort();
    assert!(providers.len() >= 20, "{providers:?}");
    assert!(
        json >= 40 && streams >= 70,
        "{json} JSON answers, {streams} streams"
    );
    assert!(
        with_reasons >= 80,
        "only {with_reasons} answers had an id and a reason"
    );
}
