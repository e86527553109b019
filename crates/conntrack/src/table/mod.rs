//! The per-worker table: preallocated entries, a chained hash index, a timer wheel.
//!
//! Nothing here allocates after [`Shard::new`]: entries live in one `Vec` sized at creation,
//! free slots form a list threaded through the entries, the hash chains and the timer wheel
//! link entries by 32-bit index. Time is `now` in nanoseconds, passed in; expiry times are
//! stored as wrapping 32-bit ticks of 2^20 ns (about 1 ms, wrapping every 52 days; a timeout
//! may be at most 24 days).

use crate::config::Config;
use crate::hash::{flow_hash, HashKey};
use crate::huge::HugeArray;
use crate::icmp;
use crate::packet::{CtPacket, IcmpErrorInfo, L4};
use crate::reason::CtReason;
use crate::tcp::{self, TcpConn, TcpState, TcpVerdict};
use crate::tuple::{Dir, Family, Tuple, PROTO_TCP};

mod events;
mod index;
mod lifecycle;
mod snapshot;
mod timers;

#[cfg(test)]
// `pass` commits; the Tracked it returns is only inspected.
#[allow(unused_must_use)]
pub(crate) mod tests;

pub use events::{CtEvent, CtEventKind, Import};
pub use index::Probe;

const NIL: u32 = u32::MAX;
const TICK_SHIFT: u32 = 20;
/// A wheel slot spans 2^10 ticks (about 1.07 s); 1024 slots cover about 18 minutes. Entries
/// due later sit in the farthest slot and are looked at again when it comes round.
const SLOT_SHIFT: u32 = 10;
const SLOTS: u32 = 1024;
const SLOT_TICKS: u32 = 1 << SLOT_SHIFT;
/// Buckets scanned for an early-drop victim (`NF_CT_EVICTION_RANGE`).
const EVICTION_RANGE: u32 = 8;
/// Most nodes a hash chain holds (an entry is two nodes, one a direction; without NAT both sit
/// in the same chain). A new connection that would make a chain longer early-drops a
/// connection of that chain that is not ASSURED, or is refused (`ct_chain_full`): however the
/// flows are chosen, even with a leaked key, a lookup walks at most this many nodes. With a
/// random key a full table (at most one entry a bucket on average) reaches 16 entries in one
/// bucket with a probability below 1e-13 per bucket.
pub const MAX_CHAIN: u32 = 32;

const S_USED: u8 = 0x01;
const S_CONFIRMED: u8 = 0x02;
const S_SEEN_REPLY: u8 = 0x04;
const S_ASSURED: u8 = 0x08;
const S_SRC_NAT: u8 = 0x10;
const S_DST_NAT: u8 = 0x20;

#[inline]
fn tick(now: u64) -> u32 {
    (now >> TICK_SHIFT) as u32
}

/// Seconds to ticks, rounded up so an entry never expires early.
#[inline]
fn secs_to_ticks(s: u32) -> u32 {
    ((u64::from(s) * 1_000_000_000).div_ceil(1 << TICK_SHIFT)) as u32
}

/// `a` is at or after `b` on the wrapping tick clock.
#[inline]
fn tick_reached(now: u32, deadline: u32) -> bool {
    (now.wrapping_sub(deadline) as i32) >= 0
}

/// One connection: exactly two cache lines.
///
/// The reply tuple is also the NAT binding: the NAT dataplane rewrites it ([`Shard::set_nat`])
/// to the translated reply tuple before the first packet is confirmed, and marks the kind in the
/// status bits, as netfilter does with `tuplehash[IP_CT_DIR_REPLY]`.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(64))]
struct Entry {
    tuple: [Tuple; 2],
    /// Next node in the hash chain of each direction (node = index << 1 | direction); the
    /// free list uses `hnext[0]`.
    hnext: [u32; 2],
    tprev: u32,
    tnext: u32,
    expires: u32,
    mark: u32,
    family: u8,
    proto: u8,
    status: u8,
    /// TCP: state, last event, last direction (see `TcpConn::load`).
    pstate: u8,
    /// Protocol words. TCP: window data of both directions. UDP: `[0]` = tick after which a
    /// replied flow counts as a stream. ICMP: `[0]` = requests not yet answered.
    l4: [u32; 7],
}

impl Entry {
    /// Reads a word from each of the entry's two cache lines (tuples start in the first, the
    /// reply tuple ends and the links live in the second).
    #[inline(always)]
    fn touch(&self) -> u32 {
        u32::from(self.tuple[0].sport) ^ self.expires
    }
}

/// Size of one entry in bytes.
pub const ENTRY_SIZE: usize = core::mem::size_of::<Entry>();

