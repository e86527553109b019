//! The compiled ruleset the workers run: [`Compiled`] (both families' chains, each a
//! [`classify::Classifier`] plus per rule a [`RuleTarget`] (its target, resolved) and the
//! [`LeafCheck`]s that are not classifier dimensions), its counters and `-m limit` buckets.
//! Apart from the compiler ([`compile`](mod@crate::compile)) because the data path reads only
//! these types: what a worker needs to know is here, how the iptables AST becomes it is there.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use classify::{Classifier, CtMatch, PortMatch};
use rules::{
    Hook, LogTarget, MultiportDir, NatRange, NflogTarget, Policy, RejectWith, Ruleset, TableName,
    TtlOp,
};

use crate::compile::{compile, CompileConfig};

/// One port of the bump in the wire as rules see it: `-i`/`-o` names, and its addresses (for
/// MASQUERADE and as the source of nothing else).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortInfo {
    /// The interface name rules use in `-i`/`-o` (the config's port name).
    pub name: String,
    /// `[ports.x] address`: MASQUERADE's source address when leaving through this port.
    pub ipv4: Option<Ipv4Addr>,
    /// `[ports.x] address6`: MASQUERADE's IPv6 source address when leaving through this port.
    pub ipv6: Option<Ipv6Addr>,
    /// The port's MTU (`[ports.x] mtu`, else the interface's): what `TCPMSS
    /// --clamp-mss-to-pmtu` clamps to, as the kernel uses the route's and the device's.
    pub mtu: u16,
}

impl PortInfo {
    pub fn named(name: &str) -> PortInfo {
        PortInfo {
            name: name.to_string(),
            ipv4: None,
            ipv6: None,
            mtu: 1500,
        }
    }
}

/// The hooks a bridged packet traverses, in netfilter's order (`br_netfilter` runs the IPv4/IPv6
/// PREROUTING, FORWARD and POSTROUTING hooks; within a hook the tables run by priority: raw
/// -300, conntrack -200, mangle -150, nat DNAT -100, filter 0, security 50, nat SNAT 100). The
/// INPUT and OUTPUT chains of mangle and security load but never see a bridged packet, as on a
/// Linux bridge firewall.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HookPoint {
    RawPrerouting = 0,
    ManglePrerouting = 1,
    NatPrerouting = 2,
    MangleForward = 3,
    FilterForward = 4,
    SecurityForward = 5,
    ManglePostrouting = 6,
    NatPostrouting = 7,
}

impl HookPoint {
    /// Number of hook points (the length of per-hook arrays).
    pub const COUNT: usize = 8;

    pub const ALL: [HookPoint; HookPoint::COUNT] = [
        HookPoint::RawPrerouting,
        HookPoint::ManglePrerouting,
        HookPoint::NatPrerouting,
        HookPoint::MangleForward,
        HookPoint::FilterForward,
        HookPoint::SecurityForward,
        HookPoint::ManglePostrouting,
        HookPoint::NatPostrouting,
    ];

    pub(crate) fn table_hook(self) -> (TableName, Hook) {
        match self {
            HookPoint::RawPrerouting => (TableName::Raw, Hook::Prerouting),
            HookPoint::ManglePrerouting => (TableName::Mangle, Hook::Prerouting),
            HookPoint::NatPrerouting => (TableName::Nat, Hook::Prerouting),
            HookPoint::MangleForward => (TableName::Mangle, Hook::Forward),
            HookPoint::FilterForward => (TableName::Filter, Hook::Forward),
            HookPoint::SecurityForward => (TableName::Security, Hook::Forward),
            HookPoint::ManglePostrouting => (TableName::Mangle, Hook::Postrouting),
            HookPoint::NatPostrouting => (TableName::Nat, Hook::Postrouting),
        }
    }
}

