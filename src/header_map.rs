//! A request's headers as one buffer, as proxy-wasm's
//! `proxy_get_header_map_pairs` serialises them: a `u32` count N, N pairs of
//! `u32` name and value lengths, then each name and value followed by a NUL
//! (all little-endian). One host call returns them all, which costs less
//! than reading even two headers one by one (bench/RESULTS.md); lookups then
//! scan the buffer without copying it. Malformed input reads as no headers
//! from the first bad entry on: never a panic.

use std::borrow::Cow;

pub struct HeaderMap {
    bytes: Vec<u8>,
    /// Per header: where its name and value start, and their lengths.
    entries: Vec<[u32; 4]>,
}

fn u32_at(bytes: &[u8], at: usize) -> Option<usize> {
    let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(b)).ok()
}

impl HeaderMap {
    pub fn parse(bytes: Vec<u8>) -> HeaderMap {
        let count = u32_at(&bytes, 0).unwrap_or(0);
        // Each header takes at least 10 bytes, which bounds a lying count.
        let mut entries = Vec::with_capacity(count.min(bytes.len() / 10));
        let mut data = 4usize.saturating_add(count.saturating_mul(8));
        for i in 0..count {
            let (Some(name_len), Some(value_len)) =
                (u32_at(&bytes, 4 + i * 8), u32_at(&bytes, 8 + i * 8))
            else {
                break;
            };
            let name = data;
            let Some(value) = name.checked_add(name_len).and_then(|e| e.checked_add(1)) else {
                break;
            };
            let Some(end) = value.checked_add(value_len).and_then(|e| e.checked_add(1)) else {
                break;
            };
            if end > bytes.len() {
                break;
            }
            let field = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
            entries.push([field(name), field(name_len), field(value), field(value_len)]);
            data = end;
        }
        HeaderMap { bytes, entries }
    }

    fn slice(&self, start: u32, len: u32) -> &[u8] {
        let start = start as usize;
        self.bytes
            .get(start..start.saturating_add(len as usize))
            .unwrap_or_default()
    }

    /// The first value of header `name` (Envoy's names are lower case), as
    /// text: read lossily when it is not UTF-8.
    pub fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        self.entries
            .iter()
            .find(|[n, nl, _, _]| self.slice(*n, *nl) == name.as_bytes())
            .map(|[_, _, v, vl]| String::from_utf8_lossy(self.slice(*v, *vl)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serialise(pairs: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (n, v) in pairs {
            out.extend((n.len() as u32).to_le_bytes());
            out.extend((v.len() as u32).to_le_bytes());
        }
        for (n, v) in pairs {
            out.extend(n.as_bytes());
            out.push(0);
            out.extend(*v);
            out.push(0);
        }
        out
    }

    #[test]
    fn finds_each_header_and_the_first_of_repeated_ones() {
        let m = HeaderMap::parse(serialise(&[
            (":method", b"GET"),
            (":path", b"/api/v1/users?limit=2"),
            ("cookie", b"a=1"),
            ("cookie", b"b=2"),
            ("empty", b""),
            ("x-bin", b"\xff\xfe"),
        ]));
        assert_eq!(m.get(":method").as_deref(), Some("GET"));
        assert_eq!(m.get(":path").as_deref(), Some("/api/v1/users?limit=2"));
        assert_eq!(m.get("cookie").as_deref(), Some("a=1"));
        assert_eq!(m.get("empty").as_deref(), Some(""));
        assert_eq!(m.get("x-bin").as_deref(), Some("\u{fffd}\u{fffd}"));
        assert_eq!(m.get("authorization"), None);
        assert_eq!(m.get(":metho"), None);
    }

    #[test]
    fn malformed_buffers_read_as_fewer_headers_never_panic() {
        let good = serialise(&[(":method", b"GET"), (":path", b"/x")]);
        for cut in 0..good.len() {
            let m = HeaderMap::parse(good[..cut].to_vec());
            assert!(m.get(":path").is_none() || cut == good.len());
        }
        let mut lying = good.clone();
        lying[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(HeaderMap::parse(lying).get(":method"), None);
        let mut huge_len = good.clone();
        huge_len[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(HeaderMap::parse(huge_len).get(":method"), None);
        assert_eq!(HeaderMap::parse(Vec::new()).get(":method"), None);
    }
}
