//! conntrackd's state-synchronisation protocol, as conntrack-tools 1.4.7 speaks it, so fwd
//! boxes and Linux firewalls running conntrackd can share connection state.
//!
//! - [`wire`]: zero-copy views of messages and attributes, and a writer; every malformed
//!   input is an [`wire::Error`] to count.
//! - [`entry`]: a conntrack entry as the protocol carries it (original tuple, state, timeout,
//!   NAT targets), parsed from and emitted into messages, with 1.4.7's byte-order traps.
//! - [`engine`]: the FTFW and NOTRACK modes as a sans-I/O state machine with the internal and
//!   external caches.
//! - [`list`]: entries as `conntrackd -e` lists them.
//! - [`runner`]: the sync thread, an engine on a UDP socket fed by bounded lock-free queues.
//!
//! The protocol has no authentication: run it on a dedicated link (docs/SYNC.md).
#![deny(unsafe_code)]

pub mod engine;
pub mod entry;
pub mod fuzzing;
pub mod list;
pub mod runner;
pub mod wire;

pub use engine::{Config, Engine, Event, Mode, Stats};
pub use entry::{Entry, Key, Tuple, L4};
pub use wire::Error;

/// Hex of bytes, for the peer binary's line protocol and for tests.
pub fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Bytes of hex; `None` on an odd length or a non-hex digit.
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if s.len() & 1 == 1 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}
