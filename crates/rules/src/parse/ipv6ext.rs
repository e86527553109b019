//! The IPv6 extension header matches of ip6tables: `-m rt` (`libip6t_rt.c`), the routing
//! header's type, Segments Left, length and type 0 addresses. Found by the kernel anywhere in
//! the extension header chain, so no `-p` is needed.

use std::net::Ipv6Addr;

use super::proto::{uint32, uint32_range};
use super::registry::{MatchExt, OptArg};
use crate::ast::*;
use crate::values::{fail, fail_hint, VResult};

const RT_TYPE: u8 = 0;
const RT_SEGSLEFT: u8 = 1;
const RT_LEN: u8 = 2;
const RT_RES: u8 = 3;
const RT_ADDRS: u8 = 4;
const RT_NOT_STRICT: u8 = 5;

pub(super) const RT: MatchExt = MatchExt {
    name: "rt",
    family: Some(Family::Ipv6),
    opts: &[
        ("rt-type", RT_TYPE, 1, true),
        ("rt-segsleft", RT_SEGSLEFT, 1, true),
        ("rt-len", RT_LEN, 1, true),
        ("rt-0-res", RT_RES, 0, false),
        ("rt-0-addrs", RT_ADDRS, 1, false),
        ("rt-0-not-strict", RT_NOT_STRICT, 0, false),
    ],
    exclusive: &[],
    new: || Match::Rt(RtMatch::default()),
    apply,
    required: None,
    proto: None,
    check: None,
};

fn apply(m: &mut Match, a: &OptArg) -> VResult<()> {
    let Match::Rt(r) = m else {
        return fail("option not valid here");
    };
    // `rt_parse`: the type 0 options need `--rt-type 0` (not negated) given before them.
    let type0 = |opt: &str| -> VResult<()> {
        if r.rt_type != Some((0, false)) {
            return fail_hint(
                format!("`--rt-type 0` required before `--{opt}`"),
                "the reserved field and the address list exist in type 0 headers only",
            );
        }
        Ok(())
    };
    match a.id {
        RT_TYPE => r.rt_type = Some((uint32(a.value, "routing header type")?, a.neg)),
        RT_SEGSLEFT => r.segsleft = uint32_range(a, "rt-segsleft", "Segments Left")?,
        RT_LEN => r.len = Some((uint32(a.value, "routing header length")?, a.neg)),
        RT_RES => {
            type0("rt-0-res")?;
            r.res = true;
        }
        RT_ADDRS => {
            type0("rt-0-addrs")?;
            // a repeated list keeps a `--rt-0-not-strict` given before it
            let not_strict = r.addrs.as_ref().is_some_and(|a| a.1);
            r.addrs = Some((addresses(a.value)?, not_strict));
        }
        _ => match &mut r.addrs {
            Some((_, not_strict)) => *not_strict = true,
            None => {
                return fail_hint(
                    "`--rt-0-addrs` required before `--rt-0-not-strict`",
                    "give the address list first",
                )
            }
        },
    }
    Ok(())
}

/// `parse_addresses`: a comma-separated list of at most [`RT_HOPS`] numeric IPv6 addresses.
fn addresses(s: &str) -> VResult<Vec<Ipv6Addr>> {
    let mut out = Vec::new();
    for part in s.split(',') {
        if out.len() == RT_HOPS {
            return fail_hint(
                "too many addresses specified",
                format!("`--rt-0-addrs` takes at most {RT_HOPS}"),
            );
        }
        match part.parse::<Ipv6Addr>() {
            Ok(a) => out.push(a),
            Err(_) => {
                return fail_hint(
                    format!("bad address: {part}"),
                    "expected a numeric IPv6 address",
                )
            }
        }
    }
    Ok(out)
}
