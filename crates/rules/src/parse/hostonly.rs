//! Host-only matches: `-m owner` (`libxt_owner.c`), `-m rpfilter` (`libxt_rpfilter.c`),
//! `-m cgroup` (`libxt_cgroup.c`, revision 1), `-m socket` (`libxt_socket.c`). They load as
//! iptables accepts and prints them; what they give for a forwarded packet (no local socket,
//! no route of this host's own) is worked out here once, as the kernel's match functions give
//! it for such a packet: owner `(match ^ invert) == 0`, cgroup and socket false, rpfilter
//! (no route back on a bridge) `--invert`. The hooks the kernel allows them in are checked with
//! the chain (`restore.rs`), as for `-m mac`.

use std::fmt::Write;

use super::registry::{Located, MatchExt, OptArg};
use crate::ast::*;
use crate::values::{fail, fail_hint, Fail, VResult};

fn new(kind: HostOnlyKind) -> Match {
    Match::HostOnly(HostOnlyMatch {
        kind,
        save: String::new(),
        // `iptables -L` names socket and rpfilter also without options
        list: match kind {
            HostOnlyKind::Socket | HostOnlyKind::Rpfilter => format!(" {}", kind.name()),
            _ => String::new(),
        },
        forwarded: false,
    })
}

// ---- owner ----
//
// iptables prints owner's options in a fixed order whatever the order given, so the options
// read so far are kept as tags (`;S!`, `;U0-100`, `;G!5-5`, `;P`) behind a NUL in `list`
// while the line is read, both texts re-rendered after each option; [`finish`] drops the
// tags once the line is read.

const SOCKET_EXISTS: u8 = 0;
const UID: u8 = 1;
const GID: u8 = 2;
const SUPPL: u8 = 3;

pub(super) const OWNER: MatchExt = MatchExt {
    name: "owner",
    family: None,
    opts: &[
        ("socket-exists", SOCKET_EXISTS, 0, true),
        ("uid-owner", UID, 1, true),
        ("gid-owner", GID, 1, true),
        ("suppl-groups", SUPPL, 0, false),
    ],
    exclusive: &[],
    new: || new(HostOnlyKind::Owner),
    apply: apply_owner,
    required: Some("--uid-owner, --gid-owner or --socket-exists"),
    proto: None,
    check: None,
};

/// A user or group name from the host's `/etc/passwd` / `/etc/group` (what iptables'
/// `getpwnam`/`getgrnam` read), or `None`.
fn lookup_id(name: &str, file: &str) -> Option<u32> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then_some(())?;
        f.next()?;
        f.next()?.parse().ok()
    })
}

/// `--uid-owner`/`--gid-owner`: a name, a number or a range `A-B` (at most 2^32 - 2).
fn id_range(s: &str, gid: bool) -> VResult<(u32, u32)> {
    let what = if gid { "group" } else { "user" };
    let num = |p: &str| super::stateless::strtoui(p, u32::MAX - 1);
    if let Some(v) = num(s) {
        return Ok((v, v));
    }
    if let Some((a, b)) = s.split_once('-') {
        if let (Some(a), Some(b)) = (num(a), num(b)) {
            if a <= b {
                return Ok((a, b));
            }
        }
    }
    let file = if gid { "/etc/group" } else { "/etc/passwd" };
    lookup_id(s, file).map(|v| (v, v)).ok_or_else(|| Fail {
        msg: format!("unknown {what} `{s}`"),
        hint: Some(format!(
            "expected a {what} name of this host, a number or a range A-B"
        )),
    })
}

/// The parsed owner options, kept in the match while the line is read.
#[derive(Default)]
struct Owner {
    socket: Option<bool>,
    uid: Option<(u32, u32, bool)>,
    gid: Option<(u32, u32, bool)>,
    suppl: bool,
}

