//! The worker loop: poll each queue pair's two ports in bursts, hand each burst to the
//! [`Pipeline`], transmit what it forwards or replies, recycle what it drops. No allocation,
//! lock or syscall per frame; the ports' `maintain` does at most one syscall per port per round.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataplane::pipeline::{Action, Burst};
use dataplane::{DropReason, Pipeline, PortId};
use hdrhistogram::Histogram;
use ports::xdp::MAX_BURST;
use ports::{FillBurst, FramePool, Frames, KernelStats, Port, Sent};

use crate::link::LinkStatus;
use crate::stats::{new_histogram, LocalCounters, WorkerShared};

/// Opens a worker's ports anew (after an interface came back): its pool and queue pairs.
pub type Reopen<P> = Box<dyn FnMut() -> Result<(<P as Port>::Pool, Vec<(P, P)>), String> + Send>;

/// How a worker follows the link supervisor: port states, rebind requests.
struct Links<P: Port> {
    status: Arc<LinkStatus>,
    index: usize,
    generation: u64,
    reopen: Reopen<P>,
}

/// Bursts of handed-over frames a worker takes per poll round at most.
const HANDED_BURSTS_PER_ROUND: usize = 8;

/// Empty rounds before a worker naps (when `idle_sleep` is non-zero).
const IDLE_ROUNDS: u32 = 256;

/// One worker's state: its pool, its queue pairs, its pipeline, its counters.
pub struct PollLoop<P: Port, L: Pipeline> {
    pool: P::Pool,
    queues: Vec<(P, P)>,
    pipeline: L,
    burst: usize,
    local: LocalCounters,
    latency: Histogram<u64>,
    // Stage arrays, reused for every burst (empty between bursts: every frame received is
    // transmitted or released before the burst ends).
    frames: Frames,
    actions: [Action; MAX_BURST],
    /// Frames leaving through the other port (in `handed`: through port A).
    forward: Frames,
    /// Frames leaving through their ingress port (in `handed`: through port B).
    reply: Frames,
    handed_ingress: [PortId; MAX_BURST],
    /// Whether each port can transmit, read from the supervisor once per poll round.
    port_up: [bool; 2],
    links: Option<Links<P>>,
    /// Per port: the XDP program's oversize count (summed over this worker's queues) when it
    /// was last read; the growth since is added to the `oversize` drops. 0 again after a rebind
    /// (new programs count from 0).
    oversize_seen: [u64; 2],
}

impl<P: Port, L: Pipeline> PollLoop<P, L> {
    /// A worker over `queues` (port A, port B per queue), all on `pool`.
    pub fn new(pool: P::Pool, queues: Vec<(P, P)>, pipeline: L, burst: usize) -> Self {
        PollLoop {
            pool,
            queues,
            pipeline,
            burst: burst.clamp(1, MAX_BURST),
            local: LocalCounters::default(),
            latency: new_histogram(),
            frames: Frames::with_capacity(burst.clamp(1, MAX_BURST)),
            actions: [Action::Forward; MAX_BURST],
            forward: Frames::with_capacity(MAX_BURST),
            reply: Frames::with_capacity(MAX_BURST),
            handed_ingress: [PortId::A; MAX_BURST],
            port_up: [true; 2],
            links: None,
            oversize_seen: [0; 2],
        }
    }

    /// Follows `status` as worker `index`: frames to a port that is down are `PortDown` drops,
    /// and a rebind request closes every socket and opens them again with `reopen`.
    pub fn with_links(mut self, status: Arc<LinkStatus>, index: usize, reopen: Reopen<P>) -> Self {
        self.links = Some(Links {
            generation: status.generation(),
            status,
            index,
            reopen,
        });
        self
    }

    /// Marks a port up or down by hand (for tests; with links the supervisor decides).
    pub fn set_port_up(&mut self, port: PortId, up: bool) {
        self.port_up[port.index()] = up;
    }

    /// Closes every socket, then opens them again (the supervisor attached a new program).
    fn rebind(&mut self) {
        let Some(mut l) = self.links.take() else {
            return;
        };
        let generation = l.status.generation();
        // The old sockets go first: a queue takes only one socket at a time.
        self.queues.clear();
        let ok = match (l.reopen)() {
            Ok((pool, queues)) => {
                self.queues = queues;
                self.pool = pool;
                self.oversize_seen = [0; 2];
                true
            }
            Err(e) => {
                tracing::error!(worker = l.index, "rebinding the sockets failed: {e}");
                false
            }
        };
        l.generation = generation;
        l.status.rebound(l.index, generation, ok);
        self.links = Some(l);
    }

