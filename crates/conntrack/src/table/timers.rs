//! The timer wheel: entries linked into the slot of their deadline, expired a slot at a time.

use super::*;

impl Shard {
    // ---- timer wheel ------------------------------------------------------------------

    #[inline]
    pub(super) fn tlink(&self, n: u32) -> [u32; 2] {
        let cap = self.entries.len() as u32;
        if n < cap {
            let e = &self.entries[n as usize];
            [e.tprev, e.tnext]
        } else {
            self.wheel[(n - cap) as usize]
        }
    }

    #[inline]
    pub(super) fn set_tlink(&mut self, n: u32, which: usize, v: u32) {
        let cap = self.entries.len() as u32;
        if n < cap {
            let e = &mut self.entries[n as usize];
            if which == 0 {
                e.tprev = v
            } else {
                e.tnext = v
            }
        } else {
            self.wheel[(n - cap) as usize][which] = v;
        }
    }

    pub(super) fn timer_unlink(&mut self, idx: u32) {
        let [p, n] = self.tlink(idx);
        self.set_tlink(p, 1, n);
        self.set_tlink(n, 0, p);
    }

    /// Put the entry in the slot of its deadline, or the farthest slot if that is beyond the
    /// wheel, or the next slot if it is overdue: its slot never comes after its deadline.
    pub(super) fn timer_insert(&mut self, idx: u32) {
        let deadline = self.entries[idx as usize].expires;
        let ahead = deadline.wrapping_sub(self.wheel_tick) as i32;
        let at = if ahead < 0 {
            self.wheel_tick
        } else if ahead as u32 >= (SLOTS - 1) * SLOT_TICKS {
            self.wheel_tick.wrapping_add((SLOTS - 1) * SLOT_TICKS)
        } else {
            deadline
        };
        let sentinel = self.entries.len() as u32 + ((at >> SLOT_SHIFT) & (SLOTS - 1));
        let first = self.tlink(sentinel)[1];
        let e = &mut self.entries[idx as usize];
        e.tprev = sentinel;
        e.tnext = first;
        self.set_tlink(first, 0, idx);
        self.set_tlink(sentinel, 1, idx);
    }

    /// New deadline `timeout` seconds from `now_t`. A later deadline leaves the entry in its
    /// slot (it is looked at again when the slot comes); an earlier one moves it.
    pub(super) fn refresh(&mut self, idx: u32, now_t: u32, timeout: u32) {
        let deadline = now_t.wrapping_add(secs_to_ticks(timeout));
        let e = &mut self.entries[idx as usize];
        let earlier = (deadline.wrapping_sub(e.expires) as i32) < 0;
        e.expires = deadline;
        if earlier && e.status & S_CONFIRMED != 0 {
            self.timer_unlink(idx);
            self.timer_insert(idx);
        }
    }

    /// Destroy entries whose timeout has passed, up to `now`; returns how many. Call it once per
    /// burst (or more rarely): its cost is the number of wheel slots passed plus the entries
    /// in them.
    pub fn expire(&mut self, now: u64) -> usize {
        let now_t = tick(now);
        let mut lag = now_t.wrapping_sub(self.wheel_tick) as i32;
        if lag > (SLOTS * SLOT_TICKS) as i32 {
            // Asleep for more than a turn: every slot is due once.
            self.wheel_tick = now_t.wrapping_sub(SLOTS * SLOT_TICKS) & !(SLOT_TICKS - 1);
            lag = now_t.wrapping_sub(self.wheel_tick) as i32;
        }
        let mut killed = 0;
        while lag >= SLOT_TICKS as i32 {
            let sentinel =
                self.entries.len() as u32 + ((self.wheel_tick >> SLOT_SHIFT) & (SLOTS - 1));
            let mut n = self.tlink(sentinel)[1];
            // Detach the slot's list, then sort its entries out.
            self.wheel[(sentinel - self.entries.len() as u32) as usize] = [sentinel, sentinel];
            self.wheel_tick = self.wheel_tick.wrapping_add(SLOT_TICKS);
            while n != sentinel {
                let next = self.entries[n as usize].tnext;
                if tick_reached(now_t, self.entries[n as usize].expires) {
                    self.entries[n as usize].tprev = n;
                    self.entries[n as usize].tnext = n;
                    self.destroy_unlinked_timer(n);
                    killed += 1;
                } else {
                    self.timer_insert(n);
                }
                n = next;
            }
            lag = now_t.wrapping_sub(self.wheel_tick) as i32;
        }
        self.stats.expired += killed as u64;
        killed
    }
}
