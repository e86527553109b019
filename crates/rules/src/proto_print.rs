//! How iptables-save and `iptables -L -n` print `-m sctp`, `-m dccp`, `-m esp` and `-m ah`,
//! quirks included (`ah` lists with a trailing space, `esp` drops a full SPI range even when
//! negated, `--dccp-types INVALID` is types 10 to 15).

use std::fmt::Write;

use crate::ast::*;
use crate::proto_ast::*;

fn neg(o: &mut String, n: bool) {
    if n {
        o.push_str(" !");
    }
}

fn save_ports(o: &mut String, opt: &str, p: &Option<ProtoPorts>) {
    if let Some(p) = p {
        neg(o, p.negated);
        if p.range.lo == p.range.hi {
            let _ = write!(o, " --{opt} {}", p.range.lo);
        } else {
            let _ = write!(o, " --{opt} {}:{}", p.range.lo, p.range.hi);
        }
    }
}

fn list_ports(o: &mut String, name: &str, p: &Option<ProtoPorts>) {
    if let Some(p) = p {
        let (lo, hi, inv) = (p.range.lo, p.range.hi, if p.negated { "!" } else { "" });
        if lo != 0 || hi != 0xffff || p.negated {
            if lo == hi {
                let _ = write!(o, " {name}:{inv}{lo}");
            } else {
                let _ = write!(o, " {name}s:{inv}{lo}:{hi}");
            }
        }
    }
}

fn chunk_text(o: &mut String, c: &SctpChunks, numeric: bool) {
    o.push_str(match c.kind {
        ChunkMatchType::Any => " any",
        ChunkMatchType::All => " all",
        ChunkMatchType::Only => " only",
    });
    if c.map == [0; 8] {
        o.push_str(" NONE");
        return;
    }
    if c.map == [u32::MAX; 8] {
        o.push_str(" ALL");
        return;
    }
    let mut first = true;
    for t in 0..=255u8 {
        if !c.has(t) {
            continue;
        }
        o.push(if first { ' ' } else { ',' });
        first = false;
        let entry = SCTP_CHUNKS.iter().find(|e| e.1 == t);
        if numeric {
            let _ = write!(o, "0x{t:04X}");
        } else if let Some(e) = entry {
            o.push_str(e.0);
        }
        if let (Some(f), Some(e)) = (c.flags.iter().find(|f| f.chunk_type == t), entry) {
            if f.mask != 0 {
                o.push(':');
            }
            for bit in (0..8).rev() {
                if f.mask & (1 << bit) != 0 {
                    let l = e.2[7 - bit] as char;
                    o.push(if f.flags & (1 << bit) != 0 {
                        l
                    } else {
                        l.to_ascii_lowercase()
                    });
                }
            }
        }
    }
}

fn dccp_types(o: &mut String, mut types: u16, numeric: bool) {
    o.push(' ');
    let mut first = true;
    while types != 0 {
        let i = types.trailing_zeros() as usize;
        if !first {
            o.push(',');
        }
        first = false;
        if numeric {
            let _ = write!(o, "{i}");
        } else {
            // Types 10-15 are all `INVALID`: iptables prints the name once.
            o.push_str(DCCP_TYPES[i.min(10)]);
            if i >= 10 {
                return;
            }
        }
        types &= !(1 << i);
    }
}

fn spi_text(o: &mut String, s: &SpiMatch) {
    if s.lo == s.hi {
        let _ = write!(o, "{}", s.lo);
    } else {
        let _ = write!(o, "{}:{}", s.lo, s.hi);
    }
}

fn list_spis(o: &mut String, s: &SpiMatch) {
    if !s.is_full() || s.negated {
        let inv = if s.negated { "!" } else { "" };
        if s.lo == s.hi {
            let _ = write!(o, "spi:{inv}{}", s.lo);
        } else {
            let _ = write!(o, "spis:{inv}{}:{}", s.lo, s.hi);
        }
    }
}

