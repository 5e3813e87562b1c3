//! Byte and byte-string search shared by the stream, key-scrubbing and request-text code.

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// High bit of every byte that is zero in `x` (and maybe of bytes above one that is): never
/// misses a zero byte, so the lowest bit set is exact and other candidates are checked.
fn zeros(x: u64) -> u64 {
    x.wrapping_sub(ONES) & !x & HIGH
}

/// Position of the first `byte` in `hay`, eight bytes at a time.
pub fn find_byte(hay: &[u8], byte: u8) -> Option<usize> {
    let pattern = ONES * u64::from(byte);
    let mut words = hay.chunks_exact(8);
    let mut at = 0;
    for word in &mut words {
        let Ok(word) = <[u8; 8]>::try_from(word) else {
            break;
        };
        let hits = zeros(u64::from_le_bytes(word) ^ pattern);
        if hits != 0 {
            return Some(at + (hits.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&b| b == byte)
        .map(|i| at + i)
}

/// Position of the first byte that ends a JSON string's plain run (a quote, a backslash or
/// a control character), eight bytes at a time: a string scanner's inner loop.
pub fn find_string_special(hay: &[u8]) -> Option<usize> {
    const QUOTES: u64 = ONES * b'"' as u64;
    const BACKSLASHES: u64 = ONES * b'\\' as u64;
    const SPACES: u64 = ONES * 0x20;
    let mut words = hay.chunks_exact(8);
    let mut at = 0;
    for word in &mut words {
        let Ok(word) = <[u8; 8]>::try_from(word) else {
            break;
        };
        let x = u64::from_le_bytes(word);
        // Bytes below 0x20, as `zeros` finds zero bytes: exact at the lowest hit.
        let controls = x.wrapping_sub(SPACES) & !x & HIGH;
        let hits = zeros(x ^ QUOTES) | zeros(x ^ BACKSLASHES) | controls;
        if hits != 0 {
            return Some(at + (hits.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|i| at + i)
}

/// Position of the first `needle` in `hay` (`None` for an empty needle).
///
/// Looks for the needle's first two bytes eight positions at a time (a word at `i` and one
/// at `i + 1`, each compared bytewise in one go), then compares the candidates in order. The
/// key scrub runs this over every byte a provider sends, and the first byte alone (`s` of
/// `sk-...`) is common in text; a byte-at-a-time loop was most of a long stream's cost in V8.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let Some(&second) = rest.first() else {
        return find_byte(hay, first);
    };
    let (a, b) = (ONES * u64::from(first), ONES * u64::from(second));
    let matches_at = |i: usize| hay.get(i..i.saturating_add(needle.len())) == Some(needle);
    let mut at = 0usize;
    while let Some(window) = hay.get(at..at.saturating_add(9)) {
        let (Some(w0), Some(w1)) = (window.get(..8), window.get(1..9)) else {
            break;
        };
        let (Ok(w0), Ok(w1)) = (<[u8; 8]>::try_from(w0), <[u8; 8]>::try_from(w1)) else {
            break;
        };
        let mut hits = zeros(u64::from_le_bytes(w0) ^ a) & zeros(u64::from_le_bytes(w1) ^ b);
        while hits != 0 {
            let i = at + (hits.trailing_zeros() / 8) as usize;
            if matches_at(i) {
                return Some(i);
            }
            hits &= hits - 1;
        }
        at += 8;
    }
    (at..hay.len()).find(|&i| matches_at(i))
}

#[cfg(test)]
mod tests {
    use super::{find, find_byte, find_string_special};

    /// Agrees with the byte-at-a-time loop at every offset, with every kind of byte around.
    #[test]
    fn finds_the_end_of_a_plain_run() {
        let alphabet: &[u8] = &[
            b'a', b'"', b'\\', 0x00, 0x1f, 0x20, 0x21, 0x7f, 0x80, 0xc3, 0xff, b'!', b'#',
        ];
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 40) as usize;
            let hay: Vec<u8> = (0..len)
                .map(|i| {
                    let r = seed.rotate_left(i as u32 * 5) % 64;
                    if r < alphabet.len() as u64 {
                        alphabet[r as usize]
                    } else {
                        b'x'
                    }
                })
                .collect();
            let naive = hay
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20);
            assert_eq!(find_string_special(&hay), naive, "{hay:?}");
        }
        assert_eq!(
            find_string_special(b"caf\xc3\xa9 and more text\""),
            Some(19)
        );
        assert_eq!(find_string_special(b"no end in sight"), None);
    }

    #[test]
    fn finds_the_first_occurrence() {
        assert_eq!(find(b"aab", b"ab"), Some(1));
        assert_eq!(find(b"aa", b"ab"), None);
        assert_eq!(find(b"", b""), None);
        assert_eq!(find(b"abc", b""), None);
        assert_eq!(find(b"x\"usage\":1 \"usage\"", b"\"usage\""), Some(1));
        assert_eq!(find(b"\"usag", b"\"usage\""), None);
        // Every position of a haystack agrees with the naive search.
        let hay = b"data: {\"a\":\"uu\"}\n\ndata: [DONE]\n\n";
        for needle in [&b"\n\n"[..], b"[DONE]", b"\"u", b"data: [DONE]\n\n", b"}"] {
            let naive = hay.windows(needle.len()).position(|w| w == needle);
            assert_eq!(find(hay, needle), naive, "{needle:?}");
        }
    }

    /// Agrees with the naive search on every haystack and needle of a small alphabet,
    /// including needles at every offset and word boundary.
    #[test]
    fn agrees_with_the_naive_search() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let alphabet = [b's', b'k', b'-', b'a', 0, 0x80, 0xff, 0x7f];
        for _ in 0..20_000 {
            let hay: Vec<u8> = (0..next(40))
                .map(|_| alphabet[next(alphabet.len() as u64) as usize])
                .collect();
            let needle: Vec<u8> = (0..1 + next(4))
                .map(|_| alphabet[next(alphabet.len() as u64) as usize])
                .collect();
            let naive = hay
                .windows(needle.len())
                .position(|w| w == needle.as_slice());
            assert_eq!(find(&hay, &needle), naive, "{hay:?} {needle:?}");
            let byte = needle[0];
            let naive = hay.iter().position(|&b| b == byte);
            assert_eq!(find_byte(&hay, byte), naive, "{hay:?} {byte}");
        }
    }
}
