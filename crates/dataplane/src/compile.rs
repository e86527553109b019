//! Compiles the iptables ASTs of both families into one immutable [`Compiled`] ruleset: every
//! chain of the tables the bridge traverses becomes a [`classify::Classifier`] plus, per rule,
//! a resolved target and the checks that are not classifier dimensions. Built off the data path
//! and shared by all workers behind an `Arc` (swapped atomically on reload).

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use classify::{
    ct, AddrMatch, Classifier, CtMatch, IcmpMatch, IfaceSet, PortMatch, ProtoMatch, RuleSpec,
    TcpFlagsMatch,
};
use rules::{ct_state, Family, Match, PortRange, Rule, Ruleset, TableName, Target};

use crate::limits::{HashlimitCheck, HashlimitTable};
use crate::rewrite::Rewrite;
use crate::stateful::{nstamps_for, RecentCheck, RecentTable, Statistic, IP_LIST_TOT};

pub use crate::compiled::{
    Compiled, CompiledChain, CompiledRule, FamilyRules, HookPoint, LeafCheck, LimitBucket, NatSpec,
    PortInfo, RuleCounters, RuleTarget,
};

/// What the compiler needs besides the rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileConfig {
    /// Port a (index 0) and port b (index 1).
    pub ports: [PortInfo; 2],
    /// Number of workers (one counter set each).
    pub workers: usize,
}

/// A rule or file the data plane cannot run, with where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileError {
    /// The rules file, when known ([`load`] fills it in).
    pub file: Option<String>,
    /// `ipv4` or `ipv6`.
    pub family: &'static str,
    pub table: &'static str,
    pub chain: String,
    /// 1-based rule number in its chain.
    pub rule: usize,
    /// Source line of the rule (0 if unknown).
    pub line: u32,
    pub message: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{file}:{}:1: error: ", self.line)?,
            None => write!(f, "{} line {}: error: ", self.family, self.line)?,
        }
        write!(
            f,
            "-t {} -A {} (rule {}): {}",
            self.table, self.chain, self.rule, self.message
        )
    }
}

fn ct_bits(states: u16) -> u8 {
    let mut b = 0;
    for (from, to) in [
        (ct_state::INVALID, ct::INVALID),
        (ct_state::NEW, ct::NEW),
        (ct_state::RELATED, ct::RELATED),
        (ct_state::ESTABLISHED, ct::ESTABLISHED),
        (ct_state::UNTRACKED, ct::UNTRACKED),
        (ct_state::SNAT, ct::SNAT),
        (ct_state::DNAT, ct::DNAT),
    ] {
        if states & from != 0 {
            b |= to;
        }
    }
    b
}

fn addr_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

fn iface_set(m: &rules::IfaceMatch, ports: &[PortInfo; 2]) -> IfaceSet {
    let mut bits = 0u64;
    for (i, p) in ports.iter().enumerate() {
        let hit = if m.wildcard {
            p.name.starts_with(&m.name)
        } else {
            p.name == m.name
        };
        if hit {
            bits |= 1 << i;
        }
    }
    if m.negated {
        IfaceSet(!bits)
    } else {
        IfaceSet(bits)
    }
}

fn port_match(p: &rules::PortMatch) -> PortMatch {
    PortMatch {
        lo: p.range.lo,
        hi: p.range.hi,
        negate: p.negated,
    }
}

