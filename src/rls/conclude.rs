//! Concluding a request that waited for the rate-limit service: the
//! service's answer (or its failure, under `on_failure`) merged with what the
//! buckets counted in this Envoy said, into the usual decision.

use crate::engine::{Count, Decision, Engine, Pending, Remote, VendorCheck, Verdict};
use crate::limiter::Outcome;
use crate::rls::answer::Answer;
use crate::rls::config::OnFailure;
use crate::store::SharedStore;

impl Engine {
    /// When the service's window for `bucket` ends, from the second its
    /// answer arrived and the whole seconds it reported left. The server
    /// read its clock before that second began or within it, so on
    /// envoyproxy/ratelimit, whose windows are calendar-aligned multiples of
    /// their unit, a sum within a second of a window end is that window end:
    /// an answer that crossed a second boundary on its way would otherwise
    /// report a Reset one second late (seen as a one-in-tens flake of
    /// `fleet_e2e`'s same-Reset-on-both-replicas check).
    fn window_end(&self, bucket: usize, second: u64, reset_in_us: u64) -> u64 {
        let end = second.saturating_add(reset_in_us);
        let unit = self
            .policy
            .buckets
            .get(bucket)
            .map_or(0, |b| b.limit.window_us);
        let aligned = self
            .fleet
            .as_ref()
            .is_some_and(|f| f.config.server == crate::rls::config::Server::EnvoyRatelimit);
        if !aligned || unit == 0 || unit % crate::limiter::MICROS_PER_SEC != 0 {
            return end;
        }
        let second = crate::limiter::MICROS_PER_SEC;
        match end % unit {
            r if r <= second => end - r,
            r if unit - r <= second => end.saturating_add(unit - r),
            _ => end,
        }
    }

    /// `answer` is the service's answer, `None` when it failed (error,
    /// timeout, missing cluster, breaker open): then `on_failure` decides.
    pub fn conclude(
        &self,
        store: &dyn SharedStore,
        pending: Pending,
        answer: Option<&Answer>,
        now_us: u64,
    ) -> Decision {
        let Pending {
            mut tally,
            remote,
            status,
            seed,
        } = pending;
        // Both servers count whole seconds (envoyproxy/ratelimit's time
        // source is Unix seconds; Limitador truncates what is left), and
        // `now_us` is when the answer arrived, after the server's clock
        // read: so the window ends `reset_in` after the current second.
        let second = now_us - now_us % crate::limiter::MICROS_PER_SEC;
        if let Some(query) = status {
            let reported = answer.and_then(|a| a.statuses.first().copied().flatten());
            return match (reported, remote.first()) {
                (Some(s), _) => self.status_reply(
                    &query,
                    s.limit,
                    Outcome {
                        admitted: s.remaining > 0,
                        remaining: s.remaining,
                        reset_us: self.window_end(query.bucket, second, s.reset_in_us),
                    },
                    now_us,
                ),
                (None, Some(r)) => self.status_locally(store, &r.key, &query, now_us),
                (None, None) => Decision::new(Verdict::Unlimited),
            };
        }
        let first = remote.first().cloned();
        let on_failure = self
            .fleet
            .as_ref()
            .map_or(OnFailure::Local, |f| f.config.on_failure);
        match answer {
            Some(a) => {
                let mut refused = false;
                for (i, r) in remote.into_iter().enumerate() {
                    let Some(s) = a.statuses.get(i).copied().flatten() else {
                        // Not limited by the service: the learned record alone.
                        if !self.vendor_alone(store, &r, now_us, seed, &mut tally) {
                            tally.counts.push((r.bucket, Count::Admitted));
                        }
                        continue;
                    };
                    // Both are upper bounds: admitted only if the service
                    // and the vendor's figure (shadow mode) both admit it.
                    let outcome = Outcome {
                        admitted: !s.over_limit && !r.vendor.would_refuse(),
                        remaining: s.remaining,
                        reset_us: self.window_end(r.bucket, second, s.reset_in_us),
                    };
                    refused |= s.over_limit;
                    let refusal = self.record(
                        store, r.bucket, s.limit, outcome, &r.key, now_us, seed, &mut tally,
                    );
                    if let Some(reply) = refusal {
                        return tally.into_decision(Verdict::Reply(reply));
                    }
                }
                if a.over_limit && !refused {
                    // Refused without saying by which bucket (Limitador
                    // without DRAFT-03 headers): the first one asked.
                    if let Some(reply) =
                        first.and_then(|r| self.deny(store, r, now_us, seed, &mut tally))
                    {
                        return tally.into_decision(Verdict::Reply(reply));
                    }
                }
                self.forward(tally, now_us)
            }
            None => {
                match on_failure {
                    OnFailure::Local => {
                        for r in remote {
                            // The learned record was asked before the call.
                            let vendor = Some(r.vendor);
                            if let Some(reply) = self.count_locally(
                                store, r.bucket, &r.key, vendor, now_us, seed, &mut tally,
                            ) {
                                return tally.into_decision(Verdict::Reply(reply));
                            }
                        }
                    }
                    OnFailure::Allow => {
                        for r in &remote {
                            self.vendor_alone(store, r, now_us, seed, &mut tally);
                        }
                    }
                    OnFailure::Deny => {
                        if let Some(reply) =
                            first.and_then(|r| self.deny(store, r, now_us, seed, &mut tally))
                        {
                            return tally.into_decision(Verdict::Reply(reply));
                        }
                    }
                }
                self.forward(tally, now_us)
            }
        }
    }

