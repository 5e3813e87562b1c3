//! Where a translated request goes: model names as path segments, and the request of a
//! translator that another one places (Vertex AI, Bedrock's InvokeModel).

use super::{ClientRequest, Target, Translator, UpstreamRequest};
use crate::error::GatewayError;

/// Appends `segment` percent-encoded for a URL path: ASCII letters and digits and the bytes
/// of `keep` stay, every other byte becomes `%XX` (upper-case hex). Each provider keeps its
/// own set (Vertex AI keeps the `@` of model versions).
pub fn push_encoded_segment(out: &mut String, segment: &str, keep: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || keep.contains(&b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            for nibble in [b >> 4, b & 15] {
                out.push(char::from(
                    HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'),
                ));
            }
        }
    }
}

/// The request `inner` builds for a wrapper that places it and sends its own credential
/// (Vertex AI, Bedrock's InvokeModel): built without the deployment's key, headers left out.
pub(crate) fn inner_request(
    inner: &mut dyn Translator,
    request: ClientRequest<'_>,
    target: &Target<'_>,
) -> Result<UpstreamRequest, GatewayError> {
    let inner_target = Target {
        api_key: None,
        ..*target
    };
    let mut up = inner.request(request, &inner_target)?;
    up.headers.clear();
    Ok(up)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Letters, digits and the kept bytes stay; the rest is upper-case `%XX`, byte by byte.
    #[test]
    fn segments() {
        let mut out = String::new();
        push_encoded_segment(&mut out, "a-Z_9.~@:/ é", b"-._~");
        assert_eq!(out, "a-Z_9.~%40%3A%2F%20%C3%A9");
        out.clear();
        push_encoded_segment(&mut out, "claude@2025", b"-._~@");
        assert_eq!(out, "claude@2025");
    }
}
