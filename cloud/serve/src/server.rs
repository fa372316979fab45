//! The server's entry points, where the CLI, `wattlet up` and the tests find them: load an
//! [`App`] with [`ServeOptions`], then [`serve`] it on a listener.
//!
//! The work is done elsewhere: [`crate::app`] (loading, answering a request),
//! [`crate::listener`] (connections and TLS), [`crate::router`], [`crate::headers`],
//! [`crate::body`] and [`crate::executor`].

pub use crate::app::{App, ServeOptions};
pub use crate::limits::Limits;
pub use crate::listener::serve;
pub use crate::tls::{ClientAuth, TlsOptions};
