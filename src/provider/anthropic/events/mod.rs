//! Anthropic Messages stream events (`stream: true`), as sent on the wire.
//!
//! Reference: <https://docs.anthropic.com/en/api/messages-streaming>. Each SSE event's
//! `data` is one JSON object tagged by `type`; its `event:` name repeats the type. Strings
//! borrow from the event data where JSON escaping allows, so a delta is translated without
//! copying its text. Unknown event, block and delta types parse to their `Unknown`/`Other`
//! variant, because Anthropic adds new ones and the stream must go on.
//!
//! [`StreamEvent::parse`] reads the frequent block delta directly and maps the other
//! events by hand from one buffered value; the tagged derive, kept as the reference in
//! tests, would cost tens of KB of wasm.
//!
//! The types are here; reading them from an event's text is [`read`]'s.

mod read;

use std::borrow::Cow;

#[cfg(test)]
use serde::Deserialize;

use super::schema::AnthropicUsage;
use crate::error::ErrorKind;

/// One stream event. The tagged derive is the reference in tests only: [`StreamEvent::parse`]
/// does its work without serde's buffering `Content`, tens of KB of wasm.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(
    test,
    derive(Deserialize),
    serde(tag = "type", rename_all = "snake_case")
)]
pub enum StreamEvent<'a> {
    /// First event: the message shell with id, model and the input usage.
    MessageStart {
        /// The message, with empty content.
        #[cfg_attr(test, serde(borrow))]
        message: MessageStart<'a>,
    },
    /// A content block opens.
    ContentBlockStart {
        /// Position of the block in the message.
        index: u32,
        /// The block, with empty text or input.
        #[cfg_attr(test, serde(borrow))]
        content_block: ContentBlockStart<'a>,
    },
    /// A piece of the open block.
    ContentBlockDelta {
        /// Position of the block in the message.
        index: u32,
        /// The piece.
        #[cfg_attr(test, serde(borrow))]
        delta: BlockDelta<'a>,
    },
    /// The block is complete.
    ContentBlockStop {
        /// Position of the block in the message.
        index: u32,
    },
    /// Top-level changes at the end: stop reason and the cumulative usage.
    MessageDelta {
        /// Stop reason and sequence.
        #[cfg_attr(test, serde(borrow))]
        delta: MessageDelta<'a>,
        /// Cumulative usage (replaces, never adds to, `message_start`'s).
        #[cfg_attr(test, serde(default))]
        usage: Option<AnthropicUsage>,
    },
    /// Last event of a complete answer.
    MessageStop,
    /// Keep-alive.
    Ping,
    /// The answer failed after the 200 was sent.
    Error {
        /// What went wrong.
        #[cfg_attr(test, serde(borrow))]
        error: StreamError<'a>,
    },
    /// An event type this gateway does not know; ignored.
    #[cfg_attr(test, serde(other))]
    Unknown,
}

impl<'a> StreamEvent<'a> {
    /// Parses one event's `data`. A block delta in exactly the shape Anthropic writes
    /// (nearly every event of a stream) is read directly; anything else is split at its
    /// `type` first, with the result and the errors of serde's `tag = "type"`.
    pub fn parse(data: &'a str) -> serde_json::Result<StreamEvent<'a>> {
        read::parse(data)
    }
}

/// The `message` of `message_start`.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(Deserialize))]
pub struct MessageStart<'a> {
    /// `msg_...`.
    #[cfg_attr(test, serde(default, borrow))]
    pub id: Cow<'a, str>,
    /// The model that answers.
    #[cfg_attr(test, serde(default, borrow))]
    pub model: Cow<'a, str>,
    /// Input usage and an initial output count.
    #[cfg_attr(test, serde(default))]
    pub usage: Option<AnthropicUsage>,
}

