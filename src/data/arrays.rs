//! NumPy arrays as datasets: a pair of `.npy` files, a CIFAR-10-C corruption file, or an `.npz`.
//!
//! Image arrays are (N, H, W), (N, H, W, C) or (N, C, H, W) with C in {1, 3}; the layout is
//! read from where the 1 or 3 sits, and an explicit [`Layout`] settles shapes such as
//! (N, 3, 32, 3) where both ends could be channels. Labels are (N,) or (N, 1) integers.

use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::dataset::{check_labels, Dataset};
use super::npy::{shape_string, NpyArray, Values};
use super::source::Split;
use super::{DataError, Layout};

/// Severities stacked in a CIFAR-10-C corruption file.
pub const SEVERITIES: usize = 5;

/// The file holding the labels beside `.npy` image files.
pub const LABELS_FILE: &str = "labels.npy";
/// The file holding the images in a folder of `.npy` files that is not CIFAR-10-C.
pub const IMAGES_FILE: &str = "images.npy";

/// Reads `images.npy` and `labels.npy` from `dir`.
pub fn read_npy_dir(dir: &Path, severity: Option<u8>, layout: Option<Layout>) -> Result<Dataset, DataError> {
    let images = dir.join(IMAGES_FILE);
    if !images.is_file() {
        return Err(DataError::NotFound {
            path: dir.to_path_buf(),
            reason: format!(
                "expected `{IMAGES_FILE}` and `{LABELS_FILE}`; for a CIFAR-10-C folder give one corruption file, e.g. `{}`",
                dir.join("gaussian_noise.npy").display()
            ),
        });
    }
    read_npy_file(&images, severity, layout)
}

/// Reads an image `.npy` file with the `labels.npy` beside it. A CIFAR-10-C corruption file
/// holds its 5 severities stacked (5n images, severity s = rows (s-1)n .. sn); `labels.npy`
/// then holds 5n or n labels. Without a severity, all rows are read.
pub fn read_npy_file(file: &Path, severity: Option<u8>, layout: Option<Layout>) -> Result<Dataset, DataError> {
    let labels_path = file.with_file_name(LABELS_FILE);
    if file.file_name().is_some_and(|n| n == LABELS_FILE) {
        return Err(DataError::format(
            file,
            "this is the labels file; give the images file (e.g. `images.npy` or a corruption file) instead",
        ));
    }
    if !labels_path.is_file() {
        return Err(DataError::NotFound {
            path: file.to_path_buf(),
            reason: format!("the labels file `{}` is missing beside it", labels_path.display()),
        });
    }
    let images = NpyArray::read(file)?;
    let labels = labels_of(&NpyArray::read(&labels_path)?, &labels_path)?;
    let (n, dims, stored) = image_dims(&images.shape, layout, file)?;
    let (rows, labels) = severity_rows(n, labels, severity, file, &labels_path)?;
    check_labels(&labels, None, &labels_path)?;
    let values = images.into_values().map_err(|reason| DataError::format(file, reason))?;
    build(file, dims, stored, values, rows, labels)
}

/// Reads an `.npz` archive (stored or deflated): the first pair present of `x_test`/`y_test`
/// (or `x_train`/`y_train` for the train split), `x`/`y`, `images`/`labels`.
pub fn read_npz(file: &Path, split: Split, layout: Option<Layout>) -> Result<Dataset, DataError> {
    let bad_zip = |e: zip::result::ZipError| DataError::format(file, format!("not a valid .npz (zip) archive: {e}"));
    let reader = std::fs::File::open(file).map_err(|e| DataError::read(file, e))?;
    let mut archive = zip::ZipArchive::new(reader).map_err(bad_zip)?;
    let names: Vec<String> = archive.file_names().map(|n| n.map(|n| n.into_owned())).collect::<Result<_, _>>().map_err(bad_zip)?;
    let keys: Vec<&str> = names.iter().map(|n| n.strip_suffix(".npy").unwrap_or(n)).collect();
    let split_pair = match split {
        Split::Test => ("x_test", "y_test"),
        Split::Train => ("x_train", "y_train"),
    };
    let pairs = [split_pair, ("x", "y"), ("images", "labels")];
    let Some((x, y)) = pairs.into_iter().find(|(x, y)| keys.contains(x) && keys.contains(y)) else {
        return Err(DataError::format(
            file,
            format!(
                "arrays found: [{}]; expected {}/{} (split {split}), x/y or images/labels",
                keys.join(", "),
                split_pair.0,
                split_pair.1
            ),
        ));
    };
    let mut member = |key: &str| -> Result<NpyArray, DataError> {
        let name = format!("{key}.npy");
        let mut entry = archive.by_name(&name).map_err(bad_zip)?;
        let mut bytes = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0).min(1 << 32));
        entry.read_to_end(&mut bytes).map_err(|e| DataError::format(file, format!("cannot decompress `{name}`: {e}")))?;
        NpyArray::parse(bytes).map_err(|reason| DataError::format(file, format!("`{name}`: {reason}")))
    };
    let images = member(x)?;
    let labels = member(y)?;
    let labels = labels_of(&labels, file)?;
    let (n, dims, stored) = image_dims(&images.shape, layout, file)?;
    if labels.len() != n {
        return Err(DataError::format(file, format!("`{y}` holds {} labels for {n} images in `{x}`", labels.len())));
    }
    check_labels(&labels, None, file)?;
    let values = images.into_values().map_err(|reason| DataError::format(file, format!("`{x}`: {reason}")))?;
    build(file, dims, stored, values, 0..n, labels)
}

