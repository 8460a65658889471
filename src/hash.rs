//! Small, dependency-free hashing used to place bucket keys in the slot table.

/// FNV-1a over several byte strings, each followed by a 0xff separator so that
/// `("ab", "c")` and `("a", "bc")` hash differently.
pub fn fingerprint(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in part.iter() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // 0 marks an empty slot, so a fingerprint is never 0.
    mix(h) | 1
}

/// SplitMix64 finaliser: spreads FNV's weak low bits before taking a modulus.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_distinguish_splits() {
        assert_ne!(fingerprint(&[b"ab", b"c"]), fingerprint(&[b"a", b"bc"]));
    }

    #[test]
    fn never_zero_and_deterministic() {
        for i in 0..1000u32 {
            let s = i.to_string();
            let f = fingerprint(&[s.as_bytes()]);
            assert_ne!(f, 0);
            assert_eq!(f, fingerprint(&[s.as_bytes()]));
        }
    }
}
