//! pipeline-bench RULES TRACE: the whole data plane (parse, conntrack, four hooks, NAT rewrite)
//! in memory, one worker, 60-byte frames (64 on the wire with the FCS), bursts of 32.
//!
//! Ruleset: filter FORWARD (policy DROP) = `ESTABLISHED,RELATED -j ACCEPT`, `-s 198.18.0.0/16 -i a
//! -j ACCEPT`, then the ClassBench set converted to iptables rules `-j DROP`; nat POSTROUTING
//! SNATs 198.18.0.0/16 leaving through b.
//!
//! * `established`: 1024 established TCP flows from 198.18/16 with SNAT, ACK segments from a
//!   (each frame is restored from its template first: a 60-byte copy per packet is included).
//! * `new`: the ClassBench trace as TCP SYN / UDP / other frames from a: every packet is a new
//!   connection classified against the whole set; the set DROPs, so each stays new (conntrack
//!   creates and releases an entry per packet).
//! * `mix`: 3 established packets to 1 new, interleaved.
//! * `checksum`: what `[conntrack] checksum = true` (netfilter's `nf_conntrack_checksum`, the
//!   full TCP checksum verified before conntrack) costs: the established flows without rules,
//!   as 60-byte ACKs and as 1514-byte data segments, through a worker with the check and one
//!   without, alternating, best of 5 each (`SCENARIO=checksum` runs only this).
//!
//! Every scenario but `checksum` runs the appliance's path: the `FirewallPipeline` pipeline fwd's workers
//! run, fed bursts of 32 from an in-memory port, its frames sorted into per-port TX batches by
//! action and transmitted (see `Appliance`).
//!
//! Prints one line per scenario (ns and cycles per packet at the nominal clock from
//! /proc/cpuinfo, Mpps) and checks the data plane's FORWARD decision for the first trace keys
//! against a linear scan of the same rules.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use classify::classbench::{parse_rules, parse_trace, to_iptables_restore};
use classify::{ct, Key, LinearClassifier, RuleSpec, NO_MATCH};
use dataplane::pipeline::FirewallPipeline;
use dataplane::pipeline::{Action, Burst};
use dataplane::{compile, CompileConfig, HookPoint, PortInfo, Verdict, Worker};
use dataplane::{Pipeline, PortId};
use ports::mem::HeapPool;
use ports::{Frame, FramePool, Frames, Port};
use wire::builder::{FrameBuilder, IpPair, TcpSpec};
use wire::tcp::TcpFlags;

const FRAME: usize = 60;
const BURST: usize = 32;

fn mhz() -> f64 {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("cpu MHz"))
                .and_then(|l| l.split(':').nth(1))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// Nanoseconds this thread has spent on a CPU (first field of /proc/thread-self/schedstat): on
/// a shared machine the wall clock also counts time the thread waited for a CPU.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn pad(mut f: Vec<u8>) -> [u8; FRAME] {
    f.resize(FRAME, 0);
    let mut a = [0u8; FRAME];
    a.copy_from_slice(&f[..FRAME]);
    a
}

fn tcp(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    FrameBuilder::default().tcp(
        IpPair::V4(src, dst),
        &TcpSpec {
            src_port: sp,
            dst_port: dp,
            seq,
            ack,
            flags: TcpFlags(flags),
            window: 64240,
            options: vec![],
            payload: b"",
        },
    )
}

fn frame_of(k: &Key) -> [u8; FRAME] {
    let src = (k.src as u32).to_be_bytes();
    let dst = (k.dst as u32).to_be_bytes();
    let b = FrameBuilder::default();
    let ip = IpPair::V4(src, dst);
    pad(match k.proto {
        6 => tcp(src, dst, k.sport, k.dport, 0x02, 1, 0),
        17 => b.udp(ip, k.sport, k.dport, b""),
        1 => b.echo(ip, true, k.sport, 1, b""),
        p => b.ip_frame(ip, p, &[0u8; 8]),
    })
}

struct Run {
    packets: u64,
    /// On-CPU time of the run (falls back to wall time where schedstat is missing).
    ns: f64,
    wall_ns: f64,
    forwarded: u64,
}

/// `ROUNDS=n` overrides every scenario's round count (short runs under callgrind).
fn rounds(default: usize) -> usize {
    std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The port frames come in on: receiving restores the scenario's next frames from their
/// templates into pool buffers (what a NIC's DMA into UMEM does: one 60-byte copy a packet),
/// `limit` frames in all.
struct FeedPort<'a> {
    frames: &'a [[u8; FRAME]],
    next: usize,
    limit: u64,
}