/// A NAT translation range, resolved to numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatSpec {
    /// Inclusive address range as numbers (IPv4 in the low 32 bits); `None` keeps the address
    /// (port-only DNAT).
    pub addrs: Option<(u128, u128)>,
    /// Inclusive port range; `None` keeps the port where it is unique.
    pub ports: Option<(u16, u16)>,
    /// DNAT's `/base` port shift: the new port is `lo + (port - base) % (hi - lo + 1)`.
    pub shift: Option<u16>,
    /// `--random` / `--random-fully`: start the port search at a pseudo-random offset.
    pub random: bool,
}

impl NatSpec {
    pub(crate) fn from_range(r: &NatRange) -> NatSpec {
        let num = |a: IpAddr| match a {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        };
        NatSpec {
            addrs: r.addrs.map(|(lo, hi)| (num(lo), num(hi))),
            ports: r.ports.map(|p| (p.lo, p.hi)),
            shift: r.ports.and_then(|p| p.base),
            random: r.random || r.random_fully,
        }
    }

    /// One address (NETMAP's, MASQUERADE's), ports as given.
    pub(crate) fn to_addr(addr: u128, ports: Option<(u16, u16)>, random: bool) -> NatSpec {
        NatSpec {
            addrs: Some((addr, addr)),
            ports,
            shift: None,
            random,
        }
    }
}

/// A rule's target, with chain names resolved to chain ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleTarget {
    /// No `-j`: count and continue.
    Continue,
    Accept,
    Drop,
    Return,
    Jump(u32),
    Goto(u32),
    Reject(RejectWith),
    Log(LogTarget),
    Nflog(NflogTarget),
    Snat(NatSpec),
    Dnat(NatSpec),
    Masquerade {
        ports: Option<(u16, u16)>,
        random: bool,
    },
    /// `NETMAP`: the address (destination in PREROUTING, source in POSTROUTING) keeps its bits
    /// outside `mask` and takes `net`'s inside it (numbers as in [`NatSpec::addrs`]).
    Netmap {
        net: u128,
        mask: u128,
    },
    /// `REDIRECT`: to the box's own stack, which a bump in the wire does not have; the packet
    /// is dropped (`redirect_local`), as the kernel bridge delivers it locally or, with no
    /// address on the bridge, drops it: it is never forwarded.
    Redirect,
    /// `NOTRACK` / `CT --notrack`: the packet stays untracked; traversal continues.
    Notrack,
    /// `MARK`: the packet's mark becomes `(mark & !mask) ^ value`; traversal continues.
    Mark(rules::XMark),
    /// `CONNMARK`: the connection's mark (set, save) or the packet's (restore); a packet without
    /// a conntrack entry is left as it is, as `connmark_tg` does. Traversal continues.
    Connmark(rules::ConnmarkTarget),
    /// A header rewrite (`TTL`, `HL`, `DSCP`, `TOS`, `TCPMSS`, `ECN`): applied to the frame
    /// in place, checksums updated incrementally; traversal continues (see [`crate::rewrite`]).
    Rewrite(crate::rewrite::Rewrite),
    /// `CHECKSUM` and `CLASSIFY`: counted, nothing changes (see [`rules::Ruleset::no_effect`]).
    NoEffect,
}

