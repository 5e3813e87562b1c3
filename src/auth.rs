//! Client authentication: the presented key is hashed and compared in constant time.
//!
//! The gateway keeps only SHA-256 digests of client keys in memory, so a key never sits in
//! the VM as plain text after configuration, and comparing digests in constant time gives
//! away nothing about how much of a wrong key matched.

use sha2::{Digest, Sha256};

/// SHA-256 digest of a key.
pub type KeyDigest = [u8; 32];

/// Hashes a key.
pub fn digest(key: &str) -> KeyDigest {
    let mut out = [0u8; 32];
    out.copy_from_slice(&Sha256::digest(key.as_bytes()));
    out
}

/// Hex form of a digest (for configs that store hashes).
pub fn digest_hex(d: &KeyDigest) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two digests without an early exit.
pub fn digests_equal(a: &KeyDigest, b: &KeyDigest) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b.iter()) {
        diff |= x ^ y;
    }
    diff == 0
}

/// Extracts the key from `Authorization: Bearer <key>` (scheme case-insensitive).
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, rest) = authorization.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known SHA-256 vector.
    #[test]
    fn sha256_vector() {
        assert_eq!(
            digest_hex(&digest("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    /// Equal digests match; any differing byte does not.
    #[test]
    fn constant_time_compare() {
        let a = digest("sk-1");
        assert!(digests_equal(&a, &digest("sk-1")));
        assert!(!digests_equal(&a, &digest("sk-2")));
    }

    /// Bearer parsing accepts any scheme case and trims spaces.
    #[test]
    fn bearer() {
        assert_eq!(bearer_token("Bearer sk-1"), Some("sk-1"));
        assert_eq!(bearer_token("bearer   sk-1 "), Some("sk-1"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("sk-1"), None);
    }
}
