//! The hostile test suite: what clients, devices and components do to take a service down, each
//! tried against real servers on loopback and shown to fail. One module per topic.

mod serve;
