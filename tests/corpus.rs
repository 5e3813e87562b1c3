//! One request corpus for every provider: each input of `tests/corpus/` is translated for
//! every provider in [`ProviderKind::ALL`] and compared with that provider's snapshot in
//! `tests/fixtures/<provider>/corpus/<input>.json`, which holds either the request the
//! provider gets or the refusal the client gets (`tests/corpus/README.md`). A provider
//! added to the gateway runs every input at once; a snapshot it lacks fails the test by
//! name. `GOLDEN_BLESS=1` writes missing and changed snapshots.

mod common;

use llm_gateway::messages_api::InboundApi;
use llm_gateway::provider::RequestFromBody;
use std::fs;
use std::path::PathBuf;

use common::{fixtures_dir, json_diff, target_for, CORPUS_DIR};
use llm_gateway::provider::{translator_for, ProviderKind};
use serde_json::{json, Value};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// The corpus inputs, by name, in order.
fn inputs() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = fs::read_dir(corpus_dir())
        .expect("tests/corpus exists")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

/// What the gateway does with `body` for `kind`, as a snapshot value.
fn translate(kind: ProviderKind, body: &[u8]) -> Value {
    let mut translator = translator_for(kind);
    match translator.request_from_body(InboundApi::Chat, body, &target_for(kind)) {
        Ok(up) => {
            let body: Value = serde_json::from_slice(&up.body).expect("translated body is JSON");
            let headers: Vec<Value> = up.headers.iter().map(|(k, v)| json!([k, v])).collect();
            json!({"path": up.path, "headers": headers, "body": body})
        }
        Err(e) => {
            let body: Value = serde_json::from_slice(&e.to_json()).expect("error is JSON");
            json!({"refusal": {"status": e.status, "body": body}})
        }
    }
}

#[test]
fn every_provider_runs_every_input() {
    let bless = std::env::var_os("GOLDEN_BLESS").is_some();
    let inputs = inputs();
    assert!(
        inputs.len() >= 20,
        "the corpus lost inputs: {}",
        inputs.len()
    );
    let mut failures = Vec::new();
    for &kind in ProviderKind::ALL {
        let dir = fixtures_dir().join(kind.name()).join(CORPUS_DIR);
        for (name, body) in &inputs {
            let actual = translate(kind, body);
            let path = dir.join(format!("{name}.json"));
            let expected = fs::read(&path)
                .ok()
                .map(|b| serde_json::from_slice::<Value>(&b).expect("snapshot is JSON"));
            let diff = match &expected {
                Some(e) => json_diff(e, &actual),
                None => vec![format!(
                    "missing snapshot: provider `{}` has no tests/fixtures/{}/corpus/{name}.json for tests/corpus/{name}.json",
                    kind.name(),
                    kind.name()
                )],
            };
            if diff.is_empty() {
                continue;
            }
            if bless {
                fs::create_dir_all(&dir).unwrap();
                let text = serde_json::to_string_pretty(&actual).unwrap() + "\n";
                fs::write(&path, text).unwrap();
            } else {
                failures.push(format!(
                    "{} / {name}:\n  {}",
                    kind.name(),
                    diff.join("\n  ")
                ));
            }
        }
        // A snapshot whose input is gone is stale.
        if let Ok(entries) = fs::read_dir(&dir) {
            for e in entries.filter_map(|e| e.ok()) {
                let stem = e.path().file_stem().unwrap().to_string_lossy().into_owned();
                if !inputs.iter().any(|(n, _)| *n == stem) {
                    failures.push(format!(
                        "{}: snapshot corpus/{stem}.json has no input tests/corpus/{stem}.json",
                        kind.name()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A refusal names the field the provider cannot take (never a generic 400).
#[test]
fn refusals_name_the_field() {
    for &kind in ProviderKind::ALL {
        for (name, body) in inputs() {
            let v = translate(kind, &body);
            if let Some(r) = v.get("refusal") {
                assert_eq!(r["status"], 400, "{} / {name}: {r}", kind.name());
                let param = r["body"]["error"]["param"].as_str().unwrap_or("");
                assert!(
                    !param.is_empty(),
                    "{} / {name} refuses without naming a field: {r}",
                    kind.name()
                );
            }
        }
    }
}
