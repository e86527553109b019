//! `appliance.toml`: parsed with serde + toml, unknown keys refused, every error one line that
//! names `file:line:col` (or the interface / core it is about).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

/// The whole configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The two ports of the bump in the wire.
    pub ports: Ports,
    /// Worker threads.
    pub workers: Workers,
    /// Metrics export.
    #[serde(default)]
    pub stats: Stats,
    /// Rule files (iptables-restore format).
    pub rules: Option<Rules>,
    /// Connection tracking.
    #[serde(default)]
    pub conntrack: Conntrack,
    /// The Unix control socket.
    #[serde(default)]
    pub control: Control,
    /// Logging.
    #[serde(default)]
    pub log: Log,
    /// Tagged, PPPoE, link-local and other non-IP frames.
    #[serde(default)]
    pub bridge: Bridge,
    /// Connection-state sync with peers (conntrackd's protocol); absent: no sync.
    pub sync: Option<Sync>,
}

/// `[sync]`: conntrackd's `Sync` block (docs/SYNC.md). Key names follow conntrackd.conf's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sync {
    /// `Mode FTFW` or `Mode NOTRACK`.
    #[serde(default)]
    pub mode: SyncMode,
    /// `Multicast { IPv4_address }`: the group (224.0.0.0/4). Exactly one of this and
    /// `unicast_peer`.
    pub multicast_group: Option<Spanned<std::net::Ipv4Addr>>,
    /// `UDP { IPv4_Destination_Address }`: the peer.
    pub unicast_peer: Option<Spanned<std::net::Ipv4Addr>>,
    /// The local address on the sync link (`UDP { IPv4_address }`, the address of
    /// `Multicast { IPv4_interface }`).
    pub address: Spanned<std::net::Ipv4Addr>,
    /// The sync link's interface (`Interface`): the socket is bound to it.
    pub interface: Option<Spanned<String>>,
    /// `Port`, both ends.
    #[serde(default = "default_sync_port")]
    pub port: Spanned<u16>,
    /// FTFW `ACKWindowSize`.
    #[serde(default = "default_ack_window")]
    pub ack_window_size: Spanned<u32>,
    /// FTFW `ResendQueueSize` (messages).
    #[serde(default = "default_resend_queue")]
    pub resend_queue_size: Spanned<u32>,
    /// The alive/acknowledgement timer (1.4.7: one second, fixed).
    #[serde(default = "default_alive_ms")]
    pub alive_interval_ms: Spanned<u64>,
    /// Send the whole table again every this many seconds (`RefreshTime`); 0: changes only.
    #[serde(default = "zero_u64")]
    pub refresh_time: Spanned<u64>,
    /// `HashLimit`: most entries the external cache holds.
    #[serde(default = "default_hash_limit")]
    pub hash_limit: Spanned<u32>,
    /// `StartupResync`: ask the peer for its table at start.
    #[serde(default)]
    pub startup_resync: bool,
    /// Connection events each worker may have queued for the sync thread; beyond, counted
    /// drops.
    #[serde(default = "default_event_queue")]
    pub event_queue: Spanned<u32>,
    /// `Filter`: which connections are sent.
    #[serde(default)]
    pub filter: SyncFilter,
}

/// `[sync.filter]`, conntrackd's `Filter` block: `Protocol Accept|Ignore`, `Address Ignore`,
/// `State Accept`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncFilter {
    /// Only these protocols (names `tcp`, `udp`, `icmp`, `icmpv6`, `sctp`, `dccp`, `udplite`,
    /// or numbers); empty: all.
    #[serde(default = "no_names")]
    pub protocol_accept: Spanned<Vec<String>>,
    /// Never these protocols.
    #[serde(default = "no_names")]
    pub protocol_ignore: Spanned<Vec<String>>,
    /// Connections from or to these addresses are not sent.
    #[serde(default)]
    pub address_ignore: Vec<std::net::IpAddr>,
    /// TCP states sent (`ESTABLISHED`, `CLOSE` or `CLOSED`, `TIME_WAIT`, ...); empty: all.
    #[serde(default = "no_names")]
    pub state_accept: Spanned<Vec<String>>,
}

/// `[sync] mode`.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SyncMode {
    /// Reliable: acknowledgements, resends (`Mode FTFW`).
    #[default]
    Ftfw,
    /// Best effort (`Mode NOTRACK`).
    Notrack,
}

impl Default for SyncFilter {
    fn default() -> Self {
        SyncFilter {
            protocol_accept: no_names(),
            protocol_ignore: no_names(),
            address_ignore: Vec::new(),
            state_accept: no_names(),
        }
    }
}

fn zero_u64() -> Spanned<u64> {
    Spanned::new(0..0, 0)
}
fn no_names() -> Spanned<Vec<String>> {
    Spanned::new(0..0, Vec::new())
}
fn default_sync_port() -> Spanned<u16> {
    Spanned::new(0..0, 3780)
}
fn default_ack_window() -> Spanned<u32> {
    Spanned::new(0..0, 300)
}
fn default_resend_queue() -> Spanned<u32> {
    Spanned::new(0..0, 131_072)
}
fn default_alive_ms() -> Spanned<u64> {
    Spanned::new(0..0, 1000)
}
fn default_hash_limit() -> Spanned<u32> {
    Spanned::new(0..0, 262_144)
}
fn default_event_queue() -> Spanned<u32> {
    Spanned::new(0..0, 65_536)
}

/// A protocol of `[sync.filter]`: its number.
pub fn sync_protocol(name: &str) -> Option<u8> {
    Some(match name.to_ascii_lowercase().as_str() {
        "tcp" => 6,
        "udp" => 17,
        "icmp" => 1,
        "icmpv6" | "ipv6-icmp" => 58,
        "sctp" => 132,
        "dccp" => 33,
        "udplite" => 136,
        "gre" => 47,
        n => return n.parse().ok(),
    })
}

/// A TCP state of `[sync.filter] state_accept`: the kernel's number (conntrackd's names,
/// `CLOSED` included).
pub fn sync_tcp_state(name: &str) -> Option<u8> {
    let n = name.to_ascii_uppercase();
    let n = if n == "CLOSED" {
        "CLOSE".to_string()
    } else {
        n
    };
    (0..10u8).find(|&i| conntrack::TcpState::from_kernel(i).map(|s| s.name()) == Some(n.as_str()))
}

