//! Fallback chains: which deployments an alias's request may reach, in which order.
//!
//! Deployments of one alias with the same `order` form a **tier**: one Envoy cluster whose
//! endpoints share load by `weight` and are ejected for a cool-down by outlier detection.
//! An alias's **route** is an ordered list of tiers: its own tiers by `order`, then the
//! tiers of its `router_settings.fallbacks` aliases. Envoy realises a route of several
//! tiers with a composite cluster (attempt *n* goes to tier *n*) and a retry policy with
//! one retry per further tier, so the last tier's real error reaches the client.
//!
//! Context-window fallback: when a prompt is estimated to exceed a tier's
//! `max_input_tokens`, the downstream instance picks a route made only of the tiers that
//! fit (including `context_window_fallbacks` aliases). One such route is rendered per
//! distinct size band, so the choice is a lookup at request time.

use crate::config::model::{Alias, ConfigError, Deployment};
use crate::config::raw::{RawFallbacks, RawRouterSettings};
use std::collections::BTreeMap;

/// Deployments of one alias and `order`, reached through one Envoy cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    /// The Envoy cluster.
    pub cluster: String,
    /// Indices into the config's deployments.
    pub deployments: Vec<usize>,
    /// The smallest `max_input_tokens` of its deployments (`None`: unlimited).
    pub max_input_tokens: Option<u64>,
}

/// When a route applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// The alias's normal route.
    Primary,
    /// For prompts estimated above `above_tokens` tokens that the primary tier cannot take.
    ContextWindow {
        /// Exclusive lower bound of the estimated prompt size this route serves.
        above_tokens: u64,
    },
}

/// One route: a routing-header value and the tiers it tries in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePlan {
    /// The value of the routing header (`alias`, or `alias#ctx<N>`).
    pub key: String,
    /// The alias it serves.
    pub alias: String,
    /// Indices into the config's tiers, tried in order.
    pub tiers: Vec<usize>,
    /// When it applies.
    pub kind: RouteKind,
}

impl RoutePlan {
    /// The Envoy cluster the route targets: the tier's own cluster when there is one tier,
    /// else a composite cluster over the tiers.
    pub fn cluster(&self, tiers: &[Tier]) -> String {
        match self.tiers.as_slice() {
            [one] => tiers
                .get(*one)
                .map(|t| t.cluster.clone())
                .unwrap_or_default(),
            _ => format!("llm_chain_{}", sanitize(&self.key)),
        }
    }
}

/// Retry and outlier-detection settings (`router_settings`).
#[derive(Debug, Clone, PartialEq)]
pub struct RouterSettings {
    /// Consecutive 5xx answers that eject a deployment (`allowed_fails`).
    pub allowed_fails: u32,
    /// How long an ejected deployment stays out, in seconds (`cooldown_time`).
    pub cooldown_secs: f64,
    /// Bound on each attempt until its answer is complete (`per_try_timeout`).
    pub per_try_timeout_secs: Option<f64>,
    /// Bound on silence within each attempt (`per_try_idle_timeout`).
    pub per_try_idle_timeout_secs: Option<f64>,
    /// How a tier picks among its deployments (`routing_strategy`).
    pub balancing: Balancing,
    /// Further attempts on a tier before the chain moves on (`num_retries`), each after
    /// the provider's `Retry-After` when it sends one.
    pub num_retries: u32,
}

/// The most `num_retries` allowed: each is a whole further request to a provider.
pub const MAX_NUM_RETRIES: u32 = 5;

/// How a tier's cluster picks a deployment: LiteLLM's `routing_strategy`, as the Envoy
/// load-balancing policy that does it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balancing {
    /// `simple-shuffle`: by `weight` (Envoy's weighted `ROUND_ROBIN`).
    #[default]
    Weighted,
    /// `least-busy`: the deployment with the fewest requests in flight (Envoy's least-request
    /// policy, comparing every deployment; by `weight / (in flight + 1)` when weights
    /// differ); a slow deployment gets fewer requests.
    LeastBusy,
}

impl Balancing {
    fn parse(strategy: Option<&str>) -> Result<Balancing, ConfigError> {
        let refuse = |message: String| ConfigError {
            field: "router_settings.routing_strategy".into(),
            message,
        };
        const CHOICES: &str = "`simple-shuffle` (by weight, Envoy's ROUND_ROBIN) or `least-busy` (fewest requests in flight, Envoy's LEAST_REQUEST)";
        match strategy {
            None | Some("simple-shuffle") => Ok(Balancing::Weighted),
            Some("least-busy") => Ok(Balancing::LeastBusy),
            Some(s @ ("latency-based-routing" | "usage-based-routing" | "usage-based-routing-v2" | "cost-based-routing")) => Err(refuse(format!(
                "`{s}` has no Envoy load-balancing policy to run on: use {CHOICES}; `least-busy` also sends less to a deployment that answers slowly"
            ))),
            Some(s) => Err(refuse(format!("`{s}` is not a routing strategy: use {CHOICES}"))),
        }
    }
}