    /// The worker's running totals.
    pub fn counters(&self) -> &LocalCounters {
        &self.local
    }

    /// The queue pairs (for tests: reach the in-memory ports).
    pub fn queues_mut(&mut self) -> &mut [(P, P)] {
        &mut self.queues
    }

    /// The pipeline (for tests: its conntrack shard).
    pub fn pipeline(&self) -> &L {
        &self.pipeline
    }

    /// The pool.
    pub fn pool(&self) -> &P::Pool {
        &self.pool
    }

    /// One poll round over all queues and both directions; returns frames received.
    /// `now_ns` is the clock for the pipeline; `clock` measures burst processing time.
    pub fn poll_once(&mut self, now_ns: u64, clock: &Instant) -> usize {
        if let Some(l) = &self.links {
            self.port_up = [l.status.is_up(0), l.status.is_up(1)];
        }
        // control requests and messages from other workers come before this round's frames
        self.pipeline.between_bursts(now_ns);
        // a peer hands over up to two bursts per queue pair a round: take as many
        let mut received = 0;
        for _ in 0..HANDED_BURSTS_PER_ROUND {
            let n = self.handed(now_ns);
            received += n;
            if n < self.burst {
                break;
            }
        }
        for q in 0..self.queues.len() {
            for ingress in [PortId::A, PortId::B] {
                received += self.burst_from(q, ingress, now_ns, clock);
            }
            let (a, b) = &mut self.queues[q];
            a.maintain(&mut self.pool);
            b.maintain(&mut self.pool);
        }
        self.local.polls += 1;
        received
    }

    fn burst_from(&mut self, q: usize, ingress: PortId, now_ns: u64, clock: &Instant) -> usize {
        let (a, b) = &mut self.queues[q];
        let (inp, outp) = match ingress {
            PortId::A => (a, b),
            PortId::B => (b, a),
        };
        let mut rx = inp.receive(&mut self.pool, &mut self.frames, self.burst);
        let n = rx.len();
        if n == 0 {
            return 0;
        }
        let t0 = clock.elapsed();
        let lin = &mut self.local.ports[ingress.index()];
        lin.rx_packets += n as u64;
        for f in rx.frames().iter() {
            lin.rx_bytes += f.len() as u64;
        }
        self.pipeline
            .process_burst(ingress, &mut rx, &mut self.actions[..n], now_ns);
        // sort the burst into per-port TX batches; each frame goes exactly one way
        {
            let (pool, frames) = rx.parts();
            let drops = &mut self.local.ports[ingress.index()].drops;
            for (f, action) in frames.drain().zip(&self.actions[..n]) {
                let f = match action {
                    Action::Forward => self.forward.push(f),
                    Action::Reply => self.reply.push(f),
                    Action::Drop(reason) => {
                        drops[reason.index()] += 1;
                        Err(f)
                    }
                    // copied to the flow's owner
                    Action::Handoff => Err(f),
                };
                if let Err(f) = f {
                    pool.release(f);
                }
            }
        }
        drop(rx);
        let egress = ingress.other();
        let drops = &mut self.local.ports[ingress.index()].drops;
        if !self.port_up[egress.index()] && !self.forward.is_empty() {
            drops[DropReason::PortDown.index()] += self.forward.len() as u64;
            self.pool.release_all(&mut self.forward);
        }
        if !self.port_up[ingress.index()] && !self.reply.is_empty() {
            drops[DropReason::PortDown.index()] += self.reply.len() as u64;
            self.pool.release_all(&mut self.reply);
        }
        if !self.forward.is_empty() {
            let sent = outp
                .transmit(&mut self.pool, self.forward.len())
                .send(&mut self.forward);
            account_tx(
                &mut self.local,
                &mut self.pool,
                ingress,
                egress,
                sent,
                &mut self.forward,
            );
        }
        if !self.reply.is_empty() {
            let sent = inp
                .transmit(&mut self.pool, self.reply.len())
                .send(&mut self.reply);
            account_tx(
                &mut self.local,
                &mut self.pool,
                ingress,
                ingress,
                sent,
                &mut self.reply,
            );
        }
        self.local.bursts += 1;
        let dt = clock.elapsed().saturating_sub(t0).as_nanos() as u64;
        let _ = self.latency.record(dt.clamp(1, crate::stats::HIST_MAX_NS));
        n
    }

