//! `[sync]`: fwd's connection table shared with peers in conntrackd's protocol (docs/SYNC.md).
//!
//! Each worker's shard pushes its connection events (NEW, UPDATE, DESTROY) into its own
//! bounded SPSC queue ([`conntrack::Shard::set_events`]; a full queue is a counted drop, the
//! worker never waits). The sync thread ([`::sync::runner`], never a worker) drains the
//! queues, converts and filters the events (conntrackd's `Filter`) and batches them into
//! conntrackd messages. What peers send lands in the sync thread's external cache;
//! `fwd sync commit` hands each entry to the worker that owns its flow, through that worker's
//! control queue, with its NAT binding.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use ::sync::runner::{self, Counters, Request, Source, Timers};
use ::sync::{entry::status, Engine, Entry, Tuple as SyncTuple, L4};
use conntrack::{CtEvent, CtEventKind, Family, Import, NatKind, TcpState, Tuple};

use crate::config::{sync_protocol, sync_tcp_state, Sync as SyncConfig, SyncMode};

/// conntrackd's `Filter`, compiled: which local connections are announced.
#[derive(Clone, Debug)]
pub struct Filter {
    /// Protocols sent (all `true` when no `protocol_accept`).
    protocols: [bool; 256],
    /// TCP states sent, bit = kernel state number.
    tcp_states: u16,
    ignore: Vec<IpAddr>,
}

impl Default for Filter {
    fn default() -> Self {
        Filter {
            protocols: [true; 256],
            tcp_states: u16::MAX,
            ignore: Vec::new(),
        }
    }
}

impl Filter {
    /// From `[sync.filter]` (names already checked by the configuration).
    pub fn from_config(f: &crate::config::SyncFilter) -> Filter {
        let mut out = Filter::default();
        let accept = f.protocol_accept.get_ref();
        if !accept.is_empty() {
            out.protocols = [false; 256];
            for p in accept.iter().filter_map(|n| sync_protocol(n)) {
                out.protocols[usize::from(p)] = true;
            }
        }
        for p in f
            .protocol_ignore
            .get_ref()
            .iter()
            .filter_map(|n| sync_protocol(n))
        {
            out.protocols[usize::from(p)] = false;
        }
        let states = f.state_accept.get_ref();
        if !states.is_empty() {
            out.tcp_states = states
                .iter()
                .filter_map(|n| sync_tcp_state(n))
                .fold(0, |m, s| m | 1 << s);
        }
        out.ignore = f.address_ignore.clone();
        out
    }

    /// Whether `e` is announced.
    pub fn accepts(&self, e: &Entry) -> bool {
        if !self.protocols[usize::from(e.orig.proto)] {
            return false;
        }
        if let Some(s) = e.tcp_state {
            if self.tcp_states & (1u16 << s.min(15)) == 0 {
                return false;
            }
        }
        !self
            .ignore
            .iter()
            .any(|a| *a == e.orig.src || *a == e.orig.dst)
    }
}

fn ip(t: &[u8; 16], family: Family) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::new(t[0], t[1], t[2], t[3])),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(*t)),
    }
}

fn addr16(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v) => {
            let mut b = [0; 16];
            b[..4].copy_from_slice(&v.octets());
            b
        }
        IpAddr::V6(v) => v.octets(),
    }
}

fn has_ports(proto: u8) -> bool {
    matches!(proto, 6 | 17 | 33 | 132 | 136)
}

fn is_icmp(proto: u8) -> bool {
    matches!(proto, 1 | 58)
}

fn sync_tuple(t: &Tuple, family: Family, proto: u8) -> SyncTuple {
    let l4 = if has_ports(proto) {
        L4::Ports {
            sport: t.sport,
            dport: t.dport,
        }
    } else if is_icmp(proto) {
        L4::Icmp {
            kind: (t.dport >> 8) as u8,
            code: t.dport as u8,
            id: t.sport,
        }
    } else {
        L4::None
    };
    SyncTuple {
        src: ip(&t.src, family),
        dst: ip(&t.dst, family),
        proto,
        l4,
    }
}

fn table_tuple(t: &SyncTuple) -> Tuple {
    let (sport, dport) = match t.l4 {
        L4::Ports { sport, dport } => (sport, dport),
        L4::Icmp { kind, code, id } => (id, u16::from(kind) << 8 | u16::from(code)),
        L4::None => (0, 0),
    };
    Tuple {
        src: addr16(t.src),
        dst: addr16(t.dst),
        sport,
        dport,
    }
}

