//! `-m time`, `-m hashlimit` and `-m conntrack`'s tuple options, with the kernel's semantics
//! (`xt_time.c`, `xt_hashlimit.c`, `xt_conntrack.c`).
//!
//! **Time.** fwd's clock is `now` (monotonic ns, passed in); `-m time` needs the wall clock,
//! which the poll loop hands the worker as an offset once in a while
//! ([`crate::Worker::set_wall_offset`]), so a replay with the same `now` and offset decides the
//! same. The kernel's `--kerneltz` shifts by `sys_tz`, the timezone set with `settimeofday`,
//! which is 0 unless something sets it: fwd has no kernel timezone and uses UTC for
//! `--kerneltz` too (what a kernel whose `sys_tz` was never set does).
//!
//! **Hashlimit.** One table per `--hashlimit-name` and family, shared by every rule naming it
//! and by all workers, as the kernel's is global: a group (`--hashlimit-mode srcip`, say) is
//! made of many flows that steering spreads over workers, so no per-worker state could be
//! exact. The table is preallocated to `--hashlimit-htable-max` entries (the kernel's default
//! 8 x 8192 = 65536 where none is given) and never allocates; a full table drops the packet
//! and counts it, as the kernel's `hotdrop` does. Its read-modify-write (find or create the
//! entry, refill, take a token) runs under the table's `Mutex`, as `xt_hashlimit` runs it under
//! `dh->lock`: the critical section is bounded (one hash chain of at most the table's entries,
//! a garbage collection of expired entries at most once per `--hashlimit-htable-gcinterval`),
//! makes no syscall, and only rules with `-m hashlimit` take it. Time runs in jiffies of 1 ms
//! (HZ 1000); the kernel's credits per second (`HZ * CREDITS_PER_JIFFY`) are the same for HZ
//! 100, 250 and 1000, so the arithmetic is the kernel's, token for token.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rules::hashlimit_units as hl;
use rules::{hashlimit_mode as mode, ConntrackMatch, HashlimitMatch, TimeMatch};

// ---- -m time ----------------------------------------------------------------------------

/// `time_mt` for the wall clock `wall` (seconds since the epoch, UTC).
pub fn time_matches(t: &TimeMatch, wall: u64) -> bool {
    let mut stamp = wall as i64;
    if stamp < i64::from(t.date_start) || stamp > i64::from(t.date_stop) {
        return false;
    }
    let packet_time = stamp.rem_euclid(86_400) as u32;
    if t.daytime_start < t.daytime_stop {
        if packet_time < t.daytime_start || packet_time > t.daytime_stop {
            return false;
        }
    } else {
        if packet_time < t.daytime_start && packet_time > t.daytime_stop {
            return false;
        }
        // an interval over midnight: in contiguous mode the days are those the interval began
        if t.contiguous && packet_time <= t.daytime_stop {
            stamp -= 86_400;
        }
    }
    let dse = stamp.div_euclid(86_400);
    // 1970-01-01 was a Thursday (4); Monday is 1, Sunday 7
    let weekday = (4 + dse - 1).rem_euclid(7) + 1;
    if t.weekdays & (1 << weekday) == 0 {
        return false;
    }
    if t.monthdays != rules::TIME_ALL_MONTHDAYS {
        let monthday = rules::civil_date(stamp.max(0) as u64).2;
        if t.monthdays & (1 << monthday) == 0 {
            return false;
        }
    }
    true
}

// ---- -m hashlimit -----------------------------------------------------------------------

/// Jiffies per second fwd's hashlimit arithmetic runs at.
pub const HZ: u64 = 1000;
const NS_PER_JIFFY: u64 = 1_000_000_000 / HZ;
/// `CREDITS_PER_JIFFY` at [`HZ`].
const CPJ: u64 = hl::CREDITS_PER_SEC / HZ;
/// `CREDITS_PER_JIFFY_BYTES` at [`HZ`].
const CPJ_BYTES: u64 = hl::BYTE_CREDITS_PER_SEC / HZ;
const NIL: u32 = u32::MAX;
/// The kernel's default `--hashlimit-htable-size` on a machine with more than 1 GiB.
pub const DEFAULT_SIZE: u32 = 8192;

