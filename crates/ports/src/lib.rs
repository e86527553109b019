//! Ports: where frames enter and leave fwd.
//!
//! A worker owns one [`FramePool`] (for AF_XDP: one UMEM) shared by all of its ports, so a
//! frame received on port A is transmitted on port B, modified in place, or sent back out
//! port A without a copy: a [`Frame`] is only a buffer index and a length. Ports move frames
//! in bursts and never allocate per frame.
//!
//! A [`Frame`] is a linear token: neither `Copy` nor `Clone`, and only pools and ports make one.
//! Whoever holds it owns the buffer; giving it to [`FramePool::release`] or a transmit ring
//! consumes it, so safe code cannot hand a buffer back twice, nor keep reading one the kernel
//! owns again. Frames move in [`Frames`] (a burst, allocated once); receive and transmit go
//! through burst guards ([`RxBurst`], [`TxBurst`], as xdpilone's `ReadRx`/`WriteTx`): what a
//! receive guard still holds when it goes away returns to the pool, what a transmit guard took
//! is committed to the ring when it goes away.
//!
//! The seam to the data plane (`dataplane::Pipeline`, its `Action`s, `PortId`, `DropReason`)
//! is the data plane's; an [`RxBurst`] (and a [`FillBurst`] for handed frames) is what a
//! pipeline sees as a `dataplane::Burst`.
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

pub use burst::{FillBurst, Frames, RxBurst, Sent, TxBurst};

/// A buffer owned by the holder of this value: index of the buffer in its worker's pool and
/// the length of the frame in it. Not `Copy`, not `Clone`, not constructible outside this
/// crate: the holder hands each buffer back exactly once (transmit it or
/// [`FramePool::release`] it), and the type system sees to it. Dropping a frame instead leaks
/// its buffer (never a double use).
///
/// A frame handed back cannot be used again:
///
/// ```compile_fail
/// use ports::{mem::HeapPool, FramePool};
/// let mut pool = HeapPool::new(1, 64);
/// let f = pool.alloc().unwrap();
/// pool.release(f);
/// pool.release(f); // use of moved value
/// ```
///
/// nor copied, nor made outside pools and ports:
///
/// ```compile_fail
/// let f = ports::Frame::new(0, 60); // private
/// ```
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    index: u32,
    len: u32,
}

impl Frame {
    /// A frame in buffer `index` holding `len` bytes; only pools and ports create these (a
    /// forged frame whose buffer sits in a kernel ring would race with the kernel).
    pub(crate) fn new(index: u32, len: u32) -> Frame {
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
    /// Gives a buffer back to the free list (consuming its only token).
    fn release(&mut self, frame: Frame);
    /// Gives every frame of `frames` back to the free list; `frames` is empty afterwards.
    fn release_all(&mut self, frames: &mut Frames) {
        for f in frames.drain() {
            self.release(f);
        }
    }
    /// Number of free buffers.
    fn free_count(&self) -> usize;
}

/// A queue of one interface as seen by a worker: burst receive, burst transmit, recycling.
///
/// Callers use [`receive`](Port::receive) and [`transmit`](Port::transmit), whose guards
/// commit or cancel; the `*_into`/`tx_*` methods are what implementations provide to them.
pub trait Port {
    /// The pool this port's buffers belong to (shared by the worker's ports).
    type Pool: FramePool;
    /// Appends up to `max` received frames to `out` (no more than its room); returns how many.
    /// Their buffers are now the caller's.
    fn receive_into(&mut self, pool: &mut Self::Pool, out: &mut Frames, max: usize) -> usize;
    /// How many frames, of `want`, the transmit ring takes now.
    fn tx_room(&mut self, want: usize) -> usize;
    /// Takes `frame` for the transmit ring (its buffer comes back to the pool by itself once
    /// sent). Callers stay within the room [`tx_room`](Port::tx_room) gave ([`TxBurst`] does);
    /// beyond it an implementation drops the frame back into the pool.
    fn tx_stage(&mut self, pool: &mut Self::Pool, frame: Frame);
    /// Hands every staged frame to the ring (one ring update for the burst).
    fn tx_commit(&mut self, pool: &mut Self::Pool);
    /// Once per poll round: collects completed transmissions into the pool, refills receive
    /// buffers, kicks the kernel if it asked for it. At most one syscall per call.
    fn maintain(&mut self, pool: &mut Self::Pool);
    /// The kernel's counters for this queue, where there is a kernel (a syscall: call it
    /// rarely, e.g. once a second).
    fn kernel_stats(&self) -> Option<KernelStats> {
        None
    }

    /// Receives up to `max` frames into `frames` (empty before) and holds them in a guard:
    /// the pipeline works on them in place, the caller takes them on; whatever the guard still
    /// holds when it is dropped goes back to the pool.
    fn receive<'a>(
        &mut self,
        pool: &'a mut Self::Pool,
        frames: &'a mut Frames,
        max: usize,
    ) -> RxBurst<'a, Self::Pool>
    where
        Self: Sized,
    {
        self.receive_into(pool, frames, max);
        RxBurst::new(pool, frames)
    }

    /// Opens the transmit ring for up to `want` frames: the guard takes frames
    /// ([`TxBurst::send`], [`TxBurst::push`]) and commits them to the ring when dropped (or on
    /// [`TxBurst::commit`]).
    fn transmit<'a>(&'a mut self, pool: &'a mut Self::Pool, want: usize) -> TxBurst<'a, Self>
    where
        Self: Sized,
    {
        TxBurst::new(self, pool, want)
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
