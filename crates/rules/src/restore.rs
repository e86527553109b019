//! The `iptables-restore` file driver, command execution against a table, and the checks the
//! kernel makes when a table is committed (reported on the rule's own line, not on `COMMIT`).

use std::collections::{BTreeMap, BTreeSet};

use crate::ast::*;
use crate::lex::{split_restore, Tok};
use crate::parse::{parse_command, suggest, Cmd, Diag, ParsedCmd};
use crate::values::Fail;

fn d(line: u32, col: u32, msg: impl Into<String>, hint: Option<String>) -> Diag {
    Diag {
        line,
        col,
        msg: msg.into(),
        hint,
    }
}

/// Names a user chain may not take.
const RESERVED: &[&str] = &[
    "ACCEPT",
    "DROP",
    "RETURN",
    "QUEUE",
    "REJECT",
    "LOG",
    "NFLOG",
    "ULOG",
    "SNAT",
    "DNAT",
    "MASQUERADE",
    "REDIRECT",
    "NOTRACK",
    "CT",
    "NFQUEUE",
    "MARK",
];

pub(crate) fn check_chain_name(name: &str) -> Result<(), Fail> {
    if name.is_empty() {
        return Err(Fail {
            msg: "empty chain name".into(),
            hint: None,
        });
    }
    if name.len() > 28 {
        return Err(Fail {
            msg: format!(
                "chain name `{name}` is too long ({} characters)",
                name.len()
            ),
            hint: Some("chain names have at most 28 characters".into()),
        });
    }
    if name.starts_with('-') || name == "!" {
        return Err(Fail {
            msg: format!("chain name `{name}` may not start with `-` or be `!`"),
            hint: None,
        });
    }
    if RESERVED.contains(&name) {
        return Err(Fail {
            msg: format!("chain name `{name}` clashes with a target name"),
            hint: None,
        });
    }
    Ok(())
}

fn chain_or_err<'t>(
    t: &'t mut Table,
    name: &str,
    line: u32,
    col: u32,
) -> Result<&'t mut Chain, Diag> {
    if t.chain(name).is_none() {
        let names: Vec<&str> = t.chains.iter().map(|c| c.name.as_str()).collect();
        let hint = suggest(name, &names)
            .map(|s| format!("did you mean `{s}`?"))
            .or_else(|| {
                Some(if Hook::from_name(name).is_some() {
                    let b: Vec<&str> = t.name.builtin_chains().iter().map(|h| h.as_str()).collect();
                    format!(
                        "the built-in chains of table {} are {}",
                        t.name.as_str(),
                        b.join(", ")
                    )
                } else {
                    format!("declare it with `:{name} - [0:0]` or `-N {name}` first")
                })
            });
        return Err(d(
            line,
            col,
            format!("chain `{name}` does not exist in table {}", t.name.as_str()),
            hint,
        ));
    }
    Ok(t.chain_mut(name).expect("checked above"))
}

fn references(t: &Table, name: &str) -> Vec<u32> {
    t.chains
        .iter()
        .flat_map(|c| c.rules.iter())
        .filter(|r| matches!(&r.target, Some(Target::Jump(n) | Target::Goto(n)) if n == name))
        .map(|r| r.line)
        .collect()
}