/// The group a packet falls in (`struct dsthash_dst`): the parts `--hashlimit-mode` names, the
/// addresses masked; the others zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct GroupKey {
    pub src: u128,
    pub dst: u128,
    pub sport: u16,
    pub dport: u16,
}

#[derive(Clone, Copy, Debug, Default)]
struct Entry {
    key: GroupKey,
    used: bool,
    next: u32,
    /// ns after which the entry may be collected.
    expires: u64,
    /// `rateinfo`: jiffies, credits.
    prev: u64,
    credit: u64,
    credit_cap: u64,
    cost: u64,
    /// `--hashlimit-rate-match`: the rate seen in the current window, the allowed rate and
    /// burst, the window, and whether the last window was over.
    current_rate: u64,
    rate: u64,
    burst: u64,
    interval: u64,
    prev_window: bool,
}

#[derive(Debug)]
struct Inner {
    buckets: Box<[u32]>,
    entries: Box<[Entry]>,
    free: u32,
    count: u32,
    next_gc: u64,
}

/// One `--hashlimit-name` table of one family.
#[derive(Debug)]
pub struct HashlimitTable {
    pub name: String,
    pub v6: bool,
    /// The configuration of the rule that created the table: the kernel keeps the first
    /// rule's (size, max, expire, gcinterval, rate, burst, mode) for every rule naming it.
    pub cfg: HashlimitMatch,
    /// Entries the table holds at most (`--hashlimit-htable-max`, at least the size).
    pub max: u32,
    inner: Mutex<Inner>,
    /// Packets dropped because the table was full.
    full: AtomicU64,
    seed: u64,
}

impl HashlimitTable {
    /// A table for `cfg` with every entry allocated here.
    pub fn new(cfg: &HashlimitMatch) -> HashlimitTable {
        let size = if cfg.size == 0 {
            DEFAULT_SIZE
        } else {
            cfg.size
        }
        .max(1);
        let max = if cfg.max == 0 {
            size.saturating_mul(8)
        } else {
            cfg.max.max(size)
        };
        let mut entries = vec![Entry::default(); max as usize].into_boxed_slice();
        for (i, e) in entries.iter_mut().enumerate() {
            e.next = if i + 1 < max as usize {
                i as u32 + 1
            } else {
                NIL
            };
        }
        HashlimitTable {
            name: cfg.name.clone(),
            v6: cfg.family == rules::Family::Ipv6,
            cfg: cfg.clone(),
            max,
            inner: Mutex::new(Inner {
                buckets: vec![NIL; size as usize].into_boxed_slice(),
                entries,
                free: 0,
                count: 0,
                next_gc: 0,
            }),
            full: AtomicU64::new(0),
            seed: 0x9e37_79b9_7f4a_7c15 ^ u64::from(size),
        }
    }

