//! The parsed ruleset: what `iptables-save` would show, already normalised to iptables' canonical
//! form (host bits cleared, ports and ICMP types numeric, states as bit sets), so that consumers
//! (the classifier, the printers) never re-interpret text.
//!
//! Layout for a consumer such as `classify`: a [`Ruleset`] holds [`Table`]s, a table holds
//! [`Chain`]s (built-in ones carry a [`Policy`]), a chain holds [`Rule`]s in evaluation order. A
//! [`Rule`] is the generic part (addresses as prefix/mask with negation, interfaces with the `+`
//! wildcard, protocol, fragment flag) plus its [`Match`] list in load order plus a [`Target`].
//! Every field that can be negated carries `negated`; all conditions of a rule are ANDed.

pub use crate::proto_ast::{AhMatch, DccpMatch, RtMatch, SctpMatch, SpiMatch, RT_HOPS};
pub use crate::stateful_ast::*;
use std::net::IpAddr;

/// Address family of a ruleset: `iptables` or `ip6tables`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Ipv4,
    Ipv6,
}

/// The tables fwd understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TableName {
    Filter,
    Nat,
    Raw,
    Mangle,
    Security,
}

impl TableName {
    pub fn as_str(self) -> &'static str {
        match self {
            TableName::Filter => "filter",
            TableName::Nat => "nat",
            TableName::Raw => "raw",
            TableName::Mangle => "mangle",
            TableName::Security => "security",
        }
    }
    pub fn from_name(s: &str) -> Option<TableName> {
        match s {
            "filter" => Some(TableName::Filter),
            "nat" => Some(TableName::Nat),
            "raw" => Some(TableName::Raw),
            "mangle" => Some(TableName::Mangle),
            "security" => Some(TableName::Security),
            _ => None,
        }
    }
    /// Built-in chains in kernel order (the order `iptables-save` prints them).
    pub fn builtin_chains(self) -> &'static [Hook] {
        match self {
            TableName::Filter => &[Hook::Input, Hook::Forward, Hook::Output],
            TableName::Nat => &[
                Hook::Prerouting,
                Hook::Input,
                Hook::Output,
                Hook::Postrouting,
            ],
            TableName::Raw => &[Hook::Prerouting, Hook::Output],
            TableName::Mangle => &Hook::ALL,
            TableName::Security => &[Hook::Input, Hook::Forward, Hook::Output],
        }
    }
}

/// A netfilter hook, i.e. the name of a built-in chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

impl Hook {
    pub const ALL: [Hook; 5] = [
        Hook::Prerouting,
        Hook::Input,
        Hook::Forward,
        Hook::Output,
        Hook::Postrouting,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Prerouting => "PREROUTING",
            Hook::Input => "INPUT",
            Hook::Forward => "FORWARD",
            Hook::Output => "OUTPUT",
            Hook::Postrouting => "POSTROUTING",
        }
    }
    pub fn from_name(s: &str) -> Option<Hook> {
        Hook::ALL.into_iter().find(|h| h.as_str() == s)
    }
    pub(crate) fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// Policy of a built-in chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    Accept,
    Drop,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Accept => "ACCEPT",
            Policy::Drop => "DROP",
        }
    }
}

/// A whole ruleset of one family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    pub family: Family,
    /// Tables in the order `iptables-save` prints them (most recently first-used first, as the
    /// kernel lists them in a fresh namespace).
    pub tables: Vec<Table>,
}

impl Ruleset {
    pub fn new(family: Family) -> Ruleset {
        Ruleset {
            family,
            tables: Vec::new(),
        }
    }
    pub fn table(&self, name: TableName) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }
    pub fn table_mut(&mut self, name: TableName) -> Option<&mut Table> {
        self.tables.iter_mut().find(|t| t.name == name)
    }
    /// The table, created fresh (built-in chains, ACCEPT policies) on first use.
    pub fn table_or_create(&mut self, name: TableName) -> &mut Table {
        if let Some(i) = self.tables.iter().position(|t| t.name == name) {
            return &mut self.tables[i];
        }
        self.tables.insert(0, Table::new(name));
        &mut self.tables[0]
    }
}

/// One table: built-in chains first in kernel order, then user chains sorted by byte value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub name: TableName,
    pub chains: Vec<Chain>,
}

