//! Writing an ONNX model, atomically, with external data when asked or when it must.
//!
//! * Atomic: the model (and its `.data` file) is written to a temporary file in the target folder
//!   and renamed over the target, so a crash or a full disk never leaves a half-written model
//!   where a deployment pipeline would pick it up. The two renames (data first, then model) are
//!   the only window where an old model may meet the new data file.
//! * External data: protobuf cannot encode messages over 2 GiB, so big initializers go to
//!   `<file name>.data` next to the model, recorded by file name only (a relative `location`, the
//!   only kind [`load_model`](super::load_model) accepts). Offsets are aligned as onnx does, for
//!   vector loads and mmap.
//! * The input model is never modified: the saver works on a copy.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use prost::Message;

use super::external::{for_each_tensor, is_external, location_of, TensorKind};
use super::proto::tensor_proto::DataLocation;
use super::proto::{ModelProto, StringStringEntryProto, TensorProto};
use super::OnnxError;

/// Largest message protobuf implementations read (C++ and Python refuse 2 GiB and more).
pub const PROTOBUF_LIMIT: u64 = i32::MAX as u64;
/// Headroom under [`PROTOBUF_LIMIT`] for the size estimate of the spill plan.
const SIZE_MARGIN: u64 = 64 << 20;
/// Offsets of tensors in the `.data` file: 64-byte aligned, page aligned from 1 MiB on.
const SMALL_ALIGN: u64 = 64;
const PAGE_ALIGN: u64 = 4096;
const PAGE_ALIGN_FROM: usize = 1 << 20;

/// How to save a model.
#[derive(Debug, Clone)]
pub struct SaveOptions {
    /// Move initializers of at least `external_threshold` bytes of `raw_data` to `<file>.data`.
    pub external: bool,
    /// Size in bytes from which an initializer is moved when `external` is set (onnx uses 1024).
    pub external_threshold: usize,
    /// Encoded size the `.onnx` file should stay under: above it, tensors (any, largest first)
    /// are moved to `<file>.data` whatever `external` says. Defaults to protobuf's 2 GiB limit
    /// less a margin; a lower value suits runtimes with smaller limits.
    pub size_limit: u64,
}

impl Default for SaveOptions {
    fn default() -> Self {
        SaveOptions { external: false, external_threshold: 1024, size_limit: PROTOBUF_LIMIT - SIZE_MARGIN }
    }
}

/// What [`save_model_with`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveSummary {
    pub model_path: PathBuf,
    pub model_bytes: u64,
    /// `<file>.data`, when some tensors were moved there.
    pub data_path: Option<PathBuf>,
    pub data_bytes: u64,
    /// Number of tensors moved to the data file.
    pub external_tensors: usize,
    /// Tensors had to be moved because the model was over [`SaveOptions::size_limit`].
    pub spilled_for_size: bool,
    /// A `<file>.data` left by an earlier save was removed because the new model does not use it.
    pub removed_stale_data: bool,
}

/// Saves `model` to `path` with default options (everything inline unless over 2 GiB).
pub fn save_model(model: &ModelProto, path: &Path) -> Result<SaveSummary, OnnxError> {
    save_model_with(model, path, &SaveOptions::default())
}

