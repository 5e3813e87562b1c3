//! `llm-gateway`: the host-side command. Checks a gateway config and renders the Envoy
//! bootstrap, the Istio resources and the plugin configuration from it; mints virtual keys;
//! packs the module into an OCI image.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use llm_gateway::auth;
use llm_gateway::config::mint::{self, KeySpec};
use llm_gateway::config::{FilterRole, GatewayConfig};
use llm_gateway::preflight;
use llm_gateway::render::istio::{
    parse_namespace, parse_selector, render_istio, IstioOptions, WasmSource,
};
use llm_gateway::render::oci;
use llm_gateway::render::{plugin_configuration, render_bootstrap, render_dynamic, RenderOptions};
use serde_json::Value;

/// An OpenAI-compatible LLM gateway inside Envoy: checks a gateway config, renders the
/// Envoy bootstrap and the Istio resources from it, mints virtual keys.
#[derive(Parser)]
#[command(name = "llm-gateway", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the gateway config; errors name the field and the fix
    Check {
        /// The gateway config (YAML, or JSON when it ends in .json)
        #[arg(long, value_name = "gateway.yaml")]
        config: String,
    },
    /// Write the complete Envoy bootstrap (stdout unless --out)
    ///
    /// With --dynamic, write <dir>/envoy.yaml plus <dir>/lds.yaml and <dir>/cds.yaml, which
    /// Envoy watches: render again into the same <dir> and the new config (models, keys,
    /// limits) takes effect without restarting Envoy.
    Render {
        /// The gateway config (YAML, or JSON when it ends in .json)
        #[arg(long, value_name = "gateway.yaml")]
        config: String,
        /// The module Envoy loads
        #[arg(long, value_name = "path/to/llm_gateway.wasm")]
        wasm: String,
        /// Where to write the bootstrap
        #[arg(long, value_name = "envoy.yaml", conflicts_with = "dynamic")]
        out: Option<String>,
        /// Write a dynamic bootstrap (envoy.yaml, lds.yaml, cds.yaml) into this directory
        #[arg(long, value_name = "dir")]
        dynamic: Option<String>,
    },
    /// Print one filter instance's plugin configuration as JSON (for a hand-written Envoy config)
    PluginConfig {
        /// The gateway config (YAML, or JSON when it ends in .json)
        #[arg(long, value_name = "gateway.yaml")]
        config: String,
        /// Which filter instance: in the connection manager, or in the router's upstream filters
        #[arg(long, value_enum)]
        role: Role,
        /// Where to write it (stdout unless given)
        #[arg(long, value_name = "file")]
        out: Option<String>,
    },
    /// Write the Istio resources for an ingress gateway into a directory
    ///
    /// providers.yaml (ServiceEntry, DestinationRule), gateway.yaml (Gateway,
    /// VirtualService), envoyfilter.yaml (both filter instances, clusters, routes),
    /// stats-bootstrap.yaml (stats labels) and gateway-values.yaml (Helm values for Istio's
    /// gateway chart). https:// modules need --wasm-sha256; oci:// images are best pinned by
    /// digest (oci://registry/llm-gateway@sha256:..., printed by `llm-gateway oci`).
    RenderIstio {
        /// The gateway config (YAML, or JSON when it ends in .json)
        #[arg(long, value_name = "gateway.yaml")]
        config: String,
        /// Where the gateway pods get the module
        #[arg(long, value_name = "oci://...|https://...|file:///...")]
        wasm_url: String,
        /// SHA-256 of the module (https) or of the image manifest (oci)
        #[arg(long, value_name = "hex")]
        wasm_sha256: Option<String>,
        /// The gateway's namespace
        #[arg(long, default_value = "istio-system")]
        namespace: String,
        /// Labels that select the gateway pods
        #[arg(long, default_value = "app=istio-ingressgateway")]
        selector: String,
        /// Where to write the files
        #[arg(long, value_name = "dir")]
        out_dir: String,
    },
    /// Make a new virtual key
    ///
    /// Prints the key once and the `virtual_keys` entry (with its SHA-256) to paste into
    /// the gateway config; with --config, the entry is checked against that config (team,
    /// models).
    MintKey(MintKey),
    /// Pack the module into an OCI image for Istio and Envoy Gateway (oci://...)
    ///
    /// Writes an OCI image layout into --out in the Wasm image format the meshes pull (the
    /// compat variant: one tar+gzip layer holding plugin.wasm), built reproducibly, and
    /// prints the manifest digest: push it with an OCI client (e.g. `oras cp --from-oci-layout
    /// <dir>:<tag> <registry>/llm-gateway:<tag>`) and load it as
    /// oci://<registry>/llm-gateway@<digest>.
    Oci {
        /// The module
        #[arg(long, value_name = "path/to/llm_gateway.wasm")]
        wasm: String,
        /// The directory of the OCI image layout
        #[arg(long, value_name = "dir")]
        out: String,
        /// The image's tag in the layout
        #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
        tag: String,
    },
    /// Print a shell completion script (e.g. `llm-gateway completions bash > /etc/bash_completion.d/llm-gateway`)
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
}

