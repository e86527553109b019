//! A tiny HTTP/1.0 server for Prometheus: `GET /metrics` answers the text exposition, anything
//! else 404. One request per connection, served on the control thread.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::control::ControlContext;
use crate::stats::render_prometheus;

/// Serves `/metrics` on `listener` until `stop` is set.
pub fn serve(listener: TcpListener, ctx: &ControlContext, stop: &AtomicBool) {
    let _ = listener.set_nonblocking(true);
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((s, _)) => {
                let _ = handle(s, ctx);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn handle(mut s: TcpStream, ctx: &ControlContext) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = [0u8; 2048];
    let mut n = 0;
    // Read until the end of the request head (or the buffer is full).
    while n < buf.len() {
        let k = s.read(&mut buf[n..])?;
        if k == 0 {
            break;
        }
        n += k;
        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n")
            || buf[..n].windows(2).any(|w| w == b"\n\n")
        {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf[..n]);
    let first = head.lines().next().unwrap_or("");
    let mut parts = first.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, ctype, body) =
        if method == "GET" && (path == "/metrics" || path.starts_with("/metrics?")) {
            ("200 OK", "text/plain; version=0.0.4", {
                let mut out = render_prometheus(&ctx.workers);
                if let Some(fw) = &ctx.firewall {
                    out.push_str(&fw.metrics());
                }
                if let Some(l) = &ctx.links {
                    out.push_str(&l.render_prometheus());
                }
                out
            })
        } else {
            (
                "404 Not Found",
                "text/plain",
                "not found; try /metrics\n".to_string(),
            )
        };
    write!(
        s,
        "HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::WorkerShared;
    use std::sync::Arc;

    #[test]
    fn metrics_over_http() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let t = std::thread::spawn(move || {
            let ctx = ControlContext {
                workers: vec![Arc::new(WorkerShared::new(0))],
                firewall: None,
                links: None,
            };
            serve(listener, &ctx, &stop2)
        });
        let get = |path: &str| {
            let mut c = TcpStream::connect(addr).unwrap();
            write!(c, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
            let mut out = String::new();
            c.read_to_string(&mut out).unwrap();
            out
        };
        let ok = get("/metrics");
        assert!(ok.starts_with("HTTP/1.0 200 OK\r\n"), "{ok}");
        assert!(ok.contains("fwd_rx_packets_total{port=\"a\"} 0"));
        assert!(get("/").starts_with("HTTP/1.0 404"));
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap();
    }
}
