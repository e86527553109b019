//! One worker's data plane: parse, raw PREROUTING, conntrack, nat PREROUTING (NEW only),
//! filter FORWARD, nat POSTROUTING (NEW only), confirm, NAT rewrite. Sans-I/O: frames in,
//! verdicts out, `now` passed in; nothing allocates after [`Worker::new`].
//!
//! The worker itself and its per-burst entry points are here; the stages in `stages` (parse,
//! look-ahead, classify-ahead) and `hooks` (per frame), the chain walk in `walk`, NAT binding
//! choice in `bind`, fragment following in `frag`, frame views in `packet`.

use std::sync::Arc;

use arc_swap::ArcSwap;
use classify::{ct, Key, NO_MATCH};
use conntrack::{
    flow_hash, shard_of, CtPacket, CtState, Dir, EntryId, IcmpErrorInfo, NatKind, Probe, Shard,
    TcpSegment, Tracked, Tuple, L4,
};
use rules::{MultiportDir, Policy, RejectWith, TtlOp};
use wire::ethernet::{ethertype, is_link_local_group};
use wire::pppoe::ppp_proto;
use wire::tcp::TcpOption;
use wire::{encap, ip_proto, parse_embedded, parse_frame_into, Family, FrameInfo, Malformed};

use crate::bridge::{BridgeClass, BridgePolicy, PppoePolicy, TagPolicy};

use crate::compile::{
    Compiled, FamilyRules, HookPoint, LeafCheck, NatSpec, RuleCounters, RuleTarget,
};
use crate::log::{LogEvent, LogKind};
use crate::nat::{self, Rewrite};
use crate::reason::DropReason;
use crate::rewrite::{self, Done};
use crate::steer::FlowKey;

mod bind;
mod frag;
mod hooks;
mod packet;
mod stages;
mod walk;

#[cfg(test)]
mod differential;
#[cfg(test)]
mod limits_tests;
#[cfg(test)]
mod robustness;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_nat6;
#[cfg(test)]
mod vector;

use bind::*;
use frag::*;
use packet::*;
pub(crate) use stages::Stages;
use walk::*;

/// Deepest jump nesting (the kernel allows about as many before its stack check).
pub const MAX_DEPTH: usize = 32;
/// Rule index recorded for a decision by a chain's policy.
pub const POLICY: u32 = u32::MAX;
/// Largest reply a REJECT builds (IPv6 quote limit plus headers, two VLAN tags and PPPoE).
pub const SCRATCH: usize = 1400;

/// Frames one vector pass holds: the largest burst fwd polls (`ports::xdp::MAX_BURST`); a
/// longer burst is processed in passes of this many.
pub const VECTOR: usize = 64;

/// A frame's flow: conntrack's lookup key and its flow hash (which also names the worker
/// owning the flow, `shard_of`).
pub type Flow = (FlowKey, u64);

/// What the parse stage learnt of one frame. A frame handed to the worker that owns its flow
/// carries this along, so each frame is parsed once whichever worker processes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub info: FrameInfo,
    /// Why the frame is malformed (a bad IPv4 header checksum included), if it is.
    pub malformed: Option<Malformed>,
    /// `None` for frames conntrack cannot see (non-IP, later fragments, cut-short L4).
    pub flow: Option<Flow>,
}

/// What happens to a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Out of the other port.
    Forward,
    /// The frame buffer now holds a reply of this length; back out of the ingress port.
    Reply(usize),
    Drop(DropReason),
}

/// Which rule decided at one hook: (chain id, rule index or [`POLICY`]).
pub type Decision = Option<(u32, u32)>;

/// Per-frame trace of the last processed frame, for `fwd replay --verdicts`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trace {
    /// Per [`HookPoint`]: the deciding rule, or `None` when the hook was not traversed or its
    /// table is absent.
    pub decided: [Decision; HookPoint::COUNT],
    pub ct_state: Option<CtState>,
    pub malformed: Option<Malformed>,
}

/// Counters of one worker (the control thread sums them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerStats {
    pub drops: [u64; DropReason::COUNT],
    pub malformed: [u64; Malformed::COUNT],
    pub forwarded: u64,
    pub replies: u64,
    pub non_ip: u64,
    pub log_events: u64,
    pub log_overflow: u64,
    /// Packets a rewriting target (TTL, HL, DSCP, TOS, TCPMSS, ECN) changed, once per change.
    pub rewrites: u64,
    /// The conntrack shard's counters, as of [`Worker::stats_snapshot`] (the shard keeps the
    /// live ones).
    pub conntrack: conntrack::ShardStats,
    /// Tagged, PPPoE, link-local and other non-IP frames the bridge forwarded or filtered.
    pub bridge: [u64; BridgeClass::COUNT],
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats {
            drops: [0; DropReason::COUNT],
            malformed: [0; Malformed::COUNT],
            forwarded: 0,
            replies: 0,
            non_ip: 0,
            log_events: 0,
            log_overflow: 0,
            rewrites: 0,
            conntrack: conntrack::ShardStats::default(),
            bridge: [0; BridgeClass::COUNT],
        }
    }
}

