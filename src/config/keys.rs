//! Virtual keys and teams: who may call the gateway, which models each key may use, and
//! the limits (requests and tokens per minute, parallel requests, dollar budgets) that
//! [`crate::limits`] enforces.
//!
//! The config holds only the SHA-256 of each key (`key_sha256`), so a leaked config leaks
//! no key; `llm-gateway mint-key` makes a key and prints its entry. The master key
//! (`general_settings.master_key`) stays valid as the unlimited admin key `master`.
//!
//! Everything here is pure: time is always a `now_unix_secs` argument, because the wasm
//! core has no clock of its own (the shell reads Envoy's). Budget periods and expiry dates
//! are in [`crate::config::periods`]; minting keys is in [`crate::config::mint`].

use std::collections::HashMap;

use serde::Deserialize;

use crate::auth::{self, KeyDigest};
use crate::config::model::{Alias, ConfigError, Secret};
use crate::config::periods::{format_utc, parse_expiry, BudgetDuration};
use crate::error::{ErrorKind, GatewayError};

/// The name the master key goes by in stats, logs and refusals.
pub const MASTER_KEY_NAME: &str = "master";

// === keys and teams ===

/// The limits of a key or a team; `None` means unlimited.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Requests per fixed one-minute window (`rpm_limit`).
    pub rpm_limit: Option<u64>,
    /// Tokens per fixed one-minute window (`tpm_limit`): prompt estimates while in flight,
    /// then the real input plus output tokens.
    pub tpm_limit: Option<u64>,
    /// Requests in flight at once (`max_parallel_requests`).
    pub max_parallel_requests: Option<u64>,
    /// Spend allowed per period, in micro-USD (`max_budget`, given in USD).
    pub max_budget_micro_usd: Option<u64>,
    /// The budget's period (`budget_duration`, default `total`).
    pub budget_duration: BudgetDuration,
    /// After how long a request that never settled stops counting as in flight: a little
    /// more than the longest route timeout, so a lost settlement (VM reload, crash) heals
    /// by itself instead of holding a parallel slot or reservation forever.
    pub inflight_lease_secs: u64,
}

impl Limits {
    fn unlimited(inflight_lease_secs: u64) -> Limits {
        Limits {
            rpm_limit: None,
            tpm_limit: None,
            max_parallel_requests: None,
            max_budget_micro_usd: None,
            budget_duration: BudgetDuration::Total,
            inflight_lease_secs,
        }
    }
}

/// A client key, known by its digest.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualKey {
    /// Unique name shown in stats, logs and refusals (`master` for the master key).
    pub name: String,
    /// SHA-256 of the key (all zero for the master key, whose digest the shell holds).
    pub digest: KeyDigest,
    /// The team it belongs to, a name from [`KeyTable::teams`].
    pub team: Option<String>,
    /// Allowed alias patterns (`*` matches any run of characters); `None`: every model.
    pub models: Option<Vec<String>>,
    /// Last second it is valid (Unix time); `None`: never expires.
    pub expires_unix_secs: Option<u64>,
    /// Its own limits.
    pub limits: Limits,
    /// True only for the master key: unlimited and never accounted.
    pub is_master: bool,
    /// Its requests' messages and answers go on their spans (`capture_content`).
    pub capture_content: bool,
}

/// A group of keys with shared limits and budget.
#[derive(Debug, Clone, PartialEq)]
pub struct Team {
    /// Unique name shown in stats and refusals.
    pub name: String,
    /// Limits shared by all its keys together.
    pub limits: Limits,
}

/// All virtual keys and teams of a config, indexed by digest.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyTable {
    /// Keys in file order.
    pub keys: Vec<VirtualKey>,
    /// Teams in file order.
    pub teams: Vec<Team>,
    by_digest: HashMap<KeyDigest, usize>,
    master: VirtualKey,
}

impl KeyTable {
    /// A table with no virtual keys: only the master key is valid.
    pub fn master_only(inflight_lease_secs: u64) -> KeyTable {
        KeyTable {
            keys: Vec::new(),
            teams: Vec::new(),
            by_digest: HashMap::new(),
            master: master_entry(inflight_lease_secs),
        }
    }

    /// The master key's entry (unlimited, every model).
    pub fn master(&self) -> &VirtualKey {
        &self.master
    }

    /// The team named `name`.
    pub fn team(&self, name: &str) -> Option<&Team> {
        self.teams.iter().find(|t| t.name == name)
    }

