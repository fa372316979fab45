//! Conversions between the types of the WIT interfaces components call and the host's own
//! types, one module per WIT package interface, as `From` impls (as Spin's `world` crate keeps
//! them in one place).

mod key_value;
mod sqlite;
