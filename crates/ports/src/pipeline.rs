//! The seam between I/O and the data plane: a burst of frames from one port goes into a
//! [`Pipeline`], which decides per frame where it goes. The first pipeline, [`ForwardAll`],
//! forwards everything to the other port; the firewall's sans-I/O data plane implements the
//! same trait, with `now_ns` passed in and no I/O of its own.

use crate::{Frame, FramePool};

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
}

wire::reason_listing! {
    /// Why a frame was dropped at the I/O layer, or that the pipeline dropped it: indexes the
    /// per-port drop counters (the data plane keeps its finer listing, `dataplane::DropReason`).
    pub enum DropReason {
        TxRingFull => ("tx_ring_full", "the egress port's transmit ring had no room"),
        Policy => ("policy", "the pipeline decided to drop the frame"),
        Malformed => ("malformed", "the frame could not be parsed"),
        NoBuffer => ("no_buffer", "no free buffer to build a frame"),
        HandoffQueueFull => ("handoff_queue_full", "the queue to the worker owning the flow was full"),
        PortDown => ("port_down", "the egress port was down, gone, or its sockets were being rebound"),
        Oversize => ("oversize", "the frame was longer than a receive buffer (dropped by fwd's XDP program)"),
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

/// Decides, for a burst of frames that came in on `ingress`, what to do with each frame:
/// `actions[i]` for `frames[i]`. May modify frames in place through `pool` (and change their
/// lengths). Must not allocate, lock or do I/O; `now_ns` is the only clock.
pub trait Pipeline: Send {
    /// Processes one burst; `frames.len() == actions.len()`.
    fn process_burst<M: FramePool + ?Sized>(
        &mut self,
        ingress: PortId,
        frames: &mut [Frame],
        pool: &mut M,
        actions: &mut [Action],
        now_ns: u64,
    );

    /// Frames other workers handed to this one (their flows live here): fills `frames` with
    /// up to `frames.len()` buffers taken from `pool`, processes them and sets `ingress[i]` (the
    /// port the frame came in on at the other worker) and `actions[i]` (never `Handoff`).
    /// Returns how many. Single-worker pipelines have nothing to hand over.
    fn handed_burst<M: FramePool + ?Sized>(
        &mut self,
        _frames: &mut [Frame],
        _ingress: &mut [PortId],
        _pool: &mut M,
        _actions: &mut [Action],
        _now_ns: u64,
    ) -> usize {
        0
    }

    /// Work between bursts, once per poll round (control requests, messages between
    /// workers); bounded, so polling goes on.
    fn between_bursts(&mut self, _now_ns: u64) {}
}

/// The first pipeline: everything crosses.
#[derive(Clone, Copy, Debug, Default)]
pub struct ForwardAll;

impl Pipeline for ForwardAll {
    fn process_burst<M: FramePool + ?Sized>(
        &mut self,
        _ingress: PortId,
        _frames: &mut [Frame],
        _pool: &mut M,
        actions: &mut [Action],
        _now_ns: u64,
    ) {
        actions.fill(Action::Forward);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::HeapPool;

    #[test]
    fn drop_reason_listing_is_dense_and_named() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert!(!r.name().is_empty() && !r.description().is_empty());
        }
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
    }

    #[test]
    fn forward_all_overwrites_every_action() {
        let mut pool = HeapPool::new(4, 2048);
        let mut frames = [pool.alloc().unwrap(), pool.alloc().unwrap()];
        let mut actions = [Action::Drop(DropReason::Policy), Action::Reply];
        ForwardAll.process_burst(PortId::A, &mut frames, &mut pool, &mut actions, 0);
        assert_eq!(actions, [Action::Forward, Action::Forward]);
        assert_eq!(PortId::A.other(), PortId::B);
        assert_eq!(PortId::B.other().index(), 0);
    }
}
