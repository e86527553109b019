//! Stage 4, one frame at a time in slot order: the bridge gate for non-IP and tagged frames,
//! the hooks in br_netfilter's order around conntrack, the commit, the NAT rewrite, REJECT.

use super::*;

impl Worker {
    pub(super) fn process_frame(
        &mut self,
        rs: &Compiled,
        st: &Stages,
        i: usize,
        buf: &mut [u8],
        len: usize,
        now: u64,
    ) -> Verdict {
        self.trace = Trace::default();
        self.grown = None;
        self.now = now;
        let ingress = st.ingress[i];
        let info = &st.info[i];
        if let Some(m) = st.malformed[i] {
            self.stats.malformed[m.index()] += 1;
            self.trace.malformed = Some(m);
            return self.drop(DropReason::Malformed);
        }
        // A plain unicast IP frame skips the bridge's checks with this one test.
        if info.encap != 0 || !info.is_ip() || buf[0] & 1 != 0 {
            if let Some(v) = self.bridge_gate(info, &buf[..len]) {
                return v;
            }
        }
        // Fragments: fwd does not reassemble. The first fragment is decided like any packet;
        // later ones follow its decision and its address translation (see `frag`).
        if info.is_fragment {
            let key = FragKey::of(info);
            let slot = frag_slot(&key);
            if !info.is_later_fragment() {
                self.frag_head = Some((slot, key));
            } else if let Some(v) = self.frags.follow(slot, &key, &mut buf[..len], info, now) {
                match v {
                    Verdict::Forward => self.stats.forwarded += 1,
                    Verdict::Drop(r) => self.stats.drops[r.index()] += 1,
                    Verdict::Reply(_) => {}
                }
                return v;
            }
        }
        let v6 = info.family == Family::Ipv6;
        let fam = rs.family(v6);
        let counters = &rs.counters[self.index.min(rs.counters.len() - 1)];
        let egress = ingress ^ 1;
        let mut key = st.key[i];
        // the frame's length as the hooks leave it (TCPMSS may add an option)
        let len0 = len;
        let mut len = len;
        // the first lookup of a hook's walk, if it was done ahead for this key
        let f = usize::from(v6);
        let ahead = |h: HookPoint, key: &Key| -> (u32, u32) {
            if st.ahead[i] && *key == st.key[i] {
                (st.ahead_pos[f][h as usize], st.first[i][h as usize])
            } else {
                (NO_MATCH, NO_MATCH)
            }
        };

        // raw PREROUTING: conntrack has not run, so --ctstate sees INVALID.
        key.ct = ct::INVALID;
        let mut notrack = false;
        let mut marks = Marks::default();
        if let Some(chain) = fam.hooks[HookPoint::RawPrerouting as usize] {
            let w = self.walk(
                HookPoint::RawPrerouting,
                fam,
                counters,
                chain,
                &key,
                buf,
                &mut len,
                info,
                ingress,
                egress,
                (NO_MATCH, NO_MATCH),
                &mut marks,
            );
            if let Some(r) = w.abort {
                return self.drop(r);
            }
            if marks.hotdrop {
                return self.drop(DropReason::HashlimitFull);
            }
            notrack = w.notrack;
            if !matches!(w.fin, Final::Accept) {
                return self.drop(DropReason::RawDrop);
            }
        }

        // conntrack
        let mut tracked = None;
        let mut state = CtState::Untracked;
        if !notrack {
            state = CtState::Invalid;
            if let Some(p) = &st.ct[i] {
                // written in place: a copy of the returned value stalls on store forwarding
                let t = if self.checksum && !ct_checksum_ok(&buf[..len], info) {
                    tracked.insert(self.shard.track_bad_checksum())
                } else {
                    match st.flow[i] {
                        Some((_, h)) if !matches!(p.l4, L4::IcmpError(_)) => {
                            tracked.insert(self.shard.track_probed(p, h, &st.probe[i], now))
                        }
                        _ => tracked.insert(self.shard.track(p, now)),
                    }
                };
                state = t.state;
            }
        }
        let quoted = st.quote[i].as_ref();
        self.trace.ct_state = Some(state);
        if let Some(t) = tracked.take_if(|t| t.drop) {
            let reason = t.reason;
            t.abandon(&mut self.shard);
            return self.drop(match reason {
                Some(conntrack::CtReason::ChainFull) => DropReason::CtChainFull,
                _ => DropReason::CtTableFull,
            });
        }
        key.ct = match state {
            CtState::New => ct::NEW,
            CtState::Established => ct::ESTABLISHED,
            CtState::Related => ct::RELATED,
            CtState::Invalid => ct::INVALID,
            CtState::Untracked => ct::UNTRACKED,
        };
        let entry = tracked.as_ref().and_then(|t| t.entry);
        if let Some(id) = entry {
            marks.entry = Some(id);
            marks.ct = self.shard.mark(id);
            marks.reply = tracked
                .as_ref()
                .is_some_and(|t| t.dir == conntrack::Dir::Reply);
            if fam.counts_bytes {
                if let Some(a) = self.acct.get_mut(id.0 as usize) {
                    // a connection's first packet starts its counters (the slot may have
                    // held an older connection)
                    if tracked.as_ref().is_some_and(|t| t.is_unconfirmed()) {
                        *a = [0; 4];
                    }
                    let d = usize::from(marks.reply) * 2;
                    a[d] += 1;
                    a[d + 1] += u64::from(info.l3_len);
                    marks.acct = Some(*a);
                }
            }
        }
        // Only a connection's first packet (not yet confirmed) traverses the nat chains; a
        // retransmitted SYN is NEW too but must reuse the binding of its confirmed entry.
        // (Confirmed entries are the ones in the hash: no second lookup needed to tell.)
        let is_new = state == CtState::New && tracked.as_ref().is_some_and(|t| t.is_unconfirmed());

        // The translation this packet gets: from an existing binding, or decided now.
        let cur = info.is_ip().then(|| nat::current(info));
        let mut target = cur;
        let mut nat_kind = NatKind::None;
        if let (Some(id), Some(c), false) = (entry, cur, is_new) {
            let kind = self.shard.nat_kind(id);
            if kind != NatKind::None {
                nat_kind = kind;
                let dir = tracked.as_ref().map_or(Dir::Original, |t| t.dir);
                let other = self.shard.tuple(id, dir.other());
                if state == CtState::Related {
                    // errors: the quote becomes what the receiving endpoint sent
                    target = Some(Rewrite {
                        src: other.src,
                        dst: other.dst,
                        sport: other.sport,
                        dport: other.dport,
                    });
                } else {
                    let icmp = is_icmp(info.l4_proto);
                    target = Some(Rewrite {
                        src: other.dst,
                        dst: other.src,
                        sport: if icmp { other.sport } else { other.dport },
                        dport: if icmp { c.dport } else { other.sport },
                    });
                }
            }
        }
        if nat_kind != NatKind::None {
            key.ct |= match nat_kind {
                NatKind::Src => ct::SNAT,
                NatKind::Dst => ct::DNAT,
                NatKind::Both => ct::SNAT | ct::DNAT,
                NatKind::None => 0,
            };
        }

        // mangle PREROUTING: every packet, after conntrack, before DNAT.
        if let (true, Some(chain)) = (fam.mangles, fam.hooks[HookPoint::ManglePrerouting as usize])
        {
            if let Some(v) = self.mangle_hook(
                HookPoint::ManglePrerouting,
                fam,
                counters,
                chain,
                &key,
                buf,
                &mut len,
                info,
                ingress,
                &mut tracked,
                &mut marks,
            ) {
                return v;
            }
        }

        // nat PREROUTING: NEW connections only.
        let mut dnat = false;
        if is_new {
            if let Some(chain) = fam.hooks[HookPoint::NatPrerouting as usize] {
                let w = self.walk(
                    HookPoint::NatPrerouting,
                    fam,
                    counters,
                    chain,
                    &key,
                    buf,
                    &mut len,
                    info,
                    ingress,
                    egress,
                    ahead(HookPoint::NatPrerouting, &key),
                    &mut marks,
                );
                if let Some(r) = w.abort {
                    return self.reject_new(&mut tracked, r);
                }
                match w.fin {
                    Final::Accept => {}
                    Final::Dnat(spec) => {
                        let t = target.as_mut().expect("IP has a rewrite");
                        pick_dnat(t, &spec, info.l4_proto, v6);
                        dnat = true;
                    }
                    Final::Netmap { net, mask } => {
                        let t = target.as_mut().expect("IP has a rewrite");
                        t.dst = num_addr(addr_num(&t.dst, v6) & !mask | net, v6);
                        dnat = true;
                    }
                    Final::Redirect => {
                        return self.reject_new(&mut tracked, DropReason::RedirectLocal)
                    }
                    _ => return self.reject_new(&mut tracked, DropReason::NatDrop),
                }
            }
        }
        // filter FORWARD sees the destination translated, the source not yet.
        match (target, state == CtState::Related) {
            (Some(t), false) => {
                key.dst = addr_num(&t.dst, v6);
                if matches!(info.l4_proto, ip_proto::TCP | ip_proto::UDP) {
                    key.dport = t.dport;
                }
            }
            // an error goes to the quoted packet's source, which is translated back
            (Some(t), true) if quoted.is_some_and(|q| q.src == info.dst) => {
                key.dst = addr_num(&t.src, v6);
            }
            _ => {}
        }
        if let (true, Some(chain)) = (fam.mangles, fam.hooks[HookPoint::MangleForward as usize]) {
            if let Some(v) = self.mangle_hook(
                HookPoint::MangleForward,
                fam,
                counters,
                chain,
                &key,
                buf,
                &mut len,
                info,
                ingress,
                &mut tracked,
                &mut marks,
            ) {
                return v;
            }
        }
        if let Some(chain) = fam.hooks[HookPoint::FilterForward as usize] {
            let w = self.walk(
                HookPoint::FilterForward,
                fam,
                counters,
                chain,
                &key,
                buf,
                &mut len,
                info,
                ingress,
                egress,
                ahead(HookPoint::FilterForward, &key),
                &mut marks,
            );
            if let Some(r) = w.abort {
                return self.reject_new(&mut tracked, r);
            }
            if marks.hotdrop {
                return self.reject_new(&mut tracked, DropReason::HashlimitFull);
            }
            match w.fin {
                Final::Accept => {}
                Final::Reject(with) => {
                    if let Some(t) = tracked.take() {
                        t.abandon(&mut self.shard);
                    }
                    return self.reject(buf, len, info, with);
                }
                _ => {
                    let r = if w.rule == POLICY {
                        DropReason::FilterPolicy
                    } else {
                        DropReason::FilterRule
                    };
                    return self.reject_new(&mut tracked, r);
                }
            }
        }
        // security FORWARD (priority 50) after filter, then mangle POSTROUTING (-150) before
        // SNAT: both see the destination translated and the source not yet.
        for h in [HookPoint::SecurityForward, HookPoint::ManglePostrouting] {
            if !fam.mangles {
                break;
            }
            if let Some(chain) = fam.hooks[h as usize] {
                if let Some(v) = self.mangle_hook(
                    h,
                    fam,
                    counters,
                    chain,
                    &key,
                    buf,
                    &mut len,
                    info,
                    ingress,
                    &mut tracked,
                    &mut marks,
                ) {
                    return v;
                }
            }
        }
        // nat POSTROUTING: NEW connections only.
        let mut snat = false;
        if is_new {
            if let Some(chain) = fam.hooks[HookPoint::NatPostrouting as usize] {
                let w = self.walk(
                    HookPoint::NatPostrouting,
                    fam,
                    counters,
                    chain,
                    &key,
                    buf,
                    &mut len,
                    info,
                    ingress,
                    egress,
                    ahead(HookPoint::NatPostrouting, &key),
                    &mut marks,
                );
                if let Some(r) = w.abort {
                    return self.reject_new(&mut tracked, r);
                }
                let spec = match w.fin {
                    Final::Accept => None,
                    Final::Snat(spec) => Some(spec),
                    Final::Masquerade { ports, random } => {
                        let port = &rs.ports[usize::from(egress)];
                        let addr = if v6 {
                            port.ipv6.map(u128::from)
                        } else {
                            port.ipv4.map(|a| u128::from(u32::from(a)))
                        };
                        match addr {
                            Some(a) => Some(NatSpec::to_addr(a, ports, random)),
                            None => {
                                return self
                                    .reject_new(&mut tracked, DropReason::NoMasqueradeAddress)
                            }
                        }
                    }
                    Final::Netmap { net, mask } => {
                        let src = target.map_or(0, |t| addr_num(&t.src, v6));
                        Some(NatSpec::to_addr(src & !mask | net, None, false))
                    }
                    _ => return self.reject_new(&mut tracked, DropReason::NatDrop),
                };
                if let Some(spec) = spec {
                    let t = target.as_mut().expect("IP has a rewrite");
                    let (_, old_reply) = self
                        .shard
                        .tuples(entry.expect("new connections are tracked"));
                    if !self.pick_snat(t, &spec, info.l4_proto, v6, &old_reply, now) {
                        return self.reject_new(&mut tracked, DropReason::NatPortsExhausted);
                    }
                    snat = true;
                }
            }
        }
        if is_new && (dnat || snat) {
            let t = target.expect("IP has a rewrite");
            let kind = match (snat, dnat) {
                (true, true) => NatKind::Both,
                (true, false) => NatKind::Src,
                _ => NatKind::Dst,
            };
            let tr = tracked.as_ref().expect("new connections are tracked");
            let (_, old_reply) = self.shard.tuples(tr.entry.expect("tracked"));
            let reply = reply_tuple(&t, &old_reply, info.l4_proto);
            let _ = self.shard.set_nat(tr, kind, reply);
            nat_kind = kind;
        }
        if let Some(t) = tracked {
            if let Err(r) = t.confirm(&mut self.shard) {
                return self.drop(match r {
                    conntrack::CtReason::ChainFull => DropReason::CtChainFull,
                    _ => DropReason::CtClash,
                });
            }
        }
        if nat_kind != NatKind::None {
            let t = target.expect("NAT implies IP");
            if state == CtState::Related {
                if let Some(q) = quoted {
                    nat::rewrite_icmp_error(&mut buf[..len], info, q, &t);
                }
            } else if Some(t) != cur {
                nat::rewrite(&mut buf[..len], info, &t);
            }
        }
        if len != len0 {
            self.grown = Some(len);
        }
        self.stats.forwarded += 1;
        Verdict::Forward
    }

