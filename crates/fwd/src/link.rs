//! Link supervision and readiness.
//!
//! The control thread asks the kernel (one netlink request per port, every 50 ms, never per
//! frame) whether each port's interface is there, up, with our program attached, and with an MTU
//! whose frames fit a buffer. A port going down is marked down: workers count frames they would
//! send to it as `port_down` drops. A port that vanishes and comes back (a new ifindex), or whose
//! program was removed, gets a new fail-closed program, and every worker rebinds its sockets;
//! the port is up again once they all have. [`LinkStatus`] is what workers, the control socket
//! and `/metrics` read; [`sd_notify`] tells systemd (`READY=1`, `STOPPING=1`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ports::xdp::{netlink, BindMode, PortSpec, XdpAttachment};

/// The ports' state as the supervisor last saw it, and the rebind handshake with the workers.
#[derive(Debug)]
pub struct LinkStatus {
    ready: AtomicBool,
    up: [AtomicBool; 2],
    mtu: [AtomicU32; 2],
    ifindex: [AtomicU32; 2],
    rebinds: [AtomicU64; 2],
    /// Rebind generation the supervisor asks for; each worker stores it in `rebound` when done.
    generation: AtomicU64,
    rebound: Vec<AtomicU64>,
    rebind_failed: Vec<AtomicBool>,
    polling: AtomicUsize,
    names: [String; 2],
}

impl LinkStatus {
    /// Both ports up, not ready, for `workers` workers.
    pub fn new(names: [String; 2], workers: usize) -> LinkStatus {
        LinkStatus {
            ready: AtomicBool::new(false),
            up: [AtomicBool::new(true), AtomicBool::new(true)],
            mtu: Default::default(),
            ifindex: Default::default(),
            rebinds: Default::default(),
            generation: AtomicU64::new(0),
            rebound: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            rebind_failed: (0..workers).map(|_| AtomicBool::new(false)).collect(),
            polling: AtomicUsize::new(0),
            names,
        }
    }

    /// True once every socket is bound, every fill ring was filled and every worker polls.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Marks fwd ready (or not).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Whether port `p` (0 = a, 1 = b) can transmit.
    pub fn is_up(&self, p: usize) -> bool {
        self.up[p].load(Ordering::Relaxed)
    }

    /// Sets port `p`'s state.
    pub fn set_up(&self, p: usize, up: bool) {
        self.up[p].store(up, Ordering::Relaxed);
    }

    /// The rebind generation workers should be at.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A worker reports that it rebound to `generation` (`ok`: its sockets are open).
    pub fn rebound(&self, worker: usize, generation: u64, ok: bool) {
        self.rebind_failed[worker].store(!ok, Ordering::Relaxed);
        self.rebound[worker].store(generation, Ordering::Release);
    }

    /// A worker reports its first poll round.
    pub fn worker_polling(&self) {
        self.polling.fetch_add(1, Ordering::AcqRel);
    }

    /// How many workers have started polling.
    pub fn workers_polling(&self) -> usize {
        self.polling.load(Ordering::Acquire)
    }

    /// Port `p`'s interface name.
    pub fn interface(&self, p: usize) -> &str {
        &self.names[p]
    }

    /// Port `p`'s ifindex as last seen.
    pub fn ifindex(&self, p: usize) -> u32 {
        self.ifindex[p].load(Ordering::Relaxed)
    }

    /// Port `p`'s MTU as last seen (0: the interface is gone).
    pub fn mtu(&self, p: usize) -> u32 {
        self.mtu[p].load(Ordering::Relaxed)
    }

    /// Times port `p` was rebound after its interface came back.
    pub fn rebinds(&self, p: usize) -> u64 {
        self.rebinds[p].load(Ordering::Relaxed)
    }

