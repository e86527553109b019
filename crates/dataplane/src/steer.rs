//! Flow steering between workers (house rule 4: shared-nothing workers).
//!
//! Each worker owns the conntrack shard `shard_of(flow_hash(key), workers)`; a frame that the
//! NIC put on another worker's queue is copied into a bounded SPSC queue (one per ordered
//! worker pair, fixed-size slots allocated once) to the owner, which processes it with its own
//! shard and transmits it on its own TX queues. A full queue is a counted drop.
//!
//! NAT: SNAT picks ports whose reply tuple lands in the original's shard, so its replies find
//! the owner by hash. A DNAT (or any NAT whose reply tuple hashes elsewhere) connection's
//! replies would reach the worker of the reply tuple's shard, which does not know them; so the
//! owner, when it confirms such a connection, sends that worker a redirect message (reply
//! tuple -> owner). Each worker keeps the redirects it was sent in a small fixed-size table,
//! consulted only for frames it would otherwise process itself and only while it is not
//! empty. The owner remembers what it asked for and, sweeping a few entries per poll round,
//! withdraws a redirect once its connection is gone from the shard (expired, deleted).
//!
//! With one worker none of this exists: `Steer` is not created and no frame is parsed twice.

use conntrack::{flow_hash, shard_of, CtPacket, Family, HashKey, Shard, Tuple};
use rtrb::{Consumer, Producer, RingBuffer};
use wire::FrameInfo;

use crate::worker::Parsed;

/// Bytes a handoff slot holds: an XDP frame (2048-byte chunks) fits.
pub const SLOT_BYTES: usize = 2048;

/// Redirect table: buckets of `WAYS` entries.
const REDIRECT_BUCKETS: usize = 1024;
const WAYS: usize = 4;
/// Redirects one worker may have outstanding (connections with a foreign reply shard).
const ISSUED_MAX: usize = REDIRECT_BUCKETS * WAYS;
/// Issued redirects checked per poll round.
const SWEEP_PER_ROUND: usize = 16;
/// Redirect messages applied per poll round from each peer.
const MSGS_PER_ROUND: usize = 256;

/// The conntrack lookup key of a frame: (family, protocol, tuple).
pub type FlowKey = (Family, u8, Tuple);

/// One frame on its way to the worker that owns its flow.
pub struct Handed {
    len: u16,
    ingress: u8,
    /// Sent because of a redirect: the receiver processes it without looking again.
    redirected: bool,
    /// The sender's parse of the frame: the receiver does not parse it again.
    parsed: Option<Parsed>,
    bytes: [u8; SLOT_BYTES],
}

impl Handed {
    /// The frame's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
    /// The port it came in on (0 = a, 1 = b).
    pub fn ingress(&self) -> u8 {
        self.ingress
    }
    pub fn redirected(&self) -> bool {
        self.redirected
    }
    /// What the sending worker's parse stage found (`None` from [`Steer::hand_off`]).
    pub fn parsed(&self) -> Option<&Parsed> {
        self.parsed.as_ref()
    }
}

#[derive(Clone, Copy, Debug)]
enum Message {
    /// Frames of `key` belong to worker `owner`.
    Redirect { key: FlowKey, owner: u8 },
    /// The connection is gone: forget `key`.
    Withdraw { key: FlowKey },
}

/// Where a frame is processed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Here (this worker owns the flow, or the frame has no flow: non-IP, malformed, later
    /// fragment).
    Local,
    /// Worker `n` owns it; `redirected` when a redirect (not the hash) says so.
    To { worker: usize, redirected: bool },
}

/// Counters of one worker's steering (single writer: the worker).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SteerStats {
    /// Frames copied to another worker.
    pub handed_off: u64,
    /// Frames taken from other workers' queues.
    pub received: u64,
    /// Frames dropped because the queue to the owner was full.
    pub queue_full: u64,
    /// Frames sent on because of a redirect.
    pub redirected: u64,
    /// Redirects this worker asked other workers for (DNAT connections), outstanding.
    pub redirects_issued: u64,
    /// Redirects other workers asked this worker for, in its table.
    pub redirects_held: u64,
    /// Redirects that did not fit (table bucket full, issued list full, message queue full).
    pub redirects_lost: u64,
}

/// A fixed-size set-associative map from flow key to owning worker.
struct RedirectTable {
    slots: Box<[Option<(FlowKey, u8)>]>,
    len: usize,
}