    /// Frames other workers handed over (flows owned here): processed by the pipeline and
    /// transmitted on this worker's first queue pair. Returns how many.
    fn handed(&mut self, now_ns: u64) -> usize {
        let n = self.pipeline.handed_burst(
            &mut FillBurst::new(&mut self.pool, &mut self.frames),
            &mut self.handed_ingress[..self.burst],
            &mut self.actions[..self.burst],
            now_ns,
        );
        debug_assert_eq!(n, self.frames.len());
        if n == 0 || self.queues.is_empty() {
            self.pool.release_all(&mut self.frames);
            return n;
        }
        // sort by the port each frame leaves through: forwarded ones out of the other port,
        // replies out of the one they came in on; `ingress_of` keeps whose counters they are
        let mut ingress_of = [[PortId::A; MAX_BURST]; 2];
        for (i, f) in self.frames.drain().enumerate() {
            let ing = self.handed_ingress[i];
            let out_port = match self.actions[i] {
                Action::Forward => ing.other(),
                Action::Reply => ing,
                Action::Drop(reason) => {
                    self.local.ports[ing.index()].drops[reason.index()] += 1;
                    self.pool.release(f);
                    continue;
                }
                Action::Handoff => {
                    self.pool.release(f);
                    continue;
                }
            };
            let batch = match out_port {
                PortId::A => &mut self.forward,
                PortId::B => &mut self.reply,
            };
            ingress_of[out_port.index()][batch.len()] = ing;
            if let Err(f) = batch.push(f) {
                self.pool.release(f);
            }
        }
        for out_port in [PortId::A, PortId::B] {
            let batch = match out_port {
                PortId::A => &mut self.forward,
                PortId::B => &mut self.reply,
            };
            if batch.is_empty() {
                continue;
            }
            let ingress_of = &ingress_of[out_port.index()];
            if !self.port_up[out_port.index()] {
                for ing in &ingress_of[..batch.len()] {
                    self.local.ports[ing.index()].drops[DropReason::PortDown.index()] += 1;
                }
                self.pool.release_all(batch);
                continue;
            }
            let k = batch.len();
            let (a, b) = &mut self.queues[0];
            let port = if out_port == PortId::A { a } else { b };
            let sent = port.transmit(&mut self.pool, k).send(batch);
            let out = &mut self.local.ports[out_port.index()];
            out.tx_packets += sent.frames as u64;
            out.tx_bytes += sent.bytes;
            for ing in &ingress_of[sent.frames..k] {
                self.local.ports[ing.index()].drops[DropReason::TxRingFull.index()] += 1;
            }
            self.pool.release_all(batch);
        }
        n
    }

    /// Publishes counters and merges the latency histogram (never blocks).
    pub fn publish(&mut self, shared: &WorkerShared) {
        shared.counters.publish(&self.local);
        if let Ok(mut h) = shared.latency.try_lock() {
            let _ = h.add(&self.latency);
            self.latency.reset();
        }
    }

    /// Publishes the kernel's counters of both ports (summed over queues); frames the XDP
    /// program dropped for their length become `oversize` drops of the ingress port.
    pub fn publish_kernel(&mut self, shared: &WorkerShared) {
        for port in [PortId::A, PortId::B] {
            let mut sum = KernelStats::default();
            let mut any = false;
            for (a, b) in &self.queues {
                let p = if port == PortId::A { a } else { b };
                if let Some(k) = p.kernel_stats() {
                    any = true;
                    sum.rx_dropped += k.rx_dropped;
                    sum.rx_ring_full += k.rx_ring_full;
                    sum.rx_fill_ring_empty += k.rx_fill_ring_empty;
                    sum.tx_invalid += k.tx_invalid;
                    sum.rx_oversize += k.rx_oversize;
                }
            }
            let seen = &mut self.oversize_seen[port.index()];
            let grown = sum.rx_oversize.saturating_sub(*seen);
            *seen = sum.rx_oversize.max(*seen);
            if grown > 0 {
                self.local.ports[port.index()].drops[DropReason::Oversize.index()] += grown;
                shared.counters.publish(&self.local);
            }
            if any {
                shared.counters.publish_kernel(port, &sum);
            }
        }
    }

