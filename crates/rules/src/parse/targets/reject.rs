//! `-j REJECT [--reject-with TYPE]` (`libipt_REJECT.c`, `libip6t_REJECT.c`): filter table only;
//! `tcp-reset` needs `-p tcp`.

use crate::ast::*;
use crate::parse::registry::{OptArg, TargetExt};
use crate::values::{self, fail, fail_hint, VResult};

const REJECT_WITH: u8 = 0;

pub(in crate::parse) const REJECT: TargetExt = TargetExt {
    name: "REJECT",
    opts: &[("reject-with", REJECT_WITH, 1, false)],
    table: Some(TableName::Filter),
    family: None,
    // iptables' default, filled in so that the AST says what the rule does.
    new: |family| {
        Target::Reject(match family {
            Family::Ipv4 => RejectWith::IcmpPortUnreachable,
            Family::Ipv6 => RejectWith::Icmp6PortUnreachable,
        })
    },
    apply,
    finish,
};

fn apply(t: &mut Target, a: &OptArg) -> VResult<()> {
    let Target::Reject(with) = t else {
        return fail("option not valid here");
    };
    *with = values::reject_with(a.value, a.family)?;
    Ok(())
}

fn finish(t: Target, proto: Option<ProtoMatch>, _: &[u8]) -> VResult<Target> {
    let tcp = Some(ProtoMatch {
        proto: values::PROTO_TCP,
        negated: false,
    });
    if t == Target::Reject(RejectWith::TcpReset) && proto != tcp {
        return fail_hint(
            "`--reject-with tcp-reset` needs `-p tcp`",
            "add `-p tcp` to the rule, or reject with an ICMP type",
        );
    }
    Ok(t)
}
