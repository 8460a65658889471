//! Request-path normalisation, so that every spelling of a path lands in the
//! same bucket as its canonical form (and never in a less restrictive one).
//!
//! Steps: drop the query string and fragment; decode percent-escapes of
//! unreserved characters (`%75sers` is `users`; `%2F` stays encoded, as a
//! segment character); merge doubled slashes; resolve `.` and `..` segments
//! (never above the root); drop a trailing slash. Invalid escapes and
//! non-ASCII bytes are kept as they are.

use std::borrow::Cow;

/// Returns the canonical form of a raw `:path` value (borrowed when it
/// already is one: the common case costs no copy).
pub fn normalize(raw: &str) -> Cow<'_, str> {
    if is_canonical(raw) {
        return Cow::Borrowed(raw);
    }
    Cow::Owned(normalize_in_full(raw))
}

/// Every step, without the fast path (which must agree with it).
fn normalize_in_full(raw: &str) -> String {
    let end = raw.find(['?', '#']).unwrap_or(raw.len());
    let decoded = decode_unreserved(&raw[..end]);
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len() + 1);
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// True when `normalize` would return `raw` unchanged: rooted, and no query,
/// fragment, escape, empty segment, dot segment or trailing slash.
fn is_canonical(raw: &str) -> bool {
    let b = raw.as_bytes();
    if b.first() != Some(&b'/') || (b.len() > 1 && b.last() == Some(&b'/')) {
        return false;
    }
    if b.iter().any(|&c| matches!(c, b'?' | b'#' | b'%')) {
        return false;
    }
    raw.split('/')
        .skip(1)
        .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
        || raw == "/"
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Decodes `%XX` only where XX is an unreserved character (RFC 3986 2.3);
/// any other escape is kept, upper-cased so that `%2f` and `%2F` agree.
fn decode_unreserved(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex_value(bytes[i + 1]), hex_value(bytes[i + 2])) {
                let v = h * 16 + l;
                if is_unreserved(v) {
                    out.push(char::from(v));
                } else {
                    out.push('%');
                    out.push(char::from(bytes[i + 1].to_ascii_uppercase()));
                    out.push(char::from(bytes[i + 2].to_ascii_uppercase()));
                }
                i += 3;
                continue;
            }
        }
        // Copy one whole UTF-8 character (the input is a &str, so it is valid).
        let ch_len = utf8_len(bytes[i]);
        let stop = (i + ch_len).min(bytes.len());
        out.push_str(s.get(i..stop).unwrap_or("\u{fffd}"));
        i = stop;
    }
    out
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn canonical_forms() {
        let cases = [
            ("/api/v1/users", "/api/v1/users"),
            ("/api/v1/users?limit=200&q=x", "/api/v1/users"),
            ("/api/v1/users#frag", "/api/v1/users"),
            ("/api/v1/users/", "/api/v1/users"),
            ("//api///v1//users//", "/api/v1/users"),
            ("/api/v1/%75sers", "/api/v1/users"),
            ("/api/v1/%2e%2e/v1/users", "/api/v1/users"),
            ("/api/v1/groups/../users", "/api/v1/users"),
            ("/api/v1/./users", "/api/v1/users"),
            ("/../../api/v1/users", "/api/v1/users"),
            ("/api/v1/users/a%2fb", "/api/v1/users/a%2Fb"),
            ("/api/v1/users/%zz", "/api/v1/users/%zz"),
            ("/api/v1/users/%", "/api/v1/users/%"),
            ("/api/v1/users/%4", "/api/v1/users/%4"),
            ("/api/v1/usérs", "/api/v1/usérs"),
            ("", "/"),
            ("?x", "/"),
            ("/", "/"),
            ("api/v1/users", "/api/v1/users"),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize(raw), want, "normalize({raw:?})");
        }
    }

    #[test]
    fn decodes_once_like_the_idp() {
        // One pass, as an IdP decoding once sees it: the escape that the first
        // pass uncovers stays literal (a second pass would double-decode).
        assert_eq!(normalize("/api/v1/log%7%33"), "/api/v1/log%73");
        assert_eq!(normalize("/api/v1/%2575sers"), "/api/v1/%2575sers");
    }

    #[test]
    fn idempotent_on_ordinary_spellings() {
        for raw in ["/a//b/../c/%41?x", "/%2F%2f/./x/", "/a/%2e/b"] {
            let once = normalize(raw);
            assert_eq!(normalize(&once), once);
        }
    }

    /// The fast path is a promise about `normalize`: whatever it lets
    /// through unchanged, the full normalisation leaves unchanged too. Held
    /// over generated paths built from the pieces that normalisation
    /// rewrites (dot segments, escapes, empty segments, query, fragment).
    #[test]
    fn the_fast_path_agrees_with_the_full_one() {
        const PIECES: [&str; 22] = [
            "/", "/", "/", "a", "users", "v1", ".", "..", "...", "..d", "b.c", "%41", "%2f", "%2F",
            "%", "%zz", "?", "#", "é", "~", "-", "_",
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: usize| {
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
        };
        let mut canonical = 0;
        for _ in 0..50_000 {
            let mut raw = String::new();
            if next(8) != 0 {
                raw.push('/');
            }
            for _ in 0..next(8) {
                raw.push_str(PIECES[next(PIECES.len())]);
            }
            if super::is_canonical(&raw) {
                canonical += 1;
                assert_eq!(
                    super::normalize_in_full(&raw),
                    raw,
                    "is_canonical({raw:?}) but normalize changes it"
                );
            }
        }
        assert!(canonical > 1000, "the generator reaches canonical paths");
        assert!(super::is_canonical("/api/v1/users"));
        assert!(!super::is_canonical("/api/v1/users/"));
        assert!(!super::is_canonical("/api/./users"));
    }

    #[test]
    fn huge_path_is_fine() {
        let raw = "/api/v1/".to_string() + &"a/".repeat(40_000);
        assert!(normalize(&raw).starts_with("/api/v1/a/a"));
    }
}