    /// Prometheus text: readiness, each port's state, MTU and rebind count.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP fwd_ready 1 once every queue's socket is bound, its fill ring filled and every worker polling.");
        let _ = writeln!(out, "# TYPE fwd_ready gauge");
        let _ = writeln!(out, "fwd_ready {}", self.is_ready() as u8);
        type Field = fn(&LinkStatus, usize) -> u64;
        let per_port: [(&str, &str, &str, Field); 3] = [
            (
                "fwd_port_up",
                "gauge",
                "1 while the port's interface exists, is up, and its sockets are bound.",
                |l, p| l.is_up(p) as u64,
            ),
            (
                "fwd_port_mtu",
                "gauge",
                "The port interface's MTU as last seen (0: the interface is gone).",
                |l, p| l.mtu[p].load(Ordering::Relaxed) as u64,
            ),
            (
                "fwd_port_rebinds_total",
                "counter",
                "Times the port's XDP program was attached anew and the sockets rebound (the interface came back).",
                |l, p| l.rebinds[p].load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, f) in per_port {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (p, port) in ["a", "b"].iter().enumerate() {
                let _ = writeln!(out, "{name}{{port=\"{port}\"}} {}", f(self, p));
            }
        }
        out
    }

    /// Lines for `fwd stats`: readiness and each port's state.
    pub fn render_summary(&self) -> String {
        let mut out = format!("ready: {}\n", if self.is_ready() { "yes" } else { "no" });
        for (p, port) in ["a", "b"].iter().enumerate() {
            let _ = writeln!(
                out,
                "link {port} {}: {}, ifindex {}, mtu {}, rebinds {}",
                self.names[p],
                if self.is_up(p) { "up" } else { "down" },
                self.ifindex[p].load(Ordering::Relaxed),
                self.mtu[p].load(Ordering::Relaxed),
                self.rebinds[p].load(Ordering::Relaxed),
            );
        }
        out
    }
}

/// The programs both ports have now; workers take them when they rebind.
pub type SharedAttachments = Arc<Mutex<[Arc<XdpAttachment>; 2]>>;

/// What the supervisor remembers of one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Present and up, our program attached.
    Up,
    /// Present, administratively down or without carrier.
    Down,
    /// No interface of that name.
    Gone,
    /// A new program is attached; waiting for the workers to rebind to `generation`.
    Rebinding { generation: u64, since: Instant },
    /// Attaching a program failed; retry at `at`.
    RetryAt(Instant),
    /// A worker could not reopen its sockets; ask all to rebind again at `at`.
    RebindAt(Instant),
}

/// Watches both ports from the control thread; [`Supervisor::check`] between its other work.
pub struct Supervisor {
    specs: [PortSpec; 2],
    queues: u32,
    bind: BindMode,
    frame_size: u32,
    max_mtu: u32,
    status: Arc<LinkStatus>,
    attachments: SharedAttachments,
    seen: [Seen; 2],
    mtu_warned: [u32; 2],
}

impl Supervisor {
    /// Supervises ports whose programs are `attachments`, as opened from `specs`.
    pub fn new(
        specs: [PortSpec; 2],
        queues: u32,
        bind: BindMode,
        frame_size: u32,
        status: Arc<LinkStatus>,
        attachments: SharedAttachments,
    ) -> Supervisor {
        {
            let atts = attachments.lock().unwrap_or_else(|e| e.into_inner());
            for (p, a) in atts.iter().enumerate() {
                status.ifindex[p].store(a.ifindex(), Ordering::Relaxed);
            }
        }
        Supervisor {
            specs,
            queues,
            bind,
            frame_size,
            max_mtu: ports::xdp::max_mtu(frame_size),
            status,
            attachments,
            seen: [Seen::Up, Seen::Up],
            mtu_warned: [0, 0],
        }
    }

    /// One look at both ports; logs and acts on what changed.
    pub fn check(&mut self) {
        for p in 0..2 {
            self.check_port(p);
        }
    }