    /// The team `key` belongs to.
    pub fn team_of(&self, key: &VirtualKey) -> Option<&Team> {
        key.team.as_deref().and_then(|t| self.team(t))
    }
}

fn master_entry(inflight_lease_secs: u64) -> VirtualKey {
    VirtualKey {
        name: MASTER_KEY_NAME.to_string(),
        digest: [0; 32],
        team: None,
        models: None,
        expires_unix_secs: None,
        limits: Limits::unlimited(inflight_lease_secs),
        is_master: true,
        capture_content: false,
    }
}

/// The virtual key with this digest, if any (the master key is not in the table; use
/// [`authenticate`] to accept both).
///
/// A hash-map lookup is not constant-time, but what it could leak is how a SHA-256 digest
/// compares with stored digests, and an attacker cannot steer digests byte by byte.
pub fn find_key<'a>(table: &'a KeyTable, digest: &KeyDigest) -> Option<&'a VirtualKey> {
    table.by_digest.get(digest).and_then(|i| table.keys.get(*i))
}

/// True once `key` is past its `expires` second.
pub fn is_expired(key: &VirtualKey, now_unix_secs: u64) -> bool {
    key.expires_unix_secs.is_some_and(|e| now_unix_secs > e)
}

/// A 401 `key_expired` for an expired key.
pub fn check_expiry(key: &VirtualKey, now_unix_secs: u64) -> Result<(), GatewayError> {
    match key.expires_unix_secs {
        Some(e) if now_unix_secs > e => Err(GatewayError::new(
            ErrorKind::Authentication,
            format!(
                "The API key `{}` expired at {}; ask your gateway administrator for a new one.",
                key.name,
                format_utc(e)
            ),
        )
        .with_code("key_expired")),
        _ => Ok(()),
    }
}

/// The 401 for a key that is not configured (the same text as before virtual keys).
pub fn invalid_key_error() -> GatewayError {
    GatewayError::new(ErrorKind::Authentication, "Incorrect API key provided.")
        .with_code("invalid_api_key")
}

/// Who is calling: the master key (compared in constant time) or a configured, unexpired
/// virtual key. Errors are the 401s `invalid_api_key` and `key_expired`.
pub fn authenticate<'a>(
    table: &'a KeyTable,
    master_digest: &KeyDigest,
    presented: &KeyDigest,
    now_unix_secs: u64,
) -> Result<&'a VirtualKey, GatewayError> {
    if auth::digests_equal(presented, master_digest) {
        return Ok(&table.master);
    }
    let key = find_key(table, presented).ok_or_else(invalid_key_error)?;
    check_expiry(key, now_unix_secs)?;
    Ok(key)
}

/// Matches `text` against `pattern`, where `*` matches any run of characters (also none)
/// and everything else matches itself.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was and which text position it currently covers up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if Some(c) == t.get(ti) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..).unwrap_or_default().iter().all(|c| *c == b'*')
}

/// True when `key` may use the alias `alias` (the name the client asked for; fallbacks the
/// gateway picks are the gateway's business).
pub fn model_allowed(key: &VirtualKey, alias: &str) -> bool {
    match &key.models {
        None => true,
        Some(patterns) => patterns.iter().any(|p| wildcard_match(p, alias)),
    }
}

/// A 403 `model_not_allowed` naming the model and the key when `key` may not use `alias`.
pub fn check_model(key: &VirtualKey, alias: &str) -> Result<(), GatewayError> {
    if model_allowed(key, alias) {
        return Ok(());
    }
    let allowed = key.models.as_deref().unwrap_or_default().join(", ");
    Err(GatewayError::new(
        ErrorKind::PermissionDenied,
        format!(
            "The API key `{}` is not allowed to use model `{alias}`; it may use: {allowed}.",
            key.name
        ),
    )
    .with_param("model")
    .with_code("model_not_allowed"))
}

// === config ===

/// One `virtual_keys` entry as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVirtualKey {
    pub(crate) name: String,
    pub(crate) key_sha256: String,
    #[serde(default)]
    pub(crate) team: Option<String>,
    #[serde(default)]
    pub(crate) models: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) expires: Option<String>,
    #[serde(default)]
    pub(crate) rpm_limit: Option<u64>,
    #[serde(default)]
    pub(crate) tpm_limit: Option<u64>,
    #[serde(default)]
    pub(crate) max_parallel_requests: Option<u64>,
    #[serde(default)]
    pub(crate) max_budget: Option<f64>,
    #[serde(default)]
    pub(crate) budget_duration: Option<String>,
    #[serde(default)]
    pub(crate) capture_content: bool,
}

