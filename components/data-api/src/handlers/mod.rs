//! Request handlers, one module per resource.

pub mod consent;
pub mod disaggregation;
pub mod export_copy;
pub mod forecast;
pub mod health;
pub mod household;
pub mod management;
pub mod measurement;
pub mod metrics;
pub mod participants;
pub mod policies;
pub mod purge;
pub mod regions;
pub mod research;
pub mod rollouts;
pub mod service;
pub mod tokens;
pub mod worker;
