//! Names the JSON field a typed parse failed on (`messages[2].content: invalid type ...`).
//!
//! A value is written out compactly and parsed again from bytes, which reuses the byte
//! parser's code for the type instead of instantiating a path-tracking one: serde_json
//! reports where it stopped, and the field is the value that ends or starts there.

use serde::de::DeserializeOwned;
use serde_json::Value;

/// `serde_json::from_str`, through the byte parser: every type the module reads is then
/// instantiated for one reader only (the str and slice readers each copy a type's whole
/// parser into the module).
pub fn from_str<'a, T: serde::Deserialize<'a>>(text: &'a str) -> serde_json::Result<T> {
    serde_json::from_slice(text.as_bytes())
}

/// A value that does not fit its type.
#[derive(Debug)]
pub struct FieldError {
    /// Path of the field at fault, e.g. `messages[0].role`; empty for the document itself.
    pub path: String,
    /// serde's message, without its position.
    pub message: String,
}

/// Parses `value` as a `T`, naming the field at fault on failure.
pub fn from_value<T: DeserializeOwned>(value: &Value) -> Result<T, FieldError> {
    // Map keys come out in the value's order and duplicates are gone, so the first error
    // is the one a parse of the value itself would meet.
    let mut bytes = serde_json::to_vec(value).map_err(|e| FieldError {
        path: String::new(),
        message: e.to_string(),
    })?;
    // Room past the value, so that a position there is not clamped to its last byte.
    bytes.push(b' ');
    serde_json::from_slice::<T>(&bytes).map_err(|e| {
        let retry = |b: &[u8]| serde_json::from_slice::<T>(b).err();
        locate(&bytes, &e, &retry)
    })
}

/// How far serde_json read: the end of what it consumed, or for a byte it only peeked
/// at, one past that byte.
fn offset(e: &serde_json::Error) -> Option<usize> {
    // The compact form is one line; line 0 means no position (an error after the parse).
    (e.line() == 1).then_some(e.column())
}

/// The message without serde_json's ` at line L column C`.
fn message_of(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    match text.strip_suffix(&suffix) {
        Some(m) if e.line() != 0 => m.to_string(),
        _ => text,
    }
}

/// One value of the compact document.
struct Node {
    start: usize,
    end: usize,
    /// Where its member starts: the key of an object member, else `start`.
    member: usize,
    parent: Option<usize>,
    segment: Segment,
}

enum Segment {
    Root,
    /// A key's bytes, quotes included.
    Key(usize, usize),
    Index(usize),
}

