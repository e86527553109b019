//! The seam between I/O and the data plane, and the firewall behind it.
//!
//! A burst of frames from one port goes into a [`Pipeline`], which decides per frame where it
//! goes ([`Action`]). The data plane defines the seam and the I/O layer implements its side:
//! the pipeline sees a burst only as a [`Burst`] of buffers (read a frame, write its whole
//! buffer, set its length), so this crate names no port, pool or ring type and depends on no
//! I/O crate (`ports` implements [`Burst`] for its pool and frames). A drop carries the one
//! [`DropReason`] listing, so the reason the data plane gives is the reason the port counts.
//!
//! [`FirewallPipeline`] is the data plane behind the seam, so fwd's workers run it in place of
//! [`ForwardAll`]. It owns its [`Worker`] outright: the control thread reaches it only through
//! a [`control`](crate::control) request queue served between bursts, and frames of flows owned
//! by another worker go there through [`steer`](crate::steer)'s SPSC queues. No lock anywhere on
//! the data path.

use crate::compile::Compiled;
use crate::control::{ControlClient, Mailbox};
use crate::reason::DropReason;
use crate::steer::{Route, Steer, SteerStats};
use crate::worker::{Stages, Verdict, Worker, VECTOR};

/// One of the two ports of the bump in the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PortId {
    /// Port A (`[ports.a]`, usually the client side).
    A,
    /// Port B (`[ports.b]`, usually the server side).
    B,
}

impl PortId {
    /// The port on the other side of the wire.
    pub fn other(self) -> PortId {
        match self {
            PortId::A => PortId::B,
            PortId::B => PortId::A,
        }
    }
    /// 0 for A, 1 for B (also the pcapng interface id).
    pub fn index(self) -> usize {
        match self {
            PortId::A => 0,
            PortId::B => 1,
        }
    }
    /// Lower-case name, as in the config and the metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            PortId::A => "a",
            PortId::B => "b",
        }
    }
    /// The port of index `i & 1` (the data plane's `PortIdx`).
    pub fn from_index(i: u8) -> PortId {
        if i & 1 == 0 {
            PortId::A
        } else {
            PortId::B
        }
    }
}

/// What happens to one frame of a burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Action {
    /// Out of the other port (the bump in the wire's normal way).
    #[default]
    Forward,
    /// Back out of the port it came in on (e.g. a REJECT reply built in place).
    Reply,
    /// Recycled; counted under the reason.
    Drop(DropReason),
    /// Copied to the worker that owns the frame's flow (which processes and transmits it);
    /// this worker recycles the buffer and counts a handoff.
    Handoff,
}

/// The frames of one burst as the data plane sees them: buffers in the I/O layer's memory
/// (for AF_XDP, UMEM buffers the caller owns), read and written in place, never copied.
/// Frame `i` is the burst's `i`-th frame; the burst's length never changes under a pipeline.
pub trait Burst {
    /// Number of frames.
    fn len(&self) -> usize;
    /// True for a burst without frames.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Frame `i`'s bytes.
    fn frame(&self, i: usize) -> &[u8];
    /// Frame `i`'s bytes, writable in place.
    fn frame_mut(&mut self, i: usize) -> &mut [u8];
    /// Frame `i`'s whole buffer (the frame's bytes first): room to grow the frame in place or
    /// to build a reply in it; then [`set_len`](Burst::set_len) to the new length.
    fn buffer_mut(&mut self, i: usize) -> &mut [u8];
    /// Changes frame `i`'s length (to trim or extend it in place); false if `len` exceeds its
    /// buffer, and then the frame is unchanged.
    fn set_len(&mut self, i: usize, len: usize) -> bool;
}

/// A burst the pipeline fills itself: frames other workers handed over, copied into free
/// buffers of this worker.
pub trait BurstFill: Burst {
    /// Whether one more frame can be added (a free buffer and room in the burst).
    fn has_room(&self) -> bool;
    /// Adds a frame holding a copy of `bytes` as the burst's last; false (nothing added) if
    /// there is no room or `bytes` is longer than a buffer.
    fn push(&mut self, bytes: &[u8]) -> bool;
    /// Gives the last frame's buffer back (it goes elsewhere after all).
    fn pop(&mut self);
}

/// Decides, for a burst of frames that came in on `ingress`, what to do with each frame:
/// `actions[i]` for frame `i`. May modify frames in place (and change their lengths). Must not
/// allocate, lock or do I/O; `now_ns` is the only clock.
pub trait Pipeline: Send {
    /// Processes one burst; `frames.len() == actions.len()`.
    fn process_burst<B: Burst + ?Sized>(
        &mut self,
        ingress: PortId,
        frames: &mut B,
        actions: &mut [Action],
        now_ns: u64,
    );

