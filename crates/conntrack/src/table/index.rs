//! The hash index: buckets of chained nodes (an entry is a node per direction), lookups and
//! the burst lookups that overlap their cache misses.

use super::*;

impl Shard {
    // ---- hash index -------------------------------------------------------------------

    #[inline]
    pub(super) fn bucket(&self, family: Family, proto: u8, t: &Tuple) -> usize {
        (flow_hash(&self.key, family, proto, t) as u32 & self.mask) as usize
    }

    /// Bucket of the reply tuple: the original's unless NAT changed the reply tuple (the hash
    /// is symmetric).
    pub(super) fn reply_bucket(&self, idx: u32, orig_bucket: usize) -> usize {
        let e = &self.entries[idx as usize];
        if e.status & (S_SRC_NAT | S_DST_NAT) == 0 {
            orig_bucket
        } else {
            self.bucket(Family::from_u8(e.family), e.proto, &e.tuple[1])
        }
    }

    pub(super) fn link_hash(&mut self, idx: u32, orig_bucket: usize) {
        self.step_gen();
        let reply_bucket = self.reply_bucket(idx, orig_bucket);
        for (d, b) in [(0usize, orig_bucket), (1, reply_bucket)] {
            self.entries[idx as usize].hnext[d] = self.buckets[b];
            self.buckets[b] = idx << 1 | d as u32;
        }
    }

    /// A confirmed entry already has one of this unconfirmed entry's tuples (possible when NAT
    /// rewrote reply tuples).
    pub(super) fn clashes(&self, idx: u32, orig_bucket: usize) -> bool {
        let e = &self.entries[idx as usize];
        let reply_bucket = self.reply_bucket(idx, orig_bucket);
        [(0usize, orig_bucket), (1, reply_bucket)]
            .iter()
            .any(|&(d, b)| self.chain_has(b, e.family, e.proto, &e.tuple[d]))
    }

    /// Nodes in a chain, counted up to [`MAX_CHAIN`] (a chain never holds more).
    pub(super) fn chain_len(&self, bucket: usize) -> u32 {
        let mut n = self.buckets[bucket];
        let mut len = 0;
        while n != NIL && len < MAX_CHAIN {
            len += 1;
            n = self.entries[(n >> 1) as usize].hnext[(n & 1) as usize];
        }
        len
    }

    /// Room for `nodes` more nodes in a chain, early-dropping one of its connections that is
    /// not ASSURED (or is closing, or past its timeout) if it is full.
    pub(super) fn chain_room(&mut self, bucket: usize, nodes: u32, now_t: u32) -> bool {
        if self.chain_len(bucket) + nodes <= MAX_CHAIN {
            return true;
        }
        let mut n = self.buckets[bucket];
        while n != NIL {
            let (idx, d) = (n >> 1, (n & 1) as usize);
            if self.evictable(idx, now_t) {
                self.destroy(idx);
                self.stats.early_drop += 1;
                self.stats.chain_early_drop += 1;
                return self.chain_len(bucket) + nodes <= MAX_CHAIN;
            }
            n = self.entries[idx as usize].hnext[d];
        }
        false
    }

    pub(super) fn chain_has(&self, bucket: usize, family: u8, proto: u8, t: &Tuple) -> bool {
        let mut n = self.buckets[bucket];
        while n != NIL {
            let (i, d) = (n >> 1, (n & 1) as usize);
            let o = &self.entries[i as usize];
            if o.tuple[d] == *t && o.proto == proto && o.family == family {
                return true;
            }
            n = o.hnext[d];
        }
        false
    }

    pub(super) fn unlink_hash(&mut self, idx: u32) {
        self.step_gen();
        let e = self.entries[idx as usize];
        let b0 = self.bucket(Family::from_u8(e.family), e.proto, &e.tuple[0]);
        let b1 = self.reply_bucket(idx, b0);
        for (d, b) in [(0u32, b0), (1, b1)] {
            let node = idx << 1 | d;
            // Read afresh: unlinking direction 0 may have rewritten direction 1's link.
            let next = self.entries[idx as usize].hnext[d as usize];
            if self.buckets[b] == node {
                self.buckets[b] = next;
                continue;
            }
            let mut n = self.buckets[b];
            while n != NIL {
                let (ni, nd) = ((n >> 1) as usize, (n & 1) as usize);
                let after = self.entries[ni].hnext[nd];
                if after == node {
                    self.entries[ni].hnext[nd] = next;
                    break;
                }
                n = after;
            }
        }
    }

    /// The confirmed entry with `t` as one of its tuples, and which; an entry found past its
    /// timeout is destroyed on the spot (as netfilter's lookup does) and not returned.
    #[inline]
    pub(super) fn find(
        &mut self,
        family: Family,
        proto: u8,
        t: &Tuple,
        now_t: u32,
    ) -> Option<(u32, Dir)> {
        let b = self.bucket(family, proto, t);
        self.find_in(b, family, proto, t, now_t)
    }