impl Table {
    pub fn new(name: TableName) -> Table {
        Table {
            name,
            chains: name
                .builtin_chains()
                .iter()
                .map(|h| Chain {
                    name: h.as_str().to_string(),
                    builtin: Some(*h),
                    policy: Some(Policy::Accept),
                    rules: Vec::new(),
                })
                .collect(),
        }
    }
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }
    pub fn chain_mut(&mut self, name: &str) -> Option<&mut Chain> {
        self.chains.iter_mut().find(|c| c.name == name)
    }
    /// Inserts a user chain keeping the canonical order (built-ins, then user chains by bytes).
    pub fn add_user_chain(&mut self, name: &str) {
        let pos = self
            .chains
            .iter()
            .position(|c| c.builtin.is_none() && c.name.as_bytes() > name.as_bytes())
            .unwrap_or(self.chains.len());
        self.chains.insert(
            pos,
            Chain {
                name: name.to_string(),
                builtin: None,
                policy: None,
                rules: Vec::new(),
            },
        );
    }
}

/// A chain. `builtin`/`policy` are `Some` exactly for built-in chains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    pub builtin: Option<Hook>,
    pub policy: Option<Policy>,
    pub rules: Vec<Rule>,
}

/// An address condition (`-s`/`-d`): `addr & mask == self.addr` (host bits already cleared).
/// `0.0.0.0/0` is represented by the field being `None`, except when negated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddrMatch {
    pub addr: IpAddr,
    pub mask: IpAddr,
    pub negated: bool,
}

impl AddrMatch {
    /// Prefix length when the mask is contiguous, else `None` (an IPv4 dotted mask like
    /// `255.0.255.0`, which the classifier must treat as a ternary match).
    pub fn prefix_len(&self) -> Option<u8> {
        let (bits, width) = match self.mask {
            IpAddr::V4(m) => (u128::from(u32::from(m)) << 96, 32u32),
            IpAddr::V6(m) => (u128::from(m), 128u32),
        };
        let ones = bits.leading_ones();
        let _ = width;
        if bits.checked_shl(ones).unwrap_or(0) == 0 {
            Some(ones as u8)
        } else {
            None
        }
    }
}

/// An interface condition (`-i`/`-o`). `wildcard` means the name is a prefix (`eth+`); `name`
/// holds the part before the `+`. `-i +` (empty name, wildcard) matches every packet and
/// `! -i +` none; iptables-save prints nothing for either (`-L` shows `+`), as the kernel keeps
/// them in the rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IfaceMatch {
    pub name: String,
    pub wildcard: bool,
    pub negated: bool,
}

/// A protocol condition (`-p`); `-p all` is the field being `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProtoMatch {
    /// IP protocol number (IPv6: the upper-layer protocol after extension headers).
    pub proto: u8,
    pub negated: bool,
}

/// An inclusive port range; a single port has `lo == hi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub const ANY: PortRange = PortRange { lo: 0, hi: 65535 };
}

/// Ports of `-m tcp`/`-m udp`: `None` means any (also what `0:65535` becomes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortMatch {
    pub range: PortRange,
    pub negated: bool,
}

/// TCP flag bits as in the TCP header (`FIN` = 0x01 ... `URG` = 0x20).
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ALL: u8 = 0x3f;
    /// Names in the order iptables prints them.
    pub const NAMES: [(&str, u8); 6] = [
        ("FIN", FIN),
        ("SYN", SYN),
        ("RST", RST),
        ("PSH", PSH),
        ("ACK", ACK),
        ("URG", URG),
    ];
}

/// `--tcp-flags MASK COMP`: `(flags & mask) == comp`, optionally negated. With `mask == 0` and
/// `comp != 0` it matches nothing, and iptables-save omits it (so printing is lossy there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpFlagsMatch {
    pub mask: u8,
    pub comp: u8,
    pub negated: bool,
}

/// `-m tcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpMatch {
    pub sport: Option<PortMatch>,
    pub dport: Option<PortMatch>,
    /// `--tcp-option N`: the option kind is present (negated: absent).
    pub option: Option<(u8, bool)>,
    pub flags: Option<TcpFlagsMatch>,
}

/// `-m udp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct UdpMatch {
    pub sport: Option<PortMatch>,
    pub dport: Option<PortMatch>,
}

/// ICMP / ICMPv6 type with an inclusive code range (`code_min=0, code_max=255`: any code).
/// IPv4 type 255 with any code is iptables' `any`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IcmpMatch {
    pub icmp_type: u8,
    pub code_min: u8,
    pub code_max: u8,
    pub negated: bool,
}

/// Which ports `-m multiport` looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MultiportDir {
    Source,
    Destination,
    /// `--ports`: source or destination.
    Either,
}

