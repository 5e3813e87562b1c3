//! `llm-gateway`: the host-side command. Checks a gateway config and renders the Envoy
//! bootstrap, the Istio resources and the plugin configuration from it; mints virtual keys.

use std::process::ExitCode;

use llm_gateway::auth;
use llm_gateway::config::{FilterRole, GatewayConfig};
use llm_gateway::keys::{self, KeySpec};
use llm_gateway::render::{plugin_configuration, render_bootstrap, render_dynamic, RenderOptions};
use llm_gateway::render_istio::{
    parse_namespace, parse_selector, render_istio, IstioOptions, WasmSource,
};
use serde_json::Value;

const USAGE: &str = "\
llm-gateway: an OpenAI-compatible LLM gateway inside Envoy

Usage:
  llm-gateway check  --config <gateway.yaml>
  llm-gateway render --config <gateway.yaml> --wasm <path/to/llm_gateway.wasm> [--out <envoy.yaml>]
  llm-gateway render --config <gateway.yaml> --wasm <path/to/llm_gateway.wasm> --dynamic <dir>
  llm-gateway plugin-config --config <gateway.yaml> --role <downstream|upstream>
  llm-gateway render-istio --config <gateway.yaml> --wasm-url <oci://...|https://...|file:///...>
               [--wasm-sha256 <hex>] [--namespace istio-system]
               [--selector app=istio-ingressgateway] --out-dir <dir>
  llm-gateway mint-key --name <name> [--team <team>] [--models \"a,b*\"]
               [--max-budget <USD> [--budget-duration daily|weekly|monthly|total]]
               [--rpm <n>] [--tpm <n>] [--max-parallel <n>] [--expires <date>]
               [--config <gateway.yaml>]

check          validate the gateway config; errors name the field and the fix
render         write the complete Envoy bootstrap (stdout unless --out); with --dynamic,
               write <dir>/envoy.yaml plus <dir>/lds.yaml and <dir>/cds.yaml, which Envoy
               watches: render again into the same <dir> and the new config (models,
               keys, limits) takes effect without restarting Envoy
plugin-config  print one filter instance's plugin configuration as JSON
               (for a hand-written Envoy config)
render-istio   write the Istio resources for an ingress gateway into <dir>: providers.yaml
               (ServiceEntry, DestinationRule), gateway.yaml (Gateway, VirtualService),
               envoyfilter.yaml (both filter instances, clusters, routes),
               stats-bootstrap.yaml (stats labels) and gateway-values.yaml (Helm values
               for Istio's gateway chart); https:// modules need --wasm-sha256
mint-key       make a new virtual key: prints the key once and the `virtual_keys`
               entry (with its SHA-256) to paste into the gateway config; with
               --config, the entry is checked against that config (team, models)
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

fn yaml(value: &Value) -> Result<String, String> {
    serde_yaml::to_string(value).map_err(|e| format!("cannot write YAML: {e}"))
}

/// Writes a file by rename so that Envoy's file watch never sees a half-written file.
fn write_atomically(path: &std::path::Path, text: &str) -> Result<(), String> {
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, text).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot replace {}: {e}", path.display()))
}

fn write_dynamic(
    config: &GatewayConfig,
    value: &Value,
    options: &RenderOptions,
    dir: &str,
    config_path: &str,
) -> Result<(), String> {
    let abs = std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::canonicalize(dir))
        .map_err(|e| format!("cannot use directory {dir}: {e}"))?;
    let abs_str = abs.to_string_lossy().to_string();
    let d = render_dynamic(config, value, options, &abs_str);
    let header = format!("# Rendered by `llm-gateway render --dynamic` from {config_path}; edit that file, not this one.\n");
    // Clusters first: a listener update may route to a cluster that is new.
    write_atomically(&abs.join("cds.yaml"), &format!("{header}{}", yaml(&d.cds)?))?;
    write_atomically(&abs.join("lds.yaml"), &format!("{header}{}", yaml(&d.lds)?))?;
    write_atomically(
        &abs.join("envoy.yaml"),
        &format!("{header}{}", yaml(&d.bootstrap)?),
    )?;
    println!("wrote {abs_str}/envoy.yaml, lds.yaml, cds.yaml");
    Ok(())
}

fn run(args: &[String]) -> Result<(), String> {
    let command = args.first().map(String::as_str).unwrap_or("--help");
    if matches!(command, "-h" | "--help" | "help") {
        print!("{USAGE}");
        return Ok(());
    }
    if command == "mint-key" {
        return mint_key(&args[1..]);
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
            let options = RenderOptions { wasm_path };
            if let Some(dir) = flag(args, "--dynamic") {
                return write_dynamic(&config, &value, &options, dir, config_path);
            }
            let bootstrap = render_bootstrap(&config, &value, &options);
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
        "render-istio" => write_istio(args, &config, &value, config_path),
        other => Err(format!("unknown command `{other}`\n\n{USAGE}")),
    }
}