    /// Frames other workers handed to this one (their flows live here): adds up to
    /// `actions.len()` frames to `out` (empty on entry), processes them and sets `ingress[i]`
    /// (the port the frame came in on at the other worker) and `actions[i]` (never `Handoff`).
    /// Returns how many. Single-worker pipelines have nothing to hand over.
    fn handed_burst<B: BurstFill + ?Sized>(
        &mut self,
        _out: &mut B,
        _ingress: &mut [PortId],
        _actions: &mut [Action],
        _now_ns: u64,
    ) -> usize {
        0
    }

    /// Work between bursts, once per poll round (control requests, messages between
    /// workers); bounded, so polling goes on.
    fn between_bursts(&mut self, _now_ns: u64) {}

    /// The wall clock (UTC ns since the epoch) minus the `now_ns` the bursts get, set by the
    /// poll loop once in a while (`-m time` reads the wall clock; the pipeline reads none).
    fn set_wall_offset(&mut self, _offset_ns: i64) {}
}

/// The first pipeline: everything crosses.
#[derive(Clone, Copy, Debug, Default)]
pub struct ForwardAll;

impl Pipeline for ForwardAll {
    fn process_burst<B: Burst + ?Sized>(
        &mut self,
        _ingress: PortId,
        _frames: &mut B,
        actions: &mut [Action],
        _now_ns: u64,
    ) {
        actions.fill(Action::Forward);
    }
}

/// One worker's firewall pipeline.
pub struct FirewallPipeline {
    worker: Worker,
    /// `None` with a single worker: nothing is steered, no frame parsed twice.
    steer: Option<Steer>,
    control: Option<Mailbox>,
}

impl FirewallPipeline {
    /// A pipeline without steering (one worker) and without a control queue.
    pub fn new(worker: Worker) -> FirewallPipeline {
        FirewallPipeline {
            worker,
            steer: None,
            control: None,
        }
    }

    /// This worker's end of the steering mesh (`steer::mesh`, more than one worker).
    pub fn with_steer(mut self, steer: Steer) -> FirewallPipeline {
        self.steer = Some(steer);
        self
    }

    /// Makes the request queue the control thread talks to; returns the control thread's end.
    pub fn control(&mut self) -> ControlClient {
        let (c, s) = crate::control::channel();
        self.control = Some(s);
        c
    }

    /// The worker (tests, replay; the appliance's control thread uses requests).
    pub fn worker(&self) -> &Worker {
        &self.worker
    }

    pub fn steer_stats(&self) -> SteerStats {
        self.steer.as_ref().map(|s| s.stats()).unwrap_or_default()
    }

    /// Stage 4 for slot `i` (frame `at` of the burst); with steering, a NEW connection whose
    /// reply tuple lands in another shard gets its redirect.
    #[allow(clippy::too_many_arguments)]
    fn finish<B: Burst + ?Sized>(
        worker: &mut Worker,
        steer: Option<&mut Steer>,
        st: &Stages,
        i: usize,
        rs: &Compiled,
        frames: &mut B,
        at: usize,
        now_ns: u64,
    ) -> Action {
        let len = frames.frame(at).len();
        // the whole buffer, so a REJECT reply can be longer than the frame
        let v = worker.finish_slot(rs, st, i, frames.buffer_mut(at), len, now_ns);
        let (out_len, action) = match v {
            Verdict::Forward => (worker.grown_len().unwrap_or(len), Action::Forward),
            Verdict::Reply(n) => (n, Action::Reply),
            // the data plane's reason, unchanged, is what the port counts
            Verdict::Drop(r) => (len, Action::Drop(r)),
        };
        frames.set_len(at, out_len);
        if let (Some(st_), Some((k, _))) = (steer, st.flow(i)) {
            if worker.trace().ct_state == Some(conntrack::CtState::New) {
                st_.after_new(worker.shard(), k, now_ns);
            }
        }
        action
    }
}

impl Pipeline for FirewallPipeline {
    fn process_burst<B: Burst + ?Sized>(
        &mut self,
        ingress: PortId,
        frames: &mut B,
        actions: &mut [Action],
        now_ns: u64,
    ) {
        let w = &mut self.worker;
        let rs = w.rules().load_full();
        w.expire(now_ns);
        let port = ingress.index() as u8;
        let total = frames.len().min(actions.len());
        let mut base = 0;
        while base < total {
            let n = (total - base).min(VECTOR);
            let actions = &mut actions[base..base + n];
            let mut st = w.take_stages();
            for i in 0..n {
                w.parse_slot(&mut st, i, port, frames.frame(base + i));
            }
            // steering decides on the same parse: frames of other workers' flows go there
            if let Some(steer) = self.steer.as_mut() {
                for (i, a) in actions.iter_mut().enumerate() {
                    if let Route::To { worker, redirected } = steer.route(st.flow(i), false) {
                        let parsed = st.parsed(i);
                        *a = if steer.hand_off_parsed(
                            worker,
                            port,
                            frames.frame(base + i),
                            redirected,
                            Some(&parsed),
                        ) {
                            Action::Handoff
                        } else {
                            Action::Drop(DropReason::HandoffQueueFull)
                        };
                        st.skip(i);
                    }
                }
            }
            {
                let frames = &*frames;
                w.prepare(&rs, &mut st, n, |i| frames.frame(base + i), now_ns);
            }
            for (i, a) in actions.iter_mut().enumerate() {
                if st.is_skipped(i) {
                    continue;
                }
                *a = Self::finish(
                    w,
                    self.steer.as_mut(),
                    &st,
                    i,
                    &rs,
                    frames,
                    base + i,
                    now_ns,
                );
            }
            w.put_stages(st);
            base += n;
        }
    }