    /// The bridge's decision on a frame that is not plain unicast IP over Ethernet II (see
    /// [`crate::bridge`]): `Some` when it is decided here, `None` when its (innermost) IP
    /// packet goes on to conntrack and the rules, the tags and PPPoE header staying on.
    #[inline(never)]
    pub(super) fn bridge_gate(&mut self, info: &FrameInfo, frame: &[u8]) -> Option<Verdict> {
        let p = self.bridge;
        if is_link_local_group(frame) {
            if !p.forward_link_local {
                return Some(self.drop(DropReason::LinkLocal));
            }
            self.stats.bridge[BridgeClass::LinkLocalForwarded.index()] += 1;
        }
        if info.encap & encap::VLAN != 0 {
            let (policy, filtered, passed, dropped) = if info.encap & encap::QINQ != 0 {
                (
                    p.qinq,
                    BridgeClass::QinqFiltered,
                    BridgeClass::QinqPassed,
                    DropReason::QinqDropped,
                )
            } else {
                (
                    p.vlan,
                    BridgeClass::VlanFiltered,
                    BridgeClass::VlanPassed,
                    DropReason::VlanDropped,
                )
            };
            match policy {
                TagPolicy::Drop => return Some(self.drop(dropped)),
                TagPolicy::Pass => {
                    self.stats.bridge[passed.index()] += 1;
                    self.stats.forwarded += 1;
                    return Some(Verdict::Forward);
                }
                TagPolicy::Filter => self.stats.bridge[filtered.index()] += 1,
            }
        }
        if info.encap & encap::PPPOE != 0 {
            if p.pppoe == PppoePolicy::Drop {
                return Some(self.drop(DropReason::PppoeDropped));
            }
            if info.is_ip() {
                self.stats.bridge[BridgeClass::PppoeFiltered.index()] += 1;
                return None;
            }
            // the parser put l3_offset just past the PPP protocol field
            let at = usize::from(info.l3_offset) - 2;
            if !ppp_proto::is_control(u16::from_be_bytes([frame[at], frame[at + 1]])) {
                return Some(self.drop(DropReason::PppoeDropped));
            }
            self.stats.bridge[BridgeClass::PppoeControl.index()] += 1;
        } else if info.is_ip() {
            return None;
        } else if info.ethertype == ethertype::PPPOE_DISCOVERY {
            if !p.pppoe_discovery {
                return Some(self.drop(DropReason::PppoeDiscoveryDropped));
            }
            self.stats.bridge[BridgeClass::PppoeDiscovery.index()] += 1;
        } else if info.ethertype != ethertype::ARP {
            if !p.other_ethertypes {
                return Some(self.drop(DropReason::EthertypeDropped));
            }
            self.stats.bridge[BridgeClass::OtherEthertype.index()] += 1;
        }
        self.stats.non_ip += 1;
        self.stats.forwarded += 1;
        Some(Verdict::Forward)
    }

