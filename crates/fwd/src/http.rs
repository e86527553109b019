//! The Prometheus endpoint: `GET /metrics` answers the text exposition, anything else 404.
//!
//! Served by hyper (HTTP/1, one request per connection) on a current-thread tokio runtime of its
//! own thread, so connections are served concurrently and a slow client holds only its own:
//! the request head must arrive within [`HttpLimits::header_timeout`] and be at most
//! [`HttpLimits::max_header_size`] bytes, a connection lives at most [`HttpLimits::deadline`],
//! and at most [`HttpLimits::max_connections`] are open. At the cap, the oldest connection that
//! has not sent its request head yet is closed to make room (an idle or slowloris client loses
//! its place to a fresh one, which sends its request at once); when every open connection is
//! being answered, the new one is closed instead. Both are counted, as are the timeouts.
//!
//! Only a connection that has had its first read is a candidate: under a flood of accepts a
//! fresh connection whose request already sits in its socket must not lose its place before
//! its task ran once. The accept loop yields after each accept so the tasks keep up with it.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONNECTION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::control::{metrics_text, ConnCounters, ControlContext};

/// The limits of the `/metrics` server.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Time from the connection's start to the end of its request head.
    pub header_timeout: Duration,
    /// Time from the connection's start to its close, answer written.
    pub deadline: Duration,
    /// Largest request head (request line and headers), in bytes.
    pub max_header_size: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: 256,
            header_timeout: Duration::from_secs(5),
            deadline: Duration::from_secs(10),
            max_header_size: 8192,
        }
    }
}

/// The warning to log at start when `/metrics` listens on more than the loopback interface.
pub fn exposure_warning(listen: SocketAddr) -> Option<String> {
    (!listen.ip().is_loopback()).then(|| {
        format!(
            "stats.listen {listen} is not a loopback address: /metrics is reachable from the \
             network; bind it to 127.0.0.1 (or ::1) unless a firewall or a reverse proxy guards it"
        )
    })
}

/// Serves `/metrics` on `listener` with the default limits until `stop` is set.
pub fn serve(
    listener: TcpListener,
    ctx: Arc<ControlContext>,
    counters: Arc<ConnCounters>,
    stop: &AtomicBool,
) {
    serve_with(listener, ctx, counters, &HttpLimits::default(), stop)
}

/// An open connection, for the cap.
struct Slot {
    /// True until the request head has been read.
    waiting_for_head: Rc<Cell<bool>>,
    /// True once the connection's task has run (and so read what the client had sent).
    polled: Rc<Cell<bool>>,
    task: tokio::task::AbortHandle,
}

/// The open connections by accept order (their ids), so the first waiting one is the oldest.
type Slots = Rc<RefCell<BTreeMap<u64, Slot>>>;

/// Serves `/metrics` on `listener` within `limits` until `stop` is set.
pub fn serve_with(
    listener: TcpListener,
    ctx: Arc<ControlContext>,
    counters: Arc<ConnCounters>,
    limits: &HttpLimits,
    stop: &AtomicBool,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("/metrics: cannot start its runtime: {e}");
            return;
        }
    };
    // A burst of connections must not overflow the accept queue (std listens with 128): a
    // dropped SYN would cost a real client a 1 s retransmission. Listening again only resizes.
    if let Err(e) = nix::sys::socket::listen(&listener, nix::sys::socket::Backlog::MAXCONN) {
        tracing::warn!("/metrics: cannot enlarge the accept queue: {e}");
    }
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let listener = match listener
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpListener::from_std(listener))
        {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("/metrics: cannot serve the listening socket: {e}");
                return;
            }
        };
        let slots: Slots = Rc::default();
        let mut next_id = 0u64;
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        while !stop.load(Ordering::Relaxed) {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        next_id += 1;
                        admit(stream, next_id, &slots, &ctx, &counters, limits);
                        // Let the connections' tasks run before the next accept: otherwise a
                        // flood of accepts outruns them and the cap finds only unread ones.
                        tokio::task::yield_now().await;
                    }
                    // Out of file descriptors or similar: wait instead of spinning.
                    Err(e) => {
                        tracing::debug!("/metrics: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                },
                _ = tick.tick() => {}
            }
        }
        // Dropping the tasks closes their connections.
        for (_, slot) in slots.borrow_mut().split_off(&0) {
            slot.task.abort();
        }
        counters.http_open.store(0, Ordering::Relaxed);
    });
}

