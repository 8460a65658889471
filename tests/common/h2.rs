//! A minimal HTTP/2 cleartext (prior knowledge) client.
//!
//! curl 7.88.1 (this machine's) fails every request after the first on a reused h2c connection
//! ("Error in the HTTP2 framing layer"; one request per connection works), and no HTTP/2 crate
//! is a dependency, so the tests speak HTTP/2 themselves: the connection preface, SETTINGS,
//! requests as HPACK literals without indexing (plain strings, no Huffman), all streams of a
//! batch opened at once (multiplexed), and responses decoded with the full HPACK decoder
//! (static table, dynamic table, Huffman), which `hpack_decoder_passes_rfc_7541_examples` (in
//! tests/http2_e2e.rs) checks against the RFC's own examples.

use super::Response;
use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// Every peer accepts frames this large (SETTINGS_MAX_FRAME_SIZE is at least 16384).
const MAX_FRAME: usize = 16384;
const BIG_WINDOW: u32 = 1 << 30;

/// A request: its header list in order, pseudo-headers first, as raw bytes.
pub type Request = Vec<(Vec<u8>, Vec<u8>)>;

/// `GET path`; `authority` None leaves `:authority` out.
pub fn get(authority: Option<&[u8]>, path: &[u8], extra: &[(&str, &[u8])]) -> Request {
    let mut h: Request = vec![
        (b":method".to_vec(), b"GET".to_vec()),
        (b":scheme".to_vec(), b"http".to_vec()),
        (b":path".to_vec(), path.to_vec()),
    ];
    if let Some(a) = authority {
        h.push((b":authority".to_vec(), a.to_vec()));
    }
    h.extend(
        extra
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.to_vec())),
    );
    h
}

pub struct Conn {
    s: TcpStream,
    next_stream: u32,
    decoder: Decoder,
}

fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend([ty, flags]);
    f.extend(stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

impl Conn {
    /// Connects and sends the preface, SETTINGS (no push, 1 GiB stream windows) and a
    /// connection WINDOW_UPDATE, so responses never wait for flow control.
    pub fn open(port: u16) -> io::Result<Conn> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(super::IO_TIMEOUT))?;
        s.set_nodelay(true)?;
        let mut out = PREFACE.to_vec();
        let mut settings = Vec::new();
        for (id, value) in [(0x2u16, 0u32), (0x4, BIG_WINDOW)] {
            settings.extend(id.to_be_bytes());
            settings.extend(value.to_be_bytes());
        }
        out.extend(frame(SETTINGS, 0, 0, &settings));
        out.extend(frame(
            WINDOW_UPDATE,
            0,
            0,
            &(BIG_WINDOW - 65535).to_be_bytes(),
        ));
        let mut conn = Conn {
            s,
            next_stream: 1,
            decoder: Decoder::new(),
        };
        conn.s.write_all(&out)?;
        Ok(conn)
    }

    /// Opens one stream per request, all at once, then reads until every stream has ended.
    /// Per request: the response, or Err naming the RST_STREAM / GOAWAY / close that ended it.
    pub fn send_all(&mut self, requests: &[Request]) -> Vec<Result<Response, String>> {
        let mut out = Vec::new();
        let mut ids = Vec::new();
        for headers in requests {
            let id = self.next_stream;
            self.next_stream += 2;
            ids.push(id);
            let block = encode(headers);
            let mut chunks = block.chunks(MAX_FRAME).peekable();
            let first = chunks.next().unwrap_or_default();
            let end = if chunks.peek().is_none() {
                END_HEADERS
            } else {
                0
            };
            out.extend(frame(HEADERS, END_STREAM | end, id, first));
            while let Some(chunk) = chunks.next() {
                let end = if chunks.peek().is_none() {
                    END_HEADERS
                } else {
                    0
                };
                out.extend(frame(CONTINUATION, end, id, chunk));
            }
        }
        let mut results: BTreeMap<u32, Result<Response, String>> = BTreeMap::new();
        let mut partial: BTreeMap<u32, Response> = BTreeMap::new();
        let sent = self.s.write_all(&out);
        let failure = match sent {
            Ok(()) => self.read_until_done(&ids, &mut results, &mut partial).err(),
            Err(e) => Some(format!("write: {e}")),
        };
        ids.iter()
            .map(|id| {
                results
                    .remove(id)
                    .unwrap_or_else(|| Err(failure.clone().unwrap_or_else(|| "no answer".into())))
            })
            .collect()
    }

    fn read_until_done(
        &mut self,
        ids: &[u32],
        results: &mut BTreeMap<u32, Result<Response, String>>,
        partial: &mut BTreeMap<u32, Response>,
    ) -> Result<(), String> {
        let mut block: Option<(u32, Vec<u8>, bool)> = None; // headers being continued
        while ids.iter().any(|id| !results.contains_key(id)) {
            let (ty, flags, stream, payload) = self.read_frame().map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => "connection closed".to_string(),
                _ => format!("read: {e}"),
            })?;
            match ty {
                DATA => {
                    let data = unpad(flags, &payload)?;
                    let r = partial.entry(stream).or_insert_with(empty_response);
                    r.body.extend_from_slice(data);
                    if flags & END_STREAM != 0 {
                        let r = partial.remove(&stream).unwrap_or_else(empty_response);
                        results.insert(stream, Ok(r));
                    }
                }
                HEADERS | CONTINUATION => {
                    let (fragment, end_stream) = if ty == HEADERS {
                        let mut data = unpad(flags, &payload)?;
                        if flags & PRIORITY != 0 {
                            data = data.get(5..).ok_or("short PRIORITY")?;
                        }
                        (data.to_vec(), flags & END_STREAM != 0)
                    } else {
                        let (s, mut acc, es) = block.take().ok_or("stray CONTINUATION")?;
                        if s != stream {
                            return Err("CONTINUATION on another stream".into());
                        }
                        acc.extend_from_slice(&payload);
                        (acc, es)
                    };
                    if flags & END_HEADERS == 0 {
                        block = Some((stream, fragment, end_stream));
                        continue;
                    }
                    let fields = self.decoder.decode(&fragment)?;
                    let r = partial.entry(stream).or_insert_with(empty_response);
                    for (k, v) in fields {
                        if k == ":status" {
                            r.status = v.parse().map_err(|_| format!(":status {v:?}"))?;
                        } else {
                            r.headers.push((k, v));
                        }
                    }
                    if end_stream {
                        let r = partial.remove(&stream).unwrap_or_else(empty_response);
                        results.insert(stream, Ok(r));
                    }
                }
                RST_STREAM => {
                    let code = u32::from_be_bytes(payload[..4].try_into().unwrap());
                    partial.remove(&stream);
                    results.insert(stream, Err(format!("RST_STREAM error code {code}")));
                }
                SETTINGS if flags & ACK == 0 => {
                    self.s
                        .write_all(&frame(SETTINGS, ACK, 0, &[]))
                        .map_err(|e| e.to_string())?;
                }
                PING if flags & ACK == 0 => {
                    self.s
                        .write_all(&frame(PING, ACK, 0, &payload))
                        .map_err(|e| e.to_string())?;
                }
                GOAWAY => {
                    let last = u32::from_be_bytes(payload[..4].try_into().unwrap()) & !(1 << 31);
                    let code = u32::from_be_bytes(payload[4..8].try_into().unwrap());
                    for id in ids.iter().filter(|id| **id > last) {
                        results
                            .entry(*id)
                            .or_insert_with(|| Err(format!("GOAWAY error code {code}")));
                    }
                    if code != 0 {
                        return Err(format!("GOAWAY error code {code}"));
                    }
                }
                _ => {} // WINDOW_UPDATE, PRIORITY, acks, unknown types
            }
        }
        Ok(())
    }

    fn read_frame(&mut self) -> io::Result<(u8, u8, u32, Vec<u8>)> {
        let mut head = [0u8; 9];
        self.s.read_exact(&mut head)?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let stream = u32::from_be_bytes(head[5..9].try_into().unwrap()) & !(1 << 31);
        let mut payload = vec![0u8; len];
        self.s.read_exact(&mut payload)?;
        Ok((head[3], head[4], stream, payload))
    }
}

fn empty_response() -> Response {
    Response {
        status: 0,
        headers: Vec::new(),
        body: Vec::new(),
    }
}

fn unpad(flags: u8, payload: &[u8]) -> Result<&[u8], String> {
    if flags & PADDED == 0 {
        return Ok(payload);
    }
    let pad = *payload.first().ok_or("empty padded frame")? as usize;
    payload
        .get(1..payload.len().saturating_sub(pad))
        .ok_or_else(|| "bad padding".into())
}

// -- HPACK (RFC 7541) ------------------------------------------------------------------

fn encode_int(out: &mut Vec<u8>, first: u8, prefix_bits: u32, mut v: usize) {
    let max = (1usize << prefix_bits) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// Every field as "literal header field without indexing — new name", plain strings.
pub fn encode(headers: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in headers {
        out.push(0x00);
        for s in [k, v] {
            encode_int(&mut out, 0, 7, s.len());
            out.extend_from_slice(s);
        }
    }
    out
}

const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// HPACK Huffman code lengths, symbols 0..=256 (RFC 7541 Appendix B). The code is
/// canonical (codes ascend with (length, symbol)), so the lengths define it.
pub const HUFFMAN_LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, //
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, //
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, //
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, //
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, //
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, //
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, //
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, //
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, //
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, //
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, //
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, //
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, //
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, //
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, //
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, //
    30,
];

/// Canonical decoding tables: per length, the first code, how many codes, and where its
/// symbols start in `symbols` (sorted by (length, symbol)).
struct Huffman {
    first: [u32; 31],
    count: [u32; 31],
    offset: [usize; 31],
    symbols: Vec<u16>,
}

