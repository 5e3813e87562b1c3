//! The client's body as an OpenAI-compatible server gets it, without parsing it whole.
//!
//! The forwarded body must be what serde_json writes for the body read as a `Value` (keys
//! sorted, compact, its escapes and number forms) with a few fields changed. Reading and
//! writing a 100 KB body that way is most of the request's cost; here the top level and
//! each message are taken apart, and every value in them that is already written as
//! serde_json would write it is copied verbatim. Any other value is read as a `Value`,
//! which keeps serde_json's checks and output.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, Serializer};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::openai::json_text::{canonical, Canonical};

/// One value of the body.
enum Passed {
    /// As the client wrote it, which is how serde_json would write it.
    Raw(Box<RawValue>),
    /// Read as a value, written by serde_json.
    Parsed(Value),
    /// A message, taken apart.
    Object(BTreeMap<String, Passed>),
    /// The messages.
    Array(Vec<Passed>),
}

impl Passed {
    fn from_raw<E: de::Error>(raw: Box<RawValue>) -> Result<Passed, E> {
        match canonical(raw.get()) {
            Canonical::Yes => Ok(Passed::Raw(raw)),
            Canonical::No => serde_json::from_str(raw.get())
                .map(Passed::Parsed)
                .map_err(E::custom),
            // Left to the whole-body parse, which applies serde_json's depth limit.
            Canonical::TooDeep => Err(E::custom("nested too deep")),
        }
    }

    fn into_value(self) -> Option<Value> {
        match self {
            Passed::Raw(raw) => serde_json::from_str(raw.get()).ok(),
            Passed::Parsed(v) => Some(v),
            other => serde_json::to_value(&other).ok(),
        }
    }
}

impl Serialize for Passed {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Passed::Raw(raw) => raw.serialize(serializer),
            Passed::Parsed(v) => v.serialize(serializer),
            Passed::Object(fields) => fields.serialize(serializer),
            Passed::Array(items) => items.serialize(serializer),
        }
    }
}

/// What the server needs changed in the body.
pub struct Changes<'a> {
    /// The deployment's model.
    pub model: &'a str,
    /// Message fields to remove.
    pub drop_message_fields: &'a [&'a str],
}

/// The forwarded body, whether the client asked for a stream, and whether it asked for the
/// usage chunk; `None` for a body this cannot read, which the caller then reads as a whole
/// (giving the same output, or its error).
pub fn forward(body: &[u8], changes: &Changes<'_>) -> Option<(Vec<u8>, bool, bool)> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let mut fields = Level::Top(changes).deserialize(&mut de).ok()?;
    de.end().ok()?;
    let Passed::Object(fields) = &mut fields else {
        return None;
    };
    fields.insert("model".into(), Passed::Parsed(changes.model.into()));
    let stream = match fields.get("stream") {
        Some(Passed::Raw(raw)) => raw.get() == "true",
        Some(Passed::Parsed(v)) => *v == Value::Bool(true),
        _ => false,
    };
    let mut wants_usage = false;
    if stream {
        let mut options = match fields.remove("stream_options").map(Passed::into_value) {
            Some(None) => return None,
            Some(Some(Value::Object(o))) => o,
            Some(Some(_)) | None => Map::new(),
        };
        wants_usage = options.get("include_usage") == Some(&Value::Bool(true));
        options.insert("include_usage".into(), Value::Bool(true));
        fields.insert(
            "stream_options".into(),
            Passed::Parsed(Value::Object(options)),
        );
    }
    // About the size of the body: one allocation instead of one per doubling.
    let mut out = Vec::with_capacity(body.len() + changes.model.len() + 64);
    serde_json::to_writer(&mut out, fields).ok()?;
    Some((out, stream, wants_usage))
}

/// Where in the body a value is: the body and each message are taken apart, `messages`
/// is read one message at a time, anything else is a value.
#[derive(Clone, Copy)]
enum Level<'a> {
    Top(&'a Changes<'a>),
    Messages(&'a Changes<'a>),
    Message(&'a Changes<'a>),
}

impl<'de> DeserializeSeed<'de> for Level<'_> {
    type Value = Passed;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Passed, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Level<'_> {
    type Value = Passed;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Passed, E> {
        Ok(Passed::Parsed(v.into()))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Passed, E> {
        Ok(Passed::Parsed(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Passed, E> {
        Ok(Passed::Parsed(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Passed, E> {
        Ok(Passed::Parsed(v.into()))
    }

    fn visit_str<E>(self, v: &str) -> Result<Passed, E> {
        Ok(Passed::Parsed(v.into()))
    }

    fn visit_unit<E>(self) -> Result<Passed, E> {
        Ok(Passed::Parsed(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Passed, A::Error> {
        match self {
            Level::Messages(changes) => {
                let mut items = Vec::new();
                while let Some(m) = seq.next_element_seed(Level::Message(changes))? {
                    items.push(m);
                }
                Ok(Passed::Array(items))
            }
            Level::Top(_) | Level::Message(_) => {
                Value::deserialize(SeqAccessDeserializer::new(seq)).map(Passed::Parsed)
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Passed, A::Error> {
        let changes = match self {
            Level::Top(changes) | Level::Message(changes) => changes,
            Level::Messages(_) => {
                return Value::deserialize(MapAccessDeserializer::new(map)).map(Passed::Parsed)
            }
        };
        let mut fields = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = match self {
                Level::Top(_) if key == "messages" => {
                    map.next_value_seed(Level::Messages(changes))?
                }
                _ => Passed::from_raw(map.next_value::<Box<RawValue>>()?)?,
            };
            fields.insert(key, value);
        }
        if let Level::Message(changes) = self {
            for f in changes.drop_message_fields {
                fields.remove(*f);
            }
        }
        Ok(Passed::Object(fields))
    }
}
