//! The state of `-m recent` and `-m statistic`, as the kernel keeps it: one list per `--name`
//! shared by every rule (and both families) that names it, and one nth counter per rule, both
//! shared by all workers as the kernel's are shared by all CPUs. Memory is fixed when the
//! ruleset is compiled (`ip_list_tot` entries of preallocated time stamps per list), so a
//! flood of sources recycles the least recently updated entry and never allocates. `now` is
//! passed in: replay is deterministic. A reload builds fresh state.
//!
//! A recent list is read-modify-written as one unit (look up, count the stamps, add one, move
//! it to the LRU tail), which `xt_recent` does under its global `recent_lock`. fwd does the
//! same under one uncontended `Mutex` per list: the critical section is bounded (a scan of at
//! most `ip_list_tot` entries and their stamps), makes no syscall while it holds the lock, and
//! an uncontended lock is one atomic swap; it is the one lock on the data path and only rules
//! with `-m recent` take it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

use rules::{RecentCmd, RecentMatch, StatisticMatch, StatisticMode};

/// `xt_recent`'s `ip_list_tot`: entries per list.
pub const IP_LIST_TOT: usize = 100;
/// `xt_recent`'s `ip_pkt_list_tot`: time stamps kept per entry (rounded up to a power of two).
pub const IP_PKT_LIST_TOT: u32 = 20;

/// Time stamps an entry of a list keeps for rules asking up to `hitcount` hits: the kernel's
/// `nstamps_max_mask + 1`.
pub fn nstamps_for(hitcount: u32) -> usize {
    let n = if hitcount < IP_PKT_LIST_TOT {
        IP_PKT_LIST_TOT
    } else {
        hitcount.max(1)
    };
    n.next_power_of_two() as usize
}

#[derive(Debug)]
struct Entry {
    used: bool,
    v6: bool,
    addr: u128,
    ttl: u8,
    /// Ring of time stamps (ns); `index` is the next slot, `nstamps` how many are valid.
    stamps: Box<[u64]>,
    index: usize,
    nstamps: usize,
    /// Position in the LRU order: the kernel moves an entry to the list's tail when it is
    /// created or updated (not when only checked).
    lru: u64,
}

#[derive(Debug)]
struct List {
    entries: Vec<Entry>,
    /// LRU clock.
    seq: u64,
}

/// One `--name` list.
#[derive(Debug)]
pub struct RecentTable {
    pub name: String,
    list: Mutex<List>,
}

impl RecentTable {
    /// An empty list of `entries` entries with `nstamps` stamps each (all allocated here).
    pub fn new(name: &str, entries: usize, nstamps: usize) -> RecentTable {
        let entries = (0..entries.max(1))
            .map(|_| Entry {
                used: false,
                v6: false,
                addr: 0,
                ttl: 0,
                stamps: vec![0; nstamps.max(1)].into_boxed_slice(),
                index: 0,
                nstamps: 0,
                lru: 0,
            })
            .collect();
        RecentTable {
            name: name.to_string(),
            list: Mutex::new(List { entries, seq: 0 }),
        }
    }

