//! Throughput of a lowered ONNX model: inference and SGD train-step images/s.
//! Used by bench/lowering_vs_pytorch.sh; prints one JSON line.
//!
//!     cargo run --release --example bench_lowered -- MODEL --threads 2 --batch 64 --iters 20

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use archrepair_onnx::model::LoadedModel;
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut model = None;
    let (mut threads, mut batch, mut iters, mut warmup) = (2i32, 64i64, 20usize, 3usize);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().context("missing value");
        match a.as_str() {
            "--threads" => threads = value()?.parse()?,
            "--batch" => batch = value()?.parse()?,
            "--iters" => iters = value()?.parse()?,
            "--warmup" => warmup = value()?.parse()?,
            other if !other.starts_with("--") => model = Some(PathBuf::from(other)),
            other => bail!("unknown option {other}"),
        }
    }
    let model = model.context("usage: bench_lowered MODEL [--threads N] [--batch B] [--iters I] [--warmup W]")?;
    tch::set_num_threads(threads);
    let loaded = LoadedModel::open(&model)?;
    let lowered = loaded.lower(Device::Cpu)?;
    let input_shape = [batch, 3, 32, 32];
    tch::manual_seed(0);
    let x = Tensor::rand(input_shape, (Kind::Float, Device::Cpu));
    let labels = Tensor::randint(10, [batch], (Kind::Int64, Device::Cpu));

    let time = |n: usize, f: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        for _ in 0..warmup {
            f()?;
        }
        let start = Instant::now();
        for _ in 0..n {
            f()?;
        }
        Ok((n as i64 * batch) as f64 / start.elapsed().as_secs_f64())
    };

    let infer = time(iters, &mut || {
        let _logits = lowered.predict(&x)?;
        Ok(())
    })?;
    let mut sgd = nn::Sgd::default().build(lowered.var_store(), 0.1)?;
    let train = time(iters, &mut || {
        let loss = lowered.forward_t(&x, true)?.cross_entropy_for_logits(&labels);
        sgd.backward_step(&loss);
        Ok(())
    })?;
    println!(
        "{{\"framework\":\"archrepair-onnx (lowered {})\",\"threads\":{threads},\"batch\":{batch},\"infer_images_per_s\":{infer:.1},\"train_images_per_s\":{train:.1}}}",
        model.file_name().unwrap_or_default().to_string_lossy()
    );
    Ok(())
}