/// Saves `model` to `path`; see [`SaveOptions`].
pub fn save_model_with(model: &ModelProto, path: &Path, options: &SaveOptions) -> Result<SaveSummary, OnnxError> {
    let write_err = |p: &Path, source: std::io::Error| OnnxError::Write { path: p.to_path_buf(), source };
    let file_name = path
        .file_name()
        .ok_or_else(|| {
            write_err(path, std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path has no file name"))
        })?
        .to_string_lossy()
        .into_owned();
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let data_name = format!("{file_name}.data");
    let data_path = folder.join(&data_name);

    let mut model = model.clone();
    let plan = plan_spill(&mut model, options, path, &data_name)?;

    let mut data_tmp = None;
    let mut data_bytes = 0;
    if plan.count > 0 {
        let (file, staged) = Staged::create(&folder, &data_name).map_err(|e| write_err(&data_path, e))?;
        let mut out = BufWriter::new(file);
        data_bytes = spill(&mut model, &plan.selected, &data_name, &mut out).map_err(|e| write_err(&data_path, e))?;
        let file = out.into_inner().map_err(|e| write_err(&data_path, e.into_error()))?;
        file.sync_all().map_err(|e| write_err(&data_path, e))?;
        data_tmp = Some(staged);
    }

    let model_bytes = model.encoded_len() as u64;
    if model_bytes > PROTOBUF_LIMIT {
        return Err(OnnxError::TooLarge { path: path.to_path_buf(), bytes: model_bytes, limit: PROTOBUF_LIMIT });
    }
    let (mut file, model_tmp) = Staged::create(&folder, &file_name).map_err(|e| write_err(path, e))?;
    file.write_all(&model.encode_to_vec()).and_then(|_| file.sync_all()).map_err(|e| write_err(path, e))?;
    drop(file);

    if let Some(staged) = data_tmp {
        staged.commit(&data_path).map_err(|e| write_err(&data_path, e))?;
    }
    model_tmp.commit(path).map_err(|e| write_err(path, e))?;

    let mut removed_stale_data = false;
    if plan.count == 0 && std::fs::symlink_metadata(&data_path).is_ok_and(|m| !m.is_dir()) {
        std::fs::remove_file(&data_path).map_err(|e| write_err(&data_path, e))?;
        removed_stale_data = true;
    }
    // Make the renames durable; not every file system can sync a folder, hence best effort.
    let _ = File::open(&folder).and_then(|d| d.sync_all());

    Ok(SaveSummary {
        model_path: path.to_path_buf(),
        model_bytes,
        data_path: (plan.count > 0).then_some(data_path),
        data_bytes,
        external_tensors: plan.count,
        spilled_for_size: plan.for_size,
        removed_stale_data,
    })
}

/// Which tensors (by visiting order of [`for_each_tensor`]) go to the data file.
struct SpillPlan {
    selected: Vec<bool>,
    count: usize,
    for_size: bool,
}

/// Chooses the tensors to move: initializers over the threshold when asked, then the largest
/// tensors of any kind until the estimated size is under the limit. Refuses tensors that still
/// point to external data: their folder is unknown here.
fn plan_spill(
    model: &mut ModelProto,
    options: &SaveOptions,
    path: &Path,
    data_name: &str,
) -> Result<SpillPlan, OnnxError> {
    let mut sizes: Vec<(usize, TensorKind)> = vec![];
    for_each_tensor(model, &mut |t, site| {
        if is_external(t) && t.raw_data.is_none() {
            return Err(OnnxError::UnresolvedExternal {
                path: path.to_path_buf(),
                tensor: site.label,
                location: location_of(t).unwrap_or_default().to_string(),
            });
        }
        sizes.push((t.raw_data.as_ref().map_or(0, Vec::len), site.kind));
        Ok(())
    })?;
    let movable = |len: usize| len > 0;
    let mut selected: Vec<bool> = sizes
        .iter()
        .map(|&(len, kind)| {
            options.external && kind == TensorKind::Initializer && movable(len) && len >= options.external_threshold
        })
        .collect();
    // Moving a tensor removes its raw_data field and adds three external_data entries.
    let saved = |len: usize| (1 + prost::encoding::encoded_len_varint(len as u64) + len) as u64;
    let added = 96 + 2 * data_name.len() as u64;
    let mut estimate = model.encoded_len() as u64;
    for (i, &(len, _)) in sizes.iter().enumerate() {
        if selected[i] {
            estimate = estimate - saved(len) + added;
        }
    }
    let mut for_size = false;
    if estimate > options.size_limit {
        let mut order: Vec<usize> = (0..sizes.len()).filter(|&i| !selected[i] && movable(sizes[i].0)).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(sizes[i].0));
        for i in order {
            if estimate <= options.size_limit {
                break;
            }
            selected[i] = true;
            for_size = true;
            estimate = estimate - saved(sizes[i].0) + added;
        }
    }
    let count = selected.iter().filter(|&&s| s).count();
    Ok(SpillPlan { selected, count, for_size })
}

