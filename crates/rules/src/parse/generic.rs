//! The commands (`-A`, `-I`, `-N`, `-P` ...) and the options every rule may have (`-p`, `-s`,
//! `-d`, `-i`, `-o`, `-f`, `-j`, `-m`, `-c` ...): iptables' own option table (`xshared.c`),
//! apart from the extensions so that adding a match or target never touches it.

use super::{Cmd, Diag, Line, OptSpec};
use crate::ast::*;
use crate::values::{self, Fail};

/// Commands and the options every line may have, as in iptables' `xshared.c`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum G {
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
    /// Accepted by iptables, refused by fwd (`--version`, `--help`, `--modprobe`).
    Unsupported,
}

pub(super) const GENERIC: &[OptSpec<G>] = &[
    ("append", G::Append, 1, false),
    ("delete", G::Delete, 1, false),
    ("check", G::Check, 1, false),
    ("insert", G::Insert, 1, false),
    ("replace", G::Replace, 1, false),
    ("list", G::List, 0, false),
    ("list-rules", G::ListRules, 0, false),
    ("flush", G::Flush, 0, false),
    ("zero", G::Zero, 0, false),
    ("new-chain", G::NewChain, 1, false),
    ("delete-chain", G::DeleteChain, 0, false),
    ("rename-chain", G::Rename, 1, false),
    ("policy", G::Policy, 1, false),
    ("source", G::Src, 1, true),
    ("destination", G::Dst, 1, true),
    ("src", G::Src, 1, true),
    ("dst", G::Dst, 1, true),
    ("protocol", G::Proto, 1, true),
    ("in-interface", G::InIf, 1, true),
    ("jump", G::Jump, 1, false),
    ("table", G::Table, 1, false),
    ("match", G::MatchMod, 1, false),
    ("numeric", G::Numeric, 0, false),
    ("out-interface", G::OutIf, 1, true),
    ("verbose", G::Verbose, 0, false),
    ("wait", G::Wait, 0, false),
    ("wait-interval", G::WaitInterval, 1, false),
    ("exact", G::Exact, 0, false),
    ("fragments", G::Frag, 0, true),
    ("version", G::Unsupported, 0, false),
    ("help", G::Unsupported, 0, false),
    ("line-numbers", G::LineNumbers, 0, false),
    ("modprobe", G::Unsupported, 1, false),
    ("set-counters", G::Counters, 2, false),
    ("goto", G::Goto, 1, false),
    ("ipv4", G::Ipv4, 0, false),
    ("ipv6", G::Ipv6, 0, false),
];

pub(super) fn short_opt(c: char) -> Option<G> {
    Some(match c {
        'A' => G::Append,
        'D' => G::Delete,
        'C' => G::Check,
        'I' => G::Insert,
        'R' => G::Replace,
        'L' => G::List,
        'S' => G::ListRules,
        'F' => G::Flush,
        'Z' => G::Zero,
        'N' => G::NewChain,
        'X' => G::DeleteChain,
        'E' => G::Rename,
        'P' => G::Policy,
        's' => G::Src,
        'd' => G::Dst,
        'p' => G::Proto,
        'i' => G::InIf,
        'o' => G::OutIf,
        'j' => G::Jump,
        'g' => G::Goto,
        't' => G::Table,
        'm' => G::MatchMod,
        'n' => G::Numeric,
        'v' => G::Verbose,
        'w' => G::Wait,
        'W' => G::WaitInterval,
        'x' => G::Exact,
        'f' => G::Frag,
        'c' => G::Counters,
        '4' => G::Ipv4,
        '6' => G::Ipv6,
        _ => return None,
    })
}

