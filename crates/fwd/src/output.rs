//! Machine-readable output of the control commands: `stats` as JSON, conntrack listings as JSON
//! and as conntrack(8)'s XML (`conntrack -L -o xml`, libnetfilter_conntrack's
//! `snprintf_xml.c`), and conntrack(8)'s event lines (`conntrack -E`).
//!
//! JSON is built with `serde_json`, so it is well formed whatever the names contain; the XML
//! holds only addresses, numbers and fixed names, none of which need escaping.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use conntrack::{Family, Snapshot, Tuple};
use dataplane::{DropReason, PortId};
use serde_json::{json, Map, Value};

use crate::link::LinkStatus;
use crate::stats::{new_histogram, totals, WorkerShared};

/// Quantiles of the burst time, as `/metrics` has them (`fwd_burst_seconds{quantile=..}`).
pub const QUANTILES: [f64; 5] = [0.5, 0.9, 0.99, 0.999, 1.0];

/// `fwd stats -o json`: the numbers of the text summary and of `/metrics` (ports, drops by
/// reason, workers, burst-time quantiles, readiness and link state, the data plane's totals).
pub fn stats_json(
    workers: &[Arc<WorkerShared>],
    links: Option<&LinkStatus>,
    dataplane: Option<Value>,
) -> String {
    let t = totals(workers);
    let mut ports = Map::new();
    for p in [PortId::A, PortId::B] {
        let c = &t[p.index()];
        let by_reason: Map<String, Value> = DropReason::ALL
            .iter()
            .map(|r| (r.name().to_string(), json!(c.drops[r.index()])))
            .collect();
        let mut port = json!({
            "rx_packets": c.rx_packets,
            "rx_bytes": c.rx_bytes,
            "tx_packets": c.tx_packets,
            "tx_bytes": c.tx_bytes,
            "drops": c.drops.iter().sum::<u64>(),
            "drops_by_reason": by_reason,
            "kernel_rx_dropped": c.kernel_rx_dropped,
            "kernel_rx_ring_full": c.kernel_rx_ring_full,
            "kernel_rx_fill_ring_empty": c.kernel_rx_fill_ring_empty,
        });
        if let Some(l) = links {
            let i = p.index();
            port["link"] = json!({
                "interface": l.interface(i),
                "up": l.is_up(i),
                "ifindex": l.ifindex(i),
                "mtu": l.mtu(i),
                "rebinds": l.rebinds(i),
            });
        }
        ports.insert(p.name().to_string(), port);
    }
    let per_worker: Vec<Value> = workers
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let c = &w.counters;
            json!({
                "worker": i,
                "core": w.core,
                "rx_packets": c.ports.iter().map(|p| p.rx_packets.load(Ordering::Relaxed)).sum::<u64>(),
                "bursts": c.bursts.load(Ordering::Relaxed),
                "polls": c.polls.load(Ordering::Relaxed),
            })
        })
        .collect();
    let mut merged = new_histogram();
    for w in workers {
        if let Ok(h) = w.latency.lock() {
            let _ = merged.add(&*h);
        }
    }
    let quantiles: Map<String, Value> = QUANTILES
        .iter()
        .map(|&q| {
            (
                q.to_string(),
                json!(merged.value_at_quantile(q) as f64 / 1e9),
            )
        })
        .collect();
    let mut doc = json!({
        "ready": links.is_none_or(|l| l.is_ready()),
        "ports": ports,
        "workers": per_worker,
        "burst_seconds": {
            "quantiles": quantiles,
            "sum": merged.mean() * merged.len() as f64 / 1e9,
            "count": merged.len(),
        },
    });
    if let Some(d) = dataplane {
        doc["dataplane"] = d;
    }
    let mut out = doc.to_string();
    out.push('\n');
    out
}

fn proto_name(proto: u8) -> &'static str {
    match proto {
        6 => "tcp",
        17 => "udp",
        1 => "icmp",
        58 => "icmpv6",
        136 => "udplite",
        132 => "sctp",
        47 => "gre",
        33 => "dccp",
        _ => "unknown",
    }
}

fn has_ports(proto: u8) -> bool {
    matches!(proto, 6 | 17 | 33 | 132 | 136)
}

fn is_icmp(proto: u8) -> bool {
    matches!(proto, 1 | 58)
}

/// The seconds an entry has left at `now` (as conntrack -L prints them).
fn timeout_secs(s: &Snapshot, now: u64) -> u64 {
    s.expires_at.saturating_sub(now) / 1_000_000_000
}

