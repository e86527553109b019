//! Prometheus text for the data plane's counters: per-rule packets and bytes of the running
//! ruleset, drop reasons and malformed reasons summed over workers, conntrack totals. fwd's
//! `/metrics` appends this to its own.

use std::fmt::Write;

use crate::bridge::BridgeClass;
use crate::compile::Compiled;
use crate::reason::DropReason;
use crate::worker::WorkerStats;

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Sums per-worker stats.
pub fn sum_stats<'a>(stats: impl IntoIterator<Item = &'a WorkerStats>) -> WorkerStats {
    let mut t = WorkerStats::default();
    for s in stats {
        for (a, b) in t.drops.iter_mut().zip(&s.drops) {
            *a += b;
        }
        for (a, b) in t.malformed.iter_mut().zip(&s.malformed) {
            *a += b;
        }
        t.forwarded += s.forwarded;
        t.replies += s.replies;
        t.non_ip += s.non_ip;
        t.log_events += s.log_events;
        t.log_overflow += s.log_overflow;
        t.rewrites += s.rewrites;
        t.conntrack.add(&s.conntrack);
        for (a, b) in t.bridge.iter_mut().zip(&s.bridge) {
            *a += b;
        }
    }
    t
}

/// Appends the data plane's metrics: `rules` is the running ruleset, `stats` the workers'
/// summed stats, `conntrack_entries` the confirmed connections of all shards.
pub fn render(out: &mut String, rules: &Compiled, stats: &WorkerStats, conntrack_entries: u64) {
    let rc = rules.rule_counters();
    for (name, help, pick) in [
        (
            "fwd_rule_packets_total",
            "Packets that matched a rule (rule=0: the chain's policy).",
            0,
        ),
        (
            "fwd_rule_bytes_total",
            "Bytes (IP length) that matched a rule (rule=0: the chain's policy).",
            1,
        ),
    ] {
        header(out, name, "counter", help);
        for (family, table, chain, rule, p, b) in &rc {
            let v = if pick == 0 { p } else { b };
            let _ = writeln!(
                out,
                "{name}{{family=\"{family}\",table=\"{table}\",chain=\"{}\",rule=\"{rule}\"}} {v}",
                esc(chain)
            );
        }
    }
    header(
        out,
        "fwd_dataplane_drops_total",
        "counter",
        "Frames the data plane did not forward, by reason.",
    );
    for r in DropReason::ALL {
        let _ = writeln!(
            out,
            "fwd_dataplane_drops_total{{reason=\"{}\"}} {}",
            r.name(),
            stats.drops[r.index()]
        );
    }
    header(
        out,
        "fwd_malformed_total",
        "counter",
        "Malformed frames, by parser reason.",
    );
    for m in wire::Malformed::ALL {
        let _ = writeln!(
            out,
            "fwd_malformed_total{{reason=\"{}\"}} {}",
            m.name(),
            stats.malformed[m.index()]
        );
    }
    for (name, help, v) in [
        (
            "fwd_dataplane_forwarded_total",
            "Frames the data plane forwarded.",
            stats.forwarded,
        ),
        (
            "fwd_dataplane_replies_total",
            "REJECT replies sent back out of the ingress port.",
            stats.replies,
        ),
        (
            "fwd_log_events_total",
            "LOG/NFLOG rule hits.",
            stats.log_events,
        ),
        (
            "fwd_log_overflow_total",
            "LOG/NFLOG events lost because the queue was full.",
            stats.log_overflow,
        ),
        (
            "fwd_rewrites_total",
            "Packets changed by a rewriting target (TTL, HL, DSCP, TOS, TCPMSS, ECN).",
            stats.rewrites,
        ),
    ] {
        header(out, name, "counter", help);
        let _ = writeln!(out, "{name} {v}");
    }
    header(
        out,
        "fwd_bridge_frames_total",
        "counter",
        "Tagged, PPPoE, link-local and other non-IP frames the bridge forwarded or filtered, by class (drops: fwd_dataplane_drops_total).",
    );
    for c in BridgeClass::ALL {
        let _ = writeln!(
            out,
            "fwd_bridge_frames_total{{class=\"{}\"}} {}",
            c.name(),
            stats.bridge[c.index()]
        );
    }
    header(
        out,
        "fwd_conntrack_entries",
        "gauge",
        "Confirmed connections in all shards.",
    );
    let _ = writeln!(out, "fwd_conntrack_entries {conntrack_entries}");
    let ct = &stats.conntrack;
    for (name, help, v) in [
        (
            "fwd_conntrack_new_total",
            "Connections conntrack created (before the verdict on their first packet).",
            ct.new,
        ),
        (
            "fwd_conntrack_expired_total",
            "Connections destroyed by their timeout.",
            ct.expired,
        ),
        (
            "fwd_conntrack_early_drops_total",
            "Connections evicted (early drop) to make room: table full or a hash chain at its bound.",
            ct.early_drop,
        ),
        (
            "fwd_conntrack_chain_early_drops_total",
            "Of the early drops, those that kept a hash chain within its bound.",
            ct.chain_early_drop,
        ),
        (
            "fwd_conntrack_invalid_total",
            "Packets conntrack marked INVALID.",
            ct.invalid,
        ),
    ] {
        header(out, name, "counter", help);
        let _ = writeln!(out, "{name} {v}");
    }
    header(
        out,
        "fwd_conntrack_reasons_total",
        "counter",
        "Packets conntrack marked INVALID or dropped, by reason.",
    );
    for (i, (name, _)) in conntrack::CT_REASONS.iter().enumerate() {
        let _ = writeln!(
            out,
            "fwd_conntrack_reasons_total{{reason=\"{name}\"}} {}",
            ct.reasons[i]
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::compile;
    use crate::compile::tests::{cfg, v4};
    use crate::worker::Worker;
    use arc_swap::ArcSwap;
    use std::sync::Arc;

    #[test]
    fn rule_and_drop_counters_render() {
        let text = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -p udp -j ACCEPT\nCOMMIT\n";
        let c = compile(Some(&v4(text)), None, &cfg()).unwrap();
        let rules = Arc::new(ArcSwap::from_pointee(c));
        let mut w = Worker::new(rules.clone(), &conntrack::Config::default(), 16, 0, 1, 0);
        let b = wire::builder::FrameBuilder::default();
        let ip = wire::builder::IpPair::V4([198, 18, 0, 1], [198, 18, 0, 2]);
        for f in [
            b.udp(ip, 1, 2, b"x"),
            b.echo(ip, true, 1, 1, b"x"),
            vec![1, 2, 3],
            wire::builder::lldp(wire::ethernet::MacAddr([2, 0, 0, 0, 0, 1]), 0x0e),
            wire::builder::FrameBuilder {
                vlan: vec![(0x8100, 100)],
                ..wire::builder::FrameBuilder::default()
            }
            .arp(
                1,
                (wire::ethernet::MacAddr([2, 0, 0, 0, 0, 1]), [198, 18, 0, 1]),
                (wire::ethernet::MacAddr([0; 6]), [198, 18, 0, 2]),
            ),
        ] {
            let mut buf = f.clone();
            buf.resize(256, 0);
            let _ = w.process(0, &mut buf, f.len(), 1);
        }
        let mut out = String::new();
        let total = sum_stats([&w.stats_snapshot()]);
        render(&mut out, &rules.load(), &total, w.shard().len().into());
        assert!(out.contains("fwd_rule_packets_total{family=\"ipv4\",table=\"filter\",chain=\"FORWARD\",rule=\"1\"} 1\n"), "{out}");
        assert!(out.contains("fwd_rule_bytes_total{family=\"ipv4\",table=\"filter\",chain=\"FORWARD\",rule=\"0\"} 29\n"), "{out}");
        assert!(
            out.contains("fwd_dataplane_drops_total{reason=\"filter_policy\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("fwd_malformed_total{reason=\"truncated_ethernet\"} 1\n"),
            "{out}"
        );
        assert!(out.contains("fwd_conntrack_entries 1\n"), "{out}");
        assert!(out.contains("fwd_conntrack_new_total 2\n"), "{out}");
        assert!(out.contains("fwd_conntrack_early_drops_total 0\n"), "{out}");
        assert!(
            out.contains("fwd_conntrack_reasons_total{reason=\"ct_bad_checksum\"} 0\n"),
            "{out}"
        );
        assert!(
            out.contains("fwd_dataplane_drops_total{reason=\"link_local_dropped\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("fwd_bridge_frames_total{class=\"vlan_filtered\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("fwd_bridge_frames_total{class=\"qinq_passed\"} 0\n"),
            "{out}"
        );
    }
}
