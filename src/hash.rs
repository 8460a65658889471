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

    /// Keys that differ in a byte or two (client addresses, hosts, user ids)
    /// must spread over the slot table's groups as evenly as random ones
    /// would, or one busy group fills its 4 ways and pushes keys to the
    /// overflow entry; and no two of them may share a fingerprint (they
    /// would share a counter).
    #[test]
    fn similar_keys_spread_over_the_groups_and_never_collide() {
        let bucket = crate::policy::Bucket::new(
            "okta.management.users",
            "test",
            crate::limiter::Limit {
                algorithm: crate::limiter::Algorithm::FixedWindow,
                limit: 1,
                window_us: 1,
            },
            crate::policy::Scope::ClientIp,
        );
        let keys: Vec<String> = (0..65_536u32)
            .map(|i| match i % 3 {
                0 => format!("10.0.{}.{}", (i >> 8) & 0xff, i & 0xff),
                1 => format!("tenant{i}.okta.com"),
                _ => format!("00u{i:08}"),
            })
            .collect();
        for groups in [4096u32, 3000] {
            let table = crate::table::SlotTable::new("p/", groups);
            let mut load = vec![0u32; groups as usize];
            let mut seen = std::collections::HashSet::new();
            for k in &keys {
                let fp = bucket.scope.owner_fingerprint(k);
                assert!(seen.insert(fp), "{k:?} collides");
                load[table.group_of(fp) as usize] += 1;
            }
            // Poisson(mean) per group: chi-square near `groups`, max load
            // far below 2.5x the mean (a biased spread misses both by far).
            let mean = keys.len() as f64 / f64::from(groups);
            let chi2: f64 = load
                .iter()
                .map(|&l| (f64::from(l) - mean).powi(2) / mean)
                .sum();
            let max = load.iter().copied().max().unwrap_or(0);
            assert!(
                chi2 < f64::from(groups) * 1.15,
                "{groups} groups: chi-square {chi2:.0}"
            );
            assert!(
                f64::from(max) < mean * 2.5,
                "{groups} groups: a group holds {max} (mean {mean:.1})"
            );
        }
    }
}
