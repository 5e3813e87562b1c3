//! Anthropic Messages stream events (`stream: true`), as sent on the wire.
//!
//! Reference: <https://docs.anthropic.com/en/api/messages-streaming>. Each SSE event's
//! `data` is one JSON object tagged by `type`; its `event:` name repeats the type. Strings
//! borrow from the event data where JSON escaping allows, so a delta is translated without
//! copying its text. Unknown event, block and delta types parse to their `Unknown`/`Other`
//! variant, because Anthropic adds new ones and the stream must go on.
//!
//! [`StreamEvent::parse`] reads the frequent block delta directly and leaves the other
//! events to the tagged derive.

use std::borrow::Cow;

use serde::de::Visitor;
use serde::{Deserialize, Deserializer};

use super::schema::AnthropicUsage;
use crate::error::ErrorKind;

/// One stream event.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent<'a> {
    /// First event: the message shell with id, model and the input usage.
    MessageStart {
        /// The message, with empty content.
        #[serde(borrow)]
        message: MessageStart<'a>,
    },
    /// A content block opens.
    ContentBlockStart {
        /// Position of the block in the message.
        index: u32,
        /// The block, with empty text or input.
        #[serde(borrow)]
        content_block: ContentBlockStart<'a>,
    },
    /// A piece of the open block.
    ContentBlockDelta {
        /// Position of the block in the message.
        index: u32,
        /// The piece.
        #[serde(borrow)]
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
        #[serde(borrow)]
        delta: MessageDelta<'a>,
        /// Cumulative usage (replaces, never adds to, `message_start`'s).
        #[serde(default)]
        usage: Option<AnthropicUsage>,
    },
    /// Last event of a complete answer.
    MessageStop,
    /// Keep-alive.
    Ping,
    /// The answer failed after the 200 was sent.
    Error {
        /// What went wrong.
        #[serde(borrow)]
        error: StreamError<'a>,
    },
    /// An event type this gateway does not know; ignored.
    #[serde(other)]
    Unknown,
}

impl<'a> StreamEvent<'a> {
    /// Parses one event's `data`. A block delta in exactly the shape Anthropic writes
    /// (nearly every event of a stream) is read directly; anything else goes through the
    /// tagged derive, which buffers the whole event before it can look at its `type`.
    pub fn parse(data: &'a str) -> serde_json::Result<StreamEvent<'a>> {
        match parse_block_delta(data) {
            Some(event) => Ok(event),
            None => serde_json::from_str(data),
        }
    }
}

/// `{"type":"content_block_delta","index":N,"delta":{"type":"<kind>_delta","<field>":"..."}}`
/// with nothing else, read without serde but for the one string (so its escapes are
/// checked and undone exactly as the tagged derive does). `None` on any other shape, which
/// the tagged derive then judges: the result is the same either way.
fn parse_block_delta(data: &str) -> Option<StreamEvent<'_>> {
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
    let Str(piece) = serde_json::from_str(value).ok()?;
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

/// The `message` of `message_start`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MessageStart<'a> {
    /// `msg_...`.
    #[serde(default, borrow)]
    pub id: Cow<'a, str>,
    /// The model that answers.
    #[serde(default, borrow)]
    pub model: Cow<'a, str>,
    /// Input usage and an initial output count.
    #[serde(default)]
    pub usage: Option<AnthropicUsage>,
}

/// The `content_block` of `content_block_start`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlockStart<'a> {
    /// Text; normally empty here, the text follows in deltas.
    Text {
        /// Initial text.
        #[serde(default, borrow)]
        text: Cow<'a, str>,
    },
    /// A client tool call; the arguments follow as `input_json_delta` pieces.
    ToolUse {
        /// `toolu_...`, echoed by the tool result.
        #[serde(borrow)]
        id: Cow<'a, str>,
        /// The tool's name.
        #[serde(borrow)]
        name: Cow<'a, str>,
    },
    /// Extended thinking; the text and signature follow in deltas.
    Thinking {
        /// Initial thinking text.
        #[serde(default, borrow)]
        thinking: Cow<'a, str>,
        /// Initial signature.
        #[serde(default, borrow)]
        signature: Cow<'a, str>,
    },
    /// Thinking the safety systems encrypted; complete in this event.
    RedactedThinking {
        /// The encrypted payload, to be sent back verbatim.
        #[serde(borrow)]
        data: Cow<'a, str>,
    },
    /// Server tools and their results, and block types added later; not shown to clients.
    #[serde(other)]
    Other,
}

/// The `delta` of `content_block_delta`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlockDelta<'a> {
    /// More text.
    TextDelta {
        /// The text piece.
        #[serde(borrow)]
        text: Cow<'a, str>,
    },
    /// A piece of a tool call's JSON input (not valid JSON on its own).
    InputJsonDelta {
        /// The piece.
        #[serde(borrow)]
        partial_json: Cow<'a, str>,
    },
    /// More thinking text.
    ThinkingDelta {
        /// The text piece.
        #[serde(borrow)]
        thinking: Cow<'a, str>,
    },
    /// A piece of the thinking block's signature.
    SignatureDelta {
        /// The piece.
        #[serde(borrow)]
        signature: Cow<'a, str>,
    },
    /// Citations and delta types added later; ignored.
    #[serde(other)]
    Other,
}

/// The `delta` of `message_delta`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MessageDelta<'a> {
    /// `end_turn`, `max_tokens`, `tool_use`, ...
    #[serde(default, borrow)]
    pub stop_reason: Option<Cow<'a, str>>,
}

/// The `error` of an `error` event.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StreamError<'a> {
    /// `overloaded_error`, `api_error`, `rate_limit_error`, ...
    #[serde(rename = "type", default, borrow)]
    pub kind: Cow<'a, str>,
    /// Human-readable message.
    #[serde(default, borrow)]
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
        assert_eq!(direct, serde_json::from_str::<StreamEvent<'_>>(s).unwrap());
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
            assert!(serde_json::from_str::<StreamEvent<'_>>(s).is_err(), "{s}");
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
            r#"{"type":"error","error":{"type":"overloaded_error","message":"m"}}"#,
            r#"{"type":"error","error":{}}"#,
            r#"{"type":"error"}"#,
            r#"{"type":"brand_new","x":1}"#,
            r#"{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":1}}"#,
            r#"["message_stop"]"#,
            r#"["content_block_stop",0]"#,
            r#"{"type":5}"#,
            r#"{}"#,
            "",
        ];
        for s in cases {
            let tagged = serde_json::from_str::<StreamEvent<'_>>(s).ok();
            assert_eq!(StreamEvent::parse(s).ok(), tagged, "{s}");
        }
        // Anthropic's own shape takes the direct way.
        for s in &cases[..4] {
            assert!(parse_block_delta(s).is_some(), "{s}");
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
