//! The sync engine, sans-I/O: datagrams in ([`Engine::receive`]), datagrams out
//! ([`Engine::poll_transmit`]), time passed in. It keeps the internal cache (entries this box
//! announces), the external cache (entries peers announced) and, in FTFW mode, the reliable
//! delivery of conntrackd 1.4.7's `sync-ftfw.c`:
//!
//! - one sequence counter for everything sent, one receive counter for the peer;
//! - hello: every message carries `HELLO` until the peer answers `HELLO_BACK`; a peer's hello
//!   restarts the receive counter and is answered on the next message;
//! - the receiver acknowledges each window of messages (and, after a second without traffic,
//!   what it has) with `ACK from..to`, and asks for a gap with `NACK from..to`;
//! - the sender keeps what it sent in a resend queue until acknowledged; a NACK sends the
//!   entries again (their current state, with new sequence numbers) and the control messages;
//! - `RESYNC` asks the peer for its whole table (`conntrackd -n`).
//!
//! NOTRACK mode sends each update once, with alive messages in between.

use crate::entry::{Entry, Key};
use crate::wire::{self, flags, kind, Error, Message, Writer};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// The two modes of conntrackd this engine speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Ftfw,
    Notrack,
}

/// Tunables, named as conntrackd's configuration names them.
#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    /// `ACKWindowSize`: acknowledge after this many messages.
    pub window_size: u32,
    /// `ResendQueueSize` in messages: when full, the oldest is forgotten.
    pub resend_queue_size: usize,
    /// How long without sending before an alive (or pending ACK) goes out; 1.4.7 fixes it at
    /// one second.
    pub alive_interval: Duration,
    /// Largest datagram payload built (an MTU of 1500 less IPv4 and UDP headers).
    pub max_datagram: usize,
    /// Most entries the external cache holds (conntrackd's `HashLimit`): a peer cannot make
    /// it grow without bound; new entries beyond are dropped and counted.
    pub external_limit: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mode: Mode::Ftfw,
            window_size: 300,
            resend_queue_size: 131_072,
            alive_interval: Duration::from_secs(1),
            max_datagram: 1472,
            external_limit: 262_144,
        }
    }
}

/// Counters, named as `conntrackd -s` names its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Refused messages by reason, indexed by [`Error::index`].
    pub malformed: [u64; Error::ALL.len()],
    /// Messages the receive counter says were lost (each gap counted once).
    pub lost: u64,
    /// Messages older than the receive counter, dropped.
    pub before: u64,
    pub msgs_received: u64,
    pub msgs_sent: u64,
    pub datagrams_received: u64,
    pub datagrams_sent: u64,
    /// Entries sent again after a NACK or a resync request.
    pub resent: u64,
    pub nacks_sent: u64,
    pub acks_sent: u64,
    /// Resend-queue entries forgotten because the queue was full.
    pub resend_overflow: u64,
    /// Resync requests the peer made.
    pub resync_requests: u64,
    /// New entries dropped because the external cache was full.
    pub external_full: u64,
}