fn seconds(field: &str, v: Option<f64>) -> Result<Option<f64>, ConfigError> {
    match v {
        Some(t) if !(t > 0.0 && t <= 86_400.0) => Err(ConfigError {
            field: field.to_string(),
            message: "must be a number of seconds between 0 and 86400".to_string(),
        }),
        v => Ok(v),
    }
}

/// Validates `router_settings` scalars.
pub(crate) fn router_settings(raw: &RawRouterSettings) -> Result<RouterSettings, ConfigError> {
    Ok(RouterSettings {
        allowed_fails: match raw.allowed_fails {
            Some(0) => {
                return Err(ConfigError {
                    field: "router_settings.allowed_fails".into(),
                    message: "must be at least 1".into(),
                })
            }
            Some(n) => n,
            None => 3,
        },
        cooldown_secs: seconds("router_settings.cooldown_time", raw.cooldown_time)?.unwrap_or(5.0),
        per_try_timeout_secs: seconds("router_settings.per_try_timeout", raw.per_try_timeout)?,
        per_try_idle_timeout_secs: seconds(
            "router_settings.per_try_idle_timeout",
            raw.per_try_idle_timeout,
        )?,
        balancing: Balancing::parse(raw.routing_strategy.as_deref())?,
        num_retries: match raw.num_retries {
            Some(n) if n > MAX_NUM_RETRIES => {
                return Err(ConfigError {
                    field: "router_settings.num_retries".into(),
                    message: format!("must be at most {MAX_NUM_RETRIES} (each retry is another request to the provider)"),
                })
            }
            n => n.unwrap_or(0),
        },
    })
}

/// Turns a name into characters Envoy cluster names and stat names take well.
pub fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn normalize(raw: &Option<RawFallbacks>) -> Vec<(usize, String, Vec<String>)> {
    match raw {
        None => Vec::new(),
        Some(RawFallbacks::Map(m)) => m.iter().map(|(k, v)| (0, k.clone(), v.clone())).collect(),
        Some(RawFallbacks::List(list)) => list
            .iter()
            .enumerate()
            .flat_map(|(i, m)| m.iter().map(move |(k, v)| (i, k.clone(), v.clone())))
            .collect(),
    }
}

fn fallback_map(
    field: &str,
    raw: &Option<RawFallbacks>,
    aliases: &[Alias],
) -> Result<BTreeMap<String, Vec<String>>, ConfigError> {
    let is_list = matches!(raw, Some(RawFallbacks::List(_)));
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (i, from, to) in normalize(raw) {
        let at = if is_list {
            format!("router_settings.{field}[{i}].{from}")
        } else {
            format!("router_settings.{field}.{from}")
        };
        if !aliases.iter().any(|a| a.name == from) {
            return Err(ConfigError {
                field: at,
                message: format!("`{from}` is not a model_name in model_list"),
            });
        }
        for (j, target) in to.iter().enumerate() {
            if !aliases.iter().any(|a| &a.name == target) {
                return Err(ConfigError {
                    field: format!("{at}[{j}]"),
                    message: format!("`{target}` is not a model_name in model_list"),
                });
            }
            if target == &from {
                return Err(ConfigError {
                    field: format!("{at}[{j}]"),
                    message: format!("`{from}` cannot fall back to itself"),
                });
            }
        }
        out.entry(from).or_default().extend(to);
    }
    Ok(out)
}

/// The value of `key` in a map kept as a vector sorted by key, inserted as `V::default()`
/// when absent (always `Some`). Config-time maps are small: a sorted vector is all they
/// need, at a fraction of `BTreeMap`'s code in the module.
pub(crate) fn sorted_entry<K: Ord, V: Default>(map: &mut Vec<(K, V)>, key: K) -> Option<&mut V> {
    let i = match map.binary_search_by(|(k, _)| k.cmp(&key)) {
        Ok(i) => i,
        Err(i) => {
            map.insert(i, (key, V::default()));
            i
        }
    };
    map.get_mut(i).map(|(_, v)| v)
}

/// The value of `key` in a map kept by [`sorted_entry`].
pub(crate) fn sorted_get<'m, K: Ord, V>(map: &'m [(K, V)], key: &K) -> Option<&'m V> {
    let i = map.binary_search_by(|(k, _)| k.cmp(key)).ok()?;
    map.get(i).map(|(_, v)| v)
}