    /// Entries in use (for tests and listings).
    pub fn len(&self) -> usize {
        self.lock().entries.iter().filter(|e| e.used).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, List> {
        // a worker that panicked while holding it left the list consistent: every write
        // below is to plain fields of one entry
        self.list.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One `-m recent` of one rule: its list and options, resolved.
#[derive(Debug)]
pub struct RecentCheck {
    pub table: std::sync::Arc<RecentTable>,
    pub cmd: RecentCmd,
    pub invert: bool,
    /// Window in ns (0: no window).
    pub window_ns: u64,
    pub hitcount: u32,
    pub rttl: bool,
    pub reap: bool,
    pub rdest: bool,
    pub mask: u128,
    /// The packet's TTL is taken as it was before forwarding (`xt_recent` adds one where the
    /// hook has an output device: FORWARD and POSTROUTING).
    pub ttl_inc: bool,
}

impl RecentCheck {
    pub fn new(
        m: &RecentMatch,
        table: std::sync::Arc<RecentTable>,
        mask: u128,
        ttl_inc: bool,
    ) -> RecentCheck {
        RecentCheck {
            table,
            cmd: m.cmd.unwrap_or(RecentCmd::Set),
            invert: m.invert,
            window_ns: u64::from(m.seconds) * 1_000_000_000,
            hitcount: m.hitcount,
            rttl: m.rttl,
            reap: m.reap,
            rdest: m.rdest,
            mask,
            ttl_inc,
        }
    }

    /// `recent_mt` for a packet with addresses `src`/`dst` (as the classifier keys them),
    /// family `v6` and TTL / hop limit `ttl`, at `now` (ns).
    pub fn eval(&self, src: u128, dst: u128, v6: bool, ttl: u8, now: u64) -> bool {
        let addr = if self.rdest { dst } else { src } & self.mask;
        let ttl = if self.ttl_inc {
            ttl.wrapping_add(1)
        } else {
            ttl
        };
        let mut ret = self.invert;
        let mut guard = self.table.lock();
        let list = &mut *guard;
        let want_ttl = if self.rttl { ttl } else { 0 };
        let found = list.entries.iter().position(|e| {
            e.used
                && e.v6 == v6
                && e.addr == addr
                && (want_ttl == 0 || e.ttl == 0 || e.ttl == want_ttl)
        });
        let Some(i) = found else {
            if self.cmd != RecentCmd::Set {
                return ret;
            }
            // recent_entry_init: a full list gives up its least recently updated entry
            let slot = list
                .entries
                .iter()
                .position(|e| !e.used)
                .unwrap_or_else(|| lru_head(&list.entries).unwrap_or(0));
            list.seq += 1;
            let e = &mut list.entries[slot];
            e.used = true;
            e.v6 = v6;
            e.addr = addr;
            e.ttl = ttl;
            e.stamps[0] = now;
            e.index = 1 % e.stamps.len();
            e.nstamps = 1;
            e.lru = list.seq;
            return !ret;
        };
        let update;
        match self.cmd {
            RecentCmd::Set => {
                ret = !ret;
                update = true;
            }
            RecentCmd::Remove => {
                list.entries[i].used = false;
                return !ret;
            }
            RecentCmd::Check | RecentCmd::Update => {
                let time = now.saturating_sub(self.window_ns);
                let e = &list.entries[i];
                let mut hits = 0;
                for &s in &e.stamps[..e.nstamps] {
                    if self.window_ns != 0 && s < time {
                        continue;
                    }
                    hits += 1;
                    if self.hitcount == 0 || hits >= self.hitcount {
                        ret = !ret;
                        break;
                    }
                }
                update = self.cmd == RecentCmd::Update && ret;
                if self.reap {
                    // recent_entry_reap: the LRU head goes once its newest stamp is too old,
                    // unless it is the entry about to be updated
                    if let Some(h) = lru_head(&list.entries) {
                        let head = &list.entries[h];
                        let last =
                            head.stamps[(head.index + head.stamps.len() - 1) % head.stamps.len()];
                        if !(h == i && update) && last < time {
                            list.entries[h].used = false;
                            if h == i {
                                return ret;
                            }
                        }
                    }
                }
            }
        }
        if update {
            list.seq += 1;
            let seq = list.seq;
            let e = &mut list.entries[i];
            let n = e.stamps.len();
            e.stamps[e.index] = now;
            e.index = (e.index + 1) % n;
            e.nstamps = (e.nstamps + 1).min(n);
            e.ttl = ttl;
            e.lru = seq;
        }
        ret
    }
}

fn lru_head(entries: &[Entry]) -> Option<usize> {
    entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.used)
        .min_by_key(|(_, e)| e.lru)
        .map(|(i, _)| i)
}

/// Checks compare by their options (two compilations of one rule are equal).
impl PartialEq for RecentCheck {
    fn eq(&self, o: &Self) -> bool {
        self.table.name == o.table.name
            && self.cmd == o.cmd
            && self.invert == o.invert
            && self.window_ns == o.window_ns
            && self.hitcount == o.hitcount
            && self.rttl == o.rttl
            && self.reap == o.reap
            && self.rdest == o.rdest
            && self.mask == o.mask
            && self.ttl_inc == o.ttl_inc
    }
}

impl Eq for RecentCheck {}

/// One `-m statistic` of one rule.
#[derive(Debug)]
pub struct Statistic {
    pub mode: StatisticMode,
    pub negated: bool,
    pub probability: u32,
    pub every: u32,
    /// nth: the kernel's `master->count`, one per rule, stepped with compare-and-swap.
    count: AtomicU32,
    /// random: a splitmix64 sequence per rule (deterministic, so replay is); stepped with one
    /// `fetch_add`, lock-free across workers.
    rng: AtomicU64,
}

impl Statistic {
    /// The state of `m`; `seed` picks the random sequence (the rule's counter slot).
    pub fn new(m: &StatisticMatch, seed: u64) -> Statistic {
        let every = m.every.unwrap_or(0);
        Statistic {
            mode: m.mode.unwrap_or(StatisticMode::Random),
            negated: m.negated,
            probability: m.probability.unwrap_or(0),
            every,
            // libxt_statistic: count = every - packet
            count: AtomicU32::new(every - m.packet.unwrap_or(0).min(every)),
            rng: AtomicU64::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        }
    }

    /// `statistic_mt`.
    pub fn eval(&self) -> bool {
        let hit = match self.mode {
            StatisticMode::Random => {
                let x = self.rng.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
                (splitmix(x) as u32 & 0x7fff_ffff) < self.probability
            }
            StatisticMode::Nth => {
                let every = self.every;
                let prev = self
                    .count
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                        Some(if c == every { 0 } else { c + 1 })
                    })
                    .unwrap_or(0);
                prev == every
            }
        };
        hit != self.negated
    }
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl PartialEq for Statistic {
    fn eq(&self, o: &Self) -> bool {
        (self.mode, self.negated, self.probability, self.every)
            == (o.mode, o.negated, o.probability, o.every)
    }
}

impl Eq for Statistic {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const SEC: u64 = 1_000_000_000;
    const A: u128 = 0xc612_0001; // 198.18.0.1
    const B: u128 = 0xc612_0002;

