//! Integration tests: one binary, one module per area.

mod builders;
mod support;
mod apricot;
mod bench;
mod cli;
mod corrupt;
mod coverage;
mod baselines;
mod data;
mod detect;
mod errors;
mod export;
mod fuzz_replay;
mod graph;
mod json_schema;
mod localize;
mod methods;
mod lowering;
mod onnx_io;
mod onnx_schema;
mod ops;
mod report;
mod repair;
mod search;
mod spec_schema;
mod subjects;
