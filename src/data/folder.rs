//! Image folders: one sub-folder per class (class index = rank of the sub-folder's name in
//! sorted order), PNG or JPEG files inside, all of one size.
//!
//! Grey files stay 1 channel and colour files 3; when a folder mixes them, the grey ones are
//! replicated to RGB so that the dataset has one channel count. An alpha channel is dropped and
//! the colour values kept as they are (classifiers take no transparency). Files are read in
//! sorted order so that a dataset is the same on every machine.

use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageReader};

use super::dataset::Dataset;
use super::source::Split;
use super::DataError;

const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// The folder holding the class sub-folders: `dir/test` or `dir/train` when that exists, else `dir`.
pub fn class_root(dir: &Path, split: Split) -> PathBuf {
    let nested = dir.join(split.to_string());
    if nested.is_dir() {
        nested
    } else {
        dir.to_path_buf()
    }
}

/// Whether some sub-folder of the class root holds an image file (used by format detection).
pub fn looks_like_folder(dir: &Path, split: Split) -> bool {
    let root = class_root(dir, split);
    sorted_entries(&root)
        .map(|entries| entries.iter().filter(|p| p.is_dir()).any(|d| sorted_entries(d).is_ok_and(|f| f.iter().any(|p| is_image(p)))))
        .unwrap_or(false)
}

/// Whether `dir` itself holds image files (a flat folder, which lacks the labels).
pub fn has_loose_images(dir: &Path) -> bool {
    sorted_entries(dir).is_ok_and(|entries| entries.iter().any(|p| is_image(p)))
}

/// Reads a class-per-sub-folder image dataset.
pub fn read_folder(dir: &Path, split: Split) -> Result<Dataset, DataError> {
    let root = class_root(dir, split);
    let classes: Vec<PathBuf> = sorted_entries(&root)?.into_iter().filter(|p| p.is_dir()).collect();
    if classes.is_empty() {
        return Err(DataError::NotFound {
            reason: if has_loose_images(&root) {
                "it holds image files but no class sub-folders; put the images of each class in a sub-folder named after it".into()
            } else {
                "no class sub-folders with PNG/JPEG images".into()
            },
            path: root,
        });
    }
    let mut decoded: Vec<(PathBuf, DynamicImage)> = Vec::new();
    let mut labels = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        for file in sorted_entries(class)?.into_iter().filter(|p| is_image(p)) {
            decoded.push((file.clone(), decode(&file)?));
            labels.push(label as i64);
        }
    }
    let Some((first_path, first)) = decoded.first() else {
        return Err(DataError::NotFound { path: root, reason: "the class sub-folders hold no PNG/JPEG images".into() });
    };
    let (width, height) = (first.width(), first.height());
    if let Some((path, img)) = decoded.iter().find(|(_, img)| (img.width(), img.height()) != (width, height)) {
        return Err(DataError::format(
            &root,
            format!(
                "`{}` is {}x{} but `{}` is {height}x{width} (H x W); all images must have one size: resize them first",
                path.display(),
                img.height(),
                img.width(),
                first_path.display()
            ),
        ));
    }
    let rgb = decoded.iter().any(|(_, img)| img.color().has_color());
    let channels = if rgb { 3 } else { 1 };
    let mut pixels = Vec::with_capacity(decoded.len() * (width * height) as usize * channels);
    for (_, img) in &decoded {
        if rgb {
            pixels.extend_from_slice(img.to_rgb8().as_raw());
        } else {
            pixels.extend_from_slice(img.to_luma8().as_raw());
        }
    }
    let names = classes.iter().map(|c| c.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()).collect();
    Ok(Dataset::from_u8(&root, [height as usize, width as usize, channels], pixels, labels)?.with_class_names(Some(names)))
}

fn decode(file: &Path) -> Result<DynamicImage, DataError> {
    let reader = ImageReader::open(file).map_err(|e| DataError::read(file, e))?;
    let reader = reader.with_guessed_format().map_err(|e| DataError::read(file, e))?;
    reader.decode().map_err(|e| DataError::format(file, format!("cannot decode the image: {e}")))
}

