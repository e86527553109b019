//! Connection tracking with netfilter's semantics, for one worker at a time.
//!
//! The core is sans-I/O: a [`CtPacket`] (an already parsed description of a packet) and the
//! current time `now` (nanoseconds, any monotonic origin) go into [`Shard::track`]; a
//! [`Tracked`] verdict (NEW, ESTABLISHED, RELATED, INVALID, UNTRACKED) comes out, a token that
//! is consumed once the ruleset has decided, by [`Tracked::confirm`] (accepted) or
//! [`Tracked::abandon`] (dropped), because netfilter only confirms (inserts) a new connection
//! when its first packet is accepted.
//!
//! Each worker owns one [`Shard`]; [`flow_hash`] is symmetric, so both directions of a flow pick
//! the same shard. See `docs/CONNTRACK.md` for the semantics and where they come from.
#![deny(unsafe_code)]

mod config;
mod hash;
mod huge;
mod icmp;
mod list;
mod packet;
mod reason;
mod table;
mod tcp;
mod tuple;

pub use config::{Config, Timeouts, MAX_TIMEOUT_SECS};
pub use hash::{flow_hash, legacy, legacy_collisions_v6, shard_of, HashKey};
pub use icmp::is_error as icmp_is_error;
pub use list::{format_entry, listing_summary, write_listing, Filter, Snapshot};
pub use packet::{CtPacket, IcmpErrorInfo, TcpSegment, L4};
pub use reason::{CtReason, CT_REASONS};
pub use table::{
    CtEvent, CtEventKind, CtState, EntryId, HashedKey, Import, NatKind, Probe, Shard, ShardStats,
    Tracked, ENTRY_SIZE,
};
pub use tcp::TcpState;
pub use tuple::{Dir, Family, Tuple};
