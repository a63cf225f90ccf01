//! The proxy against real HTTP origins on loopback: three regions' proxies in one pingora server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod latency;
mod scenarios;
mod support;