/// A check that is not a classifier dimension, evaluated at the classifier's leaf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeafCheck {
    /// `-s`/`-d` with a non-contiguous mask (`addr & mask == value`), `dst` says which.
    Masked {
        dst: bool,
        value: u128,
        mask: u128,
        negated: bool,
    },
    /// A second address range (`-m iprange` next to `-s`).
    Range {
        dst: bool,
        lo: u128,
        hi: u128,
        negated: bool,
    },
    /// A second port constraint (another `-m tcp`/`-m udp` instance).
    Port { dst: bool, m: PortMatch },
    /// A second `--ctstate` (all of a rule's matches must hold).
    Ct(CtMatch),
    /// `-m multiport`.
    Multiport {
        dir: MultiportDir,
        ports: Vec<(u16, u16)>,
        negated: bool,
    },
    /// `-m tcp --tcp-option N`.
    TcpOption { kind: u8, negated: bool },
    /// `-m mac --mac-source`.
    Mac { addr: [u8; 6], negated: bool },
    /// `-m length`.
    Length { min: u16, max: u16, negated: bool },
    /// `-m ttl` / `-m hl`.
    Ttl { op: TtlOp, value: u8 },
    /// `-m sctp`, `-m dccp`, `-m esp`, `-m ah`: read from the frame ([`crate::proto`]).
    Proto(crate::proto::ProtoCheck),
    /// `-m mark`: the packet's mark, as MARK rules earlier in the traversal left it. A leaf
    /// check, not a classifier dimension: the mark changes during the walk (a dimension would
    /// need the lookup redone after each MARK, and value/mask is a ternary match the tree does
    /// not split on yet), and rulesets test it in a few rules, not thousands.
    Mark(rules::MarkMatch),
    /// `-m connmark`: the connection's mark; false for a packet without an entry (untracked,
    /// invalid, or in raw PREROUTING before conntrack), negated or not, as `connmark_mt`.
    Connmark(rules::MarkMatch),
    /// `-m limit`: the rule's token bucket. Always the last check of a rule, so that a token is
    /// only spent on a packet that every other match of the rule accepted (netfilter evaluates
    /// `limit` where it stands; rules put it last in practice).
    Limit(Arc<LimitBucket>),
    /// `-m addrtype`, `-m pkttype`, `-m tos`, `-m dscp`, `-m ecn`, `-m physdev` and the
    /// host-only matches (see [`crate::stateless`]).
    Stateless(crate::stateless::StatelessCheck),
    /// `-m recent`: a list shared by name ([`crate::stateful`]).
    Recent(Arc<crate::stateful::RecentCheck>),
    /// `-m statistic`: random, or the rule's nth counter.
    Statistic(Arc<crate::stateful::Statistic>),
    /// `-m time`: the wall clock ([`crate::limits::time_matches`]).
    Time(rules::TimeMatch),
    /// `-m conntrack` options other than `--ctstate` (which is the classifier's `ct`
    /// dimension or a [`LeafCheck::Ct`]): the packet's entry ([`crate::limits`]).
    Conntrack(Box<rules::ConntrackMatch>),
    /// `-m connbytes`: the connection's counters ([`crate::limits::connbytes_matches`]).
    Connbytes(rules::ConnbytesMatch),
    /// `-m hashlimit`: a table shared by name ([`crate::limits`]).
    Hashlimit(Arc<crate::limits::HashlimitCheck>),
}

impl LeafCheck {
    /// Evaluating it changes state (a token, a list, a counter): such a rule cannot be looked
    /// up ahead of its walk.
    pub fn has_side_effect(&self) -> bool {
        matches!(
            self,
            LeafCheck::Limit(_)
                | LeafCheck::Recent(_)
                | LeafCheck::Statistic(_)
                // not a side effect but as bad for a lookup ahead: the marks are set during
                // the walk, after it
                | LeafCheck::Mark(_)
                | LeafCheck::Connmark(_)
                | LeafCheck::Hashlimit(_)
                // the entry is known only once the packet is tracked
                | LeafCheck::Conntrack(_)
                | LeafCheck::Connbytes(_)
        )
    }
}

/// The token bucket of one `-m limit` rule, as `xt_limit`: `burst` packets at once, then one per
/// `avg` interval. It is shared by all workers, as the kernel's is shared by all CPUs, and kept as
/// one atomic (the generic cell rate algorithm's theoretical arrival time), so a worker updates
/// it with one compare-and-swap and never waits. A reload builds fresh buckets (full), as
/// `iptables-restore` does.
#[derive(Debug)]
pub struct LimitBucket {
    /// Nanoseconds per packet at the average rate.
    pub(crate) interval_ns: u64,
    /// How far ahead of `now` the arrival time may run: `burst - 1` intervals.
    pub(crate) tolerance_ns: u64,
    /// Theoretical arrival time of the next conforming packet.
    tat: AtomicU64,
}

