//! The sync thread: an [`Engine`] on a UDP socket, fed by producers (fwd's workers, in phase 2)
//! through bounded lock-free queues, and asked for listings over a channel.
//!
//! A producer's [`Feed::push`] never blocks, allocates or takes a lock: a full queue counts an
//! overflow and drops the update (the next update of the entry, or a resync, repairs it). The
//! thread drains the feeds, batches what they carry into conntrackd messages, and runs the
//! engine's timers; it is the only place with I/O.

use crate::engine::{Config, Engine};
use crate::entry::{Entry, Key};
use crossbeam_queue::ArrayQueue;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a producer tells the sync thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    /// A new or changed local entry.
    Upsert(Entry),
    /// A local entry is gone.
    Remove(Key),
}

struct FeedQueue {
    queue: ArrayQueue<Update>,
    overflow: AtomicU64,
}

/// One producer's queue into the sync thread.
#[derive(Clone)]
pub struct Feed {
    inner: Arc<FeedQueue>,
}

impl Feed {
    /// A queue of `capacity` updates.
    pub fn new(capacity: usize) -> Feed {
        Feed {
            inner: Arc::new(FeedQueue {
                queue: ArrayQueue::new(capacity.max(1)),
                overflow: AtomicU64::new(0),
            }),
        }
    }

    /// Queues an update; `false` (and an overflow counted) when the queue is full.
    pub fn push(&self, u: Update) -> bool {
        if self.inner.queue.push(u).is_err() {
            self.inner.overflow.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Updates dropped because the queue was full.
    pub fn overflow(&self) -> u64 {
        self.inner.overflow.load(Ordering::Relaxed)
    }
}

/// Where the sync thread takes local updates from: a [`Feed`], or fwd's per-worker
/// connection-event queues (converted and filtered on the sync thread, off the data path).
pub trait Source: Send {
    /// Hands at most `max` queued updates to `engine`; returns how many.
    fn drain(&mut self, engine: &mut Engine, max: usize) -> usize;
    /// Updates lost because the queue was full.
    fn overflow(&self) -> u64;
}

impl Source for Feed {
    fn drain(&mut self, engine: &mut Engine, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            match self.inner.queue.pop() {
                Some(Update::Upsert(e)) => engine.upsert(e),
                Some(Update::Remove(k)) => engine.remove(&k),
                None => break,
            }
            n += 1;
        }
        n
    }

    fn overflow(&self) -> u64 {
        Feed::overflow(self)
    }
}

/// The sync thread's counters, for /metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub engine: crate::engine::Stats,
    pub feed_overflow: u64,
    pub send_errors: u64,
    pub recv_errors: u64,
    pub internal: usize,
    pub external: usize,
    /// Messages waiting to be sent, and waiting for an acknowledgement.
    pub queued: (usize, usize),
}

/// Timers of the sync thread beyond the engine's own.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timers {
    /// Send the whole internal cache again this often (conntrackd's `RefreshTime`); `None`:
    /// only changes are sent.
    pub refresh: Option<Duration>,
    /// Ask the peer for its table once at start (conntrackd's `StartupResync`).
    pub startup_resync: bool,
}

/// What the control side can ask of the sync thread.
pub enum Request {
    /// The external cache as `conntrackd -e` lists it.
    ListExternal(mpsc::Sender<String>),
    /// The internal cache in the same format.
    ListInternal(mpsc::Sender<String>),
    /// The external cache's entries (for a commit).
    ExternalEntries(mpsc::Sender<Vec<Entry>>),
    /// The counters, feed overflows included.
    Stats(mpsc::Sender<String>),
    /// The counters as numbers.
    Counters(mpsc::Sender<Counters>),
    /// Ask the peer for its table (`conntrackd -n`).
    RequestResync,
    /// Send the whole internal cache (`conntrackd -B`).
    SendBulk,
    Stop,
}

/// Most updates taken from one feed per round, so one busy producer cannot starve the socket.
const DRAIN_PER_ROUND: usize = 4096;

/// Starts the sync thread on `socket` (bound to the local sync address), sending to `peer`.
/// Returns its handle and the sender of requests; the thread ends on [`Request::Stop`] or
/// when every request sender is dropped.
pub fn spawn(
    cfg: Config,
    socket: UdpSocket,
    peer: SocketAddr,
    feeds: Vec<Feed>,
    initial_seq: u32,
) -> std::io::Result<(JoinHandle<()>, mpsc::Sender<Request>)> {
    let sources = feeds
        .into_iter()
        .map(|f| Box::new(f) as Box<dyn Source>)
        .collect();
    spawn_with(cfg, socket, peer, sources, initial_seq, Timers::default())
}

/// [`spawn`] with any [`Source`]s and the [`Timers`].
pub fn spawn_with(
    cfg: Config,
    socket: UdpSocket,
    peer: SocketAddr,
    sources: Vec<Box<dyn Source>>,
    initial_seq: u32,
    timers: Timers,
) -> std::io::Result<(JoinHandle<()>, mpsc::Sender<Request>)> {
    socket.set_read_timeout(Some(Duration::from_millis(5)))?;
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("sync".into())
        .spawn(move || run(cfg, socket, peer, sources, initial_seq, timers, rx))?;
    Ok((handle, tx))
}

fn drain(feeds: &mut [Box<dyn Source>], engine: &mut Engine) {
    for f in feeds {
        f.drain(engine, DRAIN_PER_ROUND);
    }
}

