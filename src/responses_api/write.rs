//! A few JSON writing steps, appended straight to the output: the Responses shapes are
//! written field by field rather than built as values first, which keeps the module small.
//!
//! A field's comma comes from the byte before it: none after `{` or `[`.

use serde_json::Value;

/// `,` unless `out` just opened an object or array.
pub fn sep(out: &mut Vec<u8>) {
    if !matches!(out.last(), Some(b'{' | b'[') | None) {
        out.push(b',');
    }
}

/// `"k":`
pub fn key(out: &mut Vec<u8>, k: &str) {
    sep(out);
    out.push(b'"');
    out.extend_from_slice(k.as_bytes());
    out.extend_from_slice(b"\":");
}

/// A JSON string.
pub fn string(out: &mut Vec<u8>, s: &str) {
    // Writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// `"k":"v"`
pub fn str_field(out: &mut Vec<u8>, k: &str, v: &str) {
    key(out, k);
    string(out, v);
}

/// `"k":n`
pub fn num_field(out: &mut Vec<u8>, k: &str, v: u64) {
    key(out, k);
    out.extend_from_slice(v.to_string().as_bytes());
}

/// `"k":<json text>`
pub fn raw_field(out: &mut Vec<u8>, k: &str, json: &str) {
    key(out, k);
    out.extend_from_slice(json.as_bytes());
}

/// `"k":<value>`
pub fn value_field(out: &mut Vec<u8>, k: &str, v: &Value) {
    key(out, k);
    let _ = serde_json::to_writer(&mut *out, v);
}

/// `"k":<value>`, or `"k":<default>` when there is none.
pub fn value_or(out: &mut Vec<u8>, k: &str, v: Option<&Value>, default: &str) {
    match v {
        Some(v) => value_field(out, k, v),
        None => raw_field(out, k, default),
    }
}
