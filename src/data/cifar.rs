//! CIFAR-10 binary version (`cifar-10-binary.tar.gz`): records of 1 label byte and 3072 pixel
//! bytes (1024 red, 1024 green, 1024 blue, each 32x32 row-major). The test split is
//! `test_batch.bin`, the training split `data_batch_1.bin` .. `data_batch_5.bin`.

use std::path::{Path, PathBuf};

use super::dataset::{check_labels, Dataset};
use super::source::Split;
use super::DataError;

pub const SIDE: usize = 32;
pub const CLASSES: usize = 10;
const PLANE: usize = SIDE * SIDE;
/// Bytes per record: label + 3 planes.
pub const RECORD: usize = 1 + 3 * PLANE;

/// The folder the archive unpacks to; accepted inside the given folder.
const INNER: &str = "cifar-10-batches-bin";

/// The batch files of `split` found in `dir` (or in `dir/cifar-10-batches-bin`), in order.
pub fn batch_files(dir: &Path, split: Split) -> Vec<PathBuf> {
    let names: Vec<String> = match split {
        Split::Test => vec!["test_batch.bin".into()],
        Split::Train => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
    };
    for base in [dir.to_path_buf(), dir.join(INNER)] {
        let found: Vec<PathBuf> = names.iter().map(|n| base.join(n)).filter(|p| p.is_file()).collect();
        if !found.is_empty() {
            return found;
        }
    }
    Vec::new()
}

/// Whether `dir` holds CIFAR-10 batch files of either split (used by format detection).
pub fn looks_like_cifar(dir: &Path) -> bool {
    !batch_files(dir, Split::Test).is_empty() || !batch_files(dir, Split::Train).is_empty()
}

/// Reads one split of a CIFAR-10 binary folder as 32x32 RGB images.
pub fn read_cifar10(dir: &Path, split: Split) -> Result<Dataset, DataError> {
    let files = batch_files(dir, split);
    if files.is_empty() {
        let expected = match split {
            Split::Test => "`test_batch.bin`",
            Split::Train => "`data_batch_1.bin` .. `data_batch_5.bin`",
        };
        return Err(DataError::NotFound {
            path: dir.to_path_buf(),
            reason: format!("expected {expected} (CIFAR-10 binary version) in it or in `{INNER}/` inside it"),
        });
    }
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for file in &files {
        read_batch_into(file, &mut pixels, &mut labels)?;
    }
    let meta_dir = files[0].parent().unwrap_or(dir);
    let names = read_class_names(&meta_dir.join("batches.meta.txt"))?;
    Ok(Dataset::from_u8(&files[0], [SIDE, SIDE, 3], pixels, labels)?.with_class_names(names))
}

/// Reads one batch file (also used when a `.bin` file is given directly).
pub fn read_cifar10_file(file: &Path) -> Result<Dataset, DataError> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    read_batch_into(file, &mut pixels, &mut labels)?;
    let names = match file.parent() {
        Some(parent) => read_class_names(&parent.join("batches.meta.txt"))?,
        None => None,
    };
    Ok(Dataset::from_u8(file, [SIDE, SIDE, 3], pixels, labels)?.with_class_names(names))
}

/// Appends the records of `file` as HWC bytes and labels.
fn read_batch_into(file: &Path, pixels: &mut Vec<u8>, labels: &mut Vec<i64>) -> Result<(), DataError> {
    let bytes = std::fs::read(file).map_err(|e| DataError::read(file, e))?;
    if bytes.is_empty() || bytes.len() % RECORD != 0 {
        return Err(DataError::format(
            file,
            format!(
                "{} bytes is not a whole number of {RECORD}-byte CIFAR-10 records (1 label + 3x32x32 pixels); \
                 the file is truncated or not the binary version (CIFAR-100 records are 3074 bytes)",
                bytes.len()
            ),
        ));
    }
    let first = labels.len();
    pixels.reserve(bytes.len() / RECORD * 3 * PLANE);
    for record in bytes.chunks_exact(RECORD) {
        labels.push(i64::from(record[0]));
        let (r, g, b) = (&record[1..1 + PLANE], &record[1 + PLANE..1 + 2 * PLANE], &record[1 + 2 * PLANE..]);
        for i in 0..PLANE {
            pixels.extend_from_slice(&[r[i], g[i], b[i]]);
        }
    }
    check_labels(&labels[first..], Some(CLASSES), file)
}

