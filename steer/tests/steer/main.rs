//! The steering engine's test binary: concrete scenarios on the reference deployment, property tests of
//! its invariants, and a differential test against a deliberately naive reference implementation.

mod properties;
mod reference;
mod scenarios;
mod world;
