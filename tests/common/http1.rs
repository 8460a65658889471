//! A small HTTP/1.1 client over a plain `std::net::TcpStream` (keep-alive, pipelining, raw
//! bytes), and the helpers that time a request and read its rate-limit headers.

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a client waits on a read or write before the test fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// Case-insensitive; first match.
    pub fn header(&self, name: &str) -> Option<&str> {
        let mut matching = self
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name));
        matching.next().map(|(_, v)| v.as_str())
    }
    pub fn header_u64(&self, name: &str) -> Option<u64> {
        self.header(name)?.trim().parse().ok()
    }
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// True if the response came from the routes ("upstream"), not from a filter's local reply.
    pub fn reached_upstream(&self) -> bool {
        self.header("x-upstream") == Some("direct")
    }
    pub fn json(&self) -> serde_json::Value {
        let (status, body) = (self.status, self.body_str());
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response {status} is not JSON ({e}): {body:?}"))
    }
}

/// One keep-alive connection. Panics (naming the request) on I/O errors and 5 s timeouts.
pub struct Client {
    port: u16,
    conn: Option<BufReader<TcpStream>>,
    served: usize, // responses read on the current connection
}

fn open(port: u16) -> io::Result<BufReader<TcpStream>> {
    let s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.set_nodelay(true)?;
    Ok(BufReader::new(s))
}

impl Client {
    pub fn connect(port: u16) -> Client {
        let conn = Some(open(port).unwrap_or_else(|e| panic!("connect 127.0.0.1:{port}: {e}")));
        Client {
            port,
            conn,
            served: 0,
        }
    }

    pub fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        self.request_with_body(method, path, headers, b"")
    }

    /// Adds `Host: localhost` unless a host header is given, and Content-Length when there is a
    /// body (or for POST/PUT/PATCH) unless content-length / transfer-encoding is given.
    pub fn request_with_body(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let has = |n: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
        let mut req = format!("{method} {path} HTTP/1.1\r\n");
        if !has("host") {
            req.push_str("Host: localhost\r\n");
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        let wants_length = !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH");
        if wants_length && !has("content-length") && !has("transfer-encoding") {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        let head = method.eq_ignore_ascii_case("HEAD");
        let reused = self.conn.is_some() && self.served > 0;
        let result = match self.send(&bytes, head) {
            // The server had closed the idle keep-alive connection: retry once on a new one.
            Err(e) if reused && CLOSED.contains(&e.kind()) => self.send(&bytes, head),
            r => r,
        };
        result.unwrap_or_else(|e| {
            let timeout = matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut);
            let e = if timeout {
                format!("no response within {IO_TIMEOUT:?}")
            } else {
                e.to_string()
            };
            panic!("{method} {path} on 127.0.0.1:{}: {e}", self.port)
        })
    }

    fn send(&mut self, bytes: &[u8], head: bool) -> io::Result<Response> {
        if self.conn.is_none() {
            self.conn = Some(open(self.port)?);
            self.served = 0;
        }
        let conn = self.conn.as_mut().expect("connection");
        let result = conn
            .get_mut()
            .write_all(bytes)
            .and_then(|()| read_response(conn, head));
        self.served += 1;
        if !matches!(result, Ok((_, true))) {
            self.conn = None; // errors and `connection: close` both end this connection
        }
        result.map(|(resp, _)| resp)
    }
}

/// How a keep-alive connection the server already closed shows up (see `read_response`).
const CLOSED: [ErrorKind; 3] = [
    ErrorKind::ConnectionAborted,
    ErrorKind::BrokenPipe,
    ErrorKind::ConnectionReset,
];

/// One-shot GET on a fresh connection.
pub fn get(port: u16, path: &str) -> Response {
    Client::connect(port).request("GET", path, &[])
}

/// Non-panicking one-shot GET (used while envoy is still starting).
pub(super) fn http_get(port: u16, path: &str) -> io::Result<Response> {
    let mut conn = open(port)?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    conn.get_mut().write_all(req.as_bytes())?;
    Ok(read_response(&mut conn, false)?.0)
}

fn io_err(kind: ErrorKind, msg: String) -> io::Error {
    io::Error::new(kind, msg)
}

fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    if r.read_until(b'\n', &mut line)? == 0 || line.last() != Some(&b'\n') {
        return Err(io_err(
            ErrorKind::UnexpectedEof,
            "closed mid-response".into(),
        ));
    }
    Ok(String::from_utf8_lossy(&line)
        .trim_end_matches(['\r', '\n'])
        .to_string())
}

