//! Numbers into text without `core::fmt`: the request path formats a few
//! integers per request (response headers, the access-log line, `Date`,
//! shared-data keys), and in wasm `format!`'s machinery is a visible share
//! of the request's cost (`make wasm-profile`).

/// Appends `n` in decimal. Digits are cut with 32-bit arithmetic where the
/// value allows (a plain multiply in wasm); the rare 64-bit step divides for
/// real (divide.rs).
pub fn push_u64(out: &mut String, n: u64) {
    const BILLION: u64 = 1_000_000_000;
    let mut digits = [b'0'; 20];
    let mut i = digits.len();
    let mut rest = n;
    // At most two 64-bit divisions, each splitting off nine digits.
    while rest > u64::from(u32::MAX) {
        let above = crate::divide::divide(rest, BILLION);
        let mut chunk = (rest - above * BILLION) as u32;
        rest = above;
        for _ in 0..9 {
            i -= 1;
            digits[i] = b'0' + (chunk % 10) as u8;
            chunk /= 10;
        }
    }
    let mut low = rest as u32;
    loop {
        i -= 1;
        digits[i] = b'0' + (low % 10) as u8;
        low /= 10;
        if low == 0 {
            break;
        }
    }
    // ASCII digits: always valid UTF-8, so the fallback is never taken.
    out.push_str(std::str::from_utf8(&digits[i..]).unwrap_or_default());
}

/// Appends `n` in decimal, zero-padded to at least `width` digits.
pub fn push_padded(out: &mut String, n: u64, width: usize) {
    // Only how many digits short of `width` it is: compared, not divided
    // (a 64-bit division by 10 is a `__multi3` call in wasm: divide.rs).
    let mut len = 1;
    let mut bound = 10u64;
    while len < width && n >= bound {
        len += 1;
        match bound.checked_mul(10) {
            Some(next) => bound = next,
            None => break,
        }
    }
    for _ in len..width {
        out.push('0');
    }
    push_u64(out, n);
}

/// `n` in decimal, as a new string.
pub fn decimal(n: u64) -> String {
    let mut out = String::with_capacity(20);
    push_u64(&mut out, n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_matches_display_at_every_magnitude() {
        let mut n = 1u64;
        for _ in 0..20 {
            for v in [n - 1, n, n + 1, n.saturating_mul(7)] {
                assert_eq!(decimal(v), v.to_string());
            }
            n = n.saturating_mul(10);
        }
        assert_eq!(decimal(u64::MAX), u64::MAX.to_string());
    }

    #[test]
    fn padding_only_adds_leading_zeros() {
        let padded = |n, w| {
            let mut s = String::new();
            push_padded(&mut s, n, w);
            s
        };
        assert_eq!(padded(7, 2), "07");
        assert_eq!(padded(0, 2), "00");
        assert_eq!(padded(42, 2), "42");
        assert_eq!(padded(123, 2), "123");
        assert_eq!(padded(2026, 4), "2026");
        assert_eq!(padded(5, 0), "5");
    }
}
