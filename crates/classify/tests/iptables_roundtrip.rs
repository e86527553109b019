//! The ClassBench -> iptables-restore converter writes iptables-save's canonical form: each
//! converted set, loaded by `iptables-legacy-restore` and printed by `iptables-legacy-save` in a
//! fresh anonymous network namespace (`unshare --net`, gone when the command exits; the
//! machine's own tables are never touched), comes back byte for byte. Needs root and
//! iptables-legacy, as CI has.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use classify::classbench::{parse_rules, to_iptables_restore};

fn roundtrip(name: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/classbench");
    let rules = parse_rules(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap();
    let (text, origin) = to_iptables_restore(&rules, "FORWARD", "ACCEPT").unwrap();
    assert_eq!(
        origin.len(),
        text.lines().filter(|l| l.starts_with("-A ")).count()
    );
    let mut child = Command::new("unshare")
        .args([
            "--net",
            "sh",
            "-c",
            "iptables-legacy-restore && iptables-legacy-save -t filter",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare (util-linux) runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let saved: String = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    if saved != text {
        let first = saved.lines().zip(text.lines()).position(|(a, b)| a != b);
        panic!("{name}: iptables-save differs from the converter at line {first:?}");
    }
}

#[test]
fn acl1_1000_is_canonical() {
    roundtrip("acl1_1000");
}

#[test]
fn fw1_1000_is_canonical() {
    roundtrip("fw1_1000");
}

#[test]
fn ipc1_1000_is_canonical() {
    roundtrip("ipc1_1000");
}

#[test]
fn fw1_10000_is_canonical() {
    roundtrip("fw1_10000");
}
