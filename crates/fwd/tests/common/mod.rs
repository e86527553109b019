//! Helpers shared by fwd's end-to-end test binaries (each `tests/*.rs` includes this module).
//! Not every binary uses every helper.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

/// One testbed test at a time within a binary: they share the machine's two cores.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Fails (never skips) without root: CI runs these tests as root.
pub fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let uid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .expect("Uid line");
    assert_eq!(
        uid, "0",
        "these tests need root (network namespaces, XDP); CI runs them as root"
    );
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `cmd` to its end; panics only if it cannot be started.
pub fn sh(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"))
}

/// Runs `cmd`, which must succeed; its stdout.
pub fn ok(cmd: &mut Command) -> String {
    let out = sh(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `f` on a thread inside network namespace `ns` and waits for it.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    spawn_in_netns(ns, f).join().expect("netns thread")
}

/// Runs `f` on a thread inside network namespace `ns`.
pub fn spawn_in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        ports::netns::enter(&ns).unwrap_or_else(|e| panic!("enter netns {ns}: {e}"));
        f()
    })
}

/// The value of the Prometheus sample `name_labels` (name with its labels) in `text`.
pub fn metric(text: &str, name_labels: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_labels)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no metric {name_labels} in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// The fwd binary under test.
pub const FWD: &str = env!("CARGO_BIN_EXE_fwd");

/// A testbed (`scripts/testbed.sh`) with its own namespaces and a scratch directory; `down` on
/// drop, also when the test fails. Each test binary adds its own config writers.
pub struct Testbed {
    pub prefix: String,
    pub dir: PathBuf,
}

impl Testbed {
    /// Namespaces `{tag}{pid}{name}-{role}`: `tag` keeps the binaries apart, `name` the tests.
    pub fn up_with(tag: &str, name: &str, queues: u32) -> Testbed {
        require_root();
        let prefix = format!("{tag}{}{name}-", std::process::id() % 100000);
        let dir = std::env::temp_dir().join(format!("{prefix}dir"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let tb = Testbed { prefix, dir };
        ok(Command::new(repo_root().join("scripts/testbed.sh")).args([
            "up",
            "--queues",
            &queues.to_string(),
            "--prefix",
            &tb.prefix,
        ]));
        tb
    }
    pub fn ns(&self, role: &str) -> String {
        format!("{}{role}", self.prefix)
    }
    pub fn exec(&self, role: &str, args: &[&str]) -> Output {
        sh(Command::new("ip")
            .args(["netns", "exec", &self.ns(role)])
            .args(args))
    }
    pub fn fw_links(&self) -> String {
        ok(Command::new("ip").args(["-n", &self.ns("fw"), "link", "show"]))
    }
    /// The control socket every config of these tests names.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("ctl.sock")
    }
    /// Writes `text` as the scratch directory's `fwd.toml`.
    pub fn write_config(&self, text: &str) -> PathBuf {
        let path = self.dir.join("fwd.toml");
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("scripts/testbed.sh"))
            .args(["down", "--prefix", &self.prefix])
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running fwd in the fw namespace; SIGTERM, then SIGKILL after 5 s, on drop.
pub struct Fwd {
    pub child: Option<Child>,
    pub socket: PathBuf,
    pub ns: String,
    /// Where its stderr goes, if to a file.
    pub log: Option<PathBuf>,
}

impl Fwd {
    /// `ip netns exec FW fwd --config CONFIG`, stderr to the scratch directory's `fwd.log`.
    pub fn start(tb: &Testbed, config: &Path) -> Fwd {
        let log = tb.dir.join("fwd.log");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &tb.ns("fw"), FWD, "--config"])
            .arg(config)
            .stderr(std::fs::File::create(&log).unwrap());
        Fwd::launch(tb, &mut cmd, Some(log))
    }

    /// Spawns `cmd` (which runs fwd in the fw namespace, its pid fwd's) and waits until fwd
    /// answers on the control socket; panics with its log if it exits first.
    pub fn launch(tb: &Testbed, cmd: &mut Command, log: Option<PathBuf>) -> Fwd {
        Fwd::launch_at(&tb.ns("fw"), tb.socket(), cmd, log)
    }

    /// `ip netns exec NS fwd --config CONFIG`, stderr to `log`, answering on `socket`: for
    /// topologies of more than one fwd (each in a namespace of its own).
    pub fn start_in(ns: &str, config: &Path, socket: PathBuf, log: PathBuf) -> Fwd {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, FWD, "--config"])
            .arg(config)
            .stderr(std::fs::File::create(&log).unwrap());
        Fwd::launch_at(ns, socket, &mut cmd, Some(log))
    }

    /// [`Fwd::launch`] for a fwd in namespace `ns` answering on `socket`.
    pub fn launch_at(ns: &str, socket: PathBuf, cmd: &mut Command, log: Option<PathBuf>) -> Fwd {
        let child = cmd
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn fwd: {e}"));
        let mut f = Fwd {
            child: Some(child),
            socket,
            ns: ns.to_string(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(a) = fwd::control::request(&f.socket, "ping") {
                if a == "pong\n" {
                    return f;
                }
            }
            if let Some(st) = f.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("fwd exited early ({st}): {}", f.log_text());
            }
            assert!(Instant::now() < deadline, "fwd did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn log_text(&self) -> String {
        self.log
            .as_ref()
            .and_then(|l| std::fs::read_to_string(l).ok())
            .unwrap_or_default()
    }

    /// Stops fwd with SIGTERM and returns its exit status (panics after 10 s).
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        ok(Command::new("kill").args(["-TERM", &child.id().to_string()]));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("fwd did not stop within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One control-socket request; its answer.
    pub fn request(&self, cmd: &str) -> String {
        fwd::control::request(&self.socket, cmd).expect("control socket")
    }

    pub fn stats(&self) -> String {
        self.request("stats")
    }

    /// `/metrics` over HTTP at `addr`, from inside the fw namespace.
    pub fn metrics_at(&self, addr: &'static str) -> String {
        in_netns(&self.ns, move || {
            let mut s = TcpStream::connect(addr).expect("connect to /metrics");
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            assert!(out.starts_with("HTTP/1.0 200 OK"), "{out}");
            out
        })
    }

    /// `/metrics` at the address the tests' configs use.
    pub fn metrics(&self) -> String {
        self.metrics_at("127.0.0.1:9900")
    }
}

impl Drop for Fwd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