/// The field `e` is about; `retry` parses other bytes as the same type.
fn locate(
    bytes: &[u8],
    e: &serde_json::Error,
    retry: &dyn Fn(&[u8]) -> Option<serde_json::Error>,
) -> FieldError {
    let mut message = message_of(e);
    let Some(mut at) = offset(e) else {
        return FieldError {
            path: String::new(),
            message,
        };
    };
    // An enum given neither a string nor an object: the byte parser says only `expected
    // value`, one byte into the value.
    let not_enum = message == "expected value";
    if not_enum {
        at = at.saturating_sub(1);
    }
    let mut nodes = Vec::new();
    scan(bytes, &mut 0, None, Segment::Root, 0, &mut nodes);
    // The value that ends or starts at `at` (a leaf read whole, a container of the wrong
    // type) or whose key ends there (an unknown field), else the innermost one around it.
    let unknown_field = message.starts_with("unknown field");
    let found = nodes
        .iter()
        .position(|n| {
            n.end == at
                || n.start == at
                || unknown_field && matches!(n.segment, Segment::Key(_, end) if end == at)
        })
        .or_else(|| nodes.iter().rposition(|n| n.start < at && at < n.end));
    let Some(mut index) = found else {
        return FieldError {
            path: String::new(),
            message,
        };
    };
    // Word it as a parse of the value does; likewise for an enum given an object of
    // several keys, whose first key the byte parser takes for the variant.
    if not_enum || message.starts_with("unknown variant") {
        if let Some(m) = nodes
            .get(index)
            .and_then(|n| bytes.get(n.start..n.end))
            .and_then(|raw| serde_json::from_slice::<Value>(raw).ok())
            .and_then(|v| not_enum_message(&v))
        {
            message = m;
        }
    }
    // A value whose type reads it whole before judging it (an untagged enum) reports its
    // error only once serde_json has gone past the separator after it: in an array, past
    // the comma, where the next element starts; that element is at fault only when it is
    // a container of the wrong type.
    if let Some(n) = nodes.get(index).filter(|n| n.start == at) {
        let parent = n.parent.and_then(|p| nodes.get(p));
        if parent.is_some_and(|p| bytes.get(p.start) == Some(&b'['))
            && !wrong_container(bytes, n.start, &message)
        {
            let (parent, start) = (n.parent, n.start);
            if let Some(prev) = nodes
                .iter()
                .rposition(|m| m.parent == parent && m.start < start)
            {
                index = prev;
            }
        }
    }
    // And for the last member, past the container's end: that container is at fault
    // itself (a missing field) or its last member is. Repeating the member tells them
    // apart: the member fails again, now followed by a comma, while a container at fault
    // fails elsewhere.
    if nodes.get(index).is_some_and(|n| n.end == at) {
        let last = nodes.iter().rposition(|n| n.parent == Some(index));
        let in_array = nodes.get(index).and_then(|n| bytes.get(n.start)) == Some(&b'[');
        if let Some((last, child)) = last.and_then(|i| Some((i, nodes.get(i)?))) {
            if let (Some(head), Some(member), Some(tail)) = (
                bytes.get(..child.end),
                bytes.get(child.member..child.end),
                bytes.get(child.end..),
            ) {
                let mut twice = Vec::with_capacity(bytes.len() + member.len() + 1);
                twice.extend_from_slice(head);
                twice.push(b',');
                twice.extend_from_slice(member);
                twice.extend_from_slice(tail);
                let again = retry(&twice);
                let member_fails = match again.as_ref().and_then(offset) {
                    Some(p) if !in_array => p == child.end,
                    Some(p) => {
                        p == child.end + 1
                            && !again.is_some_and(|e| wrong_container(&twice, p, &message_of(&e)))
                    }
                    None => false,
                };
                if member_fails {
                    index = last;
                }
            }
        }
    }
    FieldError {
        path: path(bytes, &nodes, index),
        message,
    }
}

/// Whether `message` is about the container at `start` being of the wrong type.
fn wrong_container(bytes: &[u8], start: usize, message: &str) -> bool {
    match bytes.get(start) {
        Some(b'{') => message.starts_with("invalid type: map,"),
        Some(b'[') => message.starts_with("invalid type: sequence,"),
        _ => false,
    }
}

/// What a parse of `v` says when an enum is expected.
fn not_enum_message(v: &Value) -> Option<String> {
    use serde::de::{Error, Unexpected};
    let unexpected = match v {
        Value::Null => Unexpected::Unit,
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Unexpected::Unsigned(u),
            (_, Some(i), _) => Unexpected::Signed(i),
            (_, _, Some(f)) => Unexpected::Float(f),
            _ => return None,
        },
        Value::Array(_) => Unexpected::Seq,
        Value::Object(m) if m.len() != 1 => {
            let e = serde_json::Error::invalid_value(Unexpected::Map, &"map with a single key");
            return Some(e.to_string());
        }
        _ => return None,
    };
    Some(serde_json::Error::invalid_type(unexpected, &"string or map").to_string())
}

/// Records the value at `*i` and everything in it, leaving `*i` past it.
fn scan(
    b: &[u8],
    i: &mut usize,
    parent: Option<usize>,
    segment: Segment,
    member: usize,
    nodes: &mut Vec<Node>,
) {
    let start = *i;
    let index = nodes.len();
    nodes.push(Node {
        start,
        end: start,
        member,
        parent,
        segment,
    });
    match b.get(start) {
        Some(open @ (b'{' | b'[')) => {
            let close = if *open == b'{' { b'}' } else { b']' };
            *i += 1;
            let mut n = 0;
            while b.get(*i).is_some_and(|c| *c != close) {
                let member = *i;
                let segment = if close == b'}' {
                    let key_end = skip_string(b, *i);
                    *i = key_end + 1; // the colon
                    Segment::Key(member, key_end)
                } else {
                    Segment::Index(n)
                };
                let before = *i;
                scan(b, i, Some(index), segment, member, nodes);
                n += 1;
                if *i == before || b.get(*i) != Some(&b',') {
                    break;
                }
                *i += 1;
            }
            *i += 1;
        }
        Some(b'"') => *i = skip_string(b, start),
        Some(_) => {
            while b
                .get(*i)
                .is_some_and(|c| !matches!(c, b',' | b'}' | b']' | b' '))
            {
                *i += 1;
            }
        }
        None => {}
    }
    if let Some(node) = nodes.get_mut(index) {
        node.end = *i;
    }
}