/// [`FilterRole`] as a command-line value.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Role {
    Downstream,
    Upstream,
}

#[derive(clap::Args)]
struct MintKey {
    /// The key's name (unique in the config)
    #[arg(long)]
    name: String,
    /// The team whose budget and limits it shares
    #[arg(long)]
    team: Option<String>,
    /// Allowed model names, comma-separated, `*` wildcard (default: all)
    #[arg(long, value_name = "a,b*")]
    models: Option<String>,
    /// Budget in USD
    #[arg(long, value_name = "USD")]
    max_budget: Option<f64>,
    /// How often the budget resets
    #[arg(long, value_name = "daily|weekly|monthly|total")]
    budget_duration: Option<String>,
    /// Requests per minute
    #[arg(long, value_name = "n")]
    rpm: Option<u64>,
    /// Tokens per minute
    #[arg(long, value_name = "n")]
    tpm: Option<u64>,
    /// Requests in flight at once
    #[arg(long, value_name = "n")]
    max_parallel: Option<u64>,
    /// Expiry: RFC 3339 or a date (end of that day, UTC)
    #[arg(long, value_name = "date")]
    expires: Option<String>,
    /// Check the entry against this gateway config (team, models)
    #[arg(long, value_name = "gateway.yaml")]
    config: Option<String>,
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Check { config: path } => {
            let (config, _) = load(&path)?;
            preflight(&config, &path)?;
            println!(
                "{path}: ok ({} models, {} deployments)",
                config.aliases.len(),
                config.deployments.len()
            );
            Ok(())
        }
        Command::Render {
            config: path,
            wasm,
            out,
            dynamic,
        } => {
            let (config, value) = load(&path)?;
            preflight(&config, &path)?;
            let options = RenderOptions { wasm_path: wasm };
            if let Some(dir) = dynamic {
                return write_dynamic(&config, &value, &options, &dir, &path);
            }
            let bootstrap = render_bootstrap(&config, &value, &options);
            let header = format!(
                "# Rendered by `llm-gateway render` from {path}; edit that file, not this one.\n"
            );
            write(out.as_deref(), &format!("{header}{}", yaml(&bootstrap)?))
        }
        Command::PluginConfig { config, role, out } => {
            let (_, value) = load(&config)?;
            let role = match role {
                Role::Downstream => FilterRole::Downstream,
                Role::Upstream => FilterRole::Upstream,
            };
            let json = plugin_configuration(role, &value);
            write(out.as_deref(), &format!("{json}\n"))
        }
        Command::RenderIstio {
            config: path,
            wasm_url,
            wasm_sha256,
            namespace,
            selector,
            out_dir,
        } => {
            let (config, value) = load(&path)?;
            let options = IstioOptions {
                wasm: WasmSource::parse(&wasm_url, wasm_sha256.as_deref())?,
                namespace: parse_namespace(&namespace)?,
                selector: parse_selector(&selector)?,
            };
            write_istio(&config, &value, &options, &path, &out_dir)
        }
        Command::MintKey(args) => mint_key(args),
        Command::Oci { wasm, out, tag } => {
            let module = std::fs::read(&wasm).map_err(|e| format!("cannot read {wasm}: {e}"))?;
            let image = oci::build(&module).map_err(|e| format!("{wasm}: {e}"))?;
            oci::write_layout(&image, std::path::Path::new(&out), &tag)
                .map_err(|e| format!("cannot write the image layout {out}: {e}"))?;
            eprintln!("wrote the OCI image layout {out} ({tag})");
            println!("{}", image.manifest.digest);
            Ok(())
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "llm-gateway",
                &mut std::io::stdout(),
            );
            Ok(())
        }
    }
}

