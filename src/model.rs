//! A model as every command first needs it: the ONNX protobuf as loaded (kept for lossless
//! saving) and the analysed graph (shapes inferred, exporter shape arithmetic folded).

use std::path::{Path, PathBuf};

use tch::Device;

use crate::graph::Graph;
use crate::lower::LoweredModel;
use crate::onnx::{load_model, proto::ModelProto};
use crate::Error;

pub struct LoadedModel {
    pub path: PathBuf,
    pub proto: ModelProto,
    pub graph: Graph,
}

impl LoadedModel {
    pub fn open(path: &Path) -> Result<Self, Error> {
        let proto = load_model(path)?;
        let graph_error = |source| Error::Graph { path: path.to_path_buf(), source };
        let mut graph = Graph::from_model(&proto).map_err(graph_error)?;
        graph.infer_shapes().map_err(graph_error)?;
        graph.fold_constants().map_err(graph_error)?;
        Ok(LoadedModel { path: path.to_path_buf(), proto, graph })
    }

    /// The trainable libtorch version of the graph.
    pub fn lower(&self, device: Device) -> Result<LoweredModel, Error> {
        LoweredModel::new(&self.graph, device).map_err(|source| Error::Lower { path: self.path.clone(), source })
    }
}
