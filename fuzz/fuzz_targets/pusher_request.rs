#![no_main]
//! Fuzz target `pusher_request`: the checks are fuzz_checks::pusher_request (fuzz/src/lib.rs), shared with the
//! regression tests in tests/fuzz_regressions.rs.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_checks::pusher_request::check(data));
