//! Connection events for the state sync, and imports of a peer's entries.

use super::*;

/// What happened to a connection, as the kernel's conntrack events say it (`conntrack -E`):
/// the state sync sends these to its peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtEventKind {
    /// Confirmed (its first packet accepted, or imported).
    New,
    /// TCP state, SEEN_REPLY or ASSURED changed (a refreshed timeout is no event).
    Update,
    /// Gone: expired, closed, early-dropped, deleted.
    Destroy,
}

/// One connection event: the entry as it was at that moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtEvent {
    pub kind: CtEventKind,
    /// `expires_at` is on the shard's tick clock; use `timeout_secs`.
    pub snap: crate::list::Snapshot,
    /// Seconds the entry had left.
    pub timeout_secs: u32,
}

/// An entry made from outside the data path: a peer's connection committed into this shard
/// (`fwd sync commit`), so that its packets are ESTABLISHED here too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Import {
    pub family: Family,
    pub proto: u8,
    pub orig: Tuple,
    /// The reply tuple with the NAT binding applied (for ICMP `sport` = id, `dport` =
    /// reply type << 8 | code, as in the table).
    pub reply: Tuple,
    pub nat: NatKind,
    /// TCP only; `None` for TCP takes ESTABLISHED.
    pub tcp_state: Option<TcpState>,
    pub seen_reply: bool,
    pub assured: bool,
    pub mark: u32,
    pub timeout_secs: u32,
}

impl Shard {
    /// Sends this shard's connection events to `p` from now on (a full queue drops the event
    /// and counts it in `events_dropped`; the push never blocks or allocates).
    pub fn set_events(&mut self, p: rtrb::Producer<CtEvent>) {
        self.events = Some(p);
    }

    /// Builds and queues an event about entry `idx` (out of line: only state changes get here).
    #[inline(never)]
    pub(super) fn emit(&mut self, kind: CtEventKind, idx: u32) {
        let e = &self.entries[idx as usize];
        let left = e.expires.wrapping_sub(self.now_t) as i32;
        let left_ticks = left.max(0) as u64;
        let timeout_secs = ((left_ticks << TICK_SHIFT) / 1_000_000_000) as u32;
        let snap = self.snapshot_at(idx, u64::from(e.expires) << TICK_SHIFT);
        let ev = CtEvent {
            kind,
            snap,
            timeout_secs,
        };
        if let Some(p) = &mut self.events {
            if p.push(ev).is_err() {
                self.stats.events_dropped += 1;
            }
        }
    }

    /// Inserts a confirmed entry made elsewhere (see [`Import`]) at `now`. TCP window data is
    /// unknown, so it is picked up from the next segments, liberally, as the kernel does for an
    /// entry conntrackd commits. Refused: [`CtReason::Clash`] when either tuple is already
    /// tracked, [`CtReason::TableFull`] / [`CtReason::ChainFull`] when there is no room.
    pub fn import(&mut self, im: &Import, now: u64) -> Result<EntryId, CtReason> {
        let now_t = tick(now);
        self.now_t = now_t;
        let bucket = self.bucket(im.family, im.proto, &im.orig);
        if self.find(im.family, im.proto, &im.orig, now_t).is_some()
            || self.find(im.family, im.proto, &im.reply, now_t).is_some()
        {
            return Err(CtReason::Clash);
        }
        let nat_bits = match im.nat {
            NatKind::None => 0,
            NatKind::Src => S_SRC_NAT,
            NatKind::Dst => S_DST_NAT,
            NatKind::Both => S_SRC_NAT | S_DST_NAT,
        };
        let reply_bucket = if nat_bits == 0 {
            bucket
        } else {
            self.bucket(im.family, im.proto, &im.reply)
        };
        let nodes = if reply_bucket == bucket { 2 } else { 1 };
        if !self.chain_room(bucket, nodes, now_t)
            || (reply_bucket != bucket && !self.chain_room(reply_bucket, 1, now_t))
        {
            return Err(CtReason::ChainFull);
        }
        let Some(idx) = self.alloc(bucket, now_t) else {
            return Err(CtReason::TableFull);
        };
        let mut e = EMPTY;
        e.tuple = [im.orig, im.reply];
        e.family = im.family as u8;
        e.proto = im.proto;
        e.mark = im.mark;
        e.status = S_USED
            | S_CONFIRMED
            | nat_bits
            | if im.seen_reply { S_SEEN_REPLY } else { 0 }
            | if im.assured { S_ASSURED } else { 0 };
        match im.proto {
            PROTO_TCP => {
                let st = im.tcp_state.unwrap_or(TcpState::Established);
                e.pstate = st as u8;
                let f = tcp::F_SACK_PERM | tcp::F_BE_LIBERAL;
                e.l4[6] = u32::from_le_bytes([0, 0, f, f]);
            }
            crate::tuple::PROTO_UDP => e.l4[0] = now_t,
            crate::tuple::PROTO_ICMP | crate::tuple::PROTO_ICMPV6 => e.l4[0] = 1,
            _ => {}
        }
        let timeout = im.timeout_secs.clamp(1, crate::config::MAX_TIMEOUT_SECS);
        e.expires = now_t.wrapping_add(secs_to_ticks(timeout));
        self.entries[idx as usize] = e;
        self.link_hash(idx, bucket);
        self.timer_insert(idx);
        self.live += 1;
        self.stats.imported += 1;
        if self.events.is_some() {
            self.emit(CtEventKind::New, idx);
        }
        Ok(EntryId(idx))
    }

    /// The event [`Shard::emit`] would build for the first live entry (tests).
    #[cfg(test)]
    pub(super) fn emit_probe(&mut self) -> CtEvent {
        let idx = (0..self.slots())
            .find(|&i| self.entries[i as usize].status & S_CONFIRMED != 0)
            .expect("a live entry");
        let (p, mut c) = rtrb::RingBuffer::new(1);
        let old = self.events.replace(p);
        self.emit(CtEventKind::Update, idx);
        self.events = old;
        c.pop().unwrap()
    }
}
