//! The Unix control socket: one request line in, a text answer out, connection closed.
//! Connections are served concurrently (a thread each, capped), with a time limit for the
//! request line and for the client to read the answer, and only for callers whose uid
//! (SO_PEERCRED) is allowed.
//! Commands are dispatched by [`dispatch`]; new ones (`conntrack -L`, `reload`, `rules list`)
//! add an arm there.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::stats::{render_prometheus, render_summary, WorkerShared};

/// What the control thread can answer from.
pub struct ControlContext {
    /// Every worker's shared block.
    pub workers: Vec<Arc<WorkerShared>>,
    /// The firewall (rules, conntrack); `None` in tests of the plain forwarder.
    pub firewall: Option<Arc<crate::firewall::Firewall>>,
    /// Readiness and the ports' link state; `None` (always ready) in tests without ports.
    pub links: Option<Arc<crate::link::LinkStatus>>,
}

/// The whole Prometheus text: the one renderer behind both `/metrics` and `fwd stats
/// --prometheus`, so the two never differ. `conn` adds the control socket's and the HTTP
/// server's connection counters (both servers share one [`ConnCounters`]).
pub fn metrics_text(ctx: &ControlContext, conn: Option<&ConnCounters>) -> String {
    let mut out = render_prometheus(&ctx.workers);
    if let Some(fw) = &ctx.firewall {
        out.push_str(&fw.metrics());
    }
    if let Some(l) = &ctx.links {
        out.push_str(&l.render_prometheus());
    }
    if let Some(c) = conn {
        out.push_str(&c.render_prometheus());
    }
    out
}

/// Answers one request line. The answer of a failed command starts with `error: `.
pub fn dispatch(ctx: &ControlContext, line: &str) -> String {
    dispatch_with(ctx, None, line)
}

/// [`dispatch`] by a server whose connection counters `stats prometheus` includes.
pub fn dispatch_with(ctx: &ControlContext, conn: Option<&ConnCounters>, line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    let fw = ctx.firewall.as_deref();
    if ctx.links.as_ref().is_some_and(|l| !l.is_ready()) {
        return "error: fwd is starting (ports not bound yet); try again\n".into();
    }
    match (words.as_slice(), fw) {
        (["stats"], _) => {
            let mut out = render_summary(&ctx.workers);
            if let Some(l) = &ctx.links {
                out.push_str(&l.render_summary());
            }
            out
        }
        (["stats", "json"], _) => crate::output::stats_json(
            &ctx.workers,
            ctx.links.as_deref(),
            fw.map(|f| f.dataplane_json()),
        ),
        (["stats", "prometheus"], _) => metrics_text(ctx, conn),
        (["reload"], Some(fw)) => match fw.reload() {
            Ok(msg) => msg,
            Err(e) => format!("error: reload failed, the running rules stay:\n{e}"),
        },
        (["conntrack", args @ ..], Some(fw)) => fw.conntrack(args),
        (["rules", "list", args @ ..], Some(fw)) => fw.rules_list(args),
        (["sync", args @ ..], Some(fw)) => fw.sync_command(args),
        (["ping"], _) => "pong\n".into(),
        (["help"] | [], _) => {
            "commands: stats [json|prometheus], reload, conntrack -L|-C|-D|-F|-E [-p P] [-f F] [-s A] [-d A] [-r A] [-q A] [--sport N] [--dport N] [--state S] [-m M] [-e EVENTS] [-o text|json|xml], rules list [-v] [ipv4|ipv6] [TABLE] [-o json], sync -e|-i|-s|-n|-B|commit, ping, help\n".into()
        }
        ([cmd, ..], _) => format!("error: unknown command {cmd:?} (try help)\n"),
    }
}

/// Control connections served at once; one more is answered "busy" and counted.
pub const MAX_CONTROL_CONNECTIONS: usize = 32;
/// The time a client has to send its request line, and that each write of the answer may wait
/// for the client to read: a client that stalls holds a connection at most this long.
pub const CONTROL_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a connection waiting for its client looks at the stop flag: fwd stops promptly
/// even while a client holds a connection.
const STOP_POLL: Duration = Duration::from_millis(100);
/// The longest request line read; the rest is ignored.
const MAX_REQUEST_LINE: usize = 4096;

