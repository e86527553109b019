//! [`Firewall`]: the data plane behind the `ports::Pipeline` seam, so fwd's workers run it in
//! place of `ForwardAll`. The pipeline owns its [`Worker`] outright: the control thread reaches
//! it only through a [`control`](crate::control) request queue served between bursts, and
//! frames of flows owned by another worker go there through [`steer`](crate::steer)'s SPSC
//! queues. No lock anywhere on the data path.

use std::sync::Arc;

use ports::{Action, Frame, FramePool, Pipeline, PortId};

use crate::compile::Compiled;
use crate::control::{ControlClient, ControlServer};
use crate::reason::DropReason;
use crate::steer::{Route, Steer, SteerStats};
use crate::worker::{Stages, Verdict, Worker, VECTOR};

/// One worker's firewall pipeline.
pub struct Firewall {
    worker: Worker,
    /// `None` with a single worker: nothing is steered, no frame parsed twice.
    steer: Option<Steer>,
    control: Option<ControlServer>,
}

impl Firewall {
    /// A pipeline without steering (one worker) and without a control queue.
    pub fn new(worker: Worker) -> Firewall {
        Firewall {
            worker,
            steer: None,
            control: None,
        }
    }

    /// This worker's end of the steering mesh (`steer::mesh`, more than one worker).
    pub fn with_steer(mut self, steer: Steer) -> Firewall {
        self.steer = Some(steer);
        self
    }

    /// Makes the request queue the control thread talks to; returns the control thread's end.
    pub fn control(&mut self) -> ControlClient {
        let (c, s) = crate::control::channel();
        self.control = Some(s);
        c
    }

    /// The worker (tests, replay; the appliance's control thread uses requests).
    pub fn worker(&self) -> &Worker {
        &self.worker
    }

    pub fn steer_stats(&self) -> SteerStats {
        self.steer.as_ref().map(|s| s.stats()).unwrap_or_default()
    }

    /// Stage 4 for slot `i` (its frame `f`); with steering, a NEW connection whose reply
    /// tuple lands in another shard gets its redirect.
    #[allow(clippy::too_many_arguments)]
    fn finish<M: FramePool + ?Sized>(
        worker: &mut Worker,
        steer: Option<&mut Steer>,
        st: &Stages,
        i: usize,
        rs: &Compiled,
        f: &mut Frame,
        pool: &mut M,
        now_ns: u64,
    ) -> Action {
        let len = f.len();
        // the whole buffer, so a REJECT reply can be longer than the frame
        let cap = pool.buffer_capacity();
        pool.set_len(f, cap);
        let v = worker.finish_slot(rs, st, i, pool.data_mut(f), len, now_ns);
        let (out_len, action) = match v {
            Verdict::Forward => (len, Action::Forward),
            Verdict::Reply(n) => (n, Action::Reply),
            Verdict::Drop(r) => (len, Action::Drop(port_reason(r))),
        };
        pool.set_len(f, out_len);
        if let (Some(st_), Some((k, _))) = (steer, st.flow(i)) {
            if worker.trace().ct_state == Some(conntrack::CtState::New) {
                st_.after_new(worker.shard(), k, now_ns);
            }
        }
        action
    }
}

/// The ports-level drop reason of a data-plane drop (the data plane keeps the finer one).
pub fn port_reason(r: DropReason) -> ports::DropReason {
    match r {
        DropReason::Malformed => ports::DropReason::Malformed,
        _ => ports::DropReason::Policy,
    }
}

fn port_id(i: u8) -> PortId {
    if i & 1 == 0 {
        PortId::A
    } else {
        PortId::B
    }
}