/// The options of one of these matches as iptables-save prints them (after ` -m NAME`).
pub(crate) fn save(m: &Match, o: &mut String) {
    match m {
        Match::Sctp(s) => {
            save_ports(o, "sport", &s.sport);
            save_ports(o, "dport", &s.dport);
            if let Some(c) = &s.chunks {
                neg(o, c.negated);
                o.push_str(" --chunk-types");
                chunk_text(o, c, false);
            }
        }
        Match::Dccp(d) => {
            save_ports(o, "sport", &d.sport);
            save_ports(o, "dport", &d.dport);
            if let Some((t, n)) = d.types {
                neg(o, n);
                o.push_str(" --dccp-types");
                dccp_types(o, t, false);
            }
            if let Some((v, n)) = d.option {
                neg(o, n);
                let _ = write!(o, " --dccp-option {v}");
            }
        }
        Match::Esp(s) if !s.is_full() => {
            neg(o, s.negated);
            o.push_str(" --espspi ");
            spi_text(o, s);
        }
        Match::Ah(h) => {
            if !h.spi.is_full() {
                neg(o, h.spi.negated);
                o.push_str(" --ahspi ");
                spi_text(o, &h.spi);
            }
            if let Some((l, n)) = h.len.filter(|l| l.0 != 0 || l.1) {
                neg(o, n);
                let _ = write!(o, " --ahlen {l}");
            }
            if h.res {
                o.push_str(" --ahres");
            }
        }
        Match::Rt(r) => {
            if let Some((t, n)) = r.rt_type {
                neg(o, n);
                let _ = write!(o, " --rt-type {t}");
            }
            if !r.segsleft.is_full() {
                neg(o, r.segsleft.negated);
                o.push_str(" --rt-segsleft ");
                spi_text(o, &r.segsleft);
            }
            if let Some((l, n)) = r.len {
                neg(o, n);
                let _ = write!(o, " --rt-len {l}");
            }
            if r.res {
                o.push_str(" --rt-0-res");
            }
            if let Some((addrs, not_strict)) = &r.addrs {
                o.push_str(" --rt-0-addrs");
                rt_addrs(o, addrs);
                if *not_strict {
                    o.push_str(" --rt-0-not-strict");
                }
            }
        }
        _ => {}
    }
}

/// The match as `iptables -L -n` prints it in the rule's last column.
pub(crate) fn list(m: &Match, o: &mut String) {
    match m {
        Match::Sctp(s) => {
            o.push_str(" sctp");
            list_ports(o, "spt", &s.sport);
            list_ports(o, "dpt", &s.dport);
            if let Some(c) = &s.chunks {
                neg(o, c.negated);
                chunk_text(o, c, true);
            }
        }
        Match::Dccp(d) => {
            o.push_str(" dccp");
            list_ports(o, "spt", &d.sport);
            list_ports(o, "dpt", &d.dport);
            if let Some((t, n)) = d.types {
                neg(o, n);
                dccp_types(o, t, true);
            }
            if let Some((v, n)) = d.option {
                if v != 0 || n {
                    let _ = write!(o, " option={}{v}", if n { "!" } else { "" });
                }
            }
        }
        Match::Esp(s) => {
            o.push_str(" esp");
            if !s.is_full() || s.negated {
                o.push(' ');
                list_spis(o, s);
            }
        }
        Match::Ah(h) => {
            o.push_str(" ah ");
            list_spis(o, &h.spi);
            if let Some((l, n)) = h.len.filter(|l| l.0 != 0 || l.1) {
                let _ = write!(o, "length:{}{l}", if n { "!" } else { "" });
            }
            if h.res {
                o.push_str(" reserved");
            }
        }
        Match::Rt(r) => {
            o.push_str(" rt");
            if let Some((t, n)) = r.rt_type {
                let _ = write!(o, " type:{}{t}", if n { "!" } else { "" });
            }
            let s = &r.segsleft;
            if !s.is_full() || s.negated {
                let inv = if s.negated { "!" } else { "" };
                if s.lo == s.hi {
                    let _ = write!(o, " segsleft:{inv}{}", s.lo);
                } else {
                    let _ = write!(o, " segslefts:{inv}{}:{}", s.lo, s.hi);
                }
            }
            if let Some((l, n)) = r.len {
                let _ = write!(o, " length:{}{l}", if n { "!" } else { "" });
            }
            if r.res {
                o.push_str(" reserved");
            }
            if let Some((addrs, not_strict)) = &r.addrs {
                o.push_str(" 0-addrs");
                rt_addrs(o, addrs);
                if *not_strict {
                    o.push_str(" 0-not-strict");
                }
            }
        }
        _ => {}
    }
}

/// `print_addresses` of `libip6t_rt.c`: the first after a blank, the rest after commas.
fn rt_addrs(o: &mut String, addrs: &[std::net::Ipv6Addr]) {
    for (i, a) in addrs.iter().enumerate() {
        let _ = write!(o, "{}{a}", if i == 0 { ' ' } else { ',' });
    }
}
