//! Where a dataset comes from and which reader opens it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::arrays::{read_npy_dir, read_npy_file, read_npz, IMAGES_FILE, LABELS_FILE};
use super::cifar::{looks_like_cifar, read_cifar10, read_cifar10_file};
use super::dataset::Dataset;
use super::folder::{has_loose_images, looks_like_folder, read_folder};
use super::idx::{looks_like_idx, read_idx};
use super::{DataError, Layout};

/// The dataset formats we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// MNIST-style IDX files in a folder, gzipped or raw.
    Idx,
    /// CIFAR-10 binary batches in a folder (or one `.bin` batch file).
    Cifar10,
    /// An image `.npy` file with `labels.npy` beside it (incl. CIFAR-10-C corruption files), or a
    /// folder with `images.npy` and `labels.npy`.
    Npy,
    /// An `.npz` archive with images and labels.
    Npz,
    /// One sub-folder of PNG/JPEG images per class.
    Folder,
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "idx" => Ok(Format::Idx),
            "cifar10" | "cifar-10" => Ok(Format::Cifar10),
            "npy" => Ok(Format::Npy),
            "npz" => Ok(Format::Npz),
            "folder" => Ok(Format::Folder),
            other => Err(format!("unknown data format `{other}`: expected idx, cifar10, npy, npz or folder")),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Idx => "idx",
            Format::Cifar10 => "cifar10",
            Format::Npy => "npy",
            Format::Npz => "npz",
            Format::Folder => "folder",
        })
    }
}

/// Which split of a dataset that stores several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Split {
    #[default]
    Test,
    Train,
}

impl FromStr for Split {
    type Err = String;

    /// `t10k` is MNIST's name for the test split and accepted as such.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "test" | "t10k" => Ok(Split::Test),
            "train" => Ok(Split::Train),
            other => Err(format!("unknown split `{other}`: expected test or train")),
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Split::Test => "test",
            Split::Train => "train",
        })
    }
}

/// A dataset on disk and how to read it.
#[derive(Debug, Clone, PartialEq)]
pub struct DataSource {
    pub path: PathBuf,
    /// The format; detected from the path when absent.
    pub format: Option<Format>,
    pub split: Split,
    /// For CIFAR-10-C-layout `.npy` files: the severity (1-5) whose rows to read; all when absent.
    pub corruption_severity: Option<u8>,
    /// For NPY/NPZ image arrays whose layout cannot be told from the shape, e.g. (N, 3, 32, 3).
    pub layout: Option<Layout>,
}

impl DataSource {
    /// The test split of `path`, format detected.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DataSource { path: path.into(), format: None, split: Split::Test, corruption_severity: None, layout: None }
    }
}

/// Reads the dataset `source` describes, detecting the format when it is not given.
pub fn open(source: &DataSource) -> Result<Dataset, DataError> {
    let path = source.path.as_path();
    if !path.exists() {
        return Err(DataError::NotFound { path: path.to_path_buf(), reason: "the path does not exist".into() });
    }
    let format = match source.format {
        Some(f) => f,
        None => detect(path, source.split)?,
    };
    if source.corruption_severity.is_some() && format != Format::Npy {
        return Err(DataError::format(path, format!("a severity applies only to CIFAR-10-C-layout .npy files, not to {format} data")));
    }
    if source.layout.is_some() && !matches!(format, Format::Npy | Format::Npz) {
        return Err(DataError::format(path, format!("a data layout applies only to NPY/NPZ arrays, not to {format} data")));
    }
    let (severity, layout, split) = (source.corruption_severity, source.layout, source.split);
    let dataset = match (format, path.is_dir()) {
        (Format::Idx, true) => read_idx(path, split)?,
        (Format::Cifar10, true) => read_cifar10(path, split)?,
        (Format::Cifar10, false) => read_cifar10_file(path)?,
        (Format::Npy, true) => read_npy_dir(path, severity, layout)?,
        (Format::Npy, false) => read_npy_file(path, severity, layout)?,
        (Format::Npz, false) => read_npz(path, split, layout)?,
        (Format::Folder, true) => read_folder(path, split)?,
        (Format::Idx | Format::Folder, false) => {
            return Err(DataError::format(path, format!("{format} data is a folder, not a file: give the folder holding it")))
        }
        (Format::Npz, true) => return Err(DataError::format(path, "npz data is a file: give the .npz file, not a folder")),
    };
    if dataset.is_empty() {
        return Err(DataError::format(path, "the dataset holds no images"));
    }
    Ok(dataset)
}

