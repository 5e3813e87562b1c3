//! Reading one Anthropic stream event from its `data` without serde's buffering
//! `Content` (tens of KB of wasm): the frequent block delta by its exact text, anything
//! else from one borrowed tree of nodes, mapped by hand with the errors serde's
//! `tag = "type"` derive would give.

use std::borrow::Cow;

use serde::de::{self, MapAccess, SeqAccess, Unexpected, Visitor};
use serde::{Deserialize, Deserializer};

use super::{BlockDelta, ContentBlockStart, MessageDelta, MessageStart, StreamError, StreamEvent};
use crate::provider::anthropic::schema::{AnthropicUsage, CacheCreation};

/// [`StreamEvent::parse`]: the block delta directly, anything else by its `type`.
#[inline]
pub(super) fn parse(data: &str) -> serde_json::Result<StreamEvent<'_>> {
    match parse_block_delta(data) {
        Some(event) => Ok(event),
        None => parse_tagged(data),
    }
}

pub(super) fn parse_tagged<'a>(data: &'a str) -> serde_json::Result<StreamEvent<'a>> {
    let mut t: Tagged<'a> = crate::json::path::from_str(data)?;
    let Tag::Name(tag) = std::mem::replace(&mut t.tag, Tag::Index(0)) else {
        return Err(de::Error::invalid_type(
            Unexpected::Unsigned(0),
            &"a string",
        ));
    };
    let (event, fields) = match tag.as_ref() {
        "message_start" => (
            StreamEvent::MessageStart {
                message: t.required(0, "message", message_start)?,
            },
            1,
        ),
        "content_block_start" => (
            StreamEvent::ContentBlockStart {
                index: t.required(0, "index", index)?,
                content_block: t.required(1, "content_block", ContentBlockStart::from_node)?,
            },
            2,
        ),
        "content_block_delta" => (
            StreamEvent::ContentBlockDelta {
                index: t.required(0, "index", index)?,
                delta: t.required(1, "delta", BlockDelta::from_node)?,
            },
            2,
        ),
        "content_block_stop" => (
            StreamEvent::ContentBlockStop {
                index: t.required(0, "index", index)?,
            },
            1,
        ),
        "message_delta" => (
            StreamEvent::MessageDelta {
                delta: t.required(0, "delta", message_delta)?,
                usage: t.or_default(1, "usage", |n| optional(n, usage))?,
            },
            2,
        ),
        "message_stop" => (StreamEvent::MessageStop, 0),
        "ping" => (StreamEvent::Ping, 0),
        "error" => (
            StreamEvent::Error {
                error: t.required(0, "error", stream_error)?,
            },
            1,
        ),
        _ => (StreamEvent::Unknown, 0),
    };
    t.check_length(fields)?;
    Ok(event)
}

impl<'a> ContentBlockStart<'a> {
    fn from_node(node: Node<'a>) -> serde_json::Result<ContentBlockStart<'a>> {
        let mut t = Tagged::from_node(node)?;
        let names = ["text", "tool_use", "thinking", "redacted_thinking"];
        let (block, fields) = match t.nested_tag(&names) {
            "text" => (
                ContentBlockStart::Text {
                    text: t.or_default(0, "text", cow)?,
                },
                1,
            ),
            "tool_use" => (
                ContentBlockStart::ToolUse {
                    id: t.required(0, "id", cow)?,
                    name: t.required(1, "name", cow)?,
                },
                2,
            ),
            "thinking" => (
                ContentBlockStart::Thinking {
                    thinking: t.or_default(0, "thinking", cow)?,
                    signature: t.or_default(1, "signature", cow)?,
                },
                2,
            ),
            "redacted_thinking" => (
                ContentBlockStart::RedactedThinking {
                    data: t.required(0, "data", cow)?,
                },
                1,
            ),
            _ => (ContentBlockStart::Other, 0),
        };
        t.check_length(fields)?;
        Ok(block)
    }
}

impl<'a> BlockDelta<'a> {
    fn from_node(node: Node<'a>) -> serde_json::Result<BlockDelta<'a>> {
        let mut t = Tagged::from_node(node)?;
        let names = [
            "text_delta",
            "input_json_delta",
            "thinking_delta",
            "signature_delta",
        ];
        let delta = match t.nested_tag(&names) {
            "text_delta" => BlockDelta::TextDelta {
                text: t.required(0, "text", cow)?,
            },
            "input_json_delta" => BlockDelta::InputJsonDelta {
                partial_json: t.required(0, "partial_json", cow)?,
            },
            "thinking_delta" => BlockDelta::ThinkingDelta {
                thinking: t.required(0, "thinking", cow)?,
            },
            "signature_delta" => BlockDelta::SignatureDelta {
                signature: t.required(0, "signature", cow)?,
            },
            _ => BlockDelta::Other,
        };
        t.check_length(usize::from(!matches!(delta, BlockDelta::Other)))?;
        Ok(delta)
    }
}

/// A JSON value read once and kept, strings borrowed where they have no escapes: what
/// serde buffers for a tagged enum (and so accepting the same), but one concrete type
/// mapped by hand instead of a generic replay for every field's type.

#[derive(Default)]
enum Node<'a> {
    #[default]
    Null,
    Other,
    U64(u64),
    Str(Cow<'a, str>),
    Seq(Vec<Node<'a>>),
    Map(Vec<(Cow<'a, str>, Node<'a>)>),
}

impl<'de> Deserialize<'de> for Node<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node<'de>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Node::Other)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Node::Other) // JSON gives i64 only below zero
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Node::U64(v))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Node::Other)
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Node::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Node::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Node::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::new();
        while let Some(Str(key)) = map.next_key()? {
            members.push((key, map.next_value()?));
        }
        Ok(Node::Map(members))
    }
}