/// One flow of a listing, with the id fwd gives it (unique among the workers' shards).
#[derive(Clone, Copy, Debug)]
pub struct Flow {
    pub id: u64,
    pub snap: Snapshot,
}

/// The `<meta direction="original|reply">` element of one direction.
fn xml_tuple(out: &mut String, dir: &str, s: &Snapshot, t: &Tuple) {
    let (l3num, l3name) = match s.family {
        Family::V4 => (2, "ipv4"),
        Family::V6 => (10, "ipv6"),
    };
    let _ = write!(
        out,
        "<meta direction=\"{dir}\"><layer3 protonum=\"{l3num}\" protoname=\"{l3name}\"><src>{}</src><dst>{}</dst></layer3><layer4 protonum=\"{}\" protoname=\"{}\">",
        t.src_ip(s.family),
        t.dst_ip(s.family),
        s.proto,
        proto_name(s.proto)
    );
    // libnetfilter_conntrack prints ports for the port protocols only (ICMP: an empty layer4)
    if has_ports(s.proto) {
        let _ = write!(out, "<sport>{}</sport><dport>{}</dport>", t.sport, t.dport);
    }
    out.push_str("</layer4></meta>");
}

/// `conntrack -L -o xml`, byte for byte the structure conntrack-tools 1.4.7 prints: the XML
/// declaration, `<conntrack>`, one `<flow>` a line (original, reply, independent metadata:
/// state, timeout, mark, use, id, assured, unreplied), `</conntrack>`.
pub fn flows_xml(flows: &[Flow], now: u64) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<conntrack>\n");
    for f in flows {
        let s = &f.snap;
        out.push_str("<flow>");
        xml_tuple(&mut out, "original", s, &s.orig);
        xml_tuple(&mut out, "reply", s, &s.reply);
        out.push_str("<meta direction=\"independent\">");
        if let Some(st) = s.tcp_state {
            let _ = write!(out, "<state>{}</state>", st.name());
        }
        let _ = write!(
            out,
            "<timeout>{}</timeout><mark>{}</mark><use>1</use><id>{}</id>",
            timeout_secs(s, now),
            s.mark,
            f.id
        );
        if s.assured {
            out.push_str("<assured/>");
        }
        if !s.seen_reply {
            out.push_str("<unreplied/>");
        }
        out.push_str("</meta></flow>\n");
    }
    out.push_str("</conntrack>\n");
    out
}

fn json_tuple(s: &Snapshot, t: &Tuple) -> Value {
    let mut v = json!({
        "src": t.src_ip(s.family).to_string(),
        "dst": t.dst_ip(s.family).to_string(),
    });
    if has_ports(s.proto) {
        v["sport"] = json!(t.sport);
        v["dport"] = json!(t.dport);
    } else if is_icmp(s.proto) {
        v["type"] = json!(t.icmp_type());
        v["code"] = json!(t.icmp_code());
        v["id"] = json!(t.icmp_id());
    }
    v
}

/// `fwd conntrack -L -o json`: an array of flows, with conntrack -L's fields named.
pub fn flows_json(flows: &[Flow], now: u64) -> String {
    let arr: Vec<Value> = flows
        .iter()
        .map(|f| {
            let s = &f.snap;
            json!({
                "id": f.id,
                "family": match s.family { Family::V4 => "ipv4", Family::V6 => "ipv6" },
                "proto": proto_name(s.proto),
                "protonum": s.proto,
                "state": s.tcp_state.map(|st| st.name()),
                "timeout": timeout_secs(s, now),
                "original": json_tuple(s, &s.orig),
                "reply": json_tuple(s, &s.reply),
                "assured": s.assured,
                "unreplied": !s.seen_reply,
                "mark": s.mark,
                "use": 1,
            })
        })
        .collect();
    let mut out = Value::Array(arr).to_string();
    out.push('\n');
    out
}

/// The kinds of `conntrack -E` events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    New,
    Update,
    Destroy,
}

impl EventKind {
    /// The bit of `-e` (event mask) for this kind.
    pub fn bit(self) -> u8 {
        match self {
            EventKind::New => 1,
            EventKind::Update => 2,
            EventKind::Destroy => 4,
        }
    }

    fn tag(self) -> &'static str {
        match self {
            EventKind::New => "[NEW]",
            EventKind::Update => "[UPDATE]",
            EventKind::Destroy => "[DESTROY]",
        }
    }
}

fn text_tuple(out: &mut String, s: &Snapshot, t: &Tuple) {
    let _ = write!(
        out,
        " src={} dst={}",
        t.src_ip(s.family),
        t.dst_ip(s.family)
    );
    if is_icmp(s.proto) {
        let _ = write!(
            out,
            " type={} code={} id={}",
            t.icmp_type(),
            t.icmp_code(),
            t.icmp_id()
        );
    } else if has_ports(s.proto) {
        let _ = write!(out, " sport={} dport={}", t.sport, t.dport);
    }
}