/// Executes a parsed command on `t`. Returns text for `-L`/`-S`.
pub(crate) fn apply(
    t: &mut Table,
    pc: ParsedCmd,
    line: u32,
    list: &dyn Fn(&Table, Option<&str>, bool) -> String,
) -> Result<Option<String>, Diag> {
    let ac = pc.arg_col;
    let cc = pc.cmd_col;
    match pc.cmd {
        Cmd::Append(c) => {
            chain_or_err(t, &c, line, ac)?.rules.extend(pc.rules);
        }
        Cmd::Insert(c, n) => {
            let ch = chain_or_err(t, &c, line, ac)?;
            let at = n as usize - 1;
            if at > ch.rules.len() {
                return Err(d(
                    line,
                    cc,
                    format!(
                        "cannot insert at rule {n}: chain `{c}` has {} rule(s)",
                        ch.rules.len()
                    ),
                    None,
                ));
            }
            // iptables inserts each expanded rule at the same position, reversing them.
            for r in pc.rules {
                ch.rules.insert(at, r);
            }
        }
        Cmd::DeleteSpec(c) => {
            let ch = chain_or_err(t, &c, line, ac)?;
            for r in &pc.rules {
                match ch.rules.iter().position(|x| x.same_spec(r)) {
                    Some(i) => {
                        ch.rules.remove(i);
                    }
                    None => {
                        return Err(d(
                            line,
                            cc,
                            format!("no such rule in chain `{c}` to delete"),
                            Some(
                                "`-D` needs a rule identical to an existing one, or its number"
                                    .into(),
                            ),
                        ))
                    }
                }
            }
        }
        Cmd::DeleteNum(c, n) | Cmd::Replace(c, n) => {
            let replace = !pc.rules.is_empty();
            let ch = chain_or_err(t, &c, line, ac)?;
            let i = n as usize - 1;
            if i >= ch.rules.len() {
                return Err(d(
                    line,
                    cc,
                    format!(
                        "no rule {n} in chain `{c}` (it has {} rule(s))",
                        ch.rules.len()
                    ),
                    None,
                ));
            }
            if replace {
                ch.rules[i] = pc.rules.into_iter().next().expect("checked above");
            } else {
                ch.rules.remove(i);
            }
        }
        Cmd::NewChain(c) => {
            check_chain_name(&c).map_err(|f| Diag::at(line, ac, f))?;
            if t.chain(&c).is_some() {
                return Err(d(line, ac, format!("chain `{c}` already exists"), None));
            }
            t.add_user_chain(&c);
        }
        Cmd::DeleteChain(Some(c)) => {
            let ch = chain_or_err(t, &c, line, ac)?;
            if ch.builtin.is_some() {
                return Err(d(
                    line,
                    ac,
                    format!("cannot delete built-in chain `{c}`"),
                    None,
                ));
            }
            if !ch.rules.is_empty() {
                return Err(d(
                    line,
                    ac,
                    format!("chain `{c}` is not empty"),
                    Some(format!("flush it first with `-F {c}`")),
                ));
            }
            let refs = references(t, &c);
            if let Some(l) = refs.first() {
                return Err(d(
                    line,
                    ac,
                    format!("chain `{c}` is still referenced (by the rule from line {l})"),
                    None,
                ));
            }
            t.chains.retain(|x| x.name != c);
        }
        Cmd::DeleteChain(None) => {
            let users: Vec<String> = t
                .chains
                .iter()
                .filter(|c| c.builtin.is_none())
                .map(|c| c.name.clone())
                .collect();
            for c in &users {
                if let Some(l) = references(t, c).first() {
                    return Err(d(
                        line,
                        cc,
                        format!("chain `{c}` is still referenced (by the rule from line {l})"),
                        None,
                    ));
                }
                if !t.chain(c).is_some_and(|x| x.rules.is_empty()) {
                    return Err(d(
                        line,
                        cc,
                        format!("chain `{c}` is not empty"),
                        Some("flush first with `-F`".into()),
                    ));
                }
            }
            t.chains.retain(|x| x.builtin.is_some());
        }
        Cmd::Policy(c, p) => {
            let ch = chain_or_err(t, &c, line, ac)?;
            if ch.builtin.is_none() {
                return Err(d(
                    line,
                    ac,
                    format!("cannot set a policy on user chain `{c}`"),
                    Some("only built-in chains have policies".into()),
                ));
            }
            ch.policy = Some(parse_policy(&p).map_err(|f| Diag::at(line, ac, f))?);
        }
        Cmd::Flush(c) => match c {
            Some(c) => chain_or_err(t, &c, line, ac)?.rules.clear(),
            None => t.chains.iter_mut().for_each(|c| c.rules.clear()),
        },
        Cmd::Zero(c) => {
            if let Some(c) = c {
                chain_or_err(t, &c, line, ac)?;
            }
        }
        Cmd::Rename(old, new) => {
            let ch = chain_or_err(t, &old, line, ac)?;
            if ch.builtin.is_some() {
                return Err(d(
                    line,
                    ac,
                    format!("cannot rename built-in chain `{old}`"),
                    None,
                ));
            }
            check_chain_name(&new).map_err(|f| Diag::at(line, ac, f))?;
            if t.chain(&new).is_some() {
                return Err(d(line, ac, format!("chain `{new}` already exists"), None));
            }
            let rules = std::mem::take(&mut t.chain_mut(&old).expect("exists").rules);
            t.chains.retain(|x| x.name != old);
            t.add_user_chain(&new);
            t.chain_mut(&new).expect("added").rules = rules;
            for c in &mut t.chains {
                for r in &mut c.rules {
                    match &mut r.target {
                        Some(Target::Jump(n) | Target::Goto(n)) if *n == old => *n = new.clone(),
                        _ => {}
                    }
                }
            }
        }
        Cmd::Nothing => {}
        Cmd::List(c) | Cmd::ListRules(c) => {
            if let Some(c) = &c {
                chain_or_err(t, c, line, ac)?;
            }
            let is_list = matches!(pc.cmd_col, _ if true);
            let _ = is_list;
            return Ok(Some(list(t, c.as_deref(), pc.list_numeric)));
        }
    }
    Ok(None)
}

