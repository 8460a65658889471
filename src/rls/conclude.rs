//! Concluding a request that waited for the rate-limit service: the
//! service's answer (or its failure, under `on_failure`) merged with what the
//! buckets counted in this Envoy said, into the usual decision.

use crate::engine::{Count, Decision, Engine, Pending, Remote, Verdict};
use crate::limiter::Outcome;
use crate::rls::answer::Answer;
use crate::rls::config::OnFailure;
use crate::store::SharedStore;

impl Engine {
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
                        reset_us: second.saturating_add(s.reset_in_us),
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
                        tally.counts.push((r.bucket, Count::Admitted));
                        continue;
                    };
                    let outcome = Outcome {
                        admitted: !s.over_limit,
                        remaining: s.remaining,
                        reset_us: second.saturating_add(s.reset_in_us),
                    };
                    refused |= s.over_limit;
                    let refusal = self.record(
                        store, r.bucket, s.limit, outcome, r.key, now_us, seed, &mut tally,
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
                            if let Some(reply) =
                                self.count_locally(store, r.bucket, r.key, now_us, seed, &mut tally)
                            {
                                return tally.into_decision(Verdict::Reply(reply));
                            }
                        }
                    }
                    OnFailure::Allow => {}
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
            r.key,
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

    const NOW: u64 = 1_795_392_000 * MICROS_PER_SEC;

    struct Req(&'static str, &'static str);
    impl RequestFacts for Req {
        fn method(&self) -> Option<String> {
            Some(self.0.into())
        }
        fn path(&self) -> Option<String> {
            Some(self.1.into())
        }
        fn authority(&self) -> Option<String> {
            Some("acme.okta.com".into())
        }
        fn header(&self, name: &str) -> Option<String> {
            (name == "authorization").then(|| "Bearer t".to_string())
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
}