    /// Entries in use.
    pub fn len(&self) -> u32 {
        self.lock().count
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Packets dropped because the table was full.
    pub fn full_drops(&self) -> u64 {
        self.full.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // every write below leaves the table consistent between statements that matter
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bucket(&self, k: &GroupKey, n: usize) -> usize {
        let mut h = self.seed;
        for w in [
            k.src as u64,
            (k.src >> 64) as u64,
            k.dst as u64,
            (k.dst >> 64) as u64,
            u64::from(k.sport) << 16 | u64::from(k.dport),
        ] {
            h = (h ^ w).wrapping_mul(0x100_0000_01b3).rotate_left(29);
        }
        (h % n as u64) as usize
    }
}

/// `htable_gc`: frees the entries whose time is up.
fn gc(inner: &mut Inner, now: u64) {
    for b in 0..inner.buckets.len() {
        let mut prev = NIL;
        let mut i = inner.buckets[b];
        while i != NIL {
            let next = inner.entries[i as usize].next;
            if now >= inner.entries[i as usize].expires {
                if prev == NIL {
                    inner.buckets[b] = next;
                } else {
                    inner.entries[prev as usize].next = next;
                }
                let e = &mut inner.entries[i as usize];
                e.used = false;
                e.next = inner.free;
                inner.free = i;
                inner.count -= 1;
            } else {
                prev = i;
            }
            i = next;
        }
    }
}

/// The outcome of one packet at a hashlimit rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HlVerdict {
    Match,
    NoMatch,
    /// The table is full: the kernel drops the packet (`hotdrop`).
    Drop,
}

/// One `-m hashlimit` of one rule: its table and how it makes the group key.
#[derive(Debug)]
pub struct HashlimitCheck {
    pub table: std::sync::Arc<HashlimitTable>,
    srcmask: u128,
    dstmask: u128,
}

fn prefix_mask(len: u8, v6: bool) -> u128 {
    let w = if v6 { 128 } else { 32 };
    let len = u32::from(len).min(w);
    let full = if v6 { u128::MAX } else { u128::from(u32::MAX) };
    if len == 0 {
        0
    } else {
        full & !((1u128 << (w - len)) - 1)
    }
}

impl HashlimitCheck {
    pub fn new(table: std::sync::Arc<HashlimitTable>) -> HashlimitCheck {
        let (cfg, v6) = (&table.cfg, table.v6);
        HashlimitCheck {
            srcmask: prefix_mask(cfg.srcmask, v6),
            dstmask: prefix_mask(cfg.dstmask, v6),
            table,
        }
    }

    /// The packet's group (`hashlimit_init_dst`); `ports` is `None` for a protocol without
    /// ports (or a later fragment): they count as 0, as the kernel's do.
    pub fn key(&self, src: u128, dst: u128, ports: Option<(u16, u16)>) -> GroupKey {
        let m = self.table.cfg.mode;
        let (sp, dp) = ports.unwrap_or((0, 0));
        GroupKey {
            src: if m & mode::SRCIP != 0 {
                src & self.srcmask
            } else {
                0
            },
            dst: if m & mode::DSTIP != 0 {
                dst & self.dstmask
            } else {
                0
            },
            sport: if m & mode::SRCPORT != 0 { sp } else { 0 },
            dport: if m & mode::DSTPORT != 0 { dp } else { 0 },
        }
    }