/// One `teams` entry as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTeam {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) rpm_limit: Option<u64>,
    #[serde(default)]
    pub(crate) tpm_limit: Option<u64>,
    #[serde(default)]
    pub(crate) max_parallel_requests: Option<u64>,
    #[serde(default)]
    pub(crate) max_budget: Option<f64>,
    #[serde(default)]
    pub(crate) budget_duration: Option<String>,
}

/// Largest budget accepted, in USD (keeps micro-USD sums far from overflow).
const MAX_BUDGET_USD: f64 = 1e9;

/// USD to micro-USD, rounded to the nearest micro-dollar.
pub fn usd_to_micro(usd: f64) -> u64 {
    if usd.is_finite() && usd > 0.0 {
        (usd * 1e6).round() as u64
    } else {
        0
    }
}

/// Key and team names become stat labels and store keys: keep them plain.
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
}

const NAME_RULE: &str = "use 1-64 characters from A-Z a-z 0-9 - _ . @";

/// Validates the limit fields shared by keys and teams.
#[allow(clippy::too_many_arguments)]
fn limits(
    at: &dyn Fn(&str) -> String,
    rpm: Option<u64>,
    tpm: Option<u64>,
    parallel: Option<u64>,
    max_budget: Option<f64>,
    budget_duration: Option<&str>,
    inflight_lease_secs: u64,
) -> Result<Limits, ConfigError> {
    let err = |f: &str, m: String| ConfigError {
        field: at(f),
        message: m,
    };
    for (field, v) in [
        ("rpm_limit", rpm),
        ("tpm_limit", tpm),
        ("max_parallel_requests", parallel),
    ] {
        if v == Some(0) {
            return Err(err(
                field,
                "must be at least 1 (omit it for no limit; remove the key to block it)".into(),
            ));
        }
    }
    let max_budget_micro_usd = match max_budget {
        None => None,
        Some(b) if b.is_finite() && (0.0..=MAX_BUDGET_USD).contains(&b) => Some(usd_to_micro(b)),
        Some(_) => {
            return Err(err(
                "max_budget",
                "must be a number of US dollars between 0 and 1000000000".into(),
            ))
        }
    };
    let budget_duration = match budget_duration {
        None => BudgetDuration::Total,
        Some(d) => {
            let Some(parsed) = BudgetDuration::from_name(d) else {
                return Err(err(
                    "budget_duration",
                    format!("`{d}` is not a budget period: use daily, weekly, monthly or total (calendar periods in UTC)"),
                ));
            };
            if max_budget.is_none() {
                return Err(err(
                    "budget_duration",
                    "has no effect without `max_budget`: set max_budget or remove it".into(),
                ));
            }
            parsed
        }
    };
    Ok(Limits {
        rpm_limit: rpm,
        tpm_limit: tpm,
        max_parallel_requests: parallel,
        max_budget_micro_usd,
        budget_duration,
        inflight_lease_secs,
    })
}

