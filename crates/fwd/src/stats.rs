//! Counters: each worker owns a cache-line aligned block, written once per burst (relaxed
//! stores of its own running totals); the control thread sums the blocks and renders them as
//! Prometheus text and as log lines.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use dataplane::{DropReason, PortId};
use hdrhistogram::Histogram;
use ports::KernelStats;

/// Counters of one port as seen by one worker.
#[derive(Debug, Default)]
pub struct PortCounters {
    /// Frames received.
    pub rx_packets: AtomicU64,
    /// Bytes received.
    pub rx_bytes: AtomicU64,
    /// Frames transmitted.
    pub tx_packets: AtomicU64,
    /// Bytes transmitted.
    pub tx_bytes: AtomicU64,
    /// Frames that came in on this port and were dropped, by reason.
    pub drops: [AtomicU64; DropReason::COUNT],
    /// Kernel: frames dropped before reaching fwd (XDP_STATISTICS rx_dropped).
    pub kernel_rx_dropped: AtomicU64,
    /// Kernel: RX ring full.
    pub kernel_rx_ring_full: AtomicU64,
    /// Kernel: fill ring empty.
    pub kernel_rx_fill_ring_empty: AtomicU64,
}

/// One worker's counters, on their own cache lines.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct WorkerCounters {
    /// Port A and B.
    pub ports: [PortCounters; 2],
    /// Bursts processed.
    pub bursts: AtomicU64,
    /// Poll rounds (with or without frames).
    pub polls: AtomicU64,
}

/// Running totals a worker keeps in plain integers and publishes once per burst.
#[derive(Debug, Default, Clone)]
pub struct LocalPortCounters {
    /// See [`PortCounters`].
    pub rx_packets: u64,
    /// See [`PortCounters`].
    pub rx_bytes: u64,
    /// See [`PortCounters`].
    pub tx_packets: u64,
    /// See [`PortCounters`].
    pub tx_bytes: u64,
    /// See [`PortCounters`].
    pub drops: [u64; DropReason::COUNT],
}

/// A worker's private totals.
#[derive(Debug, Default, Clone)]
pub struct LocalCounters {
    /// Port A and B.
    pub ports: [LocalPortCounters; 2],
    /// Bursts.
    pub bursts: u64,
    /// Poll rounds.
    pub polls: u64,
}

impl WorkerCounters {
    /// Publishes the worker's totals (the only writer of this block).
    pub fn publish(&self, l: &LocalCounters) {
        for (p, lp) in self.ports.iter().zip(&l.ports) {
            p.rx_packets.store(lp.rx_packets, Ordering::Relaxed);
            p.rx_bytes.store(lp.rx_bytes, Ordering::Relaxed);
            p.tx_packets.store(lp.tx_packets, Ordering::Relaxed);
            p.tx_bytes.store(lp.tx_bytes, Ordering::Relaxed);
            for (d, ld) in p.drops.iter().zip(&lp.drops) {
                d.store(*ld, Ordering::Relaxed);
            }
        }
        self.bursts.store(l.bursts, Ordering::Relaxed);
        self.polls.store(l.polls, Ordering::Relaxed);
    }

    /// Publishes kernel counters of `port` (summed over the worker's queues).
    pub fn publish_kernel(&self, port: PortId, k: &KernelStats) {
        let p = &self.ports[port.index()];
        p.kernel_rx_dropped.store(k.rx_dropped, Ordering::Relaxed);
        p.kernel_rx_ring_full
            .store(k.rx_ring_full, Ordering::Relaxed);
        p.kernel_rx_fill_ring_empty
            .store(k.rx_fill_ring_empty, Ordering::Relaxed);
    }
}

/// Highest burst time the histogram records, in nanoseconds (1 s).
pub const HIST_MAX_NS: u64 = 1_000_000_000;

/// A histogram of burst processing time in nanoseconds.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_NS, 2).expect("valid histogram bounds")
}

/// What the control thread shares with one worker.
#[derive(Debug)]
pub struct WorkerShared {
    /// The worker's counters.
    pub counters: WorkerCounters,
    /// Burst-time histogram: the worker merges its local one into it with `try_lock`, never
    /// blocking.
    pub latency: Mutex<Histogram<u64>>,
    /// The core the worker is pinned to.
    pub core: usize,
}