    fn check_port(&mut self, p: usize) {
        let (port, iface) = (["a", "b"][p], self.specs[p].interface.clone());
        let link = match netlink::link_by_name(&iface) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(port, interface = %iface, "link supervision: netlink query failed: {e}");
                return;
            }
        };
        let Some(link) = link else {
            self.status.mtu[p].store(0, Ordering::Relaxed);
            if !matches!(self.seen[p], Seen::Gone) {
                tracing::error!(
                    port,
                    interface = %iface,
                    "port vanished: frames to it are dropped (port_down) until it returns"
                );
                self.status.set_up(p, false);
                self.seen[p] = Seen::Gone;
            }
            return;
        };
        self.status.mtu[p].store(link.mtu, Ordering::Relaxed);
        if link.mtu > self.max_mtu && self.mtu_warned[p] != link.mtu {
            tracing::error!(
                port,
                interface = %iface,
                "MTU {} exceeds the {} fwd supports: frames longer than {} bytes are dropped \
                 (fwd_drops_total{{reason=\"oversize\"}}); set it back",
                link.mtu,
                self.max_mtu,
                ports::xdp::max_frame(self.frame_size)
            );
        }
        self.mtu_warned[p] = if link.mtu > self.max_mtu { link.mtu } else { 0 };

        if let Seen::Rebinding { generation, since } = self.seen[p] {
            let done = self
                .status
                .rebound
                .iter()
                .all(|g| g.load(Ordering::Acquire) >= generation);
            if !done {
                return;
            }
            let failed = self
                .status
                .rebind_failed
                .iter()
                .any(|f| f.load(Ordering::Relaxed));
            if failed {
                tracing::error!(port, interface = %iface, "rebinding the sockets failed; retrying in 1 s");
                self.seen[p] = Seen::RebindAt(Instant::now() + Duration::from_secs(1));
                return;
            }
            self.status.rebinds[p].fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                port,
                interface = %iface,
                ifindex = link.ifindex,
                "port is back: XDP program attached, sockets rebound in {} ms, forwarding again",
                since.elapsed().as_millis()
            );
            self.seen[p] = Seen::Down; // up below, if it is
        }
        if let Seen::RetryAt(at) = self.seen[p] {
            if Instant::now() < at {
                return;
            }
        }
        if let Seen::RebindAt(at) = self.seen[p] {
            if Instant::now() >= at {
                let generation = self.status.generation.fetch_add(1, Ordering::AcqRel) + 1;
                self.seen[p] = Seen::Rebinding {
                    generation,
                    since: Instant::now(),
                };
            }
            return;
        }

        let ours = self.attachments.lock().unwrap_or_else(|e| e.into_inner())[p].prog_id();
        if link.xdp.map(|x| x.id) != Some(ours) {
            // A new interface of the same name (or our program was removed): attach anew, and
            // let every worker rebind its sockets to the new XSKMAP.
            self.status.set_up(p, false);
            self.status.ifindex[p].store(link.ifindex, Ordering::Relaxed);
            match ports::xdp::attach_port(
                &self.specs[p],
                self.queues,
                self.bind,
                ports::xdp::max_frame(self.frame_size),
            ) {
                Ok((att, note)) => {
                    tracing::info!(port, interface = %iface, ifindex = link.ifindex, "port (re)appeared without fwd's program: {note}; rebinding sockets");
                    self.attachments.lock().unwrap_or_else(|e| e.into_inner())[p] = Arc::new(att);
                    let generation = self.status.generation.fetch_add(1, Ordering::AcqRel) + 1;
                    self.seen[p] = Seen::Rebinding {
                        generation,
                        since: Instant::now(),
                    };
                }
                Err(e) => {
                    if !matches!(self.seen[p], Seen::RetryAt(_)) {
                        tracing::error!(port, interface = %iface, "attaching the XDP program failed: {e}; retrying every second");
                    }
                    self.seen[p] = Seen::RetryAt(Instant::now() + Duration::from_secs(1));
                }
            }
            return;
        }
        let now = if link.up { Seen::Up } else { Seen::Down };
        if now != self.seen[p] {
            match now {
                Seen::Up => tracing::info!(port, interface = %iface, "port is up"),
                _ => tracing::warn!(
                    port,
                    interface = %iface,
                    "port is down: frames to it are dropped (port_down)"
                ),
            }
            self.status.set_up(p, now == Seen::Up);
            self.seen[p] = now;
        }
    }
}

