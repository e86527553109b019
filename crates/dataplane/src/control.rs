//! The control thread's requests to a worker (house rule "hot path: no lock"): one SPSC
//! request queue and one response queue per worker. The worker serves requests between
//! bursts with bounded work per poll round (a listing walks `LIST_SLOTS_PER_ROUND` table slots
//! a round); the control thread waits for the answer with a timeout. Requests carry a
//! sequence number so that an answer that comes after its caller gave up is discarded.

use std::time::{Duration, Instant};

use conntrack::{Filter, Import, Snapshot};
use rtrb::{Consumer, Producer, RingBuffer};

use crate::steer::SteerStats;
use crate::worker::{Worker, WorkerStats};

/// Table slots a listing or count walks per poll round.
pub const LIST_SLOTS_PER_ROUND: u32 = 4096;

/// Entries one [`Request::Import`] carries at most (the worker inserts them in one round).
pub const IMPORT_BATCH: usize = 1024;

/// What the control thread asks a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// `conntrack -L`: snapshots of the matching entries.
    List(Filter),
    /// `conntrack -C`.
    Count(Filter),
    /// `conntrack -D`.
    Delete(Filter),
    /// `conntrack -F`.
    Flush,
    /// Data-plane counters, shard occupancy and steering counters.
    Stats,
    /// Insert the entries queued with [`ControlClient::import`] (`fwd sync commit`).
    Import,
}

/// A worker's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    List(Vec<Snapshot>),
    Count(usize),
    Deleted(usize),
    /// Entries imported, and refused (already tracked, no room).
    Imported {
        done: usize,
        refused: usize,
    },
    Stats {
        stats: Box<WorkerStats>,
        entries: u32,
        steer: SteerStats,
    },
}

/// The control thread's end for one worker.
pub struct ControlClient {
    seq: u64,
    requests: Producer<(u64, Request)>,
    responses: Consumer<(u64, Response)>,
    imports: Producer<Import>,
}

/// The worker's end.
pub struct Mailbox {
    requests: Consumer<(u64, Request)>,
    responses: Producer<(u64, Response)>,
    imports: Consumer<Import>,
    /// A listing or count in progress: (sequence, request, next slot, snapshots so far).
    walking: Option<(u64, Request, u32, Vec<Snapshot>)>,
}

/// A request/response pair of queues.
pub fn channel() -> (ControlClient, Mailbox) {
    let (rp, rc) = RingBuffer::new(4);
    let (sp, sc) = RingBuffer::new(4);
    let (ip, ic) = RingBuffer::new(IMPORT_BATCH);
    (
        ControlClient {
            seq: 0,
            requests: rp,
            responses: sc,
            imports: ip,
        },
        Mailbox {
            requests: rc,
            responses: sp,
            imports: ic,
            walking: None,
        },
    )
}

