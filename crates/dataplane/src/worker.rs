//! One worker's data plane: parse, raw PREROUTING, conntrack, nat PREROUTING (NEW only),
//! filter FORWARD, nat POSTROUTING (NEW only), confirm, NAT rewrite. Sans-I/O: frames in,
//! verdicts out, `now` passed in; nothing allocates after [`Worker::new`].

use std::sync::Arc;

use arc_swap::ArcSwap;
use classify::{ct, Key, NO_MATCH};
use conntrack::{
    flow_hash, shard_of, CtPacket, CtState, Dir, EntryId, IcmpErrorInfo, NatKind, Shard,
    TcpSegment, Tracked, Tuple, L4,
};
use rules::{MultiportDir, Policy, RejectWith, TtlOp};
use wire::ethernet::{ethertype, is_link_local_group};
use wire::pppoe::ppp_proto;
use wire::tcp::TcpOption;
use wire::{encap, ip_proto, parse_embedded, parse_frame_into, Family, FrameInfo, Malformed};

use crate::bridge::{BridgeClass, BridgePolicy, PppoePolicy, TagPolicy};

use crate::compile::{Action, Compiled, FamilyRules, HookPoint, LeafCheck, NatSpec, RuleCounters};
use crate::log::{LogEvent, LogKind};
use crate::nat::{self, Rewrite};
use crate::reason::DropReason;
use crate::steer::FlowKey;

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

/// The stage arrays of one vector pass, one slot per frame (structure of arrays; owned by the
/// worker, allocated once). Stages: parse (`info`, `ct`, `flow`, `key`), conntrack lookup with
/// the loads of all slots overlapped (`found`), classification ahead of the NEW ones as one
/// burst per chain (`first`), then each frame's track, walks, commit and rewrite in order.
pub(crate) struct Stages {
    ingress: [PortIdx; VECTOR],
    info: [FrameInfo; VECTOR],
    malformed: [Option<Malformed>; VECTOR],
    flow: [Option<Flow>; VECTOR],
    ct: [Option<CtPacket>; VECTOR],
    quote: [Option<FrameInfo>; VECTOR],
    /// The classifier key as a NEW connection's walks see it (`ct` = NEW, no DNAT yet).
    key: [Key; VECTOR],
    found: [Option<(EntryId, Dir)>; VECTOR],
    /// Per slot and hook: the first classifier result of the walk, looked up ahead; valid when
    /// `ahead[slot]`, the family's `ahead_pos[hook]` is not `NO_MATCH` and the walk's key is
    /// `key[slot]` (a lookup is a pure function of chain, position, key and frame).
    first: [[u32; HookPoint::COUNT]; VECTOR],
    ahead: [bool; VECTOR],
    /// Per family (v4, v6) and hook: where that first lookup starts (past the `ct_prefix`
    /// rules a NEW packet does not match), `NO_MATCH` when there is none to do ahead.
    ahead_pos: [[u32; HookPoint::COUNT]; 2],
    /// Slots handed to another worker: not processed here.
    skip: [bool; VECTOR],
    /// Scratch of the classify-ahead stage (kept here: clearing them per pass cost more than
    /// the lookups they serve on short chains).
    ahead_keys: [Key; VECTOR],
    ahead_starts: [u32; VECTOR],
    ahead_slots: [u8; VECTOR],
    ahead_out: [u32; VECTOR],
}

impl Stages {
    fn new() -> Box<Stages> {
        Box::new(Stages {
            ingress: [0; VECTOR],
            info: [FrameInfo::default(); VECTOR],
            malformed: [None; VECTOR],
            flow: [None; VECTOR],
            ct: [None; VECTOR],
            quote: [None; VECTOR],
            key: [Key::default(); VECTOR],
            found: [None; VECTOR],
            first: [[NO_MATCH; HookPoint::COUNT]; VECTOR],
            ahead: [false; VECTOR],
            ahead_pos: [[NO_MATCH; HookPoint::COUNT]; 2],
            skip: [false; VECTOR],
            ahead_keys: [Key::default(); VECTOR],
            ahead_starts: [0; VECTOR],
            ahead_slots: [0; VECTOR],
            ahead_out: [NO_MATCH; VECTOR],
        })
    }

    /// The flow of slot `i` (steering).
    pub(crate) fn flow(&self, i: usize) -> Option<&Flow> {
        self.flow[i].as_ref()
    }

    /// What slot `i`'s parse found (carried with a handed-off frame).
    pub(crate) fn parsed(&self, i: usize) -> Parsed {
        Parsed {
            info: self.info[i],
            malformed: self.malformed[i],
            flow: self.flow[i],
        }
    }

    pub(crate) fn is_skipped(&self, i: usize) -> bool {
        self.skip[i]
    }

    /// Slot `i` goes to another worker: no stage here looks at it again.
    pub(crate) fn skip(&mut self, i: usize) {
        self.skip[i] = true;
        self.flow[i] = None;
        self.ahead[i] = false;
    }
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
}

/// How a walk ended. The walk writes the deciding rule into the trace itself, from registers:
/// a `Decision` assembled field by field in the returned struct and copied out whole stalled on
/// store forwarding.
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
}