/// Where a frame came in: 0 = port a, 1 = port b.
pub type PortIdx = u8;

enum Final {
    Accept,
    Drop,
    Reject(RejectWith),
    Snat(NatSpec),
    Dnat(NatSpec),
    Masquerade {
        ports: Option<(u16, u16)>,
        random: bool,
    },
    Netmap {
        net: u128,
        mask: u128,
    },
    Redirect,
}

/// The marks a packet's traversal reads and writes: the packet's own (`skb->mark`, 0 for every
/// packet arriving at a bridge port) and its connection's (the entry's `mark`, which
/// `conntrack -L` shows). Carried from hook to hook of one packet; the connmark is written
/// through to the entry as CONNMARK sets it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Marks {
    pub(crate) pkt: u32,
    pub(crate) ct: u32,
    /// The packet's conntrack entry; `None` before conntrack and for untracked or invalid
    /// packets, which `-m connmark` never matches and CONNMARK leaves alone.
    pub(crate) entry: Option<EntryId>,
    /// The packet goes in its connection's reply direction (`--ctdir`).
    pub(crate) reply: bool,
    /// A match dropped the packet whatever the rules say (a full `-m hashlimit` table: the
    /// kernel's `hotdrop`); the walk stops.
    pub(crate) hotdrop: bool,
    /// The connection's packets and bytes (original, then reply) with this packet, when the
    /// ruleset counts them ([`FamilyRules::counts_bytes`]).
    pub(crate) acct: Option<[u64; 4]>,
}

/// How a walk ended. The walk writes the deciding rule into the trace itself, from registers:
/// a `Decision` assembled field by field in the returned struct and copied out whole stalled on
/// store forwarding.
struct Walk {
    fin: Final,
    notrack: bool,
    /// The deciding rule's index, or [`POLICY`].
    rule: u32,
    /// The walk stopped before a verdict: the jumps nested too deep, or a rewrite met a
    /// packet the kernel drops.
    abort: Option<DropReason>,
}

/// One worker: its conntrack shard, its counters, a handle on the shared ruleset.
pub struct Worker {
    rules: Arc<ArcSwap<Compiled>>,
    shard: Shard,
    index: usize,
    workers: usize,
    key: conntrack::HashKey,
    /// Whether conntrack verifies L4 checksums (`[conntrack] checksum`).
    checksum: bool,
    rng: u64,
    ident: u16,
    stats: WorkerStats,
    trace: Trace,
    scratch: Box<[u8; SCRATCH]>,
    log: Option<rtrb::Producer<LogEvent>>,
    /// Return points of the chain walk (chain, next rule).
    stack: [(u32, u32); MAX_DEPTH],
    /// `now` of the frame being processed (for log events).
    now: u64,
    /// Wall clock minus `now` (ns), set by the poll loop ([`Worker::set_wall_offset`]).
    wall_offset: i64,
    /// Packets and bytes of each connection of the shard, by entry (original packets, bytes,
    /// reply packets, bytes): conntrack accounting for `-m connbytes`, kept beside the shard
    /// so entries stay two cache lines; counted only while the ruleset has `-m connbytes`.
    acct: Box<[[u64; 4]]>,
    /// The forwarded frame's new length when a rewrite (TCPMSS adding an option) grew it.
    grown: Option<usize>,
    /// Decisions of first fragments, for the later fragments of the same datagram.
    frags: Box<FragTable>,
    frag_head: Option<(usize, FragKey)>,
    /// What happens to tagged, PPPoE, link-local and other non-IP frames.
    bridge: BridgePolicy,
    /// The vector pass's stage arrays; taken out (a pointer move) while a pass runs.
    stages: Option<Box<Stages>>,
}

