//! `-m sctp` (`libxt_sctp.c`), `-m dccp` (`libxt_dccp.c`), `-m esp` (`libxt_esp.c`) and `-m ah`
//! (`libipt_ah.c`, `libip6t_ah.c`): ports, chunk and packet types, SPIs. Each is loaded
//! implicitly by its `-p` as tcp and udp are.

use super::registry::{MatchExt, OptArg};
use crate::ast::*;
use crate::proto_ast::*;
use crate::values::{self, fail, fail_hint, VResult};

const SPORT: u8 = 0;
const DPORT: u8 = 1;
const CHUNKS: u8 = 2;
const TYPES: u8 = 3;
const OPTION: u8 = 4;
const SPI: u8 = 5;
const AHLEN: u8 = 6;
const AHRES: u8 = 7;

pub(super) const SCTP: MatchExt = MatchExt {
    name: "sctp",
    family: None,
    opts: &[
        ("source-port", SPORT, 1, true),
        ("sport", SPORT, 1, true),
        ("destination-port", DPORT, 1, true),
        ("dport", DPORT, 1, true),
        ("chunk-types", CHUNKS, 2, true),
    ],
    exclusive: &[],
    new: || Match::Sctp(SctpMatch::default()),
    apply,
    required: None,
    proto: Some((132, "sctp")),
    check: None,
};

pub(super) const DCCP: MatchExt = MatchExt {
    name: "dccp",
    family: None,
    opts: &[
        ("source-port", SPORT, 1, true),
        ("sport", SPORT, 1, true),
        ("destination-port", DPORT, 1, true),
        ("dport", DPORT, 1, true),
        ("dccp-types", TYPES, 1, true),
        ("dccp-option", OPTION, 1, true),
    ],
    exclusive: &[],
    new: || Match::Dccp(DccpMatch::default()),
    apply,
    required: None,
    proto: Some((33, "dccp")),
    check: None,
};

pub(super) const ESP: MatchExt = MatchExt {
    name: "esp",
    family: None,
    opts: &[("espspi", SPI, 1, true)],
    exclusive: &[],
    new: || Match::Esp(SpiMatch::ANY),
    apply,
    required: None,
    proto: Some((50, "esp")),
    check: None,
};

/// iptables' `-m ah`: the kernel's `ah` match for IPv4 is registered for `-p ah` only.
pub(super) const AH4: MatchExt = MatchExt {
    name: "ah",
    family: Some(Family::Ipv4),
    opts: &[("ahspi", SPI, 1, true)],
    exclusive: &[],
    new: new_ah,
    apply,
    required: None,
    proto: Some((51, "ah")),
    check: None,
};

/// ip6tables' `-m ah` finds the header in the extension header chain: no `-p` needed (and
/// `-p ah` never matches in ip6tables, the chain walk skips AH).
pub(super) const AH6: MatchExt = MatchExt {
    name: "ah",
    family: Some(Family::Ipv6),
    opts: &[
        ("ahspi", SPI, 1, true),
        ("ahlen", AHLEN, 1, true),
        ("ahres", AHRES, 0, false),
    ],
    exclusive: &[],
    new: new_ah,
    apply,
    required: None,
    proto: None,
    check: None,
};

fn new_ah() -> Match {
    Match::Ah(AhMatch {
        spi: SpiMatch::ANY,
        len: None,
        res: false,
    })
}

fn ports(a: &OptArg, proto: &str) -> VResult<Option<ProtoPorts>> {
    Ok(Some(ProtoPorts {
        range: values::port_range(a.value, proto)?,
        negated: a.neg,
    }))
}

fn apply(m: &mut Match, a: &OptArg) -> VResult<()> {
    match m {
        Match::Sctp(s) => match a.id {
            SPORT => s.sport = ports(a, "sctp")?,
            DPORT => s.dport = ports(a, "sctp")?,
            _ => s.chunks = Some(chunks(a.value, &a.args[1].0, a.neg)?),
        },
        Match::Dccp(d) => match a.id {
            // `XTTYPE_PORTRC`: service names of any protocol.
            SPORT => d.sport = ports(a, "any")?,
            DPORT => d.dport = ports(a, "any")?,
            TYPES => d.types = Some((dccp_types(a.value)?, a.neg)),
            _ => {
                let n = values::number(a.value, 255, "DCCP option")?;
                if n == 0 {
                    return fail("DCCP option `0` out of range: expected 1-255");
                }
                d.option = Some((n as u8, a.neg));
            }
        },
        Match::Esp(s) => *s = spi(a, "espspi")?,
        Match::Ah(h) => match a.id {
            SPI => h.spi = spi(a, "ahspi")?,
            AHLEN => h.len = Some((uint32(a.value, "AH length")?, a.neg)),
            _ => h.res = true,
        },
        _ => return fail("option not valid here"),
    }
    Ok(())
}

/// A number as `strtoul(.., 0)` reads it (decimal, `0x` hex, leading-zero octal), at most
/// 2^32 - 1 (`XTTYPE_UINT32`).
pub(super) fn uint32(s: &str, what: &str) -> VResult<u32> {
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return fail_hint(
            format!("invalid {what} `{s}`"),
            "expected a number 0-4294967295 (decimal or 0x hex)",
        );
    }
    match u64::from_str_radix(digits, radix) {
        Ok(v) if v <= u64::from(u32::MAX) => Ok(v as u32),
        _ => fail(format!("{what} `{s}` out of range: expected 0-4294967295")),
    }
}

