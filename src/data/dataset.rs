//! Labelled images of one size, as every reader returns them.
//!
//! Pixels stay as the file stores them (bytes, or floats in [0, 1]) and are converted one image
//! at a time: CIFAR-10's training split is 150 MB as bytes and would be 600 MB as floats.

use std::ops::Range;
use std::path::{Path, PathBuf};

use super::image::Image;
use super::DataError;

/// Pixel values of all images, HWC per image, images one after the other.
#[derive(Debug, Clone, PartialEq)]
enum Pixels {
    /// Bytes 0..=255 (value / 255 gives [0, 1]).
    U8(Vec<u8>),
    /// Values in [0, 1].
    F32(Vec<f32>),
}

/// A borrowed view of the stored pixels, for writers and comparisons.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PixelData<'a> {
    U8(&'a [u8]),
    F32(&'a [f32]),
}

/// Labelled images of one size: `labels.len()` images of `height × width × channels` (HWC).
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// The file or folder the images came from (for messages and reports).
    pub source: PathBuf,
    pub height: usize,
    pub width: usize,
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
    /// Class index of each image.
    pub labels: Vec<i64>,
    /// Names of the classes by index, when the format records them.
    pub class_names: Option<Vec<String>>,
    pixels: Pixels,
}

impl Dataset {
    /// Images stored as bytes (HWC per image); fails when the byte count does not match.
    pub fn from_u8(source: &Path, [height, width, channels]: [usize; 3], bytes: Vec<u8>, labels: Vec<i64>) -> Result<Self, DataError> {
        check_size(source, [height, width, channels], bytes.len(), labels.len())?;
        Ok(Dataset { source: source.to_path_buf(), height, width, channels, labels, class_names: None, pixels: Pixels::U8(bytes) })
    }

    /// Images stored as values in [0, 1] (HWC per image); fails when the value count does not match.
    pub fn from_f32(source: &Path, [height, width, channels]: [usize; 3], values: Vec<f32>, labels: Vec<i64>) -> Result<Self, DataError> {
        check_size(source, [height, width, channels], values.len(), labels.len())?;
        Ok(Dataset { source: source.to_path_buf(), height, width, channels, labels, class_names: None, pixels: Pixels::F32(values) })
    }

    /// A dataset of images made in memory (corrupted copies, tests); all must have one size.
    pub fn from_images(source: &Path, images: &[Image], labels: Vec<i64>) -> Result<Self, DataError> {
        let Some(first) = images.first() else {
            return Dataset::from_f32(source, [0, 0, 1], Vec::new(), labels);
        };
        let dims = [first.height, first.width, first.channels];
        let mut values = Vec::with_capacity(images.len() * first.pixels.len());
        for (i, image) in images.iter().enumerate() {
            if [image.height, image.width, image.channels] != dims || image.pixels.len() != dims.iter().product::<usize>() {
                return Err(DataError::format(
                    source,
                    format!(
                        "image {i} is {} but image 0 is {}",
                        dims_string([image.height, image.width, image.channels]),
                        dims_string(dims)
                    ),
                ));
            }
            values.extend_from_slice(&image.pixels);
        }
        Dataset::from_f32(source, dims, values, labels)
    }

    /// The same images with class names attached.
    pub fn with_class_names(mut self, names: Option<Vec<String>>) -> Self {
        self.class_names = names;
        self
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per image (`height * width * channels`).
    pub fn image_len(&self) -> usize {
        self.height * self.width * self.channels
    }

    /// `28x28x1`-style description of the image size (H x W x C).
    pub fn dims_string(&self) -> String {
        dims_string([self.height, self.width, self.channels])
    }

    /// Image `i` as HWC values in [0, 1]. Panics when `i >= len()`, like slice indexing.
    pub fn image(&self, i: usize) -> Image {
        let per = self.image_len();
        let range = i * per..(i + 1) * per;
        let pixels = match &self.pixels {
            Pixels::U8(bytes) => bytes[range].iter().map(|&b| f32::from(b) / 255.0).collect(),
            Pixels::F32(values) => values[range].to_vec(),
        };
        Image::new(self.height, self.width, self.channels, pixels)
    }

    /// Images `range` (clamped to the dataset).
    pub fn images(&self, range: Range<usize>) -> Vec<Image> {
        let end = range.end.min(self.len());
        (range.start.min(end)..end).map(|i| self.image(i)).collect()
    }

    /// All images in order, converted one at a time.
    pub fn iter(&self) -> impl Iterator<Item = Image> + '_ {
        (0..self.len()).map(|i| self.image(i))
    }

