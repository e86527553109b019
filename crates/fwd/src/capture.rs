//! Capture files around the sans-I/O data plane: `fwd replay` (pcapng in, the data plane's
//! verdicts, pcapng out) and NFLOG's pcapng writer. The data plane sees frames and timestamps
//! only; the file formats are `ports::pcapng`'s, and this module joins the two.

use std::sync::Arc;

use dataplane::Verdict;

/// What a replay did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    pub packets: u64,
    pub forwarded: u64,
    pub replies: u64,
    pub dropped: u64,
}

/// `fwd replay`: reads a pcapng capture (interface 0 = port a, 1 = port b; packet timestamps
/// are the clock), runs every packet through the data plane in order, writes what the
/// appliance transmits to `output` (interface id = egress port, REJECT replies included, same
/// timestamps) and, if asked, one JSON verdict line per input packet.
pub fn replay_pcapng<R: std::io::Read, W: std::io::Write>(
    rules: Arc<arc_swap::ArcSwap<dataplane::Compiled>>,
    ct: &conntrack::Config,
    input: R,
    output: W,
    verdicts: Option<&mut dyn std::io::Write>,
) -> Result<ReplaySummary, String> {
    let bridge = dataplane::BridgePolicy::default();
    replay_pcapng_bridged(rules, ct, bridge, input, output, verdicts)
}

/// [`replay_pcapng`] under a `[bridge]` policy other than the default.
pub fn replay_pcapng_bridged<R: std::io::Read, W: std::io::Write>(
    rules: Arc<arc_swap::ArcSwap<dataplane::Compiled>>,
    ct: &conntrack::Config,
    bridge: dataplane::BridgePolicy,
    input: R,
    output: W,
    mut verdicts: Option<&mut dyn std::io::Write>,
) -> Result<ReplaySummary, String> {
    let mut reader = ports::pcapng::PcapngReader::new(input);
    let mut writer =
        ports::pcapng::PcapngWriter::new(output, 2).map_err(|e| format!("output: {e}"))?;
    let mut sum = ReplaySummary::default();
    let mut replay: Option<dataplane::Replay> = None;
    while let Some(p) = reader.next_packet().map_err(|e| format!("input: {e}"))? {
        if p.interface > 1 {
            return Err(format!(
                "input: packet {} is on interface {}; fwd has ports 0 (a) and 1 (b)",
                sum.packets + 1,
                p.interface
            ));
        }
        let r = replay.get_or_insert_with(|| {
            let mut r = dataplane::Replay::new(rules.clone(), ct, ct.max.max(1), p.ts_ns);
            r.worker_mut().set_bridge(bridge);
            r
        });
        let out = r.frame(p.interface as u8, p.ts_ns, &p.data);
        sum.packets += 1;
        match out.verdict {
            Verdict::Forward => sum.forwarded += 1,
            Verdict::Reply(_) => sum.replies += 1,
            Verdict::Drop(_) => sum.dropped += 1,
        }
        if let Some((port, bytes)) = &out.tx {
            writer
                .write_packet(u32::from(*port), p.ts_ns, bytes)
                .map_err(|e| format!("output: {e}"))?;
        }
        if let Some(v) = verdicts.as_mut() {
            writeln!(v, "{}", out.json).map_err(|e| format!("verdicts: {e}"))?;
        }
    }
    writer.into_inner().map_err(|e| format!("output: {e}"))?;
    Ok(sum)
}