/// Connections the control socket and `/metrics` refused or cut short, by reason; rendered into
/// `/metrics`. Written by the serving threads only, never by the workers.
#[derive(Debug, Default)]
pub struct ConnCounters {
    /// Control connections refused because [`MAX_CONTROL_CONNECTIONS`] were being served.
    pub control_cap: AtomicU64,
    /// Control connections closed because the request line or the answer's reader was too slow.
    pub control_timeout: AtomicU64,
    /// Control connections refused because the caller's uid (SO_PEERCRED) is not allowed.
    pub control_peer: AtomicU64,
    /// HTTP connections closed at the connection cap (refused, or an idle one evicted for them).
    pub http_cap: AtomicU64,
    /// HTTP connections closed at the request-head timeout or the per-connection deadline.
    pub http_timeout: AtomicU64,
    /// HTTP connections open now.
    pub http_open: AtomicU64,
}

impl ConnCounters {
    /// The counters in the Prometheus text format.
    pub fn render_prometheus(&self) -> String {
        use std::fmt::Write as _;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let _ = writeln!(out, "# HELP fwd_control_connections_refused_total Control socket connections refused or closed early: cap (too many at once), timeout (request line or answer too slow), peer (caller's uid not allowed).");
        let _ = writeln!(out, "# TYPE fwd_control_connections_refused_total counter");
        for (reason, c) in [
            ("cap", &self.control_cap),
            ("timeout", &self.control_timeout),
            ("peer", &self.control_peer),
        ] {
            let _ = writeln!(
                out,
                "fwd_control_connections_refused_total{{reason=\"{reason}\"}} {}",
                get(c)
            );
        }
        let _ = writeln!(out, "# HELP fwd_http_connections_refused_total /metrics connections refused or closed early: cap (connection cap reached: refused, or an idle one evicted), timeout (request head or connection deadline passed).");
        let _ = writeln!(out, "# TYPE fwd_http_connections_refused_total counter");
        for (reason, c) in [("cap", &self.http_cap), ("timeout", &self.http_timeout)] {
            let _ = writeln!(
                out,
                "fwd_http_connections_refused_total{{reason=\"{reason}\"}} {}",
                get(c)
            );
        }
        let _ = writeln!(
            out,
            "# HELP fwd_http_connections_open /metrics connections open now."
        );
        let _ = writeln!(out, "# TYPE fwd_http_connections_open gauge");
        let _ = writeln!(out, "fwd_http_connections_open {}", get(&self.http_open));
        out
    }
}

/// Who may use the control socket: uid 0, fwd's own uid and, with `[control] group`, the
/// group's members. Checked with SO_PEERCRED on every connection, so a socket file that is
/// reachable anyway (a wider mode set by hand, the moment between bind and chmod) gives nothing.
#[derive(Debug, Clone)]
struct Access {
    own_uid: u32,
    /// The group's gid and its listed members.
    group: Option<(u32, Vec<String>)>,
}

impl Access {
    fn new(group: Option<&str>) -> std::io::Result<Access> {
        let group = match group {
            None => None,
            Some(name) => {
                let g = nix::unistd::Group::from_name(name)
                    .map_err(std::io::Error::from)?
                    .ok_or_else(|| {
                        std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            format!("no group {name:?} on this machine"),
                        )
                    })?;
                Some((g.gid.as_raw(), g.mem))
            }
        };
        Ok(Access {
            own_uid: nix::unistd::geteuid().as_raw(),
            group,
        })
    }

    fn allows(&self, uid: u32, gid: u32) -> bool {
        if uid == 0 || uid == self.own_uid {
            return true;
        }
        let Some((group, members)) = &self.group else {
            return false;
        };
        if gid == *group {
            return true;
        }
        // SO_PEERCRED carries the primary gid only: supplementary members are listed by name.
        match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
            Ok(Some(u)) => u.gid.as_raw() == *group || members.contains(&u.name),
            _ => false,
        }
    }
}