struct Walk {
    fin: Final,
    notrack: bool,
    /// The deciding rule's index, or [`POLICY`].
    rule: u32,
    too_deep: bool,
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
            frags: Box::new(FragTable::new()),
            frag_head: None,
            bridge: BridgePolicy::default(),
            stages: Some(Stages::new()),
        }
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
    /// replies are written in place and `lens[i]` updated. One ruleset snapshot per burst; the
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
                if let Verdict::Reply(n) = *v {
                    *len = n;
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

    /// The stage arrays, for one vector pass (give them back with [`Worker::put_stages`]).
    pub(crate) fn take_stages(&mut self) -> Box<Stages> {
        self.stages.take().expect("one vector pass at a time")
    }

    pub(crate) fn put_stages(&mut self, st: Box<Stages>) {
        self.stages = Some(st);
    }

    /// Stage 1, parse: slot `i` gets the frame's parse, its conntrack view, flow key and hash,
    /// and its classifier key. Pure: nothing of the worker changes.
    pub(crate) fn parse_slot(&self, st: &mut Stages, i: usize, ingress: PortIdx, frame: &[u8]) {
        st.ingress[i] = ingress;
        st.skip[i] = false;
        st.flow[i] = None;
        st.ct[i] = None;
        st.quote[i] = None;
        let info = &mut st.info[i];
        st.malformed[i] = match parse_frame_into(frame, info) {
            // The bridge's br_netfilter (br_validate_ipv4) drops an IPv4 header with a wrong
            // checksum before any hook, whatever nf_conntrack_checksum says.
            Ok(()) => wire::verify_ipv4_header(frame, info).err(),
            Err(m) => Some(m),
        };
        if st.malformed[i].is_some() || !info.is_ip() {
            return;
        }
        let mut key = key_of(info, ingress, ingress ^ 1);
        key.ct = ct::NEW;
        st.key[i] = key;
        st.ct[i] = ct_packet(frame, info, &mut st.quote[i]);
        if let Some(k) = st.ct[i].as_ref().and_then(CtPacket::lookup_key) {
            st.flow[i] = Some((k, flow_hash(&self.key, k.0, k.1, &k.2)));
        }
    }

    /// Stage 1 for a frame another worker parsed (a handoff carries its [`Parsed`]).
    pub(crate) fn adopt_slot(
        &self,
        st: &mut Stages,
        i: usize,
        ingress: PortIdx,
        frame: &[u8],
        p: &Parsed,
    ) {
        st.ingress[i] = ingress;
        st.skip[i] = false;
        st.info[i] = p.info;
        st.malformed[i] = p.malformed;
        st.flow[i] = p.flow;
        st.ct[i] = None;
        st.quote[i] = None;
        if p.malformed.is_some() || !p.info.is_ip() {
            return;
        }
        let mut key = key_of(&p.info, ingress, ingress ^ 1);
        key.ct = ct::NEW;
        st.key[i] = key;
        st.ct[i] = ct_packet(frame, &p.info, &mut st.quote[i]);
    }

    /// Stages 2 and 3 over slots `..n`: conntrack looks all flows up at once (bucket heads,
    /// then entries, loaded for every slot before any chain is walked), then the packets it
    /// does not know (the NEW ones) are classified ahead, one burst per hook chain whose
    /// lookups have no side effect. `frame(i)` is slot `i`'s frame.
    pub(crate) fn prepare<'f>(
        &self,
        rs: &Compiled,
        st: &mut Stages,
        n: usize,
        frame: impl Fn(usize) -> &'f [u8],
        now: u64,
    ) {
        st.ahead[..n].fill(false);
        st.ahead_pos = [[NO_MATCH; HookPoint::COUNT]; 2];
        if !rs.v4.classifies_ahead && !rs.v6.classifies_ahead {
            // no chain to classify ahead: only the loads, to overlap their misses
            self.shard.warm_hashed(&st.flow[..n]);
            return;
        }
        self.shard
            .lookup_burst_hashed(&st.flow[..n], now, &mut st.found[..n]);
        for (f, v6) in [(0usize, false), (1, true)] {
            let fam = rs.family(v6);
            if !fam.classifies_ahead {
                continue;
            }
            let mut m = 0;
            for i in 0..n {
                let new = st.found[i].is_none()
                    && st.flow[i].is_some()
                    && (st.info[i].family == Family::Ipv6) == v6
                    && !matches!(
                        st.ct[i],
                        Some(CtPacket {
                            l4: L4::IcmpError(_),
                            ..
                        })
                    );
                if new {
                    st.ahead[i] = true;
                    st.ahead_slots[m] = i as u8;
                    m += 1;
                }
            }
            if m == 0 {
                continue;
            }
            // nat POSTROUTING is not classified ahead: only packets FORWARD accepted reach it,
            // and a lookup burst over those that FORWARD drops is work thrown away
            for h in [HookPoint::NatPrerouting, HookPoint::FilterForward] {
                if v6 && h != HookPoint::FilterForward {
                    continue;
                }
                let Some(c) = fam.hooks[h as usize] else {
                    continue;
                };
                let chain = &fam.chains[c as usize];
                let Some(pos) = chain.ahead_start() else {
                    continue;
                };
                for j in 0..m {
                    st.ahead_keys[j] = st.key[usize::from(st.ahead_slots[j])];
                    st.ahead_starts[j] = pos;
                }
                let (keys, slots, info) = (&st.ahead_keys, &st.ahead_slots, &st.info);
                chain.classifier.lookup_burst_with(
                    &keys[..m],
                    &st.ahead_starts[..m],
                    &mut st.ahead_out[..m],
                    |j, r| {
                        let i = usize::from(slots[j]);
                        leaf_ok(
                            &chain.rules[r as usize].leaf,
                            &keys[j],
                            frame(i),
                            &info[i],
                            now,
                            h,
                            // chains testing a mark are not looked up ahead
                            &Marks::default(),
                        )
                    },
                );
                for j in 0..m {
                    st.first[usize::from(st.ahead_slots[j])][h as usize] = st.ahead_out[j];
                }
                st.ahead_pos[f][h as usize] = pos;
            }
        }
    }

    /// Stage 4 for slot `i`: track, the hooks in netfilter's order, commit, rewrite. In slot
    /// order: each frame sees what the earlier ones did to conntrack.
    pub(crate) fn finish_slot(
        &mut self,
        rs: &Compiled,
        st: &Stages,
        i: usize,
        buf: &mut [u8],
        len: usize,
        now: u64,
    ) -> Verdict {
        let v = self.process_frame(rs, st, i, buf, len, now);
        if let Some((slot, key)) = self.frag_head.take() {
            self.frags.record(slot, key, &buf[..len], v, now);
        }
        v
    }

    fn process_frame(
        &mut self,
        rs: &Compiled,
        st: &Stages,
        i: usize,
        buf: &mut [u8],
        len: usize,
        now: u64,
    ) -> Verdict {
        self.trace = Trace::default();
        self.now = now;
        let ingress = st.ingress[i];
        let info = &st.info[i];
        if let Some(m) = st.malformed[i] {
            self.stats.malformed[m.index()] += 1;
            self.trace.malformed = Some(m);
            return self.drop(DropReason::Malformed);
        }
        // A plain unicast IP frame skips the bridge's checks with this one test.
        if info.encap != 0 || !info.is_ip() || buf[0] & 1 != 0 {
            if let Some(v) = self.bridge_gate(info, &buf[..len]) {
                return v;
            }
        }
        // Fragments: fwd does not reassemble. The first fragment is decided like any packet;
        // later ones follow its decision and its address translation (see `frag`).
        if info.is_fragment {
            let key = FragKey::of(info);
            let slot = frag_slot(&key);
            if !info.is_later_fragment() {
                self.frag_head = Some((slot, key));
            } else if let Some(v) = self.frags.follow(slot, &key, &mut buf[..len], info, now) {
                match v {
                    Verdict::Forward => self.stats.forwarded += 1,
                    Verdict::Drop(r) => self.stats.drops[r.index()] += 1,
                    Verdict::Reply(_) => {}
                }
                return v;
            }
        }
        let v6 = info.family == Family::Ipv6;
        let fam = rs.family(v6);
        let counters = &rs.counters[self.index.min(rs.counters.len() - 1)];
        let egress = ingress ^ 1;
        let mut key = st.key[i];
        let frame = &buf[..len];
        // the first lookup of a hook's walk, if it was done ahead for this key
        let f = usize::from(v6);
        let ahead = |h: HookPoint, key: &Key| -> (u32, u32) {
            if st.ahead[i] && *key == st.key[i] {
                (st.ahead_pos[f][h as usize], st.first[i][h as usize])
            } else {
                (NO_MATCH, NO_MATCH)
            }
        };

        // raw PREROUTING: conntrack has not run, so --ctstate sees INVALID.
        key.ct = ct::INVALID;
        let mut notrack = false;
        let mut marks = Marks::default();
        if let Some(chain) = fam.hooks[HookPoint::RawPrerouting as usize] {
            let w = self.walk(
                HookPoint::RawPrerouting,
                fam,
                counters,
                chain,
                &key,
                frame,
                info,
                ingress,
                egress,
                (NO_MATCH, NO_MATCH),
                &mut marks,
            );
            if w.too_deep {
                return self.drop(DropReason::ChainTooDeep);
            }
            notrack = w.notrack;
            if !matches!(w.fin, Final::Accept) {
                return self.drop(DropReason::RawDrop);
            }
        }

        // conntrack
        let mut tracked = None;
        let mut state = CtState::Untracked;
        if !notrack {
            state = CtState::Invalid;
            if let Some(p) = &st.ct[i] {
                // written in place: a copy of the returned value stalls on store forwarding
                let t = if self.checksum && !ct_checksum_ok(frame, info) {
                    tracked.insert(self.shard.track_bad_checksum())
                } else {
                    match st.flow[i] {
                        Some((_, h)) if !matches!(p.l4, L4::IcmpError(_)) => {
                            tracked.insert(self.shard.track_hashed(p, h, now))
                        }
                        _ => tracked.insert(self.shard.track(p, now)),
                    }
                };
                state = t.state;
            }
        }
        let quoted = st.quote[i].as_ref();
        self.trace.ct_state = Some(state);
        if let Some(t) = tracked {
            if t.drop {
                let _ = self.shard.commit(t, false);
                return self.drop(match t.reason {
                    Some(conntrack::CtReason::ChainFull) => DropReason::CtChainFull,
                    _ => DropReason::CtTableFull,
                });
            }
        }
        key.ct = match state {
            CtState::New => ct::NEW,
            CtState::Established => ct::ESTABLISHED,
            CtState::Related => ct::RELATED,
            CtState::Invalid => ct::INVALID,
            CtState::Untracked => ct::UNTRACKED,
        };
        let entry = tracked.and_then(|t| t.entry);
        if let Some(id) = entry {
            marks.entry = Some(id);
            marks.ct = self.shard.mark(id);
        }
        // Only a connection's first packet (not yet confirmed) traverses the nat chains; a
        // retransmitted SYN is NEW too but must reuse the binding of its confirmed entry.
        // (Confirmed entries are the ones in the hash: no second lookup needed to tell.)
        let is_new = state == CtState::New && tracked.is_some_and(|t| t.is_unconfirmed());

        // The translation this packet gets: from an existing binding, or decided now.
        let cur = if v6 { None } else { Some(nat::current(info)) };
        let mut target = cur;
        let mut nat_kind = NatKind::None;
        if let (Some(id), Some(c), false) = (entry, cur, is_new) {
            let kind = self.shard.nat_kind(id);
            if kind != NatKind::None {
                nat_kind = kind;
                let dir = tracked.map(|t| t.dir).unwrap_or(Dir::Original);
                let other = self.shard.tuple(id, dir.other());
                if state == CtState::Related {
                    // errors: the quote becomes what the receiving endpoint sent
                    target = Some(Rewrite {
                        src: v4(&other.src),
                        dst: v4(&other.dst),
                        sport: other.sport,
                        dport: other.dport,
                    });
                } else {
                    target = Some(Rewrite {
                        src: v4(&other.dst),
                        dst: v4(&other.src),
                        sport: if info.l4_proto == ip_proto::ICMP {
                            other.sport
                        } else {
                            other.dport
                        },
                        dport: if info.l4_proto == ip_proto::ICMP {
                            c.dport
                        } else {
                            other.sport
                        },
                    });
                }
            }
        }
        if nat_kind != NatKind::None {
            key.ct |= match nat_kind {
                NatKind::Src => ct::SNAT,
                NatKind::Dst => ct::DNAT,
                NatKind::Both => ct::SNAT | ct::DNAT,
                NatKind::None => 0,
            };
        }

        // mangle PREROUTING: every packet, after conntrack, before DNAT.
        if let (true, Some(chain)) = (fam.mangles, fam.hooks[HookPoint::ManglePrerouting as usize])
        {
            if let Some(v) = self.mangle_hook(
                HookPoint::ManglePrerouting,
                fam,
                counters,
                chain,
                &key,
                frame,
                info,
                ingress,
                tracked,
                &mut marks,
            ) {
                return v;
            }
        }

        // nat PREROUTING: NEW connections only.
        let mut dnat = false;
        if is_new && !v6 {
            if let Some(chain) = fam.hooks[HookPoint::NatPrerouting as usize] {
                let w = self.walk(
                    HookPoint::NatPrerouting,
                    fam,
                    counters,
                    chain,
                    &key,
                    frame,
                    info,
                    ingress,
                    egress,
                    ahead(HookPoint::NatPrerouting, &key),
                    &mut marks,
                );
                match w.fin {
                    Final::Accept => {}
                    Final::Dnat(spec) => {
                        let t = target.as_mut().expect("IPv4 has a rewrite");
                        pick_dnat(t, &spec, info.l4_proto);
                        dnat = true;
                    }
                    _ => return self.reject_new(tracked, DropReason::NatDrop),
                }
            }
        }
        // filter FORWARD sees the destination translated, the source not yet.
        match (target, state == CtState::Related) {
            (Some(t), false) => {
                key.dst = u128::from(u32::from_be_bytes(t.dst));
                if matches!(info.l4_proto, ip_proto::TCP | ip_proto::UDP) {
                    key.dport = t.dport;
                }
            }
            // an error goes to the quoted packet's source, which is translated back
            (Some(t), true) if quoted.is_some_and(|q| q.src_v4() == info.dst_v4()) => {
                key.dst = u128::from(u32::from_be_bytes(t.src));
            }
            _ => {}
        }
        if let (true, Some(chain)) = (fam.mangles, fam.hooks[HookPoint::MangleForward as usize]) {
            if let Some(v) = self.mangle_hook(
                HookPoint::MangleForward,
                fam,
                counters,
                chain,
                &key,
                frame,
                info,
                ingress,
                tracked,
                &mut marks,
            ) {
                return v;
            }
        }
        if let Some(chain) = fam.hooks[HookPoint::FilterForward as usize] {
            let w = self.walk(
                HookPoint::FilterForward,
                fam,
                counters,
                chain,
                &key,
                frame,
                info,
                ingress,
                egress,
                ahead(HookPoint::FilterForward, &key),
                &mut marks,
            );
            if w.too_deep {
                return self.reject_new(tracked, DropReason::ChainTooDeep);
            }
            match w.fin {
                Final::Accept => {}
                Final::Reject(with) => {
                    if let Some(t) = tracked {
                        let _ = self.shard.commit(t, false);
                    }
                    return self.reject(buf, len, info, with);
                }
                _ => {
                    let r = if w.rule == POLICY {
                        DropReason::FilterPolicy
                    } else {
                        DropReason::FilterRule
                    };
                    return self.reject_new(tracked, r);
                }
            }
        }
        // security FORWARD (priority 50) after filter, then mangle POSTROUTING (-150) before
        // SNAT: both see the destination translated and the source not yet.
        for h in [HookPoint::SecurityForward, HookPoint::ManglePostrouting] {
            if !fam.mangles {
                break;
            }
            if let Some(chain) = fam.hooks[h as usize] {
                if let Some(v) = self.mangle_hook(
                    h, fam, counters, chain, &key, frame, info, ingress, tracked, &mut marks,
                ) {
                    return v;
                }
            }
        }
        // nat POSTROUTING: NEW connections only.
        let mut snat = false;
        if is_new && !v6 {
            if let Some(chain) = fam.hooks[HookPoint::NatPostrouting as usize] {
                let w = self.walk(
                    HookPoint::NatPostrouting,
                    fam,
                    counters,
                    chain,
                    &key,
                    frame,
                    info,
                    ingress,
                    egress,
                    ahead(HookPoint::NatPostrouting, &key),
                    &mut marks,
                );
                let spec = match w.fin {
                    Final::Accept => None,
                    Final::Snat(spec) => Some(spec),
                    Final::Masquerade { ports, random } => match rs.ports[usize::from(egress)].ipv4
                    {
                        Some(a) => Some(NatSpec {
                            addrs: Some((u32::from(a), u32::from(a))),
                            ports,
                            random,
                        }),
                        None => return self.reject_new(tracked, DropReason::NoMasqueradeAddress),
                    },
                    _ => return self.reject_new(tracked, DropReason::NatDrop),
                };
                if let Some(spec) = spec {
                    let t = target.as_mut().expect("IPv4 has a rewrite");
                    let (_, old_reply) = self
                        .shard
                        .tuples(entry.expect("new connections are tracked"));
                    if !self.pick_snat(t, &spec, info.l4_proto, &old_reply, now) {
                        return self.reject_new(tracked, DropReason::NatPortsExhausted);
                    }
                    snat = true;
                }
            }
        }
        if is_new && (dnat || snat) {
            let t = target.expect("IPv4 has a rewrite");
            let kind = match (snat, dnat) {
                (true, true) => NatKind::Both,
                (true, false) => NatKind::Src,
                _ => NatKind::Dst,
            };
            let tr = tracked.expect("new connections are tracked");
            let (_, old_reply) = self.shard.tuples(tr.entry.expect("tracked"));
            let reply = reply_tuple(&t, &old_reply, info.l4_proto);
            let _ = self.shard.set_nat(&tr, kind, reply);
            nat_kind = kind;
        }
        if let Some(t) = tracked {
            if let Err(r) = self.shard.confirm(t, true) {
                return self.drop(match r {
                    conntrack::CtReason::ChainFull => DropReason::CtChainFull,
                    _ => DropReason::CtClash,
                });
            }
        }
        if nat_kind != NatKind::None {
            let t = target.expect("NAT implies IPv4");
            if state == CtState::Related {
                if let Some(q) = quoted {
                    nat::rewrite_icmp_error(&mut buf[..len], info, q, &t);
                }
            } else if Some(t) != cur {
                nat::rewrite(&mut buf[..len], info, &t);
            }
        }
        self.stats.forwarded += 1;
        Verdict::Forward
    }

    /// The bridge's decision on a frame that is not plain unicast IP over Ethernet II (see
    /// [`crate::bridge`]): `Some` when it is decided here, `None` when its (innermost) IP
    /// packet goes on to conntrack and the rules, the tags and PPPoE header staying on.
    #[inline(never)]
    fn bridge_gate(&mut self, info: &FrameInfo, frame: &[u8]) -> Option<Verdict> {
        let p = self.bridge;
        if is_link_local_group(frame) {
            if !p.forward_link_local {
                return Some(self.drop(DropReason::LinkLocal));
            }
            self.stats.bridge[BridgeClass::LinkLocalForwarded.index()] += 1;
        }
        if info.encap & encap::VLAN != 0 {
            let (policy, filtered, passed, dropped) = if info.encap & encap::QINQ != 0 {
                (
                    p.qinq,
                    BridgeClass::QinqFiltered,
                    BridgeClass::QinqPassed,
                    DropReason::QinqDropped,
                )
            } else {
                (
                    p.vlan,
                    BridgeClass::VlanFiltered,
                    BridgeClass::VlanPassed,
                    DropReason::VlanDropped,
                )
            };
            match policy {
                TagPolicy::Drop => return Some(self.drop(dropped)),
                TagPolicy::Pass => {
                    self.stats.bridge[passed.index()] += 1;
                    self.stats.forwarded += 1;
                    return Some(Verdict::Forward);
                }
                TagPolicy::Filter => self.stats.bridge[filtered.index()] += 1,
            }
        }
        if info.encap & encap::PPPOE != 0 {
            if p.pppoe == PppoePolicy::Drop {
                return Some(self.drop(DropReason::PppoeDropped));
            }
            if info.is_ip() {
                self.stats.bridge[BridgeClass::PppoeFiltered.index()] += 1;
                return None;
            }
            // the parser put l3_offset just past the PPP protocol field
            let at = usize::from(info.l3_offset) - 2;
            if !ppp_proto::is_control(u16::from_be_bytes([frame[at], frame[at + 1]])) {
                return Some(self.drop(DropReason::PppoeDropped));
            }
            self.stats.bridge[BridgeClass::PppoeControl.index()] += 1;
        } else if info.is_ip() {
            return None;
        } else if info.ethertype == ethertype::PPPOE_DISCOVERY {
            if !p.pppoe_discovery {
                return Some(self.drop(DropReason::PppoeDiscoveryDropped));
            }
            self.stats.bridge[BridgeClass::PppoeDiscovery.index()] += 1;
        } else if info.ethertype != ethertype::ARP {
            if !p.other_ethertypes {
                return Some(self.drop(DropReason::EthertypeDropped));
            }
            self.stats.bridge[BridgeClass::OtherEthertype.index()] += 1;
        }
        self.stats.non_ip += 1;
        self.stats.forwarded += 1;
        Some(Verdict::Forward)
    }

    /// Walks a mangle or security hook (every packet, not only NEW ones): `None` when the packet
    /// goes on, the drop verdict otherwise. REJECT and the NAT targets cannot stand in these
    /// tables (the kernel refuses them), so a walk ends in ACCEPT or DROP only.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn mangle_hook(
        &mut self,
        hook: HookPoint,
        fam: &FamilyRules,
        counters: &RuleCounters,
        chain: u32,
        key: &Key,
        frame: &[u8],
        info: &FrameInfo,
        ingress: PortIdx,
        tracked: Option<Tracked>,
        marks: &mut Marks,
    ) -> Option<Verdict> {
        let w = self.walk(
            hook,
            fam,
            counters,
            chain,
            key,
            frame,
            info,
            ingress,
            ingress ^ 1,
            (NO_MATCH, NO_MATCH),
            marks,
        );
        if w.too_deep {
            return Some(self.reject_new(tracked, DropReason::ChainTooDeep));
        }
        match w.fin {
            Final::Accept => None,
            _ => Some(self.reject_new(
                tracked,
                if hook == HookPoint::SecurityForward {
                    DropReason::SecurityDrop
                } else {
                    DropReason::MangleDrop
                },
            )),
        }
    }

    fn reject_new(&mut self, tracked: Option<Tracked>, r: DropReason) -> Verdict {
        if let Some(t) = tracked {
            let _ = self.shard.commit(t, false);
        }
        self.drop(r)
    }

    fn reject(
        &mut self,
        buf: &mut [u8],
        len: usize,
        info: &FrameInfo,
        with: RejectWith,
    ) -> Verdict {
        let cap = buf.len().min(SCRATCH);
        let ident = self.ident;
        self.ident = self.ident.wrapping_add(1).max(1);
        match crate::reject::build(&buf[..len], info, with, ident, &mut self.scratch[..cap]) {
            Some(n) => {
                buf[..n].copy_from_slice(&self.scratch[..n]);
                self.stats.drops[DropReason::Reject.index()] += 1;
                self.stats.replies += 1;
                Verdict::Reply(n)
            }
            None => self.drop(DropReason::RejectSuppressed),
        }
    }

    /// SNAT/MASQUERADE: pick the address and a port (or ICMP id) whose reply tuple is free in
    /// this shard and hashes to this worker. `false` when none is left.
    fn pick_snat(
        &mut self,
        t: &mut Rewrite,
        spec: &NatSpec,
        proto: u8,
        old_reply: &Tuple,
        now: u64,
    ) -> bool {
        if let Some((lo, hi)) = spec.addrs {
            let h = u32::from_be_bytes(t.src) ^ u32::from_be_bytes(t.dst).rotate_left(7);
            t.src = (lo + h % (hi - lo).wrapping_add(1).max(1)).to_be_bytes();
            if hi.wrapping_sub(lo) == u32::MAX {
                t.src = h.to_be_bytes();
            }
        }
        let ported = matches!(proto, ip_proto::TCP | ip_proto::UDP | ip_proto::ICMP);
        let family = conntrack::Family::V4;
        let key_proto = proto;
        if !ported {
            return true;
        }
        let orig_port = t.sport;
        let (lo, hi) = match spec.ports {
            Some(r) => r,
            None if proto == ip_proto::ICMP => (0, 65535),
            None if orig_port == 0 => (0, 0),
            None if orig_port < 512 => (1, 511),
            None if orig_port < 1024 => (600, 1023),
            None => (1024, 65535),
        };
        let free = |w: &Worker, port: u16| -> bool {
            let cand = Rewrite { sport: port, ..*t };
            let reply = reply_tuple(&cand, old_reply, proto);
            w.shard.lookup(family, key_proto, &reply, now).is_none()
                && (w.workers == 1
                    || shard_of(flow_hash(&w.key, family, key_proto, &reply), w.workers) == w.index)
        };
        let in_range = orig_port >= lo && orig_port <= hi;
        if in_range && !spec.random && free(self, orig_port) {
            return true;
        }
        let size = u32::from(hi - lo) + 1;
        let start = if spec.random {
            self.next_rand()
        } else {
            u32::from_be_bytes(t.dst)
                ^ u32::from(t.dport).wrapping_mul(0x9e37_79b9)
                ^ u32::from(orig_port)
        } % size;
        for i in 0..size.min(128 * self.workers as u32) {
            let port = (lo as u32 + (start + i) % size) as u16;
            if free(self, port) {
                t.sport = port;
                return true;
            }
        }
        false
    }

    fn next_rand(&mut self) -> u32 {
        // xorshift64*: deterministic per worker, enough to spread --random ports.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }

    /// Walks a hook's chains from `chain`: jumps push, goto replaces, RETURN pops, the end of a
    /// built-in chain is its policy. LOG/NFLOG and rules without target continue.
    #[allow(clippy::too_many_arguments)]
    // Inlined: a returned `Walk` read back through memory cost a store-forwarding stall.
    #[inline(always)]
    fn walk(
        &mut self,
        hook: HookPoint,
        fam: &FamilyRules,
        counters: &RuleCounters,
        start: u32,
        key: &Key,
        frame: &[u8],
        info: &FrameInfo,
        ingress: PortIdx,
        egress: PortIdx,
        ahead: (u32, u32),
        marks: &mut Marks,
    ) -> Walk {
        let (mut ahead_pos, ahead_rule) = ahead;
        let bytes = u64::from(info.l3_len);
        let now = self.now;
        let mut depth = 0usize;
        let (mut cur, mut pos) = (start, 0u32);
        let mut notrack = false;
        let mut out = [NO_MATCH];
        loop {
            let chain = &fam.chains[cur as usize];
            let mut r = NO_MATCH;
            while (pos as usize) < chain.ct_prefix.len() {
                let c = chain.ct_prefix[pos as usize];
                if ((key.ct & c.mask) != 0) != c.negate {
                    r = pos;
                    break;
                }
                pos += 1;
            }
            if r == NO_MATCH && pos == ahead_pos && cur == start {
                // the lookup done ahead, for this chain, position and key (see `prepare`)
                r = ahead_rule;
                ahead_pos = NO_MATCH;
            } else if r == NO_MATCH && (pos as usize) < chain.rules.len() {
                chain.classifier.lookup_burst_with(
                    std::slice::from_ref(key),
                    &[pos],
                    &mut out,
                    |_, r| {
                        leaf_ok(
                            &chain.rules[r as usize].leaf,
                            key,
                            frame,
                            info,
                            now,
                            hook,
                            marks,
                        )
                    },
                );
                r = out[0];
            }
            if r == NO_MATCH {
                if depth == 0 {
                    {
                        // the trace is written here, from registers (see `Walk`)
                        self.trace.decided[hook as usize] = Some((start, POLICY));
                        return policy_of(fam, counters, start, bytes, notrack);
                    }
                }
                depth -= 1;
                (cur, pos) = self.stack[depth];
                continue;
            }
            let rule = &chain.rules[r as usize];
            counters.hit(rule.counter, bytes);
            let fin = match &rule.action {
                Action::Continue => None,
                Action::Notrack => {
                    notrack = true;
                    None
                }
                Action::Mark(x) => {
                    marks.pkt = x.apply(marks.pkt);
                    None
                }
                Action::Connmark(c) => {
                    if let Some(id) = marks.entry {
                        let (ct, pkt) = c.apply(marks.ct, marks.pkt);
                        if ct != marks.ct {
                            self.shard.set_mark(id, ct);
                        }
                        (marks.ct, marks.pkt) = (ct, pkt);
                    }
                    None
                }
                Action::Log(l) => {
                    self.emit_log(
                        LogKind::Log {
                            level: l.level,
                            flags: log_flags(l),
                        },
                        &l.prefix,
                        frame,
                        ingress,
                        egress,
                    );
                    None
                }
                Action::Nflog(n) => {
                    self.emit_log(
                        LogKind::Nflog { group: n.group },
                        &n.prefix,
                        frame,
                        ingress,
                        egress,
                    );
                    None
                }
                Action::Accept => Some(Final::Accept),
                Action::Drop => Some(Final::Drop),
                Action::Reject(w) => Some(Final::Reject(*w)),
                Action::Snat(s) => Some(Final::Snat(*s)),
                Action::Dnat(s) => Some(Final::Dnat(*s)),
                Action::Masquerade { ports, random } => Some(Final::Masquerade {
                    ports: *ports,
                    random: *random,
                }),
                Action::Return => {
                    if depth == 0 {
                        // RETURN at the top (also from a chain entered by -g): the policy
                        {
                            // the trace is written here, from registers (see `Walk`)
                            self.trace.decided[hook as usize] = Some((start, POLICY));
                            return policy_of(fam, counters, start, bytes, notrack);
                        }
                    }
                    depth -= 1;
                    (cur, pos) = self.stack[depth];
                    continue;
                }
                Action::Jump(c) => {
                    if depth == MAX_DEPTH {
                        self.trace.decided[hook as usize] = Some((cur, r));
                        return Walk {
                            fin: Final::Drop,
                            notrack,
                            rule: r,
                            too_deep: true,
                        };
                    }
                    self.stack[depth] = (cur, r + 1);
                    depth += 1;
                    (cur, pos) = (*c, 0);
                    continue;
                }
                Action::Goto(c) => {
                    (cur, pos) = (*c, 0);
                    continue;
                }
            };
            match fin {
                Some(fin) => {
                    self.trace.decided[hook as usize] = Some((cur, r));
                    return Walk {
                        fin,
                        notrack,
                        rule: r,
                        too_deep: false,
                    };
                }
                None => pos = r + 1,
            }
        }
    }

    fn emit_log(
        &mut self,
        kind: LogKind,
        prefix: &str,
        frame: &[u8],
        ingress: PortIdx,
        egress: PortIdx,
    ) {
        self.stats.log_events += 1;
        let Some(q) = self.log.as_mut() else { return };
        match q.write_chunk_uninit(1) {
            Ok(chunk) => {
                let ev = LogEvent::new(kind, prefix, frame, ingress, egress).at(self.now);
                chunk.fill_from_iter(std::iter::once(ev));
            }
            Err(_) => self.stats.log_overflow += 1,
        }
    }
}

