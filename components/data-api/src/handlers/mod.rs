//! Request handlers, one module per resource.

pub mod consent;
pub mod household;
pub mod management;
pub mod measurement;
pub mod service;
