//! Differential test against the real `iptables-legacy-restore`/`-save` (and ip6tables) in a
//! throw-away network namespace per corpus file. Needs root and iptables-legacy: CI has both, so
//! the test fails loudly (never skips) without them.
//!
//! - `*.v4`/`*.v6` (not `bad-`/`strict-`): both accept, fwd's printer equals
//!   `iptables-legacy-save` ignoring `#` lines, and `Ruleset::to_list` equals
//!   `iptables-legacy -t TABLE -L -n -v --line-numbers` for every table.
//! - `bad-*`: both reject.
//! - `strict-*`: iptables accepts, fwd rejects on purpose (see the crate docs).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use rules::{parse_restore, Family};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A network namespace deleted on drop (also when the test panics).
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let name = format!(
            "rules-diff-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let st = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("run ip");
        assert!(st.success(), "ip netns add {name} failed (needs root)");
        Netns(name)
    }
    fn run(&self, prog: &str, stdin: &str) -> (bool, String, String) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.0, prog])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ip netns exec");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        let out = child.wait_with_output().expect("wait");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn strip_comments(s: &str) -> String {
    s.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

pub fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/rulesets");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/rulesets exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("v4" | "v6")))
        .collect();
    v.sort();
    v
}

#[test]
fn corpus_agrees_with_iptables_legacy() {
    // SAFETY-free root check: `id -u` keeps this crate free of unsafe/libc.
    let uid = Command::new("id").arg("-u").output().expect("run id");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "the differential test needs root (CI runs as root)"
    );
    let mut failures = Vec::new();
    let mut compared = 0;
    let files = corpus();
    assert!(files.len() >= 10, "corpus too small: {}", files.len());
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let v6 = name.ends_with(".v6");
        let (family, restore, save) = if v6 {
            (
                Family::Ipv6,
                "ip6tables-legacy-restore",
                "ip6tables-legacy-save",
            )
        } else {
            (
                Family::Ipv4,
                "iptables-legacy-restore",
                "iptables-legacy-save",
            )
        };
        let ns = Netns::new();
        let (ok, _, err) = ns.run(restore, &text);
        let ours = parse_restore(&name, &text, family);
        if name.starts_with("bad-") {
            if ok {
                failures.push(format!(
                    "{name}: iptables accepted a file meant to be invalid"
                ));
            }
            if ours.is_ok() {
                failures.push(format!(
                    "{name}: fwd accepted it (iptables said: {})",
                    err.trim()
                ));
            }
        } else if name.starts_with("strict-") {
            if !ok {
                failures.push(format!("{name}: iptables rejected it: {}", err.trim()));
            }
            if ours.is_ok() {
                failures.push(format!("{name}: fwd accepted a file it rejects on purpose"));
            }
        } else {
            if !ok {
                failures.push(format!("{name}: iptables rejected it: {}", err.trim()));
                continue;
            }
            let (sok, theirs, _) = ns.run(save, "");
            assert!(sok, "{save} failed");
            match ours {
                Err(d) => failures.push(format!("{name}: fwd rejected it:\n{d}")),
                Ok(rs) => {
                    compared += 1;
                    let theirs = strip_comments(&theirs);
                    let mine = rs.to_save();
                    // `-L -n -v --line-numbers` of every table, counters zero on both sides.
                    let list = if v6 {
                        "ip6tables-legacy"
                    } else {
                        "iptables-legacy"
                    };
                    for t in &rs.tables {
                        let tn = t.name.as_str();
                        let out = Command::new("ip")
                            .args([
                                "netns",
                                "exec",
                                &ns.0,
                                list,
                                "-t",
                                tn,
                                "-L",
                                "-n",
                                "-v",
                                "--line-numbers",
                            ])
                            .output()
                            .expect("run iptables -L");
                        let theirs_l = String::from_utf8_lossy(&out.stdout);
                        let mine_l = rs.to_list(tn, None);
                        if theirs_l != mine_l {
                            let d: Vec<String> = theirs_l
                                .lines()
                                .zip(mine_l.lines())
                                .filter(|(a, b)| a != b)
                                .map(|(a, b)| format!("  iptables: {a}\n  fwd:      {b}"))
                                .collect();
                            failures.push(format!(
                                "{name}: -L of table {tn} differs:\n{}",
                                d.join("\n")
                            ));
                        }
                    }
                    if theirs != mine {
                        let mut diff = String::new();
                        for (a, b) in theirs.lines().zip(mine.lines()) {
                            if a != b {
                                diff.push_str(&format!("  iptables: {a}\n  fwd:      {b}\n"));
                            }
                        }
                        if theirs.lines().count() != mine.lines().count() {
                            diff.push_str(&format!(
                                "  line counts differ: {} vs {}\n",
                                theirs.lines().count(),
                                mine.lines().count()
                            ));
                        }
                        failures.push(format!("{name}: save text differs:\n{diff}"));
                    }
                }
            }
        }
    }
    eprintln!("compared {compared} save texts");
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