/// Sends `state` (e.g. `READY=1`) to systemd's `NOTIFY_SOCKET`, if it is set: one datagram on
/// a Unix socket, a path or (with a leading `@`) an abstract name. Returns whether it was sent.
pub fn sd_notify(state: &str) -> std::io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    notify_to(&path, state)?;
    Ok(true)
}

/// [`sd_notify`] to the socket `path` (as `NOTIFY_SOCKET` names it).
pub fn notify_to(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::unix::net::UnixDatagram;
    let sock = UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sock.send_to(state.as_bytes(), path)?;
    }
    Ok(())
}

/// systemd's watchdog (`WatchdogSec=` in the unit): `WATCHDOG=1` every `WATCHDOG_USEC / 2`
/// from the control thread, but only while every worker is alive, that is, its heartbeat (its
/// poll count) advanced since the last ping. A worker stuck in a loop or a lock stops the
/// pings, and systemd restarts fwd.
#[derive(Debug)]
pub struct Watchdog {
    socket: std::ffi::OsString,
    interval: Duration,
    next: Instant,
    last: Vec<u64>,
    stalled: bool,
}

impl Watchdog {
    /// From the environment systemd sets: `None` without `NOTIFY_SOCKET` or `WATCHDOG_USEC`,
    /// or when `WATCHDOG_PID` names another process. `Err` for a malformed `WATCHDOG_USEC`.
    pub fn from_env() -> Result<Option<Watchdog>, String> {
        let var = |k: &str| std::env::var_os(k);
        let usec = var("WATCHDOG_USEC");
        let pid = var("WATCHDOG_PID");
        Watchdog::new(
            var("NOTIFY_SOCKET"),
            usec.as_ref().and_then(|u| u.to_str()),
            pid.as_ref().and_then(|p| p.to_str()),
            std::process::id(),
            Instant::now(),
        )
    }

    /// `socket`, `usec` and `pid` as in the environment, `me` this process's id; the first
    /// ping is due at `now`.
    pub fn new(
        socket: Option<std::ffi::OsString>,
        usec: Option<&str>,
        pid: Option<&str>,
        me: u32,
        now: Instant,
    ) -> Result<Option<Watchdog>, String> {
        let (Some(socket), Some(usec)) = (socket, usec) else {
            return Ok(None);
        };
        if let Some(pid) = pid {
            let pid: u32 = pid
                .trim()
                .parse()
                .map_err(|_| format!("WATCHDOG_PID {pid:?} is not a process id"))?;
            if pid != me {
                return Ok(None);
            }
        }
        let usec: u64 = usec
            .trim()
            .parse()
            .map_err(|_| format!("WATCHDOG_USEC {usec:?} is not a number of microseconds"))?;
        if usec == 0 {
            return Ok(None);
        }
        Ok(Some(Watchdog {
            socket,
            interval: Duration::from_micros(usec / 2),
            next: now,
            last: Vec::new(),
            stalled: false,
        }))
    }

