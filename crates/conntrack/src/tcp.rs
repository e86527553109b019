//! TCP tracking: netfilter's state table (`tcp_conntracks` in nf_conntrack_proto_tcp.c) and
//! window tracking after Guido van Rooij, "Real Stateful TCP Packet Filtering in IP Filter".

use crate::config::Config;
use crate::packet::TcpSegment;
use crate::reason::CtReason;
use crate::tuple::Dir;

pub(crate) const FIN: u8 = 0x01;
pub(crate) const SYN: u8 = 0x02;
pub(crate) const RST: u8 = 0x04;
pub(crate) const PSH: u8 = 0x08;
pub(crate) const ACK: u8 = 0x10;
pub(crate) const URG: u8 = 0x20;
pub(crate) const ECE: u8 = 0x40;
pub(crate) const CWR: u8 = 0x80;

/// Per-direction flags (`IP_CT_TCP_FLAG_*`).
pub(crate) const F_WINDOW_SCALE: u8 = 0x01;
pub(crate) const F_SACK_PERM: u8 = 0x02;
pub(crate) const F_CLOSE_INIT: u8 = 0x04;
pub(crate) const F_BE_LIBERAL: u8 = 0x08;
pub(crate) const F_DATA_UNACK: u8 = 0x10;
/// Kept in direction 0's flags: a simultaneous open was seen (`IP_CT_TCP_SIMULTANEOUS_OPEN`).
pub(crate) const F_SIMULTANEOUS_OPEN: u8 = 0x40;

const MAX_WSCALE: u8 = 14;
const MAXACKWINCONST: u32 = 66_000;

/// The TCP connection states of netfilter, named for what the connection waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum TcpState {
    None = 0,
    SynSent = 1,
    SynRecv = 2,
    Established = 3,
    FinWait = 4,
    CloseWait = 5,
    LastAck = 6,
    TimeWait = 7,
    Close = 8,
    SynSent2 = 9,
}

/// The segment classes of the state table (`get_conntrack_index`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum TcpEvent {
    Syn = 0,
    SynAck = 1,
    Fin = 2,
    Ack = 3,
    Rst = 4,
    None = 5,
}

impl TcpEvent {
    pub(crate) fn of(flags: u8) -> TcpEvent {
        if flags & RST != 0 {
            TcpEvent::Rst
        } else if flags & SYN != 0 {
            if flags & ACK != 0 {
                TcpEvent::SynAck
            } else {
                TcpEvent::Syn
            }
        } else if flags & FIN != 0 {
            TcpEvent::Fin
        } else if flags & ACK != 0 {
            TcpEvent::Ack
        } else {
            TcpEvent::None
        }
    }

    fn from_u8(v: u8) -> TcpEvent {
        match v {
            0 => TcpEvent::Syn,
            1 => TcpEvent::SynAck,
            2 => TcpEvent::Fin,
            3 => TcpEvent::Ack,
            4 => TcpEvent::Rst,
            _ => TcpEvent::None,
        }
    }
}

/// Outcome of feeding a segment class to a state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    To(TcpState),
    /// `sIG`: may be valid or not; let it pass without changing anything.
    Ignore,
    /// `sIV`: not valid here.
    Invalid,
}

const SS: u8 = 1;
const SR: u8 = 2;
const ES: u8 = 3;
const FW: u8 = 4;
const CW: u8 = 5;
const LA: u8 = 6;
const TW: u8 = 7;
const CL: u8 = 8;
const S2: u8 = 9;
const IV: u8 = 10;
const IG: u8 = 11;