/// A connection event as the protocol carries it: the original tuple, the NAT targets read
/// off the reply tuple as 1.4.7's `ct2msg` does (`IS_SNAT`: the reply goes elsewhere than the
/// original source, ...), status bits, TCP state, timeout, mark.
pub fn entry_of(ev: &CtEvent) -> Entry {
    let s = &ev.snap;
    let orig = sync_tuple(&s.orig, s.family, s.proto);
    let mut e = Entry::new(orig);
    let o = &s.orig;
    let r = &s.reply;
    let mut st = status::CONFIRMED;
    if s.seen_reply {
        st |= status::SEEN_REPLY;
    }
    if s.assured {
        st |= status::ASSURED;
    }
    if r.dst != o.src {
        e.snat = Some(ip(&r.dst, s.family));
    }
    if r.src != o.dst {
        e.dnat = Some(ip(&r.src, s.family));
    }
    if has_ports(s.proto) {
        if r.dport != o.sport {
            e.spat = Some(r.dport);
        }
        if r.sport != o.dport {
            e.dpat = Some(r.sport);
        }
    }
    if e.snat.is_some() || e.spat.is_some() {
        st |= status::SRC_NAT | status::SRC_NAT_DONE;
    }
    if e.dnat.is_some() || e.dpat.is_some() {
        st |= status::DST_NAT | status::DST_NAT_DONE;
    }
    e.status = st;
    e.tcp_state = s.tcp_state.map(|t| t as u8);
    e.timeout = Some(ev.timeout_secs);
    e.mark = Some(s.mark);
    e
}

/// A peer's entry as this box's table takes it: the reply tuple rebuilt from the NAT targets
/// (as `nf_nat` does on `conntrackd -c`). `None` for a TCP state the table does not know.
pub fn import_of(e: &Entry) -> Option<Import> {
    let family = if e.orig.src.is_ipv4() {
        Family::V4
    } else {
        Family::V6
    };
    let src_nat = e.snat.is_some() || e.spat.is_some();
    let dst_nat = e.dnat.is_some() || e.dpat.is_some();
    let tcp_state = match e.tcp_state {
        Some(s) => Some(TcpState::from_kernel(s)?),
        None => None,
    };
    let default_timeout = if e.orig.proto == 6 { 432_000 } else { 180 };
    Some(Import {
        family,
        proto: e.orig.proto,
        orig: table_tuple(&e.orig),
        reply: table_tuple(&e.reply()),
        nat: match (src_nat, dst_nat) {
            (false, false) => NatKind::None,
            (true, false) => NatKind::Src,
            (false, true) => NatKind::Dst,
            (true, true) => NatKind::Both,
        },
        tcp_state,
        seen_reply: e.status & status::SEEN_REPLY != 0,
        assured: e.status & status::ASSURED != 0,
        mark: e.mark.unwrap_or(0),
        timeout_secs: e.timeout.filter(|&t| t > 0).unwrap_or(default_timeout),
    })
}

/// One worker's event queue as the sync thread reads it.
pub struct Events {
    queue: rtrb::Consumer<CtEvent>,
    filter: Filter,
}

impl Source for Events {
    fn drain(&mut self, engine: &mut Engine, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            let Ok(ev) = self.queue.pop() else { break };
            n += 1;
            let e = entry_of(&ev);
            match ev.kind {
                CtEventKind::Destroy => engine.remove(&e.key()),
                // an entry leaving the accepted states is not announced again (conntrackd
                // filters each event alike); its deletion still goes
                _ if self.filter.accepts(&e) => engine.upsert(e),
                _ => {}
            }
        }
        n
    }

    fn overflow(&self) -> u64 {
        // counted where the event was lost: the shard's `events_dropped`
        0
    }
}

/// The running sync thread, as the control side sees it.
pub struct SyncHandle {
    requests: Mutex<mpsc::Sender<Request>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The flow hash key and worker count: which worker owns an entry.
    key: conntrack::HashKey,
    workers: usize,
}

/// How long the control side waits for the sync thread.
const SYNC_TIMEOUT: Duration = Duration::from_secs(5);