fn owner_decode(s: &str) -> Owner {
    let mut o = Owner::default();
    for p in s.split(';').filter(|p| !p.is_empty()) {
        let (tag, rest) = p.split_at(1);
        let neg = rest.starts_with('!');
        let nums: Vec<u32> = rest
            .trim_start_matches('!')
            .split('-')
            .filter_map(|n| n.parse().ok())
            .collect();
        match tag {
            "S" => o.socket = Some(neg),
            "U" => o.uid = Some((nums[0], nums[1], neg)),
            "G" => o.gid = Some((nums[0], nums[1], neg)),
            _ => o.suppl = true,
        }
    }
    o
}

fn owner_render(m: &mut HostOnlyMatch, o: &Owner) {
    let mut save = String::new();
    let mut list = String::new();
    let bang = |n: bool| if n { " !" } else { "" };
    let ids = |lo: u32, hi: u32| {
        if lo == hi {
            format!("{lo}")
        } else {
            format!("{lo}-{hi}")
        }
    };
    let mut given = 0u8;
    let mut inverted = 0u8;
    if let Some(n) = o.socket {
        let _ = write!(save, "{} --socket-exists", bang(n));
        let _ = write!(list, "{} owner socket exists", bang(n));
        given |= 1;
        inverted |= u8::from(n);
    }
    if let Some((lo, hi, n)) = o.uid {
        let _ = write!(save, "{} --uid-owner {}", bang(n), ids(lo, hi));
        let _ = write!(list, "{} owner UID match {}", bang(n), ids(lo, hi));
        given |= 2;
        inverted |= u8::from(n) << 1;
    }
    if let Some((lo, hi, n)) = o.gid {
        let _ = write!(save, "{} --gid-owner {}", bang(n), ids(lo, hi));
        let _ = write!(list, "{} owner GID match {}", bang(n), ids(lo, hi));
        given |= 4;
        inverted |= u8::from(n) << 2;
    }
    if o.suppl {
        save.push_str(" --suppl-groups");
        list.push_str(" incl. suppl. groups");
    }
    m.save = save;
    m.list = list;
    // `owner_mt`: without a socket, `(info->match ^ info->invert) == 0`.
    m.forwarded = given == inverted;
}

/// The options read so far, as tags in a side string (kept in `list` behind a NUL while
/// reading; `owner_render` replaces both texts after each option).
fn owner_tags(m: &HostOnlyMatch) -> String {
    m.list
        .split_once('\0')
        .map(|(_, t)| t.to_string())
        .unwrap_or_default()
}

fn apply_owner(m: &mut Match, a: &OptArg) -> VResult<()> {
    let Match::HostOnly(h) = m else {
        return fail("option not valid here");
    };
    let mut tags = owner_tags(h);
    let o = owner_decode(&tags);
    let neg = if a.neg { "!" } else { "" };
    match a.id {
        SOCKET_EXISTS => tags.push_str(&format!(";S{neg}")),
        UID | GID => {
            let (lo, hi) = id_range(a.value, a.id == GID)?;
            let t = if a.id == UID { 'U' } else { 'G' };
            tags.push_str(&format!(";{t}{neg}{lo}-{hi}"));
        }
        _ => {
            if o.gid.is_none() {
                return fail_hint(
                    "`--suppl-groups` needs `--gid-owner` before it",
                    "write `--gid-owner GROUP --suppl-groups`",
                );
            }
            tags.push_str(";P");
        }
    }
    let o = owner_decode(&tags);
    owner_render(h, &o);
    h.list.push('\0');
    h.list.push_str(&tags);
    Ok(())
}

/// Drops the reading tags once the line is read (called from the driver's finish).
pub(super) fn finish(m: &mut Match) {
    if let Match::HostOnly(h) = m {
        if let Some(i) = h.list.find('\0') {
            h.list.truncate(i);
        }
    }
}

// ---- socket ----

const TRANSPARENT: u8 = 0;
const NOWILDCARD: u8 = 1;
const RESTORE_SKMARK: u8 = 2;

pub(super) const SOCKET: MatchExt = MatchExt {
    name: "socket",
    family: None,
    opts: &[
        ("transparent", TRANSPARENT, 0, false),
        ("nowildcard", NOWILDCARD, 0, false),
        ("restore-skmark", RESTORE_SKMARK, 0, false),
    ],
    exclusive: &[],
    new: || new(HostOnlyKind::Socket),
    apply: apply_flags,
    required: None,
    proto: None,
    check: None,
};

