//! The Unix control socket: one request line in, a text answer out, connection closed.
//! Commands are dispatched by [`dispatch`]; new ones (`conntrack -L`, `reload`, `rules list`)
//! add an arm there.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

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

/// Answers one request line. The answer of a failed command starts with `error: `.
pub fn dispatch(ctx: &ControlContext, line: &str) -> String {
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
        (["stats", "prometheus"], _) => {
            let mut out = render_prometheus(&ctx.workers);
            if let Some(fw) = fw {
                out.push_str(&fw.metrics());
            }
            if let Some(l) = &ctx.links {
                out.push_str(&l.render_prometheus());
            }
            out
        }
        (["reload"], Some(fw)) => match fw.reload() {
            Ok(msg) => msg,
            Err(e) => format!("error: reload failed, the running rules stay:\n{e}"),
        },
        (["conntrack", args @ ..], Some(fw)) => fw.conntrack(args),
        (["rules", "list", args @ ..], Some(fw)) => fw.rules_list(args),
        (["ping"], _) => "pong\n".into(),
        (["help"] | [], _) => {
            "commands: stats [json|prometheus], reload, conntrack -L|-C|-D|-F|-E [-p P] [-f F] [-s A] [-d A] [-r A] [-q A] [--sport N] [--dport N] [--state S] [-m M] [-e EVENTS] [-o text|json|xml], rules list [-v] [ipv4|ipv6] [TABLE] [-o json], ping, help\n".into()
        }
        ([cmd, ..], _) => format!("error: unknown command {cmd:?} (try help)\n"),
    }
}

/// The listening control socket; the file is removed when this is dropped.
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlServer {
    /// Binds `path`, replacing a stale socket file (one nobody answers on).
    pub fn bind(path: &Path) -> std::io::Result<ControlServer> {
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
        listener.set_nonblocking(true)?;
        Ok(ControlServer {
            listener,
            path: path.to_owned(),
        })
    }

    /// Serves requests until `stop` is set.
    pub fn serve(&self, ctx: &ControlContext, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    let _ = handle(ctx, stream);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    tracing::warn!("control socket accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn handle(ctx: &ControlContext, stream: UnixStream) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut line = String::new();
    BufReader::new(stream.try_clone()?)
        .take(4096)
        .read_line(&mut line)?;
    // `conntrack -E` keeps the connection: keep this call when rewriting the handling.
    if is_event_request(line.trim()) {
        return serve_events(ctx, stream, line.trim());
    }
    let answer = dispatch(ctx, line.trim());
    let mut stream = stream;
    stream.write_all(answer.as_bytes())
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
    s.write_all(command.as_bytes())?;
    s.write_all(b"\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
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

    #[test]
    fn socket_round_trip() {
        let dir = std::env::temp_dir().join(format!("fwd-ctl-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.sock");
        let server = ControlServer::bind(&path).unwrap();
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
        let server = ControlServer::bind(&path).unwrap();
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
