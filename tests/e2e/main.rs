//! Meridian's end-to-end tests: the real `meridian` executable, run as a separate process, plus checks that
//! the architecture's dependency rules hold. One test binary (hickory's habit), one module per area.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod acme;
mod architecture;
mod cluster;
mod config_check;
mod config_store;
mod dashboard;
mod deploy;
mod dns;
mod dnssec;
mod edge_tls;
mod explain;
mod health;
mod health_zone;
mod hops;
mod latency;
mod monitoring;
mod nodes;
mod operators;
mod proxy;
mod support;
mod up;
mod webdriver;
mod webhooks;