    /// `hashlimit_mt_common` for a packet of `len` bytes (IP length) in group `key` at `now`
    /// (ns).
    pub fn eval(&self, key: GroupKey, len: u32, now: u64) -> HlVerdict {
        let t = &*self.table;
        let cfg = &t.cfg;
        let jiffies = now / NS_PER_JIFFY;
        let expire_ns = u64::from(cfg.expire) * 1_000_000;
        let mut g = t.lock();
        let inner = &mut *g;
        if now >= inner.next_gc {
            gc(inner, now);
            inner.next_gc = now + u64::from(cfg.gc_interval.max(1)) * 1_000_000;
        }
        let b = t.bucket(&key, inner.buckets.len());
        let mut i = inner.buckets[b];
        while i != NIL && inner.entries[i as usize].key != key {
            i = inner.entries[i as usize].next;
        }
        let e = if i != NIL {
            let e = &mut inner.entries[i as usize];
            e.expires = now + expire_ns;
            recalc(e, jiffies, cfg.mode);
            e
        } else {
            // dsthash_alloc_init: no entry past htable-max
            if inner.count >= t.max || inner.free == NIL {
                drop(g);
                t.full.fetch_add(1, Ordering::Relaxed);
                return HlVerdict::Drop;
            }
            let i = inner.free;
            inner.free = inner.entries[i as usize].next;
            inner.count += 1;
            let head = inner.buckets[b];
            inner.buckets[b] = i;
            let e = &mut inner.entries[i as usize];
            *e = Entry {
                key,
                used: true,
                next: head,
                expires: now + expire_ns,
                ..Entry::default()
            };
            init(e, cfg, jiffies);
            e
        };
        let under = cfg.mode & mode::INVERT == 0;
        if cfg.mode & mode::RATE_MATCH != 0 {
            let cost = if cfg.mode & mode::BYTES != 0 {
                u64::from(len)
            } else {
                1
            };
            e.current_rate += cost;
            return if !e.prev_window && e.current_rate <= e.burst {
                verdict(under)
            } else {
                verdict(!under)
            };
        }
        let cost = if cfg.mode & mode::BYTES != 0 {
            byte_cost(e, len)
        } else {
            e.cost
        };
        if e.credit >= cost {
            e.credit -= cost;
            verdict(under)
        } else {
            verdict(!under)
        }
    }
}

fn verdict(m: bool) -> HlVerdict {
    if m {
        HlVerdict::Match
    } else {
        HlVerdict::NoMatch
    }
}

/// `user2credits_byte`.
fn user2credits_byte(user: u64) -> u64 {
    (u64::from(user as u32) * hl::BYTE_CREDITS_PER_SEC) >> 32
}

/// `user2rate_bytes`.
fn user2rate_bytes(user: u64) -> u64 {
    let user = user as u32;
    let r = u32::MAX.checked_div(user).unwrap_or(u32::MAX);
    u64::from(r.wrapping_sub(1)) << hl::BYTE_SHIFT
}

/// `rateinfo_init`.
fn init(e: &mut Entry, cfg: &HashlimitMatch, jiffies: u64) {
    e.prev = jiffies;
    if cfg.mode & mode::RATE_MATCH != 0 {
        e.prev_window = false;
        e.current_rate = 0;
        if cfg.mode & mode::BYTES != 0 {
            e.rate = user2rate_bytes(cfg.avg);
            e.burst = if cfg.burst != 0 {
                cfg.burst.wrapping_mul(e.rate)
            } else {
                e.rate
            };
        } else {
            e.rate = hl::SCALE.checked_div(cfg.avg).unwrap_or(0);
            e.burst = cfg.burst.wrapping_add(e.rate);
        }
        e.interval = u64::from(cfg.interval);
    } else if cfg.mode & mode::BYTES != 0 {
        e.credit = CPJ_BYTES * HZ;
        e.cost = user2credits_byte(cfg.avg);
        e.credit_cap = cfg.burst;
    } else {
        e.credit = hl::user2credits(cfg.avg.wrapping_mul(cfg.burst));
        e.cost = hl::user2credits(cfg.avg);
        e.credit_cap = e.credit;
    }
}

/// `rateinfo_recalc`.
fn recalc(e: &mut Entry, now: u64, m: u32) {
    let delta = now.wrapping_sub(e.prev);
    if delta == 0 {
        return;
    }
    if m & mode::RATE_MATCH != 0 {
        let interval = e.interval * HZ;
        if delta < interval {
            return;
        }
        e.prev = now;
        e.prev_window = e.current_rate.wrapping_mul(interval) > delta.wrapping_mul(e.rate);
        e.current_rate = 0;
        return;
    }
    e.prev = now;
    let cap;
    if m & mode::BYTES != 0 {
        let tmp = e.credit;
        e.credit = e.credit.wrapping_add(CPJ_BYTES.wrapping_mul(delta));
        cap = CPJ_BYTES * HZ;
        if tmp >= e.credit {
            e.credit = cap;
            return;
        }
    } else {
        e.credit = e.credit.wrapping_add(delta.wrapping_mul(CPJ));
        cap = e.credit_cap;
    }
    if e.credit > cap {
        e.credit = cap;
    }
}

/// `hashlimit_byte_cost`.
fn byte_cost(e: &mut Entry, len: u32) -> u64 {
    let chunks = u64::from((len >> hl::BYTE_SHIFT) + 1);
    let mut tmp = chunks.wrapping_mul(e.cost);
    if tmp > CPJ_BYTES * HZ {
        tmp = CPJ_BYTES * HZ;
    }
    if e.credit < tmp && e.credit_cap != 0 {
        e.credit_cap -= 1;
        e.credit = CPJ_BYTES * HZ;
    }
    u64::from(tmp as u32)
}

/// Checks compare by their tables' names and configuration.
impl PartialEq for HashlimitCheck {
    fn eq(&self, o: &Self) -> bool {
        self.table.name == o.table.name
            && self.table.v6 == o.table.v6
            && self.table.cfg == o.table.cfg
    }
}

impl Eq for HashlimitCheck {}

// ---- -m connbytes ----------------------------------------------------------------------

/// `connbytes_mt` for a connection's `[original packets, bytes, reply packets, bytes]`.
pub fn connbytes_matches(c: &rules::ConnbytesMatch, acct: &[u64; 4]) -> bool {
    use rules::{ConnbytesDir as D, ConnbytesMode as M};
    let (pkts, bytes) = match c.dir {
        Some(D::Original) => (acct[0], acct[1]),
        Some(D::Reply) => (acct[2], acct[3]),
        _ => (acct[0] + acct[2], acct[1] + acct[3]),
    };
    let what = match c.mode {
        Some(M::Packets) => pkts,
        Some(M::Bytes) => bytes,
        _ => bytes.checked_div(pkts).unwrap_or(0),
    };
    if c.to >= c.from {
        what >= c.from && what <= c.to
    } else {
        // inverted: the bounds were swapped on load
        what < c.to || what > c.from
    }
}

// ---- -m conntrack -----------------------------------------------------------------------

/// What `-m conntrack` reads of a packet's connection (`None`: no entry).
#[derive(Clone, Copy, Debug)]
pub struct CtView<'a> {
    pub proto: u8,
    pub orig: &'a conntrack::Tuple,
    pub reply: &'a conntrack::Tuple,
    /// Kernel status bits (`IPS_EXPECTED` ... `IPS_CONFIRMED`).
    pub status: u16,
    /// Seconds left (`nf_ct_expires / HZ`; 0 for a connection not yet confirmed).
    pub expires: u32,
    /// The packet goes in the reply direction.
    pub reply_dir: bool,
}

