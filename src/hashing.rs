//! A small fast hash (not flooding-resistant), for keys that clients do not choose and
//! for recognising a body the gateway has already seen.

use std::hash::Hasher;

/// Multiply-rotate hashing of 8-byte words, as in rustc's FxHash.
#[derive(Default)]
pub struct FastHasher(u64);

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A fingerprint of `bytes` (length and hash), to tell whether two bodies are the same.
pub fn fingerprint(bytes: &[u8]) -> (usize, u64) {
    let mut h = FastHasher::default();
    h.write(bytes);
    (bytes.len(), h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_changed_byte_changes_the_fingerprint() {
        let body = br#"{"model":"a","messages":[{"role":"user","content":"hello there"}]}"#;
        let mut other = body.to_vec();
        for i in 0..other.len() {
            other[i] ^= 1;
            assert_ne!(fingerprint(body), fingerprint(&other), "byte {i}");
            other[i] ^= 1;
        }
        assert_eq!(fingerprint(body), fingerprint(&other));
    }
}
