//! LOG and NFLOG: the worker copies the packet's head into a fixed-size [`LogEvent`] and pushes
//! it into a bounded lock-free queue (rtrb) without waiting (overflow is counted); the control
//! thread turns events into kernel-format lines ([`format_line`], as `nf_log_syslog.c` prints
//! them) or packets for a pcapng file (NFLOG).

use std::fmt::Write;

/// Bytes of the packet an event carries (from the Ethernet header on).
pub const SNAP: usize = 256;
/// Longest prefix kept (NFLOG allows 63 bytes, LOG 29).
pub const PREFIX: usize = 64;

/// What kind of log an event is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogKind {
    /// `-j LOG`: `flags` bit 0 `--log-tcp-sequence`, bit 1 `--log-tcp-options`, bit 2
    /// `--log-ip-options`, bit 3 `--log-macdecode`.
    Log { level: u8, flags: u8 },
    /// `-j NFLOG --nflog-group`.
    Nflog { group: u16 },
}

/// One logged packet, fixed size so a worker never allocates.
#[derive(Clone, Copy, Debug)]
pub struct LogEvent {
    pub kind: LogKind,
    pub ingress: u8,
    pub egress: u8,
    /// The worker's clock when the rule matched (the `now` it was given).
    pub ts_ns: u64,
    prefix: [u8; PREFIX],
    prefix_len: u8,
    /// Length of the whole frame.
    pub frame_len: u16,
    snap_len: u16,
    snap: [u8; SNAP],
}

impl LogEvent {
    pub fn new(kind: LogKind, prefix: &str, frame: &[u8], ingress: u8, egress: u8) -> LogEvent {
        let mut ev = LogEvent {
            kind,
            ingress,
            egress,
            ts_ns: 0,
            prefix: [0; PREFIX],
            prefix_len: 0,
            frame_len: frame.len().min(usize::from(u16::MAX)) as u16,
            snap_len: frame.len().min(SNAP) as u16,
            snap: [0; SNAP],
        };
        let p = prefix.as_bytes();
        let n = p.len().min(PREFIX);
        ev.prefix[..n].copy_from_slice(&p[..n]);
        ev.prefix_len = n as u8;
        ev.snap[..usize::from(ev.snap_len)].copy_from_slice(&frame[..usize::from(ev.snap_len)]);
        ev
    }

    /// The event stamped with the worker's clock.
    pub fn at(mut self, ts_ns: u64) -> LogEvent {
        self.ts_ns = ts_ns;
        self
    }

    pub fn prefix(&self) -> &str {
        std::str::from_utf8(&self.prefix[..usize::from(self.prefix_len)]).unwrap_or("")
    }

