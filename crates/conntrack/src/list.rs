//! Listing, counting and deleting in the manner of `conntrack -L/-C/-D/-F`.

use core::fmt::{self, Write};
use core::net::IpAddr;

use crate::table::{EntryId, NatKind, Shard};
use crate::tcp::TcpState;
use crate::tuple::{Family, Tuple, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};

/// A copy of one entry, taken by the worker that owns it, for the control thread to print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub id: EntryId,
    pub family: Family,
    pub proto: u8,
    pub orig: Tuple,
    pub reply: Tuple,
    pub tcp_state: Option<TcpState>,
    pub seen_reply: bool,
    pub assured: bool,
    pub mark: u32,
    /// Deadline on the same clock as the `now` given to [`Shard::snapshot`].
    pub expires_at: u64,
    pub nat: NatKind,
}

/// Selection as `conntrack`'s options: `-f`, `-p`, `-s`, `-d`, `-r`, `-q`, `--sport`,
/// `--dport`, `--state`, `-m` (mark). Unset fields match everything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub family: Option<Family>,
    pub proto: Option<u8>,
    /// `-s`: source of the original direction.
    pub src: Option<IpAddr>,
    /// `-d`: destination of the original direction.
    pub dst: Option<IpAddr>,
    /// `-r`: source of the reply direction.
    pub reply_src: Option<IpAddr>,
    /// `-q`: destination of the reply direction.
    pub reply_dst: Option<IpAddr>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub tcp_state: Option<TcpState>,
    pub mark: Option<u32>,
}

fn has_ports(proto: u8) -> bool {
    matches!(proto, PROTO_TCP | PROTO_UDP | 33 | 132 | 136)
}

impl Filter {
    pub fn matches(&self, s: &Snapshot) -> bool {
        let addr = |want: Option<IpAddr>, t: &Tuple, src: bool| match want {
            None => true,
            Some(a) => {
                let fam_ok = a.is_ipv4() == (s.family == Family::V4);
                let got = if src {
                    t.src_ip(s.family)
                } else {
                    t.dst_ip(s.family)
                };
                fam_ok && got == a
            }
        };
        self.family.is_none_or(|f| f == s.family)
            && self.proto.is_none_or(|p| p == s.proto)
            && addr(self.src, &s.orig, true)
            && addr(self.dst, &s.orig, false)
            && addr(self.reply_src, &s.reply, true)
            && addr(self.reply_dst, &s.reply, false)
            && self
                .sport
                .is_none_or(|p| has_ports(s.proto) && s.orig.sport == p)
            && self
                .dport
                .is_none_or(|p| has_ports(s.proto) && s.orig.dport == p)
            && self.tcp_state.is_none_or(|st| s.tcp_state == Some(st))
            && self.mark.is_none_or(|m| m == s.mark)
    }
}

fn proto_name(proto: u8) -> &'static str {
    match proto {
        PROTO_TCP => "tcp",
        PROTO_UDP => "udp",
        PROTO_ICMP => "icmp",
        PROTO_ICMPV6 => "icmpv6",
        136 => "udplite",
        132 => "sctp",
        47 => "gre",
        33 => "dccp",
        _ => "unknown",
    }
}

fn write_tuple(out: &mut impl Write, family: Family, proto: u8, t: &Tuple) -> fmt::Result {
    write!(out, "src={} dst={} ", t.src_ip(family), t.dst_ip(family))?;
    match proto {
        PROTO_ICMP | PROTO_ICMPV6 => write!(
            out,
            "type={} code={} id={} ",
            t.icmp_type(),
            t.icmp_code(),
            t.icmp_id()
        ),
        p if has_ports(p) => write!(out, "sport={} dport={} ", t.sport, t.dport),
        _ => Ok(()),
    }
}

/// One line as `conntrack -L` prints it (without the newline), e.g.
/// `icmp     1 25 src=198.18.0.1 dst=198.18.0.2 type=8 code=0 id=4711 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 type=0 code=0 id=4711 mark=0 use=1`.
pub fn format_entry(out: &mut impl Write, s: &Snapshot, now: u64) -> fmt::Result {
    let secs = s.expires_at.saturating_sub(now) / 1_000_000_000;
    write!(out, "{:<8} {} {} ", proto_name(s.proto), s.proto, secs)?;
    if let Some(st) = s.tcp_state {
        write!(out, "{} ", st.name())?;
    }
    write_tuple(out, s.family, s.proto, &s.orig)?;
    if !s.seen_reply {
        out.write_str("[UNREPLIED] ")?;
    }
    write_tuple(out, s.family, s.proto, &s.reply)?;
    if s.assured {
        out.write_str("[ASSURED] ")?;
    }
    write!(out, "mark={} use=1", s.mark)
}

/// All lines, each ending in a newline, as `conntrack -L` writes them to stdout.
pub fn write_listing(out: &mut impl Write, snaps: &[Snapshot], now: u64) -> fmt::Result {
    for s in snaps {
        format_entry(out, s, now)?;
        out.write_char('\n')?;
    }
    Ok(())
}

/// The line conntrack-tools 1.4.7 writes to stderr after a listing.
pub fn listing_summary(entries: usize) -> String {
    format!("conntrack v1.4.7 (conntrack-tools): {entries} flow entries have been shown.")
}

impl Shard {
    /// Copies of the live entries that match `filter` (control path: appends to `out`).
    pub fn snapshot(&self, filter: &Filter, now: u64, out: &mut Vec<Snapshot>) {
        for idx in 0..self.slots() {
            if let Some(s) = self.snapshot_of(idx, now) {
                if filter.matches(&s) {
                    out.push(s);
                }
            }
        }
    }

    /// [`Shard::snapshot`] of the slots `from..from + slots` only, so a worker can serve a
    /// listing of a large table a little per burst. Returns where to continue, `None` when the
    /// whole table has been visited.
    pub fn snapshot_chunk(
        &self,
        filter: &Filter,
        now: u64,
        from: u32,
        slots: u32,
        out: &mut Vec<Snapshot>,
    ) -> Option<u32> {
        let end = from.saturating_add(slots).min(self.slots());
        for idx in from..end {
            if let Some(s) = self.snapshot_of(idx, now) {
                if filter.matches(&s) {
                    out.push(s);
                }
            }
        }
        (end < self.slots()).then_some(end)
    }

    /// Live entries matching `filter` (`conntrack -C` with the default filter; [`Shard::len`]
    /// is the O(1) answer when expired-but-unreaped entries may be counted).
    pub fn count(&self, filter: &Filter, now: u64) -> usize {
        (0..self.slots())
            .filter_map(|i| self.snapshot_of(i, now))
            .filter(|s| filter.matches(s))
            .count()
    }

    /// Delete the entries matching `filter` (`conntrack -D`); returns how many.
    pub fn delete(&mut self, filter: &Filter, now: u64) -> usize {
        let mut n = 0;
        for idx in 0..self.slots() {
            if let Some(s) = self.snapshot_of(idx, now) {
                if filter.matches(&s) {
                    self.remove(s.id);
                    n += 1;
                }
            }
        }
        n
    }

    /// Delete every entry (`conntrack -F`); returns how many.
    pub fn flush(&mut self, now: u64) -> usize {
        self.expire(now);
        self.delete(&Filter::default(), now)
    }
}
