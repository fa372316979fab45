//! A hostile world: clients, devices and data that tried to take the cloud or the edge down,
//! each against real servers on loopback (`wattlet serve` over mutual TLS, `nats-server`, the
//! edge daemon with its components), each test failing on the code before its fix. By topic:
//! - [`timestamps`]: device-controlled times refused, the NIALM planner bounded;
//! - [`uploads`]: uploads racing a revocation, a stuck meter that no longer blocks its device.

mod timestamps;
mod uploads;