/// `[direction][event][state]`, columns sNO sSS sSR sES sFW sCW sLA sTW sCL sS2.
#[rustfmt::skip]
const TABLE: [[[u8; 10]; 6]; 2] = [
    [ // original
        /* syn    */ [SS, SS, IG, IG, IG, IG, IG, SS, SS, S2],
        /* synack */ [IV, IV, SR, IV, IV, IV, IV, IV, IV, SR],
        /* fin    */ [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
        /* ack    */ [ES, IV, ES, ES, CW, CW, TW, TW, CL, IV],
        /* rst    */ [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
        /* none   */ [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
    ],
    [ // reply
        /* syn    */ [IV, S2, IV, IV, IV, IV, IV, SS, IV, S2],
        /* synack */ [IV, SR, IG, IG, IG, IG, IG, IG, IG, SR],
        /* fin    */ [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
        /* ack    */ [IV, IG, SR, ES, CW, CW, TW, TW, CL, IG],
        /* rst    */ [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
        /* none   */ [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
    ],
];

impl TcpState {
    /// The state of the kernel's number (`TCP_CONNTRACK_*`, as conntrackd's `NTA_TCP_STATE`
    /// carries it); `None` beyond SYN_SENT2.
    pub fn from_kernel(v: u8) -> Option<TcpState> {
        (v <= 9).then(|| TcpState::from_u8(v))
    }

    pub(crate) fn from_u8(v: u8) -> TcpState {
        match v {
            1 => TcpState::SynSent,
            2 => TcpState::SynRecv,
            3 => TcpState::Established,
            4 => TcpState::FinWait,
            5 => TcpState::CloseWait,
            6 => TcpState::LastAck,
            7 => TcpState::TimeWait,
            8 => TcpState::Close,
            9 => TcpState::SynSent2,
            _ => TcpState::None,
        }
    }

    /// The transition for a segment class seen in direction `dir`.
    pub(crate) fn step(self, dir: Dir, ev: TcpEvent) -> Step {
        match TABLE[dir.idx()][ev as usize][self as usize] {
            IV => Step::Invalid,
            IG => Step::Ignore,
            s => Step::To(TcpState::from_u8(s)),
        }
    }

    /// The name `conntrack -L` prints.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::SynSent2 => "SYN_SENT2",
        }
    }

    fn timeout(self, cfg: &Config) -> u32 {
        let t = &cfg.timeouts;
        match self {
            TcpState::None | TcpState::SynSent | TcpState::SynSent2 => t.tcp_syn_sent,
            TcpState::SynRecv => t.tcp_syn_recv,
            TcpState::Established => t.tcp_established,
            TcpState::FinWait => t.tcp_fin_wait,
            TcpState::CloseWait => t.tcp_close_wait,
            TcpState::LastAck => t.tcp_last_ack,
            TcpState::TimeWait => t.tcp_time_wait,
            TcpState::Close => t.tcp_close,
        }
    }
}

/// Flag combinations netfilter accepts (`tcp_valid_flags`), PSH, ECE and CWR ignored.
pub(crate) fn valid_flags(flags: u8) -> bool {
    let f = flags & !(ECE | CWR | PSH);
    matches!(
        f,
        x if x == SYN
            || x == SYN | URG
            || x == SYN | ACK
            || x == RST
            || x == RST | ACK
            || x == FIN | ACK
            || x == FIN | ACK | URG
            || x == ACK
            || x == ACK | URG
    )
}

#[inline]
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

#[inline]
fn after(a: u32, b: u32) -> bool {
    before(b, a)
}

/// Window data of one direction (`ip_ct_tcp_state`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TcpSide {
    pub end: u32,
    pub maxend: u32,
    pub maxwin: u32,
    pub scale: u8,
    pub flags: u8,
}

/// The TCP part of an entry, unpacked from its compact storage for one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TcpConn {
    pub state: TcpState,
    pub last_event: TcpEvent,
    pub last_dir: Dir,
    pub side: [TcpSide; 2],
}

impl TcpConn {
    /// `pstate`: state in bits 0-3, last event in 4-6, last direction in 7.
    /// `w`: end[2], maxend[2], maxwin[2], then scale0 scale1 flags0 flags1 in the last word.
    pub(crate) fn load(pstate: u8, w: &[u32; 7]) -> TcpConn {
        let b = w[6].to_le_bytes();
        let side = |i: usize| TcpSide {
            end: w[i],
            maxend: w[2 + i],
            maxwin: w[4 + i],
            scale: b[i],
            flags: b[2 + i],
        };
        TcpConn {
            state: TcpState::from_u8(pstate & 0x0f),
            last_event: TcpEvent::from_u8((pstate >> 4) & 0x07),
            last_dir: Dir::from_bit(u32::from(pstate >> 7)),
            side: [side(0), side(1)],
        }
    }

    pub(crate) fn store(&self, w: &mut [u32; 7]) -> u8 {
        for i in 0..2 {
            w[i] = self.side[i].end;
            w[2 + i] = self.side[i].maxend;
            w[4 + i] = self.side[i].maxwin;
        }
        w[6] = u32::from_le_bytes([
            self.side[0].scale,
            self.side[1].scale,
            self.side[0].flags,
            self.side[1].flags,
        ]);
        self.state as u8 | (self.last_event as u8) << 4 | (self.last_dir as u8) << 7
    }

    /// A connection's first segment (`tcp_new`): an error if it cannot start one.
    pub(crate) fn new(seg: &TcpSegment, cfg: &Config) -> Result<TcpConn, CtReason> {
        let mut c = TcpConn {
            state: TcpState::None,
            last_event: TcpEvent::None,
            last_dir: Dir::Original,
            side: [TcpSide::default(); 2],
        };
        let end = seg_end(seg);
        match TcpState::None.step(Dir::Original, TcpEvent::of(seg.flags)) {
            Step::To(TcpState::SynSent) => {
                let s = &mut c.side[0];
                s.end = end;
                s.maxend = end;
                s.maxwin = u32::from(seg.window).max(1);
                options(seg, s);
            }
            Step::To(_) if cfg.tcp_loose => {
                let s = &mut c.side[0];
                s.end = end;
                s.maxwin = u32::from(seg.window).max(1);
                s.maxend = end.wrapping_add(s.maxwin);
                // Mid-stream: the window scale is unknown, so assume SACK and be liberal.
                c.side[0].flags = F_SACK_PERM | F_BE_LIBERAL;
                c.side[1].flags = F_SACK_PERM | F_BE_LIBERAL;
            }
            Step::To(_) => return Err(CtReason::TcpNoPickup),
            Step::Ignore | Step::Invalid => return Err(CtReason::TcpInvalidTransition),
        }
        Ok(c)
    }
}

fn seg_end(seg: &TcpSegment) -> u32 {
    seg.seq
        .wrapping_add(seg.payload_len)
        .wrapping_add(u32::from(seg.flags & SYN != 0))
        .wrapping_add(u32::from(seg.flags & FIN != 0))
}

fn options(seg: &TcpSegment, s: &mut TcpSide) {
    s.scale = 0;
    s.flags &= !(F_WINDOW_SCALE | F_SACK_PERM);
    if seg.sack_perm {
        s.flags |= F_SACK_PERM;
    }
    if let Some(ws) = seg.wscale {
        s.scale = ws.min(MAX_WSCALE);
        s.flags |= F_WINDOW_SCALE;
    }
}

/// `tcp_in_window`: checks the four van Rooij bounds and updates both directions' windows.
fn in_window(c: &mut TcpConn, dir: Dir, seg: &TcpSegment, be_liberal: bool) -> bool {
    let (si, ri) = (dir.idx(), dir.other().idx());
    let mut seq = seg.seq;
    let mut ack = seg.ack;
    let mut sack = ack;
    let mut win = u32::from(seg.window);
    let mut end = seg_end(seg);
    let syn = seg.flags & SYN != 0;
    let has_ack = seg.flags & ACK != 0;
    let rst = seg.flags & RST != 0;

    if c.side[ri].flags & F_SACK_PERM != 0 {
        if let Some(s) = seg.sack {
            if after(s, sack) {
                sack = s;
            }
        }
    }

    if c.side[si].maxwin == 0 {
        if syn {
            // SYN/ACK answering a SYN, or a SYN of the reply direction (simultaneous open).
            let s = &mut c.side[si];
            s.end = end;
            s.maxend = end;
            s.maxwin = win.max(1);
            options(seg, s);
            // RFC 1323: scaling only when both sides offered it.
            if c.side[si].flags & F_WINDOW_SCALE == 0 || c.side[ri].flags & F_WINDOW_SCALE == 0 {
                c.side[si].scale = 0;
                c.side[ri].scale = 0;
            }
            if !has_ack {
                return true;
            }
        } else {
            // Mid-stream: history lost, take what the segment says.
            let s = &mut c.side[si];
            s.end = end;
            let swin = win << s.scale;
            s.maxwin = swin.max(1);
            s.maxend = end.wrapping_add(s.maxwin);
            let r = &mut c.side[ri];
            if r.maxwin == 0 {
                r.end = sack;
                r.maxend = sack;
            } else if sack == r.end.wrapping_add(1) {
                // Likely a reply to a keepalive.
                r.end = r.end.wrapping_add(1);
            }
        }
    } else if ((c.state == TcpState::SynSent && dir == Dir::Original)
        || (c.state == TcpState::SynRecv && dir == Dir::Reply))
        && after(end, c.side[si].end)
    {
        // A reinitialised sender may use any higher sequence number (RFC 793).
        let s = &mut c.side[si];
        s.end = end;
        s.maxend = end;
        s.maxwin = win.max(1);
        options(seg, s);
    }

    if !has_ack || (rst && ack == 0) {
        // No ACK (or a broken stack's RST|ACK with ack 0): pretend it acknowledged all.
        ack = c.side[ri].end;
        sack = ack;
    }
    if rst && seq == 0 && c.state == TcpState::SynSent {
        // RST answering a SYN.
        seq = c.side[si].end;
        end = seq;
    }

    let (sender, receiver) = (c.side[si], c.side[ri]);
    let maxackwin = sender.maxwin.max(MAXACKWINCONST);
    let in_recv_win = receiver.maxwin == 0
        || after(
            end,
            sender.end.wrapping_sub(receiver.maxwin).wrapping_sub(1),
        );
    let ok = before(seq, sender.maxend.wrapping_add(1))
        && in_recv_win
        && before(sack, receiver.end.wrapping_add(1))
        && after(sack, receiver.end.wrapping_sub(maxackwin).wrapping_sub(1));
    if !ok {
        return be_liberal || sender.flags & F_BE_LIBERAL != 0;
    }

    if !syn {
        win <<= sender.scale;
    }
    let s = &mut c.side[si];
    let swin = win.wrapping_add(sack.wrapping_sub(ack));
    if s.maxwin < swin {
        s.maxwin = swin;
    }
    if after(end, s.end) {
        s.end = end;
        s.flags |= F_DATA_UNACK;
    }
    let (s_maxend, r) = (c.side[si].maxend, &mut c.side[ri]);
    if r.maxwin != 0 && after(end, s_maxend) {
        r.maxwin = r.maxwin.wrapping_add(end.wrapping_sub(s_maxend));
    }
    if after(sack.wrapping_add(win), r.maxend.wrapping_sub(1)) {
        r.maxend = sack.wrapping_add(win);
        if win == 0 {
            r.maxend = r.maxend.wrapping_add(1);
        }
    }
    if ack == r.end {
        r.flags &= !F_DATA_UNACK;
    }
    true
}

/// What one segment does to a tracked connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TcpVerdict {
    /// In window: new timeout (seconds), and whether to set ASSURED or to destroy the entry
    /// once the packet has passed.
    Accept {
        timeout: u32,
        assure: bool,
        kill: bool,
    },
    /// Let it pass, change nothing.
    Ignore,
    Invalid(CtReason),
    /// A SYN reopening a closed connection: destroy the entry and look up again.
    Reopen,
}

/// `nf_conntrack_tcp_packet` for one segment in direction `dir`.
pub(crate) fn packet(
    c: &mut TcpConn,
    dir: Dir,
    seg: &TcpSegment,
    seen_reply: bool,
    assured: bool,
    cfg: &Config,
) -> TcpVerdict {
    let old = c.state;
    let ev = TcpEvent::of(seg.flags);
    let mut new = match old.step(dir, ev) {
        Step::To(TcpState::SynSent) if old >= TcpState::TimeWait => {
            let closed_by_us = (c.side[0].flags | c.side[1].flags) & F_CLOSE_INIT != 0
                || (c.last_dir == dir && c.last_event == TcpEvent::Rst);
            if closed_by_us {
                return TcpVerdict::Reopen;
            }
            c.last_event = ev;
            c.last_dir = dir;
            return TcpVerdict::Ignore;
        }
        Step::To(s) => s,
        Step::Ignore => {
            c.last_event = ev;
            c.last_dir = dir;
            return TcpVerdict::Ignore;
        }
        Step::Invalid => return TcpVerdict::Invalid(CtReason::TcpInvalidTransition),
    };
    match new {
        TcpState::SynSent2 => c.side[0].flags |= F_SIMULTANEOUS_OPEN,
        TcpState::SynRecv
            if dir == Dir::Reply
                && ev == TcpEvent::Ack
                && c.side[0].flags & F_SIMULTANEOUS_OPEN != 0 =>
        {
            new = TcpState::Established
        }
        _ => {}
    }

    if !in_window(c, dir, seg, cfg.tcp_be_liberal) {
        return TcpVerdict::Invalid(CtReason::TcpOutOfWindow);
    }

    c.last_event = ev;
    c.last_dir = dir;
    c.state = new;
    if old != new && new == TcpState::FinWait {
        c.side[dir.idx()].flags |= F_CLOSE_INIT;
    }

    let t = &cfg.timeouts;
    let mut timeout = if ev == TcpEvent::Rst {
        t.tcp_close
    } else if (c.side[0].flags | c.side[1].flags) & F_DATA_UNACK != 0
        && new.timeout(cfg) > t.tcp_unacknowledged
    {
        t.tcp_unacknowledged
    } else {
        new.timeout(cfg)
    };

    let mut kill = false;
    let mut assure = false;
    if !seen_reply {
        // Only reply so far is a RST: the connection never existed, drop it at once.
        if ev == TcpEvent::Rst {
            kill = true;
        }
        // Picked up mid-stream without a reply yet: no 5-day timeout.
        if new == TcpState::Established && timeout > t.tcp_unacknowledged {
            timeout = t.tcp_unacknowledged;
        }
    } else if !assured
        && (old == TcpState::SynRecv || old == TcpState::Established)
        && new == TcpState::Established
    {
        assure = true;
    }
    TcpVerdict::Accept {
        timeout,
        assure,
        kill,
    }
}

/// `packet` for the commonest segment, on the compact storage in place: an ACK without SYN,
/// FIN or RST on an ESTABLISHED connection that is ASSURED (so it has seen its reply) and whose
/// sender side is initialised. It applies netfilter's same checks (`tcp_in_window`) and writes
/// exactly what `load`, `packet` and `store` would; returns the new timeout. `None` (nothing
/// written) when the segment is of another kind or fails the window check: `packet` decides.
#[inline]
pub(crate) fn established_ack(
    pstate: &mut u8,
    w: &mut [u32; 7],
    dir: Dir,
    seg: &TcpSegment,
    cfg: &Config,
) -> Option<u32> {
    if *pstate & 0x0f != TcpState::Established as u8 || seg.flags & (SYN | FIN | RST | ACK) != ACK {
        return None;
    }
    let (si, ri) = (dir.idx(), dir.other().idx());
    let fl = w[6].to_le_bytes();
    let (s_scale, r_flags) = (fl[si], fl[2 + ri]);
    let (s_end, s_maxend, s_maxwin) = (w[si], w[2 + si], w[4 + si]);
    let (r_end, r_maxend, r_maxwin) = (w[ri], w[2 + ri], w[4 + ri]);
    if s_maxwin == 0 {
        return None;
    }
    let (seq, ack) = (seg.seq, seg.ack);
    let mut sack = ack;
    if r_flags & F_SACK_PERM != 0 {
        if let Some(s) = seg.sack {
            if after(s, sack) {
                sack = s;
            }
        }
    }
    let end = seq.wrapping_add(seg.payload_len);
    let maxackwin = s_maxwin.max(MAXACKWINCONST);
    let ok = before(seq, s_maxend.wrapping_add(1))
        && (r_maxwin == 0 || after(end, s_end.wrapping_sub(r_maxwin).wrapping_sub(1)))
        && before(sack, r_end.wrapping_add(1))
        && after(sack, r_end.wrapping_sub(maxackwin).wrapping_sub(1));
    if !ok {
        return None;
    }
    let win = u32::from(seg.window) << s_scale;
    let swin = win.wrapping_add(sack.wrapping_sub(ack));
    let mut flags = fl;
    if s_maxwin < swin {
        w[4 + si] = swin;
    }
    if after(end, s_end) {
        w[si] = end;
        flags[2 + si] |= F_DATA_UNACK;
    }
    if r_maxwin != 0 && after(end, s_maxend) {
        w[4 + ri] = r_maxwin.wrapping_add(end.wrapping_sub(s_maxend));
    }
    let edge = sack.wrapping_add(win);
    if after(edge, r_maxend.wrapping_sub(1)) {
        w[2 + ri] = edge.wrapping_add(u32::from(win == 0));
    }
    if ack == r_end {
        flags[2 + ri] &= !F_DATA_UNACK;
    }
    w[6] = u32::from_le_bytes(flags);
    *pstate = TcpState::Established as u8 | (TcpEvent::Ack as u8) << 4 | (dir as u8) << 7;
    let t = &cfg.timeouts;
    Some(
        if (flags[2] | flags[3]) & F_DATA_UNACK != 0 && t.tcp_established > t.tcp_unacknowledged {
            t.tcp_unacknowledged
        } else {
            t.tcp_established
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    proptest! {
        /// The fast path agrees with `load` + `packet` + `store` wherever it answers, and
        /// answers for in-window ACKs.
        #[test]
        fn established_ack_equals_the_full_path(
            ends in any::<[u32; 2]>(),
            wins in proptest::array::uniform2(0u32..200_000),
            ahead in proptest::array::uniform2(0u32..100_000),
            scale in proptest::array::uniform2(0u8..15),
            side_flags in proptest::array::uniform2(0u8..0x20),
            reply in any::<bool>(),
            dseq in -70_000i32..70_000,
            dack in -70_000i32..70_000,
            payload_len in prop_oneof![Just(0u32), 1u32..3000],
            window in any::<u16>(),
            extra in prop_oneof![Just(0u8), Just(PSH), Just(URG), Just(ECE | CWR), Just(SYN), Just(FIN)],
            sack in proptest::option::of(-5000i32..5000),
            last in 0u8..0x80,
            liberal in any::<bool>(),
        ) {
            let side = |i: usize| TcpSide {
                end: ends[i],
                maxend: ends[i].wrapping_add(ahead[i]),
                maxwin: wins[i],
                scale: scale[i],
                flags: side_flags[i],
            };
            let dir = if reply { Dir::Reply } else { Dir::Original };
            let c0 = TcpConn {
                state: TcpState::Established,
                last_event: TcpEvent::from_u8(last & 7),
                last_dir: Dir::from_bit(u32::from(last >> 6 & 1)),
                side: [side(0), side(1)],
            };
            let (si, ri) = (dir.idx(), dir.other().idx());
            let seg = TcpSegment {
                sport: 1,
                dport: 2,
                flags: ACK | extra,
                seq: c0.side[si].end.wrapping_add(dseq as u32),
                ack: c0.side[ri].end.wrapping_add(dack as u32),
                window,
                wscale: None,
                sack_perm: false,
                sack: sack.map(|d| c0.side[ri].end.wrapping_add(d as u32)),
                payload_len,
            };
            let cfg = Config { tcp_be_liberal: liberal, ..Config::default() };
            let mut w = [0u32; 7];
            let p0 = c0.store(&mut w);
            let (mut pf, mut wf) = (p0, w);
            let fast = established_ack(&mut pf, &mut wf, dir, &seg, &cfg);
            let mut c = c0;
            let slow = packet(&mut c, dir, &seg, true, true, &cfg);
            match fast {
                Some(timeout) => {
                    prop_assert_eq!(slow, TcpVerdict::Accept { timeout, assure: false, kill: false });
                    let mut ws = [0u32; 7];
                    let ps = c.store(&mut ws);
                    prop_assert_eq!((pf, wf), (ps, ws));
                }
                None => {
                    prop_assert_eq!((pf, wf), (p0, w));
                    let plain_ack = extra & (SYN | FIN) == 0;
                    if plain_ack && c0.side[si].maxwin != 0 {
                        // declined only what the full path does not accept in window
                        let mut strict = c0;
                        let cfg = Config { tcp_be_liberal: false, ..cfg };
                        let v = packet(&mut strict, dir, &seg, true, true, &cfg);
                        prop_assert!(
                            c0.side[si].flags & F_BE_LIBERAL != 0
                                || v == TcpVerdict::Invalid(CtReason::TcpOutOfWindow),
                            "declined {:?}", v
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn table_walks_a_normal_open_and_close() {
        use Dir::{Original as O, Reply as R};
        let mut s = TcpState::None;
        for (dir, ev, want) in [
            (O, TcpEvent::Syn, TcpState::SynSent),
            (R, TcpEvent::SynAck, TcpState::SynRecv),
            (O, TcpEvent::Ack, TcpState::Established),
            (O, TcpEvent::Fin, TcpState::FinWait),
            (R, TcpEvent::Ack, TcpState::CloseWait),
            (R, TcpEvent::Fin, TcpState::LastAck),
            (O, TcpEvent::Ack, TcpState::TimeWait),
        ] {
            s = match s.step(dir, ev) {
                Step::To(n) => n,
                other => panic!("{s:?} {dir:?} {ev:?} -> {other:?}"),
            };
            assert_eq!(s, want);
        }
        assert_eq!(TcpState::SynSent.step(O, TcpEvent::Ack), Step::Invalid);
        assert_eq!(TcpState::SynRecv.step(R, TcpEvent::SynAck), Step::Ignore);
        assert_eq!(
            TcpState::SynSent.step(R, TcpEvent::Syn),
            Step::To(TcpState::SynSent2)
        );
    }

    #[test]
    fn flag_validity_matches_netfilter() {
        assert!(valid_flags(SYN));
        assert!(valid_flags(SYN | ACK | ECE | CWR));
        assert!(valid_flags(FIN | ACK | PSH));
        assert!(valid_flags(RST));
        assert!(!valid_flags(FIN)); // FIN without ACK
        assert!(!valid_flags(SYN | FIN));
        assert!(!valid_flags(0)); // null scan
        assert!(!valid_flags(FIN | PSH | URG)); // xmas
    }

    #[test]
    fn compact_storage_round_trips() {
        let c = TcpConn {
            state: TcpState::LastAck,
            last_event: TcpEvent::Rst,
            last_dir: Dir::Reply,
            side: [
                TcpSide {
                    end: 1,
                    maxend: 2,
                    maxwin: 3,
                    scale: 7,
                    flags: 0x55,
                },
                TcpSide {
                    end: u32::MAX,
                    maxend: 5,
                    maxwin: 6,
                    scale: 14,
                    flags: 0x0a,
                },
            ],
        };
        let mut w = [0u32; 7];
        let p = c.store(&mut w);
        assert_eq!(TcpConn::load(p, &w), c);
    }
}
