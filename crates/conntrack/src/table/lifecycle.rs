//! An entry's life: slots allocated and freed (early drop), packets tracked, connections
//! confirmed or destroyed.

use super::*;

impl Shard {
    // ---- slots ------------------------------------------------------------------------

    pub(super) fn release(&mut self, idx: u32) {
        let e = &mut self.entries[idx as usize];
        e.status = 0;
        e.hnext[0] = self.free;
        self.free = idx;
    }

    /// Remove a confirmed entry from the index and the wheel and free its slot.
    pub(super) fn destroy(&mut self, idx: u32) {
        self.timer_unlink(idx);
        self.destroy_unlinked_timer(idx);
    }

    pub(super) fn destroy_unlinked_timer(&mut self, idx: u32) {
        if self.events.is_some() {
            self.emit(CtEventKind::Destroy, idx);
        }
        self.unlink_hash(idx);
        self.live -= 1;
        self.release(idx);
    }

    /// A free slot, early-dropping a connection that is not ASSURED (or a TCP one that is
    /// closing) from the buckets after `bucket` when the shard is full, as `early_drop()`.
    pub(super) fn alloc(&mut self, bucket: usize, now_t: u32) -> Option<u32> {
        if self.free == NIL {
            self.early_drop(bucket, now_t);
        }
        if self.free == NIL {
            return None;
        }
        let idx = self.free;
        self.free = self.entries[idx as usize].hnext[0];
        Some(idx)
    }

    pub(super) fn early_drop(&mut self, bucket: usize, now_t: u32) {
        for i in 0..EVICTION_RANGE {
            let b = (bucket as u32).wrapping_add(i) & self.mask;
            let mut n = self.buckets[b as usize];
            while n != NIL {
                let (idx, d) = (n >> 1, (n & 1) as usize);
                if self.evictable(idx, now_t) {
                    self.destroy(idx);
                    self.stats.early_drop += 1;
                    return;
                }
                n = self.entries[idx as usize].hnext[d];
            }
        }
    }

    /// An early-drop victim: not ASSURED, or TCP closing, or past its timeout.
    pub(super) fn evictable(&self, idx: u32, now_t: u32) -> bool {
        let e = &self.entries[idx as usize];
        let closing = e.proto == PROTO_TCP
            && matches!(
                TcpState::from_u8(e.pstate & 0x0f),
                TcpState::FinWait
                    | TcpState::CloseWait
                    | TcpState::LastAck
                    | TcpState::TimeWait
                    | TcpState::Close
            );
        e.status & S_ASSURED == 0 || closing || tick_reached(now_t, e.expires)
    }

    // ---- tracking ---------------------------------------------------------------------

    pub(super) fn count_invalid(&mut self, r: CtReason) -> Tracked {
        self.stats.invalid += 1;
        self.stats.reasons[r as usize] += 1;
        Tracked::invalid(r)
    }

    /// Track one packet. No allocation, no syscall. The result must go to [`Shard::commit`]
    /// before the next packet is tracked on this shard.
    pub fn track(&mut self, p: &CtPacket, now: u64) -> Tracked {
        self.track_at(p, None, None, now)
    }

    /// [`Shard::track`] for a packet whose flow hash is already known: `hash` is
    /// `p.flow_hash(key)` under this shard's key (the data path's parse stage computed it once
    /// for steering and conntrack alike).
    pub fn track_hashed(&mut self, p: &CtPacket, hash: u64, now: u64) -> Tracked {
        self.track_at(p, Some(hash), None, now)
    }

    /// [`Shard::track_hashed`] that starts from where [`Shard::probe_burst_hashed`] found the
    /// packet's key (`probe`, taken for `p.lookup_key()` with this `hash`): if the index has not
    /// changed since, the bucket's chain is not walked again; otherwise (an earlier packet of
    /// the burst confirmed or destroyed an entry) it is. The result is the same either way.
    pub fn track_probed(&mut self, p: &CtPacket, hash: u64, probe: &Probe, now: u64) -> Tracked {
        self.track_at(p, Some(hash), Some(probe), now)
    }

