#![no_main]
//! Fuzz target `config_layers`: the checks are fuzz_checks::config_layers (fuzz/src/lib.rs), shared with the
//! regression tests in tests/fuzz_regressions.rs.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_checks::config_layers::check(data));
