//! Whole decisions on arbitrary requests (method, path, authority, headers,
//! source address, time), against an in-memory store with Envoy's CAS
//! semantics: never a panic.
#![no_main]
use std::sync::OnceLock;

use idp_ratelimit::config;
use idp_ratelimit::engine::{Engine, RequestFacts};
use idp_ratelimit::store::MemoryStore;
use libfuzzer_sys::fuzz_target;

struct Facts(Vec<String>);

impl Facts {
    fn field(&self, i: usize) -> Option<String> {
        self.0.get(i).filter(|s| !s.is_empty()).cloned()
    }
}

impl RequestFacts for Facts {
    fn method(&self) -> Option<String> {
        self.field(0)
    }
    fn path(&self) -> Option<String> {
        self.field(1)
    }
    fn authority(&self) -> Option<String> {
        self.field(2)
    }
    fn header(&self, name: &str) -> Option<String> {
        match name {
            "authorization" => self.field(3),
            _ => self.field(4),
        }
    }
    fn source_address(&self) -> Option<String> {
        self.field(5)
    }
}

fn engines() -> &'static [(Engine, MemoryStore)] {
    static E: OnceLock<Vec<(Engine, MemoryStore)>> = OnceLock::new();
    E.get_or_init(|| {
        [
            r#"{"vendor": "okta", "plan": "integrator-free", "max_keys": 64}"#,
            r#"{"vendor": "auth0", "plan": "free", "scope": "client_ip", "max_keys": 64}"#,
            r#"{"vendor": "onelogin", "scope": {"header": "x-team"}, "headers": "both"}"#,
            r#"{"vendor": "custom", "routes": [{"route": "/*", "limit": 3, "window": 1}], "mode": "shadow"}"#,
        ]
        .iter()
        .map(|j| {
            let e = Engine::new(config::parse(j.as_bytes()).unwrap(), "f/").unwrap();
            let s = MemoryStore::new();
            e.create_keys(&s).unwrap();
            (e, s)
        })
        .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    let fields: Vec<String> = text.split('\n').map(str::to_string).collect();
    let now = fields
        .get(6)
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(1_700_000_000_000_000);
    let (engine, store) = &engines()[usize::from(pick) % 4];
    let before = store.key_count();
    let d = engine.decide(store, &Facts(fields), now, u64::from(pick));
    let mut errors = Vec::new();
    if let idp_ratelimit::engine::Verdict::Forward { holds, .. } = &d.verdict {
        engine.release(store, holds, now, &mut errors);
    }
    assert_eq!(store.key_count(), before, "no key is created after configure");
});
