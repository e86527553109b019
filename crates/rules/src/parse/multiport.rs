//! `-m multiport` (`libxt_multiport.c`): up to 15 ports or ranges, one direction per match,
//! for any of the protocols with ports.

use super::registry::{MatchExt, OptArg};
use crate::ast::*;
use crate::values::{self, fail, fail_hint, VResult};

const SPORTS: u8 = 0;
const DPORTS: u8 = 1;
const PORTS: u8 = 2;

pub(super) const MULTIPORT: MatchExt = MatchExt {
    name: "multiport",
    family: None,
    opts: &[
        ("source-ports", SPORTS, 1, true),
        ("sports", SPORTS, 1, true),
        ("destination-ports", DPORTS, 1, true),
        ("dports", DPORTS, 1, true),
        ("ports", PORTS, 1, true),
    ],
    exclusive: &[],
    new: || {
        Match::Multiport(MultiportMatch {
            dir: MultiportDir::Either,
            ports: Vec::new(),
            negated: false,
        })
    },
    apply,
    required: Some("--sports, --dports or --ports"),
    proto: None,
    check: None,
};

fn apply(m: &mut Match, a: &OptArg) -> VResult<()> {
    let Match::Multiport(mp) = m else {
        return fail("option not valid here");
    };
    if !mp.ports.is_empty() {
        return fail_hint(
            "`-m multiport` takes only one of --sports, --dports, --ports",
            "use a second `-m multiport`",
        );
    }
    // The service names of which protocol the ports may be given as.
    let pname = match a.proto {
        Some(ProtoMatch {
            proto: values::PROTO_TCP,
            negated: false,
        }) => "tcp",
        Some(ProtoMatch {
            proto: values::PROTO_UDP | values::PROTO_UDPLITE,
            negated: false,
        }) => "udp",
        Some(ProtoMatch {
            proto: values::PROTO_SCTP | values::PROTO_DCCP,
            negated: false,
        }) => "tcp",
        _ => {
            return fail_hint(
                "multiport needs `-p tcp`, `-p udp`, `-p udplite`, `-p sctp` or `-p dccp`",
                "put `-p` before `-m multiport`'s ports",
            )
        }
    };
    let mut slots = 0;
    let mut ports = Vec::new();
    for part in a.value.split(',') {
        let r = values::port_range(part, pname)?;
        slots += if r.lo == r.hi && !part.contains(':') {
            1
        } else {
            2
        };
        ports.push(r);
    }
    if slots > 15 {
        return fail_hint(
            "too many ports for `-m multiport`",
            "at most 15 ports, a range counts as two",
        );
    }
    mp.ports = ports;
    mp.negated = a.neg;
    mp.dir = match a.id {
        SPORTS => MultiportDir::Source,
        DPORTS => MultiportDir::Destination,
        _ => MultiportDir::Either,
    };
    Ok(())
}