impl Port for FeedPort<'_> {
    type Pool = HeapPool;

    fn receive_into(&mut self, pool: &mut HeapPool, out: &mut Frames, max: usize) -> usize {
        let mut n = 0;
        while n < max && self.limit > 0 {
            let Some(mut f) = pool.alloc() else { break };
            let t = &self.frames[self.next];
            pool.set_len(&mut f, FRAME);
            pool.data_mut(&f).copy_from_slice(t);
            if let Err(f) = out.push(f) {
                pool.release(f);
                break;
            }
            self.next = (self.next + 1) % self.frames.len();
            self.limit -= 1;
            n += 1;
        }
        n
    }
    fn tx_room(&mut self, _want: usize) -> usize {
        0
    }
    fn tx_stage(&mut self, pool: &mut HeapPool, frame: Frame) {
        pool.release(frame);
    }
    fn tx_commit(&mut self, _pool: &mut HeapPool) {}
    fn maintain(&mut self, _pool: &mut HeapPool) {}
}

/// A transmit ring that completes at once: descriptors back to the pool, no byte copied (as
/// AF_XDP's zero-copy TX); counts what it sent.
#[derive(Default)]
struct SinkPort {
    sent: u64,
}

impl Port for SinkPort {
    type Pool = HeapPool;

    fn receive_into(&mut self, _pool: &mut HeapPool, _out: &mut Frames, _max: usize) -> usize {
        0
    }
    fn tx_room(&mut self, want: usize) -> usize {
        want
    }
    fn tx_stage(&mut self, pool: &mut HeapPool, frame: Frame) {
        pool.release(frame);
        self.sent += 1;
    }
    fn tx_commit(&mut self, _pool: &mut HeapPool) {}
    fn maintain(&mut self, _pool: &mut HeapPool) {}
}

/// The appliance's path for one worker: fwd's worker loop (`fwd::worker::Worker::burst_from`)
/// over in-memory ports: receive a burst from port a, the [`FirewallPipeline`] pipeline the workers
/// run (its vector stages, steering off with one worker), sort the frames into per-port TX
/// batches by action, transmit forwarded frames on b and replies on a, recycle drops.
struct Appliance {
    fw: FirewallPipeline,
    pool: HeapPool,
    frames: Frames,
    actions: [Action; BURST],
    forward: Frames,
    reply: Frames,
    a: SinkPort,
    b: SinkPort,
    dropped: u64,
}

impl Appliance {
    fn new(fw: FirewallPipeline) -> Appliance {
        Appliance {
            fw,
            pool: HeapPool::new(4 * BURST as u32, 2048),
            frames: Frames::with_capacity(BURST),
            actions: [Action::Forward; BURST],
            forward: Frames::with_capacity(BURST),
            reply: Frames::with_capacity(BURST),
            a: SinkPort::default(),
            b: SinkPort::default(),
            dropped: 0,
        }
    }

    fn worker(&self) -> &Worker {
        self.fw.worker()
    }

    /// One poll round with a burst from port a; returns frames received.
    fn poll(&mut self, rx: &mut FeedPort, now: u64) -> usize {
        self.fw.between_bursts(now);
        let mut burst = rx.receive(&mut self.pool, &mut self.frames, BURST);
        let n = burst.len();
        if n == 0 {
            return 0;
        }
        self.fw
            .process_burst(PortId::A, &mut burst, &mut self.actions[..n], now);
        {
            let (pool, frames) = burst.parts();
            for (f, a) in frames.drain().zip(&self.actions[..n]) {
                let f = match a {
                    Action::Forward => self.forward.push(f),
                    Action::Reply => self.reply.push(f),
                    Action::Drop(_) | Action::Handoff => {
                        self.dropped += 1;
                        Err(f)
                    }
                };
                if let Err(f) = f {
                    pool.release(f);
                }
            }
        }
        drop(burst);
        if !self.forward.is_empty() {
            self.b
                .transmit(&mut self.pool, self.forward.len())
                .send(&mut self.forward);
            self.pool.release_all(&mut self.forward);
        }
        if !self.reply.is_empty() {
            self.a
                .transmit(&mut self.pool, self.reply.len())
                .send(&mut self.reply);
            self.pool.release_all(&mut self.reply);
        }
        n
    }
}

