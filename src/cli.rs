//! Command-line arguments.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Repairs deployed ONNX image classifiers (ArchRepair: block-level architecture search).
#[derive(Debug, Parser)]
#[command(name = "archrepair-onnx", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Opset, inputs/outputs with shapes, op histogram, parameter count and unsupported ops.
    Inspect {
        model: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The repairable blocks (residual, dense, inverted residual, stages) and the Conv/Gemm layers.
    Blocks {
        model: PathBuf,
        /// Print JSON (schemas/blocks.schema.json) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Top-1 accuracy computed by onnxruntime and by the lowered libtorch graph, side by side.
    /// Exits with 1 when their outputs differ by more than --tolerance.
    Eval {
        model: PathBuf,
        /// Folder with IDX files: <split>-images-idx3-ubyte[.gz] and <split>-labels-idx1-ubyte[.gz].
        #[arg(long)]
        data: PathBuf,
        /// Which split of the folder: t10k (test) or train.
        #[arg(long, default_value = "t10k")]
        split: String,
        /// Use at most this many examples.
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Threads for both runtimes (0: their defaults).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Largest accepted |output difference| between the two runtimes.
        #[arg(long, default_value_t = 1e-4)]
        tolerance: f64,
        #[arg(long)]
        json: bool,
    },
}
