//! `-j LOG` and `-j NFLOG` (`libxt_LOG.c`, `libxt_NFLOG.c`): the two logging targets, any
//! table; prefixes are truncated to the kernel's sizes as iptables does.

use crate::ast::*;
use crate::parse::registry::{self, OptArg, TargetExt};
use crate::parse::truncate_bytes;
use crate::values::{self, fail, VResult};

const LOG_LEVEL: u8 = 0;
const LOG_PREFIX: u8 = 1;
const LOG_TCP_SEQ: u8 = 2;
const LOG_TCP_OPT: u8 = 3;
const LOG_IP_OPT: u8 = 4;
const LOG_UID: u8 = 5;
const LOG_MAC: u8 = 6;

pub(in crate::parse) const LOG: TargetExt = TargetExt {
    name: "LOG",
    opts: &[
        ("log-level", LOG_LEVEL, 1, false),
        ("log-prefix", LOG_PREFIX, 1, false),
        ("log-tcp-sequence", LOG_TCP_SEQ, 0, false),
        ("log-tcp-options", LOG_TCP_OPT, 0, false),
        ("log-ip-options", LOG_IP_OPT, 0, false),
        ("log-uid", LOG_UID, 0, false),
        ("log-macdecode", LOG_MAC, 0, false),
    ],
    table: None,
    family: None,
    new: |_| {
        Target::Log(LogTarget {
            level: 4,
            prefix: String::new(),
            tcp_sequence: false,
            tcp_options: false,
            ip_options: false,
            uid: false,
            macdecode: false,
        })
    },
    apply: apply_log,
    finish: registry::as_given,
};

const NFLOG_GROUP: u8 = 0;
const NFLOG_PREFIX: u8 = 1;
const NFLOG_RANGE: u8 = 2;
const NFLOG_SIZE: u8 = 3;
const NFLOG_THRESHOLD: u8 = 4;

pub(in crate::parse) const NFLOG: TargetExt = TargetExt {
    name: "NFLOG",
    opts: &[
        ("nflog-group", NFLOG_GROUP, 1, false),
        ("nflog-prefix", NFLOG_PREFIX, 1, false),
        ("nflog-range", NFLOG_RANGE, 1, false),
        ("nflog-size", NFLOG_SIZE, 1, false),
        ("nflog-threshold", NFLOG_THRESHOLD, 1, false),
    ],
    table: None,
    family: None,
    new: |_| {
        Target::Nflog(NflogTarget {
            group: 0,
            prefix: String::new(),
            size: None,
            range: 0,
            threshold: 0,
        })
    },
    apply: apply_nflog,
    finish: registry::as_given,
};

/// A `--log-prefix`/`--nflog-prefix` value, truncated to `max` bytes.
fn prefix(s: &str, max: usize) -> VResult<String> {
    if s.is_empty() {
        return fail("the prefix must not be empty");
    }
    if s.contains('\n') {
        return fail("newlines are not allowed in a log prefix");
    }
    let mut s = s.to_string();
    truncate_bytes(&mut s, max);
    Ok(s)
}

fn apply_log(t: &mut Target, a: &OptArg) -> VResult<()> {
    let Target::Log(log) = t else {
        return fail("option not valid here");
    };
    match a.id {
        LOG_LEVEL => log.level = values::log_level(a.value)?,
        LOG_PREFIX => log.prefix = prefix(a.value, 29)?,
        LOG_TCP_SEQ => log.tcp_sequence = true,
        LOG_TCP_OPT => log.tcp_options = true,
        LOG_IP_OPT => log.ip_options = true,
        LOG_UID => log.uid = true,
        _ => log.macdecode = true,
    }
    Ok(())
}

fn apply_nflog(t: &mut Target, a: &OptArg) -> VResult<()> {
    let Target::Nflog(nflog) = t else {
        return fail("option not valid here");
    };
    match a.id {
        NFLOG_GROUP => nflog.group = values::number(a.value, 65535, "NFLOG group")? as u16,
        NFLOG_PREFIX => nflog.prefix = prefix(a.value, 63)?,
        NFLOG_RANGE => {
            nflog.range = values::number(a.value, u32::MAX as u64, "NFLOG range")? as u32
        }
        NFLOG_SIZE => {
            nflog.size = Some(values::number(a.value, u32::MAX as u64, "NFLOG size")? as u32)
        }
        _ => nflog.threshold = values::number(a.value, 65535, "NFLOG threshold")? as u16,
    }
    Ok(())
}