/// One line as `conntrack -E` prints it (without the newline), e.g.
/// `    [NEW] tcp      6 120 SYN_SENT src=198.18.0.1 dst=198.18.0.2 sport=40001 dport=5001 [UNREPLIED] src=...`.
/// `timeout` is `None` for an entry that expired (the kernel's DESTROY of a timed-out entry
/// has none).
pub fn event_line(kind: EventKind, s: &Snapshot, timeout: Option<u64>) -> String {
    let mut out = format!("{:>9} {:<8} {}", kind.tag(), proto_name(s.proto), s.proto);
    if let Some(t) = timeout {
        let _ = write!(out, " {t}");
    }
    if let Some(st) = s.tcp_state {
        let _ = write!(out, " {}", st.name());
    }
    text_tuple(&mut out, s, &s.orig);
    if !s.seen_reply {
        out.push_str(" [UNREPLIED]");
    }
    text_tuple(&mut out, s, &s.reply);
    if s.assured {
        out.push_str(" [ASSURED]");
    }
    if s.mark != 0 {
        let _ = write!(out, " mark={}", s.mark);
    }
    out
}

/// The `timeout` of [`event_line`] for a snapshot seen at `now`: the seconds left, except
/// that a DESTROY of an entry with none left has none (the kernel's ctnetlink skips a zero
/// timeout in destroy events).
pub fn event_timeout(kind: EventKind, s: &Snapshot, now: u64) -> Option<u64> {
    let secs = timeout_secs(s, now);
    (kind != EventKind::Destroy || secs > 0).then_some(secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use conntrack::{EntryId, NatKind, TcpState};
    use std::net::IpAddr;

    const SEC: u64 = 1_000_000_000;

    fn tcp_flow() -> Snapshot {
        let a: IpAddr = "198.18.0.1".parse().unwrap();
        let b: IpAddr = "198.18.0.2".parse().unwrap();
        Snapshot {
            id: EntryId(3),
            family: Family::V4,
            proto: 6,
            orig: Tuple::new(a, b, 40001, 5001),
            reply: Tuple::new(b, a, 5001, 40001),
            tcp_state: Some(TcpState::Established),
            seen_reply: true,
            assured: true,
            mark: 0,
            expires_at: 432_000 * SEC + SEC / 2,
            nat: NatKind::None,
        }
    }

    /// What conntrack-tools 1.4.7 printed for the same flow in a namespace
    /// (`conntrack -L -o xml -p tcp`), timeout and id aside.
    #[test]
    fn xml_is_conntrack_tools_format() {
        let x = flows_xml(
            &[Flow {
                id: 7,
                snap: tcp_flow(),
            }],
            SEC,
        );
        assert_eq!(
            x,
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<conntrack>\n\
             <flow><meta direction=\"original\"><layer3 protonum=\"2\" protoname=\"ipv4\"><src>198.18.0.1</src><dst>198.18.0.2</dst></layer3><layer4 protonum=\"6\" protoname=\"tcp\"><sport>40001</sport><dport>5001</dport></layer4></meta>\
             <meta direction=\"reply\"><layer3 protonum=\"2\" protoname=\"ipv4\"><src>198.18.0.2</src><dst>198.18.0.1</dst></layer3><layer4 protonum=\"6\" protoname=\"tcp\"><sport>5001</sport><dport>40001</dport></layer4></meta>\
             <meta direction=\"independent\"><state>ESTABLISHED</state><timeout>431999</timeout><mark>0</mark><use>1</use><id>7</id><assured/></meta></flow>\n\
             </conntrack>\n"
        );
        // ICMP: an empty layer4; unreplied flagged; IPv6 is protonum 10
        let mut s = tcp_flow();
        s.proto = 1;
        s.tcp_state = None;
        s.seen_reply = false;
        s.assured = false;
        let x = flows_xml(&[Flow { id: 1, snap: s }], SEC);
        assert!(
            x.contains("<layer4 protonum=\"1\" protoname=\"icmp\"></layer4>")
                && x.contains("<meta direction=\"independent\"><timeout>431999</timeout><mark>0</mark><use>1</use><id>1</id><unreplied/></meta>"),
            "{x}"
        );
        let a: IpAddr = "2001:2::1".parse().unwrap();
        let b: IpAddr = "2001:2::2".parse().unwrap();
        let mut s = tcp_flow();
        s.family = Family::V6;
        s.proto = 17;
        s.tcp_state = None;
        s.orig = Tuple::new(a, b, 1, 53);
        let x = flows_xml(&[Flow { id: 1, snap: s }], SEC);
        assert!(
            x.contains("<layer3 protonum=\"10\" protoname=\"ipv6\"><src>2001:2::1</src><dst>2001:2::2</dst>")
                && x.contains("<layer4 protonum=\"17\" protoname=\"udp\"><sport>1</sport><dport>53</dport>"),
            "{x}"
        );
        assert_eq!(
            flows_xml(&[], 0),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<conntrack>\n</conntrack>\n"
        );
    }

    #[test]
    fn json_flows_parse_and_name_the_fields() {
        let j = flows_json(
            &[Flow {
                id: 7,
                snap: tcp_flow(),
            }],
            SEC,
        );
        let v: Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v[0]["proto"], "tcp");
        assert_eq!(v[0]["state"], "ESTABLISHED");
        assert_eq!(v[0]["timeout"], 431_999);
        assert_eq!(v[0]["original"]["sport"], 40001);
        assert_eq!(v[0]["reply"]["src"], "198.18.0.2");
        assert_eq!(v[0]["assured"], true);
        assert_eq!(v[0]["unreplied"], false);
        assert_eq!(
            serde_json::from_str::<Value>(&flows_json(&[], 0)).unwrap(),
            json!([])
        );
    }

    /// Lines as conntrack-tools 1.4.7 printed them for the same events (`conntrack -E`).
    #[test]
    fn event_lines_are_conntrack_tools_format() {
        let mut s = tcp_flow();
        s.tcp_state = Some(TcpState::SynSent);
        s.seen_reply = false;
        s.assured = false;
        assert_eq!(
            event_line(EventKind::New, &s, Some(120)),
            "    [NEW] tcp      6 120 SYN_SENT src=198.18.0.1 dst=198.18.0.2 sport=40001 dport=5001 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5001 dport=40001"
        );
        assert_eq!(
            event_line(EventKind::Update, &tcp_flow(), Some(432000)),
            " [UPDATE] tcp      6 432000 ESTABLISHED src=198.18.0.1 dst=198.18.0.2 sport=40001 dport=5001 src=198.18.0.2 dst=198.18.0.1 sport=5001 dport=40001 [ASSURED]"
        );
        let mut u = tcp_flow();
        u.proto = 17;
        u.tcp_state = None;
        u.seen_reply = false;
        u.assured = false;
        assert_eq!(
            event_line(EventKind::Destroy, &u, event_timeout(EventKind::Destroy, &u, u.expires_at)),
            "[DESTROY] udp      17 src=198.18.0.1 dst=198.18.0.2 sport=40001 dport=5001 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5001 dport=40001"
        );
        assert_eq!(event_timeout(EventKind::New, &u, u.expires_at), Some(0));
        assert_eq!(
            event_timeout(EventKind::Destroy, &u, u.expires_at - 2 * SEC),
            Some(2)
        );
    }

    #[test]
    fn stats_json_has_the_summary_numbers() {
        let w = Arc::new(WorkerShared::new(3));
        let mut l = crate::stats::LocalCounters::default();
        l.ports[0].rx_packets = 5;
        l.ports[1].drops[DropReason::TxRingFull.index()] = 2;
        l.polls = 9;
        w.counters.publish(&l);
        w.latency.lock().unwrap().record(1500).unwrap();
        let links = LinkStatus::new(["fw-c".into(), "fw-s".into()], 1);
        links.set_up(1, false);
        let v: Value =
            serde_json::from_str(&stats_json(&[w], Some(&links), Some(json!({"x": 1})))).unwrap();
        assert_eq!(v["ready"], false);
        assert_eq!(v["ports"]["a"]["rx_packets"], 5);
        assert_eq!(v["ports"]["b"]["drops"], 2);
        assert_eq!(v["ports"]["b"]["drops_by_reason"]["tx_ring_full"], 2);
        assert_eq!(v["ports"]["a"]["link"]["interface"], "fw-c");
        assert_eq!(v["ports"]["b"]["link"]["up"], false);
        assert_eq!(v["workers"][0]["core"], 3);
        assert_eq!(v["workers"][0]["polls"], 9);
        assert_eq!(v["burst_seconds"]["count"], 1);
        let p50 = v["burst_seconds"]["quantiles"]["0.5"].as_f64().unwrap();
        assert!((1.4e-6..1.6e-6).contains(&p50), "{p50}");
        assert_eq!(v["dataplane"]["x"], 1);
    }
}