/// Lowers one rule to the classifier's dimensions plus leaf checks.
fn lower(rule: &Rule, ports: &[PortInfo; 2]) -> Result<(RuleSpec, Vec<LeafCheck>), String> {
    let mut spec = RuleSpec::ANY;
    let mut leaf = Vec::new();
    let mut limits = Vec::new();
    for (dst, m) in [(false, &rule.src), (true, &rule.dst)] {
        let Some(m) = m else { continue };
        let a = match m.prefix_len() {
            Some(len) => match m.addr {
                IpAddr::V4(v) => AddrMatch::v4_prefix(u32::from(v), len),
                IpAddr::V6(v) => AddrMatch::v6_prefix(u128::from(v), len),
            },
            None => {
                leaf.push(LeafCheck::Masked {
                    dst,
                    value: addr_u128(m.addr),
                    mask: addr_u128(m.mask),
                    negated: m.negated,
                });
                continue;
            }
        };
        let a = if m.negated { a.negated() } else { a };
        if dst {
            spec.dst = a;
        } else {
            spec.src = a;
        }
    }
    if let Some(i) = &rule.in_iface {
        spec.iif = iface_set(i, ports);
    }
    if let Some(o) = &rule.out_iface {
        spec.oif = iface_set(o, ports);
    }
    if let Some(p) = rule.proto {
        spec.proto = if p.negated {
            ProtoMatch::IsNot(p.proto)
        } else {
            ProtoMatch::Is(p.proto)
        };
    }
    // rules: `-f` is Some(false); classify: `-f` is Some(true).
    spec.fragment = rule.fragment.map(|neg| !neg);
    let put_port =
        |spec: &mut RuleSpec, leaf: &mut Vec<LeafCheck>, dst: bool, p: &rules::PortMatch| {
            let pm = port_match(p);
            let slot = if dst {
                &mut spec.dport
            } else {
                &mut spec.sport
            };
            if slot.is_any() {
                *slot = pm;
            } else {
                leaf.push(LeafCheck::Port { dst, m: pm });
            }
        };
    for m in &rule.matches {
        match m {
            Match::Tcp(t) => {
                if let Some(p) = &t.sport {
                    put_port(&mut spec, &mut leaf, false, p);
                }
                if let Some(p) = &t.dport {
                    put_port(&mut spec, &mut leaf, true, p);
                }
                if let Some(f) = t.flags {
                    let fm = TcpFlagsMatch {
                        mask: f.mask,
                        cmp: f.comp,
                        negate: f.negated,
                    };
                    if spec.tcp_flags.is_none() {
                        spec.tcp_flags = Some(fm);
                    } else {
                        return Err("two --tcp-flags in one rule are not supported".into());
                    }
                }
                if let Some((kind, negated)) = t.option {
                    leaf.push(LeafCheck::TcpOption { kind, negated });
                }
            }
            Match::Udp(u) => {
                if let Some(p) = &u.sport {
                    put_port(&mut spec, &mut leaf, false, p);
                }
                if let Some(p) = &u.dport {
                    put_port(&mut spec, &mut leaf, true, p);
                }
            }
            Match::Icmp(i) | Match::Icmp6(i) => {
                if spec.icmp.is_some() {
                    return Err("two ICMP type matches in one rule are not supported".into());
                }
                // The classifier reads type 255 as iptables' `any`; for ICMPv6 it is a real type.
                if matches!(m, Match::Icmp6(_)) && i.icmp_type == 255 {
                    return Err("ICMPv6 type 255 is not supported".into());
                }
                spec.icmp = Some(IcmpMatch {
                    ty: i.icmp_type,
                    code_lo: i.code_min,
                    code_hi: i.code_max,
                    negate: i.negated,
                });
            }
            Match::State(_) | Match::Conntrack(_) => {
                let (state, rest) = match m {
                    Match::State(s) => (Some(*s), None),
                    Match::Conntrack(c) => (c.state, c.state_only().is_none().then_some(c)),
                    _ => (None, None),
                };
                if let Some(s) = state {
                    let c = CtMatch {
                        mask: ct_bits(s.states),
                        negate: s.negated,
                    };
                    if spec.ct.is_none() {
                        spec.ct = Some(c);
                    } else {
                        leaf.push(LeafCheck::Ct(c));
                    }
                }
                if let Some(c) = rest {
                    leaf.push(LeafCheck::Conntrack(Box::new(*c)));
                }
            }
            Match::Time(t) => leaf.push(LeafCheck::Time(*t)),
            Match::Connbytes(c) => leaf.push(LeafCheck::Connbytes(*c)),
            Match::Connlimit(_) => {
                return Err(format!(
                    "`-m {}` loads but fwd's data plane does not evaluate it yet",
                    m.name()
                ))
            }
            Match::IpRange(r) => {
                for (dst, range) in [(false, r.src), (true, r.dst)] {
                    let Some(range) = range else { continue };
                    let (lo, hi) = (addr_u128(range.lo), addr_u128(range.hi));
                    let slot = if dst { &mut spec.dst } else { &mut spec.src };
                    if slot.is_any() {
                        let a = AddrMatch::range(lo, hi);
                        *slot = if range.negated { a.negated() } else { a };
                    } else {
                        leaf.push(LeafCheck::Range {
                            dst,
                            lo,
                            hi,
                            negated: range.negated,
                        });
                    }
                }
            }
            Match::Multiport(mp) => leaf.push(LeafCheck::Multiport {
                dir: mp.dir,
                ports: mp.ports.iter().map(|p: &PortRange| (p.lo, p.hi)).collect(),
                negated: mp.negated,
            }),
            Match::Mac { addr, negated } => leaf.push(LeafCheck::Mac {
                addr: *addr,
                negated: *negated,
            }),
            Match::Length { min, max, negated } => leaf.push(LeafCheck::Length {
                min: *min,
                max: *max,
                negated: *negated,
            }),
            Match::Ttl { op, value } | Match::HopLimit { op, value } => leaf.push(LeafCheck::Ttl {
                op: *op,
                value: *value,
            }),
            Match::Limit(m) => limits.push(LeafCheck::Limit(Arc::new(LimitBucket::new(m)))),
            Match::Mark(m) => leaf.push(LeafCheck::Mark(*m)),
            Match::Connmark(m) => leaf.push(LeafCheck::Connmark(*m)),
            Match::Comment(_) => {}
            // state shared by name: the builder adds them ([`Builder::side_effects`])
            Match::Recent(_) | Match::Statistic(_) | Match::Hashlimit(_) => {}
            Match::Sctp(_) | Match::Dccp(_) | Match::Esp(_) | Match::Ah(_) | Match::Rt(_) => {
                leaf.extend(crate::proto::ProtoCheck::of(m).map(LeafCheck::Proto))
            }
            m => match crate::stateless::lower(m, ports) {
                Some(c) => leaf.push(LeafCheck::Stateless(c)),
                None => return Err(format!("`-m {}` is not supported here", m.name())),
            },
        }
    }
    // netfilter's tcp, udp, icmp and icmp6 matches never match a non-first fragment, even with
    // no option (`tcp_mt`, `udp_mt`, `icmp_match` return false when `fragoff != 0`): an empty
    // `-p tcp -m tcp` refuses fragments that a bare `-p tcp` takes.
    let l4_match = rule.matches.iter().any(|m| {
        matches!(
            m,
            Match::Tcp(_) | Match::Udp(_) | Match::Icmp(_) | Match::Icmp6(_)
        )
    });
    if l4_match && !spec.needs_l4() && spec.fragment.is_none() {
        spec.fragment = Some(false);
    }
    leaf.append(&mut limits);
    spec.leaf_check = !leaf.is_empty();
    Ok((spec, leaf))
}

