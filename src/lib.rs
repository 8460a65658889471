//! idp-ratelimit: an Envoy proxy-wasm filter that enforces the published API
//! rate limits of identity providers (Okta, Auth0, OneLogin).
//!
//! Everything but `filter` is pure logic, built and tested on the host. The
//! public surface is what the filter's users outside the crate need: the
//! benches, the fuzz targets and the operator CLI (`cli/`: parse and configure,
//! compile and resolve a policy, its route patterns and methods, normalise a
//! path, read the catalogs, run whole decisions against a store; `rls-config`
//! generates a rate-limit service's configuration), fleet mode's test
//! fixture (`tests/rls`: the protocol's messages in `rls::proto`), and the
//! reader of an upstream's rate-limit headers (`vendor_answer`: what
//! `Engine::learn` takes, property-tested from outside). The rest is
//! `pub(crate)`.

pub mod catalog;
pub mod config;
pub mod configure;
pub mod engine;
pub mod guard;
pub mod limiter;
pub mod path;
pub mod policy;
pub mod response;
pub mod rls;
pub mod router;
pub mod store;
pub mod vendor_answer;

pub(crate) mod hash;
// The `.wasm`'s global allocator (size-class free lists); tested on the host.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) mod heap;
// Read by the filter glue alone (wasm32); on the host only its tests use it.
pub(crate) mod divide;
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) mod header_map;
pub(crate) mod httpdate;
pub(crate) mod identity;
pub(crate) mod learned;
// The how-close marks and the access-log line serve the filter glue alone
// (wasm32); on the host only their tests use them.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) mod peak;
pub(crate) mod phase;
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) mod request_log;
pub(crate) mod table;
pub(crate) mod text;

#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
#[global_allocator]
static HEAP: heap::Heap = heap::Heap::new();

#[cfg(target_arch = "wasm32")]
mod filter;
#[cfg(target_arch = "wasm32")]
mod raw_headers;
// The profile build's timers (`--features profile`); empty wrappers otherwise.
#[cfg(target_arch = "wasm32")]
mod profile;

#[cfg(test)]
#[path = "../tests/common/base64url.rs"]
mod test_base64url;
