//! The hostile test suite: clients, devices and components that try to take the cloud or the
//! edge down or out of their sandbox, over real loopback servers, one module per topic.

mod sqlite;
