//! Arbitrary plugin configurations: accepted (and then the policy compiles)
//! or refused with a named field; never a panic.
#![no_main]
use idp_ratelimit::config;
use idp_ratelimit::engine::Engine;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match config::parse(data) {
        Ok(c) => {
            assert!(Engine::new(c, "f/").is_ok(), "an accepted config must compile");
        }
        Err(e) => assert!(!e.field.is_empty() && !e.problem.is_empty()),
    }
});
