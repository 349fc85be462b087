//! IDX files (MNIST, Fashion-MNIST), gzipped or raw.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::DataError;

/// Images (N, C, H, W) scaled to [0, 1], with their labels.
#[derive(Debug, Clone)]
pub struct LabeledImages {
    pub shape: [usize; 4],
    pub pixels: Vec<f32>,
    pub labels: Vec<i64>,
}

impl LabeledImages {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Images `start..end` as (shape, values).
    pub fn batch(&self, start: usize, end: usize) -> ([i64; 4], &[f32]) {
        let [_, c, h, w] = self.shape;
        let per = c * h * w;
        ([(end - start) as i64, c as i64, h as i64, w as i64], &self.pixels[start * per..end * per])
    }
}

/// Loads `<split>-images-idx3-ubyte[.gz]` and `<split>-labels-idx1-ubyte[.gz]` from `dir`
/// (split: "train" or "t10k"), keeping at most `limit` examples.
pub fn load_idx_split(dir: &Path, split: &str, limit: Option<usize>) -> Result<LabeledImages, DataError> {
    let images_path = find(dir, &format!("{split}-images-idx3-ubyte"))?;
    let labels_path = find(dir, &format!("{split}-labels-idx1-ubyte"))?;
    let images = read_maybe_gz(&images_path)?;
    let labels = read_maybe_gz(&labels_path)?;
    let (image_dims, image_bytes) = parse_idx(&images, &images_path, 3)?;
    let (label_dims, label_bytes) = parse_idx(&labels, &labels_path, 1)?;
    if image_dims[0] != label_dims[0] {
        return Err(DataError::Format {
            path: labels_path,
            reason: format!("{} labels for {} images in `{}`", label_dims[0], image_dims[0], images_path.display()),
        });
    }
    let n = limit.map_or(image_dims[0], |l| l.min(image_dims[0]));
    let per = image_dims[1] * image_dims[2];
    Ok(LabeledImages {
        shape: [n, 1, image_dims[1], image_dims[2]],
        pixels: image_bytes[..n * per].iter().map(|&b| b as f32 / 255.0).collect(),
        labels: label_bytes[..n].iter().map(|&b| b as i64).collect(),
    })
}

fn find(dir: &Path, stem: &str) -> Result<PathBuf, DataError> {
    [stem.to_string(), format!("{stem}.gz")]
        .into_iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| DataError::NotFound {
            path: dir.to_path_buf(),
            reason: format!("expected `{stem}` or `{stem}.gz` (IDX format, as in MNIST/Fashion-MNIST)"),
        })
}

fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(|source| DataError::Read { path: path.to_path_buf(), source })?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| DataError::Format { path: path.to_path_buf(), reason: format!("corrupt gzip data: {e}") })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parses an unsigned-byte IDX file of the expected rank: (dims, data).
fn parse_idx<'a>(bytes: &'a [u8], path: &Path, rank: usize) -> Result<(Vec<usize>, &'a [u8]), DataError> {
    let bad = |reason: String| DataError::Format { path: path.to_path_buf(), reason };
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
    let dims: Vec<usize> = (0..rank)
        .map(|i| u32::from_be_bytes([bytes[4 + 4 * i], bytes[5 + 4 * i], bytes[6 + 4 * i], bytes[7 + 4 * i]]) as usize)
        .collect();
    let count = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| bad("dimensions overflow".into()))?;
    let data = &bytes[header..];
    if data.len() != count {
        return Err(bad(format!("header promises {count} bytes of data, the file holds {}", data.len())));
    }
    Ok((dims, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(rank: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 8, rank];
        for d in dims {
            v.extend(d.to_be_bytes());
        }
        v.extend(data);
        v
    }

    #[test]
    fn reads_raw_idx_pair_and_scales_pixels() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), idx(3, &[2, 1, 2], &[0, 255, 51, 102])).unwrap();
        std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), idx(1, &[2], &[3, 7])).unwrap();
        let d = load_idx_split(dir.path(), "t10k", None).unwrap();
        assert_eq!(d.shape, [2, 1, 1, 2]);
        assert_eq!(d.pixels, vec![0.0, 1.0, 0.2, 0.4]);
        assert_eq!(d.labels, vec![3, 7]);
    }

    #[test]
    fn truncated_data_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), idx(3, &[2, 1, 2], &[0, 255, 51])).unwrap();
        std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), idx(1, &[2], &[3, 7])).unwrap();
        let e = load_idx_split(dir.path(), "t10k", None).unwrap_err().to_string();
        assert!(e.contains("t10k-images-idx3-ubyte") && e.contains("4 bytes"), "{e}");
    }
}
