//! Every ruleset of `tests/rulesets/` that iptables accepts (the `bad-*` and `strict-*` files are
//! refusals, checked by the rules crate's snapshots) also compiles into the data plane: what
//! loads must run. Among them the real hosts' dumps (Docker, ufw) users bring unchanged.

use std::path::{Path, PathBuf};

use dataplane::{compile, CompileConfig, PortInfo};
use rules::Family;

/// Files whose constructs the rules crate parses but the data plane does not run yet, with
/// the construct its error names. Each must still fail so (a file here that compiles fails the
/// test: take it off the list).
const PENDING: &[(&str, &str)] = &[
    (
        "stateful-limits.v4",
        "fwd's data plane does not evaluate it yet",
    ),
    (
        "stateful-limits.v6",
        "fwd's data plane does not evaluate it yet",
    ),
];

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/rulesets");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("tests/rulesets exists")
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            (name.ends_with(".v4") || name.ends_with(".v6"))
                && !name.starts_with("bad-")
                && !name.starts_with("strict-")
        })
        .collect();
    v.sort();
    v
}

fn config() -> CompileConfig {
    CompileConfig {
        ports: [
            PortInfo {
                name: "eth0".into(),
                ipv4: Some("198.18.0.253".parse().unwrap()),
                ipv6: Some("2001:2::fd".parse().unwrap()),
                ..PortInfo::default()
            },
            PortInfo {
                name: "eth1".into(),
                ipv4: Some("198.18.1.254".parse().unwrap()),
                ipv6: Some("2001:2:0:1::fe".parse().unwrap()),
                ..PortInfo::default()
            },
        ],
        workers: 2,
    }
}

#[test]
fn every_accepted_corpus_file_compiles() {
    let files = corpus();
    let mut failed = Vec::new();
    for p in &files {
        let family = if p.extension().unwrap() == "v6" {
            Family::Ipv6
        } else {
            Family::Ipv4
        };
        let rs = match rules::parse_restore_file(p, family) {
            Ok(rs) => rs,
            Err(d) => {
                failed.push(format!("{}: does not parse:\n{d}", p.display()));
                continue;
            }
        };
        let (v4, v6) = match family {
            Family::Ipv4 => (Some(&rs), None),
            Family::Ipv6 => (None, Some(&rs)),
        };
        let name = p.file_name().unwrap().to_str().unwrap();
        let pending = PENDING.iter().find(|(f, _)| *f == name);
        match (compile(v4, v6, &config()), pending) {
            (Ok(_), None) => {}
            (Ok(_), Some(_)) => failed.push(format!("{name}: compiles now: take it off PENDING")),
            (Err(es), Some((_, why))) if es.iter().any(|e| e.to_string().contains(why)) => {}
            (Err(es), _) => {
                let es: Vec<String> = es.iter().map(|e| e.to_string()).collect();
                failed.push(format!(
                    "{}: does not compile:\n{}",
                    p.display(),
                    es.join("\n")
                ));
            }
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    // the real hosts' dumps are among them
    for name in ["docker-host.v4", "ufw-host.v4", "ufw-host.v6"] {
        assert!(
            files.iter().any(|p| p.ends_with(name)),
            "{name} is in tests/rulesets"
        );
    }
}
