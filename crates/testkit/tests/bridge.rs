//! The bridge oracle itself: frames cross a Linux bridge unchanged, its iptables rules see them
//! (br_netfilter), and the kernel's own frames are left out of what `exchange` returns.
//! Needs root, iproute2, iptables and python3 (CI has them).

use testkit::{Bridge, Side};

fn csum(data: &[u8], mut sum: u32) -> u16 {
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet/IPv4/UDP frame from 198.18.0.1 to 198.18.1.2 with valid checksums.
fn udp(src_mac: u8, dst_mac: u8, sport: u16, dport: u16, ttl: u8) -> Vec<u8> {
    let payload = b"bridge oracle";
    let (src, dst) = ([198, 18, 0, 1], [198, 18, 1, 2]);
    let udp_len = 8 + payload.len() as u16;
    let mut f = vec![2, 0, 0, 0, 0, dst_mac, 2, 0, 0, 0, 0, src_mac, 0x08, 0x00];
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, ttl, 17, 0, 0];
    ip[2..4].copy_from_slice(&(20 + udp_len).to_be_bytes());
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let c = csum(&ip, 0);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut l4 = Vec::new();
    l4.extend_from_slice(&sport.to_be_bytes());
    l4.extend_from_slice(&dport.to_be_bytes());
    l4.extend_from_slice(&udp_len.to_be_bytes());
    l4.extend_from_slice(&[0, 0]);
    l4.extend_from_slice(payload);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src);
    pseudo.extend_from_slice(&dst);
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&udp_len.to_be_bytes());
    pseudo.extend_from_slice(&l4);
    let c = csum(&pseudo, 0);
    l4[6..8].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&l4);
    f
}

#[test]
fn frames_cross_unchanged_and_the_bridges_iptables_rules_see_them() {
    let br = Bridge::new("tkbr");
    br.restore(
        "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -p udp --dport 9 -j DROP\nCOMMIT\n\
         *mangle\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -p udp --dport 7 -j TTL --ttl-set 9\nCOMMIT\n",
        "",
    );
    let pass = udp(0x0a, 0x0b, 1000, 53, 64);
    let dropped = udp(0x0a, 0x0b, 1000, 9, 64);
    let reply = udp(0x0b, 0x0a, 53, 1000, 64);
    let rewritten = udp(0x0a, 0x0b, 1000, 7, 64);
    let out = br.exchange(
        &[
            (Side::A, pass.clone()),
            (Side::A, dropped),
            (Side::B, reply.clone()),
            (Side::A, rewritten.clone()),
        ],
        30,
    );
    let got: Vec<(usize, Side)> = out.iter().map(|f| (f.after, f.side)).collect();
    assert_eq!(
        got,
        vec![(0, Side::B), (2, Side::A), (3, Side::B)],
        "the DROP rule held back frame 1: {out:?}"
    );
    assert_eq!(out[0].frame, pass, "a bridge changes nothing");
    assert_eq!(out[1].frame, reply);
    // The mangle rule set the TTL (and fixed the header checksum) as br_netfilter applies it.
    assert_eq!(out[2].frame[22], 9);
    let mut want = rewritten;
    want[22] = 9;
    want[24..26].copy_from_slice(&[0, 0]);
    let c = csum(&want[14..34], 0);
    want[24..26].copy_from_slice(&c.to_be_bytes());
    assert_eq!(out[2].frame, want);
    assert!(br
        .exec("iptables -t filter -L FORWARD -v -n -x")
        .contains("DROP"));
}
