//! The iptables/ip6tables language: `iptables-restore` files and single command lines parsed
//! with iptables 1.8.9's meaning into a normalised AST ([`ast`]), validated as iptables and the
//! kernel would (with `file:line:col` diagnostics, all of them, and no ruleset on any error),
//! and printed back as `iptables-save` text or a `-L -n -v --line-numbers` listing.
//!
//! Deliberate differences from iptables (fwd is stricter, never more lenient):
//! - UDP ports above 65535 and reversed UDP port ranges are rejected (iptables wraps/keeps them).
//! - NAT port shifts iptables takes but cannot restore from its own save text are rejected:
//!   `/base` on SNAT or MASQUERADE (saved as `/0`) and on a single DNAT port (saved `80/1000`).
//! - A failed file applies nothing (iptables keeps tables committed before the failure).
//! - Host names are never resolved; `ULOG` (gone since Linux 3.17) is rejected at parse time.
#![deny(unsafe_code)]

pub mod ast;
mod lex;
mod list;
mod parse;
mod print;
mod proto_ast;
mod proto_print;
mod restore;
mod services;
mod stateful_ast;
mod values;
mod warnings;
pub use warnings::Warning;

use std::fmt;
use std::path::Path;

pub use ast::*;
/// The calendar of `-m time` (days since the epoch to a UTC date).
pub use parse::time::civil as civil_date;
pub use print::rule_spec;

/// `-m hashlimit`'s units, as the data plane's token buckets need them.
pub mod hashlimit_units {
    pub use crate::parse::hashlimit::{
        cost_to_bytes, user2credits, BYTE_CREDITS_PER_SEC, BYTE_SHIFT, CREDITS_PER_SEC, SCALE,
    };
}
pub use proto_ast::{
    ChunkFlags, ChunkMatchType, ProtoPorts, SctpChunks, DCCP_INVALID_BITS, DCCP_TYPES, SCTP_CHUNKS,
};

/// Per-rule counters for [`Ruleset::to_list`]: `(chain, rule index) -> (packets, bytes)`;
/// rule index `usize::MAX` asks for the policy's counters.
pub type Counters<'a> = &'a dyn Fn(&str, usize) -> (u64, u64);

/// One error at a position of a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based byte column of the offending word.
    pub col: u32,
    pub message: String,
    /// What to do about it, when there is something useful to say.
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error: {}",
            self.file, self.line, self.col, self.message
        )?;
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

/// All errors of a source, in line order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

fn attach(file: &str, v: Vec<parse::Diag>) -> Diagnostics {
    let mut v: Vec<Diagnostic> = v
        .into_iter()
        .map(|d| Diagnostic {
            file: file.to_string(),
            line: d.line,
            col: d.col,
            message: d.msg,
            hint: d.hint,
        })
        .collect();
    v.sort_by_key(|d| (d.line, d.col));
    Diagnostics(v)
}

/// Parses an `iptables-restore` (or `ip6tables-restore`) text. Every error is reported; a text
/// with any error yields no ruleset.
pub fn parse_restore(
    source_name: &str,
    text: &str,
    family: Family,
) -> Result<Ruleset, Diagnostics> {
    let v6 = family == Family::Ipv6;
    let (rs, errs) = restore::restore(
        text,
        family,
        &|t: &Table, c: Option<&str>, _numeric: bool| list::list_table(t, c, None, v6),
    );
    if errs.is_empty() {
        Ok(rs)
    } else {
        Err(attach(source_name, errs))
    }
}

/// Reads and parses a restore file; an unreadable file is one diagnostic at line 0.
pub fn parse_restore_file(path: &Path, family: Family) -> Result<Ruleset, Diagnostics> {
    let name = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => parse_restore(&name, &text, family),
            Err(e) => Err(Diagnostics(vec![Diagnostic {
                file: name,
                line: 0,
                col: 0,
                message: format!(
                    "file is not UTF-8 text (byte {})",
                    e.utf8_error().valid_up_to()
                ),
                hint: None,
            }])),
        },
        Err(e) => Err(Diagnostics(vec![Diagnostic {
            file: name,
            line: 0,
            col: 0,
            message: format!("cannot read file: {e}"),
            hint: None,
        }])),
    }
}

/// Output formats of `fwd rules print`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrintFormat {
    /// `iptables-save` text.
    Save,
    /// `iptables -L -n -v --line-numbers` for every table, counters zero.
    List,
}

/// `fwd rules print FILE [--family ipv4|ipv6] [--format save|list]`.
pub fn cli_print(path: &Path, family: Family, format: PrintFormat) -> Result<String, Diagnostics> {
    let rs = parse_restore_file(path, family)?;
    Ok(match format {
        PrintFormat::Save => rs.to_save(),
        PrintFormat::List => {
            let mut out = String::new();
            for t in &rs.tables {
                out.push_str(&format!("# Table: {}\n", t.name.as_str()));
                out.push_str(&rs.to_list(t.name.as_str(), None));
            }
            out
        }
    })
}

impl Ruleset {
    /// `iptables-save` canonical text (without the `# Generated by`/`# Completed on` lines).
    pub fn to_save(&self) -> String {
        print::save(self)
    }