impl Worker {
    /// Worker `index` of `workers`, with its own shard of `capacity` connections.
    pub fn new(
        rules: Arc<ArcSwap<Compiled>>,
        ct: &conntrack::Config,
        capacity: u32,
        index: usize,
        workers: usize,
        now: u64,
    ) -> Worker {
        Worker {
            rules,
            shard: Shard::new(capacity, ct, now),
            index,
            workers: workers.max(1),
            key: ct.hash_key,
            checksum: ct.checksum,
            rng: ct.hash_key.0[0] ^ (index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
            ident: 1,
            stats: WorkerStats::default(),
            trace: Trace::default(),
            scratch: Box::new([0; SCRATCH]),
            log: None,
            stack: [(0, 0); MAX_DEPTH],
            now,
            wall_offset: 0,
            acct: vec![[0u64; 4]; capacity as usize].into_boxed_slice(),
            grown: None,
            frags: Box::new(FragTable::new()),
            frag_head: None,
            bridge: BridgePolicy::default(),
            stages: Some(Stages::new()),
        }
    }

    /// The wall clock (UTC, ns since the epoch) is `now + offset`: `-m time` reads it. The
    /// poll loop sets it from the system clock once in a while, so the data plane reads no
    /// clock and a replay with the same offset decides the same (0, the default, makes `now`
    /// itself the wall clock).
    pub fn set_wall_offset(&mut self, offset_ns: i64) {
        self.wall_offset = offset_ns;
    }

    /// The wall clock at `now`, in whole seconds since the epoch.
    fn wall_secs(&self, now: u64) -> u64 {
        ((now as i64).saturating_add(self.wall_offset).max(0) as u64) / 1_000_000_000
    }

    /// Sets the `[bridge]` policy (default: [`BridgePolicy::default`]).
    pub fn set_bridge(&mut self, policy: BridgePolicy) {
        self.bridge = policy;
    }

    /// Sends LOG/NFLOG events to this queue (the control thread formats and writes them).
    pub fn set_log_queue(&mut self, p: rtrb::Producer<LogEvent>) {
        self.log = Some(p);
    }

    /// The shared ruleset handle (reload: `rules().store(Arc::new(new))`).
    pub fn rules(&self) -> &Arc<ArcSwap<Compiled>> {
        &self.rules
    }

    pub fn stats(&self) -> &WorkerStats {
        &self.stats
    }

    /// The length of the last frame forwarded, where a rewrite changed it (TCPMSS adding an
    /// MSS option to a SYN): the caller sends that many bytes of the buffer instead.
    pub fn grown_len(&self) -> Option<usize> {
        self.grown
    }

    /// The worker's counters with its shard's conntrack counters filled in (for the control
    /// thread; a copy, off the data path).
    pub fn stats_snapshot(&self) -> WorkerStats {
        let mut s = self.stats.clone();
        s.conntrack = *self.shard.stats();
        s
    }

    pub fn shard(&self) -> &Shard {
        &self.shard
    }

    pub fn shard_mut(&mut self) -> &mut Shard {
        &mut self.shard
    }

    /// The trace of the last frame processed.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// Expires connections (call once per poll round or burst).
    pub fn expire(&mut self, now: u64) -> usize {
        self.shard.expire(now)
    }

    /// Processes a burst: `frames[i]` is a buffer (its whole capacity) holding `lens[i]` bytes;
    /// replies are written in place and `lens[i]` updated (also for a forwarded frame that a
    /// rewrite grew). One ruleset snapshot per burst; the
    /// frames go through the vector stages [`VECTOR`] at a time.
    pub fn process_burst(
        &mut self,
        ingress: PortIdx,
        frames: &mut [&mut [u8]],
        lens: &mut [usize],
        verdicts: &mut [Verdict],
        now: u64,
    ) {
        let rs = self.rules.load_full();
        for ((frames, lens), verdicts) in frames
            .chunks_mut(VECTOR)
            .zip(lens.chunks_mut(VECTOR))
            .zip(verdicts.chunks_mut(VECTOR))
        {
            let mut st = self.take_stages();
            for (i, (f, len)) in frames.iter().zip(lens.iter()).enumerate() {
                self.parse_slot(&mut st, i, ingress, &f[..*len]);
            }
            let n = frames.len();
            self.prepare(&rs, &mut st, n, |i| &frames[i][..lens[i]], now);
            for (i, ((buf, len), v)) in frames
                .iter_mut()
                .zip(lens.iter_mut())
                .zip(verdicts.iter_mut())
                .enumerate()
            {
                *v = self.finish_slot(&rs, &st, i, buf, *len, now);
                match *v {
                    Verdict::Reply(n) => *len = n,
                    Verdict::Forward => *len = self.grown.unwrap_or(*len),
                    Verdict::Drop(_) => {}
                }
            }
            self.put_stages(st);
        }
    }

    /// Processes one frame against the current ruleset.
    pub fn process(&mut self, ingress: PortIdx, buf: &mut [u8], len: usize, now: u64) -> Verdict {
        let rs = self.rules.load_full();
        self.process_with(&rs, ingress, buf, len, now)
    }

    fn drop(&mut self, r: DropReason) -> Verdict {
        self.stats.drops[r.index()] += 1;
        Verdict::Drop(r)
    }

    /// Processes one frame against `rs` (a snapshot the caller holds for the burst): a vector
    /// pass of one.
    pub fn process_with(
        &mut self,
        rs: &Compiled,
        ingress: PortIdx,
        buf: &mut [u8],
        len: usize,
        now: u64,
    ) -> Verdict {
        let mut st = self.take_stages();
        self.parse_slot(&mut st, 0, ingress, &buf[..len]);
        st.ahead[0] = false;
        let v = self.finish_slot(rs, &st, 0, buf, len, now);
        self.put_stages(st);
        v
    }
}