    fn handed_burst<B: BurstFill + ?Sized>(
        &mut self,
        out: &mut B,
        ingress: &mut [PortId],
        actions: &mut [Action],
        now_ns: u64,
    ) -> usize {
        let Some(st) = self.steer.as_mut().filter(|s| s.has_handed()) else {
            return 0;
        };
        let w = &mut self.worker;
        let rs = w.rules().load_full();
        let mut stages = w.take_stages();
        let base = out.len();
        let want = actions.len().min(ingress.len()).min(VECTOR);
        let mut n = 0;
        // stage 1: the frames with the parse their sender made
        while n < want && out.has_room() {
            let took = st.take(|h| {
                if !out.push(h.bytes()) {
                    return None;
                }
                Some((h.ingress(), h.redirected(), h.parsed().copied()))
            });
            let Some(Some((port, redirected, parsed))) = took else {
                if took.is_none() {
                    break;
                }
                continue;
            };
            match parsed {
                Some(p) => w.adopt_slot(&mut stages, n, port, out.frame(base + n), &p),
                None => w.parse_slot(&mut stages, n, port, out.frame(base + n)),
            }
            if let Route::To {
                worker,
                redirected: true,
            } = st.route(stages.flow(n), redirected)
            {
                // a redirect held here: the flow's owner is a third worker
                // a full queue is counted in this worker's `queue_full`
                let parsed = stages.parsed(n);
                let _ = st.hand_off_parsed(worker, port, out.frame(base + n), true, Some(&parsed));
                out.pop();
                continue;
            }
            ingress[n] = PortId::from_index(port);
            n += 1;
        }
        {
            let out = &*out;
            w.prepare(&rs, &mut stages, n, |i| out.frame(base + i), now_ns);
        }
        for (i, a) in actions[..n].iter_mut().enumerate() {
            *a = Self::finish(w, Some(&mut *st), &stages, i, &rs, out, base + i, now_ns);
        }
        w.put_stages(stages);
        n
    }

    fn set_wall_offset(&mut self, offset_ns: i64) {
        self.worker.set_wall_offset(offset_ns);
    }

    fn between_bursts(&mut self, now_ns: u64) {
        let steer = match self.steer.as_mut() {
            Some(st) => {
                st.maintain(self.worker.shard(), now_ns);
                st.stats()
            }
            None => SteerStats::default(),
        };
        if let Some(c) = self.control.as_mut() {
            c.serve(&mut self.worker, steer, now_ns);
        }
    }
}

/// A burst over buffers of its own, in one allocation made up front: for callers without an
/// I/O layer (the data plane's tests, the allocation test, tools). Frames are added with
/// [`BurstFill::push`] and the burst emptied with [`clear`](BufBurst::clear); nothing allocates
/// after [`new`](BufBurst::new).
#[derive(Clone, Debug)]
pub struct BufBurst {
    mem: Vec<u8>,
    size: usize,
    lens: Vec<usize>,
}

impl BufBurst {
    /// Room for `count` frames of up to `size` bytes each.
    pub fn new(count: usize, size: usize) -> BufBurst {
        BufBurst {
            mem: vec![0; count * size],
            size,
            lens: Vec::with_capacity(count),
        }
    }

    /// Empties the burst (the buffers stay).
    pub fn clear(&mut self) {
        self.lens.clear();
    }

    fn start(&self, i: usize) -> usize {
        i * self.size
    }
}

impl Burst for BufBurst {
    fn len(&self) -> usize {
        self.lens.len()
    }
    fn frame(&self, i: usize) -> &[u8] {
        let s = self.start(i);
        &self.mem[s..s + self.lens[i]]
    }
    fn frame_mut(&mut self, i: usize) -> &mut [u8] {
        let s = self.start(i);
        let n = self.lens[i];
        &mut self.mem[s..s + n]
    }
    fn buffer_mut(&mut self, i: usize) -> &mut [u8] {
        assert!(
            i < self.lens.len(),
            "frame {i} of a burst of {}",
            self.len()
        );
        let s = self.start(i);
        &mut self.mem[s..s + self.size]
    }
    fn set_len(&mut self, i: usize, len: usize) -> bool {
        if len > self.size {
            return false;
        }
        self.lens[i] = len;
        true
    }
}