    /// `iptables -t TABLE -L -n -v --line-numbers`. `counters(chain, idx)` gives a rule's
    /// packets and bytes; `idx == usize::MAX` asks for the chain policy's counters. An unknown
    /// table gives an empty string.
    pub fn to_list(&self, table: &str, counters: Option<Counters<'_>>) -> String {
        match TableName::from_name(table).and_then(|t| self.table(t)) {
            Some(t) => list::list_table(t, None, counters, self.family == Family::Ipv6),
            None => String::new(),
        }
    }

    /// Runs one `iptables`/`ip6tables` command line (shell quoting; a leading `iptables`,
    /// `ip6tables` or `*-legacy` word is skipped; `-t` selects the table, default filter).
    /// `-L`/`-S` return their text. On error the ruleset is unchanged.
    pub fn apply_command(
        &mut self,
        source_name: &str,
        line: &str,
    ) -> Result<Option<String>, Diagnostics> {
        let one = |col: u32, msg: String, hint: Option<String>| {
            Diagnostics(vec![Diagnostic {
                file: source_name.to_string(),
                line: 1,
                col,
                message: msg,
                hint,
            }])
        };
        let toks = lex::split_shell(line).map_err(|c| one(c, "unterminated quote".into(), None))?;
        let mut toks: &[lex::Tok] = &toks;
        if let Some(f) = toks.first() {
            if f.text.ends_with("iptables")
                || f.text.ends_with("ip6tables")
                || f.text.ends_with("tables-legacy")
            {
                toks = &toks[1..];
            }
        }
        // The table must be known before the rule is read (jump targets are its chains).
        let mut table = TableName::Filter;
        for w in toks.windows(2) {
            if w[0].text == "-t" || w[0].text == "--table" {
                match TableName::from_name(&w[1].text) {
                    Some(t) => table = t,
                    None => {
                        return Err(one(
                            w[1].col,
                            format!("unknown table `{}`", w[1].text),
                            Some("fwd supports filter, nat, raw, mangle and security".into()),
                        ))
                    }
                }
            }
        }
        let mut work = self
            .table(table)
            .cloned()
            .unwrap_or_else(|| Table::new(table));
        let pc = parse::parse_command(toks, 1, self.family, &work, false)
            .map_err(|d| attach(source_name, vec![d]))?;
        debug_assert!(pc.table.is_none_or(|(t, _)| t == table));
        let is_list = matches!(pc.cmd, parse::Cmd::List(_));
        let v6 = self.family == Family::Ipv6;
        let out = restore::apply(&mut work, pc, 1, &|t: &Table, c: Option<&str>, _n: bool| {
            if is_list {
                list::list_table(t, c, None, v6)
            } else {
                print::list_rules(t, c)
            }
        })
        .map_err(|d| attach(source_name, vec![d]))?;
        let errs = restore::validate_table(&work);
        if !errs.is_empty() {
            return Err(attach(source_name, errs));
        }
        *self.table_or_create(table) = work;
        Ok(out)
    }
}

/// Parses a single rule specification (what follows `-A CHAIN`) against `table` of `rs`; for
/// tools and tests that build rules one at a time.
pub fn parse_rule(
    rs: &Ruleset,
    table: TableName,
    chain: &str,
    spec: &str,
) -> Result<Vec<Rule>, Diagnostics> {
    let line = format!("-A {chain} {spec}");
    let toks = lex::split_restore(&line).map_err(|c| {
        Diagnostics(vec![Diagnostic {
            file: "<rule>".into(),
            line: 1,
            col: c,
            message: "unterminated quote".into(),
            hint: None,
        }])
    })?;
    let t = rs
        .table(table)
        .cloned()
        .unwrap_or_else(|| Table::new(table));
    let pc = parse::parse_command(&toks, 1, rs.family, &t, true)
        .map_err(|d| attach("<rule>", vec![d]))?;
    Ok(pc.rules)
}