impl Sync {
    /// Checks what serde cannot: one transport, ranges, names; the error names the key.
    fn check(&self) -> Result<(), (Range<usize>, String)> {
        match (&self.multicast_group, &self.unicast_peer) {
            (Some(g), Some(_)) => {
                return Err((
                    g.span(),
                    "sync: multicast_group and unicast_peer both set: expected one transport"
                        .into(),
                ))
            }
            (None, None) => {
                return Err((
                    self.address.span(),
                    "sync: expected multicast_group or unicast_peer".into(),
                ))
            }
            (Some(g), None) if !g.get_ref().is_multicast() => {
                return Err((
                    g.span(),
                    format!(
                        "sync.multicast_group = {}: expected a multicast address (224.0.0.0/4)",
                        g.get_ref()
                    ),
                ))
            }
            _ => {}
        }
        let lim = |key: &str, v: u64, span: Range<usize>, lo: u64, hi: u64| {
            if v < lo || v > hi {
                Err((span, format!("sync.{key} = {v}: expected {lo} to {hi}")))
            } else {
                Ok(())
            }
        };
        lim(
            "port",
            u64::from(*self.port.get_ref()),
            self.port.span(),
            1,
            65535,
        )?;
        let w = &self.ack_window_size;
        lim(
            "ack_window_size",
            u64::from(*w.get_ref()),
            w.span(),
            1,
            1 << 20,
        )?;
        let r = &self.resend_queue_size;
        lim(
            "resend_queue_size",
            u64::from(*r.get_ref()),
            r.span(),
            1,
            1 << 24,
        )?;
        let a = &self.alive_interval_ms;
        lim("alive_interval_ms", *a.get_ref(), a.span(), 10, 60_000)?;
        let t = &self.refresh_time;
        lim("refresh_time", *t.get_ref(), t.span(), 0, 86_400)?;
        let h = &self.hash_limit;
        lim("hash_limit", u64::from(*h.get_ref()), h.span(), 1, 1 << 26)?;
        let e = &self.event_queue;
        lim(
            "event_queue",
            u64::from(*e.get_ref()),
            e.span(),
            16,
            1 << 22,
        )?;
        for (key, list) in [
            ("protocol_accept", &self.filter.protocol_accept),
            ("protocol_ignore", &self.filter.protocol_ignore),
        ] {
            if let Some(bad) = list.get_ref().iter().find(|n| sync_protocol(n).is_none()) {
                return Err((
                    list.span(),
                    format!(
                        "sync.filter.{key}: unknown protocol {:?} (expected tcp, udp, icmp, \
                         icmpv6, sctp, dccp, udplite, gre or a number)",
                        clip(bad)
                    ),
                ));
            }
        }
        let st = &self.filter.state_accept;
        if let Some(bad) = st.get_ref().iter().find(|n| sync_tcp_state(n).is_none()) {
            return Err((
                st.span(),
                format!(
                    "sync.filter.state_accept: unknown TCP state {:?} (expected SYN_SENT, \
                     SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE)",
                    clip(bad)
                ),
            ));
        }
        Ok(())
    }
}

/// `[ports.a]` and `[ports.b]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ports {
    /// Port A (client side).
    pub a: PortConfig,
    /// Port B (server side).
    pub b: PortConfig,
}

/// One port.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    /// Interface name.
    pub interface: Spanned<String>,
    /// Socket bind mode.
    #[serde(default = "auto_mode")]
    pub mode: Spanned<BindMode>,
    /// XDP attach mode.
    #[serde(default)]
    pub attach: AttachMode,
    /// Number of queues (one AF_XDP socket each), from queue 0.
    #[serde(default = "one")]
    pub queues: Spanned<u32>,
    /// The port's IPv4 address: MASQUERADE's source for what leaves through it.
    #[serde(default)]
    pub address: Option<std::net::Ipv4Addr>,
    /// The port's IPv6 address: MASQUERADE's source for IPv6 leaving through it.
    #[serde(default)]
    pub address6: Option<std::net::Ipv6Addr>,
    /// The MTU `TCPMSS --clamp-mss-to-pmtu` clamps to (the smaller of the two ports'); unset:
    /// the interface's MTU, else 1500.
    #[serde(default)]
    pub mtu: Option<Spanned<u32>>,
}

fn auto_mode() -> Spanned<BindMode> {
    Spanned::new(0..0, BindMode::Auto)
}

fn one() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}

/// `mode`.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum BindMode {
    /// Zero-copy where possible, else copy.
    #[default]
    Auto,
    /// Copy mode.
    Copy,
    /// Zero-copy mode.
    ZeroCopy,
}

/// `attach`.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AttachMode {
    /// Native where possible, else generic.
    #[default]
    Auto,
    /// Native.
    Drv,
    /// Generic.
    Skb,
}

/// `[workers]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workers {
    /// One pinned worker per listed core.
    pub cores: Spanned<Vec<usize>>,
    /// Frames per receive burst (1..=64).
    #[serde(default = "default_burst")]
    pub burst: Spanned<usize>,
    /// After a run of empty poll rounds a worker sleeps this long; 0 = never sleep
    /// (0..=1000000).
    #[serde(default = "default_idle_sleep")]
    pub idle_sleep_us: Spanned<u64>,
    /// Preferred busy polling on the AF_XDP sockets (the worker runs the NAPI poll).
    #[serde(default)]
    pub busy_poll: bool,
    /// Entries of each AF_XDP ring (power of two, 64..=16384). A worker's UMEM holds
    /// 4 x ring_size buffers of 2 KiB per queue pair (16 MiB at the default 2048).
    #[serde(default = "default_ring_size")]
    pub ring_size: Spanned<u32>,
}

fn default_ring_size() -> Spanned<u32> {
    Spanned::new(0..0, 2048)
}

fn default_burst() -> Spanned<usize> {
    Spanned::new(0..0, 32)
}
fn default_idle_sleep() -> Spanned<u64> {
    Spanned::new(0..0, 20)
}

/// `[stats]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stats {
    /// Address of the Prometheus endpoint (`/metrics`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Seconds between stats log lines (0: none; at most 86400).
    #[serde(default = "default_interval")]
    pub log_interval_s: Spanned<u64>,
}

fn default_listen() -> SocketAddr {
    "127.0.0.1:9900".parse().expect("valid address")
}
fn default_interval() -> Spanned<u64> {
    Spanned::new(0..0, 10)
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            listen: default_listen(),
            log_interval_s: default_interval(),
        }
    }
}

/// `[rules]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// iptables-restore file for IPv4.
    pub ipv4: Option<PathBuf>,
    /// ip6tables-restore file for IPv6.
    pub ipv6: Option<PathBuf>,
    /// Where NFLOG rules' packets go (pcapng, interface = ingress port); none: counted only.
    pub nflog_pcapng: Option<PathBuf>,
}

/// `[conntrack]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Conntrack {
    /// Table capacity (1..=2^31-1, and its memory at most half of MemAvailable).
    pub max: Option<Spanned<u64>>,
    /// Timeouts in seconds by name (e.g. `tcp_established = 432000`).
    #[serde(default)]
    pub timeouts: BTreeMap<String, Spanned<u32>>,
    /// Key of the flow hash, 32 hex digits. Unset (the default): `fwd run` draws a random key
    /// from the OS at every start; `fwd replay` uses a fixed one, so it stays deterministic.
    /// Set it only for tests: whoever knows the key can choose flows that share a bucket.
    pub hash_key: Option<conntrack::HashKey>,
    /// `nf_conntrack_checksum`: packets with a wrong TCP/UDP/ICMP/ICMPv6 checksum are INVALID
    /// (default `true`, as the kernel's).
    pub checksum: Option<bool>,
}

/// `[control]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Control {
    /// Path of the Unix control socket.
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// A group whose members may use the socket too (mode 0660, this group); unset: mode 0600,
    /// root and fwd's own user only.
    pub group: Option<Spanned<String>>,
}

/// Where `fwd stats` looks when no config is given.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/fwd.sock";

fn default_socket() -> PathBuf {
    PathBuf::from(DEFAULT_CONTROL_SOCKET)
}

impl Default for Control {
    fn default() -> Self {
        Control {
            socket: default_socket(),
            group: None,
        }
    }
}

/// `[log]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    /// `error`, `warn`, `info`, `debug` or `trace` (or a tracing filter directive).
    #[serde(default = "default_level")]
    pub level: Spanned<String>,
    /// Append logs to this file instead of stderr.
    pub file: Option<PathBuf>,
    /// LOG rules' lines: at most `burst` in a row, then one every `interval_ms / burst`
    /// (a token bucket, as the kernel's net_ratelimit with net.core.message_burst = 10 and
    /// message_cost = 5 s). Lines over it are counted, not written (1..=1000000).
    #[serde(default = "default_burst_lines")]
    pub burst: Spanned<u32>,
    /// The bucket's refill period in milliseconds: `burst` lines per `interval_ms`; 0 turns the
    /// limit off, as message_cost = 0 does (0..=86400000).
    #[serde(default = "default_interval_ms")]
    pub interval_ms: Spanned<u64>,
}

