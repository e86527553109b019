//! A sync peer over UDP around [`sync::Engine`], driven by lines on stdin; the interop tests run
//! it inside a network namespace, facing a real conntrackd.
//!
//! ```text
//! sync-peer --mode ftfw|notrack --bind ADDR:PORT --peer ADDR:PORT [--seq N]
//! ```
//!
//! Commands (one a line): `add HEX` / `del HEX` (a state message, as `Entry::emit` builds
//! it), `resync`, `bulk`, `list` (external cache as `conntrackd -e`), `internal`,
//! `external-hex` (the external cache as messages, to compare exactly), `stats`, `quit`.
//! Every answer ends with a line holding a single `.`.

use std::io::{BufRead, Write};
use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use sync::wire::{self, Writer};
use sync::{Config, Engine, Entry, Mode};

fn usage() -> ! {
    eprintln!("usage: sync-peer --mode ftfw|notrack --bind ADDR:PORT --peer ADDR:PORT [--seq N]");
    std::process::exit(2)
}

fn parse_entry(hex: &str) -> Result<Entry, String> {
    let b = sync::from_hex(hex).ok_or("bad hex")?;
    let m = wire::Message::new_checked(&b[..]).map_err(|e| e.to_string())?;
    Entry::parse(&m).map_err(|e| e.to_string())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut mode, mut bind, mut peer, mut seq) = (Mode::Ftfw, None, None, None);
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--mode" => {
                mode = match v.as_str() {
                    "ftfw" => Mode::Ftfw,
                    "notrack" => Mode::Notrack,
                    _ => usage(),
                }
            }
            "--bind" => bind = v.parse::<SocketAddr>().ok(),
            "--peer" => peer = v.parse::<SocketAddr>().ok(),
            "--seq" => seq = v.parse::<u32>().ok(),
            _ => usage(),
        }
    }
    let (Some(bind), Some(peer)) = (bind, peer) else {
        usage()
    };
    let sock = UdpSocket::bind(bind).unwrap_or_else(|e| {
        eprintln!("sync-peer: bind {bind}: {e}");
        std::process::exit(1)
    });
    sock.set_read_timeout(Some(Duration::from_millis(5)))
        .expect("read timeout");
    let initial = seq.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs() as u32)
    });
    let cfg = Config {
        mode,
        ..Config::default()
    };
    let mut engine = Engine::new(cfg, initial, Instant::now());

    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let stdout = std::io::stdout();
    let mut buf = vec![0u8; 65536];
    let mut out = vec![0u8; 1472];
    println!("ready");
    let _ = stdout.lock().flush();
    loop {
        loop {
            match rx.try_recv() {
                Ok(line) => {
                    let mut o = stdout.lock();
                    let (cmd, arg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
                    let now = Instant::now();
                    let answer = match cmd {
                        "add" => parse_entry(arg).map(|e| engine.upsert(e)).err(),
                        "del" => parse_entry(arg).map(|e| engine.remove(&e.key())).err(),
                        "resync" => {
                            engine.request_resync();
                            None
                        }
                        "bulk" => {
                            engine.send_bulk();
                            None
                        }
                        "list" => Some(engine.list_external(now)),
                        "internal" => Some(engine.list_internal()),
                        "external-hex" => {
                            let mut s = String::new();
                            for (_, x) in engine.external() {
                                let mut b = [0u8; 512];
                                let mut w = Writer::new(&mut b);
                                if x.entry.emit(&mut w, wire::kind::CT_NEW, 0, 0).is_ok() {
                                    let n = w.len();
                                    s.push_str(&sync::to_hex(&b[..n]));
                                    s.push('\n');
                                }
                            }
                            Some(s)
                        }
                        "stats" => Some(engine.stats_text()),
                        "quit" => return,
                        _ => Some(format!("error: unknown command {cmd}\n")),
                    };
                    if let Some(a) = answer {
                        let _ = write!(o, "{a}");
                        if !a.is_empty() && !a.ends_with('\n') {
                            let _ = writeln!(o);
                        }
                    }
                    let _ = writeln!(o, ".");
                    let _ = o.flush();
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return,
            }
        }
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                engine.receive(&buf[..n], Instant::now());
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => eprintln!("sync-peer: recv: {e}"),
        }
        let now = Instant::now();
        engine.poll(now);
        loop {
            let n = engine.poll_transmit(&mut out, now);
            if n == 0 {
                break;
            }
            if let Err(e) = sock.send_to(&out[..n], peer) {
                eprintln!("sync-peer: send: {e}");
            }
        }
    }
}
