//! Command lines (`-A INPUT -p tcp --dport 22 -j ACCEPT`) and `iptables-restore` files.
//!
//! Options are resolved the way iptables' getopt does: exact long name, else a unique prefix
//! among the generic options and those of the matches/target loaded so far; an unknown option
//! after `-p tcp|udp|icmp|ipv6-icmp` loads that protocol's match implicitly and is retried.
//!
//! This file is the driver: it reads a line's words, resolves each option to its owner (the
//! commands and generic options of [`generic`], a loaded match, or the `-j` target), hands the
//! option's arguments over, and makes the checks iptables makes once the line is read. What a
//! match or target option means lives in one file per extension family, split as iptables'
//! own `extensions/libxt_*.c`, and [`registry`] lists them: a new extension is one file and one
//! line there. [`real`] knows the extensions iptables has and fwd does not, for diagnostics.

mod comment;
pub(crate) mod connbytes;
pub(crate) mod connlimit;
pub(crate) mod conntrack;
mod generic;
pub(crate) mod hashlimit;
mod hostonly;
mod icmp;
mod iprange;
mod ipv6ext;
mod length;
mod limit;
mod mac;
mod mark;
mod multiport;
mod proto;
mod real;
mod recent;
mod registry;
pub(crate) mod stateless;
mod statistic;
mod targets;
mod tcp_udp;
pub(crate) mod time;
mod ttl;

use crate::ast::*;
use crate::lex::Tok;
use crate::values::{self, Fail, VResult};
use generic::G;
use registry::{MatchExt, OptArg, TargetExt};

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

/// One option: (long name, id within its owner, number of arguments, may be preceded by `!`).
/// Generic options have a [`G`] id, those of a match or target a `u8` of that extension's file.
type OptSpec<I> = (&'static str, I, u8, bool);

/// Who an option belongs to, with the option's id there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Generic(G),
    /// The option `.1` of the `.0`th loaded match.
    Match(usize, u8),
    Target(u8),
}

/// An option resolved against what is loaded.
#[derive(Debug, Clone, Copy)]
struct Resolved {
    owner: Owner,
    /// The long name (empty for a short option without one).
    name: &'static str,
    args: u8,
    invertible: bool,
}