/// `--espspi`/`--ahspi`: `N`, `LO:HI`, `:HI`, `LO:` (`XTTYPE_UINT32RC`).
fn spi(a: &OptArg, opt: &str) -> VResult<SpiMatch> {
    uint32_range(a, opt, "SPI")
}

/// An `XTTYPE_UINT32RC` option (`N`, `LO:HI`, `:HI`, `LO:`) as a range; the full range
/// negated is refused (see below).
pub(super) fn uint32_range(a: &OptArg, opt: &str, what: &str) -> VResult<SpiMatch> {
    let (lo, hi) = match a.value.split_once(':') {
        None => {
            let v = uint32(a.value, what)?;
            (v, v)
        }
        Some((l, h)) => (
            if l.is_empty() { 0 } else { uint32(l, what)? },
            if h.is_empty() {
                u32::MAX
            } else {
                uint32(h, what)?
            },
        ),
    };
    if lo > hi {
        return fail_hint(
            format!("invalid {what} range `{}`: start is above end", a.value),
            format!("write `{hi}:{lo}`"),
        );
    }
    if a.neg && lo == 0 && hi == u32::MAX {
        // iptables accepts it, and iptables-save prints the match without it: the rule that
        // matches nothing would match everything once saved and restored.
        return fail_hint(
            format!("`! --{} {}` matches no packet", opt, a.value),
            "iptables-save drops the negation of the full range; remove the rule",
        );
    }
    Ok(SpiMatch {
        lo,
        hi,
        negated: a.neg,
    })
}

fn dccp_types(s: &str) -> VResult<u16> {
    let mut mask = 0u16;
    for name in s.split(',') {
        match DCCP_TYPES.iter().position(|t| t.eq_ignore_ascii_case(name)) {
            Some(10) => mask |= DCCP_INVALID_BITS,
            Some(i) => mask |= 1 << i,
            None => {
                return fail_hint(
                    format!("unknown DCCP type `{name}`"),
                    format!("expected a list of {}", DCCP_TYPES.join(", ")),
                )
            }
        }
    }
    Ok(mask)
}

/// `--chunk-types all|any|only TYPE[:FLAGS],...` (or `ALL` / `NONE` for the list).
fn chunks(kind: &str, list: &str, negated: bool) -> VResult<SctpChunks> {
    let kind = match kind.to_ascii_lowercase().as_str() {
        "all" => ChunkMatchType::All,
        "any" => ChunkMatchType::Any,
        "only" => ChunkMatchType::Only,
        _ => {
            return fail_hint(
                format!("invalid chunk match type `{kind}`"),
                "expected `all`, `any` or `only`",
            )
        }
    };
    let mut c = SctpChunks {
        kind,
        map: [0; 8],
        flags: Vec::new(),
        negated,
    };
    if list.eq_ignore_ascii_case("ALL") {
        c.map = [u32::MAX; 8];
        return Ok(c);
    }
    if list.eq_ignore_ascii_case("NONE") {
        return Ok(c);
    }
    for item in list.split(',') {
        let (name, fl) = match item.split_once(':') {
            Some((n, f)) => (n, Some(f)),
            None => (item, None),
        };
        let Some(&(_, t, valid)) = SCTP_CHUNKS.iter().find(|c| c.0.eq_ignore_ascii_case(name))
        else {
            return fail_hint(
                format!("unknown SCTP chunk type `{name}`"),
                format!(
                    "expected one of {}",
                    SCTP_CHUNKS
                        .iter()
                        .map(|c| c.0)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        };
        c.map[usize::from(t >> 5)] |= 1 << (t & 31);
        for ch in fl.unwrap_or("").chars() {
            let up = ch.to_ascii_uppercase() as u8;
            let Some(pos) = valid.iter().position(|&v| v == up && v != b'-') else {
                return fail_hint(
                    format!("invalid flag `{ch}` for SCTP chunk type {name}"),
                    match name.to_ascii_uppercase().as_str() {
                        "DATA" => "DATA has the flags I, U, B, E",
                        "ABORT" | "SHUTDOWN_COMPLETE" => "this chunk type has the flag T",
                        _ => "this chunk type has no flags fwd can match",
                    },
                );
            };
            let bit = 1u8 << (7 - pos);
            let set = ch.is_ascii_uppercase();
            let i = match c.flags.iter().position(|f| f.chunk_type == t) {
                Some(i) => i,
                None => {
                    if c.flags.len() == 4 {
                        return fail("at most 4 SCTP chunk types may have flags");
                    }
                    c.flags.push(ChunkFlags {
                        chunk_type: t,
                        mask: 0,
                        flags: 0,
                    });
                    c.flags.len() - 1
                }
            };
            c.flags[i].mask |= bit;
            if set {
                c.flags[i].flags |= bit;
            }
        }
    }
    // By chunk type, as they print: the order given means nothing.
    c.flags.sort_by_key(|f| f.chunk_type);
    Ok(c)
}