impl Pipeline for Firewall {
    fn process_burst<M: FramePool + ?Sized>(
        &mut self,
        ingress: PortId,
        frames: &mut [Frame],
        pool: &mut M,
        actions: &mut [Action],
        now_ns: u64,
    ) {
        let w = &mut self.worker;
        let rs = w.rules().load_full();
        w.expire(now_ns);
        let port = ingress.index() as u8;
        for (frames, actions) in frames.chunks_mut(VECTOR).zip(actions.chunks_mut(VECTOR)) {
            let n = frames.len();
            let mut st = w.take_stages();
            for (i, f) in frames.iter().enumerate() {
                w.parse_slot(&mut st, i, port, pool.data(f));
            }
            // steering decides on the same parse: frames of other workers' flows go there
            if let Some(steer) = self.steer.as_mut() {
                for (i, (f, a)) in frames.iter().zip(actions.iter_mut()).enumerate() {
                    if let Route::To { worker, redirected } = steer.route(st.flow(i), false) {
                        let parsed = st.parsed(i);
                        *a = if steer.hand_off_parsed(
                            worker,
                            port,
                            pool.data(f),
                            redirected,
                            Some(&parsed),
                        ) {
                            Action::Handoff
                        } else {
                            Action::Drop(ports::DropReason::HandoffQueueFull)
                        };
                        st.skip(i);
                    }
                }
            }
            {
                let pool = &*pool;
                w.prepare(&rs, &mut st, n, |i| pool.data(&frames[i]), now_ns);
            }
            for (i, (f, a)) in frames.iter_mut().zip(actions.iter_mut()).enumerate() {
                if st.is_skipped(i) {
                    continue;
                }
                *a = Self::finish(w, self.steer.as_mut(), &st, i, &rs, f, pool, now_ns);
            }
            w.put_stages(st);
        }
    }

    fn handed_burst<M: FramePool + ?Sized>(
        &mut self,
        frames: &mut [Frame],
        ingress: &mut [PortId],
        pool: &mut M,
        actions: &mut [Action],
        now_ns: u64,
    ) -> usize {
        let Some(st) = self.steer.as_mut().filter(|s| s.has_handed()) else {
            return 0;
        };
        let w = &mut self.worker;
        let rs = w.rules().load_full();
        let mut stages = w.take_stages();
        let want = frames.len().min(VECTOR);
        let mut n = 0;
        // stage 1: the frames with the parse their sender made
        while n < want {
            let Some(mut f) = pool.alloc() else { break };
            let took = st.take(|h| {
                let b = h.bytes();
                if !pool.set_len(&mut f, b.len()) {
                    return None;
                }
                pool.data_mut(&f).copy_from_slice(b);
                Some((h.ingress(), h.redirected(), h.parsed().copied()))
            });
            let Some(Some((port, redirected, parsed))) = took else {
                pool.release(f);
                if took.is_none() {
                    break;
                }
                continue;
            };
            match parsed {
                Some(p) => w.adopt_slot(&mut stages, n, port, pool.data(&f), &p),
                None => w.parse_slot(&mut stages, n, port, pool.data(&f)),
            }
            if let Route::To {
                worker,
                redirected: true,
            } = st.route(stages.flow(n), redirected)
            {
                // a redirect held here: the flow's owner is a third worker
                // a full queue is counted in this worker's `queue_full`
                let parsed = stages.parsed(n);
                let _ = st.hand_off_parsed(worker, port, pool.data(&f), true, Some(&parsed));
                pool.release(f);
                continue;
            }
            frames[n] = f;
            ingress[n] = port_id(port);
            n += 1;
        }
        {
            let pool = &*pool;
            let frames = &frames[..n];
            w.prepare(&rs, &mut stages, n, |i| pool.data(&frames[i]), now_ns);
        }
        for i in 0..n {
            let mut f = frames[i];
            actions[i] = Self::finish(w, Some(&mut *st), &stages, i, &rs, &mut f, pool, now_ns);
            frames[i] = f;
        }
        w.put_stages(stages);
        n
    }

    fn between_bursts(&mut self, now_ns: u64) {
        let steer = match self.steer.as_mut() {
            Some(st) => {
                st.maintain(self.worker.shard(), now_ns);
                st.stats()
            }
            None => SteerStats::default(),
        };
        if let Some(c) = self.control.as_mut() {
            c.serve(&mut self.worker, steer, now_ns);
        }
    }
}