struct Builder<'a> {
    cfg: &'a CompileConfig,
    errors: Vec<CompileError>,
    counters: u32,
    has_log: bool,
    /// `-m recent` lists by `--name`, shared by both families as the kernel's are.
    recent: HashMap<String, Arc<RecentTable>>,
    /// `-m hashlimit` tables by `--hashlimit-name` and family (the kernel's are per family).
    hashlimit: HashMap<(String, bool), Arc<HashlimitTable>>,
}

impl Builder<'_> {
    /// The rule's checks with a side effect (`-m limit`, `-m recent`, `-m statistic`), in the
    /// rule's order, after its pure checks: a token is spent, a list updated or a counter
    /// stepped only for a packet every pure match of the rule accepted (netfilter evaluates
    /// them where they stand; rules put them last in practice), and one of them only when the
    /// ones before it matched, as netfilter does.
    fn side_effects(
        &mut self,
        r: &Rule,
        table: TableName,
        mut spec: RuleSpec,
        mut leaf: Vec<LeafCheck>,
    ) -> (RuleSpec, Vec<LeafCheck>) {
        if !r.matches.iter().any(|m| {
            matches!(
                m,
                Match::Recent(_) | Match::Statistic(_) | Match::Hashlimit(_)
            )
        }) {
            return (spec, leaf);
        }
        let pure = leaf.len()
            - r.matches
                .iter()
                .filter(|m| matches!(m, Match::Limit(_)))
                .count();
        let mut limits = leaf.split_off(pure).into_iter();
        for m in &r.matches {
            match m {
                Match::Limit(_) => leaf.extend(limits.next()),
                Match::Recent(rm) => {
                    let table_ref = self.recent.entry(rm.name.clone()).or_insert_with(|| {
                        Arc::new(RecentTable::new(&rm.name, IP_LIST_TOT, nstamps_for(0)))
                    });
                    // xt_recent adds one to the TTL where the hook has an output device;
                    // fwd's filter table is traversed at FORWARD
                    let ttl_inc = table == TableName::Filter;
                    leaf.push(LeafCheck::Recent(Arc::new(RecentCheck::new(
                        rm,
                        table_ref.clone(),
                        addr_u128(rm.mask),
                        ttl_inc,
                    ))));
                }
                Match::Hashlimit(h) => {
                    // the first rule naming a table sets its configuration, as the kernel's
                    // `htable_find_get` hands later rules the existing table
                    let t = self
                        .hashlimit
                        .entry((h.name.clone(), h.family == rules::Family::Ipv6))
                        .or_insert_with(|| Arc::new(HashlimitTable::new(h)))
                        .clone();
                    leaf.push(LeafCheck::Hashlimit(Arc::new(HashlimitCheck::new(t))));
                }
                Match::Statistic(sm) => leaf.push(LeafCheck::Statistic(Arc::new(Statistic::new(
                    sm,
                    u64::from(self.counters) + 1,
                )))),
                _ => {}
            }
        }
        spec.leaf_check = !leaf.is_empty();
        (spec, leaf)
    }

    fn family(&mut self, rs: Option<&Ruleset>, fam: &'static str) -> FamilyRules {
        let mut out = FamilyRules {
            source: rs.cloned(),
            clamp_mtu: self.cfg.ports[0].mtu.min(self.cfg.ports[1].mtu),
            ..FamilyRules::default()
        };
        let Some(rs) = rs else { return out };
        // Chain ids first, so jumps resolve.
        let mut ids: HashMap<(TableName, &str), u32> = HashMap::new();
        let mut order = Vec::new();
        for t in &rs.tables {
            for c in &t.chains {
                ids.insert((t.name, c.name.as_str()), order.len() as u32);
                order.push((t, c));
            }
        }
        for (t, c) in order {
            let mut specs = Vec::with_capacity(c.rules.len());
            let mut compiled = Vec::with_capacity(c.rules.len());
            for (i, r) in c.rules.iter().enumerate() {
                let err = |message: String| CompileError {
                    file: None,
                    family: fam,
                    table: t.name.as_str(),
                    chain: c.name.clone(),
                    rule: i + 1,
                    line: r.line,
                    message,
                };
                let (spec, leaf) = match lower(r, &self.cfg.ports) {
                    Ok((spec, leaf)) => self.side_effects(r, t.name, spec, leaf),
                    Err(m) => {
                        let e = err(m);
                        self.errors.push(e);
                        (RuleSpec::ANY, Vec::new())
                    }
                };
                let action = match &r.target {
                    None => RuleTarget::Continue,
                    Some(Target::Accept) => RuleTarget::Accept,
                    Some(Target::Drop) => RuleTarget::Drop,
                    Some(Target::Return) => RuleTarget::Return,
                    Some(Target::Jump(n)) | Some(Target::Goto(n)) => {
                        match ids.get(&(t.name, n.as_str())) {
                            Some(&id) if matches!(r.target, Some(Target::Jump(_))) => {
                                RuleTarget::Jump(id)
                            }
                            Some(&id) => RuleTarget::Goto(id),
                            None => {
                                let e = err(format!("no chain `{n}`"));
                                self.errors.push(e);
                                RuleTarget::Continue
                            }
                        }
                    }
                    Some(Target::Reject(w)) => RuleTarget::Reject(*w),
                    Some(Target::Log(l)) => {
                        self.has_log = true;
                        RuleTarget::Log(l.clone())
                    }
                    Some(Target::Nflog(l)) => {
                        self.has_log = true;
                        RuleTarget::Nflog(l.clone())
                    }
                    Some(Target::Snat(n)) => RuleTarget::Snat(NatSpec::from_range(n)),
                    Some(Target::Dnat(n)) => RuleTarget::Dnat(NatSpec::from_range(n)),
                    Some(Target::Netmap { addr, prefix }) => {
                        let (net, width) = match addr {
                            IpAddr::V4(a) => (u128::from(u32::from(*a)), 32u32),
                            IpAddr::V6(a) => (u128::from(*a), 128),
                        };
                        let all = u128::MAX >> (128 - width);
                        // the network bits: `prefix` ones from the top of the family's width
                        let mask = all.checked_shl(width - u32::from(*prefix)).unwrap_or(0) & all;
                        RuleTarget::Netmap {
                            net: net & mask,
                            mask,
                        }
                    }
                    Some(Target::Masquerade {
                        ports,
                        random,
                        random_fully,
                    }) => {
                        for (pi, p) in self.cfg.ports.iter().enumerate() {
                            let (none, key) = if fam == "ipv6" {
                                (p.ipv6.is_none(), "address6")
                            } else {
                                (p.ipv4.is_none(), "address")
                            };
                            if spec.oif.matches(pi as u8) && none {
                                let e = err(format!(
                                    "MASQUERADE can leave through port `{}`, which has no `{key}` in the config",
                                    p.name
                                ));
                                self.errors.push(e);
                            }
                        }
                        RuleTarget::Masquerade {
                            ports: ports.map(|p| (p.lo, p.hi)),
                            random: *random || *random_fully,
                        }
                    }
                    Some(Target::Redirect { .. }) => RuleTarget::Redirect,
                    Some(Target::Notrack) | Some(Target::CtNotrack) => RuleTarget::Notrack,
                    Some(Target::Mark(x)) => RuleTarget::Mark(*x),
                    Some(Target::Connmark(c)) => RuleTarget::Connmark(*c),
                    Some(Target::Ttl(t) | Target::Hl(t)) => RuleTarget::Rewrite(Rewrite::Ttl(*t)),
                    Some(Target::Dscp(d)) => RuleTarget::Rewrite(Rewrite::Dscp(*d)),
                    Some(Target::Tos { value, mask }) => RuleTarget::Rewrite(Rewrite::Tos {
                        value: *value,
                        mask: *mask,
                    }),
                    Some(Target::Tcpmss(m)) => RuleTarget::Rewrite(Rewrite::Tcpmss(*m)),
                    Some(Target::Ecn(e)) => RuleTarget::Rewrite(Rewrite::Ecn(*e)),
                    Some(Target::Checksum | Target::Classify(_)) => RuleTarget::NoEffect,
                };
                specs.push(spec);
                compiled.push(CompiledRule {
                    action,
                    leaf,
                    counter: self.counters,
                    line: r.line,
                });
                self.counters += 1;
            }
            let policy_counter = self.counters;
            self.counters += 1;
            let ct_prefix = specs
                .iter()
                .map_while(|s| match s.ct {
                    Some(c) if RuleSpec { ct: None, ..*s } == RuleSpec::ANY => Some(c),
                    _ => None,
                })
                .collect();
            let lookup_is_pure = compiled
                .iter()
                .all(|r| !r.leaf.iter().any(LeafCheck::has_side_effect));
            out.chains.push(CompiledChain {
                lookup_is_pure,
                ct_prefix,
                table: t.name,
                name: c.name.clone(),
                policy: c.policy,
                policy_counter,
                classifier: Classifier::build(&specs),
                rules: compiled,
            });
        }
        for hp in HookPoint::ALL {
            let (table, hook) = hp.table_hook();
            out.hooks[hp as usize] = out.chain_id(table, hook.as_str());
        }
        out.mangles = [
            HookPoint::ManglePrerouting,
            HookPoint::MangleForward,
            HookPoint::SecurityForward,
            HookPoint::ManglePostrouting,
        ]
        .iter()
        .any(|h| out.hooks[*h as usize].is_some());
        out.counts_bytes = rs
            .tables
            .iter()
            .flat_map(|t| &t.chains)
            .flat_map(|c| &c.rules)
            .any(|r| r.matches.iter().any(|m| matches!(m, Match::Connbytes(_))));
        out.classifies_ahead = [HookPoint::NatPrerouting, HookPoint::FilterForward]
            .iter()
            .filter_map(|h| out.hooks[*h as usize])
            .any(|c| out.chains[c as usize].ahead_start().is_some());
        out
    }
}

