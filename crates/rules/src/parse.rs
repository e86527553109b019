//! Command lines (`-A INPUT -p tcp --dport 22 -j ACCEPT`) and `iptables-restore` files.
//!
//! Options are resolved the way iptables' getopt does: exact long name, else a unique prefix
//! among the generic options and those of the matches/target loaded so far; an unknown option
//! after `-p tcp|udp|icmp|ipv6-icmp` loads that protocol's match implicitly and is retried.

use crate::ast::*;
use crate::lex::Tok;
use crate::values::{self, fail, fail_hint, Fail, VResult};

/// A positioned error before the file name is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Diag {
    pub line: u32,
    pub col: u32,
    pub msg: String,
    pub hint: Option<String>,
}

impl Diag {
    pub(crate) fn at(line: u32, col: u32, f: Fail) -> Diag {
        Diag {
            line,
            col,
            msg: f.msg,
            hint: f.hint,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Generic,
    Match(usize),
    Target,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum O {
    // commands
    Append,
    Insert,
    Delete,
    Replace,
    NewChain,
    DeleteChain,
    Policy,
    Flush,
    Zero,
    Rename,
    List,
    ListRules,
    Check,
    // generic
    Proto,
    Src,
    Dst,
    InIf,
    OutIf,
    Frag,
    Jump,
    Goto,
    MatchMod,
    Table,
    Counters,
    Verbose,
    Numeric,
    Exact,
    LineNumbers,
    Wait,
    WaitInterval,
    Ipv4,
    Ipv6,
    Unsupported,
    // matches
    Sport,
    Dport,
    Syn,
    TcpFlags,
    TcpOption,
    IcmpType,
    Icmp6Type,
    MpSports,
    MpDports,
    MpPorts,
    State,
    CtState,
    SrcRange,
    DstRange,
    MacSource,
    Limit,
    LimitBurst,
    Length,
    TtlEq,
    TtlLt,
    TtlGt,
    Comment,
    // targets
    RejectWith,
    LogLevel,
    LogPrefix,
    LogTcpSeq,
    LogTcpOpt,
    LogIpOpt,
    LogUid,
    LogMac,
    NflogGroup,
    NflogPrefix,
    NflogRange,
    NflogSize,
    NflogThreshold,
    ToSource,
    ToDestination,
    ToPorts,
    Random,
    RandomFully,
    Persistent,
    Notrack,
}

/// (long name, id, number of arguments, may be preceded by `!`).
type OptSpec = (&'static str, O, u8, bool);

const GENERIC: &[OptSpec] = &[
    ("append", O::Append, 1, false),
    ("delete", O::Delete, 1, false),
    ("check", O::Check, 1, false),
    ("insert", O::Insert, 1, false),
    ("replace", O::Replace, 1, false),
    ("list", O::List, 0, false),
    ("list-rules", O::ListRules, 0, false),
    ("flush", O::Flush, 0, false),
    ("zero", O::Zero, 0, false),
    ("new-chain", O::NewChain, 1, false),
    ("delete-chain", O::DeleteChain, 0, false),
    ("rename-chain", O::Rename, 1, false),
    ("policy", O::Policy, 1, false),
    ("source", O::Src, 1, true),
    ("destination", O::Dst, 1, true),
    ("src", O::Src, 1, true),
    ("dst", O::Dst, 1, true),
    ("protocol", O::Proto, 1, true),
    ("in-interface", O::InIf, 1, true),
    ("jump", O::Jump, 1, false),
    ("table", O::Table, 1, false),
    ("match", O::MatchMod, 1, false),
    ("numeric", O::Numeric, 0, false),
    ("out-interface", O::OutIf, 1, true),
    ("verbose", O::Verbose, 0, false),
    ("wait", O::Wait, 0, false),
    ("wait-interval", O::WaitInterval, 1, false),
    ("exact", O::Exact, 0, false),
    ("fragments", O::Frag, 0, true),
    ("version", O::Unsupported, 0, false),
    ("help", O::Unsupported, 0, false),
    ("line-numbers", O::LineNumbers, 0, false),
    ("modprobe", O::Unsupported, 1, false),
    ("set-counters", O::Counters, 2, false),
    ("goto", O::Goto, 1, false),
    ("ipv4", O::Ipv4, 0, false),
    ("ipv6", O::Ipv6, 0, false),
];

fn short_opt(c: char) -> Option<O> {
    Some(match c {
        'A' => O::Append,
        'D' => O::Delete,
        'C' => O::Check,
        'I' => O::Insert,
        'R' => O::Replace,
        'L' => O::List,
        'S' => O::ListRules,
        'F' => O::Flush,
        'Z' => O::Zero,
        'N' => O::NewChain,
        'X' => O::DeleteChain,
        'E' => O::Rename,
        'P' => O::Policy,
        's' => O::Src,
        'd' => O::Dst,
        'p' => O::Proto,
        'i' => O::InIf,
        'o' => O::OutIf,
        'j' => O::Jump,
        'g' => O::Goto,
        't' => O::Table,
        'm' => O::MatchMod,
        'n' => O::Numeric,
        'v' => O::Verbose,
        'w' => O::Wait,
        'W' => O::WaitInterval,
        'x' => O::Exact,
        'f' => O::Frag,
        'c' => O::Counters,
        '4' => O::Ipv4,
        '6' => O::Ipv6,
        _ => return None,
    })
}

fn match_opts(name: &str) -> &'static [OptSpec] {
    match name {
        "tcp" => &[
            ("source-port", O::Sport, 1, true),
            ("sport", O::Sport, 1, true),
            ("destination-port", O::Dport, 1, true),
            ("dport", O::Dport, 1, true),
            ("syn", O::Syn, 0, true),
            ("tcp-flags", O::TcpFlags, 2, true),
            ("tcp-option", O::TcpOption, 1, true),
        ],
        "udp" => &[
            ("source-port", O::Sport, 1, true),
            ("sport", O::Sport, 1, true),
            ("destination-port", O::Dport, 1, true),
            ("dport", O::Dport, 1, true),
        ],
        "icmp" => &[("icmp-type", O::IcmpType, 1, true)],
        "icmp6" => &[("icmpv6-type", O::Icmp6Type, 1, true)],
        "multiport" => &[
            ("source-ports", O::MpSports, 1, true),
            ("sports", O::MpSports, 1, true),
            ("destination-ports", O::MpDports, 1, true),
            ("dports", O::MpDports, 1, true),
            ("ports", O::MpPorts, 1, true),
        ],
        "state" => &[("state", O::State, 1, true)],
        "conntrack" => &[
            ("ctstate", O::CtState, 1, true),
            ("ctproto", O::Unsupported, 1, true),
            ("ctorigsrc", O::Unsupported, 1, true),
            ("ctorigdst", O::Unsupported, 1, true),
            ("ctreplsrc", O::Unsupported, 1, true),
            ("ctrepldst", O::Unsupported, 1, true),
            ("ctorigsrcport", O::Unsupported, 1, true),
            ("ctorigdstport", O::Unsupported, 1, true),
            ("ctreplsrcport", O::Unsupported, 1, true),
            ("ctrepldstport", O::Unsupported, 1, true),
            ("ctstatus", O::Unsupported, 1, true),
            ("ctexpire", O::Unsupported, 1, true),
            ("ctdir", O::Unsupported, 1, false),
        ],
        "iprange" => &[
            ("src-range", O::SrcRange, 1, true),
            ("dst-range", O::DstRange, 1, true),
        ],
        "mac" => &[("mac-source", O::MacSource, 1, true)],
        "limit" => &[
            ("limit", O::Limit, 1, false),
            ("limit-burst", O::LimitBurst, 1, false),
        ],
        "length" => &[("length", O::Length, 1, true)],
        "ttl" => &[
            ("ttl-eq", O::TtlEq, 1, true),
            ("ttl-lt", O::TtlLt, 1, false),
            ("ttl-gt", O::TtlGt, 1, false),
            ("ttl", O::TtlEq, 1, true),
        ],
        "hl" => &[
            ("hl-eq", O::TtlEq, 1, true),
            ("hl-lt", O::TtlLt, 1, false),
            ("hl-gt", O::TtlGt, 1, false),
            ("hl", O::TtlEq, 1, true),
        ],
        "comment" => &[("comment", O::Comment, 1, false)],
        _ => &[],
    }
}

const MATCH_NAMES: &[&str] = &[
    "tcp",
    "udp",
    "icmp",
    "icmp6",
    "multiport",
    "state",
    "conntrack",
    "iprange",
    "mac",
    "limit",
    "length",
    "ttl",
    "hl",
    "comment",
];

/// Targets fwd knows (besides ACCEPT/DROP/RETURN and chains).
const TARGET_NAMES: &[&str] = &[
    "REJECT",
    "LOG",
    "NFLOG",
    "SNAT",
    "DNAT",
    "MASQUERADE",
    "REDIRECT",
    "NOTRACK",
    "CT",
];

fn target_opts(name: &str) -> &'static [OptSpec] {
    match name {
        "REJECT" => &[("reject-with", O::RejectWith, 1, false)],
        "LOG" => &[
            ("log-level", O::LogLevel, 1, false),
            ("log-prefix", O::LogPrefix, 1, false),
            ("log-tcp-sequence", O::LogTcpSeq, 0, false),
            ("log-tcp-options", O::LogTcpOpt, 0, false),
            ("log-ip-options", O::LogIpOpt, 0, false),
            ("log-uid", O::LogUid, 0, false),
            ("log-macdecode", O::LogMac, 0, false),
        ],
        "NFLOG" => &[
            ("nflog-group", O::NflogGroup, 1, false),
            ("nflog-prefix", O::NflogPrefix, 1, false),
            ("nflog-range", O::NflogRange, 1, false),
            ("nflog-size", O::NflogSize, 1, false),
            ("nflog-threshold", O::NflogThreshold, 1, false),
        ],
        "SNAT" => &[
            ("to-source", O::ToSource, 1, false),
            ("random", O::Random, 0, false),
            ("random-fully", O::RandomFully, 0, false),
            ("persistent", O::Persistent, 0, false),
        ],
        "DNAT" => &[
            ("to-destination", O::ToDestination, 1, false),
            ("random", O::Random, 0, false),
            ("persistent", O::Persistent, 0, false),
        ],
        "MASQUERADE" => &[
            ("to-ports", O::ToPorts, 1, false),
            ("random", O::Random, 0, false),
            ("random-fully", O::RandomFully, 0, false),
        ],
        "REDIRECT" => &[
            ("to-ports", O::ToPorts, 1, false),
            ("random", O::Random, 0, false),
        ],
        "CT" => &[
            ("notrack", O::Notrack, 0, false),
            ("helper", O::Unsupported, 1, false),
            ("ctevents", O::Unsupported, 1, false),
            ("expevents", O::Unsupported, 1, false),
            ("zone", O::Unsupported, 1, false),
            ("timeout", O::Unsupported, 1, false),
        ],
        _ => &[],
    }
}

/// What a command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cmd {
    Append(String),
    Insert(String, u32),
    DeleteSpec(String),
    DeleteNum(String, u32),
    Replace(String, u32),
    NewChain(String),
    DeleteChain(Option<String>),
    Policy(String, String),
    Flush(Option<String>),
    Zero(Option<String>),
    Rename(String, String),
    List(Option<String>),
    ListRules(Option<String>),
    /// A restore line for the other family (`-4`/`-6`): no effect.
    Nothing,
}

/// A parsed command line: the command, its rules (address lists expanded), and the table
/// given with `-t` (command lines only).
#[derive(Debug, Clone)]
pub(crate) struct ParsedCmd {
    pub cmd: Cmd,
    pub cmd_col: u32,
    /// Column of the command's first argument (the chain), for errors about it.
    pub arg_col: u32,
    pub rules: Vec<Rule>,
    pub table: Option<(TableName, u32)>,
    pub list_numeric: bool,
}

fn chain_args_col(toks: &[Tok], i: usize) -> u32 {
    toks.get(i).map(|t| t.col).unwrap_or(0)
}

/// Per-line parser state.
struct Line<'a> {
    family: Family,
    table: &'a Table,
    line: u32,
    toks: &'a [Tok],
    pos: usize,
    end_col: u32,
    rule: Rule,
    /// Option ids seen per loaded match (bit per `O` discriminant is overkill: store ids).
    seen: Vec<Vec<O>>,
    target_name: Option<String>,
    target_col: u32,
    target_seen: Vec<O>,
    srcs: Vec<(String, u32)>,
    dsts: Vec<(String, u32)>,
    src_neg: bool,
    dst_neg: bool,
    proto_col: u32,
    iface_cols: (u32, u32),
    cmd: Option<(Cmd, u32, u32)>,
    table_opt: Option<(TableName, u32)>,
    numeric: bool,
    /// `-4` in an ip6tables file (or `-6` in an iptables file): the line is ignored.
    skip_line: bool,
    counters_seen: bool,
    in_restore: bool,
    /// Pending LOG/NFLOG/NAT target state.
    log: LogTarget,
    nflog: NflogTarget,
    nat: NatRange,
    nat_set: bool,
    reject: Option<RejectWith>,
    ct_notrack: bool,
}