/// `-m multiport`: any of `ports` (at most 15 slots, a range takes two).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MultiportMatch {
    pub dir: MultiportDir,
    pub ports: Vec<PortRange>,
    pub negated: bool,
}

/// Conntrack state bits as the kernel defines them (`XT_STATE_*` / `XT_CONNTRACK_STATE_*`).
pub mod ct_state {
    pub const INVALID: u16 = 1 << 0;
    pub const ESTABLISHED: u16 = 1 << 1;
    pub const RELATED: u16 = 1 << 2;
    pub const NEW: u16 = 1 << 3;
    pub const UNTRACKED: u16 = 1 << 6;
    pub const SNAT: u16 = 1 << 8;
    pub const DNAT: u16 = 1 << 9;
    /// Names in the order iptables prints them.
    pub const NAMES: [(&str, u16); 7] = [
        ("INVALID", INVALID),
        ("NEW", NEW),
        ("RELATED", RELATED),
        ("ESTABLISHED", ESTABLISHED),
        ("UNTRACKED", UNTRACKED),
        ("SNAT", SNAT),
        ("DNAT", DNAT),
    ];
}

/// `-m state --state` or `-m conntrack --ctstate`: the connection's state is in `states`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StateMatch {
    /// Bit set of [`ct_state`] values.
    pub states: u16,
    pub negated: bool,
}

/// An inclusive address range of `-m iprange`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpRange {
    pub lo: IpAddr,
    pub hi: IpAddr,
    pub negated: bool,
}

/// `-m iprange`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct IpRangeMatch {
    pub src: Option<IpRange>,
    pub dst: Option<IpRange>,
}

/// `-m limit`: token bucket. `avg` is in iptables' units (1/10000 s per packet, `XT_LIMIT_SCALE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LimitMatch {
    pub avg: u32,
    pub burst: u32,
}

impl LimitMatch {
    /// `XT_LIMIT_SCALE`: `avg` is seconds per packet times this.
    pub const SCALE: u32 = 10000;
    pub const DEFAULT: LimitMatch = LimitMatch {
        avg: Self::SCALE * 3600 / 3,
        burst: 5,
    };
}

/// Comparison of `-m ttl` / `-m hl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TtlOp {
    Eq,
    Ne,
    Lt,
    Gt,
}

/// `-m mark --mark` / `-m connmark --mark`: `(mark & mask) == value`, as the kernel's
/// `xt_mark_mtinfo1` / `xt_connmark_mtinfo1` hold it. The value is not masked on load (iptables
/// keeps `--mark 3/1`, which never matches), and `mask` is `0xffffffff` without `/mask`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MarkMatch {
    pub value: u32,
    pub mask: u32,
    pub negated: bool,
}

impl MarkMatch {
    /// Whether `mark` matches.
    pub fn matches(&self, mark: u32) -> bool {
        ((mark & self.mask) == self.value) != self.negated
    }
}

/// A mark rewrite as the kernel stores it (`xt_mark_tginfo2`, and the `ctmark`/`ctmask` of
/// CONNMARK's set mode): the new mark is `(old & !mask) ^ value`. Every option folds into it:
/// `--set-mark V/M` is `V` / `V|M`, `--and-mark V` is `0` / `!V`, `--or-mark V` is `V` / `V`,
/// `--xor-mark V` is `V` / `0`; iptables-save prints the pair as `--set-xmark`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct XMark {
    pub value: u32,
    pub mask: u32,
}

impl XMark {
    /// The mark after the rewrite.
    pub fn apply(&self, old: u32) -> u32 {
        (old & !self.mask) ^ self.value
    }
}

/// `-j CONNMARK`'s operation (`XT_CONNMARK_SET`, `_SAVE`, `_RESTORE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnmarkMode {
    /// ctmark = (ctmark & !ctmask) ^ value.
    Set,
    /// `--save-mark`: ctmark = (ctmark & !ctmask) ^ (mark & nfmask).
    Save,
    /// `--restore-mark`: mark = (mark & !nfmask) ^ (ctmark & ctmask).
    Restore,
}

/// `-j CONNMARK` as `xt_connmark_tginfo1` holds it (the shifts of revision 2 are not
/// supported). `ctmark` is only used by [`ConnmarkMode::Set`], `nfmask` only by save and restore;
/// both masks default to `0xffffffff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnmarkTarget {
    pub mode: ConnmarkMode,
    pub ctmark: u32,
    pub ctmask: u32,
    pub nfmask: u32,
}

