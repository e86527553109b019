//! Later fragments follow the verdict of their datagram's first fragment (fwd does not
//! reassemble): a small direct-mapped table per worker, entries timing out as ipfrag_time.

use super::*;

/// Slots of the fragment table (direct-mapped; a collision forgets the older datagram).
pub(super) const FRAG_SLOTS: usize = 1024;
/// How long a first fragment's decision waits for the rest (the kernel's ipfrag_time is 30 s).
pub(super) const FRAG_TIMEOUT_NS: u64 = 30_000_000_000;

/// A datagram's fragments share addresses, protocol and identification.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct FragKey {
    src: [u8; 16],
    dst: [u8; 16],
    ident: u32,
    proto: u8,
    v6: bool,
}

impl FragKey {
    pub(super) fn of(info: &FrameInfo) -> FragKey {
        FragKey {
            src: info.src,
            dst: info.dst,
            ident: info.frag_ident,
            proto: info.l4_proto,
            v6: info.family == Family::Ipv6,
        }
    }
}

pub(super) fn frag_slot(k: &FragKey) -> usize {
    let a = u128::from_be_bytes(k.src) ^ u128::from_be_bytes(k.dst).rotate_left(17);
    let h = (a as u64 ^ (a >> 64) as u64 ^ u64::from(k.ident) << 8 ^ u64::from(k.proto))
        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (h >> 54) as usize % FRAG_SLOTS
}

#[derive(Clone, Copy, Default)]
pub(super) struct FragEntry {
    key: FragKey,
    expires: u64,
    used: bool,
    forward: bool,
    /// The addresses the first fragment left with (NAT), to give the later ones.
    src: [u8; 16],
    dst: [u8; 16],
}

/// What the first fragment of each recent datagram became.
pub(super) struct FragTable {
    slots: [FragEntry; FRAG_SLOTS],
}

impl FragTable {
    pub(super) fn new() -> FragTable {
        FragTable {
            slots: [FragEntry::default(); FRAG_SLOTS],
        }
    }

    pub(super) fn record(&mut self, slot: usize, key: FragKey, frame: &[u8], v: Verdict, now: u64) {
        let mut e = FragEntry {
            key,
            expires: now + FRAG_TIMEOUT_NS,
            used: true,
            ..FragEntry::default()
        };
        e.forward = v == Verdict::Forward;
        if e.forward {
            if let Ok(i) = wire::parse_frame(frame) {
                e.src = i.src;
                e.dst = i.dst;
            }
        }
        self.slots[slot] = e;
    }

    /// The decision for a later fragment, with its addresses rewritten as its first fragment's
    /// were; `None` when the first fragment was not seen (then the fragment is classified on its
    /// own, as INVALID to conntrack).
    pub(super) fn follow(
        &mut self,
        slot: usize,
        key: &FragKey,
        frame: &mut [u8],
        info: &FrameInfo,
        now: u64,
    ) -> Option<Verdict> {
        let e = self.slots[slot];
        if !e.used || e.key != *key || now >= e.expires {
            return None;
        }
        if !info.more_fragments {
            // the last fragment: the datagram is complete
            self.slots[slot].used = false;
        }
        if !e.forward {
            return Some(Verdict::Drop(DropReason::FragmentOfDropped));
        }
        if e.src != info.src || e.dst != info.dst {
            let rw = Rewrite {
                src: e.src,
                dst: e.dst,
                sport: 0,
                dport: 0,
            };
            nat::rewrite(frame, info, &rw);
        }
        Some(Verdict::Forward)
    }
}
