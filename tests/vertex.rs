//! Vertex AI: Gemini and Claude through a Google Cloud project. The publishers' own
//! translators do the work, so every golden case of `tests/fixtures/gemini/` and
//! `tests/fixtures/anthropic/` runs through the Vertex AI translators too (Claude's
//! expected bodies carry `anthropic_version` instead of `model`), and every stream fixture
//! of both translates on Vertex AI exactly as on the publisher's API, at every split
//! point. Then the config: project, location and host, the publisher the model names,
//! the token server's cluster, and prices.

mod common;

use llm_gateway::messages_api::InboundApi;
use llm_gateway::provider::RequestFromBody;
use std::fs;
use std::path::{Path, PathBuf};

use common::{cases, fixtures_dir, one_deployment, run_case, target_for, Case};
use llm_gateway::config::GatewayConfig;
use llm_gateway::provider::vertex::ANTHROPIC_VERSION;
use llm_gateway::provider::{translator_for, ProviderKind, StreamPreamble, Target};
use serde_json::{json, Value};

/// A copy of `case` under `dir` whose expected upstream body is edited by `edit`.
fn edited_case(case: &Case, dir: &Path, edit: &dyn Fn(&mut Value)) -> Case {
    let to = dir.join(&case.name);
    fs::create_dir_all(&to).unwrap();
    for entry in fs::read_dir(&case.dir).unwrap().flatten() {
        let name = entry.file_name();
        let bytes = fs::read(entry.path()).unwrap();
        let bytes = if name == "upstream_request.json" {
            let mut v: Value = serde_json::from_slice(&bytes).unwrap();
            edit(&mut v);
            serde_json::to_vec(&v).unwrap()
        } else {
            bytes
        };
        fs::write(to.join(name), bytes).unwrap();
    }
    Case {
        name: case.name.clone(),
        dir: to,
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("llm-gateway-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

/// The Vertex AI target of `kind`, for the publisher's example model (the model name the
/// publisher's cases were written for).
fn vertex_target(kind: ProviderKind, publisher: ProviderKind) -> Target<'static> {
    Target {
        upstream_model: publisher.spec().example_model,
        ..target_for(kind)
    }
}

/// Every Gemini golden case, requests and answers, through Gemini on Vertex AI.
#[test]
fn every_gemini_case_on_vertex() {
    let target = vertex_target(ProviderKind::VertexGemini, ProviderKind::Gemini);
    let all = cases("gemini");
    assert!(all.len() >= 40);
    let failures: Vec<String> = all
        .iter()
        .flat_map(|c| run_case(ProviderKind::VertexGemini, &target, c))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Every Anthropic golden case through Claude on Vertex AI: the same body, with
/// `anthropic_version` in it and no `model`.
#[test]
fn every_anthropic_case_on_vertex() {
    let target = vertex_target(ProviderKind::VertexAnthropic, ProviderKind::Anthropic);
    let dir = scratch("vertex-anthropic-cases");
    let all = cases("anthropic");
    assert!(all.len() >= 30);
    let failures: Vec<String> = all
        .iter()
        .map(|c| {
            edited_case(c, &dir, &|v| {
                if let Some(o) = v.as_object_mut() {
                    o.remove("model");
                    o.insert("anthropic_version".into(), json!(ANTHROPIC_VERSION));
                }
            })
        })
        .flat_map(|c| run_case(ProviderKind::VertexAnthropic, &target, &c))
        .collect();
    let _ = fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The `stream_*` fixtures of a publisher: (name, client request, provider stream).
fn streams(publisher: &str) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>, Vec<u8>)> = fs::read_dir(fixtures_dir().join(publisher))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("stream_"))
                && p.join("upstream.sse").is_file()
        })
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                fs::read(p.join("openai_request.json")).unwrap(),
                fs::read(p.join("upstream.sse")).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Translates `upstream` in the given pieces for `kind`.
fn translate_stream(
    kind: ProviderKind,
    target: &Target<'_>,
    request: &[u8],
    pieces: &[&[u8]],
) -> (Vec<u8>, String) {
    let mut t = translator_for(kind);
    t.request_from_body(InboundApi::Chat, request, target)
        .unwrap();
    assert!(t.is_stream());
    let whole: Vec<u8> = pieces.concat();
    let preamble = match t.stream_preamble(&whole, true) {
        StreamPreamble::Fail(r) => format!("fail {}", r.status),
        other => format!("{other:?}"),
    };
    let mut out = Vec::new();
    let last = pieces.len() - 1;
    for (i, p) in pieces.iter().enumerate() {
        t.stream(p, i == last, &mut out);
    }
    (out, format!("{preamble} {:?}", t.stream_usage()))
}

