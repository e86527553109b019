//! `-j`/`-g`: the standard verdicts (ACCEPT, DROP, RETURN), the extension targets of
//! [`registry::TARGETS`] (one file each here, as iptables' `libxt_TARGET.c`), user chains, and
//! what to say about a name that is none of them.

pub(in crate::parse) mod ct;
pub(in crate::parse) mod log;
pub(in crate::parse) mod mark;
pub(in crate::parse) mod nat;
pub(in crate::parse) mod reject;
pub(in crate::parse) mod rewrite;

use super::{real, registry, suggest, Diag, Line};
use crate::ast::*;
use crate::values::Fail;

impl Line<'_> {
    pub(in crate::parse) fn set_target(
        &mut self,
        goto: bool,
        name: &str,
        c0: u32,
        col: u32,
    ) -> Result<(), Diag> {
        if self.target.is_some() || self.rule.target.is_some() {
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
        if let Some(ext) = registry::find_target(name, self.family) {
            self.target = Some((ext, (ext.new)(self.family)));
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
            None => self.err(c0, self.unknown_target(name)),
        }
    }

    /// Why `-j NAME` is neither a target fwd has nor a declared chain.
    fn unknown_target(&self, name: &str) -> Fail {
        let supported = || {
            format!(
                "fwd supports ACCEPT, DROP, RETURN, {} and user chains",
                registry::target_names(self.family).join(", ")
            )
        };
        let other = match (name, self.family) {
            ("TTL", Family::Ipv6) => Some("ip6tables rewrites the hop limit with `-j HL`"),
            ("HL", Family::Ipv4) => Some("iptables rewrites the TTL with `-j TTL`"),
            ("ECN", Family::Ipv6) => Some("ip6tables has no ECN target (iptables has)"),
            _ => None,
        };
        if let Some(hint) = other {
            return Fail {
                msg: format!("`-j {name}` does not exist in this family"),
                hint: Some(hint.into()),
            };
        }
        if let Some(msg) = real::unsupported(real::Kind::Target, name, self.family) {
            let hint = match name {
                "ULOG" => "ULOG was removed from Linux 3.17; use `-j NFLOG`".to_string(),
                _ => supported(),
            };
            return Fail {
                msg,
                hint: Some(hint),
            };
        }
        let mut all: Vec<&str> = vec!["ACCEPT", "DROP", "RETURN"];
        all.extend(registry::target_names(self.family));
        let chains: Vec<&str> = self
            .table
            .chains
            .iter()
            .filter(|c| c.builtin.is_none())
            .map(|c| c.name.as_str())
            .collect();
        all.extend(chains);
        let hint = suggest(name, &all).map(|s| format!("did you mean `{s}`?")).or_else(|| {
            Some(format!("a user chain must be declared (`:{name} - [0:0]` or `-N {name}`) before rules use it"))
        });
        Fail {
            msg: format!("unknown target or chain `{name}`"),
            hint,
        }
    }

    fn chain_hint(&self, name: &str) -> Option<String> {
        let chains: Vec<&str> = self.table.chains.iter().map(|c| c.name.as_str()).collect();
        suggest(name, &chains)
            .map(|s| format!("did you mean `{s}`?"))
            .or_else(|| Some("declare it first with `:NAME - [0:0]` or `-N NAME`".into()))
    }
}