impl RedirectTable {
    fn new() -> RedirectTable {
        RedirectTable {
            slots: vec![None; REDIRECT_BUCKETS * WAYS].into_boxed_slice(),
            len: 0,
        }
    }
    fn bucket(h: u64) -> std::ops::Range<usize> {
        let b = (h as usize) & (REDIRECT_BUCKETS - 1);
        b * WAYS..(b + 1) * WAYS
    }
    fn get(&self, h: u64, key: &FlowKey) -> Option<u8> {
        self.slots[Self::bucket(h)]
            .iter()
            .flatten()
            .find(|(k, _)| k == key)
            .map(|&(_, o)| o)
    }
    fn insert(&mut self, h: u64, key: FlowKey, owner: u8) -> bool {
        let slots = &mut self.slots[Self::bucket(h)];
        if let Some(s) = slots.iter_mut().flatten().find(|(k, _)| *k == key) {
            s.1 = owner;
            return true;
        }
        match slots.iter_mut().find(|s| s.is_none()) {
            Some(s) => {
                *s = Some((key, owner));
                self.len += 1;
                true
            }
            None => false,
        }
    }
    fn remove(&mut self, h: u64, key: &FlowKey) {
        for s in &mut self.slots[Self::bucket(h)] {
            if matches!(s, Some((k, _)) if k == key) {
                *s = None;
                self.len -= 1;
            }
        }
    }
}

/// A redirect this worker asked for: its connection's original key (looked up in the own
/// shard), the reply key and the worker holding it.
#[derive(Clone, Copy)]
struct Issued {
    orig: FlowKey,
    reply: FlowKey,
    holder: usize,
}

/// One worker's end of the steering mesh.
pub struct Steer {
    index: usize,
    workers: usize,
    key: HashKey,
    to: Vec<Option<Producer<Handed>>>,
    from: Vec<Consumer<Handed>>,
    msg_to: Vec<Option<Producer<Message>>>,
    msg_from: Vec<Consumer<Message>>,
    next_from: usize,
    redirects: RedirectTable,
    issued: Vec<Issued>,
    sweep_at: usize,
    stats: SteerStats,
    info: FrameInfo,
}

/// The mesh of `workers` workers (at least two make sense): one handoff queue of `slots`
/// frames and one message queue per ordered pair. `key` is conntrack's `hash_key`.
pub fn mesh(workers: usize, key: HashKey, slots: usize) -> Vec<Steer> {
    let mut steers: Vec<Steer> = (0..workers)
        .map(|index| Steer {
            index,
            workers,
            key,
            to: (0..workers).map(|_| None).collect(),
            from: Vec::new(),
            msg_to: (0..workers).map(|_| None).collect(),
            msg_from: Vec::new(),
            next_from: 0,
            redirects: RedirectTable::new(),
            issued: Vec::with_capacity(ISSUED_MAX),
            sweep_at: 0,
            stats: SteerStats::default(),
            info: FrameInfo::default(),
        })
        .collect();
    for a in 0..workers {
        for b in 0..workers {
            if a == b {
                continue;
            }
            let (p, c) = RingBuffer::new(slots.max(1));
            steers[a].to[b] = Some(p);
            steers[b].from.push(c);
            let (p, c) = RingBuffer::new(MSGS_PER_ROUND * 4);
            steers[a].msg_to[b] = Some(p);
            steers[b].msg_from.push(c);
        }
    }
    steers
}

impl Steer {
    pub fn index(&self) -> usize {
        self.index
    }

    pub fn stats(&self) -> SteerStats {
        let mut s = self.stats;
        s.redirects_issued = self.issued.len() as u64;
        s.redirects_held = self.redirects.len as u64;
        s
    }

    /// The flow key and its hash of a frame; `None` for frames without a flow (non-IP,
    /// malformed, later fragments): those stay on the worker that received them.
    pub fn key_of(&mut self, frame: &[u8]) -> Option<(FlowKey, u64)> {
        wire::parse_frame_into(frame, &mut self.info).ok()?;
        if !self.info.is_ip() {
            return None;
        }
        let p = CtPacket::from_frame(frame, &self.info).ok()?;
        let key = p.lookup_key()?;
        Some((key, flow_hash(&self.key, key.0, key.1, &key.2)))
    }