    /// Polls until `stop` is set, publishing counters after every non-empty round.
    /// `idle_sleep` > 0 naps after a run of empty rounds, to give the core back.
    pub fn run(&mut self, shared: &WorkerShared, stop: &AtomicBool, idle_sleep: Duration) {
        let clock = Instant::now();
        let mut empty_rounds = 0u32;
        let mut next_kernel = Duration::ZERO;
        let mut first = true;
        self.pipeline
            .set_wall_offset(crate::firewall::wall_offset_ns());
        while !stop.load(Ordering::Relaxed) {
            let now = clock.elapsed();
            // the data plane's clock is shared with the control thread (conntrack listings)
            let got = self.poll_once(crate::firewall::now_ns(), &clock);
            if let Some(l) = &self.links {
                if first {
                    l.status.worker_polling();
                    first = false;
                }
                if l.status.generation() != l.generation {
                    self.rebind();
                }
            }
            if got > 0 {
                empty_rounds = 0;
                self.publish(shared);
            } else {
                empty_rounds += 1;
                if empty_rounds >= IDLE_ROUNDS {
                    self.publish(shared);
                    if !idle_sleep.is_zero() {
                        std::thread::sleep(idle_sleep);
                    }
                    empty_rounds = 0;
                }
            }
            if now >= next_kernel {
                self.publish_kernel(shared);
                self.pipeline
                    .set_wall_offset(crate::firewall::wall_offset_ns());
                next_kernel = now + Duration::from_secs(1);
            }
        }
        // Drain: let queued transmissions complete before the sockets close.
        let deadline = Instant::now() + Duration::from_millis(100);
        while Instant::now() < deadline {
            for (a, b) in self.queues.iter_mut() {
                a.maintain(&mut self.pool);
                b.maintain(&mut self.pool);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.publish(shared);
        self.publish_kernel(shared);
    }
}

/// Counts what a transmit guard took and drops (releases) what stayed in `rest` as
/// `TxRingFull`.
fn account_tx<M: FramePool>(
    local: &mut LocalCounters,
    pool: &mut M,
    ingress: PortId,
    egress: PortId,
    sent: Sent,
    rest: &mut Frames,
) {
    let out = &mut local.ports[egress.index()];
    out.tx_packets += sent.frames as u64;
    out.tx_bytes += sent.bytes;
    if !rest.is_empty() {
        local.ports[ingress.index()].drops[DropReason::TxRingFull.index()] += rest.len() as u64;
        pool.release_all(rest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::pipeline::Burst;
    use dataplane::ForwardAll;
    use ports::mem::{HeapPool, MemPort};

    /// ARP request who-has 198.18.0.2 tell 198.18.0.1.
    const ARP: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x06, // ethernet
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // htype, ptype, hlen, plen, op
        0x02, 0, 0, 0, 0, 0x01, 198, 18, 0, 1, // sender
        0, 0, 0, 0, 0, 0, 198, 18, 0, 2, // target
    ];

    fn worker<L: Pipeline>(pipeline: L, tx_cap: usize) -> PollLoop<MemPort, L> {
        PollLoop::new(
            HeapPool::new(256, 2048),
            vec![(MemPort::new(tx_cap), MemPort::new(tx_cap))],
            pipeline,
            32,
        )
    }

    #[test]
    fn forwards_both_directions_and_counts() {
        let mut w = worker(ForwardAll, 64);
        let clock = Instant::now();
        w.queues_mut()[0].0.inject(&ARP);
        w.queues_mut()[0].0.inject(&ARP);
        w.queues_mut()[0].1.inject(&ARP[..41]);
        assert_eq!(w.poll_once(0, &clock), 3);
        let (a, b) = &mut w.queues_mut()[0];
        assert_eq!(b.take_transmitted(), vec![ARP.to_vec(), ARP.to_vec()]);
        assert_eq!(a.take_transmitted(), vec![ARP[..41].to_vec()]);
        let c = w.counters();
        assert_eq!(c.ports[0].rx_packets, 2);
        assert_eq!(c.ports[0].rx_bytes, 84);
        assert_eq!(c.ports[1].tx_packets, 2);
        assert_eq!(c.ports[1].rx_packets, 1);
        assert_eq!(c.ports[0].tx_packets, 1);
        assert_eq!(c.ports[0].tx_bytes, 41);
        assert_eq!(w.pool().free_count(), 256);
    }

    #[test]
    fn full_tx_ring_is_a_counted_drop_and_buffers_come_back() {
        let mut w = worker(ForwardAll, 3);
        let clock = Instant::now();
        for _ in 0..5 {
            w.queues_mut()[0].0.inject(&ARP);
        }
        assert_eq!(w.poll_once(0, &clock), 5);
        let c = w.counters();
        assert_eq!(c.ports[1].tx_packets, 3);
        assert_eq!(c.ports[0].drops[DropReason::TxRingFull.index()], 2);
        assert_eq!(w.pool().free_count(), 256);
    }

    /// Replies to every frame out of the ingress port, with the Ethernet addresses swapped in
    /// place; drops frames shorter than an Ethernet header.
    struct Mirror;
    impl Pipeline for Mirror {
        fn process_burst<B: Burst + ?Sized>(
            &mut self,
            _ingress: PortId,
            frames: &mut B,
            actions: &mut [Action],
            now_ns: u64,
        ) {
            assert_eq!(now_ns, 77);
            for (i, a) in actions.iter_mut().enumerate() {
                let d = frames.frame_mut(i);
                if d.len() < 14 {
                    *a = Action::Drop(DropReason::Malformed);
                    continue;
                }
                let mut src = [0u8; 6];
                src.copy_from_slice(&d[6..12]);
                d.copy_within(0..6, 6);
                d[0..6].copy_from_slice(&src);
                *a = Action::Reply;
            }
        }
    }

    #[test]
    fn replies_go_back_out_the_ingress_port_modified_in_place() {
        let mut w = worker(Mirror, 64);
        let clock = Instant::now();
        w.queues_mut()[0].1.inject(&ARP);
        w.queues_mut()[0].1.inject(&ARP[..10]);
        assert_eq!(w.poll_once(77, &clock), 2);
        let (a, b) = &mut w.queues_mut()[0];
        assert!(a.take_transmitted().is_empty());
        let out = b.take_transmitted();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0][0..6], ARP[6..12]);
        assert_eq!(out[0][6..12], ARP[0..6]);
        assert_eq!(out[0][12..], ARP[12..]);
        let c = w.counters();
        assert_eq!(c.ports[1].drops[DropReason::Malformed.index()], 1);
        assert_eq!(c.ports[1].tx_packets, 1);
        assert_eq!(w.pool().free_count(), 256);
    }

    /// Drops every frame whose first byte is odd, replies to those starting with 0x02 and
    /// forwards the rest.
    struct Sorter;
    impl Pipeline for Sorter {
        fn process_burst<B: Burst + ?Sized>(
            &mut self,
            _ingress: PortId,
            frames: &mut B,
            actions: &mut [Action],
            _now_ns: u64,
        ) {
            for (i, a) in actions.iter_mut().enumerate() {
                *a = match frames.frame(i).first() {
                    Some(b) if b % 2 == 1 => Action::Drop(DropReason::Policy),
                    Some(0x02) => Action::Reply,
                    _ => Action::Forward,
                };
            }
        }
    }

    proptest::proptest! {
        /// Every received frame is transmitted or counted as a drop, exactly once, and every
        /// buffer comes back to the pool, whatever the mix and the TX ring room.
        #[test]
        fn frames_are_conserved(
            to_a in proptest::collection::vec(proptest::collection::vec(0u8..4, 1..80), 0..100),
            to_b in proptest::collection::vec(proptest::collection::vec(0u8..4, 1..80), 0..100),
            tx_cap in 1usize..40,
            burst in 1usize..=64,
        ) {
            let mut w = PollLoop::new(
                HeapPool::new(512, 128),
                vec![(MemPort::new(tx_cap), MemPort::new(tx_cap))],
                Sorter,
                burst,
            );
            let clock = Instant::now();
            for f in &to_a { w.queues_mut()[0].0.inject(f); }
            for f in &to_b { w.queues_mut()[0].1.inject(f); }
            let mut out = [0usize; 2];
            let mut rounds = 0;
            while w.queues_mut()[0].0.pending_rx() + w.queues_mut()[0].1.pending_rx() > 0 {
                w.poll_once(0, &clock);
                let (a, b) = &mut w.queues_mut()[0];
                out[0] += a.discard_transmitted();
                out[1] += b.discard_transmitted();
                rounds += 1;
                proptest::prop_assert!(rounds < 1000);
            }
            let c = w.counters().clone();
            let rx = [to_a.len() as u64, to_b.len() as u64];
            for p in 0..2 {
                proptest::prop_assert_eq!(c.ports[p].rx_packets, rx[p]);
                proptest::prop_assert_eq!(c.ports[p].tx_packets, out[p] as u64);
            }
            let drops: u64 = c.ports.iter().flat_map(|p| p.drops.iter()).sum();
            proptest::prop_assert_eq!(rx[0] + rx[1], out[0] as u64 + out[1] as u64 + drops);
            let policy: u64 = c.ports.iter().map(|p| p.drops[DropReason::Policy.index()]).sum();
            let odd = to_a.iter().chain(&to_b).filter(|f| f[0] % 2 == 1).count() as u64;
            proptest::prop_assert_eq!(policy, odd);
            proptest::prop_assert_eq!(w.pool().free_count(), 512);
        }
    }

    #[test]
    fn frames_to_a_down_port_are_counted_port_down_and_come_back_to_the_pool() {
        let mut w = worker(Mirror2, 64);
        let clock = Instant::now();
        w.set_port_up(PortId::B, false);
        for _ in 0..3 {
            w.queues_mut()[0].0.inject(&ARP);
        }
        // from B (down) a reply would go back out of B: dropped too
        w.queues_mut()[0].1.inject(&ARP);
        assert_eq!(w.poll_once(0, &clock), 4);
        let (a, b) = &mut w.queues_mut()[0];
        assert!(a.take_transmitted().is_empty() && b.take_transmitted().is_empty());
        let c = w.counters();
        assert_eq!(c.ports[0].drops[DropReason::PortDown.index()], 3);
        assert_eq!(c.ports[1].drops[DropReason::PortDown.index()], 1);
        assert_eq!(w.pool().free_count(), 256);
        w.set_port_up(PortId::B, true);
        w.queues_mut()[0].0.inject(&ARP);
        w.poll_once(0, &clock);
        assert_eq!(w.queues_mut()[0].1.take_transmitted().len(), 1);
    }

    /// Forwards frames from A, replies to frames from B.
    struct Mirror2;
    impl Pipeline for Mirror2 {
        fn process_burst<B: Burst + ?Sized>(
            &mut self,
            ingress: PortId,
            _frames: &mut B,
            actions: &mut [Action],
            _now_ns: u64,
        ) {
            actions.fill(if ingress == PortId::A {
                Action::Forward
            } else {
                Action::Reply
            });
        }
    }

    #[test]
    fn publish_makes_counters_visible() {
        let mut w = worker(ForwardAll, 64);
        let clock = Instant::now();
        w.queues_mut()[0].0.inject(&ARP);
        w.poll_once(0, &clock);
        let shared = WorkerShared::new(0);
        w.publish(&shared);
        let t = crate::stats::totals(&[std::sync::Arc::new(shared)]);
        assert_eq!(t[0].rx_packets, 1);
        assert_eq!(t[1].tx_packets, 1);
    }
}

/// Two workers on in-memory ports running the firewall: flows steered to their owner.
#[cfg(test)]
mod steer_tests {
    use super::*;
    use dataplane::pipeline::FirewallPipeline;
    use dataplane::steer::{mesh, Route, Steer};
    use dataplane::{CompileConfig, PortInfo};
    use ports::mem::{HeapPool, MemPort};
    use std::sync::Arc;
    use wire::builder::{FrameBuilder, IpPair, TcpSpec};
    use wire::tcp::TcpFlags;

