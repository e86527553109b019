//! In-memory pool and port: queues of frames, for tests and benchmarks. The port copies bytes
//! between its queues and the pool (as a NIC's DMA would); the byte vectors are recycled, so a
//! steady state allocates nothing.

use std::collections::VecDeque;

use crate::{Frame, FramePool, Frames, Port};

/// A pool of fixed-size buffers in one heap allocation.
#[derive(Debug)]
pub struct HeapPool {
    mem: Vec<u8>,
    buffer_size: usize,
    free: Vec<u32>,
}

impl HeapPool {
    /// `count` buffers of `buffer_size` bytes each.
    pub fn new(count: u32, buffer_size: usize) -> HeapPool {
        HeapPool {
            mem: vec![0; count as usize * buffer_size],
            buffer_size,
            // Popped from the end: hand out low indices first.
            free: (0..count).rev().collect(),
        }
    }

    fn range(&self, frame: &Frame) -> std::ops::Range<usize> {
        let start = frame.index() as usize * self.buffer_size;
        start..start + frame.len().min(self.buffer_size)
    }
}

impl FramePool for HeapPool {
    fn data(&self, frame: &Frame) -> &[u8] {
        &self.mem[self.range(frame)]
    }
    fn data_mut(&mut self, frame: &Frame) -> &mut [u8] {
        let r = self.range(frame);
        &mut self.mem[r]
    }
    fn buffer_mut(&mut self, frame: &Frame) -> &mut [u8] {
        let start = frame.index() as usize * self.buffer_size;
        &mut self.mem[start..start + self.buffer_size]
    }
    fn buffer_capacity(&self) -> usize {
        self.buffer_size
    }
    fn alloc(&mut self) -> Option<Frame> {
        self.free.pop().map(|i| Frame::new(i, 0))
    }
    fn release(&mut self, frame: Frame) {
        // No double-release check: `Frame` is neither Copy nor Clone, so a buffer's one token
        // is consumed here.
        self.free.push(frame.index());
    }
    fn free_count(&self) -> usize {
        self.free.len()
    }
}

/// A port whose wire is two queues: frames to receive (`inject`) and frames transmitted
/// (`take_transmitted`). The transmit queue is bounded like a TX ring.
#[derive(Debug)]
pub struct MemPort {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
    tx_capacity: usize,
    spare: Vec<Vec<u8>>,
    /// Frames that did not fit into a pool buffer (truncated on receive).
    pub truncated: u64,
}

impl MemPort {
    /// A port whose transmit queue holds at most `tx_capacity` frames.
    pub fn new(tx_capacity: usize) -> MemPort {
        MemPort {
            rx: VecDeque::new(),
            tx: VecDeque::with_capacity(tx_capacity),
            tx_capacity,
            spare: Vec::new(),
            truncated: 0,
        }
    }

    /// Puts a frame on the wire towards this port: the next `receive` returns it.
    pub fn inject(&mut self, bytes: &[u8]) {
        let mut v = self.spare.pop().unwrap_or_default();
        v.clear();
        v.extend_from_slice(bytes);
        self.rx.push_back(v);
    }

    /// Frames waiting to be received.
    pub fn pending_rx(&self) -> usize {
        self.rx.len()
    }

    /// Takes everything transmitted so far, oldest first.
    pub fn take_transmitted(&mut self) -> Vec<Vec<u8>> {
        self.tx.drain(..).collect()
    }

    /// Drops everything transmitted so far, keeping the vectors for reuse; returns how many.
    pub fn discard_transmitted(&mut self) -> usize {
        let n = self.tx.len();
        self.spare.extend(self.tx.drain(..));
        n
    }
}

impl Port for MemPort {
    type Pool = HeapPool;

    fn receive_into(&mut self, pool: &mut HeapPool, out: &mut Frames, max: usize) -> usize {
        let mut n = 0;
        while n < max && out.room() > 0 && !self.rx.is_empty() {
            let Some(mut frame) = pool.alloc() else { break };
            let bytes = self.rx.pop_front().expect("checked non-empty");
            let len = bytes.len().min(pool.buffer_capacity());
            if len < bytes.len() {
                self.truncated += 1;
            }
            pool.set_len(&mut frame, len);
            pool.data_mut(&frame).copy_from_slice(&bytes[..len]);
            self.spare.push(bytes);
            if let Err(f) = out.push(frame) {
                pool.release(f);
                break;
            }
            n += 1;
        }
        n
    }

