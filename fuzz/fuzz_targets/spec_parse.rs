//! `Spec::from_yaml` on arbitrary bytes (see docs/fuzzing.md).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    archrepair_onnx::fuzzing::spec_bytes(data);
});
