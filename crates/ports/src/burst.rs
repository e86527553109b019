//! Bursts of frames: [`Frames`] (owned tokens in order, allocated once), the receive guard
//! [`RxBurst`], the transmit guard [`TxBurst`] and [`FillBurst`] (free buffers a pipeline fills
//! with handed frames). `RxBurst` and `FillBurst` are what a `dataplane::Pipeline` sees as a
//! [`dataplane::Burst`]: buffers read and written in place.
//!
//! As xdpilone's `ReadRx`/`WriteTx`: a guard commits or cancels when it goes away. A receive
//! guard gives the frames it still holds back to the pool (a burst abandoned halfway, by an
//! early return or a panic, loses no buffer); a transmit guard commits what it took to the ring
//! in one update. Frames move by value between them, so no buffer is in two places.

use dataplane::{Burst, BurstFill};

use crate::{Frame, FramePool, Port};

/// Frames in order, owned: capacity fixed when made, so pushing never allocates.
#[derive(Debug, Default)]
pub struct Frames {
    v: Vec<Frame>,
}

impl Frames {
    /// Room for `capacity` frames (the one allocation).
    pub fn with_capacity(capacity: usize) -> Frames {
        Frames {
            v: Vec::with_capacity(capacity),
        }
    }
    /// Frames held.
    pub fn len(&self) -> usize {
        self.v.len()
    }
    /// True when none is held.
    pub fn is_empty(&self) -> bool {
        self.v.is_empty()
    }
    /// Frames it can hold.
    pub fn capacity(&self) -> usize {
        self.v.capacity()
    }
    /// Frames it can still take.
    pub fn room(&self) -> usize {
        self.v.capacity() - self.v.len()
    }
    /// Appends `frame`; gives it back when full (never grows).
    pub fn push(&mut self, frame: Frame) -> Result<(), Frame> {
        if self.room() == 0 {
            return Err(frame);
        }
        self.v.push(frame);
        Ok(())
    }
    /// Takes the last frame.
    pub fn pop(&mut self) -> Option<Frame> {
        self.v.pop()
    }
    /// Frame `i`.
    pub fn get(&self, i: usize) -> &Frame {
        &self.v[i]
    }
    /// Frame `i`, to change its length through the pool.
    pub fn get_mut(&mut self, i: usize) -> &mut Frame {
        &mut self.v[i]
    }
    /// The frames, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Frame> {
        self.v.iter()
    }
    /// Takes every frame, in order (the capacity stays).
    pub fn drain(&mut self) -> std::vec::Drain<'_, Frame> {
        self.v.drain(..)
    }
    /// Takes the first `n` frames (or all), in order.
    pub fn drain_front(&mut self, n: usize) -> std::vec::Drain<'_, Frame> {
        let n = n.min(self.v.len());
        self.v.drain(..n)
    }
}

/// Received frames held for one burst, with the pool they live in: the pipeline's
/// [`dataplane::Burst`]. Dropped, it gives every frame it still holds back to the pool.
pub struct RxBurst<'a, M: FramePool + ?Sized> {
    pool: &'a mut M,
    frames: &'a mut Frames,
}

impl<'a, M: FramePool + ?Sized> RxBurst<'a, M> {
    /// Holds `frames` (buffers of `pool`, the caller's) until taken or dropped.
    pub fn new(pool: &'a mut M, frames: &'a mut Frames) -> Self {
        RxBurst { pool, frames }
    }
    /// The frames held.
    pub fn frames(&self) -> &Frames {
        self.frames
    }
    /// The pool and the frames, to take frames on (`frames.drain()`) and release some.
    pub fn parts(&mut self) -> (&mut M, &mut Frames) {
        (self.pool, self.frames)
    }
}

impl<M: FramePool + ?Sized> Drop for RxBurst<'_, M> {
    fn drop(&mut self) {
        self.pool.release_all(self.frames);
    }
}

impl<M: FramePool + ?Sized> Burst for RxBurst<'_, M> {
    fn len(&self) -> usize {
        self.frames.len()
    }
    fn frame(&self, i: usize) -> &[u8] {
        self.pool.data(self.frames.get(i))
    }
    fn frame_mut(&mut self, i: usize) -> &mut [u8] {
        self.pool.data_mut(self.frames.get(i))
    }
    fn buffer_mut(&mut self, i: usize) -> &mut [u8] {
        self.pool.buffer_mut(self.frames.get(i))
    }
    fn set_len(&mut self, i: usize, len: usize) -> bool {
        self.pool.set_len(self.frames.get_mut(i), len)
    }
}

