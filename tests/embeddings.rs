//! `/v1/embeddings` translation: golden cases under `tests/fixtures/embeddings/<provider>/`
//! (layout in its README) for every wire API, and the refusals of what a provider cannot
//! take.

use llm_gateway::messages_api::InboundApi;
use llm_gateway::provider::RequestFromBody;
use std::fs;
use std::path::{Path, PathBuf};

use llm_gateway::config::model::ModelMode;
use llm_gateway::config::GatewayConfig;
use llm_gateway::embeddings::{parse_request, translate::translator_for};
use llm_gateway::provider::{ProviderKind, ProviderOptions, Target};
use serde_json::{json, Value};

const NOW: u64 = 1_700_000_000;

/// Every fixture folder.
const PROVIDERS: [&str; 6] = [
    "openai",
    "azure",
    "gemini",
    "cohere",
    "bedrock",
    "vertex_ai",
];

/// The upstream model of a case: Bedrock's `cohere_*` cases are Cohere Embed on Bedrock,
/// its others Titan Text Embeddings V2.
fn case_model(provider: &str, case: &Path, model: &'static str) -> &'static str {
    let name = case
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if provider == "bedrock" && name.starts_with("cohere_") {
        "cohere.embed-english-v3"
    } else {
        model
    }
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/embeddings")
}

/// The deployment each fixture folder stands for.
fn deployment(
    provider: &str,
) -> (
    ProviderKind,
    &'static str,
    &'static str,
    Option<&'static str>,
) {
    match provider {
        "openai" => (
            ProviderKind::OpenAi,
            "text-embedding-3-small",
            "/v1",
            Some("sk-test"),
        ),
        "azure" => (
            ProviderKind::Azure,
            "embed-large-deployment",
            "",
            Some("azure-test-key"),
        ),
        "gemini" => (
            ProviderKind::Gemini,
            "gemini-embedding-001",
            "",
            Some("AIza-test-key"),
        ),
        "cohere" => (ProviderKind::Cohere, "embed-v4.0", "", Some("co-test-key")),
        // Signed by Envoy: no key. `cohere_*` cases are Cohere Embed (`case_model`).
        "bedrock" => (
            ProviderKind::Bedrock,
            "amazon.titan-embed-text-v2:0",
            "",
            None,
        ),
        "vertex_ai" => (
            ProviderKind::VertexGemini,
            "text-embedding-005",
            "/v1/projects/p-1/locations/us-central1",
            Some("ya29.test-token"),
        ),
        other => panic!("no deployment for fixture folder {other}"),
    }
}

fn read(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok()
}

/// Compares `actual` with the expected file (JSON compared as values), or writes it when
/// blessing; returns a failure line.
fn check(case: &Path, file: &str, actual: &str, json: bool, bless: bool) -> Option<String> {
    let path = case.join(file);
    let pretty = if json {
        let v: Value = serde_json::from_str(actual).unwrap_or(Value::String(actual.into()));
        serde_json::to_string_pretty(&v).unwrap() + "\n"
    } else {
        format!("{actual}\n")
    };
    match read(&path) {
        Some(expected) => {
            let same = if json {
                serde_json::from_str::<Value>(&expected).ok()
                    == serde_json::from_str::<Value>(actual).ok()
            } else {
                expected.trim_end() == actual
            };
            if same {
                None
            } else if bless {
                fs::write(&path, pretty).unwrap();
                None
            } else {
                Some(format!(
                    "{}: expected\n{expected}\ngot\n{pretty}",
                    path.display()
                ))
            }
        }
        None if bless => {
            fs::write(&path, pretty).unwrap();
            None
        }
        None => Some(format!(
            "{} is missing (GOLDEN_BLESS=1 writes it)",
            path.display()
        )),
    }
}

/// Every case of every provider translates both ways to its expected files.
#[test]
fn golden_cases() {
    let bless = std::env::var_os("GOLDEN_BLESS").is_some();
    let options = ProviderOptions::default();
    let mut failures = Vec::new();
    let mut n = 0;
    for provider in PROVIDERS {
        let (kind, model, base_path, api_key) = deployment(provider);
        let mut cases: Vec<PathBuf> = fs::read_dir(dir().join(provider))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .collect();
        cases.sort();
        for case in cases {
            n += 1;
            let target = Target {
                upstream_model: case_model(provider, &case, model),
                base_path,
                api_key,
                now_unix_secs: NOW,
                options: &options,
            };
            let request = read(&case.join("request.json")).unwrap();
            let mut t = translator_for(kind);
            let up = t
                .request_from_body(InboundApi::Embeddings, request.as_bytes(), &target)
                .unwrap();
            assert!(!t.is_stream());
            failures.extend(check(&case, "upstream_path", &up.path, false, bless));
            let sent = String::from_utf8(up.body).unwrap();
            failures.extend(check(&case, "upstream_request.json", &sent, true, bless));
            let status: u16 =
                read(&case.join("upstream_status")).map_or(200, |s| s.trim().parse().unwrap());
            let answer = read(&case.join("upstream_response.json")).unwrap();
            // `upstream_headers`: `name: value` lines the provider answers with.
            let headers = read(&case.join("upstream_headers")).unwrap_or_default();
            let headers: Vec<(&[u8], &[u8])> = headers
                .lines()
                .filter_map(|l| l.split_once(": "))
                .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
                .collect();
            t.response_headers(&headers);
            let out = t.response(status, answer.as_bytes());
            let body = String::from_utf8(out.body).unwrap();
            assert!(!body.contains(api_key.unwrap_or("none")));
            failures.extend(check(&case, "openai_response.json", &body, true, bless));
            failures.extend(check(
                &case,
                "expected_status",
                &out.status.to_string(),
                false,
                bless,
            ));
            let usage = out
                .usage
                .map_or("none".to_string(), |u| u.prompt_tokens.to_string());
            failures.extend(check(&case, "usage", &usage, false, bless));
            if out.status == 200 {
                // The shape the openai SDK reads.
                let v: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(v["object"], "list", "{}", case.display());
                assert_eq!(v["data"][0]["object"], "embedding");
                assert_eq!(v["data"][0]["index"], 0);
                assert_eq!(v["usage"]["prompt_tokens"], v["usage"]["total_tokens"]);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(n >= 20, "only {n} cases");
}

/// The OpenAI family's body is the client's, byte for byte, but for the model.
#[test]
fn openai_family_forwards_the_body() {
    let options = ProviderOptions::default();
    let body = br#"{"input": [[1, 2], [3]],  "model": "embed", "encoding_format": "base64", "dimensions": 3, "x_extra": {"kept": true}}"#;
    for kind in [
        ProviderKind::OpenAi,
        ProviderKind::Mistral,
        ProviderKind::Together,
    ] {
        let mut t = translator_for(kind);
        let target = Target {
            upstream_model: "m-1",
            base_path: "/v1",
            api_key: Some("k"),
            now_unix_secs: NOW,
            options: &options,
        };
        let up = t
            .request_from_body(InboundApi::Embeddings, body, &target)
            .unwrap();
        let expected = String::from_utf8_lossy(body).replace("\"embed\"", "\"m-1\"");
        assert_eq!(String::from_utf8(up.body).unwrap(), expected);
        assert_eq!(up.path, "/v1/embeddings");
        // A base64 answer is passed on as sent.
        let answer = br#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":"AACAPw=="}],"model":"m-1","usage":{"prompt_tokens":3,"total_tokens":3}}"#;
        let out = t.response(200, answer);
        assert_eq!(out.body, answer.to_vec());
        assert_eq!(out.usage.unwrap().prompt_tokens, 3);
        assert!(!t.usage_estimated());
        // Passed on as sent only when the whole body is the one answer.
        let mut trailing = answer.to_vec();
        trailing.extend_from_slice(b"{}");
        assert_eq!(t.response(200, &trailing).status, 502);
    }
    let mut t = translator_for(ProviderKind::Gemini);
    let target = keyless("gemini-embedding-001", &options);
    t.request_from_body(
        InboundApi::Embeddings,
        br#"{"model":"e","input":"abcdefgh"}"#,
        &target,
    )
    .unwrap();
    let out = t.response(200, br#"{"embeddings":[{"values":[0.5]}]}"#);
    assert_eq!(out.usage.unwrap().prompt_tokens, 2);
    assert!(t.usage_estimated());
}

/// A deployment of `upstream_model` with no base path and no key.
fn keyless<'a>(upstream_model: &'a str, options: &'a ProviderOptions) -> Target<'a> {
    Target {
        upstream_model,
        base_path: "",
        api_key: None,
        now_unix_secs: NOW,
        options,
    }
}

/// What a provider cannot take is a 400 naming the field, before any call.
#[test]
fn provider_limits() {
    let options = ProviderOptions::default();
    let target = keyless("m", &options);
    let texts =
        |n: usize| serde_json::to_vec(&json!({"model": "e", "input": vec!["t"; n]})).unwrap();
    for (kind, limit) in [(ProviderKind::Gemini, 100), (ProviderKind::Cohere, 96)] {
        translator_for(kind)
            .request_from_body(InboundApi::Embeddings, &texts(limit), &target)
            .unwrap();
        let e = translator_for(kind)
            .request_from_body(InboundApi::Embeddings, &texts(limit + 1), &target)
            .unwrap_err();
        assert_eq!((e.status, e.param.as_deref()), (400, Some("input")), "{e}");
        let e = translator_for(kind)
            .request_from_body(
                InboundApi::Embeddings,
                br#"{"model":"e","input":[[1,2]]}"#,
                &target,
            )
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("input"));
    }
    // No embeddings API (Anthropic, Claude on Vertex AI), or a Bedrock model that is not
    // Titan Text Embeddings or Cohere Embed.
    for kind in [
        ProviderKind::Anthropic,
        ProviderKind::Bedrock,
        ProviderKind::VertexAnthropic,
    ] {
        let e = translator_for(kind)
            .request_from_body(
                InboundApi::Embeddings,
                br#"{"model":"e","input":"x"}"#,
                &target,
            )
            .unwrap_err();
        assert_eq!(
            (e.status, e.param.as_deref()),
            (400, Some("model")),
            "{kind:?}"
        );
    }
}

/// Titan and `gemini-embedding-001` on Vertex AI embed one input a request: more is a
/// 400 naming `input`; Cohere on Bedrock takes 96 and Vertex AI's other models 250.
#[test]
fn one_input_models() {
    let options = ProviderOptions::default();
    let target = |model| Target {
        upstream_model: model,
        base_path: "",
        api_key: Some("t"),
        now_unix_secs: NOW,
        options: &options,
    };
    let texts =
        |n: usize| serde_json::to_vec(&json!({"model": "e", "input": vec!["t"; n]})).unwrap();
    for (kind, model, limit) in [
        (ProviderKind::Bedrock, "amazon.titan-embed-text-v2:0", 1),
        (ProviderKind::VertexGemini, "gemini-embedding-001", 1),
        (ProviderKind::Bedrock, "us.cohere.embed-v4:0", 96),
        (ProviderKind::VertexGemini, "text-embedding-005", 250),
    ] {
        translator_for(kind)
            .request_from_body(InboundApi::Embeddings, &texts(limit), &target(model))
            .unwrap();
        let e = translator_for(kind)
            .request_from_body(InboundApi::Embeddings, &texts(limit + 1), &target(model))
            .unwrap_err();
        assert_eq!((e.status, e.param.as_deref()), (400, Some("input")), "{e}");
        if limit == 1 {
            assert!(e.message.contains("embeds one input per request"), "{e}");
        }
    }
    let e = translator_for(ProviderKind::Bedrock)
        .request_from_body(
            InboundApi::Embeddings,
            &texts(2),
            &target("amazon.titan-embed-text-v2:0"),
        )
        .unwrap_err();
    assert!(
        e.message.contains("Titan embeds one input per request"),
        "{e}"
    );
    // Text only.
    let e = translator_for(ProviderKind::VertexGemini)
        .request_from_body(
            InboundApi::Embeddings,
            br#"{"model":"e","input":[1,2]}"#,
            &target("text-embedding-005"),
        )
        .unwrap_err();
    assert_eq!(e.param.as_deref(), Some("input"));
}

/// A Vertex AI attempt without an access token is a 503, whatever Vertex answers, so
/// Envoy falls back; Bedrock's exception names decide the status.
#[test]
fn cloud_statuses() {
    let options = ProviderOptions::default();
    let mut t = translator_for(ProviderKind::VertexGemini);
    let target = keyless("text-embedding-005", &options);
    let up = t
        .request_from_body(
            InboundApi::Embeddings,
            br#"{"model":"e","input":"x"}"#,
            &target,
        )
        .unwrap();
    assert!(up.headers.is_empty());
    assert_eq!(t.response_status(401), 503);
    let out = t.response(401, br#"{"error":{"code":401,"status":"UNAUTHENTICATED"}}"#);
    assert_eq!(out.status, 503);

    let mut t = translator_for(ProviderKind::Bedrock);
    let host = ProviderOptions {
        host: Some("bedrock-runtime.us-east-1.amazonaws.com".into()),
        ..ProviderOptions::default()
    };
    let target = keyless("cohere.embed-v4:0", &host);
    let up = t
        .request_from_body(
            InboundApi::Embeddings,
            br#"{"model":"e","input":"x"}"#,
            &target,
        )
        .unwrap();
    assert_eq!(up.path, "/model/cohere.embed-v4%3A0/invoke");
    assert_eq!(
        up.headers,
        [(
            ":authority",
            "bedrock-runtime.us-east-1.amazonaws.com".to_string()
        )]
    );
    t.response_headers(&[(b"x-amzn-errortype", b"ModelNotReadyException")]);
    assert_eq!(t.response_status(429), 503);
}

fn config() -> GatewayConfig {
    GatewayConfig::from_json(
        json!({
            "general_settings": {"master_key": "os.environ/LLM_GATEWAY_MASTER_KEY"},
            "model_list": [
                {"model_name": "embed", "litellm_params": {"model": "openai/text-embedding-3-small", "api_key": "os.environ/OPENAI_API_KEY"}},
                {"model_name": "embed-cohere", "litellm_params": {"model": "cohere/embed-v4.0", "api_key": "os.environ/COHERE_API_KEY"}},
                {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o", "api_key": "os.environ/OPENAI_API_KEY"}},
                {"model_name": "claude", "litellm_params": {"model": "anthropic/claude-sonnet-4-5", "api_key": "os.environ/ANTHROPIC_API_KEY"}},
                {"model_name": "local", "litellm_params": {"model": "openai/my-embedder", "api_base": "http://127.0.0.1:8000/v1"}, "model_info": {"mode": "embedding"}},
                {"model_name": "unknown", "litellm_params": {"model": "openai/llama3", "api_base": "http://127.0.0.1:8000/v1"}},
                {"model_name": "titan", "litellm_params": {"model": "bedrock/amazon.titan-embed-text-v2:0"}},
                {"model_name": "nova", "litellm_params": {"model": "bedrock/amazon.nova-pro-v1:0"}, "model_info": {"mode": "chat"}},
                {"model_name": "vertex-embed", "litellm_params": {"model": "vertex_ai/text-embedding-005", "vertex_project": "p-1"}, "model_info": {"mode": "embedding"}}
            ]
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap()
}

/// A deployment's mode comes from `model_info.mode`, else the price table; Anthropic is
/// always chat; an alias knows its mode when its deployments agree.
#[test]
fn modes_from_config_and_table() {
    let c = config();
    let mode = |alias: &str| c.alias(alias).unwrap().mode;
    assert_eq!(mode("embed"), Some(ModelMode::Embedding));
    assert_eq!(mode("embed-cohere"), Some(ModelMode::Embedding));
    assert_eq!(mode("gpt"), Some(ModelMode::Chat));
    assert_eq!(mode("claude"), Some(ModelMode::Chat));
    assert_eq!(mode("local"), Some(ModelMode::Embedding));
    assert_eq!(mode("unknown"), None);
    assert_eq!(mode("titan"), Some(ModelMode::Embedding));
    assert_eq!(mode("vertex-embed"), Some(ModelMode::Embedding));
    // Priced on input tokens only.
    let price = c.deployment("embed").unwrap().price.unwrap();
    assert_eq!((price.input, price.output), (20_000, 0));

    let bad = |info: Value, model: &str| {
        GatewayConfig::from_json(
            json!({"general_settings": {"master_key": "os.environ/LLM_GATEWAY_MASTER_KEY"}, "model_list": [{"model_name": "m", "litellm_params": {"model": model, "api_key": "os.environ/K"}, "model_info": info}]})
                .to_string()
                .as_bytes(),
        )
        .unwrap_err()
    };
    let e = bad(json!({"mode": "rerank"}), "openai/x");
    assert_eq!(e.field, "model_list[0].model_info.mode");
    let e = bad(json!({"mode": "embedding"}), "anthropic/claude-sonnet-4-5");
    assert!(e.message.contains("no embeddings API"), "{}", e.message);
    // On Bedrock, Titan Text Embeddings and Cohere Embed only.
    let e = bad(json!({"mode": "embedding"}), "bedrock/amazon.nova-pro-v1:0");
    assert!(
        e.message
            .contains("`amazon.nova-pro-v1:0` has no embeddings API"),
        "{}",
        e.message
    );
}

/// Every deployment of a route is checked before the request goes out.
#[test]
fn deployment_checks() {
    let c = config();
    let request = parse_request(br#"{"model":"x","input":"hi"}"#).unwrap();
    assert!(request
        .check_deployment(c.deployment("embed").unwrap())
        .is_ok());
    let e = request
        .check_deployment(c.deployment("gpt").unwrap())
        .unwrap_err();
    assert_eq!((e.status, e.param.as_deref()), (400, Some("model")));
    let e = request
        .check_deployment(c.deployment("claude").unwrap())
        .unwrap_err();
    assert!(
        e.message
            .contains("(Anthropic `claude-sonnet-4-5`) is a chat model"),
        "{}",
        e.message
    );
    let many = serde_json::to_vec(&json!({"model": "x", "input": vec!["t"; 97]})).unwrap();
    let e = parse_request(&many)
        .unwrap()
        .check_deployment(c.deployment("embed-cohere").unwrap())
        .unwrap_err();
    assert_eq!(e.param.as_deref(), Some("input"));
    assert!(e.message.contains("at most 96"), "{}", e.message);
    // Titan: one input a request, refused before any call.
    let two = parse_request(br#"{"model":"x","input":["a","b"]}"#).unwrap();
    let e = two
        .check_deployment(c.deployment("titan").unwrap())
        .unwrap_err();
    assert_eq!(e.param.as_deref(), Some("input"));
    assert!(request
        .check_deployment(c.deployment("titan").unwrap())
        .is_ok());
    let e = request
        .check_deployment(c.deployment("nova").unwrap())
        .unwrap_err();
    assert_eq!(e.param.as_deref(), Some("model"));
}

/// Mangled requests and answers (bytes flipped, cut, spliced from other cases; bounded and
/// deterministic) never panic: a request is refused with a 400 or translated, an answer
/// becomes an OpenAI list or an OpenAI-shaped error with a status a client can use.
#[test]
fn mangled_inputs_never_panic() {
    let options = ProviderOptions::default();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n.max(1) as u64) as usize
    };
    let mut files: Vec<(String, &'static str, Vec<u8>, Vec<u8>)> = Vec::new();
    for provider in PROVIDERS {
        for e in fs::read_dir(dir().join(provider)).unwrap() {
            let case = e.unwrap().path();
            if case.is_dir() {
                let request = fs::read(case.join("request.json")).unwrap();
                let answer = fs::read(case.join("upstream_response.json")).unwrap();
                let model = case_model(provider, &case, deployment(provider).1);
                files.push((provider.to_string(), model, request, answer));
            }
        }
    }
    let donors: Vec<Vec<u8>> = files
        .iter()
        .flat_map(|f| [f.2.clone(), f.3.clone()])
        .collect();
    let mangle = |bytes: &[u8], next: &mut dyn FnMut(usize) -> usize| -> Vec<u8> {
        let mut out = bytes.to_vec();
        for _ in 0..1 + next(4) {
            let at = next(out.len() + 1);
            match next(5) {
                0 => out.truncate(at),
                1 if !out.is_empty() => {
                    let i = at.min(out.len() - 1);
                    out[i] = b"{}[],:\"0-e\\ a"[next(13)];
                }
                2 => {
                    let donor = &donors[next(donors.len())];
                    let from = next(donor.len());
                    let to = (from + next(64)).min(donor.len());
                    out.splice(at..at, donor[from..to].iter().copied());
                }
                3 => out
                    .splice(at..at, b"[[1,2],[3]]".iter().copied())
                    .for_each(drop),
                _ => out.splice(at..at, "\u{e9}\"\\u0000".bytes()).for_each(drop),
            }
        }
        out
    };
    for round in 0..4000 {
        let (provider, model, request, answer) = &files[round % files.len()];
        let (kind, _, base_path, api_key) = deployment(provider);
        let target = Target {
            upstream_model: model,
            base_path,
            api_key,
            now_unix_secs: NOW,
            options: &options,
        };
        let bad_request = mangle(request, &mut next);
        if let Err(e) = parse_request(&bad_request) {
            assert_eq!(e.status, 400);
        }
        let mut t = translator_for(kind);
        if let Err(e) = t.request_from_body(InboundApi::Embeddings, &bad_request, &target) {
            assert_eq!(e.status, 400, "{e}");
        }
        // The answer side, after a well-formed request.
        let mut t = translator_for(kind);
        t.request_from_body(InboundApi::Embeddings, request, &target)
            .unwrap();
        let status = [200, 200, 400, 429, 500, 503][next(6)];
        let out = t.response(status, &mangle(answer, &mut next));
        assert!((200..300).contains(&out.status) || (400..600).contains(&out.status));
        let v: Value = serde_json::from_slice(&out.body).unwrap();
        assert!(
            v["data"].is_array() || v["error"]["message"].is_string(),
            "{provider}: {v}"
        );
    }
}
