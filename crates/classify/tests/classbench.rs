//! Differential tests on every ClassBench rule set and trace in ../shared/data/classbench: the
//! compiled classifier must give the linear scan's answer for every header (1K and 10K sets in
//! full, the 100K sets on a sample of their trace), from index 0 and when resuming after the
//! first match.

use std::collections::HashSet;
use std::path::PathBuf;

use classify::classbench::{parse_rules, parse_trace};
use classify::{Classifier, Key, LinearClassifier, NO_MATCH};

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/classbench")
}

fn check_set(name: &str, sample_every: usize) {
    let dir = data_dir();
    let rules = parse_rules(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap();
    let trace =
        parse_trace(&std::fs::read_to_string(dir.join(format!("{name}_trace"))).unwrap()).unwrap();
    assert!(
        rules.len() > 700 && trace.len() > 7000,
        "{name}: data set too small"
    );
    let cls = Classifier::build(&rules);
    let lin = LinearClassifier::new(&rules);
    // the compiled lookup runs over the whole trace in bursts of 32 ...
    let keys: Vec<Key> = trace.iter().map(|t| t.key).collect();
    let mut got = vec![0u32; keys.len()];
    for (k, o) in keys.chunks(32).zip(got.chunks_mut(32)) {
        cls.lookup_burst(k, &vec![0; k.len()], o);
    }
    // ... and the (slow) linear scan over each distinct header once
    let mut seen = HashSet::new();
    let mut checked = 0;
    for (i, t) in trace.iter().enumerate() {
        if i % sample_every != 0 || !seen.insert(t.key) {
            continue;
        }
        let want = lin.lookup(&t.key, 0);
        assert!(
            want <= t.generator,
            "{name} line {}: generator rule {} does not match",
            i + 1,
            t.generator
        );
        assert_eq!(got[i], want, "{name} line {}: {:?}", i + 1, t.key);
        if want != NO_MATCH && checked % 4 == 0 {
            assert_eq!(
                cls.lookup(&t.key, want + 1),
                lin.lookup(&t.key, want + 1),
                "{name} line {}: resume",
                i + 1
            );
        }
        checked += 1;
    }
    // every repeated header got the same answer as its first occurrence
    let mut first = std::collections::HashMap::new();
    for (k, g) in keys.iter().zip(&got) {
        assert_eq!(
            *first.entry(*k).or_insert(*g),
            *g,
            "{name}: same header, different answer"
        );
    }
    assert!(checked > 0);
}

#[test]
fn acl1_1000() {
    check_set("acl1_1000", 1);
}
#[test]
fn fw1_1000() {
    check_set("fw1_1000", 1);
}
#[test]
fn ipc1_1000() {
    check_set("ipc1_1000", 1);
}
#[test]
fn acl1_10000() {
    check_set("acl1_10000", 1);
}
#[test]
fn fw1_10000() {
    check_set("fw1_10000", 1);
}
#[test]
fn ipc1_10000() {
    check_set("ipc1_10000", 1);
}
#[test]
fn acl1_100000_sampled() {
    check_set("acl1_100000", 400);
}
#[test]
fn fw1_100000_sampled() {
    check_set("fw1_100000", 400);
}
#[test]
fn ipc1_100000_sampled() {
    check_set("ipc1_100000", 400);
}
