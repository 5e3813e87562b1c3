//! The `llm-gateway` command line: every subcommand has help, the version, suggestions
//! for typos and shell completions; the README's forms run.

use std::process::{Command, Output};

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_llm-gateway"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("LLM_GATEWAY_MASTER_KEY", "sk-gateway-demo")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const SUBCOMMANDS: &[&str] = &[
    "check",
    "render",
    "plugin-config",
    "render-istio",
    "mint-key",
    "completions",
    "oci",
];

#[test]
fn every_subcommand_has_help() {
    for sub in SUBCOMMANDS {
        let out = cli(&[sub, "--help"]);
        assert!(out.status.success(), "{sub} --help: {}", text(&out.stderr));
        let help = text(&out.stdout);
        assert!(
            help.contains(&format!("Usage: llm-gateway {sub}")),
            "{sub}: {help}"
        );
    }
    let out = cli(&["--help"]);
    assert!(out.status.success());
    for sub in SUBCOMMANDS {
        assert!(text(&out.stdout).contains(sub), "{sub} missing from --help");
    }
}

#[test]
fn version_is_the_crate_version() {
    let out = cli(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout).trim(),
        format!("llm-gateway {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_mistyped_subcommand_gets_a_suggestion() {
    let out = cli(&["rendr", "--config", "envoy/gateway.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("unrecognized subcommand 'rendr'"), "{err}");
    assert!(err.contains("'render'"), "{err}");
    let out = cli(&["check", "--confg", "envoy/gateway.yaml"]);
    assert!(
        text(&out.stderr).contains("--config"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn completions_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef llm-gateway"),
        ("fish", "complete -c llm-gateway"),
    ] {
        let out = cli(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let script = text(&out.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("render-istio"), "{shell}");
    }
}

#[test]
fn plugin_config_prints_each_role() {
    for role in ["downstream", "upstream"] {
        let out = cli(&[
            "plugin-config",
            "--config",
            "envoy/gateway.yaml",
            "--role",
            role,
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["role"], role);
        assert!(json["config"]["model_list"].is_array());
    }
    let out = cli(&[
        "plugin-config",
        "--config",
        "envoy/gateway.yaml",
        "--role",
        "sideways",
    ]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("possible values: downstream, upstream"));
}

#[test]
fn mint_key_checks_its_values() {
    let out = cli(&["mint-key", "--name", "alice", "--rpm", "many"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--rpm"), "{}", text(&out.stderr));
    let out = cli(&[
        "mint-key",
        "--name",
        "alice",
        "--budget-duration",
        "fortnightly",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--budget-duration"),
        "{}",
        text(&out.stderr)
    );
    let out = cli(&["mint-key", "--name", "alice", "--rpm", "60"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("sk-gw-"));
}

#[test]
fn yaml_syntax_errors_say_where() {
    let dir = std::env::temp_dir().join(format!("llm-gateway-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "model_list: [\n").unwrap();
    let out = cli(&["check", "--config", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("bad.yaml: not valid YAML:"), "{err}");
    assert!(err.contains("line 2 column 1"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The providers example (Azure both ways, presets, a keyless local server) and the
/// embeddings example check.
#[test]
fn providers_example_checks() {
    for example in [
        "docs/examples/providers.yaml",
        "docs/examples/embeddings.yaml",
    ] {
        let out = cli(&["check", "--config", example]);
        assert!(
            out.status.success(),
            "{example}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
}
