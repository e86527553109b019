//! The Unix control socket: one request line in, a text answer out, connection closed.
//! Commands are dispatched by [`dispatch`]; new ones (`conntrack -L`, `reload`, `rules list`)
//! add an arm there.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
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
            "commands: stats, stats prometheus, reload, conntrack -L|-C|-D|-F [-p P] [-s A] [-d A], rules list [-v] [ipv4|ipv6] [TABLE], ping, help\n".into()
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
    let answer = dispatch(ctx, line.trim());
    let mut stream = stream;
    stream.write_all(answer.as_bytes())
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
}