// ---- rpfilter ----

const LOOSE: u8 = 0;
const VALIDMARK: u8 = 1;
const ACCEPT_LOCAL: u8 = 2;
const INVERT: u8 = 3;

pub(super) const RPFILTER: MatchExt = MatchExt {
    name: "rpfilter",
    family: None,
    opts: &[
        ("loose", LOOSE, 0, false),
        ("validmark", VALIDMARK, 0, false),
        ("accept-local", ACCEPT_LOCAL, 0, false),
        ("invert", INVERT, 0, false),
    ],
    exclusive: &[],
    new: || new(HostOnlyKind::Rpfilter),
    apply: apply_flags,
    required: None,
    proto: None,
    check: None,
};

/// socket and rpfilter: flags without arguments, printed in a fixed order whatever the order
/// given (kept as a bit set in `forwarded`'s place until rendered).
fn apply_flags(m: &mut Match, a: &OptArg) -> VResult<()> {
    let Match::HostOnly(h) = m else {
        return fail("option not valid here");
    };
    let names: &[&str] = match h.kind {
        HostOnlyKind::Socket => &["transparent", "nowildcard", "restore-skmark"],
        _ => &["loose", "validmark", "accept-local", "invert"],
    };
    let mut bits: u8 = h
        .save
        .split(" --")
        .filter_map(|w| names.iter().position(|n| *n == w))
        .fold(0, |b, i| b | 1 << i);
    bits |= 1 << a.id;
    h.save.clear();
    h.list = format!(" {}", h.kind.name());
    for (i, n) in names.iter().enumerate() {
        if bits & (1 << i) != 0 {
            let _ = write!(h.save, " --{n}");
            if h.kind == HostOnlyKind::Socket {
                let _ = write!(h.list, " --{n}");
            } else {
                let _ = write!(h.list, " {n}");
            }
        }
    }
    // rpfilter finds no route back for a bridged packet: only `--invert` makes it match.
    h.forwarded = h.kind == HostOnlyKind::Rpfilter && bits & (1 << INVERT) != 0;
    Ok(())
}

// ---- cgroup ----

const PATH: u8 = 0;
const CLASSID: u8 = 1;

pub(super) const CGROUP: MatchExt = MatchExt {
    name: "cgroup",
    family: None,
    opts: &[("path", PATH, 1, true), ("cgroup", CLASSID, 1, true)],
    exclusive: &[],
    new: || new(HostOnlyKind::Cgroup),
    apply: apply_cgroup,
    required: Some("--path or --cgroup"),
    proto: None,
    check: Some(check_cgroup),
};

fn apply_cgroup(m: &mut Match, a: &OptArg) -> VResult<()> {
    let Match::HostOnly(h) = m else {
        return fail("option not valid here");
    };
    let bang = if a.neg { " !" } else { "" };
    if a.id == PATH {
        if h.save.contains("--path") {
            return fail("`--path` can only be given once");
        }
        let mut s = String::new();
        crate::print::save_string(&mut s, a.value);
        // --path is printed before --cgroup
        h.save = format!("{bang} --path{s}{}", h.save);
        h.list = format!(
            " cgroup {}{}{}",
            if a.neg { "! " } else { "" },
            a.value,
            h.list.trim_start_matches(" cgroup")
        );
    } else {
        if h.save.contains("--cgroup") {
            return fail("`--cgroup` can only be given once");
        }
        let v = super::stateless::strtoui(a.value, u32::MAX).ok_or_else(|| Fail {
            msg: format!("invalid cgroup classid `{}`", a.value),
            hint: Some("expected a number".into()),
        })?;
        let _ = write!(h.save, "{bang} --cgroup {v}");
        if h.list.is_empty() {
            h.list.push_str(" cgroup");
        }
        let _ = write!(h.list, " {}{v}", if a.neg { "! " } else { "" });
    }
    // `cgroup_mt`: a packet without a full socket never matches.
    h.forwarded = false;
    Ok(())
}

fn check_cgroup(_: &Match) -> Result<(), Located> {
    Ok(())
}