/// The `content_block` of `content_block_start`.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(
    test,
    derive(Deserialize),
    serde(tag = "type", rename_all = "snake_case")
)]
pub enum ContentBlockStart<'a> {
    /// Text; normally empty here, the text follows in deltas.
    Text {
        /// Initial text.
        #[cfg_attr(test, serde(default, borrow))]
        text: Cow<'a, str>,
    },
    /// A client tool call; the arguments follow as `input_json_delta` pieces.
    ToolUse {
        /// `toolu_...`, echoed by the tool result.
        #[cfg_attr(test, serde(borrow))]
        id: Cow<'a, str>,
        /// The tool's name.
        #[cfg_attr(test, serde(borrow))]
        name: Cow<'a, str>,
    },
    /// Extended thinking; the text and signature follow in deltas.
    Thinking {
        /// Initial thinking text.
        #[cfg_attr(test, serde(default, borrow))]
        thinking: Cow<'a, str>,
        /// Initial signature.
        #[cfg_attr(test, serde(default, borrow))]
        signature: Cow<'a, str>,
    },
    /// Thinking the safety systems encrypted; complete in this event.
    RedactedThinking {
        /// The encrypted payload, to be sent back verbatim.
        #[cfg_attr(test, serde(borrow))]
        data: Cow<'a, str>,
    },
    /// Server tools and their results, and block types added later; not shown to clients.
    #[cfg_attr(test, serde(other))]
    Other,
}

/// The `delta` of `content_block_delta`.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(
    test,
    derive(Deserialize),
    serde(tag = "type", rename_all = "snake_case")
)]
pub enum BlockDelta<'a> {
    /// More text.
    TextDelta {
        /// The text piece.
        #[cfg_attr(test, serde(borrow))]
        text: Cow<'a, str>,
    },
    /// A piece of a tool call's JSON input (not valid JSON on its own).
    InputJsonDelta {
        /// The piece.
        #[cfg_attr(test, serde(borrow))]
        partial_json: Cow<'a, str>,
    },
    /// More thinking text.
    ThinkingDelta {
        /// The text piece.
        #[cfg_attr(test, serde(borrow))]
        thinking: Cow<'a, str>,
    },
    /// A piece of the thinking block's signature.
    SignatureDelta {
        /// The piece.
        #[cfg_attr(test, serde(borrow))]
        signature: Cow<'a, str>,
    },
    /// Citations and delta types added later; ignored.
    #[cfg_attr(test, serde(other))]
    Other,
}

/// The `delta` of `message_delta`.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(Deserialize))]
pub struct MessageDelta<'a> {
    /// `end_turn`, `max_tokens`, `tool_use`, ...
    #[cfg_attr(test, serde(default, borrow))]
    pub stop_reason: Option<Cow<'a, str>>,
}

/// The `error` of an `error` event.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(Deserialize))]
pub struct StreamError<'a> {
    /// `overloaded_error`, `api_error`, `rate_limit_error`, ...
    #[cfg_attr(test, serde(rename = "type", default, borrow))]
    pub kind: Cow<'a, str>,
    /// Human-readable message.
    #[cfg_attr(test, serde(default, borrow))]
    pub message: Cow<'a, str>,
}

