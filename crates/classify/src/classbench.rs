//! ClassBench input (rule sets and header traces, the format `dpdk-test-acl` reads) and a
//! converter from rules to an `iptables-restore` file in iptables-save's canonical form.

use std::fmt::{self, Write};

use crate::spec::{AddrMatch, Key, PortMatch, ProtoMatch, RuleSpec};

/// A malformed line: where and what was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub col: usize,
    pub msg: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.col, self.msg)
    }
}

impl std::error::Error for ParseError {}

/// One header of a trace and the rule ClassBench generated it from (not always its first match).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceEntry {
    pub key: Key,
    pub generator: u32,
}

struct Cursor<'a> {
    line: usize,
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn err(&self, msg: impl Into<String>) -> ParseError {
        ParseError {
            line: self.line,
            col: self.pos + 1,
            msg: msg.into(),
        }
    }

    fn skip_ws(&mut self) {
        while self.text[self.pos..].starts_with([' ', '\t']) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, c: char) -> Result<(), ParseError> {
        self.skip_ws();
        if self.text[self.pos..].starts_with(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(format!("expected '{c}'")))
        }
    }

    fn word(&mut self, what: &str, stop: &[char]) -> Result<&'a str, ParseError> {
        self.skip_ws();
        let rest = &self.text[self.pos..];
        let end = rest
            .find(|c: char| c == ' ' || c == '\t' || stop.contains(&c))
            .unwrap_or(rest.len());
        if end == 0 {
            return Err(self.err(format!("expected {what}")));
        }
        self.pos += end;
        Ok(&rest[..end])
    }

    fn num<T: TryFrom<u64>>(&mut self, what: &str, stop: &[char]) -> Result<T, ParseError> {
        let start = self.pos;
        let w = self.word(what, stop)?;
        let v = if let Some(h) = w.strip_prefix("0x").or_else(|| w.strip_prefix("0X")) {
            u64::from_str_radix(h, 16).ok()
        } else {
            w.parse::<u64>().ok()
        };
        v.and_then(|v| T::try_from(v).ok()).ok_or_else(|| {
            self.pos = start;
            self.skip_ws();
            self.err(format!("expected {what}, found '{w}'"))
        })
    }

    fn prefix(&mut self) -> Result<AddrMatch, ParseError> {
        let start = self.pos;
        let w = self.word("address/len", &[])?;
        let bad = |c: &mut Self| {
            c.pos = start;
            c.err(format!("expected dotted IPv4 address/len, found '{w}'"))
        };
        let Some((a, l)) = w.split_once('/') else {
            return Err(bad(self));
        };
        let (Ok(a), Ok(l)) = (a.parse::<std::net::Ipv4Addr>(), l.parse::<u8>()) else {
            return Err(bad(self));
        };
        if l > 32 {
            return Err(bad(self));
        }
        Ok(AddrMatch::v4_prefix(u32::from(a), l))
    }

    fn end(&mut self) -> Result<(), ParseError> {
        self.skip_ws();
        if self.pos == self.text.len() {
            Ok(())
        } else {
            Err(self.err("unexpected text at end of line"))
        }
    }
}

/// Parse a ClassBench rule file (`@SRC/LEN DST/LEN SLO : SHI DLO : DHI PROTO/MASK FLAGS/MASK`).
/// TCP flags are ignored, as `dpdk-test-acl` does.
pub fn parse_rules(text: &str) -> Result<Vec<RuleSpec>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut c = Cursor {
            line: i + 1,
            text: line.trim_end(),
            pos: 0,
        };
        c.expect('@')?;
        let src = c.prefix()?;
        let dst = c.prefix()?;
        let slo = c.num::<u16>("port", &[':'])?;
        c.expect(':')?;
        let shi = c.num::<u16>("port", &[])?;
        let dlo = c.num::<u16>("port", &[':'])?;
        c.expect(':')?;
        let dhi = c.num::<u16>("port", &[])?;
        let proto = c.num::<u8>("protocol", &['/'])?;
        c.expect('/')?;
        let pmask_at = c.pos;
        let pmask = c.num::<u8>("protocol mask", &[])?;
        let proto = match pmask {
            0xff => ProtoMatch::Is(proto),
            0 => ProtoMatch::Any,
            _ => {
                c.pos = pmask_at;
                c.skip_ws();
                return Err(c.err("expected protocol mask 0xFF or 0x00"));
            }
        };
        let _flags = c.num::<u16>("flags", &['/'])?;
        c.expect('/')?;
        let _fmask = c.num::<u16>("flags mask", &[])?;
        c.end()?;
        out.push(RuleSpec {
            src,
            dst,
            proto,
            sport: PortMatch::range(slo, shi),
            dport: PortMatch::range(dlo, dhi),
            ..RuleSpec::ANY
        });
    }
    Ok(out)
}