    const STATEFUL: &str =
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
        -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
        -A FORWARD -i fw-c -m conntrack --ctstate NEW -j ACCEPT\nCOMMIT\n";
    const DNAT: &str = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
        -A PREROUTING -i fw-c -d 198.18.0.2/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 198.18.0.3:80\nCOMMIT\n";
    const C: [u8; 4] = [198, 18, 0, 1];
    const S: [u8; 4] = [198, 18, 0, 2];
    const S3: [u8; 4] = [198, 18, 0, 3];

    type W = PollLoop<MemPort, FirewallPipeline>;

    fn workers(text: &str, slots: usize) -> Vec<W> {
        let ruleset = rules::parse_restore("t.rules", text, rules::Family::Ipv4).unwrap();
        let port = |n: &str| PortInfo {
            name: n.into(),
            ipv4: None,
            ipv6: None,
            mtu: 1500,
        };
        let cc = CompileConfig {
            ports: [port("fw-c"), port("fw-s")],
            workers: 2,
        };
        let rules = Arc::new(arc_swap::ArcSwap::from_pointee(
            dataplane::compile(Some(&ruleset), None, &cc).unwrap(),
        ));
        let ct = conntrack::Config::default();
        mesh(2, ct.hash_key, slots)
            .into_iter()
            .enumerate()
            .map(|(i, st)| {
                let w = dataplane::Worker::new(rules.clone(), &ct, 1024, i, 2, 0);
                PollLoop::new(
                    HeapPool::new(256, 2048),
                    vec![(MemPort::new(64), MemPort::new(64))],
                    FirewallPipeline::new(w).with_steer(st),
                    32,
                )
            })
            .collect()
    }