fn default_level() -> Spanned<String> {
    Spanned::new(0..0, "info".into())
}

fn default_burst_lines() -> Spanned<u32> {
    Spanned::new(0..0, 10)
}

fn default_interval_ms() -> Spanned<u64> {
    Spanned::new(0..0, 5000)
}

impl Default for Log {
    fn default() -> Self {
        Log {
            level: default_level(),
            file: None,
            burst: default_burst_lines(),
            interval_ms: default_interval_ms(),
        }
    }
}

/// `[bridge]`: what the bridge does with frames that are not plain Ethernet II IPv4/IPv6 (see
/// `docs/DATAPLANE.md`). The defaults never let an IP packet cross without the rules.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Bridge {
    /// One 802.1Q tag: `filter` the inner packet (as `bridge-nf-filter-vlan-tagged=1`),
    /// `pass` unfiltered, or `drop`.
    #[serde(default)]
    pub vlan: TagAction,
    /// Two tags, or a service tag (0x88a8, 0x9100): `filter` the innermost packet, `pass`, `drop`.
    #[serde(default)]
    pub qinq: TagAction,
    /// PPPoE session frames: `filter` the IPv4/IPv6 inside (as `bridge-nf-filter-pppoe-tagged=1`;
    /// PPP control passes, other PPP protocols are dropped) or `drop` them all.
    #[serde(default)]
    pub pppoe: PppoeAction,
    /// PPPoE discovery frames: `pass` or `drop`.
    #[serde(default)]
    pub pppoe_discovery: PassDrop,
    /// Forward frames to 01:80:c2:00:00:00-0f (STP, pause, LACP, EAPOL, LLDP), which an 802.1D
    /// bridge never forwards.
    #[serde(default)]
    pub forward_link_local: bool,
    /// Every other non-IP ethertype (ARP always passes): `pass` or `drop`.
    #[serde(default)]
    pub other_ethertypes: PassDrop,
}

/// `[bridge] vlan` and `qinq`.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TagAction {
    /// Filter and track the inner packet; the tags stay.
    #[default]
    Filter,
    /// Forward unfiltered.
    Pass,
    /// Drop.
    Drop,
}

/// `[bridge] pppoe`.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PppoeAction {
    /// Filter and track the IP packet inside.
    #[default]
    Filter,
    /// Drop every session frame.
    Drop,
}

/// `[bridge] pppoe_discovery` and `other_ethertypes`.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PassDrop {
    /// Forward.
    #[default]
    Pass,
    /// Drop.
    Drop,
}

impl Bridge {
    /// The data plane's form of this section.
    pub fn policy(&self) -> dataplane::BridgePolicy {
        let tag = |a: TagAction| match a {
            TagAction::Filter => dataplane::TagPolicy::Filter,
            TagAction::Pass => dataplane::TagPolicy::Pass,
            TagAction::Drop => dataplane::TagPolicy::Drop,
        };
        dataplane::BridgePolicy {
            vlan: tag(self.vlan),
            qinq: tag(self.qinq),
            pppoe: match self.pppoe {
                PppoeAction::Filter => dataplane::PppoePolicy::Filter,
                PppoeAction::Drop => dataplane::PppoePolicy::Drop,
            },
            pppoe_discovery: self.pppoe_discovery == PassDrop::Pass,
            forward_link_local: self.forward_link_local,
            other_ethertypes: self.other_ethertypes == PassDrop::Pass,
        }
    }
}

/// A configuration error: one line, naming where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// At most this many characters of the offending text are quoted in an error.
pub const QUOTE_MAX: usize = 80;

/// `s` for an error message: its first [`QUOTE_MAX`] characters, then `...` and how long it
/// was, so that a 1 MB junk line gives a one-line error.
pub fn clip(s: &str) -> String {
    match s.char_indices().nth(QUOTE_MAX) {
        None => s.to_string(),
        Some((end, _)) => format!("{}... ({} bytes)", &s[..end], s.len()),
    }
}

/// The parser's `msg` (which quotes the input verbatim) with every whitespace-free run longer
/// than [`QUOTE_MAX`] clipped, and at most `4 * QUOTE_MAX` characters in all. Our own messages
/// quote through [`clip`] instead.
fn clip_message(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len().min(8 * QUOTE_MAX));
    for (i, word) in msg.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&clip(word));
        if out.chars().count() > 4 * QUOTE_MAX {
            let end = out
                .char_indices()
                .nth(4 * QUOTE_MAX)
                .map_or(out.len(), |(e, _)| e);
            out.truncate(end);
            out.push_str(" ...");
            break;
        }
    }
    out
}

fn at(file: &Path, text: &str, span: Option<Range<usize>>, msg: &str) -> ConfigError {
    match span {
        Some(s) if !(s.start == 0 && s.end == 0) => {
            let (l, c) = line_col(text, s.start);
            ConfigError(format!("{}:{l}:{c}: {msg}", file.display()))
        }
        _ => ConfigError(format!("{}: {msg}", file.display())),
    }
}

/// The names `[conntrack.timeouts]` takes.
pub const TIMEOUT_NAMES: [&str; 14] = [
    "tcp_syn_sent",
    "tcp_syn_recv",
    "tcp_established",
    "tcp_fin_wait",
    "tcp_close_wait",
    "tcp_last_ack",
    "tcp_time_wait",
    "tcp_close",
    "tcp_unacknowledged",
    "udp",
    "udp_stream",
    "icmp",
    "icmpv6",
    "generic",
];

/// The largest `conntrack.max` the table takes (its entry indices are 31 bits).
pub const CONNTRACK_MAX: u64 = (1 << 31) - 1;

/// Bytes the conntrack tables of `shards` workers take for `max` entries in all: each shard
/// holds `ceil(max / shards)` entries of [`conntrack::ENTRY_SIZE`] bytes and a power-of-two
/// index of 4-byte buckets (plus its timer wheel, small).
pub fn conntrack_bytes(max: u64, shards: usize) -> u64 {
    let shards = shards.max(1) as u64;
    let per = max.div_ceil(shards).max(1);
    let buckets = per.checked_next_power_of_two().unwrap_or(u64::MAX / 8);
    shards.saturating_mul(
        per.saturating_mul(conntrack::ENTRY_SIZE as u64)
            .saturating_add(buckets.saturating_mul(4))
            .saturating_add(1024 * 8),
    )
}

fn human_bytes(b: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    if b as f64 >= GIB {
        format!("{:.1} GiB", b as f64 / GIB)
    } else {
        format!("{:.1} MiB", b as f64 / MIB)
    }
}

/// What the environment must provide for a config to be usable.
pub trait Environment {
    /// True if the interface exists (in this network namespace).
    fn interface_exists(&self, name: &str) -> bool;
    /// The core ids this process may run on.
    fn cores(&self) -> Vec<usize>;
    /// Number of receive queues of the interface, if known.
    fn rx_queues(&self, name: &str) -> Option<u32>;
    /// The interface's MTU, if known.
    fn mtu(&self, _name: &str) -> Option<u32> {
        None
    }
    /// Bytes of memory available for new allocations (`MemAvailable`), if known.
    fn mem_available(&self) -> Option<u64> {
        None
    }
}

/// `MemAvailable` from `/proc/meminfo` text, in bytes.
pub fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let mut it = line.split_whitespace().skip(1);
    let n: u64 = it.next()?.parse().ok()?;
    match it.next() {
        Some("kB") => n.checked_mul(1024),
        None => Some(n),
        Some(_) => None,
    }
}

