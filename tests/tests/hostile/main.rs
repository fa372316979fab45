//! A hostile world: clients, devices, data and components that try to take the cloud or the
//! edge down, out of their sandbox, or to pass for someone else, each tried against real servers
//! on loopback (`wattlet serve` over mutual TLS, the real Spin CLI, `nats-server`, the edge
//! daemon with its components) and shown to fail. One module per topic:
//! - [`serve`]: floods, slow and oversized requests, runaway components on `wattlet serve`;
//! - [`sqlite`]: a component's SQL kept inside its database and its request;
//! - [`identity`]: forged, stale and replayed identity headers, on the real Spin CLI and on
//!   `wattlet serve`;
//! - [`tokens`]: access tokens that live too long, revoked tokens, a weak `admin_token`;
//! - [`timestamps`]: device-controlled times refused, the NIALM planner bounded;
//! - [`uploads`]: uploads racing a revocation, a stuck meter that no longer blocks its device.

mod identity;
mod serve;
mod sqlite;
mod timestamps;
mod tokens;
mod uploads;
