//! The header map as the proxy-wasm host serializes it (`proxy_get_header_map_pairs`):
//! a little-endian `u32` count, then a `u32` name length and a `u32` value length per
//! header, then every name and value, each followed by a NUL byte. Reading the whole map
//! in one host call is cheaper than one call per header the gateway looks at.

/// The headers in `bytes`, in order; `None` when the bytes are not a well-formed map.
pub fn decode(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let word = |at: usize| -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(b)).ok()
    };
    let count = word(0)?;
    // Each header takes at least 10 bytes (two lengths and two NULs).
    if count > bytes.len() / 10 {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    let mut data = 4usize.checked_add(count.checked_mul(8)?)?;
    for i in 0..count {
        let name_len = word(4 + i * 8)?;
        let value_len = word(8 + i * 8)?;
        let name = bytes.get(data..data.checked_add(name_len)?)?;
        data = data.checked_add(name_len)?;
        if bytes.get(data) != Some(&0) {
            return None;
        }
        data += 1;
        let value = bytes.get(data..data.checked_add(value_len)?)?;
        data = data.checked_add(value_len)?;
        if bytes.get(data) != Some(&0) {
            return None;
        }
        data += 1;
        out.push((name, value));
    }
    Some(out)
}

/// The value of header `name` (lowercase, as Envoy stores names), if present.
pub fn find<'a>(headers: &[(&'a [u8], &'a [u8])], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(n, _)| *n == name.as_bytes())
        .map(|(_, v)| *v)
}

/// Serializes headers the way the host does (for replies, and to replace a whole map in
/// one host call).
pub fn encode<N: AsRef<[u8]>, V: AsRef<[u8]>>(headers: &[(N, V)]) -> Vec<u8> {
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    let data: usize = headers
        .iter()
        .map(|(n, v)| n.as_ref().len() + v.as_ref().len() + 2)
        .sum();
    let mut bytes = Vec::with_capacity(4 + headers.len() * 8 + data);
    bytes.extend_from_slice(&len(headers.len()));
    for (name, value) in headers {
        bytes.extend_from_slice(&len(name.as_ref().len()));
        bytes.extend_from_slice(&len(value.as_ref().len()));
    }
    for (name, value) in headers {
        bytes.extend_from_slice(name.as_ref());
        bytes.push(0);
        bytes.extend_from_slice(value.as_ref());
        bytes.push(0);
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let headers = [
            (":method", "POST"),
            ("authorization", "Bearer k"),
            ("x-empty", ""),
        ];
        let bytes = encode(&headers);
        let decoded = decode(&bytes).unwrap();
        assert_eq!(decoded.len(), 3);
        assert_eq!(find(&decoded, "authorization"), Some(&b"Bearer k"[..]));
        assert_eq!(find(&decoded, "x-empty"), Some(&b""[..]));
        assert_eq!(find(&decoded, "absent"), None);
        assert_eq!(decode(&encode::<&str, &str>(&[])).unwrap().len(), 0);
    }

    #[test]
    fn malformed_maps_are_refused_without_panicking() {
        let good = encode(&[("a", "b"), ("cc", "dd")]);
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_none(), "cut at {cut}");
        }
        let mut no_nul = good.clone();
        let last = no_nul.len() - 1;
        no_nul[last] = b'x';
        assert!(decode(&no_nul).is_none());
        let mut huge = good.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge).is_none());
        let mut long = good;
        long[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&long).is_none());
    }
}
