//! The ports' side of the data plane's seam: a burst of this crate's frames in a pool, seen by a
//! `dataplane::Pipeline` as a [`dataplane::Burst`] of buffers.

use dataplane::{Burst, BurstFill};

use crate::{Frame, FramePool};

/// Received frames and the pool they live in, as the pipeline sees them.
pub struct PoolBurst<'a, M: FramePool + ?Sized> {
    pool: &'a mut M,
    frames: &'a mut [Frame],
}

impl<'a, M: FramePool + ?Sized> PoolBurst<'a, M> {
    /// `frames`, all held by the caller, in `pool`.
    pub fn new(pool: &'a mut M, frames: &'a mut [Frame]) -> Self {
        PoolBurst { pool, frames }
    }
}

impl<M: FramePool + ?Sized> Burst for PoolBurst<'_, M> {
    fn len(&self) -> usize {
        self.frames.len()
    }
    fn frame(&self, i: usize) -> &[u8] {
        self.pool.data(&self.frames[i])
    }
    fn frame_mut(&mut self, i: usize) -> &mut [u8] {
        self.pool.data_mut(&self.frames[i])
    }
    fn buffer_mut(&mut self, i: usize) -> &mut [u8] {
        self.pool.buffer_mut(&self.frames[i])
    }
    fn set_len(&mut self, i: usize, len: usize) -> bool {
        self.pool.set_len(&mut self.frames[i], len)
    }
}

/// Free buffers of a pool filled by the pipeline (frames handed over by other workers): the
/// first [`len`](Burst::len) of `frames` are the caller's afterwards.
pub struct PoolFill<'a, M: FramePool + ?Sized> {
    pool: &'a mut M,
    frames: &'a mut [Frame],
    n: usize,
}

impl<'a, M: FramePool + ?Sized> PoolFill<'a, M> {
    /// Fills up to `frames.len()` frames from `pool`.
    pub fn new(pool: &'a mut M, frames: &'a mut [Frame]) -> Self {
        PoolFill { pool, frames, n: 0 }
    }
}

impl<M: FramePool + ?Sized> Burst for PoolFill<'_, M> {
    fn len(&self) -> usize {
        self.n
    }
    fn frame(&self, i: usize) -> &[u8] {
        self.pool.data(&self.frames[..self.n][i])
    }
    fn frame_mut(&mut self, i: usize) -> &mut [u8] {
        self.pool.data_mut(&self.frames[..self.n][i])
    }
    fn buffer_mut(&mut self, i: usize) -> &mut [u8] {
        self.pool.buffer_mut(&self.frames[..self.n][i])
    }
    fn set_len(&mut self, i: usize, len: usize) -> bool {
        self.pool.set_len(&mut self.frames[..self.n][i], len)
    }
}

impl<M: FramePool + ?Sized> BurstFill for PoolFill<'_, M> {
    fn has_room(&self) -> bool {
        self.n < self.frames.len() && self.pool.free_count() > 0
    }
    fn push(&mut self, bytes: &[u8]) -> bool {
        if self.n >= self.frames.len() || bytes.len() > self.pool.buffer_capacity() {
            return false;
        }
        let Some(mut f) = self.pool.alloc() else {
            return false;
        };
        self.pool.set_len(&mut f, bytes.len());
        self.pool.data_mut(&f).copy_from_slice(bytes);
        self.frames[self.n] = f;
        self.n += 1;
        true
    }
    fn pop(&mut self) {
        if self.n > 0 {
            self.n -= 1;
            self.pool.release(self.frames[self.n]);
        }
    }
}
