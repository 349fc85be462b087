//! ONNX loading on arbitrary bytes, with a structure-aware mutator: most mutations decode the
//! input as a ModelProto, change one field the way a broken exporter or a hostile file would
//! (`archrepair_onnx::fuzzing::mutate_model`) and re-encode it; the rest, and every input that
//! does not decode, get libFuzzer's byte mutations. See docs/fuzzing.md.
#![no_main]

use archrepair_onnx::fuzzing::{mutate_model, onnx_bytes, Rng};
use archrepair_onnx::onnx::proto::ModelProto;
use libfuzzer_sys::{fuzz_mutator, fuzz_target, fuzzer_mutate};
use prost::Message;

fuzz_target!(|data: &[u8]| {
    onnx_bytes(data);
});

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    let mut rng = Rng::new(u64::from(seed) ^ 0x5eed_0000_0000);
    // One in four: plain byte mutations (also reaches inputs prost cannot decode).
    if rng.below(4) != 0 {
        if let Ok(mut model) = ModelProto::decode(&data[..size]) {
            let rounds = 1 + rng.below(3);
            let mut changed = false;
            for _ in 0..rounds {
                changed |= mutate_model(&mut model, &mut rng);
            }
            let bytes = model.encode_to_vec();
            if changed && bytes.len() <= max_size {
                data[..bytes.len()].copy_from_slice(&bytes);
                return bytes.len();
            }
        }
    }
    fuzzer_mutate(data, size, max_size)
});