/// Free buffers of a pool that a pipeline fills (frames other workers handed over): each
/// [`BurstFill::push`] takes a buffer and copies the bytes in; the frames are `frames`' (the
/// caller's) afterwards.
pub struct FillBurst<'a, M: FramePool + ?Sized> {
    pool: &'a mut M,
    frames: &'a mut Frames,
}

impl<'a, M: FramePool + ?Sized> FillBurst<'a, M> {
    /// Fills `frames` (empty before) from `pool`, up to its capacity.
    pub fn new(pool: &'a mut M, frames: &'a mut Frames) -> Self {
        FillBurst { pool, frames }
    }
}

impl<M: FramePool + ?Sized> Burst for FillBurst<'_, M> {
    fn len(&self) -> usize {
        self.frames.len()
    }
    fn frame(&self, i: usize) -> &[u8] {
        self.pool.data(self.frames.get(i))
    }
    fn frame_mut(&mut self, i: usize) -> &mut [u8] {
        self.pool.data_mut(self.frames.get(i))
    }
    fn buffer_mut(&mut self, i: usize) -> &mut [u8] {
        self.pool.buffer_mut(self.frames.get(i))
    }
    fn set_len(&mut self, i: usize, len: usize) -> bool {
        self.pool.set_len(self.frames.get_mut(i), len)
    }
}

impl<M: FramePool + ?Sized> BurstFill for FillBurst<'_, M> {
    fn has_room(&self) -> bool {
        self.frames.room() > 0 && self.pool.free_count() > 0
    }
    fn push(&mut self, bytes: &[u8]) -> bool {
        if self.frames.room() == 0 || bytes.len() > self.pool.buffer_capacity() {
            return false;
        }
        let Some(mut f) = self.pool.alloc() else {
            return false;
        };
        self.pool.set_len(&mut f, bytes.len());
        self.pool.data_mut(&f).copy_from_slice(bytes);
        // room checked above
        if let Err(f) = self.frames.push(f) {
            self.pool.release(f);
            return false;
        }
        true
    }
    fn pop(&mut self) {
        if let Some(f) = self.frames.pop() {
            self.pool.release(f);
        }
    }
}

/// What a transmit guard took: frames and their bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    /// Frames taken for the ring.
    pub frames: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// One port's transmit ring, opened for a burst: takes frames by value up to the room it found,
/// commits them to the ring in one update when dropped or on [`commit`](TxBurst::commit).
pub struct TxBurst<'a, P: Port> {
    port: &'a mut P,
    pool: &'a mut P::Pool,
    room: usize,
    sent: Sent,
}

impl<'a, P: Port> TxBurst<'a, P> {
    /// Opens `port`'s ring for up to `want` frames.
    pub fn new(port: &'a mut P, pool: &'a mut P::Pool, want: usize) -> Self {
        let room = port.tx_room(want);
        TxBurst {
            port,
            pool,
            room,
            sent: Sent::default(),
        }
    }
    /// Frames it still takes.
    pub fn room(&self) -> usize {
        self.room
    }
    /// Takes `frame` for the ring, or gives it back when the ring has no room.
    pub fn push(&mut self, frame: Frame) -> Result<(), Frame> {
        if self.room == 0 {
            return Err(frame);
        }
        self.room -= 1;
        self.sent.frames += 1;
        self.sent.bytes += frame.len() as u64;
        self.port.tx_stage(self.pool, frame);
        Ok(())
    }
    /// Takes as many of `frames` as the ring has room for, from the front (the order they go
    /// out in); the rest stay in `frames`. Returns what it took.
    pub fn send(&mut self, frames: &mut Frames) -> Sent {
        let k = self.room.min(frames.len());
        let mut took = Sent::default();
        for f in frames.drain_front(k) {
            took.frames += 1;
            took.bytes += f.len() as u64;
            self.port.tx_stage(self.pool, f);
        }
        self.room -= k;
        self.sent.frames += took.frames;
        self.sent.bytes += took.bytes;
        took
    }
    /// Commits the frames taken to the ring now; returns what it took in all.
    pub fn commit(self) -> Sent {
        self.sent
        // dropped here: the commit
    }
}

impl<P: Port> Drop for TxBurst<'_, P> {
    fn drop(&mut self) {
        if self.sent.frames > 0 {
            self.port.tx_commit(self.pool);
        }
    }
}