    /// Where a frame with this key goes. `via_redirect` frames were already redirected once.
    pub fn route(&self, key: Option<&(FlowKey, u64)>, via_redirect: bool) -> Route {
        let Some((key, h)) = key else {
            return Route::Local;
        };
        let owner = shard_of(*h, self.workers);
        if owner != self.index {
            return Route::To {
                worker: owner,
                redirected: false,
            };
        }
        if via_redirect || self.redirects.len == 0 {
            return Route::Local;
        }
        match self.redirects.get(*h, key) {
            Some(o) if usize::from(o) != self.index => Route::To {
                worker: usize::from(o),
                redirected: true,
            },
            _ => Route::Local,
        }
    }

    /// Copies `frame` (that came in on `ingress`) to worker `to`; false (and counted) when the
    /// queue is full or the frame does not fit a slot.
    pub fn hand_off(&mut self, to: usize, ingress: u8, frame: &[u8], redirected: bool) -> bool {
        self.hand_off_parsed(to, ingress, frame, redirected, None)
    }

    /// [`Steer::hand_off`] with the frame's parse, so that the receiver does not parse it again.
    pub fn hand_off_parsed(
        &mut self,
        to: usize,
        ingress: u8,
        frame: &[u8],
        redirected: bool,
        parsed: Option<&Parsed>,
    ) -> bool {
        let Some(q) = self.to.get_mut(to).and_then(|q| q.as_mut()) else {
            self.stats.queue_full += 1;
            return false;
        };
        if frame.len() > SLOT_BYTES || q.is_full() {
            self.stats.queue_full += 1;
            return false;
        }
        let mut h = Handed {
            len: frame.len() as u16,
            ingress,
            redirected,
            parsed: parsed.copied(),
            bytes: [0; SLOT_BYTES],
        };
        h.bytes[..frame.len()].copy_from_slice(frame);
        if q.push(h).is_err() {
            self.stats.queue_full += 1;
            return false;
        }
        self.stats.handed_off += 1;
        if redirected {
            self.stats.redirected += 1;
        }
        true
    }

    /// True when a peer has handed over frames not yet taken.
    pub fn has_handed(&self) -> bool {
        self.from.iter().any(|c| !c.is_empty())
    }

    /// Takes one handed frame (round robin over the peers), lending it to `f`.
    pub fn take<R>(&mut self, f: impl FnOnce(&Handed) -> R) -> Option<R> {
        let n = self.from.len();
        for i in 0..n {
            let k = (self.next_from + i) % n;
            if let Ok(chunk) = self.from[k].read_chunk(1) {
                let (a, _) = chunk.as_slices();
                let r = f(&a[0]);
                chunk.commit_all();
                self.next_from = (k + 1) % n;
                self.stats.received += 1;
                return Some(r);
            }
        }
        None
    }

    /// After this worker processed a NEW frame of `key`: if the connection's reply tuple
    /// lands in another worker's shard (DNAT), ask that worker to redirect its frames here.
    pub fn after_new(&mut self, shard: &Shard, key: &FlowKey, now: u64) {
        let Some((id, _)) = shard.lookup(key.0, key.1, &key.2, now) else {
            return;
        };
        let (orig, reply) = shard.tuples(id);
        let rkey = (key.0, key.1, reply);
        let holder = shard_of(flow_hash(&self.key, key.0, key.1, &reply), self.workers);
        if holder == self.index {
            return;
        }
        if self.issued.iter().any(|i| i.reply == rkey) {
            return;
        }
        if self.issued.len() >= ISSUED_MAX {
            self.stats.redirects_lost += 1;
            return;
        }
        let msg = Message::Redirect {
            key: rkey,
            owner: self.index as u8,
        };
        match self.msg_to[holder].as_mut().map(|q| q.push(msg)) {
            Some(Ok(())) => self.issued.push(Issued {
                orig: (key.0, key.1, orig),
                reply: rkey,
                holder,
            }),
            _ => self.stats.redirects_lost += 1,
        }
    }