/// The real machine.
pub struct Host;

impl Environment for Host {
    fn interface_exists(&self, name: &str) -> bool {
        ports::xdp::ifindex(name).is_some()
    }
    fn cores(&self) -> Vec<usize> {
        core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.id)
            .collect()
    }
    fn rx_queues(&self, name: &str) -> Option<u32> {
        let dir = std::fs::read_dir(format!("/sys/class/net/{name}/queues")).ok()?;
        let n = dir
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
            .count();
        (n > 0).then_some(n as u32)
    }
    fn mtu(&self, name: &str) -> Option<u32> {
        let link = ports::xdp::netlink::link_by_name(name).ok()??;
        Some(link.mtu)
    }
    fn mem_available(&self) -> Option<u64> {
        parse_mem_available(&std::fs::read_to_string("/proc/meminfo").ok()?)
    }
}

/// The largest `max` whose tables fit in `budget` bytes (a bisection over [`conntrack_bytes`]).
fn max_entries_within(budget: u64, shards: usize) -> u64 {
    let (mut lo, mut hi) = (0u64, CONNTRACK_MAX);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if conntrack_bytes(mid, shards) <= budget {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

impl Config {
    /// Reads and validates `path` against `env`.
    pub fn load(path: &Path, env: &dyn Environment) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: cannot read: {e}", path.display())))?;
        Self::parse(path, &text, env)
    }

    /// Reads `path` as TOML without checking it against this machine: for clients such as
    /// `fwd stats`, which run outside the namespace that holds the interfaces.
    pub fn load_unchecked(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: cannot read: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| {
            let msg = clip_message(&e.message().trim().replace('\n', " "));
            at(path, &text, e.span(), &msg)
        })
    }

    /// Parses and validates `text` (from `path`, for messages).
    pub fn parse(path: &Path, text: &str, env: &dyn Environment) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let msg = clip_message(&e.message().trim().replace('\n', " "));
            at(path, text, e.span(), &msg)
        })?;
        cfg.validate(path, text, env)?;
        Ok(cfg)
    }

    fn validate(&self, path: &Path, text: &str, env: &dyn Environment) -> Result<(), ConfigError> {
        let err = |span: Range<usize>, msg: String| Err(at(path, text, Some(span), &msg));
        for (name, p) in [("a", &self.ports.a), ("b", &self.ports.b)] {
            let iface = p.interface.get_ref();
            let qi = clip(iface);
            if iface.is_empty() {
                return err(
                    p.interface.span(),
                    format!("ports.{name}.interface is empty"),
                );
            }
            if !env.interface_exists(iface) {
                return err(
                    p.interface.span(),
                    format!(
                        "ports.{name}.interface: no interface {qi:?} in this network namespace"
                    ),
                );
            }
            let q = *p.queues.get_ref();
            if q == 0 || q > 64 {
                return err(
                    p.queues.span(),
                    format!("ports.{name}.queues must be 1..=64, got {q}"),
                );
            }
            if let Some(m) = &p.mtu {
                let v = *m.get_ref();
                if !(68..=65535).contains(&v) {
                    return err(
                        m.span(),
                        format!("ports.{name}.mtu must be 68..=65535 (IPv4's minimum to the largest IP packet), got {v}"),
                    );
                }
            }
            let max = ports::xdp::max_mtu(ports::xdp::RingSizes::default().frame_size);
            if let Some(mtu) = env.mtu(iface).filter(|&m| m > max) {
                // Frames over a buffer would be dropped by the kernel before fwd sees them.
                return err(
                    p.interface.span(),
                    format!(
                        "ports.{name}.interface: {qi:?} has MTU {mtu}, but fwd supports at most \
                         {max} (one {}-byte buffer per frame, no multi-buffer AF_XDP): lower it, \
                         e.g. ip link set dev {qi} mtu 1500",
                        ports::xdp::RingSizes::default().frame_size
                    ),
                );
            }
            if let Some(have) = env.rx_queues(iface) {
                if q > have {
                    return err(
                        p.queues.span(),
                        format!("ports.{name}.queues = {q} but interface {qi:?} has {have} receive queue(s)"),
                    );
                }
            }
        }
        if self.ports.a.interface.get_ref() == self.ports.b.interface.get_ref() {
            return err(
                self.ports.b.interface.span(),
                "ports.a and ports.b use the same interface".into(),
            );
        }
        if self.ports.a.queues.get_ref() != self.ports.b.queues.get_ref() {
            return err(
                self.ports.b.queues.span(),
                "ports.a.queues and ports.b.queues must be equal (queue q of A pairs with queue q of B in one worker)".into(),
            );
        }
        if self.ports.a.mode.get_ref() != self.ports.b.mode.get_ref() {
            return err(
                self.ports.b.mode.span(),
                "ports.a.mode and ports.b.mode must agree (a worker's sockets share one UMEM)"
                    .into(),
            );
        }
        let cores = self.workers.cores.get_ref();
        if cores.is_empty() {
            return err(
                self.workers.cores.span(),
                "workers.cores lists no core".into(),
            );
        }
        let available = env.cores();
        for (i, c) in cores.iter().enumerate() {
            if !available.contains(c) {
                return err(
                    self.workers.cores.span(),
                    format!("workers.cores: core {c} does not exist (available: {available:?})"),
                );
            }
            if cores[..i].contains(c) {
                return err(
                    self.workers.cores.span(),
                    format!("workers.cores: core {c} listed twice"),
                );
            }
        }
        let queues = *self.ports.a.queues.get_ref() as usize;
        if cores.len() > queues {
            return err(
                self.workers.cores.span(),
                format!("workers.cores lists {} cores but the ports have only {queues} queue(s): a worker would have nothing to poll", cores.len()),
            );
        }
        let burst = *self.workers.burst.get_ref();
        if burst == 0 || burst > ports::xdp::MAX_BURST {
            return err(
                self.workers.burst.span(),
                format!(
                    "workers.burst must be 1..={}, got {burst}",
                    ports::xdp::MAX_BURST
                ),
            );
        }
        let ring = *self.workers.ring_size.get_ref();
        if !(64..=16384).contains(&ring) || !ring.is_power_of_two() {
            return err(
                self.workers.ring_size.span(),
                format!("workers.ring_size must be a power of two in 64..=16384, got {ring}"),
            );
        }
        if tracing_subscriber::EnvFilter::try_new(self.log.level.get_ref()).is_err() {
            return err(
                self.log.level.span(),
                format!(
                    "log.level {:?} is not a level or filter (error, warn, info, debug, trace)",
                    clip(self.log.level.get_ref())
                ),
            );
        }
        if let Some(group) = &self.control.group {
            let name = group.get_ref();
            if !matches!(nix::unistd::Group::from_name(name), Ok(Some(_))) {
                return err(
                    group.span(),
                    format!("control.group: no group {:?} on this machine", clip(name)),
                );
            }
        }
        if let Some(sy) = &self.sync {
            sy.check()
                .map_err(|(span, msg)| at(path, text, Some(span), &msg))?;
            if let Some(i) = &sy.interface {
                if !env.interface_exists(i.get_ref()) {
                    return err(
                        i.span(),
                        format!(
                            "sync.interface: no interface {:?} in this network namespace",
                            clip(i.get_ref())
                        ),
                    );
                }
            }
        }
        self.validate_numbers(path, text, env)
    }

    /// The numeric keys the checks above do not cover: each within its range, the error naming
    /// the key, where it is and the range.
    fn validate_numbers(
        &self,
        path: &Path,
        text: &str,
        env: &dyn Environment,
    ) -> Result<(), ConfigError> {
        fn range<T: PartialOrd + fmt::Display + Copy>(
            key: &str,
            v: &Spanned<T>,
            lo: T,
            hi: T,
            unit: &str,
        ) -> Result<(), (Range<usize>, String)> {
            let x = *v.get_ref();
            if x < lo || x > hi {
                return Err((
                    v.span(),
                    format!("{key} = {x}: expected {lo} to {hi}{unit}"),
                ));
            }
            Ok(())
        }
        let check = || -> Result<(), (Range<usize>, String)> {
            range(
                "workers.idle_sleep_us",
                &self.workers.idle_sleep_us,
                0,
                1_000_000,
                " microseconds",
            )?;
            range(
                "stats.log_interval_s",
                &self.stats.log_interval_s,
                0,
                86_400,
                " seconds (0: no stats lines)",
            )?;
            range("log.burst", &self.log.burst, 1, 1_000_000, " lines")?;
            range(
                "log.interval_ms",
                &self.log.interval_ms,
                0,
                86_400_000,
                " milliseconds (0: no LOG rate limit)",
            )?;
            for (name, v) in &self.conntrack.timeouts {
                if !TIMEOUT_NAMES.contains(&name.as_str()) {
                    return Err((
                        v.span(),
                        format!(
                            "conntrack.timeouts: unknown timeout {:?} (known: {})",
                            clip(name),
                            TIMEOUT_NAMES.join(", ")
                        ),
                    ));
                }
                range(
                    &format!("conntrack.timeouts.{name}"),
                    v,
                    1,
                    conntrack::MAX_TIMEOUT_SECS,
                    " seconds",
                )?;
            }
            if let Some(max) = &self.conntrack.max {
                let shards = self.workers.cores.get_ref().len();
                let x = *max.get_ref();
                // Bounded by the table's 31-bit indices and by memory: more than half of what
                // is available would leave the box swapping or killed at start.
                let fits = env
                    .mem_available()
                    .map(|a| (a, max_entries_within(a / 2, shards)));
                let why = match fits {
                    Some((avail, n)) if n < CONNTRACK_MAX => format!(
                        "{} B an entry plus the hash index, at most half of the {} MemAvailable \
                         (/proc/meminfo){}",
                        conntrack::ENTRY_SIZE,
                        human_bytes(avail),
                        if x > n && x <= CONNTRACK_MAX {
                            format!(
                                ": this would take about {}",
                                human_bytes(conntrack_bytes(x, shards))
                            )
                        } else {
                            String::new()
                        }
                    ),
                    _ => "the table's limit: 31-bit entry indices".to_string(),
                };
                let hi = fits.map_or(CONNTRACK_MAX, |(_, n)| n.min(CONNTRACK_MAX));
                if x == 0 || x > hi {
                    return Err((
                        max.span(),
                        format!("conntrack.max = {x}: expected 1 to {hi} entries ({why})"),
                    ));
                }
            }
            Ok(())
        };
        check().map_err(|(span, msg)| at(path, text, Some(span), &msg))
    }

    /// The ports as the AF_XDP layer wants them.
    pub fn port_specs(&self) -> [ports::xdp::PortSpec; 2] {
        let spec = |p: &PortConfig| ports::xdp::PortSpec {
            interface: p.interface.get_ref().clone(),
            bind: match p.mode.get_ref() {
                BindMode::Auto => ports::xdp::BindMode::Auto,
                BindMode::Copy => ports::xdp::BindMode::Copy,
                BindMode::ZeroCopy => ports::xdp::BindMode::ZeroCopy,
            },
            attach: match p.attach {
                AttachMode::Auto => ports::xdp::AttachMode::Auto,
                AttachMode::Drv => ports::xdp::AttachMode::Drv,
                AttachMode::Skb => ports::xdp::AttachMode::Skb,
            },
        };
        [spec(&self.ports.a), spec(&self.ports.b)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake;
    impl Environment for Fake {
        fn interface_exists(&self, name: &str) -> bool {
            name.starts_with("fw-")
        }
        fn cores(&self) -> Vec<usize> {
            vec![0, 1]
        }
        fn rx_queues(&self, _name: &str) -> Option<u32> {
            Some(2)
        }
        fn mtu(&self, name: &str) -> Option<u32> {
            Some(if name == "fw-jumbo" { 9000 } else { 1500 })
        }
        fn mem_available(&self) -> Option<u64> {
            Some(8 << 30)
        }
    }

    const GOOD: &str = r#"
[ports.a]
interface = "fw-c"
mode = "copy"
attach = "skb"
queues = 2
[ports.b]
interface = "fw-s"
mode = "copy"
queues = 2
[workers]
cores = [0, 1]
[stats]
listen = "127.0.0.1:9911"
[rules]
ipv4 = "rules.v4"
[conntrack]
max = 65536
[conntrack.timeouts]
tcp_established = 432000
[control]
socket = "/tmp/x.sock"
[log]
level = "debug"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("fwd.toml"), text, &Fake)
    }

    #[test]
    fn full_config_parses() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.ports.a.interface.get_ref(), "fw-c");
        assert_eq!(*c.ports.a.mode.get_ref(), BindMode::Copy);
        assert_eq!(c.ports.a.attach, AttachMode::Skb);
        assert_eq!(c.ports.b.attach, AttachMode::Auto);
        assert_eq!(*c.ports.b.queues.get_ref(), 2);
        assert_eq!(c.workers.cores.get_ref(), &vec![0, 1]);
        assert_eq!(*c.workers.burst.get_ref(), 32);
        assert_eq!(c.stats.listen.port(), 9911);
        assert_eq!(c.conntrack.max.map(|m| *m.get_ref()), Some(65536));
        assert_eq!(*c.conntrack.timeouts["tcp_established"].get_ref(), 432000);
        assert_eq!(c.control.socket, PathBuf::from("/tmp/x.sock"));
        assert_eq!(c.rules.unwrap().ipv4, Some(PathBuf::from("rules.v4")));
    }

    #[test]
    fn port_addresses_for_masquerade_both_families() {
        let c = parse("[ports.a]\ninterface = \"fw-c\"\n[ports.b]\ninterface = \"fw-s\"\naddress = \"198.18.0.254\"\naddress6 = \"2001:2::fe\"\n[workers]\ncores = [1]\n").unwrap();
        assert_eq!(c.ports.b.address, Some("198.18.0.254".parse().unwrap()));
        assert_eq!(c.ports.b.address6, Some("2001:2::fe".parse().unwrap()));
        assert_eq!(c.ports.a.address6, None);
        let cc = crate::firewall::compile_config(&c, 1);
        assert_eq!(cc.ports[1].ipv6, Some("2001:2::fe".parse().unwrap()));
        assert!(parse("[ports.a]\ninterface = \"fw-c\"\naddress6 = \"198.18.0.1\"\n[ports.b]\ninterface = \"fw-s\"\n[workers]\ncores = [1]\n").is_err());
    }

    #[test]
    fn control_group_must_exist() {
        let base = "[ports.a]\ninterface = \"fw-c\"\n[ports.b]\ninterface = \"fw-s\"\n[workers]\ncores = [1]\n[control]\n";
        assert!(parse(base).unwrap().control.group.is_none());
        let c = parse(&format!("{base}group = \"root\"\n")).unwrap();
        assert_eq!(c.control.group.unwrap().get_ref(), "root");
        let e = parse(&format!("{base}group = \"fwd-no-such-group\"\n"))
            .unwrap_err()
            .0;
        assert!(e.starts_with("fwd.toml:8:9: "), "{e}");
        assert!(e.contains("no group \"fwd-no-such-group\""), "{e}");
    }

    #[test]
    fn minimal_config_takes_defaults() {
        let c = parse("[ports.a]\ninterface = \"fw-c\"\n[ports.b]\ninterface = \"fw-s\"\n[workers]\ncores = [1]\n").unwrap();
        assert_eq!(*c.ports.a.queues.get_ref(), 1);
        assert_eq!(*c.ports.a.mode.get_ref(), BindMode::Auto);
        assert_eq!(c.stats.listen, "127.0.0.1:9900".parse().unwrap());
        assert_eq!(c.control.socket, PathBuf::from("/run/fwd.sock"));
        assert!(c.rules.is_none());
    }

    #[test]
    fn conntrack_hash_key_and_checksum_are_read_and_checked() {
        let base = "[ports.a]\ninterface = \"fw-c\"\n[ports.b]\ninterface = \"fw-s\"\n[workers]\ncores = [1]\n[conntrack]\n";
        let c = parse(&format!(
            "{base}hash_key = \"00112233445566778899aabbccddeeff\"\nchecksum = false\n"
        ))
        .unwrap();
        assert_eq!(
            c.conntrack.hash_key,
            Some(conntrack::HashKey::from_hex("00112233445566778899aabbccddeeff").unwrap())
        );
        assert_eq!(c.conntrack.checksum, Some(false));
        let e = parse(&format!("{base}hash_key = \"0011\"\n"))
            .unwrap_err()
            .0;
        assert!(e.starts_with("fwd.toml:8:12: "), "{e}");
        assert!(e.contains("expected 32 hex digits"), "{e}");
        assert!(!e.contains("0011"), "the key is not echoed: {e}");
        assert_eq!(parse(base).unwrap().conntrack.hash_key, None);
    }

    #[test]
    fn bridge_section_defaults_fail_closed_and_every_key_parses() {
        const BASE: &str =
            "[ports.a]\ninterface = \"fw-c\"\n[ports.b]\ninterface = \"fw-s\"\n[workers]\ncores = [1]\n";
        let d = parse(BASE).unwrap().bridge.policy();
        assert_eq!(d, dataplane::BridgePolicy::default());
        assert_eq!(
            (d.vlan, d.qinq, d.pppoe),
            (
                dataplane::TagPolicy::Filter,
                dataplane::TagPolicy::Filter,
                dataplane::PppoePolicy::Filter
            )
        );
        assert!(!d.forward_link_local && d.pppoe_discovery && d.other_ethertypes);
        let text = format!(
            "{BASE}[bridge]\nvlan = \"pass\"\nqinq = \"drop\"\npppoe = \"drop\"\n\
             pppoe_discovery = \"drop\"\nforward_link_local = true\nother_ethertypes = \"drop\"\n"
        );
        let p = parse(&text).unwrap().bridge.policy();
        assert_eq!(
            p,
            dataplane::BridgePolicy {
                vlan: dataplane::TagPolicy::Pass,
                qinq: dataplane::TagPolicy::Drop,
                pppoe: dataplane::PppoePolicy::Drop,
                pppoe_discovery: false,
                forward_link_local: true,
                other_ethertypes: false,
            }
        );
    }

    #[test]
    fn bad_bridge_values_name_line_column_and_the_choices() {
        const BASE: &str =
            "[ports.a]\ninterface = \"fw-c\"\n[ports.b]\ninterface = \"fw-s\"\n[workers]\ncores = [1]\n";
        let e = parse(&format!("{BASE}[bridge]\nvlan = \"strip\"\n"))
            .unwrap_err()
            .0;
        assert!(e.starts_with("fwd.toml:8:8: "), "{e}");
        assert!(
            e.contains("strip") && e.contains("filter") && e.contains("pass") && e.contains("drop"),
            "{e}"
        );
        // PPPoE cannot be passed unfiltered: only filter or drop
        let e = parse(&format!("{BASE}[bridge]\npppoe = \"pass\"\n"))
            .unwrap_err()
            .0;
        assert!(e.starts_with("fwd.toml:8:9: "), "{e}");
        assert!(e.contains("filter") && e.contains("drop"), "{e}");
        let e = parse(&format!("{BASE}[bridge]\nforward_link_local = \"yes\"\n"))
            .unwrap_err()
            .0;
        assert!(e.starts_with("fwd.toml:8:22: "), "{e}");
        let e = parse(&format!("{BASE}[bridge]\nstp = \"pass\"\n"))
            .unwrap_err()
            .0;
        assert!(e.starts_with("fwd.toml:8:1: ") && e.contains("stp"), "{e}");
    }

    const SYNC_BASE: &str = "[ports.a]\ninterface = \"fw-c\"\n[ports.b]\ninterface = \"fw-s\"\n[workers]\ncores = [1]\n";

    #[test]
    fn sync_section_parses_with_conntrackd_defaults() {
        let text = format!(
            "{SYNC_BASE}[sync]\nmode = \"notrack\"\nunicast_peer = \"198.19.250.2\"\naddress = \"198.19.250.1\"\nrefresh_time = 30\nstartup_resync = true\n[sync.filter]\nprotocol_accept = [\"tcp\", \"udp\", \"132\"]\nstate_accept = [\"ESTABLISHED\", \"CLOSED\", \"time_wait\"]\naddress_ignore = [\"198.18.0.254\", \"2001:2::1\"]\n"
        );
        let c = parse(&text).unwrap();
        let sy = c.sync.unwrap();
        assert_eq!(sy.mode, SyncMode::Notrack);
        assert_eq!(*sy.port.get_ref(), 3780);
        assert_eq!(*sy.ack_window_size.get_ref(), 300);
        assert_eq!(*sy.resend_queue_size.get_ref(), 131_072);
        assert_eq!(*sy.refresh_time.get_ref(), 30);
        assert!(sy.startup_resync);
        let st: Vec<_> = sy
            .filter
            .state_accept
            .get_ref()
            .iter()
            .map(|s| sync_tcp_state(s))
            .collect();
        assert_eq!(st, [Some(3), Some(8), Some(7)]);
        assert_eq!(sync_protocol("132"), Some(132));
        assert_eq!(sy.filter.address_ignore.len(), 2);
        assert!(parse(SYNC_BASE).unwrap().sync.is_none());
    }

    #[test]
    fn bad_sync_values_name_line_column_and_what_was_expected() {
        let cases = [
            ("[sync]\naddress = \"198.19.250.1\"\n", "8:11", "expected multicast_group or unicast_peer"),
            ("[sync]\naddress = \"198.19.250.1\"\nmulticast_group = \"198.19.250.9\"\n", "9:19", "expected a multicast address"),
            ("[sync]\naddress = \"198.19.250.1\"\nmulticast_group = \"225.0.0.50\"\nunicast_peer = \"198.19.250.2\"\n", "9:19", "one transport"),
            ("[sync]\naddress = \"198.19.250.1\"\nunicast_peer = \"198.19.250.2\"\nmode = \"alarm\"\n", "10:8", "ftfw"),
            ("[sync]\naddress = \"198.19.250.1\"\nunicast_peer = \"198.19.250.2\"\nack_window_size = 0\n", "10:19", "sync.ack_window_size = 0: expected 1 to"),
            ("[sync]\naddress = \"198.19.250.1\"\nunicast_peer = \"198.19.250.2\"\ninterface = \"nope0\"\n", "10:13", "no interface"),
            ("[sync]\naddress = \"198.19.250.1\"\nunicast_peer = \"198.19.250.2\"\n[sync.filter]\nstate_accept = [\"OPEN\"]\n", "11:16", "unknown TCP state \"OPEN\""),
            ("[sync]\naddress = \"198.19.250.1\"\nunicast_peer = \"198.19.250.2\"\n[sync.filter]\nprotocol_accept = [\"tcpp\"]\n", "11:19", "unknown protocol \"tcpp\""),
            ("[sync]\naddress = \"198.19.250.1\"\nunicast_peer = \"198.19.250.2\"\nresend_timer = 3\n", "10:1", "resend_timer"),
        ];
        for (sec, pos, want) in cases {
            let e = parse(&format!("{SYNC_BASE}{sec}")).unwrap_err().0;
            assert!(e.starts_with(&format!("fwd.toml:{pos}: ")), "{sec:?}: {e}");
            assert!(e.contains(want), "{sec:?}: {e}");
        }
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let text = "[ports.a]\ninterface = \"fw-c\"\n  bogus = 1\n[ports.b]\ninterface = \"fw-s\"\n[workers]\ncores = [1]\n";
        let e = parse(text).unwrap_err().0;
        assert!(e.starts_with("fwd.toml:3:3: "), "{e}");
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn wrong_type_names_line_and_column() {
        let text = "[ports.a]\ninterface = \"fw-c\"\nqueues = \"two\"\n[ports.b]\ninterface = \"fw-s\"\n[workers]\ncores = [1]\n";
        let e = parse(text).unwrap_err().0;
        assert!(e.starts_with("fwd.toml:3:10: "), "{e}");
    }

    #[test]
    fn bad_mode_is_refused() {
        let text = "[ports.a]\ninterface = \"fw-c\"\nmode = \"fast\"\n[ports.b]\ninterface = \"fw-s\"\n[workers]\ncores = [1]\n";
        let e = parse(text).unwrap_err().0;
        assert!(e.starts_with("fwd.toml:3:8: "), "{e}");
        assert!(e.contains("zero-copy"), "{e}");
    }

    #[test]
    fn missing_interface_is_named() {
        let text =
            "[ports.a]\ninterface = \"fw-c\"\n[ports.b]\nqueues = 1\n[workers]\ncores = [1]\n";
        let e = parse(text).unwrap_err().0;
        assert!(e.contains("interface"), "{e}");
        assert!(e.starts_with("fwd.toml:"), "{e}");
    }

    #[test]
    fn nonexistent_interface_is_named_with_position() {
        let text = "[ports.a]\ninterface = \"eth9\"\n[ports.b]\ninterface = \"fw-s\"\n[workers]\ncores = [1]\n";
        let e = parse(text).unwrap_err().0;
        assert_eq!(
            e,
            "fwd.toml:2:13: ports.a.interface: no interface \"eth9\" in this network namespace"
        );
    }

    #[test]
    fn nonexistent_core_is_named() {
        let text = "[ports.a]\ninterface = \"fw-c\"\n[ports.b]\ninterface = \"fw-s\"\n[workers]\ncores = [7]\n";
        let e = parse(text).unwrap_err().0;
        assert!(
            e.starts_with("fwd.toml:6:9: workers.cores: core 7 does not exist"),
            "{e}"
        );
    }

    #[test]
    fn more_workers_than_queues_is_refused() {
        let text = "[ports.a]\ninterface = \"fw-c\"\n[ports.b]\ninterface = \"fw-s\"\n[workers]\ncores = [0, 1]\n";
        let e = parse(text).unwrap_err().0;
        assert!(e.contains("only 1 queue"), "{e}");
    }

    #[test]
    fn unequal_queues_and_modes_are_refused() {
        let q = "[ports.a]\ninterface = \"fw-c\"\nqueues = 2\n[ports.b]\ninterface = \"fw-s\"\n[workers]\ncores = [1]\n";
        assert!(parse(q).unwrap_err().0.contains("must be equal"));
        let m = "[ports.a]\ninterface = \"fw-c\"\nmode = \"copy\"\n[ports.b]\ninterface = \"fw-s\"\n[workers]\ncores = [1]\n";
        assert!(parse(m).unwrap_err().0.contains("must agree"));
    }

    #[test]
    fn more_queues_than_the_interface_has_is_refused() {
        let text = "[ports.a]\ninterface = \"fw-c\"\nqueues = 4\n[ports.b]\ninterface = \"fw-s\"\nqueues = 4\n[workers]\ncores = [1]\n";
        let e = parse(text).unwrap_err().0;
        assert_eq!(
            e,
            "fwd.toml:3:10: ports.a.queues = 4 but interface \"fw-c\" has 2 receive queue(s)"
        );
    }

    #[test]
    fn a_jumbo_mtu_is_refused_naming_the_mtu_and_the_maximum() {
        let text = "[ports.a]\ninterface = \"fw-c\"\n[ports.b]\ninterface = \"fw-jumbo\"\n[workers]\ncores = [1]\n";
        let e = parse(text).unwrap_err().to_string();
        assert!(
            e.starts_with("fwd.toml:4:13: ports.b.interface: \"fw-jumbo\" has MTU 9000, but fwd supports at most 1774"),
            "{e}"
        );
    }

    #[test]
    fn a_port_mtu_is_read_and_bounded() {
        let text = "[ports.a]\ninterface = \"fw-c\"\nmtu = 1400\n[ports.b]\ninterface = \"fw-s\"\n[workers]\ncores = [1]\n";
        let c = parse(text).unwrap();
        assert_eq!(c.ports.a.mtu.as_ref().map(|m| *m.get_ref()), Some(1400));
        assert!(c.ports.b.mtu.is_none());
        let e = parse(&text.replace("1400", "67")).unwrap_err().0;
        assert!(
            e.starts_with("fwd.toml:3:7: ports.a.mtu must be 68..=65535"),
            "{e}"
        );
    }

    #[test]
    fn ring_size_must_be_a_power_of_two() {
        let text = "[ports.a]\ninterface = \"fw-c\"\n[ports.b]\ninterface = \"fw-s\"\n[workers]\ncores = [1]\nring_size = 1000\n";
        let e = parse(text).unwrap_err().0;
        assert!(e.starts_with("fwd.toml:7:13: workers.ring_size"), "{e}");
        let ok = text.replace("1000", "512");
        assert_eq!(*parse(&ok).unwrap().workers.ring_size.get_ref(), 512);
    }

    #[test]
    fn shipped_configs_parse() {
        for f in ["fwd.example.toml", "testbed.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../configs")
                .join(f);
            let text = std::fs::read_to_string(&path).unwrap();
            let c = Config::parse(&path, &text, &Fake).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(c.ports.a.interface.get_ref(), "fw-c");
            assert_eq!(c.ports.b.interface.get_ref(), "fw-s");
        }
    }

    const MIN: &str =
        "[ports.a]\ninterface = \"fw-c\"\n[ports.b]\ninterface = \"fw-s\"\n[workers]\ncores = [1]\n";

    #[test]
    fn conntrack_max_beyond_the_table_limit_is_refused_at_its_position() {
        let e = parse(&format!("{MIN}[conntrack]\nmax = 4000000000\n"))
            .unwrap_err()
            .0;
        // 8 GiB available: half of it holds about 32 million entries
        assert!(
            e.starts_with("fwd.toml:8:7: conntrack.max = 4000000000: expected 1 to "),
            "{e}"
        );
        assert!(e.contains("MemAvailable"), "{e}");
        let hi: u64 = e["fwd.toml:8:7: conntrack.max = 4000000000: expected 1 to ".len()..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(conntrack_bytes(hi, 1) <= 4 << 30, "{hi}");
        assert!(conntrack_bytes(hi + 1, 1) > 4 << 30, "{hi}");
        // the bound itself passes, one more does not
        parse(&format!("{MIN}[conntrack]\nmax = {hi}\n")).unwrap();
        let e = parse(&format!("{MIN}[conntrack]\nmax = {}\n", hi + 1))
            .unwrap_err()
            .0;
        assert!(e.contains("this would take about 4.0 GiB"), "{e}");
        let e = parse(&format!("{MIN}[conntrack]\nmax = 0\n"))
            .unwrap_err()
            .0;
        assert!(
            e.starts_with("fwd.toml:8:7: conntrack.max = 0: expected 1 to "),
            "{e}"
        );
    }

    #[test]
    fn conntrack_max_without_a_memory_figure_is_held_to_the_table_limit() {
        struct NoMem;
        impl Environment for NoMem {
            fn interface_exists(&self, _: &str) -> bool {
                true
            }
            fn cores(&self) -> Vec<usize> {
                vec![1]
            }
            fn rx_queues(&self, _: &str) -> Option<u32> {
                None
            }
        }
        let p = |t: &str| Config::parse(Path::new("c.toml"), t, &NoMem);
        let e = p(&format!("{MIN}[conntrack]\nmax = 4000000000\n"))
            .unwrap_err()
            .0;
        assert_eq!(
            e,
            "c.toml:8:7: conntrack.max = 4000000000: expected 1 to 2147483647 entries \
             (the table's limit: 31-bit entry indices)"
        );
        p(&format!("{MIN}[conntrack]\nmax = 2147483647\n")).unwrap();
    }

    #[test]
    fn memory_estimate_counts_entries_and_the_index_of_every_shard() {
        assert_eq!(
            conntrack_bytes(1 << 20, 1),
            (1 << 20) * conntrack::ENTRY_SIZE as u64 + (1 << 20) * 4 + 8192
        );
        // two shards of 500001 entries, each with a 2^19 bucket index
        assert_eq!(
            conntrack_bytes(1_000_001, 2),
            2 * (500_001 * conntrack::ENTRY_SIZE as u64 + (1 << 19) * 4 + 8192)
        );
        assert_eq!(max_entries_within(0, 1), 0);
        let n = max_entries_within(1 << 30, 4);
        assert!(conntrack_bytes(n, 4) <= 1 << 30 && conntrack_bytes(n + 1, 4) > 1 << 30);
        assert_eq!(
            parse_mem_available("MemTotal: 100 kB\nMemAvailable:    2048 kB\n"),
            Some(2 << 20)
        );
        assert_eq!(parse_mem_available("MemTotal: 100 kB\n"), None);
    }

    #[test]
    fn every_numeric_key_is_range_checked_with_position_and_range() {
        let cases = [
            (
                "[workers]\nidle_sleep_us = 5000000\n",
                "workers.idle_sleep_us = 5000000: expected 0 to 1000000 microseconds",
            ),
            (
                "[stats]\nlog_interval_s = 100000\n",
                "stats.log_interval_s = 100000: expected 0 to 86400 seconds",
            ),
            (
                "[log]\nburst = 0\n",
                "log.burst = 0: expected 1 to 1000000 lines",
            ),
            (
                "[log]\ninterval_ms = 100000000\n",
                "log.interval_ms = 100000000: expected 0 to 86400000 milliseconds",
            ),
            (
                "[conntrack.timeouts]\nudp = 0\n",
                "conntrack.timeouts.udp = 0: expected 1 to 2073600 seconds",
            ),
            (
                "[conntrack.timeouts]\nudp = 3000000\n",
                "conntrack.timeouts.udp = 3000000: expected 1 to 2073600 seconds",
            ),
        ];
        for (section, want) in cases {
            // the workers section is already open in MIN; others append
            let text = if let Some(rest) = section.strip_prefix("[workers]\n") {
                format!("{MIN}{rest}")
            } else {
                format!("{MIN}{section}")
            };
            let e = parse(&text).unwrap_err().0;
            let line = text.lines().count();
            let col = text.lines().last().unwrap().find('=').unwrap() + 3;
            assert_eq!(
                e.split(": ").next().unwrap(),
                format!("fwd.toml:{line}:{col}"),
                "{e}"
            );
            assert!(e.contains(want), "{e}\nwanted {want}");
        }
        let e = parse(&format!("{MIN}[conntrack.timeouts]\ntcp_establish = 10\n"))
            .unwrap_err()
            .0;
        assert!(
            e.starts_with("fwd.toml:8:17: conntrack.timeouts: unknown timeout \"tcp_establish\""),
            "{e}"
        );
        assert!(e.contains("tcp_established"), "{e}");
        // a value past the key's type is the parser's error, also with its position
        let e = parse(&format!("{MIN}[conntrack.timeouts]\nudp = 5000000000\n"))
            .unwrap_err()
            .0;
        assert!(e.starts_with("fwd.toml:8:7: "), "{e}");
        let e = parse(&format!("{MIN}[log]\nlevel = \"fwd=loud\"\n"))
            .unwrap_err()
            .0;
        assert!(e.starts_with("fwd.toml:8:9: log.level \"fwd=loud\""), "{e}");
        // the defaults and the edges of each range pass
        let c = parse(MIN).unwrap();
        assert_eq!(
            (*c.log.burst.get_ref(), *c.log.interval_ms.get_ref()),
            (10, 5000)
        );
        parse(&format!(
            "{MIN}idle_sleep_us = 1000000\n[stats]\nlog_interval_s = 86400\n[log]\nburst = 1\ninterval_ms = 0\n[conntrack.timeouts]\nudp = 2073600\n"
        ))
        .unwrap();
    }

    #[test]
    fn a_megabyte_of_junk_gives_a_short_error_with_its_position() {
        let junk = "x".repeat(1 << 20);
        for text in [
            format!("{MIN}{junk}\n"),
            format!("{MIN}{junk} = 1\n"),
            format!("{MIN}[{junk}]\n"),
            format!("{MIN}[log]\nlevel = \"{junk}=loud\"\n"),
            format!("[ports.a]\ninterface = \"{junk}\"\n[ports.b]\ninterface = \"fw-s\"\n[workers]\ncores = [1]\n"),
            format!("{MIN}[conntrack.timeouts]\n{junk} = 5\n"),
            format!("{MIN}[log]\nlevel = \"{}\"\n", "a=b ".repeat(1 << 18)),
        ] {
            let e = parse(&text).unwrap_err().0;
            assert!(e.starts_with("fwd.toml:"), "{}", clip(&e));
            let pos: Vec<&str> = e.splitn(4, ':').collect();
            assert!(pos[1].parse::<usize>().is_ok() && pos[2].parse::<usize>().is_ok(), "{}", clip(&e));
            assert!(e.len() < 500, "{} bytes: {}", e.len(), clip(&e));
            assert!(!e.contains(&"x".repeat(QUOTE_MAX + 1)), "{}", clip(&e));
        }
    }

    #[test]
    fn clip_keeps_short_text_and_cuts_long_text_at_a_character() {
        assert_eq!(clip("fw-c"), "fw-c");
        let long = "é".repeat(100);
        let c = clip(&long);
        assert!(c.starts_with(&"é".repeat(QUOTE_MAX)), "{c}");
        assert!(c.ends_with("... (200 bytes)"), "{c}");
        assert_eq!(clip(&"a".repeat(QUOTE_MAX)), "a".repeat(QUOTE_MAX));
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("é\nx", 3), (2, 1));
        assert_eq!(line_col("éx", 2), (1, 2));
    }
}