impl Line<'_> {
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

    #[allow(clippy::too_many_arguments)]
    pub(super) fn apply_generic(
        &mut self,
        id: G,
        shown: &str,
        neg: bool,
        col: u32,
        a0: &str,
        c0: u32,
        args: &[(String, u32)],
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
            G::Append => {
                let c = chain_arg(self, a0, c0)?;
                self.set_cmd(Cmd::Append(c), col, c0)
            }
            G::Insert => {
                let c = chain_arg(self, a0, c0)?;
                let n = match self.toks.get(self.pos) {
                    Some(t) if !t.text.is_empty() && t.text.bytes().all(|b| b.is_ascii_digit()) => {
                        self.pos += 1;
                        self.rulenum(&t.text.clone(), t.col)?
                    }
                    _ => 1,
                };
                self.set_cmd(Cmd::Insert(c, n), col, c0)
            }
            G::Delete => {
                let c = chain_arg(self, a0, c0)?;
                match self.toks.get(self.pos) {
                    Some(t) if !t.text.is_empty() && t.text.bytes().all(|b| b.is_ascii_digit()) => {
                        self.pos += 1;
                        let n = self.rulenum(&t.text.clone(), t.col)?;
                        self.set_cmd(Cmd::DeleteNum(c, n), col, c0)
                    }
                    _ => self.set_cmd(Cmd::DeleteSpec(c), col, c0),
                }
            }
            G::Replace => {
                let c = chain_arg(self, a0, c0)?;
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
            G::NewChain => {
                let c = chain_arg(self, a0, c0)?;
                self.set_cmd(Cmd::NewChain(c), col, c0)
            }
            G::Rename => {
                let c = chain_arg(self, a0, c0)?;
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
            G::Policy => {
                let c = chain_arg(self, a0, c0)?;
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
            G::DeleteChain | G::Flush | G::Zero | G::List | G::ListRules => {
                let w = self.optional_word();
                let ac = w.as_ref().map(|w| w.1).unwrap_or(col);
                let name = w.map(|w| w.0);
                if id == G::Zero && name.is_some() {
                    // `-Z CHAIN [rulenum]`: counters are not kept, the number is only checked.
                    if let Some((n, nc)) = self.optional_word() {
                        self.rulenum(&n, nc)?;
                    }
                }
                let cmd = match id {
                    G::DeleteChain => Cmd::DeleteChain(name),
                    G::Flush => Cmd::Flush(name),
                    G::Zero => Cmd::Zero(name),
                    G::List => Cmd::List(name),
                    _ => Cmd::ListRules(name),
                };
                self.set_cmd(cmd, col, ac)
            }
            G::Check => self.err(
                col,
                Fail {
                    msg: "`-C` (check) is not supported".into(),
                    hint: None,
                },
            ),
            G::Proto => {
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
                let p = values::protocol(a0).map_err(|f| Diag::at(self.line, c0, f))?;
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
            G::Src | G::Dst => {
                let is_src = id == G::Src;
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
            G::InIf | G::OutIf => {
                let is_in = id == G::InIf;
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
                let v = values::interface(a0, neg).map_err(|f| Diag::at(self.line, c0, f))?;
                if is_in {
                    self.rule.in_iface = v;
                } else {
                    self.rule.out_iface = v;
                }
                Ok(())
            }
            G::Frag => {
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
            G::Jump | G::Goto => self.set_target(id == G::Goto, a0, c0, col),
            G::MatchMod => {
                let name = a0;
                self.load_match(name, c0)
            }
            G::Table => {
                if self.in_restore {
                    return self.err(
                        col,
                        Fail {
                            msg: "`-t` cannot be used in a restore file".into(),
                            hint: Some("the table comes from the `*table` line".into()),
                        },
                    );
                }
                match TableName::from_name(a0) {
                    Some(t) => {
                        self.table_opt = Some((t, c0));
                        Ok(())
                    }
                    None => self.err(
                        c0,
                        Fail {
                            msg: format!("unknown table `{a0}`"),
                            hint: Some("fwd supports filter, nat, raw, mangle and security".into()),
                        },
                    ),
                }
            }
            G::Counters => {
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
                for (a, c) in args {
                    values::number(a, u64::MAX, "counter")
                        .map_err(|f| Diag::at(self.line, *c, f))?;
                }
                Ok(())
            }
            G::Numeric => {
                self.numeric = true;
                Ok(())
            }
            G::Verbose | G::Exact | G::LineNumbers | G::Wait | G::WaitInterval => Ok(()),
            G::Ipv4 | G::Ipv6 => {
                let want = if id == G::Ipv4 {
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
            G::Unsupported => self.err(
                col,
                Fail {
                    msg: format!("option `{shown}` is not supported"),
                    hint: None,
                },
            ),
        }
    }
}
