//! Reading an ONNX model into memory, self-contained.
//!
//! The file is untrusted: whatever it holds (truncated export, random bytes, a directory, hostile
//! external-data paths) ends in an [`OnnxError`] naming the file, never a panic. Protobuf accepts
//! many byte strings that are not models, so a decoded message must also have what every model
//! has: a graph, an `ir_version` and an `opset_import`. External data is read into `raw_data`
//! at once, so later stages never deal with a second file and saving cannot lose it. A file
//! with more than [`MAX_NODES`] nodes is refused before it is decoded (see `limits.rs`).

use std::path::Path;

use prost::Message;

use super::external::{for_each_tensor, is_external, ExternalReader};
use super::limits::{count_nodes, describe_decode_error, MAX_NODES};
use super::proto::ModelProto;
use super::OnnxError;

/// Loads the model at `path`, with its external data (confined to the model's folder).
pub fn load_model(path: &Path) -> Result<ModelProto, OnnxError> {
    let meta = std::fs::metadata(path).map_err(|source| OnnxError::Read { path: path.to_path_buf(), source })?;
    if meta.is_dir() {
        return Err(OnnxError::NotOnnx { path: path.to_path_buf(), reason: "it is a directory".into() });
    }
    let bytes = std::fs::read(path).map_err(|source| OnnxError::Read { path: path.to_path_buf(), source })?;
    let folder = path.parent().unwrap_or(Path::new("."));
    load_model_from_bytes(&bytes, path, Some(folder))
}

/// Decodes a model from `bytes`. `origin` names it in errors; external data is looked up in
/// `base_dir`, and a model with external data but no `base_dir` is an error.
pub fn load_model_from_bytes(bytes: &[u8], origin: &Path, base_dir: Option<&Path>) -> Result<ModelProto, OnnxError> {
    let not_onnx = |reason: String| OnnxError::NotOnnx { path: origin.to_path_buf(), reason };
    if bytes.is_empty() {
        return Err(not_onnx("the file is empty".into()));
    }
    let nodes = count_nodes(bytes);
    if nodes > MAX_NODES {
        return Err(OnnxError::TooManyNodes { path: origin.to_path_buf(), limit: MAX_NODES });
    }
    let mut model = ModelProto::decode(bytes).map_err(|e| not_onnx(format!("protobuf decoding failed ({})", describe_decode_error(&e))))?;
    let mut missing = vec![];
    if model.graph.is_none() {
        missing.push("graph");
    }
    if model.ir_version.is_none() {
        missing.push("ir_version");
    }
    if model.opset_import.is_empty() {
        missing.push("opset_import");
    }
    if !missing.is_empty() {
        return Err(not_onnx(format!("the decoded message has no {}", missing.join(", no "))));
    }
    resolve_external_data(&mut model, origin, base_dir)?;
    Ok(model)
}

/// Reads every external tensor's bytes into `raw_data` (see [`ExternalReader`]).
fn resolve_external_data(model: &mut ModelProto, origin: &Path, base_dir: Option<&Path>) -> Result<(), OnnxError> {
    let mut reader: Option<ExternalReader> = None;
    for_each_tensor(model, &mut |t, site| {
        if !is_external(t) {
            return Ok(());
        }
        if reader.is_none() {
            reader = Some(ExternalReader::new(origin, base_dir)?);
        }
        reader.as_mut().expect("set above").resolve(t, &site)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::{GraphProto, OperatorSetIdProto};

    #[test]
    fn empty_and_garbage_are_errors_naming_the_origin() {
        let origin = Path::new("models/x.onnx");
        let e = load_model_from_bytes(&[], origin, None).unwrap_err().to_string();
        assert!(e.contains("models/x.onnx") && e.contains("empty"), "{e}");
        let e = load_model_from_bytes(&[0xff; 7], origin, None).unwrap_err().to_string();
        assert!(e.contains("models/x.onnx") && e.contains("protobuf"), "{e}");
    }

    #[test]
    fn a_message_without_graph_or_versions_is_refused() {
        // Field 2 (producer_name) = "ab": valid protobuf, but not a model.
        let e = load_model_from_bytes(&[0x12, 2, b'a', b'b'], Path::new("m.onnx"), None).unwrap_err().to_string();
        assert!(e.contains("has no graph, no ir_version, no opset_import"), "{e}");
        let ok = ModelProto {
            ir_version: Some(9),
            opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(17) }],
            graph: Some(GraphProto::default()),
            ..Default::default()
        };
        assert_eq!(load_model_from_bytes(&ok.encode_to_vec(), Path::new("m.onnx"), None).unwrap(), ok);
    }
}
