//! A hostile world: clients, devices and components that try to take the cloud or the edge
//! down, or to pass for someone else, over real loopback servers. One module per topic:
//! - [`identity`]: forged, stale and replayed identity headers, on the real Spin CLI and on
//!   `wattlet serve`;
//! - [`tokens`]: access tokens that live too long, revoked tokens, a weak `admin_token`.

mod identity;
mod tokens;