    /// The captured head of the frame.
    pub fn bytes(&self) -> &[u8] {
        &self.snap[..usize::from(self.snap_len)]
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn hex_opts(out: &mut String, o: &[u8]) {
    out.push_str("OPT (");
    for b in o {
        let _ = write!(out, "{b:02X}");
    }
    out.push_str(") ");
}

/// The kernel's LOG line for an event (without the syslog header): `<prefix>IN=.. OUT=.. MAC=..
/// SRC=.. DST=.. LEN=.. ...`, with `port_names` for IN/OUT. Ends with a space, as the kernel's.
pub fn format_line(ev: &LogEvent, port_names: [&str; 2]) -> String {
    let mut s = String::with_capacity(256);
    let flags = match ev.kind {
        LogKind::Log { flags, .. } => flags,
        LogKind::Nflog { .. } => 0,
    };
    let _ = write!(
        s,
        "{}IN={} OUT={} ",
        ev.prefix(),
        port_names[usize::from(ev.ingress & 1)],
        port_names[usize::from(ev.egress & 1)]
    );
    let f = ev.bytes();
    let Ok(info) = wire::parse_frame(f) else {
        return s;
    };
    let l3 = usize::from(info.l3_offset);
    if flags & 8 != 0 {
        // --log-macdecode
        let m = |b: &[u8]| {
            b.iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        };
        let _ = write!(
            s,
            "MACSRC={} MACDST={} MACPROTO={:04x} ",
            m(&f[6..12]),
            m(&f[0..6]),
            info.ethertype
        );
    } else {
        s.push_str("MAC=");
        for (i, b) in f[..l3.min(14)].iter().enumerate() {
            if i > 0 {
                s.push(':');
            }
            let _ = write!(s, "{b:02x}");
        }
        s.push(' ');
    }
    dump_ip(&mut s, &f[l3..], info.family, flags, true);
    s
}

fn dump_ip(s: &mut String, ip: &[u8], family: wire::Family, flags: u8, outer: bool) {
    let (proto, l4, frag_off) = match family {
        wire::Family::Ipv4 => {
            if ip.len() < 20 {
                return;
            }
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let _ = write!(
                s,
                "SRC={} DST={} LEN={} TOS=0x{:02X} PREC=0x{:02X} TTL={} ID={} ",
                std::net::Ipv4Addr::from(be32(ip, 12)),
                std::net::Ipv4Addr::from(be32(ip, 16)),
                be16(ip, 2),
                ip[1] & 0x1e,
                ip[1] & 0xe0,
                ip[8],
                be16(ip, 4)
            );
            let fo = be16(ip, 6);
            if fo & 0x8000 != 0 {
                s.push_str("CE ");
            }
            if fo & 0x4000 != 0 {
                s.push_str("DF ");
            }
            if fo & 0x2000 != 0 {
                s.push_str("MF ");
            }
            if fo & 0x1fff != 0 {
                let _ = write!(s, "FRAG:{} ", fo & 0x1fff);
            }
            if flags & 4 != 0 && ihl > 20 && ip.len() >= ihl {
                hex_opts(s, &ip[20..ihl]);
            }
            (
                ip[9],
                ip.get(ihl.min(ip.len())..).unwrap_or(&[]),
                fo & 0x1fff,
            )
        }
        _ => {
            if ip.len() < 40 {
                return;
            }
            let mut src = [0u8; 16];
            let mut dst = [0u8; 16];
            src.copy_from_slice(&ip[8..24]);
            dst.copy_from_slice(&ip[24..40]);
            let _ = write!(
                s,
                "SRC={} DST={} LEN={} TC={} HOPLIMIT={} FLOWLBL={} ",
                std::net::Ipv6Addr::from(src),
                std::net::Ipv6Addr::from(dst),
                usize::from(be16(ip, 4)) + 40,
                (be16(ip, 0) >> 4) & 0xff,
                ip[7],
                be32(ip, 0) & 0xfffff
            );
            (ip[6], &ip[40..], 0)
        }
    };
    match proto {
        6 => {
            s.push_str("PROTO=TCP ");
            if frag_off != 0 {
                return;
            }
            if l4.len() < 20 {
                let _ = write!(s, "INCOMPLETE [{} bytes] ", l4.len());
                return;
            }
            let _ = write!(s, "SPT={} DPT={} ", be16(l4, 0), be16(l4, 2));
            if flags & 1 != 0 {
                let _ = write!(s, "SEQ={} ACK={} ", be32(l4, 4), be32(l4, 8));
            }
            let _ = write!(
                s,
                "WINDOW={} RES=0x{:02x} ",
                be16(l4, 14),
                (l4[12] & 0x0e) >> 1 & 0x07
            );
            let fl = l4[13];
            for (bit, name) in [
                (0x80, "CWR "),
                (0x40, "ECE "),
                (0x20, "URG "),
                (0x10, "ACK "),
                (0x08, "PSH "),
                (0x04, "RST "),
                (0x02, "SYN "),
                (0x01, "FIN "),
            ] {
                if fl & bit != 0 {
                    s.push_str(name);
                }
            }
            let _ = write!(s, "URGP={} ", be16(l4, 18));
            let doff = usize::from(l4[12] >> 4) * 4;
            if flags & 2 != 0 && doff > 20 && l4.len() >= doff {
                hex_opts(s, &l4[20..doff]);
            }
        }
        17 => {
            s.push_str("PROTO=UDP ");
            if frag_off != 0 {
                return;
            }
            if l4.len() < 8 {
                let _ = write!(s, "INCOMPLETE [{} bytes] ", l4.len());
                return;
            }
            let _ = write!(
                s,
                "SPT={} DPT={} LEN={} ",
                be16(l4, 0),
                be16(l4, 2),
                be16(l4, 4)
            );
        }
        1 | 58 => {
            s.push_str(if proto == 1 {
                "PROTO=ICMP "
            } else {
                "PROTO=ICMPv6 "
            });
            if frag_off != 0 || l4.len() < 4 {
                return;
            }
            let _ = write!(s, "TYPE={} CODE={} ", l4[0], l4[1]);
            let echo = if proto == 1 {
                matches!(l4[0], 0 | 8)
            } else {
                matches!(l4[0], 128 | 129)
            };
            let error = if proto == 1 {
                matches!(l4[0], 3 | 4 | 5 | 11 | 12)
            } else {
                l4[0] < 128
            };
            if echo && l4.len() >= 8 {
                let _ = write!(s, "ID={} SEQ={} ", be16(l4, 4), be16(l4, 6));
            } else if proto == 1 && l4[0] == 3 && l4[1] == 4 && l4.len() >= 8 {
                let _ = write!(s, "MTU={} ", be16(l4, 6));
            }
            if error && outer && l4.len() > 8 {
                s.push('[');
                dump_ip(
                    s,
                    &l4[8..],
                    if proto == 1 {
                        wire::Family::Ipv4
                    } else {
                        wire::Family::Ipv6
                    },
                    flags,
                    false,
                );
                s.push_str("] ");
            }
        }
        p => {
            let _ = write!(s, "PROTO={p} ");
        }
    }
}

/// What the control thread does with the events of one queue: LOG lines to `lines` (one per
/// event, kernel format, newline-terminated), NFLOG packets to `nflog` (batched by the caller,
/// e.g. into a pcapng file). Returns the number of events drained.
pub fn drain(
    q: &mut rtrb::Consumer<LogEvent>,
    port_names: [&str; 2],
    lines: &mut impl std::io::Write,
    nflog: &mut impl FnMut(&LogEvent),
) -> std::io::Result<usize> {
    let mut n = 0;
    while let Ok(ev) = q.pop() {
        match ev.kind {
            LogKind::Log { .. } => writeln!(lines, "{}", format_line(&ev, port_names))?,
            LogKind::Nflog { .. } => nflog(&ev),
        }
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::builder::{FrameBuilder, IpPair, TcpSpec};
    use wire::tcp::{TcpFlags, TcpOption};

    #[test]
    fn tcp_syn_line_matches_the_kernel_format() {
        let b = FrameBuilder {
            ident: 54321,
            dont_frag: true,
            ..FrameBuilder::default()
        };
        let f = b.tcp(
            IpPair::V4([198, 18, 0, 1], [198, 18, 0, 2]),
            &TcpSpec {
                src_port: 40000,
                dst_port: 80,
                seq: 1,
                ack: 0,
                flags: TcpFlags::SYN,
                window: 64240,
                options: vec![TcpOption::Mss(1460)],
                payload: b"",
            },
        );
        let ev = LogEvent::new(LogKind::Log { level: 4, flags: 3 }, "fwd-in: ", &f, 0, 1);
        let line = format_line(&ev, ["fw-c", "fw-s"]);
        let mac: Vec<String> = f[..14].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            line,
            format!(
                "fwd-in: IN=fw-c OUT=fw-s MAC={} SRC=198.18.0.1 DST=198.18.0.2 LEN=44 TOS=0x00 PREC=0x00 TTL={} ID=54321 DF PROTO=TCP SPT=40000 DPT=80 SEQ=1 ACK=0 WINDOW=64240 RES=0x00 SYN URGP=0 OPT (020405B4) ",
                mac.join(":"),
                b.ttl
            )
        );
    }

    #[test]
    fn icmp_error_line_nests_the_quote_and_udp_has_len() {
        let b = FrameBuilder::default();
        let u = b.udp(
            IpPair::V4([198, 18, 0, 1], [198, 18, 0, 2]),
            5000,
            53,
            b"abcd",
        );
        let e = b.icmp_error(
            IpPair::V4([198, 18, 0, 2], [198, 18, 0, 1]),
            3,
            3,
            0,
            &u[14..],
        );
        let line = format_line(
            &LogEvent::new(LogKind::Nflog { group: 1 }, "x ", &e, 1, 0),
            ["fw-c", "fw-s"],
        );
        assert!(line.starts_with("x IN=fw-s OUT=fw-c MAC="), "{line}");
        assert!(
            line.contains("PROTO=ICMP TYPE=3 CODE=3 [SRC=198.18.0.1 DST=198.18.0.2 LEN=32 "),
            "{line}"
        );
        assert!(
            line.ends_with("PROTO=UDP SPT=5000 DPT=53 LEN=12 ] "),
            "{line}"
        );
    }

    #[test]
    fn drain_splits_log_lines_and_nflog_packets() {
        let (mut tx, mut rx) = rtrb::RingBuffer::new(4);
        let b = FrameBuilder::default();
        let f = b.echo(
            IpPair::V4([198, 18, 0, 1], [198, 18, 0, 2]),
            true,
            9,
            3,
            b"ping",
        );
        tx.push(LogEvent::new(
            LogKind::Log { level: 4, flags: 0 },
            "A ",
            &f,
            0,
            1,
        ))
        .unwrap();
        tx.push(LogEvent::new(LogKind::Nflog { group: 5 }, "B ", &f, 0, 1))
            .unwrap();
        let mut out = Vec::new();
        let mut pkts = Vec::new();
        let n = drain(&mut rx, ["fw-c", "fw-s"], &mut out, &mut |e: &LogEvent| {
            pkts.push(e.bytes().to_vec())
        })
        .unwrap();
        assert_eq!(n, 2);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("A IN=fw-c OUT=fw-s "), "{text}");
        assert!(
            text.ends_with("PROTO=ICMP TYPE=8 CODE=0 ID=9 SEQ=3 \n"),
            "{text}"
        );
        assert_eq!(pkts, vec![f]);
    }

    #[test]
    fn macdecode_names_the_fields() {
        let b = FrameBuilder::default();
        let f = b.udp(IpPair::V4([198, 18, 0, 1], [198, 18, 0, 2]), 1, 2, b"");
        let line = format_line(
            &LogEvent::new(LogKind::Log { level: 4, flags: 8 }, "", &f, 0, 1),
            ["fw-c", "fw-s"],
        );
        assert!(line.starts_with("IN=fw-c OUT=fw-s MACSRC=02:00:00:00:00:01 MACDST=02:00:00:00:00:02 MACPROTO=0800 SRC="), "{line}");
    }

    #[test]
    fn event_is_fixed_size_and_truncates() {
        let big = vec![0u8; 2000];
        let ev = LogEvent::new(LogKind::Nflog { group: 2 }, &"p".repeat(100), &big, 0, 1);
        assert_eq!(ev.bytes().len(), SNAP);
        assert_eq!(ev.frame_len, 2000);
        assert_eq!(ev.prefix().len(), PREFIX);
    }
}