/// The sync socket: bound to the local address (unicast) or the port on every address in the
/// group (multicast, as conntrackd), to the sync interface if one is named.
pub fn socket(cfg: &SyncConfig) -> std::io::Result<(UdpSocket, SocketAddr)> {
    let port = *cfg.port.get_ref();
    let local = *cfg.address.get_ref();
    let (sock, peer) = match (&cfg.multicast_group, &cfg.unicast_peer) {
        (Some(g), _) => {
            let g = *g.get_ref();
            let s = UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], port)))?;
            s.join_multicast_v4(&g, &local)?;
            s.set_multicast_loop_v4(false)?;
            (s, SocketAddr::from((g, port)))
        }
        (None, Some(p)) => (
            UdpSocket::bind(SocketAddr::from((local, port)))?,
            SocketAddr::from((*p.get_ref(), port)),
        ),
        (None, None) => return Err(std::io::Error::other("no transport")),
    };
    if let Some(i) = &cfg.interface {
        nix::sys::socket::setsockopt(
            &sock,
            nix::sys::socket::sockopt::BindToDevice,
            &std::ffi::OsString::from(i.get_ref()),
        )
        .map_err(std::io::Error::from)?;
    }
    Ok((sock, peer))
}

/// Makes one event queue per worker: the producers go to the shards, the consumers to
/// [`SyncHandle::start`].
pub fn queues(
    cfg: &SyncConfig,
    workers: usize,
) -> (Vec<rtrb::Producer<CtEvent>>, Vec<rtrb::Consumer<CtEvent>>) {
    (0..workers)
        .map(|_| rtrb::RingBuffer::new(*cfg.event_queue.get_ref() as usize))
        .unzip()
}