/// Parse a ClassBench trace (`SRC DST SPORT DPORT PROTO FLAGS MATCH`, addresses as integers).
pub fn parse_trace(text: &str) -> Result<Vec<TraceEntry>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut c = Cursor {
            line: i + 1,
            text: line.trim_end(),
            pos: 0,
        };
        let src = c.num::<u32>("source address", &[])?;
        let dst = c.num::<u32>("destination address", &[])?;
        let sport = c.num::<u16>("source port", &[])?;
        let dport = c.num::<u16>("destination port", &[])?;
        let proto = c.num::<u8>("protocol", &[])?;
        let _flags = c.num::<u64>("flags", &[])?;
        let generator = c.num::<u32>("rule number", &[])?;
        c.end()?;
        let key = Key {
            src: src as u128,
            dst: dst as u128,
            sport,
            dport,
            proto,
            ..Key::default()
        };
        out.push(TraceEntry { key, generator });
    }
    Ok(out)
}

fn proto_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        47 => "gre".into(),
        50 => "esp".into(),
        51 => "ah".into(),
        58 => "ipv6-icmp".into(),
        132 => "sctp".into(),
        _ => p.to_string(),
    }
}

fn v4_prefix_text(a: &AddrMatch) -> Result<Option<String>, String> {
    if a.is_any() || (a.lo == 0 && a.hi == u32::MAX as u128) {
        return Ok(None);
    }
    let size = a.hi.wrapping_sub(a.lo).wrapping_add(1);
    if a.negate || a.hi > u32::MAX as u128 || !size.is_power_of_two() || a.lo & (size - 1) != 0 {
        return Err(format!(
            "address range {:#x}-{:#x} is not a plain IPv4 prefix",
            a.lo, a.hi
        ));
    }
    let len = 32 - size.trailing_zeros();
    Ok(Some(format!(
        "{}/{}",
        std::net::Ipv4Addr::from(a.lo as u32),
        len
    )))
}

fn port_text(p: &PortMatch) -> Option<String> {
    if p.is_any() {
        None
    } else if p.lo == p.hi {
        Some(p.lo.to_string())
    } else {
        Some(format!("{}:{}", p.lo, p.hi))
    }
}