/// Makes room under the cap (or refuses `stream`), then serves it on a task of its own.
fn admit(
    stream: tokio::net::TcpStream,
    id: u64,
    slots: &Slots,
    ctx: &Arc<ControlContext>,
    counters: &Arc<ConnCounters>,
    limits: &HttpLimits,
) {
    {
        let mut open = slots.borrow_mut();
        if open.len() >= limits.max_connections {
            counters.http_cap.fetch_add(1, Ordering::Relaxed);
            let waiting = |s: &Slot| s.waiting_for_head.get();
            let oldest_waiting = open
                .iter()
                .find(|(_, s)| waiting(s) && s.polled.get())
                .or_else(|| open.iter().find(|(_, s)| waiting(s)))
                .map(|(&id, _)| id);
            match oldest_waiting {
                Some(victim) => {
                    if let Some(s) = open.remove(&victim) {
                        s.task.abort();
                    }
                }
                // Everyone is being answered: the newcomer waits for nobody.
                None => return,
            }
        }
    }
    let waiting_for_head = Rc::new(Cell::new(true));
    let polled = Rc::new(Cell::new(false));
    let task = {
        let (waiting, was_polled, slots, ctx, counters) = (
            waiting_for_head.clone(),
            polled.clone(),
            slots.clone(),
            ctx.clone(),
            counters.clone(),
        );
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_header_size(limits.max_header_size)
            .max_buf_size(limits.max_header_size.max(8192))
            .keep_alive(false);
        let deadline = limits.deadline;
        tokio::task::spawn_local(async move {
            let service = hyper::service::service_fn(|req: Request<Incoming>| {
                waiting.set(false);
                let answer = respond(&ctx, &counters, &req);
                async move { Ok::<_, Infallible>(answer) }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(tokio::time::timeout(deadline, conn));
            // The first poll reads what the client has sent (and serves a complete request).
            let first = std::future::poll_fn(|cx| {
                let p = std::future::Future::poll(conn.as_mut(), cx);
                was_polled.set(true);
                std::task::Poll::Ready(p)
            })
            .await;
            let done = match first {
                std::task::Poll::Ready(r) => r,
                std::task::Poll::Pending => conn.await,
            };
            match done {
                Err(_) => {
                    counters.http_timeout.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Err(e)) if e.is_timeout() => {
                    counters.http_timeout.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
            }
            slots.borrow_mut().remove(&id);
            counters
                .http_open
                .store(slots.borrow().len() as u64, Ordering::Relaxed);
        })
        .abort_handle()
    };
    let mut open = slots.borrow_mut();
    open.insert(
        id,
        Slot {
            waiting_for_head,
            polled,
            task,
        },
    );
    counters
        .http_open
        .store(open.len() as u64, Ordering::Relaxed);
}

fn respond(
    ctx: &ControlContext,
    counters: &ConnCounters,
    req: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (status, ctype, body) = if req.method() == Method::GET && req.uri().path() == "/metrics" {
        (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            metrics_text(ctx, Some(counters)),
        )
    } else {
        (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found; try /metrics\n".to_string(),
        )
    };
    let mut answer = Response::new(Full::new(Bytes::from(body)));
    *answer.status_mut() = status;
    let headers = answer.headers_mut();
    headers.insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static(ctype));
    headers.insert(CONNECTION, hyper::header::HeaderValue::from_static("close"));
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::WorkerShared;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Instant;

    struct Server {
        addr: SocketAddr,
        counters: Arc<ConnCounters>,
        stop: Arc<AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Server {
        fn start(limits: HttpLimits) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let counters = Arc::new(ConnCounters::default());
            let (st, c) = (stop.clone(), counters.clone());
            let thread = std::thread::spawn(move || {
                let ctx = Arc::new(ControlContext {
                    workers: vec![Arc::new(WorkerShared::new(0))],
                    firewall: None,
                    links: None,
                });
                serve_with(listener, ctx, c, &limits, &st)
            });
            Server {
                addr,
                counters,
                stop,
                thread: Some(thread),
            }
        }

        fn get(&self, path: &str) -> String {
            let mut c = TcpStream::connect(self.addr).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            write!(c, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
            let mut out = String::new();
            c.read_to_string(&mut out).unwrap();
            out
        }

        fn count(&self, c: fn(&ConnCounters) -> &std::sync::atomic::AtomicU64) -> u64 {
            c(&self.counters).load(Ordering::Relaxed)
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                t.join().unwrap();
            }
        }
    }

    /// Waits until `cond` holds, at most 5 s.
    fn wait_for(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn metrics_over_http() {
        let s = Server::start(HttpLimits::default());
        let ok = s.get("/metrics");
        assert!(ok.starts_with("HTTP/1.0 200 OK\r\n"), "{ok}");
        assert!(
            ok.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4\r\n"),
            "{ok}"
        );
        assert!(ok.contains("fwd_rx_packets_total{port=\"a\"} 0"));
        assert!(ok.contains("fwd_http_connections_refused_total{reason=\"cap\"} 0\n"));
        assert!(s.get("/metrics?x=1").starts_with("HTTP/1.0 200 OK\r\n"));
        let nf = s.get("/");
        assert!(nf.starts_with("HTTP/1.0 404"), "{nf}");
        assert!(nf.ends_with("\r\n\r\nnot found; try /metrics\n"), "{nf}");
        // HTTP/1.1 is answered too, and the connection closed after the answer.
        let mut c = TcpStream::connect(s.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    }

    #[test]
    fn silent_and_slow_clients_are_cut_at_the_header_timeout() {
        let s = Server::start(HttpLimits {
            header_timeout: Duration::from_millis(300),
            ..HttpLimits::default()
        });
        let mut idle = TcpStream::connect(s.addr).unwrap();
        let mut slow = TcpStream::connect(s.addr).unwrap();
        slow.write_all(b"GET /metr").unwrap();
        // Meanwhile others are served at once.
        let t = Instant::now();
        assert!(s.get("/metrics").starts_with("HTTP/1.0 200 OK"));
        assert!(
            t.elapsed() < Duration::from_millis(250),
            "{:?}",
            t.elapsed()
        );
        for c in [&mut idle, &mut slow] {
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut out = Vec::new();
            let _ = c.read_to_end(&mut out); // EOF (or a reset) once the server gives up
        }
        wait_for("two timeouts counted", || s.count(|c| &c.http_timeout) == 2);
        wait_for("no connection open", || s.count(|c| &c.http_open) == 0);
    }

    #[test]
    fn the_connection_deadline_cuts_a_client_that_never_reads() {
        // A head that is never completed is cut by the header timeout; the deadline bounds a
        // connection whatever it is doing: here, a deadline shorter than the header timeout.
        let s = Server::start(HttpLimits {
            deadline: Duration::from_millis(200),
            ..HttpLimits::default()
        });
        let mut c = TcpStream::connect(s.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let t = Instant::now();
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        wait_for("the timeout counted", || s.count(|c| &c.http_timeout) == 1);
    }

    #[test]
    fn at_the_cap_the_oldest_waiting_connection_makes_room() {
        let s = Server::start(HttpLimits {
            max_connections: 4,
            ..HttpLimits::default()
        });
        let mut idle: Vec<TcpStream> = (0..4)
            .map(|_| TcpStream::connect(s.addr).unwrap())
            .collect();
        wait_for("4 open", || s.count(|c| &c.http_open) == 4);
        // A fifth: the oldest idle one is closed, the newcomer answered.
        let t = Instant::now();
        assert!(s.get("/metrics").starts_with("HTTP/1.0 200 OK"));
        assert!(
            t.elapsed() < Duration::from_millis(250),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(s.count(|c| &c.http_cap), 1);
        idle[0]
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut out = Vec::new();
        let n = idle[0].read_to_end(&mut out);
        assert!(
            matches!(n, Ok(0)) || n.is_err(),
            "the oldest idle connection was closed: {n:?}"
        );
        // The others are still open and can still be served.
        idle[3].write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        idle[3]
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut out = String::new();
        idle[3].read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.0 200 OK"), "{out}");
    }

    #[test]
    fn at_the_cap_a_burst_of_real_requests_is_answered_not_evicted() {
        // Connections that sent their request before fwd accepted them must not be taken for
        // idle ones: each is read once before the cap may close it (the CI failure: under a
        // flood, a real client's fresh connection was reset before its task ever ran).
        let s = Server::start(HttpLimits {
            max_connections: 4,
            ..HttpLimits::default()
        });
        let _idle: Vec<TcpStream> = (0..4)
            .map(|_| TcpStream::connect(s.addr).unwrap())
            .collect();
        wait_for("4 open", || s.count(|c| &c.http_open) == 4);
        let mut burst: Vec<TcpStream> = (0..40)
            .map(|_| {
                let mut c = TcpStream::connect(s.addr).unwrap();
                c.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
                c
            })
            .collect();
        for (i, c) in burst.iter_mut().enumerate() {
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut out = String::new();
            c.read_to_string(&mut out)
                .unwrap_or_else(|e| panic!("request {i} was cut: {e}"));
            assert!(out.starts_with("HTTP/1.0 200 OK"), "request {i}: {out}");
        }
    }

    #[test]
    fn a_head_over_the_limit_is_refused() {
        let s = Server::start(HttpLimits::default());
        let mut c = TcpStream::connect(s.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let big = format!("GET /metrics HTTP/1.0\r\nX: {}\r\n\r\n", "a".repeat(20_000));
        let _ = c.write_all(big.as_bytes());
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        let out = String::from_utf8_lossy(&out);
        // hyper answers 431 before it knows the version (or, racing the write, just closes).
        assert!(
            out.is_empty() || out.starts_with("HTTP/1.1 431 "),
            "no metrics for an oversized head: {out}"
        );
        assert!(!out.contains("fwd_rx_packets_total"));
    }

    #[test]
    fn a_non_loopback_listen_address_is_warned_about() {
        assert!(exposure_warning("127.0.0.1:9900".parse().unwrap()).is_none());
        assert!(exposure_warning("[::1]:9900".parse().unwrap()).is_none());
        let w = exposure_warning("0.0.0.0:9900".parse().unwrap()).unwrap();
        assert!(w.contains("0.0.0.0:9900 is not a loopback address"), "{w}");
        assert!(exposure_warning("198.18.0.1:9900".parse().unwrap()).is_some());
    }
}