impl<'a> Line<'a> {
    fn err<T>(&self, col: u32, f: Fail) -> Result<T, Diag> {
        Err(Diag::at(self.line, col, f))
    }

    fn next_arg(&mut self, opt: &str, col: u32) -> Result<(String, u32), Diag> {
        match self.toks.get(self.pos) {
            Some(t) => {
                self.pos += 1;
                if t.text == "!" {
                    return self.err(
                        t.col,
                        Fail {
                            msg: format!("`!` after the option `{opt}`"),
                            hint: Some(format!(
                                "write `! {opt} VALUE`: `!` goes before the option"
                            )),
                        },
                    );
                }
                Ok((t.text.clone(), t.col))
            }
            None => self.err(
                col,
                Fail {
                    msg: format!("option `{opt}` requires an argument"),
                    hint: None,
                },
            ),
        }
    }

    /// An optional positional argument (a chain name or number): the next word unless it is an option.
    fn optional_word(&mut self) -> Option<(String, u32)> {
        let t = self.toks.get(self.pos)?;
        if t.text.starts_with('-') && t.text.len() > 1 || t.text == "!" {
            return None;
        }
        self.pos += 1;
        Some((t.text.clone(), t.col))
    }

    fn loaded(&self, name: &str) -> bool {
        self.rule.matches.iter().any(|m| m.name() == name)
    }