/// The labels of a (N,) or (N, 1) integer array.
fn labels_of(array: &NpyArray, path: &Path) -> Result<Vec<i64>, DataError> {
    match array.shape.as_slice() {
        [_] | [_, 1] => array.to_labels().map_err(|reason| DataError::format(path, reason)),
        [_, k] => Err(DataError::format(
            path,
            format!("labels of shape {} look one-hot ({k} columns); save class indices instead: `y.argmax(1)`", shape_string(&array.shape)),
        )),
        _ => Err(DataError::format(path, format!("labels must have shape (N,), not {}", shape_string(&array.shape)))),
    }
}

/// (N, [H, W, C], layout as stored) of an image array.
fn image_dims(shape: &[usize], layout: Option<Layout>, path: &Path) -> Result<(usize, [usize; 3], Layout), DataError> {
    let is_channels = |c: usize| c == 1 || c == 3;
    let shape_text = shape_string(shape);
    let layout =
        match (shape, layout) {
            (&[n, h, w], _) => return Ok((n, [h, w, 1], Layout::Nhwc)),
            (&[_, a, _, b], None) => match (is_channels(a), is_channels(b)) {
                (true, false) => Layout::Nchw,
                (false, true) => Layout::Nhwc,
                (true, true) => {
                    return Err(DataError::format(
                        path,
                        format!("images of shape {shape_text} could be NCHW or NHWC; say which with --data-layout nchw|nhwc"),
                    ))
                }
                (false, false) => return Err(DataError::format(
                    path,
                    format!(
                        "images of shape {shape_text} have neither 1 nor 3 channels at axis 1 or 3; only grey or RGB images are supported"
                    ),
                )),
            },
            ([_, _, _, _], Some(layout)) => layout,
            _ => {
                return Err(DataError::format(
                    path,
                    format!("images must have shape (N, H, W), (N, H, W, C) or (N, C, H, W), not {shape_text}"),
                ))
            }
        };
    let (n, h, w, c) = match layout {
        Layout::Nchw => (shape[0], shape[2], shape[3], shape[1]),
        Layout::Nhwc => (shape[0], shape[1], shape[2], shape[3]),
    };
    if !is_channels(c) {
        return Err(DataError::format(
            path,
            format!("images of shape {shape_text} read as {layout} have {c} channels; only 1 or 3 are supported"),
        ));
    }
    Ok((n, [h, w, c], layout))
}

/// The image rows to read and their labels, for an optional CIFAR-10-C severity.
fn severity_rows(
    images: usize,
    labels: Vec<i64>,
    severity: Option<u8>,
    file: &Path,
    labels_path: &Path,
) -> Result<(Range<usize>, Vec<i64>), DataError> {
    let mismatch = |expected: String| {
        DataError::format(labels_path, format!("{} labels for {images} images in `{}` (expected {expected})", labels.len(), file.display()))
    };
    let Some(s) = severity else {
        if labels.len() == images {
            return Ok((0..images, labels));
        }
        if labels.len() * SEVERITIES == images && images > 0 {
            // CIFAR-10-C with one label per clean image: the same labels for every severity.
            let tiled = labels.iter().copied().cycle().take(images).collect();
            return Ok((0..images, tiled));
        }
        return Err(mismatch(if images.is_multiple_of(SEVERITIES) {
            format!("{images}, or {} for a file of 5 stacked severities", images / SEVERITIES)
        } else {
            images.to_string()
        }));
    };
    if !(1..=SEVERITIES as u8).contains(&s) {
        return Err(DataError::format(file, format!("severity {s} does not exist: CIFAR-10-C files hold severities 1 to 5")));
    }
    if !images.is_multiple_of(SEVERITIES) || images == 0 {
        return Err(DataError::format(
            file,
            format!("{images} images cannot be 5 stacked severities of equal size; drop --severity for a plain image file"),
        ));
    }
    let n = images / SEVERITIES;
    let rows = (usize::from(s) - 1) * n..usize::from(s) * n;
    match labels.len() {
        l if l == images => Ok((rows.clone(), labels[rows].to_vec())),
        l if l == n => Ok((rows, labels)),
        _ => Err(mismatch(format!("{images} or {n}"))),
    }
}

