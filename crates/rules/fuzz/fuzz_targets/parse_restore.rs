//! `cargo fuzz run parse_restore` (from crates/rules): arbitrary bytes as an iptables-restore
//! file, both families. Seed corpus: `corpus/parse_restore` -> `tests/rulesets`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rules::fuzzing::parse_restore_body(data);
});
