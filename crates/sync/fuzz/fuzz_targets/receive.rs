//! Fuzzes what a peer can send: `Engine::receive` in both modes and `Entry::parse`; the body is
//! shared with the plain test `fuzzing::tests::seed_corpus_never_panics`, which replays
//! `corpus/receive` (datagrams captured from conntrackd 1.4.7) on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sync::fuzzing::receive_body(data);
});
