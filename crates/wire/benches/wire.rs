//! `cargo bench -p wire`: hot-path costs of the wire crate, each as a ratio against a simple
//! comparison measured in the same run (std only; medians of several rounds).

use std::hint::black_box;
use std::time::Instant;
use wire::builder::fix_checksums;
use wire::captured;
use wire::checksum;
use wire::ethernet::EthernetFrame;
use wire::ipv4::Ipv4Packet;
use wire::ipv6::Ipv6Packet;
use wire::rewrite::{self, Side};
use wire::tcp::TcpPacket;
use wire::udp::UdpPacket;

/// Median nanoseconds per call of `f` over `iters` calls, from 7 rounds.
fn time_ns(iters: u64, mut f: impl FnMut()) -> f64 {
    let mut rounds: Vec<f64> = (0..7)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iters {
                f();
            }
            start.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    rounds.sort_by(|a, b| a.partial_cmp(b).unwrap());
    rounds[3]
}

/// Textbook RFC 1071: 16-bit words, fold as you go.
fn reference_checksum(data: &[u8]) -> u16 {
    let mut acc: u32 = 0;
    for pair in data.chunks(2) {
        acc += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// What a caller would write without `parse_frame`: chain the views' `new_checked`.
fn parse_with_views(frame: &[u8]) -> Option<(u16, u16)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    match eth.ethertype() {
        0x0800 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            l4_ports(ip.protocol(), ip.payload())
        }
        0x86dd => {
            let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
            let ul = ip.upper_layer().ok()?;
            let end = 40 + usize::from(ip.payload_len());
            l4_ports(ul.protocol, &eth.payload()[ul.offset..end])
        }
        _ => None,
    }
}

fn l4_ports(proto: u8, l4: &[u8]) -> Option<(u16, u16)> {
    match proto {
        6 => TcpPacket::new_checked(l4)
            .ok()
            .map(|t| (t.src_port(), t.dst_port())),
        17 => UdpPacket::new_checked(l4)
            .ok()
            .map(|u| (u.src_port(), u.dst_port())),
        _ => Some((0, 0)),
    }
}

fn main() {
    let frames: Vec<&[u8]> = captured::ALL.iter().map(|&(_, f)| f).collect();
    let n = frames.len() as f64;

    let views = time_ns(20_000, || {
        for f in &frames {
            black_box(parse_with_views(black_box(f)));
        }
    }) / n;
    let mut stage = vec![wire::FrameInfo::default(); frames.len()];
    let burst = time_ns(20_000, || {
        for (f, slot) in frames.iter().zip(stage.iter_mut()) {
            black_box(wire::parse_frame_into(black_box(f), slot).is_ok());
        }
        black_box(&stage);
    }) / n;
    let by_value = time_ns(20_000, || {
        for f in &frames {
            black_box(wire::parse_frame(black_box(f)).ok());
        }
    }) / n;
    println!(
        "parse_frame_into       {burst:7.1} ns/frame  (view chain, ports only: {views:7.1} ns/frame, ratio {:.2}x) over {} captured frames into a stage array",
        views / burst,
        frames.len()
    );
    println!(
        "parse_frame by value   {by_value:7.1} ns/frame  (ratio to parse_frame_into {:.2}x)",
        by_value / burst
    );

    let data: Vec<u8> = (0..1500u32).map(|i| (i * 7 + 3) as u8).collect();
    let fast = time_ns(200_000, || {
        black_box(checksum::checksum(black_box(&data)));
    });
    let slow = time_ns(200_000, || {
        black_box(reference_checksum(black_box(&data)));
    });
    assert_eq!(checksum::checksum(&data), reference_checksum(&data));
    println!(
        "checksum 1500 B        {fast:7.1} ns ({:.1} GB/s)  (16-bit reference {slow:7.1} ns, ratio {:.2}x)",
        1500.0 / fast,
        slow / fast
    );

    let base = captured::TCP_PSH_DATA;
    let info0 = wire::parse_frame(&base).unwrap();
    let mut frame = base;
    let mut flip = false;
    let incremental = time_ns(200_000, || {
        let mut info = info0;
        flip = !flip;
        let addr = if flip {
            [198, 19, 0, 1]
        } else {
            [198, 18, 0, 1]
        };
        rewrite::set_ipv4_addr(black_box(&mut frame), &mut info, Side::Src, addr);
        rewrite::set_port(
            &mut frame,
            &mut info,
            Side::Src,
            if flip { 61000 } else { 40000 },
        );
        black_box(&frame);
    });
    let mut frame = base;
    let full = time_ns(200_000, || {
        flip = !flip;
        let addr = if flip {
            [198, 19, 0, 1]
        } else {
            [198, 18, 0, 1]
        };
        frame[26..30].copy_from_slice(&addr);
        frame[34..36].copy_from_slice(&(if flip { 61000u16 } else { 40000 }).to_be_bytes());
        fix_checksums(black_box(&mut frame));
        black_box(&frame);
    });
    println!(
        "SNAT addr+port (TCP)   {incremental:7.1} ns  (full recompute via parse+fill {full:7.1} ns, ratio {:.2}x)",
        full / incremental
    );
}