    #[inline]
    pub(super) fn find_in(
        &mut self,
        bucket: usize,
        family: Family,
        proto: u8,
        t: &Tuple,
        now_t: u32,
    ) -> Option<(u32, Dir)> {
        let mut n = self.buckets[bucket];
        while n != NIL {
            let (idx, d) = (n >> 1, (n & 1) as usize);
            let e = &self.entries[idx as usize];
            if e.tuple[d] == *t && e.proto == proto && e.family == family as u8 {
                if tick_reached(now_t, e.expires) {
                    self.destroy(idx);
                    self.stats.expired += 1;
                    return None;
                }
                return Some((idx, Dir::from_bit(d as u32)));
            }
            n = e.hnext[d];
        }
        None
    }

    /// Lookup without side effects: the entry and direction of a tuple, if confirmed and live.
    pub fn lookup(&self, family: Family, proto: u8, t: &Tuple, now: u64) -> Option<(EntryId, Dir)> {
        let mut n = self.buckets[self.bucket(family, proto, t)];
        while n != NIL {
            let (idx, d) = (n >> 1, (n & 1) as usize);
            let e = &self.entries[idx as usize];
            if e.tuple[d] == *t && e.proto == proto && e.family == family as u8 {
                if tick_reached(tick(now), e.expires) {
                    return None;
                }
                return Some((EntryId(idx), Dir::from_bit(d as u32)));
            }
            n = e.hnext[d];
        }
        None
    }

    /// Index of the entry a chain head points to, or 0 for an empty chain, without a branch
    /// (an empty bucket is common and unpredictable).
    #[inline(always)]
    pub(super) fn head_entry(h: u32) -> usize {
        let empty = u32::from(h == NIL);
        ((h >> 1) & empty.wrapping_sub(1)) as usize
    }

    /// Touch the bucket heads, then the first entries, of a burst of keys before looking them up
    /// one by one: the loads of different packets are independent and branch-free, so the CPU
    /// overlaps their cache misses instead of paying them in series (safe code cannot issue
    /// prefetch instructions). Returns a value only so the loads cannot be optimised away.
    pub fn warm(&self, keys: &[(Family, u8, Tuple)]) -> u32 {
        let mut heads = [NIL; 64];
        let mut acc = 0u32;
        for chunk in keys.chunks(64) {
            for (h, (family, proto, t)) in heads.iter_mut().zip(chunk) {
                *h = self.buckets[self.bucket(*family, *proto, t)];
            }
            for &h in &heads[..chunk.len()] {
                acc ^= self.entries[Self::head_entry(h)].touch();
            }
        }
        acc
    }

    /// [`Shard::warm`] for a burst of packets (ICMP errors warm their connection's entry).
    pub fn warm_packets(&self, pkts: &[CtPacket]) -> u32 {
        let mut keys = [(Family::V4, 0u8, Tuple::default()); 64];
        let mut acc = 0;
        for chunk in pkts.chunks(64) {
            let mut n = 0;
            for k in chunk.iter().filter_map(CtPacket::lookup_key) {
                keys[n] = k;
                n += 1;
            }
            acc ^= self.warm(&keys[..n]);
        }
        acc
    }

    /// [`Shard::lookup`] for a burst, with the loads of all keys overlapped as in
    /// [`Shard::warm`].
    pub fn lookup_burst(
        &self,
        keys: &[(Family, u8, Tuple)],
        now: u64,
        out: &mut [Option<(EntryId, Dir)>],
    ) {
        let now_t = tick(now);
        let mut nodes = [NIL; 64];
        for (kc, oc) in keys.chunks(64).zip(out.chunks_mut(64)) {
            for (n, (family, proto, t)) in nodes.iter_mut().zip(kc) {
                *n = self.buckets[self.bucket(*family, *proto, t)];
            }
            let mut acc = 0u32;
            for &n in &nodes[..kc.len()] {
                acc ^= self.entries[Self::head_entry(n)].touch();
            }
            core::hint::black_box(acc);
            for ((n, (family, proto, t)), o) in nodes.iter().zip(kc).zip(oc.iter_mut()) {
                let mut n = *n;
                *o = None;
                while n != NIL {
                    let (idx, d) = (n >> 1, (n & 1) as usize);
                    let e = &self.entries[idx as usize];
                    if e.tuple[d] == *t && e.proto == *proto && e.family == *family as u8 {
                        if !tick_reached(now_t, e.expires) {
                            *o = Some((EntryId(idx), Dir::from_bit(d as u32)));
                        }
                        break;
                    }
                    n = e.hnext[d];
                }
            }
        }
    }