const EMPTY: Entry = Entry {
    tuple: [Tuple {
        src: [0; 16],
        dst: [0; 16],
        sport: 0,
        dport: 0,
    }; 2],
    hnext: [NIL; 2],
    tprev: NIL,
    tnext: NIL,
    expires: 0,
    mark: 0,
    family: 0,
    proto: 0,
    status: 0,
    pstate: 0,
    l4: [0; 7],
};

/// Index of an entry in its shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EntryId(pub u32);

/// Connection state of a packet, as iptables' `-m conntrack --ctstate` sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CtState {
    New,
    Established,
    Related,
    Invalid,
    Untracked,
}

impl CtState {
    pub fn name(self) -> &'static str {
        match self {
            CtState::New => "NEW",
            CtState::Established => "ESTABLISHED",
            CtState::Related => "RELATED",
            CtState::Invalid => "INVALID",
            CtState::Untracked => "UNTRACKED",
        }
    }
}

/// Which NAT the reply tuple of an entry carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NatKind {
    None,
    Src,
    Dst,
    Both,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    None,
    /// A new connection waiting for the verdict on its first packet.
    Confirm,
    /// Destroy the entry once the packet has passed (ICMP reply, unreachable error, RST).
    Kill,
}

/// A lookup key (family, protocol, tuple) with its [`flow_hash`].
pub type HashedKey = ((Family, u8, Tuple), u64);

/// Conntrack's answer for one packet, and the token that ends it: once the ruleset has
/// decided, it goes back to the shard by [`Tracked::confirm`] (the packet passes) or
/// [`Tracked::abandon`] (it is dropped), or [`Shard::commit`]. It is neither `Copy` nor
/// `Clone` and those take it by value, so a NEW connection is confirmed at most once and a
/// token cannot be used after it was abandoned:
///
/// ```compile_fail
/// # use conntrack::*;
/// # let mut sh = Shard::new(8, &Config::default(), 0);
/// # let p = CtPacket::udp("198.18.0.1".parse().unwrap(), "198.18.1.2".parse().unwrap(), 1, 2);
/// let t = sh.track(&p, 0);
/// t.abandon(&mut sh);
/// t.confirm(&mut sh); // error[E0382]: use of moved value: `t`
/// ```
///
/// ```compile_fail
/// # use conntrack::*;
/// # let mut sh = Shard::new(8, &Config::default(), 0);
/// # let p = CtPacket::udp("198.18.0.1".parse().unwrap(), "198.18.1.2".parse().unwrap(), 1, 2);
/// let t = sh.track(&p, 0);
/// let copy = t.clone(); // error[E0599]: no method named `clone`
/// # t.abandon(&mut sh);
/// ```
#[must_use = "every Tracked must be confirmed or abandoned"]
#[derive(Debug, PartialEq, Eq)]
pub struct Tracked {
    pub state: CtState,
    /// Direction of the packet in its connection (for RELATED: of the connection it is about).
    pub dir: Dir,
    /// The entry, for NAT and marks; `None` for INVALID and UNTRACKED.
    pub entry: Option<EntryId>,
    /// Why the packet is INVALID (or dropped).
    pub reason: Option<CtReason>,
    /// Conntrack itself drops the packet (table full), whatever the ruleset says.
    pub drop: bool,
    action: Action,
    /// Bucket of the original tuple (for `commit` of a new connection).
    bucket: u32,
}

impl Tracked {
    /// This packet created its entry (a connection's first packet): the entry is in no hash
    /// chain until [`Shard::commit`] confirms it. A packet of a confirmed connection that is
    /// still NEW (no reply seen yet, a retransmitted SYN) answers `false`.
    #[inline]
    pub fn is_unconfirmed(&self) -> bool {
        self.action == Action::Confirm
    }

    /// The packet passes (the ruleset accepted it): a NEW connection is confirmed, inserted
    /// into the index and the timer wheel; an entry whose last packet this was (an ICMP reply,
    /// an unreachable error, a RST) is destroyed. `Err` if the packet must be dropped after all:
    /// [`CtReason::Clash`] (a new connection clashed with one confirmed since it was tracked)
    /// or [`CtReason::ChainFull`] (NAT put its reply tuple in a full chain).
    #[inline]
    pub fn confirm(self, shard: &mut Shard) -> Result<(), CtReason> {
        shard.finish(self, true)
    }

    /// The packet is dropped: a NEW connection's entry is freed as if it had never been
    /// tracked (netfilter confirms a connection only when its first packet is accepted); an
    /// entry whose last packet this was is destroyed all the same.
    #[inline]
    pub fn abandon(self, shard: &mut Shard) {
        let _ = shard.finish(self, false);
    }

