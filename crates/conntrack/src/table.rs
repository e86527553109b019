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

/// Conntrack's answer for one packet; give it back to [`Shard::commit`].
#[must_use = "every Tracked must be committed"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    cfg: Config,
    key: HashKey,
    stats: ShardStats,
    /// Where connection events go (`[sync]`); `None`: no event is built, the data path pays
    /// one predictable branch at a state change and nothing on the established fast path.
    events: Option<rtrb::Producer<CtEvent>>,
    #[cfg(debug_assertions)]
    pending: bool,
}

/// What happened to a connection, as the kernel's conntrack events say it (`conntrack -E`):
/// the state sync sends these to its peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtEventKind {
    /// Confirmed (its first packet accepted, or imported).
    New,
    /// TCP state, SEEN_REPLY or ASSURED changed (a refreshed timeout is no event).
    Update,
    /// Gone: expired, closed, early-dropped, deleted.
    Destroy,
}

/// One connection event: the entry as it was at that moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtEvent {
    pub kind: CtEventKind,
    /// `expires_at` is on the shard's tick clock; use `timeout_secs`.
    pub snap: crate::list::Snapshot,
    /// Seconds the entry had left.
    pub timeout_secs: u32,
}

/// An entry made from outside the data path: a peer's connection committed into this shard
/// (`fwd sync commit`), so that its packets are ESTABLISHED here too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Import {
    pub family: Family,
    pub proto: u8,
    pub orig: Tuple,
    /// The reply tuple with the NAT binding applied (for ICMP `sport` = id, `dport` =
    /// reply type << 8 | code, as in the table).
    pub reply: Tuple,
    pub nat: NatKind,
    /// TCP only; `None` for TCP takes ESTABLISHED.
    pub tcp_state: Option<TcpState>,
    pub seen_reply: bool,
    pub assured: bool,
    pub mark: u32,
    pub timeout_secs: u32,
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
            cfg: *cfg,
            key: cfg.hash_key,
            stats: ShardStats::default(),
            events: None,
            #[cfg(debug_assertions)]
            pending: false,
        }
    }

    /// Sends this shard's connection events to `p` from now on (a full queue drops the event
    /// and counts it in `events_dropped`; the push never blocks or allocates).
    pub fn set_events(&mut self, p: rtrb::Producer<CtEvent>) {
        self.events = Some(p);
    }

    /// Builds and queues an event about entry `idx` (out of line: only state changes get here).
    #[inline(never)]
    fn emit(&mut self, kind: CtEventKind, idx: u32) {
        let e = &self.entries[idx as usize];
        let left = e.expires.wrapping_sub(self.now_t) as i32;
        let left_ticks = left.max(0) as u64;
        let timeout_secs = ((left_ticks << TICK_SHIFT) / 1_000_000_000) as u32;
        let snap = self.snapshot_at(idx, u64::from(e.expires) << TICK_SHIFT);
        let ev = CtEvent {
            kind,
            snap,
            timeout_secs,
        };
        if let Some(p) = &mut self.events {
            if p.push(ev).is_err() {
                self.stats.events_dropped += 1;
            }
        }
    }

    /// Inserts a confirmed entry made elsewhere (see [`Import`]) at `now`. TCP window data is
    /// unknown, so it is picked up from the next segments, liberally, as the kernel does for an
    /// entry conntrackd commits. Refused: [`CtReason::Clash`] when either tuple is already
    /// tracked, [`CtReason::TableFull`] / [`CtReason::ChainFull`] when there is no room.
    pub fn import(&mut self, im: &Import, now: u64) -> Result<EntryId, CtReason> {
        let now_t = tick(now);
        self.now_t = now_t;
        let bucket = self.bucket(im.family, im.proto, &im.orig);
        if self.find(im.family, im.proto, &im.orig, now_t).is_some()
            || self.find(im.family, im.proto, &im.reply, now_t).is_some()
        {
            return Err(CtReason::Clash);
        }
        let nat_bits = match im.nat {
            NatKind::None => 0,
            NatKind::Src => S_SRC_NAT,
            NatKind::Dst => S_DST_NAT,
            NatKind::Both => S_SRC_NAT | S_DST_NAT,
        };
        let reply_bucket = if nat_bits == 0 {
            bucket
        } else {
            self.bucket(im.family, im.proto, &im.reply)
        };
        let nodes = if reply_bucket == bucket { 2 } else { 1 };
        if !self.chain_room(bucket, nodes, now_t)
            || (reply_bucket != bucket && !self.chain_room(reply_bucket, 1, now_t))
        {
            return Err(CtReason::ChainFull);
        }
        let Some(idx) = self.alloc(bucket, now_t) else {
            return Err(CtReason::TableFull);
        };
        let mut e = EMPTY;
        e.tuple = [im.orig, im.reply];
        e.family = im.family as u8;
        e.proto = im.proto;
        e.mark = im.mark;
        e.status = S_USED
            | S_CONFIRMED
            | nat_bits
            | if im.seen_reply { S_SEEN_REPLY } else { 0 }
            | if im.assured { S_ASSURED } else { 0 };
        match im.proto {
            PROTO_TCP => {
                let st = im.tcp_state.unwrap_or(TcpState::Established);
                e.pstate = st as u8;
                let f = tcp::F_SACK_PERM | tcp::F_BE_LIBERAL;
                e.l4[6] = u32::from_le_bytes([0, 0, f, f]);
            }
            crate::tuple::PROTO_UDP => e.l4[0] = now_t,
            crate::tuple::PROTO_ICMP | crate::tuple::PROTO_ICMPV6 => e.l4[0] = 1,
            _ => {}
        }
        let timeout = im.timeout_secs.clamp(1, crate::config::MAX_TIMEOUT_SECS);
        e.expires = now_t.wrapping_add(secs_to_ticks(timeout));
        self.entries[idx as usize] = e;
        self.link_hash(idx, bucket);
        self.timer_insert(idx);
        self.live += 1;
        self.stats.imported += 1;
        if self.events.is_some() {
            self.emit(CtEventKind::New, idx);
        }
        Ok(EntryId(idx))
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

    // ---- hash index -------------------------------------------------------------------

    #[inline]
    fn bucket(&self, family: Family, proto: u8, t: &Tuple) -> usize {
        (flow_hash(&self.key, family, proto, t) as u32 & self.mask) as usize
    }

    /// Bucket of the reply tuple: the original's unless NAT changed the reply tuple (the hash
    /// is symmetric).
    fn reply_bucket(&self, idx: u32, orig_bucket: usize) -> usize {
        let e = &self.entries[idx as usize];
        if e.status & (S_SRC_NAT | S_DST_NAT) == 0 {
            orig_bucket
        } else {
            self.bucket(Family::from_u8(e.family), e.proto, &e.tuple[1])
        }
    }

    fn link_hash(&mut self, idx: u32, orig_bucket: usize) {
        let reply_bucket = self.reply_bucket(idx, orig_bucket);
        for (d, b) in [(0usize, orig_bucket), (1, reply_bucket)] {
            self.entries[idx as usize].hnext[d] = self.buckets[b];
            self.buckets[b] = idx << 1 | d as u32;
        }
    }

    /// A confirmed entry already has one of this unconfirmed entry's tuples (possible when NAT
    /// rewrote reply tuples).
    fn clashes(&self, idx: u32, orig_bucket: usize) -> bool {
        let e = &self.entries[idx as usize];
        let reply_bucket = self.reply_bucket(idx, orig_bucket);
        [(0usize, orig_bucket), (1, reply_bucket)]
            .iter()
            .any(|&(d, b)| self.chain_has(b, e.family, e.proto, &e.tuple[d]))
    }

    /// Nodes in a chain, counted up to [`MAX_CHAIN`] (a chain never holds more).
    fn chain_len(&self, bucket: usize) -> u32 {
        let mut n = self.buckets[bucket];
        let mut len = 0;
        while n != NIL && len < MAX_CHAIN {
            len += 1;
            n = self.entries[(n >> 1) as usize].hnext[(n & 1) as usize];
        }
        len
    }

    /// Room for `nodes` more nodes in a chain, early-dropping one of its connections that is
    /// not ASSURED (or is closing, or past its timeout) if it is full.
    fn chain_room(&mut self, bucket: usize, nodes: u32, now_t: u32) -> bool {
        if self.chain_len(bucket) + nodes <= MAX_CHAIN {
            return true;
        }
        let mut n = self.buckets[bucket];
        while n != NIL {
            let (idx, d) = (n >> 1, (n & 1) as usize);
            if self.evictable(idx, now_t) {
                self.destroy(idx);
                self.stats.early_drop += 1;
                self.stats.chain_early_drop += 1;
                return self.chain_len(bucket) + nodes <= MAX_CHAIN;
            }
            n = self.entries[idx as usize].hnext[d];
        }
        false
    }

    fn chain_has(&self, bucket: usize, family: u8, proto: u8, t: &Tuple) -> bool {
        let mut n = self.buckets[bucket];
        while n != NIL {
            let (i, d) = (n >> 1, (n & 1) as usize);
            let o = &self.entries[i as usize];
            if o.tuple[d] == *t && o.proto == proto && o.family == family {
                return true;
            }
            n = o.hnext[d];
        }
        false
    }

    fn unlink_hash(&mut self, idx: u32) {
        let e = self.entries[idx as usize];
        let b0 = self.bucket(Family::from_u8(e.family), e.proto, &e.tuple[0]);
        let b1 = self.reply_bucket(idx, b0);
        for (d, b) in [(0u32, b0), (1, b1)] {
            let node = idx << 1 | d;
            // Read afresh: unlinking direction 0 may have rewritten direction 1's link.
            let next = self.entries[idx as usize].hnext[d as usize];
            if self.buckets[b] == node {
                self.buckets[b] = next;
                continue;
            }
            let mut n = self.buckets[b];
            while n != NIL {
                let (ni, nd) = ((n >> 1) as usize, (n & 1) as usize);
                let after = self.entries[ni].hnext[nd];
                if after == node {
                    self.entries[ni].hnext[nd] = next;
                    break;
                }
                n = after;
            }
        }
    }

    /// The confirmed entry with `t` as one of its tuples, and which; an entry found past its
    /// timeout is destroyed on the spot (as netfilter's lookup does) and not returned.
    #[inline]
    fn find(&mut self, family: Family, proto: u8, t: &Tuple, now_t: u32) -> Option<(u32, Dir)> {
        let b = self.bucket(family, proto, t);
        self.find_in(b, family, proto, t, now_t)
    }

    #[inline]
    fn find_in(
        &mut self,
        bucket: usize,
        family: Family,
        proto: u8,
        t: &Tuple,
        now_t: u32,
    ) -> Option<(u32, Dir)> {
        let mut n = self.buckets[bucket];
        while n != NIL {
            let (idx, d) = (n >> 1, (n & 1) as usize);
            let e = &self.entries[idx as usize];
            if e.tuple[d] == *t && e.proto == proto && e.family == family as u8 {
                if tick_reached(now_t, e.expires) {
                    self.destroy(idx);
                    self.stats.expired += 1;
                    return None;
                }
                return Some((idx, Dir::from_bit(d as u32)));
            }
            n = e.hnext[d];
        }
        None
    }

    /// Lookup without side effects: the entry and direction of a tuple, if confirmed and live.
    pub fn lookup(&self, family: Family, proto: u8, t: &Tuple, now: u64) -> Option<(EntryId, Dir)> {
        let mut n = self.buckets[self.bucket(family, proto, t)];
        while n != NIL {
            let (idx, d) = (n >> 1, (n & 1) as usize);
            let e = &self.entries[idx as usize];
            if e.tuple[d] == *t && e.proto == proto && e.family == family as u8 {
                if tick_reached(tick(now), e.expires) {
                    return None;
                }
                return Some((EntryId(idx), Dir::from_bit(d as u32)));
            }
            n = e.hnext[d];
        }
        None
    }

    /// Index of the entry a chain head points to, or 0 for an empty chain, without a branch
    /// (an empty bucket is common and unpredictable).
    #[inline(always)]
    fn head_entry(h: u32) -> usize {
        let empty = u32::from(h == NIL);
        ((h >> 1) & empty.wrapping_sub(1)) as usize
    }

    /// Touch the bucket heads, then the first entries, of a burst of keys before looking them up
    /// one by one: the loads of different packets are independent and branch-free, so the CPU
    /// overlaps their cache misses instead of paying them in series (safe code cannot issue
    /// prefetch instructions). Returns a value only so the loads cannot be optimised away.
    pub fn warm(&self, keys: &[(Family, u8, Tuple)]) -> u32 {
        let mut heads = [NIL; 64];
        let mut acc = 0u32;
        for chunk in keys.chunks(64) {
            for (h, (family, proto, t)) in heads.iter_mut().zip(chunk) {
                *h = self.buckets[self.bucket(*family, *proto, t)];
            }
            for &h in &heads[..chunk.len()] {
                acc ^= self.entries[Self::head_entry(h)].touch();
            }
        }
        acc
    }

    /// [`Shard::warm`] for a burst of packets (ICMP errors warm their connection's entry).
    pub fn warm_packets(&self, pkts: &[CtPacket]) -> u32 {
        let mut keys = [(Family::V4, 0u8, Tuple::default()); 64];
        let mut acc = 0;
        for chunk in pkts.chunks(64) {
            let mut n = 0;
            for k in chunk.iter().filter_map(CtPacket::lookup_key) {
                keys[n] = k;
                n += 1;
            }
            acc ^= self.warm(&keys[..n]);
        }
        acc
    }

    /// [`Shard::lookup`] for a burst, with the loads of all keys overlapped as in
    /// [`Shard::warm`].
    pub fn lookup_burst(
        &self,
        keys: &[(Family, u8, Tuple)],
        now: u64,
        out: &mut [Option<(EntryId, Dir)>],
    ) {
        let now_t = tick(now);
        let mut nodes = [NIL; 64];
        for (kc, oc) in keys.chunks(64).zip(out.chunks_mut(64)) {
            for (n, (family, proto, t)) in nodes.iter_mut().zip(kc) {
                *n = self.buckets[self.bucket(*family, *proto, t)];
            }
            let mut acc = 0u32;
            for &n in &nodes[..kc.len()] {
                acc ^= self.entries[Self::head_entry(n)].touch();
            }
            core::hint::black_box(acc);
            for ((n, (family, proto, t)), o) in nodes.iter().zip(kc).zip(oc.iter_mut()) {
                let mut n = *n;
                *o = None;
                while n != NIL {
                    let (idx, d) = (n >> 1, (n & 1) as usize);
                    let e = &self.entries[idx as usize];
                    if e.tuple[d] == *t && e.proto == *proto && e.family == *family as u8 {
                        if !tick_reached(now_t, e.expires) {
                            *o = Some((EntryId(idx), Dir::from_bit(d as u32)));
                        }
                        break;
                    }
                    n = e.hnext[d];
                }
            }
        }
    }

    /// [`Shard::warm`] for keys whose flow hashes are already known (`None`: nothing to load).
    pub fn warm_hashed(&self, keys: &[Option<HashedKey>]) -> u32 {
        let mut heads = [NIL; 64];
        let mut acc = 0u32;
        for chunk in keys.chunks(64) {
            for (h, k) in heads.iter_mut().zip(chunk) {
                *h = match k {
                    Some((_, hash)) => self.buckets[(*hash as u32 & self.mask) as usize],
                    None => NIL,
                };
            }
            for &h in &heads[..chunk.len()] {
                acc ^= self.entries[Self::head_entry(h)].touch();
            }
        }
        core::hint::black_box(acc)
    }

    /// [`Shard::lookup_burst`] over keys whose flow hashes are already known (the data path
    /// hashes each frame once, in its parse stage): `keys[i]` is `(key, flow_hash(key))` or
    /// `None` (no flow: `out[i]` is `None`). Bucket heads, then entries, are loaded for all keys
    /// before any chain is walked, so their cache misses overlap.
    pub fn lookup_burst_hashed(
        &self,
        keys: &[Option<HashedKey>],
        now: u64,
        out: &mut [Option<(EntryId, Dir)>],
    ) {
        let now_t = tick(now);
        let mut nodes = [NIL; 64];
        for (kc, oc) in keys.chunks(64).zip(out.chunks_mut(64)) {
            for (n, k) in nodes.iter_mut().zip(kc) {
                *n = match k {
                    Some((_, h)) => self.buckets[(*h as u32 & self.mask) as usize],
                    None => NIL,
                };
            }
            let mut acc = 0u32;
            for &n in &nodes[..kc.len()] {
                acc ^= self.entries[Self::head_entry(n)].touch();
            }
            core::hint::black_box(acc);
            for ((n, k), o) in nodes.iter().zip(kc).zip(oc.iter_mut()) {
                let mut n = *n;
                *o = None;
                let Some(((family, proto, t), _)) = k else {
                    continue;
                };
                while n != NIL {
                    let (idx, d) = (n >> 1, (n & 1) as usize);
                    let e = &self.entries[idx as usize];
                    if e.tuple[d] == *t && e.proto == *proto && e.family == *family as u8 {
                        if !tick_reached(now_t, e.expires) {
                            *o = Some((EntryId(idx), Dir::from_bit(d as u32)));
                        }
                        break;
                    }
                    n = e.hnext[d];
                }
            }
        }
    }

    /// Bytes this shard holds: entries, hash buckets and wheel.
    pub fn memory_bytes(&self) -> usize {
        self.entries.len() * ENTRY_SIZE + self.buckets.len() * 4 + self.wheel.len() * 8
    }

    // ---- timer wheel ------------------------------------------------------------------

    #[inline]
    fn tlink(&self, n: u32) -> [u32; 2] {
        let cap = self.entries.len() as u32;
        if n < cap {
            let e = &self.entries[n as usize];
            [e.tprev, e.tnext]
        } else {
            self.wheel[(n - cap) as usize]
        }
    }

    #[inline]
    fn set_tlink(&mut self, n: u32, which: usize, v: u32) {
        let cap = self.entries.len() as u32;
        if n < cap {
            let e = &mut self.entries[n as usize];
            if which == 0 {
                e.tprev = v
            } else {
                e.tnext = v
            }
        } else {
            self.wheel[(n - cap) as usize][which] = v;
        }
    }

    fn timer_unlink(&mut self, idx: u32) {
        let [p, n] = self.tlink(idx);
        self.set_tlink(p, 1, n);
        self.set_tlink(n, 0, p);
    }

    /// Put the entry in the slot of its deadline, or the farthest slot if that is beyond the
    /// wheel, or the next slot if it is overdue: its slot never comes after its deadline.
    fn timer_insert(&mut self, idx: u32) {
        let deadline = self.entries[idx as usize].expires;
        let ahead = deadline.wrapping_sub(self.wheel_tick) as i32;
        let at = if ahead < 0 {
            self.wheel_tick
        } else if ahead as u32 >= (SLOTS - 1) * SLOT_TICKS {
            self.wheel_tick.wrapping_add((SLOTS - 1) * SLOT_TICKS)
        } else {
            deadline
        };
        let sentinel = self.entries.len() as u32 + ((at >> SLOT_SHIFT) & (SLOTS - 1));
        let first = self.tlink(sentinel)[1];
        let e = &mut self.entries[idx as usize];
        e.tprev = sentinel;
        e.tnext = first;
        self.set_tlink(first, 0, idx);
        self.set_tlink(sentinel, 1, idx);
    }

    /// New deadline `timeout` seconds from `now_t`. A later deadline leaves the entry in its
    /// slot (it is looked at again when the slot comes); an earlier one moves it.
    fn refresh(&mut self, idx: u32, now_t: u32, timeout: u32) {
        let deadline = now_t.wrapping_add(secs_to_ticks(timeout));
        let e = &mut self.entries[idx as usize];
        let earlier = (deadline.wrapping_sub(e.expires) as i32) < 0;
        e.expires = deadline;
        if earlier && e.status & S_CONFIRMED != 0 {
            self.timer_unlink(idx);
            self.timer_insert(idx);
        }
    }

    /// Destroy entries whose timeout has passed, up to `now`; returns how many. Call it once per
    /// burst (or more rarely): its cost is the number of wheel slots passed plus the entries
    /// in them.
    pub fn expire(&mut self, now: u64) -> usize {
        let now_t = tick(now);
        let mut lag = now_t.wrapping_sub(self.wheel_tick) as i32;
        if lag > (SLOTS * SLOT_TICKS) as i32 {
            // Asleep for more than a turn: every slot is due once.
            self.wheel_tick = now_t.wrapping_sub(SLOTS * SLOT_TICKS) & !(SLOT_TICKS - 1);
            lag = now_t.wrapping_sub(self.wheel_tick) as i32;
        }
        let mut killed = 0;
        while lag >= SLOT_TICKS as i32 {
            let sentinel =
                self.entries.len() as u32 + ((self.wheel_tick >> SLOT_SHIFT) & (SLOTS - 1));
            let mut n = self.tlink(sentinel)[1];
            // Detach the slot's list, then sort its entries out.
            self.wheel[(sentinel - self.entries.len() as u32) as usize] = [sentinel, sentinel];
            self.wheel_tick = self.wheel_tick.wrapping_add(SLOT_TICKS);
            while n != sentinel {
                let next = self.entries[n as usize].tnext;
                if tick_reached(now_t, self.entries[n as usize].expires) {
                    self.entries[n as usize].tprev = n;
                    self.entries[n as usize].tnext = n;
                    self.destroy_unlinked_timer(n);
                    killed += 1;
                } else {
                    self.timer_insert(n);
                }
                n = next;
            }
            lag = now_t.wrapping_sub(self.wheel_tick) as i32;
        }
        self.stats.expired += killed as u64;
        killed
    }

    // ---- slots ------------------------------------------------------------------------

    fn release(&mut self, idx: u32) {
        let e = &mut self.entries[idx as usize];
        e.status = 0;
        e.hnext[0] = self.free;
        self.free = idx;
    }

    /// Remove a confirmed entry from the index and the wheel and free its slot.
    fn destroy(&mut self, idx: u32) {
        self.timer_unlink(idx);
        self.destroy_unlinked_timer(idx);
    }

    fn destroy_unlinked_timer(&mut self, idx: u32) {
        if self.events.is_some() {
            self.emit(CtEventKind::Destroy, idx);
        }
        self.unlink_hash(idx);
        self.live -= 1;
        self.release(idx);
    }

    /// A free slot, early-dropping a connection that is not ASSURED (or a TCP one that is
    /// closing) from the buckets after `bucket` when the shard is full, as `early_drop()`.
    fn alloc(&mut self, bucket: usize, now_t: u32) -> Option<u32> {
        if self.free == NIL {
            self.early_drop(bucket, now_t);
        }
        if self.free == NIL {
            return None;
        }
        let idx = self.free;
        self.free = self.entries[idx as usize].hnext[0];
        Some(idx)
    }

    fn early_drop(&mut self, bucket: usize, now_t: u32) {
        for i in 0..EVICTION_RANGE {
            let b = (bucket as u32).wrapping_add(i) & self.mask;
            let mut n = self.buckets[b as usize];
            while n != NIL {
                let (idx, d) = (n >> 1, (n & 1) as usize);
                if self.evictable(idx, now_t) {
                    self.destroy(idx);
                    self.stats.early_drop += 1;
                    return;
                }
                n = self.entries[idx as usize].hnext[d];
            }
        }
    }

    /// An early-drop victim: not ASSURED, or TCP closing, or past its timeout.
    fn evictable(&self, idx: u32, now_t: u32) -> bool {
        let e = &self.entries[idx as usize];
        let closing = e.proto == PROTO_TCP
            && matches!(
                TcpState::from_u8(e.pstate & 0x0f),
                TcpState::FinWait
                    | TcpState::CloseWait
                    | TcpState::LastAck
                    | TcpState::TimeWait
                    | TcpState::Close
            );
        e.status & S_ASSURED == 0 || closing || tick_reached(now_t, e.expires)
    }

    // ---- tracking ---------------------------------------------------------------------

    fn count_invalid(&mut self, r: CtReason) -> Tracked {
        self.stats.invalid += 1;
        self.stats.reasons[r as usize] += 1;
        Tracked::invalid(r)
    }

    /// Track one packet. No allocation, no syscall. The result must go to [`Shard::commit`]
    /// before the next packet is tracked on this shard.
    pub fn track(&mut self, p: &CtPacket, now: u64) -> Tracked {
        self.track_at(p, None, now)
    }

    /// [`Shard::track`] for a packet whose flow hash is already known: `hash` is
    /// `p.flow_hash(key)` under this shard's key (the data path's parse stage computed it once
    /// for steering and conntrack alike).
    pub fn track_hashed(&mut self, p: &CtPacket, hash: u64, now: u64) -> Tracked {
        self.track_at(p, Some(hash), now)
    }

    #[inline(always)]
    fn track_at(&mut self, p: &CtPacket, hash: Option<u64>, now: u64) -> Tracked {
        #[cfg(debug_assertions)]
        {
            debug_assert!(
                !self.pending,
                "Shard::track called before commit of the previous packet"
            );
            self.pending = true;
        }
        let now_t = tick(now);
        self.now_t = now_t;
        match p.l4 {
            L4::IcmpError(ref err) => return self.icmp_error(p, err, now_t),
            L4::Icmp { ty, .. } if p.family == Family::V6 && icmp::is_untracked_v6(ty) => {
                self.stats.untracked += 1;
                return Tracked::untracked();
            }
            L4::Tcp(ref seg) if !tcp::valid_flags(seg.flags) => {
                return self.count_invalid(CtReason::TcpBadFlags)
            }
            _ => {}
        }
        let key = p.tuple();
        let bucket = match hash {
            Some(h) => {
                debug_assert_eq!(
                    (h as u32 & self.mask) as usize,
                    self.bucket(p.family, p.proto, &key)
                );
                (h as u32 & self.mask) as usize
            }
            None => self.bucket(p.family, p.proto, &key),
        };
        if let Some((idx, dir)) = self.find_in(bucket, p.family, p.proto, &key, now_t) {
            self.stats.found += 1;
            match self.update(idx, dir, p, now_t) {
                Some(t) => return t,
                None => {
                    // TCP reopening a closed connection: forget the old one.
                    self.destroy(idx);
                }
            }
        }
        self.create(bucket, key, p, now_t)
    }

    /// Track a packet whose TCP, UDP, ICMP or ICMPv6 checksum is wrong (the caller verified it,
    /// as netfilter's `nf_conntrack_checksum` does in PREROUTING): INVALID, no entry created,
    /// looked up or changed. Commit it like any other.
    pub fn track_bad_checksum(&mut self) -> Tracked {
        #[cfg(debug_assertions)]
        {
            debug_assert!(
                !self.pending,
                "Shard::track called before commit of the previous packet"
            );
            self.pending = true;
        }
        self.count_invalid(CtReason::BadChecksum)
    }

    /// The packet belongs to entry `idx`; `None` asks for the entry to be replaced.
    fn update(&mut self, idx: u32, dir: Dir, p: &CtPacket, now_t: u32) -> Option<Tracked> {
        // Only the fields needed: a copy of the whole entry costs more than the packet's work.
        let en = &mut self.entries[idx as usize];
        let status = en.status;
        let pstate0 = en.pstate;
        let seen_reply = status & S_SEEN_REPLY != 0;
        let state = if dir == Dir::Reply || seen_reply {
            CtState::Established
        } else {
            CtState::New
        };
        let mut action = Action::None;
        match p.l4 {
            L4::Tcp(ref seg) => {
                // Seen the reply and ASSURED: the full path would change neither.
                if status & (S_ASSURED | S_SEEN_REPLY) == S_ASSURED | S_SEEN_REPLY {
                    if let Some(timeout) =
                        tcp::established_ack(&mut en.pstate, &mut en.l4, dir, seg, &self.cfg)
                    {
                        self.refresh(idx, now_t, timeout);
                        return Some(Tracked::with(state, dir, idx, action));
                    }
                }
                let mut c = TcpConn::load(en.pstate, &en.l4);
                let verdict = tcp::packet(
                    &mut c,
                    dir,
                    seg,
                    seen_reply,
                    status & S_ASSURED != 0,
                    &self.cfg,
                );
                match verdict {
                    TcpVerdict::Reopen => return None,
                    TcpVerdict::Invalid(r) => {
                        // State untouched: an invalid segment changes nothing.
                        return Some(self.count_invalid(r));
                    }
                    TcpVerdict::Ignore => {
                        let en = &mut self.entries[idx as usize];
                        en.pstate = c.store(&mut en.l4);
                    }
                    TcpVerdict::Accept {
                        timeout,
                        assure,
                        kill,
                    } => {
                        let en = &mut self.entries[idx as usize];
                        en.pstate = c.store(&mut en.l4);
                        if assure {
                            en.status |= S_ASSURED;
                        }
                        if kill {
                            action = Action::Kill;
                        }
                        self.refresh(idx, now_t, timeout);
                    }
                }
            }
            L4::Udp { .. } => {
                let t = &self.cfg.timeouts;
                if seen_reply {
                    if tick_reached(now_t, en.l4[0]) {
                        let udp_stream = t.udp_stream;
                        self.entries[idx as usize].status |= S_ASSURED;
                        self.refresh(idx, now_t, udp_stream);
                    } else {
                        let udp = t.udp;
                        self.refresh(idx, now_t, udp);
                    }
                } else {
                    let udp = t.udp;
                    self.refresh(idx, now_t, udp);
                }
            }
            L4::Icmp { .. } => {
                // Old netfilter (the seed): count requests, destroy when all are answered.
                let en = &mut self.entries[idx as usize];
                if !self.cfg.icmp_destroy_on_reply {
                    let to = self.icmp_timeout(p.family);
                    self.refresh(idx, now_t, to);
                } else if dir == Dir::Reply {
                    en.l4[0] = en.l4[0].saturating_sub(1);
                    if en.l4[0] == 0 {
                        action = Action::Kill;
                    }
                } else {
                    en.l4[0] = en.l4[0].saturating_add(1);
                    let to = self.icmp_timeout(p.family);
                    self.refresh(idx, now_t, to);
                }
            }
            L4::Other => {
                let to = self.cfg.timeouts.generic;
                self.refresh(idx, now_t, to);
            }
            L4::IcmpError(_) => unreachable!("errors are handled before lookup"),
        }
        if dir == Dir::Reply {
            self.entries[idx as usize].status |= S_SEEN_REPLY;
        }
        if self.events.is_some() {
            let en = &self.entries[idx as usize];
            if en.status != status || (en.pstate ^ pstate0) & 0x0f != 0 {
                self.emit(CtEventKind::Update, idx);
            }
        }
        Some(Tracked::with(state, dir, idx, action))
    }

    fn icmp_timeout(&self, family: Family) -> u32 {
        match family {
            Family::V4 => self.cfg.timeouts.icmp,
            Family::V6 => self.cfg.timeouts.icmpv6,
        }
    }

    fn create(&mut self, bucket: usize, key: Tuple, p: &CtPacket, now_t: u32) -> Tracked {
        let tcp_conn = match p.l4 {
            L4::Icmp { ty, .. } if !icmp::is_request(p.family, ty) => {
                return self.count_invalid(CtReason::IcmpNotRequest)
            }
            L4::Tcp(ref seg) => match TcpConn::new(seg, &self.cfg) {
                Ok(c) => Some(c),
                Err(r) => return self.count_invalid(r),
            },
            _ => None,
        };
        let Some(reply) = key.invert(p.family, p.proto) else {
            return self.count_invalid(CtReason::IcmpNotRequest);
        };
        // Both nodes go into this chain unless NAT moves the reply tuple (checked at commit).
        if !self.chain_room(bucket, 2, now_t) {
            self.stats.reasons[CtReason::ChainFull as usize] += 1;
            let mut t = Tracked::invalid(CtReason::ChainFull);
            t.drop = true;
            return t;
        }
        let Some(idx) = self.alloc(bucket, now_t) else {
            self.stats.reasons[CtReason::TableFull as usize] += 1;
            let mut t = Tracked::invalid(CtReason::TableFull);
            t.drop = true;
            return t;
        };
        let t = &self.cfg.timeouts;
        let mut e = EMPTY;
        e.tuple = [key, reply];
        e.family = p.family as u8;
        e.proto = p.proto;
        e.status = S_USED;
        let timeout = match p.l4 {
            L4::Tcp(ref seg) => {
                let mut c = tcp_conn.expect("TCP has its state");
                match tcp::packet(&mut c, Dir::Original, seg, false, false, &self.cfg) {
                    TcpVerdict::Accept { timeout, .. } => {
                        e.pstate = c.store(&mut e.l4);
                        timeout
                    }
                    TcpVerdict::Invalid(r) => {
                        self.release(idx);
                        return self.count_invalid(r);
                    }
                    TcpVerdict::Ignore | TcpVerdict::Reopen => {
                        self.release(idx);
                        return self.count_invalid(CtReason::TcpInvalidTransition);
                    }
                }
            }
            L4::Udp { .. } => {
                e.l4[0] = now_t.wrapping_add(secs_to_ticks(2));
                t.udp
            }
            L4::Icmp { .. } => {
                e.l4[0] = 1;
                self.icmp_timeout(p.family)
            }
            _ => t.generic,
        };
        e.expires = now_t.wrapping_add(secs_to_ticks(timeout));
        self.entries[idx as usize] = e;
        self.stats.new += 1;
        let mut t = Tracked::with(CtState::New, Dir::Original, idx, Action::Confirm);
        t.bucket = bucket as u32;
        t
    }

    /// An ICMP or ICMPv6 error: RELATED to the connection of the embedded header, if the
    /// error goes to one of that connection's endpoints (`nf_conntrack_inet_error`).
    fn icmp_error(&mut self, p: &CtPacket, err: &IcmpErrorInfo, now_t: u32) -> Tracked {
        let Some(inv) = err.inner.invert(p.family, err.inner_proto) else {
            return self.count_invalid(CtReason::IcmpErrorBadInner);
        };
        let Some((idx, dir)) = self.find(p.family, err.inner_proto, &inv, now_t) else {
            return self.count_invalid(CtReason::IcmpErrorNoConn);
        };
        let e = &self.entries[idx as usize];
        if e.tuple[dir.idx()].dst != p.dst {
            return self.count_invalid(CtReason::IcmpErrorForged);
        }
        let kill = !self.cfg.keep_on_icmp_unreachable
            && icmp::is_unreachable(p.family, err.ty, err.code)
            && e.status & S_ASSURED == 0;
        self.stats.related += 1;
        let action = if kill { Action::Kill } else { Action::None };
        Tracked::with(CtState::Related, dir, idx, action)
    }

    /// Finish a packet: confirm a new connection if its packet was `accepted`, destroy an entry
    /// whose last packet this was. Returns `false` if the packet must be dropped after all (a
    /// new connection clashed with one confirmed since it was tracked).
    pub fn commit(&mut self, t: Tracked, accepted: bool) -> bool {
        self.confirm(t, accepted).is_ok()
    }

    /// [`Shard::commit`] that says why a new connection was refused after all:
    /// [`CtReason::Clash`], or [`CtReason::ChainFull`] when NAT put its reply tuple in a full
    /// chain.
    pub fn confirm(&mut self, t: Tracked, accepted: bool) -> Result<(), CtReason> {
        #[cfg(debug_assertions)]
        {
            self.pending = false;
        }
        let Some(EntryId(idx)) = t.entry else {
            return Ok(());
        };
        // A `Tracked` is `Copy`: a second commit of the same one must change nothing.
        let status = self.entries[idx as usize].status;
        let pending = status & S_USED != 0 && status & S_CONFIRMED == 0;
        match t.action {
            Action::Kill | Action::None if status & S_CONFIRMED == 0 => return Ok(()),
            Action::Confirm if !pending => return Ok(()),
            _ => {}
        }
        match t.action {
            Action::None => Ok(()),
            Action::Kill => {
                self.destroy(idx);
                self.stats.deleted += 1;
                Ok(())
            }
            Action::Confirm if !accepted => {
                self.release(idx);
                Ok(())
            }
            Action::Confirm => {
                let bucket = t.bucket as usize;
                if self.clashes(idx, bucket) {
                    self.release(idx);
                    self.stats.reasons[CtReason::Clash as usize] += 1;
                    return Err(CtReason::Clash);
                }
                let reply_bucket = self.reply_bucket(idx, bucket);
                if reply_bucket != bucket && !self.chain_room(reply_bucket, 1, self.now_t) {
                    self.release(idx);
                    self.stats.reasons[CtReason::ChainFull as usize] += 1;
                    return Err(CtReason::ChainFull);
                }
                self.entries[idx as usize].status |= S_CONFIRMED;
                self.link_hash(idx, bucket);
                self.timer_insert(idx);
                self.live += 1;
                self.stats.confirmed += 1;
                if self.events.is_some() {
                    self.emit(CtEventKind::New, idx);
                }
                Ok(())
            }
        }
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

    pub fn mark(&self, id: EntryId) -> u32 {
        self.entries[id.0 as usize].mark
    }

    /// `CONNMARK --set-mark`.
    pub fn set_mark(&mut self, id: EntryId, mark: u32) {
        self.entries[id.0 as usize].mark = mark;
    }

    pub(crate) fn snapshot_of(&self, idx: u32, now: u64) -> Option<crate::list::Snapshot> {
        let e = &self.entries[idx as usize];
        if e.status & S_CONFIRMED == 0 {
            return None;
        }
        let left = e.expires.wrapping_sub(tick(now)) as i32;
        if left <= 0 {
            return None;
        }
        Some(self.snapshot_at(idx, now + ((left as u64) << TICK_SHIFT)))
    }

    /// Entry `idx` as listings and sync events show it, expiring at `expires_at` (ns).
    fn snapshot_at(&self, idx: u32, expires_at: u64) -> crate::list::Snapshot {
        let e = &self.entries[idx as usize];
        crate::list::Snapshot {
            id: EntryId(idx),
            family: Family::from_u8(e.family),
            proto: e.proto,
            orig: e.tuple[0],
            reply: e.tuple[1],
            tcp_state: (e.proto == PROTO_TCP).then(|| TcpState::from_u8(e.pstate & 0x0f)),
            seen_reply: e.status & S_SEEN_REPLY != 0,
            assured: e.status & S_ASSURED != 0,
            mark: e.mark,
            expires_at,
            nat: self.nat_kind(EntryId(idx)),
        }
    }

    /// The event [`Shard::emit`] would build for the first live entry (tests).
    #[cfg(test)]
    fn emit_probe(&mut self) -> CtEvent {
        let idx = (0..self.slots())
            .find(|&i| self.entries[i as usize].status & S_CONFIRMED != 0)
            .expect("a live entry");
        let (p, mut c) = rtrb::RingBuffer::new(1);
        let old = self.events.replace(p);
        self.emit(CtEventKind::Update, idx);
        self.events = old;
        c.pop().unwrap()
    }

    pub(crate) fn slots(&self) -> u32 {
        self.entries.len() as u32
    }

    pub(crate) fn remove(&mut self, id: EntryId) {
        self.destroy(id.0);
        self.stats.deleted += 1;
    }
}

#[cfg(test)]
// `pass` commits; the Tracked it returns is only inspected.
#[allow(unused_must_use)]
mod tests {
    use super::*;
    use crate::config::Timeouts;
    use crate::list::{format_entry, Filter, Snapshot};
    use crate::packet::TcpSegment;
    use crate::tcp::{ACK, FIN, PSH, RST, SYN};
    use crate::tuple::{PROTO_ICMP, PROTO_UDP};
    use core::net::IpAddr;

    const S: u64 = 1_000_000_000;
    const T0: u64 = 5_000 * S;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn shard_with(cfg: Config) -> Shard {
        Shard::new(64, &cfg, T0)
    }

    fn shard() -> Shard {
        shard_with(Config::default())
    }

    /// Track and accept.
    fn pass(sh: &mut Shard, p: &CtPacket, now: u64) -> Tracked {
        let t = sh.track(p, now);
        assert!(sh.commit(t, true));
        t
    }

    fn listing(sh: &Shard, now: u64) -> Vec<String> {
        let mut snaps = Vec::new();
        sh.snapshot(&Filter::default(), now, &mut snaps);
        snaps
            .iter()
            .map(|s| {
                let mut l = String::new();
                format_entry(&mut l, s, now).unwrap();
                l
            })
            .collect()
    }

    fn snap(sh: &Shard, now: u64) -> Snapshot {
        let mut snaps = Vec::new();
        sh.snapshot(&Filter::default(), now, &mut snaps);
        assert_eq!(snaps.len(), 1, "{snaps:?}");
        snaps[0]
    }

    const A: &str = "198.18.0.1";
    const B: &str = "198.18.1.2";
    const ROUTER: &str = "198.18.1.254";

    #[test]
    fn entry_is_two_cache_lines() {
        assert_eq!(ENTRY_SIZE, 128);
        assert_eq!(core::mem::align_of::<Entry>(), 64);
    }

    #[test]
    fn ping_request_new_reply_established_then_gone() {
        let mut sh = shard();
        let req = CtPacket::icmp(ip(A), ip("198.18.0.2"), 8, 0, 4711);
        let t = pass(&mut sh, &req, T0);
        assert_eq!((t.state, t.dir), (CtState::New, Dir::Original));
        assert_eq!(
            listing(&sh, T0 + 5 * S),
            [
                "icmp     1 25 src=198.18.0.1 dst=198.18.0.2 type=8 code=0 id=4711 [UNREPLIED] \
              src=198.18.0.2 dst=198.18.0.1 type=0 code=0 id=4711 mark=0 use=1"
            ]
        );
        let rep = CtPacket::icmp(ip("198.18.0.2"), ip(A), 0, 0, 4711);
        let t = pass(&mut sh, &rep, T0 + 6 * S);
        assert_eq!((t.state, t.dir), (CtState::Established, Dir::Reply));
        assert_eq!(sh.len(), 0, "entry destroyed once the reply has passed");
        assert!(listing(&sh, T0 + 6 * S).is_empty());
        // A second reply has nothing to belong to.
        let t = pass(&mut sh, &rep, T0 + 7 * S);
        assert_eq!(t.state, CtState::Invalid);
        assert_eq!(t.reason, Some(CtReason::IcmpNotRequest));
    }

    #[test]
    fn icmp_entry_kept_until_timeout_as_current_linux_when_configured() {
        let mut sh = shard_with(Config {
            icmp_destroy_on_reply: false,
            ..Config::default()
        });
        pass(&mut sh, &CtPacket::icmp(ip(A), ip(B), 8, 0, 9), T0);
        let t = pass(&mut sh, &CtPacket::icmp(ip(B), ip(A), 0, 0, 9), T0 + S);
        assert_eq!(t.state, CtState::Established);
        assert_eq!(
            listing(&sh, T0 + 2 * S),
            [
                "icmp     1 29 src=198.18.0.1 dst=198.18.1.2 type=8 code=0 id=9 \
              src=198.18.1.2 dst=198.18.0.1 type=0 code=0 id=9 mark=0 use=1"
            ]
        );
        assert_eq!(sh.count(&Filter::default(), T0 + 31 * S + S / 10), 0);
    }

    #[test]
    fn entry_survives_while_requests_are_outstanding() {
        let mut sh = shard();
        let req = CtPacket::icmp(ip(A), ip(B), 8, 0, 7);
        let rep = CtPacket::icmp(ip(B), ip(A), 0, 0, 7);
        assert_eq!(pass(&mut sh, &req, T0).state, CtState::New);
        // Same id again before any reply: still NEW (no reply seen), one entry.
        assert_eq!(pass(&mut sh, &req, T0 + S).state, CtState::New);
        assert_eq!(sh.len(), 1);
        assert_eq!(pass(&mut sh, &rep, T0 + 2 * S).state, CtState::Established);
        assert_eq!(sh.len(), 1, "one request still unanswered");
        assert_eq!(pass(&mut sh, &rep, T0 + 3 * S).state, CtState::Established);
        assert_eq!(sh.len(), 0);
    }

    #[test]
    fn unanswered_request_expires_after_icmp_timeout() {
        for timeout in [30u32, 5] {
            let mut cfg = Config::default();
            cfg.timeouts.icmp = timeout;
            let mut sh = shard_with(cfg);
            let req = CtPacket::icmp(ip(A), ip(B), 8, 0, 1);
            pass(&mut sh, &req, T0);
            let t = u64::from(timeout) * S;
            assert_eq!(sh.expire(T0 + t - S / 10), 0);
            assert_eq!(sh.len(), 1);
            // The wheel is lazy by up to a slot, the lookup is exact.
            let rep = CtPacket::icmp(ip(B), ip(A), 0, 0, 1);
            let late = pass(&mut sh, &rep, T0 + t + S / 100);
            assert_eq!(late.state, CtState::Invalid);
            assert_eq!(sh.len(), 0);
            // And the wheel alone removes it too.
            pass(&mut sh, &req, T0 + 100 * S);
            assert_eq!(sh.expire(T0 + 100 * S + t + 2 * S), 1);
            assert_eq!(sh.len(), 0);
            assert!(sh.stats().expired >= 2);
        }
    }

    #[test]
    fn timestamp_information_and_address_mask_pairs() {
        for (req_ty, rep_ty) in [(13u8, 14u8), (15, 16), (17, 18)] {
            let mut sh = shard();
            let req = CtPacket::icmp(ip(A), ip(B), req_ty, 0, 99);
            assert_eq!(pass(&mut sh, &req, T0).state, CtState::New);
            let line = &listing(&sh, T0)[0];
            assert!(
                line.contains(&format!("type={req_ty} code=0 id=99 [UNREPLIED]")),
                "{line}"
            );
            assert!(
                line.contains(&format!("dst=198.18.0.1 type={rep_ty} code=0 id=99")),
                "{line}"
            );
            // A reply of another pair does not match.
            let wrong = CtPacket::icmp(ip(B), ip(A), 0, 0, 99);
            assert_eq!(pass(&mut sh, &wrong, T0 + S).state, CtState::Invalid);
            // Another id does not match.
            let other_id = CtPacket::icmp(ip(B), ip(A), rep_ty, 0, 100);
            assert_eq!(pass(&mut sh, &other_id, T0 + S).state, CtState::Invalid);
            let rep = CtPacket::icmp(ip(B), ip(A), rep_ty, 0, 99);
            assert_eq!(pass(&mut sh, &rep, T0 + S).state, CtState::Established);
            assert_eq!(sh.len(), 0);
        }
    }

    #[test]
    fn lone_replies_and_unknown_types_are_invalid() {
        let mut sh = shard();
        for ty in [0u8, 14, 16, 18, 9, 10] {
            let t = pass(&mut sh, &CtPacket::icmp(ip(B), ip(A), ty, 0, 5), T0);
            assert_eq!(t.state, CtState::Invalid, "type {ty}");
        }
        let t = pass(
            &mut sh,
            &CtPacket::icmp(ip("2001:2::2"), ip("2001:2::1"), 129, 0, 5),
            T0,
        );
        assert_eq!(t.state, CtState::Invalid);
        assert_eq!(sh.len(), 0);
        assert_eq!(sh.stats().reasons[CtReason::IcmpNotRequest as usize], 7);
    }

    #[test]
    fn icmpv6_echo_and_node_information_pairs() {
        let (a, b) = (ip("2001:2::1"), ip("2001:2:0:1::2"));
        for (req_ty, rep_ty) in [(128u8, 129u8), (139, 140)] {
            let mut sh = shard();
            assert_eq!(
                pass(&mut sh, &CtPacket::icmp(a, b, req_ty, 0, 11920), T0).state,
                CtState::New
            );
            let line = &listing(&sh, T0 + S)[0];
            assert_eq!(
                line,
                &format!(
                    "icmpv6   58 29 src=2001:2::1 dst=2001:2:0:1::2 type={req_ty} code=0 id=11920 \
                     [UNREPLIED] src=2001:2:0:1::2 dst=2001:2::1 type={rep_ty} code=0 id=11920 mark=0 use=1"
                )
            );
            let t = pass(&mut sh, &CtPacket::icmp(b, a, rep_ty, 0, 11920), T0 + S);
            assert_eq!(t.state, CtState::Established);
            assert_eq!(sh.len(), 0);
        }
    }

    #[test]
    fn neighbour_discovery_invalid_and_mld_untracked() {
        let mut sh = shard();
        let (a, b) = (ip("fe80::1"), ip("ff02::1:ff00:2"));
        for ty in [133u8, 134, 135, 136, 137] {
            let t = pass(&mut sh, &CtPacket::icmp(a, b, ty, 0, 0), T0);
            assert_eq!(t.state, CtState::Invalid, "ND type {ty}");
        }
        for ty in [130u8, 131, 132, 143] {
            let t = pass(&mut sh, &CtPacket::icmp(a, ip("ff02::16"), ty, 0, 0), T0);
            assert_eq!(t.state, CtState::Untracked, "MLD type {ty}");
        }
        assert_eq!(sh.len(), 0);
    }

    fn seg(sport: u16, dport: u16, flags: u8, seq: u32, ack: u32, len: u32) -> TcpSegment {
        TcpSegment {
            sport,
            dport,
            flags,
            seq,
            ack,
            window: 64_000,
            wscale: None,
            sack_perm: false,
            sack: None,
            payload_len: len,
        }
    }

    fn a_to_b(s: TcpSegment) -> CtPacket {
        CtPacket::tcp(ip(A), ip(B), s)
    }

    fn b_to_a(s: TcpSegment) -> CtPacket {
        CtPacket::tcp(ip(B), ip(A), s)
    }

    const CLI: u16 = 55862;
    const SRV: u16 = 8080;
    const ISN_A: u32 = 1_000;
    const ISN_B: u32 = 900_000;

    fn syn() -> CtPacket {
        a_to_b(seg(CLI, SRV, SYN, ISN_A, 0, 0))
    }

    fn kinds(c: &mut rtrb::Consumer<CtEvent>) -> Vec<(CtEventKind, Option<TcpState>)> {
        let mut v = Vec::new();
        while let Ok(e) = c.pop() {
            v.push((e.kind, e.snap.tcp_state));
        }
        v
    }

    /// A handshake, data and a close give NEW, one UPDATE per state change (none for the
    /// data segments, whose timeout refresh is no event), DESTROY on expiry; a full queue
    /// counts what it lost.
    #[test]
    fn events_follow_state_changes_only() {
        let mut sh = shard();
        let (p, mut c) = rtrb::RingBuffer::new(64);
        sh.set_events(p);
        pass(&mut sh, &syn(), T0);
        pass(
            &mut sh,
            &b_to_a(seg(SRV, CLI, SYN | ACK, ISN_B, ISN_A + 1, 0)),
            T0,
        );
        pass(
            &mut sh,
            &a_to_b(seg(CLI, SRV, ACK, ISN_A + 1, ISN_B + 1, 0)),
            T0,
        );
        for i in 0..5 {
            pass(
                &mut sh,
                &a_to_b(seg(CLI, SRV, ACK | PSH, ISN_A + 1 + i * 10, ISN_B + 1, 10)),
                T0,
            );
        }
        use CtEventKind::*;
        use TcpState::*;
        assert_eq!(
            kinds(&mut c),
            [
                (New, Some(SynSent)),
                (Update, Some(SynRecv)),
                (Update, Some(Established)),
            ]
        );
        let e = sh.emit_probe();
        assert_eq!(e.snap.orig.sport, CLI);
        // unacknowledged data: the 300 s timeout, what the peer is told is left
        assert!((299..=300).contains(&e.timeout_secs), "{}", e.timeout_secs);
        assert_eq!(sh.expire(T0 + 6 * 24 * 3600 * S), 1);
        assert_eq!(kinds(&mut c), [(Destroy, Some(Established))]);
        // a queue nobody drains: events are dropped and counted, tracking goes on
        let (p, _c) = rtrb::RingBuffer::new(1);
        sh.set_events(p);
        let t0 = T0 + 7 * 24 * 3600 * S;
        for port in 1..=3u16 {
            pass(&mut sh, &a_to_b(seg(port, SRV, SYN, ISN_A, 0, 0)), t0);
        }
        assert_eq!(sh.len(), 3);
        assert_eq!(sh.stats().events_dropped, 2);
    }

    /// An imported connection (a peer's, with its NAT binding) is ESTABLISHED at once in
    /// both directions, its mid-stream segments picked up; a second import of it clashes.
    #[test]
    fn an_imported_connection_continues_mid_stream() {
        let mut sh = shard();
        let (p, mut c) = rtrb::RingBuffer::new(8);
        sh.set_events(p);
        let orig = a_to_b(seg(CLI, SRV, ACK, 0, 0, 0)).tuple();
        // SNAT to ROUTER:40000: the reply comes from B to ROUTER
        let reply = b_to_a(seg(SRV, 40000, ACK, 0, 0, 0)).tuple();
        let mut reply = reply;
        reply.dst = crate::tuple::addr16(ip(ROUTER));
        let im = Import {
            family: Family::V4,
            proto: PROTO_TCP,
            orig,
            reply,
            nat: NatKind::Src,
            tcp_state: TcpState::from_kernel(3),
            seen_reply: true,
            assured: true,
            mark: 7,
            timeout_secs: 300,
        };
        let id = sh.import(&im, T0).unwrap();
        assert_eq!(sh.import(&im, T0), Err(CtReason::Clash));
        assert_eq!((sh.len(), sh.stats().imported), (1, 1));
        assert_eq!(sh.nat(id), (NatKind::Src, reply));
        assert_eq!(
            kinds(&mut c),
            [(CtEventKind::New, Some(TcpState::Established))]
        );
        // data far into the stream, both ways, big windows, no handshake seen here
        let t = pass(
            &mut sh,
            &a_to_b(seg(CLI, SRV, ACK | PSH, 3_000_000_000, 77_000_000, 1400)),
            T0 + S,
        );
        assert_eq!(
            (t.state, t.dir, t.entry),
            (CtState::Established, Dir::Original, Some(id))
        );
        let mut r = b_to_a(seg(SRV, 40000, ACK, 77_000_000, 3_000_001_400, 0));
        r.dst = crate::tuple::addr16(ip(ROUTER));
        let t = pass(&mut sh, &r, T0 + S);
        assert_eq!(
            (t.state, t.dir, t.entry),
            (CtState::Established, Dir::Reply, Some(id))
        );
        let s = snap(&sh, T0 + S);
        assert_eq!(
            (s.mark, s.assured, s.tcp_state),
            (7, true, Some(TcpState::Established))
        );
        assert!(
            s.expires_at > T0 + 400_000 * S,
            "refreshed to the established timeout"
        );
        // a full table refuses, counted by the caller
        let mut tiny = Shard::new(1, &Config::default(), T0);
        tiny.import(&im, T0).unwrap();
        let other = Import {
            orig: a_to_b(seg(CLI + 1, SRV, ACK, 0, 0, 0)).tuple(),
            reply: b_to_a(seg(SRV, CLI + 1, ACK, 0, 0, 0)).tuple(),
            nat: NatKind::None,
            ..im
        };
        assert_eq!(tiny.import(&other, T0), Err(CtReason::TableFull));
    }

    #[test]
    fn only_a_connections_first_packet_is_unconfirmed() {
        let mut sh = shard();
        let t = sh.track(&syn(), T0);
        assert_eq!((t.state, t.is_unconfirmed()), (CtState::New, true));
        assert!(sh.commit(t, true));
        // a retransmitted SYN is still NEW, but its entry is the confirmed one
        let t = sh.track(&syn(), T0 + S);
        assert_eq!((t.state, t.is_unconfirmed()), (CtState::New, false));
        assert!(sh.commit(t, true));
        let t = sh.track(
            &b_to_a(seg(SRV, CLI, SYN | ACK, ISN_B, ISN_A + 1, 0)),
            T0 + S,
        );
        assert_eq!((t.state, t.is_unconfirmed()), (CtState::Established, false));
        assert!(sh.commit(t, true));
        // dropped first packet: the next one creates the entry again
        let other = a_to_b(seg(CLI + 1, SRV, SYN, ISN_A, 0, 0));
        let t = sh.track(&other, T0 + S);
        assert!(t.is_unconfirmed());
        assert!(sh.commit(t, false));
        let t = sh.track(&other, T0 + S);
        assert!(t.is_unconfirmed());
        assert!(sh.commit(t, true));
    }

    #[test]
    fn tcp_syn_answered_by_network_unreachable_is_related_and_destroys() {
        for keep in [false, true] {
            let mut sh = shard_with(Config {
                keep_on_icmp_unreachable: keep,
                ..Config::default()
            });
            assert_eq!(pass(&mut sh, &syn(), T0).state, CtState::New);
            let err = IcmpErrorInfo {
                ty: 3,
                code: 0,
                inner_proto: PROTO_TCP,
                inner: Tuple::new(ip(A), ip(B), CLI, SRV),
            };
            let t = pass(
                &mut sh,
                &CtPacket::icmp_error(ip(ROUTER), ip(A), err),
                T0 + S,
            );
            assert_eq!((t.state, t.dir), (CtState::Related, Dir::Reply));
            assert_eq!(sh.len(), u32::from(keep));
        }
    }

    #[test]
    fn udp_answered_by_network_prohibited_is_related_and_destroys() {
        let mut sh = shard();
        assert_eq!(
            pass(&mut sh, &CtPacket::udp(ip(A), ip(B), 51017, 5353), T0).state,
            CtState::New
        );
        let err = IcmpErrorInfo {
            ty: 3,
            code: 9, // network administratively prohibited
            inner_proto: crate::tuple::PROTO_UDP,
            inner: Tuple::new(ip(A), ip(B), 51017, 5353),
        };
        let t = pass(
            &mut sh,
            &CtPacket::icmp_error(ip(ROUTER), ip(A), err),
            T0 + S,
        );
        assert_eq!(t.state, CtState::Related);
        assert_eq!(sh.len(), 0);
    }

    #[test]
    fn time_exceeded_and_fragmentation_needed_keep_the_entry() {
        let mut sh = shard();
        pass(&mut sh, &CtPacket::udp(ip(A), ip(B), 40000, 33434), T0);
        for (ty, code) in [(11u8, 0u8), (3, 4)] {
            let err = IcmpErrorInfo {
                ty,
                code,
                inner_proto: crate::tuple::PROTO_UDP,
                inner: Tuple::new(ip(A), ip(B), 40000, 33434),
            };
            let t = pass(
                &mut sh,
                &CtPacket::icmp_error(ip(ROUTER), ip(A), err),
                T0 + S,
            );
            assert_eq!(t.state, CtState::Related);
            assert_eq!(sh.len(), 1);
        }
    }

    #[test]
    fn forged_or_unrelated_errors_are_invalid() {
        let mut sh = shard();
        pass(&mut sh, &syn(), T0);
        let inner = Tuple::new(ip(A), ip(B), CLI, SRV);
        let err = IcmpErrorInfo {
            ty: 3,
            code: 1,
            inner_proto: PROTO_TCP,
            inner,
        };
        // Sent to a host that is not the connection's endpoint.
        let t = pass(
            &mut sh,
            &CtPacket::icmp_error(ip(B), ip("198.18.0.99"), err),
            T0 + S,
        );
        assert_eq!(
            (t.state, t.reason),
            (CtState::Invalid, Some(CtReason::IcmpErrorForged))
        );
        // About a connection that does not exist.
        let other = IcmpErrorInfo {
            inner: Tuple::new(ip(A), ip(B), CLI + 1, SRV),
            ..err
        };
        let t = pass(
            &mut sh,
            &CtPacket::icmp_error(ip(ROUTER), ip(A), other),
            T0 + S,
        );
        assert_eq!(
            (t.state, t.reason),
            (CtState::Invalid, Some(CtReason::IcmpErrorNoConn))
        );
        // Embedding an ICMP error (cannot be inverted).
        let nested = IcmpErrorInfo {
            inner_proto: PROTO_ICMP,
            inner: Tuple::icmp(ip(A), ip(B), 3, 0, 0),
            ..err
        };
        let t = pass(
            &mut sh,
            &CtPacket::icmp_error(ip(ROUTER), ip(A), nested),
            T0 + S,
        );
        assert_eq!(
            (t.state, t.reason),
            (CtState::Invalid, Some(CtReason::IcmpErrorBadInner))
        );
        assert_eq!(sh.len(), 1, "nothing was destroyed");
    }

    #[test]
    fn icmp_error_about_a_ping_and_icmpv6_errors() {
        let mut sh = shard();
        pass(&mut sh, &CtPacket::icmp(ip(A), ip(B), 8, 0, 3), T0);
        let err = IcmpErrorInfo {
            ty: 11,
            code: 0,
            inner_proto: PROTO_ICMP,
            inner: Tuple::icmp(ip(A), ip(B), 8, 0, 3),
        };
        assert_eq!(
            pass(&mut sh, &CtPacket::icmp_error(ip(ROUTER), ip(A), err), T0).state,
            CtState::Related
        );

        let (a6, b6, r6) = (ip("2001:2::1"), ip("2001:2:0:1::2"), ip("2001:2:0:1::fe"));
        pass(&mut sh, &CtPacket::udp(a6, b6, 47552, 5353), T0);
        let err6 = IcmpErrorInfo {
            ty: 1,
            code: 4, // port unreachable
            inner_proto: crate::tuple::PROTO_UDP,
            inner: Tuple::new(a6, b6, 47552, 5353),
        };
        let t = pass(&mut sh, &CtPacket::icmp_error(b6, a6, err6), T0 + S);
        assert_eq!(t.state, CtState::Related);
        assert_eq!(
            sh.count(
                &Filter {
                    family: Some(Family::V6),
                    ..Filter::default()
                },
                T0 + S
            ),
            0
        );
        let _ = r6;
    }

    /// Handshake, data both ways, FIN from the client, FIN from the server, last ACK.
    #[test]
    fn tcp_handshake_data_teardown() {
        let mut sh = shard();
        let mut now = T0;
        let mut step = |sh: &mut Shard, p: CtPacket, want: CtState, st: TcpState| {
            now += S / 10;
            let t = pass(sh, &p, now);
            assert_eq!(t.state, want, "{p:?}");
            assert_eq!(snap(sh, now).tcp_state, Some(st));
            now
        };
        step(&mut sh, syn(), CtState::New, TcpState::SynSent);
        step(
            &mut sh,
            b_to_a(seg(SRV, CLI, SYN | ACK, ISN_B, ISN_A + 1, 0)),
            CtState::Established,
            TcpState::SynRecv,
        );
        let t = step(
            &mut sh,
            a_to_b(seg(CLI, SRV, ACK, ISN_A + 1, ISN_B + 1, 0)),
            CtState::Established,
            TcpState::Established,
        );
        let s = snap(&sh, t);
        assert!(s.assured && s.seen_reply);
        step(
            &mut sh,
            a_to_b(seg(CLI, SRV, ACK | PSH, ISN_A + 1, ISN_B + 1, 100)),
            CtState::Established,
            TcpState::Established,
        );
        step(
            &mut sh,
            b_to_a(seg(SRV, CLI, ACK | PSH, ISN_B + 1, ISN_A + 101, 1000)),
            CtState::Established,
            TcpState::Established,
        );
        let t = step(
            &mut sh,
            a_to_b(seg(CLI, SRV, ACK, ISN_A + 101, ISN_B + 1001, 0)),
            CtState::Established,
            TcpState::Established,
        );
        assert_eq!(
            listing(&sh, t + S / 2)[0],
            "tcp      6 431999 ESTABLISHED src=198.18.0.1 dst=198.18.1.2 sport=55862 dport=8080 \
            src=198.18.1.2 dst=198.18.0.1 sport=8080 dport=55862 [ASSURED] mark=0 use=1"
        );
        step(
            &mut sh,
            a_to_b(seg(CLI, SRV, FIN | ACK, ISN_A + 101, ISN_B + 1001, 0)),
            CtState::Established,
            TcpState::FinWait,
        );
        step(
            &mut sh,
            b_to_a(seg(SRV, CLI, ACK, ISN_B + 1001, ISN_A + 102, 0)),
            CtState::Established,
            TcpState::CloseWait,
        );
        step(
            &mut sh,
            b_to_a(seg(SRV, CLI, FIN | ACK, ISN_B + 1001, ISN_A + 102, 0)),
            CtState::Established,
            TcpState::LastAck,
        );
        let t = step(
            &mut sh,
            a_to_b(seg(CLI, SRV, ACK, ISN_A + 102, ISN_B + 1002, 0)),
            CtState::Established,
            TcpState::TimeWait,
        );
        // Byte for byte what the kernel listed for the same exchange (see CONNTRACK.md).
        assert_eq!(
            listing(&sh, t + S / 2)[0],
            "tcp      6 119 TIME_WAIT src=198.18.0.1 dst=198.18.1.2 sport=55862 dport=8080 \
            src=198.18.1.2 dst=198.18.0.1 sport=8080 dport=55862 [ASSURED] mark=0 use=1"
        );
        assert_eq!(sh.expire(t + 119 * S), 0);
        assert!(sh.expire(t + 122 * S) == 1);
        assert_eq!(sh.len(), 0);
    }

    /// Drives a connection into `state` and returns the time of its last packet.
    fn tcp_into(sh: &mut Shard, state: TcpState) -> u64 {
        let mut now = T0;
        let mut go = |p: CtPacket| {
            now += S;
            let t = pass(sh, &p, now);
            assert_ne!(t.state, CtState::Invalid, "{p:?}");
        };
        go(syn());
        if state == TcpState::SynSent {
            return now;
        }
        go(b_to_a(seg(SRV, CLI, SYN | ACK, ISN_B, ISN_A + 1, 0)));
        if state == TcpState::SynRecv {
            return now;
        }
        go(a_to_b(seg(CLI, SRV, ACK, ISN_A + 1, ISN_B + 1, 0)));
        if state == TcpState::Established {
            return now;
        }
        go(a_to_b(seg(CLI, SRV, FIN | ACK, ISN_A + 1, ISN_B + 1, 0)));
        if state == TcpState::FinWait {
            return now;
        }
        go(b_to_a(seg(SRV, CLI, ACK, ISN_B + 1, ISN_A + 2, 0)));
        if state == TcpState::CloseWait {
            return now;
        }
        go(b_to_a(seg(SRV, CLI, FIN | ACK, ISN_B + 1, ISN_A + 2, 0)));
        if state == TcpState::LastAck {
            return now;
        }
        go(a_to_b(seg(CLI, SRV, ACK, ISN_A + 2, ISN_B + 2, 0)));
        if state == TcpState::TimeWait {
            return now;
        }
        go(a_to_b(seg(CLI, SRV, RST, ISN_A + 2, 0, 0)));
        now
    }

    #[test]
    fn every_tcp_timeout() {
        let t = Timeouts::default();
        for (state, secs) in [
            (TcpState::SynSent, t.tcp_syn_sent),
            (TcpState::SynRecv, t.tcp_syn_recv),
            (TcpState::Established, t.tcp_established),
            (TcpState::FinWait, t.tcp_fin_wait),
            (TcpState::CloseWait, t.tcp_close_wait),
            (TcpState::LastAck, t.tcp_last_ack),
            (TcpState::TimeWait, t.tcp_time_wait),
            (TcpState::Close, t.tcp_close),
        ] {
            let mut sh = shard();
            let last = tcp_into(&mut sh, state);
            let s = snap(&sh, last);
            assert_eq!(s.tcp_state, Some(state));
            let left = (s.expires_at - last) / S;
            assert!(
                left == u64::from(secs) || left + 1 == u64::from(secs),
                "{state:?}: {left}"
            );
            let deadline = last + u64::from(secs) * S;
            assert_eq!(
                sh.count(&Filter::default(), deadline - S / 100),
                1,
                "{state:?}"
            );
            assert_eq!(
                sh.count(&Filter::default(), deadline + S / 100),
                0,
                "{state:?}"
            );
            // The wheel reclaims it within a slot.
            sh.expire(deadline - 2 * S);
            assert_eq!(sh.len(), 1, "{state:?}");
            sh.expire(deadline + 2 * S);
            assert_eq!(sh.len(), 0, "{state:?}");
        }
    }

    #[test]
    fn unacknowledged_data_shortens_the_established_timeout() {
        let mut sh = shard();
        let now = tcp_into(&mut sh, TcpState::Established);
        pass(
            &mut sh,
            &a_to_b(seg(CLI, SRV, ACK | PSH, ISN_A + 1, ISN_B + 1, 500)),
            now + S,
        );
        let s = snap(&sh, now + S);
        assert_eq!((s.expires_at - (now + S)) / S, 300);
        pass(
            &mut sh,
            &b_to_a(seg(SRV, CLI, ACK, ISN_B + 1, ISN_A + 501, 0)),
            now + 2 * S,
        );
        let s = snap(&sh, now + 2 * S);
        assert_eq!((s.expires_at - (now + 2 * S)) / S, 432_000);
    }

    #[test]
    fn out_of_window_segment_is_invalid_unless_liberal() {
        for liberal in [false, true] {
            let mut sh = shard_with(Config {
                tcp_be_liberal: liberal,
                ..Config::default()
            });
            let now = tcp_into(&mut sh, TcpState::Established);
            // Far beyond what the receiver advertised.
            let wild = a_to_b(seg(
                CLI,
                SRV,
                ACK | PSH,
                ISN_A + 1 + 10_000_000,
                ISN_B + 1,
                100,
            ));
            let t = pass(&mut sh, &wild, now + S);
            if liberal {
                assert_eq!(t.state, CtState::Established);
            } else {
                assert_eq!(
                    (t.state, t.reason),
                    (CtState::Invalid, Some(CtReason::TcpOutOfWindow))
                );
            }
            // Acknowledging data never sent.
            let ack = b_to_a(seg(SRV, CLI, ACK, ISN_B + 1, ISN_A + 1 + 5_000_000, 0));
            let t = pass(&mut sh, &ack, now + S);
            assert_eq!(t.state == CtState::Invalid, !liberal);
            // In-window traffic still passes.
            let ok = a_to_b(seg(CLI, SRV, ACK | PSH, ISN_A + 1, ISN_B + 1, 10));
            assert_eq!(pass(&mut sh, &ok, now + 2 * S).state, CtState::Established);
        }
    }

    #[test]
    fn window_scaling_is_honoured() {
        let mut sh = shard();
        let mut s1 = seg(CLI, SRV, SYN, ISN_A, 0, 0);
        s1.wscale = Some(7);
        pass(&mut sh, &a_to_b(s1), T0);
        let mut s2 = seg(SRV, CLI, SYN | ACK, ISN_B, ISN_A + 1, 0);
        s2.wscale = Some(7);
        pass(&mut sh, &b_to_a(s2), T0);
        let mut ack = seg(CLI, SRV, ACK, ISN_A + 1, ISN_B + 1, 0);
        ack.window = 1000; // * 128
        pass(&mut sh, &a_to_b(ack), T0);
        // The server may send 100 kB: beyond 64000 unscaled, within 1000 << 7.
        let mut big = seg(SRV, CLI, ACK, ISN_B + 1 + 100_000, ISN_A + 1, 1000);
        big.window = 1000;
        assert_eq!(
            pass(&mut sh, &b_to_a(big), T0 + S).state,
            CtState::Established
        );
    }

    #[test]
    fn bad_flags_and_invalid_transitions() {
        let mut sh = shard();
        let t = pass(&mut sh, &a_to_b(seg(CLI, SRV, SYN | FIN, ISN_A, 0, 0)), T0);
        assert_eq!(t.reason, Some(CtReason::TcpBadFlags));
        // SYN/ACK and FIN|ACK cannot start a connection.
        let t = pass(&mut sh, &a_to_b(seg(CLI, SRV, SYN | ACK, ISN_A, 1, 0)), T0);
        assert_eq!(t.reason, Some(CtReason::TcpInvalidTransition));
        pass(&mut sh, &syn(), T0);
        // Client ACK before the SYN/ACK.
        let t = pass(&mut sh, &a_to_b(seg(CLI, SRV, ACK, ISN_A + 1, 5, 0)), T0);
        assert_eq!(t.reason, Some(CtReason::TcpInvalidTransition));
        assert_eq!(snap(&sh, T0).tcp_state, Some(TcpState::SynSent));
    }

    #[test]
    fn rst_answering_syn_destroys_the_entry() {
        let mut sh = shard();
        pass(&mut sh, &syn(), T0);
        let t = pass(
            &mut sh,
            &b_to_a(seg(SRV, CLI, RST | ACK, 0, ISN_A + 1, 0)),
            T0 + S,
        );
        assert_eq!(t.state, CtState::Established);
        assert_eq!(sh.len(), 0);
    }

    #[test]
    fn syn_after_time_wait_reopens() {
        let mut sh = shard();
        let now = tcp_into(&mut sh, TcpState::TimeWait);
        let t = pass(
            &mut sh,
            &a_to_b(seg(CLI, SRV, SYN, ISN_A + 50_000, 0, 0)),
            now + S,
        );
        assert_eq!(t.state, CtState::New);
        let s = snap(&sh, now + S);
        assert_eq!(
            (s.tcp_state, s.assured, s.seen_reply),
            (Some(TcpState::SynSent), false, false)
        );
    }

    #[test]
    fn mid_stream_pickup_is_loose() {
        let mut sh = shard();
        let p = a_to_b(seg(CLI, SRV, ACK | PSH, 77_777, 88_888, 100));
        let t = pass(&mut sh, &p, T0);
        assert_eq!(t.state, CtState::New);
        let s = snap(&sh, T0);
        assert_eq!(s.tcp_state, Some(TcpState::Established));
        assert_eq!((s.expires_at - T0) / S, 300, "capped until a reply is seen");
        let t = pass(
            &mut sh,
            &b_to_a(seg(SRV, CLI, ACK, 88_888, 77_877, 0)),
            T0 + S,
        );
        assert_eq!(t.state, CtState::Established);
        // As in Linux, SEEN_REPLY is set after that reply; the next segment assures.
        assert!(!snap(&sh, T0 + S).assured);
        pass(
            &mut sh,
            &a_to_b(seg(CLI, SRV, ACK, 77_877, 88_888, 0)),
            T0 + 2 * S,
        );
        let s = snap(&sh, T0 + 2 * S);
        assert!(s.assured);
        assert_eq!((s.expires_at - (T0 + 2 * S)) / S, 432_000);

        let mut strict = shard_with(Config {
            tcp_loose: false,
            ..Config::default()
        });
        let t = pass(&mut strict, &p, T0);
        assert_eq!(
            (t.state, t.reason),
            (CtState::Invalid, Some(CtReason::TcpNoPickup))
        );
    }

    #[test]
    fn udp_unreplied_then_stream() {
        let mut sh = shard();
        let out = CtPacket::udp(ip(A), ip(B), 51017, 5353);
        let back = CtPacket::udp(ip(B), ip(A), 5353, 51017);
        pass(&mut sh, &out, T0);
        assert_eq!(
            listing(&sh, T0 + S / 2)[0],
            "udp      17 29 src=198.18.0.1 dst=198.18.1.2 sport=51017 dport=5353 [UNREPLIED] \
             src=198.18.1.2 dst=198.18.0.1 sport=5353 dport=51017 mark=0 use=1"
        );
        assert_eq!(pass(&mut sh, &back, T0 + S).state, CtState::Established);
        assert_eq!(pass(&mut sh, &out, T0 + S).state, CtState::Established);
        let s = snap(&sh, T0 + S);
        assert!(s.seen_reply && !s.assured, "within 2 s: not yet a stream");
        assert_eq!((s.expires_at - (T0 + S)) / S, 30);
        pass(&mut sh, &out, T0 + 3 * S);
        let s = snap(&sh, T0 + 3 * S);
        assert!(s.assured);
        assert_eq!((s.expires_at - (T0 + 3 * S)) / S, 120);
    }

    #[test]
    fn other_protocols_are_tracked_generically() {
        let mut sh = shard();
        let gre = CtPacket::other(ip(A), ip(B), 47);
        assert_eq!(pass(&mut sh, &gre, T0).state, CtState::New);
        assert_eq!(
            listing(&sh, T0 + S / 2)[0],
            "gre      47 599 src=198.18.0.1 dst=198.18.1.2 [UNREPLIED] src=198.18.1.2 dst=198.18.0.1 mark=0 use=1"
        );
        let t = pass(&mut sh, &CtPacket::other(ip(B), ip(A), 47), T0 + S);
        assert_eq!((t.state, t.dir), (CtState::Established, Dir::Reply));
    }

    #[test]
    fn committing_twice_changes_nothing() {
        let mut sh = shard();
        let t = sh.track(&CtPacket::icmp(ip(A), ip(B), 8, 0, 1), T0);
        assert!(sh.commit(t, true));
        #[cfg(debug_assertions)]
        {
            sh.pending = false;
        }
        assert!(sh.commit(t, true));
        assert_eq!(sh.len(), 1);
        let r = sh.track(&CtPacket::icmp(ip(B), ip(A), 0, 0, 1), T0);
        assert!(sh.commit(r, true));
        assert!(sh.commit(r, true));
        assert_eq!(sh.len(), 0);
        // The freed slot is reused once, not twice.
        pass(&mut sh, &syn(), T0 + S);
        pass(&mut sh, &CtPacket::udp(ip(A), ip(B), 5, 6), T0 + S);
        assert_eq!(sh.len(), 2);
    }

    #[test]
    fn rejected_first_packet_leaves_no_entry() {
        let mut sh = shard();
        let t = sh.track(&syn(), T0);
        assert_eq!(t.state, CtState::New);
        assert!(sh.commit(t, false));
        assert_eq!(sh.len(), 0);
        // The next SYN is NEW again and can be confirmed.
        let t = pass(&mut sh, &syn(), T0 + S);
        assert_eq!(t.state, CtState::New);
        assert_eq!(sh.len(), 1);
    }

    #[test]
    fn full_table_early_drops_then_drops_with_a_counter() {
        let mut sh = Shard::new(2, &Config::default(), T0);
        pass(&mut sh, &CtPacket::udp(ip(A), ip(B), 1, 53), T0);
        pass(&mut sh, &CtPacket::udp(ip(A), ip(B), 2, 53), T0);
        // Full of unreplied flows: one is sacrificed.
        let t = pass(&mut sh, &CtPacket::udp(ip(A), ip(B), 3, 53), T0);
        assert_eq!(t.state, CtState::New);
        assert_eq!(sh.stats().early_drop, 1);
        assert_eq!(sh.len(), 2);

        // Two assured TCP connections fill it: nothing may be evicted.
        let mut sh = Shard::new(2, &Config::default(), T0);
        tcp_into(&mut sh, TcpState::Established);
        let mut now = T0;
        for p in [
            a_to_b(seg(CLI + 1, SRV, SYN, ISN_A, 0, 0)),
            b_to_a(seg(SRV, CLI + 1, SYN | ACK, ISN_B, ISN_A + 1, 0)),
            a_to_b(seg(CLI + 1, SRV, ACK, ISN_A + 1, ISN_B + 1, 0)),
        ] {
            now += S;
            pass(&mut sh, &p, now);
        }
        let t = sh.track(&CtPacket::udp(ip(A), ip(B), 3, 53), now);
        assert_eq!(
            (t.state, t.drop, t.reason),
            (CtState::Invalid, true, Some(CtReason::TableFull))
        );
        assert!(sh.commit(t, false));
        assert_eq!(sh.stats().reasons[CtReason::TableFull as usize], 1);
        assert_eq!(sh.stats().early_drop, 0);
        assert_eq!(sh.len(), 2);
    }

    /// UDP flows A -> B that fall into one bucket of a 4096-bucket shard under `key` (found by
    /// trying ports: what an attacker who knows the key would do).
    fn colliding_udp(key: &HashKey, n: usize) -> Vec<CtPacket> {
        let target = {
            let t = CtPacket::udp(ip(A), ip(B), 1, 53).tuple();
            flow_hash(key, Family::V4, PROTO_UDP, &t) & 0xfff
        };
        (53..=60)
            .flat_map(|dp| (1..=u16::MAX).map(move |sp| CtPacket::udp(ip(A), ip(B), sp, dp)))
            .filter(|p| flow_hash(key, Family::V4, PROTO_UDP, &p.tuple()) & 0xfff == target)
            .take(n)
            .collect()
    }

    #[test]
    fn a_chain_never_grows_past_its_bound() {
        let cfg = Config::default();
        let flows = colliding_udp(&cfg.hash_key, 40);
        assert_eq!(flows.len(), 40, "enough collisions");
        let mut sh = Shard::new(4096, &cfg, T0);
        let bucket = sh.bucket(Family::V4, PROTO_UDP, &flows[0].tuple());
        let per_chain = (MAX_CHAIN / 2) as usize;
        // Unreplied flows: past the bound each new one early-drops an older one of the chain.
        for (i, p) in flows.iter().enumerate() {
            let t = pass(&mut sh, p, T0 + i as u64);
            assert_eq!(t.state, CtState::New);
            assert!(sh.chain_len(bucket) <= MAX_CHAIN);
        }
        assert_eq!(sh.len() as usize, per_chain);
        assert_eq!(sh.stats().chain_early_drop, (40 - per_chain) as u64);
        assert_eq!(sh.stats().early_drop, (40 - per_chain) as u64);

        // Assured flows fill the chain: a new one is refused, the old ones keep working.
        let mut sh = Shard::new(4096, &cfg, T0);
        let (old, new) = flows.split_at(per_chain);
        for p in old {
            pass(&mut sh, p, T0);
            let L4::Udp { sport, dport } = p.l4 else {
                unreachable!()
            };
            pass(&mut sh, &CtPacket::udp(ip(B), ip(A), dport, sport), T0 + S);
            pass(&mut sh, p, T0 + 3 * S);
        }
        assert_eq!(sh.chain_len(bucket), MAX_CHAIN);
        for p in new {
            let t = sh.track(p, T0 + 4 * S);
            assert_eq!(
                (t.state, t.drop, t.reason),
                (CtState::Invalid, true, Some(CtReason::ChainFull))
            );
            assert!(sh.commit(t, false));
        }
        assert_eq!(
            sh.stats().reasons[CtReason::ChainFull as usize],
            new.len() as u64
        );
        assert_eq!(sh.stats().early_drop, 0);
        for p in old {
            let t = pass(&mut sh, p, T0 + 5 * S);
            assert_eq!(t.state, CtState::Established);
        }
        // A flow of another bucket is not affected.
        let other = CtPacket::udp(ip(B), ip(A), 7, 7);
        assert_ne!(sh.bucket(Family::V4, PROTO_UDP, &other.tuple()), bucket);
        assert_eq!(pass(&mut sh, &other, T0 + 5 * S).state, CtState::New);
    }

    #[test]
    fn a_bad_checksum_is_invalid_and_changes_nothing() {
        let mut sh = shard();
        let t = sh.track_bad_checksum();
        assert_eq!(
            (t.state, t.entry, t.drop, t.reason),
            (CtState::Invalid, None, false, Some(CtReason::BadChecksum))
        );
        assert!(sh.commit(t, true));
        assert!(sh.is_empty());
        assert_eq!(sh.stats().invalid, 1);
        assert_eq!(sh.stats().reasons[CtReason::BadChecksum as usize], 1);
    }

    #[test]
    fn nat_binding_is_the_reply_tuple() {
        let mut sh = shard();
        let t = sh.track(&CtPacket::udp(ip(A), ip(B), 1234, 53), T0);
        let translated = Tuple::new(ip(B), ip("198.18.1.254"), 53, 61000);
        assert!(sh.set_nat(&t, NatKind::Src, translated));
        assert!(sh.commit(t, true));
        let id = t.entry.unwrap();
        assert_eq!(sh.nat(id), (NatKind::Src, translated));
        // The reply to the translated address finds the connection.
        let back = pass(
            &mut sh,
            &CtPacket::udp(ip(B), ip("198.18.1.254"), 53, 61000),
            T0 + S,
        );
        assert_eq!(
            (back.state, back.dir, back.entry),
            (CtState::Established, Dir::Reply, Some(id))
        );
        // NAT is decided once.
        let again = pass(&mut sh, &CtPacket::udp(ip(A), ip(B), 1234, 53), T0 + S);
        assert!(!sh.set_nat(&again, NatKind::Dst, translated));
    }

    #[test]
    fn new_connection_clashing_with_a_nat_binding_is_dropped() {
        let mut sh = shard();
        // B:53 -> A:1234, its reply translated to come from 198.18.1.254.
        let t = sh.track(&CtPacket::udp(ip(B), ip(A), 53, 1234), T0);
        let translated = Tuple::new(ip("198.18.1.254"), ip(B), 61000, 53);
        assert!(sh.set_nat(&t, NatKind::Dst, translated));
        assert!(sh.commit(t, true));
        // A:1234 -> B:53 is not part of it, but its reply tuple is the first one's original.
        let t = sh.track(&CtPacket::udp(ip(A), ip(B), 1234, 53), T0 + S);
        assert_eq!(t.state, CtState::New);
        assert!(!sh.commit(t, true), "clash: the packet must be dropped");
        assert_eq!(sh.len(), 1);
        assert_eq!(sh.stats().reasons[CtReason::Clash as usize], 1);
    }

    #[test]
    fn delete_and_flush_by_filter() {
        let mut sh = shard();
        pass(&mut sh, &CtPacket::udp(ip(A), ip(B), 1, 53), T0);
        pass(&mut sh, &CtPacket::udp(ip("198.18.0.7"), ip(B), 1, 53), T0);
        pass(&mut sh, &syn(), T0);
        pass(&mut sh, &CtPacket::icmp(ip(A), ip(B), 8, 0, 1), T0);
        let udp = Filter {
            proto: Some(17),
            ..Filter::default()
        };
        assert_eq!(sh.count(&udp, T0), 2);
        let from_a = Filter {
            src: Some(ip(A)),
            ..Filter::default()
        };
        assert_eq!(sh.count(&from_a, T0), 3);
        let to_a = Filter {
            reply_dst: Some(ip(A)),
            dport: Some(53),
            ..Filter::default()
        };
        assert_eq!(sh.delete(&to_a, T0), 1);
        assert_eq!(sh.count(&Filter::default(), T0), 3);
        let mut all = Vec::new();
        let mut at = Some(0);
        while let Some(from) = at {
            at = sh.snapshot_chunk(&Filter::default(), T0, from, 5, &mut all);
        }
        assert_eq!(all.len(), 3);
        assert_eq!(sh.flush(T0), 3);
        assert_eq!(sh.len(), 0);
        // Everything is reusable after a flush.
        pass(&mut sh, &syn(), T0 + S);
        assert_eq!(sh.len(), 1);
    }

    /// Reference model of UDP tracking: one record per flow, linear and obvious.
    #[derive(Clone, Copy, Debug)]
    struct ModelFlow {
        client_first: bool,
        expires: u32,
        stream_after: u32,
        seen_reply: bool,
    }

    proptest::proptest! {
        /// The table (hash chains, timer wheel, free list, early-drop-free capacity) agrees with
        /// the model on every packet's state and on the number of live entries.
        #[test]
        fn udp_table_matches_reference_model(
            ops in proptest::collection::vec((0u16..6, proptest::bool::ANY, 0u64..50_000, proptest::bool::ANY, proptest::bool::ANY), 1..200)
        ) {
            let mut sh = shard();
            let mut model: [Option<ModelFlow>; 6] = [None; 6];
            let mut now = T0;
            let cfg = Config::default();
            for (flow, from_client, step_ms, accept, run_wheel) in ops {
                now += step_ms * 1_000_000;
                let now_t = tick(now);
                let port = 1000 + flow;
                let p = if from_client {
                    CtPacket::udp(ip(A), ip(B), port, 53)
                } else {
                    CtPacket::udp(ip(B), ip(A), 53, port)
                };
                let m = &mut model[flow as usize];
                if m.is_some_and(|f| tick_reached(now_t, f.expires)) {
                    *m = None;
                }
                let want = match m {
                    None => CtState::New,
                    Some(f) if f.client_first == from_client && !f.seen_reply => CtState::New,
                    Some(_) => CtState::Established,
                };
                let t = sh.track(&p, now);
                proptest::prop_assert_eq!(t.state, want);
                sh.commit(t, accept);
                match m {
                    None if accept => {
                        *m = Some(ModelFlow {
                            client_first: from_client,
                            expires: now_t.wrapping_add(secs_to_ticks(cfg.timeouts.udp)),
                            stream_after: now_t.wrapping_add(secs_to_ticks(2)),
                            seen_reply: false,
                        })
                    }
                    None => {}
                    Some(f) => {
                        let stream = f.seen_reply && tick_reached(now_t, f.stream_after);
                        let to = if stream { cfg.timeouts.udp_stream } else { cfg.timeouts.udp };
                        f.expires = now_t.wrapping_add(secs_to_ticks(to));
                        if f.client_first != from_client {
                            f.seen_reply = true;
                        }
                    }
                }
                if run_wheel {
                    sh.expire(now);
                }
                let live = model.iter().flatten().filter(|f| !tick_reached(now_t, f.expires)).count();
                proptest::prop_assert_eq!(sh.count(&Filter::default(), now), live);
                proptest::prop_assert!(sh.len() as usize >= live);
            }
            // Long after everything: the wheel empties the table.
            sh.expire(now + 200 * S);
            proptest::prop_assert_eq!(sh.len(), 0);
        }
    }

    fn any_packet() -> impl proptest::strategy::Strategy<Value = CtPacket> {
        use proptest::prelude::*;
        let host = prop::sample::select(vec![A, B, ROUTER]);
        (
            host.clone(),
            host,
            0u8..6,
            prop::sample::select(vec![53u16, 80, 1000, 1001]),
            prop::sample::select(vec![53u16, 80, 1000, 1001]),
            any::<u8>(),
            prop::sample::select(vec![0u32, 1, 1000, 1001, 100_000, u32::MAX - 10]),
            prop::sample::select(vec![0u32, 1, 1001, 900_001, 123_456_789]),
            any::<u16>(),
            0u32..3000,
            prop::sample::select(vec![0u8, 3, 8, 11, 13, 14, 17, 18, 5, 9]),
        )
            .prop_map(|(s, d, kind, sp, dp, flags, seq, ack, win, len, icmp_ty)| {
                let (s, d) = (ip(s), ip(d));
                match kind {
                    0 | 1 => CtPacket::tcp(
                        s,
                        d,
                        TcpSegment {
                            sport: sp,
                            dport: dp,
                            flags,
                            seq,
                            ack,
                            window: win,
                            wscale: (flags & 1 == 1).then_some(flags >> 4),
                            sack_perm: flags & 2 == 2,
                            sack: (flags & 4 == 4).then_some(ack.wrapping_add(len)),
                            payload_len: len,
                        },
                    ),
                    2 => CtPacket::udp(s, d, sp, dp),
                    3 => CtPacket::icmp(s, d, icmp_ty, 0, sp),
                    4 => CtPacket::icmp_error(
                        s,
                        d,
                        IcmpErrorInfo {
                            ty: 3,
                            code: flags % 16,
                            inner_proto: if flags & 1 == 0 { PROTO_TCP } else { 17 },
                            inner: Tuple::new(d, s, dp, sp),
                        },
                    ),
                    _ => CtPacket::other(s, d, 47),
                }
            })
    }

    proptest::proptest! {
        /// Arbitrary traffic never panics and never breaks the table's bookkeeping, whatever
        /// the verdicts, including with early drop in a small table.
        #[test]
        fn arbitrary_traffic_keeps_the_table_consistent(
            ops in proptest::collection::vec((any_packet(), 0u64..200_000, proptest::bool::ANY), 1..300)
        ) {
            let mut sh = Shard::new(6, &Config::default(), T0);
            let mut now = T0;
            for (p, step_ms, accept) in ops {
                now += step_ms * 1_000_000;
                let t = sh.track(&p, now);
                match t.state {
                    CtState::Invalid | CtState::Untracked => proptest::prop_assert!(t.entry.is_none()),
                    _ => proptest::prop_assert!(t.entry.is_some()),
                }
                sh.commit(t, accept);
                proptest::prop_assert!(sh.len() <= sh.capacity());
                proptest::prop_assert!(sh.count(&Filter::default(), now) <= sh.len() as usize);
                sh.expire(now);
            }
            sh.expire(now + 500_000 * S);
            proptest::prop_assert_eq!(sh.len(), 0);
            proptest::prop_assert_eq!(sh.count(&Filter::default(), now + 500_000 * S), 0);
        }
    }
}