impl Stats {
    /// All malformed messages, whatever the reason.
    pub fn malformed_total(&self) -> u64 {
        self.malformed.iter().sum()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ObjState {
    New,
    Alive,
    Dead,
}

#[derive(Debug, Clone)]
struct Internal {
    entry: Entry,
    state: ObjState,
    /// Queued for transmission or waiting in the resend queue.
    queued: bool,
}

#[derive(Debug, Clone, Copy)]
enum Tx {
    Object(Key),
    Control { flags: u8, from: u32, to: u32 },
}

#[derive(Debug, Clone, Copy)]
enum Resend {
    Object {
        key: Key,
        seq: u32,
    },
    Control {
        flags: u8,
        from: u32,
        to: u32,
        seq: u32,
    },
}

impl Resend {
    fn seq(&self) -> u32 {
        match self {
            Resend::Object { seq, .. } | Resend::Control { seq, .. } => *seq,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hello {
    /// Every message says hello until the peer says hello back.
    Saying,
    Done,
}

/// An entry of the external cache.
#[derive(Debug, Clone)]
pub struct External {
    pub entry: Entry,
    /// When it was first received.
    pub since: Instant,
    /// When it was last updated.
    pub updated: Instant,
}

/// `before()` of 1.4.7 (and TCP): sequence order with wraparound.
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

fn after(a: u32, b: u32) -> bool {
    before(b, a)
}

/// One peer's sync state: see the module documentation.
pub struct Engine {
    cfg: Config,
    next_seq: u32,
    internal: HashMap<Key, Internal>,
    external: HashMap<Key, External>,
    tx: VecDeque<Tx>,
    resend: VecDeque<Resend>,
    hello: Hello,
    say_hello_back: bool,
    /// The peer's last message said hello: it waits for our hello back.
    peer_saying_hello: bool,
    /// The last sequence number received from the peer, once one was.
    last_recv: Option<u32>,
    ack_from: Option<u32>,
    window: i64,
    last_tx: Instant,
    stats: Stats,
}

/// What one received message did, for callers that log or test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An entry arrived (new or update) in the external cache.
    Updated(Key),
    /// An entry was removed from the external cache.
    Removed(Key),
    /// A control message (ACK, NACK, alive, resync) was handled.
    Control(u8),
    /// A message older than the receive counter was dropped.
    Old(u32),
    /// A message was refused.
    Malformed(Error),
    /// A new entry did not fit in the external cache.
    CacheFull(Key),
}

impl Engine {
    /// A fresh engine; `initial_seq` is the first sequence number sent (1.4.7 takes the
    /// time in seconds, so a restarted peer does not look like a replay).
    pub fn new(cfg: Config, initial_seq: u32, now: Instant) -> Engine {
        let window = i64::from(cfg.window_size);
        Engine {
            cfg,
            next_seq: initial_seq,
            internal: HashMap::new(),
            external: HashMap::new(),
            tx: VecDeque::new(),
            resend: VecDeque::new(),
            hello: Hello::Saying,
            say_hello_back: false,
            peer_saying_hello: false,
            last_recv: None,
            ack_from: None,
            window,
            last_tx: now,
            stats: Stats::default(),
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn mode(&self) -> Mode {
        self.cfg.mode
    }

    /// Messages queued for transmission and messages waiting for an acknowledgement.
    pub fn queue_lens(&self) -> (usize, usize) {
        (self.tx.len(), self.resend.len())
    }

    /// The entries received from peers.
    pub fn external(&self) -> impl Iterator<Item = (&Key, &External)> {
        self.external.iter()
    }

    /// The entries this box announces (deleted ones awaiting acknowledgement excluded).
    pub fn internal(&self) -> impl Iterator<Item = &Entry> {
        self.internal
            .values()
            .filter(|i| i.state != ObjState::Dead)
            .map(|i| &i.entry)
    }

    /// Entries kept for the peer, deletions not yet acknowledged included.
    pub fn tracked(&self) -> usize {
        self.internal.len()
    }

    /// Announces a new or changed local entry.
    pub fn upsert(&mut self, entry: Entry) {
        let key = entry.key();
        let obj = self.internal.entry(key).or_insert(Internal {
            entry,
            state: ObjState::New,
            queued: false,
        });
        // 1.4.7 sends NEW for an object it has not updated yet, UPD after, DEL once dead
        obj.state = match obj.state {
            ObjState::Dead => ObjState::New,
            _ if obj.entry == entry => obj.state,
            _ => ObjState::Alive,
        };
        obj.entry = entry;
        self.enqueue(key);
    }

    /// Announces that a local entry is gone.
    pub fn remove(&mut self, key: &Key) {
        if let Some(obj) = self.internal.get_mut(key) {
            obj.state = ObjState::Dead;
            self.enqueue(*key);
        }
    }

    /// Asks the peer for its whole table (`conntrackd -n`).
    pub fn request_resync(&mut self) {
        self.tx.push_back(Tx::Control {
            flags: flags::RESYNC,
            from: 0,
            to: 0,
        });
    }

    /// Queues the whole internal cache for sending (`conntrackd -B`, or the answer to a
    /// peer's resync request).
    pub fn send_bulk(&mut self) {
        let keys: Vec<Key> = self
            .internal
            .iter()
            .filter(|(_, o)| o.state != ObjState::Dead)
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            self.enqueue(k);
            self.stats.resent += 1;
        }
    }

    /// Moves an object to the transmit queue: out of the resend queue if it waits there
    /// (`ftfw_enqueue`), so each entry is queued once.
    fn enqueue(&mut self, key: Key) {
        let Some(obj) = self.internal.get_mut(&key) else {
            return;
        };
        if obj.queued {
            if let Some(i) = self
                .resend
                .iter()
                .position(|r| matches!(r, Resend::Object { key: k, .. } if *k == key))
            {
                self.resend.remove(i);
                self.tx.push_back(Tx::Object(key));
            }
            // already in the transmit queue otherwise: it will go with its latest state
        } else {
            obj.queued = true;
            self.tx.push_back(Tx::Object(key));
        }
    }

    /// Handles one datagram from the peer; returns what each message did.
    pub fn receive(&mut self, datagram: &[u8], now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        self.stats.datagrams_received += 1;
        for m in wire::messages(datagram) {
            let ev = match m {
                Ok(m) => self.receive_message(&m, now),
                Err(e) => Event::Malformed(e),
            };
            if let Event::Malformed(e) = ev {
                self.stats.malformed[e.index()] += 1;
            }
            events.push(ev);
        }
        events
    }

    fn receive_message(&mut self, m: &Message<&[u8]>, now: Instant) -> Event {
        self.stats.msgs_received += 1;
        if m.version() != wire::VERSION {
            return Event::Malformed(Error::BadVersion);
        }
        let verdict = match self.cfg.mode {
            Mode::Ftfw => self.ftfw_recv(m),
            Mode::Notrack => self.notrack_recv(m),
        };
        match verdict {
            Verdict::Data => {}
            Verdict::Control => return Event::Control(m.flags()),
            Verdict::Bad => return Event::Malformed(Error::BadHeader),
            Verdict::Drop => return Event::Old(m.seq()),
        }
        if m.kind() > kind::STATE_MAX {
            return Event::Malformed(Error::BadType);
        }
        let entry = match Entry::parse(m) {
            Ok(e) => e,
            Err(e) => return Event::Malformed(e),
        };
        let key = entry.key();
        match m.kind() {
            kind::CT_NEW | kind::CT_UPD => {
                if !self.external.contains_key(&key)
                    && self.external.len() >= self.cfg.external_limit
                {
                    self.stats.external_full += 1;
                    return Event::CacheFull(key);
                }
                let since = self.external.get(&key).map_or(now, |x| x.since);
                self.external.insert(
                    key,
                    External {
                        entry,
                        since,
                        updated: now,
                    },
                );
                Event::Updated(key)
            }
            _ => {
                self.external.remove(&key);
                Event::Removed(key)
            }
        }
    }

    /// 1.4.7's `nethdr_track_seq` + `nethdr_track_update_seq`: classifies `seq` against the
    /// receive counter.
    fn track(&mut self, seq: u32) -> Track {
        match self.last_recv {
            None => Track::Unset,
            Some(last) if seq == last.wrapping_add(1) => Track::InSync,
            Some(last) if after(seq, last.wrapping_add(1)) => {
                self.stats.lost += u64::from(seq.wrapping_sub(last.wrapping_add(1)));
                Track::After
            }
            Some(_) => {
                self.stats.before += 1;
                Track::Before
            }
        }
    }

    fn ftfw_recv(&mut self, m: &Message<&[u8]>) -> Verdict {
        let v = self.ftfw_track(m);
        if m.flags() & flags::HELLO_BACK != 0 && self.hello == Hello::Saying {
            self.hello = Hello::Done;
            // While we said hello the peer took each message as a fresh start and could not
            // NACK a gap: send again what it has not acknowledged (after this message's own
            // ACK, if it is one, was applied).
            self.requeue_unacknowledged();
        }
        v
    }

    /// 1.4.7's `ftfw_recv`: hello, sequence tracking, ACK/NACK.
    fn ftfw_track(&mut self, m: &Message<&[u8]>) -> Verdict {
        let seq = m.seq();
        let expected = self.last_recv.map(|l| l.wrapping_add(1));
        let hello = m.flags() & flags::HELLO != 0;
        if hello {
            self.say_hello_back = true;
        }
        // 1.4.7 takes every hello as a restart and tracks nothing while the peer says hello,
        // so losses then are never NACKed. Here only the first hello of a phase restarts the
        // counter; the following ones (same peer, still waiting for our hello back) are
        // tracked, and their gaps NACKed.
        let mut restart = hello && !(self.peer_saying_hello && self.last_recv.is_some());
        // A hello older than what we had cannot be a gap: the peer restarted again (its new
        // counter starts at the time in seconds, maybe below the old one). Taking it as a
        // replay would drop everything it sends until its counter caught up.
        if hello && !restart && self.last_recv.is_some_and(|l| !after(seq, l)) {
            restart = true;
        }
        self.peer_saying_hello = hello;
        let class = if restart {
            if let Some(from) = self.ack_from {
                if before(seq, from) {
                    self.window = i64::from(self.cfg.window_size) - 1;
                    self.ack_from = Some(seq);
                }
            }
            // 1.4.7 flushes its whole resend queue here; only the control messages go, as
            // they name sequence numbers of the peer's past. Entries stay until acknowledged,
            // so those sent while the peer restarts are not lost.
            self.resend.retain(|r| matches!(r, Resend::Object { .. }));
            Track::InSync
        } else {
            self.track(seq)
        };
        let verdict = match class {
            Track::After => {
                let v = self.digest(m);
                if v == Verdict::Bad {
                    return v;
                }
                let exp = expected.unwrap_or(seq);
                if let Some(from) = self.ack_from.take() {
                    self.push_ctl(flags::ACK, from, exp.wrapping_sub(1));
                }
                self.push_ctl(flags::NACK, exp, seq.wrapping_sub(1));
                self.stats.nacks_sent += 1;
                self.window = i64::from(self.cfg.window_size) - 1;
                self.ack_from = Some(seq);
                v
            }
            Track::Before => Verdict::Drop,
            Track::Unset | Track::InSync => {
                let v = self.digest(m);
                if v == Verdict::Bad {
                    return v;
                }
                let from = *self.ack_from.get_or_insert(seq);
                self.window -= 1;
                if self.window <= 0 {
                    self.push_ctl(flags::ACK, from, seq);
                    self.window = i64::from(self.cfg.window_size);
                    self.ack_from = None;
                }
                v
            }
        };
        if matches!(verdict, Verdict::Data | Verdict::Control) {
            self.last_recv = Some(seq);
        }
        verdict
    }

    fn push_ctl(&mut self, flags: u8, from: u32, to: u32) {
        if flags & flags::ACK != 0 {
            self.stats.acks_sent += 1;
        }
        self.tx.push_back(Tx::Control { flags, from, to });
    }

    /// 1.4.7's `digest_msg` of FTFW: acts on ACK, NACK, RESYNC.
    fn digest(&mut self, m: &Message<&[u8]>) -> Verdict {
        if m.is_data() {
            return Verdict::Data;
        }
        let (k, f) = (m.kind(), m.flags());
        if k == kind::CTL && f & flags::ACK != 0 {
            if before(m.to(), m.from()) {
                return Verdict::Bad;
            }
            self.acked(m.from(), m.to());
            Verdict::Control
        } else if k == kind::CTL && f & flags::NACK != 0 {
            if before(m.to(), m.from()) {
                return Verdict::Bad;
            }
            self.nacked(m.from(), m.to());
            Verdict::Control
        } else if k == kind::CTL && f & flags::RESYNC != 0 {
            self.stats.resync_requests += 1;
            self.send_bulk();
            Verdict::Control
        } else if k == kind::CTL && f & flags::ALIVE != 0 {
            Verdict::Control
        } else {
            Verdict::Bad
        }
    }

    fn in_range(seq: u32, from: u32, to: u32) -> bool {
        !before(seq, from) && !after(seq, to)
    }

    fn requeue_unacknowledged(&mut self) {
        let mut keep = VecDeque::new();
        for r in self.resend.drain(..) {
            match r {
                Resend::Object { key, .. } => {
                    self.tx.push_back(Tx::Object(key));
                    self.stats.resent += 1;
                }
                c => keep.push_back(c),
            }
        }
        self.resend = keep;
    }

    /// Entries sent and not yet acknowledged (FTFW).
    pub fn unacknowledged(&self) -> usize {
        self.resend
            .iter()
            .filter(|r| matches!(r, Resend::Object { .. }))
            .count()
    }

    /// Forgets what the peer acknowledged.
    fn acked(&mut self, from: u32, to: u32) {
        let internal = &mut self.internal;
        // While we say hello, the peer (1.4.7) tracks nothing and its ACKs cover what it
        // never got: keep the entries, they are sent again once the hello completes.
        let trust_objects = self.hello == Hello::Done;
        self.resend.retain(|r| {
            if !Self::in_range(r.seq(), from, to) {
                return true;
            }
            if !trust_objects && matches!(r, Resend::Object { .. }) {
                return true;
            }
            if let Resend::Object { key, .. } = r {
                if let Some(o) = internal.get_mut(key) {
                    o.queued = false;
                    if o.state == ObjState::Dead {
                        internal.remove(key);
                    }
                }
            }
            false
        });
    }

    /// Sends again what the peer missed.
    fn nacked(&mut self, from: u32, to: u32) {
        let mut keep = VecDeque::with_capacity(self.resend.len());
        for r in self.resend.drain(..) {
            if !Self::in_range(r.seq(), from, to) {
                keep.push_back(r);
                continue;
            }
            match r {
                Resend::Object { key, .. } => {
                    self.tx.push_back(Tx::Object(key));
                    self.stats.resent += 1;
                }
                Resend::Control {
                    flags, from, to, ..
                } => self.tx.push_back(Tx::Control { flags, from, to }),
            }
        }
        self.resend = keep;
    }

    fn notrack_recv(&mut self, m: &Message<&[u8]>) -> Verdict {
        self.track(m.seq());
        let v = if m.is_data() {
            Verdict::Data
        } else if m.kind() == kind::CTL && m.flags() & flags::RESYNC != 0 {
            self.stats.resync_requests += 1;
            self.send_bulk();
            Verdict::Control
        } else if m.kind() == kind::CTL && m.flags() & flags::ALIVE != 0 {
            Verdict::Control
        } else {
            Verdict::Bad
        };
        if v != Verdict::Bad {
            self.last_recv = Some(m.seq());
        }
        v
    }

    /// Runs the timers: after `alive_interval` without sending, queues the pending ACK (FTFW)
    /// or an alive message. Returns when it wants to be called again.
    pub fn poll(&mut self, now: Instant) -> Instant {
        let due = self.last_tx + self.cfg.alive_interval;
        if now >= due && self.tx.is_empty() {
            match (self.cfg.mode, self.ack_from, self.last_recv) {
                (Mode::Ftfw, Some(from), Some(last)) => {
                    self.push_ctl(flags::ACK, from, last);
                    self.ack_from = None;
                }
                _ => self.tx.push_back(Tx::Control {
                    flags: flags::ALIVE,
                    from: 0,
                    to: 0,
                }),
            }
            // it counts as sent once it leaves; until then, do not queue another
            self.last_tx = now;
        }
        self.last_tx + self.cfg.alive_interval
    }

    fn peek_hello(&self) -> u8 {
        if self.cfg.mode != Mode::Ftfw {
            return 0;
        }
        let mut f = 0;
        if self.hello == Hello::Saying {
            f |= flags::HELLO;
        }
        if self.say_hello_back {
            f |= flags::HELLO_BACK;
        }
        f
    }

    fn take_seq(&mut self) -> u32 {
        let s = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        s
    }

    /// Builds the next datagram from the transmit queue into `buf` (at most
    /// `max_datagram` bytes of it); returns its length, 0 when there is nothing to send.
    pub fn poll_transmit(&mut self, buf: &mut [u8], now: Instant) -> usize {
        let cap = buf.len().min(self.cfg.max_datagram);
        let mut w = Writer::new(&mut buf[..cap]);
        let mut count = 0u64;
        while let Some(t) = self.tx.front().copied() {
            let seq = self.next_seq;
            // the hello flags are consumed only once the message is known to fit
            let hello = self.peek_hello();
            let fits = match t {
                Tx::Control { flags, from, to } => w.control(flags | hello, seq, from, to).is_ok(),
                Tx::Object(key) => match self.internal.get(&key) {
                    Some(o) => {
                        let k = match o.state {
                            ObjState::New => kind::CT_NEW,
                            ObjState::Alive => kind::CT_UPD,
                            ObjState::Dead => kind::CT_DEL,
                        };
                        o.entry.emit(&mut w, k, hello, seq).is_ok()
                    }
                    None => {
                        self.tx.pop_front();
                        continue;
                    }
                },
            };
            if !fits {
                if w.is_empty() {
                    // cannot fit even alone: drop it rather than stall the queue
                    self.tx.pop_front();
                    continue;
                }
                break;
            }
            self.say_hello_back = false;
            self.take_seq();
            self.tx.pop_front();
            count += 1;
            self.after_send(t, seq);
        }
        let n = w.len();
        if n > 0 {
            self.stats.msgs_sent += count;
            self.stats.datagrams_sent += 1;
            self.last_tx = now;
        }
        n
    }

    fn after_send(&mut self, t: Tx, seq: u32) {
        match (self.cfg.mode, t) {
            (Mode::Ftfw, Tx::Object(key)) => {
                self.push_resend(Resend::Object { key, seq });
            }
            (Mode::Ftfw, Tx::Control { flags, from, to }) if wire::has_range(kind::CTL, flags) => {
                self.push_resend(Resend::Control {
                    flags,
                    from,
                    to,
                    seq,
                });
            }
            (Mode::Notrack, Tx::Object(key)) => {
                if let Some(o) = self.internal.get_mut(&key) {
                    o.queued = false;
                    if o.state == ObjState::Dead {
                        self.internal.remove(&key);
                    } else {
                        o.state = ObjState::Alive;
                    }
                }
            }
            _ => {}
        }
    }

    fn push_resend(&mut self, r: Resend) {
        if self.resend.len() >= self.cfg.resend_queue_size {
            if let Some(Resend::Object { key, .. }) = self.resend.pop_front() {
                if let Some(o) = self.internal.get_mut(&key) {
                    o.queued = false;
                    // a deletion nobody will acknowledge now: forget the entry
                    if o.state == ObjState::Dead {
                        self.internal.remove(&key);
                    }
                }
            }
            self.stats.resend_overflow += 1;
        }
        self.resend.push_back(r);
    }

    /// The external cache as `conntrackd -e` lists it, one entry a line, sorted by tuple.
    pub fn list_external(&self, now: Instant) -> String {
        let sorted: BTreeMap<&Key, &External> = self.external.iter().collect();
        let mut s = String::new();
        for x in sorted.values() {
            let _ = writeln!(
                s,
                "{} [active since {}s]",
                crate::list::line(&x.entry),
                now.saturating_duration_since(x.since).as_secs()
            );
        }
        s
    }

    /// The internal cache in the same format.
    pub fn list_internal(&self) -> String {
        let mut v: Vec<&Entry> = self.internal().collect();
        v.sort_by_key(|e| e.key());
        v.iter()
            .map(|e| format!("{}\n", crate::list::line(e)))
            .collect()
    }

    /// The counters as `conntrackd -s` lists its message tracking, and the refusal reasons.
    pub fn stats_text(&self) -> String {
        let s = &self.stats;
        let mut t = format!(
            "message tracking:\n{:>20} Malformed msgs {:>20} Lost msgs\n",
            s.malformed_total(),
            s.lost
        );
        for e in Error::ALL {
            let _ = writeln!(t, "malformed {}: {}", e.name(), s.malformed[e.index()]);
        }
        let _ = writeln!(
            t,
            "lost: {}\nbefore: {}\nmsgs received: {}\nmsgs sent: {}\nresent: {}\nnacks sent: {}\n\
             acks sent: {}\nresend overflow: {}\nresync requests: {}\nexternal full: {}\n\
             external: {}\ninternal: {}\ntx queue: {}\nresend queue: {}",
            s.lost,
            s.before,
            s.msgs_received,
            s.msgs_sent,
            s.resent,
            s.nacks_sent,
            s.acks_sent,
            s.resend_overflow,
            s.resync_requests,
            s.external_full,
            self.external.len(),
            self.internal().count(),
            self.tx.len(),
            self.resend.len()
        );
        t
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Data,
    Control,
    Bad,
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Track {
    Unset,
    InSync,
    After,
    Before,
}
