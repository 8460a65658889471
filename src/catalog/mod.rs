//! The vendors' published rate-limit tables, embedded as data.

pub mod auth0;
pub mod auth0_2026;
pub mod auth0_authentication;
pub mod okta;
pub mod onelogin;

#[cfg(test)]
mod published;
#[cfg(test)]
mod vendor_pages;
