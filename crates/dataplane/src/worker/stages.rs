//! The stage arrays of a vector pass and the stages that run over the whole pass: parse (1),
//! conntrack's look-ahead (2) and the classification ahead of the NEW packets (3).

use super::*;

/// The stage arrays of one vector pass, one slot per frame (structure of arrays; owned by the
/// worker, allocated once). Stages: parse (`info`, `ct`, `flow`, `key`), conntrack lookup with
/// the loads of all slots overlapped (`probe`, which tracking starts from), classification ahead of the NEW ones as one
/// burst per chain (`first`), then each frame's track, walks, commit and rewrite in order.
pub(crate) struct Stages {
    pub(super) ingress: [PortIdx; VECTOR],
    pub(super) info: [FrameInfo; VECTOR],
    pub(super) malformed: [Option<Malformed>; VECTOR],
    pub(super) flow: [Option<Flow>; VECTOR],
    pub(super) ct: [Option<CtPacket>; VECTOR],
    pub(super) quote: [Option<FrameInfo>; VECTOR],
    /// The classifier key as a NEW connection's walks see it (`ct` = NEW, no DNAT yet).
    pub(super) key: [Key; VECTOR],
    /// Where conntrack's burst lookup found each slot's flow; `track_probed` starts there
    /// instead of walking the bucket again (parse resets it to a probe that is never current).
    pub(super) probe: [Probe; VECTOR],
    /// Per slot and hook: the first classifier result of the walk, looked up ahead; valid when
    /// `ahead[slot]`, the family's `ahead_pos[hook]` is not `NO_MATCH` and the walk's key is
    /// `key[slot]` (a lookup is a pure function of chain, position, key and frame).
    pub(super) first: [[u32; HookPoint::COUNT]; VECTOR],
    pub(super) ahead: [bool; VECTOR],
    /// Per family (v4, v6) and hook: where that first lookup starts (past the `ct_prefix`
    /// rules a NEW packet does not match), `NO_MATCH` when there is none to do ahead.
    pub(super) ahead_pos: [[u32; HookPoint::COUNT]; 2],
    /// Slots handed to another worker: not processed here.
    pub(super) skip: [bool; VECTOR],
    /// Scratch of the classify-ahead stage (kept here: clearing them per pass cost more than
    /// the lookups they serve on short chains).
    pub(super) ahead_keys: [Key; VECTOR],
    pub(super) ahead_starts: [u32; VECTOR],
    pub(super) ahead_slots: [u8; VECTOR],
    pub(super) ahead_out: [u32; VECTOR],
}

impl Stages {
    pub(super) fn new() -> Box<Stages> {
        Box::new(Stages {
            ingress: [0; VECTOR],
            info: [FrameInfo::default(); VECTOR],
            malformed: [None; VECTOR],
            flow: [None; VECTOR],
            ct: [None; VECTOR],
            quote: [None; VECTOR],
            key: [Key::default(); VECTOR],
            probe: [Probe::default(); VECTOR],
            first: [[NO_MATCH; HookPoint::COUNT]; VECTOR],
            ahead: [false; VECTOR],
            ahead_pos: [[NO_MATCH; HookPoint::COUNT]; 2],
            skip: [false; VECTOR],
            ahead_keys: [Key::default(); VECTOR],
            ahead_starts: [0; VECTOR],
            ahead_slots: [0; VECTOR],
            ahead_out: [NO_MATCH; VECTOR],
        })
    }

    /// The flow of slot `i` (steering).
    pub(crate) fn flow(&self, i: usize) -> Option<&Flow> {
        self.flow[i].as_ref()
    }

    /// What slot `i`'s parse found (carried with a handed-off frame).
    pub(crate) fn parsed(&self, i: usize) -> Parsed {
        Parsed {
            info: self.info[i],
            malformed: self.malformed[i],
            flow: self.flow[i],
        }
    }

    pub(crate) fn is_skipped(&self, i: usize) -> bool {
        self.skip[i]
    }

    /// Slot `i` goes to another worker: no stage here looks at it again.
    pub(crate) fn skip(&mut self, i: usize) {
        self.skip[i] = true;
        self.flow[i] = None;
        self.ahead[i] = false;
    }
}

impl Worker {
    /// The stage arrays, for one vector pass (give them back with [`Worker::put_stages`]).
    pub(crate) fn take_stages(&mut self) -> Box<Stages> {
        self.stages.take().expect("one vector pass at a time")
    }

    pub(crate) fn put_stages(&mut self, st: Box<Stages>) {
        self.stages = Some(st);
    }

    /// Stage 1, parse: slot `i` gets the frame's parse, its conntrack view, flow key and hash,
    /// and its classifier key. Pure: nothing of the worker changes.
    pub(crate) fn parse_slot(&self, st: &mut Stages, i: usize, ingress: PortIdx, frame: &[u8]) {
        st.ingress[i] = ingress;
        st.skip[i] = false;
        st.flow[i] = None;
        st.probe[i] = Probe::default();
        st.ct[i] = None;
        st.quote[i] = None;
        let info = &mut st.info[i];
        st.malformed[i] = match parse_frame_into(frame, info) {
            // The bridge's br_netfilter (br_validate_ipv4) drops an IPv4 header with a wrong
            // checksum before any hook, whatever nf_conntrack_checksum says.
            Ok(()) => wire::verify_ipv4_header(frame, info).err(),
            Err(m) => Some(m),
        };
        if st.malformed[i].is_some() || !info.is_ip() {
            return;
        }
        let mut key = key_of(info, ingress, ingress ^ 1);
        key.ct = ct::NEW;
        st.key[i] = key;
        st.ct[i] = ct_packet(frame, info, &mut st.quote[i]);
        if let Some(k) = st.ct[i].as_ref().and_then(CtPacket::lookup_key) {
            st.flow[i] = Some((k, flow_hash(&self.key, k.0, k.1, &k.2)));
        }
    }