/// The format of `path`, from file extensions and folder contents.
pub fn detect(path: &Path, split: Split) -> Result<Format, DataError> {
    if !path.is_dir() {
        let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        return match ext.as_str() {
            "npz" => Ok(Format::Npz),
            "npy" => Ok(Format::Npy),
            "bin" => Ok(Format::Cifar10),
            _ => Err(DataError::NotFound {
                path: path.to_path_buf(),
                reason: "a data file must be .npz, .npy (labels.npy beside it) or .bin (a CIFAR-10 batch); \
                         IDX files and image folders are given by their folder"
                    .into(),
            }),
        };
    }
    if looks_like_idx(path) {
        return Ok(Format::Idx);
    }
    if looks_like_cifar(path) {
        return Ok(Format::Cifar10);
    }
    if path.join(IMAGES_FILE).is_file() {
        return Ok(Format::Npy);
    }
    if path.join(LABELS_FILE).is_file() {
        return Err(DataError::NotFound {
            path: path.to_path_buf(),
            reason: format!(
                "it holds `{LABELS_FILE}` but no `{IMAGES_FILE}`; for a CIFAR-10-C folder give one corruption file, e.g. `{}` (and --severity 1..5)",
                path.join("gaussian_noise.npy").display()
            ),
        });
    }
    if looks_like_folder(path, split) {
        return Ok(Format::Folder);
    }
    if has_loose_images(path) {
        return Err(DataError::NotFound {
            path: path.to_path_buf(),
            reason: "it holds PNG/JPEG files but no class sub-folders, so the labels are unknown; \
                     put the images of each class in a sub-folder named after it"
                .into(),
        });
    }
    Err(DataError::NotFound {
        path: path.to_path_buf(),
        reason: "looked for IDX files (`t10k-images-idx3-ubyte[.gz]`, `train-...`), CIFAR-10 batches (`test_batch.bin`, \
                 `data_batch_N.bin`, also in `cifar-10-batches-bin/`), `images.npy` + `labels.npy`, and class sub-folders \
                 of PNG/JPEG images; found none (give --format to get that reader's own error)"
            .into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::npy::write_npy;

    #[test]
    fn names_parse() {
        assert_eq!("t10k".parse::<Split>().unwrap(), Split::Test);
        assert_eq!("Train".parse::<Split>().unwrap(), Split::Train);
        assert!("val".parse::<Split>().unwrap_err().contains("test or train"));
        for f in [Format::Idx, Format::Cifar10, Format::Npy, Format::Npz, Format::Folder] {
            assert_eq!(f.to_string().parse::<Format>().unwrap(), f);
        }
        assert!("csv".parse::<Format>().unwrap_err().contains("idx, cifar10, npy, npz or folder"));
    }

    #[test]
    fn formats_are_detected_from_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let sub = |name: &str| {
            let p = d.join(name);
            std::fs::create_dir_all(&p).unwrap();
            p
        };
        std::fs::write(sub("idx").join("t10k-images-idx3-ubyte.gz"), b"").unwrap();
        std::fs::write(sub("cifar/cifar-10-batches-bin").join("data_batch_1.bin"), b"").unwrap();
        std::fs::write(sub("npy").join("images.npy"), b"").unwrap();
        std::fs::write(sub("c10c").join("labels.npy"), b"").unwrap();
        image::GrayImage::new(1, 1).save(sub("folder/cat").join("1.png")).unwrap();
        sub("empty");
        image::GrayImage::new(1, 1).save(sub("flat").join("1.png")).unwrap();
        assert_eq!(detect(&d.join("idx"), Split::Test).unwrap(), Format::Idx);
        assert_eq!(detect(&d.join("cifar"), Split::Test).unwrap(), Format::Cifar10);
        assert_eq!(detect(&d.join("npy"), Split::Test).unwrap(), Format::Npy);
        assert_eq!(detect(&d.join("folder"), Split::Test).unwrap(), Format::Folder);
        assert_eq!(detect(Path::new("x/fog.npy"), Split::Test).unwrap(), Format::Npy);
        assert_eq!(detect(Path::new("x/data.NPZ"), Split::Test).unwrap(), Format::Npz);
        assert_eq!(detect(Path::new("x/test_batch.bin"), Split::Test).unwrap(), Format::Cifar10);
        let e = detect(&d.join("c10c"), Split::Test).unwrap_err().to_string();
        assert!(e.contains("gaussian_noise.npy"), "{e}");
        let e = detect(&d.join("empty"), Split::Test).unwrap_err().to_string();
        assert!(e.contains("looked for IDX files") && e.contains("class sub-folders"), "{e}");
        let e = detect(&d.join("flat"), Split::Test).unwrap_err().to_string();
        assert!(e.contains("no class sub-folders, so the labels are unknown"), "{e}");
        assert!(detect(Path::new("x/data.csv"), Split::Test).unwrap_err().to_string().contains(".npz, .npy"));
    }

    #[test]
    fn open_reads_and_refuses_options_that_do_not_apply() {
        let dir = tempfile::tempdir().unwrap();
        write_npy(&dir.path().join("images.npy"), &[5, 1, 1], &[1u8, 2, 3, 4, 5]).unwrap();
        write_npy(&dir.path().join("labels.npy"), &[1], &[7i64]).unwrap();
        let mut source = DataSource::new(dir.path());
        assert_eq!(open(&source).unwrap().len(), 5);
        source.corruption_severity = Some(2);
        assert_eq!(open(&source).unwrap().pixels(), crate::data::PixelData::U8(&[2]));
        source.format = Some(Format::Folder);
        assert!(open(&source).unwrap_err().to_string().contains("severity applies only"));
        source.corruption_severity = None;
        source.layout = Some(Layout::Nhwc);
        assert!(open(&source).unwrap_err().to_string().contains("data layout applies only"));
        let missing = DataSource::new(dir.path().join("nope"));
        assert!(open(&missing).unwrap_err().to_string().contains("does not exist"));
        let idx_file = DataSource { format: Some(Format::Idx), ..DataSource::new(dir.path().join("images.npy")) };
        assert!(open(&idx_file).unwrap_err().to_string().contains("give the folder"));
    }
}
