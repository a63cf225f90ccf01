//! The steering engine's test binary: concrete scenarios on the reference deployment, property tests of
//! its invariants, and a differential test against a deliberately naive reference implementation.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod latency;
mod properties;
mod reference;
mod scenarios;
mod world;