    fn proto_match_name(&self) -> Option<&'static str> {
        match self.rule.proto.map(|p| p.proto) {
            Some(values::PROTO_TCP) => Some("tcp"),
            Some(values::PROTO_UDP) => Some("udp"),
            Some(values::PROTO_ICMP) if self.family == Family::Ipv4 => Some("icmp"),
            Some(values::PROTO_ICMPV6) if self.family == Family::Ipv6 => Some("icmp6"),
            _ => None,
        }
    }

    fn load_match(&mut self, name: &str, col: u32) -> Result<(), Diag> {
        let m = match name {
            "tcp" => Match::Tcp(TcpMatch::default()),
            "udp" => Match::Udp(UdpMatch::default()),
            "icmp" if self.family == Family::Ipv4 => Match::Icmp(IcmpMatch {
                icmp_type: 255,
                code_min: 0,
                code_max: 255,
                negated: false,
            }),
            "icmp6" if self.family == Family::Ipv6 => Match::Icmp6(IcmpMatch {
                icmp_type: 0,
                code_min: 0,
                code_max: 255,
                negated: false,
            }),
            "multiport" => Match::Multiport(MultiportMatch {
                dir: MultiportDir::Either,
                ports: Vec::new(),
                negated: false,
            }),
            "state" => Match::State(StateMatch {
                states: 0,
                negated: false,
            }),
            "conntrack" => Match::Conntrack(StateMatch {
                states: 0,
                negated: false,
            }),
            "iprange" => Match::IpRange(IpRangeMatch::default()),
            "mac" => Match::Mac {
                addr: [0; 6],
                negated: false,
            },
            "limit" => Match::Limit(LimitMatch::DEFAULT),
            "length" => Match::Length {
                min: 0,
                max: 0,
                negated: false,
            },
            "ttl" if self.family == Family::Ipv4 => Match::Ttl {
                op: TtlOp::Eq,
                value: 0,
            },
            "hl" if self.family == Family::Ipv6 => Match::HopLimit {
                op: TtlOp::Eq,
                value: 0,
            },
            "comment" => Match::Comment(String::new()),
            _ => {
                let hint = match name {
                    "icmp" => Some("ip6tables uses `-m icmp6` (with `-p ipv6-icmp`)".to_string()),
                    "icmp6" | "icmpv6" => {
                        Some("iptables uses `-m icmp` (with `-p icmp`)".to_string())
                    }
                    "ttl" => Some("ip6tables uses `-m hl`".to_string()),
                    "hl" => Some("iptables uses `-m ttl`".to_string()),
                    _ => suggest(name, MATCH_NAMES)
                        .map(|s| format!("did you mean `{s}`?"))
                        .or_else(|| Some(format!("fwd supports: {}", MATCH_NAMES.join(", ")))),
                };
                return self.err(
                    col,
                    Fail {
                        msg: format!("unknown match `{name}`"),
                        hint,
                    },
                );
            }
        };
        self.rule.matches.push(m);
        self.seen.push(Vec::new());
        Ok(())
    }

    /// Resolves a long option name against what is loaded now.
    fn resolve_long(&self, name: &str) -> Option<Result<(Owner, OptSpec), Fail>> {
        let mut cands: Vec<(Owner, OptSpec)> =
            GENERIC.iter().map(|o| (Owner::Generic, *o)).collect();
        for (i, m) in self.rule.matches.iter().enumerate() {
            // A match is "completed" once another of the same name is loaded (libxtables).
            if self.rule.matches[i + 1..]
                .iter()
                .any(|later| later.name() == m.name())
            {
                continue;
            }
            cands.extend(match_opts(m.name()).iter().map(|o| (Owner::Match(i), *o)));
        }
        if let Some(t) = &self.target_name {
            cands.extend(target_opts(t).iter().map(|o| (Owner::Target, *o)));
        }
        if let Some(c) = cands.iter().find(|c| c.1 .0 == name) {
            return Some(Ok(*c));
        }
        let hits: Vec<&(Owner, OptSpec)> =
            cands.iter().filter(|c| c.1 .0.starts_with(name)).collect();
        let first = *hits.first()?;
        if hits.iter().all(|h| h.0 == first.0 && h.1 .1 == first.1 .1) {
            return Some(Ok(*first));
        }
        let names: Vec<String> = hits.iter().map(|h| format!("--{}", h.1 .0)).collect();
        Some(Err(Fail {
            msg: format!("option `--{name}` is ambiguous"),
            hint: Some(format!("it could be {}", names.join(", "))),
        }))
    }

    fn unknown_option(&self, opt: &str) -> Fail {
        let bare = opt.trim_start_matches('-');
        if let Some(p @ (values::PROTO_SCTP | values::PROTO_DCCP | values::PROTO_UDPLITE)) =
            self.rule.proto.map(|p| p.proto)
        {
            if match_opts("udp").iter().any(|o| o.0 == bare) {
                let name = values::protocol_name(p);
                return Fail {
                    msg: format!(
                        "`{opt}` after `-p {name}` needs `-m {name}`, which fwd does not support"
                    ),
                    hint: Some(format!(
                        "match {name} ports with `-m multiport --dports`/`--sports`"
                    )),
                };
            }
        }
        let owner = [
            "tcp",
            "udp",
            "icmp",
            "icmp6",
            "multiport",
            "state",
            "conntrack",
            "iprange",
            "mac",
            "limit",
            "length",
            "ttl",
            "hl",
            "comment",
        ]
        .iter()
        .find(|m| match_opts(m).iter().any(|o| o.0 == bare));
        let hint = match owner {
            Some(&"tcp") | Some(&"udp") => Some(format!(
                "`{opt}` belongs to `-p tcp`/`-p udp` (or `-m tcp`/`-m udp`), which must come before it"
            )),
            Some(m) => Some(format!("`{opt}` belongs to `-m {m}`, which must come before it")),
            None => {
                let owner_t = TARGET_NAMES
                    .iter()
                    .find(|t| target_opts(t).iter().any(|o| o.0 == bare));
                owner_t
                    .map(|t| format!("`{opt}` belongs to `-j {t}`, which must come before it"))
                    .or_else(|| self.similar_option(bare).map(|o| format!("did you mean `--{o}`?")))
            }
        };
        Fail {
            msg: format!("unknown option `{opt}`"),
            hint,
        }
    }

    /// A loaded option spelled like `bare` (edit distance <= 2), for "did you mean".
    fn similar_option(&self, bare: &str) -> Option<&'static str> {
        let mut names: Vec<&'static str> = GENERIC.iter().map(|o| o.0).collect();
        for m in &self.rule.matches {
            names.extend(match_opts(m.name()).iter().map(|o| o.0));
        }
        if let Some(t) = &self.target_name {
            names.extend(target_opts(t).iter().map(|o| o.0));
        }
        suggest(bare, &names)
    }

    fn run(&mut self) -> Result<(), Diag> {
        let mut invert: Option<u32> = None;
        while self.pos < self.toks.len() {
            let tok = self.toks[self.pos].clone();
            self.pos += 1;
            let t = tok.text.as_str();
            if t == "!" {
                if invert.is_some() {
                    return self.err(
                        tok.col,
                        Fail {
                            msg: "multiple `!` flags not allowed".into(),
                            hint: None,
                        },
                    );
                }
                invert = Some(tok.col);
                continue;
            }
            let (owner, spec, inline, shown): (Owner, OptSpec, Option<String>, String) =
                if let Some(long) = t.strip_prefix("--") {
                    let (name, inline) = match long.split_once('=') {
                        Some((n, v)) => (n, Some(v.to_string())),
                        None => (long, None),
                    };
                    if name.is_empty() {
                        return self.err(
                            tok.col,
                            Fail {
                                msg: format!("unexpected `{t}`"),
                                hint: None,
                            },
                        );
                    }
                    let mut r = self.resolve_long(name);
                    if r.is_none() {
                        if let Some(p) = self.proto_match_name() {
                            if !self.loaded(p) {
                                self.load_match(p, tok.col)?;
                                r = self.resolve_long(name);
                            }
                        }
                    }
                    match r {
                        None => {
                            return self.err(tok.col, self.unknown_option(&format!("--{name}")))
                        }
                        Some(Err(f)) => return self.err(tok.col, f),
                        Some(Ok((o, s))) => (o, s, inline, format!("--{}", s.0)),
                    }
                } else if t.len() >= 2 && t.starts_with('-') {
                    let mut chars = t[1..].chars();
                    let c = chars.next().unwrap_or('-');
                    let rest: String = chars.collect();
                    let id = match short_opt(c) {
                        Some(id) => id,
                        None => return self.err(tok.col, self.unknown_option(t)),
                    };
                    let spec = GENERIC
                        .iter()
                        .find(|g| g.1 == id)
                        .copied()
                        .unwrap_or(("", id, 1, false));
                    // getopt lets any short option carry its value attached (`-mstate`), but
                    // iptables reads most values from the next word, so only `-m` works.
                    let inline = if rest.is_empty() {
                        None
                    } else if id == O::MatchMod {
                        Some(rest)
                    } else {
                        return self.err(
                            tok.col,
                            Fail {
                                msg: format!("unexpected text after `-{c}` in `{t}`"),
                                hint: Some(format!("write `-{c} {rest}` with a space")),
                            },
                        );
                    };
                    let shown = format!("-{c}");
                    (Owner::Generic, (spec.0, id, spec.2, spec.3), inline, shown)
                } else {
                    return self.err(
                        tok.col,
                        Fail {
                            msg: format!("unexpected argument `{t}`"),
                            hint: Some("expected an option such as -p, -s, -m or -j".into()),
                        },
                    );
                };
            // A restore line for the other family is dropped as soon as `-4`/`-6` is read.
            let other_family = match self.family {
                Family::Ipv4 => O::Ipv6,
                Family::Ipv6 => O::Ipv4,
            };
            if self.in_restore && owner == Owner::Generic && spec.1 == other_family {
                self.skip_line = true;
                return Ok(());
            }
            if owner == Owner::Generic
                && matches!(spec.1, O::Ipv4 | O::Ipv6)
                && spec.1 != other_family
            {
                // `-4` in an iptables line is a no-op that swallows a preceding `!`.
                invert = None;
                continue;
            }
            let neg = invert.take();
            if neg.is_some() && !spec.3 {
                return self.err(
                    neg.unwrap_or(tok.col),
                    Fail {
                        msg: format!("`!` is not allowed before `{shown}`"),
                        hint: None,
                    },
                );
            }
            // Collect the option's arguments.
            let mut args: Vec<(String, u32)> = Vec::new();
            if inline.is_some()
                && owner == Owner::Generic
                && matches!(
                    spec.1,
                    O::Proto | O::Src | O::Dst | O::InIf | O::OutIf | O::Jump | O::Goto
                )
            {
                // iptables reads these values from the next word, so `--source=X` fails there.
                return self.err(
                    tok.col,
                    Fail {
                        msg: format!("`{shown}` does not take its value after `=`"),
                        hint: Some(format!("write `{shown} {}`", inline.unwrap_or_default())),
                    },
                );
            }
            if let Some(v) = inline {
                if spec.2 == 0 {
                    return self.err(
                        tok.col,
                        Fail {
                            msg: format!("option `{shown}` takes no argument"),
                            hint: None,
                        },
                    );
                }
                args.push((v, tok.col));
            }
            while args.len() < spec.2 as usize {
                let a = self.next_arg(&shown, tok.col)?;
                args.push(a);
            }
            self.apply(owner, spec.1, &shown, neg.is_some(), tok.col, args)?;
        }
        if let Some(c) = invert {
            return self.err(
                c,
                Fail {
                    msg: "`!` is not followed by an option".into(),
                    hint: None,
                },
            );
        }
        Ok(())
    }

    fn set_cmd(&mut self, cmd: Cmd, col: u32, arg_col: u32) -> Result<(), Diag> {
        if self.cmd.is_some() {
            return self.err(
                col,
                Fail {
                    msg: "only one command per line".into(),
                    hint: Some("a line has one of -A -I -D -R -N -X -P -F -Z -E -L -S".into()),
                },
            );
        }
        self.cmd = Some((cmd, col, arg_col));
        Ok(())
    }

    fn rulenum(&self, s: &str, col: u32) -> Result<u32, Diag> {
        match s.parse::<u32>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => self.err(
                col,
                Fail {
                    msg: format!("invalid rule number `{s}`"),
                    hint: Some("rule numbers start at 1".into()),
                },
            ),
        }
    }

    fn apply(
        &mut self,
        owner: Owner,
        id: O,
        shown: &str,
        neg: bool,
        col: u32,
        args: Vec<(String, u32)>,
    ) -> Result<(), Diag> {
        let a0 = args.first().map(|a| a.0.clone()).unwrap_or_default();
        let c0 = args.first().map(|a| a.1).unwrap_or(col);
        let vf = |r: VResult<()>, s: &Self| -> Result<(), Diag> {
            r.map_err(|f| Diag::at(s.line, c0, f))
        };
        match owner {
            Owner::Generic => self.apply_generic(id, shown, neg, col, a0, c0, args),
            Owner::Match(i) => {
                if self.seen[i].contains(&id) {
                    return self.err(
                        col,
                        Fail {
                            msg: format!(
                                "`{shown}` given twice for `-m {}`",
                                self.rule.matches[i].name()
                            ),
                            hint: None,
                        },
                    );
                }
                let exclusive = [O::TtlEq, O::TtlLt, O::TtlGt];
                if exclusive.contains(&id) && self.seen[i].iter().any(|o| exclusive.contains(o)) {
                    return self.err(
                        col,
                        Fail {
                            msg: format!("`{shown}` cannot be combined with another comparison in the same `-m {}`", self.rule.matches[i].name()),
                            hint: Some(format!("use a second `-m {}`", self.rule.matches[i].name())),
                        },
                    );
                }
                self.seen[i].push(id);
                let r = self.apply_match(i, id, neg, &a0, &args);
                vf(r, self)
            }
            Owner::Target => {
                if self.target_seen.contains(&id) {
                    return self.err(
                        col,
                        Fail {
                            msg: format!("`{shown}` given twice"),
                            hint: None,
                        },
                    );
                }
                self.target_seen.push(id);
                let r = self.apply_target(id, &a0);
                vf(r, self)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_generic(
        &mut self,
        id: O,
        shown: &str,
        neg: bool,
        col: u32,
        a0: String,
        c0: u32,
        args: Vec<(String, u32)>,
    ) -> Result<(), Diag> {
        let chain_arg = |s: &mut Self, a0: &str, c0: u32| -> Result<String, Diag> {
            if a0.is_empty() {
                return s.err(
                    c0,
                    Fail {
                        msg: format!("`{shown}` needs a chain name"),
                        hint: None,
                    },
                );
            }
            Ok(a0.to_string())
        };
        match id {
            O::Append => {
                let c = chain_arg(self, &a0, c0)?;
                self.set_cmd(Cmd::Append(c), col, c0)
            }
            O::Insert => {
                let c = chain_arg(self, &a0, c0)?;
                let n = match self.toks.get(self.pos) {
                    Some(t) if !t.text.is_empty() && t.text.bytes().all(|b| b.is_ascii_digit()) => {
                        self.pos += 1;
                        self.rulenum(&t.text.clone(), t.col)?
                    }
                    _ => 1,
                };
                self.set_cmd(Cmd::Insert(c, n), col, c0)
            }
            O::Delete => {
                let c = chain_arg(self, &a0, c0)?;
                match self.toks.get(self.pos) {
                    Some(t) if !t.text.is_empty() && t.text.bytes().all(|b| b.is_ascii_digit()) => {
                        self.pos += 1;
                        let n = self.rulenum(&t.text.clone(), t.col)?;
                        self.set_cmd(Cmd::DeleteNum(c, n), col, c0)
                    }
                    _ => self.set_cmd(Cmd::DeleteSpec(c), col, c0),
                }
            }
            O::Replace => {
                let c = chain_arg(self, &a0, c0)?;
                let (s, nc) = match self.optional_word() {
                    Some(w) => w,
                    None => {
                        return self.err(
                            col,
                            Fail {
                                msg: "`-R` needs a rule number after the chain".into(),
                                hint: None,
                            },
                        )
                    }
                };
                let n = self.rulenum(&s, nc)?;
                self.set_cmd(Cmd::Replace(c, n), col, c0)
            }
            O::NewChain => {
                let c = chain_arg(self, &a0, c0)?;
                self.set_cmd(Cmd::NewChain(c), col, c0)
            }
            O::Rename => {
                let c = chain_arg(self, &a0, c0)?;
                let (n, _) = match self.optional_word() {
                    Some(w) => w,
                    None => {
                        return self.err(
                            col,
                            Fail {
                                msg: "`-E` needs the old and the new chain name".into(),
                                hint: None,
                            },
                        )
                    }
                };
                self.set_cmd(Cmd::Rename(c, n), col, c0)
            }
            O::Policy => {
                let c = chain_arg(self, &a0, c0)?;
                let (p, _) = match self.optional_word() {
                    Some(w) => w,
                    None => {
                        return self.err(
                            col,
                            Fail {
                                msg: "`-P` needs a chain and a policy".into(),
                                hint: Some("e.g. `-P INPUT DROP`".into()),
                            },
                        )
                    }
                };
                self.set_cmd(Cmd::Policy(c, p), col, c0)
            }
            O::DeleteChain | O::Flush | O::Zero | O::List | O::ListRules => {
                let w = self.optional_word();
                let ac = w.as_ref().map(|w| w.1).unwrap_or(col);
                let name = w.map(|w| w.0);
                if id == O::Zero && name.is_some() {
                    // `-Z CHAIN [rulenum]`: counters are not kept, the number is only checked.
                    if let Some((n, nc)) = self.optional_word() {
                        self.rulenum(&n, nc)?;
                    }
                }
                let cmd = match id {
                    O::DeleteChain => Cmd::DeleteChain(name),
                    O::Flush => Cmd::Flush(name),
                    O::Zero => Cmd::Zero(name),
                    O::List => Cmd::List(name),
                    _ => Cmd::ListRules(name),
                };
                self.set_cmd(cmd, col, ac)
            }
            O::Check => self.err(
                col,
                Fail {
                    msg: "`-C` (check) is not supported".into(),
                    hint: None,
                },
            ),
            O::Proto => {
                if self.proto_col != 0 {
                    return self.err(
                        col,
                        Fail {
                            msg: "multiple -p flags not allowed".into(),
                            hint: None,
                        },
                    );
                }
                self.proto_col = col;
                let p = values::protocol(&a0).map_err(|f| Diag::at(self.line, c0, f))?;
                if neg && p.is_none() {
                    return self.err(
                        col,
                        Fail {
                            msg: format!("`! -p {a0}` would never match"),
                            hint: Some(
                                "every packet has a protocol; remove the rule or the `!`".into(),
                            ),
                        },
                    );
                }
                self.rule.proto = p.map(|proto| ProtoMatch {
                    proto,
                    negated: neg,
                });
                Ok(())
            }
            O::Src | O::Dst => {
                let is_src = id == O::Src;
                let list = if is_src { &self.srcs } else { &self.dsts };
                if !list.is_empty() {
                    return self.err(
                        col,
                        Fail {
                            msg: format!(
                                "multiple {} flags not allowed",
                                if is_src { "-s" } else { "-d" }
                            ),
                            hint: None,
                        },
                    );
                }
                let mut items = Vec::new();
                let mut off = 0u32;
                for part in a0.split(',') {
                    items.push((part.to_string(), c0 + off));
                    off += part.len() as u32 + 1;
                }
                if neg && items.len() > 1 {
                    return self.err(
                        col,
                        Fail {
                            msg: "`!` not allowed with multiple source or destination addresses"
                                .into(),
                            hint: Some("write one rule per address".into()),
                        },
                    );
                }
                // Addresses are checked once the line is read, as iptables does (a `-4` line in
                // an ip6tables file is skipped even with IPv4 addresses in it).
                if is_src {
                    self.srcs = items;
                    self.src_neg = neg;
                } else {
                    self.dsts = items;
                    self.dst_neg = neg;
                }
                Ok(())
            }
            O::InIf | O::OutIf => {
                let is_in = id == O::InIf;
                let slot = if is_in {
                    &mut self.iface_cols.0
                } else {
                    &mut self.iface_cols.1
                };
                if *slot != 0 {
                    return self.err(
                        col,
                        Fail {
                            msg: format!(
                                "multiple {} flags not allowed",
                                if is_in { "-i" } else { "-o" }
                            ),
                            hint: None,
                        },
                    );
                }
                *slot = col;
                let v = values::interface(&a0, neg).map_err(|f| Diag::at(self.line, c0, f))?;
                if is_in {
                    self.rule.in_iface = v;
                } else {
                    self.rule.out_iface = v;
                }
                Ok(())
            }
            O::Frag => {
                if self.family == Family::Ipv6 {
                    return self.err(col, Fail { msg: "`-f` does not exist in ip6tables".into(), hint: Some("IPv6 fragments are matched with `-m frag`, which fwd does not support".into()) });
                }
                if self.rule.fragment.is_some() {
                    return self.err(
                        col,
                        Fail {
                            msg: "multiple -f flags not allowed".into(),
                            hint: None,
                        },
                    );
                }
                self.rule.fragment = Some(neg);
                Ok(())
            }
            O::Jump | O::Goto => self.set_target(id == O::Goto, &a0, c0, col),
            O::MatchMod => {
                let name = a0.as_str();
                self.load_match(name, c0)
            }
            O::Table => {
                if self.in_restore {
                    return self.err(
                        col,
                        Fail {
                            msg: "`-t` cannot be used in a restore file".into(),
                            hint: Some("the table comes from the `*table` line".into()),
                        },
                    );
                }
                match TableName::from_name(&a0) {
                    Some(t) => {
                        self.table_opt = Some((t, c0));
                        Ok(())
                    }
                    None => self.err(
                        c0,
                        Fail {
                            msg: format!("unknown table `{a0}`"),
                            hint: Some("fwd supports filter, nat and raw".into()),
                        },
                    ),
                }
            }
            O::Counters => {
                if self.counters_seen {
                    return self.err(
                        col,
                        Fail {
                            msg: "multiple -c flags not allowed".into(),
                            hint: None,
                        },
                    );
                }
                self.counters_seen = true;
                for (a, c) in &args {
                    values::number(a, u64::MAX, "counter")
                        .map_err(|f| Diag::at(self.line, *c, f))?;
                }
                Ok(())
            }
            O::Numeric => {
                self.numeric = true;
                Ok(())
            }
            O::Verbose | O::Exact | O::LineNumbers | O::Wait | O::WaitInterval => Ok(()),
            O::Ipv4 | O::Ipv6 => {
                let want = if id == O::Ipv4 {
                    Family::Ipv4
                } else {
                    Family::Ipv6
                };
                if want != self.family && self.in_restore {
                    // iptables-restore skips lines meant for the other family.
                    self.skip_line = true;
                    self.pos = self.toks.len();
                } else if want != self.family {
                    return self.err(
                        col,
                        Fail {
                            msg: format!("`{shown}` does not match this file's family"),
                            hint: None,
                        },
                    );
                }
                Ok(())
            }
            _ => self.err(
                col,
                Fail {
                    msg: format!("option `{shown}` is not supported"),
                    hint: None,
                },
            ),
        }
    }

    fn set_target(&mut self, goto: bool, name: &str, c0: u32, col: u32) -> Result<(), Diag> {
        if self.target_name.is_some() || self.rule.target.is_some() {
            return self.err(
                col,
                Fail {
                    msg: "multiple -j/-g flags not allowed".into(),
                    hint: None,
                },
            );
        }
        self.target_col = c0;
        let chain = self.table.chain(name);
        if goto {
            return match chain {
                Some(c) if c.builtin.is_none() => {
                    self.rule.target = Some(Target::Goto(name.to_string()));
                    Ok(())
                }
                Some(_) => self.err(
                    c0,
                    Fail {
                        msg: format!("cannot goto built-in chain `{name}`"),
                        hint: None,
                    },
                ),
                None => self.err(
                    c0,
                    Fail {
                        msg: format!("`-g {name}`: no such chain"),
                        hint: self.chain_hint(name),
                    },
                ),
            };
        }
        let std = match name {
            "ACCEPT" => Some(Target::Accept),
            "DROP" => Some(Target::Drop),
            "RETURN" => Some(Target::Return),
            _ => None,
        };
        if let Some(t) = std {
            if t == Target::Drop && self.table.name == TableName::Nat {
                return self.err(
                    c0,
                    Fail {
                        msg: "`-j DROP` is not allowed in the nat table".into(),
                        hint: Some("the nat table is not for filtering (iptables refuses it too); drop in the filter table".into()),
                    },
                );
            }
            self.rule.target = Some(t);
            return Ok(());
        }
        if TARGET_NAMES.contains(&name) {
            if name == "NOTRACK" {
                self.rule.target = Some(Target::Notrack);
            } else {
                self.target_name = Some(name.to_string());
            }
            return Ok(());
        }
        match chain {
            Some(c) if c.builtin.is_none() => {
                self.rule.target = Some(Target::Jump(name.to_string()));
                Ok(())
            }
            Some(_) => self.err(
                c0,
                Fail {
                    msg: format!("cannot jump to built-in chain `{name}`"),
                    hint: None,
                },
            ),
            None => {
                let hint = match name {
                    "ULOG" => Some("ULOG was removed from Linux 3.17; use `-j NFLOG`".to_string()),
                    "QUEUE" | "NFQUEUE" | "MARK" | "CONNMARK" | "TCPMSS" | "TEE" | "SET"
                    | "TRACE" | "CLASSIFY" | "DSCP" | "TOS" | "NETMAP" => Some(format!(
                        "fwd supports ACCEPT, DROP, RETURN, {} and user chains",
                        TARGET_NAMES.join(", ")
                    )),
                    _ => {
                        let mut all: Vec<&str> = vec!["ACCEPT", "DROP", "RETURN"];
                        all.extend_from_slice(TARGET_NAMES);
                        let chains: Vec<&str> = self
                            .table
                            .chains
                            .iter()
                            .filter(|c| c.builtin.is_none())
                            .map(|c| c.name.as_str())
                            .collect();
                        all.extend(chains);
                        suggest(name, &all).map(|s| format!("did you mean `{s}`?")).or_else(|| {
                            Some(format!("a user chain must be declared (`:{name} - [0:0]` or `-N {name}`) before rules use it"))
                        })
                    }
                };
                self.err(
                    c0,
                    Fail {
                        msg: if matches!(
                            name,
                            "QUEUE"
                                | "NFQUEUE"
                                | "MARK"
                                | "CONNMARK"
                                | "TCPMSS"
                                | "TEE"
                                | "SET"
                                | "TRACE"
                                | "CLASSIFY"
                                | "DSCP"
                                | "TOS"
                                | "NETMAP"
                        ) {
                            format!("target `{name}` is not supported by fwd")
                        } else {
                            format!("unknown target or chain `{name}`")
                        },
                        hint,
                    },
                )
            }
        }
    }

    fn chain_hint(&self, name: &str) -> Option<String> {
        let chains: Vec<&str> = self.table.chains.iter().map(|c| c.name.as_str()).collect();
        suggest(name, &chains)
            .map(|s| format!("did you mean `{s}`?"))
            .or_else(|| Some("declare it first with `:NAME - [0:0]` or `-N NAME`".into()))
    }

    fn apply_match(
        &mut self,
        i: usize,
        id: O,
        neg: bool,
        a0: &str,
        args: &[(String, u32)],
    ) -> VResult<()> {
        let family = self.family;
        let proto = self.rule.proto;
        let m = &mut self.rule.matches[i];
        match (m, id) {
            (Match::Tcp(t), O::Sport | O::Dport) => {
                let r = values::port_range(a0, "any")?;
                let v = if r == PortRange::ANY && !neg {
                    None
                } else {
                    Some(PortMatch {
                        range: r,
                        negated: neg,
                    })
                };
                if id == O::Sport {
                    t.sport = v
                } else {
                    t.dport = v
                }
            }
            (Match::Udp(u), O::Sport | O::Dport) => {
                let r = values::port_range(a0, "any")?;
                let v = if r == PortRange::ANY && !neg {
                    None
                } else {
                    Some(PortMatch {
                        range: r,
                        negated: neg,
                    })
                };
                if id == O::Sport {
                    u.sport = v
                } else {
                    u.dport = v
                }
            }
            (Match::Tcp(t), O::Syn | O::TcpFlags) => {
                if t.flags.is_some() {
                    return fail("only one of `--syn` and `--tcp-flags` allowed");
                }
                t.flags = Some(if id == O::Syn {
                    TcpFlagsMatch {
                        mask: tcp_flags::FIN | tcp_flags::SYN | tcp_flags::RST | tcp_flags::ACK,
                        comp: tcp_flags::SYN,
                        negated: neg,
                    }
                } else {
                    let mask = values::tcp_flag_list(a0)?;
                    let comp = values::tcp_flag_list(&args[1].0)?;
                    TcpFlagsMatch {
                        mask,
                        comp,
                        negated: neg,
                    }
                });
                // `--tcp-flags NONE NONE` tests nothing; iptables drops it.
                if t.flags
                    .is_some_and(|f| f.mask == 0 && f.comp == 0 && !f.negated)
                {
                    t.flags = None;
                }
            }
            (Match::Tcp(t), O::TcpOption) => {
                let n = values::number(a0, 255, "TCP option")? as u8;
                t.option = Some((n, neg));
            }
            (Match::Icmp(ic), O::IcmpType) => *ic = values::icmp_type(a0, false, neg)?,
            (Match::Icmp6(ic), O::Icmp6Type) => *ic = values::icmp_type(a0, true, neg)?,
            (Match::Multiport(mp), O::MpSports | O::MpDports | O::MpPorts) => {
                if !mp.ports.is_empty() {
                    return fail_hint(
                        "`-m multiport` takes only one of --sports, --dports, --ports",
                        "use a second `-m multiport`",
                    );
                }
                let pname = match proto {
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
                    _ => return fail_hint(
                        "multiport needs `-p tcp`, `-p udp`, `-p udplite`, `-p sctp` or `-p dccp`",
                        "put `-p` before `-m multiport`'s ports",
                    ),
                };
                let mut slots = 0;
                let mut ports = Vec::new();
                for part in a0.split(',') {
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
                mp.negated = neg;
                mp.dir = match id {
                    O::MpSports => MultiportDir::Source,
                    O::MpDports => MultiportDir::Destination,
                    _ => MultiportDir::Either,
                };
            }
            (Match::State(s), O::State) => {
                *s = StateMatch {
                    states: values::states(a0, false)?,
                    negated: neg,
                }
            }
            (Match::Conntrack(s), O::CtState) => {
                *s = StateMatch {
                    states: values::states(a0, true)?,
                    negated: neg,
                }
            }
            (Match::Conntrack(_), O::Unsupported) => {
                return fail_hint(
                    "this conntrack option is not supported",
                    "fwd supports `-m conntrack --ctstate` only",
                )
            }
            (Match::IpRange(r), O::SrcRange) => r.src = Some(values::ip_range(a0, family, neg)?),
            (Match::IpRange(r), O::DstRange) => r.dst = Some(values::ip_range(a0, family, neg)?),
            (Match::Mac { addr, negated }, O::MacSource) => {
                *addr = values::mac(a0)?;
                *negated = neg;
            }
            (Match::Limit(l), O::Limit) => l.avg = values::limit_rate(a0)?,
            (Match::Limit(l), O::LimitBurst) => {
                l.burst = values::number(a0, 10000, "limit burst")? as u32
            }
            (Match::Length { min, max, negated }, O::Length) => {
                let (a, b) = match a0.split_once(':') {
                    Some((a, b)) => (a, if b.is_empty() { "65535" } else { b }),
                    None => (a0, a0),
                };
                let lo =
                    values::number(if a.is_empty() { "0" } else { a }, 65535, "length")? as u16;
                let hi = values::number(b, 65535, "length")? as u16;
                if lo > hi {
                    return fail(format!("invalid length range `{a0}`: start is above end"));
                }
                *min = lo;
                *max = hi;
                *negated = neg;
            }
            (
                Match::Ttl { op, value } | Match::HopLimit { op, value },
                O::TtlEq | O::TtlLt | O::TtlGt,
            ) => {
                if *value != 0 || *op != TtlOp::Eq {
                    // seen-tracking catches same option; different comparisons conflict too
                }
                *value = values::number(a0, 255, "TTL")? as u8;
                *op = match (id, neg) {
                    (O::TtlEq, false) => TtlOp::Eq,
                    (O::TtlEq, true) => TtlOp::Ne,
                    (O::TtlLt, _) => TtlOp::Lt,
                    _ => TtlOp::Gt,
                };
            }
            (Match::Comment(c), O::Comment) => {
                let mut s = a0.to_string();
                truncate_bytes(&mut s, 255);
                *c = s;
            }
            _ => return fail("option not valid here"),
        }
        Ok(())
    }

    fn apply_target(&mut self, id: O, a0: &str) -> VResult<()> {
        let proto_ok = matches!(
            self.rule.proto,
            Some(ProtoMatch {
                proto: values::PROTO_TCP
                    | values::PROTO_UDP
                    | values::PROTO_SCTP
                    | values::PROTO_DCCP
                    | values::PROTO_ICMP,
                // iptables ignores `!` here: `! -p tcp` allows ports too.
                ..
            })
        );
        let ports_need = "ports need `-p tcp`, `-p udp`, `-p sctp` or `-p dccp` before the target";
        match id {
            O::RejectWith => self.reject = Some(values::reject_with(a0, self.family)?),
            O::LogLevel => self.log.level = values::log_level(a0)?,
            O::LogPrefix | O::NflogPrefix => {
                if a0.is_empty() {
                    return fail("the prefix must not be empty");
                }
                if a0.contains('\n') {
                    return fail("newlines are not allowed in a log prefix");
                }
                let mut s = a0.to_string();
                if id == O::LogPrefix {
                    truncate_bytes(&mut s, 29);
                    self.log.prefix = s;
                } else {
                    truncate_bytes(&mut s, 63);
                    self.nflog.prefix = s;
                }
            }
            O::LogTcpSeq => self.log.tcp_sequence = true,
            O::LogTcpOpt => self.log.tcp_options = true,
            O::LogIpOpt => self.log.ip_options = true,
            O::LogUid => self.log.uid = true,
            O::LogMac => self.log.macdecode = true,
            O::NflogGroup => self.nflog.group = values::number(a0, 65535, "NFLOG group")? as u16,
            O::NflogRange => {
                self.nflog.range = values::number(a0, u32::MAX as u64, "NFLOG range")? as u32
            }
            O::NflogSize => {
                self.nflog.size = Some(values::number(a0, u32::MAX as u64, "NFLOG size")? as u32)
            }
            O::NflogThreshold => {
                self.nflog.threshold = values::number(a0, 65535, "NFLOG threshold")? as u16;
            }
            O::ToSource | O::ToDestination => {
                let (addrs, ports) = values::nat_range(a0, self.family)?;
                if ports.is_some() && !proto_ok {
                    return fail(ports_need);
                }
                self.nat.addrs = addrs;
                self.nat.ports = ports;
                self.nat_set = true;
            }
            O::ToPorts => {
                let r = values::port_dash_range(a0)?;
                if !proto_ok {
                    return fail(ports_need);
                }
                self.nat.ports = Some(r);
            }
            O::Random => self.nat.random = true,
            O::RandomFully => self.nat.random_fully = true,
            O::Persistent => self.nat.persistent = true,
            O::Notrack => self.ct_notrack = true,
            _ => {
                return fail_hint(
                    "this CT option is not supported",
                    "fwd supports `-j CT --notrack` only",
                )
            }
        }
        Ok(())
    }

    /// Checks iptables makes once the line is read (and the kernel's per-rule checks).
    fn finish_rule(&mut self, chain: &str) -> Result<(), Diag> {
        // iptables refuses any `!` on an address once either side is a list.
        if (self.src_neg || self.dst_neg) && (self.srcs.len() > 1 || self.dsts.len() > 1) {
            let col = if self.srcs.len() > 1 {
                self.srcs[0].1
            } else {
                self.dsts[0].1
            };
            return self.err(
                col,
                Fail {
                    msg: "`!` not allowed with multiple source or destination addresses".into(),
                    hint: Some("write one rule per address".into()),
                },
            );
        }
        for (items, neg) in [(&self.srcs, self.src_neg), (&self.dsts, self.dst_neg)] {
            for (s, c) in items {
                values::address(s, self.family, neg).map_err(|f| Diag::at(self.line, *c, f))?;
            }
        }
        let line = self.line;
        let e = |col: u32, msg: String, hint: Option<String>| Diag {
            line,
            col,
            msg,
            hint,
        };
        // Target.
        if let Some(name) = self.target_name.clone() {
            let tc = self.target_col;
            let t = match name.as_str() {
                "REJECT" => {
                    let with = self.reject.unwrap_or(match self.family {
                        Family::Ipv4 => RejectWith::IcmpPortUnreachable,
                        Family::Ipv6 => RejectWith::Icmp6PortUnreachable,
                    });
                    if with == RejectWith::TcpReset
                        && self.rule.proto
                            != Some(ProtoMatch {
                                proto: values::PROTO_TCP,
                                negated: false,
                            })
                    {
                        return Err(e(
                            tc,
                            "`--reject-with tcp-reset` needs `-p tcp`".into(),
                            Some("add `-p tcp` to the rule, or reject with an ICMP type".into()),
                        ));
                    }
                    Target::Reject(with)
                }
                "LOG" => Target::Log(self.log.clone()),
                "NFLOG" => Target::Nflog(self.nflog.clone()),
                "SNAT" | "DNAT" => {
                    if !self.nat_set {
                        let o = if name == "SNAT" {
                            "--to-source"
                        } else {
                            "--to-destination"
                        };
                        return Err(e(
                            tc,
                            format!("`-j {name}` needs `{o}`"),
                            Some(format!("e.g. `-j {name} {o} 198.18.0.1`")),
                        ));
                    }
                    if name == "SNAT" {
                        Target::Snat(self.nat)
                    } else {
                        Target::Dnat(self.nat)
                    }
                }
                "MASQUERADE" => Target::Masquerade {
                    ports: self.nat.ports,
                    random: self.nat.random,
                    random_fully: self.nat.random_fully,
                },
                "REDIRECT" => Target::Redirect {
                    ports: self.nat.ports,
                    random: self.nat.random,
                },
                "CT" => {
                    if !self.ct_notrack {
                        return Err(e(
                            tc,
                            "`-j CT` needs `--notrack`".into(),
                            Some("fwd supports `-j CT --notrack` only".into()),
                        ));
                    }
                    Target::CtNotrack
                }
                _ => Target::Accept,
            };
            self.rule.target = Some(t);
        }
        // Matches whose mandatory option is missing, and protocol requirements.
        for (i, m) in self.rule.matches.iter().enumerate() {
            let seen = &self.seen[i];
            let need: Option<&str> = match m {
                Match::Icmp(_) if seen.is_empty() => Some("--icmp-type"),
                Match::Icmp6(_) if seen.is_empty() => Some("--icmpv6-type"),
                Match::Multiport(_) if seen.is_empty() => Some("--sports, --dports or --ports"),
                Match::State(_) if seen.is_empty() => Some("--state"),
                Match::Conntrack(_) if seen.is_empty() => Some("--ctstate"),
                Match::IpRange(_) if seen.is_empty() => Some("--src-range or --dst-range"),
                Match::Mac { .. } if seen.is_empty() => Some("--mac-source"),
                Match::Length { .. } if seen.is_empty() => Some("--length"),
                Match::Ttl { .. } if seen.is_empty() => Some("--ttl-eq, --ttl-lt or --ttl-gt"),
                Match::HopLimit { .. } if seen.is_empty() => Some("--hl-eq, --hl-lt or --hl-gt"),
                Match::Comment(_) if seen.is_empty() => Some("--comment"),
                _ => None,
            };
            if let Some(n) = need {
                return Err(e(
                    self.word_col(m.name()),
                    format!("`-m {}` needs {n}", m.name()),
                    None,
                ));
            }
            let want = match m {
                Match::Tcp(_) => Some((values::PROTO_TCP, "tcp")),
                Match::Udp(_) => Some((values::PROTO_UDP, "udp")),
                Match::Icmp(_) => Some((values::PROTO_ICMP, "icmp")),
                Match::Icmp6(_) => Some((values::PROTO_ICMPV6, "ipv6-icmp")),
                _ => None,
            };
            if let Some((p, pn)) = want {
                if self.rule.proto
                    != Some(ProtoMatch {
                        proto: p,
                        negated: false,
                    })
                {
                    let col = if self.proto_col != 0 {
                        self.proto_col
                    } else {
                        self.word_col(m.name())
                    };
                    return Err(e(
                        col,
                        format!("`-m {}` needs `-p {pn}`", m.name()),
                        Some(format!("add `-p {pn}` to the rule")),
                    ));
                }
            }
            if let Match::Limit(l) = m {
                if l.burst == 0 {
                    return Err(e(
                        self.word_col("--limit-burst"),
                        "`--limit-burst 0` is refused by the kernel".into(),
                        Some("the burst must be at least 1".into()),
                    ));
                }
                if u64::from(l.avg) * u64::from(l.burst) > u64::from(u32::MAX) {
                    return Err(e(
                        self.word_col("--limit"),
                        "limit rate times burst is too large for the kernel".into(),
                        Some("use a faster rate or a smaller --limit-burst".into()),
                    ));
                }
            }
        }
        // iptables checks interfaces against the built-in chain named in the command.
        if let Some(h) = Hook::from_name(chain)
            .filter(|_| self.table.chain(chain).is_some_and(|c| c.builtin.is_some()))
        {
            if self.iface_cols.0 != 0 && matches!(h, Hook::Postrouting | Hook::Output) {
                return Err(e(
                    self.iface_cols.0,
                    format!("`-i` cannot be used in {chain}"),
                    Some("packets in this chain have no input interface; use `-o`".into()),
                ));
            }
            if self.iface_cols.1 != 0 && matches!(h, Hook::Prerouting | Hook::Input) {
                return Err(e(
                    self.iface_cols.1,
                    format!("`-o` cannot be used in {chain}"),
                    Some("packets in this chain have no output interface yet; use `-i`".into()),
                ));
            }
        }
        // Targets that exist only in one table.
        if let Some(t) = &self.rule.target {
            let (name, want) = match t {
                Target::Reject(_) => ("REJECT", TableName::Filter),
                Target::Snat(_) => ("SNAT", TableName::Nat),
                Target::Dnat(_) => ("DNAT", TableName::Nat),
                Target::Masquerade { .. } => ("MASQUERADE", TableName::Nat),
                Target::Redirect { .. } => ("REDIRECT", TableName::Nat),
                Target::Notrack => ("NOTRACK", TableName::Raw),
                Target::CtNotrack => ("CT", TableName::Raw),
                _ => ("", self.table.name),
            };
            if want != self.table.name {
                return Err(e(
                    self.target_col.max(1),
                    format!("`-j {name}` is only valid in the {} table", want.as_str()),
                    Some(format!("move the rule to `*{}`", want.as_str())),
                ));
            }
        }
        Ok(())
    }

    /// Column of the first word equal to `w` (else of the line's first word).
    fn word_col(&self, w: &str) -> u32 {
        self.toks
            .iter()
            .find(|t| t.text == w)
            .or(self.toks.first())
            .map(|t| t.col)
            .unwrap_or(1)
    }

    fn expand(&self) -> Vec<Rule> {
        let srcs: Vec<Option<AddrMatch>> = if self.srcs.is_empty() {
            vec![None]
        } else {
            self.srcs
                .iter()
                .map(|(s, _)| values::address(s, self.family, self.src_neg).ok().flatten())
                .collect()
        };
        let dsts: Vec<Option<AddrMatch>> = if self.dsts.is_empty() {
            vec![None]
        } else {
            self.dsts
                .iter()
                .map(|(s, _)| values::address(s, self.family, self.dst_neg).ok().flatten())
                .collect()
        };
        let mut out = Vec::new();
        for s in &srcs {
            for d in &dsts {
                let mut r = self.rule.clone();
                r.src = *s;
                r.dst = *d;
                r.line = self.line;
                out.push(r);
            }
        }
        out
    }
}

fn truncate_bytes(s: &mut String, max: usize) {
    if s.len() > max {
        let mut n = max;
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        s.truncate(n);
    }
}

/// The closest candidate by case-insensitive equality, prefix, or edit distance <= 2.
pub(crate) fn suggest<'b>(word: &str, cands: &[&'b str]) -> Option<&'b str> {
    if let Some(c) = cands.iter().find(|c| c.eq_ignore_ascii_case(word)) {
        return Some(c);
    }
    let mut best: Option<(usize, &str)> = None;
    for c in cands {
        let d = edit_distance(&word.to_ascii_lowercase(), &c.to_ascii_lowercase());
        if d <= 2 && best.is_none_or(|b| d < b.0) {
            best = Some((d, c));
        }
    }
    best.map(|b| b.1)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Parses one command line's words (after any `[p:b]` prefix) against `table`.
pub(crate) fn parse_command(
    toks: &[Tok],
    line: u32,
    family: Family,
    table: &Table,
    in_restore: bool,
) -> Result<ParsedCmd, Diag> {
    let mut l = Line {
        family,
        table,
        line,
        toks,
        pos: 0,
        end_col: toks
            .last()
            .map(|t| t.col + t.text.len() as u32)
            .unwrap_or(1),
        rule: Rule::new(),
        seen: Vec::new(),
        target_name: None,
        target_col: 0,
        target_seen: Vec::new(),
        srcs: Vec::new(),
        dsts: Vec::new(),
        src_neg: false,
        dst_neg: false,
        proto_col: 0,
        iface_cols: (0, 0),
        cmd: None,
        table_opt: None,
        numeric: false,
        skip_line: false,
        counters_seen: false,
        in_restore,
        log: LogTarget {
            level: 4,
            prefix: String::new(),
            tcp_sequence: false,
            tcp_options: false,
            ip_options: false,
            uid: false,
            macdecode: false,
        },
        nflog: NflogTarget {
            group: 0,
            prefix: String::new(),
            size: None,
            range: 0,
            threshold: 0,
        },
        nat: NatRange {
            addrs: None,
            ports: None,
            random: false,
            random_fully: false,
            persistent: false,
        },
        nat_set: false,
        reject: None,
        ct_notrack: false,
    };
    l.run()?;
    if l.skip_line {
        return Ok(ParsedCmd {
            cmd: Cmd::Nothing,
            cmd_col: 1,
            arg_col: 1,
            rules: Vec::new(),
            table: None,
            list_numeric: false,
        });
    }
    let (cmd, cmd_col, arg_col) = match l.cmd.clone() {
        Some(c) => c,
        None => {
            return Err(Diag {
                line,
                col: toks.first().map(|t| t.col).unwrap_or(1),
                msg: "no command given".into(),
                hint: Some(
                    "a rule line starts with -A CHAIN (or -I, -D, -R, -N, -X, -P, -F, -Z, -E)"
                        .into(),
                ),
            })
        }
    };
    let _ = l.end_col;
    let rule_chain = match &cmd {
        Cmd::Append(c) | Cmd::Insert(c, _) | Cmd::DeleteSpec(c) | Cmd::Replace(c, _) => {
            Some(c.clone())
        }
        _ => None,
    };
    let rules = if let Some(c) = rule_chain {
        l.finish_rule(&c)?;
        l.expand()
    } else {
        let has_spec = l.rule != Rule::new()
            || l.target_name.is_some()
            || !l.srcs.is_empty()
            || !l.dsts.is_empty();
        if has_spec {
            return Err(Diag {
                line,
                col: cmd_col,
                msg: "this command takes no rule specification".into(),
                hint: None,
            });
        }
        Vec::new()
    };
    if matches!(cmd, Cmd::Replace(..)) && rules.len() > 1 {
        return Err(Diag {
            line,
            col: cmd_col,
            msg: "`-R` cannot use address lists (they would make several rules)".into(),
            hint: None,
        });
    }
    let _ = chain_args_col;
    Ok(ParsedCmd {
        cmd,
        cmd_col,
        arg_col,
        rules,
        table: l.table_opt,
        list_numeric: l.numeric,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lex::split_restore;

    fn parse(line: &str, table: &Table) -> Result<ParsedCmd, Diag> {
        parse_command(&split_restore(line).unwrap(), 7, Family::Ipv4, table, true)
    }

    #[test]
    fn implicit_tcp_match_is_loaded_where_the_option_appears() {
        let t = Table::new(TableName::Filter);
        let pc = parse(
            "-A INPUT -p tcp -m comment --comment x --dpo 22 -j ACCEPT",
            &t,
        )
        .unwrap();
        let r = &pc.rules[0];
        assert_eq!(r.matches[0].name(), "comment");
        assert_eq!(
            r.matches[1],
            Match::Tcp(TcpMatch {
                dport: Some(PortMatch {
                    range: PortRange { lo: 22, hi: 22 },
                    negated: false
                }),
                ..TcpMatch::default()
            })
        );
        assert_eq!(r.target, Some(Target::Accept));
        assert_eq!(r.line, 7);
    }

    #[test]
    fn address_lists_expand_source_major() {
        let t = Table::new(TableName::Filter);
        let pc = parse(
            "-A INPUT -s 198.18.0.1,198.18.0.2 -d 198.19.0.1,198.19.0.2 -j DROP",
            &t,
        )
        .unwrap();
        let pairs: Vec<String> = pc
            .rules
            .iter()
            .map(|r| format!("{}>{}", r.src.unwrap().addr, r.dst.unwrap().addr))
            .collect();
        assert_eq!(
            pairs,
            [
                "198.18.0.1>198.19.0.1",
                "198.18.0.1>198.19.0.2",
                "198.18.0.2>198.19.0.1",
                "198.18.0.2>198.19.0.2"
            ]
        );
    }

    #[test]
    fn errors_name_the_column_and_hint() {
        let t = Table::new(TableName::Filter);
        let e = parse("-A INPUT -p tcp -j accept", &t).unwrap_err();
        assert_eq!((e.line, e.col), (7, 20));
        assert_eq!(e.hint.as_deref(), Some("did you mean `ACCEPT`?"));
        let e = parse("-A INPUT --dport 22 -j ACCEPT", &t).unwrap_err();
        assert_eq!(e.col, 10);
        assert!(e.msg.contains("--dport"));
        let e = parse("-A INPUT -p tcp --d 22", &t).unwrap_err();
        assert!(e.msg.contains("ambiguous"), "{}", e.msg);
    }

    #[test]
    fn second_match_of_same_name_takes_the_following_options() {
        let t = Table::new(TableName::Filter);
        let pc = parse("-A INPUT -m ttl --ttl-gt 5 -m ttl --ttl-lt 9", &t).unwrap();
        assert_eq!(
            pc.rules[0].matches,
            vec![
                Match::Ttl {
                    op: TtlOp::Gt,
                    value: 5
                },
                Match::Ttl {
                    op: TtlOp::Lt,
                    value: 9
                }
            ]
        );
    }

    #[test]
    fn target_and_table_rules() {
        let nat = Table::new(TableName::Nat);
        let e = parse("-A POSTROUTING -j SNAT", &nat).unwrap_err();
        assert!(e.msg.contains("--to-source"));
        let pc = parse(
            "-A POSTROUTING -p udp -j SNAT --to 198.18.0.1-198.18.0.4:1000-2000 --random",
            &nat,
        )
        .unwrap();
        match &pc.rules[0].target {
            Some(Target::Snat(r)) => {
                assert_eq!(r.ports, Some(PortRange { lo: 1000, hi: 2000 }));
                assert!(r.random && !r.persistent);
            }
            t => panic!("{t:?}"),
        }
        let filter = Table::new(TableName::Filter);
        assert!(parse("-A INPUT -j MASQUERADE", &filter)
            .unwrap_err()
            .msg
            .contains("nat table"));
        assert!(parse("-A INPUT -j INPUT", &filter)
            .unwrap_err()
            .msg
            .contains("built-in"));
    }

    #[test]
    fn misspelt_options_get_a_suggestion() {
        let t = Table::new(TableName::Filter);
        let e = parse("-A INPUT -m state --states NEW -j ACCEPT", &t).unwrap_err();
        assert_eq!(e.msg, "unknown option `--states`");
        assert_eq!(e.hint.as_deref(), Some("did you mean `--state`?"));
        let e = parse("-A INPUT -j LOG --log-prefx x", &t).unwrap_err();
        assert_eq!(e.hint.as_deref(), Some("did you mean `--log-prefix`?"));
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("ACCPET", &["ACCEPT", "DROP"]), Some("ACCEPT"));
        assert_eq!(suggest("xyzzy", &["ACCEPT", "DROP"]), None);
    }
}