impl BurstFill for BufBurst {
    fn has_room(&self) -> bool {
        self.lens.len() < self.lens.capacity()
    }
    fn push(&mut self, bytes: &[u8]) -> bool {
        if !self.has_room() || bytes.len() > self.size {
            return false;
        }
        let s = self.start(self.lens.len());
        self.mem[s..s + bytes.len()].copy_from_slice(bytes);
        self.lens.push(bytes.len());
        true
    }
    fn pop(&mut self) {
        self.lens.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::compile;
    use crate::compile::tests::{cfg, v4};
    use arc_swap::ArcSwap;
    use std::sync::Arc;
    use wire::builder::{FrameBuilder, IpPair, TcpSpec};
    use wire::tcp::TcpFlags;

    #[test]
    fn forwards_rejects_in_place_and_drops() {
        let text = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                    -A FORWARD -p udp -m udp --dport 53 -j ACCEPT\n-A FORWARD -p tcp -j REJECT --reject-with tcp-reset\n\
                    -A FORWARD -p udp -j REJECT\nCOMMIT\n";
        let c = compile(Some(&v4(text)), None, &cfg()).unwrap();
        let w = Worker::new(
            Arc::new(ArcSwap::from_pointee(c)),
            &conntrack::Config::default(),
            64,
            0,
            1,
            0,
        );
        let mut fw = FirewallPipeline::new(w);
        let b = FrameBuilder::default();
        let ip = IpPair::V4([198, 18, 0, 1], [198, 18, 0, 2]);
        let inputs = [
            b.udp(ip, 5000, 53, b"q"),
            b.tcp(
                ip,
                &TcpSpec {
                    src_port: 1,
                    dst_port: 2,
                    seq: 1,
                    ack: 0,
                    flags: TcpFlags::SYN,
                    window: 1,
                    options: vec![],
                    payload: b"",
                },
            ),
            b.udp(ip, 5000, 54, b"q"),
            b.echo(ip, true, 1, 1, b"x"),
            vec![0u8; 10],
        ];
        let mut frames = BufBurst::new(8, 2048);
        for f in &inputs {
            assert!(frames.push(f));
        }
        let mut actions = vec![Action::Forward; frames.len()];
        fw.process_burst(PortId::A, &mut frames, &mut actions, 1_000_000_000);
        assert_eq!(
            actions,
            [
                Action::Forward,
                Action::Reply,
                Action::Reply,
                Action::Drop(DropReason::FilterPolicy),
                Action::Drop(DropReason::Malformed)
            ]
        );
        assert_eq!(frames.frame(0), &inputs[0][..]);
        assert_eq!(frames.frame(1).len(), 54);
        let icmp = wire::parse_frame(frames.frame(2)).unwrap();
        assert_eq!((icmp.icmp_type, icmp.icmp_code), (3, 3));
        assert_eq!(frames.frame(2).len(), 14 + 20 + 8 + inputs[2].len() - 14);
        assert_eq!(frames.frame(3).len(), inputs[3].len());
        let w = fw.worker();
        assert_eq!(w.stats().replies, 2);
        assert_eq!(w.shard().len(), 1);
    }

    #[test]
    fn drop_reason_listing_is_dense_and_named() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert!(!r.name().is_empty() && !r.description().is_empty());
        }
    }

    #[test]
    fn forward_all_overwrites_every_action() {
        let mut frames = BufBurst::new(4, 2048);
        assert!(frames.push(&[0; 60]) && frames.push(&[1; 60]));
        let mut actions = [Action::Drop(DropReason::Policy), Action::Reply];
        ForwardAll.process_burst(PortId::A, &mut frames, &mut actions, 0);
        assert_eq!(actions, [Action::Forward, Action::Forward]);
        assert_eq!(PortId::A.other(), PortId::B);
        assert_eq!(PortId::B.other().index(), 0);
        assert_eq!(PortId::from_index(3), PortId::B);
    }

    #[test]
    fn buf_burst_bounds_frames_and_lengths() {
        let mut b = BufBurst::new(2, 64);
        assert!(!b.push(&[0; 65]), "longer than a buffer");
        assert!(b.push(&[7; 10]) && b.push(&[8; 64]));
        assert!(!b.has_room() && !b.push(&[9; 1]));
        assert!(!b.set_len(0, 65) && b.frame(0) == [7; 10]);
        assert!(b.set_len(0, 20));
        assert_eq!(b.buffer_mut(0).len(), 64);
        b.pop();
        assert_eq!(b.len(), 1);
        b.clear();
        assert!(b.is_empty());
    }
}