/// Builds the tiers and routes of a validated set of aliases and deployments.
pub(crate) fn build(
    aliases: &[Alias],
    deployments: &[Deployment],
    raw: &RawRouterSettings,
) -> Result<(Vec<Tier>, Vec<RoutePlan>), ConfigError> {
    let fallbacks = fallback_map("fallbacks", &raw.fallbacks, aliases)?;
    let cw_fallbacks = fallback_map(
        "context_window_fallbacks",
        &raw.context_window_fallbacks,
        aliases,
    )?;

    // Tiers of each alias, by order.
    let mut tiers: Vec<Tier> = Vec::new();
    let mut alias_tiers: Vec<(&str, Vec<usize>)> = Vec::new();
    for alias in aliases {
        let mut by_order: Vec<(u32, Vec<usize>)> = Vec::new();
        for &d in &alias.deployments {
            if let Some(dep) = deployments.get(d) {
                if let Some(members) = sorted_entry(&mut by_order, dep.order) {
                    members.push(d);
                }
            }
        }
        let several = by_order.len() > 1;
        let mut own = Vec::new();
        for (order, members) in by_order {
            let cluster = if several {
                format!("llm_{}_o{order}", sanitize(&alias.name))
            } else {
                format!("llm_{}", sanitize(&alias.name))
            };
            let max_input_tokens = members
                .iter()
                .filter_map(|d| deployments.get(*d).and_then(|x| x.max_input_tokens))
                .min();
            own.push(tiers.len());
            tiers.push(Tier {
                cluster,
                deployments: members,
                max_input_tokens,
            });
        }
        if let Some(tiers) = sorted_entry(&mut alias_tiers, alias.name.as_str()) {
            *tiers = own;
        }
    }
    // Cluster names must be unique even when sanitizing makes two aliases look alike.
    let mut seen = std::collections::HashSet::new();
    for t in &tiers {
        if !seen.insert(t.cluster.clone()) {
            return Err(ConfigError {
                field: "model_list".into(),
                message: format!(
                    "two model names map to the Envoy cluster `{}`; rename one of them",
                    t.cluster
                ),
            });
        }
    }

    let tiers_of = |names: &[String]| -> Vec<usize> {
        names
            .iter()
            .flat_map(|n| {
                sorted_get(&alias_tiers, &n.as_str())
                    .cloned()
                    .unwrap_or_default()
            })
            .collect()
    };

    let mut routes = Vec::new();
    for alias in aliases {
        let own = sorted_get(&alias_tiers, &alias.name.as_str())
            .cloned()
            .unwrap_or_default();
        let mut primary = own.clone();
        for t in tiers_of(fallbacks.get(&alias.name).map(Vec::as_slice).unwrap_or(&[])) {
            if !primary.contains(&t) {
                primary.push(t);
            }
        }
        // Context-window routes: every tier that could take a larger prompt.
        let mut candidates = primary.clone();
        for t in tiers_of(
            cw_fallbacks
                .get(&alias.name)
                .map(Vec::as_slice)
                .unwrap_or(&[]),
        ) {
            if !candidates.contains(&t) {
                candidates.push(t);
            }
        }
        let first_limit = primary
            .first()
            .and_then(|t| tiers.get(*t))
            .and_then(|t| t.max_input_tokens);
        routes.push(RoutePlan {
            key: alias.name.clone(),
            alias: alias.name.clone(),
            tiers: primary,
            kind: RouteKind::Primary,
        });
        if let Some(first_limit) = first_limit {
            let mut bounds: Vec<u64> = candidates
                .iter()
                .filter_map(|t| tiers.get(*t).and_then(|t| t.max_input_tokens))
                .filter(|l| *l >= first_limit)
                .collect();
            bounds.sort_unstable();
            bounds.dedup();
            for lo in bounds {
                let fit: Vec<usize> = candidates
                    .iter()
                    .copied()
                    .filter(|t| {
                        tiers
                            .get(*t)
                            .map(|t| t.max_input_tokens.is_none_or(|l| l > lo))
                            .unwrap_or(false)
                    })
                    .collect();
                if !fit.is_empty() {
                    routes.push(RoutePlan {
                        key: format!("{}#ctx{lo}", alias.name),
                        alias: alias.name.clone(),
                        tiers: fit,
                        kind: RouteKind::ContextWindow { above_tokens: lo },
                    });
                }
            }
        }
    }
    Ok((tiers, routes))
}

#[cfg(test)]
mod tests {
    use crate::config::GatewayConfig;
    use serde_json::json;

    fn cfg(v: serde_json::Value) -> GatewayConfig {
        GatewayConfig::from_value(v).unwrap()
    }