/// Slots of the fragment table (direct-mapped; a collision forgets the older datagram).
const FRAG_SLOTS: usize = 1024;
/// How long a first fragment's decision waits for the rest (the kernel's ipfrag_time is 30 s).
const FRAG_TIMEOUT_NS: u64 = 30_000_000_000;

/// A datagram's fragments share addresses, protocol and identification.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct FragKey {
    src: [u8; 16],
    dst: [u8; 16],
    ident: u32,
    proto: u8,
    v6: bool,
}

impl FragKey {
    fn of(info: &FrameInfo) -> FragKey {
        FragKey {
            src: info.src,
            dst: info.dst,
            ident: info.frag_ident,
            proto: info.l4_proto,
            v6: info.family == Family::Ipv6,
        }
    }
}

fn frag_slot(k: &FragKey) -> usize {
    let a = u128::from_be_bytes(k.src) ^ u128::from_be_bytes(k.dst).rotate_left(17);
    let h = (a as u64 ^ (a >> 64) as u64 ^ u64::from(k.ident) << 8 ^ u64::from(k.proto))
        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (h >> 54) as usize % FRAG_SLOTS
}

#[derive(Clone, Copy, Default)]
struct FragEntry {
    key: FragKey,
    expires: u64,
    used: bool,
    forward: bool,
    /// IPv4 addresses the first fragment left with (NAT), to give the later ones.
    src4: [u8; 4],
    dst4: [u8; 4],
}

/// What the first fragment of each recent datagram became.
struct FragTable {
    slots: [FragEntry; FRAG_SLOTS],
}

impl FragTable {
    fn new() -> FragTable {
        FragTable {
            slots: [FragEntry::default(); FRAG_SLOTS],
        }
    }

    fn record(&mut self, slot: usize, key: FragKey, frame: &[u8], v: Verdict, now: u64) {
        let mut e = FragEntry {
            key,
            expires: now + FRAG_TIMEOUT_NS,
            used: true,
            ..FragEntry::default()
        };
        e.forward = v == Verdict::Forward;
        if e.forward && !key.v6 {
            if let Ok(i) = wire::parse_frame(frame) {
                e.src4 = i.src_v4();
                e.dst4 = i.dst_v4();
            }
        }
        self.slots[slot] = e;
    }

    /// The decision for a later fragment, with its addresses rewritten as its first fragment's
    /// were; `None` when the first fragment was not seen (then the fragment is classified on its
    /// own, as INVALID to conntrack).
    fn follow(
        &mut self,
        slot: usize,
        key: &FragKey,
        frame: &mut [u8],
        info: &FrameInfo,
        now: u64,
    ) -> Option<Verdict> {
        let e = self.slots[slot];
        if !e.used || e.key != *key || now >= e.expires {
            return None;
        }
        if !info.more_fragments {
            // the last fragment: the datagram is complete
            self.slots[slot].used = false;
        }
        if !e.forward {
            return Some(Verdict::Drop(DropReason::FragmentOfDropped));
        }
        if !key.v6 && (e.src4 != info.src_v4() || e.dst4 != info.dst_v4()) {
            let rw = Rewrite {
                src: e.src4,
                dst: e.dst4,
                sport: 0,
                dport: 0,
            };
            nat::rewrite(frame, info, &rw);
        }
        Some(Verdict::Forward)
    }
}

/// The end of a hook's walk: the policy of the built-in chain it started in (a chain reached by
/// `-g` from it falls back there too).
fn policy_of(
    fam: &FamilyRules,
    counters: &RuleCounters,
    start: u32,
    bytes: u64,
    notrack: bool,
) -> Walk {
    let chain = &fam.chains[start as usize];
    counters.hit(chain.policy_counter, bytes);
    let fin = match chain.policy {
        Some(Policy::Drop) => Final::Drop,
        _ => Final::Accept,
    };
    Walk {
        fin,
        notrack,
        rule: POLICY,
        too_deep: false,
    }
}

fn log_flags(l: &rules::LogTarget) -> u8 {
    u8::from(l.tcp_sequence)
        | u8::from(l.tcp_options) << 1
        | u8::from(l.ip_options) << 2
        | u8::from(l.macdecode) << 3
}

fn v4(a: &[u8; 16]) -> [u8; 4] {
    [a[0], a[1], a[2], a[3]]
}

fn addr16(a: [u8; 4]) -> [u8; 16] {
    let mut b = [0; 16];
    b[..4].copy_from_slice(&a);
    b
}

/// The reply tuple of a connection whose first packet leaves as `t`. For ICMP the identifier
/// is the "port" of both directions and the reply type/code comes from the old reply tuple.
fn reply_tuple(t: &Rewrite, old_reply: &Tuple, proto: u8) -> Tuple {
    if proto == ip_proto::ICMP {
        Tuple {
            src: addr16(t.dst),
            dst: addr16(t.src),
            sport: t.sport,
            dport: old_reply.dport,
        }
    } else {
        Tuple {
            src: addr16(t.dst),
            dst: addr16(t.src),
            sport: t.dport,
            dport: t.sport,
        }
    }
}

fn pick_dnat(t: &mut Rewrite, spec: &NatSpec, proto: u8) {
    if let Some((lo, hi)) = spec.addrs {
        let h = u32::from_be_bytes(t.src);
        t.dst = (lo.wrapping_add(h % hi.wrapping_sub(lo).wrapping_add(1).max(1))).to_be_bytes();
    }
    if let (Some((lo, hi)), true) = (spec.ports, matches!(proto, ip_proto::TCP | ip_proto::UDP)) {
        if t.dport < lo || t.dport > hi {
            let size = u32::from(hi - lo) + 1;
            t.dport = (u32::from(lo) + u32::from(t.sport) % size) as u16;
        }
    }
}

fn key_of(info: &FrameInfo, iif: u8, oif: u8) -> Key {
    let (src, dst) = match info.family {
        Family::Ipv4 => (
            u128::from(u32::from_be_bytes(info.src_v4())),
            u128::from(u32::from_be_bytes(info.dst_v4())),
        ),
        _ => (u128::from_be_bytes(info.src), u128::from_be_bytes(info.dst)),
    };
    let frag = info.is_later_fragment();
    let l4 = !frag && info.has_l4_header();
    Key {
        src,
        dst,
        sport: if l4 { info.src_port } else { 0 },
        dport: if l4 { info.dst_port } else { 0 },
        proto: info.l4_proto,
        iif,
        oif,
        ct: 0,
        icmp_type: if l4 { info.icmp_type } else { 0 },
        icmp_code: if l4 { info.icmp_code } else { 0 },
        tcp_flags: if l4 { info.tcp_flags.0 } else { 0 },
        frag,
    }
}

/// The L4 checksum as netfilter's conntrack checks it (`nf_conntrack_checksum`, PREROUTING):
/// TCP, UDP, ICMP and ICMPv6; a UDP checksum of zero means "none" and passes over IPv4 and
/// IPv6 alike (`udp_error` returns before the sum). Fragments are not verified (the kernel
/// verifies the reassembled packet; fwd does not reassemble).
fn ct_checksum_ok(frame: &[u8], info: &FrameInfo) -> bool {
    if info.family == Family::Ipv6
        && info.l4_proto == ip_proto::UDP
        && !info.is_fragment
        && frame[usize::from(info.l4_offset) + 6..][..2] == [0, 0]
    {
        return true;
    }
    wire::verify_l4_checksum(frame, info).is_ok()
}

fn ct_family(info: &FrameInfo) -> conntrack::Family {
    if info.family == Family::Ipv6 {
        conntrack::Family::V6
    } else {
        conntrack::Family::V4
    }
}

/// The conntrack view of a frame (and, for an ICMP error, the quoted packet's parse);
/// `None` for what conntrack cannot see (a later fragment, a malformed quote): INVALID.
fn ct_packet(frame: &[u8], info: &FrameInfo, quote: &mut Option<FrameInfo>) -> Option<CtPacket> {
    if info.is_later_fragment()
        || !info.has_l4_header()
            && matches!(
                info.l4_proto,
                ip_proto::TCP | ip_proto::UDP | ip_proto::ICMP | ip_proto::ICMPV6
            )
    {
        return None;
    }
    let family = ct_family(info);
    let l4_off = usize::from(info.l4_offset);
    let l4 = match info.l4_proto {
        ip_proto::TCP => {
            let h = &frame[l4_off..info.l3_end()];
            let doff = usize::from(h[12] >> 4) * 4;
            let mut seg = TcpSegment {
                sport: info.src_port,
                dport: info.dst_port,
                flags: info.tcp_flags.0,
                seq: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                ack: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
                window: u16::from_be_bytes([h[14], h[15]]),
                wscale: None,
                sack_perm: false,
                sack: None,
                payload_len: (h.len() - doff) as u32,
            };
            for o in wire::tcp::TcpOptions::new(&h[20..doff]).flatten() {
                match o {
                    TcpOption::WindowScale(s) => seg.wscale = Some(s),
                    TcpOption::SackPermitted => seg.sack_perm = true,
                    TcpOption::Sack(blocks) => {
                        for (_, right) in blocks.iter() {
                            seg.sack = Some(seg.sack.map_or(right, |r: u32| {
                                if right.wrapping_sub(r) as i32 > 0 {
                                    right
                                } else {
                                    r
                                }
                            }));
                        }
                    }
                    _ => {}
                }
            }
            L4::Tcp(seg)
        }
        ip_proto::UDP => L4::Udp {
            sport: info.src_port,
            dport: info.dst_port,
        },
        ip_proto::ICMP | ip_proto::ICMPV6
            if (info.l4_proto == ip_proto::ICMP) == (info.family == Family::Ipv4) =>
        {
            if conntrack::icmp_is_error(family, info.icmp_type) {
                let q = parse_embedded(&frame[l4_off + 8..info.l3_end()], info.family).ok()?;
                if !q.is_ip() || q.is_later_fragment() {
                    return None;
                }
                let (sport, dport) = match q.l4_proto {
                    ip_proto::ICMP | ip_proto::ICMPV6 => (
                        q.icmp_ident,
                        u16::from(q.icmp_type) << 8 | u16::from(q.icmp_code),
                    ),
                    ip_proto::TCP | ip_proto::UDP => (q.src_port, q.dst_port),
                    _ => (0, 0),
                };
                let inner = Tuple {
                    src: q.src,
                    dst: q.dst,
                    sport,
                    dport,
                };
                let err = IcmpErrorInfo {
                    ty: info.icmp_type,
                    code: info.icmp_code,
                    inner_proto: q.l4_proto,
                    inner,
                };
                let p = CtPacket {
                    family,
                    proto: info.l4_proto,
                    src: info.src,
                    dst: info.dst,
                    l4: L4::IcmpError(err),
                };
                *quote = Some(q);
                return Some(p);
            }
            L4::Icmp {
                ty: info.icmp_type,
                code: info.icmp_code,
                id: info.icmp_ident,
            }
        }
        _ => L4::Other,
    };
    Some(CtPacket {
        family,
        proto: info.l4_proto,
        src: info.src,
        dst: info.dst,
        l4,
    })
}

