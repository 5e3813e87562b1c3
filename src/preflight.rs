//! What can be told about a config before it serves: the public demo key on an address
//! other machines reach (refused), and deployments whose requests cannot succeed in this
//! environment (one warning per cause, saying what the client will really get).

use std::collections::BTreeMap;

use crate::config::model::{ConfigError, Secret};
use crate::config::GatewayConfig;

/// The master key of the README and `make run`: public, so never to be reachable from
/// other machines.
pub const DEMO_MASTER_KEY: &str = "sk-gateway-demo";

/// True for addresses only this machine can reach (`127.0.0.0/8`, `::1`, `localhost`).
pub fn is_loopback(address: &str) -> bool {
    address.eq_ignore_ascii_case("localhost")
        || address
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Refuses the demo master key (`master_key`, as resolved) on a listener other machines
/// can reach: anyone there could spend the provider keys behind the gateway.
pub fn refuse_exposed_demo_key(
    config: &GatewayConfig,
    master_key: &str,
) -> Result<(), ConfigError> {
    let address = &config.general.listen_address;
    if master_key != DEMO_MASTER_KEY || is_loopback(address) {
        return Ok(());
    }
    let source = match &config.master_key {
        Secret::Env(name) => format!("`{name}` holds"),
        Secret::Literal(_) => "`general_settings.master_key` is".to_string(),
    };
    Err(ConfigError {
        field: "general_settings.listen_address".to_string(),
        message: format!(
            "`{address}` is reachable from other machines, and {source} the public demo key `{DEMO_MASTER_KEY}`: \
             set the master key to a secret of your own (e.g. `export LLM_GATEWAY_MASTER_KEY=sk-$(openssl rand -hex 16)`), \
             or listen on `127.0.0.1`"
        ),
    })
}

/// One line per cause that will make requests fail in this environment: a provider host
/// that does not resolve (Envoy answers 503 `no healthy upstream`), and, for hosts that
/// do, a provider key variable that is not set (the gateway answers 401
/// `provider_key_missing`). `env` reads the environment, `resolves` looks a host name up.
pub fn warnings(
    config: &GatewayConfig,
    env: &dyn Fn(&str) -> Option<String>,
    resolves: &mut dyn FnMut(&str) -> bool,
) -> Vec<String> {
    // host -> (aliases, unset key variables); variable -> aliases.
    let mut unresolved: BTreeMap<&str, (Vec<&str>, Vec<&str>)> = BTreeMap::new();
    let mut keyless: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut looked_up: BTreeMap<&str, bool> = BTreeMap::new();
    for d in &config.deployments {
        let host = d.endpoint.host.as_str();
        let reachable =
            d.endpoint.host_is_ip() || *looked_up.entry(host).or_insert_with(|| resolves(host));
        let unset_key = d
            .api_key
            .as_ref()
            .filter(|k| k.resolve(env).is_none())
            .and_then(Secret::env_name);
        if !reachable {
            let (aliases, vars) = unresolved.entry(host).or_default();
            push_unique(aliases, &d.alias);
            if let Some(var) = unset_key {
                push_unique(vars, var);
            }
        } else if let Some(var) = unset_key {
            push_unique(keyless.entry(var).or_default(), &d.alias);
        }
    }
    let mut lines = Vec::new();
    for (host, (aliases, vars)) in unresolved {
        let mut line = format!(
            "warning: `{host}` does not resolve from this machine: Envoy answers requests for {} with 503 `no healthy upstream` (unless a fallback answers)",
            aliases.join(", ")
        );
        if !vars.is_empty() {
            line.push_str(&format!(
                "; once it resolves, they need `{}` set in Envoy's environment",
                vars.join("`, `")
            ));
        }
        lines.push(line);
    }
    for (var, aliases) in keyless {
        lines.push(format!(
            "warning: `{var}` is not set: the gateway answers requests for {} with 401 `provider_key_missing` (unless a fallback answers); export it before starting Envoy",
            aliases.join(", ")
        ));
    }
    lines
}

fn push_unique<'a>(list: &mut Vec<&'a str>, item: &'a str) {
    if !list.contains(&item) {
        list.push(item);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(listen: &str, master: &str) -> GatewayConfig {
        GatewayConfig::from_value(json!({
            "model_list": [
                {"model_name": "demo", "litellm_params": {"model": "openai/demo", "api_base": "http://127.0.0.1:18080/v1"}},
                {"model_name": "gpt-4o", "litellm_params": {"model": "openai/gpt-4o", "api_key": "os.environ/OPENAI_API_KEY"}},
                {"model_name": "gpt-4o-mini", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "os.environ/OPENAI_API_KEY"}},
                {"model_name": "claude", "litellm_params": {"model": "anthropic/claude-sonnet-4-5", "api_key": "os.environ/ANTHROPIC_API_KEY"}},
            ],
            "general_settings": {"master_key": master, "listen_address": listen}
        }))
        .unwrap()
    }

    #[test]
    fn loopback_addresses() {
        for a in ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"] {
            assert!(is_loopback(a), "{a}");
        }
        for a in ["0.0.0.0", "::", "10.0.0.7", "gateway.internal"] {
            assert!(!is_loopback(a), "{a}");
        }
    }

    #[test]
    fn the_demo_key_is_refused_on_a_public_address_naming_the_field_and_the_fix() {
        let c = config("0.0.0.0", "os.environ/LLM_GATEWAY_MASTER_KEY");
        let e = refuse_exposed_demo_key(&c, DEMO_MASTER_KEY).unwrap_err();
        assert_eq!(e.field, "general_settings.listen_address");
        assert!(e.message.contains("`LLM_GATEWAY_MASTER_KEY` holds"), "{e}");
        assert!(e.message.contains("127.0.0.1"), "{e}");
        let literal = config("0.0.0.0", DEMO_MASTER_KEY);
        let e = refuse_exposed_demo_key(&literal, DEMO_MASTER_KEY).unwrap_err();
        assert!(
            e.message.contains("`general_settings.master_key` is"),
            "{e}"
        );
    }

    #[test]
    fn the_demo_key_on_loopback_and_own_keys_anywhere_are_accepted() {
        let local = config("127.0.0.1", "os.environ/LLM_GATEWAY_MASTER_KEY");
        assert!(refuse_exposed_demo_key(&local, DEMO_MASTER_KEY).is_ok());
        let public = config("0.0.0.0", "os.environ/LLM_GATEWAY_MASTER_KEY");
        assert!(refuse_exposed_demo_key(&public, "sk-my-own-secret").is_ok());
    }

    #[test]
    fn the_default_listen_address_is_loopback() {
        let c = GatewayConfig::from_value(json!({
            "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/m"}}],
            "general_settings": {"master_key": DEMO_MASTER_KEY}
        }))
        .unwrap();
        assert_eq!(c.general.listen_address, "127.0.0.1");
        assert!(refuse_exposed_demo_key(&c, DEMO_MASTER_KEY).is_ok());
    }

    #[test]
    fn an_unresolved_host_is_said_once_with_the_503_it_causes() {
        let c = config("127.0.0.1", "sk-x");
        let mut lookups = Vec::new();
        let lines = warnings(&c, &|_| None, &mut |h: &str| {
            lookups.push(h.to_string());
            false
        });
        assert_eq!(
            lookups,
            ["api.openai.com", "api.anthropic.com"],
            "each host looked up once; IPs never"
        );
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(
            lines[0].contains("`api.anthropic.com` does not resolve"),
            "{lines:#?}"
        );
        assert!(
            lines[1].contains("`api.openai.com` does not resolve"),
            "{lines:#?}"
        );
        assert!(
            lines[1].contains("gpt-4o, gpt-4o-mini with 503 `no healthy upstream`"),
            "{lines:#?}"
        );
        assert!(lines[1].contains("`OPENAI_API_KEY` set"), "{lines:#?}");
        assert!(
            lines.iter().all(|l| !l.contains("401")),
            "a 401 cannot happen before the host resolves"
        );
    }

    #[test]
    fn an_unset_key_of_a_reachable_host_is_said_once_with_the_401_it_causes() {
        let c = config("127.0.0.1", "sk-x");
        let env = |n: &str| (n == "ANTHROPIC_API_KEY").then(|| "sk-ant".to_string());
        let lines = warnings(&c, &env, &mut |_: &str| true);
        assert_eq!(
            lines,
            ["warning: `OPENAI_API_KEY` is not set: the gateway answers requests for gpt-4o, gpt-4o-mini with 401 `provider_key_missing` (unless a fallback answers); export it before starting Envoy"]
        );
        let all_set = |_: &str| Some("k".to_string());
        assert!(warnings(&c, &all_set, &mut |_: &str| true).is_empty());
    }
}