    fn strategy(s: &str) -> Result<GatewayConfig, crate::config::model::ConfigError> {
        GatewayConfig::from_value(json!({
            "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/m"}}],
            "router_settings": {"routing_strategy": s},
            "general_settings": {"master_key": "sk-x"}
        }))
    }

    /// LiteLLM's strategies Envoy can run map to its policies; the others are refused
    /// naming the field and the policies that exist.
    #[test]
    fn routing_strategies() {
        use super::Balancing;
        assert_eq!(
            strategy("simple-shuffle").unwrap().router.balancing,
            Balancing::Weighted
        );
        assert_eq!(
            strategy("least-busy").unwrap().router.balancing,
            Balancing::LeastBusy
        );
        for refused in [
            "latency-based-routing",
            "usage-based-routing",
            "usage-based-routing-v2",
            "cost-based-routing",
            "fastest",
        ] {
            let e = strategy(refused).unwrap_err();
            assert_eq!(e.field, "router_settings.routing_strategy");
            assert!(e.message.contains(&format!("`{refused}`")), "{e}");
            assert!(e.message.contains("Envoy's LEAST_REQUEST"), "{e}");
            assert!(e.message.contains("Envoy's ROUND_ROBIN"), "{e}");
        }
    }

    /// Same-order deployments share a tier; `order` and `fallbacks` make later tiers.
    #[test]
    fn tiers_and_fallbacks() {
        let c = cfg(json!({
            "model_list": [
                {"model_name": "smart", "litellm_params": {"model": "anthropic/a", "weight": 3}},
                {"model_name": "smart", "litellm_params": {"model": "anthropic/b", "weight": 1}},
                {"model_name": "smart", "litellm_params": {"model": "openai/c", "order": 2}},
                {"model_name": "backup", "litellm_params": {"model": "openai/d"}}
            ],
            "general_settings": {"master_key": "sk-x"},
            "router_settings": {"fallbacks": [{"smart": ["backup"]}]}
        }));
        assert_eq!(c.tiers.len(), 3);
        assert_eq!(c.tiers[0].cluster, "llm_smart_o1");
        assert_eq!(c.tiers[0].deployments, vec![0, 1]);
        assert_eq!(c.tiers[1].cluster, "llm_smart_o2");
        assert_eq!(c.tiers[2].cluster, "llm_backup");
        let smart = &c.routes[0];
        assert_eq!(smart.key, "smart");
        assert_eq!(smart.tiers, vec![0, 1, 2]);
        assert_eq!(smart.cluster(&c.tiers), "llm_chain_smart");
        let backup = &c.routes[1];
        assert_eq!(backup.cluster(&c.tiers), "llm_backup");
    }

    /// Prompts too large for the primary get routes made of the tiers that fit.
    #[test]
    fn context_window_routes() {
        let c = cfg(json!({
            "model_list": [
                {"model_name": "small", "litellm_params": {"model": "openai/s"}, "model_info": {"max_input_tokens": 8000}},
                {"model_name": "mid", "litellm_params": {"model": "openai/m"}, "model_info": {"max_input_tokens": 32000}},
                {"model_name": "big", "litellm_params": {"model": "anthropic/b"}, "model_info": {"max_input_tokens": 200000}}
            ],
            "general_settings": {"master_key": "sk-x"},
            "router_settings": {"fallbacks": {"small": ["mid"]}, "context_window_fallbacks": [{"small": ["big"]}]}
        }));
        let keys: Vec<(&str, Vec<usize>)> = c
            .routes
            .iter()
            .filter(|r| r.alias == "small")
            .map(|r| (r.key.as_str(), r.tiers.clone()))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("small", vec![0, 1]),
                ("small#ctx8000", vec![1, 2]),
                ("small#ctx32000", vec![2]),
            ]
        );
    }

    /// Fallbacks must name existing aliases other than themselves.
    #[test]
    fn fallback_errors() {
        let e = GatewayConfig::from_value(json!({
            "model_list": [{"model_name": "a", "litellm_params": {"model": "openai/x"}}],
            "general_settings": {"master_key": "sk-x"},
            "router_settings": {"fallbacks": [{"a": ["nope"]}]}
        }))
        .unwrap_err();
        assert_eq!(e.field, "router_settings.fallbacks[0].a[0]");
        let e = GatewayConfig::from_value(json!({
            "model_list": [{"model_name": "a", "litellm_params": {"model": "openai/x"}}],
            "general_settings": {"master_key": "sk-x"},
            "router_settings": {"fallbacks": {"a": ["a"]}}
        }))
        .unwrap_err();
        assert_eq!(e.field, "router_settings.fallbacks.a[0]");
    }
}