    fn invalid(reason: CtReason) -> Tracked {
        Tracked {
            state: CtState::Invalid,
            dir: Dir::Original,
            entry: None,
            reason: Some(reason),
            drop: false,
            action: Action::None,
            bucket: 0,
        }
    }

    fn untracked() -> Tracked {
        Tracked {
            state: CtState::Untracked,
            dir: Dir::Original,
            entry: None,
            reason: None,
            drop: false,
            action: Action::None,
            bucket: 0,
        }
    }

    fn with(state: CtState, dir: Dir, idx: u32, action: Action) -> Tracked {
        Tracked {
            state,
            dir,
            entry: Some(EntryId(idx)),
            reason: None,
            drop: false,
            action,
            bucket: 0,
        }
    }
}

/// Counters of one shard; the control thread sums them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardStats {
    pub found: u64,
    pub new: u64,
    pub confirmed: u64,
    pub expired: u64,
    /// Connections destroyed to make room for a new one (table full, or a full chain).
    pub early_drop: u64,
    /// Of `early_drop`, those made to keep a chain within [`MAX_CHAIN`].
    pub chain_early_drop: u64,
    pub deleted: u64,
    pub invalid: u64,
    pub untracked: u64,
    pub related: u64,
    /// Connection events (for the state sync) lost because the event queue was full.
    pub events_dropped: u64,
    /// Entries made by [`Shard::import`] (a peer's state committed).
    pub imported: u64,
    /// Per [`CtReason`] (index = discriminant).
    pub reasons: [u64; CtReason::COUNT],
}

impl ShardStats {
    /// Adds `o` to these counters (the control thread sums the shards).
    pub fn add(&mut self, o: &ShardStats) {
        self.found += o.found;
        self.new += o.new;
        self.confirmed += o.confirmed;
        self.expired += o.expired;
        self.early_drop += o.early_drop;
        self.chain_early_drop += o.chain_early_drop;
        self.deleted += o.deleted;
        self.invalid += o.invalid;
        self.untracked += o.untracked;
        self.related += o.related;
        self.events_dropped += o.events_dropped;
        self.imported += o.imported;
        for (a, b) in self.reasons.iter_mut().zip(&o.reasons) {
            *a += b;
        }
    }
}

/// The connections of one worker.
pub struct Shard {
    entries: HugeArray<Entry>,
    buckets: HugeArray<u32>,
    mask: u32,
    free: u32,
    /// Confirmed entries.
    live: u32,
    /// Sentinels of the wheel's circular lists: `[prev, next]`, node id = capacity + slot.
    wheel: Vec<[u32; 2]>,
    /// Start tick of the next wheel slot to process.
    wheel_tick: u32,
    /// Tick of the packet being tracked (for `commit`'s early drop).
    now_t: u32,
    /// Generation of the hash index, stepped by every link and unlink: a [`Probe`] taken at
    /// this generation still says where its key is. The top 8 bits tag the shard (1..=255: a
    /// probe of another shard is not current unless 255 shards apart; a debug build checks),
    /// the low 24 count (a burst changes the index far fewer than 2^24 times). Never 0, the
    /// generation of `Probe::default()`.
    gen: u32,
    cfg: Config,
    key: HashKey,
    stats: ShardStats,
    /// Where connection events go (`[sync]`); `None`: no event is built, the data path pays
    /// one predictable branch at a state change and nothing on the established fast path.
    events: Option<rtrb::Producer<CtEvent>>,
    #[cfg(debug_assertions)]
    pending: bool,
}

/// The count bits of [`Shard`]'s index generation.
const GEN_COUNT: u32 = (1 << 24) - 1;

/// A tag in 1..=255 for each shard made by this process (the top bits of its generations).
fn next_shard_tag() -> u32 {
    static NEXT: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
    NEXT.fetch_add(1, core::sync::atomic::Ordering::Relaxed) % 255 + 1
}

impl Shard {
    /// A shard holding at most `capacity` connections (at most 2^31 - 1), all allocated here.
    /// `now` starts the timer wheel.
    pub fn new(capacity: u32, cfg: &Config, now: u64) -> Shard {
        let capacity = capacity.clamp(1, (1 << 31) - 1 - SLOTS);
        let mut entries = HugeArray::new(capacity as usize, EMPTY);
        for (i, e) in entries.iter_mut().enumerate() {
            e.hnext[0] = if i + 1 < capacity as usize {
                i as u32 + 1
            } else {
                NIL
            };
        }
        let nb = capacity.next_power_of_two();
        let wheel = (0..SLOTS).map(|s| [capacity + s, capacity + s]).collect();
        Shard {
            entries,
            buckets: HugeArray::new(nb as usize, NIL),
            mask: nb - 1,
            free: 0,
            live: 0,
            wheel,
            wheel_tick: tick(now) & !(SLOT_TICKS - 1),
            now_t: tick(now),
            gen: next_shard_tag() << 24,
            cfg: *cfg,
            key: cfg.hash_key,
            stats: ShardStats::default(),
            events: None,
            #[cfg(debug_assertions)]
            pending: false,
        }
    }

