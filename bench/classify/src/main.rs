//! `classify-bench RULES TRACE [NAME]`: build time, structure size, peak RSS, lookups/s on one
//! core in bursts of 32 and 64, every lookup checked against the linear classifier, and the cost
//! of incremental inserts and deletes. Prints `key=value` lines that `run.sh` reads.
#![deny(unsafe_code)]

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use classify::classbench::{parse_rules, parse_trace};
use classify::{Classifier, Key, LinearClassifier, NO_MATCH};

fn vm_hwm_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn vm_rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// This thread's time on a CPU so far (ns), from the scheduler: unlike wall time it does not
/// grow while other processes on this shared machine run.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// Lookups per second: (the best single pass over the trace among passes run for `total`, the
/// one least disturbed by other processes; the average over on-CPU time).
fn rate(cls: &Classifier, keys: &[Key], burst: usize, total: Duration) -> (f64, f64) {
    let starts = vec![0u32; burst];
    let mut out = vec![0u32; burst];
    let mut best = 0f64;
    let t0 = Instant::now();
    let c0 = cpu_ns();
    let mut n = 0usize;
    while t0.elapsed() < total {
        let t = Instant::now();
        for k in keys.chunks(burst) {
            cls.lookup_burst(black_box(k), &starts[..k.len()], &mut out[..k.len()]);
            black_box(&out);
        }
        n += keys.len();
        best = best.max(keys.len() as f64 / t.elapsed().as_secs_f64());
    }
    let cpu = (cpu_ns() - c0) as f64 / 1e9;
    (best, n as f64 / cpu)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: classify-bench RULES TRACE [NAME]");
        std::process::exit(2);
    }
    let name = args.get(2).cloned().unwrap_or_else(|| {
        std::path::Path::new(&args[0])
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    });
    let rules = parse_rules(&std::fs::read_to_string(&args[0]).expect("read rules"))
        .unwrap_or_else(|e| {
            eprintln!("{}:{e}", args[0]);
            std::process::exit(1)
        });
    let trace = parse_trace(&std::fs::read_to_string(&args[1]).expect("read trace"))
        .unwrap_or_else(|e| {
            eprintln!("{}:{e}", args[1]);
            std::process::exit(1)
        });
    let keys: Vec<Key> = trace.iter().map(|t| t.key).collect();

    let rss0 = vm_rss_kib();
    let t = Instant::now();
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let dp = classify::BuildParams::for_rules(rules.len());
    let params = classify::BuildParams {
        binth: env("CLASSIFY_BINTH", dp.binth),
        spfac: env("CLASSIFY_SPFAC", dp.spfac),
        max_cut_bits: env("CLASSIFY_CUT_BITS", dp.max_cut_bits as usize) as u8,
        max_depth: env("CLASSIFY_MAX_DEPTH", dp.max_depth),
        small_bits: env("CLASSIFY_SMALL_BITS", dp.small_bits as usize) as u8,
    };
    let cls = Classifier::build_with(&rules, params);
    let build = t.elapsed();
    let hwm = vm_hwm_kib();
    let st = cls.stats();
    println!("set={name}");
    println!("rules={}", rules.len());
    println!("trace={}", keys.len());
    println!("build_ms={:.1}", build.as_secs_f64() * 1e3);
    println!("bytes={}", cls.size_bytes());
    println!("peak_rss_kib={hwm}");
    println!("build_rss_growth_kib={}", hwm.saturating_sub(rss0));
    println!(
        "tree groups={} nodes={} leaves={} leaf_entries={} max_depth={} max_leaf={}",
        st.groups, st.nodes, st.leaves, st.leaf_entries, st.max_depth, st.max_leaf
    );

    // correctness: every lookup of the trace against the linear scan (each distinct header once)
    let lin = LinearClassifier::new(&rules);
    let mut got = vec![0u32; keys.len()];
    for (k, o) in keys.chunks(64).zip(got.chunks_mut(64)) {
        cls.lookup_burst(k, &vec![0; k.len()], o);
    }
    let mut memo: HashMap<Key, u32> = HashMap::new();
    let mut mismatches = 0usize;
    let mut no_match = 0usize;
    for ((k, g), t) in keys.iter().zip(&got).zip(&trace) {
        let want = *memo.entry(*k).or_insert_with(|| lin.lookup(k, 0));
        if want != *g {
            mismatches += 1;
            if mismatches <= 5 {
                eprintln!(
                    "mismatch: {k:?} compiled {g} linear {want} (generator {})",
                    t.generator
                );
            }
        }
        if want == NO_MATCH {
            no_match += 1;
        }
    }
    println!(
        "checked={} distinct={} no_match={no_match}",
        keys.len(),
        memo.len()
    );
    println!("mismatches={mismatches}");

    let min = Duration::from_millis(env("CLASSIFY_BENCH_MS", 1500) as u64);
    let (r32, c32) = rate(&cls, &keys, 32, min);
    let (r64, c64) = rate(&cls, &keys, 64, min);
    println!("mpps_burst32={:.2} (on-cpu {:.2})", r32 / 1e6, c32 / 1e6);
    println!("mpps_burst64={:.2} (on-cpu {:.2})", r64 / 1e6, c64 / 1e6);
    println!("fwd_mpps={:.2}", r32.max(r64) / 1e6);
    println!("oncpu_mpps={:.2}", c32.max(c64) / 1e6);
    if std::env::var("CLASSIFY_SKIP_UPDATES").is_ok() {
        return;
    }

    // incremental updates: a private copy, as the control thread does; random positions
    let mut c = cls.clone();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let (mut ins, mut del, mut clone_us) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..2000 {
        if c.needs_rebuild() {
            c = c.rebuilt();
        }
        let r = rules[rnd(rules.len())];
        let pos = rnd(c.len() + 1);
        let t = Instant::now();
        c.insert(pos, r).expect("position within the chain");
        ins.push(t.elapsed().as_secs_f64() * 1e6);
        let pos = rnd(c.len());
        let t = Instant::now();
        black_box(c.delete(pos).expect("position within the chain"));
        del.push(t.elapsed().as_secs_f64() * 1e6);
        let t = Instant::now();
        black_box(c.clone());
        clone_us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    println!(
        "insert_us_median={:.1} insert_us_p99={:.1}",
        percentile(&mut ins, 0.5),
        percentile(&mut ins, 0.99)
    );
    println!(
        "delete_us_median={:.1} delete_us_p99={:.1}",
        percentile(&mut del, 0.5),
        percentile(&mut del, 0.99)
    );
    println!(
        "clone_us_median={:.1} clone_us_p99={:.1}",
        percentile(&mut clone_us, 0.5),
        percentile(&mut clone_us, 0.99)
    );
    let t = Instant::now();
    let re = c.rebuilt();
    println!("rebuild_ms={:.1}", t.elapsed().as_secs_f64() * 1e3);
    black_box(re);
}
