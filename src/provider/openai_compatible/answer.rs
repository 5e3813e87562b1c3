//! What the gateway reads of a complete (non-stream) answer it passes through: one pass
//! that checks the body is JSON and keeps only the few facts the translator needs, instead
//! of building a value of every field.

use serde::Deserialize;
use serde_json::Value;

/// What the gateway reads of a 2xx answer it passes through: whether it is a chat
/// completion, its usage, and whether it carries an error. One pass that checks the whole
/// body is valid JSON (as a generic parse would) but builds nothing else.
pub(super) struct AnswerShape {
    pub(super) choices_is_array: bool,
    pub(super) usage: Option<Value>,
    pub(super) has_error: bool,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum AnswerField {
    Choices,
    Usage,
    Error,
    #[serde(other)]
    Other,
}

impl<'de> Deserialize<'de> for AnswerShape {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = AnswerShape;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<AnswerShape, A::Error> {
                let mut shape = AnswerShape {
                    choices_is_array: false,
                    usage: None,
                    has_error: false,
                };
                while let Some(field) = map.next_key::<AnswerField>()? {
                    match field {
                        AnswerField::Choices => {
                            shape.choices_is_array = map.next_value::<Checked>()?.0 == Kind::Array
                        }
                        AnswerField::Usage => shape.usage = Some(map.next_value()?),
                        AnswerField::Error => {
                            shape.has_error = map.next_value::<Checked>()?.0 != Kind::Null
                        }
                        AnswerField::Other => {
                            map.next_value::<Checked>()?;
                        }
                    }
                }
                Ok(shape)
            }
        }
        d.deserialize_map(Fields)
    }
}

#[derive(PartialEq, Eq)]
enum Kind {
    Null,
    Array,
    Other,
}

/// Any JSON value, checked as strictly as `serde_json::Value` would be (string escapes,
/// number ranges) and then dropped; only its kind is kept.
struct Checked(Kind);

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Any;
        impl<'de> serde::de::Visitor<'de> for Any {
            type Value = Checked;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Checked, A::Error> {
                while a.next_element::<Checked>()?.is_some() {}
                Ok(Checked(Kind::Array))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Checked, A::Error> {
                while a.next_entry::<Checked, Checked>()?.is_some() {}
                Ok(Checked(Kind::Other))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
                Ok(Checked(Kind::Other))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
                Ok(Checked(Kind::Other))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
                Ok(Checked(Kind::Other))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
                Ok(Checked(Kind::Other))
            }
            fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
                Ok(Checked(Kind::Other))
            }
            fn visit_unit<E>(self) -> Result<Checked, E> {
                Ok(Checked(Kind::Null))
            }
        }
        d.deserialize_any(Any)
    }
}