fn leaf_ok(
    checks: &[LeafCheck],
    key: &Key,
    frame: &[u8],
    info: &FrameInfo,
    now: u64,
    hook: HookPoint,
    marks: &Marks,
) -> bool {
    checks.iter().all(|c| match c {
        LeafCheck::Masked {
            dst,
            value,
            mask,
            negated,
        } => {
            let a = if *dst { key.dst } else { key.src };
            ((a & mask) == *value) != *negated
        }
        LeafCheck::Range {
            dst,
            lo,
            hi,
            negated,
        } => {
            let a = if *dst { key.dst } else { key.src };
            (*lo <= a && a <= *hi) != *negated
        }
        LeafCheck::Port { dst, m } => {
            !key.frag && m.matches(if *dst { key.dport } else { key.sport })
        }
        LeafCheck::Ct(m) => ((key.ct & m.mask) != 0) != m.negate,
        LeafCheck::Multiport {
            dir,
            ports,
            negated,
        } => {
            if key.frag {
                return false;
            }
            let hit = |p: u16| ports.iter().any(|&(lo, hi)| lo <= p && p <= hi);
            let any = match dir {
                MultiportDir::Source => hit(key.sport),
                MultiportDir::Destination => hit(key.dport),
                MultiportDir::Either => hit(key.sport) || hit(key.dport),
            };
            any != *negated
        }
        LeafCheck::TcpOption { kind, negated } => {
            if key.frag || info.l4_proto != ip_proto::TCP {
                return false;
            }
            let t = usize::from(info.l4_offset);
            let doff = usize::from(frame[t + 12] >> 4) * 4;
            let mut i = t + 20;
            let end = t + doff;
            let mut found = false;
            while i < end {
                let k = frame[i];
                if k == 0 {
                    break;
                }
                if k == *kind {
                    found = true;
                    break;
                }
                if k == 1 {
                    i += 1;
                    continue;
                }
                let l = usize::from(*frame.get(i + 1).unwrap_or(&0));
                if l < 2 {
                    break;
                }
                i += l;
            }
            found != *negated
        }
        LeafCheck::Mac { addr, negated } => (frame[6..12] == addr[..]) != *negated,
        LeafCheck::Length { min, max, negated } => {
            let l = match info.family {
                Family::Ipv6 => info.l3_len,
                _ => info.l3_len,
            };
            (*min <= l && l <= *max) != *negated
        }
        LeafCheck::Ttl { op, value } => {
            let t = info.ttl;
            match op {
                TtlOp::Eq => t == *value,
                TtlOp::Ne => t != *value,
                TtlOp::Lt => t < *value,
                TtlOp::Gt => t > *value,
            }
        }
        LeafCheck::Proto(p) => p.matches(frame, info),
        LeafCheck::Mark(m) => m.matches(marks.pkt),
        LeafCheck::Connmark(m) => marks.entry.is_some() && m.matches(marks.ct),
        LeafCheck::Limit(bucket) => bucket.take(now),
        LeafCheck::Stateless(s) => s.ok(frame, info, key.iif, key.oif, hook),
        LeafCheck::Recent(r) => {
            r.eval(key.src, key.dst, info.family == Family::Ipv6, info.ttl, now)
        }
        LeafCheck::Statistic(s) => s.eval(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::tests::{cfg, v4 as parse_v4};
    use crate::compile::{compile, CompileConfig};
    use wire::builder::{FrameBuilder, IpPair, TcpSpec};
    use wire::parse_frame;
    use wire::tcp::TcpFlags;

    const C: [u8; 4] = [198, 18, 0, 1];
    const S: [u8; 4] = [198, 18, 0, 2];
    const S3: [u8; 4] = [198, 18, 0, 3];
    const A: PortIdx = 0;
    const B: PortIdx = 1;
    const SEC: u64 = 1_000_000_000;

    fn worker_for(text: &str) -> Worker {
        worker_cfg(text, &cfg())
    }

    fn worker_cfg(text: &str, c: &CompileConfig) -> Worker {
        let compiled = if text.is_empty() {
            Compiled::accept_all(c)
        } else {
            compile(Some(&parse_v4(text)), None, c).unwrap()
        };
        let rules = Arc::new(ArcSwap::from_pointee(compiled));
        Worker::new(rules, &conntrack::Config::default(), 1024, 0, 1, 0)
    }

    fn run(w: &mut Worker, ingress: PortIdx, frame: &[u8], now: u64) -> (Verdict, Vec<u8>) {
        let mut buf = vec![0u8; 2048];
        buf[..frame.len()].copy_from_slice(frame);
        let v = w.process(ingress, &mut buf, frame.len(), now);
        let n = match v {
            Verdict::Reply(n) => n,
            _ => frame.len(),
        };
        buf.truncate(n);
        (v, buf)
    }

    fn ip(a: [u8; 4], b: [u8; 4]) -> IpPair {
        IpPair::V4(a, b)
    }

    fn tcp(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, flags: u8, seq: u32, ack: u32) -> Vec<u8> {
        FrameBuilder::default().tcp(
            ip(src, dst),
            &TcpSpec {
                src_port: sp,
                dst_port: dp,
                seq,
                ack,
                flags: TcpFlags(flags),
                window: 64240,
                options: vec![],
                payload: b"",
            },
        )
    }

    fn valid(frame: &[u8]) {
        let info = parse_frame(frame).unwrap();
        wire::verify_ipv4_header(frame, &info).unwrap();
        wire::verify_l4_checksum(frame, &info).unwrap();
    }

    const FILTER_HDR: &str =
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n";
    const NAT_HDR: &str = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n";

    fn stateful() -> String {
        format!(
            "{FILTER_HDR}-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
             -A FORWARD -i fw-c -m conntrack --ctstate NEW -j ACCEPT\nCOMMIT\n"
        )
    }

    #[test]
    fn limit_accepts_a_burst_then_the_average_rate_and_spends_no_token_on_other_misses() {
        let mut w = worker_for(&format!(
            "{FILTER_HDR}-A FORWARD -p udp -m udp --dport 53 -m limit --limit 2/sec --limit-burst 2 -j ACCEPT\nCOMMIT\n"
        ));
        let dns = |sp: u16| FrameBuilder::default().udp(ip(C, S), sp, 53, b"q");
        let other = FrameBuilder::default().udp(ip(C, S), 1000, 54, b"q");
        // a packet the rule's port match refuses spends no token
        assert!(matches!(run(&mut w, A, &other, SEC).0, Verdict::Drop(_)));
        let verdicts: Vec<Verdict> = (0..4)
            .map(|i| run(&mut w, A, &dns(2000 + i), SEC).0)
            .collect();
        assert_eq!(
            verdicts.iter().filter(|v| **v == Verdict::Forward).count(),
            2,
            "{verdicts:?}"
        );
        assert!(matches!(
            run(&mut w, A, &dns(3000), SEC + SEC / 4).0,
            Verdict::Drop(_)
        ));
        assert_eq!(
            run(&mut w, A, &dns(3001), SEC + SEC / 2).0,
            Verdict::Forward
        );
    }

    /// Forwarded or dropped, for the stateless-match tests.
    fn passes(w: &mut Worker, ingress: PortIdx, frame: &[u8]) -> bool {
        match run(w, ingress, frame, SEC).0 {
            Verdict::Forward => true,
            Verdict::Drop(_) => false,
            v => panic!("unexpected verdict {v:?}"),
        }
    }

    #[test]
    fn addrtype_local_is_a_port_address_and_broadcast_the_limited_one() {
        // fw-c has 198.18.0.253, fw-s 198.18.0.254 (see `cfg`)
        let mut w = worker_for(&format!(
            "{FILTER_HDR}-A FORWARD -m addrtype --dst-type LOCAL -j DROP\n\
             -A FORWARD -m addrtype --dst-type BROADCAST,MULTICAST -j DROP\n\
             -A FORWARD -m addrtype ! --src-type UNICAST -j DROP\n-A FORWARD -j ACCEPT\nCOMMIT\n"
        ));
        let b = FrameBuilder::default();
        assert!(passes(&mut w, A, &b.udp(ip(C, S), 1, 2, b"x")));
        assert!(!passes(
            &mut w,
            A,
            &b.udp(ip(C, [198, 18, 0, 254]), 1, 2, b"x")
        ));
        assert!(!passes(
            &mut w,
            A,
            &b.udp(ip(C, [198, 18, 0, 253]), 1, 2, b"x")
        ));
        assert!(!passes(&mut w, A, &b.udp(ip(C, [255; 4]), 1, 2, b"x")));
        assert!(!passes(
            &mut w,
            A,
            &b.udp(ip(C, [224, 0, 0, 9]), 1, 2, b"x")
        ));
        // a loopback source is LOCAL, not UNICAST
        assert!(!passes(
            &mut w,
            A,
            &b.udp(ip([127, 0, 0, 1], S), 1, 2, b"x")
        ));
        assert_eq!(w.stats().drops[DropReason::FilterRule.index()], 5);
        // --limit-iface-in: LOCAL only for the input port's own address
        let mut w = worker_for(&format!(
            "{FILTER_HDR}-A FORWARD -m addrtype --dst-type LOCAL --limit-iface-in -j DROP\n-A FORWARD -j ACCEPT\nCOMMIT\n"
        ));
        assert!(!passes(
            &mut w,
            A,
            &b.udp(ip(C, [198, 18, 0, 253]), 1, 2, b"x")
        ));
        assert!(passes(
            &mut w,
            A,
            &b.udp(ip(C, [198, 18, 0, 254]), 1, 2, b"x")
        ));
    }

    #[test]
    fn pkttype_reads_the_destination_mac() {
        let mut w = worker_for(&format!(
            "{FILTER_HDR}-A FORWARD -m pkttype --pkt-type broadcast -j DROP\n\
             -A FORWARD -m pkttype ! --pkt-type unicast -j DROP\n-A FORWARD -j ACCEPT\nCOMMIT\n"
        ));
        let mut b = FrameBuilder::default();
        assert!(passes(&mut w, A, &b.udp(ip(C, S), 1, 2, b"x")));
        b.dst_mac = wire::ethernet::MacAddr::BROADCAST;
        assert!(!passes(&mut w, A, &b.udp(ip(C, S), 1, 2, b"x")));
        b.dst_mac = wire::ethernet::MacAddr([0x01, 0, 0x5e, 0, 0, 9]);
        assert!(!passes(&mut w, A, &b.udp(ip(C, S), 1, 2, b"x")));
    }

    #[test]
    fn tos_dscp_and_ecn_read_the_ds_field_and_tcp_flags() {
        let mut w = worker_for(&format!(
            "{FILTER_HDR}-A FORWARD -m dscp --dscp-class EF -j ACCEPT\n\
             -A FORWARD -m tos --tos Minimize-Delay -j ACCEPT\n\
             -A FORWARD -m ecn --ecn-ip-ect 3 -j ACCEPT\n\
             -A FORWARD -p tcp -m ecn --ecn-tcp-ece ! --ecn-tcp-cwr -j ACCEPT\nCOMMIT\n"
        ));
        let mut b = FrameBuilder::default();
        assert!(!passes(&mut w, A, &b.udp(ip(C, S), 1, 2, b"x")));
        b.tos = 0xb8; // EF
        assert!(passes(&mut w, A, &b.udp(ip(C, S), 1, 2, b"x")));
        b.tos = 0x40 | 0x10; // Minimize-Delay (mask 0x3f: precedence ignored)
        assert!(passes(&mut w, A, &b.udp(ip(C, S), 1, 2, b"x")));
        b.tos = 0x13; // CE
        assert!(passes(&mut w, A, &b.udp(ip(C, S), 1, 2, b"x")));
        b.tos = 0;
        let syn = |flags: u8| {
            b.tcp(
                ip(C, S),
                &TcpSpec {
                    src_port: 1000,
                    dst_port: 80,
                    seq: 1,
                    ack: 0,
                    flags: TcpFlags(flags),
                    window: 100,
                    options: vec![],
                    payload: b"",
                },
            )
        };
        assert!(passes(&mut w, A, &syn(0x42))); // SYN+ECE
        assert!(!passes(&mut w, A, &syn(0xc2))); // SYN+ECE+CWR
        assert!(!passes(&mut w, A, &syn(0x02)));
    }

    #[test]
    fn physdev_names_the_ports_and_knows_the_output_only_from_forward() {
        let text = format!(
            "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
             -A PREROUTING -m physdev --physdev-is-bridged -j DROP\n\
             -A PREROUTING -m physdev --physdev-out fw-c -j NOTRACK\nCOMMIT\n\
             {FILTER_HDR}-A FORWARD -m physdev --physdev-in fw-c --physdev-out fw-s --physdev-is-bridged -j ACCEPT\n\
             -A FORWARD -m physdev --physdev-in fw-+ ! --physdev-out fw-s -j REJECT\nCOMMIT\n"
        );
        let mut w = worker_for(&text);
        let b = FrameBuilder::default();
        // PREROUTING: not yet bridged, and --physdev-out is skipped (NOTRACK, not a drop)
        assert!(passes(&mut w, A, &b.udp(ip(C, S), 1, 2, b"x")));
        assert_eq!(w.trace().ct_state, Some(CtState::Untracked));
        // from fw-s: the first FORWARD rule does not hold, the second's `! --physdev-out
        // fw-s` holds (out is fw-c) and rejects
        assert!(matches!(
            run(&mut w, B, &b.udp(ip(S, C), 1, 2, b"x"), SEC).0,
            Verdict::Reply(_)
        ));
    }

    #[test]
    fn host_only_matches_never_match_a_forwarded_packet() {
        let raw = "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n";
        let accept = format!("{FILTER_HDR}-A FORWARD -j ACCEPT\nCOMMIT\n");
        let b = FrameBuilder::default();
        let udp = b.udp(ip(C, S), 1, 2, b"x");
        for (rule, fires) in [
            ("-m socket", false),
            ("-m socket --transparent", false),
            ("-m rpfilter --loose", false),
            ("-m rpfilter --invert", true),
        ] {
            let mut w = worker_for(&format!(
                "{raw}-A PREROUTING {rule} -j DROP\nCOMMIT\n{accept}"
            ));
            assert_eq!(passes(&mut w, A, &udp), !fires, "{rule}");
        }
        // owner without a socket: `(match ^ invert) == 0`, so only all-negated options hold
        for (rule, fires) in [
            ("-m owner --uid-owner 0", false),
            ("-m owner ! --uid-owner 0 --gid-owner 0", false),
            ("-m owner ! --uid-owner 0 ! --socket-exists", true),
            ("-m cgroup ! --cgroup 1", false),
        ] {
            let mut w = worker_for(&format!(
                "{NAT_HDR}-A POSTROUTING {rule} -j SNAT --to-source 198.18.0.9\nCOMMIT\n{accept}"
            ));
            let (v, out) = run(&mut w, A, &udp, SEC);
            assert_eq!(v, Verdict::Forward);
            assert_eq!(out[26..30] == [198, 18, 0, 9], fires, "{rule}");
        }
    }

    #[test]
    fn stateful_ruleset_lets_replies_in_and_blocks_new_from_the_server() {
        let mut w = worker_for(&stateful());
        let syn = tcp(C, S, 40000, 80, 0x02, 100, 0);
        assert_eq!(run(&mut w, A, &syn, SEC).0, Verdict::Forward);
        assert_eq!(w.trace().ct_state, Some(CtState::New));
        let synack = tcp(S, C, 80, 40000, 0x12, 500, 101);
        let (v, out) = run(&mut w, B, &synack, SEC + 1000);
        assert_eq!(v, Verdict::Forward);
        assert_eq!(out, synack, "no NAT: the frame is untouched");
        assert_eq!(w.trace().ct_state, Some(CtState::Established));
        // a new connection from the server side: the policy drops it
        let rsyn = tcp(S, C, 22, 50000, 0x02, 1, 0);
        assert_eq!(
            run(&mut w, B, &rsyn, 2 * SEC).0,
            Verdict::Drop(DropReason::FilterPolicy)
        );
        assert_eq!(w.stats().drops[DropReason::FilterPolicy.index()], 1);
        // a dropped NEW packet leaves no connection behind
        assert_eq!(w.shard().len(), 1);
        // UDP to a closed port: the ICMP error is RELATED and reaches the client
        let b = FrameBuilder::default();
        let q = b.udp(ip(C, S), 5000, 53, b"q");
        assert_eq!(run(&mut w, A, &q, 3 * SEC).0, Verdict::Forward);
        let err = b.icmp_error(ip(S, C), 3, 3, 0, &q[14..]);
        assert_eq!(run(&mut w, B, &err, 3 * SEC + 5).0, Verdict::Forward);
        assert_eq!(w.trace().ct_state, Some(CtState::Related));
        // the same error without a connection is INVALID and dropped
        let stray = b.icmp_error(ip(S, C), 3, 3, 0, &b.udp(ip(C, S), 5001, 53, b"q")[14..]);
        assert_eq!(
            run(&mut w, B, &stray, 4 * SEC).0,
            Verdict::Drop(DropReason::FilterPolicy)
        );
        assert_eq!(w.trace().ct_state, Some(CtState::Invalid));
    }

    #[test]
    fn masquerade_rewrites_both_directions_and_binds_in_conntrack() {
        let text = format!("{NAT_HDR}-A POSTROUTING -o fw-s -j MASQUERADE\nCOMMIT\n");
        let mut w = worker_for(&text);
        let syn = tcp(C, S, 40000, 80, 0x02, 100, 0);
        let (v, out) = run(&mut w, A, &syn, SEC);
        assert_eq!(v, Verdict::Forward);
        valid(&out);
        let info = parse_frame(&out).unwrap();
        assert_eq!(info.src_v4(), [198, 18, 0, 254]);
        assert_eq!(
            (info.src_port, info.dst_port),
            (40000, 80),
            "a unique port is kept"
        );
        let synack = tcp(S, [198, 18, 0, 254], 80, 40000, 0x12, 500, 101);
        let (v, back) = run(&mut w, B, &synack, SEC + 10);
        assert_eq!(v, Verdict::Forward);
        valid(&back);
        assert_eq!(back, tcp(S, C, 80, 40000, 0x12, 500, 101));
        let mut snaps = Vec::new();
        w.shard()
            .snapshot(&conntrack::Filter::default(), SEC + 10, &mut snaps);
        assert_eq!(snaps.len(), 1);
        assert_eq!(snaps[0].nat, NatKind::Src);
        assert_eq!(snaps[0].reply.dst[..4], [198, 18, 0, 254]);
        assert_eq!(snaps[0].orig.src[..4], C);
        // a second client with the same source port gets another port
        let syn2 = tcp([198, 18, 0, 9], S, 40000, 80, 0x02, 7, 0);
        let (_, out2) = run(&mut w, A, &syn2, 2 * SEC);
        let i2 = parse_frame(&out2).unwrap();
        assert_eq!(i2.src_v4(), [198, 18, 0, 254]);
        assert_ne!(i2.src_port, 40000);
        assert!(i2.src_port >= 1024);
        valid(&out2);
    }

    #[test]
    fn retransmitted_syn_reuses_the_binding() {
        let text = format!("{NAT_HDR}-A POSTROUTING -o fw-s -j MASQUERADE\nCOMMIT\n");
        let mut w = worker_for(&text);
        let syn = tcp(C, S, 40000, 80, 0x02, 100, 0);
        let (_, first) = run(&mut w, A, &syn, SEC);
        let (v, again) = run(&mut w, A, &syn, 2 * SEC);
        assert_eq!(v, Verdict::Forward);
        assert_eq!(again, first);
        assert_eq!(
            w.trace().decided[HookPoint::NatPostrouting as usize],
            None,
            "no second nat traversal"
        );
        // also when the first packet's port had to change
        let (_, o1) = run(
            &mut w,
            A,
            &tcp([198, 18, 0, 9], S, 40000, 80, 0x02, 7, 0),
            3 * SEC,
        );
        let (_, o2) = run(
            &mut w,
            A,
            &tcp([198, 18, 0, 9], S, 40000, 80, 0x02, 7, 0),
            4 * SEC,
        );
        assert_eq!(o1, o2);
        assert_ne!(parse_frame(&o1).unwrap().src_port, 40000);
    }

    #[test]
    fn dnat_port_forward_and_its_replies() {
        let text = format!(
            "{NAT_HDR}-A PREROUTING -d 198.18.0.2/32 -i fw-c -p tcp -m tcp --dport 8080 -j DNAT --to-destination 198.18.0.3:80\nCOMMIT\n\
             {FILTER_HDR}-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A FORWARD -d 198.18.0.3/32 -p tcp -m tcp --dport 80 -j ACCEPT\nCOMMIT\n"
        );
        let mut w = worker_for(&text);
        let (v, out) = run(&mut w, A, &tcp(C, S, 40000, 8080, 0x02, 1, 0), SEC);
        assert_eq!(
            v,
            Verdict::Forward,
            "filter sees the translated destination"
        );
        assert_eq!(out, tcp(C, S3, 40000, 80, 0x02, 1, 0));
        let (v, back) = run(&mut w, B, &tcp(S3, C, 80, 40000, 0x12, 9, 2), SEC + 1);
        assert_eq!(v, Verdict::Forward);
        assert_eq!(back, tcp(S, C, 8080, 40000, 0x12, 9, 2));
        // later packets of the connection reuse the binding without traversing nat
        let (_, out) = run(&mut w, A, &tcp(C, S, 40000, 8080, 0x10, 2, 10), SEC + 2);
        assert_eq!(out, tcp(C, S3, 40000, 80, 0x10, 2, 10));
        assert_eq!(w.trace().decided[HookPoint::NatPrerouting as usize], None);
        // direct access to the real server on 8080 is not forwarded
        assert_eq!(
            run(&mut w, A, &tcp(C, S3, 40001, 8080, 0x02, 1, 0), SEC * 2).0,
            Verdict::Drop(DropReason::FilterPolicy)
        );
    }

    #[test]
    fn icmp_error_about_a_snat_connection_is_translated_back() {
        let text =
            format!("{NAT_HDR}-A POSTROUTING -o fw-s -j SNAT --to-source 198.18.0.200\nCOMMIT\n");
        let mut w = worker_for(&text);
        let b = FrameBuilder::default();
        let q = b.udp(ip(C, S), 5000, 53, b"query");
        let (_, out) = run(&mut w, A, &q, SEC);
        assert_eq!(out, b.udp(ip([198, 18, 0, 200], S), 5000, 53, b"query"));
        let err = b.icmp_error(ip(S, [198, 18, 0, 200]), 3, 3, 0, &out[14..]);
        let (v, back) = run(&mut w, B, &err, SEC + 1);
        assert_eq!(v, Verdict::Forward);
        assert_eq!(back, b.icmp_error(ip(S, C), 3, 3, 0, &q[14..]));
    }

    #[test]
    fn icmp_echo_ids_are_translated_and_kept_unique() {
        let text =
            format!("{NAT_HDR}-A POSTROUTING -o fw-s -j SNAT --to-source 198.18.0.200\nCOMMIT\n");
        let mut w = worker_for(&text);
        let b = FrameBuilder::default();
        let (_, o1) = run(&mut w, A, &b.echo(ip(C, S), true, 7, 1, b"p"), SEC);
        assert_eq!(o1, b.echo(ip([198, 18, 0, 200], S), true, 7, 1, b"p"));
        let (_, o2) = run(
            &mut w,
            A,
            &b.echo(ip([198, 18, 0, 9], S), true, 7, 1, b"p"),
            SEC,
        );
        let i2 = parse_frame(&o2).unwrap();
        assert_ne!(
            i2.icmp_ident, 7,
            "the second client's id is taken: translated"
        );
        valid(&o2);
        let (v, back) = run(
            &mut w,
            B,
            &b.echo(ip(S, [198, 18, 0, 200]), false, i2.icmp_ident, 1, b"p"),
            SEC + 1,
        );
        assert_eq!(v, Verdict::Forward);
        assert_eq!(back, b.echo(ip(S, [198, 18, 0, 9]), false, 7, 1, b"p"));
    }

    #[test]
    fn snat_ports_keep_the_reply_in_this_workers_shard() {
        let text = format!("{NAT_HDR}-A POSTROUTING -o fw-s -j MASQUERADE --random\nCOMMIT\n");
        let c = compile(
            Some(&parse_v4(&text)),
            None,
            &CompileConfig {
                workers: 4,
                ..cfg()
            },
        )
        .unwrap();
        let rules = Arc::new(ArcSwap::from_pointee(c));
        let ct = conntrack::Config::default();
        let mut w = Worker::new(rules, &ct, 1024, 2, 4, 0);
        for sp in 40000..40050u16 {
            let (v, out) = run(&mut w, A, &tcp(C, S, sp, 80, 0x02, 1, 0), SEC);
            assert_eq!(v, Verdict::Forward);
            let i = parse_frame(&out).unwrap();
            let reply = Tuple {
                src: addr16(S),
                dst: addr16([198, 18, 0, 254]),
                sport: 80,
                dport: i.src_port,
            };
            let h = flow_hash(&ct.hash_key, conntrack::Family::V4, ip_proto::TCP, &reply);
            assert_eq!(shard_of(h, 4), 2, "port {} of flow {sp}", i.src_port);
            valid(&out);
        }
        assert_eq!(w.shard().len(), 50);
    }

    #[test]
    fn nat_on_vlan_tagged_frames() {
        let text = format!("{NAT_HDR}-A POSTROUTING -o fw-s -j MASQUERADE\nCOMMIT\n");
        let mut w = worker_for(&text);
        let b = FrameBuilder {
            vlan: vec![(0x8100, 42)],
            ..FrameBuilder::default()
        };
        let q = b.udp(ip(C, S), 5000, 53, b"query");
        let (v, out) = run(&mut w, A, &q, SEC);
        assert_eq!(v, Verdict::Forward);
        assert_eq!(out, b.udp(ip([198, 18, 0, 254], S), 5000, 53, b"query"));
        valid(&out);
    }

    #[test]
    fn exhausted_ports_drop_with_a_counter() {
        let text = format!(
            "{NAT_HDR}-A POSTROUTING -p tcp -j SNAT --to-source 198.18.0.200:1024\nCOMMIT\n"
        );
        let mut w = worker_for(&text);
        assert_eq!(
            run(&mut w, A, &tcp(C, S, 40000, 80, 0x02, 1, 0), SEC).0,
            Verdict::Forward
        );
        let v = run(&mut w, A, &tcp(C, S, 40001, 80, 0x02, 1, 0), SEC).0;
        assert_eq!(v, Verdict::Drop(DropReason::NatPortsExhausted));
        assert_eq!(w.stats().drops[DropReason::NatPortsExhausted.index()], 1);
        assert_eq!(w.shard().len(), 1);
    }

    #[test]
    fn reject_answers_out_of_the_ingress_port() {
        let text = format!(
            "{FILTER_HDR}-A FORWARD -p tcp -j REJECT --reject-with tcp-reset\n-A FORWARD -p udp -j REJECT\nCOMMIT\n"
        );
        let mut w = worker_for(&text);
        let syn = tcp(C, S, 40000, 80, 0x02, 100, 0);
        let (v, out) = run(&mut w, A, &syn, SEC);
        assert!(matches!(v, Verdict::Reply(54)), "{v:?}");
        let i = parse_frame(&out).unwrap();
        assert_eq!((i.src_v4(), i.dst_v4(), i.tcp_flags.0), (S, C, 0x14));
        assert_eq!(&out[..6], &syn[6..12]);
        let q = FrameBuilder::default().udp(ip(C, S), 5000, 53, b"q");
        let (v, out) = run(&mut w, A, &q, SEC);
        assert!(matches!(v, Verdict::Reply(_)));
        let i = parse_frame(&out).unwrap();
        assert_eq!((i.l4_proto, i.icmp_type, i.icmp_code), (1, 3, 3));
        assert_eq!(w.shard().len(), 0, "rejected connections are not confirmed");
    }

    #[test]
    fn jump_goto_return_and_counters() {
        let text = format!(
            "{FILTER_HDR}:a - [0:0]\n:b - [0:0]\n:c - [0:0]\n\
             -A FORWARD -p tcp -j a\n-A FORWARD -p tcp -m tcp --dport 22 -j ACCEPT\n\
             -A a -m tcp -p tcp --dport 80 -g b\n-A a -j RETURN\n-A a -j DROP\n\
             -A b -j LOG --log-prefix \"web \"\n-A b -s 198.18.0.1/32 -j RETURN\n-A b -j ACCEPT\nCOMMIT\n"
        );
        let mut w = worker_for(&text);
        let (tx, mut rx) = rtrb::RingBuffer::new(4);
        w.set_log_queue(tx);
        // 80 from C: a -> goto b -> LOG, RETURN (to FORWARD, not to a) -> rule 2 no -> policy
        assert_eq!(
            run(&mut w, A, &tcp(C, S, 1, 80, 0x02, 1, 0), SEC).0,
            Verdict::Drop(DropReason::FilterPolicy)
        );
        let rs = w.rules.load_full();
        let fwd = rs.v4.hooks[HookPoint::FilterForward as usize].unwrap();
        assert_eq!(
            w.trace().decided[HookPoint::FilterForward as usize],
            Some((fwd, POLICY))
        );
        let ev = rx.pop().unwrap();
        assert_eq!(ev.prefix(), "web ");
        assert_eq!(ev.ts_ns, SEC);
        // 80 from elsewhere: accepted in b
        assert_eq!(
            run(&mut w, A, &tcp(S3, S, 1, 80, 0x02, 1, 0), SEC).0,
            Verdict::Forward
        );
        let bid = rs.v4.chain_id(rules::TableName::Filter, "b").unwrap();
        assert_eq!(
            w.trace().decided[HookPoint::FilterForward as usize],
            Some((bid, 2))
        );
        // 22: a RETURNs, FORWARD rule 2 accepts
        assert_eq!(
            run(&mut w, A, &tcp(C, S, 1, 22, 0x02, 1, 0), SEC).0,
            Verdict::Forward
        );
        assert_eq!(
            w.trace().decided[HookPoint::FilterForward as usize],
            Some((fwd, 1))
        );
        let chain = &rs.v4.chains[fwd as usize];
        assert_eq!(rs.counter_sum(chain.rules[0].counter), (3, 120));
        assert_eq!(rs.counter_sum(chain.rules[1].counter), (1, 40));
        assert_eq!(rs.counter_sum(chain.policy_counter), (1, 40));
        let listing = rs.list(false, "filter");
        assert!(
            listing.contains("Chain FORWARD (policy DROP 1 packets, 40 bytes)"),
            "{listing}"
        );
        assert_eq!(w.stats().log_events, 2);
        let all = rs.rule_counters();
        assert!(
            all.contains(&("ipv4", "filter", "FORWARD", 0, 1, 40)),
            "{all:?}"
        );
        assert!(all.contains(&("ipv4", "filter", "b", 1, 2, 80)), "{all:?}");
    }

    const MANGLE_HDR: &str = "*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n";
    const SECURITY_HDR: &str =
        "*security\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n";

    /// netfilter's order on a bridge: mangle PREROUTING sees the destination before DNAT,
    /// mangle FORWARD, security FORWARD and mangle POSTROUTING after it; every packet of a
    /// connection (not only its first, as nat) traverses mangle and security.
    #[test]
    fn mangle_and_security_hooks_run_in_netfilter_order_around_nat() {
        let text = format!(
            "{NAT_HDR}-A PREROUTING -d 198.18.0.2/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 198.18.0.3:80\nCOMMIT\n\
             {MANGLE_HDR}-A PREROUTING -d 198.18.0.2/32 -p tcp -m tcp --dport 8080\n\
             -A PREROUTING -d 198.18.0.3/32 -j DROP\n\
             -A FORWARD -d 198.18.0.2/32 -j DROP\n\
             -A FORWARD -d 198.18.0.3/32 -p tcp -m tcp --dport 80\n\
             -A POSTROUTING -d 198.18.0.3/32 -p tcp -m tcp --dport 80\n\
             -A POSTROUTING -p udp -j DROP\nCOMMIT\n\
             {SECURITY_HDR}-A FORWARD -d 198.18.0.3/32 -p tcp -m tcp --dport 80\n\
             -A FORWARD -p tcp -m tcp --dport 22 -j DROP\nCOMMIT\n\
             {FILTER_HDR}-A FORWARD -j ACCEPT\nCOMMIT\n"
        );
        let mut w = worker_for(&text);
        let rs = w.rules.load_full();
        assert!(rs.v4.mangles && !rs.v6.mangles);
        assert!(!worker_for(&stateful()).rules.load().v4.mangles);
        let hooks = rs.v4.hooks;
        let ours = [
            HookPoint::ManglePrerouting,
            HookPoint::MangleForward,
            HookPoint::SecurityForward,
            HookPoint::ManglePostrouting,
        ];
        let syn = tcp(C, S, 40000, 8080, 0x02, 100, 0);
        let (v, out) = run(&mut w, A, &syn, SEC);
        assert_eq!(v, Verdict::Forward);
        assert_eq!(&out[30..34], &S3, "DNAT still applied");
        let t = w.trace();
        for h in ours {
            assert_eq!(
                t.decided[h as usize].map(|(c, r)| (c, r == POLICY)),
                Some((hooks[h as usize].unwrap(), true)),
                "{h:?} traversed to its policy"
            );
        }
        // the reply and the next packet of the client: mangle and security again, nat not
        let synack = tcp(S3, C, 80, 40000, 0x12, 500, 101);
        assert_eq!(run(&mut w, B, &synack, SEC + 1).0, Verdict::Forward);
        assert_eq!(w.trace().decided[HookPoint::NatPrerouting as usize], None);
        assert!(w.trace().decided[HookPoint::ManglePrerouting as usize].is_some());
        let ack = tcp(C, S, 40000, 8080, 0x10, 101, 501);
        assert_eq!(run(&mut w, A, &ack, SEC + 2).0, Verdict::Forward);
        let all = rs.rule_counters();
        for (table, chain) in [
            ("mangle", "PREROUTING"),
            ("mangle", "FORWARD"),
            ("mangle", "POSTROUTING"),
            ("security", "FORWARD"),
        ] {
            let rule = if (table, chain) == ("mangle", "FORWARD") {
                2
            } else {
                1
            };
            let hit = all
                .iter()
                .find(|c| c.1 == table && c.2 == chain && c.3 == rule)
                .unwrap();
            assert_eq!(
                hit.4, 2,
                "{table} {chain}: both client packets, pre/post DNAT as due"
            );
        }
        // drops in each table, counted with its reason; the NEW connection is not kept
        let n = w.shard().len();
        let q = FrameBuilder::default().udp(ip(C, S), 5000, 53, b"q");
        assert_eq!(
            run(&mut w, A, &q, 2 * SEC).0,
            Verdict::Drop(DropReason::MangleDrop)
        );
        assert_eq!(
            run(
                &mut w,
                A,
                &tcp(C, [198, 18, 0, 4], 1, 22, 0x02, 1, 0),
                2 * SEC
            )
            .0,
            Verdict::Drop(DropReason::SecurityDrop)
        );
        assert_eq!(
            run(&mut w, A, &tcp(C, S3, 1, 443, 0x02, 1, 0), 2 * SEC).0,
            Verdict::Drop(DropReason::MangleDrop),
            "mangle PREROUTING DROP"
        );
        assert_eq!(
            run(&mut w, A, &tcp(C, S, 1, 443, 0x02, 1, 0), 2 * SEC).0,
            Verdict::Drop(DropReason::MangleDrop),
            "mangle FORWARD DROP"
        );
        assert_eq!(w.shard().len(), n);
        assert_eq!(w.stats().drops[DropReason::MangleDrop.index()], 3);
        assert_eq!(w.stats().drops[DropReason::SecurityDrop.index()], 1);
    }

    /// A UDP datagram of 40 payload bytes as two IPv4 fragments (UDP header + 24 bytes, then
    /// 24 more at offset 32) from `src`.
    fn fragments(src: [u8; 4], dst: [u8; 4], dport: u16, ident: u32) -> (Vec<u8>, Vec<u8>) {
        let whole = FrameBuilder::default().udp(ip(src, dst), 5000, dport, &[7u8; 56]);
        let l4 = &whole[34..];
        let frag = |offset: u16, more: bool, bytes: &[u8]| {
            FrameBuilder {
                fragment: Some(wire::builder::FragmentSpec {
                    offset,
                    more,
                    ident,
                }),
                ..FrameBuilder::default()
            }
            .ip_frame(ip(src, dst), 17, bytes)
        };
        (frag(0, true, &l4[..32]), frag(32, false, &l4[32..]))
    }

    #[test]
    fn later_fragments_follow_their_first_fragment() {
        let text = format!(
            "{NAT_HDR}-A POSTROUTING -o fw-s -j MASQUERADE\nCOMMIT\n{FILTER_HDR}\
             -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
             -A FORWARD -i fw-c -p udp -m udp --dport 53 -j ACCEPT\nCOMMIT\n"
        );
        let mut w = worker_for(&text);
        let (first, second) = fragments(C, S, 53, 77);
        let (v, out1) = run(&mut w, A, &first, SEC);
        assert_eq!(v, Verdict::Forward);
        assert_eq!(parse_frame(&out1).unwrap().src_v4(), [198, 18, 0, 254]);
        let (v, out2) = run(&mut w, A, &second, SEC + 1);
        assert_eq!(v, Verdict::Forward, "follows the first fragment");
        let i2 = parse_frame(&out2).unwrap();
        assert_eq!((i2.src_v4(), i2.frag_offset), ([198, 18, 0, 254], 32));
        wire::verify_ipv4_header(&out2, &i2).unwrap();
        // the reassembled datagram carries a valid UDP checksum after the translation
        let mut dgram = out1[34..].to_vec();
        dgram.extend_from_slice(&out2[34..]);
        assert!(wire::checksum::verify_l4_v4(
            [198, 18, 0, 254],
            S,
            17,
            &dgram
        ));
        // a datagram whose first fragment is dropped: the rest is dropped too
        let (first, second) = fragments(C, S, 54, 78);
        assert_eq!(
            run(&mut w, A, &first, 2 * SEC).0,
            Verdict::Drop(DropReason::FilterPolicy)
        );
        assert_eq!(
            run(&mut w, A, &second, 2 * SEC).0,
            Verdict::Drop(DropReason::FragmentOfDropped)
        );
        // a later fragment without its first: classified alone, INVALID, dropped by policy
        let (_, orphan) = fragments(C, S, 53, 79);
        assert_eq!(
            run(&mut w, A, &orphan, 3 * SEC).0,
            Verdict::Drop(DropReason::FilterPolicy)
        );
        assert_eq!(w.trace().ct_state, Some(CtState::Invalid));
    }

    #[test]
    fn full_log_queue_is_counted_never_waited_on() {
        let text = format!(
            "{FILTER_HDR}-A FORWARD -j NFLOG --nflog-prefix x\n-A FORWARD -j ACCEPT\nCOMMIT\n"
        );
        let mut w = worker_for(&text);
        let (tx, mut rx) = rtrb::RingBuffer::new(2);
        w.set_log_queue(tx);
        for sp in 1..=5 {
            assert_eq!(
                run(&mut w, A, &tcp(C, S, sp, 80, 0x02, 1, 0), SEC).0,
                Verdict::Forward
            );
        }
        assert_eq!((w.stats().log_events, w.stats().log_overflow), (5, 3));
        assert_eq!(rx.pop().unwrap().prefix(), "x");
    }

    #[test]
    fn malformed_dropped_with_reason_and_arp_forwarded() {
        let mut w = worker_for("");
        let mut bad = tcp(C, S, 1, 2, 0x02, 1, 0);
        bad[14] = 0x44; // IHL 4
        assert_eq!(
            run(&mut w, A, &bad, SEC).0,
            Verdict::Drop(DropReason::Malformed)
        );
        assert_eq!(
            w.stats().malformed[Malformed::BadIpv4HeaderLength.index()],
            1
        );
        assert_eq!(w.trace().malformed, Some(Malformed::BadIpv4HeaderLength));
        let arp = FrameBuilder::default().arp(
            1,
            (wire::ethernet::MacAddr([2; 6]), C),
            (wire::ethernet::MacAddr([0; 6]), S),
        );
        assert_eq!(run(&mut w, A, &arp, SEC).0, Verdict::Forward);
        // no rules: accepted, but tracked
        assert_eq!(
            run(&mut w, A, &tcp(C, S, 1, 2, 0x02, 1, 0), SEC).0,
            Verdict::Forward
        );
        assert_eq!(w.shard().len(), 1);
    }

    #[test]
    fn notrack_in_raw_makes_packets_untracked() {
        let text = format!(
            "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -p udp -m udp --dport 53 -j NOTRACK\nCOMMIT\n\
             {FILTER_HDR}-A FORWARD -m conntrack --ctstate UNTRACKED -j ACCEPT\nCOMMIT\n"
        );
        let mut w = worker_for(&text);
        let q = FrameBuilder::default().udp(ip(C, S), 5000, 53, b"q");
        assert_eq!(run(&mut w, A, &q, SEC).0, Verdict::Forward);
        assert_eq!(w.trace().ct_state, Some(CtState::Untracked));
        assert_eq!(w.shard().len(), 0);
        let other = FrameBuilder::default().udp(ip(C, S), 5000, 54, b"q");
        assert_eq!(
            run(&mut w, A, &other, SEC).0,
            Verdict::Drop(DropReason::FilterPolicy)
        );
    }

    const RAW_HDR: &str = "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n";

    /// The connection marks of the worker's entries, as `conntrack -L` would show them.
    fn connmarks(w: &Worker, now: u64) -> Vec<u32> {
        let mut snaps = Vec::new();
        w.shard()
            .snapshot(&conntrack::Filter::default(), now, &mut snaps);
        snaps.iter().map(|s| s.mark).collect()
    }

    #[test]
    fn a_mark_set_in_prerouting_is_what_forward_tests_and_every_packet_starts_at_zero() {
        let text = format!(
            "{RAW_HDR}-A PREROUTING -p tcp -m tcp --dport 22 -j MARK --set-mark 0x2/0x2\nCOMMIT\n\
             {NAT_HDR}-A PREROUTING -p tcp -m tcp --dport 80 -j MARK --or-mark 0x4\nCOMMIT\n\
             {FILTER_HDR}-A FORWARD -m conntrack --ctstate ESTABLISHED -j ACCEPT\n\
             -A FORWARD -m mark --mark 0x2/0x2 -j ACCEPT\n\
             -A FORWARD -m mark --mark 0x4 -j ACCEPT\n\
             -A FORWARD -m mark ! --mark 0x0 -j DROP\nCOMMIT\n"
        );
        let mut w = worker_for(&text);
        // raw PREROUTING's mark reaches FORWARD
        assert_eq!(
            run(&mut w, A, &tcp(C, S, 40000, 22, 0x02, 1, 0), SEC).0,
            Verdict::Forward
        );
        // nat PREROUTING's too (a connection's first packet only, as the kernel's nat table)
        assert_eq!(
            run(&mut w, A, &tcp(C, S, 40001, 80, 0x02, 1, 0), SEC).0,
            Verdict::Forward
        );
        // the next packet starts at 0 again: no rule marks port 443, so the policy drops it
        assert_eq!(
            run(&mut w, A, &tcp(C, S, 40002, 443, 0x02, 1, 0), SEC).0,
            Verdict::Drop(DropReason::FilterPolicy)
        );
        // marking is not a connection's: the reply of the port 22 one is ESTABLISHED
        assert_eq!(
            run(&mut w, B, &tcp(S, C, 22, 40000, 0x12, 9, 2), SEC + 1).0,
            Verdict::Forward
        );
        assert_eq!(
            connmarks(&w, SEC + 1),
            vec![0, 0],
            "MARK leaves the connmark alone"
        );
    }

    #[test]
    fn connmark_saved_on_the_first_packet_is_restored_on_the_reply() {
        let text = format!(
            "{FILTER_HDR}-A FORWARD -j CONNMARK --restore-mark\n\
             -A FORWARD -p tcp -m mark --mark 0x0 -m tcp --dport 80 -j MARK --set-xmark 0x7/0xff\n\
             -A FORWARD -j CONNMARK --save-mark --nfmask 0xf --ctmask 0xff\n\
             -A FORWARD -m mark --mark 0x7 -m connmark --mark 0x7/0xff -j ACCEPT\nCOMMIT\n"
        );
        let mut w = worker_for(&text);
        assert_eq!(
            run(&mut w, A, &tcp(C, S, 40000, 80, 0x02, 1, 0), SEC).0,
            Verdict::Forward
        );
        assert_eq!(connmarks(&w, SEC), vec![7]);
        // the reply is marked by nothing but the restore from its connection
        assert_eq!(
            run(&mut w, B, &tcp(S, C, 80, 40000, 0x12, 9, 2), SEC + 1).0,
            Verdict::Forward
        );
        // another connection from the server side has connmark 0: dropped
        assert_eq!(
            run(&mut w, B, &tcp(S, C, 22, 40001, 0x02, 1, 0), SEC + 2).0,
            Verdict::Drop(DropReason::FilterPolicy)
        );
        // the listing shows it where conntrack(8) does
        let mut snaps = Vec::new();
        w.shard()
            .snapshot(&conntrack::Filter::default(), SEC + 2, &mut snaps);
        let mut line = String::new();
        let s = snaps
            .iter()
            .find(|s| s.mark == 7)
            .expect("the marked connection");
        conntrack::format_entry(&mut line, s, SEC + 2).unwrap();
        assert!(line.ends_with(" mark=7 use=1"), "{line}");
    }

    #[test]
    fn connmark_needs_a_connection_negated_or_not() {
        let text = format!(
            "{RAW_HDR}-A PREROUTING -p udp -m udp --dport 53 -j NOTRACK\n\
             -A PREROUTING -j CONNMARK --set-mark 0x9\n\
             -A PREROUTING -m connmark ! --mark 0x9 -j DROP\nCOMMIT\n\
             {FILTER_HDR}-A FORWARD -j CONNMARK --set-mark 0x5\n\
             -A FORWARD -m connmark ! --mark 0x5 -j ACCEPT\n\
             -A FORWARD -m connmark --mark 0x5 -p udp -m udp --dport 54 -j ACCEPT\nCOMMIT\n"
        );
        let mut w = worker_for(&text);
        let b = FrameBuilder::default();
        // raw PREROUTING runs before conntrack: no entry, so neither CONNMARK nor `! --mark`
        // does anything; untracked in FORWARD: still no entry, and nothing matches
        assert_eq!(
            run(&mut w, A, &b.udp(ip(C, S), 5000, 53, b"q"), SEC).0,
            Verdict::Drop(DropReason::FilterPolicy)
        );
        assert_eq!(w.shard().len(), 0);
        // tracked: FORWARD's CONNMARK sets 5 on the entry and the third rule sees it
        assert_eq!(
            run(&mut w, A, &b.udp(ip(C, S), 5000, 54, b"q"), SEC).0,
            Verdict::Forward
        );
        assert_eq!(connmarks(&w, SEC), vec![5]);
    }

    #[test]
    fn mark_arithmetic_agrees_with_the_man_page_for_every_option() {
        // iptables-extensions(8): --set-xmark zeroes the mask's bits and XORs the value,
        // --set-mark zeroes them and ORs it, --and/--or/--xor-mark are the bitwise operations;
        // CONNMARK --save-mark: ctmark = (ctmark & ~ctmask) ^ (nfmark & nfmask), and
        // --restore-mark: nfmark = (nfmark & ~nfmask) ^ (ctmark & ctmask).
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u32
        };
        let first_action = |target: &str| -> Action {
            let text = format!("{FILTER_HDR}-A FORWARD -j {target}\nCOMMIT\n");
            let c = compile(Some(&parse_v4(&text)), None, &cfg()).unwrap();
            let id = c.v4.chain_id(rules::TableName::Filter, "FORWARD").unwrap();
            c.v4.chains[id as usize].rules[0].action.clone()
        };
        for _ in 0..64 {
            let (v, m, old, ct) = (next(), next(), next(), next());
            // an all-ones mask is the default and may not be written
            for (opt, want) in [
                (format!("--set-xmark {v:#x}/{m:#x}"), (old & !m) ^ v),
                (format!("--set-mark {v:#x}/{m:#x}"), (old & !m) | v),
                (format!("--set-mark {v}"), v),
                (format!("--and-mark {v:#x}"), old & v),
                (format!("--or-mark 0{v:o}"), old | v),
                (format!("--xor-mark {v}"), old ^ v),
            ] {
                let Action::Mark(xm) = first_action(&format!("MARK {opt}")) else {
                    panic!("MARK {opt}");
                };
                assert_eq!(xm.apply(old), want, "MARK {opt} on {old:#x}");
                let Action::Connmark(c) = first_action(&format!("CONNMARK {opt}")) else {
                    panic!("CONNMARK {opt}");
                };
                assert_eq!(c.apply(old, ct), (want, ct), "CONNMARK {opt} on {old:#x}");
            }
            let Action::Connmark(save) = first_action(&format!(
                "CONNMARK --save-mark --nfmask {v:#x} --ctmask {m:#x}"
            )) else {
                panic!("save");
            };
            assert_eq!(save.apply(ct, old), ((ct & !m) ^ (old & v), old));
            let Action::Connmark(restore) =
                first_action(&format!("CONNMARK --restore-mark --mask {m:#x}"))
            else {
                panic!("restore");
            };
            assert_eq!(restore.apply(ct, old), (ct, (old & !m) ^ (ct & m)));
        }
    }

    #[test]
    fn reload_swaps_rules_and_keeps_connections() {
        let mut w = worker_for(&stateful());
        assert_eq!(
            run(&mut w, A, &tcp(C, S, 40000, 80, 0x02, 100, 0), SEC).0,
            Verdict::Forward
        );
        assert_eq!(
            run(&mut w, B, &tcp(S, C, 80, 40000, 0x12, 500, 101), SEC).0,
            Verdict::Forward
        );
        // new ruleset: only ESTABLISHED passes, NEW is dropped
        let strict = format!(
            "{FILTER_HDR}-A FORWARD -m conntrack --ctstate ESTABLISHED -j ACCEPT\nCOMMIT\n"
        );
        let c = compile(Some(&parse_v4(&strict)), None, &cfg()).unwrap();
        w.rules.store(Arc::new(c));
        assert_eq!(
            run(&mut w, A, &tcp(C, S, 40000, 80, 0x10, 101, 501), SEC * 2).0,
            Verdict::Forward
        );
        assert_eq!(
            run(&mut w, A, &tcp(C, S, 40001, 80, 0x02, 100, 0), SEC * 2).0,
            Verdict::Drop(DropReason::FilterPolicy)
        );
    }

    #[test]
    fn burst_api_writes_replies_in_place() {
        let text = format!("{FILTER_HDR}-A FORWARD -p tcp -m tcp --dport 23 -j REJECT --reject-with tcp-reset\n-A FORWARD -j ACCEPT\nCOMMIT\n");
        let mut w = worker_for(&text);
        let f1 = tcp(C, S, 1, 80, 0x02, 1, 0);
        let f2 = tcp(C, S, 1, 23, 0x02, 1, 0);
        let mut b1 = vec![0u8; 256];
        let mut b2 = vec![0u8; 256];
        b1[..f1.len()].copy_from_slice(&f1);
        b2[..f2.len()].copy_from_slice(&f2);
        let mut frames: [&mut [u8]; 2] = [&mut b1, &mut b2];
        let mut lens = [f1.len(), f2.len()];
        let mut v = [Verdict::Forward; 2];
        w.process_burst(A, &mut frames, &mut lens, &mut v, SEC);
        assert_eq!(v[0], Verdict::Forward);
        assert_eq!(v[1], Verdict::Reply(54));
        assert_eq!(lens[1], 54);
        assert_eq!(parse_frame(&b2[..54]).unwrap().tcp_flags.0, 0x14);
    }

    #[test]
    fn ipv6_rules_apply_to_ipv6_frames() {
        let v6 = rules::parse_restore(
            "t6",
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -p ipv6-icmp -j ACCEPT\n-A FORWARD -p udp -j REJECT --reject-with icmp6-adm-prohibited\nCOMMIT\n",
            rules::Family::Ipv6,
        )
        .unwrap();
        let c = compile(None, Some(&v6), &cfg()).unwrap();
        let mut w = Worker::new(
            Arc::new(ArcSwap::from_pointee(c)),
            &conntrack::Config::default(),
            64,
            0,
            1,
            0,
        );
        let b = FrameBuilder::default();
        let p = IpPair::V6(
            "2001:2::1".parse::<std::net::Ipv6Addr>().unwrap().octets(),
            "2001:2::2".parse::<std::net::Ipv6Addr>().unwrap().octets(),
        );
        assert_eq!(
            run(&mut w, A, &b.echo(p, true, 1, 1, b"x"), SEC).0,
            Verdict::Forward
        );
        let (v, out) = run(&mut w, A, &b.udp(p, 1, 2, b"x"), SEC);
        assert!(matches!(v, Verdict::Reply(_)));
        let i = parse_frame(&out).unwrap();
        assert_eq!((i.icmp_type, i.icmp_code), (1, 1));
        // IPv4 has no ruleset: accepted
        assert_eq!(
            run(&mut w, A, &tcp(C, S, 1, 2, 0x02, 1, 0), SEC).0,
            Verdict::Forward
        );
    }

    const C6: [u8; 16] = [0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const S6: [u8; 16] = [0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    /// Flips bits of the L4 checksum field of a frame (no IP options, no extension headers).
    fn corrupt_l4(frame: &[u8]) -> Vec<u8> {
        let mut f = frame.to_vec();
        let info = parse_frame(&f).unwrap();
        let at = usize::from(info.l4_offset)
            + match info.l4_proto {
                ip_proto::TCP => 16,
                ip_proto::UDP => 6,
                _ => 2,
            };
        f[at] ^= 0x5a;
        assert!(wire::verify_l4_checksum(&f, &parse_frame(&f).unwrap()).is_err());
        f
    }

    fn worker_ct(text: &str, ct: &conntrack::Config) -> Worker {
        let compiled = if text.is_empty() {
            Compiled::accept_all(&cfg())
        } else {
            compile(Some(&parse_v4(text)), None, &cfg()).unwrap()
        };
        Worker::new(Arc::new(ArcSwap::from_pointee(compiled)), ct, 1024, 0, 1, 0)
    }

    fn first_packets() -> Vec<(&'static str, Vec<u8>)> {
        let b = FrameBuilder::default();
        let v6 = IpPair::V6(C6, S6);
        let syn6 = TcpSpec {
            src_port: 40000,
            dst_port: 80,
            seq: 1,
            ack: 0,
            flags: TcpFlags(0x02),
            window: 64240,
            options: vec![],
            payload: b"",
        };
        vec![
            ("tcp4", tcp(C, S, 40000, 80, 0x02, 100, 0)),
            ("udp4", b.udp(ip(C, S), 5000, 53, b"q")),
            ("icmp4", b.echo(ip(C, S), true, 7, 1, b"ping")),
            ("tcp6", b.tcp(v6, &syn6)),
            ("udp6", b.udp(v6, 5000, 53, b"q")),
            ("icmp6", b.echo(v6, true, 7, 1, b"ping")),
        ]
    }

    #[test]
    fn bad_l4_checksums_are_invalid_and_create_no_state() {
        for (name, good) in first_packets() {
            let bad = corrupt_l4(&good);
            let mut w = worker_ct("", &conntrack::Config::default());
            assert_eq!(run(&mut w, A, &bad, SEC).0, Verdict::Forward, "{name}");
            assert_eq!(w.trace().ct_state, Some(CtState::Invalid), "{name}");
            assert!(w.shard().is_empty(), "{name}: no entry from a bad checksum");
            let st = w.shard().stats();
            assert_eq!(st.new, 0, "{name}");
            assert_eq!(st.reasons[conntrack::CtReason::BadChecksum as usize], 1);
            // The same packet with its checksum intact is NEW.
            run(&mut w, A, &good, SEC);
            assert_eq!(w.trace().ct_state, Some(CtState::New), "{name}");
            assert_eq!(w.shard().len(), 1, "{name}");
            // checksum = false: not verified, tracked.
            let off = conntrack::Config {
                checksum: false,
                ..conntrack::Config::default()
            };
            let mut w = worker_ct("", &off);
            run(&mut w, A, &bad, SEC);
            assert_eq!(w.trace().ct_state, Some(CtState::New), "{name}");
        }
        // A stateful ruleset drops it as the kernel's `--ctstate INVALID -j DROP` would.
        let mut w = worker_ct(&stateful(), &conntrack::Config::default());
        let bad = corrupt_l4(&tcp(C, S, 40000, 80, 0x02, 100, 0));
        assert_eq!(
            run(&mut w, A, &bad, SEC).0,
            Verdict::Drop(DropReason::FilterPolicy)
        );
    }

    #[test]
    fn a_zero_udp_checksum_means_none_over_both_families() {
        for ip in [IpPair::V4(C, S), IpPair::V6(C6, S6)] {
            let mut f = FrameBuilder::default().udp(ip, 5000, 53, b"q");
            let info = parse_frame(&f).unwrap();
            let at = usize::from(info.l4_offset) + 6;
            f[at..at + 2].copy_from_slice(&[0, 0]);
            let mut w = worker_ct("", &conntrack::Config::default());
            run(&mut w, A, &f, SEC);
            // nf_conntrack's udp_error returns before the sum for a zero checksum.
            assert_eq!(w.trace().ct_state, Some(CtState::New), "{ip:?}");
        }
    }

    #[test]
    fn a_forged_rst_with_a_bad_checksum_does_not_close_the_connection() {
        let state_of = |w: &Worker| {
            let mut snaps = Vec::new();
            w.shard()
                .snapshot(&conntrack::Filter::default(), 5 * SEC, &mut snaps);
            assert_eq!(snaps.len(), 1);
            let mut line = String::new();
            conntrack::format_entry(&mut line, &snaps[0], 5 * SEC).unwrap();
            line
        };
        let handshake = |w: &mut Worker| {
            assert_eq!(
                run(w, A, &tcp(C, S, 40000, 80, 0x02, 100, 0), SEC).0,
                Verdict::Forward
            );
            assert_eq!(
                run(w, B, &tcp(S, C, 80, 40000, 0x12, 500, 101), SEC + 1).0,
                Verdict::Forward
            );
            assert_eq!(
                run(w, A, &tcp(C, S, 40000, 80, 0x10, 101, 501), SEC + 2).0,
                Verdict::Forward
            );
        };
        let rst = tcp(S, C, 80, 40000, 0x04, 501, 0);
        let mut w = worker_ct(&stateful(), &conntrack::Config::default());
        handshake(&mut w);
        assert!(state_of(&w).contains("ESTABLISHED"), "{}", state_of(&w));
        assert_eq!(
            run(&mut w, B, &corrupt_l4(&rst), 2 * SEC).0,
            Verdict::Drop(DropReason::FilterPolicy),
            "INVALID: the stateful ruleset drops it"
        );
        assert!(state_of(&w).contains("ESTABLISHED"), "{}", state_of(&w));
        let data = tcp(C, S, 40000, 80, 0x18, 101, 501);
        assert_eq!(run(&mut w, A, &data, 3 * SEC).0, Verdict::Forward);
        assert_eq!(w.trace().ct_state, Some(CtState::Established));
        // The control: the same RST with its checksum intact closes it.
        let mut w = worker_ct(&stateful(), &conntrack::Config::default());
        handshake(&mut w);
        assert_eq!(run(&mut w, B, &rst, 2 * SEC).0, Verdict::Forward);
        assert!(state_of(&w).contains("CLOSE"), "{}", state_of(&w));
    }

    #[test]
    fn a_bad_ipv4_header_checksum_is_dropped_before_any_hook() {
        let mut f = tcp(C, S, 40000, 80, 0x02, 100, 0);
        f[14 + 10] ^= 0x01;
        for checksum in [true, false] {
            let ct = conntrack::Config {
                checksum,
                ..conntrack::Config::default()
            };
            let mut w = worker_ct("", &ct);
            assert_eq!(
                run(&mut w, A, &f, SEC).0,
                Verdict::Drop(DropReason::Malformed)
            );
            assert_eq!(w.trace().malformed, Some(Malformed::BadIpv4HeaderChecksum));
            assert!(w.shard().is_empty());
        }
    }
    /// Frames of the bridge tests: a builder with these tags (outermost first).
    fn tagged(tags: &[(u16, u16)]) -> FrameBuilder {
        FrameBuilder {
            vlan: tags.to_vec(),
            ..FrameBuilder::default()
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn tcp_on(
        b: &FrameBuilder,
        src: [u8; 4],
        dst: [u8; 4],
        sp: u16,
        dp: u16,
        flags: u8,
        seq: u32,
        ack: u32,
    ) -> Vec<u8> {
        b.tcp(
            ip(src, dst),
            &TcpSpec {
                src_port: sp,
                dst_port: dp,
                seq,
                ack,
                flags: TcpFlags(flags),
                window: 64240,
                options: vec![],
                payload: b"",
            },
        )
    }

    fn bridged(text: &str, policy: BridgePolicy) -> Worker {
        let mut w = worker_for(text);
        w.set_bridge(policy);
        w
    }

    fn class(w: &Worker, c: BridgeClass) -> u64 {
        w.stats().bridge[c.index()]
    }

    fn dropped(w: &Worker, r: DropReason) -> u64 {
        w.stats().drops[r.index()]
    }

    /// The stateful ruleset plus one NEW service the server side may open (ssh to the client).
    fn stateful_both_ways() -> String {
        format!(
            "{FILTER_HDR}-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
             -A FORWARD -i fw-c -m conntrack --ctstate NEW -j ACCEPT\n\
             -A FORWARD -i fw-s -p tcp -m tcp --dport 22 -m conntrack --ctstate NEW -j ACCEPT\nCOMMIT\n"
        )
    }

    #[test]
    fn tagged_new_from_either_side_is_filtered_and_tracked_on_the_inner_packet() {
        let mut w = bridged(&stateful_both_ways(), BridgePolicy::default());
        let v100 = tagged(&[(0x8100, 100)]);
        // client side: NEW accepted, the tag stays, the reply is ESTABLISHED
        let syn = tcp_on(&v100, C, S, 40000, 80, 0x02, 100, 0);
        let (v, out) = run(&mut w, A, &syn, SEC);
        assert_eq!(v, Verdict::Forward);
        assert_eq!(out, syn, "forwarded with its tag, untouched");
        assert_eq!(w.trace().ct_state, Some(CtState::New));
        let synack = tcp_on(&v100, S, C, 80, 40000, 0x12, 500, 101);
        assert_eq!(run(&mut w, B, &synack, SEC + 1).0, Verdict::Forward);
        assert_eq!(w.trace().ct_state, Some(CtState::Established));
        // server side: NEW to a port the rules allow is forwarded, tag kept ...
        let ssh = tcp_on(&v100, S, C, 50000, 22, 0x02, 1, 0);
        let (v, out) = run(&mut w, B, &ssh, 2 * SEC);
        assert_eq!(v, Verdict::Forward);
        assert_eq!(out, ssh);
        assert_eq!(w.trace().ct_state, Some(CtState::New));
        let back = tcp_on(&v100, C, S, 22, 50000, 0x12, 9, 2);
        assert_eq!(run(&mut w, A, &back, 2 * SEC + 1).0, Verdict::Forward);
        assert_eq!(w.trace().ct_state, Some(CtState::Established));
        // ... and NEW to any other port meets the policy, exactly as untagged
        let other = tcp_on(&v100, S, C, 50001, 23, 0x02, 1, 0);
        assert_eq!(
            run(&mut w, B, &other, 3 * SEC).0,
            Verdict::Drop(DropReason::FilterPolicy)
        );
        let untagged = tcp(S, C, 50001, 23, 0x02, 1, 0);
        assert_eq!(
            run(&mut w, B, &untagged, 3 * SEC).0,
            Verdict::Drop(DropReason::FilterPolicy)
        );
        // the inner packet was classified: the rules saw its ports
        assert_eq!(class(&w, BridgeClass::VlanFiltered), 5);
        assert_eq!(w.shard().len(), 2);
    }

    #[test]
    fn conntrack_does_not_separate_vlans_as_the_kernels_zone_0_does_not() {
        // one connection whatever the VID: a SYN on VLAN 100 is answered on VLAN 200
        let mut w = bridged(&stateful(), BridgePolicy::default());
        let syn = tcp_on(&tagged(&[(0x8100, 100)]), C, S, 40000, 80, 0x02, 100, 0);
        assert_eq!(run(&mut w, A, &syn, SEC).0, Verdict::Forward);
        let synack = tcp_on(&tagged(&[(0x8100, 200)]), S, C, 80, 40000, 0x12, 500, 101);
        assert_eq!(run(&mut w, B, &synack, SEC + 1).0, Verdict::Forward);
        assert_eq!(w.trace().ct_state, Some(CtState::Established));
        assert_eq!(w.shard().len(), 1);
    }

    #[test]
    fn qinq_stacks_are_filtered_on_the_innermost_packet_or_passed_or_dropped() {
        for outer in [0x88a8u16, 0x9100] {
            let mut w = bridged(&stateful(), BridgePolicy::default());
            for b in [
                tagged(&[(outer, 10), (0x8100, 100)]),
                tagged(&[(outer, 10)]),
                tagged(&[(0x8100, 10), (0x8100, 100)]),
            ] {
                // NEW from the server side: dropped by the policy like untagged traffic
                let rsyn = tcp_on(&b, S, C, 22, 50000, 0x02, 1, 0);
                assert_eq!(
                    run(&mut w, B, &rsyn, SEC).0,
                    Verdict::Drop(DropReason::FilterPolicy),
                    "{outer:#x} {:?}",
                    b.vlan
                );
                // from the client: tracked, forwarded with both tags, reply ESTABLISHED
                let syn = tcp_on(&b, C, S, 40000, 80, 0x02, 100, 0);
                let (v, out) = run(&mut w, A, &syn, 2 * SEC);
                assert_eq!((v, out), (Verdict::Forward, syn.clone()));
                let synack = tcp_on(&b, S, C, 80, 40000, 0x12, 500, 101);
                assert_eq!(run(&mut w, B, &synack, 2 * SEC + 1).0, Verdict::Forward);
                assert_eq!(w.trace().ct_state, Some(CtState::Established));
            }
            assert_eq!(class(&w, BridgeClass::QinqFiltered), 9);
            assert_eq!(class(&w, BridgeClass::VlanFiltered), 0);

            let qinq = tagged(&[(outer, 10), (0x8100, 100)]);
            let rsyn = tcp_on(&qinq, S, C, 22, 50000, 0x02, 1, 0);
            let pass = BridgePolicy {
                qinq: TagPolicy::Pass,
                ..BridgePolicy::default()
            };
            let mut w = bridged(&stateful(), pass);
            assert_eq!(run(&mut w, B, &rsyn, SEC).0, Verdict::Forward);
            assert_eq!(class(&w, BridgeClass::QinqPassed), 1);
            assert_eq!(w.shard().len(), 0, "passed frames are not tracked");
            // a single 802.1Q tag is still filtered under qinq = "pass"
            let single = tcp_on(&tagged(&[(0x8100, 100)]), S, C, 22, 50000, 0x02, 1, 0);
            assert_eq!(
                run(&mut w, B, &single, SEC).0,
                Verdict::Drop(DropReason::FilterPolicy)
            );
            let drop = BridgePolicy {
                qinq: TagPolicy::Drop,
                ..BridgePolicy::default()
            };
            let mut w = bridged("", drop);
            assert_eq!(
                run(&mut w, A, &rsyn, SEC).0,
                Verdict::Drop(DropReason::QinqDropped)
            );
            assert_eq!(dropped(&w, DropReason::QinqDropped), 1);
        }
    }

    #[test]
    fn vlan_policy_pass_and_drop() {
        let v100 = tagged(&[(0x8100, 100)]);
        let rsyn = tcp_on(&v100, S, C, 22, 50000, 0x02, 1, 0);
        let arp = v100.arp(
            1,
            (wire::ethernet::MacAddr([2, 0, 0, 0, 0, 2]), S),
            (wire::ethernet::MacAddr([0; 6]), C),
        );
        let mut w = bridged(
            &stateful(),
            BridgePolicy {
                vlan: TagPolicy::Pass,
                ..BridgePolicy::default()
            },
        );
        assert_eq!(run(&mut w, B, &rsyn, SEC).0, Verdict::Forward);
        assert_eq!(class(&w, BridgeClass::VlanPassed), 1);
        let mut w = bridged(
            "",
            BridgePolicy {
                vlan: TagPolicy::Drop,
                ..BridgePolicy::default()
            },
        );
        assert_eq!(
            run(&mut w, B, &rsyn, SEC).0,
            Verdict::Drop(DropReason::VlanDropped)
        );
        assert_eq!(
            run(&mut w, A, &arp, SEC).0,
            Verdict::Drop(DropReason::VlanDropped),
            "every tagged frame, ARP too"
        );
        assert_eq!(dropped(&w, DropReason::VlanDropped), 2);
        // untagged traffic is not affected
        assert_eq!(
            run(&mut w, B, &tcp(S, C, 22, 50000, 0x02, 1, 0), SEC).0,
            Verdict::Forward
        );
        // the default: a tagged ARP is filtered as non-IP, i.e. forwarded
        let mut w = bridged("", BridgePolicy::default());
        assert_eq!(run(&mut w, A, &arp, SEC).0, Verdict::Forward);
        assert_eq!(class(&w, BridgeClass::VlanFiltered), 1);
        assert_eq!(w.stats().non_ip, 1);
    }

    #[test]
    fn pppoe_wrapped_ip_is_filtered_tracked_and_natted_inside_the_session() {
        use wire::builder::pppoe_session;
        let mut w = bridged(&stateful(), BridgePolicy::default());
        // NEW from the server inside a session: the policy drops it
        let rsyn = pppoe_session(&tcp(S, C, 22, 50000, 0x02, 1, 0), 7);
        assert_eq!(
            run(&mut w, B, &rsyn, SEC).0,
            Verdict::Drop(DropReason::FilterPolicy)
        );
        let rsyn6 = pppoe_session(
            &FrameBuilder::default().udp(
                IpPair::V6(
                    "2001:2::2".parse::<std::net::Ipv6Addr>().unwrap().octets(),
                    "2001:2::1".parse::<std::net::Ipv6Addr>().unwrap().octets(),
                ),
                53,
                5000,
                b"x",
            ),
            7,
        );
        assert_eq!(
            run(&mut w, B, &rsyn6, SEC).0,
            Verdict::Forward,
            "no IPv6 rules: accepted, but it was parsed and tracked"
        );
        assert_eq!(w.trace().ct_state, Some(CtState::New));
        // from the client: forwarded in its session, reply ESTABLISHED
        let syn = pppoe_session(&tcp(C, S, 40000, 80, 0x02, 100, 0), 7);
        let (v, out) = run(&mut w, A, &syn, SEC);
        assert_eq!((v, out), (Verdict::Forward, syn.clone()));
        let synack = pppoe_session(&tcp(S, C, 80, 40000, 0x12, 500, 101), 7);
        assert_eq!(run(&mut w, B, &synack, SEC + 1).0, Verdict::Forward);
        assert_eq!(w.trace().ct_state, Some(CtState::Established));
        assert_eq!(class(&w, BridgeClass::PppoeFiltered), 4);

        // PPP control (LCP echo) passes; another PPP protocol (IPv4 behind a compressed
        // protocol field reads as 0x2145) cannot be filtered and is dropped
        let mut lcp = syn[..22].to_vec();
        lcp[18..20].copy_from_slice(&10u16.to_be_bytes());
        lcp[20..22].copy_from_slice(&ppp_proto::LCP.to_be_bytes());
        lcp.extend_from_slice(&[0x09, 0x01, 0x00, 0x08, 0, 0, 0, 0]);
        assert_eq!(run(&mut w, A, &lcp, 2 * SEC).0, Verdict::Forward);
        assert_eq!(class(&w, BridgeClass::PppoeControl), 1);
        let mut compressed = syn[..20].to_vec();
        compressed[18..20].copy_from_slice(&61u16.to_be_bytes());
        compressed.push(0x21);
        compressed.extend_from_slice(&rsyn[22..]);
        assert_eq!(
            run(&mut w, B, &compressed, 2 * SEC).0,
            Verdict::Drop(DropReason::PppoeDropped)
        );

        // MASQUERADE rewrites the packet inside the session; the PPPoE header stays valid
        let text = format!("{NAT_HDR}-A POSTROUTING -o fw-s -j MASQUERADE\nCOMMIT\n");
        let mut w = bridged(&text, BridgePolicy::default());
        let q = pppoe_session(
            &FrameBuilder::default().udp(ip(C, S), 5000, 53, b"query"),
            3,
        );
        let (v, out) = run(&mut w, A, &q, SEC);
        assert_eq!(v, Verdict::Forward);
        let expect = FrameBuilder::default().udp(ip([198, 18, 0, 254], S), 5000, 53, b"query");
        assert_eq!(out, pppoe_session(&expect, 3));
        let i = parse_frame(&out).unwrap();
        wire::verify_ipv4_header(&out, &i).unwrap();
        wire::verify_l4_checksum(&out, &i).unwrap();

        // pppoe = "drop": every session frame, control too
        let mut w = bridged(
            "",
            BridgePolicy {
                pppoe: PppoePolicy::Drop,
                ..BridgePolicy::default()
            },
        );
        assert_eq!(
            run(&mut w, A, &syn, SEC).0,
            Verdict::Drop(DropReason::PppoeDropped)
        );
        assert_eq!(
            run(&mut w, A, &lcp, SEC).0,
            Verdict::Drop(DropReason::PppoeDropped)
        );
        assert_eq!(dropped(&w, DropReason::PppoeDropped), 2);
    }

    #[test]
    fn reject_replies_keep_the_tags_and_the_pppoe_session() {
        use wire::builder::pppoe_session;
        let text = format!(
            "{FILTER_HDR}-A FORWARD -p tcp -j REJECT --reject-with tcp-reset\n-A FORWARD -p udp -j REJECT\nCOMMIT\n"
        );
        let mut w = bridged(&text, BridgePolicy::default());
        let qinq = tagged(&[(0x88a8, 10), (0x8100, 100)]);
        let syn = tcp_on(&qinq, C, S, 40000, 80, 0x02, 100, 0);
        let (v, out) = run(&mut w, A, &syn, SEC);
        assert_eq!(v, Verdict::Reply(54 + 8));
        assert_eq!(&out[12..22], &syn[12..22], "both tags, same VIDs");
        let i = parse_frame(&out).unwrap();
        assert_eq!((i.src_v4(), i.dst_v4(), i.tcp_flags.0), (S, C, 0x14));
        assert_eq!(i.vlan_tci, [10, 100]);
        valid(&out);
        // in a PPPoE session, the ICMP error's PPPoE length covers the reply
        let q = pppoe_session(
            &tagged(&[(0x8100, 5)]).udp(ip(C, S), 5000, 53, b"q"),
            0x0b3a,
        );
        let (v, out) = run(&mut w, A, &q, SEC);
        let Verdict::Reply(n) = v else {
            panic!("{v:?}")
        };
        let i = parse_frame(&out).unwrap();
        assert_eq!(i.encap, encap::VLAN | encap::PPPOE);
        assert_eq!((i.l4_proto, i.icmp_type, i.icmp_code), (1, 3, 3));
        assert_eq!(&out[18..22], &[0x11, 0x00, 0x0b, 0x3a]);
        let len = u16::from_be_bytes([out[22], out[23]]);
        assert_eq!(usize::from(len), n - 26 + 2);
        assert_eq!(usize::from(len), usize::from(i.l3_len) + 2);
        valid(&out);
    }

    #[test]
    fn link_local_group_frames_are_never_forwarded_unless_configured() {
        let mac = wire::ethernet::MacAddr([2, 0, 0, 0, 0, 1]);
        let lldp = wire::builder::lldp(mac, 0x0e);
        let mut eapol = wire::builder::lldp(mac, 0x03);
        eapol[12..14].copy_from_slice(&ethertype::EAPOL.to_be_bytes());
        let stp = wire::builder::lldp(mac, 0x00);
        let mut w = bridged("", BridgePolicy::default());
        for (f, port) in [(&lldp, A), (&eapol, B), (&stp, A)] {
            assert_eq!(
                run(&mut w, port, f, SEC).0,
                Verdict::Drop(DropReason::LinkLocal)
            );
        }
        // also behind a VLAN tag, and with IP inside
        let mut tagged_lldp = lldp[..12].to_vec();
        tagged_lldp.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
        tagged_lldp.extend_from_slice(&lldp[12..]);
        assert_eq!(
            run(&mut w, A, &tagged_lldp, SEC).0,
            Verdict::Drop(DropReason::LinkLocal)
        );
        let mut ip_to_group = tcp(C, S, 1, 2, 0x02, 1, 0);
        ip_to_group[..6].copy_from_slice(&lldp[..6]);
        assert_eq!(
            run(&mut w, A, &ip_to_group, SEC).0,
            Verdict::Drop(DropReason::LinkLocal)
        );
        assert_eq!(dropped(&w, DropReason::LinkLocal), 5);
        assert_eq!(w.stats().forwarded, 0);
        // the address just past the reserved range is ordinary multicast
        let mut next = lldp.clone();
        next[5] = 0x10;
        assert_eq!(run(&mut w, A, &next, SEC).0, Verdict::Forward);
        assert_eq!(class(&w, BridgeClass::OtherEthertype), 1);

        let mut w = bridged(
            "",
            BridgePolicy {
                forward_link_local: true,
                ..BridgePolicy::default()
            },
        );
        assert_eq!(run(&mut w, A, &lldp, SEC).0, Verdict::Forward);
        assert_eq!(class(&w, BridgeClass::LinkLocalForwarded), 1);
    }

    #[test]
    fn other_ethertypes_pass_or_drop_and_arp_always_passes() {
        let b = FrameBuilder::default();
        let arp = b.arp(
            1,
            (wire::ethernet::MacAddr([2, 0, 0, 0, 0, 1]), C),
            (wire::ethernet::MacAddr([0; 6]), S),
        );
        let mpls = b.ethernet(0x8847, &[0u8; 46]);
        let padi = b.ethernet(ethertype::PPPOE_DISCOVERY, &[0x11, 0x09, 0, 0, 0, 0]);
        let mut w = bridged("", BridgePolicy::default());
        for f in [&arp, &mpls, &padi] {
            assert_eq!(run(&mut w, A, f, SEC).0, Verdict::Forward);
        }
        assert_eq!(class(&w, BridgeClass::OtherEthertype), 1);
        assert_eq!(class(&w, BridgeClass::PppoeDiscovery), 1);
        assert_eq!(w.stats().non_ip, 3);
        let mut w = bridged(
            "",
            BridgePolicy {
                other_ethertypes: false,
                pppoe_discovery: false,
                ..BridgePolicy::default()
            },
        );
        assert_eq!(run(&mut w, A, &arp, SEC).0, Verdict::Forward);
        assert_eq!(
            run(&mut w, A, &mpls, SEC).0,
            Verdict::Drop(DropReason::EthertypeDropped)
        );
        assert_eq!(
            run(&mut w, A, &padi, SEC).0,
            Verdict::Drop(DropReason::PppoeDiscoveryDropped)
        );
    }
}

#[cfg(test)]
mod differential {
    //! Chain traversal against a naive reference: a recursive walk of the same rules, one rule
    //! at a time with `RuleSpec::matches`, on random rulesets with jumps, gotos and RETURNs.
    use super::*;
    use crate::compile::tests::{cfg, v4 as parse_v4};
    use crate::compile::{compile, CompiledChain};
    use proptest::prelude::*;
    use wire::builder::{FrameBuilder, IpPair, TcpSpec};
    use wire::parse_frame;
    use wire::tcp::TcpFlags;

    #[derive(Clone, Debug)]
    struct R {
        m: u8,
        t: u8,
        to: u8,
    }

    fn text(chains: &[Vec<R>], policy_drop: bool) -> String {
        let mut s = format!(
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD {} [0:0]\n:OUTPUT ACCEPT [0:0]\n",
            if policy_drop { "DROP" } else { "ACCEPT" }
        );
        for i in 1..chains.len() {
            s += &format!(":c{i} - [0:0]\n");
        }
        for (i, rules) in chains.iter().enumerate() {
            let name = if i == 0 {
                "FORWARD".to_string()
            } else {
                format!("c{i}")
            };
            for r in rules {
                let m = match r.m % 5 {
                    0 => "".to_string(),
                    1 => "-p tcp -m tcp --dport 22 ".into(),
                    2 => "-p tcp -m tcp --dport 80:443 ".into(),
                    3 => "-s 198.18.1.0/24 ".into(),
                    _ => "! -s 198.18.1.0/24 -p tcp -m tcp ! --dport 80 ".into(),
                };
                // jumps only forward (no loops); the last chain cannot jump
                let later = chains.len() - 1 - i;
                let t = match (r.t % 6, later) {
                    (0, _) => "-j ACCEPT".to_string(),
                    (1, _) => "-j DROP".into(),
                    (2, _) if i > 0 => "-j RETURN".into(),
                    (3, l) if l > 0 => format!("-j c{}", i + 1 + usize::from(r.to) % l),
                    (4, l) if l > 0 => format!("-g c{}", i + 1 + usize::from(r.to) % l),
                    _ => String::new(),
                };
                s += &format!("-A {name} {m}{t}\n")
                    .replace("  ", " ")
                    .replace(" \n", "\n");
            }
        }
        s + "COMMIT\n"
    }

    /// (accepted, chain, rule or POLICY)
    fn reference(chains: &[CompiledChain], cur: u32, key: &Key) -> Option<(bool, u32, u32)> {
        let c = &chains[cur as usize];
        let specs = c.classifier.rules();
        for (i, (s, r)) in specs.iter().zip(&c.rules).enumerate() {
            if !s.matches(key) {
                continue;
            }
            match &r.action {
                Action::Accept => return Some((true, cur, i as u32)),
                Action::Drop => return Some((false, cur, i as u32)),
                Action::Return => return None,
                Action::Jump(t) => {
                    if let Some(v) = reference(chains, *t, key) {
                        return Some(v);
                    }
                }
                Action::Goto(t) => return reference(chains, *t, key),
                _ => {}
            }
        }
        None
    }

    proptest! {
        #[test]
        fn traversal_matches_a_naive_walk(
            chains in proptest::collection::vec(proptest::collection::vec((any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(m, t, to)| R { m, t, to }), 0..5), 1..5),
            policy_drop in any::<bool>(),
            packets in proptest::collection::vec((any::<bool>(), prop::sample::select(vec![22u16, 80, 443, 8080])), 1..12),
        ) {
            let rs = parse_v4(&text(&chains, policy_drop));
            let c = compile(Some(&rs), None, &cfg()).unwrap();
            let rules = Arc::new(ArcSwap::from_pointee(c));
            let mut w = Worker::new(rules.clone(), &conntrack::Config::default(), 256, 0, 1, 0);
            let snap = rules.load_full();
            let fwd = snap.v4.hooks[HookPoint::FilterForward as usize].unwrap();
            for (n, (net1, dport)) in packets.into_iter().enumerate() {
                let src = if net1 { [198, 18, 1, 7] } else { [198, 18, 0, 7] };
                let f = FrameBuilder::default().tcp(
                    IpPair::V4(src, [198, 18, 0, 2]),
                    &TcpSpec { src_port: 1000 + n as u16, dst_port: dport, seq: 1, ack: 0, flags: TcpFlags::SYN, window: 1, options: vec![], payload: b"" },
                );
                let mut buf = f.clone();
                buf.resize(256, 0);
                let v = w.process(0, &mut buf, f.len(), 1_000_000_000);
                let info = parse_frame(&f).unwrap();
                let mut key = key_of(&info, 0, 1);
                key.ct = ct::NEW;
                let want = reference(&snap.v4.chains, fwd, &key)
                    .unwrap_or((!policy_drop, fwd, POLICY));
                prop_assert_eq!(v == Verdict::Forward, want.0, "{:?}", rs.to_save());
                prop_assert_eq!(w.trace().decided[HookPoint::FilterForward as usize], Some((want.1, want.2)));
            }
        }
    }
}

#[cfg(test)]
mod robustness {
    //! Any bytes, and valid frames with bytes flipped, go through every stage (NAT both ways,
    //! REJECT, LOG) without a panic; what is forwarded still parses.
    use super::*;
    use crate::compile::compile;
    use crate::compile::tests::{cfg, v4 as parse_v4};
    use proptest::prelude::*;

    fn worker() -> Worker {
        let text = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
                    -A PREROUTING -i fw-c -p tcp -m tcp --dport 80 -j DNAT --to-destination 198.18.0.3:8080\n\
                    -A POSTROUTING -o fw-s -j MASQUERADE --random\nCOMMIT\n\
                    *filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                    -A FORWARD -j LOG --log-prefix \"all \" --log-tcp-options --log-ip-options\n\
                    -A FORWARD -p udp -m udp --dport 9 -j REJECT\n-A FORWARD -p tcp -m tcp --dport 9 -j REJECT --reject-with tcp-reset\nCOMMIT\n";
        let c = compile(Some(&parse_v4(text)), None, &cfg()).unwrap();
        let mut w = Worker::new(
            Arc::new(ArcSwap::from_pointee(c)),
            &conntrack::Config::default(),
            64,
            0,
            1,
            0,
        );
        let (tx, _rx) = rtrb::RingBuffer::new(1);
        w.set_log_queue(tx);
        w
    }

    proptest! {
        #[test]
        fn no_frame_panics(
            frames in proptest::collection::vec(
                prop_oneof![
                    proptest::collection::vec(any::<u8>(), 0..120),
                    (wire::strategies::valid_frame(), proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4))
                        .prop_map(|(mut f, flips)| {
                            for (at, x) in flips {
                                let n = f.len();
                                f[at % n] ^= x;
                            }
                            f
                        }),
                    wire::strategies::valid_frame(),
                ],
                1..24,
            ),
            ports in proptest::collection::vec(any::<bool>(), 24),
        ) {
            let mut w = worker();
            for (i, f) in frames.iter().enumerate() {
                let mut buf = f.clone();
                buf.resize(f.len() + 1500, 0);
                let v = w.process(u8::from(ports[i]), &mut buf, f.len(), (i as u64 + 1) * 1_000_000);
                match v {
                    Verdict::Forward => prop_assert!(wire::parse_frame(&buf[..f.len()]).is_ok()),
                    Verdict::Reply(n) => prop_assert!(wire::parse_frame(&buf[..n]).is_ok()),
                    Verdict::Drop(_) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod vector {
    //! The vector path (`process_burst`: parse all, look all up, classify the NEW ones ahead,
    //! then each frame in order) against the same frames one at a time (`process`): verdicts,
    //! bytes out, every counter, rule counters, LOG events and conntrack's table agree, on
    //! random bursts that repeat flows inside a burst, mix NEW and ESTABLISHED, NAT both ways,
    //! REJECT, LOG, `-m limit` and malformed frames.
    use super::*;
    use crate::compile::compile;
    use crate::compile::tests::{cfg, v4 as parse_v4};
    use proptest::prelude::*;
    use wire::builder::{FrameBuilder, IpPair, TcpSpec};
    use wire::tcp::TcpFlags;

    fn ruleset(limit: bool) -> String {
        format!(
            "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
             -A PREROUTING -i fw-c -p tcp -m tcp --dport 8080 -j DNAT --to-destination 198.18.0.3:80\n\
             -A POSTROUTING -o fw-s -p udp -j MASQUERADE\n\
             -A POSTROUTING -o fw-s -s 198.18.0.1/32 -p tcp -j SNAT --to-source 198.18.0.250\nCOMMIT\n\
             *filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
             -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
             -A FORWARD -p tcp -m tcp --dport 22 -j LOG --log-prefix \"ssh \"\n\
             {}\
             -A FORWARD -p tcp -m tcp --dport 23 -j REJECT --reject-with tcp-reset\n\
             -A FORWARD -p udp -m udp --dport 9 -j REJECT\n\
             -A FORWARD -i fw-c -p tcp -m tcp ! --dport 25 -j ACCEPT\n\
             -A FORWARD -i fw-c -p udp -j ACCEPT\n\
             -A FORWARD -p icmp -j ACCEPT\nCOMMIT\n",
            if limit {
                "-A FORWARD -p udp -m udp --dport 53 -m limit --limit 1/sec --limit-burst 3 -j ACCEPT\n-A FORWARD -p udp -m udp --dport 53 -j DROP\n"
            } else {
                ""
            }
        )
    }

    fn worker(limit: bool) -> (Worker, Arc<ArcSwap<Compiled>>, rtrb::Consumer<LogEvent>) {
        let c = compile(Some(&parse_v4(&ruleset(limit))), None, &cfg()).unwrap();
        let rules = Arc::new(ArcSwap::from_pointee(c));
        let mut w = Worker::new(rules.clone(), &conntrack::Config::default(), 64, 0, 1, 0);
        let (tx, rx) = rtrb::RingBuffer::new(4096);
        w.set_log_queue(tx);
        (w, rules, rx)
    }

    /// Frame `kind` of flow `flow`: from the client (port a) or the server (port b).
    fn frame(kind: u8, flow: u8, from_server: bool) -> Vec<u8> {
        let b = FrameBuilder::default();
        let c = [198, 18, 0, 1 + flow % 2];
        let s = [198, 18, 0, 2];
        let sport = 1000 + u16::from(flow);
        let dport = [80u16, 8080, 22, 23, 25][usize::from(flow) % 5];
        let (src, dst, sp, dp) = if from_server {
            (s, c, dport, sport)
        } else {
            (c, s, sport, dport)
        };
        let tcp = |flags: u8| {
            b.tcp(
                IpPair::V4(src, dst),
                &TcpSpec {
                    src_port: sp,
                    dst_port: dp,
                    seq: 1,
                    ack: 0,
                    flags: TcpFlags(flags),
                    window: 100,
                    options: vec![],
                    payload: b"",
                },
            )
        };
        match kind % 8 {
            0 => tcp(0x02),
            1 => tcp(if from_server { 0x12 } else { 0x10 }),
            2 => b.udp(
                IpPair::V4(src, dst),
                sp,
                [53u16, 9, 5353][usize::from(flow) % 3],
                b"q",
            ),
            3 => b.echo(IpPair::V4(src, dst), !from_server, u16::from(flow), 1, b"p"),
            4 => tcp(0x03), // SYN+FIN: INVALID
            5 => tcp(0x04),
            6 => vec![0u8; 10 + usize::from(flow)],
            _ => tcp(0x11),
        }
    }

    proptest! {
        #[test]
        fn a_burst_does_what_its_frames_do_one_at_a_time(
            limit in any::<bool>(),
            bursts in proptest::collection::vec(
                (any::<bool>(), proptest::collection::vec((any::<u8>(), 0u8..6), 1..40)),
                1..8,
            ),
        ) {
            let (mut vw, vrules, mut vlog) = worker(limit);
            let (mut sw, srules, mut slog) = worker(limit);
            for (k, (from_server, frames)) in bursts.iter().enumerate() {
                let now = SEC_ + k as u64 * 300_000_000;
                let ingress = u8::from(*from_server);
                let mut bufs: Vec<Vec<u8>> = frames
                    .iter()
                    .map(|&(kind, flow)| {
                        let mut f = frame(kind, flow, *from_server);
                        f.resize(f.len().max(60), 0);
                        f
                    })
                    .collect();
                let mut lens: Vec<usize> = bufs.iter().map(|b| b.len()).collect();
                let single: Vec<(Verdict, Vec<u8>)> = bufs
                    .iter()
                    .map(|f| {
                        let mut buf = f.clone();
                        buf.resize(2048, 0);
                        let v = sw.process(ingress, &mut buf, f.len(), now);
                        let n = if let Verdict::Reply(n) = v { n } else { f.len() };
                        buf.truncate(n);
                        (v, buf)
                    })
                    .collect();
                for b in &mut bufs {
                    b.resize(2048, 0);
                }
                let mut refs: Vec<&mut [u8]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
                let mut verdicts = vec![Verdict::Forward; refs.len()];
                vw.process_burst(ingress, &mut refs, &mut lens, &mut verdicts, now);
                for (i, (v, out)) in single.iter().enumerate() {
                    prop_assert_eq!(verdicts[i], *v, "burst {} frame {}", k, i);
                    prop_assert_eq!(&bufs[i][..lens[i]], &out[..], "burst {} frame {}", k, i);
                }
                prop_assert_eq!(vw.stats_snapshot(), sw.stats_snapshot());
                prop_assert_eq!(vw.shard().len(), sw.shard().len());
            }
            let (vr, sr) = (vrules.load_full(), srules.load_full());
            let count = |c: &RuleCounters| -> Vec<(u64, u64)> {
                c.packets
                    .iter()
                    .zip(&c.bytes)
                    .map(|(p, b)| (p.load(std::sync::atomic::Ordering::Relaxed), b.load(std::sync::atomic::Ordering::Relaxed)))
                    .collect()
            };
            prop_assert_eq!(count(&vr.counters[0]), count(&sr.counters[0]));
            let mut events = Vec::new();
            while let (Ok(a), Ok(b)) = (vlog.pop(), slog.pop()) {
                events.push((a.prefix().to_string(), a.bytes().to_vec(), a.ts_ns));
                prop_assert_eq!((a.prefix(), a.bytes(), a.ts_ns), (b.prefix(), b.bytes(), b.ts_ns));
            }
            prop_assert!(vlog.is_empty() && slog.is_empty());
        }
    }

    const SEC_: u64 = 1_000_000_000;

    /// The NEW packets of a burst are classified ahead (one lookup burst per chain), and the
    /// walks use what was found: the FORWARD decisions are the chain's rules, not the policy.
    #[test]
    fn new_flows_of_a_burst_are_classified_ahead_and_decided_by_their_rules() {
        let (mut w, _rules, _log) = worker(false);
        let rs = w.rules().load_full();
        let frames: Vec<Vec<u8>> = (0..8u8).map(|f| frame(0, f, false)).collect();
        let mut st = w.take_stages();
        for (i, f) in frames.iter().enumerate() {
            w.parse_slot(&mut st, i, 0, f);
        }
        w.prepare(&rs, &mut st, frames.len(), |i| &frames[i], SEC_);
        let fwd = HookPoint::FilterForward as usize;
        assert_eq!(st.ahead_pos[0][fwd], 1, "past the ESTABLISHED rule");
        for i in 0..frames.len() {
            assert!(st.ahead[i]);
            // dport 80, 8080 (DNAT'd: its FORWARD walk looks up again), 22 (LOG), 23, 25
            let want = [4u32, 4, 1, 2, NO_MATCH][i % 5];
            assert_eq!(st.first[i][fwd], want, "slot {i}");
        }
        w.put_stages(st);
    }
}