/// Moves the selected tensors' bytes to `out` at aligned offsets and points the tensors there.
/// Returns the size of the data file.
fn spill(model: &mut ModelProto, selected: &[bool], data_name: &str, out: &mut impl Write) -> std::io::Result<u64> {
    let entry = |k: &str, v: String| StringStringEntryProto { key: Some(k.into()), value: Some(v) };
    let mut index = 0;
    let mut offset = 0u64;
    let mut result = Ok(());
    let _ = for_each_tensor(model, &mut |t: &mut TensorProto, _| {
        let chosen = selected[index];
        index += 1;
        if !chosen || result.is_err() {
            return Ok(());
        }
        let bytes = t.raw_data.take().unwrap_or_default();
        let align = if bytes.len() >= PAGE_ALIGN_FROM { PAGE_ALIGN } else { SMALL_ALIGN };
        let start = offset.div_ceil(align) * align;
        let padding = vec![0u8; (start - offset) as usize];
        result = out.write_all(&padding).and_then(|_| out.write_all(&bytes));
        offset = start + bytes.len() as u64;
        t.external_data = vec![
            entry("location", data_name.to_string()),
            entry("offset", start.to_string()),
            entry("length", bytes.len().to_string()),
        ];
        t.data_location = Some(DataLocation::External as i32);
        Ok(())
    });
    result.map(|_| offset)
}

/// A temporary file in the target folder, removed on drop unless renamed into place.
struct Staged {
    tmp: PathBuf,
    committed: bool,
}

impl Staged {
    fn create(folder: &Path, final_name: &str) -> std::io::Result<(File, Staged)> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let tmp = folder.join(format!(".{final_name}.{}.{n}.tmp", std::process::id()));
            match OpenOptions::new().write(true).create_new(true).open(&tmp) {
                Ok(file) => return Ok((file, Staged { tmp, committed: false })),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn commit(mut self, target: &Path) -> std::io::Result<()> {
        std::fs::rename(&self.tmp, target)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::{GraphProto, OperatorSetIdProto};
    use crate::onnx::tensor::encode_f32;

    fn model(sizes: &[usize]) -> ModelProto {
        let initializer =
            sizes.iter().enumerate().map(|(i, &n)| encode_f32(&format!("w{i}"), &[n as i64], &vec![1.5; n])).collect();
        ModelProto {
            ir_version: Some(9),
            opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(17) }],
            graph: Some(GraphProto { name: Some("g".into()), initializer, ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn size_limit_moves_largest_first() {
        let mut m = model(&[10, 1000, 300]);
        let options = SaveOptions { size_limit: 2000, ..Default::default() };
        let plan = plan_spill(&mut m, &options, Path::new("m.onnx"), "m.onnx.data").unwrap();
        assert_eq!(plan.selected, [false, true, false]);
        assert!(plan.for_size && plan.count == 1);
    }

    #[test]
    fn threshold_selects_initializers_only_when_asked() {
        let mut m = model(&[10, 1000, 300]);
        let plan = plan_spill(&mut m, &SaveOptions::default(), Path::new("m.onnx"), "d").unwrap();
        assert_eq!(plan.count, 0);
        let options = SaveOptions { external: true, external_threshold: 1200, ..Default::default() };
        let plan = plan_spill(&mut m, &options, Path::new("m.onnx"), "d").unwrap();
        assert_eq!(plan.selected, [false, true, true]);
        assert!(!plan.for_size);
    }

    #[test]
    fn offsets_are_aligned() {
        let mut m = model(&[3, 5]);
        let mut out = vec![];
        let end = spill(&mut m, &[true, true], "d", &mut out).unwrap();
        let t = &m.graph.as_ref().unwrap().initializer[1];
        assert_eq!(location_of(t), Some("d"));
        assert_eq!(t.external_data[1].value(), "64");
        assert_eq!((end, out.len()), (64 + 20, 84));
    }
}
