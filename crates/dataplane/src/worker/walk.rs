//! The chain walk (jumps, gotos, RETURN, policies), the checks of a rule that are not classifier
//! dimensions (`leaf_ok`), and LOG events.

use super::*;

impl Worker {
    /// Walks a hook's chains from `chain`: jumps push, goto replaces, RETURN pops, the end of a
    /// built-in chain is its policy. LOG/NFLOG and rules without target continue.
    #[allow(clippy::too_many_arguments)]
    // Inlined: a returned `Walk` read back through memory cost a store-forwarding stall.
    #[inline(always)]
    pub(super) fn walk(
        &mut self,
        hook: HookPoint,
        fam: &FamilyRules,
        counters: &RuleCounters,
        start: u32,
        key: &Key,
        buf: &mut [u8],
        len: &mut usize,
        info: &FrameInfo,
        ingress: PortIdx,
        egress: PortIdx,
        ahead: (u32, u32),
        marks: &mut Marks,
    ) -> Walk {
        let (mut ahead_pos, ahead_rule) = ahead;
        let bytes = u64::from(info.l3_len);
        let now = self.now;
        let mut depth = 0usize;
        let (mut cur, mut pos) = (start, 0u32);
        let mut notrack = false;
        let mut out = [NO_MATCH];
        loop {
            let chain = &fam.chains[cur as usize];
            let mut r = NO_MATCH;
            while (pos as usize) < chain.ct_prefix.len() {
                let c = chain.ct_prefix[pos as usize];
                if ((key.ct & c.mask) != 0) != c.negate {
                    r = pos;
                    break;
                }
                pos += 1;
            }
            if r == NO_MATCH && pos == ahead_pos && cur == start {
                // the lookup done ahead, for this chain, position and key (see `prepare`)
                r = ahead_rule;
                ahead_pos = NO_MATCH;
            } else if r == NO_MATCH && (pos as usize) < chain.rules.len() {
                let wall = self.wall_secs(now);
                let shard = &self.shard;
                chain.classifier.lookup_burst_with(
                    std::slice::from_ref(key),
                    &[pos],
                    &mut out,
                    |_, r| {
                        leaf_ok(
                            &chain.rules[r as usize].leaf,
                            key,
                            &buf[..*len],
                            info,
                            (now, wall),
                            hook,
                            marks,
                            shard,
                        )
                    },
                );
                r = out[0];
                if marks.hotdrop {
                    return Walk {
                        fin: Final::Drop,
                        notrack,
                        rule: POLICY,
                        abort: None,
                    };
                }
            }
            if r == NO_MATCH {
                if depth == 0 {
                    {
                        // the trace is written here, from registers (see `Walk`)
                        self.trace.decided[hook as usize] = Some((start, POLICY));
                        return policy_of(fam, counters, start, bytes, notrack);
                    }
                }
                depth -= 1;
                (cur, pos) = self.stack[depth];
                continue;
            }
            let rule = &chain.rules[r as usize];
            counters.hit(rule.counter, bytes);
            let fin = match &rule.action {
                RuleTarget::Continue => None,
                RuleTarget::Notrack => {
                    notrack = true;
                    None
                }
                RuleTarget::Mark(x) => {
                    marks.pkt = x.apply(marks.pkt);
                    None
                }
                RuleTarget::Connmark(c) => {
                    if let Some(id) = marks.entry {
                        let (ct, pkt) = c.apply(marks.ct, marks.pkt);
                        if ct != marks.ct {
                            self.shard.set_mark(id, ct);
                        }
                        (marks.ct, marks.pkt) = (ct, pkt);
                    }
                    None
                }
                RuleTarget::NoEffect => None,
                RuleTarget::Rewrite(rw) => {
                    match rewrite::apply(rw, buf, *len, info, fam.clamp_mtu) {
                        Done::Kept => {}
                        Done::Changed => self.stats.rewrites += 1,
                        Done::Grew(n) => {
                            self.stats.rewrites += 1;
                            *len = n;
                        }
                        Done::Drop => {
                            self.trace.decided[hook as usize] = Some((cur, r));
                            return Walk {
                                fin: Final::Drop,
                                notrack,
                                rule: r,
                                abort: Some(DropReason::RewriteFailed),
                            };
                        }
                    }
                    None
                }
                RuleTarget::Log(l) => {
                    self.emit_log(
                        LogKind::Log {
                            level: l.level,
                            flags: log_flags(l),
                        },
                        &l.prefix,
                        &buf[..*len],
                        ingress,
                        egress,
                    );
                    None
                }
                RuleTarget::Nflog(n) => {
                    self.emit_log(
                        LogKind::Nflog { group: n.group },
                        &n.prefix,
                        &buf[..*len],
                        ingress,
                        egress,
                    );
                    None
                }
                RuleTarget::Accept => Some(Final::Accept),
                RuleTarget::Drop => Some(Final::Drop),
                RuleTarget::Reject(w) => Some(Final::Reject(*w)),
                RuleTarget::Snat(s) => Some(Final::Snat(*s)),
                RuleTarget::Dnat(s) => Some(Final::Dnat(*s)),
                RuleTarget::Masquerade { ports, random } => Some(Final::Masquerade {
                    ports: *ports,
                    random: *random,
                }),
                RuleTarget::Netmap { net, mask } => Some(Final::Netmap {
                    net: *net,
                    mask: *mask,
                }),
                RuleTarget::Redirect => Some(Final::Redirect),
                RuleTarget::Return => {
                    if depth == 0 {
                        // RETURN at the top (also from a chain entered by -g): the policy
                        {
                            // the trace is written here, from registers (see `Walk`)
                            self.trace.decided[hook as usize] = Some((start, POLICY));
                            return policy_of(fam, counters, start, bytes, notrack);
                        }
                    }
                    depth -= 1;
                    (cur, pos) = self.stack[depth];
                    continue;
                }
                RuleTarget::Jump(c) => {
                    if depth == MAX_DEPTH {
                        self.trace.decided[hook as usize] = Some((cur, r));
                        return Walk {
                            fin: Final::Drop,
                            notrack,
                            rule: r,
                            abort: Some(DropReason::ChainTooDeep),
                        };
                    }
                    self.stack[depth] = (cur, r + 1);
                    depth += 1;
                    (cur, pos) = (*c, 0);
                    continue;
                }
                RuleTarget::Goto(c) => {
                    (cur, pos) = (*c, 0);
                    continue;
                }
            };
            match fin {
                Some(fin) => {
                    self.trace.decided[hook as usize] = Some((cur, r));
                    return Walk {
                        fin,
                        notrack,
                        rule: r,
                        abort: None,
                    };
                }
                None => pos = r + 1,
            }
        }
    }

