//! `fwd check` warns, naming `file:line`, about each rule that can never fire on a bump in the
//! wire (host-only matches) and each rule whose target does nothing there (CLASSIFY,
//! CHECKSUM), and changes nothing else: the check still succeeds.

use std::process::Command;

const FWD: &str = env!("CARGO_BIN_EXE_fwd");

/// A namespace with a veth pair `wa`/`wb` for the ports, deleted on drop.
struct Ns(String);

impl Ns {
    fn new(tag: &str) -> Ns {
        let name = format!("fwd-cw{tag}-{}", std::process::id());
        let ip = |args: &[&str]| {
            let st = Command::new("ip").args(args).status().expect("run ip");
            assert!(st.success(), "ip {args:?} failed (needs root)");
        };
        ip(&["netns", "add", &name]);
        let ns = Ns(name);
        ip(&[
            "-n", &ns.0, "link", "add", "wa", "type", "veth", "peer", "name", "wb",
        ]);
        ns
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn check_warns_about_rules_that_can_never_fire() {
    let ns = Ns::new("");
    let dir = std::env::temp_dir().join(format!("fwd-check-warn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                 -A PREROUTING -m rpfilter -j DROP\n\
                 -A PREROUTING -m rpfilter --invert -j DROP\n\
                 -A PREROUTING -m socket --transparent -j ACCEPT\n\
                 -A PREROUTING -m addrtype --dst-type LOCAL -j ACCEPT\n\
                 COMMIT\n";
    std::fs::write(dir.join("v4.rules"), rules).unwrap();
    let cfg = dir.join("fwd.toml");
    // `check` needs the interfaces to exist; nothing is bound
    std::fs::write(
        &cfg,
        "[ports.a]\ninterface = \"wa\"\n[ports.b]\ninterface = \"wb\"\n[workers]\ncores = [0]\n\
         [rules]\nipv4 = \"v4.rules\"\n",
    )
    .unwrap();
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.0, FWD, "check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{}: ok", cfg.display())
    );
    let file = dir.join("v4.rules");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with(&format!(
            "{}:4: warning: `-m rpfilter` never matches",
            file.display()
        )),
        "{err}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{}:6: warning: `-m socket` never matches",
            file.display()
        )),
        "{err}"
    );
}

#[test]
fn check_warns_that_classify_and_checksum_have_no_effect() {
    let ns = Ns::new("c");
    let dir = std::env::temp_dir().join(format!("fwd-check-warn-c-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = "*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n\
                 :OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
                 -A FORWARD -p udp -j CHECKSUM --checksum-fill\n\
                 -A FORWARD -j TTL --ttl-dec 1\n\
                 -A POSTROUTING -j CLASSIFY --set-class 1:10\n\
                 COMMIT\n";
    std::fs::write(dir.join("v4.rules"), rules).unwrap();
    let cfg = dir.join("fwd.toml");
    std::fs::write(
        &cfg,
        "[ports.a]\ninterface = \"wa\"\nmtu = 1400\n[ports.b]\ninterface = \"wb\"\n\
         [workers]\ncores = [0]\n[rules]\nipv4 = \"v4.rules\"\n",
    )
    .unwrap();
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.0, FWD, "check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let file = dir.join("v4.rules");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with(&format!("{}:7: warning: `-j CHECKSUM`", file.display())),
        "{err}"
    );
    assert!(
        lines[1].starts_with(&format!("{}:9: warning: `-j CLASSIFY`", file.display()))
            && lines[1].contains("no queueing effect"),
        "{err}"
    );
}