/// A dataset of rows `rows` of `values`, stored in `stored` layout, transposed to HWC.
fn build(
    file: &Path,
    [h, w, c]: [usize; 3],
    stored: Layout,
    values: Values,
    rows: Range<usize>,
    labels: Vec<i64>,
) -> Result<Dataset, DataError> {
    let per = h * w * c;
    let span = rows.start * per..rows.end * per;
    let source: PathBuf = file.to_path_buf();
    match values {
        Values::U8(bytes) => {
            let bytes = if span == (0..bytes.len()) { bytes } else { bytes[span].to_vec() };
            Dataset::from_u8(&source, [h, w, c], to_hwc(bytes, stored, [h, w, c]), labels)
        }
        Values::F32(floats) => {
            let floats = if span == (0..floats.len()) { floats } else { floats[span].to_vec() };
            if let Some((i, v)) = floats.iter().enumerate().find(|(_, v)| !(-0.01..=1.01).contains(*v)) {
                return Err(DataError::format(
                    file,
                    format!(
                        "float32 images must hold values in [0, 1], found {v} (value {i}); divide by 255 if they are 0..255, \
                         save unnormalised images (mean/std go in the spec's input section), or save uint8"
                    ),
                ));
            }
            Dataset::from_f32(&source, [h, w, c], to_hwc(floats, stored, [h, w, c]), labels)
        }
    }
}

