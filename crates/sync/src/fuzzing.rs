//! The body of the `receive` fuzz target, shared with the plain test that replays the seed
//! corpus (`crates/sync/fuzz/corpus/receive`, datagrams captured from conntrackd 1.4.7) so CI
//! exercises it on stable.

use crate::wire::{self, Writer};
use crate::{Config, Engine, Entry, Event, Mode};
use std::time::{Duration, Instant};

/// Feeds `data` to an engine in each mode as a datagram from the peer, then runs its timers
/// and transmissions. Must never panic; every refused message must be counted; every entry
/// accepted must survive emit and parse unchanged.
pub fn receive_body(data: &[u8]) {
    let t0 = Instant::now();
    for mode in [Mode::Ftfw, Mode::Notrack] {
        let mut e = Engine::new(
            Config {
                mode,
                ..Config::default()
            },
            1,
            t0,
        );
        let events = e.receive(data, t0);
        let refused = events
            .iter()
            .filter(|x| matches!(x, Event::Malformed(_)))
            .count() as u64;
        assert_eq!(refused, e.stats().malformed_total());
        let later = t0 + Duration::from_secs(2);
        e.poll(later);
        let mut out = [0u8; 1472];
        while e.poll_transmit(&mut out, later) > 0 {}
    }
    for m in wire::messages(data).map_while(Result::ok) {
        if let Ok(entry) = Entry::parse(&m) {
            let mut b = [0u8; 1024];
            let mut w = Writer::new(&mut b);
            entry
                .emit(&mut w, m.kind(), 0, m.seq())
                .expect("an entry fits in 1 KiB");
            let n = w.len();
            let again = wire::Message::new_checked(&b[..n]).expect("we emit valid messages");
            assert_eq!(Entry::parse(&again), Ok(entry));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Vec<(String, Vec<u8>)> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/receive");
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .expect("seed corpus")
            .map(|f| {
                let f = f.expect("entry").path();
                let name = f.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&f).expect("read seed"))
            })
            .collect();
        v.sort();
        v
    }

    /// Replays the committed seed corpus through the fuzz body, whole and cut at every length.
    #[test]
    fn seed_corpus_never_panics() {
        let seeds = corpus();
        assert!(seeds.len() >= 5);
        for (_, d) in &seeds {
            for cut in 0..=d.len() {
                receive_body(&d[..cut]);
            }
        }
    }

    /// The captured datagrams of conntrackd 1.4.7 (a `conntrackd -B` bulk send of a TCP
    /// flow, an ICMP echo with id 0x1234, a UDP flow with SNAT to port 0x04D2, an IPv6 flow)
    /// parse without a single refusal, and carry what was inserted.
    #[test]
    fn captured_bulk_parses_exactly() {
        let mut entries = Vec::new();
        for (name, d) in corpus()
            .iter()
            .filter(|(n, _)| n.starts_with("conntrackd-1.4.7"))
        {
            for m in wire::messages(d) {
                let m = m.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(m.version(), 1);
                if m.is_data() {
                    entries.push(Entry::parse(&m).unwrap_or_else(|e| panic!("{name}: {e}")));
                }
            }
        }
        let lines: Vec<String> = entries.iter().map(|e| format!("{}", e.orig)).collect();
        assert!(lines.contains(&"src=198.18.0.1 dst=198.18.1.2 type=8 code=0 id=4660".into()));
        assert!(lines.contains(&"src=2001:2::1 dst=2001:2:0:1::2 sport=40001 dport=443".into()));
        let snat = entries
            .iter()
            .find(|e| e.snat.is_some() && e.spat.is_some())
            .expect("the SNAT entry with its port");
        assert_eq!(snat.spat, Some(1234));
        assert_eq!(
            snat.reply().to_string(),
            "src=198.18.1.2 dst=198.18.9.9 sport=53 dport=1234"
        );
    }
}
