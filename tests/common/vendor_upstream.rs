//! A vendor-shaped upstream for `"upstream": "vendor"` tests: an HTTP/1.1 server on 127.0.0.1
//! that keeps the org's own count in one fixed window and answers every request with Okta's,
//! Auth0's or OneLogin's rate-limit headers, or with the vendor's 429 once the count is spent.
//! Other clients of the org spend quota behind the filter's back with `spend`. Every response
//! carries `x-upstream: direct` (`Response::reached_upstream`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Okta,
    Auth0,
    OneLogin,
}

/// What the upstream's rate-limit headers look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Headers {
    Vendor,
    /// None at all (a proxy in between stripped them).
    Absent,
    /// `Remaining: lots`.
    Garbled,
}

#[derive(Debug)]
struct Org {
    dialect: Dialect,
    limit: u64,
    window_secs: u64,
    window_start: u64,
    used: u64,
    /// Refuse everything until this epoch second (a 429 storm the vendor declared).
    refuse_until: u64,
    headers: Headers,
    /// Requests that reached the server, and those it answered 429.
    seen: u64,
    refused: u64,
}

pub struct VendorUpstream {
    port: u16,
    org: Arc<Mutex<Org>>,
}

fn epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl VendorUpstream {
    /// Starts the server; it lives as long as the test process (one thread per connection).
    pub fn start(dialect: Dialect, limit: u64) -> VendorUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let window_secs = match dialect {
            Dialect::OneLogin => 3600,
            _ => 60,
        };
        let org = Arc::new(Mutex::new(Org {
            dialect,
            limit,
            window_secs,
            window_start: epoch(),
            used: 0,
            refuse_until: 0,
            headers: Headers::Vendor,
            seen: 0,
            refused: 0,
        }));
        let shared = org.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let org = shared.clone();
                std::thread::spawn(move || serve(conn, &org));
            }
        });
        VendorUpstream { port, org }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Another client of the org spends `n` requests (never through the filter).
    pub fn spend(&self, n: u64) {
        let mut org = self.org.lock().unwrap();
        org.used += n;
    }

    /// The vendor refuses every request for the next `secs` seconds.
    pub fn refuse_for(&self, secs: u64) {
        self.org.lock().unwrap().refuse_until = epoch() + secs;
    }

    pub fn set_headers(&self, headers: Headers) {
        self.org.lock().unwrap().headers = headers;
    }

    /// (requests that reached the vendor, of those answered 429).
    pub fn seen(&self) -> (u64, u64) {
        let org = self.org.lock().unwrap();
        (org.seen, org.refused)
    }
}

/// IMF-fixdate (`Tue, 01 Dec 2026 21:47:44 GMT`), as the vendors send `Date` (written here
/// rather than borrowed from the filter, so a bug there cannot hide in the test).
fn http_date(epoch: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (days, secs) = (epoch / 86_400, epoch % 86_400);
    // Civil date from days since 1970-01-01 (the proleptic Gregorian calendar).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// The vendor's answer to one request: status and headers.
fn answer(org: &mut Org) -> (u16, Vec<(String, String)>) {
    let now = epoch();
    org.seen += 1;
    if now >= org.window_start + org.window_secs {
        org.window_start = now;
        org.used = 0;
    }
    let storm = now < org.refuse_until;
    let refused = storm || org.used >= org.limit;
    if !refused {
        org.used += 1;
    }
    let reset = if storm {
        org.refuse_until
    } else {
        org.window_start + org.window_secs
    };
    let remaining = if refused { 0 } else { org.limit - org.used };
    let status = if refused { 429 } else { 200 };
    if refused {
        org.refused += 1;
    }
    let mut h = vec![
        ("date".to_string(), http_date(now)),
        ("x-upstream".to_string(), "direct".to_string()),
    ];
    let (prefix, reset_value) = match org.dialect {
        Dialect::Okta => ("x-rate-limit-", reset),
        Dialect::Auth0 => ("x-ratelimit-", reset),
        Dialect::OneLogin => ("x-ratelimit-", reset - now),
    };
    let remaining = match org.headers {
        Headers::Garbled => "lots".to_string(),
        _ => remaining.to_string(),
    };
    if org.headers != Headers::Absent {
        h.push((format!("{prefix}limit"), org.limit.to_string()));
        h.push((format!("{prefix}remaining"), remaining));
        h.push((format!("{prefix}reset"), reset_value.to_string()));
        if refused && org.dialect == Dialect::Auth0 {
            h.push(("retry-after".into(), (reset - now).to_string()));
        }
    }
    (status, h)
}

fn serve(conn: TcpStream, org: &Mutex<Org>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (status, headers) = answer(&mut org.lock().unwrap());
        let body = if status == 429 {
            "{\"limited\":true}"
        } else {
            "{}"
        };
        let mut out = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
        for (k, v) in headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        out.push_str(body);
        if reader.get_mut().write_all(out.as_bytes()).is_err() {
            return;
        }
    }
}