/// The listening control socket; the file is removed when this is dropped.
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
    access: Access,
    counters: Arc<ConnCounters>,
    max_connections: usize,
    timeout: Duration,
}

impl ControlSocket {
    /// Binds `path` with mode 0600, replacing a stale socket file (one nobody answers on).
    pub fn bind(path: &Path) -> std::io::Result<ControlSocket> {
        Self::bind_with(path, None)
    }

    /// Binds `path`, replacing a stale socket file (one nobody answers on). The mode is set
    /// after the bind whatever the umask: 0600, or 0660 owned by `group` when one is given
    /// (its members may then use the socket too).
    pub fn bind_with(path: &Path, group: Option<&str>) -> std::io::Result<ControlSocket> {
        // Resolved first: an unknown group leaves no socket behind.
        let access = Access::new(group)?;
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!("{} is in use by a running fwd", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        let server = ControlSocket {
            listener,
            path: path.to_owned(),
            access,
            counters: Arc::default(),
            max_connections: MAX_CONTROL_CONNECTIONS,
            timeout: CONTROL_REQUEST_TIMEOUT,
        };
        // On an error from here on, dropping `server` removes the file again.
        use std::os::unix::fs::PermissionsExt;
        let mode = match &server.access.group {
            Some((gid, _)) => {
                std::os::unix::fs::chown(path, None, Some(*gid))?;
                0o660
            }
            None => 0o600,
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        server.listener.set_nonblocking(true)?;
        Ok(server)
    }

    /// The same server with another connection cap and request time limit (tests).
    pub fn with_limits(mut self, max_connections: usize, timeout: Duration) -> ControlSocket {
        self.max_connections = max_connections;
        self.timeout = timeout;
        self
    }

    /// The refusal and timeout counters, shared with the `/metrics` server that renders them.
    pub fn counters(&self) -> Arc<ConnCounters> {
        self.counters.clone()
    }

    /// Serves requests until `stop` is set: each connection on a thread of its own, at most
    /// [`MAX_CONTROL_CONNECTIONS`] at once, so a client that sends nothing (or reads nothing)
    /// holds only its own connection, and that for at most [`CONTROL_REQUEST_TIMEOUT`].
    pub fn serve(&self, ctx: &ControlContext, stop: &AtomicBool) {
        let active = AtomicUsize::new(0);
        let mut last_warning: Option<Instant> = None;
        std::thread::scope(|scope| {
            while !stop.load(Ordering::Relaxed) {
                match self.listener.accept() {
                    Ok((stream, _)) => {
                        self.admit(scope, ctx, stream, &active, stop, &mut last_warning)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => {
                        tracing::warn!("control socket accept failed: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        });
    }

    /// Checks the caller and the cap, then serves the connection on a scoped thread.
    fn admit<'scope, 'env>(
        &'env self,
        scope: &'scope std::thread::Scope<'scope, 'env>,
        ctx: &'env ControlContext,
        stream: UnixStream,
        active: &'env AtomicUsize,
        stop: &'env AtomicBool,
        last_warning: &mut Option<Instant>,
    ) {
        let cred =
            nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials);
        let allowed = cred
            .as_ref()
            .is_ok_and(|c| self.access.allows(c.uid(), c.gid()));
        if !allowed {
            self.counters.control_peer.fetch_add(1, Ordering::Relaxed);
            // At most one line a second: a refused caller must not be able to flood the log.
            if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                *last_warning = Some(Instant::now());
                match &cred {
                    Ok(c) => tracing::warn!(
                        uid = c.uid(),
                        pid = c.pid(),
                        "control socket: refused a caller whose uid is not allowed"
                    ),
                    Err(e) => tracing::warn!("control socket: refused a caller: SO_PEERCRED: {e}"),
                }
            }
            refuse(stream, "error: permission denied\n");
            return;
        }
        if active.fetch_add(1, Ordering::AcqRel) >= self.max_connections {
            active.fetch_sub(1, Ordering::AcqRel);
            self.counters.control_cap.fetch_add(1, Ordering::Relaxed);
            refuse(stream, "error: too many control connections; try again\n");
            return;
        }
        let (counters, timeout) = (&*self.counters, self.timeout);
        let spawned = std::thread::Builder::new()
            .name("fwd-control-conn".into())
            .spawn_scoped(scope, move || {
                handle(ctx, stream, counters, timeout, stop);
                active.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(e) = spawned {
            active.fetch_sub(1, Ordering::AcqRel);
            self.counters.control_cap.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("control socket: no thread for a connection: {e}");
        }
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Answers `message` without waiting for the client: what it already sent is read first, so
/// that closing does not turn the answer into a reset.
fn refuse(mut stream: UnixStream, message: &str) {
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    drain(&mut stream);
    let _ = stream.write_all(message.as_bytes());
    let _ = stream.shutdown(std::net::Shutdown::Write);
    drain(&mut stream);
}

/// Reads what a non-blocking `stream` has, bounded: a client that keeps sending must not hold
/// the accept loop.
fn drain(stream: &mut UnixStream) {
    let mut sink = [0u8; 1024];
    for _ in 0..8 {
        if !matches!(stream.read(&mut sink), Ok(n) if n > 0) {
            break;
        }
    }
}

/// Why a connection ended without its answer written.
#[derive(Debug)]
enum ConnError {
    /// The client did not send its line, or read the answer, in time.
    TimedOut,
    Io,
}

fn classify(e: std::io::Error) -> ConnError {
    classify_ref(&e)
}

fn classify_ref(e: &std::io::Error) -> ConnError {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => ConnError::TimedOut,
        _ => ConnError::Io,
    }
}

/// Reads one request line (up to [`MAX_REQUEST_LINE`] bytes), all of it within `timeout`.
fn read_request_line(
    stream: &mut UnixStream,
    timeout: Duration,
    stop: &AtomicBool,
) -> Result<String, ConnError> {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; MAX_REQUEST_LINE];
    let mut n = 0;
    while n < buf.len() && !buf[..n].contains(&b'\n') {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ConnError::TimedOut);
        }
        if stop.load(Ordering::Relaxed) {
            return Err(ConnError::Io);
        }
        stream
            .set_read_timeout(Some(left.min(STOP_POLL)))
            .map_err(classify)?;
        match stream.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if matches!(classify_ref(&e), ConnError::TimedOut) => {}
            Err(e) => return Err(classify(e)),
        }
    }
    let line = buf[..n].split(|&b| b == b'\n').next().unwrap_or_default();
    Ok(String::from_utf8_lossy(line).into_owned())
}

/// Writes `answer`; each write may wait `timeout` for the client to read, so a large answer to
/// a client that reads takes as long as it needs and one that stops reading is cut off.
fn write_answer(
    stream: &mut UnixStream,
    answer: &[u8],
    timeout: Duration,
    stop: &AtomicBool,
) -> Result<(), ConnError> {
    stream
        .set_write_timeout(Some(timeout.min(STOP_POLL)))
        .map_err(classify)?;
    let (mut written, mut progress) = (0, Instant::now());
    while written < answer.len() {
        match stream.write(&answer[written..]) {
            Ok(0) => return Err(ConnError::Io),
            Ok(n) => (written, progress) = (written + n, Instant::now()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if matches!(classify_ref(&e), ConnError::TimedOut) => {
                if progress.elapsed() >= timeout {
                    return Err(ConnError::TimedOut);
                }
                if stop.load(Ordering::Relaxed) {
                    return Err(ConnError::Io);
                }
            }
            Err(e) => return Err(classify(e)),
        }
    }
    Ok(())
}

/// Serves one connection: its request line, then the answer.
fn handle(
    ctx: &ControlContext,
    mut stream: UnixStream,
    counters: &ConnCounters,
    timeout: Duration,
    stop: &AtomicBool,
) {
    let result = stream
        .set_nonblocking(false)
        .map_err(classify)
        .and_then(|()| read_request_line(&mut stream, timeout, stop))
        .and_then(|line| {
            // `conntrack -E` keeps the connection, on a thread of its own (its own limits).
            if is_event_request(line.trim()) {
                let stream = stream.try_clone().map_err(classify)?;
                return serve_events(ctx, stream, line.trim()).map_err(classify);
            }
            let answer = dispatch_with(ctx, Some(counters), line.trim());
            write_answer(&mut stream, answer.as_bytes(), timeout, stop)
        });
    if let Err(ConnError::TimedOut) = result {
        counters.control_timeout.fetch_add(1, Ordering::Relaxed);
    }
}

/// Whether a request line is `conntrack -E` (or `--event`): served by [`serve_events`].
pub fn is_event_request(line: &str) -> bool {
    let mut w = line.split_whitespace();
    w.next() == Some("conntrack") && w.any(|a| a == "-E" || a == "--event")
}

/// The most `conntrack -E` streams served at once; more are refused.
pub const MAX_EVENT_STREAMS: usize = 8;
static EVENT_STREAMS: AtomicUsize = AtomicUsize::new(0);

/// `conntrack -E`: streams event lines on `stream` from a thread of its own, so that the
/// caller goes on serving requests, until the client closes the connection, a write fails or
/// fwd stops. Errors (bad options, too many streams) are answered as one `error:` line.
pub fn serve_events(ctx: &ControlContext, stream: UnixStream, line: &str) -> std::io::Result<()> {
    let mut stream = stream;
    let refuse = |stream: &mut UnixStream, msg: String| stream.write_all(msg.as_bytes());
    if ctx.links.as_ref().is_some_and(|l| !l.is_ready()) {
        return refuse(
            &mut stream,
            "error: fwd is starting (ports not bound yet); try again\n".into(),
        );
    }
    let Some(fw) = ctx.firewall.clone() else {
        return refuse(
            &mut stream,
            "error: no connection tracking in this fwd\n".into(),
        );
    };
    let words: Vec<&str> = line.split_whitespace().skip(1).collect();
    let cmd = match crate::firewall::parse_conntrack(&words) {
        Ok(c) => c,
        Err(e) => return refuse(&mut stream, format!("error: {e}\n")),
    };
    if EVENT_STREAMS.fetch_add(1, Ordering::AcqRel) >= MAX_EVENT_STREAMS {
        EVENT_STREAMS.fetch_sub(1, Ordering::AcqRel);
        return refuse(
            &mut stream,
            format!("error: {MAX_EVENT_STREAMS} conntrack -E streams are running already\n"),
        );
    }
    let links = ctx.links.clone();
    let spawned = std::thread::Builder::new()
        .name("fwd-events".into())
        .spawn(move || {
            let r = (|| {
                stream.set_write_timeout(Some(Duration::from_secs(5)))?;
                // a receive timeout, not O_NONBLOCK: that would be shared with the writes
                stream.set_read_timeout(Some(Duration::from_millis(1)))?;
                let mut keep_going = || {
                    // the client sends nothing more: readable means closed (0) or misbehaving
                    let mut b = [0u8; 64];
                    let open = match (&stream).read(&mut b) {
                        Ok(_) => false,
                        Err(e) => matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ),
                    };
                    open && links.as_ref().is_none_or(|l| l.is_ready())
                };
                let mut out = &stream;
                fw.stream_events(&cmd, &mut out, &mut keep_going)
            })();
            if let Err(e) = r {
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                ) {
                    let _ = (&stream).write_all(format!("error: {e}\n").as_bytes());
                }
            }
            EVENT_STREAMS.fetch_sub(1, Ordering::AcqRel);
        });
    if let Err(e) = spawned {
        EVENT_STREAMS.fetch_sub(1, Ordering::AcqRel);
        return Err(e);
    }
    Ok(())
}

/// Client side of a streaming request (`conntrack -E`): sends `command`, then hands each
/// line of the answer (without its newline) to `on_line` until it returns false or fwd
/// closes the connection.
pub fn request_stream(
    path: &Path,
    command: &str,
    on_line: &mut dyn FnMut(&str) -> bool,
) -> std::io::Result<()> {
    let mut s = UnixStream::connect(path)?;
    s.write_all(command.as_bytes())?;
    s.write_all(b"\n")?;
    for line in BufReader::new(s).lines() {
        if !on_line(&line?) {
            break;
        }
    }
    Ok(())
}

/// Client side: sends `command` to the socket at `path` and returns the answer.
pub fn request(path: &Path, command: &str) -> std::io::Result<String> {
    let mut s = UnixStream::connect(path)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(command.as_bytes())?;
    s.write_all(b"\n")?;
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => {}
        // The server answered and closed while our request was still unread (a refusal).
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !out.is_empty() => {}
        Err(e) => return Err(e),
    }
    String::from_utf8(out).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::LocalCounters;

    fn ctx() -> ControlContext {
        let w = Arc::new(WorkerShared::new(0));
        let mut l = LocalCounters::default();
        l.ports[0].rx_packets = 3;
        w.counters.publish(&l);
        ControlContext {
            workers: vec![w],
            firewall: None,
            links: None,
        }
    }

    #[test]
    fn requests_before_ready_answer_starting() {
        let mut c = ctx();
        let links = Arc::new(crate::link::LinkStatus::new(["a0".into(), "b0".into()], 1));
        c.links = Some(links.clone());
        for cmd in ["stats", "ping", "stats prometheus"] {
            assert!(
                dispatch(&c, cmd).starts_with("error: fwd is starting"),
                "{cmd}"
            );
        }
        links.set_ready(true);
        assert_eq!(dispatch(&c, "ping"), "pong\n");
        let s = dispatch(&c, "stats");
        assert!(
            s.contains("port a: rx 3 pkts") && s.contains("ready: yes\n"),
            "{s}"
        );
        let m = dispatch(&c, "stats prometheus");
        assert!(
            m.contains("fwd_ready 1\n") && m.contains("fwd_port_up{port=\"b\"} 1\n"),
            "{m}"
        );
    }

    #[test]
    fn dispatch_answers_known_and_refuses_unknown() {
        let c = ctx();
        assert!(dispatch(&c, "stats").contains("port a: rx 3 pkts"));
        assert!(dispatch(&c, "stats prometheus").contains("fwd_rx_packets_total{port=\"a\"} 3"));
        assert_eq!(dispatch(&c, "ping"), "pong\n");
        assert!(dispatch(&c, "reboot now").starts_with("error: unknown command \"reboot\""));
    }

    /// A server on a socket of its own directory, served on a thread until dropped.
    struct Served {
        dir: PathBuf,
        path: PathBuf,
        counters: Arc<ConnCounters>,
        stop: Arc<AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Served {
        fn start(name: &str, tune: impl FnOnce(ControlSocket) -> ControlSocket) -> Served {
            let dir = std::env::temp_dir().join(format!("fwd-ctl-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("c.sock");
            let server = tune(ControlSocket::bind(&path).unwrap());
            let counters = server.counters();
            let stop = Arc::new(AtomicBool::new(false));
            let st = stop.clone();
            let thread = Some(std::thread::spawn(move || server.serve(&ctx(), &st)));
            Served {
                dir,
                path,
                counters,
                stop,
                thread,
            }
        }
        fn count(&self, c: fn(&ConnCounters) -> &AtomicU64) -> u64 {
            c(&self.counters).load(Ordering::Relaxed)
        }
    }

    impl Drop for Served {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn timed_request(path: &Path, cmd: &str) -> (String, Duration) {
        let t = Instant::now();
        let a = request(path, cmd).unwrap();
        (a, t.elapsed())
    }

    #[test]
    fn a_silent_client_does_not_block_others_and_is_cut_at_the_timeout() {
        let s = Served::start("silent", |c| c.with_limits(4, Duration::from_millis(300)));
        let mut silent = UnixStream::connect(&s.path).unwrap();
        let mut slow = UnixStream::connect(&s.path).unwrap();
        slow.write_all(b"sta").unwrap();
        for _ in 0..3 {
            let (a, took) = timed_request(&s.path, "ping");
            assert_eq!(a, "pong\n");
            assert!(took < Duration::from_millis(100), "{took:?}");
        }
        // Both are closed once their time is up, without an answer.
        for c in [&mut silent, &mut slow] {
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let t = Instant::now();
            let mut out = Vec::new();
            c.read_to_end(&mut out).unwrap();
            assert!(out.is_empty(), "{out:?}");
            assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while s.count(|c| &c.control_timeout) < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(s.count(|c| &c.control_timeout), 2);
        // `fwd stats --prometheus` shows them as /metrics does: one renderer for both.
        let m = request(&s.path, "stats prometheus").unwrap();
        assert!(
            m.contains("fwd_control_connections_refused_total{reason=\"timeout\"} 2\n")
                && m.contains("fwd_rx_packets_total{port=\"a\"} 3"),
            "{m}"
        );
    }

    #[test]
    fn a_held_connection_does_not_delay_the_stop() {
        let mut s = Served::start("stop", |c| c.with_limits(4, Duration::from_secs(30)));
        let _silent = UnixStream::connect(&s.path).unwrap();
        let (mut stalled, client) = UnixStream::pair().unwrap();
        client.set_nonblocking(true).unwrap();
        // Wait until the silent one is being served (a request behind it is answered).
        assert_eq!(request(&s.path, "ping").unwrap(), "pong\n");
        let writer = std::thread::spawn(move || {
            let stop = AtomicBool::new(false);
            let big = vec![b'x'; 16 << 20];
            let t = Instant::now();
            let stopper = std::thread::scope(|sc| {
                sc.spawn(|| {
                    std::thread::sleep(Duration::from_millis(200));
                    stop.store(true, Ordering::Relaxed);
                });
                write_answer(&mut stalled, &big, Duration::from_secs(30), &stop)
            });
            (stopper, t.elapsed())
        });
        let t = Instant::now();
        s.stop.store(true, Ordering::Relaxed);
        s.thread.take().unwrap().join().unwrap();
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        let (r, took) = writer.join().unwrap();
        assert!(matches!(r, Err(ConnError::Io)), "{r:?}");
        assert!(took < Duration::from_millis(700), "{took:?}");
        drop(client);
    }

    #[test]
    fn over_the_cap_a_connection_is_answered_busy_and_counted() {
        let s = Served::start("cap", |c| c.with_limits(2, Duration::from_secs(5)));
        let held: Vec<UnixStream> = (0..2)
            .map(|_| UnixStream::connect(&s.path).unwrap())
            .collect();
        // The two are being served (each on its thread, waiting for a line) once the cap shows.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let a = request(&s.path, "ping").unwrap();
            if a.starts_with("error: too many control connections") {
                break;
            }
            assert_eq!(a, "pong\n");
            assert!(Instant::now() < deadline, "the cap never applied");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(s.count(|c| &c.control_cap) >= 1);
        drop(held);
        let deadline = Instant::now() + Duration::from_secs(2);
        while request(&s.path, "ping").unwrap() != "pong\n" {
            assert!(Instant::now() < deadline, "slots not given back");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_reader_that_stops_reading_is_cut_at_the_timeout() {
        let (mut server, client) = UnixStream::pair().unwrap();
        let big = vec![b'x'; 16 << 20];
        let t = Instant::now();
        let r = write_answer(
            &mut server,
            &big,
            Duration::from_millis(200),
            &AtomicBool::new(false),
        );
        assert!(matches!(r, Err(ConnError::TimedOut)), "{r:?}");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        drop((server, client));
        // One that reads gets all of it, however long it takes.
        let (mut server, mut client2) = UnixStream::pair().unwrap();
        let reader2 = std::thread::spawn(move || {
            let mut out = Vec::new();
            client2.read_to_end(&mut out).unwrap();
            out.len()
        });
        write_answer(
            &mut server,
            &big,
            Duration::from_millis(200),
            &AtomicBool::new(false),
        )
        .unwrap();
        drop(server);
        assert_eq!(reader2.join().unwrap(), big.len());
    }

    #[test]
    fn the_socket_is_0600_whatever_the_umask() {
        // The umask is the process's: set and restored around the bind only.
        let dir = std::env::temp_dir().join(format!("fwd-ctl-mode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.sock");
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
        let server = ControlSocket::bind(&path);
        nix::sys::stat::umask(old);
        let server = server.unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
        drop(server);
        let group = ControlSocket::bind_with(&path, Some("nogroup")).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        use std::os::unix::fs::MetadataExt;
        let nogroup = nix::unistd::Group::from_name("nogroup").unwrap().unwrap();
        assert_eq!(meta.gid(), nogroup.gid.as_raw());
        drop(group);
        let e = ControlSocket::bind_with(&path, Some("fwd-no-such-group"))
            .err()
            .expect("an unknown group is refused");
        assert!(e.to_string().contains("no group"), "{e}");
        assert!(!path.exists(), "nothing bound for an unknown group");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn access_allows_root_own_uid_and_the_group_only() {
        let own = nix::unistd::geteuid().as_raw();
        let plain = Access::new(None).unwrap();
        assert!(plain.allows(0, 0));
        assert!(plain.allows(own, 12345));
        assert!(!plain.allows(65534, 65534));
        let nogroup = nix::unistd::Group::from_name("nogroup").unwrap().unwrap();
        let grouped = Access::new(Some("nogroup")).unwrap();
        assert!(grouped.allows(0, 0));
        assert!(
            grouped.allows(65533, nogroup.gid.as_raw()),
            "by the peer's gid"
        );
        // nobody's primary group is nogroup: allowed by the user's entry, whatever gid it has now.
        assert!(grouped.allows(65534, 1));
        assert!(!grouped.allows(65533, 65533), "not a member");
        let members = Access {
            own_uid: own,
            group: Some((4242, vec!["nobody".into()])),
        };
        assert!(members.allows(65534, 1), "a listed member");
        assert!(!members.allows(65533, 1));
    }

    #[test]
    fn counters_render_as_prometheus() {
        let c = ConnCounters::default();
        c.control_peer.fetch_add(2, Ordering::Relaxed);
        c.http_cap.fetch_add(5, Ordering::Relaxed);
        let text = c.render_prometheus();
        assert!(text.contains("fwd_control_connections_refused_total{reason=\"peer\"} 2\n"));
        assert!(text.contains("fwd_control_connections_refused_total{reason=\"cap\"} 0\n"));
        assert!(text.contains("fwd_http_connections_refused_total{reason=\"cap\"} 5\n"));
        assert!(text.contains("# TYPE fwd_http_connections_open gauge\n"));
    }

    #[test]
    fn socket_round_trip() {
        let dir = std::env::temp_dir().join(format!("fwd-ctl-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.sock");
        let server = ControlSocket::bind(&path).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let t = std::thread::spawn(move || server.serve(&ctx(), &stop2));
        let answer = request(&path, "stats").unwrap();
        assert!(answer.contains("port a: rx 3 pkts"), "{answer}");
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap();
        assert!(!path.exists(), "socket file removed on drop");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn stats_json_over_dispatch_and_event_requests_recognised() {
        let c = ctx();
        let v: serde_json::Value = serde_json::from_str(&dispatch(&c, "stats json")).unwrap();
        assert_eq!(v["ports"]["a"]["rx_packets"], 3);
        assert_eq!(v["ready"], true);
        assert!(is_event_request("conntrack -E -p tcp"));
        assert!(is_event_request("conntrack -p tcp --event"));
        assert!(!is_event_request("conntrack -L -p tcp"));
        assert!(!is_event_request("stats -E"));
    }

    /// `conntrack -E` on a socket: refused with an error line where there is no conntrack,
    /// while the server goes on answering.
    #[test]
    fn event_stream_without_a_firewall_is_refused() {
        let dir = std::env::temp_dir().join(format!("fwd-ctl-ev-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.sock");
        let server = ControlSocket::bind(&path).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let t = std::thread::spawn(move || server.serve(&ctx(), &stop2));
        let mut lines = Vec::new();
        request_stream(&path, "conntrack -E", &mut |l| {
            lines.push(l.to_string());
            true
        })
        .unwrap();
        assert_eq!(lines, ["error: no connection tracking in this fwd"]);
        assert_eq!(request(&path, "ping").unwrap(), "pong\n");
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