/// What a replay did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    pub packets: u64,
    pub forwarded: u64,
    pub replies: u64,
    pub dropped: u64,
}

/// `fwd replay`: reads a pcapng capture (interface 0 = port a, 1 = port b; packet timestamps
/// are the clock), runs every packet through the data plane in order, writes what the
/// appliance transmits to `output` (interface id = egress port, REJECT replies included, same
/// timestamps) and, if asked, one JSON verdict line per input packet.
pub fn replay_pcapng<R: std::io::Read, W: std::io::Write>(
    rules: Arc<arc_swap::ArcSwap<crate::compile::Compiled>>,
    ct: &conntrack::Config,
    input: R,
    output: W,
    verdicts: Option<&mut dyn std::io::Write>,
) -> Result<ReplaySummary, String> {
    let bridge = crate::bridge::BridgePolicy::default();
    replay_pcapng_bridged(rules, ct, bridge, input, output, verdicts)
}

/// [`replay_pcapng`] under a `[bridge]` policy other than the default.
pub fn replay_pcapng_bridged<R: std::io::Read, W: std::io::Write>(
    rules: Arc<arc_swap::ArcSwap<crate::compile::Compiled>>,
    ct: &conntrack::Config,
    bridge: crate::bridge::BridgePolicy,
    input: R,
    output: W,
    mut verdicts: Option<&mut dyn std::io::Write>,
) -> Result<ReplaySummary, String> {
    let mut reader = ports::pcapng::PcapngReader::new(input);
    let mut writer =
        ports::pcapng::PcapngWriter::new(output, 2).map_err(|e| format!("output: {e}"))?;
    let mut sum = ReplaySummary::default();
    let mut replay: Option<crate::replay::Replay> = None;
    while let Some(p) = reader.next_packet().map_err(|e| format!("input: {e}"))? {
        if p.interface > 1 {
            return Err(format!(
                "input: packet {} is on interface {}; fwd has ports 0 (a) and 1 (b)",
                sum.packets + 1,
                p.interface
            ));
        }
        let r = replay.get_or_insert_with(|| {
            let mut r = crate::replay::Replay::new(rules.clone(), ct, ct.max.max(1), p.ts_ns);
            r.worker_mut().set_bridge(bridge);
            r
        });
        let out = r.frame(p.interface as u8, p.ts_ns, &p.data);
        sum.packets += 1;
        match out.verdict {
            Verdict::Forward => sum.forwarded += 1,
            Verdict::Reply(_) => sum.replies += 1,
            Verdict::Drop(_) => sum.dropped += 1,
        }
        if let Some((port, bytes)) = &out.tx {
            writer
                .write_packet(u32::from(*port), p.ts_ns, bytes)
                .map_err(|e| format!("output: {e}"))?;
        }
        if let Some(v) = verdicts.as_mut() {
            writeln!(v, "{}", out.json).map_err(|e| format!("verdicts: {e}"))?;
        }
    }
    writer.into_inner().map_err(|e| format!("output: {e}"))?;
    Ok(sum)
}