/// The class names of `batches.meta.txt` (one per non-empty line), when the file exists.
fn read_class_names(path: &Path) -> Result<Option<Vec<String>>, DataError> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| DataError::read(path, e))?;
    let names: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    if names.len() != CLASSES {
        return Err(DataError::format(
            path,
            format!("{} class names where CIFAR-10 has {CLASSES}; remove the file or use CIFAR-10's own", names.len()),
        ));
    }
    Ok(Some(names))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record whose red plane is `r`, green `g`, blue `b` (constant planes), pixel 0 set to `p0`.
    fn record(label: u8, [r, g, b]: [u8; 3], p0: u8) -> Vec<u8> {
        let mut v = vec![label];
        for c in [r, g, b] {
            v.extend(std::iter::repeat_n(c, PLANE));
        }
        v[1] = p0;
        v
    }

    #[test]
    fn planes_become_hwc_and_labels_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = record(3, [10, 20, 30], 99);
        bytes.extend(record(9, [1, 2, 3], 1));
        std::fs::write(dir.path().join("test_batch.bin"), bytes).unwrap();
        let d = read_cifar10(dir.path(), Split::Test).unwrap();
        assert_eq!((d.len(), d.height, d.width, d.channels), (2, 32, 32, 3));
        assert_eq!(d.labels, vec![3, 9]);
        let img = d.image(0);
        assert_eq!(img.to_u8()[..6], [99, 20, 30, 10, 20, 30]);
        assert_eq!(d.image(1).to_u8()[3 * 1023..], [1, 2, 3]);
        assert_eq!(d.class_names, None);
        assert!(looks_like_cifar(dir.path()));
    }

    #[test]
    fn train_batches_are_concatenated_in_order_from_the_inner_folder_with_names() {
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join(INNER);
        std::fs::create_dir(&inner).unwrap();
        std::fs::write(inner.join("data_batch_2.bin"), record(2, [0; 3], 0)).unwrap();
        std::fs::write(inner.join("data_batch_1.bin"), record(1, [0; 3], 0)).unwrap();
        let names = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n";
        std::fs::write(inner.join("batches.meta.txt"), names).unwrap();
        let d = read_cifar10(dir.path(), Split::Train).unwrap();
        assert_eq!(d.labels, vec![1, 2]);
        assert_eq!(d.class_names.as_ref().unwrap()[9], "truck");
        let e = read_cifar10(dir.path(), Split::Test).unwrap_err().to_string();
        assert!(e.contains("test_batch.bin"), "{e}");
    }

    #[test]
    fn truncated_files_and_bad_labels_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("test_batch.bin");
        let mut bytes = record(1, [0; 3], 0);
        bytes.extend(&record(2, [0; 3], 0)[..100]);
        std::fs::write(&file, &bytes).unwrap();
        let e = read_cifar10(dir.path(), Split::Test).unwrap_err().to_string();
        assert!(e.contains("test_batch.bin") && e.contains("3173 bytes is not a whole number of 3073-byte"), "{e}");
        let mut bytes = record(1, [0; 3], 0);
        bytes.extend(record(12, [0; 3], 0));
        std::fs::write(&file, &bytes).unwrap();
        let e = read_cifar10_file(&file).unwrap_err().to_string();
        assert!(e.contains("label 12 out of range 0..10 at example 1"), "{e}");
        std::fs::write(&file, record(1, [0; 3], 0)).unwrap();
        std::fs::write(dir.path().join("batches.meta.txt"), "a\nb\n").unwrap();
        let e = read_cifar10(dir.path(), Split::Test).unwrap_err().to_string();
        assert!(e.contains("2 class names"), "{e}");
    }
}
