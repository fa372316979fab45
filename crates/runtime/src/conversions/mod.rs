//! One module per WIT package: `From` impls between the types `bindgen!` generates and the
//! native types of the library or crate that defines the concept.

mod edge;
mod meter;
mod nialm;
mod stream;
mod survey;
