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
        old_reply: &Tuple,
        now: u64,
    ) -> bool {
        if let Some((lo, hi)) = spec.addrs {
            let h = u32::from_be_bytes(t.src) ^ u32::from_be_bytes(t.dst).rotate_left(7);
            t.src = (lo + h % (hi - lo).wrapping_add(1).max(1)).to_be_bytes();
            if hi.wrapping_sub(lo) == u32::MAX {
                t.src = h.to_be_bytes();
            }
        }
        let ported = matches!(proto, ip_proto::TCP | ip_proto::UDP | ip_proto::ICMP);
        let family = conntrack::Family::V4;
        let key_proto = proto;
        if !ported {
            return true;
        }
        let orig_port = t.sport;
        let (lo, hi) = match spec.ports {
            Some(r) => r,
            None if proto == ip_proto::ICMP => (0, 65535),
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
            u32::from_be_bytes(t.dst)
                ^ u32::from(t.dport).wrapping_mul(0x9e37_79b9)
                ^ u32::from(orig_port)
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

/// The reply tuple of a connection whose first packet leaves as `t`. For ICMP the identifier
/// is the "port" of both directions and the reply type/code comes from the old reply tuple.
pub(super) fn reply_tuple(t: &Rewrite, old_reply: &Tuple, proto: u8) -> Tuple {
    if proto == ip_proto::ICMP {
        Tuple {
            src: addr16(t.dst),
            dst: addr16(t.src),
            sport: t.sport,
            dport: old_reply.dport,
        }
    } else {
        Tuple {
            src: addr16(t.dst),
            dst: addr16(t.src),
            sport: t.dport,
            dport: t.sport,
        }
    }
}

pub(super) fn pick_dnat(t: &mut Rewrite, spec: &NatSpec, proto: u8) {
    if let Some((lo, hi)) = spec.addrs {
        let h = u32::from_be_bytes(t.src);
        t.dst = (lo.wrapping_add(h % hi.wrapping_sub(lo).wrapping_add(1).max(1))).to_be_bytes();
    }
    if let (Some((lo, hi)), true) = (spec.ports, matches!(proto, ip_proto::TCP | ip_proto::UDP)) {
        if t.dport < lo || t.dport > hi {
            let size = u32::from(hi - lo) + 1;
            t.dport = (u32::from(lo) + u32::from(t.sport) % size) as u16;
        }
    }
}