fn write_istio(
    args: &[String],
    config: &GatewayConfig,
    value: &Value,
    config_path: &str,
) -> Result<(), String> {
    let url = flag(args, "--wasm-url").ok_or_else(|| format!("missing --wasm-url\n\n{USAGE}"))?;
    let out_dir = flag(args, "--out-dir").ok_or_else(|| format!("missing --out-dir\n\n{USAGE}"))?;
    let options = IstioOptions {
        wasm: WasmSource::parse(url, flag(args, "--wasm-sha256"))?,
        namespace: parse_namespace(flag(args, "--namespace").unwrap_or("istio-system"))?,
        selector: parse_selector(flag(args, "--selector").unwrap_or("app=istio-ingressgateway"))?,
    };
    let files = render_istio(config, value, &options)?;
    std::fs::create_dir_all(out_dir).map_err(|e| format!("cannot create {out_dir}: {e}"))?;
    for file in &files {
        let mut text = format!(
            "# Rendered by `llm-gateway render-istio` from {config_path}; edit that file, not this one.\n# {}\n",
            file.about
        );
        for (i, doc) in file.documents.iter().enumerate() {
            if i > 0 {
                text.push_str("---\n");
            }
            text.push_str(&yaml(doc)?);
        }
        let path = std::path::Path::new(out_dir).join(file.name);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let names: Vec<&str> = files.iter().map(|f| f.name).collect();
    println!("wrote {out_dir}/: {}", names.join(", "));
    Ok(())
}

const MINT_FLAGS: &[&str] = &[
    "--name",
    "--team",
    "--models",
    "--max-budget",
    "--budget-duration",
    "--rpm",
    "--tpm",
    "--max-parallel",
    "--expires",
    "--config",
];

/// The flag that sets an entry field, for error messages.
fn flag_of(field: &str) -> &str {
    match field.split(['.', '[']).next().unwrap_or(field) {
        "name" => "--name",
        "team" => "--team",
        "models" => "--models",
        "max_budget" => "--max-budget",
        "budget_duration" => "--budget-duration",
        "rpm_limit" => "--rpm",
        "tpm_limit" => "--tpm",
        "max_parallel_requests" => "--max-parallel",
        "expires" => "--expires",
        other => other,
    }
}

fn number<T: std::str::FromStr>(args: &[String], name: &str) -> Result<Option<T>, String> {
    flag(args, name)
        .map(|v| {
            v.parse()
                .map_err(|_| format!("{name}: `{v}` is not a number"))
        })
        .transpose()
}

/// Reads 32 bytes from the host's cryptographic random source.
fn random_bytes() -> Result<[u8; 32], String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    Ok(bytes)
}

fn mint_key(args: &[String]) -> Result<(), String> {
    let mut i = 0;
    while let Some(a) = args.get(i) {
        if !MINT_FLAGS.contains(&a.as_str()) {
            return Err(format!("mint-key: unknown option `{a}`\n\n{USAGE}"));
        }
        if args.get(i + 1).is_none_or(|v| v.starts_with("--")) {
            return Err(format!("mint-key: {a} needs a value\n\n{USAGE}"));
        }
        i += 2;
    }
    let name =
        flag(args, "--name").ok_or_else(|| format!("mint-key: --name is required\n\n{USAGE}"))?;
    let spec = KeySpec {
        name: name.to_string(),
        team: flag(args, "--team").map(str::to_string),
        models: flag(args, "--models").map(|m| {
            m.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect()
        }),
        max_budget: number(args, "--max-budget")?,
        budget_duration: flag(args, "--budget-duration").map(str::to_string),
        rpm_limit: number(args, "--rpm")?,
        tpm_limit: number(args, "--tpm")?,
        max_parallel_requests: number(args, "--max-parallel")?,
        expires: flag(args, "--expires").map(str::to_string),
    };
    spec.validate()
        .map_err(|e| format!("mint-key: {}: {}", flag_of(&e.field), e.message))?;

    let key = keys::format_minted_key(&random_bytes()?);
    let entry = spec.entry_yaml(&auth::digest_hex(&auth::digest(&key)));

    if let Some(path) = flag(args, "--config") {
        // Check the entry as part of that config: its team and models must exist there.
        let (_, mut value) = load(path)?;
        let item: Value = serde_yaml::from_str::<Vec<Value>>(&entry)
            .ok()
            .and_then(|v| v.into_iter().next())
            .ok_or("mint-key: internal error: the entry does not parse")?;
        match value.get_mut("virtual_keys").and_then(Value::as_array_mut) {
            Some(list) => list.push(item),
            None => value["virtual_keys"] = Value::Array(vec![item]),
        }
        GatewayConfig::from_value(value)
            .map_err(|e| format!("mint-key: the entry does not fit {path}: {e}"))?;
    }

    println!("{key}");
    println!(
        "# ^ the new key `{name}`. It is shown only this once: the gateway stores only its SHA-256"
    );
    println!("#   and cannot show it again. Hand it to its owner now.");
    println!("# Paste this entry under `virtual_keys:` in the gateway config, then render again:");
    print!("{entry}");
    Ok(())
}