fn huffman() -> &'static Huffman {
    static TABLE: std::sync::OnceLock<Huffman> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut symbols: Vec<u16> = (0..257).collect();
        symbols.sort_by_key(|s| (HUFFMAN_LENGTHS[*s as usize], *s));
        let mut h = Huffman {
            first: [0; 31],
            count: [0; 31],
            offset: [0; 31],
            symbols,
        };
        for len in HUFFMAN_LENGTHS {
            h.count[len as usize] += 1;
        }
        let (mut code, mut offset) = (0u32, 0usize);
        for len in 1..31 {
            code <<= 1;
            h.first[len] = code;
            h.offset[len] = offset;
            code += h.count[len];
            offset += h.count[len] as usize;
        }
        h
    })
}

pub fn huffman_decode(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let h = huffman();
    let mut out = Vec::new();
    let (mut code, mut len) = (0u32, 0usize);
    for byte in bytes {
        for bit in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> bit) & 1);
            len += 1;
            if len > 30 {
                return Err("Huffman code longer than 30 bits".into());
            }
            let index = code.wrapping_sub(h.first[len]);
            if code >= h.first[len] && index < h.count[len] {
                match h.symbols[h.offset[len] + index as usize] {
                    256 => return Err("EOS in a Huffman string".into()),
                    sym => out.push(sym as u8),
                }
                (code, len) = (0, 0);
            }
        }
    }
    // Padding: fewer than 8 bits, all ones (a prefix of EOS).
    if len > 7 || code != (1 << len) - 1 {
        return Err("bad Huffman padding".into());
    }
    Ok(out)
}

pub struct Decoder {
    dynamic: VecDeque<(String, String)>,
    size: usize,
    max_size: usize,
}

impl Default for Decoder {
    fn default() -> Decoder {
        Decoder::new()
    }
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder {
            dynamic: VecDeque::new(),
            size: 0,
            max_size: 4096,
        }
    }

    fn entry(&self, index: usize) -> Result<(String, String), String> {
        match index {
            0 => Err("HPACK index 0".into()),
            1..=61 => {
                let (k, v) = STATIC[index - 1];
                Ok((k.into(), v.into()))
            }
            _ => self
                .dynamic
                .get(index - 62)
                .cloned()
                .ok_or_else(|| format!("HPACK index {index} out of range")),
        }
    }

    fn evict_to(&mut self, max: usize) {
        while self.size > max {
            let (k, v) = self.dynamic.pop_back().expect("size > 0 means entries");
            self.size -= k.len() + v.len() + 32;
        }
    }

    fn insert(&mut self, k: String, v: String) {
        let size = k.len() + v.len() + 32;
        self.evict_to(self.max_size.saturating_sub(size));
        if size <= self.max_size {
            self.size += size;
            self.dynamic.push_front((k, v));
        }
    }

    /// One header block, in order. Strings are decoded lossily (responses are ASCII).
    pub fn decode(&mut self, mut b: &[u8]) -> Result<Vec<(String, String)>, String> {
        let mut fields = Vec::new();
        while let Some(&first) = b.first() {
            if first & 0x80 != 0 {
                let index = int(&mut b, 7)?;
                fields.push(self.entry(index)?);
            } else if first & 0xe0 == 0x20 {
                let size = int(&mut b, 5)?;
                if size > 4096 {
                    return Err(format!("table size update to {size} above our 4096"));
                }
                self.max_size = size;
                self.evict_to(size);
            } else {
                let (prefix, index_it) = if first & 0xc0 == 0x40 {
                    (6, true)
                } else {
                    (4, false) // without indexing (0000) or never indexed (0001)
                };
                let index = int(&mut b, prefix)?;
                let name = match index {
                    0 => string(&mut b)?,
                    i => self.entry(i)?.0,
                };
                let value = string(&mut b)?;
                if index_it {
                    self.insert(name.clone(), value.clone());
                }
                fields.push((name, value));
            }
        }
        Ok(fields)
    }
}

fn int(b: &mut &[u8], prefix_bits: u32) -> Result<usize, String> {
    let max = (1usize << prefix_bits) - 1;
    let (&first, rest) = b.split_first().ok_or("truncated integer")?;
    *b = rest;
    let mut v = usize::from(first) & max;
    if v < max {
        return Ok(v);
    }
    let mut shift = 0;
    loop {
        let (&byte, rest) = b.split_first().ok_or("truncated integer")?;
        *b = rest;
        v += usize::from(byte & 0x7f) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
        if shift > 28 {
            return Err("integer too large".into());
        }
    }
}

fn string(b: &mut &[u8]) -> Result<String, String> {
    let huffman = b.first().ok_or("truncated string")? & 0x80 != 0;
    let len = int(b, 7)?;
    if b.len() < len {
        return Err("truncated string".into());
    }
    let (raw, rest) = b.split_at(len);
    *b = rest;
    let bytes = if huffman {
        huffman_decode(raw)?
    } else {
        raw.to_vec()
    };
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
