//! fwd as a library: the binary's parts, so that tests and later issues (the data plane,
//! `fwd replay`) reuse them.

pub mod appliance;
pub mod config;
pub mod control;
pub mod http;
pub mod stats;
pub mod worker;