/// The body of the `parse_restore` fuzz target, shared with the plain test that runs it over
/// the corpus: any bytes must parse or fail without panicking, and whatever parses must print
/// and re-parse to the same ruleset.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// Ruleset with source lines cleared, tables in name order, the conditions that
    /// iptables-save does not print (`! -i +`, `--tcp-flags` with an empty mask) removed and
    /// limit rates rounded as iptables-save prints them, for
    /// comparing a ruleset with the re-parse of its printed text.
    pub fn normalised(rs: &Ruleset) -> Ruleset {
        let mut rs = rs.clone();
        rs.tables.sort_by_key(|t| t.name);
        for t in &mut rs.tables {
            for c in &mut t.chains {
                for r in &mut c.rules {
                    r.line = 0;
                    for i in [&mut r.in_iface, &mut r.out_iface] {
                        if i.as_ref().is_some_and(|i| i.name.is_empty()) {
                            *i = None;
                        }
                    }
                    for m in &mut r.matches {
                        if let Match::Tcp(tm) = m {
                            if tm.flags.is_some_and(|f| f.mask == 0 && !f.negated) {
                                tm.flags = None;
                            }
                        }
                        // iptables-save prints rates rounded (`1503/minute` -> `25/sec`).
                        if let Match::Limit(l) = m {
                            if let Ok(avg) = values::limit_rate(&print::rate_text(l.avg)) {
                                l.avg = avg;
                            }
                        }
                    }
                }
            }
        }
        rs
    }

    pub fn parse_restore_body(data: &[u8]) {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        for family in [Family::Ipv4, Family::Ipv6] {
            // Each line also as a shell command line against an empty ruleset.
            let mut cli = Ruleset::new(family);
            for line in text.lines().take(64) {
                if let Ok(Some(out)) = cli.apply_command("fuzz-cli", line) {
                    let _ = out.len();
                }
            }
            let cli_saved = cli.to_save();
            match parse_restore("fuzz-cli-reparse", &cli_saved, family) {
                Ok(again) => assert_eq!(
                    normalised(&again),
                    normalised(&cli),
                    "re-parse differs:\n{cli_saved}"
                ),
                Err(d) => panic!("printed text of command lines does not parse:\n{cli_saved}\n{d}"),
            }
            if let Ok(rs) = parse_restore("fuzz", text, family) {
                let saved = rs.to_save();
                for t in &rs.tables {
                    let _ = rs.to_list(t.name.as_str(), None);
                }
                match parse_restore("fuzz-reparse", &saved, family) {
                    Ok(again) => assert_eq!(
                        normalised(&again),
                        normalised(&rs),
                        "re-parse of printed text differs:\n{saved}"
                    ),
                    Err(d) => panic!("printed text does not parse:\n{saved}\n{d}"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: &str = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:ssh - [0:0]\n-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A INPUT -p tcp --dport 22 -j ssh\n-A ssh -s 198.18.0.0/15 -j ACCEPT\nCOMMIT\n";

    #[test]
    fn diagnostics_display_one_per_line() {
        let d = parse_restore(
            "rules.v4",
            "*filter\n-A INPUT -j accept\n-A INPUT -s host.example\nCOMMIT\n",
            Family::Ipv4,
        )
        .unwrap_err();
        let text = d.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].starts_with("rules.v4:2:13: error: unknown target or chain `accept`"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].starts_with("rules.v4:3:13: error: host names are not resolved"),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn list_shows_counters_from_the_caller() {
        let rs = parse_restore("home", HOME, Family::Ipv4).unwrap();
        let counters = |chain: &str, idx: usize| {
            if chain == "INPUT" && idx == 1 {
                (150_000, 9_000_000)
            } else {
                (0, 0)
            }
        };
        let out = rs.to_list("filter", Some(&counters));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "Chain INPUT (policy DROP 0 packets, 0 bytes)");
        assert_eq!(lines[3], "2     150K 9000K ssh        6    --  *      *       0.0.0.0/0            0.0.0.0/0            tcp dpt:22");
        assert!(out.contains("Chain ssh (1 references)"));
        assert_eq!(rs.to_list("mangle", None), "");
    }

    #[test]
    fn commands_apply_to_a_ruleset() {
        let mut rs = parse_restore("home", HOME, Family::Ipv4).unwrap();
        rs.apply_command("cli", "iptables -I INPUT 1 -i lo -j ACCEPT")
            .unwrap();
        rs.apply_command(
            "cli",
            "iptables -t nat -A POSTROUTING -o eth0 -j MASQUERADE",
        )
        .unwrap();
        let err = rs
            .apply_command(
                "cli",
                "iptables -A INPUT -m comment --comment 'it''s' -j NOPE",
            )
            .unwrap_err();
        assert!(err.0[0].message.contains("NOPE"));
        let s = rs
            .apply_command("cli", "iptables -S INPUT")
            .unwrap()
            .unwrap();
        assert_eq!(s.lines().next(), Some("-P INPUT DROP"));
        assert_eq!(s.lines().nth(1), Some("-A INPUT -i lo -j ACCEPT"));
        assert!(rs
            .to_save()
            .contains("-A POSTROUTING -o eth0 -j MASQUERADE"));
        assert!(
            rs.apply_command("cli", "iptables -X ssh").is_err(),
            "referenced chain"
        );
        let mut v6 = Ruleset::new(Family::Ipv6);
        v6.apply_command("cli", "ip6tables -t nat -A POSTROUTING -j MASQUERADE")
            .unwrap();
        assert!(v6.to_save().contains("-A POSTROUTING -j MASQUERADE\n"));
    }

    #[test]
    fn cli_print_reads_files() {
        let dir = std::env::temp_dir().join(format!("rules-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("home.v4");
        std::fs::write(&p, HOME).unwrap();
        let save = cli_print(&p, Family::Ipv4, PrintFormat::Save).unwrap();
        assert!(save.contains("-A INPUT -p tcp -m tcp --dport 22 -j ssh"));
        let list = cli_print(&p, Family::Ipv4, PrintFormat::List).unwrap();
        assert!(list.starts_with("# Table: filter\nChain INPUT"));
        let missing = cli_print(&dir.join("nope"), Family::Ipv4, PrintFormat::Save).unwrap_err();
        assert!(missing.to_string().contains("cannot read file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