    fn tx_room(&mut self, want: usize) -> usize {
        want.min(self.tx_capacity - self.tx.len())
    }

    fn tx_stage(&mut self, pool: &mut HeapPool, frame: Frame) {
        if self.tx.len() < self.tx_capacity {
            let mut v = self.spare.pop().unwrap_or_default();
            v.clear();
            v.extend_from_slice(pool.data(&frame));
            self.tx.push_back(v);
        }
        // the "DMA" is done: the buffer is free again
        pool.release(frame);
    }

    fn tx_commit(&mut self, _pool: &mut HeapPool) {}

    fn maintain(&mut self, _pool: &mut HeapPool) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::Burst;
    use proptest::prelude::*;

    /// An ICMP echo request 198.18.0.1 -> 198.18.0.2 as ping sends it.
    const PING: [u8; 42] = [
        0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00, // ethernet
        0x45, 0x00, 0x00, 0x1c, 0x12, 0x34, 0x40, 0x00, 0x40, 0x01, 0x00, 0x00, 198, 18, 0, 1, 198,
        18, 0, 2, // ipv4
        0x08, 0x00, 0xf7, 0xfe, 0x00, 0x01, 0x00, 0x00, // icmp echo
    ];

    #[test]
    fn frame_crosses_between_ports_without_loss() {
        let mut pool = HeapPool::new(8, 2048);
        let mut a = MemPort::new(4);
        let mut b = MemPort::new(4);
        a.inject(&PING);
        let mut burst = Frames::with_capacity(4);
        let mut rx = a.receive(&mut pool, &mut burst, 4);
        assert_eq!(rx.len(), 1);
        assert_eq!(rx.frame(0), &PING[..]);
        // modify in place: decrement the TTL
        rx.frame_mut(0)[22] -= 1;
        let mut out = Frames::with_capacity(4);
        {
            let (p, frames) = rx.parts();
            assert_eq!(p.free_count(), 7);
            for f in frames.drain() {
                out.push(f).unwrap();
            }
        }
        drop(rx);
        let mut tx = b.transmit(&mut pool, 4);
        assert_eq!(tx.send(&mut out).frames, 1);
        drop(tx);
        assert_eq!(pool.free_count(), 8);
        let out = b.take_transmitted();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0][22], 0x3f);
        assert_eq!(out[0][..22], PING[..22]);
    }

    #[test]
    fn transmit_takes_only_what_fits_and_leaves_the_rest_to_the_caller() {
        let mut pool = HeapPool::new(8, 2048);
        let mut a = MemPort::new(8);
        let mut b = MemPort::new(2);
        for _ in 0..3 {
            a.inject(&PING);
        }
        let mut burst = Frames::with_capacity(8);
        let n = a.receive_into(&mut pool, &mut burst, 8);
        assert_eq!(n, 3);
        let sent = b.transmit(&mut pool, n).send(&mut burst);
        assert_eq!(
            sent,
            crate::Sent {
                frames: 2,
                bytes: 84
            }
        );
        assert_eq!(burst.len(), 1, "the third stays the caller's");
        assert_eq!(pool.free_count(), 7);
        pool.release_all(&mut burst);
        assert_eq!(pool.free_count(), 8);
    }

    #[test]
    fn a_receive_guard_dropped_with_frames_gives_them_back() {
        let mut pool = HeapPool::new(8, 2048);
        let mut a = MemPort::new(8);
        for _ in 0..3 {
            a.inject(&PING);
        }
        let mut burst = Frames::with_capacity(8);
        {
            let mut rx = a.receive(&mut pool, &mut burst, 2);
            assert_eq!(rx.len(), 2);
            // one frame taken on, one left in the guard
            let (pool, frames) = rx.parts();
            let f = frames.pop().unwrap();
            assert_eq!(pool.free_count(), 6);
            pool.release(f);
        }
        assert!(burst.is_empty());
        assert_eq!(pool.free_count(), 8, "the abandoned frame came back");
        assert_eq!(a.pending_rx(), 1);
    }

    #[test]
    fn a_transmit_guard_takes_up_to_its_room_and_commits_on_drop() {
        let mut pool = HeapPool::new(8, 2048);
        let mut a = MemPort::new(8);
        let mut b = MemPort::new(3);
        for _ in 0..5 {
            a.inject(&PING);
        }
        let mut burst = Frames::with_capacity(8);
        assert_eq!(a.receive_into(&mut pool, &mut burst, 8), 5);
        let f = burst.pop().unwrap();
        let mut tx = b.transmit(&mut pool, 8);
        assert_eq!(tx.room(), 3);
        assert_eq!(tx.push(f), Ok(()));
        assert_eq!(tx.send(&mut burst).frames, 2);
        assert_eq!(tx.room(), 0);
        let g = burst.pop().unwrap();
        let g = tx.push(g).unwrap_err();
        assert_eq!(
            tx.commit(),
            crate::Sent {
                frames: 3,
                bytes: 126
            }
        );
        assert_eq!(b.take_transmitted().len(), 3);
        burst.push(g).unwrap();
        assert_eq!(burst.len(), 2);
        pool.release_all(&mut burst);
        assert_eq!(pool.free_count(), 8);
    }

    #[test]
    fn frames_never_grow_past_their_capacity() {
        let mut pool = HeapPool::new(4, 64);
        let mut fs = Frames::with_capacity(2);
        for _ in 0..2 {
            fs.push(pool.alloc().unwrap()).unwrap();
        }
        let extra = pool.alloc().unwrap();
        let extra = fs.push(extra).unwrap_err();
        assert_eq!((fs.len(), fs.room(), fs.capacity()), (2, 0, 2));
        pool.release(extra);
        pool.release_all(&mut fs);
        assert_eq!(pool.free_count(), 4);
    }

    #[test]
    fn receive_stops_when_the_pool_is_empty() {
        let mut pool = HeapPool::new(2, 2048);
        let mut a = MemPort::new(8);
        for _ in 0..3 {
            a.inject(&PING);
        }
        let mut burst = Frames::with_capacity(8);
        assert_eq!(a.receive_into(&mut pool, &mut burst, 8), 2);
        assert_eq!(a.pending_rx(), 1);
        pool.release_all(&mut burst);
    }

    #[test]
    fn set_len_refuses_more_than_capacity() {
        let mut pool = HeapPool::new(1, 64);
        let mut f = pool.alloc().unwrap();
        assert!(pool.set_len(&mut f, 64));
        assert!(!pool.set_len(&mut f, 65));
        assert_eq!(f.len(), 64);
        assert!(pool.alloc().is_none());
    }

    #[test]
    fn a_reply_can_be_built_in_the_whole_buffer() {
        let mut pool = HeapPool::new(2, 128);
        let mut f = pool.alloc().unwrap();
        assert!(pool.set_len(&mut f, 42));
        pool.data_mut(&f).copy_from_slice(&PING);
        let buf = pool.buffer_mut(&f);
        assert_eq!(buf.len(), 128);
        assert_eq!(buf[..42], PING);
        buf[42..70].fill(0xab);
        assert!(pool.set_len(&mut f, 70));
        assert_eq!(pool.data(&f)[..42], PING);
        assert_eq!(pool.data(&f)[42..], [0xab; 28]);
    }

    proptest! {
        #[test]
        fn bytes_survive_a_round_trip(frames in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 14..200), 1..20)) {
            let mut pool = HeapPool::new(32, 256);
            let mut a = MemPort::new(32);
            let mut b = MemPort::new(32);
            for f in &frames { a.inject(f); }
            let mut burst = Frames::with_capacity(32);
            let n = a.receive_into(&mut pool, &mut burst, 32);
            prop_assert_eq!(n, frames.len());
            prop_assert_eq!(b.transmit(&mut pool, n).send(&mut burst).frames, n);
            prop_assert_eq!(b.take_transmitted(), frames);
            prop_assert_eq!(pool.free_count(), 32);
        }
    }
}