    /// How often a ping is sent (`WATCHDOG_USEC / 2`).
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Call it often (the control loop does, every 50 ms) with every worker's heartbeat;
    /// when a ping is due and every heartbeat advanced, sends `WATCHDOG=1`. Returns whether it
    /// did. The first call compares with 0: a worker that has polled once has advanced.
    pub fn tick(&mut self, now: Instant, beats: &[u64]) -> std::io::Result<bool> {
        if now < self.next {
            return Ok(false);
        }
        self.next = now + self.interval;
        let alive = !beats.is_empty()
            && beats
                .iter()
                .enumerate()
                .all(|(i, &b)| b > self.last.get(i).copied().unwrap_or(0));
        self.last.clear();
        self.last.extend_from_slice(beats);
        if !alive {
            if !self.stalled {
                tracing::error!(
                    "a worker made no progress for {} ms: not telling systemd WATCHDOG=1",
                    self.interval.as_millis()
                );
            }
            self.stalled = true;
            return Ok(false);
        }
        if self.stalled {
            tracing::info!("every worker makes progress again: WATCHDOG=1 resumed");
            self.stalled = false;
        }
        notify_to(&self.socket, "WATCHDOG=1")?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_renders_readiness_and_ports() {
        let s = LinkStatus::new(["fw-c".into(), "fw-s".into()], 2);
        assert!(!s.is_ready());
        assert!(s.render_prometheus().contains("fwd_ready 0\n"));
        s.set_ready(true);
        s.set_up(1, false);
        let m = s.render_prometheus();
        assert!(m.contains("fwd_ready 1\n"), "{m}");
        assert!(m.contains("fwd_port_up{port=\"a\"} 1\n"), "{m}");
        assert!(m.contains("fwd_port_up{port=\"b\"} 0\n"), "{m}");
        let t = s.render_summary();
        assert!(t.starts_with("ready: yes\n"), "{t}");
        assert!(t.contains("link b fw-s: down"), "{t}");
        s.rebound(1, 3, true);
        assert_eq!(s.rebound[1].load(Ordering::Relaxed), 3);
    }

    #[test]
    fn sd_notify_sends_one_datagram_to_the_socket() {
        use std::os::unix::net::UnixDatagram;
        let dir = std::env::temp_dir().join(format!("fwd-notify-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let rx = UnixDatagram::bind(&path).unwrap();
        // The only test in this binary that touches NOTIFY_SOCKET.
        std::env::set_var("NOTIFY_SOCKET", &path);
        assert!(sd_notify("READY=1").unwrap());
        std::env::remove_var("NOTIFY_SOCKET");
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        assert!(!sd_notify("READY=1").unwrap(), "sent without NOTIFY_SOCKET");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn watchdog_pings_only_while_every_worker_advances() {
        use std::os::unix::net::UnixDatagram;
        let dir = std::env::temp_dir().join(format!("fwd-watchdog-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_nonblocking(true).unwrap();
        let sock = Some(path.clone().into_os_string());
        let t0 = Instant::now();
        // not ours, not set, malformed
        assert!(
            Watchdog::new(sock.clone(), Some("2000000"), Some("1"), 2, t0)
                .unwrap()
                .is_none()
        );
        assert!(Watchdog::new(None, Some("2000000"), None, 2, t0)
            .unwrap()
            .is_none());
        assert!(Watchdog::new(sock.clone(), None, None, 2, t0)
            .unwrap()
            .is_none());
        assert!(Watchdog::new(sock.clone(), Some("10s"), None, 2, t0).is_err());
        let mut w = Watchdog::new(sock.clone(), Some("2000000"), Some("2"), 2, t0)
            .unwrap()
            .expect("WATCHDOG_PID is ours");
        assert_eq!(w.interval(), Duration::from_secs(1));
        let recv = || {
            let mut buf = [0u8; 64];
            rx.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
        };
        // due at once: both workers have polled
        assert!(w.tick(t0, &[5, 7]).unwrap());
        assert_eq!(recv().as_deref(), Some(&b"WATCHDOG=1"[..]));
        // not due yet, however much they advance
        assert!(!w.tick(t0 + Duration::from_millis(500), &[50, 70]).unwrap());
        assert_eq!(recv(), None);
        // due, but worker 1 is stuck at 7
        assert!(!w.tick(t0 + Duration::from_secs(1), &[9, 7]).unwrap());
        assert_eq!(recv(), None);
        // both advance again: pings resume
        assert!(w.tick(t0 + Duration::from_secs(2), &[10, 8]).unwrap());
        assert_eq!(recv().as_deref(), Some(&b"WATCHDOG=1"[..]));
        // a worker that never polled
        let mut w = Watchdog::new(sock, Some("2000000"), None, 2, t0)
            .unwrap()
            .unwrap();
        assert!(!w.tick(t0, &[3, 0]).unwrap());
        assert_eq!(recv(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
