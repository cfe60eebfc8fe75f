#![no_main]
//! Fuzz target `job_envelope`: the checks are fuzz_checks::job_envelope (fuzz/src/lib.rs), shared with the
//! regression tests in tests/fuzz_regressions.rs.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_checks::job_envelope::check(data));