    fn tcp(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, flags: u8, seq: u32, ack: u32) -> Vec<u8> {
        let b = FrameBuilder::default();
        b.tcp(
            IpPair::V4(src, dst),
            &TcpSpec {
                src_port: sp,
                dst_port: dp,
                seq,
                ack,
                flags: TcpFlags(flags),
                window: 1000,
                options: vec![],
                payload: b"",
            },
        )
    }

    /// The worker that owns a frame's flow by hash.
    fn owner(frame: &[u8]) -> usize {
        let mut st: Steer = mesh(2, conntrack::Config::default().hash_key, 1)
            .into_iter()
            .next()
            .unwrap();
        let k = st.key_of(frame);
        match st.route(k.as_ref(), false) {
            Route::Local => 0,
            Route::To { worker, .. } => worker,
        }
    }

    /// A client port whose flow to `dst:dport` is owned by worker `want`.
    fn port_owned_by(want: usize, dst: [u8; 4], dport: u16, from: u16) -> u16 {
        (from..)
            .find(|&sp| owner(&tcp(C, dst, sp, dport, 0x02, 0, 0)) == want)
            .unwrap()
    }

    fn poll(ws: &mut [W]) {
        let clock = Instant::now();
        for _ in 0..2 {
            for w in ws.iter_mut() {
                w.poll_once(1_000_000_000, &clock);
            }
        }
    }