fn run(
    cfg: Config,
    socket: UdpSocket,
    peer: SocketAddr,
    mut feeds: Vec<Box<dyn Source>>,
    initial_seq: u32,
    timers: Timers,
    requests: mpsc::Receiver<Request>,
) {
    let mut engine = Engine::new(cfg, initial_seq, Instant::now());
    if timers.startup_resync {
        engine.request_resync();
    }
    let mut next_refresh = timers.refresh.map(|r| Instant::now() + r);
    let mut buf = vec![0u8; 65536];
    let mut out = vec![0u8; 1472];
    let (mut send_errors, mut recv_errors) = (0u64, 0u64);
    loop {
        drain(&mut feeds, &mut engine);
        if let (Some(at), Some(every)) = (next_refresh, timers.refresh) {
            if Instant::now() >= at {
                engine.send_bulk();
                next_refresh = Some(at.max(Instant::now() - every) + every);
            }
        }
        loop {
            match requests.try_recv() {
                Ok(r) => {
                    // what producers queued before asking is part of the answer
                    drain(&mut feeds, &mut engine);
                    let now = Instant::now();
                    match r {
                        Request::ListExternal(s) => {
                            let _ = s.send(engine.list_external(now));
                        }
                        Request::ListInternal(s) => {
                            let _ = s.send(engine.list_internal());
                        }
                        Request::ExternalEntries(s) => {
                            let _ = s.send(engine.external().map(|(_, x)| x.entry).collect());
                        }
                        Request::Counters(s) => {
                            let _ = s.send(Counters {
                                engine: engine.stats().clone(),
                                feed_overflow: feeds.iter().map(|f| f.overflow()).sum(),
                                send_errors,
                                recv_errors,
                                internal: engine.internal().count(),
                                external: engine.external().count(),
                                queued: engine.queue_lens(),
                            });
                        }
                        Request::Stats(s) => {
                            let overflow: u64 = feeds.iter().map(|f| f.overflow()).sum();
                            let _ = s.send(format!(
                                "{}\nfeed overflow: {overflow}\nsend errors: {send_errors}\n\
                                 recv errors: {recv_errors}\n",
                                engine.stats_text()
                            ));
                        }
                        Request::RequestResync => engine.request_resync(),
                        Request::SendBulk => engine.send_bulk(),
                        Request::Stop => {
                            // what the producers queued last still goes out
                            flush(&socket, peer, &mut engine, &mut out, &mut send_errors);
                            return;
                        }
                    }
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return,
            }
        }
        match socket.recv_from(&mut buf) {
            Ok((n, _)) => {
                engine.receive(&buf[..n], Instant::now());
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => recv_errors += 1,
        }
        flush(&socket, peer, &mut engine, &mut out, &mut send_errors);
    }
}

/// Runs the engine's timers and sends every datagram it has ready.
fn flush(
    socket: &UdpSocket,
    peer: SocketAddr,
    engine: &mut Engine,
    out: &mut [u8],
    send_errors: &mut u64,
) {
    let now = Instant::now();
    engine.poll(now);
    loop {
        let n = engine.poll_transmit(out, now);
        if n == 0 {
            break;
        }
        if socket.send_to(&out[..n], peer).is_err() {
            *send_errors += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Tuple, L4};
    use std::net::{IpAddr, Ipv4Addr};

    fn entry(i: u16) -> Entry {
        Entry::new(Tuple {
            src: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
            dst: IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1)),
            proto: 17,
            l4: L4::Ports {
                sport: i,
                dport: 53,
            },
        })
    }

    /// A source that hands over its entry only once the test has asked the thread to stop,
    /// so the update and the stop are served in the same round.
    struct AfterStop {
        go: mpsc::Receiver<()>,
        entry: Option<Entry>,
    }

    impl Source for AfterStop {
        fn drain(&mut self, engine: &mut Engine, _max: usize) -> usize {
            match self.entry.take() {
                Some(e) => {
                    self.go.recv().unwrap();
                    engine.upsert(e);
                    1
                }
                None => 0,
            }
        }
        fn overflow(&self) -> u64 {
            0
        }
    }

    /// A clean stop sends what the producers queued last before the thread ends (a stopping
    /// box's final updates reach its peer).
    #[test]
    fn stop_sends_the_last_updates_first() {
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (go_tx, go) = mpsc::channel();
        let src = AfterStop {
            go,
            entry: Some(entry(4242)),
        };
        let (thread, requests) = spawn_with(
            Config::default(),
            sock,
            peer.local_addr().unwrap(),
            vec![Box::new(src)],
            1,
            Timers::default(),
        )
        .unwrap();
        requests.send(Request::Stop).unwrap();
        go_tx.send(()).unwrap();
        thread.join().unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 2048];
        let n = peer.recv(&mut buf).expect("the last update was sent");
        let got: Vec<Entry> = crate::wire::messages(&buf[..n])
            .filter_map(|m| Entry::parse(&m.ok()?).ok())
            .collect();
        assert_eq!(got, vec![entry(4242)]);
    }

    #[test]
    fn a_full_feed_counts_overflow_and_keeps_what_it_has() {
        let f = Feed::new(2);
        assert!(f.push(Update::Upsert(entry(1))));
        assert!(f.push(Update::Upsert(entry(2))));
        assert!(!f.push(Update::Upsert(entry(3))));
        assert_eq!(f.overflow(), 1);
        assert_eq!(f.inner.queue.pop(), Some(Update::Upsert(entry(1))));
        assert!(f.push(Update::Remove(entry(3).key())));
        assert_eq!(f.overflow(), 1);
    }
}
