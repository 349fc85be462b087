//! Tensors whose bytes live outside the `.onnx` file ("external data").
//!
//! Two jobs, shared by the loader and the saver:
//!
//! * [`for_each_tensor`] visits every `TensorProto` a model can hold — graph initializers,
//!   sparse initializers, tensors in node attributes (`Constant`), subgraphs of `If`/`Loop`/`Scan`
//!   at any depth, functions and training graphs — in a fixed order, because external data may
//!   sit in any of them and the saver needs a stable order for the `.data` layout.
//! * [`ExternalReader`] reads the bytes a tensor points to, confined to the model's folder: a
//!   model file is untrusted input, and `location = "/etc/shadow"` or `"../../secret"` must not
//!   make this tool read (and later write back into a repaired model) files outside that folder.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use super::proto::tensor_proto::DataLocation;
use super::proto::{AttributeProto, GraphProto, ModelProto, NodeProto, SparseTensorProto, TensorProto};
use super::OnnxError;

/// Where a tensor sits in the model: the saver moves initializers to the `.data` file on request
/// and any tensor only when the model would exceed protobuf's size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TensorKind {
    Initializer,
    SparseInitializer,
    Attribute,
}

/// A tensor's kind and a human-readable name for error messages (the tensor's own name, or where
/// it sits when it has none, as `Constant` values often do).
#[derive(Debug, Clone)]
pub(crate) struct Site {
    pub kind: TensorKind,
    pub label: String,
}

type Visitor<'f> = dyn FnMut(&mut TensorProto, Site) -> Result<(), OnnxError> + 'f;

/// Calls `f` on every tensor of `model`, depth first, in the order of the protobuf fields.
pub(crate) fn for_each_tensor(model: &mut ModelProto, f: &mut Visitor<'_>) -> Result<(), OnnxError> {
    if let Some(g) = model.graph.as_mut() {
        graph(g, f)?;
    }
    for info in &mut model.training_info {
        for g in [info.initialization.as_mut(), info.algorithm.as_mut()].into_iter().flatten() {
            graph(g, f)?;
        }
    }
    for func in &mut model.functions {
        let where_ = format!("function `{}`", func.name());
        for a in &mut func.attribute_proto {
            attribute(a, &where_, f)?;
        }
        for n in &mut func.node {
            node(n, f)?;
        }
    }
    Ok(())
}

fn graph(g: &mut GraphProto, f: &mut Visitor<'_>) -> Result<(), OnnxError> {
    let graph_name = g.name().to_string();
    for (i, t) in g.initializer.iter_mut().enumerate() {
        let label = label(t, || format!("initializer #{i} of graph `{graph_name}`"));
        f(t, Site { kind: TensorKind::Initializer, label })?;
    }
    for (i, s) in g.sparse_initializer.iter_mut().enumerate() {
        sparse(s, TensorKind::SparseInitializer, &format!("sparse initializer #{i} of graph `{graph_name}`"), f)?;
    }
    for n in &mut g.node {
        node(n, f)?;
    }
    Ok(())
}

fn node(n: &mut NodeProto, f: &mut Visitor<'_>) -> Result<(), OnnxError> {
    let where_ = format!("node `{}` ({})", n.name(), n.op_type());
    for a in &mut n.attribute {
        attribute(a, &where_, f)?;
    }
    Ok(())
}

fn attribute(a: &mut AttributeProto, where_: &str, f: &mut Visitor<'_>) -> Result<(), OnnxError> {
    let context = format!("attribute `{}` of {where_}", a.name());
    let site = |t: &TensorProto| Site { kind: TensorKind::Attribute, label: label(t, || context.clone()) };
    if let Some(t) = a.t.as_mut() {
        let s = site(t);
        f(t, s)?;
    }
    for t in &mut a.tensors {
        let s = site(t);
        f(t, s)?;
    }
    for s in a.sparse_tensor.iter_mut().chain(a.sparse_tensors.iter_mut()) {
        sparse(s, TensorKind::Attribute, &context, f)?;
    }
    for g in a.g.iter_mut().chain(a.graphs.iter_mut()) {
        graph(g, f)?;
    }
    Ok(())
}