/// Parses `key_sha256`: 64 hex characters, either case.
fn parse_sha256(hex: &str) -> Option<KeyDigest> {
    let bytes = hex.trim().as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (slot, pair) in out.iter_mut().zip(bytes.chunks(2)) {
        let s = std::str::from_utf8(pair).ok()?;
        *slot = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// What a key entry is checked against: the config's aliases and team names, when known
/// (`mint-key` without `--config` checks an entry on its own).
pub(crate) struct KeyContext<'a> {
    pub(crate) aliases: Option<&'a [Alias]>,
    pub(crate) teams: Option<&'a [Team]>,
    pub(crate) inflight_lease_secs: u64,
}

/// Validates one `virtual_keys` entry at `virtual_keys[index]`.
pub(crate) fn validate_key(
    raw: &RawVirtualKey,
    index: usize,
    ctx: &KeyContext<'_>,
) -> Result<VirtualKey, ConfigError> {
    let at = |f: &str| format!("virtual_keys[{index}].{f}");
    let err = |f: &str, m: String| ConfigError {
        field: at(f),
        message: m,
    };
    if !valid_name(&raw.name) {
        return Err(err(
            "name",
            format!("`{}` is not a valid key name: {NAME_RULE}", raw.name),
        ));
    }
    if raw.name == MASTER_KEY_NAME {
        return Err(err(
            "name",
            "`master` is the master key's name; choose another".into(),
        ));
    }
    let digest = match parse_sha256(&raw.key_sha256) {
        Some(d) => d,
        // Never echo the value: it may be a key pasted by mistake.
        None if raw.key_sha256.trim().starts_with("sk-") => {
            return Err(err(
                "key_sha256",
                "holds a key, not its SHA-256: the config must never contain keys (run llm-gateway mint-key, or hash it with `printf %s KEY | sha256sum`)".into(),
            ))
        }
        None => {
            return Err(err(
                "key_sha256",
                "must be 64 hex characters (run llm-gateway mint-key)".into(),
            ))
        }
    };
    if let (Some(team), Some(teams)) = (&raw.team, ctx.teams) {
        if !teams.iter().any(|t| &t.name == team) {
            let known: Vec<&str> = teams.iter().map(|t| t.name.as_str()).collect();
            return Err(err(
                "team",
                format!(
                    "team `{team}` is not defined under `teams` (defined: {}); add it there or remove the field",
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                ),
            ));
        }
    }
    if let Some(team) = &raw.team {
        if !valid_name(team) {
            return Err(err(
                "team",
                format!("`{team}` is not a valid team name: {NAME_RULE}"),
            ));
        }
    }
    if let Some(models) = &raw.models {
        if models.is_empty() {
            return Err(err(
                "models",
                "is empty: omit `models` to allow every model, or list aliases (`*` is a wildcard)"
                    .into(),
            ));
        }
        for (j, p) in models.iter().enumerate() {
            let ok = (1..=128).contains(&p.len())
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:/@+*".contains(&b));
            if !ok {
                return Err(err(
                    &format!("models[{j}]"),
                    format!("`{p}` is not a model pattern: use model names from model_list, with `*` as a wildcard"),
                ));
            }
            if let Some(aliases) = ctx.aliases {
                if !aliases.iter().any(|a| wildcard_match(p, &a.name)) {
                    let known: Vec<&str> = aliases.iter().map(|a| a.name.as_str()).collect();
                    return Err(err(
                        &format!("models[{j}]"),
                        format!(
                            "`{p}` matches no model_name (known: {}); fix the name or remove it",
                            known.join(", ")
                        ),
                    ));
                }
            }
        }
    }
    let expires_unix_secs = match &raw.expires {
        None => None,
        Some(e) => Some(parse_expiry(e).map_err(|m| err("expires", m))?),
    };
    let limits = limits(
        &at,
        raw.rpm_limit,
        raw.tpm_limit,
        raw.max_parallel_requests,
        raw.max_budget,
        raw.budget_duration.as_deref(),
        ctx.inflight_lease_secs,
    )?;
    Ok(VirtualKey {
        name: raw.name.clone(),
        digest,
        team: raw.team.clone(),
        models: raw.models.clone(),
        expires_unix_secs,
        limits,
        is_master: false,
        capture_content: raw.capture_content,
    })
}

/// The in-flight lease for a config whose longest route may take `longest_timeout_secs`.
pub(crate) fn inflight_lease_secs(longest_timeout_secs: f64) -> u64 {
    let t = if longest_timeout_secs.is_finite() {
        longest_timeout_secs.clamp(0.0, 86_400.0)
    } else {
        86_400.0
    };
    t.ceil() as u64 + 60
}

/// Validates `virtual_keys` and `teams` against the config's aliases and master key.
pub(crate) fn validate(
    raw_keys: &[RawVirtualKey],
    raw_teams: &[RawTeam],
    aliases: &[Alias],
    master_key: &Secret,
    longest_timeout_secs: f64,
) -> Result<KeyTable, ConfigError> {
    let lease = inflight_lease_secs(longest_timeout_secs);
    let mut teams: Vec<Team> = Vec::new();
    for (i, raw) in raw_teams.iter().enumerate() {
        let at = |f: &str| format!("teams[{i}].{f}");
        if !valid_name(&raw.name) {
            return Err(ConfigError {
                field: at("name"),
                message: format!("`{}` is not a valid team name: {NAME_RULE}", raw.name),
            });
        }
        if let Some(j) = teams.iter().position(|t| t.name == raw.name) {
            return Err(ConfigError {
                field: at("name"),
                message: format!(
                    "team `{}` is defined twice (also teams[{j}]); team names must be unique",
                    raw.name
                ),
            });
        }
        let limits = limits(
            &at,
            raw.rpm_limit,
            raw.tpm_limit,
            raw.max_parallel_requests,
            raw.max_budget,
            raw.budget_duration.as_deref(),
            lease,
        )?;
        teams.push(Team {
            name: raw.name.clone(),
            limits,
        });
    }

    let ctx = KeyContext {
        aliases: Some(aliases),
        teams: Some(&teams),
        inflight_lease_secs: lease,
    };
    // The master key's digest, when it is written in the config, so no virtual key can
    // shadow it (an `os.environ/` master key is only known when Envoy loads the filter,
    // where it wins: `authenticate` checks it first).
    let master_digest = match master_key {
        Secret::Literal(k) => Some(auth::digest(k)),
        Secret::Env(_) => None,
    };
    let mut keys: Vec<VirtualKey> = Vec::new();
    let mut by_digest: HashMap<KeyDigest, usize> = HashMap::new();
    for (i, raw) in raw_keys.iter().enumerate() {
        let key = validate_key(raw, i, &ctx)?;
        let at = |f: &str| format!("virtual_keys[{i}].{f}");
        if let Some(j) = keys.iter().position(|k| k.name == key.name) {
            return Err(ConfigError {
                field: at("name"),
                message: format!(
                    "key name `{}` is used twice (also virtual_keys[{j}]); names must be unique",
                    key.name
                ),
            });
        }
        if let Some(j) = by_digest.get(&key.digest) {
            let other = keys.get(*j).map(|k| k.name.as_str()).unwrap_or("?");
            return Err(ConfigError {
                field: at("key_sha256"),
                message: format!(
                    "is the same key as virtual_keys[{j}] (`{other}`); give each entry its own key (run llm-gateway mint-key)"
                ),
            });
        }
        if master_digest.is_some_and(|m| auth::digests_equal(&m, &key.digest)) {
            return Err(ConfigError {
                field: at("key_sha256"),
                message: "is the master key's hash; mint a separate key (run llm-gateway mint-key)"
                    .into(),
            });
        }
        by_digest.insert(key.digest, keys.len());
        keys.push(key);
    }
    Ok(KeyTable {
        keys,
        teams,
        by_digest,
        master: master_entry(lease),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::periods::tests::ts;
    use crate::config::GatewayConfig;
    use serde_json::{json, Value};

    /// `*` matches any run of characters; everything else literally.
    #[test]
    fn wildcards() {
        assert!(wildcard_match("gpt-4o*", "gpt-4o"));
        assert!(wildcard_match("gpt-4o*", "gpt-4o-mini"));
        assert!(!wildcard_match("gpt-4o*", "gpt-4"));
        assert!(wildcard_match("claude-*", "claude-sonnet"));
        assert!(!wildcard_match("claude-*", "claude"));
        assert!(wildcard_match("*", "anything"));
        assert!(wildcard_match("*mini*", "gpt-4o-mini-2024"));
        assert!(wildcard_match("a*b*c", "aXXbYYc"));
        assert!(!wildcard_match("a*b*c", "aXXbYY"));
        assert!(wildcard_match("a**c", "ac"));
        assert!(!wildcard_match("exact", "exact-not"));
        assert!(wildcard_match("exact", "exact"));
        assert!(!wildcard_match("", "x"));
    }

    fn doc(keys: Value, teams: Value) -> Value {
        json!({
            "model_list": [
                {"model_name": "gpt-4o", "litellm_params": {"model": "openai/gpt-4o"}},
                {"model_name": "gpt-4o-mini", "litellm_params": {"model": "openai/gpt-4o-mini"}},
                {"model_name": "claude-sonnet", "litellm_params": {"model": "anthropic/claude-sonnet-4-5"}}
            ],
            "general_settings": {"master_key": "sk-master"},
            "virtual_keys": keys,
            "teams": teams,
        })
    }

    pub(crate) fn hash(key: &str) -> String {
        auth::digest_hex(&auth::digest(key))
    }

    pub(crate) fn table(keys: Value, teams: Value) -> Result<KeyTable, ConfigError> {
        GatewayConfig::from_value(doc(keys, teams)).map(|c| c.keys)
    }

    /// The documented example validates into typed values.
    #[test]
    fn parses_the_example() {
        let t = table(
            json!([{
                "name": "alice-dev", "key_sha256": hash("sk-alice"), "team": "research",
                "models": ["gpt-4o*", "claude-*"], "expires": "2026-12-31T23:59:59Z",
                "rpm_limit": 60, "tpm_limit": 100000, "max_parallel_requests": 4,
                "max_budget": 10.0, "budget_duration": "monthly"
            }]),
            json!([{"name": "research", "max_budget": 100, "budget_duration": "monthly",
                    "rpm_limit": 600, "tpm_limit": 1000000, "max_parallel_requests": 20}]),
        )
        .unwrap();
        let k = find_key(&t, &auth::digest("sk-alice")).unwrap();
        assert_eq!(k.name, "alice-dev");
        assert_eq!(k.limits.max_budget_micro_usd, Some(10_000_000));
        assert_eq!(k.limits.budget_duration, BudgetDuration::Monthly);
        assert_eq!(k.limits.rpm_limit, Some(60));
        assert_eq!(k.expires_unix_secs, Some(ts(2026, 12, 31, 23, 59, 59)));
        assert!(model_allowed(k, "gpt-4o-mini"));
        assert!(!model_allowed(k, "other"));
        let team = t.team_of(k).unwrap();
        assert_eq!(team.limits.max_budget_micro_usd, Some(100_000_000));
        assert_eq!(team.limits.max_parallel_requests, Some(20));
        // 600 s default request timeout + 60 s.
        assert_eq!(k.limits.inflight_lease_secs, 660);
        assert!(find_key(&t, &auth::digest("sk-other")).is_none());
    }

    /// A config without keys keeps working with the master key only.
    #[test]
    fn no_keys_section() {
        let mut v = doc(json!([]), json!([]));
        v.as_object_mut().unwrap().remove("virtual_keys");
        v.as_object_mut().unwrap().remove("teams");
        let c = GatewayConfig::from_value(v).unwrap();
        assert!(c.keys.keys.is_empty());
        let master = auth::digest("sk-master");
        let k = authenticate(&c.keys, &master, &master, 0).unwrap();
        assert!(k.is_master);
        assert_eq!(k.name, "master");
        assert!(model_allowed(k, "anything"));
    }

    fn key_err(entry: Value) -> ConfigError {
        table(json!([entry]), json!([{"name": "research"}])).unwrap_err()
    }

    /// Every invalid entry names the field and the fix.
    #[test]
    fn key_errors_name_the_field() {
        let h = hash("sk-a");
        let e = key_err(json!({"name": "a", "key_sha256": "3f5a"}));
        assert_eq!(e.field, "virtual_keys[0].key_sha256");
        assert!(e.message.contains("64 hex characters"), "{e}");
        assert!(e.message.contains("mint-key"), "{e}");

        let e = key_err(json!({"name": "a", "key_sha256": "sk-gw-secretsecret"}));
        assert_eq!(e.field, "virtual_keys[0].key_sha256");
        assert!(!e.to_string().contains("secretsecret"), "{e}");

        let e = key_err(json!({"name": "bad name", "key_sha256": h}));
        assert_eq!(e.field, "virtual_keys[0].name");
        let e = key_err(json!({"name": "master", "key_sha256": h}));
        assert_eq!(e.field, "virtual_keys[0].name");

        let e = key_err(json!({"name": "a", "key_sha256": h, "team": "ghost"}));
        assert_eq!(e.field, "virtual_keys[0].team");
        assert!(e.message.contains("research"), "{e}");

        let e = key_err(json!({"name": "a", "key_sha256": h, "models": ["gpt-4o", "gemini-*"]}));
        assert_eq!(e.field, "virtual_keys[0].models[1]");
        assert!(e.message.contains("gpt-4o-mini"), "{e}");
        let e = key_err(json!({"name": "a", "key_sha256": h, "models": []}));
        assert_eq!(e.field, "virtual_keys[0].models");

        let e = key_err(json!({"name": "a", "key_sha256": h, "expires": "next week"}));
        assert_eq!(e.field, "virtual_keys[0].expires");

        let e = key_err(json!({"name": "a", "key_sha256": h, "rpm_limit": 0}));
        assert_eq!(e.field, "virtual_keys[0].rpm_limit");
        let e = key_err(json!({"name": "a", "key_sha256": h, "max_budget": -1.0}));
        assert_eq!(e.field, "virtual_keys[0].max_budget");
        let e = key_err(
            json!({"name": "a", "key_sha256": h, "max_budget": 5, "budget_duration": "30d"}),
        );
        assert_eq!(e.field, "virtual_keys[0].budget_duration");
        assert!(e.message.contains("monthly"), "{e}");
        let e = key_err(json!({"name": "a", "key_sha256": h, "budget_duration": "daily"}));
        assert_eq!(e.field, "virtual_keys[0].budget_duration");
        assert!(e.message.contains("max_budget"), "{e}");

        let e = key_err(json!({"name": "a", "key_sha256": h, "rpm_limt": 5}));
        assert_eq!(e.field, "virtual_keys[0].rpm_limt");
        let e = key_err(json!({"name": "a", "key_sha256": h, "tpm_limit": "many"}));
        assert_eq!(e.field, "virtual_keys[0].tpm_limit");

        // The master key written in the config cannot also be a virtual key.
        let e = key_err(json!({"name": "a", "key_sha256": hash("sk-master")}));
        assert_eq!(e.field, "virtual_keys[0].key_sha256");
        assert!(e.message.contains("master"), "{e}");
    }

    /// Duplicate key names, key hashes and team names are refused.
    #[test]
    fn duplicates_refused() {
        let e = table(
            json!([{"name": "a", "key_sha256": hash("sk-1")}, {"name": "a", "key_sha256": hash("sk-2")}]),
            json!([]),
        )
        .unwrap_err();
        assert_eq!(e.field, "virtual_keys[1].name");
        // Hex case does not make a different key.
        let e = table(
            json!([{"name": "a", "key_sha256": hash("sk-1")}, {"name": "b", "key_sha256": hash("sk-1").to_uppercase()}]),
            json!([]),
        )
        .unwrap_err();
        assert_eq!(e.field, "virtual_keys[1].key_sha256");
        assert!(e.message.contains("`a`"), "{e}");
        let e = table(json!([]), json!([{"name": "t"}, {"name": "t"}])).unwrap_err();
        assert_eq!(e.field, "teams[1].name");
        let e = table(
            json!([]),
            json!([{"name": "t", "max_parallel_requests": 0}]),
        )
        .unwrap_err();
        assert_eq!(e.field, "teams[0].max_parallel_requests");
    }

    /// The master key wins, unknown keys get `invalid_api_key`, expired ones `key_expired`.
    #[test]
    fn authentication_outcomes() {
        let t = table(
            json!([{"name": "old", "key_sha256": hash("sk-old"), "expires": "2026-01-31"}]),
            json!([]),
        )
        .unwrap();
        let master = auth::digest("sk-master");
        let now = ts(2026, 1, 31, 23, 59, 59);
        assert_eq!(
            authenticate(&t, &master, &auth::digest("sk-old"), now)
                .unwrap()
                .name,
            "old"
        );
        let e = authenticate(&t, &master, &auth::digest("sk-old"), now + 1).unwrap_err();
        assert_eq!((e.status, e.code.as_deref()), (401, Some("key_expired")));
        assert_eq!(e.kind, ErrorKind::Authentication);
        assert!(e.message.contains("`old`") && e.message.contains("2026-01-31T23:59:59Z"));
        let e = authenticate(&t, &master, &auth::digest("sk-nope"), now).unwrap_err();
        assert_eq!(
            (e.status, e.code.as_deref()),
            (401, Some("invalid_api_key"))
        );
        assert!(
            authenticate(&t, &master, &master, u64::MAX)
                .unwrap()
                .is_master
        );
    }

    /// A model outside the key's list is a 403 naming the model and the key.
    #[test]
    fn model_refusal() {
        let t = table(
            json!([{"name": "bob", "key_sha256": hash("sk-b"), "models": ["gpt-4o*"]}]),
            json!([]),
        )
        .unwrap();
        let k = &t.keys[0];
        assert!(check_model(k, "gpt-4o-mini").is_ok());
        let e = check_model(k, "claude-sonnet").unwrap_err();
        assert_eq!(e.status, 403);
        assert_eq!(e.kind, ErrorKind::PermissionDenied);
        assert_eq!(e.code.as_deref(), Some("model_not_allowed"));
        assert_eq!(e.param.as_deref(), Some("model"));
        assert!(e.message.contains("`claude-sonnet`") && e.message.contains("`bob`"));
        assert!(e.message.contains("gpt-4o*"));
    }
}