    pub fn capacity(&self) -> u32 {
        self.entries.len() as u32
    }

    /// Confirmed connections (`conntrack -C`; entries past their timeout that the wheel has not
    /// reached yet are included until then).
    pub fn len(&self) -> u32 {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    pub fn stats(&self) -> &ShardStats {
        &self.stats
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Bytes this shard holds: entries, hash buckets and wheel.
    pub fn memory_bytes(&self) -> usize {
        self.entries.len() * ENTRY_SIZE + self.buckets.len() * 4 + self.wheel.len() * 8
    }

    // ---- entry access (NAT, marks, control) --------------------------------------------

    /// Original and reply tuple of an entry.
    pub fn tuples(&self, id: EntryId) -> (Tuple, Tuple) {
        let e = &self.entries[id.0 as usize];
        (e.tuple[0], e.tuple[1])
    }

    /// The tuple of direction `dir` of an entry (by reference: no copy on the per-packet path).
    #[inline]
    pub fn tuple(&self, id: EntryId, dir: Dir) -> &Tuple {
        &self.entries[id.0 as usize].tuple[dir.idx()]
    }

    /// The NAT kind of an entry alone (see [`Shard::nat`]).
    #[inline]
    pub fn nat_kind(&self, id: EntryId) -> NatKind {
        let status = self.entries[id.0 as usize].status;
        match (status & S_SRC_NAT != 0, status & S_DST_NAT != 0) {
            (false, false) => NatKind::None,
            (true, false) => NatKind::Src,
            (false, true) => NatKind::Dst,
            (true, true) => NatKind::Both,
        }
    }

    /// The NAT binding: kind and the (translated) reply tuple.
    pub fn nat(&self, id: EntryId) -> (NatKind, Tuple) {
        (self.nat_kind(id), self.entries[id.0 as usize].tuple[1])
    }

    /// Bind NAT for a connection not yet confirmed (its first packet, between `track` and
    /// `commit`): `reply` is the translated reply tuple. Returns `false` if the entry is
    /// already confirmed (netfilter decides NAT once, on the first packet).
    pub fn set_nat(&mut self, t: &Tracked, kind: NatKind, reply: Tuple) -> bool {
        let (Some(EntryId(idx)), Action::Confirm) = (t.entry, t.action) else {
            return false;
        };
        let e = &mut self.entries[idx as usize];
        e.tuple[1] = reply;
        e.status &= !(S_SRC_NAT | S_DST_NAT);
        e.status |= match kind {
            NatKind::None => 0,
            NatKind::Src => S_SRC_NAT,
            NatKind::Dst => S_DST_NAT,
            NatKind::Both => S_SRC_NAT | S_DST_NAT,
        };
        true
    }

    /// What `-m conntrack` reads of an entry at `now`: its protocol, the kernel's status bits
    /// (`IPS_EXPECTED` 1, `IPS_SEEN_REPLY` 2, `IPS_ASSURED` 4, `IPS_CONFIRMED` 8; fwd has no
    /// expectations) and the whole seconds left (0 before the entry is confirmed: the kernel
    /// keeps an unconfirmed entry's timeout relative, and `nf_ct_expires` reads it as 0).
    pub fn match_view(&self, id: EntryId, now: u64) -> (u8, u16, u32) {
        let e = &self.entries[id.0 as usize];
        let mut status = 0u16;
        if e.status & S_SEEN_REPLY != 0 {
            status |= 2;
        }
        if e.status & S_ASSURED != 0 {
            status |= 4;
        }
        let mut secs = 0;
        if e.status & S_CONFIRMED != 0 {
            status |= 8;
            let left = (e.expires.wrapping_sub(tick(now)) as i32).max(0) as u64;
            secs = ((left << TICK_SHIFT) / 1_000_000_000) as u32;
        }
        (e.proto, status, secs)
    }

    pub fn mark(&self, id: EntryId) -> u32 {
        self.entries[id.0 as usize].mark
    }

    /// `CONNMARK --set-mark`.
    pub fn set_mark(&mut self, id: EntryId, mark: u32) {
        self.entries[id.0 as usize].mark = mark;
    }

    pub(crate) fn slots(&self) -> u32 {
        self.entries.len() as u32
    }

    pub(crate) fn remove(&mut self, id: EntryId) {
        self.destroy(id.0);
        self.stats.deleted += 1;
    }
}
