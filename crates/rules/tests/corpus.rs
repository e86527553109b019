//! The ruleset corpus (`tests/rulesets/`): valid files parse and survive print/re-parse; invalid
//! ones (`bad-*`, `strict-*`) produce exactly the diagnostics in their `.expected` snapshot
//! (regenerate with `UPDATE_EXPECT=1`). Every file also runs through the fuzz target's body.

use std::path::{Path, PathBuf};

use rules::{parse_restore, Family};

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/rulesets");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/rulesets exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("v4" | "v6")))
        .collect();
    v.sort();
    v
}

fn family(p: &Path) -> Family {
    if p.extension().and_then(|e| e.to_str()) == Some("v6") {
        Family::Ipv6
    } else {
        Family::Ipv4
    }
}

#[test]
fn fuzz_body_runs_over_corpus() {
    for p in corpus() {
        rules::fuzzing::parse_restore_body(&std::fs::read(&p).unwrap());
    }
}

#[test]
fn valid_files_parse_and_invalid_match_snapshots() {
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut failures = Vec::new();
    let mut bad = 0;
    for p in corpus() {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&p).unwrap();
        let res = parse_restore(&name, &text, family(&p));
        if name.starts_with("bad-") || name.starts_with("strict-") {
            bad += 1;
            let exp_path = p.with_file_name(format!("{name}.expected"));
            match res {
                Ok(_) => failures.push(format!("{name}: parsed, but it is invalid")),
                Err(d) => {
                    let got = d.to_string();
                    if update {
                        std::fs::write(&exp_path, &got).unwrap();
                    }
                    let want = std::fs::read_to_string(&exp_path).unwrap_or_default();
                    if got != want {
                        failures.push(format!(
                            "{name}: diagnostics differ\n--- expected\n{want}--- got\n{got}"
                        ));
                    }
                }
            }
        } else if let Err(d) = res {
            failures.push(format!("{name}: rejected:\n{d}"));
        }
    }
    assert!(bad >= 20, "too few invalid files: {bad}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A fuzzer find: `--limit 1503/minute` is printed as `25/sec` (as iptables-save does), so a
/// re-parse has a slightly different average; the comparison rounds rates the same way.
#[test]
fn fuzz_regression_rounded_limit_rate() {
    let text =
        "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m limit --limit 1503/minute -j ACCEPT\nCOMMIT\n";
    rules::fuzzing::parse_restore_body(text.as_bytes());
    rules::fuzzing::parse_restore_body(b"-A INPUT -m limit --limit 1503/minute -j ACCEPT\n");
    let rs = parse_restore("t", text, Family::Ipv4).unwrap();
    assert!(rs.to_save().contains("-m limit --limit 25/sec -j ACCEPT"));
}