pub(crate) fn parse_policy(p: &str) -> Result<Policy, Fail> {
    match p {
        "ACCEPT" => Ok(Policy::Accept),
        "DROP" => Ok(Policy::Drop),
        _ => Err(Fail {
            msg: format!("bad policy `{p}`"),
            hint: Some(
                if p.eq_ignore_ascii_case("accept") || p.eq_ignore_ascii_case("drop") {
                    format!("did you mean `{}`?", p.to_ascii_uppercase())
                } else {
                    "a built-in chain's policy is ACCEPT or DROP".into()
                },
            ),
        }),
    }
}

fn target_hooks(t: &Target) -> Option<(&'static str, &'static [Hook])> {
    Some(match t {
        Target::Reject(_) => ("REJECT", &[Hook::Input, Hook::Forward, Hook::Output]),
        Target::Snat(_) => ("SNAT", &[Hook::Postrouting, Hook::Input]),
        Target::Dnat(_) => ("DNAT", &[Hook::Prerouting, Hook::Output]),
        Target::Redirect { .. } => ("REDIRECT", &[Hook::Prerouting, Hook::Output]),
        Target::Masquerade { .. } => ("MASQUERADE", &[Hook::Postrouting]),
        Target::Classify(_) => (
            "CLASSIFY",
            &[Hook::Forward, Hook::Output, Hook::Postrouting],
        ),
        Target::Tcpmss(Tcpmss::ClampPmtu) => (
            "TCPMSS --clamp-mss-to-pmtu",
            &[Hook::Forward, Hook::Output, Hook::Postrouting],
        ),
        _ => return None,
    })
}

