//! HTTP/2 (h2c, prior knowledge) and HTTP/1.1 clients of one org count in the same buckets; and
//! the test HTTP/2 client's HPACK decoder checked against RFC 7541's own examples.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub mod common;
use common::*;

use std::collections::BTreeSet;

/// Hex (whitespace ignored) to bytes, for the RFC examples.
fn unhex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

/// The h2 client's decoder against RFC 7541's own examples (C.4.1 Huffman request, C.6.1 and
/// C.6.2 Huffman responses sharing a dynamic table), so the HTTP/2 tests rest on a checked
/// decoder. No Envoy needed.
#[test]
fn hpack_decoder_passes_rfc_7541_examples() {
    // The code lengths form a complete prefix code (Kraft sum exactly 1).
    let kraft: u64 = h2::HUFFMAN_LENGTHS.iter().map(|l| 1u64 << (30 - l)).sum();
    assert_eq!(kraft, 1 << 30, "Huffman code lengths");
    let mut d = h2::Decoder::new();
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        d.decode(&unhex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"))
            .unwrap(),
        pairs(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com")
        ])
    );
    let mut d = h2::Decoder::new();
    let c61 = "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 \
               82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3";
    let response = [
        (":status", "302"),
        ("cache-control", "private"),
        ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
        ("location", "https://www.example.com"),
    ];
    assert_eq!(d.decode(&unhex(c61)).unwrap(), pairs(&response));
    // C.6.2: ":status 307" is a new literal, the rest come from the dynamic table.
    let mut second = response;
    second[0] = (":status", "307");
    assert_eq!(
        d.decode(&unhex("4883 640e ffc1 c0bf")).unwrap(),
        pairs(&second)
    );
    // Our encoder's literals decode to what was encoded, long values (multi-byte lengths) too.
    let long = vec![b'x'; 70_000];
    let fields = vec![
        (b":path".to_vec(), b"/a".to_vec()),
        (b"x-long".to_vec(), long),
    ];
    let decoded = h2::Decoder::new().decode(&h2::encode(&fields)).unwrap();
    assert_eq!(decoded[1].1.len(), 70_000);
    assert_eq!(decoded[0], (":path".into(), "/a".into()));
    // Padding that is not all ones, and an EOS symbol, are refused.
    assert!(h2::huffman_decode(&[0x00]).is_err(), "padding of zeros");
    assert!(
        h2::huffman_decode(&[0xff, 0xff, 0xff, 0xff]).is_err(),
        "EOS"
    );
}

/// h2c (prior knowledge, through the AUTO codec) and HTTP/1.1 clients of one org count in the
/// same buckets: interleaved one by one, and concurrently with 30 multiplexed streams.
#[test]
fn http2_and_http1_clients_share_the_same_buckets() {
    let e = Envoy::start(OKTA_FREE);
    let port = e.port();
    let mut h = h2::Conn::open(port).unwrap();
    let mut c = e.client();
    // One by one, alternating, on logs (limit 20). The org is spelled differently each time:
    // it is lower-cased, its port and trailing dot dropped, on either protocol.
    let spellings = [
        "localhost",
        "LOCALHOST:10000",
        "localhost.",
        "Localhost:443",
    ];
    let mut resets = BTreeSet::new();
    for i in 0..26u64 {
        let authority = spellings[i as usize % 4];
        let path = format!("/api/v1/logs/{i}");
        let (what, r) = if i % 2 == 0 {
            let r = h.send_all(&[h2::get(Some(authority.as_bytes()), path.as_bytes(), &[])]);
            let what = format!("h2 #{} ({authority})", i + 1);
            (what, r.into_iter().next().unwrap().expect("h2 response"))
        } else {
            let what = format!("h1 #{} ({authority})", i + 1);
            (what, c.request("GET", &path, &[("host", authority)]))
        };
        match i {
            0..=19 => assert_counted(&r, 20, 19 - i, &what),
            _ => assert_okta_429(&r, 20, &what),
        }
        resets.insert(r.header("x-rate-limit-reset").unwrap().to_string());
    }
    assert_eq!(resets.len(), 1, "one window, one reset time: {resets:?}");

    // apps (limit 20): five one by one (h1, h2, h1, h2, h1), then, all starting together, 30
    // streams on one h2 connection (3 batches of 10 multiplexed streams) and two HTTP/1.1
    // keep-alive connections sending 15 each.
    for i in 0..5u64 {
        let path = format!("/api/v1/apps/seq{i}/users");
        let r = match i % 2 {
            0 => c.request("GET", &path, &[]),
            _ => h
                .send_all(&[h2::get(Some(b"localhost"), path.as_bytes(), &[])])
                .remove(0)
                .expect("h2 response"),
        };
        assert_counted(&r, 20, 19 - i, &format!("apps #{}", i + 1));
    }
    let start = std::sync::Barrier::new(3);
    let answers: Vec<(String, Response)> = std::thread::scope(|s| {
        let h2_batches = s.spawn(|| {
            let mut h = h2::Conn::open(port).unwrap();
            start.wait();
            let mut all = Vec::new();
            for b in 0..3 {
                let batch: Vec<h2::Request> = (0..10)
                    .map(|i| format!("/api/v1/apps/{b}-{i}/users"))
                    .map(|path| h2::get(Some(b"localhost"), path.as_bytes(), &[]))
                    .collect();
                for (i, r) in h.send_all(&batch).into_iter().enumerate() {
                    all.push((format!("h2 batch {b} stream {i}"), r.expect("h2 response")));
                }
            }
            all
        });
        let h1: Vec<_> = (0..2)
            .map(|t| {
                let start = &start;
                s.spawn(move || {
                    let mut c = Client::connect(port);
                    start.wait();
                    (0..15)
                        .map(|i| {
                            let r =
                                c.request("GET", &format!("/api/v1/apps/h1-{t}-{i}/users"), &[]);
                            (format!("h1 {t}/{i}"), r)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all = h2_batches.join().unwrap();
        for t in h1 {
            all.extend(t.join().unwrap());
        }
        all
    });
    assert_eq!(answers.len(), 60);
    let mut remaining = Vec::new();
    for (what, r) in &answers {
        match r.status {
            200 => {
                assert!(r.reached_upstream(), "{what}: {r:?}");
                assert_eq!(r.header_u64("x-rate-limit-limit"), Some(20), "{what}");
                remaining.push(r.header_u64("x-rate-limit-remaining").unwrap());
            }
            _ => assert_okta_429(r, 20, what),
        }
    }
    remaining.sort_unstable();
    assert_eq!(
        remaining,
        (0..15).collect::<Vec<u64>>(),
        "Remaining of the last 15 admitted, over both protocols"
    );
    let h2_admitted = answers
        .iter()
        .filter(|(what, r)| what.starts_with("h2") && r.status == 200)
        .count();
    eprintln!("concurrent: {h2_admitted} of the 15 admitted were h2 streams");

    assert_eq!(e.counter("okta.management.logs.admitted"), 20);
    assert_eq!(e.counter("okta.management.logs.rejected"), 6);
    assert_eq!(e.counter("okta.management.apps.admitted"), 20);
    assert_eq!(e.counter("okta.management.apps.rejected"), 45);
    // It really was HTTP/2: 13 + 2 + 30 streams on 2 connections; 13 + 3 + 30 HTTP/1.1 requests.
    assert_eq!(e.stat_value("http.ingress.downstream_rq_http2_total"), 45);
    assert_eq!(e.stat_value("http.ingress.downstream_cx_http2_total"), 2);
    assert_eq!(e.stat_value("http.ingress.downstream_rq_http1_total"), 46);
}
