//! The request headers in which a TLS terminator (the `wattlet serve` host, or an ingress in
//! front of Spin) passes a client's verified certificate identity to the Data API. The
//! terminator removes every incoming header with [`PREFIX`] before it sets them, so a client
//! can never set them itself.

/// Every identity header starts with this prefix.
pub const PREFIX: &str = "x-wattlet-client-";
/// The device id of the verified client certificate.
pub const DEVICE: &str = "x-wattlet-client-device";
/// The participant's email from the verified client certificate.
pub const EMAIL: &str = "x-wattlet-client-email";
/// The serial number of the verified client certificate (lowercase hex).
pub const SERIAL: &str = "x-wattlet-client-serial";