    fn m(cmd: RecentCmd, seconds: u32, hitcount: u32) -> RecentMatch {
        let mut r = RecentMatch::default_for(rules::Family::Ipv4);
        r.cmd = Some(cmd);
        r.seconds = seconds;
        r.hitcount = hitcount;
        r
    }

    fn check(t: &Arc<RecentTable>, r: &RecentMatch) -> RecentCheck {
        RecentCheck::new(r, t.clone(), u128::from(u32::MAX), false)
    }

    #[test]
    fn ufw_limit_hitcount_window() {
        // ufw: `--set`, then `--update --seconds 30 --hitcount 6` (the 6th NEW in 30 s hits)
        let t = Arc::new(RecentTable::new("DEFAULT", IP_LIST_TOT, nstamps_for(6)));
        let set = check(&t, &m(RecentCmd::Set, 0, 0));
        let upd = check(&t, &m(RecentCmd::Update, 30, 6));
        let mut hits = Vec::new();
        for i in 0..7u64 {
            let now = 100 * SEC + i * SEC;
            assert!(set.eval(A, B, false, 64, now));
            hits.push(upd.eval(A, B, false, 64, now));
        }
        // `--set` stamps every packet, a failing `--update` adds none: the 6th packet hits
        assert_eq!(hits, [false, false, false, false, false, true, true]);
        // another source has its own entry
        assert!(!upd.eval(B, A, false, 64, 107 * SEC));
        // 31 s after the last packet nothing is in the window
        assert!(!upd.eval(A, B, false, 64, 137 * SEC));
    }

    #[test]
    fn rcheck_counts_only_the_window_and_update_refreshes() {
        let t = Arc::new(RecentTable::new("x", IP_LIST_TOT, nstamps_for(0)));
        let set = check(&t, &m(RecentCmd::Set, 0, 0));
        let rc = check(&t, &m(RecentCmd::Check, 10, 2));
        assert!(!rc.eval(A, 0, false, 64, SEC), "no entry: no match");
        set.eval(A, 0, false, 64, SEC);
        assert!(!rc.eval(A, 0, false, 64, 2 * SEC), "one stamp of two");
        set.eval(A, 0, false, 64, 5 * SEC);
        assert!(rc.eval(A, 0, false, 64, 6 * SEC));
        // at 11.5 s the stamp at 1 s is out of the 10 s window
        assert!(!rc.eval(A, 0, false, 64, 11 * SEC + SEC / 2));
        let remove = check(&t, &m(RecentCmd::Remove, 0, 0));
        assert!(remove.eval(A, 0, false, 64, 12 * SEC));
        assert!(!remove.eval(A, 0, false, 64, 12 * SEC), "already gone");
        assert!(t.is_empty());
    }

    #[test]
    fn inverted_and_rttl() {
        let t = Arc::new(RecentTable::new("x", IP_LIST_TOT, nstamps_for(0)));
        let mut inv = m(RecentCmd::Check, 0, 0);
        inv.invert = true;
        let inv = check(&t, &inv);
        assert!(
            inv.eval(A, 0, false, 64, SEC),
            "! --rcheck of an unknown source"
        );
        check(&t, &m(RecentCmd::Set, 0, 0)).eval(A, 0, false, 64, SEC);
        assert!(!inv.eval(A, 0, false, 64, SEC));
        let mut ttl = m(RecentCmd::Check, 0, 0);
        ttl.rttl = true;
        let ttl = check(&t, &ttl);
        assert!(ttl.eval(A, 0, false, 64, SEC));
        assert!(
            !ttl.eval(A, 0, false, 63, SEC),
            "another TTL: not the same sender"
        );
        // FORWARD sees the TTL after the decrement the router before it did not: xt_recent
        // adds one back there
        let fwd = RecentCheck::new(&m(RecentCmd::Set, 0, 0), t.clone(), u128::MAX, true);
        fwd.eval(B, 0, false, 63, SEC);
        let mut c = m(RecentCmd::Check, 0, 0);
        c.rttl = true;
        assert!(RecentCheck::new(&c, t.clone(), u128::MAX, false).eval(B, 0, false, 64, SEC));
    }

