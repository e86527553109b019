//! Inserts and lookups per second on one core: fwd's conntrack shard against a `dashmap`
//! table holding the same keys and a value of the same size, in the same run. Before that, the
//! cost of the keyed flow hash (SipHash-1-3) against the old seeded fold, in the same run
//! (`bench-conntrack hash` runs only that).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use conntrack::{
    flow_hash, legacy, Config, CtPacket, CtState, Family, HashKey, Shard, Tuple, ENTRY_SIZE,
};
use dashmap::DashMap;

const S: u64 = 1_000_000_000;
const T0: u64 = 1_000 * S;
const BURST: usize = 32;

/// Flow `i`: client 198.18.x.y (x.y from i / 60000), port 1024 + i % 60000, to 198.19.0.1:443.
fn flow(i: u32) -> (IpAddr, IpAddr, u16, u16) {
    let host = i / 60_000;
    let client = Ipv4Addr::from(0xC612_0000u32 + host);
    (
        IpAddr::V4(client),
        IpAddr::V4(Ipv4Addr::new(198, 19, 0, 1)),
        1024 + (i % 60_000) as u16,
        443,
    )
}

/// The reply-direction key of flow `i` (what a returning packet looks up).
fn reply_key(i: u32) -> (Family, u8, Tuple) {
    let (c, s, cp, sp) = flow(i);
    (Family::V4, 17, Tuple::new(s, c, sp, cp))
}

/// Pseudo-random flow indices (xorshift), the same for both tables.
fn random_indices(n: u32, count: usize) -> Vec<u32> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (((x >> 32) * u64::from(n)) >> 32) as u32
        })
        .collect()
}

/// Nanoseconds this thread has run on a CPU (`/proc/thread-self/schedstat`): on a shared
/// machine, rates per on-CPU second are what an idle core would do (cache sharing aside).
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A phase's wall-clock and on-CPU seconds.
struct Clock(Instant, u64);

impl Clock {
    fn start() -> Clock {
        Clock(Instant::now(), cpu_ns())
    }
    fn stop(&self) -> (f64, f64) {
        let cpu = (cpu_ns() - self.1) as f64 / 1e9;
        (self.0.elapsed().as_secs_f64(), cpu.max(1e-9))
    }
}

fn rss_bytes() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = s
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

struct Figures {
    insert_mops: f64,
    lookup_mops: f64,
    lookup_cpu_mops: f64,
    bytes_per_entry: f64,
}

fn bench_fwd(n: u32, probes: &[u32]) -> (Figures, f64) {
    let rss0 = rss_bytes();
    let cfg = Config {
        max: n,
        ..Config::default()
    };
    let mut sh = Shard::new(n, &cfg, T0);
    let t = Instant::now();
    for i in 0..n {
        let (c, s, cp, sp) = flow(i);
        let tr = sh.track(&CtPacket::udp(c, s, cp, sp), T0);
        debug_assert_eq!(tr.state, CtState::New);
        sh.commit(tr, true);
    }
    let insert = t.elapsed().as_secs_f64();
    assert_eq!(sh.len(), n);
    let bytes = (rss_bytes() - rss0) as f64 / f64::from(n);

    // Lookups in bursts, as the dataplane does them.
    let mut keys = Vec::with_capacity(BURST);
    let mut out = [None; BURST];
    let mut found = 0u64;
    let clock = Clock::start();
    for chunk in probes.chunks(BURST) {
        keys.clear();
        keys.extend(chunk.iter().map(|&i| reply_key(i)));
        sh.lookup_burst(&keys, T0 + S, &mut out[..keys.len()]);
        found += out[..keys.len()].iter().filter(|o| o.is_some()).count() as u64;
    }
    let (lookup, lookup_cpu) = clock.stop();
    assert_eq!(found, probes.len() as u64);

    // The whole per-packet path for returning packets: warm a burst, then track + commit.
    let track_n = probes.len().min(4_000_000);
    let t = Instant::now();
    for chunk in probes[..track_n].chunks(BURST) {
        keys.clear();
        keys.extend(chunk.iter().map(|&i| reply_key(i)));
        black_box(sh.warm(&keys));
        for &i in chunk {
            let (c, s, cp, sp) = flow(i);
            let tr = sh.track(&CtPacket::udp(s, c, sp, cp), T0 + 2 * S);
            debug_assert_eq!(tr.state, CtState::Established);
            sh.commit(black_box(tr), true);
        }
    }
    let track = t.elapsed().as_secs_f64();
    println!(
        "fwd     n={n}: insert {:.2} Mops/s, lookup {:.2} Mops/s ({:.2} per on-CPU s), track (warm+track+commit) {:.2} Mops/s, \
         {} B/entry computed ({} entry + buckets + wheel), {:.1} B/entry RSS",
        f64::from(n) / insert / 1e6,
        probes.len() as f64 / lookup / 1e6,
        probes.len() as f64 / lookup_cpu / 1e6,
        track_n as f64 / track / 1e6,
        sh.memory_bytes() / n as usize,
        ENTRY_SIZE,
        bytes
    );
    (
        Figures {
            insert_mops: f64::from(n) / insert / 1e6,
            lookup_mops: probes.len() as f64 / lookup / 1e6,
            lookup_cpu_mops: probes.len() as f64 / lookup_cpu / 1e6,
            bytes_per_entry: sh.memory_bytes() as f64 / f64::from(n),
        },
        track_n as f64 / track / 1e6,
    )
}

/// What a simple conntrack on dashmap would store per connection: the reply key maps to a
/// record of the same size as fwd's entry.
#[derive(Clone, Copy)]
struct Record {
    _orig: Tuple,
    expires: u64,
    _state: [u8; 48],
}