impl WorkerShared {
    /// A fresh block for a worker on `core`.
    pub fn new(core: usize) -> WorkerShared {
        WorkerShared {
            counters: WorkerCounters::default(),
            latency: Mutex::new(new_histogram()),
            core,
        }
    }
}

/// Sums of all workers, for one port.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PortTotals {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames transmitted.
    pub tx_packets: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
    /// Drops by reason (ingress port).
    pub drops: [u64; DropReason::COUNT],
    /// Kernel drops before fwd.
    pub kernel_rx_dropped: u64,
    /// Kernel: RX ring full.
    pub kernel_rx_ring_full: u64,
    /// Kernel: fill ring empty.
    pub kernel_rx_fill_ring_empty: u64,
}

/// Sums over ports.
pub fn totals(workers: &[std::sync::Arc<WorkerShared>]) -> [PortTotals; 2] {
    let mut t: [PortTotals; 2] = Default::default();
    for w in workers {
        for (tp, p) in t.iter_mut().zip(&w.counters.ports) {
            tp.rx_packets += p.rx_packets.load(Ordering::Relaxed);
            tp.rx_bytes += p.rx_bytes.load(Ordering::Relaxed);
            tp.tx_packets += p.tx_packets.load(Ordering::Relaxed);
            tp.tx_bytes += p.tx_bytes.load(Ordering::Relaxed);
            for (d, s) in tp.drops.iter_mut().zip(&p.drops) {
                *d += s.load(Ordering::Relaxed);
            }
            tp.kernel_rx_dropped += p.kernel_rx_dropped.load(Ordering::Relaxed);
            tp.kernel_rx_ring_full += p.kernel_rx_ring_full.load(Ordering::Relaxed);
            tp.kernel_rx_fill_ring_empty += p.kernel_rx_fill_ring_empty.load(Ordering::Relaxed);
        }
    }
    t
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The Prometheus text exposition of all counters and the burst-time summary.
pub fn render_prometheus(workers: &[std::sync::Arc<WorkerShared>]) -> String {
    let t = totals(workers);
    let mut out = String::with_capacity(4096);
    let ports = [PortId::A, PortId::B];
    type Field = fn(&PortTotals) -> u64;
    let per_port: [(&str, &str, Field); 7] = [
        (
            "fwd_rx_packets_total",
            "Frames received on the port.",
            |p| p.rx_packets,
        ),
        ("fwd_rx_bytes_total", "Bytes received on the port.", |p| {
            p.rx_bytes
        }),
        (
            "fwd_tx_packets_total",
            "Frames transmitted on the port.",
            |p| p.tx_packets,
        ),
        (
            "fwd_tx_bytes_total",
            "Bytes transmitted on the port.",
            |p| p.tx_bytes,
        ),
        (
            "fwd_kernel_rx_dropped_total",
            "Frames the kernel dropped before fwd saw them (XDP_STATISTICS rx_dropped).",
            |p| p.kernel_rx_dropped,
        ),
        (
            "fwd_kernel_rx_ring_full_total",
            "Frames the kernel dropped because the RX ring was full.",
            |p| p.kernel_rx_ring_full,
        ),
        (
            "fwd_kernel_rx_fill_ring_empty_total",
            "Times the kernel found the fill ring empty.",
            |p| p.kernel_rx_fill_ring_empty,
        ),
    ];
    for (name, help, f) in per_port {
        metric(&mut out, name, "counter", help);
        for p in ports {
            let _ = writeln!(out, "{name}{{port=\"{}\"}} {}", p.name(), f(&t[p.index()]));
        }
    }
    metric(
        &mut out,
        "fwd_drops_total",
        "counter",
        "Frames dropped, by ingress port and reason.",
    );
    for p in ports {
        for r in DropReason::ALL {
            let _ = writeln!(
                out,
                "fwd_drops_total{{port=\"{}\",reason=\"{}\"}} {}",
                p.name(),
                r.name(),
                t[p.index()].drops[r.index()]
            );
        }
    }
    metric(
        &mut out,
        "fwd_worker_rx_packets_total",
        "counter",
        "Frames received by the worker (both ports).",
    );
    for (i, w) in workers.iter().enumerate() {
        let n: u64 = w
            .counters
            .ports
            .iter()
            .map(|p| p.rx_packets.load(Ordering::Relaxed))
            .sum();
        let _ = writeln!(
            out,
            "fwd_worker_rx_packets_total{{worker=\"{i}\",core=\"{}\"}} {n}",
            w.core
        );
    }
    metric(
        &mut out,
        "fwd_worker_bursts_total",
        "counter",
        "Non-empty bursts processed by the worker.",
    );
    for (i, w) in workers.iter().enumerate() {
        let _ = writeln!(
            out,
            "fwd_worker_bursts_total{{worker=\"{i}\",core=\"{}\"}} {}",
            w.core,
            w.counters.bursts.load(Ordering::Relaxed)
        );
    }
    metric(
        &mut out,
        "fwd_worker_polls_total",
        "counter",
        "Poll rounds of the worker.",
    );
    for (i, w) in workers.iter().enumerate() {
        let _ = writeln!(
            out,
            "fwd_worker_polls_total{{worker=\"{i}\",core=\"{}\"}} {}",
            w.core,
            w.counters.polls.load(Ordering::Relaxed)
        );
    }
    let mut merged = new_histogram();
    for w in workers {
        if let Ok(h) = w.latency.lock() {
            let _ = merged.add(&*h);
        }
    }
    metric(
        &mut out,
        "fwd_burst_seconds",
        "summary",
        "Time to process one burst (pipeline and transmit), all workers.",
    );
    for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
        let v = merged.value_at_quantile(q) as f64 / 1e9;
        let _ = writeln!(out, "fwd_burst_seconds{{quantile=\"{q}\"}} {v:e}");
    }
    let sum = merged.mean() * merged.len() as f64 / 1e9;
    let _ = writeln!(out, "fwd_burst_seconds_sum {sum:e}");
    let _ = writeln!(out, "fwd_burst_seconds_count {}", merged.len());
    out
}