/// Writes NFLOG events into a pcapng file (interface = the port the packet came in on, the
/// worker's timestamp, the first `log::SNAP` bytes); the control thread calls this in batches
/// from `log::drain`'s NFLOG callback.
pub fn write_nflog<W: std::io::Write>(
    w: &mut ports::pcapng::PcapngWriter<W>,
    ev: &dataplane::log::LogEvent,
) -> std::io::Result<()> {
    w.write_packet(u32::from(ev.ingress & 1), ev.ts_ns, ev.bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arc_swap::ArcSwap;
    use dataplane::{compile, CompileConfig, PortInfo};
    use std::net::Ipv4Addr;
    use wire::builder::{FrameBuilder, IpPair, TcpSpec};
    use wire::tcp::TcpFlags;

    /// The two ports of the data plane's own tests: fw-c (198.18.0.253), fw-s (198.18.0.254).
    fn cfg() -> CompileConfig {
        let port = |name: &str, last: u8| PortInfo {
            name: name.into(),
            ipv4: Some(Ipv4Addr::new(198, 18, 0, last)),
            ipv6: None,
            mtu: 1500,
        };
        CompileConfig {
            ports: [port("fw-c", 253), port("fw-s", 254)],
            workers: 1,
        }
    }

    fn v4(text: &str) -> rules::Ruleset {
        rules::parse_restore("test.rules", text, rules::Family::Ipv4)
            .unwrap_or_else(|d| panic!("{d}"))
    }

    /// Golden replay: a capture built with wire's builders through a stateful ruleset with
    /// DNAT, MASQUERADE and REJECT; the output capture is exactly the expected frames.
    #[test]
    fn replay_golden_capture() {
        let text = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
                    -A PREROUTING -i fw-c -d 198.18.0.2/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 198.18.0.3:80\n\
                    -A POSTROUTING -o fw-s -j MASQUERADE\nCOMMIT\n\
                    *filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                    -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
                    -A FORWARD -i fw-c -p tcp -m tcp --dport 80 -j ACCEPT\n\
                    -A FORWARD -i fw-c -p tcp -j REJECT --reject-with tcp-reset\nCOMMIT\n";
        let c = compile(Some(&v4(text)), None, &cfg()).unwrap();
        let rules = Arc::new(ArcSwap::from_pointee(c));
        let b = FrameBuilder::default();
        let r = FrameBuilder {
            src_mac: b.dst_mac,
            dst_mac: b.src_mac,
            ..b.clone()
        };
        let tcp = |fb: &FrameBuilder,
                   s: [u8; 4],
                   d: [u8; 4],
                   sp: u16,
                   dp: u16,
                   fl: u8,
                   seq: u32,
                   ack: u32| {
            fb.tcp(
                IpPair::V4(s, d),
                &TcpSpec {
                    src_port: sp,
                    dst_port: dp,
                    seq,
                    ack,
                    flags: TcpFlags(fl),
                    window: 100,
                    options: vec![],
                    payload: b"",
                },
            )
        };
        let (c_, s_, s3, nat) = (
            [198, 18, 0, 1],
            [198, 18, 0, 2],
            [198, 18, 0, 3],
            [198, 18, 0, 254],
        );
        let input = [
            (0u32, 1_000u64, tcp(&b, c_, s_, 40000, 8080, 0x02, 10, 0)),
            (1, 2_000, tcp(&r, s3, nat, 80, 40000, 0x12, 50, 11)),
            (0, 3_000, tcp(&b, c_, s_, 40000, 8080, 0x10, 11, 51)),
            (0, 4_000, tcp(&b, c_, s_, 40001, 22, 0x02, 7, 0)),
            (1, 5_000, tcp(&r, s3, c_, 22, 1, 0x02, 1, 0)),
        ];
        let mut cap = Vec::new();
        {
            let mut w = ports::pcapng::PcapngWriter::new(&mut cap, 2).unwrap();
            for (i, ts, f) in &input {
                w.write_packet(*i, *ts, f).unwrap();
            }
            w.into_inner().unwrap();
        }
        let mut out = Vec::new();
        let mut lines = Vec::new();
        let sum = replay_pcapng(
            rules,
            &conntrack::Config::default(),
            &cap[..],
            &mut out,
            Some(&mut lines),
        )
        .unwrap();
        assert_eq!(
            sum,
            ReplaySummary {
                packets: 5,
                forwarded: 3,
                replies: 1,
                dropped: 1
            }
        );
        let got = ports::pcapng::PcapngReader::new(&out[..])
            .read_all()
            .unwrap();
        let got: Vec<(u32, u64, Vec<u8>)> = got
            .into_iter()
            .map(|p| (p.interface, p.ts_ns, p.data))
            .collect();
        let want = vec![
            (1, 1_000, tcp(&b, nat, s3, 40000, 80, 0x02, 10, 0)),
            (0, 2_000, tcp(&r, s_, c_, 8080, 40000, 0x12, 50, 11)),
            (1, 3_000, tcp(&b, nat, s3, 40000, 80, 0x10, 11, 51)),
            (
                0,
                4_000,
                FrameBuilder {
                    ident: 0,
                    dont_frag: true,
                    ttl: 64,
                    ..r.clone()
                }
                .tcp(
                    IpPair::V4(s_, c_),
                    &TcpSpec {
                        src_port: 22,
                        dst_port: 40001,
                        seq: 0,
                        ack: 8,
                        flags: TcpFlags(0x14),
                        window: 0,
                        options: vec![],
                        payload: b"",
                    },
                ),
            ),
        ];
        assert_eq!(got, want);
        let lines = String::from_utf8(lines).unwrap();
        let lines: Vec<&str> = lines.lines().collect();
        assert_eq!(lines.len(), 5);
        assert!(
            lines[0].contains("\"hook\":\"nat PREROUTING\",\"chain\":\"PREROUTING\",\"rule\":1"),
            "{}",
            lines[0]
        );
        assert!(
            lines[0].contains("\"hook\":\"nat POSTROUTING\",\"chain\":\"POSTROUTING\",\"rule\":1"),
            "{}",
            lines[0]
        );
        assert!(lines[3].contains("\"verdict\":\"reply\""), "{}", lines[3]);
        assert!(
            lines[4].contains("\"rule\":\"policy\",\"policy\":\"DROP\""),
            "{}",
            lines[4]
        );
    }

    #[test]
    fn nflog_events_become_pcapng_packets() {
        let b = FrameBuilder::default();
        let f = b.udp(
            IpPair::V4([198, 18, 0, 1], [198, 18, 0, 2]),
            1,
            2,
            b"logged",
        );
        let ev = dataplane::log::LogEvent::new(
            dataplane::log::LogKind::Nflog { group: 1 },
            "p",
            &f,
            1,
            0,
        )
        .at(77);
        let mut out = Vec::new();
        let mut w = ports::pcapng::PcapngWriter::new(&mut out, 2).unwrap();
        write_nflog(&mut w, &ev).unwrap();
        w.into_inner().unwrap();
        let got = ports::pcapng::PcapngReader::new(&out[..])
            .read_all()
            .unwrap();
        assert_eq!((got[0].interface, got[0].ts_ns, &got[0].data), (1, 77, &f));
    }
}