impl LimitBucket {
    /// A full bucket for `m` (`avg` in 1/10000 s per packet, `XT_LIMIT_SCALE`).
    pub fn new(m: &rules::LimitMatch) -> LimitBucket {
        let interval_ns = u64::from(m.avg) * (1_000_000_000 / u64::from(rules::LimitMatch::SCALE));
        LimitBucket {
            interval_ns,
            tolerance_ns: interval_ns * u64::from(m.burst.max(1) - 1),
            tat: AtomicU64::new(0),
        }
    }

    /// Takes a token at `now` (ns); false when the bucket is empty.
    pub fn take(&self, now: u64) -> bool {
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            if tat > now.saturating_add(self.tolerance_ns) {
                return false;
            }
            let next = tat.max(now) + self.interval_ns;
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(seen) => tat = seen,
            }
        }
    }
}

/// Buckets compare by their parameters: two compilations of the same rule are equal.
impl PartialEq for LimitBucket {
    fn eq(&self, other: &Self) -> bool {
        self.interval_ns == other.interval_ns && self.tolerance_ns == other.tolerance_ns
    }
}

impl Eq for LimitBucket {}

/// One compiled rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledRule {
    pub action: RuleTarget,
    pub leaf: Vec<LeafCheck>,
    /// Index into the per-worker counter arrays.
    pub counter: u32,
    /// Source line.
    pub line: u32,
}

/// One compiled chain.
#[derive(Debug)]
pub struct CompiledChain {
    pub table: TableName,
    pub name: String,
    /// `Some` for built-in chains.
    pub policy: Option<Policy>,
    /// Counter index of the policy (built-in chains).
    pub policy_counter: u32,
    pub classifier: Classifier,
    pub rules: Vec<CompiledRule>,
    /// The chain's leading rules that test nothing but `--ctstate` (the usual `ESTABLISHED,RELATED
    /// -j ACCEPT` first rule): checked directly before the classifier, so established traffic
    /// does not walk the tree.
    pub ct_prefix: Vec<CtMatch>,
    /// No rule's leaf takes a `-m limit` token: a lookup changes nothing, so the vector path
    /// may classify a burst of NEW packets ahead of their walks (see `Worker`'s stages).
    pub lookup_is_pure: bool,
}

/// Everything of one family.
#[derive(Debug, Default)]
pub struct FamilyRules {
    pub chains: Vec<CompiledChain>,
    /// Entry chain of each [`HookPoint`], `None` where the table is absent (ACCEPT).
    pub hooks: [Option<u32>; HookPoint::COUNT],
    /// Some mangle or security hook has a chain: without one the walk skips their checks
    /// with one test (the new-flow path stays as short as before the tables existed).
    pub mangles: bool,
    /// The source ruleset (for listings with counters).
    pub source: Option<Ruleset>,
    /// Some hook chain has a lookup the vector path can do ahead for NEW packets
    /// ([`CompiledChain::ahead_start`]); without one it skips that stage.
    pub classifies_ahead: bool,
    /// Some rule has `-m connbytes`: the worker counts packets and bytes per connection (as
    /// loading such a rule turns on the kernel's conntrack accounting).
    pub counts_bytes: bool,
    /// The smaller of the two ports' MTUs: `TCPMSS --clamp-mss-to-pmtu` clamps to it, as the
    /// kernel takes the smaller of the route's MTU and the reverse route's.
    pub clamp_mtu: u16,
}

impl CompiledChain {
    /// Where a NEW packet's first classifier lookup in this chain starts: past the `ct_prefix`
    /// rules, none of which may match ctstate NEW; `None` when there is no lookup to do ahead
    /// (a prefix rule matches NEW, no rule after the prefix, or a lookup with a side effect).
    pub fn ahead_start(&self) -> Option<u32> {
        let new = classify::ct::NEW;
        let hit = self
            .ct_prefix
            .iter()
            .any(|c| ((new & c.mask) != 0) != c.negate);
        let pos = self.ct_prefix.len();
        (self.lookup_is_pure && !hit && pos < self.rules.len()).then_some(pos as u32)
    }
}