    /// The stored pixels, as the file held them.
    pub fn pixels(&self) -> PixelData<'_> {
        match &self.pixels {
            Pixels::U8(bytes) => PixelData::U8(bytes),
            Pixels::F32(values) => PixelData::F32(values),
        }
    }

    /// The examples at `indices`, in that order; fails on an index out of range.
    pub fn select(&self, indices: &[usize]) -> Result<Dataset, DataError> {
        let per = self.image_len();
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(DataError::format(&self.source, format!("example {bad} selected from a dataset of {} examples", self.len())));
        }
        let labels = indices.iter().map(|&i| self.labels[i]).collect();
        let pixels = match &self.pixels {
            Pixels::U8(bytes) => Pixels::U8(indices.iter().flat_map(|&i| &bytes[i * per..(i + 1) * per]).copied().collect()),
            Pixels::F32(values) => Pixels::F32(indices.iter().flat_map(|&i| &values[i * per..(i + 1) * per]).copied().collect()),
        };
        Ok(Dataset { labels, pixels, class_names: self.class_names.clone(), source: self.source.clone(), ..*self })
    }

    /// Keeps the first `limit` examples.
    pub fn truncate(&mut self, limit: usize) {
        let n = limit.min(self.len());
        let per = self.image_len();
        self.labels.truncate(n);
        match &mut self.pixels {
            Pixels::U8(bytes) => bytes.truncate(n * per),
            Pixels::F32(values) => values.truncate(n * per),
        }
    }

    /// Checks every label against `0..classes` (or `>= 0` when the class count is unknown),
    /// naming the example and `file` in the error.
    pub fn check_labels(&self, classes: Option<usize>, file: &Path) -> Result<(), DataError> {
        check_labels(&self.labels, classes, file)
    }
}

/// Shared by the readers that check labels before building a dataset.
pub(crate) fn check_labels(labels: &[i64], classes: Option<usize>, file: &Path) -> Result<(), DataError> {
    let limit = classes.map(|c| c as i64);
    match labels.iter().enumerate().find(|&(_, &l)| l < 0 || limit.is_some_and(|c| l >= c)) {
        None => Ok(()),
        Some((i, &l)) => Err(DataError::format(
            file,
            match classes {
                Some(c) => format!("label {l} out of range 0..{c} at example {i}"),
                None => format!("label {l} is negative at example {i}; labels must be class indices 0, 1, ..."),
            },
        )),
    }
}

pub(crate) fn dims_string([h, w, c]: [usize; 3]) -> String {
    format!("{h}x{w}x{c}")
}

fn check_size(source: &Path, dims: [usize; 3], values: usize, labels: usize) -> Result<(), DataError> {
    let [h, w, c] = dims;
    if c != 1 && c != 3 && !(values == 0 && labels == 0) {
        return Err(DataError::format(source, format!("images have {c} channels; only 1 (grey) or 3 (RGB) are supported")));
    }
    let expected = h.checked_mul(w).and_then(|p| p.checked_mul(c)).and_then(|p| p.checked_mul(labels));
    if expected != Some(values) {
        return Err(DataError::format(source, format!("{values} pixel values do not make {labels} images of {}", dims_string(dims))));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Dataset {
        // Three 1x2 grey images.
        Dataset::from_u8(Path::new("tiny"), [1, 2, 1], vec![0, 255, 51, 102, 10, 20], vec![0, 1, 2]).unwrap()
    }

    #[test]
    fn images_are_converted_to_unit_range_hwc() {
        let d = tiny();
        assert_eq!(d.len(), 3);
        assert_eq!(d.image(1), Image::new(1, 2, 1, vec![0.2, 0.4]));
        assert_eq!(d.images(1..10).len(), 2);
        assert_eq!(d.iter().count(), 3);
    }

    #[test]
    fn select_and_truncate_keep_labels_with_their_images() {
        let d = tiny();
        let s = d.select(&[2, 0]).unwrap();
        assert_eq!(s.labels, vec![2, 0]);
        assert_eq!(s.pixels(), PixelData::U8(&[10, 20, 0, 255]));
        assert!(d.select(&[3]).is_err());
        let mut t = d.clone();
        t.truncate(1);
        assert_eq!((t.len(), t.pixels()), (1, PixelData::U8(&[0, 255])));
    }

    #[test]
    fn from_images_round_trips_and_refuses_mixed_sizes() {
        let d = tiny();
        let images: Vec<Image> = d.iter().collect();
        let back = Dataset::from_images(Path::new("mem"), &images, d.labels.clone()).unwrap();
        assert_eq!(back.images(0..3), images);
        let mixed = vec![images[0].clone(), Image::new(2, 1, 1, vec![0.0, 1.0])];
        let e = Dataset::from_images(Path::new("mem"), &mixed, vec![0, 1]).unwrap_err().to_string();
        assert!(e.contains("image 1 is 2x1x1 but image 0 is 1x2x1"), "{e}");
    }

    #[test]
    fn sizes_and_labels_are_checked() {
        let e = Dataset::from_u8(Path::new("f"), [2, 2, 1], vec![0; 7], vec![0, 1]).unwrap_err().to_string();
        assert!(e.contains("7 pixel values do not make 2 images of 2x2x1"), "{e}");
        let e = Dataset::from_u8(Path::new("f"), [1, 1, 2], vec![0; 2], vec![0]).unwrap_err().to_string();
        assert!(e.contains("2 channels"), "{e}");
        let d = Dataset::from_u8(Path::new("f"), [1, 1, 1], vec![0; 3], vec![0, 9, 12]).unwrap();
        let e = d.check_labels(Some(10), Path::new("labels.bin")).unwrap_err().to_string();
        assert_eq!(e, "`labels.bin`: label 12 out of range 0..10 at example 2");
        assert!(d.check_labels(None, Path::new("x")).is_ok());
        assert!(check_labels(&[0, -1], None, Path::new("x")).unwrap_err().to_string().contains("negative at example 1"));
    }
}
