//! The AST of the stateful and conntrack matches `-m time`, `-m hashlimit`, `-m connlimit`,
//! `-m connbytes` and `-m conntrack`, in the kernel's own units (`xt_time_info`,
//! `xt_hashlimit_mtinfo3`, `xt_connlimit_info`, `xt_connbytes_info`, `xt_conntrack_mtinfo3`),
//! so that printing and the data plane read one value and never re-interpret text.

use std::net::IpAddr;

use crate::ast::{Family, PortRange, StateMatch};

/// `XT_TIME_ALL_WEEKDAYS`: bits 1 (Monday) to 7 (Sunday).
pub const TIME_ALL_WEEKDAYS: u8 = 0xfe;
/// `XT_TIME_ALL_MONTHDAYS`: bits 1 to 31.
pub const TIME_ALL_MONTHDAYS: u32 = 0xffff_fffe;
/// `XT_TIME_MAX_DAYTIME`: the last second of a day.
pub const TIME_MAX_DAYTIME: u32 = 24 * 60 * 60 - 1;
/// `--datestop`'s default (`INT_MAX`: 2038-01-19T03:14:07).
pub const TIME_DATE_STOP_DEFAULT: u32 = i32::MAX as u32;

/// `-m time`: seconds since midnight for the daytimes, seconds since the epoch (UTC) for the
/// dates, bit sets for the days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeMatch {
    pub date_start: u32,
    pub date_stop: u32,
    pub daytime_start: u32,
    pub daytime_stop: u32,
    /// Bit `1 << d` for day `d` of the month (1-31); bit 0 can be set (`--monthdays 0`) and
    /// never matches.
    pub monthdays: u32,
    /// Bit `1 << d` for weekday `d` (1 = Monday ... 7 = Sunday).
    pub weekdays: u8,
    /// `--kerneltz` / `--localtz` (`XT_TIME_LOCAL_TZ`).
    pub kerneltz: bool,
    /// `--contiguous` (`XT_TIME_CONTIGUOUS`).
    pub contiguous: bool,
}

impl TimeMatch {
    /// `-m time` with no option: every day, all day, until 2038, UTC.
    pub const DEFAULT: TimeMatch = TimeMatch {
        date_start: 0,
        date_stop: TIME_DATE_STOP_DEFAULT,
        daytime_start: 0,
        daytime_stop: TIME_MAX_DAYTIME,
        monthdays: TIME_ALL_MONTHDAYS,
        weekdays: TIME_ALL_WEEKDAYS,
        kerneltz: false,
        contiguous: false,
    };
}

/// `--hashlimit-mode` bits (`XT_HASHLIMIT_HASH_*`) and the other mode flags.
pub mod hashlimit_mode {
    pub const DSTIP: u32 = 0x01;
    pub const DSTPORT: u32 = 0x02;
    pub const SRCIP: u32 = 0x04;
    pub const SRCPORT: u32 = 0x08;
    /// `--hashlimit-above` (or `! --hashlimit-upto`).
    pub const INVERT: u32 = 0x10;
    /// The rate is in bytes (`b/s`).
    pub const BYTES: u32 = 0x20;
    /// `--hashlimit-rate-match`.
    pub const RATE_MATCH: u32 = 0x40;
    pub const HASH: u32 = DSTIP | DSTPORT | SRCIP | SRCPORT;
}

/// `-m hashlimit` as `xt_hashlimit_mtinfo3` holds it (revision 3, what iptables 1.8.9 loads).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HashlimitMatch {
    /// [`hashlimit_mode`] bits.
    pub mode: u32,
    /// Packets: `XT_HASHLIMIT_SCALE_v2` (1e6) times seconds per packet (divided by the
    /// interval with `--hashlimit-rate-match`). Bytes: the kernel's cost of 16 bytes.
    pub avg: u64,
    /// Packets: the burst. Bytes: the burst in multiples of the rate (0: none).
    pub burst: u64,
    /// `--hashlimit-htable-size`, `-max` (0: the kernel's default), `-gcinterval` and
    /// `-expire` (ms).
    pub size: u32,
    pub max: u32,
    pub gc_interval: u32,
    pub expire: u32,
    /// Prefix lengths the addresses are grouped by.
    pub srcmask: u8,
    pub dstmask: u8,
    /// `--hashlimit-rate-interval` in seconds (0 without `--hashlimit-rate-match`).
    pub interval: u32,
    /// `--hashlimit-name`: rules naming one table share it (per family, as the kernel does).
    pub name: String,
    /// The ruleset's family: the default masks (and what is printed) depend on it.
    pub family: Family,
}