/// The index past the string that starts at `i`.
fn skip_string(b: &[u8], i: usize) -> usize {
    let mut j = i + 1;
    loop {
        match b.get(j) {
            Some(b'\\') => j += 2,
            Some(b'"') => return j + 1,
            Some(_) => j += 1,
            None => return j,
        }
    }
}

/// `a.b[2].c` for the node at `index`.
fn path(bytes: &[u8], nodes: &[Node], mut index: usize) -> String {
    let mut segments = Vec::new();
    while let Some(node) = nodes.get(index) {
        segments.push(&node.segment);
        match node.parent {
            Some(p) => index = p,
            None => break,
        }
    }
    let mut out = String::new();
    for segment in segments.into_iter().rev() {
        match *segment {
            Segment::Root => {}
            Segment::Key(start, end) => {
                if !out.is_empty() {
                    out.push('.');
                }
                let raw = bytes.get(start..end).unwrap_or_default();
                match serde_json::from_slice::<String>(raw) {
                    Ok(key) => out.push_str(&key),
                    Err(_) => out.push_str(&String::from_utf8_lossy(raw)),
                }
            }
            Segment::Index(n) => {
                out.push('[');
                out.push_str(&n.to_string());
                out.push(']');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::ChatRequest;
    use serde_json::json;

    fn fault(v: Value) -> (String, String) {
        let e = from_value::<ChatRequest>(&v).unwrap_err();
        (e.path, e.message)
    }

    fn chat(message: Value) -> Value {
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}, message]})
    }

    /// Each way serde_json reports an error maps to the field a path-tracking parse names.
    #[test]
    fn names_the_field() {
        // A leaf read whole, a container of the wrong type.
        assert_eq!(
            fault(json!({"model": "m", "messages": [], "n": "two"})).0,
            "n"
        );
        let (path, message) = fault(json!({"model": {"a": 1}, "messages": []}));
        assert_eq!(
            (path.as_str(), message.as_str()),
            ("model", "invalid type: map, expected a string")
        );
        // A missing field: the object, not its last member.
        let (path, message) = fault(chat(json!({"content": "x", "name": "x"})));
        assert_eq!(
            (path.as_str(), message.as_str()),
            ("messages[1]", "missing field `role`")
        );
        // An untagged enum, first and last in its object, and in an array.
        let content = json!({"role": "user", "content": 5});
        assert_eq!(fault(chat(content)).0, "messages[1].content");
        let (path, message) = fault(chat(json!({"content": 5})));
        assert_eq!(path, "messages[1].content");
        assert_eq!(
            message,
            "data did not match any variant of untagged enum Content"
        );
        assert_eq!(fault(chat(json!(["user", 5]))).0, "messages[1][1]");
        assert_eq!(fault(chat(json!(["user", 5, null]))).0, "messages[1][1]");
        // An enum given neither a string nor an object, or an object of several keys.
        let (path, message) = fault(chat(json!({"role": 1.5, "content": "x"})));
        assert_eq!(path, "messages[1].role");
        assert_eq!(
            message,
            "invalid type: floating point `1.5`, expected string or map"
        );
        let (_, message) = fault(chat(json!({"role": {"a": 1, "b": 2}, "content": "x"})));
        assert_eq!(
            message,
            "invalid value: map, expected map with a single key"
        );
        // Escaped keys are named unescaped.
        let v = json!({"model": "m", "messages": [], "logit_bias": {}, "stop": {"a\"b": 1}});
        assert_eq!(fault(v).0, "stop");
    }
}
