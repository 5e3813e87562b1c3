//! `llm-gateway`: the host-side command. Checks a gateway config and renders the Envoy
//! bootstrap (and the plugin configuration for Istio) from it.

use std::process::ExitCode;

use llm_gateway::config::{FilterRole, GatewayConfig};
use llm_gateway::render::{plugin_configuration, render_bootstrap, RenderOptions};
use serde_json::Value;

const USAGE: &str = "\
llm-gateway: an OpenAI-compatible LLM gateway inside Envoy

Usage:
  llm-gateway check  --config <gateway.yaml>
  llm-gateway render --config <gateway.yaml> --wasm <path/to/llm_gateway.wasm> [--out <envoy.yaml>]
  llm-gateway plugin-config --config <gateway.yaml> --role <downstream|upstream>

check          validate the gateway config; errors name the field and the fix
render         write the complete Envoy bootstrap (stdout unless --out)
plugin-config  print one filter instance's plugin configuration as JSON
               (for Istio WasmPlugin/EnvoyFilter or a hand-written Envoy config)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn load(path: &str) -> Result<(GatewayConfig, Value), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let value: Value = if path.ends_with(".json") {
        serde_json::from_str(&text).map_err(|e| format!("{path}: not valid JSON: {e}"))?
    } else {
        serde_yaml::from_str(&text).map_err(|e| format!("{path}: not valid YAML: {e}"))?
    };
    let config = GatewayConfig::from_value(value.clone()).map_err(|e| format!("{path}: {e}"))?;
    Ok((config, value))
}

fn write(out: Option<&str>, text: &str) -> Result<(), String> {
    match out {
        Some(path) => std::fs::write(path, text).map_err(|e| format!("cannot write {path}: {e}")),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let command = args.first().map(String::as_str).unwrap_or("--help");
    if matches!(command, "-h" | "--help" | "help") {
        print!("{USAGE}");
        return Ok(());
    }
    let config_path =
        flag(args, "--config").ok_or_else(|| format!("missing --config\n\n{USAGE}"))?;
    let (config, value) = load(config_path)?;
    match command {
        "check" => {
            println!(
                "{config_path}: ok ({} models, {} deployments)",
                config.aliases.len(),
                config.deployments.len()
            );
            Ok(())
        }
        "render" => {
            let wasm_path = flag(args, "--wasm")
                .ok_or_else(|| format!("missing --wasm\n\n{USAGE}"))?
                .to_string();
            let bootstrap = render_bootstrap(&config, &value, &RenderOptions { wasm_path });
            let yaml =
                serde_yaml::to_string(&bootstrap).map_err(|e| format!("cannot write YAML: {e}"))?;
            let header = format!(
                "# Rendered by `llm-gateway render` from {config_path}; edit that file, not this one.\n"
            );
            write(flag(args, "--out"), &format!("{header}{yaml}"))
        }
        "plugin-config" => {
            let role = match flag(args, "--role") {
                Some("downstream") => FilterRole::Downstream,
                Some("upstream") => FilterRole::Upstream,
                _ => return Err(format!("--role must be downstream or upstream\n\n{USAGE}")),
            };
            let json = plugin_configuration(role, &value);
            write(flag(args, "--out"), &format!("{json}\n"))
        }
        other => Err(format!("unknown command `{other}`\n\n{USAGE}")),
    }
}
