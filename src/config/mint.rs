//! Minting virtual keys for `llm-gateway mint-key`: the random key itself, and the
//! `virtual_keys` entry to paste into the config, checked by the same rules as the config.
//! The config only ever holds the key's SHA-256; the key is printed once.

use crate::config::keys::{validate_key, KeyContext, RawVirtualKey};
use crate::config::model::ConfigError;

/// Prefix of keys made by `llm-gateway mint-key`, so a leaked one is recognisable.
pub const MINTED_KEY_PREFIX: &str = "sk-gw-";

/// What `llm-gateway mint-key` was asked for: one `virtual_keys` entry minus the hash.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeySpec {
    /// `name`.
    pub name: String,
    /// `team`.
    pub team: Option<String>,
    /// `models` patterns.
    pub models: Option<Vec<String>>,
    /// `max_budget` in USD.
    pub max_budget: Option<f64>,
    /// `budget_duration` as written.
    pub budget_duration: Option<String>,
    /// `rpm_limit`.
    pub rpm_limit: Option<u64>,
    /// `tpm_limit`.
    pub tpm_limit: Option<u64>,
    /// `max_parallel_requests`.
    pub max_parallel_requests: Option<u64>,
    /// `expires` as written.
    pub expires: Option<String>,
}

impl KeySpec {
    fn raw(&self, key_sha256: &str) -> RawVirtualKey {
        RawVirtualKey {
            name: self.name.clone(),
            key_sha256: key_sha256.to_string(),
            team: self.team.clone(),
            models: self.models.clone(),
            expires: self.expires.clone(),
            rpm_limit: self.rpm_limit,
            tpm_limit: self.tpm_limit,
            max_parallel_requests: self.max_parallel_requests,
            max_budget: self.max_budget,
            budget_duration: self.budget_duration.clone(),
            capture_content: false,
        }
    }

    /// Checks the entry as the config would, without a config: the field rules only (team
    /// and model names are checked against a config by `llm-gateway check`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let ctx = KeyContext {
            aliases: None,
            teams: None,
            inflight_lease_secs: 60,
        };
        validate_key(&self.raw(&"0".repeat(64)), 0, &ctx)
            .map(|_| ())
            .map_err(|e| ConfigError {
                field: e.field.replacen("virtual_keys[0].", "", 1),
                message: e.message,
            })
    }

    /// The YAML list item to paste under `virtual_keys:` (strings JSON-quoted, which YAML
    /// reads as double-quoted scalars, so `*` and `:` need no thought).
    pub fn entry_yaml(&self, key_sha256: &str) -> String {
        let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""));
        let mut out = format!("- name: {}\n  key_sha256: {key_sha256}\n", q(&self.name));
        if let Some(t) = &self.team {
            out += &format!("  team: {}\n", q(t));
        }
        if let Some(m) = &self.models {
            let items: Vec<String> = m.iter().map(|p| q(p)).collect();
            out += &format!("  models: [{}]\n", items.join(", "));
        }
        if let Some(e) = &self.expires {
            out += &format!("  expires: {}\n", q(e));
        }
        for (field, v) in [
            ("rpm_limit", self.rpm_limit),
            ("tpm_limit", self.tpm_limit),
            ("max_parallel_requests", self.max_parallel_requests),
        ] {
            if let Some(v) = v {
                out += &format!("  {field}: {v}\n");
            }
        }
        if let Some(b) = self.max_budget {
            out += &format!("  max_budget: {b:?}\n");
        }
        if let Some(d) = &self.budget_duration {
            out += &format!("  budget_duration: {}\n", q(d));
        }
        out
    }
}

/// Encodes 32 random bytes as the 43 base-62 digits that hold them, behind
/// [`MINTED_KEY_PREFIX`]. The randomness comes from the caller (the host's `/dev/urandom`).
pub fn format_minted_key(random: &[u8; 32]) -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    // 62^43 > 2^256, so 43 digits hold any 32-byte number; fixed length, leading zeros kept.
    let mut n = *random;
    let mut digits = [0u8; 43];
    for d in digits.iter_mut().rev() {
        let mut rem: u32 = 0;
        for byte in n.iter_mut() {
            let cur = (rem << 8) | u32::from(*byte);
            *byte = (cur / 62) as u8;
            rem = cur % 62;
        }
        // rem < 62: always a digit of the alphabet.
        *d = ALPHABET.get(rem as usize).copied().unwrap_or(b'0');
    }
    let mut key = String::from(MINTED_KEY_PREFIX);
    key.extend(digits.iter().map(|b| char::from(*b)));
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth;
    use crate::config::keys::find_key;
    use crate::config::keys::tests::{hash, table};
    use serde_json::{json, Value};

    /// Minted keys are fixed-length base 62 behind the prefix, and distinct for distinct bytes.
    #[test]
    fn minted_key_format() {
        let zero = format_minted_key(&[0; 32]);
        assert_eq!(zero, format!("sk-gw-{}", "0".repeat(43)));
        let max = format_minted_key(&[0xff; 32]);
        assert_eq!(max.len(), 6 + 43);
        assert!(max[6..].bytes().all(|b| b.is_ascii_alphanumeric()));
        let mut one = [0u8; 32];
        one[31] = 61;
        assert!(format_minted_key(&one).ends_with("0z"));
        one[31] = 62;
        assert!(format_minted_key(&one).ends_with("10"));
    }

    /// The entry mint-key prints parses as YAML and validates in a config.
    #[test]
    fn minted_entry_validates() {
        let spec = KeySpec {
            name: "alice-dev".into(),
            team: Some("research".into()),
            models: Some(vec!["gpt-4o*".into(), "claude-*".into()]),
            max_budget: Some(10.0),
            budget_duration: Some("monthly".into()),
            rpm_limit: Some(60),
            tpm_limit: Some(100_000),
            max_parallel_requests: Some(4),
            expires: Some("2026-12-31".into()),
        };
        spec.validate().unwrap();
        let key = format_minted_key(&[7; 32]);
        let yaml = spec.entry_yaml(&hash(&key));
        let entries: Value = serde_norway::from_str(&yaml).unwrap();
        let t = table(entries, json!([{"name": "research"}])).unwrap();
        let k = find_key(&t, &auth::digest(&key)).unwrap();
        assert_eq!(k.name, "alice-dev");
        assert_eq!(k.limits.max_budget_micro_usd, Some(10_000_000));
        assert_eq!(k.limits.max_parallel_requests, Some(4));
        assert_eq!(k.models.as_ref().unwrap().len(), 2);

        let bad = KeySpec {
            name: "x".into(),
            budget_duration: Some("monthly".into()),
            ..KeySpec::default()
        };
        assert_eq!(bad.validate().unwrap_err().field, "budget_duration");
    }
}