/// Write the rules (IPv4 prefixes, protocol, port ranges; other fields are refused) as an
/// `iptables-restore` file for table filter, all appended to `chain` with `-j target`, in
/// iptables-save's canonical form. iptables only takes ports with `-p tcp`/`-p udp`: a rule with
/// ports and any protocol becomes two rules, `-p tcp` then `-p udp` (what such a rule means for
/// real traffic); ports with another protocol are an error. Returns the file and, for each
/// output rule, the index of the input rule it came from.
pub fn to_iptables_restore(
    rules: &[RuleSpec],
    chain: &str,
    target: &str,
) -> Result<(String, Vec<u32>), String> {
    let mut s = String::from("*filter\n");
    for builtin in ["INPUT", "FORWARD", "OUTPUT"] {
        let _ = writeln!(s, ":{builtin} ACCEPT [0:0]");
    }
    if !["INPUT", "FORWARD", "OUTPUT"].contains(&chain) {
        let _ = writeln!(s, ":{chain} - [0:0]");
    }
    let mut origin = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        if *r
            != (RuleSpec {
                src: r.src,
                dst: r.dst,
                proto: r.proto,
                sport: r.sport,
                dport: r.dport,
                ..RuleSpec::ANY
            })
        {
            return Err(format!(
                "rule {i}: only addresses, protocol and ports can be converted"
            ));
        }
        if r.sport.negate || r.dport.negate {
            return Err(format!("rule {i}: negated ports are not converted"));
        }
        let mut head = format!("-A {chain}");
        for (opt, a) in [("-s", &r.src), ("-d", &r.dst)] {
            if let Some(t) = v4_prefix_text(a).map_err(|e| format!("rule {i}: {e}"))? {
                let _ = write!(head, " {opt} {t}");
            }
        }
        let ports = (port_text(&r.sport), port_text(&r.dport));
        let protos: Vec<Option<u8>> = match (r.proto, &ports) {
            (ProtoMatch::Any, (None, None)) => vec![None],
            (ProtoMatch::Any, _) => vec![Some(6), Some(17)],
            (ProtoMatch::Is(p), (None, None)) => vec![Some(p)],
            (ProtoMatch::Is(p @ (6 | 17)), _) => vec![Some(p)],
            (ProtoMatch::Is(p), _) => return Err(format!("rule {i}: ports with protocol {p}")),
            (ProtoMatch::IsNot(_), _) => {
                return Err(format!("rule {i}: negated protocol is not converted"))
            }
        };
        for p in protos {
            let mut line = head.clone();
            if let Some(p) = p {
                let _ = write!(line, " -p {}", proto_name(p));
                if ports != (None, None) {
                    let _ = write!(line, " -m {}", proto_name(p));
                    if let Some(sp) = &ports.0 {
                        let _ = write!(line, " --sport {sp}");
                    }
                    if let Some(dp) = &ports.1 {
                        let _ = write!(line, " --dport {dp}");
                    }
                }
            }
            let _ = writeln!(s, "{line} -j {target}");
            origin.push(i as u32);
        }
    }
    s.push_str("COMMIT\n");
    Ok((s, origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_rule_and_a_trace_line() {
        let rules = parse_rules("@81.49.105.124/32\t74.221.136.0/24\t0 : 65535\t1724 : 1724\t0x06/0xFF\t0x1000/0x1000\t\n")
            .unwrap();
        assert_eq!(rules.len(), 1);
        let r = rules[0];
        assert_eq!(r.src, AddrMatch::v4_prefix(0x5131697c, 32));
        assert_eq!(r.dst.lo, 0x4add8800);
        assert_eq!(r.dst.hi, 0x4add88ff);
        assert_eq!(r.proto, ProtoMatch::Is(6));
        assert!(r.sport.is_any());
        assert_eq!(r.dport, PortMatch::range(1724, 1724));
        let t = parse_trace("1362192746\t1255888899\t0\t1724\t6\t4294967295\t0\n").unwrap();
        assert_eq!(t[0].key.src, 1362192746);
        assert_eq!(t[0].key.dport, 1724);
        assert_eq!(t[0].generator, 0);
        assert!(r.matches(&Key {
            src: 0x5131697c,
            dst: 0x4add8812,
            ..t[0].key
        }));
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = parse_rules(
            "@1.2.3.4/32 5.6.7.8/32 0 : 65535 0 : 65535 0x06/0xFF 0x0/0x0\n@1.2.3.4/33 x",
        )
        .unwrap_err();
        assert_eq!((e.line, e.col), (2, 2));
        let e = parse_rules("@1.2.3.4/32 5.6.7.8/32 0 : 65535 0 : 65535 0x06/0x0F 0x0/0x0")
            .unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.msg.contains("protocol mask"), "{e}");
        assert!(parse_trace("1 2 3 4 5 6").is_err());
    }

    #[test]
    fn converts_to_canonical_iptables() {
        let text = "@10.1.2.3/16\t0.0.0.0/0\t0 : 65535\t80 : 80\t0x06/0xFF\t0x0000/0x0000\n\
                    @1.2.3.4/32\t5.6.7.8/32\t1024 : 65535\t0 : 65535\t0x00/0x00\t0x0000/0x0000\n\
                    @0.0.0.0/0\t0.0.0.0/0\t0 : 65535\t0 : 65535\t0x00/0x00\t0x0000/0x0000\n\
                    @0.0.0.0/0\t9.9.9.9/32\t0 : 65535\t0 : 65535\t0x2f/0xFF\t0x0000/0x0000\n";
        let rules = parse_rules(text).unwrap();
        let (out, origin) = to_iptables_restore(&rules, "FORWARD", "ACCEPT").unwrap();
        let want = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                    -A FORWARD -s 10.1.0.0/16 -p tcp -m tcp --dport 80 -j ACCEPT\n\
                    -A FORWARD -s 1.2.3.4/32 -d 5.6.7.8/32 -p tcp -m tcp --sport 1024:65535 -j ACCEPT\n\
                    -A FORWARD -s 1.2.3.4/32 -d 5.6.7.8/32 -p udp -m udp --sport 1024:65535 -j ACCEPT\n\
                    -A FORWARD -j ACCEPT\n\
                    -A FORWARD -d 9.9.9.9/32 -p gre -j ACCEPT\n\
                    COMMIT\n";
        assert_eq!(out, want);
        assert_eq!(origin, vec![0, 1, 1, 2, 3]);
        let bad = RuleSpec {
            proto: ProtoMatch::Is(1),
            dport: PortMatch::range(1, 2),
            ..RuleSpec::ANY
        };
        assert!(to_iptables_restore(&[bad], "FORWARD", "ACCEPT").is_err());
    }
}