/// Writes NFLOG events into a pcapng file (interface = the port the packet came in on, the
/// worker's timestamp, the first `log::SNAP` bytes); the control thread calls this in batches
/// from `log::drain`'s NFLOG callback.
pub fn write_nflog<W: std::io::Write>(
    w: &mut ports::pcapng::PcapngWriter<W>,
    ev: &crate::log::LogEvent,
) -> std::io::Result<()> {
    w.write_packet(u32::from(ev.ingress & 1), ev.ts_ns, ev.bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::compile;
    use crate::compile::tests::{cfg, v4};
    use arc_swap::ArcSwap;
    use ports::mem::HeapPool;
    use wire::builder::{FrameBuilder, IpPair, TcpSpec};
    use wire::tcp::TcpFlags;

    #[test]
    fn forwards_rejects_in_place_and_drops() {
        let text = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                    -A FORWARD -p udp -m udp --dport 53 -j ACCEPT\n-A FORWARD -p tcp -j REJECT --reject-with tcp-reset\n\
                    -A FORWARD -p udp -j REJECT\nCOMMIT\n";
        let c = compile(Some(&v4(text)), None, &cfg()).unwrap();
        let w = Worker::new(
            Arc::new(ArcSwap::from_pointee(c)),
            &conntrack::Config::default(),
            64,
            0,
            1,
            0,
        );
        let mut fw = Firewall::new(w);
        let b = FrameBuilder::default();
        let ip = IpPair::V4([198, 18, 0, 1], [198, 18, 0, 2]);
        let inputs = [
            b.udp(ip, 5000, 53, b"q"),
            b.tcp(
                ip,
                &TcpSpec {
                    src_port: 1,
                    dst_port: 2,
                    seq: 1,
                    ack: 0,
                    flags: TcpFlags::SYN,
                    window: 1,
                    options: vec![],
                    payload: b"",
                },
            ),
            b.udp(ip, 5000, 54, b"q"),
            b.echo(ip, true, 1, 1, b"x"),
            vec![0u8; 10],
        ];
        let mut pool = HeapPool::new(8, 2048);
        let mut frames = Vec::new();
        for f in &inputs {
            let mut fr = pool.alloc().unwrap();
            assert!(pool.set_len(&mut fr, f.len()));
            pool.data_mut(&fr).copy_from_slice(f);
            frames.push(fr);
        }
        let mut actions = vec![Action::Forward; frames.len()];
        fw.process_burst(
            PortId::A,
            &mut frames,
            &mut pool,
            &mut actions,
            1_000_000_000,
        );
        assert_eq!(
            actions,
            [
                Action::Forward,
                Action::Reply,
                Action::Reply,
                Action::Drop(ports::DropReason::Policy),
                Action::Drop(ports::DropReason::Malformed)
            ]
        );
        assert_eq!(pool.data(&frames[0]), &inputs[0][..]);
        assert_eq!(frames[1].len(), 54);
        let icmp = wire::parse_frame(pool.data(&frames[2])).unwrap();
        assert_eq!((icmp.icmp_type, icmp.icmp_code), (3, 3));
        assert_eq!(frames[2].len(), 14 + 20 + 8 + inputs[2].len() - 14);
        assert_eq!(frames[3].len(), inputs[3].len());
        let w = fw.worker();
        assert_eq!(w.stats().replies, 2);
        assert_eq!(w.shard().len(), 1);
    }

    /// Golden replay: a capture built with wire's builders through a stateful ruleset with
    /// DNAT, MASQUERADE and REJECT; the output capture is exactly the expected frames.
    #[test]
    fn replay_golden_capture() {
        let text = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
                    -A PREROUTING -i fw-c -d 198.18.0.2/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 198.18.0.3:80\n\
                    -A POSTROUTING -o fw-s -j MASQUERADE\nCOMMIT\n\
                    *filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                    -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
                    -A FORWARD -i fw-c -p tcp -m tcp --dport 80 -j ACCEPT\n\
                    -A FORWARD -i fw-c -p tcp -j REJECT --reject-with tcp-reset\nCOMMIT\n";
        let c = compile(Some(&v4(text)), None, &cfg()).unwrap();
        let rules = Arc::new(ArcSwap::from_pointee(c));
        let b = FrameBuilder::default();
        let r = FrameBuilder {
            src_mac: b.dst_mac,
            dst_mac: b.src_mac,
            ..b.clone()
        };
        let tcp = |fb: &FrameBuilder,
                   s: [u8; 4],
                   d: [u8; 4],
                   sp: u16,
                   dp: u16,
                   fl: u8,
                   seq: u32,
                   ack: u32| {
            fb.tcp(
                IpPair::V4(s, d),
                &TcpSpec {
                    src_port: sp,
                    dst_port: dp,
                    seq,
                    ack,
                    flags: TcpFlags(fl),
                    window: 100,
                    options: vec![],
                    payload: b"",
                },
            )
        };
        let (c_, s_, s3, nat) = (
            [198, 18, 0, 1],
            [198, 18, 0, 2],
            [198, 18, 0, 3],
            [198, 18, 0, 254],
        );
        let input = [
            (0u32, 1_000u64, tcp(&b, c_, s_, 40000, 8080, 0x02, 10, 0)),
            (1, 2_000, tcp(&r, s3, nat, 80, 40000, 0x12, 50, 11)),
            (0, 3_000, tcp(&b, c_, s_, 40000, 8080, 0x10, 11, 51)),
            (0, 4_000, tcp(&b, c_, s_, 40001, 22, 0x02, 7, 0)),
            (1, 5_000, tcp(&r, s3, c_, 22, 1, 0x02, 1, 0)),
        ];
        let mut cap = Vec::new();
        {
            let mut w = ports::pcapng::PcapngWriter::new(&mut cap, 2).unwrap();
            for (i, ts, f) in &input {
                w.write_packet(*i, *ts, f).unwrap();
            }
            w.into_inner().unwrap();
        }
        let mut out = Vec::new();
        let mut lines = Vec::new();
        let sum = replay_pcapng(
            rules,
            &conntrack::Config::default(),
            &cap[..],
            &mut out,
            Some(&mut lines),
        )
        .unwrap();
        assert_eq!(
            sum,
            ReplaySummary {
                packets: 5,
                forwarded: 3,
                replies: 1,
                dropped: 1
            }
        );
        let got = ports::pcapng::PcapngReader::new(&out[..])
            .read_all()
            .unwrap();
        let got: Vec<(u32, u64, Vec<u8>)> = got
            .into_iter()
            .map(|p| (p.interface, p.ts_ns, p.data))
            .collect();
        let want = vec![
            (1, 1_000, tcp(&b, nat, s3, 40000, 80, 0x02, 10, 0)),
            (0, 2_000, tcp(&r, s_, c_, 8080, 40000, 0x12, 50, 11)),
            (1, 3_000, tcp(&b, nat, s3, 40000, 80, 0x10, 11, 51)),
            (
                0,
                4_000,
                FrameBuilder {
                    ident: 0,
                    dont_frag: true,
                    ttl: 64,
                    ..r.clone()
                }
                .tcp(
                    IpPair::V4(s_, c_),
                    &TcpSpec {
                        src_port: 22,
                        dst_port: 40001,
                        seq: 0,
                        ack: 8,
                        flags: TcpFlags(0x14),
                        window: 0,
                        options: vec![],
                        payload: b"",
                    },
                ),
            ),
        ];
        assert_eq!(got, want);
        let lines = String::from_utf8(lines).unwrap();
        let lines: Vec<&str> = lines.lines().collect();
        assert_eq!(lines.len(), 5);
        assert!(
            lines[0].contains("\"hook\":\"nat PREROUTING\",\"chain\":\"PREROUTING\",\"rule\":1"),
            "{}",
            lines[0]
        );
        assert!(
            lines[0].contains("\"hook\":\"nat POSTROUTING\",\"chain\":\"POSTROUTING\",\"rule\":1"),
            "{}",
            lines[0]
        );
        assert!(lines[3].contains("\"verdict\":\"reply\""), "{}", lines[3]);
        assert!(
            lines[4].contains("\"rule\":\"policy\",\"policy\":\"DROP\""),
            "{}",
            lines[4]
        );
    }

    #[test]
    fn nflog_events_become_pcapng_packets() {
        let b = FrameBuilder::default();
        let f = b.udp(
            IpPair::V4([198, 18, 0, 1], [198, 18, 0, 2]),
            1,
            2,
            b"logged",
        );
        let ev = crate::log::LogEvent::new(crate::log::LogKind::Nflog { group: 1 }, "p", &f, 1, 0)
            .at(77);
        let mut out = Vec::new();
        let mut w = ports::pcapng::PcapngWriter::new(&mut out, 2).unwrap();
        write_nflog(&mut w, &ev).unwrap();
        w.into_inner().unwrap();
        let got = ports::pcapng::PcapngReader::new(&out[..])
            .read_all()
            .unwrap();
        assert_eq!((got[0].interface, got[0].ts_ns, &got[0].data), (1, 77, &f));
    }
}
