//! Zero allocations per packet in steady state on the appliance's path: a counting
//! `#[global_allocator]` around the system allocator, and the `FirewallPipeline` pipeline fwd's workers
//! run over in-memory buffers (a `BufBurst`: this crate knows no ports; the bench drives the
//! same pipeline over ports' pool), through established TCP with SNAT, new flows that are accepted
//! (each creates a conntrack entry), new flows that are dropped, and LOG events. After one
//! warm-up round of each, not one allocation, reallocation or free may happen on the thread
//! that processes the bursts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use dataplane::pipeline::{Action, BufBurst, Burst, BurstFill, FirewallPipeline};
use dataplane::{compile, CompileConfig, DropReason, Pipeline, PortId, PortInfo, Worker};
use wire::builder::{FrameBuilder, IpPair, TcpSpec};
use wire::tcp::TcpFlags;

struct Counting;

static EVENTS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Only the thread under test counts (the test harness allocates on its own threads).
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    if COUNTING.with(|c| c.get()) {
        EVENTS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method passes its caller's arguments, which meet `GlobalAlloc`'s contract,
// unchanged to `System` and returns its answer; counting touches no allocated memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: as above
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note();
        // SAFETY: as above
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: as above
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: as above
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const BURST: usize = 32;
const FLOWS: u16 = 256;

fn tcp(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    let mut f = FrameBuilder::default().tcp(
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
    );
    f.resize(f.len().max(60), 0);
    f
}

struct Bench {
    fw: FirewallPipeline,
    frames: BufBurst,
    actions: [Action; BURST],
    log: rtrb::Consumer<dataplane::log::LogEvent>,
}

impl Bench {
    /// Runs `frames` from `ingress` in bursts; returns how many were forwarded. Allocates
    /// nothing of its own.
    fn run(&mut self, ingress: PortId, frames: &[Vec<u8>], now: &mut u64) -> usize {
        let mut forwarded = 0;
        for chunk in frames.chunks(BURST) {
            self.frames.clear();
            for t in chunk {
                assert!(self.frames.push(t), "a free buffer");
            }
            let n = chunk.len();
            self.fw
                .process_burst(ingress, &mut self.frames, &mut self.actions[..n], *now);
            for i in 0..n {
                if self.actions[i] == Action::Forward {
                    forwarded += 1;
                }
            }
            self.fw.between_bursts(*now);
            *now += 10_000;
            while self.log.pop().is_ok() {}
        }
        forwarded
    }
}

#[test]
fn the_appliance_path_allocates_nothing_per_packet_in_steady_state() {
    let text = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
                -A POSTROUTING -o b -s 198.18.0.0/16 -j SNAT --to-source 198.19.0.254\nCOMMIT\n\
                *filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
                -A FORWARD -p tcp -m tcp --dport 22 -j LOG --log-prefix \"ssh \"\n\
                -A FORWARD -p tcp -m tcp --dport 23 -j DROP\n\
                -A FORWARD -i a -p tcp -m tcp --dport 80 -j ACCEPT\nCOMMIT\n";
    let rs = rules::parse_restore("alloc", text, rules::Family::Ipv4).unwrap();
    let cfg = CompileConfig {
        ports: [PortInfo::named("a"), PortInfo::named("b")],
        workers: 1,
    };
    let compiled = compile(Some(&rs), None, &cfg).unwrap();
    let rules = Arc::new(ArcSwap::from_pointee(compiled));
    let mut now = 1_000_000_000u64;
    let mut w = Worker::new(rules, &conntrack::Config::default(), 1 << 16, 0, 1, now);
    let (tx, log) = rtrb::RingBuffer::new(1024);
    w.set_log_queue(tx);
    let mut b = Bench {
        fw: FirewallPipeline::new(w),
        frames: BufBurst::new(BURST, 2048),
        actions: [Action::Forward; BURST],
        log,
    };

    // established flows with SNAT: SYN out, the SYN-ACK back to the translated address
    let server = [198, 19, 1, 1];
    let client = |i: u16| [198, 18, (i >> 8) as u8, (i & 255) as u8 + 1];
    let syns: Vec<Vec<u8>> = (0..FLOWS)
        .map(|i| tcp(client(i), server, 10000 + i, 80, 0x02, 100, 0))
        .collect();
    let mut synacks = Vec::new();
    for t in &syns {
        let mut fr = BufBurst::new(1, 2048);
        assert!(fr.push(t));
        let mut a = [Action::Drop(DropReason::Policy)];
        b.fw.process_burst(PortId::A, &mut fr, &mut a, now);
        assert_eq!(a[0], Action::Forward);
        let info = wire::parse_frame(fr.frame(0)).unwrap();
        assert_eq!(info.src_v4(), [198, 19, 0, 254], "SNAT");
        synacks.push(tcp(
            server,
            info.src_v4(),
            80,
            info.src_port,
            0x12,
            500,
            101,
        ));
    }
    assert_eq!(b.run(PortId::B, &synacks, &mut now), FLOWS as usize);
    let acks: Vec<Vec<u8>> = (0..FLOWS)
        .map(|i| tcp(client(i), server, 10000 + i, 80, 0x10, 101, 501))
        .collect();
    // new flows: fresh source ports every round, built before anything is counted (valid
    // checksums: conntrack verifies them)
    let fresh = |r: u16, dport: u16| -> Vec<Vec<u8>> {
        (0..64u16)
            .map(|i| tcp(client(i), server, 20000 + r * 64 + i, dport, 0x02, 1, 0))
            .collect()
    };
    let new_ok: Vec<Vec<Vec<u8>>> = (0..=20).map(|r| fresh(r, 80)).collect();
    let new_dropped: Vec<Vec<Vec<u8>>> = (0..=20).map(|r| fresh(r, 23)).collect();
    let logged: Vec<Vec<Vec<u8>>> = (0..=20).map(|r| fresh(r, 22)).collect();
    let round = |b: &mut Bench, r: usize, now: &mut u64| {
        [
            b.run(PortId::A, &acks, now),
            b.run(PortId::A, &new_ok[r], now),
            b.run(PortId::A, &new_dropped[r], now),
            b.run(PortId::A, &logged[r], now),
        ]
    };
    // warm-up: first use of every path (arc-swap's thread-local debt list, the log queue)
    assert_eq!(round(&mut b, 0, &mut now), [FLOWS as usize, 64, 0, 0]);
    let events0 = b.fw.worker().stats().log_events;

    let mut results = Vec::with_capacity(20);
    COUNTING.with(|c| c.set(true));
    for r in 1..=20 {
        let got = round(&mut b, r, &mut now);
        results.push(got);
    }
    COUNTING.with(|c| c.set(false));
    let allocations = EVENTS.load(Ordering::Relaxed);

    for got in &results {
        assert_eq!(*got, [FLOWS as usize, 64, 0, 0]);
    }
    let st = b.fw.worker().stats();
    assert_eq!(st.log_events - events0, 20 * 64, "LOG ran");
    assert_eq!(b.fw.worker().shard().len(), u32::from(FLOWS) + 21 * 64);
    assert_eq!(
        allocations,
        0,
        "{allocations} heap operations for {} packets",
        20 * (FLOWS as usize + 3 * 64)
    );
}