fn run(app: &mut Appliance, frames: &[[u8; FRAME]], rounds: usize, mut now: u64) -> Run {
    let mut rx = FeedPort {
        frames,
        next: 0,
        limit: (frames.len() * rounds) as u64,
    };
    let sent0 = app.b.sent;
    let mut packets = 0u64;
    let t = Instant::now();
    let c0 = cpu_ns();
    loop {
        let n = app.poll(&mut rx, now);
        if n == 0 {
            break;
        }
        packets += n as u64;
        now += 1000;
    }
    let wall_ns = t.elapsed().as_nanos() as f64;
    let cpu = cpu_ns().saturating_sub(c0) as f64;
    Run {
        packets,
        ns: if cpu > 0.0 { cpu } else { wall_ns },
        wall_ns,
        forwarded: app.b.sent - sent0,
    }
}

/// On-CPU ns per packet of `frames` (any size) through `w`, bursts of [`BURST`].
fn run_sized(w: &mut Worker, frames: &[Vec<u8>], rounds: usize, mut now: u64) -> f64 {
    let mut bufs = vec![[0u8; 2048]; BURST];
    let mut lens = [0usize; BURST];
    let mut verdicts = [Verdict::Forward; BURST];
    let mut packets = 0u64;
    let t = Instant::now();
    let c0 = cpu_ns();
    for _ in 0..rounds {
        for chunk in frames.chunks(BURST) {
            for ((b, f), l) in bufs.iter_mut().zip(chunk).zip(lens.iter_mut()) {
                b[..f.len()].copy_from_slice(f);
                *l = f.len();
            }
            let n = chunk.len();
            let mut refs: [&mut [u8]; BURST] = Default::default();
            for (r, b) in refs.iter_mut().zip(bufs.iter_mut()) {
                *r = &mut b[..];
            }
            w.process_burst(0, &mut refs[..n], &mut lens[..n], &mut verdicts[..n], now);
            assert!(verdicts[..n].iter().all(|v| *v == Verdict::Forward));
            packets += n as u64;
            now += 1000;
        }
    }
    let cpu = cpu_ns().saturating_sub(c0) as f64;
    let ns = if cpu > 0.0 {
        cpu
    } else {
        t.elapsed().as_nanos() as f64
    };
    ns / packets as f64
}

