//! 64-bit division that stays a division in wasm. Wasm has no 64x64
//! multiply-high, so LLVM turns a 64-bit division by a constant into a call
//! to a software 128-bit multiply (`__multi3`), dearer than the `i64.div_u`
//! it replaces; hiding the divisor (`black_box`) keeps the real division.
//! For the request path's clock and header arithmetic (`make wasm-profile`).

/// `n / d`, rounded down (`d` > 0).
pub fn divide(n: u64, d: u64) -> u64 {
    n / std::hint::black_box(d)
}

/// `n / d`, rounded up (`d` > 0).
pub fn divide_ceil(n: u64, d: u64) -> u64 {
    n.div_ceil(std::hint::black_box(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divides_as_the_operators_do() {
        for (n, d) in [
            (0, 7),
            (6, 7),
            (7, 7),
            (1_767_225_660_123_456, 1_000_000),
            (u64::MAX, 10),
        ] {
            assert_eq!(divide(n, d), n / d);
            assert_eq!(divide_ceil(n, d), n.div_ceil(d));
        }
    }
}