    pub(super) fn emit_log(
        &mut self,
        kind: LogKind,
        prefix: &str,
        frame: &[u8],
        ingress: PortIdx,
        egress: PortIdx,
    ) {
        self.stats.log_events += 1;
        let Some(q) = self.log.as_mut() else { return };
        match q.write_chunk_uninit(1) {
            Ok(chunk) => {
                let ev = LogEvent::new(kind, prefix, frame, ingress, egress).at(self.now);
                chunk.fill_from_iter(std::iter::once(ev));
            }
            Err(_) => self.stats.log_overflow += 1,
        }
    }
}

/// The end of a hook's walk: the policy of the built-in chain it started in (a chain reached by
/// `-g` from it falls back there too).
pub(super) fn policy_of(
    fam: &FamilyRules,
    counters: &RuleCounters,
    start: u32,
    bytes: u64,
    notrack: bool,
) -> Walk {
    let chain = &fam.chains[start as usize];
    counters.hit(chain.policy_counter, bytes);
    let fin = match chain.policy {
        Some(Policy::Drop) => Final::Drop,
        _ => Final::Accept,
    };
    Walk {
        fin,
        notrack,
        rule: POLICY,
        abort: None,
    }
}

pub(super) fn log_flags(l: &rules::LogTarget) -> u8 {
    u8::from(l.tcp_sequence)
        | u8::from(l.tcp_options) << 1
        | u8::from(l.ip_options) << 2
        | u8::from(l.macdecode) << 3
}

