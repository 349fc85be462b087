//! Integration tests: one binary, one module per area.

mod support;
mod lowering;
mod onnx_io;
mod onnx_schema;