/// Every stream fixture of both publishers translates on Vertex AI exactly as on the
/// publisher's own API (which `tests/streaming.rs` checks against the expected stream),
/// whole and cut in two at every offset.
#[test]
fn every_publisher_stream_on_vertex() {
    let mut n = 0;
    for (publisher, vertex) in [
        (ProviderKind::Gemini, ProviderKind::VertexGemini),
        (ProviderKind::Anthropic, ProviderKind::VertexAnthropic),
    ] {
        let own = target_for(publisher);
        let on_vertex = vertex_target(vertex, publisher);
        for (name, request, upstream) in streams(publisher.name()) {
            let expected = translate_stream(publisher, &own, &request, &[&upstream]);
            for cut in 0..=upstream.len() {
                let (a, b) = upstream.split_at(cut);
                let actual = translate_stream(vertex, &on_vertex, &request, &[a, b]);
                assert!(
                    actual == expected,
                    "{}/{name} cut at {cut}:\n{}\nvs\n{}",
                    publisher.name(),
                    String::from_utf8_lossy(&actual.0),
                    String::from_utf8_lossy(&expected.0)
                );
            }
            n += 1;
        }
    }
    assert!(n >= 20, "only {n} streams");
}

fn vertex(params: Value) -> llm_gateway::config::model::Deployment {
    let config = one_deployment(&params).unwrap_or_else(|e| panic!("{e}"));
    config.deployments[0].clone()
}

/// The model names the publisher; the location names the host; project and location end
/// the base path; `api_base` replaces only the host.
#[test]
fn project_location_host_and_publisher() {
    let d = vertex(json!({"model": "vertex_ai/gemini-2.5-pro", "vertex_project": "my-proj"}));
    assert_eq!(d.provider, ProviderKind::VertexGemini);
    assert_eq!(d.endpoint.host, "us-central1-aiplatform.googleapis.com");
    assert!(d.endpoint.tls);
    assert_eq!(
        d.endpoint.base_path,
        "/v1/projects/my-proj/locations/us-central1"
    );
    let d = vertex(json!({
        "model": "vertex_ai/claude-sonnet-4-5@20250929",
        "vertex_project": "my-proj",
        "vertex_location": "global",
    }));
    assert_eq!(d.provider, ProviderKind::VertexAnthropic);
    assert_eq!(d.provider.name(), "vertex_ai_anthropic");
    assert_eq!(d.endpoint.host, "aiplatform.googleapis.com");
    assert_eq!(
        d.endpoint.base_path,
        "/v1/projects/my-proj/locations/global"
    );
    let d = vertex(json!({
        "model": "vertex_ai/gemini-2.5-flash",
        "vertex_project": "p",
        "vertex_location": "europe-west4",
        "api_base": "http://127.0.0.1:9000",
    }));
    assert_eq!(
        (d.endpoint.host.as_str(), d.endpoint.port),
        ("127.0.0.1", 9000)
    );
    assert_eq!(
        d.endpoint.base_path,
        "/v1/projects/p/locations/europe-west4"
    );
    assert!(d.api_key.is_none());
}

/// Each mistake names its field and the fix.
#[test]
fn config_errors_name_the_field() {
    for (params, field, says) in [
        (
            json!({"model": "vertex_ai/gemini-2.5-flash"}),
            "vertex_project",
            "project id",
        ),
        (
            json!({"model": "vertex_ai/gemini-2.5-flash", "vertex_project": "My Project"}),
            "vertex_project",
            "not a Google Cloud project id",
        ),
        (
            json!({"model": "vertex_ai/gemini-2.5-flash", "vertex_project": "p", "vertex_location": "us central"}),
            "vertex_location",
            "us-central1",
        ),
        (
            json!({"model": "openai/gpt-4o", "vertex_project": "p"}),
            "vertex_project",
            "vertex_ai",
        ),
    ] {
        let e = one_deployment(&params).unwrap_err();
        assert_eq!(
            e.field,
            format!("model_list[0].litellm_params.{field}"),
            "{e}"
        );
        assert!(e.message.contains(says), "{e}");
    }
    let e = GatewayConfig::from_value(json!({
        "general_settings": {"master_key": "os.environ/K", "gcp_token_url": "metadata.google.internal"},
        "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/gpt-4o"}}],
    }))
    .unwrap_err();
    assert_eq!(e.field, "general_settings.gcp_token_url");
}

