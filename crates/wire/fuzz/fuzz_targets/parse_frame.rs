//! Fuzzes `wire::parse_frame` and every view behind it; the body is shared with the plain test
//! `fuzzing::tests::seed_corpus_never_panics`, which replays `corpus/parse_frame` on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wire::fuzzing::parse_frame_body(data);
});