/// Compiles the IPv4 and IPv6 rulesets (either may be absent: everything of that family is
/// accepted). Every problem is reported; any error yields no ruleset.
pub fn compile(
    v4: Option<&Ruleset>,
    v6: Option<&Ruleset>,
    cfg: &CompileConfig,
) -> Result<Compiled, Vec<CompileError>> {
    if let Some(rs) = v4 {
        assert_eq!(
            rs.family,
            Family::Ipv4,
            "the ipv4 slot takes an iptables ruleset"
        );
    }
    if let Some(rs) = v6 {
        assert_eq!(
            rs.family,
            Family::Ipv6,
            "the ipv6 slot takes an ip6tables ruleset"
        );
    }
    let mut b = Builder {
        cfg,
        errors: Vec::new(),
        counters: 0,
        has_log: false,
        recent: recent_tables([v4, v6]),
        hashlimit: HashMap::new(),
    };
    let v4 = b.family(v4, "ipv4");
    let v6 = b.family(v6, "ipv6");
    if !b.errors.is_empty() {
        return Err(b.errors);
    }
    let slots = b.counters as usize;
    Ok(Compiled {
        v4,
        v6,
        ports: cfg.ports.clone(),
        counter_slots: slots,
        counters: (0..cfg.workers.max(1))
            .map(|_| RuleCounters::new(slots))
            .collect(),
        has_log: b.has_log,
    })
}