fn addr_of(b: &[u8; 16], v6: bool) -> u128 {
    if v6 {
        u128::from_be_bytes(*b)
    } else {
        u128::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

fn addr_ok(a: &rules::CtAddr, got: u128, v6: bool) -> bool {
    let want = match a.addr {
        std::net::IpAddr::V4(x) => u128::from(u32::from(x)),
        std::net::IpAddr::V6(x) => u128::from(x),
    };
    let m = prefix_mask(a.plen, v6);
    ((got & m) == (want & m)) != a.negated
}

fn port_ok(p: &rules::CtPorts, got: u16) -> bool {
    (p.range.lo <= got && got <= p.range.hi) != p.negated
}

/// `conntrack_mt` (revision 3) apart from `--ctstate`, which the caller tests first: `ct` is
/// the packet's connection. Without one, only a match that tests the state can hold (the
/// state having matched).
pub fn conntrack_matches(c: &ConntrackMatch, ct: Option<CtView<'_>>, v6: bool) -> bool {
    let Some(ct) = ct else {
        return c.state.is_some();
    };
    if let Some(reply) = c.dir_reply {
        if ct.reply_dir != reply {
            return false;
        }
    }
    for (a, t, src) in [
        (&c.orig_src, ct.orig, true),
        (&c.orig_dst, ct.orig, false),
        (&c.repl_src, ct.reply, true),
        (&c.repl_dst, ct.reply, false),
    ] {
        if let Some(a) = a {
            let got = addr_of(if src { &t.src } else { &t.dst }, v6);
            if !addr_ok(a, got, v6) {
                return false;
            }
        }
    }
    if let Some((p, neg)) = c.proto {
        if (ct.proto == p) == neg {
            return false;
        }
    }
    for (p, got) in [
        (&c.orig_src_port, ct.orig.sport),
        (&c.orig_dst_port, ct.orig.dport),
        (&c.repl_src_port, ct.reply.sport),
        (&c.repl_dst_port, ct.reply.dport),
    ] {
        if let Some(p) = p {
            if !port_ok(p, got) {
                return false;
            }
        }
    }
    if let Some((mask, neg)) = c.status {
        if ((mask & ct.status) != 0) == neg {
            return false;
        }
    }
    if let Some((lo, hi, neg)) = c.expire {
        if (lo <= ct.expires && ct.expires <= hi) == neg {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use rules::{parse_restore, Family, Match};

    const SEC: u64 = 1_000_000_000;
    const MS: u64 = 1_000_000;
    /// 2026-12-04T00:00:00Z, a Friday.
    const FRI: u64 = 1_796_342_400;

    fn m(rule: &str, family: Family) -> Match {
        let text = format!("*filter\n-A FORWARD {rule}\nCOMMIT\n");
        let rs = parse_restore("t", &text, family).unwrap();
        rs.tables[0].chains[1].rules[0]
            .matches
            .last()
            .unwrap()
            .clone()
    }

    fn time(rule: &str) -> TimeMatch {
        match m(rule, Family::Ipv4) {
            Match::Time(t) => t,
            o => panic!("{o:?}"),
        }
    }

    fn hashlimit(rule: &str, family: Family) -> HashlimitCheck {
        match m(rule, family) {
            Match::Hashlimit(h) => {
                HashlimitCheck::new(std::sync::Arc::new(HashlimitTable::new(&h)))
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn time_window_over_midnight_and_contiguous_days() {
        let h = |hh: u64, mm: u64| hh * 3600 + mm * 60;
        // 22:00-06:00 on Fridays: without --contiguous the early hours count as their own day
        let t = time("-m time --timestart 22:00 --timestop 06:00 --weekdays Fri");
        assert!(time_matches(&t, FRI + h(23, 0)), "Friday 23:00");
        assert!(!time_matches(&t, FRI + h(12, 0)), "noon is outside");
        assert!(time_matches(&t, FRI + h(5, 59)), "Friday 05:59 is a Friday");
        assert!(!time_matches(&t, FRI + 86_400 + h(1, 0)), "Saturday 01:00");
        // with --contiguous Saturday 01:00 belongs to Friday's interval, Friday 01:00 to Thursday's
        let c = time("-m time --timestart 22:00 --timestop 06:00 --weekdays Fri --contiguous");
        assert!(time_matches(&c, FRI + 86_400 + h(1, 0)));
        assert!(!time_matches(&c, FRI + h(1, 0)));
        assert!(time_matches(&c, FRI + h(22, 0)));
        // boundaries are inclusive, seconds count
        let d = time("-m time --timestart 08:00 --timestop 17:59:59");
        assert!(time_matches(&d, FRI + h(8, 0)));
        assert!(time_matches(&d, FRI + h(17, 59) + 59));
        assert!(!time_matches(&d, FRI + h(18, 0)));
        assert!(!time_matches(&d, FRI + h(8, 0) - 1));
    }

    #[test]
    fn dates_weekdays_and_monthdays() {
        let t = time("-m time --datestart 2026-12-04 --datestop 2026-12-04T12:00:00");
        assert!(!time_matches(&t, FRI - 1));
        assert!(time_matches(&t, FRI));
        assert!(time_matches(&t, FRI + 12 * 3600));
        assert!(!time_matches(&t, FRI + 12 * 3600 + 1));
        let w = time("-m time ! --weekdays Sat,Sun");
        assert!(time_matches(&w, FRI));
        assert!(!time_matches(&w, FRI + 86_400));
        assert!(!time_matches(&w, FRI + 2 * 86_400));
        assert!(time_matches(&w, FRI + 3 * 86_400), "Monday");
        assert!(time_matches(&w, 0), "1970-01-01 was a Thursday");
        let md = time("-m time --monthdays 4,31");
        assert!(time_matches(&md, FRI));
        assert!(!time_matches(&md, FRI + 86_400));
        assert!(time_matches(&md, FRI + 27 * 86_400), "2026-12-31");
        assert!(time_matches(&md, 1_769_817_600), "2026-01-31");
        let none = time("-m time --weekdays 8");
        assert!(!time_matches(&none, FRI), "an empty day set never matches");
    }

    #[test]
    fn hashlimit_token_bucket_is_the_kernel_s_arithmetic() {
        let h = hashlimit(
            "-m hashlimit --hashlimit-upto 10/sec --hashlimit-burst 5 --hashlimit-name t",
            Family::Ipv4,
        );
        let k = h.key(1, 2, None);
        let t0 = 1000 * SEC;
        // cost = user2credits(100000) = 100000 * 137438953; the bucket holds 5 of them
        for i in 0..5 {
            assert_eq!(h.eval(k, 60, t0), HlVerdict::Match, "burst packet {i}");
        }
        assert_eq!(h.eval(k, 60, t0), HlVerdict::NoMatch);
        // 99 jiffies add 99 * 2^37 = 13606456393728 credits, less than the cost 13743895300000
        assert_eq!(h.eval(k, 60, t0 + 99 * MS), HlVerdict::NoMatch);
        // the 100th jiffy brings 13743895347200: one packet
        assert_eq!(h.eval(k, 60, t0 + 100 * MS), HlVerdict::Match);
        assert_eq!(h.eval(k, 60, t0 + 100 * MS), HlVerdict::NoMatch);
        // above: the same bucket, inverted
        let a = hashlimit(
            "-m hashlimit --hashlimit-above 1/sec --hashlimit-burst 2 --hashlimit-name a",
            Family::Ipv4,
        );
        let got: Vec<HlVerdict> = (0..3).map(|_| a.eval(k, 60, t0)).collect();
        assert_eq!(
            got,
            [HlVerdict::NoMatch, HlVerdict::NoMatch, HlVerdict::Match]
        );
    }

    #[test]
    fn hashlimit_groups_by_mode_and_masks() {
        let h = hashlimit(
            "-m hashlimit --hashlimit-upto 1/min --hashlimit-burst 1 --hashlimit-mode srcip,dstport --hashlimit-srcmask 24 --hashlimit-name g",
            Family::Ipv4,
        );
        let a = h.key(0xc612_0001, 0xc612_0101, Some((1000, 80)));
        let same = h.key(0xc612_00fe, 0xc612_0202, Some((2000, 80)));
        let other_port = h.key(0xc612_0001, 0xc612_0101, Some((1000, 443)));
        assert_eq!(a, same, "same /24 source, same destination port");
        assert_ne!(a, other_port);
        assert_eq!(h.eval(a, 60, SEC), HlVerdict::Match);
        assert_eq!(h.eval(same, 60, SEC), HlVerdict::NoMatch);
        assert_eq!(h.eval(other_port, 60, SEC), HlVerdict::Match);
        assert_eq!(h.table.len(), 2);
        let v6 = hashlimit(
            "-m hashlimit --hashlimit-upto 1/min --hashlimit-mode srcip --hashlimit-srcmask 64 --hashlimit-name g",
            Family::Ipv6,
        );
        assert_eq!(
            v6.key(0x2001_0002_0000_0001_0000_0000_0000_0005, 9, None),
            v6.key(0x2001_0002_0000_0001_ffff_0000_0000_0000, 7, None)
        );
    }

    #[test]
    fn hashlimit_bytes_and_rate_match() {
        // 1kb/s, burst 4 x the rate: cost of 16-byte chunks against 2^22 * 1000 credits a second
        let h = hashlimit(
            "-m hashlimit --hashlimit-upto 1kb/s --hashlimit-burst 4kb --hashlimit-name b",
            Family::Ipv4,
        );
        let k = h.key(1, 2, None);
        let mut n = 0;
        while h.eval(k, 1000, SEC) == HlVerdict::Match {
            n += 1;
            assert!(n < 100);
        }
        // a full bucket (1 s of credit) and the burst's four refills: about 5 KiB in 1000-byte packets
        assert_eq!(n, 5);
        // rate-match: 2 packets per second pass a window (burst 5 + rate 2 = 7), then the
        // next window is refused once the last one ran over
        let r = hashlimit(
            "-m hashlimit --hashlimit-upto 2/sec --hashlimit-name r --hashlimit-rate-match",
            Family::Ipv4,
        );
        let got: Vec<bool> = (0..8)
            .map(|_| r.eval(k, 60, SEC) == HlVerdict::Match)
            .collect();
        assert_eq!(got, [true, true, true, true, true, true, true, false]);
        // within the window (900 jiffies): counted, still over
        assert_eq!(r.eval(k, 60, SEC + 900 * MS), HlVerdict::NoMatch);
        // a new window: 9 packets in 1000 jiffies were over 2/s, so this one is refused too
        assert_eq!(
            r.eval(k, 60, 2 * SEC),
            HlVerdict::NoMatch,
            "the window before ran over"
        );
        assert_eq!(r.eval(k, 60, 2 * SEC + 500 * MS), HlVerdict::NoMatch);
        // two packets in the last window were not over: matching again
        assert_eq!(r.eval(k, 60, 3 * SEC), HlVerdict::Match);
    }

    #[test]
    fn hashlimit_flood_fills_the_table_to_max_and_no_further() {
        let h = hashlimit(
            "-m hashlimit --hashlimit-upto 1/sec --hashlimit-mode srcip --hashlimit-name f --hashlimit-htable-size 16 --hashlimit-htable-max 64 --hashlimit-htable-expire 2000",
            Family::Ipv4,
        );
        let mut drops = 0;
        for i in 0..10_000u128 {
            if h.eval(h.key(0xc612_0000 + i, 0, None), 60, SEC) == HlVerdict::Drop {
                drops += 1;
            }
            assert!(h.table.len() <= 64);
        }
        assert_eq!(h.table.len(), 64);
        assert_eq!(drops, 10_000 - 64);
        assert_eq!(h.table.full_drops(), drops);
        // a known group still gets its bucket
        assert_ne!(
            h.eval(h.key(0xc612_0000, 0, None), 60, SEC),
            HlVerdict::Drop
        );
        // once expired (2 s) and collected (gcinterval 1 s), new groups fit again
        assert_eq!(
            h.eval(h.key(0xc613_0000, 0, None), 60, 4 * SEC),
            HlVerdict::Match
        );
        assert_eq!(h.table.len(), 1);
    }

    #[test]
    fn conntrack_tuple_status_expire_and_direction() {
        let c = match m(
            "-m conntrack --ctstate ESTABLISHED --ctproto tcp --ctorigsrc 198.18.0.0/24 ! --ctrepldst 198.18.9.9 --ctorigdstport 80 --ctstatus ASSURED --ctexpire 10:100 --ctdir ORIGINAL",
            Family::Ipv4,
        ) {
            Match::Conntrack(c) => c,
            o => panic!("{o:?}"),
        };
        let v4 = |a: [u8; 4]| {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a);
            b
        };
        let orig = conntrack::Tuple {
            src: v4([198, 18, 0, 7]),
            dst: v4([198, 18, 1, 1]),
            sport: 40000,
            dport: 80,
        };
        let reply = conntrack::Tuple {
            src: orig.dst,
            dst: orig.src,
            sport: 80,
            dport: 40000,
        };
        let view = CtView {
            proto: 6,
            orig: &orig,
            reply: &reply,
            status: 2 | 4 | 8,
            expires: 50,
            reply_dir: false,
        };
        assert!(conntrack_matches(&c, Some(view), false));
        assert!(!conntrack_matches(
            &c,
            Some(CtView {
                reply_dir: true,
                ..view
            }),
            false
        ));
        assert!(!conntrack_matches(
            &c,
            Some(CtView { proto: 17, ..view }),
            false
        ));
        assert!(!conntrack_matches(
            &c,
            Some(CtView {
                status: 2 | 8,
                ..view
            }),
            false
        ));
        assert!(!conntrack_matches(
            &c,
            Some(CtView {
                expires: 101,
                ..view
            }),
            false
        ));
        let far = conntrack::Tuple {
            src: v4([198, 18, 5, 7]),
            ..orig
        };
        assert!(!conntrack_matches(
            &c,
            Some(CtView { orig: &far, ..view }),
            false
        ));
        // no entry: only a match that tests the state (which passed) holds
        assert!(conntrack_matches(&c, None, false));
        let no_state = rules::ConntrackMatch { state: None, ..c };
        assert!(!conntrack_matches(&no_state, None, false));
    }
}