    fn sent(w: &mut W) -> [Vec<Vec<u8>>; 2] {
        let (a, b) = &mut w.queues_mut()[0];
        [a.take_transmitted(), b.take_transmitted()]
    }

    #[test]
    fn a_flow_arriving_on_both_workers_is_processed_by_its_owner_only() {
        let mut ws = workers(STATEFUL, 64);
        let sp = port_owned_by(1, S, 80, 40000);
        let syn = tcp(C, S, sp, 80, 0x02, 100, 0);
        let synack = tcp(S, C, 80, sp, 0x12, 500, 101);
        let ack = tcp(C, S, sp, 80, 0x10, 101, 501);
        // the SYN and the ACK arrive on worker 0's queue, the SYN-ACK on worker 0's too
        ws[0].queues_mut()[0].0.inject(&syn);
        poll(&mut ws);
        ws[0].queues_mut()[0].1.inject(&synack);
        poll(&mut ws);
        ws[1].queues_mut()[0].0.inject(&ack);
        ws[0].queues_mut()[0].0.inject(&ack);
        poll(&mut ws);
        assert_eq!(sent(&mut ws[0]), [Vec::<Vec<u8>>::new(), vec![]]);
        let [to_a, to_b] = sent(&mut ws[1]);
        assert_eq!(to_b, vec![syn, ack.clone(), ack]);
        assert_eq!(to_a, vec![synack]);
        let entries = |w: &W| w.pipeline().worker().shard().len();
        assert_eq!((entries(&ws[0]), entries(&ws[1])), (0, 1));
        let (s0, s1) = (
            ws[0].pipeline().steer_stats(),
            ws[1].pipeline().steer_stats(),
        );
        assert_eq!((s0.handed_off, s1.received), (3, 3));
        // both workers' counters: worker 0 received 3 and handed them over, worker 1 sent 4
        assert_eq!(
            ws[0].counters().ports[0].rx_packets + ws[0].counters().ports[1].rx_packets,
            3
        );
        assert_eq!(ws[1].counters().ports[1].tx_packets, 3);
        assert_eq!(ws[1].counters().ports[0].tx_packets, 1);
        for w in &ws {
            assert_eq!(w.pool().free_count(), 256);
        }
    }

    #[test]
    fn without_steering_the_reply_on_the_other_worker_would_be_dropped() {
        // the control: the same SYN-ACK processed by a worker that does not own the flow is
        // not ESTABLISHED there (this is what steering prevents)
        let mut ws = workers(STATEFUL, 64);
        let sp = port_owned_by(1, S, 80, 40000);
        ws[1].queues_mut()[0]
            .0
            .inject(&tcp(C, S, sp, 80, 0x02, 100, 0));
        poll(&mut ws);
        let plain = dataplane::Worker::new(
            ws[0].pipeline().worker().rules().clone(),
            &conntrack::Config::default(),
            64,
            0,
            2,
            0,
        );
        let mut w = PollLoop::new(
            HeapPool::new(16, 2048),
            vec![(MemPort::new(8), MemPort::new(8))],
            FirewallPipeline::new(plain),
            32,
        );
        w.queues_mut()[0]
            .1
            .inject(&tcp(S, C, 80, sp, 0x12, 500, 101));
        w.poll_once(1_000_000_000, &Instant::now());
        assert_eq!(
            w.counters().ports[1].drops[DropReason::FilterPolicy.index()],
            1
        );
    }

    #[test]
    fn a_full_handoff_queue_is_a_counted_drop() {
        let mut ws = workers(STATEFUL, 2);
        let sp = port_owned_by(1, S, 80, 40000);
        for i in 0..5 {
            ws[0].queues_mut()[0]
                .0
                .inject(&tcp(C, S, sp, 80, 0x02, 100 + i, 0));
        }
        ws[0].poll_once(0, &Instant::now());
        let c = ws[0].counters();
        assert_eq!(c.ports[0].drops[DropReason::HandoffQueueFull.index()], 3);
        assert_eq!(ws[0].pipeline().steer_stats().queue_full, 3);
        assert_eq!(ws[0].pipeline().steer_stats().handed_off, 2);
        assert_eq!(ws[0].pool().free_count(), 256);
        ws[1].poll_once(0, &Instant::now());
        assert_eq!(sent(&mut ws[1])[1].len(), 2);
    }

