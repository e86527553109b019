//! What the kernel-oracle tests share: frames from either side of the bump in the wire, and
//! the comparison of what the kernel's bridge ([`testkit::Bridge`]) forwards with what a
//! `Worker` with the same rules forwards, frame by frame.

// Each test binary uses the part it needs.
#![allow(dead_code)]

use std::sync::Arc;

use arc_swap::ArcSwap;
use dataplane::{compile, CompileConfig, PortInfo, Verdict, Worker};
use testkit::{Bridge, Side};
use wire::builder::{FrameBuilder, IpPair};
use wire::ethernet::MacAddr;

pub const A_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0a]);
pub const B_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0b]);
pub const A_IP: [u8; 4] = [198, 18, 0, 1];
pub const B_IP: [u8; 4] = [198, 18, 1, 2];

/// A frame builder for a frame `side` sends across.
pub fn from(side: Side) -> FrameBuilder {
    let (src_mac, dst_mac) = match side {
        Side::A => (A_MAC, B_MAC),
        Side::B => (B_MAC, A_MAC),
    };
    FrameBuilder {
        src_mac,
        dst_mac,
        ..FrameBuilder::default()
    }
}

pub fn ips(side: Side) -> IpPair {
    match side {
        Side::A => IpPair::V4(A_IP, B_IP),
        Side::B => IpPair::V4(B_IP, A_IP),
    }
}

pub fn udp(side: Side, sport: u16, dport: u16) -> (Side, Vec<u8>) {
    (side, from(side).udp(ips(side), sport, dport, b"oracle"))
}

/// What one run through both gave.
pub struct Outcome {
    /// The frames the two disagree on: forwarded by one and not the other, or forwarded with
    /// different bytes (both shown in hex).
    pub disagree: Vec<String>,
    /// Frames the kernel held back.
    pub held_back: usize,
    /// Frames the kernel forwarded changed.
    pub changed: usize,
    /// The worker afterwards (its counters).
    pub worker: Worker,
}

/// Loads `v4`/`v6` (either may be empty) into the bridge `br` and a worker whose ports are
/// `port(name)` for the bridge's two ports, lets `setup` prepare the worker (given the start
/// time), and sends `frames` through both, 25 ms apart.
pub fn against_kernel(
    br: &Bridge,
    v4: &str,
    v6: &str,
    frames: &[(Side, Vec<u8>)],
    port: impl Fn(&str) -> PortInfo,
    setup: impl FnOnce(&mut Worker, u64),
) -> Outcome {
    br.restore(v4, v6);
    let kernel = br.exchange(frames, 25);
    let parse = |text: &str, name, family| {
        (!text.is_empty()).then(|| rules::parse_restore(name, text, family).unwrap())
    };
    let rs4 = parse(v4, "oracle.v4", rules::Family::Ipv4);
    let rs6 = parse(v6, "oracle.v6", rules::Family::Ipv6);
    let p = &br.p;
    let cfg = CompileConfig {
        ports: [port(&format!("{p}fa")), port(&format!("{p}fb"))],
        workers: 1,
    };
    let compiled = compile(rs4.as_ref(), rs6.as_ref(), &cfg).unwrap();
    let t0 = 1_000_000_000u64;
    let mut w = Worker::new(
        Arc::new(ArcSwap::from_pointee(compiled)),
        &conntrack::Config::default(),
        1024,
        0,
        1,
        t0,
    );
    setup(&mut w, t0);
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let mut disagree = Vec::new();
    let mut changed = 0;
    for (i, (side, f)) in frames.iter().enumerate() {
        let by_kernel: Vec<&Vec<u8>> = kernel
            .iter()
            .filter(|k| k.after == i && k.side == side.other())
            .map(|k| &k.frame)
            .collect();
        if by_kernel
            .first()
            .is_some_and(|k| k.as_slice() != f.as_slice())
        {
            changed += 1;
        }
        let mut buf = f.clone();
        buf.resize(2048, 0);
        let ingress = match side {
            Side::A => 0,
            Side::B => 1,
        };
        let v = w.process(ingress, &mut buf, f.len(), t0 + i as u64 * 25_000_000);
        let by_fwd = match v {
            Verdict::Forward => Some(&buf[..w.grown_len().unwrap_or(f.len())]),
            _ => None,
        };
        let same = match (by_kernel.as_slice(), by_fwd) {
            ([k], Some(ours)) => k.as_slice() == ours,
            ([], None) => true,
            _ => false,
        };
        if !same {
            disagree.push(format!(
                "frame {i} from {side:?}: kernel {:?}\n         fwd    {:?} ({v:?})",
                by_kernel.iter().map(|k| hex(k)).collect::<Vec<_>>(),
                by_fwd.map(hex)
            ));
        }
    }
    let held_back = frames.len()
        - kernel
            .iter()
            .filter(|k| k.side != frames[k.after].0)
            .count();
    Outcome {
        disagree,
        held_back,
        changed,
        worker: w,
    }
}