    #[test]
    fn mask_and_rdest_and_family() {
        let t = Arc::new(RecentTable::new("x", IP_LIST_TOT, nstamps_for(0)));
        let mut s = m(RecentCmd::Set, 0, 0);
        s.rdest = true;
        let set = RecentCheck::new(&s, t.clone(), 0xffff_ff00, false);
        set.eval(0, 0xc612_0105, false, 64, SEC);
        let rc = RecentCheck::new(&m(RecentCmd::Check, 0, 0), t.clone(), 0xffff_ff00, false);
        assert!(rc.eval(0xc612_01fe, 0, false, 64, SEC), "same /24");
        assert!(!rc.eval(0xc612_02fe, 0, false, 64, SEC));
        assert!(
            !rc.eval(0xc612_01fe, 0, true, 64, SEC),
            "an IPv6 address is another key"
        );
    }

    #[test]
    fn flood_of_sources_stays_at_ip_list_tot_and_evicts_lru() {
        let t = Arc::new(RecentTable::new("x", IP_LIST_TOT, nstamps_for(0)));
        let set = check(&t, &m(RecentCmd::Set, 0, 0));
        let upd = check(&t, &m(RecentCmd::Update, 0, 0));
        let rc = check(&t, &m(RecentCmd::Check, 0, 0));
        set.eval(A, 0, false, 64, 0);
        for i in 0..10_000u128 {
            set.eval(0x2000_0000 + i, 0, false, 64, 1);
            // A is refreshed (moved to the LRU tail) so the flood never evicts it
            if i % 50 == 0 {
                assert!(upd.eval(A, 0, false, 64, 1));
            }
            assert!(t.len() <= IP_LIST_TOT);
        }
        assert_eq!(t.len(), IP_LIST_TOT);
        assert!(rc.eval(A, 0, false, 64, 2), "the refreshed entry survived");
        assert!(
            !rc.eval(0x2000_0000, 0, false, 64, 2),
            "the oldest were replaced"
        );
        assert!(rc.eval(0x2000_0000 + 9_999, 0, false, 64, 2));
    }

    #[test]
    fn reap_drops_the_stale_lru_head() {
        let t = Arc::new(RecentTable::new("x", IP_LIST_TOT, nstamps_for(0)));
        let set = check(&t, &m(RecentCmd::Set, 0, 0));
        set.eval(A, 0, false, 64, SEC);
        set.eval(B, 0, false, 64, 20 * SEC);
        let mut r = m(RecentCmd::Check, 5, 0);
        r.reap = true;
        let reap = check(&t, &r);
        assert!(reap.eval(B, 0, false, 64, 21 * SEC));
        assert_eq!(t.len(), 1, "A (LRU head, last seen 20 s ago) was reaped");
    }

    #[test]
    fn nth_is_one_counter_per_rule() {
        let st = |every: u32, packet: u32| rules::StatisticMatch {
            mode: Some(StatisticMode::Nth),
            probability: None,
            every: Some(every - 1),
            packet: Some(packet),
            negated: false,
        };
        let s = Statistic::new(&st(3, 0), 1);
        let got: Vec<bool> = (0..7).map(|_| s.eval()).collect();
        assert_eq!(got, [true, false, false, true, false, false, true]);
        let s = Statistic::new(&st(3, 2), 1);
        let got: Vec<bool> = (0..6).map(|_| s.eval()).collect();
        assert_eq!(got, [false, false, true, false, false, true]);
    }

    #[test]
    fn random_matches_about_its_probability() {
        let m = rules::StatisticMatch {
            mode: Some(StatisticMode::Random),
            probability: Some(0x2000_0000), // 0.25
            every: None,
            packet: None,
            negated: false,
        };
        let s = Statistic::new(&m, 7);
        let n = (0..100_000).filter(|_| s.eval()).count();
        assert!((23_000..27_000).contains(&n), "{n}");
        let never = Statistic::new(
            &rules::StatisticMatch {
                probability: Some(0),
                ..m
            },
            7,
        );
        assert!((0..1000).all(|_| !never.eval()));
        let always = Statistic::new(
            &rules::StatisticMatch {
                probability: Some(0x8000_0000),
                ..m
            },
            7,
        );
        assert!((0..1000).all(|_| always.eval()));
    }
}