impl ConnmarkTarget {
    /// The connection's and the packet's marks after the target, as `connmark_tg_shift` (shift
    /// 0) computes them: `(ctmark, mark)`.
    pub fn apply(&self, ctmark: u32, mark: u32) -> (u32, u32) {
        match self.mode {
            ConnmarkMode::Set => ((ctmark & !self.ctmask) ^ self.ctmark, mark),
            ConnmarkMode::Save => ((ctmark & !self.ctmask) ^ (mark & self.nfmask), mark),
            ConnmarkMode::Restore => (ctmark, (mark & !self.nfmask) ^ (ctmark & self.ctmask)),
        }
    }
}

/// A match module with its options. Variants carry only what the module tests.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Match {
    Tcp(TcpMatch),
    Udp(UdpMatch),
    Icmp(IcmpMatch),
    Icmp6(IcmpMatch),
    Multiport(MultiportMatch),
    /// `-m state --state`.
    State(StateMatch),
    /// `-m conntrack`.
    Conntrack(ConntrackMatch),
    IpRange(IpRangeMatch),
    Mac {
        addr: [u8; 6],
        negated: bool,
    },
    Limit(LimitMatch),
    /// `-m length`: IP total length (IPv6: payload length plus header) in `[min, max]`.
    Length {
        min: u16,
        max: u16,
        negated: bool,
    },
    Ttl {
        op: TtlOp,
        value: u8,
    },
    HopLimit {
        op: TtlOp,
        value: u8,
    },
    Comment(String),
    /// `-m addrtype`.
    Addrtype(AddrtypeMatch),
    /// `-m pkttype --pkt-type`: from the destination MAC.
    Pkttype {
        kind: PktType,
        negated: bool,
    },
    /// `-m tos --tos value/mask`: `(tos & mask) == value`.
    Tos {
        value: u8,
        mask: u8,
        negated: bool,
    },
    /// `-m dscp --dscp` (and `--dscp-class`, stored as its value): the DS field's upper 6 bits.
    Dscp {
        value: u8,
        negated: bool,
    },
    /// `-m ecn`.
    Ecn(EcnMatch),
    /// `-m physdev`.
    Physdev(PhysdevMatch),
    /// A match that only sees packets of the host's own sockets or routing (`-m owner`,
    /// `-m rpfilter`, `-m cgroup`, `-m socket`): on a bump in the wire it never matches, as it
    /// never matches a forwarded packet in the kernel.
    HostOnly(HostOnlyMatch),
    Recent(RecentMatch),
    Statistic(StatisticMatch),
    Sctp(SctpMatch),
    Dccp(DccpMatch),
    Esp(SpiMatch),
    Ah(AhMatch),
    /// `-m rt` (ip6tables).
    Rt(RtMatch),
    /// `-m mark`: the packet's mark.
    Mark(MarkMatch),
    /// `-m connmark`: the connection's mark (never matches an untracked packet, negated or not).
    Connmark(MarkMatch),
    /// `-m time`.
    Time(TimeMatch),
    /// `-m hashlimit`.
    Hashlimit(HashlimitMatch),
    /// `-m connlimit`.
    Connlimit(ConnlimitMatch),
    /// `-m connbytes`.
    Connbytes(ConnbytesMatch),
}

/// What one `-m recent` does with its list (`XT_RECENT_SET` ... `XT_RECENT_REMOVE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecentCmd {
    Set,
    Check,
    Update,
    Remove,
}

/// `-m recent` (`xt_recent`): a named list of recently seen addresses, shared by every rule that
/// names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecentMatch {
    /// `None` until one of `--set --rcheck --update --remove` is read (the check refuses it).
    pub cmd: Option<RecentCmd>,
    /// `!` before the command.
    pub invert: bool,
    /// `--seconds`: only time stamps this recent count (0: all).
    pub seconds: u32,
    /// `--reap`: drop the least recently seen entry once it is older than `seconds`.
    pub reap: bool,
    /// `--hitcount`: at least this many time stamps (0: any).
    pub hitcount: u32,
    /// `--rttl`: the entry's TTL must also match.
    pub rttl: bool,
    /// `--name` (`DEFAULT`).
    pub name: String,
    /// `--mask`, applied to the address before it is looked up (all ones by default).
    pub mask: IpAddr,
    /// `--rdest`: the destination address (default `--rsource`).
    pub rdest: bool,
}

/// `-m statistic --mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatisticMode {
    Random,
    Nth,
}