fn hook_names(mask: u8) -> String {
    Hook::ALL
        .iter()
        .filter(|h| mask & h.bit() != 0)
        .map(|h| h.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The checks the kernel makes at COMMIT: jump loops and targets/matches used from hooks they
/// do not support (also through user chains). Blames the offending rule's line.
pub(crate) fn validate_table(t: &Table) -> Vec<Diag> {
    let mut out = Vec::new();
    let idx: BTreeMap<&str, usize> = t
        .chains
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.as_str(), i))
        .collect();
    let edges = |i: usize| -> Vec<(usize, u32)> {
        t.chains[i]
            .rules
            .iter()
            .filter_map(|r| match &r.target {
                Some(Target::Jump(n) | Target::Goto(n)) => {
                    idx.get(n.as_str()).map(|j| (*j, r.line))
                }
                _ => None,
            })
            .collect()
    };
    // Loops: depth-first search with colours; a back edge closes a cycle.
    let n = t.chains.len();
    let mut colour = vec![0u8; n];
    let mut reported = BTreeSet::new();
    fn dfs(
        i: usize,
        colour: &mut [u8],
        edges: &dyn Fn(usize) -> Vec<(usize, u32)>,
        t: &Table,
        path: &mut Vec<usize>,
        out: &mut Vec<Diag>,
        reported: &mut BTreeSet<u32>,
    ) {
        colour[i] = 1;
        path.push(i);
        for (j, line) in edges(i) {
            if colour[j] == 1 {
                if reported.insert(line) {
                    let start = path.iter().position(|p| *p == j).unwrap_or(0);
                    let mut names: Vec<&str> = path[start..]
                        .iter()
                        .map(|p| t.chains[*p].name.as_str())
                        .collect();
                    names.push(t.chains[j].name.as_str());
                    out.push(d(
                        line,
                        1,
                        format!("this jump makes a loop: {}", names.join(" -> ")),
                        Some("the kernel refuses chains that can reach themselves".into()),
                    ));
                }
            } else if colour[j] == 0 {
                dfs(j, colour, edges, t, path, out, reported);
            }
        }
        path.pop();
        colour[i] = 2;
    }
    // Like the kernel, only loops reachable from a built-in chain count.
    for i in 0..n {
        if colour[i] == 0 && t.chains[i].builtin.is_some() {
            dfs(
                i,
                &mut colour,
                &edges,
                t,
                &mut Vec::new(),
                &mut out,
                &mut reported,
            );
        }
    }
    // Hooks reaching each chain (fixpoint over jumps).
    let mut reach = vec![0u8; n];
    for (i, c) in t.chains.iter().enumerate() {
        if let Some(h) = c.builtin {
            reach[i] = h.bit();
        }
    }
    loop {
        let mut changed = false;
        for i in 0..n {
            for (j, _) in edges(i) {
                if reach[j] | reach[i] != reach[j] {
                    reach[j] |= reach[i];
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    for (i, c) in t.chains.iter().enumerate() {
        for r in &c.rules {
            if let Some((name, hooks)) = r.target.as_ref().and_then(target_hooks) {
                let allowed: u8 = hooks.iter().map(|h| h.bit()).fold(0, |a, b| a | b);
                let bad = reach[i] & !allowed;
                if bad != 0 {
                    let via = if c.builtin.is_some() {
                        String::new()
                    } else {
                        format!(" (chain `{}` is reached from {})", c.name, hook_names(bad))
                    };
                    out.push(d(
                        r.line,
                        1,
                        format!("`-j {name}` is only valid in {}{via}", hook_names(allowed)),
                        None,
                    ));
                }
            }
            for (word, allowed, why) in r.matches.iter().filter_map(|m| match_hooks(t.name, m)) {
                let bad = reach[i] & !allowed;
                if bad != 0 {
                    out.push(d(
                        r.line,
                        1,
                        if allowed == 0 {
                            format!("`{word}` is not valid in table {}", t.name.as_str())
                        } else {
                            format!(
                                "`{word}` is only valid in {} (this rule is reached from {})",
                                hook_names(allowed),
                                hook_names(bad)
                            )
                        },
                        Some(why.into()),
                    ));
                }
            }
            if r.matches.iter().any(|m| matches!(m, Match::Mac { .. })) {
                let allowed = Hook::Prerouting.bit() | Hook::Input.bit() | Hook::Forward.bit();
                let bad = reach[i] & !allowed;
                if bad != 0 {
                    out.push(d(r.line, 1, format!("`-m mac` is only valid in PREROUTING, INPUT and FORWARD (this rule is reached from {})", hook_names(bad)), Some("the source MAC is known only for received packets".into())));
                }
            }
        }
    }
    out.sort_by_key(|x| x.line);
    out
}

/// The hooks the kernel allows a match in, where it restricts them (beyond `-m mac`): the
/// option that makes it so, the allowed hooks' bits, and why.
fn match_hooks(table: TableName, m: &Match) -> Option<(&'static str, u8, &'static str)> {
    let all = Hook::ALL.iter().fold(0, |a, h| a | h.bit());
    match m {
        Match::Addrtype(t) if t.limit_in => Some((
            "--limit-iface-in",
            all & !(Hook::Output.bit() | Hook::Postrouting.bit()),
            "locally generated packets have no input interface",
        )),
        Match::Addrtype(t) if t.limit_out => Some((
            "--limit-iface-out",
            all & !(Hook::Prerouting.bit() | Hook::Input.bit()),
            "the output interface is not known before routing",
        )),
        Match::HostOnly(h) => {
            let (word, hooks, why): (_, &[Hook], _) = match h.kind {
                HostOnlyKind::Owner => (
                    "-m owner",
                    &[Hook::Output, Hook::Postrouting],
                    "only locally generated packets have an owner",
                ),
                HostOnlyKind::Socket => (
                    "-m socket",
                    &[Hook::Prerouting, Hook::Input],
                    "it looks up the local socket an incoming packet is for",
                ),
                HostOnlyKind::Rpfilter => (
                    "-m rpfilter",
                    &[Hook::Prerouting],
                    "the reverse path is checked on input (tables raw and mangle only)",
                ),
                HostOnlyKind::Cgroup => (
                    "-m cgroup",
                    &[Hook::Input, Hook::Output, Hook::Postrouting],
                    "only local sockets have a cgroup",
                ),
            };
            let mut allowed = hooks.iter().fold(0, |a, h| a | h.bit());
            if h.kind == HostOnlyKind::Rpfilter && !matches!(table.as_str(), "raw" | "mangle") {
                allowed = 0;
            }
            Some((word, allowed, why))
        }
        Match::Physdev(p) if crate::parse::stateless::physdev_needs_out(p) => Some((
            if p.physdev_out.is_some() {
                "--physdev-out"
            } else {
                "--physdev-is-out"
            },
            all & !Hook::Output.bit(),
            "in OUTPUT the bridge port is not chosen yet (add `--physdev-is-bridged`)",
        )),
        _ => None,
    }
}

struct Open {
    table: Table,
    line: u32,
    /// `usize::MAX` for an unknown table: its lines are skipped up to COMMIT.
    errors_before: usize,
}

/// Column of the first word of `line` that is one of `words` (1 if none).
fn locate(line: &str, words: &[&str]) -> u32 {
    split_restore(line)
        .ok()
        .and_then(|t| {
            t.into_iter()
                .find(|t| words.contains(&t.text.as_str()))
                .map(|t| t.col)
        })
        .unwrap_or(1)
}

/// Parses a whole restore file into `rs`; all errors are returned (and `rs` must then be
/// discarded by the caller).
pub(crate) fn restore(
    text: &str,
    family: Family,
    list: &dyn Fn(&Table, Option<&str>, bool) -> String,
) -> (Ruleset, Vec<Diag>) {
    let mut rs = Ruleset::new(family);
    let mut errs: Vec<Diag> = Vec::new();
    let mut open: Option<Open> = None;
    let mut last_line = 0u32;
    let mut crlf_reported = false;
    let n_lines = text.split('\n').count();
    for (i, raw) in text.split('\n').enumerate() {
        let line = i as u32 + 1;
        if raw.ends_with('\r') && !crlf_reported {
            // iptables-restore takes the CR as part of the last word and fails obscurely.
            crlf_reported = true;
            errs.push(d(
                line,
                raw.len() as u32,
                "line ends with a carriage return (CRLF line endings)",
                Some("convert the file to Unix (LF) line endings".into()),
            ));
        }
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.trim().is_empty() && i + 1 == n_lines {
            break;
        }
        last_line = line;
        if raw.starts_with('#') || raw.trim().is_empty() {
            continue;
        }
        let lead = raw.len() - raw.trim_start().len();
        let body = raw.trim_start();
        let col0 = lead as u32 + 1;
        if let Some(name) = body.strip_prefix('*') {
            // iptables-restore takes the table name after `*` with blanks around it (`* nat`).
            let name = name.trim();
            if let Some(o) = &open {
                errs.push(d(
                    line,
                    col0,
                    format!(
                        "`*{name}` before COMMIT of table {} (opened on line {})",
                        o.table.name.as_str(),
                        o.line
                    ),
                    Some("end each table with a COMMIT line".into()),
                ));
            }
            match TableName::from_name(name) {
                Some(t) => {
                    open = Some(Open {
                        table: Table::new(t),
                        line,
                        errors_before: errs.len(),
                    })
                }
                None => {
                    let hint = suggest(name, &["filter", "nat", "raw", "mangle", "security"])
                        .map(|s| format!("did you mean `{s}`?"))
                        .or_else(|| {
                            Some(
                                "fwd supports the filter, nat, raw, mangle and security tables"
                                    .into(),
                            )
                        });
                    errs.push(d(line, col0 + 1, format!("unknown table `{name}`"), hint));
                    open = Some(Open {
                        table: Table::new(TableName::Filter),
                        line,
                        errors_before: usize::MAX,
                    });
                }
            }
            continue;
        }
        if body.trim_end() == "COMMIT" {
            match open.take() {
                None => errs.push(d(
                    line,
                    col0,
                    "COMMIT without a table",
                    Some("start a table with `*filter`, `*nat` or `*raw`".into()),
                )),
                Some(o) => {
                    let lines: Vec<&str> = text.split('\n').collect();
                    for mut e in validate_table(&o.table) {
                        let src = lines.get(e.line as usize - 1).copied().unwrap_or("");
                        e.col = if e.msg.starts_with("`-m mac`") {
                            locate(src, &["mac"])
                        } else if let Some(w) = e
                            .msg
                            .strip_prefix('`')
                            .and_then(|m| m.split('`').next())
                            .filter(|w| w.starts_with('-'))
                        {
                            locate(src, &[w.trim_start_matches("-m ")])
                        } else {
                            locate(src, &["-j", "-g", "--jump", "--goto"])
                        };
                        errs.push(e);
                    }
                    if o.errors_before != usize::MAX {
                        let name = o.table.name;
                        *rs.table_or_create(name) = o.table;
                    }
                }
            }
            continue;
        }
        let Some(o) = open.as_mut() else {
            errs.push(d(
                line,
                col0,
                "rule or chain outside a table",
                Some("start a table with `*filter`, `*nat` or `*raw`".into()),
            ));
            continue;
        };
        if o.errors_before == usize::MAX {
            continue;
        }
        let toks = match split_restore(raw) {
            Ok(t) => t,
            Err(c) => {
                errs.push(d(
                    line,
                    c,
                    "unterminated quote",
                    Some("close the `\"`".into()),
                ));
                continue;
            }
        };
        if body.starts_with(':') {
            if let Err(e) = chain_decl(&mut o.table, &toks, line) {
                errs.push(e);
            }
            continue;
        }
        let mut toks: &[Tok] = &toks;
        if let Some(first) = toks.first() {
            if first.text.starts_with('[') {
                if !is_counter(&first.text) {
                    errs.push(d(
                        line,
                        first.col,
                        format!("bad counters `{}`", first.text),
                        Some("expected [packets:bytes]".into()),
                    ));
                    continue;
                }
                toks = &toks[1..];
            }
        }
        match parse_command(toks, line, family, &o.table, true) {
            Ok(pc) => {
                if let Err(e) = apply(&mut o.table, pc, line, list) {
                    errs.push(e);
                }
            }
            Err(e) => errs.push(e),
        }
    }
    if let Some(o) = open {
        errs.push(d(
            last_line + 1,
            1,
            format!(
                "missing COMMIT for table {} (opened on line {})",
                o.table.name.as_str(),
                o.line
            ),
            Some("end each table with a COMMIT line".into()),
        ));
    }
    (rs, errs)
}

fn is_counter(s: &str) -> bool {
    s.strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .and_then(|s| s.split_once(':'))
        .is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        })
}

fn chain_decl(t: &mut Table, toks: &[Tok], line: u32) -> Result<(), Diag> {
    let first = &toks[0];
    let name = &first.text[1..];
    let col = first.col + 1;
    let Some(pol) = toks.get(1) else {
        return Err(d(
            line,
            first.col,
            format!("chain declaration `{}` has no policy", first.text),
            Some("expected `:CHAIN POLICY [packets:bytes]`, POLICY `-` for user chains".into()),
        ));
    };
    if let Some(c) = toks.get(2) {
        if !is_counter(&c.text) {
            return Err(d(
                line,
                c.col,
                format!("bad counters `{}`", c.text),
                Some("expected [packets:bytes]".into()),
            ));
        }
    }
    if let Some(x) = toks.get(3) {
        return Err(d(
            line,
            x.col,
            format!("unexpected `{}` after the chain declaration", x.text),
            None,
        ));
    }
    match t.chain_mut(name) {
        Some(c) if c.builtin.is_some() => {
            if pol.text != "-" {
                c.policy = Some(parse_policy(&pol.text).map_err(|f| Diag::at(line, pol.col, f))?);
            }
            Ok(())
        }
        Some(_) => Err(d(line, col, format!("chain `{name}` declared twice"), None)),
        None => {
            check_chain_name(name).map_err(|f| Diag::at(line, col, f))?;
            if pol.text != "-" {
                return Err(d(
                    line,
                    pol.col,
                    format!("user chain `{name}` cannot have policy `{}`", pol.text),
                    Some("write `-` as the policy of a user chain".into()),
                ));
            }
            t.add_user_chain(name);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> (Ruleset, Vec<Diag>) {
        restore(text, Family::Ipv4, &|_, _, _| String::new())
    }

    #[test]
    fn tables_print_in_reverse_order_of_first_use() {
        let (rs, e) = run("*filter\n:INPUT DROP [1:2]\nCOMMIT\n*raw\nCOMMIT\n*nat\nCOMMIT\n");
        assert!(e.is_empty(), "{e:?}");
        let names: Vec<&str> = rs.tables.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["nat", "raw", "filter"]);
        assert_eq!(
            rs.table(TableName::Filter)
                .unwrap()
                .chain("INPUT")
                .unwrap()
                .policy,
            Some(Policy::Drop)
        );
    }

    #[test]
    fn commit_time_errors_blame_the_rule() {
        let (_, e) = run("*filter\n:a - [0:0]\n-A INPUT -j a\n-A a -j a\nCOMMIT\n");
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].line, e[0].col), (4, 6));
        let (_, e) = run("*nat\n:x - [0:0]\n-A x -j DNAT --to-destination 198.18.0.1\n-A POSTROUTING -j x\nCOMMIT\n");
        assert_eq!(e[0].line, 3);
        assert!(
            e[0].msg.contains("reached from POSTROUTING"),
            "{}",
            e[0].msg
        );
    }

    #[test]
    fn all_errors_are_collected_and_missing_commit_is_after_the_end() {
        let (_, e) = run("*filter\n-A INPUT -p bogus\n-A NOPE -j DROP\n-A INPUT -j ACCEPT\n");
        let lines: Vec<u32> = e.iter().map(|d| d.line).collect();
        assert_eq!(lines, [2, 3, 5]);
    }

    #[test]
    fn rename_updates_references_and_order() {
        let (rs, e) = run("*filter\n:zz - [0:0]\n-A INPUT -j zz\n-E zz aa\nCOMMIT\n");
        assert!(e.is_empty(), "{e:?}");
        let t = rs.table(TableName::Filter).unwrap();
        assert_eq!(t.chains[3].name, "aa");
        assert_eq!(
            t.chain("INPUT").unwrap().rules[0].target,
            Some(Target::Jump("aa".into()))
        );
    }

    #[test]
    fn counters_and_comments_are_accepted() {
        let (rs, e) = run("# hi\n*filter\n:INPUT ACCEPT [10:20]\n[3:4] -A INPUT -j DROP\n  # not a comment in column 1\nCOMMIT\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].line, 5);
        let (rs2, e2) =
            run("# hi\n*filter\n:INPUT ACCEPT [10:20]\n[3:4] -A INPUT -j DROP\nCOMMIT\n");
        assert!(e2.is_empty());
        assert_eq!(
            rs2.table(TableName::Filter)
                .unwrap()
                .chain("INPUT")
                .unwrap()
                .rules
                .len(),
            1
        );
        let _ = rs;
    }
}