fn invalid(what: &'static str) -> serde_json::Error {
    de::Error::invalid_type(Unexpected::Other("another type"), &what)
}

fn cow(node: Node<'_>) -> serde_json::Result<Cow<'_, str>> {
    match node {
        Node::Str(s) => Ok(s),
        _ => Err(invalid("a string")),
    }
}

fn index(node: Node<'_>) -> serde_json::Result<u32> {
    match node {
        Node::U64(n) => u32::try_from(n).map_err(|_| invalid("u32")),
        _ => Err(invalid("u32")),
    }
}

fn count(node: Node<'_>) -> serde_json::Result<u64> {
    match node {
        Node::U64(n) => Ok(n),
        _ => Err(invalid("u64")),
    }
}

/// `null` is `None`, as for serde's `Option`.
fn optional<'a, T>(
    node: Node<'a>,
    parse: fn(Node<'a>) -> serde_json::Result<T>,
) -> serde_json::Result<Option<T>> {
    match node {
        Node::Null => Ok(None),
        node => parse(node).map(Some),
    }
}

/// A plain struct's fields by name (ignoring others, refusing repeats) or, in the array
/// form serde also takes, by position.
fn fields<'a, const N: usize>(
    node: Node<'a>,
    names: [&'static str; N],
) -> serde_json::Result<[Option<Node<'a>>; N]> {
    let mut out = [const { None }; N];
    match node {
        Node::Map(members) => {
            for (key, value) in members {
                if let Some((name, slot)) = names.iter().zip(&mut out).find(|(n, _)| **n == key) {
                    if slot.is_some() {
                        return Err(de::Error::duplicate_field(name));
                    }
                    *slot = Some(value);
                }
            }
        }
        Node::Seq(items) => {
            if items.len() > N {
                return Err(de::Error::invalid_length(items.len(), &"fewer elements"));
            }
            for (slot, item) in out.iter_mut().zip(items) {
                *slot = Some(item);
            }
        }
        _ => return Err(invalid("a struct")),
    }
    Ok(out)
}

fn message_start(node: Node<'_>) -> serde_json::Result<MessageStart<'_>> {
    let [id, model, usage_] = fields(node, ["id", "model", "usage"])?;
    Ok(MessageStart {
        id: id.map(cow).transpose()?.unwrap_or_default(),
        model: model.map(cow).transpose()?.unwrap_or_default(),
        usage: optional_field(usage_, usage)?,
    })
}

fn usage(node: Node<'_>) -> serde_json::Result<AnthropicUsage> {
    let names = [
        "input_tokens",
        "output_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
        "cache_creation",
    ];
    let [input, output, read, write, by_retention] = fields(node, names)?;
    Ok(AnthropicUsage {
        input_tokens: optional_field(input, count)?,
        output_tokens: optional_field(output, count)?,
        cache_read_input_tokens: optional_field(read, count)?,
        cache_creation_input_tokens: optional_field(write, count)?,
        cache_creation: optional_field(by_retention, cache_creation)?,
    })
}

/// A field that may be missing or null, as serde reads an `Option` with `#[serde(default)]`.
fn optional_field<'a, T>(
    field: Option<Node<'a>>,
    read: fn(Node<'a>) -> serde_json::Result<T>,
) -> serde_json::Result<Option<T>> {
    field
        .map(|n| optional(n, read))
        .transpose()
        .map(Option::flatten)
}

fn cache_creation(node: Node<'_>) -> serde_json::Result<CacheCreation> {
    let names = ["ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens"];
    let [five_minutes, one_hour] = fields(node, names)?;
    Ok(CacheCreation {
        ephemeral_5m_input_tokens: optional_field(five_minutes, count)?,
        ephemeral_1h_input_tokens: optional_field(one_hour, count)?,
    })
}

fn message_delta(node: Node<'_>) -> serde_json::Result<MessageDelta<'_>> {
    let [stop_reason] = fields(node, ["stop_reason"])?;
    // Serde's `Option<Cow>` always owns its string.
    let owned = |n| cow(n).map(|s| Cow::Owned(s.into_owned()));
    Ok(MessageDelta {
        stop_reason: stop_reason
            .map(|n| optional(n, owned))
            .transpose()?
            .flatten(),
    })
}

fn stream_error(node: Node<'_>) -> serde_json::Result<StreamError<'_>> {
    let [kind, message] = fields(node, ["type", "message"])?;
    Ok(StreamError {
        kind: kind.map(cow).transpose()?.unwrap_or_default(),
        message: message.map(cow).transpose()?.unwrap_or_default(),
    })
}

/// A value tagged by `type`, split into the tag and the rest. Like serde's tagged enums it
/// takes an object, the tag anywhere in it, or an array `[tag, field, ...]` with the
/// fields in declaration order.
struct Tagged<'a> {
    tag: Tag<'a>,
    rest: Node<'a>,
}

/// A tag is a string, but serde also takes a variant's position where it reads the tag
/// from its buffer, as for the tagged values inside an event.
enum Tag<'a> {
    Name(Cow<'a, str>),
    Index(u64),
}

impl<'a> Tagged<'a> {
    fn from_node(node: Node<'a>) -> serde_json::Result<Tagged<'a>> {
        let tag = |node| match node {
            Node::Str(s) => Ok(Tag::Name(s)),
            Node::U64(i) => Ok(Tag::Index(i)),
            _ => Err(invalid("a string")),
        };
        match node {
            Node::Seq(mut items) => {
                if items.is_empty() {
                    return Err(de::Error::missing_field("type"));
                }
                let first = items.remove(0);
                Ok(Tagged {
                    tag: tag(first)?,
                    rest: Node::Seq(items),
                })
            }
            Node::Map(mut members) => {
                let mut found = None;
                let mut i = 0;
                while let Some((key, _)) = members.get(i) {
                    if key == "type" {
                        if found.is_some() {
                            return Err(de::Error::duplicate_field("type"));
                        }
                        found = Some(members.remove(i).1);
                    } else {
                        i += 1;
                    }
                }
                let found = found.ok_or_else(|| de::Error::missing_field("type"))?;
                Ok(Tagged {
                    tag: tag(found)?,
                    rest: Node::Map(members),
                })
            }
            _ => Err(invalid("an object tagged by type")),
        }
    }

    /// The tag of a nested value, a position standing for the name at it.
    fn nested_tag<'s>(&'s self, names: &[&'s str]) -> &'s str {
        match &self.tag {
            Tag::Name(name) => name,
            Tag::Index(i) => usize::try_from(*i)
                .ok()
                .and_then(|i| names.get(i))
                .copied()
                .unwrap_or(""),
        }
    }

    /// Field `name`, number `pos` of the array form; an error when it appears twice.
    fn field<T>(
        &mut self,
        pos: usize,
        name: &'static str,
        parse: impl FnOnce(Node<'a>) -> serde_json::Result<T>,
    ) -> serde_json::Result<Option<T>> {
        let node = match &mut self.rest {
            Node::Seq(items) => items.get_mut(pos).map(std::mem::take),
            Node::Map(members) => {
                let mut found = None;
                for (key, value) in members.iter_mut() {
                    if key == name {
                        if found.is_some() {
                            return Err(de::Error::duplicate_field(name));
                        }
                        found = Some(std::mem::take(value));
                    }
                }
                found
            }
            _ => None,
        };
        node.map(parse).transpose()
    }

    fn required<T>(
        &mut self,
        pos: usize,
        name: &'static str,
        parse: impl FnOnce(Node<'a>) -> serde_json::Result<T>,
    ) -> serde_json::Result<T> {
        self.field(pos, name, parse)?
            .ok_or_else(|| de::Error::missing_field(name))
    }

    fn or_default<T: Default>(
        &mut self,
        pos: usize,
        name: &'static str,
        parse: impl FnOnce(Node<'a>) -> serde_json::Result<T>,
    ) -> serde_json::Result<T> {
        Ok(self.field(pos, name, parse)?.unwrap_or_default())
    }

    /// The array form may not carry more than the variant's fields.
    fn check_length(&self, fields: usize) -> serde_json::Result<()> {
        match &self.rest {
            Node::Seq(items) if items.len() > fields => {
                Err(de::Error::invalid_length(items.len(), &"fewer elements"))
            }
            _ => Ok(()),
        }
    }
}

/// The event itself: its tag is read straight from the JSON, so only a string will do.
impl<'de> Deserialize<'de> for Tagged<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TaggedVisitor)
    }
}

struct TaggedVisitor;

/// Read as a [`Node`], not a [`Str`]: that keeps the block delta's string read inlined.
fn top_tag<E: de::Error>(node: Node<'_>) -> Result<Cow<'_, str>, E> {
    match node {
        Node::Str(s) => Ok(s),
        _ => Err(E::invalid_type(
            Unexpected::Other("another type"),
            &"a string",
        )),
    }
}

impl<'de> Visitor<'de> for TaggedVisitor {
    type Value = Tagged<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object tagged by type")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let Some(tag) = seq.next_element()? else {
            return Err(de::Error::missing_field("type"));
        };
        let tag = top_tag(tag)?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Tagged {
            tag: Tag::Name(tag),
            rest: Node::Seq(items),
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut tag = None;
        let mut members = Vec::new();
        while let Some(Str(key)) = map.next_key()? {
            if key == "type" {
                if tag.is_some() {
                    return Err(de::Error::duplicate_field("type"));
                }
                tag = Some(top_tag(map.next_value()?)?);
            } else {
                members.push((key, map.next_value()?));
            }
        }
        match tag {
            Some(tag) => Ok(Tagged {
                tag: Tag::Name(tag),
                rest: Node::Map(members),
            }),
            None => Err(de::Error::missing_field("type")),
        }
    }
}

/// `{"type":"content_block_delta","index":N,"delta":{"type":"<kind>_delta","<field>":"..."}}`
/// with nothing else, read without serde but for the one string (so its escapes are
/// checked and undone exactly as the tagged derive does). `None` on any other shape, which
/// the tagged derive then judges: the result is the same either way.
pub(super) fn parse_block_delta(data: &str) -> Option<StreamEvent<'_>> {
    let rest = data.strip_prefix(r#"{"type":"content_block_delta","index":"#)?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (number, rest) = rest.split_at_checked(digits)?;
    if number.len() > 1 && number.starts_with('0') {
        return None; // not a JSON number
    }
    let index: u32 = number.parse().ok()?;
    let rest = rest.strip_prefix(r#","delta":{"type":""#)?;
    let (kind, rest) = rest.split_once('"')?;
    let field = match kind {
        "text_delta" => "text",
        "input_json_delta" => "partial_json",
        "thinking_delta" => "thinking",
        "signature_delta" => "signature",
        _ => return None,
    };
    let value = rest
        .strip_prefix(",\"")?
        .strip_prefix(field)?
        .strip_prefix("\":")?
        .strip_suffix("}}")?;
    if !value.starts_with('"') {
        return None;
    }
    let Str(piece) = crate::json::path::from_str(value).ok()?;
    let delta = match kind {
        "text_delta" => BlockDelta::TextDelta { text: piece },
        "input_json_delta" => BlockDelta::InputJsonDelta {
            partial_json: piece,
        },
        "thinking_delta" => BlockDelta::ThinkingDelta { thinking: piece },
        _ => BlockDelta::SignatureDelta { signature: piece },
    };
    Some(StreamEvent::ContentBlockDelta { index, delta })
}

/// A JSON string, borrowed from the event when it has no escapes.
struct Str<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct CowStr;
        impl<'de> Visitor<'de> for CowStr {
            type Value = Cow<'de, str>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
        }
        d.deserialize_str(CowStr).map(Str)
    }
}