/// `-m statistic` (`xt_statistic`), in the kernel's own units. The options are `Option`s only
/// while the line is read (the check refuses a rule without the ones its mode needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatisticMatch {
    pub mode: Option<StatisticMode>,
    /// `--probability p` as `lround(p * 2^31)`: random mode matches when a random 31-bit
    /// number is below it.
    pub probability: Option<u32>,
    /// `--every n` as `n - 1` (the kernel's `u.nth.every`).
    pub every: Option<u32>,
    /// `--packet p`: the counter starts at `every - p`, so the `p`th packet (0-based) is the
    /// first to match.
    pub packet: Option<u32>,
    /// `!` before `--probability` / `--every`.
    pub negated: bool,
}

impl Match {
    /// The `-m` name.
    pub fn name(&self) -> &'static str {
        match self {
            Match::Tcp(_) => "tcp",
            Match::Udp(_) => "udp",
            Match::Icmp(_) => "icmp",
            Match::Icmp6(_) => "icmp6",
            Match::Multiport(_) => "multiport",
            Match::State(_) => "state",
            Match::Conntrack(_) => "conntrack",
            Match::IpRange(_) => "iprange",
            Match::Mac { .. } => "mac",
            Match::Limit(_) => "limit",
            Match::Length { .. } => "length",
            Match::Ttl { .. } => "ttl",
            Match::HopLimit { .. } => "hl",
            Match::Comment(_) => "comment",
            Match::Addrtype(_) => "addrtype",
            Match::Pkttype { .. } => "pkttype",
            Match::Tos { .. } => "tos",
            Match::Dscp { .. } => "dscp",
            Match::Ecn(_) => "ecn",
            Match::Physdev(_) => "physdev",
            Match::HostOnly(h) => h.kind.name(),
            Match::Recent(_) => "recent",
            Match::Statistic(_) => "statistic",
            Match::Sctp(_) => "sctp",
            Match::Dccp(_) => "dccp",
            Match::Esp(_) => "esp",
            Match::Ah(_) => "ah",
            Match::Rt(_) => "rt",
            Match::Mark(_) => "mark",
            Match::Connmark(_) => "connmark",
            Match::Time(_) => "time",
            Match::Hashlimit(_) => "hashlimit",
            Match::Connlimit(_) => "connlimit",
            Match::Connbytes(_) => "connbytes",
        }
    }
}

/// Address type bits of `-m addrtype` (`XT_ADDRTYPE_*` = `1 << RTN_*`).
pub mod addr_type {
    pub const UNSPEC: u16 = 1 << 0;
    pub const UNICAST: u16 = 1 << 1;
    pub const LOCAL: u16 = 1 << 2;
    pub const BROADCAST: u16 = 1 << 3;
    pub const ANYCAST: u16 = 1 << 4;
    pub const MULTICAST: u16 = 1 << 5;
    pub const BLACKHOLE: u16 = 1 << 6;
    pub const UNREACHABLE: u16 = 1 << 7;
    pub const PROHIBIT: u16 = 1 << 8;
    pub const THROW: u16 = 1 << 9;
    pub const NAT: u16 = 1 << 10;
    pub const XRESOLVE: u16 = 1 << 11;
    /// Names in bit order (how iptables prints them).
    pub const NAMES: [(&str, u16); 12] = [
        ("UNSPEC", UNSPEC),
        ("UNICAST", UNICAST),
        ("LOCAL", LOCAL),
        ("BROADCAST", BROADCAST),
        ("ANYCAST", ANYCAST),
        ("MULTICAST", MULTICAST),
        ("BLACKHOLE", BLACKHOLE),
        ("UNREACHABLE", UNREACHABLE),
        ("PROHIBIT", PROHIBIT),
        ("THROW", THROW),
        ("NAT", NAT),
        ("XRESOLVE", XRESOLVE),
    ];
}

/// `-m addrtype`: a type set (bits of [`addr_type`]) per address, each negatable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AddrtypeMatch {
    pub src: Option<(u16, bool)>,
    pub dst: Option<(u16, bool)>,
    /// `--limit-iface-in`: LOCAL means an address of the input port only.
    pub limit_in: bool,
    /// `--limit-iface-out`: an address of the output port only.
    pub limit_out: bool,
}

/// `-m pkttype` types (`PACKET_HOST`, `PACKET_BROADCAST`, `PACKET_MULTICAST`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PktType {
    Unicast,
    Broadcast,
    Multicast,
}