impl Resolved {
    fn new<I: Copy>(spec: &OptSpec<I>, owner: impl Fn(I) -> Owner) -> Resolved {
        Resolved {
            owner: owner(spec.1),
            name: spec.0,
            args: spec.2,
            invertible: spec.3,
        }
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
    /// Per loaded match (parallel to `rule.matches`): its extension and the option ids seen.
    exts: Vec<(&'static MatchExt, Vec<u8>)>,
    /// The `-j` extension target and the target its options build, completed once the line
    /// is read.
    target: Option<(&'static TargetExt, Target)>,
    target_col: u32,
    target_seen: Vec<u8>,
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
            Some(132) => Some("sctp"),
            Some(33) => Some("dccp"),
            Some(50) => Some("esp"),
            Some(51) => Some("ah"),
            _ => None,
        }
    }

    fn load_match(&mut self, name: &str, col: u32) -> Result<(), Diag> {
        match registry::find_match(name, self.family) {
            Some(ext) => {
                self.rule.matches.push((ext.new)());
                self.exts.push((ext, Vec::new()));
                Ok(())
            }
            None => self.err(col, registry::unknown_match(name, self.family)),
        }
    }

    /// Resolves a long option name against what is loaded now.
    fn resolve_long(&self, name: &str) -> Option<Result<Resolved, Fail>> {
        let mut cands: Vec<Resolved> = generic::GENERIC
            .iter()
            .map(|o| Resolved::new(o, Owner::Generic))
            .collect();
        // libxtables merges an extension's options in front of the older ones' when it is
        // first loaded, so getopt gives a name two extensions share (`--mark` of `-m mark` and
        // `-m connmark`) to the one loaded first most recently; within an extension, to its
        // last instance (a match is "completed" once another of the same name is loaded).
        let ms = &self.rule.matches;
        let mut order: Vec<(usize, usize)> = Vec::new();
        for (i, m) in ms.iter().enumerate() {
            match order.iter_mut().find(|(f, _)| ms[*f].name() == m.name()) {
                Some(e) => e.1 = i,
                None => order.push((i, i)),
            }
        }
        for &(_, i) in order.iter().rev() {
            let opts = self.exts[i].0.opts;
            cands.extend(
                opts.iter()
                    .map(|o| Resolved::new(o, |id| Owner::Match(i, id))),
            );
        }
        if let Some((t, _)) = &self.target {
            cands.extend(t.opts.iter().map(|o| Resolved::new(o, Owner::Target)));
        }
        if let Some(c) = cands.iter().find(|c| c.name == name) {
            return Some(Ok(*c));
        }
        let hits: Vec<&Resolved> = cands.iter().filter(|c| c.name.starts_with(name)).collect();
        let first = *hits.first()?;
        if hits.iter().all(|h| h.owner == first.owner) {
            return Some(Ok(*first));
        }
        let names: Vec<String> = hits.iter().map(|h| format!("--{}", h.name)).collect();
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
            if tcp_udp::UDP.opts.iter().any(|o| o.0 == bare) {
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
        let owner = registry::MATCHES
            .iter()
            .find(|m| m.opts.iter().any(|o| o.0 == bare))
            .map(|m| m.name);
        let hint = match owner {
            Some("tcp") | Some("udp") => Some(format!(
                "`{opt}` belongs to `-p tcp`/`-p udp` (or `-m tcp`/`-m udp`), which must come before it"
            )),
            Some(m) => Some(format!("`{opt}` belongs to `-m {m}`, which must come before it")),
            None => {
                let owner_t = registry::TARGETS
                    .iter()
                    .find(|t| t.opts.iter().any(|o| o.0 == bare));
                owner_t
                    .map(|t| format!("`{opt}` belongs to `-j {}`, which must come before it", t.name))
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
        let mut names: Vec<&'static str> = generic::GENERIC.iter().map(|o| o.0).collect();
        for (ext, _) in &self.exts {
            names.extend(ext.opts.iter().map(|o| o.0));
        }
        if let Some((t, _)) = &self.target {
            names.extend(t.opts.iter().map(|o| o.0));
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
            let (r, inline, shown): (Resolved, Option<String>, String) = if let Some(long) =
                t.strip_prefix("--")
            {
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
                let mut found = self.resolve_long(name);
                if found.is_none() {
                    if let Some(p) = self.proto_match_name() {
                        if !self.loaded(p) {
                            self.load_match(p, tok.col)?;
                            found = self.resolve_long(name);
                        }
                    }
                }
                match found {
                    None => return self.err(tok.col, self.unknown_option(&format!("--{name}"))),
                    Some(Err(f)) => return self.err(tok.col, f),
                    Some(Ok(r)) => (r, inline, format!("--{}", r.name)),
                }
            } else if t.len() >= 2 && t.starts_with('-') {
                let mut chars = t[1..].chars();
                let c = chars.next().unwrap_or('-');
                let rest: String = chars.collect();
                let id = match generic::short_opt(c) {
                    Some(id) => id,
                    None => return self.err(tok.col, self.unknown_option(t)),
                };
                let spec = generic::GENERIC
                    .iter()
                    .find(|g| g.1 == id)
                    .copied()
                    .unwrap_or(("", id, 1, false));
                // getopt lets any short option carry its value attached (`-mstate`), but
                // iptables reads most values from the next word, so only `-m` works.
                let inline = if rest.is_empty() {
                    None
                } else if id == G::MatchMod {
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
                (Resolved::new(&spec, Owner::Generic), inline, shown)
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
                Family::Ipv4 => Owner::Generic(G::Ipv6),
                Family::Ipv6 => Owner::Generic(G::Ipv4),
            };
            if self.in_restore && r.owner == other_family {
                self.skip_line = true;
                return Ok(());
            }
            if matches!(r.owner, Owner::Generic(G::Ipv4 | G::Ipv6)) && r.owner != other_family {
                // `-4` in an iptables line is a no-op that swallows a preceding `!`.
                invert = None;
                continue;
            }
            let neg = invert.take();
            if neg.is_some() && !r.invertible {
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
                && matches!(
                    r.owner,
                    Owner::Generic(
                        G::Proto | G::Src | G::Dst | G::InIf | G::OutIf | G::Jump | G::Goto
                    )
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
                if r.args == 0 {
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
            while args.len() < r.args as usize {
                let a = self.next_arg(&shown, tok.col)?;
                args.push(a);
            }
            self.apply(r.owner, &shown, neg.is_some(), tok.col, args)?;
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

    fn apply(
        &mut self,
        owner: Owner,
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
        let arg = |id: u8, s: &Self| OptArg {
            id,
            neg,
            value: &a0,
            args: &args,
            family: s.family,
            proto: s.rule.proto,
        };
        match owner {
            Owner::Generic(id) => self.apply_generic(id, shown, neg, col, &a0, c0, &args),
            Owner::Match(i, id) => {
                let ext = self.exts[i].0;
                let seen = &self.exts[i].1;
                if seen.contains(&id) {
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
                if ext.exclusive.contains(&id) && seen.iter().any(|o| ext.exclusive.contains(o)) {
                    return self.err(
                        col,
                        Fail {
                            msg: format!("`{shown}` cannot be combined with another comparison in the same `-m {}`", self.rule.matches[i].name()),
                            hint: Some(format!("use a second `-m {}`", self.rule.matches[i].name())),
                        },
                    );
                }
                self.exts[i].1.push(id);
                let a = arg(id, self);
                let r = (ext.apply)(&mut self.rule.matches[i], &a);
                vf(r, self)
            }
            Owner::Target(id) => {
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
                let a = arg(id, self);
                let r = match &mut self.target {
                    Some((ext, t)) => (ext.apply)(t, &a),
                    None => values::fail("option not valid here"),
                };
                vf(r, self)
            }
        }
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
        if let Some((ext, t)) = self.target.clone() {
            let t = (ext.finish)(t, self.rule.proto, &self.target_seen)
                .map_err(|f| Diag::at(line, self.target_col, f))?;
            if matches!(t, Target::Tcpmss(_))
                && !targets::rewrite::tcpmss_syn_ok(&self.rule.matches)
            {
                return Err(e(
                    self.target_col,
                    "`-j TCPMSS` only works on TCP SYN packets".into(),
                    Some("add `--syn` (or `--tcp-flags SYN,RST SYN`) to the rule, as the kernel demands".into()),
                ));
            }
            self.rule.target = Some(t);
        }
        // Matches whose mandatory option is missing, protocol requirements, and each match's
        // own checks.
        for (m, (ext, seen)) in self.rule.matches.iter().zip(&self.exts) {
            if let Some(n) = ext.required.filter(|_| seen.is_empty()) {
                return Err(e(
                    self.word_col(m.name()),
                    format!("`-m {}` needs {n}", m.name()),
                    None,
                ));
            }
            if let Some((p, pn)) = ext.proto {
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
            if let Some(check) = ext.check {
                check(m).map_err(|(word, f)| Diag::at(line, self.word_col(word), f))?;
            }
            let tcp = Some(ProtoMatch {
                proto: values::PROTO_TCP,
                negated: false,
            });
            if stateless::ecn_needs_tcp(m) && self.rule.proto != tcp {
                return Err(e(
                    self.word_col(m.name()),
                    "`--ecn-tcp-cwr` and `--ecn-tcp-ece` need `-p tcp`".into(),
                    Some("add `-p tcp` to the rule".into()),
                ));
            }
        }
        for m in &mut self.rule.matches {
            hostonly::finish(m);
        }
        for i in 0..self.rule.matches.len() {
            if let Err(f) = hashlimit::finish(&mut self.rule.matches[i]) {
                let col = self.word_col("hashlimit");
                return Err(Diag::at(line, col, f));
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
        if let Some((ext, _)) = &self.target {
            if let Some(want) = ext.table.filter(|t| *t != self.table.name) {
                return Err(e(
                    self.target_col.max(1),
                    format!(
                        "`-j {}` is only valid in the {} table",
                        ext.name,
                        want.as_str()
                    ),
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
        exts: Vec::new(),
        target: None,
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
        let has_spec =
            l.rule != Rule::new() || l.target.is_some() || !l.srcs.is_empty() || !l.dsts.is_empty();
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
                assert_eq!(
                    r.ports,
                    Some(NatPorts {
                        lo: 1000,
                        hi: 2000,
                        base: None
                    })
                );
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
    fn registry_entries_are_consistent() {
        for m in registry::MATCHES {
            assert_eq!((m.new)().name(), m.name, "`new` of {}", m.name);
            let family = m.family.unwrap_or(Family::Ipv4);
            assert!(std::ptr::eq(
                registry::find_match(m.name, family).unwrap(),
                m
            ));
            for (i, o) in m.opts.iter().enumerate() {
                assert!(
                    m.opts[i + 1..].iter().all(|p| p.0 != o.0),
                    "--{} twice in {}",
                    o.0,
                    m.name
                );
            }
            assert!(m
                .exclusive
                .iter()
                .all(|id| m.opts.iter().any(|o| o.1 == *id)));
        }
        for t in registry::TARGETS {
            let f = t.family.unwrap_or(Family::Ipv4);
            assert!(std::ptr::eq(registry::find_target(t.name, f).unwrap(), t));
            for (i, o) in t.opts.iter().enumerate() {
                assert!(
                    t.opts[i + 1..].iter().all(|p| p.0 != o.0),
                    "--{} twice",
                    o.0
                );
            }
        }
        // A match of the other family is not found (and gets the hint saying which to use).
        assert!(registry::find_match("icmp", Family::Ipv6).is_none());
        assert!(registry::find_match("hl", Family::Ipv4).is_none());
    }

    #[test]
    fn a_shared_option_goes_to_the_extension_loaded_first_most_recently() {
        let t = Table::new(TableName::Filter);
        let ok = parse("-A FORWARD -m mark --mark 1 -m connmark --mark 2/3", &t).unwrap();
        assert_eq!(
            ok.rules[0].matches,
            vec![
                Match::Mark(MarkMatch {
                    value: 1,
                    mask: u32::MAX,
                    negated: false
                }),
                Match::Connmark(MarkMatch {
                    value: 2,
                    mask: 3,
                    negated: false
                }),
            ]
        );
        // a second `-m mark` does not move mark's options in front again: iptables gives
        // this `--mark` to connmark, which has one already
        let e = parse(
            "-A FORWARD -m mark --mark 1 -m connmark --mark 2 -m mark --mark 3",
            &t,
        )
        .unwrap_err();
        assert_eq!(e.msg, "`--mark` given twice for `-m connmark`");
    }

    #[test]
    fn real_extensions_fwd_lacks_are_named_as_such() {
        let t = Table::new(TableName::Filter);
        let real =
            |name: &str| format!("`{name}` is a real iptables extension that fwd does not support");
        // Not "did you mean ...?" for u32.
        for (line, name, col) in [
            ("-A INPUT -p tcp -m u32 --u32 0x0=0x0 -j ACCEPT", "u32", 20),
            ("-A INPUT -m quota --quota 100 -j ACCEPT", "quota", 13),
            ("-A INPUT -m cpu --cpu 0", "cpu", 13),
            ("-A INPUT -mhelper --helper ftp", "helper", 10),
        ] {
            let e = parse(line, &t).unwrap_err();
            assert_eq!(
                (e.msg.as_str(), e.col),
                (real(name).as_str(), col),
                "{line}"
            );
            assert!(
                e.hint.unwrap().starts_with("fwd supports: tcp, udp"),
                "{line}"
            );
        }
        // Nor "a user chain must be declared" for a real target.
        for (line, name) in [
            ("-A INPUT -j TEE --gateway 198.18.0.1", "TEE"),
            ("-A INPUT -j AUDIT --type accept", "AUDIT"),
            ("-A INPUT -j SYNPROXY", "SYNPROXY"),
            ("-A INPUT -j QUEUE", "QUEUE"),
        ] {
            let e = parse(line, &t).unwrap_err();
            assert_eq!(e.msg, real(name), "{line}");
            assert!(!e.hint.unwrap().contains("must be declared"), "{line}");
        }
        // The other family's extension names the tool that has it.
        let e = parse("-A INPUT -m frag --fragid 1", &t).unwrap_err();
        assert_eq!(
            e.msg,
            "`frag` is a real ip6tables extension that fwd does not support"
        );
        let v6 = parse_command(
            &split_restore("-A INPUT -m mh --mh-type 1 -j DROP").unwrap(),
            3,
            Family::Ipv6,
            &t,
            true,
        )
        .unwrap_err();
        assert_eq!(
            v6.msg,
            "`mh` is a real ip6tables extension that fwd does not support"
        );
        // and an ip6tables one fwd has is named as the other tool's in iptables
        let e = parse("-A INPUT -m rt --rt-type 0", &t).unwrap_err();
        assert_eq!(e.msg, "`rt` is an ip6tables match: iptables has no `rt`");
        // Supported ones of the other family keep their hint; unknown names their suggestion.
        assert_eq!(
            parse("-A INPUT -m hl --hl-eq 1", &t)
                .unwrap_err()
                .hint
                .as_deref(),
            Some("iptables uses `-m ttl`")
        );
        let e = parse("-A INPUT -m tpc --dport 1", &t).unwrap_err();
        assert_eq!(e.msg, "unknown match `tpc`");
        assert_eq!(e.hint.as_deref(), Some("did you mean `tcp`?"));
        let e = parse("-A INPUT -j tproxy", &t).unwrap_err();
        assert_eq!(e.msg, "unknown target or chain `tproxy`");
        assert!(e.hint.unwrap().contains("must be declared"));
    }

    #[test]
    fn a_declared_chain_is_jumped_to_whatever_its_name() {
        let mut t = Table::new(TableName::Filter);
        t.add_user_chain("TEE");
        let pc = parse("-A INPUT -j TEE", &t).unwrap();
        assert_eq!(pc.rules[0].target, Some(Target::Jump("TEE".into())));
    }

    #[test]
    fn every_extension_fwd_has_is_a_real_one() {
        for m in registry::MATCHES {
            let family = m.family.unwrap_or(Family::Ipv4);
            assert!(
                real::unsupported(real::Kind::Match, m.name, family).is_some(),
                "{}",
                m.name
            );
        }
        for t in registry::TARGETS {
            assert!(
                real::unsupported(real::Kind::Target, t.name, Family::Ipv4).is_some(),
                "{}",
                t.name
            );
        }
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("ACCPET", &["ACCEPT", "DROP"]), Some("ACCEPT"));
        assert_eq!(suggest("xyzzy", &["ACCEPT", "DROP"]), None);
    }
}
