//! fwd as a library: the binary's parts, so that tests and later issues (the data plane,
//! `fwd replay`) reuse them.

#![deny(unsafe_code)]

pub mod appliance;
pub mod capture;
pub mod cli;
pub mod config;
pub mod control;
pub mod firewall;
pub mod hasync;
pub mod http;
pub mod link;
pub mod logging;
pub mod output;
pub mod stats;
pub mod worker;
