//! A sync peer: the sync thread ([`sync::runner`]) on a UDP socket, driven by lines on stdin;
//! the interop tests run it inside a network namespace, facing a real conntrackd.
//!
//! ```text
//! sync-peer --mode ftfw|notrack --bind ADDR:PORT (--peer ADDR:PORT | --group GROUP) [--seq N]
//! ```
//!
//! With `--group`, the transport is conntrackd's multicast one: the socket listens on the
//! port on every address, joins GROUP on the interface of the `--bind` address, sends to
//! GROUP:PORT and does not hear itself (the route to 224.0.0.0/4 picks the sync link).
//!
//! Commands (one a line): `add HEX` / `del HEX` (a state message, as `Entry::emit` builds
//! it; fed through a bounded queue as a worker would), `resync`, `bulk`, `list` (external cache
//! as `conntrackd -e`), `internal`, `external-hex` (the external cache as messages, to compare
//! exactly), `stats`, `quit`. Every answer ends with a line holding a single `.`.

use std::io::{BufRead, Write};
use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc;
use sync::runner::{self, Feed, Request, Update};
use sync::wire::{self, Writer};
use sync::{Config, Entry, Mode};

fn usage() -> ! {
    eprintln!(
        "usage: sync-peer --mode ftfw|notrack --bind ADDR:PORT \
         (--peer ADDR:PORT | --group GROUP) [--seq N]"
    );
    std::process::exit(2)
}

fn parse_entry(hex: &str) -> Result<Entry, String> {
    let b = sync::from_hex(hex).ok_or("bad hex")?;
    let m = wire::Message::new_checked(&b[..]).map_err(|e| e.to_string())?;
    Entry::parse(&m).map_err(|e| e.to_string())
}

fn push(feed: &Feed, u: Update) -> Result<(), String> {
    if feed.push(u) {
        Ok(())
    } else {
        Err("error: the feed is full (counted as an overflow)".into())
    }
}

fn ask<T>(requests: &mpsc::Sender<Request>, make: impl FnOnce(mpsc::Sender<T>) -> Request) -> T {
    let (tx, rx) = mpsc::channel();
    requests.send(make(tx)).expect("sync thread running");
    rx.recv().expect("sync thread answers")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut mode, mut bind, mut peer, mut seq) = (Mode::Ftfw, None, None, None);
    let mut group: Option<std::net::Ipv4Addr> = None;
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
            "--group" => group = Some(v.parse().unwrap_or_else(|_| usage())),
            _ => usage(),
        }
    }
    let Some(bind) = bind else { usage() };
    let fail = |what: &str, e: std::io::Error| -> ! {
        eprintln!("sync-peer: {what}: {e}");
        std::process::exit(1)
    };
    let (sock, peer) = match (group, peer, bind) {
        (Some(g), None, SocketAddr::V4(local)) => {
            let any = SocketAddr::from(([0, 0, 0, 0], local.port()));
            let sock = UdpSocket::bind(any).unwrap_or_else(|e| fail("bind", e));
            sock.join_multicast_v4(&g, local.ip())
                .unwrap_or_else(|e| fail("join the group", e));
            sock.set_multicast_loop_v4(false)
                .unwrap_or_else(|e| fail("multicast loop", e));
            (sock, SocketAddr::from((g, local.port())))
        }
        (None, Some(peer), _) => (
            UdpSocket::bind(bind).unwrap_or_else(|e| fail("bind", e)),
            peer,
        ),
        _ => usage(),
    };
    // 1.4.7 starts at the time in seconds, so a restart is not taken for a replay
    let initial = seq.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs() as u32)
    });
    let cfg = Config {
        mode,
        ..Config::default()
    };
    let feed = Feed::new(65536);
    let (handle, requests) = runner::spawn(cfg, sock, peer, vec![feed.clone()], initial)
        .unwrap_or_else(|e| {
            eprintln!("sync-peer: start the sync thread: {e}");
            std::process::exit(1)
        });
    let stdout = std::io::stdout();
    println!("ready");
    let _ = stdout.lock().flush();
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        let (cmd, arg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let answer = match cmd {
            "add" => parse_entry(arg)
                .and_then(|e| push(&feed, Update::Upsert(e)))
                .err(),
            "del" => parse_entry(arg)
                .and_then(|e| push(&feed, Update::Remove(e.key())))
                .err(),
            "resync" => {
                let _ = requests.send(Request::RequestResync);
                None
            }
            "bulk" => {
                let _ = requests.send(Request::SendBulk);
                None
            }
            "list" => Some(ask(&requests, Request::ListExternal)),
            "internal" => Some(ask(&requests, Request::ListInternal)),
            "external-hex" => {
                let mut s = String::new();
                for e in ask(&requests, Request::ExternalEntries) {
                    let mut b = [0u8; 512];
                    let mut w = Writer::new(&mut b);
                    if e.emit(&mut w, wire::kind::CT_NEW, 0, 0).is_ok() {
                        let n = w.len();
                        s.push_str(&sync::to_hex(&b[..n]));
                        s.push('\n');
                    }
                }
                Some(s)
            }
            "stats" => Some(ask(&requests, Request::Stats)),
            "quit" => break,
            _ => Some(format!("error: unknown command {cmd}\n")),
        };
        let mut o = stdout.lock();
        if let Some(a) = answer {
            let _ = write!(o, "{a}");
            if !a.is_empty() && !a.ends_with('\n') {
                let _ = writeln!(o);
            }
        }
        let _ = writeln!(o, ".");
        let _ = o.flush();
    }
    let _ = requests.send(Request::Stop);
    let _ = handle.join();
}
