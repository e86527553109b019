//! `-m tcp` and `-m udp` (iptables' `libxt_tcp.c`, `libxt_udp.c`): ports, and TCP's flags and
//! option, loaded implicitly by `-p tcp`/`-p udp` when one of their options follows.

use super::registry::{MatchExt, OptArg};
use crate::ast::*;
use crate::values::{self, fail, VResult};

const SPORT: u8 = 0;
const DPORT: u8 = 1;
const SYN: u8 = 2;
const TCP_FLAGS: u8 = 3;
const TCP_OPTION: u8 = 4;

pub(super) const TCP: MatchExt = MatchExt {
    name: "tcp",
    family: None,
    opts: &[
        ("source-port", SPORT, 1, true),
        ("sport", SPORT, 1, true),
        ("destination-port", DPORT, 1, true),
        ("dport", DPORT, 1, true),
        ("syn", SYN, 0, true),
        ("tcp-flags", TCP_FLAGS, 2, true),
        ("tcp-option", TCP_OPTION, 1, true),
    ],
    exclusive: &[],
    new: || Match::Tcp(TcpMatch::default()),
    apply: apply_tcp,
    required: None,
    proto: Some((values::PROTO_TCP, "tcp")),
    check: None,
};

pub(super) const UDP: MatchExt = MatchExt {
    name: "udp",
    family: None,
    opts: &[
        ("source-port", SPORT, 1, true),
        ("sport", SPORT, 1, true),
        ("destination-port", DPORT, 1, true),
        ("dport", DPORT, 1, true),
    ],
    exclusive: &[],
    new: || Match::Udp(UdpMatch::default()),
    apply: apply_udp,
    required: None,
    proto: Some((values::PROTO_UDP, "udp")),
    check: None,
};

/// `--sport`/`--dport`: `None` (any) unless the range narrows or is negated.
fn port(a: &OptArg) -> VResult<Option<PortMatch>> {
    let r = values::port_range(a.value, "any")?;
    Ok(if r == PortRange::ANY && !a.neg {
        None
    } else {
        Some(PortMatch {
            range: r,
            negated: a.neg,
        })
    })
}

fn apply_tcp(m: &mut Match, a: &OptArg) -> VResult<()> {
    let Match::Tcp(t) = m else {
        return fail("option not valid here");
    };
    match a.id {
        SPORT => t.sport = port(a)?,
        DPORT => t.dport = port(a)?,
        SYN | TCP_FLAGS => {
            if t.flags.is_some() {
                return fail("only one of `--syn` and `--tcp-flags` allowed");
            }
            t.flags = Some(if a.id == SYN {
                TcpFlagsMatch {
                    mask: tcp_flags::FIN | tcp_flags::SYN | tcp_flags::RST | tcp_flags::ACK,
                    comp: tcp_flags::SYN,
                    negated: a.neg,
                }
            } else {
                let mask = values::tcp_flag_list(a.value)?;
                let comp = values::tcp_flag_list(&a.args[1].0)?;
                TcpFlagsMatch {
                    mask,
                    comp,
                    negated: a.neg,
                }
            });
            // `--tcp-flags NONE NONE` tests nothing; iptables drops it.
            if t.flags
                .is_some_and(|f| f.mask == 0 && f.comp == 0 && !f.negated)
            {
                t.flags = None;
            }
        }
        _ => {
            let n = values::number(a.value, 255, "TCP option")? as u8;
            t.option = Some((n, a.neg));
        }
    }
    Ok(())
}

fn apply_udp(m: &mut Match, a: &OptArg) -> VResult<()> {
    let Match::Udp(u) = m else {
        return fail("option not valid here");
    };
    if a.id == SPORT {
        u.sport = port(a)?
    } else {
        u.dport = port(a)?
    }
    Ok(())
}