/// The `-m recent` lists both rulesets name, each with room for the stamps its largest
/// `--hitcount` needs (the kernel's table takes the largest `nstamps_max_mask` of its rules).
fn recent_tables(rs: [Option<&Ruleset>; 2]) -> HashMap<String, Arc<RecentTable>> {
    let mut want: HashMap<String, usize> = HashMap::new();
    for r in rs
        .into_iter()
        .flatten()
        .flat_map(|rs| &rs.tables)
        .flat_map(|t| &t.chains)
        .flat_map(|c| &c.rules)
    {
        for m in &r.matches {
            if let Match::Recent(rm) = m {
                let n = want.entry(rm.name.clone()).or_insert(0);
                *n = (*n).max(nstamps_for(rm.hitcount));
            }
        }
    }
    want.into_iter()
        .map(|(name, n)| {
            let t = Arc::new(RecentTable::new(&name, IP_LIST_TOT, n));
            (name, t)
        })
        .collect()
}

/// Why rules files could not be loaded: the rules crate's diagnostics, or what the data plane
/// cannot run. `Display` prints one `file:line:col: error: ...` line per problem.
#[derive(Debug)]
pub enum LoadError {
    Parse(Vec<rules::Diagnostics>),
    Compile(Vec<CompileError>),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Parse(ds) => ds.iter().try_for_each(|d| write!(f, "{d}")),
            LoadError::Compile(es) => es.iter().try_for_each(|e| writeln!(f, "{e}")),
        }
    }
}