    #[test]
    fn dnat_replies_are_redirected_to_the_owner_and_the_redirect_is_withdrawn() {
        let mut ws = workers(DNAT, 64);
        // a client port whose original tuple is owned by worker 0 and whose reply tuple
        // (198.18.0.3:80 -> client) hashes to worker 1
        let sp = (40000u16..)
            .find(|&sp| {
                owner(&tcp(C, S, sp, 8080, 0x02, 0, 0)) == 0
                    && owner(&tcp(S3, C, 80, sp, 0x12, 0, 0)) == 1
            })
            .unwrap();
        ws[0].queues_mut()[0]
            .0
            .inject(&tcp(C, S, sp, 8080, 0x02, 100, 0));
        poll(&mut ws);
        assert_eq!(sent(&mut ws[0])[1], vec![tcp(C, S3, sp, 80, 0x02, 100, 0)]);
        assert_eq!(ws[0].pipeline().steer_stats().redirects_issued, 1);
        assert_eq!(ws[1].pipeline().steer_stats().redirects_held, 1);
        // the server's answer arrives on worker 1, whose shard does not know the connection
        ws[1].queues_mut()[0]
            .1
            .inject(&tcp(S3, C, 80, sp, 0x12, 500, 101));
        poll(&mut ws);
        assert_eq!(sent(&mut ws[1]), [Vec::<Vec<u8>>::new(), vec![]]);
        assert_eq!(
            sent(&mut ws[0])[0],
            vec![tcp(S, C, 8080, sp, 0x12, 500, 101)]
        );
        assert_eq!(ws[1].pipeline().steer_stats().redirected, 1);
        assert_eq!(ws[1].pipeline().worker().shard().len(), 0);
        assert_eq!(ws[0].pipeline().worker().shard().len(), 1);
        // the connection expires on its owner: the redirect goes away
        let clock = Instant::now();
        let later = 1_000_000_000 + 3 * 86_400 * 1_000_000_000;
        for _ in 0..3 {
            for w in ws.iter_mut() {
                w.poll_once(later, &clock);
            }
        }
        ws[0].queues_mut()[0].0.inject(&[0u8; 20]); // a burst, so the shard expires
        for _ in 0..3 {
            for w in ws.iter_mut() {
                w.poll_once(later, &clock);
            }
        }
        assert_eq!(ws[0].pipeline().worker().shard().len(), 0);
        assert_eq!(ws[0].pipeline().steer_stats().redirects_issued, 0);
        assert_eq!(ws[1].pipeline().steer_stats().redirects_held, 0);
    }

    proptest::proptest! {
        /// Whatever worker and port the frames of random flows arrive on, each frame leaves
        /// exactly once from its owner's ports or is a counted handoff drop, and every buffer
        /// comes back.
        #[test]
        fn frames_leave_from_their_owner_or_are_counted(
            arrivals in proptest::collection::vec((0usize..2, 0usize..2, 0u16..12), 1..120),
            slots in 1usize..16,
        ) {
            let accept = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";
            let mut ws = workers(accept, slots);
            let b = FrameBuilder::default();
            for &(w, port, flow) in &arrivals {
                let f = if port == 0 {
                    b.udp(IpPair::V4(C, S), 5000 + flow, 53, b"q")
                } else {
                    b.udp(IpPair::V4(S, C), 53, 5000 + flow, b"r")
                };
                let (a, bq) = &mut ws[w].queues_mut()[0];
                if port == 0 { a.inject(&f) } else { bq.inject(&f) }
            }
            let mut out = 0u64;
            for _ in 0..4 {
                poll(&mut ws);
                for (i, w) in ws.iter_mut().enumerate() {
                    for frames in sent(w) {
                        for f in frames {
                            proptest::prop_assert_eq!(owner(&f), i);
                            out += 1;
                        }
                    }
                }
            }
            let full: u64 = ws
                .iter()
                .flat_map(|w| w.counters().ports.iter())
                .map(|p| p.drops[DropReason::HandoffQueueFull.index()])
                .sum();
            proptest::prop_assert_eq!(out + full, arrivals.len() as u64);
            for w in &ws {
                proptest::prop_assert_eq!(w.pool().free_count(), 256);
            }
        }
    }
}