impl FamilyRules {
    /// The chain id of `name` in `table`.
    pub fn chain_id(&self, table: TableName, name: &str) -> Option<u32> {
        self.chains
            .iter()
            .position(|c| c.table == table && c.name == name)
            .map(|i| i as u32)
    }
}

/// Per-worker rule counters: one writer (the worker), read by the control thread.
#[derive(Debug)]
pub struct RuleCounters {
    pub packets: Vec<AtomicU64>,
    pub bytes: Vec<AtomicU64>,
}

impl RuleCounters {
    pub(crate) fn new(n: usize) -> RuleCounters {
        RuleCounters {
            packets: (0..n).map(|_| AtomicU64::new(0)).collect(),
            bytes: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Adds one packet of `bytes`; the worker is the only writer, so load+store suffices.
    #[inline]
    pub fn hit(&self, idx: u32, bytes: u64) {
        let i = idx as usize;
        let p = &self.packets[i];
        p.store(p.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        let b = &self.bytes[i];
        b.store(b.load(Ordering::Relaxed) + bytes, Ordering::Relaxed);
    }
}

/// The whole compiled ruleset: immutable once built, shared by the workers.
#[derive(Debug)]
pub struct Compiled {
    pub v4: FamilyRules,
    pub v6: FamilyRules,
    pub ports: [PortInfo; 2],
    /// Number of counter slots (rules and policies of both families).
    pub counter_slots: usize,
    /// One counter set per worker.
    pub counters: Vec<RuleCounters>,
    /// Whether anything needs a LOG/NFLOG event queue.
    pub has_log: bool,
}

impl Compiled {
    /// Rules of a family.
    pub fn family(&self, v6: bool) -> &FamilyRules {
        if v6 {
            &self.v6
        } else {
            &self.v4
        }
    }

    /// Packets and bytes of counter slot `idx`, summed over workers.
    pub fn counter_sum(&self, idx: u32) -> (u64, u64) {
        self.counters.iter().fold((0, 0), |(p, b), c| {
            (
                p + c.packets[idx as usize].load(Ordering::Relaxed),
                b + c.bytes[idx as usize].load(Ordering::Relaxed),
            )
        })
    }

    /// `iptables -t TABLE -L -n -v` of a family with the live counters.
    pub fn list(&self, v6: bool, table: &str) -> String {
        let fam = self.family(v6);
        let Some(src) = &fam.source else {
            return String::new();
        };
        let Some(tn) = TableName::from_name(table) else {
            return String::new();
        };
        let counters = |chain: &str, idx: usize| -> (u64, u64) {
            let Some(cid) = fam.chain_id(tn, chain) else {
                return (0, 0);
            };
            let c = &fam.chains[cid as usize];
            if idx == usize::MAX {
                return self.counter_sum(c.policy_counter);
            }
            c.rules
                .get(idx)
                .map(|r| self.counter_sum(r.counter))
                .unwrap_or((0, 0))
        };
        src.to_list(table, Some(&counters))
    }

    /// Every rule and policy with its summed counters, for metrics: (family `ipv4`/`ipv6`,
    /// table, chain, 1-based rule number or 0 for the policy, packets, bytes).
    pub fn rule_counters(&self) -> Vec<(&'static str, &'static str, &str, usize, u64, u64)> {
        let mut out = Vec::new();
        for (fname, fam) in [("ipv4", &self.v4), ("ipv6", &self.v6)] {
            for c in &fam.chains {
                for (i, r) in c.rules.iter().enumerate() {
                    let (p, b) = self.counter_sum(r.counter);
                    out.push((fname, c.table.as_str(), c.name.as_str(), i + 1, p, b));
                }
                if c.policy.is_some() {
                    let (p, b) = self.counter_sum(c.policy_counter);
                    out.push((fname, c.table.as_str(), c.name.as_str(), 0, p, b));
                }
            }
        }
        out
    }

    /// An empty ruleset: everything accepted (conntrack still tracks).
    pub fn accept_all(cfg: &CompileConfig) -> Compiled {
        compile(None, None, cfg).expect("an empty ruleset always compiles")
    }
}