    #[inline(always)]
    pub(super) fn track_at(
        &mut self,
        p: &CtPacket,
        hash: Option<u64>,
        probe: Option<&Probe>,
        now: u64,
    ) -> Tracked {
        #[cfg(debug_assertions)]
        {
            debug_assert!(
                !self.pending,
                "Shard::track called before commit of the previous packet"
            );
            self.pending = true;
        }
        let now_t = tick(now);
        self.now_t = now_t;
        match p.l4 {
            L4::IcmpError(ref err) => return self.icmp_error(p, err, now_t),
            L4::Icmp { ty, .. } if p.family == Family::V6 && icmp::is_untracked_v6(ty) => {
                self.stats.untracked += 1;
                return Tracked::untracked();
            }
            L4::Tcp(ref seg) if !tcp::valid_flags(seg.flags) => {
                return self.count_invalid(CtReason::TcpBadFlags)
            }
            _ => {}
        }
        let key = p.tuple();
        let bucket = match hash {
            Some(h) => {
                debug_assert_eq!(
                    (h as u32 & self.mask) as usize,
                    self.bucket(p.family, p.proto, &key)
                );
                (h as u32 & self.mask) as usize
            }
            None => self.bucket(p.family, p.proto, &key),
        };
        let hit = match probe {
            Some(pr) if pr.gen == self.gen => {
                debug_assert_eq!(
                    pr.node,
                    self.find_from(self.buckets[bucket], p.family, p.proto, &key),
                    "a current probe is for this packet's key"
                );
                self.take_probed(pr.node, now_t)
            }
            _ => self.find_in(bucket, p.family, p.proto, &key, now_t),
        };
        if let Some((idx, dir)) = hit {
            self.stats.found += 1;
            match self.update(idx, dir, p, now_t) {
                Some(t) => return t,
                None => {
                    // TCP reopening a closed connection: forget the old one.
                    self.destroy(idx);
                }
            }
        }
        self.create(bucket, key, p, now_t)
    }

    /// [`Shard::find_in`]'s answer from a current probe's node (found live at the probe's
    /// `now`): an entry past its timeout at this `now` is destroyed on the spot, as the walk
    /// does.
    #[inline]
    fn take_probed(&mut self, node: u32, now_t: u32) -> Option<(u32, Dir)> {
        if node == NIL {
            return None;
        }
        let idx = node >> 1;
        if tick_reached(now_t, self.entries[idx as usize].expires) {
            self.destroy(idx);
            self.stats.expired += 1;
            return None;
        }
        Some((idx, Dir::from_bit(node & 1)))
    }

    /// Track a packet whose TCP, UDP, ICMP or ICMPv6 checksum is wrong (the caller verified it,
    /// as netfilter's `nf_conntrack_checksum` does in PREROUTING): INVALID, no entry created,
    /// looked up or changed. Commit it like any other.
    pub fn track_bad_checksum(&mut self) -> Tracked {
        #[cfg(debug_assertions)]
        {
            debug_assert!(
                !self.pending,
                "Shard::track called before commit of the previous packet"
            );
            self.pending = true;
        }
        self.count_invalid(CtReason::BadChecksum)
    }