/// A short human summary (for `fwd stats` and the periodic log line).
pub fn render_summary(workers: &[std::sync::Arc<WorkerShared>]) -> String {
    let t = totals(workers);
    let mut out = String::new();
    for p in [PortId::A, PortId::B] {
        let c = &t[p.index()];
        let drops: u64 = c.drops.iter().sum();
        let _ = writeln!(
            out,
            "port {}: rx {} pkts {} bytes, tx {} pkts {} bytes, drops {}, kernel_rx_dropped {}",
            p.name(),
            c.rx_packets,
            c.rx_bytes,
            c.tx_packets,
            c.tx_bytes,
            drops,
            c.kernel_rx_dropped
        );
        for r in DropReason::ALL {
            if c.drops[r.index()] > 0 {
                let _ = writeln!(out, "  drop {}: {}", r.name(), c.drops[r.index()]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn totals_sum_workers_and_render() {
        let w0 = Arc::new(WorkerShared::new(0));
        let w1 = Arc::new(WorkerShared::new(1));
        let mut l = LocalCounters::default();
        l.ports[0].rx_packets = 5;
        l.ports[1].tx_packets = 4;
        l.ports[0].drops[DropReason::TxRingFull.index()] = 1;
        w0.counters.publish(&l);
        l.ports[0].rx_packets = 2;
        w1.counters.publish(&l);
        w0.latency.lock().unwrap().record(1500).unwrap();
        let ws = [w0, w1];
        let t = totals(&ws);
        assert_eq!(t[0].rx_packets, 7);
        assert_eq!(t[1].tx_packets, 8);
        assert_eq!(t[0].drops[DropReason::TxRingFull.index()], 2);
        let text = render_prometheus(&ws);
        assert!(
            text.contains("fwd_rx_packets_total{port=\"a\"} 7\n"),
            "{text}"
        );
        assert!(text.contains("fwd_tx_packets_total{port=\"b\"} 8\n"));
        assert!(text.contains("fwd_drops_total{port=\"a\",reason=\"tx_ring_full\"} 2\n"));
        assert!(text.contains("fwd_burst_seconds_count 1\n"));
        assert!(text.contains("# TYPE fwd_burst_seconds summary\n"));
        let s = render_summary(&ws);
        assert!(s.contains("port a: rx 7 pkts"), "{s}");
    }

    #[test]
    fn worker_block_is_cache_line_aligned() {
        assert_eq!(std::mem::align_of::<WorkerCounters>() % 64, 0);
    }
}
