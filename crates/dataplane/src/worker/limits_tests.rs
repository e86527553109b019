//! `-m time`, `-m hashlimit` and `-m conntrack`'s tuple options through the worker.

use super::tests::{ip, run, tcp, worker_for, A, B, C, FILTER_HDR, S, SEC};
use super::*;
use wire::builder::FrameBuilder;

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

#[test]
fn hashlimit_per_source_burst_then_drop_and_a_full_table_hotdrops() {
    let mut w = worker_for(&format!(
        "{FILTER_HDR}-A FORWARD -p udp -m hashlimit --hashlimit-upto 1/sec --hashlimit-burst 3 --hashlimit-mode srcip --hashlimit-name dns --hashlimit-htable-size 8 --hashlimit-htable-max 8 --hashlimit-htable-expire 10000 -j ACCEPT\nCOMMIT\n"
    ));
    let from = |src: [u8; 4], sp: u16| FrameBuilder::default().udp(ip(src, S), sp, 53, b"q");
    let got: Vec<bool> = (0..5)
        .map(|i| run(&mut w, A, &from(C, 1000 + i), SEC).0 == Verdict::Forward)
        .collect();
    assert_eq!(got, [true, true, true, false, false], "burst 3, then over");
    // another source has its own bucket
    assert_eq!(
        run(&mut w, A, &from([198, 18, 0, 9], 1), SEC).0,
        Verdict::Forward
    );
    // a second later one token is back
    assert_eq!(run(&mut w, A, &from(C, 2000), 2 * SEC).0, Verdict::Forward);
    assert_ne!(run(&mut w, A, &from(C, 2001), 2 * SEC).0, Verdict::Forward);
    // a flood of sources fills the table to its max (8: two groups are in) and no further:
    // the rest are dropped whatever the rules say, and counted
    for i in 0..100u8 {
        let _ = run(&mut w, A, &from([198, 19, 1, i], 7), 2 * SEC);
    }
    let full = w.stats().drops[DropReason::HashlimitFull.index()];
    assert_eq!(full, 100 - 6);
}

#[test]
fn time_reads_the_wall_clock_the_poll_loop_hands_over() {
    let mut w = worker_for(&format!(
        "{FILTER_HDR}-A FORWARD -m time --timestart 08:00 --timestop 18:00 --weekdays Mon,Tue,Wed,Thu,Fri -j ACCEPT\nCOMMIT\n"
    ));
    let f = FrameBuilder::default().udp(ip(C, S), 1000, 53, b"q");
    // 2026-12-04 (a Friday) 12:00 UTC, with `now` at 5 s
    let noon: i64 = 1_796_342_400 + 12 * 3600;
    w.set_wall_offset(noon * 1_000_000_000 - 5 * SEC as i64);
    assert_eq!(run(&mut w, A, &f, 5 * SEC).0, Verdict::Forward);
    // seven hours later it is 19:00
    assert_ne!(
        run(&mut w, A, &f, 5 * SEC + 7 * 3600 * SEC).0,
        Verdict::Forward
    );
    // the Saturday at noon
    assert_ne!(
        run(&mut w, A, &f, 5 * SEC + 24 * 3600 * SEC).0,
        Verdict::Forward
    );
    // without an offset `now` is the wall clock: 1970-01-01 00:00:05 is outside 08:00-18:00
    w.set_wall_offset(0);
    assert_ne!(run(&mut w, A, &f, 5 * SEC).0, Verdict::Forward);
}

#[test]
fn conntrack_direction_tuple_and_status_through_the_worker() {
    let mut w = worker_for(&format!(
        "{FILTER_HDR}-A FORWARD -m conntrack --ctstate NEW --ctorigsrc 198.18.0.0/24 --ctorigdstport 80 --ctdir ORIGINAL -j ACCEPT\n\
         -A FORWARD -m conntrack --ctstatus SEEN_REPLY --ctdir REPLY -j ACCEPT\n\
         -A FORWARD -m conntrack --ctstatus ASSURED --ctproto tcp --ctdir ORIGINAL --ctexpire 1:500000 -j ACCEPT\nCOMMIT\n"
    ));
    assert_eq!(
        run(&mut w, A, &tcp(C, S, 4000, 80, SYN, 1, 0), SEC).0,
        Verdict::Forward
    );
    // the reply: SEEN_REPLY is set when the reply is tracked, and it goes in the reply direction
    assert_eq!(
        run(&mut w, B, &tcp(S, C, 80, 4000, SYN | ACK, 9, 2), SEC).0,
        Verdict::Forward
    );
    // the client's ACK: original direction, and (as the kernel does on the handshake's last
    // ACK) assured, expiring within the established timeout
    assert_eq!(
        run(&mut w, A, &tcp(C, S, 4000, 80, ACK, 2, 10), SEC).0,
        Verdict::Forward
    );
    // another destination port is NEW but no rule takes it
    assert_ne!(
        run(&mut w, A, &tcp(C, S, 4001, 81, SYN, 1, 0), SEC).0,
        Verdict::Forward
    );
}

#[test]
fn connbytes_counts_the_connection_with_this_packet() {
    // the 4th packet of a connection and later ones (both directions) are dropped; a reply
    // of more than 100 bytes on average too
    let mut w = worker_for(&format!(
        "{FILTER_HDR}-A FORWARD -m connbytes --connbytes 4: --connbytes-dir both --connbytes-mode packets -j DROP\n\
         -A FORWARD -p udp -m udp --sport 54 -m connbytes --connbytes 101: --connbytes-dir reply --connbytes-mode avgpkt -j DROP\n\
         -A FORWARD -j ACCEPT\nCOMMIT\n"
    ));
    let q = FrameBuilder::default().udp(ip(C, S), 1000, 53, b"q");
    let r = FrameBuilder::default().udp(ip(S, C), 53, 1000, b"r");
    assert_eq!(run(&mut w, A, &q, SEC).0, Verdict::Forward);
    assert_eq!(run(&mut w, B, &r, SEC).0, Verdict::Forward);
    assert_eq!(run(&mut w, A, &q, SEC).0, Verdict::Forward);
    assert_ne!(run(&mut w, B, &r, SEC).0, Verdict::Forward, "4th packet");
    assert_ne!(run(&mut w, A, &q, SEC).0, Verdict::Forward);
    // another connection starts from zero
    let q2 = FrameBuilder::default().udp(ip(C, S), 1001, 54, b"q");
    assert_eq!(run(&mut w, A, &q2, SEC).0, Verdict::Forward);
    let small = FrameBuilder::default().udp(ip(S, C), 54, 1001, &[0u8; 50]);
    let big = FrameBuilder::default().udp(ip(S, C), 54, 1001, &[0u8; 400]);
    assert_eq!(
        run(&mut w, B, &small, SEC).0,
        Verdict::Forward,
        "78 bytes average"
    );
    // (78 + 428) / 2 = 253 > 100
    assert_ne!(run(&mut w, B, &big, SEC).0, Verdict::Forward);
}