/// Transposes CHW images to HWC (NHWC data is returned as is).
fn to_hwc<T: Copy>(values: Vec<T>, stored: Layout, [h, w, c]: [usize; 3]) -> Vec<T> {
    if stored == Layout::Nhwc || c == 1 {
        return values;
    }
    let per = h * w * c;
    let mut out = Vec::with_capacity(values.len());
    for image in values.chunks_exact(per) {
        for p in 0..h * w {
            out.extend((0..c).map(|ch| image[ch * h * w + p]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::data::npy::{npy_bytes, write_npy};
    use crate::data::PixelData;

    /// Four 2x2 RGB images whose value encodes (image, y, x, channel), NHWC.
    fn nhwc() -> Vec<u8> {
        (0..4u8)
            .flat_map(|i| (0..2u8).flat_map(move |y| (0..2u8).flat_map(move |x| (0..3u8).map(move |c| i * 64 + y * 16 + x * 4 + c))))
            .collect()
    }

    fn nchw() -> Vec<u8> {
        let v = nhwc();
        let mut out = Vec::new();
        for i in 0..4 {
            for c in 0..3 {
                for p in 0..4 {
                    out.push(v[i * 12 + p * 3 + c]);
                }
            }
        }
        out
    }

    fn pair(dir: &Path, name: &str, shape: &[usize], images: &[u8], labels: &[i64]) -> PathBuf {
        let file = dir.join(name);
        write_npy(&file, shape, images).unwrap();
        write_npy(&dir.join(LABELS_FILE), &[labels.len()], labels).unwrap();
        file
    }

    #[test]
    fn nhwc_and_nchw_arrays_give_the_same_dataset() {
        let dir = tempfile::tempdir().unwrap();
        let a = pair(dir.path(), "images.npy", &[4, 2, 2, 3], &nhwc(), &[0, 1, 2, 3]);
        let from_nhwc = read_npy_file(&a, None, None).unwrap();
        assert_eq!(from_nhwc.pixels(), PixelData::U8(&nhwc()));
        let b = pair(dir.path(), "chw.npy", &[4, 3, 2, 2], &nchw(), &[0, 1, 2, 3]);
        let from_nchw = read_npy_file(&b, None, None).unwrap();
        assert_eq!(from_nchw.pixels(), from_nhwc.pixels());
        assert_eq!((from_nchw.height, from_nchw.width, from_nchw.channels), (2, 2, 3));
        assert_eq!(read_npy_dir(dir.path(), None, None).unwrap().pixels(), from_nhwc.pixels());
    }

    #[test]
    fn ambiguous_shapes_need_a_layout() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..2 * 3 * 3 * 3).map(|v| v as u8).collect();
        let f = pair(dir.path(), "images.npy", &[2, 3, 3, 3], &data, &[0, 1]);
        let e = read_npy_file(&f, None, None).unwrap_err().to_string();
        assert!(e.contains("(2, 3, 3, 3) could be NCHW or NHWC") && e.contains("--data-layout"), "{e}");
        let as_nhwc = read_npy_file(&f, None, Some(Layout::Nhwc)).unwrap();
        assert_eq!(as_nhwc.pixels(), PixelData::U8(&data));
        let as_nchw = read_npy_file(&f, None, Some(Layout::Nchw)).unwrap();
        assert_eq!(as_nchw.image(0).to_u8()[..3], [0, 9, 18]);
        let f = pair(dir.path(), "images.npy", &[1, 5, 4, 2], &[0; 40], &[0]);
        assert!(read_npy_file(&f, None, None).unwrap_err().to_string().contains("neither 1 nor 3 channels"));
        let f = pair(dir.path(), "images.npy", &[1, 3, 4, 2], &[0; 24], &[0]);
        assert!(read_npy_file(&f, None, Some(Layout::Nhwc)).unwrap_err().to_string().contains("read as NHWC have 2 channels"));
        let f = pair(dir.path(), "images.npy", &[4], &[0; 4], &[0; 4]);
        assert!(read_npy_file(&f, None, None).unwrap_err().to_string().contains("(N, H, W)"));
    }

    #[test]
    fn grey_float_images_are_kept_and_out_of_range_floats_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("images.npy");
        write_npy(&file, &[2, 1, 2], &[0.0f32, 0.25, 0.5, 1.0]).unwrap();
        write_npy(&dir.path().join(LABELS_FILE), &[2, 1], &[1i64, 0]).unwrap();
        let d = read_npy_file(&file, None, None).unwrap();
        assert_eq!((d.channels, d.labels.clone()), (1, vec![1, 0]));
        assert_eq!(d.image(1).pixels, vec![0.5, 1.0]);
        write_npy(&file, &[2, 1, 2], &[0.0f32, 0.25, 0.5, 255.0]).unwrap();
        let e = read_npy_file(&file, None, None).unwrap_err().to_string();
        assert!(e.contains("found 255") && e.contains("divide by 255"), "{e}");
        write_npy(&file, &[2, 1, 2], &[0.0f32, f32::NAN, 0.5, 1.0]).unwrap();
        assert!(read_npy_file(&file, None, None).unwrap_err().to_string().contains("found NaN"));
    }

    #[test]
    fn labels_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let f = pair(dir.path(), "images.npy", &[4, 2, 2, 3], &nhwc(), &[0, 1, 2]);
        let e = read_npy_file(&f, None, None).unwrap_err().to_string();
        assert!(e.contains("labels.npy") && e.contains("3 labels for 4 images"), "{e}");
        let f = pair(dir.path(), "images.npy", &[4, 2, 2, 3], &nhwc(), &[0, 1, -2, 3]);
        assert!(read_npy_file(&f, None, None).unwrap_err().to_string().contains("label -2 is negative at example 2"));
        write_npy(&dir.path().join(LABELS_FILE), &[4, 10], &[0i64; 40]).unwrap();
        assert!(read_npy_file(&f, None, None).unwrap_err().to_string().contains("one-hot"));
        write_npy(&dir.path().join(LABELS_FILE), &[4], &[0.0f32; 4]).unwrap();
        assert!(read_npy_file(&f, None, None).unwrap_err().to_string().contains("labels of dtype float32"));
        std::fs::remove_file(dir.path().join(LABELS_FILE)).unwrap();
        assert!(read_npy_file(&f, None, None).unwrap_err().to_string().contains("labels.npy` is missing"));
        write_npy(&dir.path().join(LABELS_FILE), &[4], &[0i64; 4]).unwrap();
        assert!(read_npy_file(&dir.path().join(LABELS_FILE), None, None).unwrap_err().to_string().contains("this is the labels file"));
        write_npy(&f, &[4, 2, 2, 3], &vec![0i64; 48]).unwrap();
        assert!(read_npy_file(&f, None, None).unwrap_err().to_string().contains("images of dtype int64"));
    }

    #[test]
    fn cifar10c_severities_select_their_block_of_rows() {
        let dir = tempfile::tempdir().unwrap();
        // 5 severities x 2 images of 1x1 grey; pixel = 10 * severity + image.
        let pixels: Vec<u8> = (1..=5u8).flat_map(|s| [10 * s, 10 * s + 1]).collect();
        let f = pair(dir.path(), "fog.npy", &[10, 1, 1], &pixels, &[3, 4]);
        let s3 = read_npy_file(&f, Some(3), None).unwrap();
        assert_eq!((s3.pixels(), s3.labels.clone()), (PixelData::U8(&[30, 31]), vec![3, 4]));
        let all = read_npy_file(&f, None, None).unwrap();
        assert_eq!((all.len(), all.labels[8..].to_vec()), (10, vec![3, 4]));
        let labels5: Vec<i64> = (0..10).collect();
        write_npy(&dir.path().join(LABELS_FILE), &[10], &labels5).unwrap();
        assert_eq!(read_npy_file(&f, Some(5), None).unwrap().labels, vec![8, 9]);
        let e = read_npy_file(&f, Some(6), None).unwrap_err().to_string();
        assert!(e.contains("severity 6 does not exist"), "{e}");
        write_npy(&dir.path().join(LABELS_FILE), &[3], &[0i64; 3]).unwrap();
        assert!(read_npy_file(&f, Some(1), None).unwrap_err().to_string().contains("expected 10 or 2"));
        write_npy(&f, &[4, 1, 1], &[0u8; 4]).unwrap();
        assert!(read_npy_file(&f, Some(1), None).unwrap_err().to_string().contains("5 stacked severities"));
    }

    fn npz(path: &Path, method: zip::CompressionMethod, members: &[(&str, Vec<u8>)]) {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        let options = zip::write::SimpleFileOptions::default().compression_method(method);
        for (name, bytes) in members {
            zip.start_file(*name, options).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
    }

    #[test]
    fn npz_stored_and_deflated_with_split_keys() {
        let dir = tempfile::tempdir().unwrap();
        let x = npy_bytes(&[4, 2, 2, 3], &nhwc()).unwrap();
        let y = npy_bytes(&[4], &[9i64, 8, 7, 6]).unwrap();
        for method in [zip::CompressionMethod::Stored, zip::CompressionMethod::Deflated] {
            let file = dir.path().join(format!("{method:?}.npz"));
            npz(&file, method, &[("x.npy", x.clone()), ("y.npy", y.clone())]);
            let d = read_npz(&file, Split::Test, None).unwrap();
            assert_eq!((d.pixels(), d.labels.clone()), (PixelData::U8(&nhwc()), vec![9, 8, 7, 6]), "{method:?}");
        }
        let file = dir.path().join("split.npz");
        let y_train = npy_bytes(&[4], &[1u8, 1, 1, 1]).unwrap();
        npz(
            &file,
            zip::CompressionMethod::Deflated,
            &[("x_train.npy", x.clone()), ("y_train.npy", y_train), ("x_test.npy", x.clone()), ("y_test.npy", y.clone())],
        );
        assert_eq!(read_npz(&file, Split::Train, None).unwrap().labels, vec![1; 4]);
        assert_eq!(read_npz(&file, Split::Test, None).unwrap().labels, vec![9, 8, 7, 6]);
        npz(&file, zip::CompressionMethod::Stored, &[("x_train.npy", x.clone()), ("y_train.npy", y.clone())]);
        let e = read_npz(&file, Split::Test, None).unwrap_err().to_string();
        assert!(e.contains("arrays found: [x_train, y_train]; expected x_test/y_test (split test), x/y or images/labels"), "{e}");
        npz(&file, zip::CompressionMethod::Stored, &[("images.npy", x.clone()), ("labels.npy", npy_bytes(&[3], &[0i64, 1, 2]).unwrap())]);
        assert!(read_npz(&file, Split::Test, None).unwrap_err().to_string().contains("`labels` holds 3 labels for 4 images in `images`"));
        npz(&file, zip::CompressionMethod::Stored, &[("x.npy", x[..x.len() - 5].to_vec()), ("y.npy", y)]);
        assert!(read_npz(&file, Split::Test, None).unwrap_err().to_string().contains("`x.npy`: the header promises"));
        std::fs::write(&file, b"not a zip at all").unwrap();
        assert!(read_npz(&file, Split::Test, None).unwrap_err().to_string().contains("not a valid .npz"));
    }
}
