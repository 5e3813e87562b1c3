//! JSON values of the request that the gateway passes on without looking inside.

use std::fmt;
use std::sync::Arc;

use serde::de::{self, Deserialize, Deserializer};
use serde::ser::{Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::json::scan::Scan;

/// A JSON value kept as the client wrote it (a tool's parameter schema): read and written
/// without building a [`Value`] of every node, which was most of the cost of a request
/// with tools. It is checked as strictly as a parse into a `Value` would check it, so a
/// request is refused exactly as before.
#[derive(Clone)]
pub struct RawJson(Arc<RawValue>);

impl RawJson {
    /// `text` as a value, if it is exactly one JSON value.
    pub fn parse(text: &str) -> Option<RawJson> {
        let raw = RawValue::from_string(text.trim().to_string()).ok()?;
        Some(RawJson(raw.into()))
    }

    /// The value written as JSON (a [`Value`] of it, for the few that must change it).
    pub fn from_value(value: &Value) -> Option<RawJson> {
        serde_json::value::to_raw_value(value)
            .ok()
            .map(|raw| RawJson(raw.into()))
    }

    /// The JSON text, as the client wrote it.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The value, for a translation that must look inside or change it.
    pub fn to_value(&self) -> Result<Value, serde_json::Error> {
        crate::json::path::from_str(self.0.get())
    }
}

/// As strict as serde_json reading the text into a `Value`: the fast check for nearly
/// every text, and serde_json itself (its error, in its words) for the rest.
fn check(raw: &RawValue) -> Result<(), serde_json::Error> {
    let text = raw.get();
    let mut scan = Scan::new(text.as_bytes());
    if scan.skip_value().is_some() && scan.at == text.len() {
        return Ok(());
    }
    crate::json::path::from_str::<Value>(text).map(|_| ())
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get())
    }
}

impl Serialize for RawJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        check(&raw).map_err(de::Error::custom)?;
        Ok(RawJson(raw.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, serde::Serialize)]
    struct Holder {
        schema: RawJson,
    }

    /// Written back byte for byte; refused exactly when a `Value` would be.
    #[test]
    fn verbatim_and_as_strict_as_a_value() {
        let text = r#"{"schema":{"type": "object","properties":{"q":{"type":"string","description":"caf\u00e9 \ud83d\ude00"}},"minimum":-1.5e3}}"#;
        let h: Holder = crate::json::path::from_str(text).unwrap();
        assert_eq!(serde_json::to_string(&h).unwrap(), text);
        assert_eq!(h.schema.to_value().unwrap()["type"], "object");
        for bad in [
            r#"{"schema":{"d":"\udfff"}}"#,
            r#"{"schema":{"d":"\ud800x"}}"#,
            r#"{"schema":[1e999]}"#,
        ] {
            let ours = crate::json::path::from_str::<Holder>(bad).is_err();
            let value = crate::json::path::from_str::<Value>(bad).is_err();
            assert!(ours && value, "{bad}");
        }
        // Deeper than the fast check goes, but within serde_json's limit: taken, as before.
        let deep = format!("{{\"schema\":{}1{}}}", "[".repeat(122), "]".repeat(122));
        assert!(crate::json::path::from_str::<Value>(&deep).is_ok());
        assert!(crate::json::path::from_str::<Holder>(&deep).is_ok());
        assert_eq!(RawJson::parse(" {\"a\":1} ").unwrap().get(), "{\"a\":1}");
        assert!(RawJson::parse("{} x").is_none());
    }
}