fn is_image(path: &Path) -> bool {
    path.is_file() && path.extension().is_some_and(|e| EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// The entries of `dir` without hidden ones (`.DS_Store`, `.ipynb_checkpoints`), sorted by name.
fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let read = std::fs::read_dir(dir).map_err(|e| DataError::read(dir, e))?;
    let mut paths = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| DataError::read(dir, e))?;
        if !entry.file_name().to_string_lossy().starts_with('.') {
            paths.push(entry.path());
        }
    }
    paths.sort();
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use image::{GrayImage, Luma, Rgb, RgbImage, Rgba, RgbaImage};

    use super::*;
    use crate::data::PixelData;

    fn grey(dir: &Path, rel: &str, w: u32, h: u32, v: u8) {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        GrayImage::from_pixel(w, h, Luma([v])).save(path).unwrap();
    }

    #[test]
    fn classes_are_sorted_sub_folders_and_files_sorted() {
        let dir = tempfile::tempdir().unwrap();
        grey(dir.path(), "b_cat/2.png", 3, 2, 20);
        grey(dir.path(), "b_cat/1.png", 3, 2, 10);
        grey(dir.path(), "a_dog/x.PNG", 3, 2, 30);
        std::fs::write(dir.path().join("b_cat/notes.txt"), "ignored").unwrap();
        std::fs::create_dir(dir.path().join("c_empty")).unwrap();
        let d = read_folder(dir.path(), Split::Test).unwrap();
        assert_eq!(d.labels, vec![0, 1, 1]);
        assert_eq!(d.class_names, Some(vec!["a_dog".into(), "b_cat".into(), "c_empty".into()]));
        assert_eq!((d.height, d.width, d.channels), (2, 3, 1));
        assert_eq!(d.image(1).to_u8(), vec![10; 6]);
        assert!(looks_like_folder(dir.path(), Split::Test));
    }

    #[test]
    fn mixed_grey_and_rgb_become_rgb_and_alpha_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        grey(dir.path(), "0/a.png", 1, 1, 7);
        RgbImage::from_pixel(1, 1, Rgb([1, 2, 3])).save(dir.path().join("0/b.png")).unwrap();
        RgbaImage::from_pixel(1, 1, Rgba([4, 5, 6, 128])).save(dir.path().join("0/c.png")).unwrap();
        let d = read_folder(dir.path(), Split::Test).unwrap();
        assert_eq!(d.pixels(), PixelData::U8(&[7, 7, 7, 1, 2, 3, 4, 5, 6]));
    }

    #[test]
    fn split_sub_folder_is_used_when_present() {
        let dir = tempfile::tempdir().unwrap();
        grey(dir.path(), "train/a/1.png", 1, 1, 1);
        grey(dir.path(), "test/a/1.png", 1, 1, 2);
        grey(dir.path(), "test/b/1.png", 1, 1, 3);
        assert_eq!(read_folder(dir.path(), Split::Test).unwrap().labels, vec![0, 1]);
        assert_eq!(read_folder(dir.path(), Split::Train).unwrap().labels, vec![0]);
    }

    #[test]
    fn mixed_sizes_loose_files_and_broken_images_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        grey(dir.path(), "a/1.png", 4, 4, 0);
        grey(dir.path(), "b/2.png", 4, 5, 0);
        let e = read_folder(dir.path(), Split::Test).unwrap_err().to_string();
        assert!(e.contains("2.png` is 5x4 but `") && e.contains("1.png` is 4x4"), "{e}");

        let flat = tempfile::tempdir().unwrap();
        grey(flat.path(), "1.png", 4, 4, 0);
        let e = read_folder(flat.path(), Split::Test).unwrap_err().to_string();
        assert!(e.contains("no class sub-folders"), "{e}");
        assert!(!looks_like_folder(flat.path(), Split::Test));

        let broken = tempfile::tempdir().unwrap();
        std::fs::create_dir(broken.path().join("a")).unwrap();
        std::fs::write(broken.path().join("a/1.png"), b"\x89PNG\r\n\x1a\n truncated").unwrap();
        let e = read_folder(broken.path(), Split::Test).unwrap_err().to_string();
        assert!(e.contains("1.png") && e.contains("cannot decode"), "{e}");
    }
}