    /// [`Shard::warm`] for keys whose flow hashes are already known (`None`: nothing to load).
    pub fn warm_hashed(&self, keys: &[Option<HashedKey>]) -> u32 {
        let mut heads = [NIL; 64];
        let mut acc = 0u32;
        for chunk in keys.chunks(64) {
            for (h, k) in heads.iter_mut().zip(chunk) {
                *h = match k {
                    Some((_, hash)) => self.buckets[(*hash as u32 & self.mask) as usize],
                    None => NIL,
                };
            }
            for &h in &heads[..chunk.len()] {
                acc ^= self.entries[Self::head_entry(h)].touch();
            }
        }
        core::hint::black_box(acc)
    }

    /// [`Shard::lookup_burst`] over keys whose flow hashes are already known (the data path
    /// hashes each frame once, in its parse stage): `keys[i]` is `(key, flow_hash(key))` or
    /// `None` (no flow: `out[i]` is `None`). Bucket heads, then entries, are loaded for all keys
    /// before any chain is walked, so their cache misses overlap.
    pub fn lookup_burst_hashed(
        &self,
        keys: &[Option<HashedKey>],
        now: u64,
        out: &mut [Option<(EntryId, Dir)>],
    ) {
        let mut probes = [Probe::default(); 64];
        for (kc, oc) in keys.chunks(64).zip(out.chunks_mut(64)) {
            self.probe_burst_hashed(kc, now, &mut probes[..kc.len()]);
            for (o, p) in oc.iter_mut().zip(&probes) {
                *o = p.found();
            }
        }
    }

    /// [`Shard::lookup_burst_hashed`] that keeps, for each key, where its chain walk ended, so
    /// that [`Shard::track_probed`] does not walk it again: `out[i].found()` is what
    /// `lookup_burst_hashed` answers. A probe stays good while this shard's index is unchanged
    /// (no entry confirmed, imported or destroyed since); a later one is ignored by
    /// `track_probed`, which then looks the key up itself.
    pub fn probe_burst_hashed(&self, keys: &[Option<HashedKey>], now: u64, out: &mut [Probe]) {
        let now_t = tick(now);
        let mut nodes = [NIL; 64];
        for (kc, oc) in keys.chunks(64).zip(out.chunks_mut(64)) {
            for (n, k) in nodes.iter_mut().zip(kc) {
                *n = match k {
                    Some((_, h)) => self.buckets[(*h as u32 & self.mask) as usize],
                    None => NIL,
                };
            }
            let mut acc = 0u32;
            for &n in &nodes[..kc.len()] {
                acc ^= self.entries[Self::head_entry(n)].touch();
            }
            core::hint::black_box(acc);
            for ((&head, k), o) in nodes.iter().zip(kc).zip(oc.iter_mut()) {
                let Some(((family, proto, t), _)) = k else {
                    *o = Probe::default();
                    continue;
                };
                let node = self.find_from(head, *family, *proto, t);
                *o = if node != NIL
                    && tick_reached(now_t, self.entries[(node >> 1) as usize].expires)
                {
                    // past its timeout: tracking walks the chain and destroys it there
                    Probe::default()
                } else {
                    Probe {
                        gen: self.gen,
                        node,
                    }
                };
            }
        }
    }

    /// The index changed: probes taken before are no longer current. The count wraps in its
    /// 24 bits; the shard's tag above them is never 0, so neither is `gen`.
    #[inline]
    fn step_gen(&mut self) {
        self.gen = (self.gen & !GEN_COUNT) | (self.gen.wrapping_add(1) & GEN_COUNT);
    }

    /// The node of the chain starting at `head` that holds `t` (live or not), or `NIL`.
    #[inline]
    pub(super) fn find_from(&self, head: u32, family: Family, proto: u8, t: &Tuple) -> u32 {
        let mut n = head;
        while n != NIL {
            let (idx, d) = (n >> 1, (n & 1) as usize);
            let e = &self.entries[idx as usize];
            if e.tuple[d] == *t && e.proto == proto && e.family == family as u8 {
                return n;
            }
            n = e.hnext[d];
        }
        NIL
    }
}

/// Where a burst lookup ([`Shard::probe_burst_hashed`]) found one key: the chain node holding
/// it (`NIL`: none) and the generation of the shard's index it was found in. Eight bytes, one
/// per slot of a burst. A key found past its timeout, and `Probe::default()`, are never
/// current (tracking walks the chain for them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub(super) gen: u32,
    pub(super) node: u32,
}

impl Default for Probe {
    fn default() -> Probe {
        Probe { gen: 0, node: NIL }
    }
}

impl Probe {
    /// The live entry found and the key's direction in it (`None`: not tracked, or past its
    /// timeout).
    #[inline]
    pub fn found(&self) -> Option<(EntryId, Dir)> {
        (self.gen != 0 && self.node != NIL)
            .then(|| (EntryId(self.node >> 1), Dir::from_bit(self.node & 1)))
    }
}
