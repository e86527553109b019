//! Choosing NAT bindings: SNAT/MASQUERADE ports that keep the reply in this worker's shard, the
//! DNAT target, and the reply tuple a binding makes.

use super::*;

impl Worker {
    /// SNAT/MASQUERADE: pick the address and a port (or ICMP id) whose reply tuple is free in
    /// this shard and hashes to this worker. `false` when none is left.
    pub(super) fn pick_snat(
        &mut self,
        t: &mut Rewrite,
        spec: &NatSpec,
        proto: u8,
        v6: bool,
        old_reply: &Tuple,
        now: u64,
    ) -> bool {
        if let Some((lo, hi)) = spec.addrs {
            let h = u128::from(fold32(&t.src) ^ fold32(&t.dst).rotate_left(7));
            t.src = num_addr(pick_in(lo, hi, h), v6);
        }
        let icmp = is_icmp(proto);
        let ported = icmp || matches!(proto, ip_proto::TCP | ip_proto::UDP);
        let family = if v6 {
            conntrack::Family::V6
        } else {
            conntrack::Family::V4
        };
        let key_proto = proto;
        if !ported {
            return true;
        }
        let orig_port = t.sport;
        let (lo, hi) = match spec.ports {
            Some(r) => r,
            None if icmp => (0, 65535),
            None if orig_port == 0 => (0, 0),
            None if orig_port < 512 => (1, 511),
            None if orig_port < 1024 => (600, 1023),
            None => (1024, 65535),
        };
        let free = |w: &Worker, port: u16| -> bool {
            let cand = Rewrite { sport: port, ..*t };
            let reply = reply_tuple(&cand, old_reply, proto);
            w.shard.lookup(family, key_proto, &reply, now).is_none()
                && (w.workers == 1
                    || shard_of(flow_hash(&w.key, family, key_proto, &reply), w.workers) == w.index)
        };
        let in_range = orig_port >= lo && orig_port <= hi;
        if in_range && !spec.random && free(self, orig_port) {
            return true;
        }
        let size = u32::from(hi - lo) + 1;
        let start = if spec.random {
            self.next_rand()
        } else {
            fold32(&t.dst) ^ u32::from(t.dport).wrapping_mul(0x9e37_79b9) ^ u32::from(orig_port)
        } % size;
        for i in 0..size.min(128 * self.workers as u32) {
            let port = (lo as u32 + (start + i) % size) as u16;
            if free(self, port) {
                t.sport = port;
                return true;
            }
        }
        false
    }

    pub(super) fn next_rand(&mut self) -> u32 {
        // xorshift64*: deterministic per worker, enough to spread --random ports.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }
}

/// The four words of an address xored: a cheap hash for choosing in a range.
fn fold32(a: &[u8; 16]) -> u32 {
    a.chunks_exact(4)
        .fold(0, |h, w| h ^ u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
}

/// An address of `lo..=hi` (numbers) chosen by `h`; the whole space when the range is.
fn pick_in(lo: u128, hi: u128, h: u128) -> u128 {
    match hi.wrapping_sub(lo).checked_add(1) {
        Some(size) if hi >= lo => lo + h % size,
        // a reversed range (iptables takes it): its low end, as nf_nat_core's min_addr
        _ if hi < lo => lo,
        _ => h,
    }
}

/// The reply tuple of a connection whose first packet leaves as `t`. For ICMP/ICMPv6 the
/// identifier is the "port" of both directions and the reply type/code comes from the old reply
/// tuple.
pub(super) fn reply_tuple(t: &Rewrite, old_reply: &Tuple, proto: u8) -> Tuple {
    if is_icmp(proto) {
        Tuple {
            src: t.dst,
            dst: t.src,
            sport: t.sport,
            dport: old_reply.dport,
        }
    } else {
        Tuple {
            src: t.dst,
            dst: t.src,
            sport: t.dport,
            dport: t.sport,
        }
    }
}

/// DNAT: the address from the range (by the client's address), the port kept when in range,
/// else mapped into it; with a `/base` shift, always `lo + (port - base) % size` as
/// `nf_nat_l4proto_unique_tuple` computes it (`u16` arithmetic: a port below the base wraps).
pub(super) fn pick_dnat(t: &mut Rewrite, spec: &NatSpec, proto: u8, v6: bool) {
    if let Some((lo, hi)) = spec.addrs {
        t.dst = num_addr(pick_in(lo, hi, u128::from(fold32(&t.src))), v6);
    }
    if let (Some((lo, hi)), true) = (spec.ports, matches!(proto, ip_proto::TCP | ip_proto::UDP)) {
        let size = u32::from(hi - lo) + 1;
        if let Some(base) = spec.shift {
            let off = t.dport.wrapping_sub(base);
            t.dport = (u32::from(lo) + u32::from(off) % size) as u16;
        } else if t.dport < lo || t.dport > hi {
            t.dport = (u32::from(lo) + u32::from(t.sport) % size) as u16;
        }
    }
}
