//! Entries as listings and sync events show them.

use super::*;

impl Shard {
    pub(crate) fn snapshot_of(&self, idx: u32, now: u64) -> Option<crate::list::Snapshot> {
        let e = &self.entries[idx as usize];
        if e.status & S_CONFIRMED == 0 {
            return None;
        }
        let left = e.expires.wrapping_sub(tick(now)) as i32;
        if left <= 0 {
            return None;
        }
        Some(self.snapshot_at(idx, now + ((left as u64) << TICK_SHIFT)))
    }

    /// Entry `idx` as listings and sync events show it, expiring at `expires_at` (ns).
    pub(super) fn snapshot_at(&self, idx: u32, expires_at: u64) -> crate::list::Snapshot {
        let e = &self.entries[idx as usize];
        crate::list::Snapshot {
            id: EntryId(idx),
            family: Family::from_u8(e.family),
            proto: e.proto,
            orig: e.tuple[0],
            reply: e.tuple[1],
            tcp_state: (e.proto == PROTO_TCP).then(|| TcpState::from_u8(e.pstate & 0x0f)),
            seen_reply: e.status & S_SEEN_REPLY != 0,
            assured: e.status & S_ASSURED != 0,
            mark: e.mark,
            expires_at,
            nat: self.nat_kind(EntryId(idx)),
        }
    }
}
