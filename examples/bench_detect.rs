//! Benchmark helper (bench/detect_chain.sh): times loading (IR, shape inference, folding) and
//! block detection of each model given, best of `--repeats`, and prints one Markdown table row each.
//!
//!     bench_detect MODEL... [--repeats N]

use std::path::PathBuf;
use std::time::Instant;

use archrepair_onnx::detect::detect;
use archrepair_onnx::model::LoadedModel;

fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut repeats = 5;
    if let Some(i) = args.iter().position(|a| a == "--repeats") {
        repeats = args.get(i + 1).ok_or_else(|| anyhow::anyhow!("--repeats needs a number"))?.parse()?;
        args.drain(i..i + 2);
    }
    println!("| model | nodes | blocks | load + infer + fold (ms) | detect (ms) |");
    println!("|---|---|---|---|---|");
    for path in args.iter().map(PathBuf::from) {
        let (mut load_ms, mut detect_ms, mut summary) = (f64::MAX, f64::MAX, (0, 0));
        for _ in 0..repeats {
            let start = Instant::now();
            let model = LoadedModel::open(&path)?;
            load_ms = load_ms.min(start.elapsed().as_secs_f64() * 1e3);
            let start = Instant::now();
            let detection = detect(&model.graph);
            detect_ms = detect_ms.min(start.elapsed().as_secs_f64() * 1e3);
            summary = (model.graph.nodes.len(), detection.blocks.len());
        }
        let name = path.file_name().map_or(path.display().to_string(), |n| n.to_string_lossy().into_owned());
        println!("| {name} | {} | {} | {load_ms:.1} | {detect_ms:.2} |", summary.0, summary.1);
    }
    Ok(())
}