    /// A bucket the service did not count (it has no limit for it, or
    /// `on_failure` allow): in shadow mode, the would-be refusal of its
    /// learned record is still counted. True when there was one. (In
    /// enforce mode a learned refusal never reaches the service.)
    fn vendor_alone(
        &self,
        store: &dyn SharedStore,
        r: &Remote,
        now_us: u64,
        seed: u64,
        tally: &mut crate::engine::Tally,
    ) -> bool {
        let VendorCheck::WouldRefuse { limit, reset_us } = r.vendor else {
            return false;
        };
        let outcome = Outcome {
            admitted: false,
            remaining: 0,
            reset_us,
        };
        self.record(store, r.bucket, limit, outcome, &r.key, now_us, seed, tally);
        true
    }

    /// A refusal by `r`'s bucket with nothing known of its state: remaining
    /// 0, resetting one window from now.
    fn deny(
        &self,
        store: &dyn SharedStore,
        r: Remote,
        now_us: u64,
        seed: u64,
        tally: &mut crate::engine::Tally,
    ) -> Option<crate::response::LocalReply> {
        let limit = self.policy.buckets.get(r.bucket)?.limit;
        let outcome = Outcome {
            admitted: false,
            remaining: 0,
            reset_us: now_us.saturating_add(limit.window_us),
        };
        self.record(
            store,
            r.bucket,
            limit.limit,
            outcome,
            &r.key,
            now_us,
            seed,
            tally,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::RequestFacts;
    use crate::limiter::MICROS_PER_SEC;
    use crate::rls::answer::RemoteStatus;
    use crate::store::MemoryStore;
    use crate::vendor_answer::Answer as VendorAnswer;

    const NOW: u64 = 1_795_392_000 * MICROS_PER_SEC;

    use std::borrow::Cow;

    struct Req(&'static str, &'static str);
    impl RequestFacts for Req {
        fn method(&self) -> Option<Cow<'_, str>> {
            Some(self.0.into())
        }
        fn path(&self) -> Option<Cow<'_, str>> {
            Some(self.1.into())
        }
        fn authority(&self) -> Option<Cow<'_, str>> {
            Some("acme.okta.com".into())
        }
        fn header(&self, name: &str) -> Option<Cow<'_, str>> {
            (name == "authorization").then_some("Bearer t".into())
        }
        fn source_address(&self) -> Option<String> {
            None
        }
    }

    fn engine(json: &str) -> (Engine, MemoryStore) {
        let e = Engine::new(crate::config::parse(json.as_bytes()).unwrap(), "t/").unwrap();
        let s = MemoryStore::new();
        e.create_keys(&s).unwrap();
        (e, s)
    }

    /// An answer that crossed a second boundary reports the same window end.
    #[test]
    fn envoy_ratelimit_window_ends_are_calendar_aligned() {
        let users = |e: &Engine| {
            e.policy
                .buckets
                .iter()
                .position(|b| b.id == "okta.management.users")
                .unwrap()
        };
        let s = MICROS_PER_SEC;
        let (e, _) =
            engine(r#"{"vendor": "okta", "plan": "enterprise", "fleet": {"cluster": "rls"}}"#);
        let b = users(&e);
        // Computed at :59.999 (1 s left), arrived at :00.001.
        assert_eq!(e.window_end(b, NOW + 60 * s, s), NOW + 60 * s);
        assert_eq!(e.window_end(b, NOW + 59 * s, s), NOW + 60 * s);
        // Mid-window figures stand as reported.
        assert_eq!(e.window_end(b, NOW + 18 * s, 42 * s), NOW + 60 * s);
        assert_eq!(e.window_end(b, NOW, 10 * s), NOW + 10 * s);
        // Limitador's windows start at the first hit: never snapped.
        let (l, _) = engine(
            r#"{"vendor": "okta", "plan": "enterprise", "fleet": {"cluster": "rls", "server": "limitador"}}"#,
        );
        assert_eq!(l.window_end(users(&l), NOW + 60 * s, s), NOW + 61 * s);
    }

    fn ask(e: &Engine, s: &MemoryStore, r: &Req) -> Pending {
        match e.decide(s, r, NOW, 1).verdict {
            Verdict::Ask(p) => *p,
            v => panic!("expected Ask, got {v:?}"),
        }
    }

    fn header<'a>(d: &'a Decision, name: &str) -> Option<&'a str> {
        let h = match &d.verdict {
            Verdict::Forward { headers, .. } => headers,
            Verdict::Reply(r) => &r.headers,
            _ => return None,
        };
        h.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    fn ok(limit: u64, remaining: u64, reset_s: u64) -> Option<RemoteStatus> {
        Some(RemoteStatus {
            over_limit: false,
            limit,
            remaining,
            reset_in_us: reset_s * MICROS_PER_SEC,
        })
    }

    const OKTA: &str = r#"{"vendor": "okta", "plan": "enterprise", "fleet": {"cluster": "rls"}}"#;

    #[test]
    fn without_fleet_nothing_asks() {
        let (e, s) = engine(r#"{"vendor": "okta", "plan": "enterprise"}"#);
        assert!(matches!(
            e.decide(&s, &Req("GET", "/api/v1/users"), NOW, 1).verdict,
            Verdict::Forward { .. }
        ));
    }

    #[test]
    fn unmatched_and_exempt_paths_never_ask() {
        let (e, s) = engine(OKTA);
        for p in ["/", "/oauth2/v1/keys", "/api/v2/x"] {
            assert_eq!(
                e.decide(&s, &Req("GET", p), NOW, 1).verdict,
                Verdict::Unlimited,
                "{p}"
            );
        }
    }

    #[test]
    fn vendor_headers_come_from_the_service_status() {
        let (e, s) = engine(OKTA);
        let p = ask(&e, &s, &Req("GET", "/api/v1/users"));
        assert_eq!(p.remote.len(), 1);
        assert_eq!(p.remote[0].key, "acme.okta.com");
        let a = Answer {
            over_limit: false,
            statuses: vec![ok(600, 17, 42)],
        };
        let d = e.conclude(&s, p, Some(&a), NOW);
        assert_eq!(header(&d, "x-rate-limit-limit"), Some("600"));
        assert_eq!(header(&d, "x-rate-limit-remaining"), Some("17"));
        assert_eq!(header(&d, "x-rate-limit-reset"), Some("1795392042"));
        // The concurrency limit (kept local) and the service's bucket.
        assert_eq!(d.counts.len(), 2);
        assert!(d.counts.iter().all(|(_, c)| *c == Count::Admitted));
    }

    #[test]
    fn the_refusing_descriptor_makes_the_vendor_429() {
        let (e, s) = engine(OKTA);
        // PATCH a user: two buckets (management and end-user api-v1).
        let p = ask(&e, &s, &Req("PATCH", "/api/v1/users/00u1"));
        assert_eq!(p.remote.len(), 2);
        let a = Answer {
            over_limit: true,
            statuses: vec![
                ok(600, 3, 10),
                Some(RemoteStatus {
                    over_limit: true,
                    limit: 600,
                    remaining: 0,
                    reset_in_us: 10 * MICROS_PER_SEC,
                }),
            ],
        };
        let d = e.conclude(&s, p, Some(&a), NOW);
        let Verdict::Reply(r) = &d.verdict else {
            panic!()
        };
        assert_eq!(r.status, 429);
        assert_eq!(header(&d, "x-rate-limit-remaining"), Some("0"));
        assert_eq!(header(&d, "x-rate-limit-reset"), Some("1795392010"));
        assert!(r.body.contains("E0000047"));
        assert_eq!(d.counts.len(), 1);
        assert_eq!(d.counts[0].1, Count::Rejected);
    }

    #[test]
    fn on_failure_local_counts_here_allow_passes_deny_refuses() {
        let logs = Req("GET", "/api/v1/logs");
        let (e, s) =
            engine(r#"{"vendor": "okta", "plan": "integrator-free", "fleet": {"cluster": "rls"}}"#);
        // integrator-free logs: 20/min, counted here when the service fails.
        for i in 0..20 {
            let d = e.conclude(&s, ask(&e, &s, &logs), None, NOW + i);
            assert_eq!(
                header(&d, "x-rate-limit-remaining"),
                Some((19 - i).to_string().as_str())
            );
        }
        let d = e.conclude(&s, ask(&e, &s, &logs), None, NOW + 30);
        assert!(matches!(&d.verdict, Verdict::Reply(r) if r.status == 429));

        let (e, s) = engine(
            r#"{"vendor": "okta", "plan": "integrator-free", "fleet": {"cluster": "rls", "on_failure": "allow"}}"#,
        );
        for _ in 0..30 {
            let d = e.conclude(&s, ask(&e, &s, &logs), None, NOW);
            assert!(matches!(d.verdict, Verdict::Forward { .. }));
            assert_eq!(header(&d, "x-rate-limit-limit"), None);
        }

        let (e, s) = engine(
            r#"{"vendor": "okta", "plan": "integrator-free", "fleet": {"cluster": "rls", "on_failure": "deny"}}"#,
        );
        let d = e.conclude(&s, ask(&e, &s, &logs), None, NOW);
        assert!(matches!(&d.verdict, Verdict::Reply(r) if r.status == 429));
        assert_eq!(header(&d, "x-rate-limit-reset"), Some("1795392060"));
    }

    #[test]
    fn auth0_per_second_buckets_count_here_and_a_remote_refusal_gives_them_back() {
        let (e, s) = engine(r#"{"vendor": "auth0", "plan": "free", "fleet": {"cluster": "rls"}}"#);
        let users = Req("GET", "/api/v2/users");
        let p = ask(&e, &s, &users);
        assert!(
            !p.tally.holds.is_empty(),
            "the per-second shaper counted here"
        );
        let local = p.tally.counts.len();
        assert!(local >= 1);
        let a = Answer {
            over_limit: true,
            statuses: p
                .remote
                .iter()
                .map(|_| {
                    Some(RemoteStatus {
                        over_limit: true,
                        limit: 2,
                        remaining: 0,
                        reset_in_us: 1,
                    })
                })
                .collect(),
        };
        let d = e.conclude(&s, p, Some(&a), NOW);
        assert!(matches!(&d.verdict, Verdict::Reply(r) if r.status == 429));
        // Given back: the shaper's next peek is full again.
        let (b, fp) = {
            let b = e
                .policy
                .buckets
                .iter()
                .find(|b| {
                    !e.counts_remotely(e.policy.buckets.iter().position(|x| x.id == b.id).unwrap())
                        && b.limit.window_us == MICROS_PER_SEC
                        && b.id.contains("tenant")
                })
                .unwrap();
            (b, b.scope.owner_fingerprint("acme.okta.com"))
        };
        let peek = e.table.peek(&s, fp, b.fingerprint, &b.limit, NOW).unwrap();
        assert_eq!(peek.remaining, b.limit.limit);
    }

    #[test]
    fn onelogin_status_endpoint_peeks_with_zero_hits() {
        let (e, s) = engine(r#"{"vendor": "onelogin", "fleet": {"cluster": "rls"}}"#);
        let p = ask(&e, &s, &Req("GET", "/auth/rate_limit"));
        assert_eq!(p.remote[0].hits, 0);
        let a = Answer {
            over_limit: false,
            statuses: vec![ok(5000, 4990, 1800)],
        };
        let d = e.conclude(&s, p.clone(), Some(&a), NOW);
        let Verdict::Reply(r) = &d.verdict else {
            panic!()
        };
        assert_eq!(r.status, 200);
        assert!(r.body.contains("4990"), "{}", r.body);
        assert_eq!(header(&d, "x-ratelimit-reset"), Some("1800"));
        // Service down: the local peek answers (a full bucket).
        let d = e.conclude(&s, p, None, NOW);
        assert!(matches!(&d.verdict, Verdict::Reply(r) if r.body.contains("5000")));
        // Limitador cannot peek: answered here, no call.
        let (e, s) =
            engine(r#"{"vendor": "onelogin", "fleet": {"cluster": "rls", "server": "limitador"}}"#);
        let d = e.decide(&s, &Req("GET", "/auth/rate_limit"), NOW, 1);
        assert!(matches!(&d.verdict, Verdict::Reply(r) if r.status == 200));
    }

    // Fleet mode with `"upstream": "vendor"`: the learned record checked before the call.

    const OKTA_VENDOR: &str = r#"{"vendor": "okta", "plan": "enterprise", "upstream": "vendor",
        "fleet": {"cluster": "rls"}}"#;

    fn vendor(limit: u64, remaining: u64, secs_left: u64, refused: bool) -> VendorAnswer {
        VendorAnswer {
            limit,
            remaining,
            secs_left,
            date_secs: NOW / MICROS_PER_SEC,
            refused,
        }
    }

    fn service_ok() -> Answer {
        Answer {
            over_limit: false,
            statuses: vec![ok(600, 500, 30)],
        }
    }

    /// Asks, concludes with `service`; if forwarded, the vendor answers `answer` (if any)
    /// and the stream ends. The decision as concluded (or as decided, if not asked).
    fn round_trip(
        e: &Engine,
        s: &MemoryStore,
        service: Option<&Answer>,
        answer: Option<VendorAnswer>,
    ) -> Decision {
        let d = e.decide(s, &Req("GET", "/api/v1/users"), NOW, 1);
        let Verdict::Ask(p) = d.verdict else {
            return d;
        };
        let d = e.conclude(s, *p, service, NOW);
        if let Verdict::Forward {
            teach, in_flight, ..
        } = &d.verdict
        {
            if let Some(a) = answer {
                e.learn(s, teach, &a, NOW).unwrap();
            }
            e.release(s, in_flight, NOW, &mut Vec::new());
        }
        d
    }

    fn users(e: &Engine) -> usize {
        e.policy
            .buckets
            .iter()
            .position(|b| b.id == "okta.management.users")
            .unwrap()
    }

    #[test]
    fn a_remote_bucket_learns_and_a_learned_refusal_never_asks() {
        let (e, s) = engine(OKTA_VENDOR);
        // No record yet: asked, and the answer teaches the service's bucket.
        let p = ask(&e, &s, &Req("GET", "/api/v1/users"));
        assert_eq!(p.remote[0].vendor, VendorCheck::Open);
        let d = e.conclude(&s, p, Some(&service_ok()), NOW);
        let Verdict::Forward { teach, .. } = &d.verdict else {
            panic!("{d:?}")
        };
        assert_eq!(teach.len(), 1);
        assert_eq!((teach[0].bucket, teach[0].took), (users(&e), true));
        assert!(teach[0].reported);
        let lesson = e.learn(&s, teach, &vendor(600, 1, 50, false), NOW);
        assert_eq!(lesson.unwrap().unwrap().bucket, users(&e));
        // One left by the vendor's count: asked once more, then refused here.
        let p = ask(&e, &s, &Req("GET", "/api/v1/users"));
        assert_eq!(p.remote[0].vendor, VendorCheck::Admitted { limit: 600 });
        let d = e.conclude(&s, p, Some(&service_ok()), NOW);
        let Verdict::Forward { teach, .. } = &d.verdict else {
            panic!("{d:?}")
        };
        e.learn(&s, teach, &vendor(600, 0, 50, false), NOW).unwrap();
        let d = e.decide(&s, &Req("GET", "/api/v1/users"), NOW, 1);
        let Verdict::Reply(r) = &d.verdict else {
            panic!("expected the vendor's 429 without a call: {d:?}")
        };
        assert_eq!(r.status, 429);
        assert!(r.body.contains("E0000047"));
        assert_eq!(header(&d, "x-rate-limit-limit"), Some("600"));
        assert_eq!(header(&d, "x-rate-limit-reset"), Some("1795392050"));
        assert_eq!(d.counts, vec![(users(&e), Count::Rejected)]);
    }

    #[test]
    fn a_vendor_429_refuses_before_the_service_until_its_reset() {
        let (e, s) = engine(OKTA_VENDOR);
        round_trip(&e, &s, Some(&service_ok()), Some(vendor(600, 0, 5, true)));
        let at = |t: u64| e.decide(&s, &Req("GET", "/api/v1/users"), NOW + t, 1);
        assert!(matches!(&at(4 * MICROS_PER_SEC).verdict, Verdict::Reply(r) if r.status == 429));
        assert!(matches!(at(5 * MICROS_PER_SEC).verdict, Verdict::Ask(_)));
    }

    #[test]
    fn a_service_refusal_gives_back_what_the_learned_record_took() {
        let (e, s) = engine(OKTA_VENDOR);
        round_trip(&e, &s, Some(&service_ok()), Some(vendor(600, 3, 50, false)));
        let refused = Answer {
            over_limit: true,
            statuses: vec![Some(RemoteStatus {
                over_limit: true,
                limit: 600,
                remaining: 0,
                reset_in_us: 30 * MICROS_PER_SEC,
            })],
        };
        for _ in 0..5 {
            let d = round_trip(&e, &s, Some(&refused), None);
            assert!(matches!(&d.verdict, Verdict::Reply(r) if r.status == 429));
        }
        // The record still has its 3 (kept in flight: no answers come back).
        for i in 0..3 {
            let d = e.conclude(
                &s,
                ask(&e, &s, &Req("GET", "/api/v1/users")),
                Some(&service_ok()),
                NOW,
            );
            assert!(matches!(d.verdict, Verdict::Forward { .. }), "{i}");
        }
        let d = e.decide(&s, &Req("GET", "/api/v1/users"), NOW, 1);
        assert!(matches!(&d.verdict, Verdict::Reply(r) if r.status == 429));
    }

    #[test]
    fn a_failed_service_falls_back_with_the_learned_record_taken_once() {
        let (e, s) = engine(
            r#"{"vendor": "okta", "plan": "enterprise", "upstream": "vendor",
                "fleet": {"cluster": "rls", "on_failure": "local"}}"#,
        );
        // The vendor reports 1,200 (the table says 600), 3 left.
        round_trip(
            &e,
            &s,
            Some(&service_ok()),
            Some(vendor(1200, 3, 50, false)),
        );
        for i in 0..3 {
            let d = e.conclude(&s, ask(&e, &s, &Req("GET", "/api/v1/users")), None, NOW);
            // Counted here against the vendor's limit, the record taken once per request.
            assert_eq!(header(&d, "x-rate-limit-limit"), Some("1200"), "{i}");
            let Verdict::Forward { teach, .. } = &d.verdict else {
                panic!("{d:?}")
            };
            assert!(teach.iter().any(|t| t.bucket == users(&e) && t.took));
        }
        let d = e.decide(&s, &Req("GET", "/api/v1/users"), NOW, 1);
        assert!(matches!(&d.verdict, Verdict::Reply(r) if r.status == 429));
        // on_failure allow: the learned refusal stands all the same.
        let (e, s) = engine(
            r#"{"vendor": "okta", "plan": "enterprise", "upstream": "vendor",
                "fleet": {"cluster": "rls", "on_failure": "allow"}}"#,
        );
        round_trip(&e, &s, None, Some(vendor(600, 0, 50, true)));
        let d = e.decide(&s, &Req("GET", "/api/v1/users"), NOW, 1);
        assert!(matches!(&d.verdict, Verdict::Reply(r) if r.status == 429));
    }

    #[test]
    fn shadow_mode_counts_a_learned_refusal_and_still_asks() {
        let (e, s) = engine(
            r#"{"vendor": "okta", "plan": "enterprise", "upstream": "vendor", "mode": "shadow",
                "fleet": {"cluster": "rls", "on_failure": "allow"}}"#,
        );
        round_trip(&e, &s, Some(&service_ok()), Some(vendor(600, 0, 50, true)));
        let p = ask(&e, &s, &Req("GET", "/api/v1/users"));
        assert!(p.remote[0].vendor.would_refuse());
        // The service admits it, the vendor's figure would not; the service fails.
        for service in [Some(&service_ok()), None] {
            let d = e.conclude(&s, p.clone(), service, NOW);
            assert!(matches!(d.verdict, Verdict::Forward { .. }), "{service:?}");
            assert!(
                d.counts.contains(&(users(&e), Count::ShadowRejected)),
                "{service:?}: {:?}",
                d.counts
            );
            assert_eq!(d.summary.unwrap().refused, Some(users(&e)));
        }
    }

    #[test]
    fn an_abandoned_request_gives_back_its_in_flight_places() {
        let (e, s) = engine(
            r#"{"vendor": "okta", "plan": "enterprise", "upstream": "vendor",
                "overrides": [{"bucket": "okta.concurrency", "limit": 1}],
                "fleet": {"cluster": "rls"}}"#,
        );
        round_trip(&e, &s, Some(&service_ok()), Some(vendor(600, 1, 50, false)));
        // The client goes away while the service is asked.
        let p = ask(&e, &s, &Req("GET", "/api/v1/users"));
        assert_eq!(p.remote[0].vendor, VendorCheck::Admitted { limit: 600 });
        let mut errors = Vec::new();
        e.abandon(&s, &p, NOW, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        // Its place in flight and its take of the vendor's last request are free again.
        let p = ask(&e, &s, &Req("GET", "/api/v1/users"));
        assert_eq!(p.remote[0].vendor, VendorCheck::Admitted { limit: 600 });
    }

    #[test]
    fn auth0_answers_teach_the_remote_bucket_whose_limit_they_report() {
        let (e, s) = engine(
            r#"{"vendor": "auth0", "plan": "enterprise-prod", "upstream": "vendor",
                "fleet": {"cluster": "rls"}}"#,
        );
        let p = ask(&e, &s, &Req("GET", "/api/v2/users"));
        let taught: Vec<usize> = p.tally.teach.iter().map(|t| t.bucket).collect();
        // The per-second shapers counted here and the per-minute buckets the service counts.
        assert!(taught.iter().any(|b| !e.counts_remotely(*b)), "{taught:?}");
        assert!(p.remote.iter().all(|r| taught.contains(&r.bucket)));
        let limit = |b: usize| e.published_limits[b];
        let remote = p
            .remote
            .iter()
            .map(|r| r.bucket)
            .find(|b| taught.iter().filter(|t| limit(**t) == limit(*b)).count() == 1)
            .unwrap();
        let service = Answer {
            over_limit: false,
            statuses: p.remote.iter().map(|_| ok(1000, 900, 30)).collect(),
        };
        let d = e.conclude(&s, p, Some(&service), NOW);
        let Verdict::Forward { teach, .. } = &d.verdict else {
            panic!("{d:?}")
        };
        let lesson = e
            .learn(&s, teach, &vendor(limit(remote), 0, 30, true), NOW)
            .unwrap()
            .unwrap();
        assert_eq!(lesson.bucket, remote);
        // That bucket's vendor 429 now refuses here, before the service is asked.
        let d = e.decide(&s, &Req("GET", "/api/v2/users"), NOW + 1, 1);
        assert!(
            matches!(&d.verdict, Verdict::Reply(r) if r.status == 429),
            "{d:?}"
        );
        assert!(
            d.counts.contains(&(remote, Count::Rejected)),
            "{:?}",
            d.counts
        );
    }
}