/// The token server gets a cluster when some Vertex AI deployment fetches tokens, and
/// only then.
#[test]
fn token_server_cluster() {
    let with = |general: Value, params: Value| {
        let mut g = json!({"master_key": "os.environ/K"});
        g.as_object_mut()
            .unwrap()
            .extend(general.as_object().unwrap().clone());
        GatewayConfig::from_value(json!({
            "general_settings": g,
            "model_list": [{"model_name": "m", "litellm_params": params}],
        }))
        .unwrap()
    };
    let token_cluster = |c: &GatewayConfig| {
        llm_gateway::render::clusters(c)
            .into_iter()
            .find(|c| c["name"] == "llm_gcp_token")
    };
    let c = with(
        json!({}),
        json!({"model": "vertex_ai/gemini-2.5-flash", "vertex_project": "p"}),
    );
    let cluster = token_cluster(&c).expect("a token cluster");
    let addr = &cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        ["address"]["socket_address"];
    assert_eq!(addr["address"], "metadata.google.internal");
    assert_eq!(addr["port_value"], 80);
    assert_eq!(
        c.general.gcp_token_url.base_path,
        "/computeMetadata/v1/instance/service-accounts/default/token"
    );
    let c = with(
        json!({"gcp_token_url": "http://127.0.0.1:8181/token"}),
        json!({"model": "vertex_ai/claude-opus-4-1@20250805", "vertex_project": "p"}),
    );
    let cluster = token_cluster(&c).expect("a token cluster");
    assert_eq!(cluster["type"], "STATIC");
    // A static token (`api_key`) needs no token server.
    let c = with(
        json!({}),
        json!({"model": "vertex_ai/gemini-2.5-flash", "vertex_project": "p", "api_key": "os.environ/VERTEX_TOKEN"}),
    );
    assert!(token_cluster(&c).is_none());
    let c = with(json!({}), json!({"model": "openai/gpt-4o"}));
    assert!(token_cluster(&c).is_none());
}

/// Vertex AI lists Gemini and Claude at the publishers' prices, by the same model names
/// (Claude's `@version` is a snapshot of the same model).
#[test]
fn prices_by_model_name() {
    let price = |params: Value| vertex(params).price.expect("priced");
    assert_eq!(
        price(json!({"model": "vertex_ai/claude-sonnet-4-5@20250929", "vertex_project": "p"})),
        price(json!({"model": "anthropic/claude-sonnet-4-5", "api_key": "os.environ/K"})),
    );
    assert_eq!(
        price(json!({"model": "vertex_ai/gemini-2.5-flash", "vertex_project": "p"})),
        price(json!({"model": "gemini/gemini-2.5-flash", "api_key": "os.environ/K"})),
    );
}

/// Anthropic's Messages API to Claude on Vertex AI is passed through like to Anthropic:
/// everything the client wrote is kept (thinking blocks with their signatures, cache marks,
/// `metadata`, `top_k`), `model` gives way to the body's `anthropic_version`, and the path
/// and bearer token are Vertex AI's. The answer reaches the client as Vertex AI sent it.
#[test]
fn messages_to_claude_on_vertex_pass_through() {
    let target = target_for(ProviderKind::VertexAnthropic);
    let client = common::claude_messages_request();
    for stream in [false, true] {
        let mut body = client.clone();
        body["stream"] = json!(stream);
        let (t, up) = common::messages_translator(
            ProviderKind::VertexAnthropic,
            &serde_json::to_vec(&body).unwrap(),
            &target,
        );
        let method = if stream {
            "streamRawPredict"
        } else {
            "rawPredict"
        };
        assert_eq!(
            up.path,
            format!(
                "/v1/projects/my-project/locations/us-central1/publishers/anthropic/models/{}:{method}",
                target.upstream_model
            )
        );
        assert_eq!(
            up.headers,
            vec![("authorization", "Bearer ya29.test-access-token".to_string())]
        );
        let mut sent: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(sent["anthropic_version"], ANTHROPIC_VERSION);
        sent.as_object_mut().unwrap().remove("anthropic_version");
        let mut expected = body.clone();
        expected.as_object_mut().unwrap().remove("model");
        assert_eq!(
            sent, expected,
            "everything else is kept as the client wrote it"
        );
        assert_eq!(t.is_stream(), stream);
    }
    let (mut t, _) = common::messages_translator(
        ProviderKind::VertexAnthropic,
        &serde_json::to_vec(&client).unwrap(),
        &target,
    );
    let answer = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"thinking","thinking":"x","signature":"s"},{"type":"text","text":"ok"}],"stop_reason":"end_turn","usage":{"input_tokens":12,"output_tokens":6}}"#;
    let r = t.response(200, answer);
    assert_eq!(r.body, answer.to_vec(), "the answer is passed on as sent");
    let usage = r.usage.unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (12, 6));
}
