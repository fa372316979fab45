//! What every wattlet host shares: the wasmtime engine and component loading ([`engine`],
//! [`sandbox`], [`locate`]), the host side of each WIT world with one conversions module per
//! WIT package ([`meter`], [`nialm`], [`stream`], [`uplink`]), and the admin listener that serves
//! Prometheus metrics ([`metrics`]), accepting connections as every listener does ([`accept`]).

pub mod accept;
mod conversions;
pub mod engine;
pub mod locate;
pub mod meter;
pub mod metrics;
pub mod nialm;
pub mod sandbox;
pub mod stream;
pub mod uplink;