/// `-m ecn`: each part `Some((value, negated))` when given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EcnMatch {
    /// `--ecn-tcp-ece`.
    pub ece: Option<bool>,
    /// `--ecn-tcp-cwr`.
    pub cwr: Option<bool>,
    /// `--ecn-ip-ect N` (0-3).
    pub ect: Option<(u8, bool)>,
}

/// `-m physdev`: the bridge ports (fwd's two ports, by their config names).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PhysdevMatch {
    pub physdev_in: Option<IfaceMatch>,
    pub physdev_out: Option<IfaceMatch>,
    /// `--physdev-is-in`, `--physdev-is-out`, `--physdev-is-bridged`: `Some(negated)`.
    pub is_in: Option<bool>,
    pub is_out: Option<bool>,
    pub is_bridged: Option<bool>,
}

/// Which host-only match a [`HostOnlyMatch`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostOnlyKind {
    Owner,
    Rpfilter,
    Cgroup,
    Socket,
}

impl HostOnlyKind {
    pub fn name(self) -> &'static str {
        match self {
            HostOnlyKind::Owner => "owner",
            HostOnlyKind::Rpfilter => "rpfilter",
            HostOnlyKind::Cgroup => "cgroup",
            HostOnlyKind::Socket => "socket",
        }
    }
}

/// A host-only match: its options kept in iptables-save's canonical text (after `-m NAME`),
/// and whether the whole match is inverted in effect (so that "never matches" becomes "always"
/// where every option given is negated, as for `! --uid-owner 0` on a forwarded packet).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostOnlyMatch {
    pub kind: HostOnlyKind,
    /// Options in save order: (save text starting with a space, list text starting with a space).
    pub save: String,
    pub list: String,
    /// What the match gives for a forwarded packet (no socket, not local).
    pub forwarded: bool,
}

/// `--reject-with` types. The IPv4 ones are ICMP, the `Icmp6*` ones ICMPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectWith {
    IcmpNetUnreachable,
    IcmpHostUnreachable,
    IcmpPortUnreachable,
    IcmpProtoUnreachable,
    IcmpNetProhibited,
    IcmpHostProhibited,
    IcmpAdminProhibited,
    TcpReset,
    Icmp6NoRoute,
    Icmp6AdmProhibited,
    Icmp6AddrUnreachable,
    Icmp6PortUnreachable,
    Icmp6PolicyFail,
    Icmp6RejectRoute,
}

impl RejectWith {
    /// (canonical name, alias, value) in iptables' table order (prefixes pick the first hit).
    pub(crate) const V4: [(&'static str, &'static str, RejectWith); 8] = [
        (
            "icmp-net-unreachable",
            "net-unreach",
            RejectWith::IcmpNetUnreachable,
        ),
        (
            "icmp-host-unreachable",
            "host-unreach",
            RejectWith::IcmpHostUnreachable,
        ),
        (
            "icmp-port-unreachable",
            "port-unreach",
            RejectWith::IcmpPortUnreachable,
        ),
        (
            "icmp-proto-unreachable",
            "proto-unreach",
            RejectWith::IcmpProtoUnreachable,
        ),
        (
            "icmp-net-prohibited",
            "net-prohib",
            RejectWith::IcmpNetProhibited,
        ),
        (
            "icmp-host-prohibited",
            "host-prohib",
            RejectWith::IcmpHostProhibited,
        ),
        ("tcp-reset", "tcp-rst", RejectWith::TcpReset),
        (
            "icmp-admin-prohibited",
            "admin-prohib",
            RejectWith::IcmpAdminProhibited,
        ),
    ];
    pub(crate) const V6: [(&'static str, &'static str, RejectWith); 7] = [
        ("icmp6-no-route", "no-route", RejectWith::Icmp6NoRoute),
        (
            "icmp6-adm-prohibited",
            "adm-prohibited",
            RejectWith::Icmp6AdmProhibited,
        ),
        (
            "icmp6-addr-unreachable",
            "addr-unreach",
            RejectWith::Icmp6AddrUnreachable,
        ),
        (
            "icmp6-port-unreachable",
            "port-unreach",
            RejectWith::Icmp6PortUnreachable,
        ),
        ("tcp-reset", "tcp-reset", RejectWith::TcpReset),
        (
            "icmp6-policy-fail",
            "policy-fail",
            RejectWith::Icmp6PolicyFail,
        ),
        (
            "icmp6-reject-route",
            "reject-route",
            RejectWith::Icmp6RejectRoute,
        ),
    ];
    pub fn as_str(self) -> &'static str {
        RejectWith::V4
            .iter()
            .chain(RejectWith::V6.iter())
            .find(|e| e.2 == self)
            .map(|e| e.0)
            .unwrap_or("tcp-reset")
    }
    /// The ICMP (v4) or ICMPv6 type/code sent, `None` for a TCP reset.
    pub fn icmp_type_code(self) -> Option<(u8, u8)> {
        Some(match self {
            RejectWith::IcmpNetUnreachable => (3, 0),
            RejectWith::IcmpHostUnreachable => (3, 1),
            RejectWith::IcmpProtoUnreachable => (3, 2),
            RejectWith::IcmpPortUnreachable => (3, 3),
            RejectWith::IcmpNetProhibited => (3, 9),
            RejectWith::IcmpHostProhibited => (3, 10),
            RejectWith::IcmpAdminProhibited => (3, 13),
            RejectWith::Icmp6NoRoute => (1, 0),
            RejectWith::Icmp6AdmProhibited => (1, 1),
            RejectWith::Icmp6AddrUnreachable => (1, 3),
            RejectWith::Icmp6PortUnreachable => (1, 4),
            RejectWith::Icmp6PolicyFail => (1, 5),
            RejectWith::Icmp6RejectRoute => (1, 6),
            RejectWith::TcpReset => return None,
        })
    }
}

