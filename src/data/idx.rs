//! IDX files (MNIST, Fashion-MNIST), gzipped or raw: `<prefix>-images-idx3-ubyte[.gz]` with
//! (N, H, W) unsigned bytes and `<prefix>-labels-idx1-ubyte[.gz]` with N unsigned bytes.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::dataset::Dataset;
use super::source::Split;
use super::DataError;

/// The file-name prefix of a split (`t10k` for the test split, as MNIST names it).
pub fn prefix(split: Split) -> &'static str {
    match split {
        Split::Test => "t10k",
        Split::Train => "train",
    }
}

/// Whether `dir` holds any IDX image file (used by format detection).
pub fn looks_like_idx(dir: &Path) -> bool {
    ["t10k", "train"].iter().any(|p| find(dir, &format!("{p}-images-idx3-ubyte")).is_ok())
}

/// Reads one split of an IDX folder as 1-channel images.
pub fn read_idx(dir: &Path, split: Split) -> Result<Dataset, DataError> {
    let prefix = prefix(split);
    let images_path = find(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels_path = find(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let images = read_maybe_gz(&images_path)?;
    let labels = read_maybe_gz(&labels_path)?;
    let (image_dims, image_offset) = parse_idx(&images, &images_path, 3)?;
    let (label_dims, label_offset) = parse_idx(&labels, &labels_path, 1)?;
    if image_dims[0] != label_dims[0] {
        return Err(DataError::format(
            &labels_path,
            format!("{} labels for {} images in `{}`", label_dims[0], image_dims[0], images_path.display()),
        ));
    }
    // Unsigned bytes: every label is in 0..=255, nothing more to check without a class count.
    let labels = labels[label_offset..].iter().map(|&b| i64::from(b)).collect();
    let mut pixels = images;
    pixels.drain(..image_offset);
    Dataset::from_u8(&images_path, [image_dims[1], image_dims[2], 1], pixels, labels)
}

fn find(dir: &Path, stem: &str) -> Result<PathBuf, DataError> {
    [stem.to_string(), format!("{stem}.gz")].into_iter().map(|name| dir.join(name)).find(|p| p.is_file()).ok_or_else(|| {
        DataError::NotFound {
            path: dir.to_path_buf(),
            reason: format!("expected `{stem}` or `{stem}.gz` (IDX format, as in MNIST/Fashion-MNIST)"),
        }
    })
}

fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(|e| DataError::read(path, e))?;
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(raw.as_slice())
        .read_to_end(&mut out)
        .map_err(|e| DataError::format(path, format!("corrupt gzip data: {e}; download the file again")))?;
    Ok(out)
}

/// Parses the header of an unsigned-byte IDX file of the expected rank: (dims, data offset).
fn parse_idx(bytes: &[u8], path: &Path, rank: usize) -> Result<(Vec<usize>, usize), DataError> {
    let bad = |reason: String| DataError::format(path, reason);
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad("not an IDX file (bad magic number)".into()));
    }
    if bytes[2] != 0x08 {
        return Err(bad(format!("element type 0x{:02x} is not unsigned byte (0x08)", bytes[2])));
    }
    if bytes[3] as usize != rank {
        return Err(bad(format!("rank {} where {rank} was expected", bytes[3])));
    }
    let header = 4 + 4 * rank;
    if bytes.len() < header {
        return Err(bad("truncated header".into()));
    }
    let dims: Vec<usize> = bytes[4..header].chunks_exact(4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize).collect();
    let count = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| bad("dimensions overflow".into()))?;
    let data = bytes.len() - header;
    if data != count {
        return Err(bad(format!("header promises {count} bytes of data, the file holds {data} (truncated or not this split's file)")));
    }
    Ok((dims, header))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::data::PixelData;

    fn idx(rank: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 8, rank];
        for d in dims {
            v.extend(d.to_be_bytes());
        }
        v.extend(data);
        v
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn reads_raw_idx_pair_as_grey_hwc() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), idx(3, &[2, 1, 2], &[0, 255, 51, 102])).unwrap();
        std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), idx(1, &[2], &[3, 7])).unwrap();
        let d = read_idx(dir.path(), Split::Test).unwrap();
        assert_eq!((d.height, d.width, d.channels), (1, 2, 1));
        assert_eq!(d.pixels(), PixelData::U8(&[0, 255, 51, 102]));
        assert_eq!(d.image(1).pixels, vec![0.2, 0.4]);
        assert_eq!(d.labels, vec![3, 7]);
        assert!(looks_like_idx(dir.path()));
    }

    #[test]
    fn reads_gzipped_train_split() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("train-images-idx3-ubyte.gz"), gz(&idx(3, &[1, 2, 2], &[1, 2, 3, 4]))).unwrap();
        std::fs::write(dir.path().join("train-labels-idx1-ubyte.gz"), gz(&idx(1, &[1], &[9]))).unwrap();
        let d = read_idx(dir.path(), Split::Train).unwrap();
        assert_eq!((d.len(), d.labels[0], d.height), (1, 9, 2));
        let e = read_idx(dir.path(), Split::Test).unwrap_err().to_string();
        assert!(e.contains("t10k-images-idx3-ubyte"), "{e}");
    }

    #[test]
    fn truncated_data_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), idx(3, &[2, 1, 2], &[0, 255, 51])).unwrap();
        std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), idx(1, &[2], &[3, 7])).unwrap();
        let e = read_idx(dir.path(), Split::Test).unwrap_err().to_string();
        assert!(e.contains("t10k-images-idx3-ubyte") && e.contains("4 bytes"), "{e}");
    }

    #[test]
    fn wrong_magic_rank_and_count_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let labels = dir.path().join("t10k-labels-idx1-ubyte");
        std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), b"\x89PNG not idx").unwrap();
        std::fs::write(&labels, idx(1, &[1], &[3])).unwrap();
        assert!(read_idx(dir.path(), Split::Test).unwrap_err().to_string().contains("bad magic"));
        std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), idx(1, &[1], &[0])).unwrap();
        assert!(read_idx(dir.path(), Split::Test).unwrap_err().to_string().contains("rank 1 where 3"));
        std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), idx(3, &[2, 1, 1], &[0, 1])).unwrap();
        let e = read_idx(dir.path(), Split::Test).unwrap_err().to_string();
        assert!(e.contains("1 labels for 2 images"), "{e}");
        std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), &gz(b"x")[..8]).unwrap();
        assert!(read_idx(dir.path(), Split::Test).unwrap_err().to_string().contains("corrupt gzip"));
    }
}
