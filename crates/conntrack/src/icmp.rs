//! ICMP and ICMPv6 type tables, as `nf_conntrack_proto_icmp.c` and `..._icmpv6.c`.

use crate::tuple::Family;

/// Request <-> reply type pairs; only these have an inverse tuple.
pub(crate) fn invert_type(family: Family, ty: u8) -> Option<u8> {
    match family {
        Family::V4 => match ty {
            8 => Some(0),
            0 => Some(8),
            13 => Some(14),
            14 => Some(13),
            15 => Some(16),
            16 => Some(15),
            17 => Some(18),
            18 => Some(17),
            _ => None,
        },
        Family::V6 => match ty {
            128 => Some(129),
            129 => Some(128),
            139 => Some(140),
            140 => Some(139),
            _ => None,
        },
    }
}

/// Types that may create an entry (`valid_new`): echo, timestamp, information and address
/// mask requests; ICMPv6 echo request and node information query.
pub(crate) fn is_request(family: Family, ty: u8) -> bool {
    match family {
        Family::V4 => matches!(ty, 8 | 13 | 15 | 17),
        Family::V6 => matches!(ty, 128 | 139),
    }
}

/// Error messages whose payload embeds the offending packet's header.
pub fn is_error(family: Family, ty: u8) -> bool {
    match family {
        // destination unreachable, source quench, redirect, time exceeded, parameter problem
        Family::V4 => matches!(ty, 3 | 4 | 5 | 11 | 12),
        // netfilter treats every type below 128 as an error (1-4 are the defined ones)
        Family::V6 => ty < 128,
    }
}

/// MLD messages are never tracked (`noct_valid_new` in nf_conntrack_proto_icmpv6.c):
/// listener query, report, done and MLDv2 report.
pub(crate) fn is_untracked_v6(ty: u8) -> bool {
    matches!(ty, 130 | 131 | 132 | 143)
}

/// Errors that say the destination cannot be reached at all (the seed's "network unreachable"
/// and "network prohibited"); "fragmentation needed" (type 3 code 4) is path MTU discovery and
/// does not end a connection.
pub(crate) fn is_unreachable(family: Family, ty: u8, code: u8) -> bool {
    match family {
        Family::V4 => ty == 3 && code != 4,
        Family::V6 => ty == 1,
    }
}
