//! idp-ratelimit: an Envoy proxy-wasm filter that enforces the published API
//! rate limits of identity providers (Okta, Auth0, OneLogin).
//!
//! Everything but `filter` is pure logic, built and tested on the host.

pub mod catalog;
pub mod config;
pub mod configure;
pub mod engine;
pub mod hash;
pub mod httpdate;
pub mod identity;
pub mod limiter;
pub mod path;
pub mod policy;
pub mod response;
pub mod router;
pub mod store;
pub mod table;

#[cfg(target_arch = "wasm32")]
mod filter;
