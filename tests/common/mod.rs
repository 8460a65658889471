//! What every end-to-end test shares: the Envoy harness (`envoy`), the HTTP/1.1 client
//! (`http1`), the HTTP/2 client (`h2`), checks several suites share (`checks`) and a
//! base64url encoder for JWTs (`base64url`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod base64url;
pub mod checks;
pub mod envoy;
pub mod h2;
pub mod http1;

pub use checks::*;
pub use envoy::*;
pub use http1::*;
