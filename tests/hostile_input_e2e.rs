//! End-to-end hardening against hostile input: huge headers and paths, non-UTF-8 bytes,
//! missing authorities, many distinct paths in parallel, pipelining, clients vanishing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub mod common;
use common::*;

use std::io::{BufReader, Read, Write};
use std::time::{Duration, Instant};

/// Huge headers and paths, non-UTF-8 bytes, missing authorities, 10,000 distinct paths in
/// parallel, pipelining, and clients vanishing mid-request: Envoy stays up, the VM never
/// fails, and every count stays exact.
#[test]
fn hostile_input_keeps_envoy_up_and_counts_exact() {
    let started = Instant::now();
    // A second filter instance counting per `x-tenant`: the one way a non-UTF-8 value reaches a
    // header the filter reads (Envoy refuses such bytes in Host and, over HTTP/1.1, in the path).
    let tenant_config =
        r#"{"vendor": "okta", "plan": "integrator-free", "scope": {"header": "x-tenant"}}"#;
    let tenant = wasm_listener(
        "tenant",
        "idp_ratelimit_tenant",
        "idp_ratelimit",
        tenant_config,
    );
    let e = start_with_listeners(OKTA_FREE, vec![tenant]);
    let (port, tenant_port) = (e.port(), listener_port(&e, "tenant"));
    let mut c = e.client();
    assert_counted(
        &c.request("GET", "/api/v1/meta/types", &[]),
        100,
        99,
        "warm-up (api-v1)",
    );
    let vms = wasm_stats(&e);
    assert!(
        vms.iter()
            .any(|(k, v)| k.starts_with("wasm.envoy.wasm.runtime.")
                && k.ends_with(".active")
                && *v > 0),
        "no active wasm VM in {vms:?}"
    );

    // (a) Huge headers. users (limit 100), localhost.
    let big = "h".repeat(60 * 1024);
    let r = c.request("GET", "/api/v1/users", &[("x-big", &big)]);
    assert_counted(&r, 100, 99, "a 60 KiB header");
    let third = "h".repeat(30 * 1024);
    let three = [("x-a", third.as_str()), ("x-b", &third), ("x-c", &third)];
    assert_counted(
        &c.request("GET", "/api/v1/users", &three),
        100,
        98,
        "three 30 KiB headers (90 KiB)",
    );
    let over = format!(
        "GET /api/v1/users HTTP/1.1\r\nHost: localhost\r\nx-big: {}\r\nConnection: close\r\n\r\n",
        "h".repeat(100 * 1024)
    );
    assert_envoy_reply(&raw(port, over.as_bytes()), 431, "a 100 KiB header");
    let many: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
    let many =
        format!("GET /api/v1/users HTTP/1.1\r\nHost: localhost\r\n{many}Connection: close\r\n\r\n");
    assert_envoy_reply(
        &raw(port, many.as_bytes()),
        431,
        "150 headers (Envoy's max 100)",
    );
    assert_counted(
        &c.request("GET", "/api/v1/users", &[]),
        100,
        97,
        "after Envoy's 431s (never counted)",
    );

    // (b) 64 KiB paths, and paths whose normalisation does 30,000 steps.
    let id = "g".repeat(64 * 1024);
    let group = format!("/api/v1/groups/{id}");
    assert_counted(
        &c.request("GET", &group, &[]),
        100,
        99,
        "a 64 KiB group id (group-by-id)",
    );
    let dots = format!("/api/v1/{}logs", "./".repeat(30_000));
    assert_counted(&c.request("GET", &dots, &[]), 20, 19, "30,000 `./` (logs)");
    let deep = format!("/api/v1/apps/{}", "a/".repeat(30_000));
    assert_counted(
        &c.request("GET", &deep, &[]),
        20,
        19,
        "30,000 segments under /api/v1/apps (apps)",
    );
    let up = format!("/{}api/v1/events", "../".repeat(20_000));
    assert_counted(
        &c.request("GET", &up, &[]),
        20,
        19,
        "20,000 `../` above the root (events)",
    );
    // Over HTTP/2, a header block split over CONTINUATION frames: a 60 KiB path is counted.
    // The 64 KiB one is, on Envoy 1.40, a connection error before any filter (GOAWAY
    // COMPRESSION_ERROR: its HPACK decoder takes at most 64 KiB per field), so not counted;
    // Envoy 1.36 answers it, counted like any other.
    let mut h = h2::Conn::open(port).unwrap();
    let group60 = format!("/api/v1/groups/{}", "g".repeat(60 * 1024));
    let r = h.send_all(&[h2::get(Some(b"localhost"), group60.as_bytes(), &[])]);
    let r = r[0].as_ref().expect("h2 60 KiB path");
    assert_counted(r, 100, 98, "h2: a 60 KiB group id (group-by-id, same org)");
    let mut h_big = h2::Conn::open(port).unwrap();
    let r = h_big.send_all(&[h2::get(Some(b"localhost"), group.as_bytes(), &[])]);
    let groups_left = match &r[0] {
        Err(e) if e == "GOAWAY error code 9" => 97,
        Ok(r) => {
            assert_counted(r, 100, 97, "h2: the 64 KiB path, answered");
            96
        }
        Err(e) => panic!("h2: the 64 KiB path: {e}"),
    };
    let r = h.send_all(&[h2::get(Some(b"localhost"), group60.as_bytes(), &[])]);
    let r = r[0].as_ref().expect("h2 60 KiB path again");
    assert_counted(r, 100, groups_left, "h2: the 60 KiB group id again");

    // (c) Non-UTF-8 bytes. HTTP/1.1: Envoy answers 400 itself to such bytes in the path or in
    // Host (and to a NUL anywhere), before the filter: never counted.
    let refused: [(&str, &[u8]); 4] = [
        (
            "path",
            b"GET /api/v1/logs/\xff\xfe HTTP/1.1\r\nHost: localhost\r\n",
        ),
        (
            "path, overlong UTF-8",
            b"GET /api/v1/logs/\xc0\xaf HTTP/1.1\r\nHost: localhost\r\n",
        ),
        (
            "Host",
            b"GET /api/v1/logs HTTP/1.1\r\nHost: ex\xffample\r\n",
        ),
        (
            "NUL in a header",
            b"GET /api/v1/logs HTTP/1.1\r\nHost: localhost\r\nx-a: a\x00b\r\n",
        ),
    ];
    for (what, head) in refused {
        let req = [head, b"Connection: close\r\n\r\n"].concat();
        assert_envoy_reply(&raw(port, &req), 400, &format!("non-UTF-8 {what}"));
    }
    // In any other header they pass (obs-text), and the request is counted as usual.
    let junk = b"GET /api/v1/logs HTTP/1.1\r\nHost: localhost\r\nx-junk: \xff\xfe\x80\xc3\x28\r\n\
                 Connection: close\r\n\r\n";
    assert_counted(&raw(port, junk), 20, 18, "a non-UTF-8 header (logs)");
    // HTTP/2 passes non-UTF-8 path bytes to the filter, which reads them lossily.
    let r = h.send_all(&[h2::get(
        Some(b"localhost"),
        b"/api/v1/logs/\xff\xfe\x80",
        &[],
    )]);
    let r = r[0].as_ref().expect("h2 non-UTF-8 path");
    assert_counted(r, 20, 17, "h2: a non-UTF-8 path (logs)");
    // A non-UTF-8 value of the header the tenant instance keys on: one bucket per value.
    let by_tenant = |value: &[u8]| {
        let head = b"GET /api/v1/sessions/me HTTP/1.1\r\nHost: localhost\r\nx-tenant: ";
        raw(
            tenant_port,
            &[head, value, b"\r\nConnection: close\r\n\r\n"].concat(),
        )
    };
    assert_counted(
        &by_tenant(b"acme\xff\xfe"),
        100,
        99,
        "tenant acme\\xff\\xfe",
    );
    assert_counted(
        &by_tenant(b"acme\xff\xfe"),
        100,
        98,
        "tenant acme\\xff\\xfe again",
    );
    assert_counted(&by_tenant(b"acme"), 100, 99, "tenant acme: its own bucket");
    assert_eq!(e.counter("okta.end-user.sessions.admitted"), 3);

    // (d) No authority. HTTP/1.1 without Host: 400; HTTP/1.0: 426 (Envoy's accept_http_10 is
    // off). Never counted.
    let no_host = b"GET /api/v1/users HTTP/1.1\r\nConnection: close\r\n\r\n";
    assert_envoy_reply(&raw(port, no_host), 400, "HTTP/1.1 without Host");
    let http10 = b"GET /api/v1/users HTTP/1.0\r\n\r\n";
    assert_envoy_reply(&raw(port, http10), 426, "HTTP/1.0 without Host");
    // HTTP/2 without :authority (or host): Envoy 1.40 closes the whole connection, unanswered.
    let mut h_bare = h2::Conn::open(port).unwrap();
    let r = h_bare.send_all(&[h2::get(None, b"/api/v1/users", &[])]);
    assert!(
        matches!(&r[0], Err(e) if e == "connection closed" || e.starts_with("read: ")),
        "h2 without :authority: {:?}",
        r[0]
    );
    // An empty Host is accepted by Envoy: the empty authority is one more org, counted.
    let empty = b"GET /api/v1/users HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n";
    assert_counted(&raw(port, empty), 100, 99, "empty Host");
    assert_counted(&raw(port, empty), 100, 98, "empty Host again: the same key");
    // Absolute form: the authority is the request line's (lower-cased, port stripped).
    let absolute = b"GET http://Other.Example:8080/api/v1/users HTTP/1.1\r\nHost: localhost\r\n\
                     Connection: close\r\n\r\n";
    assert_counted(&raw(port, absolute), 100, 99, "absolute-form other.example");

    // (e) 10,000 distinct paths in one bucket (devices, limit 100), four keep-alive
    // connections in parallel: exactly 100 admitted, each Remaining value exactly once.
    const PATHS: usize = 10_000;
    const THREADS: usize = 4;
    let flood: Vec<(Vec<u64>, usize)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                s.spawn(move || {
                    let mut c = Client::connect(port);
                    let (mut admitted, mut rejected) = (Vec::new(), 0);
                    for i in (t..PATHS).step_by(THREADS) {
                        let what = format!("/api/v1/devices/{i}");
                        let r = c.request("GET", &what, &[]);
                        match r.status {
                            200 => {
                                assert!(r.reached_upstream(), "{what}: {r:?}");
                                assert_eq!(r.header_u64("x-rate-limit-limit"), Some(100), "{what}");
                                admitted.push(r.header_u64("x-rate-limit-remaining").unwrap());
                            }
                            _ => {
                                assert_okta_429(&r, 100, &what);
                                rejected += 1;
                            }
                        }
                    }
                    (admitted, rejected)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let mut remaining: Vec<u64> = flood.iter().flat_map(|(a, _)| a.clone()).collect();
    remaining.sort_unstable();
    assert_eq!(
        remaining,
        (0..100).collect::<Vec<u64>>(),
        "Remaining of the admitted requests"
    );
    assert_eq!(flood.iter().map(|(_, r)| r).sum::<usize>(), PATHS - 100);
    assert_eq!(e.counter("okta.management.devices.admitted"), 100);
    assert_eq!(e.counter("okta.management.devices.rejected"), 9_900);
    // 120 pipelined requests in one write (certificate-authorities, limit 100). Envoy 1.40 does
    // not serve a pipeline: it answers the first one or two, then closes the connection (seen:
    // 2 answers, one more request started and destroyed). Whatever it answered is counted
    // down in order, and the bucket's count agrees with the next Remaining.
    let mut s = connect(port);
    let one = "GET /api/v1/certificateAuthorities HTTP/1.1\r\nHost: localhost\r\n\r\n";
    s.write_all(one.repeat(120).as_bytes()).unwrap();
    let mut bytes = Vec::new();
    let _ = s.read_to_end(&mut bytes); // until Envoy closes (or resets)
    let mut rest = bytes.as_slice();
    let mut answered = 0;
    while !rest.is_empty() {
        let (r, _) = read_response(&mut rest, false).expect("pipelined response");
        assert_counted(
            &r,
            100,
            99 - answered,
            &format!("pipelined #{}", answered + 1),
        );
        answered += 1;
    }
    let pipelined = e.counter("okta.management.certificate-authorities.admitted");
    assert!(
        (answered..=120).contains(&pipelined) && pipelined < 100,
        "{pipelined} counted, {answered} answered"
    );
    assert_counted(
        &c.request("GET", "/api/v1/certificateAuthorities", &[]),
        100,
        99 - pipelined,
        "after the pipeline",
    );
    eprintln!("pipeline of 120: {answered} answered, {pipelined} counted");

    // (f) Clients that vanish mid-request. groups (limit 100).
    // Half a request head, then FIN or RST: never counted.
    for i in 0..50 {
        let mut s = connect(port);
        s.write_all(b"GET /api/v1/groups HTTP/1.1\r\nHost: loc")
            .unwrap();
        match i % 2 {
            0 => drop(s),
            _ => reset_connection(s),
        }
    }
    // A whole head with Content-Length 1000 and 5 bytes of body: the filter decides on the head
    // and the route answers at once; the client leaves (FIN or RST) without sending the rest.
    // Each is counted exactly once.
    let partial =
        b"POST /api/v1/groups HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\nshort";
    for i in 0..40u64 {
        let mut s = connect(port);
        s.write_all(partial).unwrap();
        let mut reader = BufReader::new(s.try_clone().unwrap());
        let (r, _) = read_response(&mut reader, false).expect("answer to a partial body");
        assert_counted(&r, 100, 99 - i, &format!("partial body #{}", i + 1));
        match i % 2 {
            0 => drop(s),
            _ => reset_connection(s),
        }
    }
    // The same, reset at once without reading: counted if Envoy read the head first. Whatever
    // happened, the count and the next Remaining must agree.
    for _ in 0..40 {
        let mut s = connect(port);
        s.write_all(partial).unwrap();
        reset_connection(s);
    }
    drop((c, h, h_big, h_bare));
    assert!(
        wait_for_stat(
            &e,
            "http.ingress.downstream_cx_active",
            0,
            Duration::from_secs(10)
        ),
        "connections still open: {:?}",
        e.stat("http.ingress.downstream_cx_active")
    );
    let admitted = e.counter("okta.management.groups.admitted");
    assert!((40..=80).contains(&admitted), "groups admitted {admitted}");
    eprintln!(
        "{} of the 40 requests reset at once were counted",
        admitted - 40
    );
    let mut c = e.client();
    assert_counted(
        &c.request("GET", "/api/v1/groups", &[]),
        100,
        100 - admitted - 1,
        "after the resets",
    );

    // After all of it: still up, same VMs, nothing failed, and the counts are exact.
    let r = c.request("GET", "/api/v1/users", &[]);
    assert_counted(&r, 100, 96, "final users request");
    assert_okta_429(
        &c.request("GET", "/api/v1/devices/final", &[]),
        100,
        "final devices request",
    );
    assert_eq!(e.counter("okta.management.devices.admitted"), 100);
    assert_eq!(e.counter("okta.management.devices.rejected"), 9_901);
    assert_eq!(e.counter("okta.management.users.admitted"), 7);
    assert_eq!(e.counter("store_errors"), 0);
    assert_eq!(
        e.stat_value("http.ingress.downstream_rq_5xx"),
        0,
        "a 5xx (a dead VM answers 503)"
    );
    assert_vm_healthy(&e, &vms, "after the hostile input");
    eprintln!(
        "hostile input: {:.1?}, wasm stats {vms:?}",
        started.elapsed()
    );
}