    /// Between bursts: applies redirect messages from the peers and withdraws a few redirects
    /// whose connections are gone.
    pub fn maintain(&mut self, shard: &Shard, now: u64) {
        for q in &mut self.msg_from {
            for _ in 0..MSGS_PER_ROUND {
                let Ok(m) = q.pop() else { break };
                match m {
                    Message::Redirect { key, owner } => {
                        let h = flow_hash(&self.key, key.0, key.1, &key.2);
                        if !self.redirects.insert(h, key, owner) {
                            self.stats.redirects_lost += 1;
                        }
                    }
                    Message::Withdraw { key } => {
                        let h = flow_hash(&self.key, key.0, key.1, &key.2);
                        self.redirects.remove(h, &key);
                    }
                }
            }
        }
        for _ in 0..SWEEP_PER_ROUND.min(self.issued.len()) {
            if self.sweep_at >= self.issued.len() {
                self.sweep_at = 0;
            }
            let i = self.issued[self.sweep_at];
            if shard.lookup(i.orig.0, i.orig.1, &i.orig.2, now).is_some() {
                self.sweep_at += 1;
                continue;
            }
            let sent = self.msg_to[i.holder]
                .as_mut()
                .is_some_and(|q| q.push(Message::Withdraw { key: i.reply }).is_ok());
            if !sent {
                break;
            }
            self.issued.swap_remove(self.sweep_at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::builder::{FrameBuilder, IpPair};

    #[test]
    fn both_directions_of_a_flow_have_one_owner_and_the_queue_bounds_handoffs() {
        let mut m = mesh(2, HashKey([7, 0]), 2);
        let b = FrameBuilder::default();
        let mut owners = [0usize; 2];
        for sport in 1000..1064u16 {
            let q = b.udp(
                IpPair::V4([198, 18, 0, 1], [198, 18, 0, 2]),
                sport,
                53,
                b"q",
            );
            let r = b.udp(
                IpPair::V4([198, 18, 0, 2], [198, 18, 0, 1]),
                53,
                sport,
                b"r",
            );
            let kq = m[0].key_of(&q);
            let kr = m[1].key_of(&r);
            let owner = |s: &Steer, k| match s.route(k, false) {
                Route::Local => s.index(),
                Route::To { worker, .. } => worker,
            };
            let (oq, or) = (owner(&m[0], kq.as_ref()), owner(&m[1], kr.as_ref()));
            assert_eq!(oq, or);
            owners[oq] += 1;
        }
        assert!(owners[0] > 0 && owners[1] > 0, "{owners:?}");
        // non-IP stays where it is
        assert_eq!(m[0].key_of(&[0u8; 10]), None);
        assert_eq!(m[0].route(None, false), Route::Local);
        // two slots: the third handoff is a counted drop, the frames arrive intact and in order
        let f = b.udp(IpPair::V4([198, 18, 0, 1], [198, 18, 0, 2]), 1, 2, b"x");
        assert!(m[0].hand_off(1, 0, &f, false));
        assert!(m[0].hand_off(1, 1, &f[..20], false));
        assert!(!m[0].hand_off(1, 0, &f, false));
        assert!(!m[0].hand_off(1, 0, &[0; SLOT_BYTES + 1], false));
        assert_eq!(m[0].stats().queue_full, 2);
        assert_eq!(m[0].stats().handed_off, 2);
        let (_, b_) = m.split_at_mut(1);
        let got1 = b_[0].take(|h| (h.ingress(), h.bytes().to_vec())).unwrap();
        let got2 = b_[0].take(|h| (h.ingress(), h.bytes().to_vec())).unwrap();
        assert_eq!(got1, (0, f.clone()));
        assert_eq!(got2, (1, f[..20].to_vec()));
        assert!(b_[0].take(|_| ()).is_none());
        assert_eq!(b_[0].stats().received, 2);
    }

    #[test]
    fn redirect_table_insert_get_remove_and_full_bucket() {
        let mut t = RedirectTable::new();
        let key = |n: u16| {
            (
                Family::V4,
                6u8,
                Tuple {
                    src: [0; 16],
                    dst: [1; 16],
                    sport: n,
                    dport: 80,
                },
            )
        };
        for n in 0..WAYS as u16 {
            assert!(t.insert(5, key(n), 1));
        }
        assert!(t.insert(5, key(0), 0), "an existing key is updated");
        assert!(!t.insert(5, key(99), 1), "a full bucket refuses");
        assert!(t.insert(6, key(99), 1));
        assert_eq!(t.get(5, &key(0)), Some(0));
        assert_eq!(t.get(5, &key(3)), Some(1));
        assert_eq!(t.get(5, &key(99)), None);
        assert_eq!(t.len, WAYS + 1);
        t.remove(5, &key(3));
        assert_eq!(t.get(5, &key(3)), None);
        assert_eq!(t.len, WAYS);
    }
}
