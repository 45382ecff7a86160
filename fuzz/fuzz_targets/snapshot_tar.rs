#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| planrt_fuzz::snapshot_tar(input));