impl StreamError<'_> {
    /// The OpenAI error class of this Anthropic error type.
    pub fn error_kind(&self) -> ErrorKind {
        match self.kind.as_ref() {
            "invalid_request_error" => ErrorKind::InvalidRequest,
            "authentication_error" => ErrorKind::Authentication,
            "permission_error" | "billing_error" => ErrorKind::PermissionDenied,
            "not_found_error" => ErrorKind::NotFound,
            "request_too_large" => ErrorKind::RequestTooLarge,
            "rate_limit_error" => ErrorKind::RateLimit,
            "overloaded_error" => ErrorKind::Overloaded,
            "timeout_error" => ErrorKind::Timeout,
            _ => ErrorKind::Api,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses both ways and checks they agree.
    fn parse(s: &str) -> StreamEvent<'_> {
        let direct = StreamEvent::parse(s).unwrap();
        assert_eq!(
            direct,
            crate::json::path::from_str::<StreamEvent<'_>>(s).unwrap()
        );
        direct
    }

    /// Real event shapes parse, with extra fields ignored and unescaped strings borrowed.
    #[test]
    fn real_shapes() {
        let e = parse(
            r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":0},"output_tokens":1,"service_tier":"standard"}}}"#,
        );
        let StreamEvent::MessageStart { message } = e else {
            panic!()
        };
        assert!(matches!(message.id, Cow::Borrowed("msg_1")));
        assert_eq!(message.usage.unwrap().input_tokens, Some(25));

        let e = parse(
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a\"b"}}"#,
        );
        assert_eq!(
            e,
            StreamEvent::ContentBlockDelta {
                index: 0,
                delta: BlockDelta::TextDelta {
                    text: "a\"b".into()
                }
            }
        );
        let e = parse(
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{}}}"#,
        );
        assert!(matches!(
            e,
            StreamEvent::ContentBlockStart {
                index: 1,
                content_block: ContentBlockStart::ToolUse { .. }
            }
        ));
        // Bedrock adds metrics to message_stop.
        assert_eq!(
            parse(
                r#"{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":1}}"#
            ),
            StreamEvent::MessageStop
        );
        assert_eq!(parse(r#"{"type":"ping"}"#), StreamEvent::Ping);
        assert_eq!(parse(r#"{"type":"brand_new","x":1}"#), StreamEvent::Unknown);
        let e = parse(
            r#"{"type":"content_block_start","index":2,"content_block":{"type":"web_search_tool_result","content":[]}}"#,
        );
        assert!(matches!(
            e,
            StreamEvent::ContentBlockStart {
                content_block: ContentBlockStart::Other,
                ..
            }
        ));
        let e = parse(
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"citations_delta","citation":{}}}"#,
        );
        assert!(matches!(
            e,
            StreamEvent::ContentBlockDelta {
                delta: BlockDelta::Other,
                ..
            }
        ));
        let e = parse(
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}"#,
        );
        let StreamEvent::MessageDelta { delta, usage } = e else {
            panic!()
        };
        assert_eq!(delta.stop_reason.as_deref(), Some("tool_use"));
        assert_eq!(usage.unwrap().output_tokens, Some(89));
    }

    /// Known types with a broken shape are errors, not silently ignored.
    #[test]
    fn broken_known_shapes_fail() {
        for s in [
            r#"{"type":"content_block_delta","index":0}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta"}}"#,
            r#"{"type":"content_block_start","index":"x","content_block":{"type":"text"}}"#,
            r#"{"index":0}"#,
            r#"[1]"#,
        ] {
            assert!(
                crate::json::path::from_str::<StreamEvent<'_>>(s).is_err(),
                "{s}"
            );
            assert!(StreamEvent::parse(s).is_err(), "{s}");
        }
    }

    /// The direct parse accepts and refuses exactly what the tagged derive does, on the
    /// shapes where they could part: nulls, missing or duplicate fields, escaped or
    /// non-string tags, fields of other variants, arrays.
    #[test]
    fn direct_parse_agrees_with_tagged() {
        let cases = [
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a\"b\n\u00e9\ud83d\ude00"}}"#,
            r#"{"type":"content_block_delta","index":7,"delta":{"type":"input_json_delta","partial_json":"{\"a"}}"#,
            r#"{"type":"content_block_delta","index":7,"delta":{"type":"thinking_delta","thinking":""}}"#,
            r#"{"type":"content_block_delta","index":7,"delta":{"type":"signature_delta","signature":"s"}}"#,
            r#"{"type":"content_block_delta","index":01,"delta":{"type":"text_delta","text":"a"}}"#,
            r#"{"type":"content_block_delta","index":4294967296,"delta":{"type":"text_delta","text":"a"}}"#,
            r#"{"type":"content_block_delta","index":,"delta":{"type":"text_delta","text":"a"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"\ud800"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a\x"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"}}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a" }}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a","text":"b"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a","x":"b"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"}} "#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","thinking":"a"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":5}}"#,
            "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"a\tb\"}}",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":null}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a","text":"b"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a","partial_json":5}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"text":"a","type":"text_delta"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text\u005fdelta","text":"\u00e9"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":0,"text":"a"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":""}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"s"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"citations_delta","text":5}}"#,
            r#"{"type":"content_block_delta","index":-1,"delta":{"type":"text_delta","text":"a"}}"#,
            r#"{"type":"content_block_delta","delta":{"type":"text_delta","text":"a"},"index":4294967295}"#,
            r#"{"type":"content_block_delta","type":"ping","index":0,"delta":{"type":"text_delta","text":"a"}}"#,
            r#"{"type":"ping","type":"ping"}"#,
            r#"{"type":"ping","x":[1,{"y":null}]}"#,
            r#"{"type":"ping"} x"#,
            r#"{"type":"p\u0069ng"}"#,
            r#"{"index":0,"type":"content_block_stop"}"#,
            r#"{"type":"content_block_stop","index":null}"#,
            r#"{"type":"content_block_stop"}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":null}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text"}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t"}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"n","input":{}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking"}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"redacted_thinking"}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"redacted_thinking","data":"d"}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"server_tool_use","id":"s","name":"web_search","input":{}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"web_search_tool_result","id":5}}"#,
            r#"{"type":"message_start","message":{"id":null}}"#,
            r#"{"type":"message_start","message":{}}"#,
            r#"{"type":"message_start"}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":null},"usage":null}"#,
            r#"{"type":"message_delta","delta":{},"usage":{"output_tokens":-1}}"#,
            r#"{"type":"message_delta","usage":{"output_tokens":1}}"#,
            r#"{"type":"message_delta","usage":{"output_tokens":1,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":7}}}"#,
            r#"{"type":"message_delta","usage":{"cache_creation":null}}"#,
            r#"{"type":"message_delta","usage":{"cache_creation":{}}}"#,
            r#"{"type":"message_delta","usage":{"cache_creation":[3,4]}}"#,
            r#"{"type":"message_delta","usage":{"cache_creation":[3,4,5]}}"#,
            r#"{"type":"message_delta","usage":{"cache_creation":5}}"#,
            r#"{"type":"message_delta","usage":{"cache_creation":{"ephemeral_1h_input_tokens":-1}}}"#,
            r#"{"type":"message_delta","usage":{"cache_creation":{"ephemeral_1h_input_tokens":1,"ephemeral_1h_input_tokens":2}}}"#,
            r#"{"type":"message_delta","usage":{"cache_creation":{"ephemeral_1h_input_tokens":null,"x":[1]}}}"#,
            r#"{"type":"message_start","message":{"id":"m","model":"c","usage":{"input_tokens":3,"cache_creation_input_tokens":9,"cache_creation":{"ephemeral_1h_input_tokens":9}}}}"#,
            r#"{"type":"error","error":{"type":"overloaded_error","message":"m"}}"#,
            r#"{"type":"error","error":{}}"#,
            r#"{"type":"error"}"#,
            r#"{"type":"brand_new","x":1}"#,
            r#"{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":1}}"#,
            r#"{"type":"message_delta","delta":["end_turn"],"usage":[1,2]}"#,
            r#"{"type":"message_delta","delta":["end_turn",1],"usage":[1,2,3,4]}"#,
            r#"{"type":"message_delta","delta":[],"usage":[1,2,3,4,5]}"#,
            r#"{"type":"message_delta","delta":[null],"usage":[null,-1]}"#,
            r#"{"type":"message_start","message":["id","model",[1,2,3,4]]}"#,
            r#"{"type":"message_start","message":["id","model",null,1]}"#,
            r#"{"type":"error","error":["overloaded_error","m"]}"#,
            r#"{"type":"content_block_start","index":0,"content_block":[1,"t","n"]}"#,
            r#"{"type":"content_block_delta","index":0,"delta":[0,"a"]}"#,
            r#"{"type":"content_block_delta","index":0,"delta":[9,"a"]}"#,
            r#"["message_stop"]"#,
            r#"["content_block_stop",0]"#,
            r#"{"type":5}"#,
            r#"{}"#,
            "",
        ];
        for s in cases {
            let tagged = crate::json::path::from_str::<StreamEvent<'_>>(s).ok();
            assert_eq!(StreamEvent::parse(s).ok(), tagged, "{s}");
            assert_eq!(read::parse_tagged(s).ok(), tagged, "{s}");
        }
        // Anthropic's own shape takes the direct way.
        for s in &cases[..4] {
            assert!(read::parse_block_delta(s).is_some(), "{s}");
        }
        // Strings without escapes are borrowed.
        let e = StreamEvent::parse(
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"ab"}}"#,
        )
        .unwrap();
        assert!(matches!(
            e,
            StreamEvent::ContentBlockDelta {
                delta: BlockDelta::TextDelta {
                    text: Cow::Borrowed("ab")
                },
                ..
            }
        ));
    }

    /// The object's members in order, unparsed (keys decoded).
    fn members(s: &str) -> Option<Vec<(String, String)>> {
        crate::json::path::from_str::<serde_json::Map<String, serde_json::Value>>(s).ok()?;
        let body = s.trim().strip_prefix('{')?.strip_suffix('}')?;
        // Split at top-level commas and the first top-level colon of each member.
        let (mut depth, mut in_str, mut esc) = (0i32, false, false);
        let mut parts = vec![String::new()];
        for c in body.chars() {
            if esc {
                esc = false;
            } else if in_str {
                esc = c == '\\';
                in_str = c != '"';
            } else {
                match c {
                    '"' => in_str = true,
                    '[' | '{' => depth += 1,
                    ']' | '}' => depth -= 1,
                    ',' if depth == 0 => {
                        parts.push(String::new());
                        continue;
                    }
                    _ => {}
                }
            }
            parts.last_mut().unwrap().push(c);
        }
        let mut out = Vec::new();
        for part in parts.iter().filter(|p| !p.trim().is_empty()) {
            let mut de = serde_json::Deserializer::from_str(part).into_iter::<String>();
            let key = de.next()?.ok()?;
            let rest = part[de.byte_offset()..].trim_start().strip_prefix(':')?;
            out.push((key, rest.trim().to_owned()));
        }
        Some(out)
    }

    fn object(members: &[(String, String)]) -> String {
        let body: Vec<String> = members
            .iter()
            .map(|(k, v)| format!("{}:{v}", serde_json::to_string(k).unwrap()))
            .collect();
        format!("{{{}}}", body.join(","))
    }

    /// Deterministic variants of one JSON object: members dropped, doubled, moved,
    /// retyped or renamed, the array form, and the same inside nested objects.
    fn mutants(s: &str, depth: u32, out: &mut Vec<String>) {
        const VALUES: &[&str] = &[
            "null",
            "0",
            "1",
            "-1",
            "4294967296",
            "1.5",
            "\"s\"",
            "\"a\\\"b\"",
            "[]",
            "{}",
            "true",
            "[1]",
            "[\"text\"]",
        ];
        const TAGS: &[&str] = &[
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
            "ping",
            "error",
            "brand_new",
            "text",
            "tool_use",
            "thinking",
            "redacted_thinking",
            "server_tool_use",
            "text_delta",
            "input_json_delta",
            "thinking_delta",
            "signature_delta",
            "citations_delta",
            "t\\u0065xt",
            "p\\u0069ng",
        ];
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let mut values: Vec<String> = VALUES.iter().map(|v| (*v).to_owned()).collect();
        values.extend(["1e400", "-1e400", "18446744073709551616", "\"\\ud800\""].map(String::from));
        values.extend((123..=129).map(deep));
        let Some(m) = members(s) else { return };
        for i in 0..m.len() {
            let mut v = m.clone();
            v.remove(i);
            out.push(object(&v));
            let mut v = m.clone();
            v.push(m[i].clone());
            out.push(object(&v));
            let mut v = m.clone();
            let moved = v.remove(i);
            v.push(moved);
            out.push(object(&v));
            let mut v = m.clone();
            v[i].0 = format!("{}x", m[i].0);
            out.push(object(&v));
            for value in &values {
                let mut v = m.clone();
                v[i].1 = value.clone();
                out.push(object(&v));
            }
            if m[i].0 == "type" {
                for tag in TAGS {
                    let mut v = m.clone();
                    v[i].1 = format!("\"{tag}\"");
                    out.push(object(&v));
                }
                // The array form: the tag, then the other values in order.
                let rest: Vec<&str> = m
                    .iter()
                    .filter(|(k, _)| k != "type")
                    .map(|(_, v)| v.as_str())
                    .collect();
                for n in 0..=rest.len() {
                    let mut items = vec![m[i].1.as_str()];
                    items.extend(&rest[..n]);
                    out.push(format!("[{}]", items.join(",")));
                }
                let mut items = vec![m[i].1.as_str()];
                items.extend(&rest);
                items.push("null");
                out.push(format!("[{}]", items.join(",")));
                // The tag key escaped.
                let mut text = object(&m);
                text = text.replacen("\"type\"", "\"t\\u0079pe\"", 1);
                out.push(text);
            }
            if depth > 0 && m[i].1.starts_with('{') {
                let mut nested = Vec::new();
                mutants(&m[i].1, depth - 1, &mut nested);
                for n in nested {
                    let mut v = m.clone();
                    v[i].1 = n;
                    out.push(object(&v));
                }
            }
        }
        // Text cuts: every JSON error the parser can meet midway.
        for end in (0..s.len()).step_by(5) {
            if let Some(cut) = s.get(..end) {
                out.push(cut.to_owned());
            }
        }
        out.push(format!("{s} "));
        out.push(format!(" {s}x"));
        out.push(s.replace("\"text\":\"", "\"text\":\"\\u00e9"));
        out.push(s.replace('"', "\"\\u0020"));
    }

    /// Which strings of an event are borrowed, to compare where `PartialEq` does not look.
    fn borrowed(e: &StreamEvent<'_>) -> Vec<bool> {
        let b = |c: &Cow<'_, str>| matches!(c, Cow::Borrowed(_));
        match e {
            StreamEvent::MessageStart { message } => vec![b(&message.id), b(&message.model)],
            StreamEvent::ContentBlockStart { content_block, .. } => match content_block {
                ContentBlockStart::Text { text } => vec![b(text)],
                ContentBlockStart::ToolUse { id, name } => vec![b(id), b(name)],
                ContentBlockStart::Thinking {
                    thinking,
                    signature,
                } => {
                    vec![b(thinking), b(signature)]
                }
                ContentBlockStart::RedactedThinking { data } => vec![b(data)],
                ContentBlockStart::Other => vec![],
            },
            StreamEvent::ContentBlockDelta { delta, .. } => match delta {
                BlockDelta::TextDelta { text: s }
                | BlockDelta::InputJsonDelta { partial_json: s }
                | BlockDelta::ThinkingDelta { thinking: s }
                | BlockDelta::SignatureDelta { signature: s } => vec![b(s)],
                BlockDelta::Other => vec![],
            },
            StreamEvent::Error { error } => vec![b(&error.kind), b(&error.message)],
            _ => vec![],
        }
    }

    /// Every event of every recorded Anthropic stream, and many variants of each, parse to
    /// the same value (borrowing alike) or fail alike, both ways.
    #[test]
    fn parse_agrees_with_tagged_derive_on_fixtures() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/anthropic");
        let mut events = std::collections::BTreeSet::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path().join("upstream.sse");
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            for line in text.lines() {
                if let Some(data) = line.strip_prefix("data:") {
                    events.insert(data.strip_prefix(' ').unwrap_or(data).to_owned());
                }
            }
        }
        assert!(events.len() > 20, "{}", events.len());
        let mut cases = Vec::new();
        for e in &events {
            cases.push(e.clone());
            mutants(e, 2, &mut cases);
        }
        let (mut ok, mut err) = (0, 0);
        for s in &cases {
            let tagged = crate::json::path::from_str::<StreamEvent<'_>>(s);
            let ours = StreamEvent::parse(s);
            let direct = read::parse_tagged(s);
            match (&tagged, &ours, &direct) {
                (Ok(t), Ok(o), Ok(d)) => {
                    assert_eq!(t, o, "{s}");
                    assert_eq!(t, d, "{s}");
                    assert_eq!(borrowed(t), borrowed(o), "{s}");
                    assert_eq!(borrowed(t), borrowed(d), "{s}");
                    ok += 1;
                }
                (Err(_), Err(_), Err(_)) => err += 1,
                _ => panic!("{s}: tagged {tagged:?}, parse {ours:?}, split {direct:?}"),
            }
        }
        assert!(ok > 1000 && err > 1000, "{ok} ok, {err} err");
    }

    /// Error types map to the OpenAI classes clients retry on.
    #[test]
    fn error_kinds() {
        let e = |k: &'static str| StreamError {
            kind: k.into(),
            message: "".into(),
        };
        assert_eq!(e("overloaded_error").error_kind(), ErrorKind::Overloaded);
        assert_eq!(e("rate_limit_error").error_kind(), ErrorKind::RateLimit);
        assert_eq!(e("api_error").error_kind(), ErrorKind::Api);
        assert_eq!(e("something_new").error_kind(), ErrorKind::Api);
    }
}
