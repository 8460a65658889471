//! What every end-to-end test shares: the Envoy harness (`envoy`), the HTTP/1.1 client
//! (`http1`), the HTTP/2 client (`h2`), checks several suites share (`checks`), a
//! base64url encoder for JWTs (`base64url`), fleet mode's redis-server and
//! test-fixture rate-limit service (`fleet`), and a vendor-shaped upstream server
//! (`vendor_upstream`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod base64url;
pub mod checks;
pub mod envoy;
pub mod fleet;
pub mod h2;
pub mod http1;
pub mod vendor_upstream;

pub use checks::*;
pub use envoy::*;
pub use http1::*;
