#![no_main]
//! Fuzz target `notify_payload`: the checks are fuzz_checks::notify_payload (fuzz/src/lib.rs), shared with the
//! regression tests in tests/fuzz_regressions.rs.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_checks::notify_payload::check(data));