    /// Walks a mangle or security hook (every packet, not only NEW ones): `None` when the packet
    /// goes on, the drop verdict otherwise. REJECT and the NAT targets cannot stand in these
    /// tables (the kernel refuses them), so a walk ends in ACCEPT or DROP only.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    pub(super) fn mangle_hook(
        &mut self,
        hook: HookPoint,
        fam: &FamilyRules,
        counters: &RuleCounters,
        chain: u32,
        key: &Key,
        buf: &mut [u8],
        len: &mut usize,
        info: &FrameInfo,
        ingress: PortIdx,
        tracked: &mut Option<Tracked>,
        marks: &mut Marks,
    ) -> Option<Verdict> {
        let w = self.walk(
            hook,
            fam,
            counters,
            chain,
            key,
            buf,
            len,
            info,
            ingress,
            ingress ^ 1,
            (NO_MATCH, NO_MATCH),
            marks,
        );
        if let Some(r) = w.abort {
            return Some(self.reject_new(tracked, r));
        }
        if marks.hotdrop {
            return Some(self.reject_new(tracked, DropReason::HashlimitFull));
        }
        match w.fin {
            Final::Accept => None,
            _ => Some(self.reject_new(
                tracked,
                if hook == HookPoint::SecurityForward {
                    DropReason::SecurityDrop
                } else {
                    DropReason::MangleDrop
                },
            )),
        }
    }

    /// Drops a packet after conntrack: its `Tracked` (if any) is abandoned, so a NEW
    /// connection's entry is freed.
    pub(super) fn reject_new(&mut self, tracked: &mut Option<Tracked>, r: DropReason) -> Verdict {
        if let Some(t) = tracked.take() {
            t.abandon(&mut self.shard);
        }
        self.drop(r)
    }

    pub(super) fn reject(
        &mut self,
        buf: &mut [u8],
        len: usize,
        info: &FrameInfo,
        with: RejectWith,
    ) -> Verdict {
        let cap = buf.len().min(SCRATCH);
        let ident = self.ident;
        self.ident = self.ident.wrapping_add(1).max(1);
        match crate::reject::build(&buf[..len], info, with, ident, &mut self.scratch[..cap]) {
            Some(n) => {
                buf[..n].copy_from_slice(&self.scratch[..n]);
                self.stats.drops[DropReason::Reject.index()] += 1;
                self.stats.replies += 1;
                Verdict::Reply(n)
            }
            None => self.drop(DropReason::RejectSuppressed),
        }
    }
}