    /// The packet belongs to entry `idx`; `None` asks for the entry to be replaced.
    pub(super) fn update(
        &mut self,
        idx: u32,
        dir: Dir,
        p: &CtPacket,
        now_t: u32,
    ) -> Option<Tracked> {
        // Only the fields needed: a copy of the whole entry costs more than the packet's work.
        let en = &mut self.entries[idx as usize];
        let status = en.status;
        let pstate0 = en.pstate;
        let seen_reply = status & S_SEEN_REPLY != 0;
        let state = if dir == Dir::Reply || seen_reply {
            CtState::Established
        } else {
            CtState::New
        };
        let mut action = Action::None;
        match p.l4 {
            L4::Tcp(ref seg) => {
                // Seen the reply and ASSURED: the full path would change neither.
                if status & (S_ASSURED | S_SEEN_REPLY) == S_ASSURED | S_SEEN_REPLY {
                    if let Some(timeout) =
                        tcp::established_ack(&mut en.pstate, &mut en.l4, dir, seg, &self.cfg)
                    {
                        self.refresh(idx, now_t, timeout);
                        return Some(Tracked::with(state, dir, idx, action));
                    }
                }
                let mut c = TcpConn::load(en.pstate, &en.l4);
                let verdict = tcp::packet(
                    &mut c,
                    dir,
                    seg,
                    seen_reply,
                    status & S_ASSURED != 0,
                    &self.cfg,
                );
                match verdict {
                    TcpVerdict::Reopen => return None,
                    TcpVerdict::Invalid(r) => {
                        // State untouched: an invalid segment changes nothing.
                        return Some(self.count_invalid(r));
                    }
                    TcpVerdict::Ignore => {
                        let en = &mut self.entries[idx as usize];
                        en.pstate = c.store(&mut en.l4);
                    }
                    TcpVerdict::Accept {
                        timeout,
                        assure,
                        kill,
                    } => {
                        let en = &mut self.entries[idx as usize];
                        en.pstate = c.store(&mut en.l4);
                        if assure {
                            en.status |= S_ASSURED;
                        }
                        if kill {
                            action = Action::Kill;
                        }
                        self.refresh(idx, now_t, timeout);
                    }
                }
            }
            L4::Udp { .. } => {
                let t = &self.cfg.timeouts;
                if seen_reply {
                    if tick_reached(now_t, en.l4[0]) {
                        let udp_stream = t.udp_stream;
                        self.entries[idx as usize].status |= S_ASSURED;
                        self.refresh(idx, now_t, udp_stream);
                    } else {
                        let udp = t.udp;
                        self.refresh(idx, now_t, udp);
                    }
                } else {
                    let udp = t.udp;
                    self.refresh(idx, now_t, udp);
                }
            }
            L4::Icmp { .. } => {
                // Old netfilter (the seed): count requests, destroy when all are answered.
                let en = &mut self.entries[idx as usize];
                if !self.cfg.icmp_destroy_on_reply {
                    let to = self.icmp_timeout(p.family);
                    self.refresh(idx, now_t, to);
                } else if dir == Dir::Reply {
                    en.l4[0] = en.l4[0].saturating_sub(1);
                    if en.l4[0] == 0 {
                        action = Action::Kill;
                    }
                } else {
                    en.l4[0] = en.l4[0].saturating_add(1);
                    let to = self.icmp_timeout(p.family);
                    self.refresh(idx, now_t, to);
                }
            }
            L4::Other => {
                let to = self.cfg.timeouts.generic;
                self.refresh(idx, now_t, to);
            }
            L4::IcmpError(_) => unreachable!("errors are handled before lookup"),
        }
        if dir == Dir::Reply {
            self.entries[idx as usize].status |= S_SEEN_REPLY;
        }
        if self.events.is_some() {
            let en = &self.entries[idx as usize];
            if en.status != status || (en.pstate ^ pstate0) & 0x0f != 0 {
                self.emit(CtEventKind::Update, idx);
            }
        }
        Some(Tracked::with(state, dir, idx, action))
    }

    pub(super) fn icmp_timeout(&self, family: Family) -> u32 {
        match family {
            Family::V4 => self.cfg.timeouts.icmp,
            Family::V6 => self.cfg.timeouts.icmpv6,
        }
    }

    pub(super) fn create(
        &mut self,
        bucket: usize,
        key: Tuple,
        p: &CtPacket,
        now_t: u32,
    ) -> Tracked {
        let tcp_conn = match p.l4 {
            L4::Icmp { ty, .. } if !icmp::is_request(p.family, ty) => {
                return self.count_invalid(CtReason::IcmpNotRequest)
            }
            L4::Tcp(ref seg) => match TcpConn::new(seg, &self.cfg) {
                Ok(c) => Some(c),
                Err(r) => return self.count_invalid(r),
            },
            _ => None,
        };
        let Some(reply) = key.invert(p.family, p.proto) else {
            return self.count_invalid(CtReason::IcmpNotRequest);
        };
        // Both nodes go into this chain unless NAT moves the reply tuple (checked at commit).
        if !self.chain_room(bucket, 2, now_t) {
            self.stats.reasons[CtReason::ChainFull as usize] += 1;
            let mut t = Tracked::invalid(CtReason::ChainFull);
            t.drop = true;
            return t;
        }
        let Some(idx) = self.alloc(bucket, now_t) else {
            self.stats.reasons[CtReason::TableFull as usize] += 1;
            let mut t = Tracked::invalid(CtReason::TableFull);
            t.drop = true;
            return t;
        };
        let t = &self.cfg.timeouts;
        let mut e = EMPTY;
        e.tuple = [key, reply];
        e.family = p.family as u8;
        e.proto = p.proto;
        e.status = S_USED;
        let timeout = match p.l4 {
            L4::Tcp(ref seg) => {
                let mut c = tcp_conn.expect("TCP has its state");
                match tcp::packet(&mut c, Dir::Original, seg, false, false, &self.cfg) {
                    TcpVerdict::Accept { timeout, .. } => {
                        e.pstate = c.store(&mut e.l4);
                        timeout
                    }
                    TcpVerdict::Invalid(r) => {
                        self.release(idx);
                        return self.count_invalid(r);
                    }
                    TcpVerdict::Ignore | TcpVerdict::Reopen => {
                        self.release(idx);
                        return self.count_invalid(CtReason::TcpInvalidTransition);
                    }
                }
            }
            L4::Udp { .. } => {
                e.l4[0] = now_t.wrapping_add(secs_to_ticks(2));
                t.udp
            }
            L4::Icmp { .. } => {
                e.l4[0] = 1;
                self.icmp_timeout(p.family)
            }
            _ => t.generic,
        };
        e.expires = now_t.wrapping_add(secs_to_ticks(timeout));
        self.entries[idx as usize] = e;
        self.stats.new += 1;
        let mut t = Tracked::with(CtState::New, Dir::Original, idx, Action::Confirm);
        t.bucket = bucket as u32;
        t
    }