/// `-m connlimit`: connections in the table whose masked source (or destination) address is
/// the packet's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnlimitMatch {
    /// The limit (`None` only while the line is read: the check refuses a match without one).
    pub limit: Option<u32>,
    /// `--connlimit-above` (true) or `--connlimit-upto` (false), after `!`.
    pub above: bool,
    /// Prefix length of `--connlimit-mask`.
    pub mask: u8,
    /// `--connlimit-daddr`.
    pub daddr: bool,
}

/// `--connbytes-dir`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnbytesDir {
    Original,
    Reply,
    Both,
}

/// `--connbytes-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnbytesMode {
    Packets,
    Bytes,
    Avgpkt,
}

/// `-m connbytes`: the connection's counter in `[from, to]` (`to == u64::MAX`: no end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnbytesMatch {
    pub from: u64,
    pub to: u64,
    /// `!`: stored as the kernel does, by swapping `from` and `to`.
    pub dir: Option<ConnbytesDir>,
    pub mode: Option<ConnbytesMode>,
}

/// `--ctstatus` bits (`IPS_EXPECTED` ... `IPS_CONFIRMED`).
pub mod ct_status {
    pub const EXPECTED: u16 = 1 << 0;
    pub const SEEN_REPLY: u16 = 1 << 1;
    pub const ASSURED: u16 = 1 << 2;
    pub const CONFIRMED: u16 = 1 << 3;
    /// Names in the order iptables prints them.
    pub const NAMES: [(&str, u16); 4] = [
        ("EXPECTED", EXPECTED),
        ("SEEN_REPLY", SEEN_REPLY),
        ("ASSURED", ASSURED),
        ("CONFIRMED", CONFIRMED),
    ];
}

/// An address of `-m conntrack` (`--ctorigsrc` ...): iptables keeps the host bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CtAddr {
    pub addr: IpAddr,
    /// Prefix length (a non-contiguous dotted mask loads as all ones, as iptables does).
    pub plen: u8,
    pub negated: bool,
}

/// A port range of `-m conntrack` (`lo > hi` is kept and never matches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CtPorts {
    pub range: PortRange,
    pub negated: bool,
}

/// `-m conntrack`: every option given must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ConntrackMatch {
    pub state: Option<StateMatch>,
    /// `--ctproto` (0 for `all`), negated.
    pub proto: Option<(u8, bool)>,
    pub orig_src: Option<CtAddr>,
    pub orig_dst: Option<CtAddr>,
    pub repl_src: Option<CtAddr>,
    pub repl_dst: Option<CtAddr>,
    pub orig_src_port: Option<CtPorts>,
    pub orig_dst_port: Option<CtPorts>,
    pub repl_src_port: Option<CtPorts>,
    pub repl_dst_port: Option<CtPorts>,
    /// `--ctstatus` bits of [`ct_status`], negated.
    pub status: Option<(u16, bool)>,
    /// `--ctexpire lo:hi` seconds, negated.
    pub expire: Option<(u32, u32, bool)>,
    /// `--ctdir`: `Some(true)` for REPLY.
    pub dir_reply: Option<bool>,
}

impl ConntrackMatch {
    /// Only `--ctstate` is given.
    pub fn state_only(&self) -> Option<StateMatch> {
        let rest = ConntrackMatch {
            state: None,
            ..*self
        };
        if rest == ConntrackMatch::default() {
            self.state
        } else {
            None
        }
    }
}