/// The `checksum` scenario: the cost of verifying the L4 checksum before conntrack.
fn checksum_cost(cfg: &CompileConfig, ghz: f64) {
    let flows = 1024u32;
    let server = [198, 19, 1, 1];
    let payload = vec![0x5au8; 1460];
    let mut workers = Vec::new();
    for checksum in [true, false] {
        let ct = conntrack::Config {
            checksum,
            ..conntrack::Config::default()
        };
        let bare = Arc::new(ArcSwap::from_pointee(dataplane::Compiled::accept_all(cfg)));
        let mut w = Worker::new(bare, &ct, 1 << 12, 0, 1, 0);
        let mut buf = [0u8; 256];
        for i in 0..flows {
            let c = [198, 18, (i >> 8) as u8, (i & 255) as u8 + 1];
            let sp = 10000 + i as u16;
            for (port, f) in [
                (0, tcp(c, server, sp, 80, 0x02, 100, 0)),
                (1, tcp(server, c, 80, sp, 0x12, 500, 101)),
            ] {
                buf[..f.len()].copy_from_slice(&f);
                assert_eq!(w.process(port, &mut buf, f.len(), 1), Verdict::Forward);
            }
        }
        workers.push(w);
    }
    let mut sizes = Vec::new();
    for data in [&[][..], &payload[..]] {
        let frames: Vec<Vec<u8>> = (0..flows)
            .map(|i| {
                let c = [198, 18, (i >> 8) as u8, (i & 255) as u8 + 1];
                let mut f = FrameBuilder::default().tcp(
                    IpPair::V4(c, server),
                    &TcpSpec {
                        src_port: 10000 + i as u16,
                        dst_port: 80,
                        seq: 101,
                        ack: 501,
                        flags: TcpFlags(0x18),
                        window: 64240,
                        options: vec![],
                        payload: data,
                    },
                );
                f.resize(f.len().max(FRAME), 0);
                f
            })
            .collect();
        let rounds = self::rounds(if data.is_empty() { 300 } else { 60 });
        let (mut on, mut off) = (f64::MAX, f64::MAX);
        for _ in 0..5 {
            on = on.min(run_sized(&mut workers[0], &frames, rounds, 2));
            off = off.min(run_sized(&mut workers[1], &frames, rounds, 2));
        }
        let len = frames[0].len();
        println!(
            "scenario=checksum frame={len} on_ns_per_pkt={on:.1} off_ns_per_pkt={off:.1} cost_ns={:.1} cost_cycles={:.0} ratio={:.3}",
            on - off,
            (on - off) * ghz,
            on / off
        );
        sizes.push((len, on, off));
    }
    let line: Vec<String> = sizes
        .iter()
        .map(|(len, on, off)| {
            format!(
                "f{len}_on_ns={on:.1} f{len}_off_ns={off:.1} f{len}_ratio={:.3}",
                on / off
            )
        })
        .collect();
    println!("CHECKSUM {}", line.join(" "));
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: pipeline-bench RULES TRACE");
        std::process::exit(2);
    }
    let specs =
        parse_rules(&std::fs::read_to_string(&args[0]).expect("read rules")).expect("parse rules");
    let trace =
        parse_trace(&std::fs::read_to_string(&args[1]).expect("read trace")).expect("parse trace");
    let (text, origin) = to_iptables_restore(&specs, "FORWARD", "DROP").expect("convert");
    let text = text.replace(":FORWARD ACCEPT [0:0]\n", ":FORWARD DROP [0:0]\n").replacen(
        ":OUTPUT ACCEPT [0:0]\n",
        ":OUTPUT ACCEPT [0:0]\n-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A FORWARD -s 198.18.0.0/16 -i a -j ACCEPT\n",
        1,
    ) + "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
         -A POSTROUTING -s 198.18.0.0/16 -o b -j SNAT --to-source 198.19.0.254\nCOMMIT\n";
    let rs = rules::parse_restore("classbench", &text, rules::Family::Ipv4).unwrap_or_else(|d| {
        eprintln!("{d}");
        std::process::exit(1)
    });
    let cfg = CompileConfig {
        ports: [PortInfo::named("a"), PortInfo::named("b")],
        workers: 1,
    };
    let t = Instant::now();
    let compiled = compile(Some(&rs), None, &cfg).unwrap_or_else(|e| {
        eprintln!("{e:?}");
        std::process::exit(1)
    });
    let build_ms = t.elapsed().as_secs_f64() * 1e3;
    let fwd_chain = compiled.v4.hooks[HookPoint::FilterForward as usize].expect("FORWARD");
    let n_rules = compiled.v4.chains[fwd_chain as usize].rules.len();
    let rules = Arc::new(ArcSwap::from_pointee(compiled));
    let ct_cfg = conntrack::Config::default();
    if std::env::var("SCENARIO").map_or(true, |s| s == "checksum") {
        checksum_cost(&cfg, mhz() / 1000.0);
    }
    let mut w = Worker::new(rules.clone(), &ct_cfg, 1 << 18, 0, 1, 0);

    // established flows with SNAT
    let flows = 1024u32;
    let server = [198, 19, 1, 1];
    let mut est = Vec::new();
    let mut buf = [0u8; 256];
    let mut now = 1_000_000_000u64;
    for i in 0..flows {
        let c = [198, 18, (i >> 8) as u8, (i & 255) as u8 + 1];
        let sp = 10000 + i as u16;
        let syn = tcp(c, server, sp, 80, 0x02, 100, 0);
        buf[..syn.len()].copy_from_slice(&syn);
        assert_eq!(w.process(0, &mut buf, syn.len(), now), Verdict::Forward);
        let info = wire::parse_frame(&buf[..syn.len()]).unwrap();
        let (nat_addr, nat_port) = (info.src_v4(), info.src_port);
        let synack = tcp(server, nat_addr, 80, nat_port, 0x12, 500, 101);
        buf[..synack.len()].copy_from_slice(&synack);
        assert_eq!(w.process(1, &mut buf, synack.len(), now), Verdict::Forward);
        est.push(pad(tcp(c, server, sp, 80, 0x10, 101, 501)));
        now += 1000;
    }
    let new: Vec<[u8; FRAME]> = trace.iter().map(|t| frame_of(&t.key)).collect();

    // the floor: the same established flows with no rules at all (parse + conntrack + confirm)
    let bare = Arc::new(ArcSwap::from_pointee(dataplane::Compiled::accept_all(&cfg)));
    let mut wb = Worker::new(bare, &ct_cfg, 1 << 12, 0, 1, 0);
    for i in 0..flows {
        let c = [198, 18, (i >> 8) as u8, (i & 255) as u8 + 1];
        let sp = 10000 + i as u16;
        for (port, f) in [
            (0, tcp(c, server, sp, 80, 0x02, 100, 0)),
            (1, tcp(server, c, 80, sp, 0x12, 500, 101)),
        ] {
            buf[..f.len()].copy_from_slice(&f);
            assert_eq!(wb.process(port, &mut buf, f.len(), now), Verdict::Forward);
        }
    }
    let mut app_bare = Appliance::new(FirewallPipeline::new(wb));
    if std::env::var("SCENARIO").map_or(true, |s| s == "established_norules") {
        let _ = run(&mut app_bare, &est, 1, now);
        let r = run(&mut app_bare, &est, rounds(2000), now);
        let ns = r.ns / r.packets as f64;
        println!(
            "scenario=established_norules packets={} forwarded={} ns_per_pkt={ns:.1} cycles_per_pkt={:.0} mpps={:.2} wall_ns_per_pkt={:.1}",
            r.packets,
            r.forwarded,
            ns * mhz() / 1000.0,
            1e3 / ns,
            r.wall_ns / r.packets as f64
        );
    }

    // the FORWARD decision of new flows against a linear scan of the same chain
    let fwd_specs: Vec<RuleSpec> = rules.load().v4.chains[fwd_chain as usize]
        .classifier
        .rules();
    let lin = LinearClassifier::new(&fwd_specs);
    let mut mismatches = 0;
    let checked = new.len().min(
        std::env::var("CHECK")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20_000),
    );
    for (f, tr) in new.iter().zip(&trace).take(checked) {
        let mut b = [0u8; 256];
        b[..FRAME].copy_from_slice(f);
        let _ = w.process(0, &mut b, FRAME, now);
        let mut k = tr.key;
        k.iif = 0;
        k.oif = 1;
        k.ct = ct::NEW;
        let want = lin.lookup(&k, 0);
        let got = w.trace().decided[HookPoint::FilterForward as usize].map(|(_, r)| r);
        let want = if want == NO_MATCH {
            Some(dataplane::POLICY)
        } else {
            Some(want)
        };
        if got != want {
            mismatches += 1;
            if mismatches <= 3 {
                eprintln!("mismatch {k:?}: dataplane {got:?} linear {want:?}");
            }
        }
    }
    let _ = origin;

    let mut mix = Vec::new();
    for (i, f) in new.iter().enumerate() {
        for j in 0..3 {
            mix.push(est[(3 * i + j) % est.len()]);
        }
        mix.push(*f);
    }

    let mut app = Appliance::new(FirewallPipeline::new(w));
    let ghz = mhz() / 1000.0;
    let mut results = Vec::new();
    for (name, frames, rounds) in [
        ("established_snat", &est, 2000usize),
        ("new_flows", &new, 3),
        ("mix_3est_1new", &mix, 1),
    ] {
        if std::env::var("SCENARIO").is_ok_and(|s| s != name) {
            continue;
        }
        let _ = run(&mut app, frames, 1, now); // warm up
        let r = run(&mut app, frames, self::rounds(rounds), now);
        let ns = r.ns / r.packets as f64;
        println!(
            "scenario={name} packets={} forwarded={} ns_per_pkt={ns:.1} cycles_per_pkt={:.0} mpps={:.2} wall_ns_per_pkt={:.1}",
            r.packets,
            r.forwarded,
            ns * ghz,
            1e3 / ns,
            r.wall_ns / r.packets as f64
        );
        results.push((name, ns));
    }
    let stats = app.worker().stats();
    println!("rules={n_rules} build_ms={build_ms:.0} checked={checked} mismatches={mismatches} cpu_mhz={:.0}", ghz * 1e3);
    println!(
        "drops nat_ports_exhausted={} ct_table_full={}",
        stats.drops[dataplane::DropReason::NatPortsExhausted.index()],
        stats.drops[dataplane::DropReason::CtTableFull.index()]
    );
    let line: Vec<String> = results
        .iter()
        .map(|(n, ns)| {
            format!(
                "{n}_ns={ns:.1} {n}_cycles={:.0} {n}_mpps={:.2}",
                ns * ghz,
                1e3 / ns
            )
        })
        .collect();
    println!(
        "PIPELINE path=appliance rules={n_rules} {} mismatches={mismatches}",
        line.join(" ")
    );
}