    /// An ICMP or ICMPv6 error: RELATED to the connection of the embedded header, if the
    /// error goes to one of that connection's endpoints (`nf_conntrack_inet_error`).
    pub(super) fn icmp_error(&mut self, p: &CtPacket, err: &IcmpErrorInfo, now_t: u32) -> Tracked {
        let Some(inv) = err.inner.invert(p.family, err.inner_proto) else {
            return self.count_invalid(CtReason::IcmpErrorBadInner);
        };
        let Some((idx, dir)) = self.find(p.family, err.inner_proto, &inv, now_t) else {
            return self.count_invalid(CtReason::IcmpErrorNoConn);
        };
        let e = &self.entries[idx as usize];
        if e.tuple[dir.idx()].dst != p.dst {
            return self.count_invalid(CtReason::IcmpErrorForged);
        }
        let kill = !self.cfg.keep_on_icmp_unreachable
            && icmp::is_unreachable(p.family, err.ty, err.code)
            && e.status & S_ASSURED == 0;
        self.stats.related += 1;
        let action = if kill { Action::Kill } else { Action::None };
        Tracked::with(CtState::Related, dir, idx, action)
    }

    /// Finish a packet: confirm a new connection if its packet was `accepted`, destroy an entry
    /// whose last packet this was. Returns `false` if the packet must be dropped after all (a
    /// new connection clashed with one confirmed since it was tracked). The same as
    /// [`Tracked::confirm`] (accepted) or [`Tracked::abandon`] (dropped).
    pub fn commit(&mut self, t: Tracked, accepted: bool) -> bool {
        self.finish(t, accepted).is_ok()
    }

    /// Ends `t`'s packet (see [`Tracked::confirm`]); `t` is consumed, so it happens once.
    pub(super) fn finish(&mut self, t: Tracked, accepted: bool) -> Result<(), CtReason> {
        #[cfg(debug_assertions)]
        {
            self.pending = false;
        }
        let Some(EntryId(idx)) = t.entry else {
            return Ok(());
        };
        // A `Tracked` is consumed here, so this is its only commit; but a caller that tracked
        // another packet of this shard in between (a debug build asserts it did not) may have
        // changed the entry since: then change nothing rather than free a slot twice.
        let status = self.entries[idx as usize].status;
        let pending = status & S_USED != 0 && status & S_CONFIRMED == 0;
        match t.action {
            Action::Kill | Action::None if status & S_CONFIRMED == 0 => return Ok(()),
            Action::Confirm if !pending => return Ok(()),
            _ => {}
        }
        match t.action {
            Action::None => Ok(()),
            Action::Kill => {
                self.destroy(idx);
                self.stats.deleted += 1;
                Ok(())
            }
            Action::Confirm if !accepted => {
                self.release(idx);
                Ok(())
            }
            Action::Confirm => {
                let bucket = t.bucket as usize;
                if self.clashes(idx, bucket) {
                    self.release(idx);
                    self.stats.reasons[CtReason::Clash as usize] += 1;
                    return Err(CtReason::Clash);
                }
                let reply_bucket = self.reply_bucket(idx, bucket);
                if reply_bucket != bucket && !self.chain_room(reply_bucket, 1, self.now_t) {
                    self.release(idx);
                    self.stats.reasons[CtReason::ChainFull as usize] += 1;
                    return Err(CtReason::ChainFull);
                }
                self.entries[idx as usize].status |= S_CONFIRMED;
                self.link_hash(idx, bucket);
                self.timer_insert(idx);
                self.live += 1;
                self.stats.confirmed += 1;
                if self.events.is_some() {
                    self.emit(CtEventKind::New, idx);
                }
                Ok(())
            }
        }
    }
}