fn bench_dashmap(n: u32, probes: &[u32]) -> Figures {
    let rss0 = rss_bytes();
    let map: DashMap<(Family, u8, Tuple), Record> = DashMap::with_capacity(n as usize);
    let t = Instant::now();
    for i in 0..n {
        let key = reply_key(i);
        let rec = Record {
            _orig: key.2,
            expires: T0 + 30 * S,
            _state: [0; 48],
        };
        map.insert(key, rec);
    }
    let insert = t.elapsed().as_secs_f64();
    let bytes = (rss_bytes() - rss0) as f64 / f64::from(n);
    let mut found = 0u64;
    let clock = Clock::start();
    for chunk in probes.chunks(BURST) {
        for &i in chunk {
            let key = reply_key(i);
            if let Some(r) = map.get(&key) {
                if r.expires > T0 {
                    found += 1;
                }
            }
        }
    }
    let (lookup, lookup_cpu) = clock.stop();
    assert_eq!(found, probes.len() as u64);
    println!(
        "dashmap n={n}: insert {:.2} Mops/s, lookup {:.2} Mops/s ({:.2} per on-CPU s), {:.1} B/entry RSS",
        f64::from(n) / insert / 1e6,
        probes.len() as f64 / lookup / 1e6,
        probes.len() as f64 / lookup_cpu / 1e6,
        bytes
    );
    Figures {
        insert_mops: f64::from(n) / insert / 1e6,
        lookup_mops: probes.len() as f64 / lookup / 1e6,
        lookup_cpu_mops: probes.len() as f64 / lookup_cpu / 1e6,
        bytes_per_entry: bytes,
    }
}

/// Nanoseconds per hash (on-CPU) of the keyed and the old hash over `keys`, best of 7 rounds
/// each, the two alternating so that both see the same machine.
fn hash_ns(keys: &[(Family, u8, Tuple)]) -> (f64, f64) {
    const REPS: usize = 2_000;
    let key = HashKey([0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210]);
    let seed = 0x5eed_f00d_cafe_d00d;
    let (mut new, mut old) = (f64::MAX, f64::MAX);
    for _ in 0..7 {
        let c = Clock::start();
        let mut acc = 0u64;
        for _ in 0..REPS {
            for (f, p, t) in keys {
                acc ^= flow_hash(&key, *f, *p, black_box(t));
            }
        }
        black_box(acc);
        new = new.min(c.stop().1 * 1e9 / (REPS * keys.len()) as f64);
        let c = Clock::start();
        let mut acc = 0u64;
        for _ in 0..REPS {
            for (f, p, t) in keys {
                acc ^= legacy::flow_hash(seed, *f, *p, black_box(t));
            }
        }
        black_box(acc);
        old = old.min(c.stop().1 * 1e9 / (REPS * keys.len()) as f64);
    }
    (new, old)
}

/// The flow hash row: SipHash-1-3 against the old fold, IPv4 and IPv6 keys.
fn bench_hash() {
    let v4: Vec<_> = (0..4096).map(reply_key).collect();
    let v6: Vec<_> = (0..4096u32)
        .map(|i| {
            let c = IpAddr::V6(std::net::Ipv6Addr::from(
                0x2001_0002_0000_0000_0000_0000_0000_0000u128 | u128::from(i) << 16 | 1,
            ));
            let s = IpAddr::V6("2001:2::443".parse().unwrap());
            (Family::V6, 6, Tuple::new(c, s, 1024 + i as u16, 443))
        })
        .collect();
    let (new4, old4) = hash_ns(&v4);
    let (new6, old6) = hash_ns(&v6);
    println!(
        "RESULT hash=siphash13 v4_ns={new4:.2} legacy_v4_ns={old4:.2} v4_ratio={:.2} v6_ns={new6:.2} legacy_v6_ns={old6:.2} v6_ratio={:.2}",
        new4 / old4,
        new6 / old6
    );
}

fn main() {
    bench_hash();
    if std::env::args().nth(1).as_deref() == Some("hash") {
        return;
    }
    let sizes: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1_000_000, 10_000_000]
    } else {
        sizes
    };
    let mut last = None;
    for &n in &sizes {
        let probes = random_indices(n, 10_000_000);
        let (fwd, _track) = bench_fwd(n, &probes);
        let dm = bench_dashmap(n, &probes);
        let ratio = fwd.lookup_mops / dm.lookup_mops;
        println!(
            "n={n}: lookup ratio fwd/dashmap = {ratio:.2} (per on-CPU s: {:.2}), insert ratio = {:.2}, dashmap {:.1} B/entry",
            fwd.lookup_cpu_mops / dm.lookup_cpu_mops,
            fwd.insert_mops / dm.insert_mops,
            dm.bytes_per_entry
        );
        last = Some((n, fwd, dm, ratio));
    }
    let (n, fwd, dm, ratio) = last.expect("at least one size");
    println!(
        "wall clock: entries={n} fwd_lookup_mops={:.2} dashmap_lookup_mops={:.2} ratio={ratio:.2}",
        fwd.lookup_mops, dm.lookup_mops
    );
    // Rates per on-CPU second: on a shared machine the wall clock also counts time the bench
    // was not running, differently for each phase.
    println!(
        "RESULT entries={n} fwd_lookup_mops={:.2} dashmap_lookup_mops={:.2} ratio={:.2} bytes_per_entry={:.0}",
        fwd.lookup_cpu_mops,
        dm.lookup_cpu_mops,
        fwd.lookup_cpu_mops / dm.lookup_cpu_mops,
        fwd.bytes_per_entry
    );
}