/// `clock` is `(now, wall)`: the monotonic ns and the wall clock's seconds (`-m time`).
#[allow(clippy::too_many_arguments)]
pub(super) fn leaf_ok(
    checks: &[LeafCheck],
    key: &Key,
    frame: &[u8],
    info: &FrameInfo,
    clock: (u64, u64),
    hook: HookPoint,
    marks: &mut Marks,
    shard: &Shard,
) -> bool {
    let (now, wall) = clock;
    checks.iter().all(|c| match c {
        LeafCheck::Masked {
            dst,
            value,
            mask,
            negated,
        } => {
            let a = if *dst { key.dst } else { key.src };
            ((a & mask) == *value) != *negated
        }
        LeafCheck::Range {
            dst,
            lo,
            hi,
            negated,
        } => {
            let a = if *dst { key.dst } else { key.src };
            (*lo <= a && a <= *hi) != *negated
        }
        LeafCheck::Port { dst, m } => {
            !key.frag && m.matches(if *dst { key.dport } else { key.sport })
        }
        LeafCheck::Ct(m) => ((key.ct & m.mask) != 0) != m.negate,
        LeafCheck::Multiport {
            dir,
            ports,
            negated,
        } => {
            if key.frag {
                return false;
            }
            let hit = |p: u16| ports.iter().any(|&(lo, hi)| lo <= p && p <= hi);
            let any = match dir {
                MultiportDir::Source => hit(key.sport),
                MultiportDir::Destination => hit(key.dport),
                MultiportDir::Either => hit(key.sport) || hit(key.dport),
            };
            any != *negated
        }
        LeafCheck::TcpOption { kind, negated } => {
            if key.frag || info.l4_proto != ip_proto::TCP {
                return false;
            }
            let t = usize::from(info.l4_offset);
            let doff = usize::from(frame[t + 12] >> 4) * 4;
            let mut i = t + 20;
            let end = t + doff;
            let mut found = false;
            while i < end {
                let k = frame[i];
                if k == 0 {
                    break;
                }
                if k == *kind {
                    found = true;
                    break;
                }
                if k == 1 {
                    i += 1;
                    continue;
                }
                let l = usize::from(*frame.get(i + 1).unwrap_or(&0));
                if l < 2 {
                    break;
                }
                i += l;
            }
            found != *negated
        }
        LeafCheck::Mac { addr, negated } => (frame[6..12] == addr[..]) != *negated,
        LeafCheck::Length { min, max, negated } => {
            let l = match info.family {
                Family::Ipv6 => info.l3_len,
                _ => info.l3_len,
            };
            (*min <= l && l <= *max) != *negated
        }
        LeafCheck::Ttl { op, value } => {
            let t = ttl_of(frame, info);
            match op {
                TtlOp::Eq => t == *value,
                TtlOp::Ne => t != *value,
                TtlOp::Lt => t < *value,
                TtlOp::Gt => t > *value,
            }
        }
        LeafCheck::Proto(p) => p.matches(frame, info),
        LeafCheck::Mark(m) => m.matches(marks.pkt),
        LeafCheck::Connmark(m) => marks.entry.is_some() && m.matches(marks.ct),
        LeafCheck::Limit(bucket) => bucket.take(now),
        LeafCheck::Stateless(s) => s.ok(frame, info, key.iif, key.oif, hook),
        LeafCheck::Recent(r) => r.eval(
            key.src,
            key.dst,
            info.family == Family::Ipv6,
            ttl_of(frame, info),
            now,
        ),
        LeafCheck::Statistic(s) => s.eval(),
        LeafCheck::Time(t) => crate::limits::time_matches(t, wall),
        LeafCheck::Connbytes(c) => marks
            .acct
            .is_some_and(|a| crate::limits::connbytes_matches(c, &a)),
        LeafCheck::Conntrack(c) => {
            let v6 = info.family == Family::Ipv6;
            let view = marks.entry.map(|id| {
                let (proto, status, expires) = shard.match_view(id, now);
                crate::limits::CtView {
                    proto,
                    orig: shard.tuple(id, conntrack::Dir::Original),
                    reply: shard.tuple(id, conntrack::Dir::Reply),
                    status,
                    expires,
                    reply_dir: marks.reply,
                }
            });
            crate::limits::conntrack_matches(c, view, v6)
        }
        LeafCheck::Hashlimit(h) => {
            let ports = matches!(info.l4_proto, 6 | 17 | 33 | 132 | 136) && !key.frag;
            let g = h.key(key.src, key.dst, ports.then_some((key.sport, key.dport)));
            match h.eval(g, u32::from(info.l3_len), now) {
                crate::limits::HlVerdict::Match => true,
                crate::limits::HlVerdict::NoMatch => false,
                crate::limits::HlVerdict::Drop => {
                    marks.hotdrop = true;
                    false
                }
            }
        }
    })
}

/// The TTL / hop limit as the frame has it now (a TTL or HL target may have rewritten it
/// since the parse).
#[inline]
fn ttl_of(frame: &[u8], info: &FrameInfo) -> u8 {
    let at = usize::from(info.l3_offset) + if info.family == Family::Ipv6 { 7 } else { 8 };
    frame.get(at).copied().unwrap_or(info.ttl)
}