fn sparse(s: &mut SparseTensorProto, kind: TensorKind, context: &str, f: &mut Visitor<'_>) -> Result<(), OnnxError> {
    for (part, t) in [("values", s.values.as_mut()), ("indices", s.indices.as_mut())] {
        if let Some(t) = t {
            let label = label(t, || format!("{part} of {context}"));
            f(t, Site { kind, label })?;
        }
    }
    Ok(())
}

fn label(t: &TensorProto, fallback: impl FnOnce() -> String) -> String {
    if t.name().is_empty() {
        fallback()
    } else {
        t.name().to_string()
    }
}

/// True when the tensor's bytes are in another file (ONNX's own test: `data_location == EXTERNAL`).
pub(crate) fn is_external(t: &TensorProto) -> bool {
    t.data_location() == DataLocation::External
}

/// The `location` entry of a tensor's `external_data`, if any.
pub(crate) fn location_of(t: &TensorProto) -> Option<&str> {
    t.external_data.iter().find(|e| e.key() == "location").map(|e| e.value())
}

/// Reads external data for the tensors of one model, each data file opened once.
pub(crate) struct ExternalReader {
    model: PathBuf,
    /// The model's folder, canonical (symlinks resolved), or None for a model given as bytes.
    folder: Option<PathBuf>,
    open: HashMap<PathBuf, (File, u64)>,
}

impl ExternalReader {
    /// `model` names the model in errors; `folder` is where its external files must be.
    pub(crate) fn new(model: &Path, folder: Option<&Path>) -> Result<Self, OnnxError> {
        let folder = folder
            .map(|dir| {
                let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
                dir.canonicalize().map_err(|source| OnnxError::Read { path: dir.to_path_buf(), source })
            })
            .transpose()?;
        Ok(ExternalReader { model: model.to_path_buf(), folder, open: HashMap::new() })
    }

    /// Replaces the tensor's external reference by its bytes in `raw_data` and clears
    /// `external_data` and `data_location`, so the model in memory needs no other file.
    pub(crate) fn resolve(&mut self, t: &mut TensorProto, site: &Site) -> Result<(), OnnxError> {
        let location = location_of(t).unwrap_or_default().to_string();
        let err = |reason: String| OnnxError::ExternalData {
            model: self.model.clone(),
            tensor: site.label.clone(),
            reason: format!("location `{location}`: {reason}"),
        };
        let (offset, length) = parse_entries(t).map_err(&err)?;
        let folder = self.folder.as_deref().ok_or_else(|| {
            err("the model was given as bytes without its folder, so external data cannot be found; load it from its file".into())
        })?;
        let path = confine(folder, &location).map_err(&err)?;
        if !self.open.contains_key(&path) {
            // Checked before opening too: opening a FIFO would block until someone writes to it.
            if !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
                return Err(err(format!("`{}` is not a regular file", path.display())));
            }
            let file = File::open(&path).map_err(|e| err(format!("cannot open `{}`: {e}", path.display())))?;
            let meta = file.metadata().map_err(|e| err(format!("cannot stat `{}`: {e}", path.display())))?;
            if !meta.is_file() {
                return Err(err(format!("`{}` is not a regular file", path.display())));
            }
            self.open.insert(path.clone(), (file, meta.len()));
        }
        let (file, size) = self.open.get_mut(&path).expect("inserted above");
        let size = *size;
        let length = match length {
            Some(len) => len,
            None => size.checked_sub(offset).ok_or_else(|| {
                err(format!("offset {offset} is beyond the end of `{}` ({size} bytes)", path.display()))
            })?,
        };
        if offset.checked_add(length).is_none_or(|end| end > size) {
            return Err(err(format!(
                "offset {offset} + length {length} is beyond the end of `{}` ({size} bytes); the data file does not belong to this model or is truncated",
                path.display()
            )));
        }
        let mut bytes =
            vec![0u8; usize::try_from(length).map_err(|_| err(format!("length {length} does not fit in memory")))?];
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.read_exact(&mut bytes))
            .map_err(|e| err(format!("reading {length} bytes at offset {offset} of `{}`: {e}", path.display())))?;
        t.raw_data = Some(bytes);
        t.external_data.clear();
        t.data_location = None;
        Ok(())
    }
}