impl ControlClient {
    /// Sends `req` and waits up to `timeout` for the worker's answer (the worker answers
    /// between bursts; an idle worker naps at most its `idle_sleep`).
    pub fn call(&mut self, req: Request, timeout: Duration) -> Result<Response, String> {
        self.seq += 1;
        let seq = self.seq;
        // answers to calls that timed out earlier are stale
        while self.responses.pop().is_ok() {}
        self.requests
            .push((seq, req))
            .map_err(|_| "worker request queue full (worker not running?)".to_string())?;
        let deadline = Instant::now() + timeout;
        loop {
            while let Ok((s, r)) = self.responses.pop() {
                if s == seq {
                    return Ok(r);
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("worker did not answer within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

impl ControlClient {
    /// Inserts `entries` into the worker's shard, [`IMPORT_BATCH`] a round; returns how many
    /// were inserted and how many refused.
    pub fn import(
        &mut self,
        entries: &[Import],
        timeout: Duration,
    ) -> Result<(usize, usize), String> {
        let (mut done, mut refused) = (0, 0);
        for chunk in entries.chunks(IMPORT_BATCH) {
            // what a call that timed out left behind goes first, harmlessly (clashes)
            for im in chunk {
                if self.imports.push(*im).is_err() {
                    refused += 1;
                }
            }
            match self.call(Request::Import, timeout)? {
                Response::Imported {
                    done: d,
                    refused: r,
                } => {
                    done += d;
                    refused += r;
                }
                other => return Err(format!("unexpected answer {other:?}")),
            }
        }
        Ok((done, refused))
    }
}

impl Mailbox {
    /// Serves requests with bounded work: at most one walk step of `LIST_SLOTS_PER_ROUND`
    /// slots, or one other request, per call. Delete and flush walk the whole shard at once
    /// (operator commands; the data path pauses for that round).
    pub fn serve(&mut self, w: &mut Worker, steer: SteerStats, now: u64) {
        if self.walking.is_none() {
            let Ok((seq, req)) = self.requests.pop() else {
                return;
            };
            let resp = match req {
                Request::List(_) | Request::Count(_) => {
                    self.walking = Some((seq, req, 0, Vec::new()));
                    None
                }
                Request::Delete(f) => Some(Response::Deleted(w.shard_mut().delete(&f, now))),
                Request::Flush => Some(Response::Deleted(w.shard_mut().flush(now))),
                Request::Import => {
                    let (mut done, mut refused) = (0, 0);
                    while let Ok(im) = self.imports.pop() {
                        match w.shard_mut().import(&im, now) {
                            Ok(_) => done += 1,
                            Err(_) => refused += 1,
                        }
                    }
                    Some(Response::Imported { done, refused })
                }
                Request::Stats => Some(Response::Stats {
                    stats: Box::new(w.stats_snapshot()),
                    entries: w.shard().len(),
                    steer,
                }),
            };
            if let Some(r) = resp {
                let _ = self.responses.push((seq, r));
                return;
            }
        }
        if let Some((seq, req, from, out)) = &mut self.walking {
            let f = match req {
                Request::List(f) | Request::Count(f) => *f,
                _ => Filter::default(),
            };
            match w
                .shard()
                .snapshot_chunk(&f, now, *from, LIST_SLOTS_PER_ROUND, out)
            {
                Some(next) => *from = next,
                None => {
                    let (seq, req, out) = (*seq, *req, std::mem::take(out));
                    self.walking = None;
                    let r = match req {
                        Request::Count(_) => Response::Count(out.len()),
                        _ => Response::List(out),
                    };
                    let _ = self.responses.push((seq, r));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::compile;
    use crate::compile::tests::{cfg, v4};
    use arc_swap::ArcSwap;
    use std::sync::Arc;
    use wire::builder::{FrameBuilder, IpPair};

    fn worker(capacity: u32) -> Worker {
        let text =
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";
        let c = compile(Some(&v4(text)), None, &cfg()).unwrap();
        Worker::new(
            Arc::new(ArcSwap::from_pointee(c)),
            &conntrack::Config::default(),
            capacity,
            0,
            1,
            0,
        )
    }

    /// A worker thread serving requests between its (empty) bursts, the control thread
    /// calling: listings span several rounds, counts and deletes agree.
    #[test]
    fn requests_are_answered_by_the_serving_worker() {
        let mut w = worker(20_000);
        let b = FrameBuilder::default();
        let now = 1_000_000_000;
        for sport in 1..=50u16 {
            let mut f = b.udp(
                IpPair::V4([198, 18, 0, 1], [198, 18, 0, 2]),
                sport,
                53,
                b"q",
            );
            f.resize(2048, 0);
            let len = 14 + 20 + 8 + 1;
            assert_eq!(w.process(0, &mut f, len, now), crate::Verdict::Forward);
        }
        let (mut client, mut server) = channel();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let st = stop.clone();
        let t = std::thread::spawn(move || {
            let mut rounds = 0u64;
            while !st.load(std::sync::atomic::Ordering::Relaxed) {
                server.serve(&mut w, SteerStats::default(), now);
                rounds += 1;
                std::thread::yield_now();
            }
            rounds
        });
        let to = Duration::from_secs(10);
        let Response::List(l) = client.call(Request::List(Filter::default()), to).unwrap() else {
            panic!("not a listing")
        };
        assert_eq!(l.len(), 50);
        let udp53 = Filter {
            proto: Some(17),
            ..Filter::default()
        };
        assert_eq!(
            client.call(Request::Count(udp53), to).unwrap(),
            Response::Count(50)
        );
        let Response::Stats { entries, stats, .. } = client.call(Request::Stats, to).unwrap()
        else {
            panic!("not stats")
        };
        assert_eq!((entries, stats.forwarded), (50, 50));
        assert_eq!(
            client.call(Request::Flush, to).unwrap(),
            Response::Deleted(50)
        );
        assert_eq!(
            client.call(Request::Count(Filter::default()), to).unwrap(),
            Response::Count(0)
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        // a 20k-slot shard takes several rounds per listing
        assert!(t.join().unwrap() > 5);
    }

    /// `fwd sync commit`'s path: entries queued to the worker are inserted by it between
    /// bursts, more than one batch of them; the clashing ones are counted, not inserted.
    #[test]
    fn imports_are_inserted_by_the_worker_in_batches() {
        let mut w = worker(4096);
        let (mut client, mut server) = channel();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let st = stop.clone();
        let t = std::thread::spawn(move || {
            while !st.load(std::sync::atomic::Ordering::Relaxed) {
                server.serve(&mut w, SteerStats::default(), 1_000_000_000);
                std::thread::yield_now();
            }
            w.shard().len()
        });
        let im = |sport: u16| {
            let t = |a: [u8; 4], b: [u8; 4], sp, dp| {
                let mut x = conntrack::Tuple::default();
                x.src[..4].copy_from_slice(&a);
                x.dst[..4].copy_from_slice(&b);
                (x.sport, x.dport) = (sp, dp);
                x
            };
            Import {
                family: conntrack::Family::V4,
                proto: 17,
                orig: t([198, 18, 0, 1], [198, 18, 1, 1], sport, 53),
                reply: t([198, 18, 1, 1], [198, 18, 0, 1], 53, sport),
                nat: conntrack::NatKind::None,
                tcp_state: None,
                seen_reply: true,
                assured: true,
                mark: 0,
                timeout_secs: 120,
            }
        };
        let mut all: Vec<Import> = (1..=1500).map(im).collect();
        all.push(im(1));
        let to = Duration::from_secs(10);
        assert_eq!(client.import(&all, to).unwrap(), (1500, 1));
        assert_eq!(
            client.call(Request::Count(Filter::default()), to).unwrap(),
            Response::Count(1500)
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(t.join().unwrap(), 1500);
    }

    #[test]
    fn a_worker_that_does_not_serve_times_out_and_a_late_answer_is_discarded() {
        let mut w = worker(64);
        let (mut client, mut server) = channel();
        let e = client
            .call(Request::Stats, Duration::from_millis(20))
            .unwrap_err();
        assert!(e.contains("did not answer"), "{e}");
        server.serve(&mut w, SteerStats::default(), 0); // answers the stale request
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            // serve the next request once it is there
            for _ in 0..10_000 {
                server.serve(&mut w, SteerStats::default(), 0);
                std::thread::sleep(Duration::from_micros(100));
                if done_rx.try_recv().is_ok() {
                    break;
                }
            }
        });
        let r = client
            .call(Request::Count(Filter::default()), Duration::from_secs(10))
            .unwrap();
        assert_eq!(r, Response::Count(0));
        let _ = done_tx.send(());
        t.join().unwrap();
    }
}
