//! The survey's domain, defined once (DESIGN.md, "Domain rules"), for every host and component:
//!
//! - [`consent`]: the one-way consent state machine and what each state permits;
//! - [`obis`]: the OBIS codes the survey stores and which ones each kind of meter must deliver;
//! - [`reading`]: a meter's register values reduced to the survey's values (kWh, kW, tariffs
//!   summed, missing codes found);
//! - [`measurement`]: one measurement as the edge uploads it and the Data API stores it;
//! - [`refusal`]: the machine-readable codes of the Data API's refusals, which clients branch on;
//! - [`identity`]: the request headers that carry a TLS client's verified identity, and the
//!   terminator's proof that it set them.
//!
//! The WIT package `wattlet:survey` (`wit/survey`) carries the same definitions across the
//! component boundary; the hosts' conversions map one onto the other.

pub mod consent;
pub mod identity;
pub mod measurement;
pub mod obis;
pub mod reading;
pub mod refusal;

pub use consent::{ConsentState, Use};
pub use measurement::Measurement;
pub use refusal::{Refusal, RefusalCode};
