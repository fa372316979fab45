//! A hostile world: clients, devices and components that try to take the cloud or the edge
//! down, or to pass for someone else, tried against real servers on loopback and shown to fail.
//! One module per topic:
//! - [`serve`]: floods, slow and oversized requests, runaway components on `wattlet serve`;
//! - [`identity`]: forged, stale and replayed identity headers, on the real Spin CLI and on
//!   `wattlet serve`;
//! - [`tokens`]: access tokens that live too long, revoked tokens, a weak `admin_token`.

mod identity;
mod serve;
mod tokens;