fn load(path: &str) -> Result<(GatewayConfig, Value), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let value: Value = if path.ends_with(".json") {
        serde_json::from_str(&text).map_err(|e| format!("{path}: not valid JSON: {e}"))?
    } else {
        serde_norway::from_str(&text).map_err(|e| format!("{path}: not valid YAML: {e}"))?
    };
    let config = GatewayConfig::from_value(value.clone()).map_err(|e| format!("{path}: {e}"))?;
    Ok((config, value))
}

/// Refuses the demo key on a listener other machines reach, and says once what will fail
/// in this environment (Envoy is expected to run with the environment `render` sees).
fn preflight(config: &GatewayConfig, path: &str) -> Result<(), String> {
    let env = |name: &str| std::env::var(name).ok();
    if let Some(master_key) = config.master_key.resolve(&env) {
        preflight::refuse_exposed_demo_key(config, &master_key)
            .map_err(|e| format!("{path}: {e}"))?;
    }
    for line in preflight::warnings(config, &env, &mut resolves) {
        eprintln!("{line}");
    }
    Ok(())
}

/// Whether `host` resolves, waiting at most two seconds for the system resolver.
fn resolves(host: &str) -> bool {
    use std::net::ToSocketAddrs;
    let (tx, rx) = std::sync::mpsc::channel();
    let host = host.to_string();
    std::thread::spawn(move || {
        let found = (host.as_str(), 443)
            .to_socket_addrs()
            .is_ok_and(|mut addrs| addrs.next().is_some());
        let _ = tx.send(found);
    });
    rx.recv_timeout(std::time::Duration::from_secs(2))
        .unwrap_or(false)
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
    serde_norway::to_string(value).map_err(|e| format!("cannot write YAML: {e}"))
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

fn write_istio(
    config: &GatewayConfig,
    value: &Value,
    options: &IstioOptions,
    config_path: &str,
    out_dir: &str,
) -> Result<(), String> {
    let files = render_istio(config, value, options)?;
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

/// Reads 32 bytes from the host's cryptographic random source.
fn random_bytes() -> Result<[u8; 32], String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    Ok(bytes)
}

fn mint_key(args: MintKey) -> Result<(), String> {
    let name = args.name;
    let spec = KeySpec {
        name: name.clone(),
        team: args.team,
        models: args.models.map(|m| {
            m.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect()
        }),
        max_budget: args.max_budget,
        budget_duration: args.budget_duration,
        rpm_limit: args.rpm,
        tpm_limit: args.tpm,
        max_parallel_requests: args.max_parallel,
        expires: args.expires,
    };
    spec.validate()
        .map_err(|e| format!("mint-key: {}: {}", flag_of(&e.field), e.message))?;

    let key = mint::format_minted_key(&random_bytes()?);
    let entry = spec.entry_yaml(&auth::digest_hex(&auth::digest(&key)));

    if let Some(path) = args.config.as_deref() {
        // Check the entry as part of that config: its team and models must exist there.
        let (_, mut value) = load(path)?;
        let item: Value = serde_norway::from_str::<Vec<Value>>(&entry)
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