/// Reads one response (skipping 1xx). Returns it and whether the connection stays usable.
/// EOF before the first byte is reported as ConnectionAborted (safe to retry).
pub fn read_response(r: &mut impl BufRead, head: bool) -> io::Result<(Response, bool)> {
    loop {
        if r.fill_buf()?.is_empty() {
            let msg = "connection closed before any response".into();
            return Err(io_err(ErrorKind::ConnectionAborted, msg));
        }
        let status_line = read_line(r)?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_string();
        let status: u16 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| {
            io_err(
                ErrorKind::InvalidData,
                format!("bad status line {status_line:?}"),
            )
        })?;
        let mut headers = Vec::new();
        loop {
            let line = read_line(r)?;
            if line.is_empty() {
                break;
            }
            let (k, v) = line.split_once(':').unwrap_or((line.as_str(), ""));
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        if (100..200).contains(&status) && status != 101 {
            continue; // 100 Continue etc.
        }
        let body = Vec::new();
        let mut resp = Response {
            status,
            headers,
            body,
        };
        let has = |name: &str, token: &str| {
            resp.header(name)
                .unwrap_or_default()
                .to_ascii_lowercase()
                .contains(token)
        };
        let mut keep_alive = match version.as_str() {
            "HTTP/1.0" => has("connection", "keep-alive"),
            _ => !has("connection", "close"),
        };
        let chunked = has("transfer-encoding", "chunked");
        if head || status == 204 || status == 304 {
            // no body
        } else if chunked {
            loop {
                let size_line = read_line(r)?;
                let hex = size_line.split(';').next().unwrap_or_default().trim();
                let size = usize::from_str_radix(hex, 16).map_err(|_| {
                    io_err(ErrorKind::InvalidData, format!("bad chunk {size_line:?}"))
                })?;
                if size == 0 {
                    while !read_line(r)?.is_empty() {} // trailers
                    break;
                }
                let start = resp.body.len();
                resp.body.resize(start + size, 0);
                r.read_exact(&mut resp.body[start..])?;
                read_line(r)?; // CRLF after the chunk
            }
        } else if let Some(len) = resp.header_u64("content-length") {
            resp.body.resize(len as usize, 0);
            r.read_exact(&mut resp.body)?;
        } else {
            r.read_to_end(&mut resp.body)?; // delimited by close
            keep_alive = false;
        }
        return Ok((resp, keep_alive));
    }
}

/// Parses raw bytes (e.g. from `raw_request`) as one HTTP/1.x response.
pub fn parse_response(mut bytes: &[u8]) -> Response {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let parsed = read_response(&mut bytes, false);
    parsed
        .unwrap_or_else(|e| panic!("cannot parse response ({e}): {text:?}"))
        .0
}

/// Writes `bytes` verbatim on a new connection and returns everything read until the server
/// closes, a complete `connection: close` response has arrived, or 5 s pass without data.
/// If Envoy would keep the connection alive, send `Connection: close` to avoid the 5 s wait.
pub fn raw_request(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut s = open(port).unwrap_or_else(|e| panic!("connect 127.0.0.1:{port}: {e}"));
    let _ = s.get_mut().write_all(bytes); // envoy may reply and close before reading it all
    let mut out = Vec::new();
    let mut buf = [0u8; 16384]; // BufReader is empty, so these reads go straight to the socket
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break, // close, reset or idle timeout
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
        let mut rest = out.as_slice();
        if let Ok((resp, false)) = read_response(&mut rest, false) {
            let framed = ["content-length", "transfer-encoding"].map(|h| resp.header(h).is_some());
            if framed.contains(&true) && rest.is_empty() {
                break; // complete and the server will close: skip its delayed-close wait
            }
        }
    }
    out
}

/// Envoy may read its clock a little before a test's "before" timestamp.
pub const CLOCK_SLACK: f64 = 0.05;

/// Wall clock, seconds since the epoch, with sub-second precision.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// One request and the wall-clock interval in which the filter decided it.
pub struct Sent {
    pub r: Response,
    pub t0: f64,
    pub t1: f64,
}

pub fn send(c: &mut Client, method: &str, path: &str, headers: &[(&str, &str)]) -> Sent {
    let t0 = now();
    let r = c.request(method, path, headers);
    Sent { r, t0, t1: now() }
}

/// The `X-RateLimit-*` trio (Auth0, OneLogin, custom): (limit, remaining, reset).
pub fn rate(r: &Response) -> (u64, u64, u64) {
    let get = |name: &str| {
        r.header_u64(name).unwrap_or_else(|| {
            panic!(
                "{} without a numeric {name}: {:?} {:?}",
                r.status,
                r.headers,
                r.body_str()
            )
        })
    };
    (
        get("x-ratelimit-limit"),
        get("x-ratelimit-remaining"),
        get("x-ratelimit-reset"),
    )
}