    /// Stage 1 for a frame another worker parsed (a handoff carries its [`Parsed`]).
    pub(crate) fn adopt_slot(
        &self,
        st: &mut Stages,
        i: usize,
        ingress: PortIdx,
        frame: &[u8],
        p: &Parsed,
    ) {
        st.ingress[i] = ingress;
        st.skip[i] = false;
        st.info[i] = p.info;
        st.malformed[i] = p.malformed;
        st.flow[i] = p.flow;
        st.probe[i] = Probe::default();
        st.ct[i] = None;
        st.quote[i] = None;
        if p.malformed.is_some() || !p.info.is_ip() {
            return;
        }
        let mut key = key_of(&p.info, ingress, ingress ^ 1);
        key.ct = ct::NEW;
        st.key[i] = key;
        st.ct[i] = ct_packet(frame, &p.info, &mut st.quote[i]);
    }

    /// Stages 2 and 3 over slots `..n`: conntrack looks all flows up at once (bucket heads,
    /// then entries, loaded for every slot before any chain is walked), then the packets it
    /// does not know (the NEW ones) are classified ahead, one burst per hook chain whose
    /// lookups have no side effect. `frame(i)` is slot `i`'s frame.
    pub(crate) fn prepare<'f>(
        &self,
        rs: &Compiled,
        st: &mut Stages,
        n: usize,
        frame: impl Fn(usize) -> &'f [u8],
        now: u64,
    ) {
        let wall = self.wall_secs(now);
        st.ahead[..n].fill(false);
        st.ahead_pos = [[NO_MATCH; HookPoint::COUNT]; 2];
        // the loads of all slots overlapped, and each chain walked here once: tracking starts
        // from the probe while no earlier slot has changed the index
        self.shard
            .probe_burst_hashed(&st.flow[..n], now, &mut st.probe[..n]);
        if !rs.v4.classifies_ahead && !rs.v6.classifies_ahead {
            return;
        }
        for (f, v6) in [(0usize, false), (1, true)] {
            let fam = rs.family(v6);
            if !fam.classifies_ahead {
                continue;
            }
            let mut m = 0;
            for i in 0..n {
                let new = st.probe[i].found().is_none()
                    && st.flow[i].is_some()
                    && (st.info[i].family == Family::Ipv6) == v6
                    && !matches!(
                        st.ct[i],
                        Some(CtPacket {
                            l4: L4::IcmpError(_),
                            ..
                        })
                    );
                if new {
                    st.ahead[i] = true;
                    st.ahead_slots[m] = i as u8;
                    m += 1;
                }
            }
            if m == 0 {
                continue;
            }
            // nat POSTROUTING is not classified ahead: only packets FORWARD accepted reach it,
            // and a lookup burst over those that FORWARD drops is work thrown away
            for h in [HookPoint::NatPrerouting, HookPoint::FilterForward] {
                if v6 && h != HookPoint::FilterForward {
                    continue;
                }
                let Some(c) = fam.hooks[h as usize] else {
                    continue;
                };
                let chain = &fam.chains[c as usize];
                let Some(pos) = chain.ahead_start() else {
                    continue;
                };
                for j in 0..m {
                    st.ahead_keys[j] = st.key[usize::from(st.ahead_slots[j])];
                    st.ahead_starts[j] = pos;
                }
                let (keys, slots, info) = (&st.ahead_keys, &st.ahead_slots, &st.info);
                chain.classifier.lookup_burst_with(
                    &keys[..m],
                    &st.ahead_starts[..m],
                    &mut st.ahead_out[..m],
                    |j, r| {
                        let i = usize::from(slots[j]);
                        leaf_ok(
                            &chain.rules[r as usize].leaf,
                            &keys[j],
                            frame(i),
                            &info[i],
                            (now, wall),
                            h,
                            // chains testing a mark are not looked up ahead
                            &mut Marks::default(),
                            &self.shard,
                        )
                    },
                );
                for j in 0..m {
                    st.first[usize::from(st.ahead_slots[j])][h as usize] = st.ahead_out[j];
                }
                st.ahead_pos[f][h as usize] = pos;
            }
        }
    }

    /// Stage 4 for slot `i`: track, the hooks in netfilter's order, commit, rewrite. In slot
    /// order: each frame sees what the earlier ones did to conntrack.
    pub(crate) fn finish_slot(
        &mut self,
        rs: &Compiled,
        st: &Stages,
        i: usize,
        buf: &mut [u8],
        len: usize,
        now: u64,
    ) -> Verdict {
        let v = self.process_frame(rs, st, i, buf, len, now);
        if let Some((slot, key)) = self.frag_head.take() {
            self.frags.record(slot, key, &buf[..len], v, now);
        }
        v
    }
}