/// `offset` (default 0) and `length` (default: to the end of the file) of a tensor's
/// `external_data`; `checksum` and unknown keys are ignored, as onnx does.
fn parse_entries(t: &TensorProto) -> Result<(u64, Option<u64>), String> {
    let number = |key: &str| -> Result<Option<u64>, String> {
        match t.external_data.iter().find(|e| e.key() == key) {
            None => Ok(None),
            Some(e) => e
                .value()
                .trim()
                .parse::<u64>()
                .map(Some)
                .map_err(|_| format!("`{key}` = `{}` is not a non-negative integer", e.value())),
        }
    };
    if location_of(t).is_none_or(str::is_empty) {
        return Err("the tensor is marked EXTERNAL but has no `location` entry".into());
    }
    Ok((number("offset")?.unwrap_or(0), number("length")?))
}

/// The canonical path of `location` inside `folder` (canonical too), or why it is refused:
/// absolute paths, `..` components and anything (symlinks included) resolving outside `folder`.
pub(crate) fn confine(folder: &Path, location: &str) -> Result<PathBuf, String> {
    let relative = Path::new(location);
    for c in relative.components() {
        match c {
            Component::RootDir | Component::Prefix(_) => {
                return Err(
                    "absolute paths are refused: external data must be a relative path inside the model's folder"
                        .into(),
                )
            }
            Component::ParentDir => {
                return Err("paths with `..` are refused: external data must stay inside the model's folder".into())
            }
            Component::CurDir | Component::Normal(_) => {}
        }
    }
    let joined = folder.join(relative);
    let canonical = joined.canonicalize().map_err(|e| {
        format!(
            "cannot open `{}`: {e}. Keep the data file next to the model, under the name the model records",
            joined.display()
        )
    })?;
    if !canonical.starts_with(folder) {
        return Err(format!(
            "it resolves to `{}`, outside the model's folder `{}` (a symlink?); refused",
            canonical.display(),
            folder.display()
        ));
    }
    Ok(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::{NodeProto, StringStringEntryProto};

    fn entry(k: &str, v: &str) -> StringStringEntryProto {
        StringStringEntryProto { key: Some(k.into()), value: Some(v.into()) }
    }

    #[test]
    fn confine_refuses_escapes() {
        let dir = std::env::temp_dir().canonicalize().unwrap();
        assert!(confine(&dir, "/etc/passwd").unwrap_err().contains("absolute"));
        assert!(confine(&dir, "a/../../x").unwrap_err().contains(".."));
        assert!(confine(&dir, "does-not-exist-archrepair.data").unwrap_err().contains("cannot open"));
    }

    #[test]
    fn visitor_reaches_attribute_tensors_in_subgraphs() {
        let constant = |name: &str| NodeProto {
            name: Some(name.into()),
            op_type: Some("Constant".into()),
            attribute: vec![AttributeProto {
                name: Some("value".into()),
                t: Some(TensorProto::default()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let sub = GraphProto { node: vec![constant("inner")], ..Default::default() };
        let if_node = NodeProto {
            name: Some("if".into()),
            op_type: Some("If".into()),
            attribute: vec![AttributeProto { name: Some("then_branch".into()), g: Some(sub), ..Default::default() }],
            ..Default::default()
        };
        let mut model = ModelProto {
            graph: Some(GraphProto { node: vec![constant("outer"), if_node], ..Default::default() }),
            ..Default::default()
        };
        let mut labels = vec![];
        for_each_tensor(&mut model, &mut |_, site| {
            labels.push(site.label);
            Ok(())
        })
        .unwrap();
        assert_eq!(
            labels,
            ["attribute `value` of node `outer` (Constant)", "attribute `value` of node `inner` (Constant)"]
        );
    }

    #[test]
    fn bad_offset_is_reported() {
        let t = TensorProto {
            external_data: vec![entry("location", "w.bin"), entry("offset", "-3")],
            ..Default::default()
        };
        assert!(parse_entries(&t).unwrap_err().contains("offset"));
        let t = TensorProto { external_data: vec![entry("offset", "0")], ..Default::default() };
        assert!(parse_entries(&t).unwrap_err().contains("location"));
    }
}