impl std::error::Error for LoadError {}

/// Reads, parses and compiles the `[rules] ipv4` / `ipv6` files (`fwd check`, start, reload).
/// Nothing is returned unless both files are entirely good.
pub fn load(
    ipv4: Option<&std::path::Path>,
    ipv6: Option<&std::path::Path>,
    cfg: &CompileConfig,
) -> Result<Compiled, LoadError> {
    let mut diags = Vec::new();
    let mut parse = |p: Option<&std::path::Path>, fam: Family| {
        p.and_then(|p| match rules::parse_restore_file(p, fam) {
            Ok(rs) => Some(rs),
            Err(d) => {
                diags.push(d);
                None
            }
        })
    };
    let v4 = parse(ipv4, Family::Ipv4);
    let v6 = parse(ipv6, Family::Ipv6);
    if !diags.is_empty() {
        return Err(LoadError::Parse(diags));
    }
    compile(v4.as_ref(), v6.as_ref(), cfg).map_err(|mut es| {
        for e in &mut es {
            let p = if e.family == "ipv4" { ipv4 } else { ipv6 };
            e.file = p.map(|p| p.display().to_string());
        }
        LoadError::Compile(es)
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rules::Policy;
    use std::net::Ipv4Addr;

    pub fn cfg() -> CompileConfig {
        CompileConfig {
            ports: [
                PortInfo {
                    name: "fw-c".into(),
                    ipv4: Some(Ipv4Addr::new(198, 18, 0, 253)),
                    ipv6: Some("2001:2::fd".parse().unwrap()),
                    mtu: 1500,
                },
                PortInfo {
                    name: "fw-s".into(),
                    ipv4: Some(Ipv4Addr::new(198, 18, 0, 254)),
                    ipv6: Some("2001:2::fe".parse().unwrap()),
                    mtu: 1500,
                },
            ],
            workers: 1,
        }
    }

    pub fn v4(text: &str) -> Ruleset {
        rules::parse_restore("test.rules", text, Family::Ipv4).unwrap_or_else(|d| panic!("{d}"))
    }

    #[test]
    fn resolves_jumps_hooks_and_interfaces() {
        let rs = v4("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:web - [0:0]\n\
             -A FORWARD -i fw-c -p tcp -m tcp --dport 80 -j web\n-A web -s 198.18.0.1/32 -j ACCEPT\n-A web -j RETURN\nCOMMIT\n");
        let c = compile(Some(&rs), None, &cfg()).unwrap();
        let fwd = c.v4.hooks[HookPoint::FilterForward as usize].unwrap();
        let web = c.v4.chain_id(TableName::Filter, "web").unwrap();
        let chain = &c.v4.chains[fwd as usize];
        assert_eq!(chain.policy, Some(Policy::Drop));
        assert_eq!(chain.rules[0].action, RuleTarget::Jump(web));
        assert_eq!(c.v4.hooks[HookPoint::NatPrerouting as usize], None);
        let specs = chain.classifier.rules();
        assert_eq!(specs[0].iif, IfaceSet(0b01));
        assert_eq!(specs[0].dport, PortMatch::range(80, 80));
        // 3 rules + 4 policies (INPUT, FORWARD, OUTPUT, web)
        assert_eq!(c.counter_slots, 7);
    }

    #[test]
    fn redirect_compiles_to_its_own_action_and_limit_compiles() {
        let rs = v4("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
             -A PREROUTING -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 8080\nCOMMIT\n\
             *filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -m limit --limit 1/sec -j ACCEPT\nCOMMIT\n");
        let c = compile(Some(&rs), None, &cfg()).unwrap();
        let pre = c.v4.hooks[HookPoint::NatPrerouting as usize].unwrap();
        assert_eq!(
            c.v4.chains[pre as usize].rules[0].action,
            RuleTarget::Redirect
        );
    }

    #[test]
    fn limit_is_the_last_leaf_check_of_its_rule() {
        let rs = v4("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
             -A FORWARD -m limit --limit 2/sec --limit-burst 3 -m length --length 100:200 -j ACCEPT\nCOMMIT\n");
        let c = compile(Some(&rs), None, &cfg()).unwrap();
        let fwd = c.v4.hooks[HookPoint::FilterForward as usize].unwrap();
        let leaf = &c.v4.chains[fwd as usize].rules[0].leaf;
        assert!(matches!(leaf[0], LeafCheck::Length { .. }), "{leaf:?}");
        let LeafCheck::Limit(b) = &leaf[1] else {
            panic!("{leaf:?}")
        };
        assert_eq!(
            (b.interval_ns, b.tolerance_ns),
            (500_000_000, 1_000_000_000)
        );
    }

    #[test]
    fn limit_bucket_passes_a_burst_then_the_average_rate() {
        // 2/sec, burst 3: as xt_limit, three at once, then one per 0.5 s.
        let b = LimitBucket::new(&rules::LimitMatch {
            avg: rules::LimitMatch::SCALE / 2,
            burst: 3,
        });
        let t0 = 7_000_000_000;
        let taken = (0..10).filter(|_| b.take(t0)).count();
        assert_eq!(taken, 3);
        assert!(!b.take(t0 + 499_000_000));
        assert!(b.take(t0 + 500_000_000));
        assert!(!b.take(t0 + 500_000_000));
        // after a long pause the bucket is full again, never fuller
        let later = t0 + 60_000_000_000;
        assert_eq!((0..10).filter(|_| b.take(later)).count(), 3);
    }

    #[test]
    fn load_reports_files_and_lines() {
        let dir = std::env::temp_dir().join(format!("dataplane-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("v4.rules");
        std::fs::write(&good, "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -j ACCEPT\nCOMMIT\n").unwrap();
        let masq = dir.join("masquerade.rules");
        std::fs::write(&masq, "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -o fw-s -j MASQUERADE\nCOMMIT\n").unwrap();
        let mut no_address = cfg();
        no_address.ports[1].ipv4 = None;
        let bad = dir.join("bad.rules");
        std::fs::write(&bad, "*filter\n-A FORWARD -j NOPE\nCOMMIT\n").unwrap();
        assert!(load(Some(&good), None, &cfg()).is_ok());
        let e = load(Some(&masq), None, &no_address)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!(
                "{}:6:1: error: -t nat -A POSTROUTING (rule 1): MASQUERADE",
                masq.display()
            )),
            "{e}"
        );
        let e = load(Some(&bad), None, &cfg()).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}:2:", bad.display())), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn masquerade_needs_an_address() {
        let rs = v4("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
             -A POSTROUTING -o fw-s -j MASQUERADE\nCOMMIT\n");
        let mut c = cfg();
        assert!(compile(Some(&rs), None, &c).is_ok());
        c.ports[1].ipv4 = None;
        let errs = compile(Some(&rs), None, &c).unwrap_err();
        assert!(errs[0].message.contains("fw-s"), "{errs:?}");
    }

    #[test]
    fn negated_wildcard_interface_is_the_complement() {
        let m = rules::IfaceMatch {
            name: "fw-".into(),
            wildcard: true,
            negated: true,
        };
        let s = iface_set(&m, &cfg().ports);
        assert!(!s.matches(0) && !s.matches(1));
        let m = rules::IfaceMatch {
            name: "fw-s".into(),
            wildcard: false,
            negated: true,
        };
        let s = iface_set(&m, &cfg().ports);
        assert!(s.matches(0) && !s.matches(1));
    }

    // Lowering from the AST happens here only (classify is a leaf crate and has no `rules`):
    // these two tests were classify's `lower` tests, now against the appliance's compiler.

    /// Ports `eth0` and `wan0`, and `text` compiled for `family`.
    fn compiled_for(text: &str, family: Family) -> Compiled {
        let rs = rules::parse_restore("test.rules", text, family).unwrap_or_else(|d| panic!("{d}"));
        let cfg = CompileConfig {
            ports: [PortInfo::named("eth0"), PortInfo::named("wan0")],
            workers: 1,
        };
        let (v4, v6) = match family {
            Family::Ipv4 => (Some(&rs), None),
            Family::Ipv6 => (None, Some(&rs)),
        };
        compile(v4, v6, &cfg).unwrap_or_else(|e| panic!("{e:?}"))
    }

    /// The FORWARD chain of `fam`.
    fn forward_of(fam: &FamilyRules) -> &CompiledChain {
        let id = fam.hooks[HookPoint::FilterForward as usize].unwrap();
        &fam.chains[id as usize]
    }

    fn v4_bits(a: [u8; 4]) -> u128 {
        u32::from_be_bytes(a) as u128
    }

    #[test]
    fn lowers_an_iptables_chain() {
        use classify::{Key, NO_MATCH};
        let text = "*filter\n:FORWARD DROP [0:0]\n\
            -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
            -A FORWARD -s 198.18.0.0/15 -i eth+ -p tcp -m tcp --dport 22 --tcp-flags FIN,SYN,RST,ACK SYN -j ACCEPT\n\
            -A FORWARD ! -d 198.19.1.0/24 -p udp -m udp --sport 1024:65535 -m limit --limit 5/sec -j ACCEPT\n\
            -A FORWARD -p icmp -m icmp --icmp-type 8 -j ACCEPT\n\
            -A FORWARD -m iprange --src-range 198.18.0.10-198.18.0.20 -j DROP\n\
            COMMIT\n";
        let c = compiled_for(text, Family::Ipv4);
        let chain = forward_of(&c.v4);
        let specs = chain.classifier.rules();
        assert_eq!(specs.len(), 5);
        assert_eq!(
            specs[0].ct,
            Some(CtMatch {
                mask: ct::RELATED | ct::ESTABLISHED,
                negate: false
            })
        );
        let ssh = &specs[1];
        assert_eq!(ssh.iif, IfaceSet(0b01), "eth+ is eth0, not wan0");
        assert_eq!(ssh.dport, PortMatch::range(22, 22));
        assert_eq!(
            ssh.tcp_flags,
            Some(TcpFlagsMatch {
                mask: 0x17,
                cmp: 0x02,
                negate: false
            })
        );
        assert!(!ssh.leaf_check && chain.rules[1].leaf.is_empty());
        assert!(
            matches!(chain.rules[2].leaf[..], [LeafCheck::Limit(_)]),
            "limit is a leaf check: {:?}",
            chain.rules[2].leaf
        );
        assert!(specs[2].leaf_check && specs[2].dst.negate);
        assert_eq!(
            specs[4].src,
            AddrMatch::range(v4_bits([198, 18, 0, 10]), v4_bits([198, 18, 0, 20]))
        );

        let cls = &chain.classifier;
        let syn = Key {
            src: v4_bits([198, 18, 0, 15]),
            dst: v4_bits([198, 19, 1, 1]),
            sport: 40000,
            dport: 22,
            proto: 6,
            iif: 0,
            oif: 1,
            ct: ct::NEW,
            tcp_flags: 0x02,
            ..Key::default()
        };
        assert_eq!(cls.lookup(&syn, 0), 1);
        assert_eq!(
            cls.lookup(&Key { iif: 1, ..syn }, 0),
            4,
            "wan0 is not eth+; the iprange rule"
        );
        assert_eq!(
            cls.lookup(
                &Key {
                    ct: ct::ESTABLISHED,
                    ..syn
                },
                0
            ),
            0
        );
        let dns = Key {
            proto: 17,
            sport: 5353,
            dport: 53,
            dst: v4_bits([198, 19, 2, 1]),
            src: v4_bits([198, 18, 1, 1]),
            ..syn
        };
        let mut out = [0];
        cls.lookup_burst_with(&[dns], &[0], &mut out, |_, r| r == 2);
        assert_eq!(out[0], 2, "the limit callback says yes");
        cls.lookup_burst_with(&[dns], &[0], &mut out, |_, _| false);
        assert_eq!(out[0], NO_MATCH);
        let ping = Key {
            proto: 1,
            icmp_type: 8,
            sport: 0,
            dport: 0,
            ..dns
        };
        assert_eq!(cls.lookup(&ping, 0), 3);
        let frag = Key { frag: true, ..ping };
        assert_eq!(
            cls.lookup(&frag, 0),
            NO_MATCH,
            "a non-first fragment has no ICMP header"
        );
    }

    #[test]
    fn lowers_ip6tables_prefixes_and_fragments() {
        use classify::{Key, NO_MATCH};
        let text = "*filter\n:FORWARD ACCEPT [0:0]\n\
            -A FORWARD -s 2001:2::/48 -p tcp -m tcp -j DROP\n\
            -A FORWARD -d 2001:2:0:1::/64 -o wan0 -j ACCEPT\n\
            COMMIT\n";
        let c = compiled_for(text, Family::Ipv6);
        let chain = forward_of(&c.v6);
        let specs = chain.classifier.rules();
        assert_eq!(
            specs[0].fragment,
            Some(false),
            "an empty -m tcp still refuses fragments"
        );
        assert_eq!(specs[1].oif, IfaceSet::one(1));
        let cls = &chain.classifier;
        let k = Key {
            src: 0x2001_0002_0000_0005_0000_0000_0000_0001,
            dst: 0x2001_0002_0000_0001_0000_0000_0000_0002,
            proto: 6,
            oif: 1,
            ..Key::default()
        };
        assert_eq!(cls.lookup(&k, 0), 0);
        assert_eq!(cls.lookup(&Key { frag: true, ..k }, 0), 1);
        assert_eq!(
            cls.lookup(
                &Key {
                    oif: 0,
                    frag: true,
                    ..k
                },
                0
            ),
            NO_MATCH
        );
    }
}
