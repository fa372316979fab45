//! The wattlet host: runs wattlet's WebAssembly components on wasmtime.
//!
//! The same components run on Spin in the cloud; this host runs them on the Raspberry Pi (edge
//! daemon), in queue workers and in the local all-in-one mode.

pub mod admin;
pub mod components;
pub mod edge;
pub mod local;
pub mod meter;
pub mod nialm;
pub mod pki;
pub mod queue;
pub mod runtime;
pub mod serial;
pub mod sim;
pub mod spin;
