//! Ports: where frames enter and leave fwd.
//!
//! A worker owns one [`FramePool`] (for AF_XDP: one UMEM) shared by all of its ports, so a
//! frame received on port A is transmitted on port B, modified in place, or sent back out
//! port A without a copy: a [`Frame`] is only a buffer index and a length. Ports move frames
//! in bursts and never allocate per frame.
//!
//! The seam to the data plane (`dataplane::Pipeline`, its `Action`s, `PortId`, `DropReason`)
//! is the data plane's; [`burst`] shows a pool's frames to it as a `dataplane::Burst`.
//!
//! Implementations: [`xdp`] (AF_XDP through xsk-rs, with a fail-closed XDP program),
//! [`mem`] (in-memory queues for tests and benchmarks), [`pcapng`] (capture files, for replay).

// Unsafe code is allowed here (AF_XDP, bpf(2), setns) and nowhere else; each block says why.
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod burst;
pub mod mem;
pub mod netns;
pub mod pcapng;
pub mod xdp;

pub use burst::{PoolBurst, PoolFill};

/// A buffer owned by the holder of this value: index of the buffer in its worker's pool and
/// the length of the frame in it. Copying a `Frame` does not copy bytes; the holder must hand
/// each buffer back exactly once (transmit it or [`FramePool::release`] it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Frame {
    index: u32,
    len: u32,
}

impl Frame {
    /// A frame in buffer `index` holding `len` bytes; only pools and ports create these (a
    /// forged frame whose buffer sits in a kernel ring would race with the kernel).
    pub fn new(index: u32, len: u32) -> Frame {
        Frame { index, len }
    }
    /// The buffer's index in its pool.
    pub fn index(&self) -> u32 {
        self.index
    }
    /// Length of the frame in bytes.
    pub fn len(&self) -> usize {
        self.len as usize
    }
    /// True for a zero-length frame.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The memory behind the frames of one worker: fixed-size buffers, a free list.
pub trait FramePool {
    /// The frame's bytes.
    fn data(&self, frame: &Frame) -> &[u8];
    /// The frame's bytes, writable in place.
    fn data_mut(&mut self, frame: &Frame) -> &mut [u8];
    /// The frame's whole buffer (`buffer_capacity` bytes, the frame's bytes first): room to
    /// grow the frame in place or to build a reply in it; then `set_len` to the new length.
    fn buffer_mut(&mut self, frame: &Frame) -> &mut [u8];
    /// The largest frame a buffer holds.
    fn buffer_capacity(&self) -> usize;
    /// Changes the frame's length (to trim or extend it in place); false if `len` exceeds the
    /// buffer capacity, and then the frame is unchanged.
    fn set_len(&self, frame: &mut Frame, len: usize) -> bool {
        if len > self.buffer_capacity() {
            return false;
        }
        frame.len = len as u32;
        true
    }
    /// Takes a free buffer (length 0), e.g. to build a reply; None when all are in use.
    fn alloc(&mut self) -> Option<Frame>;
    /// Gives a buffer back to the free list.
    fn release(&mut self, frame: Frame);
    /// Gives buffers back to the free list.
    fn release_all(&mut self, frames: &[Frame]) {
        for f in frames {
            self.release(*f);
        }
    }
    /// Number of free buffers.
    fn free_count(&self) -> usize;
}

/// A queue of one interface as seen by a worker: burst receive, burst transmit, recycling.
pub trait Port {
    /// The pool this port's buffers belong to (shared by the worker's ports).
    type Pool: FramePool;
    /// Receives up to `out.len()` frames into `out`, returns how many. Their buffers are now
    /// the caller's.
    fn receive(&mut self, pool: &mut Self::Pool, out: &mut [Frame]) -> usize;
    /// Queues `frames` for transmission and returns how many were taken: always a prefix of
    /// `frames`. Taken buffers come back to the pool by themselves once sent; the rest stay
    /// the caller's (transmit again later or release).
    fn transmit(&mut self, pool: &mut Self::Pool, frames: &[Frame]) -> usize;
    /// Once per poll round: collects completed transmissions into the pool, refills receive
    /// buffers, kicks the kernel if it asked for it. At most one syscall per call.
    fn maintain(&mut self, pool: &mut Self::Pool);
    /// The kernel's counters for this queue, where there is a kernel (a syscall: call it
    /// rarely, e.g. once a second).
    fn kernel_stats(&self) -> Option<KernelStats> {
        None
    }
}

/// Kernel-side counters of one AF_XDP socket (`XDP_STATISTICS`): frames lost before fwd saw them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Dropped by the kernel for lack of room (RX ring or fill ring).
    pub rx_dropped: u64,
    /// Dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty when a frame arrived.
    pub rx_fill_ring_empty: u64,
    /// Invalid descriptors on TX.
    pub tx_invalid: u64,
    /// Frames longer than a buffer, dropped by fwd's XDP program (since it was loaded: the count
    /// starts again at 0 when the port is rebound).
    pub rx_oversize: u64,
}
