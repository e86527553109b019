//! Entries as text, the way `conntrackd -e` lists its external cache: libnetfilter_conntrack's
//! plain output of an entry that has only what the sync protocol carries, so no reply tuple
//! (and no NAT shown), no timeout (conntrackd hides it), no counters, no `use=`.

use crate::entry::{proto_name, status, Entry, TCP_STATES};
use std::fmt::Write as _;

/// One entry, without the `[active since Ns]` suffix conntrackd adds.
pub fn line(e: &Entry) -> String {
    let mut s = format!("{:<8} {} ", proto_name(e.orig.proto), e.orig.proto);
    if let Some(st) = e.tcp_state {
        let name = TCP_STATES
            .get(usize::from(st))
            .copied()
            .unwrap_or("UNKNOWN");
        let _ = write!(s, "{name} ");
    }
    let _ = write!(s, "{} ", e.orig);
    if e.status & status::SEEN_REPLY == 0 {
        s.push_str("[UNREPLIED] ");
    }
    if e.status & status::ASSURED != 0 {
        s.push_str("[ASSURED] ");
    }
    if let Some(m) = e.mark {
        let _ = write!(s, "mark={m} ");
    }
    if let Some(z) = e.zone {
        let _ = write!(s, "zone={z} ");
    }
    s.pop();
    s
}