/// `LOG` target options.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LogTarget {
    /// syslog level 0..=7; 4 (warning) is the default.
    pub level: u8,
    /// At most 29 bytes (longer input is truncated, as iptables does).
    pub prefix: String,
    pub tcp_sequence: bool,
    pub tcp_options: bool,
    pub ip_options: bool,
    pub uid: bool,
    pub macdecode: bool,
}

/// `NFLOG` target options.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NflogTarget {
    pub group: u16,
    /// At most 63 bytes.
    pub prefix: String,
    /// `--nflog-size` copy length.
    pub size: Option<u32>,
    /// `--nflog-range` (obsolete, ignored by the kernel; printed only when non-zero and no size).
    pub range: u32,
    /// Queue threshold; 0 (the default) means the kernel's default.
    pub threshold: u16,
}

/// The ports of a NAT target: `lo[-hi][/base]` (libxt_NAT's `parse_ports`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NatPorts {
    pub lo: u16,
    pub hi: u16,
    /// `/base` (`NF_NAT_RANGE_PROTO_OFFSET`, DNAT only): the new port is `lo + (port - base)
    /// % (hi - lo + 1)`, nf_nat_core's port shift.
    pub base: Option<u16>,
}

impl NatPorts {
    pub fn single(p: u16) -> NatPorts {
        NatPorts {
            lo: p,
            hi: p,
            base: None,
        }
    }
}

/// A NAT range: `--to-source`/`--to-destination` `[addr[-addr]][:port[-port[/base]]]` (IPv6:
/// `[addr[-addr]]:port...` in brackets when ports follow).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NatRange {
    pub addrs: Option<(IpAddr, IpAddr)>,
    pub ports: Option<NatPorts>,
    pub random: bool,
    pub random_fully: bool,
    pub persistent: bool,
}

/// What a rule does when it matches. `None` in [`Rule::target`] means no `-j` (count only).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Accept,
    Drop,
    Return,
    /// `-j CHAIN`: the user chain's name.
    Jump(String),
    /// `-g CHAIN`.
    Goto(String),
    Reject(RejectWith),
    Log(LogTarget),
    Nflog(NflogTarget),
    Snat(NatRange),
    Dnat(NatRange),
    Masquerade {
        ports: Option<NatPorts>,
        random: bool,
        random_fully: bool,
    },
    Redirect {
        ports: Option<NatPorts>,
        random: bool,
    },
    /// `-j NETMAP --to addr/len`: the destination (PREROUTING, OUTPUT) or source (POSTROUTING,
    /// INPUT) keeps its host part and takes `addr`'s network part. `addr` is stored masked.
    Netmap {
        addr: IpAddr,
        prefix: u8,
    },
    /// `-j NOTRACK` (printed as such).
    Notrack,
    /// `-j CT --notrack`.
    CtNotrack,
    /// `-j MARK`: rewrites the packet's mark, traversal continues.
    Mark(XMark),
    /// `-j CONNMARK`: the connection's mark, or the packet's from it; traversal continues.
    Connmark(ConnmarkTarget),
    /// `-j TTL` (iptables): rewrites the IPv4 TTL; traversal continues.
    Ttl(TtlTarget),
    /// `-j HL` (ip6tables): rewrites the IPv6 hop limit; traversal continues.
    Hl(TtlTarget),
    /// `-j DSCP --set-dscp` (or `--set-dscp-class`, stored as its value): the DS field's upper
    /// six bits, the ECN bits kept.
    Dscp(u8),
    /// `-j TOS` (revision 1): the new TOS / traffic class is `(old & !mask) ^ value`; every
    /// option folds into the pair, as for MARK (iptables-save prints `--set-tos V/M`).
    Tos {
        value: u8,
        mask: u8,
    },
    /// `-j TCPMSS`: the MSS option of a SYN.
    Tcpmss(Tcpmss),
    /// `-j ECN` (iptables): the IP ECT codepoint and the TCP ECE / CWR bits.
    Ecn(EcnTarget),
    /// `-j CHECKSUM --checksum-fill`: completes a checksum the local stack left to offload;
    /// a forwarded frame carries its own, so the kernel (and fwd) changes nothing.
    Checksum,
    /// `-j CLASSIFY --set-class MAJOR:MINOR`: the skb priority (`major << 16 | minor`), which
    /// only a qdisc reads: fwd has none, so it is counted and changes nothing.
    Classify(u32),
}