impl SyncHandle {
    /// Starts the sync thread on the configured socket, reading the workers' event queues.
    pub fn start(
        cfg: &SyncConfig,
        consumers: Vec<rtrb::Consumer<CtEvent>>,
        key: conntrack::HashKey,
    ) -> anyhow::Result<SyncHandle> {
        let (sock, peer) = socket(cfg).map_err(|e| {
            anyhow::anyhow!(
                "sync: socket on {}:{}: {e}",
                cfg.address.get_ref(),
                cfg.port.get_ref()
            )
        })?;
        let engine = ::sync::Config {
            mode: match cfg.mode {
                SyncMode::Ftfw => ::sync::Mode::Ftfw,
                SyncMode::Notrack => ::sync::Mode::Notrack,
            },
            window_size: *cfg.ack_window_size.get_ref(),
            resend_queue_size: *cfg.resend_queue_size.get_ref() as usize,
            alive_interval: Duration::from_millis(*cfg.alive_interval_ms.get_ref()),
            external_limit: *cfg.hash_limit.get_ref() as usize,
            ..::sync::Config::default()
        };
        let filter = Filter::from_config(&cfg.filter);
        let workers = consumers.len();
        let sources = consumers
            .into_iter()
            .map(|queue| {
                Box::new(Events {
                    queue,
                    filter: filter.clone(),
                }) as Box<dyn Source>
            })
            .collect();
        // 1.4.7 starts at the time in seconds, so a restart is not taken for a replay
        let initial = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs() as u32);
        let refresh = *cfg.refresh_time.get_ref();
        let timers = Timers {
            refresh: (refresh > 0).then(|| Duration::from_secs(refresh)),
            startup_resync: cfg.startup_resync,
        };
        let (thread, requests) = runner::spawn_with(engine, sock, peer, sources, initial, timers)?;
        tracing::info!(
            "sync: {:?} with {peer} from {}:{}",
            cfg.mode,
            cfg.address.get_ref(),
            cfg.port.get_ref()
        );
        Ok(SyncHandle {
            requests: Mutex::new(requests),
            thread: Mutex::new(Some(thread)),
            key,
            workers,
        })
    }

    fn ask<T>(&self, make: impl FnOnce(mpsc::Sender<T>) -> Request) -> Result<T, String> {
        let (tx, rx) = mpsc::channel();
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(make(tx))
            .map_err(|_| "the sync thread is not running".to_string())?;
        rx.recv_timeout(SYNC_TIMEOUT)
            .map_err(|_| "the sync thread did not answer".to_string())
    }

    fn tell(&self, r: Request) -> Result<(), String> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(r)
            .map_err(|_| "the sync thread is not running".to_string())
    }

    /// The external cache as `conntrackd -e` lists it.
    pub fn list_external(&self) -> Result<String, String> {
        self.ask(Request::ListExternal)
    }

    /// The internal cache as `conntrackd -i` lists it.
    pub fn list_internal(&self) -> Result<String, String> {
        self.ask(Request::ListInternal)
    }

    pub fn counters(&self) -> Result<Counters, String> {
        self.ask(Request::Counters)
    }

    /// The text of `fwd sync -s` (`conntrackd -s`).
    pub fn stats_text(&self) -> Result<String, String> {
        self.ask(Request::Stats)
    }

    /// `conntrackd -n`: ask the peer for its table.
    pub fn request_resync(&self) -> Result<(), String> {
        self.tell(Request::RequestResync)
    }

    /// `conntrackd -B`: send the whole internal cache.
    pub fn send_bulk(&self) -> Result<(), String> {
        self.tell(Request::SendBulk)
    }

    /// The external cache's entries, each as this box's table takes it and with the worker
    /// that owns its flow (`None` entries: a TCP state the table does not know).
    pub fn imports(&self) -> Result<(Vec<Vec<Import>>, usize), String> {
        let entries = self.ask(Request::ExternalEntries)?;
        let mut per = vec![Vec::new(); self.workers.max(1)];
        let mut bad = 0;
        for e in &entries {
            match import_of(e) {
                Some(im) => {
                    let h = conntrack::flow_hash(&self.key, im.family, im.proto, &im.orig);
                    per[conntrack::shard_of(h, self.workers.max(1))].push(im);
                }
                None => bad += 1,
            }
        }
        Ok((per, bad))
    }

    /// Stops the sync thread and waits for it: it sends what the workers queued last, then
    /// ends without announcing any deletion (a stopped box's connections live on in its peers'
    /// external caches, for a failover). Idempotent.
    pub fn stop(&self) {
        let _ = self.tell(Request::Stop);
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            match t.join() {
                Ok(()) => tracing::info!("sync: stopped"),
                Err(_) => tracing::error!("sync: the sync thread panicked"),
            }
        }
    }

    /// Prometheus lines of the sync thread's counters.
    pub fn render_metrics(&self, out: &mut String, events_dropped: u64) {
        use std::fmt::Write as _;
        let c = match self.counters() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("metrics: sync: {e}");
                return;
            }
        };
        let s = &c.engine;
        let _ = writeln!(
            out,
            "# HELP fwd_sync_events_dropped_total Connection events lost because a worker's sync queue was full.\n\
             # TYPE fwd_sync_events_dropped_total counter\nfwd_sync_events_dropped_total {events_dropped}"
        );
        let _ = writeln!(
            out,
            "# HELP fwd_sync_malformed_total Sync messages refused and dropped, by reason.\n\
             # TYPE fwd_sync_malformed_total counter"
        );
        for (i, e) in ::sync::Error::ALL.iter().enumerate() {
            let _ = writeln!(
                out,
                "fwd_sync_malformed_total{{reason=\"{}\"}} {}",
                e.name(),
                s.malformed[i]
            );
        }
        for (name, help, v) in [
            (
                "messages_received",
                "Sync messages received.",
                s.msgs_received,
            ),
            ("messages_sent", "Sync messages sent.", s.msgs_sent),
            (
                "lost",
                "Messages the peer's sequence numbers say were lost.",
                s.lost,
            ),
            (
                "old",
                "Messages older than the receive counter, dropped.",
                s.before,
            ),
            (
                "resent",
                "Entries sent again (NACK, resync, refresh).",
                s.resent,
            ),
            (
                "resend_overflow",
                "Entries the full resend queue forgot.",
                s.resend_overflow,
            ),
            (
                "external_full",
                "Peer entries dropped: external cache full.",
                s.external_full,
            ),
            (
                "send_errors",
                "Datagrams the socket refused to send.",
                c.send_errors,
            ),
            (
                "recv_errors",
                "Receive errors on the sync socket.",
                c.recv_errors,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP fwd_sync_{name}_total {help}\n# TYPE fwd_sync_{name}_total counter\nfwd_sync_{name}_total {v}"
            );
        }
        for (name, help, v) in [
            (
                "internal_entries",
                "Entries this box announces.",
                c.internal,
            ),
            ("external_entries", "Entries peers announced.", c.external),
            (
                "resend_queue",
                "Messages waiting for an acknowledgement.",
                c.queued.1,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP fwd_sync_{name} {help}\n# TYPE fwd_sync_{name} gauge\nfwd_sync_{name} {v}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conntrack::{CtPacket, Shard, TcpSegment};

    fn seg(sport: u16, dport: u16, flags: u8) -> TcpSegment {
        TcpSegment {
            sport,
            dport,
            flags,
            seq: 1000,
            ack: 0,
            window: 64000,
            wscale: None,
            sack_perm: false,
            sack: None,
            payload_len: 0,
        }
    }

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// An SNAT'd connection's event carries the NAT targets as 1.4.7 does, and the entry a
    /// peer gets back from it imports into another table with the same reply tuple.
    #[test]
    fn events_become_entries_and_entries_imports_with_nat() {
        let mut sh = Shard::new(64, &conntrack::Config::default(), 1 << 40);
        let (p, mut c) = rtrb::RingBuffer::new(8);
        sh.set_events(p);
        let pkt = CtPacket::tcp(v4("198.18.0.1"), v4("198.18.1.2"), seg(40000, 80, 0x02));
        let t = sh.track(&pkt, 1 << 40);
        let id = t.entry.unwrap();
        let (_, mut reply) = sh.tuples(id);
        reply.dst[..4].copy_from_slice(&[198, 18, 1, 254]);
        reply.dport = 1234;
        assert!(sh.set_nat(&t, NatKind::Src, reply));
        assert!(sh.commit(t, true));
        let ev = c.pop().unwrap();
        assert_eq!(ev.kind, CtEventKind::New);
        let e = entry_of(&ev);
        assert_eq!(e.snat, Some(v4("198.18.1.254")));
        assert_eq!(e.spat, Some(1234));
        assert_eq!((e.dnat, e.dpat), (None, None));
        assert_eq!(e.tcp_state, Some(1));
        assert_eq!(
            ::sync::list::line(&e).split_whitespace().next(),
            Some("tcp")
        );
        // through the wire and back
        let mut buf = [0u8; 512];
        let mut w = ::sync::wire::Writer::new(&mut buf);
        e.emit(&mut w, ::sync::wire::kind::CT_NEW, 0, 1).unwrap();
        let n = w.len();
        let m = ::sync::wire::Message::new_checked(&buf[..n]).unwrap();
        let back = Entry::parse(&m).unwrap();
        assert_eq!(back, e);
        let im = import_of(&back).unwrap();
        assert_eq!(
            (im.orig, im.reply, im.nat),
            (sh.tuples(id).0, reply, NatKind::Src)
        );
        let mut other = Shard::new(64, &conntrack::Config::default(), 1 << 40);
        other.import(&im, 1 << 40).unwrap();
        let mut r = CtPacket::tcp(v4("198.18.1.2"), v4("198.18.1.254"), seg(80, 1234, 0x12));
        r.l4 = conntrack::L4::Tcp(seg(80, 1234, 0x12));
        let t = other.track(&r, (1 << 40) + 1000);
        assert_eq!(t.state, conntrack::CtState::Established);
        assert!(other.commit(t, true));
    }

    #[test]
    fn icmp_tuples_keep_type_code_and_id() {
        let t = SyncTuple {
            src: v4("198.18.0.1"),
            dst: v4("198.18.1.2"),
            proto: 1,
            l4: L4::Icmp {
                kind: 8,
                code: 0,
                id: 0x1234,
            },
        };
        let tt = table_tuple(&t);
        assert_eq!((tt.sport, tt.dport), (0x1234, 8 << 8));
        assert_eq!(sync_tuple(&tt, Family::V4, 1), t);
    }

    #[test]
    fn the_filter_takes_protocols_states_and_addresses() {
        let mut f = crate::config::SyncFilter::default();
        *f.protocol_accept.get_mut() = vec!["tcp".into(), "udp".into()];
        *f.state_accept.get_mut() = vec!["ESTABLISHED".into(), "CLOSED".into()];
        f.address_ignore = vec![v4("198.18.0.9")];
        let f = Filter::from_config(&f);
        let mk = |proto, state, src: &str| {
            let mut e = Entry::new(SyncTuple {
                src: v4(src),
                dst: v4("198.18.1.2"),
                proto,
                l4: L4::Ports { sport: 1, dport: 2 },
            });
            e.tcp_state = state;
            e
        };
        assert!(f.accepts(&mk(6, Some(3), "198.18.0.1")));
        assert!(f.accepts(&mk(6, Some(8), "198.18.0.1")));
        assert!(!f.accepts(&mk(6, Some(1), "198.18.0.1")));
        assert!(f.accepts(&mk(17, None, "198.18.0.1")));
        assert!(!f.accepts(&mk(132, None, "198.18.0.1")));
        assert!(!f.accepts(&mk(6, Some(3), "198.18.0.9")));
        assert!(Filter::default().accepts(&mk(132, None, "198.18.0.9")));
    }
}
