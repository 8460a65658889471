//! Points inside a decision that the profile build (`--features profile`)
//! times. The engine says where it is with [`reached`]; the glue installs the
//! function that reads the host's clock ([`set_hook`]), so the pure logic makes
//! no proxy-wasm call. Without the feature `reached` is empty and inlined away.

/// A point in `on_http_request_headers`, in the order a counted request
/// passes them. The time from one to the next is a profile segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The route is resolved (method and path read, path normalised).
    Routed,
    /// Every bucket of the route is counted (the shared-data transactions).
    Counted,
    /// The decision is made (response headers built); the glue applies it next.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    Decided,
}

#[cfg(feature = "profile")]
static HOOK: std::sync::OnceLock<fn(Phase)> = std::sync::OnceLock::new();

/// Installs the profiler's timer (once; later calls are ignored).
#[cfg(feature = "profile")]
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) fn set_hook(hook: fn(Phase)) {
    let _ = HOOK.set(hook);
}

/// The decision has reached `phase`.
#[inline(always)]
pub(crate) fn reached(phase: Phase) {
    #[cfg(feature = "profile")]
    if let Some(hook) = HOOK.get() {
        hook(phase);
    }
    #[cfg(not(feature = "profile"))]
    let _ = phase;
}

#[cfg(all(test, feature = "profile"))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static SEEN: AtomicUsize = AtomicUsize::new(0);

    fn count(phase: Phase) {
        SEEN.fetch_add(phase as usize + 1, Ordering::SeqCst);
    }

    #[test]
    fn reached_calls_the_installed_hook() {
        set_hook(count);
        reached(Phase::Routed);
        reached(Phase::Decided);
        assert_eq!(SEEN.load(Ordering::SeqCst), 1 + 3);
    }
}