/// What `-j TTL` / `-j HL` does (`IPT_TTL_SET`, `_INC`, `_DEC`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TtlMode {
    Set,
    Inc,
    Dec,
}

/// `-j TTL` / `-j HL`: a mode and its value (`--ttl-dec`/`--ttl-inc` take 1-255).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TtlTarget {
    pub mode: TtlMode,
    pub value: u8,
}

impl TtlTarget {
    /// The new TTL, saturating at 0 and 255 as `ttl_tg` does (no drop at 0: the kernel's
    /// bridge forwards a packet whose TTL the target brought to 0).
    pub fn apply(&self, old: u8) -> u8 {
        match self.mode {
            TtlMode::Set => self.value,
            TtlMode::Inc => old.saturating_add(self.value),
            TtlMode::Dec => old.saturating_sub(self.value),
        }
    }
}

/// `-j TCPMSS` (`xt_tcpmss_info.mss`, `0xffff` for `--clamp-mss-to-pmtu`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tcpmss {
    /// `--set-mss N`: lowers a larger MSS to N (never raises it).
    Set(u16),
    /// `--clamp-mss-to-pmtu`: the path MTU less the IP and TCP headers.
    ClampPmtu,
}

/// `-j ECN` as `ipt_ECN_info` holds it: each field `Some` when its operation bit is set.
/// `--ecn-tcp-remove` is `ece: Some(0), cwr: Some(0)` and replaces every operation before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EcnTarget {
    /// `--ecn-ip-ect N` (0-3): the IP header's ECN field.
    pub ect: Option<u8>,
    /// `--ecn-tcp-ece B` (0/1).
    pub ece: Option<u8>,
    /// `--ecn-tcp-cwr B` (0/1).
    pub cwr: Option<u8>,
}

impl EcnTarget {
    /// Whether it is `--ecn-tcp-remove` as iptables prints it.
    pub fn is_remove(&self) -> bool {
        self.ect.is_none() && self.ece == Some(0) && self.cwr == Some(0)
    }
}

/// One rule. Equality ignores nothing; use [`Rule::same_spec`] to compare without `line`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    pub src: Option<AddrMatch>,
    pub dst: Option<AddrMatch>,
    pub in_iface: Option<IfaceMatch>,
    pub out_iface: Option<IfaceMatch>,
    pub proto: Option<ProtoMatch>,
    /// `-f` (`Some(false)`): only non-first fragments; `! -f` (`Some(true)`): only first/unfragmented.
    pub fragment: Option<bool>,
    /// Matches in load order (how iptables evaluates and prints them).
    pub matches: Vec<Match>,
    pub target: Option<Target>,
    /// 1-based source line the rule came from (0 when built programmatically).
    pub line: u32,
}

impl Rule {
    pub fn new() -> Rule {
        Rule {
            src: None,
            dst: None,
            in_iface: None,
            out_iface: None,
            proto: None,
            fragment: None,
            matches: Vec::new(),
            target: None,
            line: 0,
        }
    }
    /// Equal apart from the source line (what `-D rule-spec` compares).
    pub fn same_spec(&self, other: &Rule) -> bool {
        let mut a = self.clone();
        a.line = other.line;
        a == *other
    }
}

impl Default for Rule {
    fn default() -> Self {
        Rule::new()
    }
}
