//! The dataset readers on real data: 20 CIFAR-10 test images (foolbox's PNGs) written into the
//! CIFAR-10 binary format, an image folder and NPZ archives; MNIST and Fashion-MNIST as
//! installed; files written by NumPy itself; and `eval` fed through each path.
//!
//! The data comes from scripts/setup.sh; a missing folder fails the test (never skips it).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use archrepair_onnx::data::npy::npy_bytes;
use archrepair_onnx::data::{open, write_npy, DataSource, Dataset, Format, Layout, PixelData, Split};

use crate::support;

const FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";
/// CIFAR-10's class names, which happen to be in alphabetical order.
const CIFAR_CLASSES: [&str; 10] = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// A data folder installed by scripts/setup.sh; panics with the fix when it is missing.
fn installed(path: &Path) -> PathBuf {
    assert!(path.is_dir(), "`{}` is missing: run scripts/setup.sh to install the test data", path.display());
    path.to_path_buf()
}

/// The foolbox CIFAR-10 images as (label from the file name `cifar10_<ii>_<label>.png`, HWC RGB bytes), in file order.
fn foolbox_images() -> Vec<(u8, Vec<u8>)> {
    let dir = installed(&support::repo_root().join(".data/cifar10-foolbox"));
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "png")).collect();
    files.sort();
    assert_eq!(files.len(), 20, "foolbox ships 20 CIFAR-10 images in {}", dir.display());
    files
        .iter()
        .map(|f| {
            let stem = f.file_stem().unwrap().to_string_lossy().into_owned();
            let label: u8 = stem.rsplit('_').next().unwrap().parse().unwrap();
            let img = image::open(f).unwrap().to_rgb8();
            assert_eq!(img.dimensions(), (32, 32), "{}", f.display());
            (label, img.into_raw())
        })
        .collect()
}

/// CIFAR-10 binary records, written here independently of the reader: label, R plane, G plane, B plane.
fn cifar_records(images: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (label, hwc) in images {
        out.push(*label);
        for c in 0..3 {
            out.extend(hwc.chunks_exact(3).map(|px| px[c]));
        }
    }
    out
}

fn cifar_dir(images: &[(u8, Vec<u8>)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("test_batch.bin"), cifar_records(images)).unwrap();
    std::fs::write(dir.path().join("batches.meta.txt"), CIFAR_CLASSES.join("\n") + "\n\n").unwrap();
    dir
}

fn npz(path: &Path, members: &[(&str, Vec<u8>)]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in members {
        zip.start_file(*name, options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

/// Equal images, labels and sizes (the source path differs by construction).
fn assert_same_content(a: &Dataset, b: &Dataset) {
    assert_eq!((a.height, a.width, a.channels), (b.height, b.width, b.channels));
    assert_eq!(a.labels, b.labels);
    assert_eq!(a.pixels(), b.pixels());
    assert_eq!(a.class_names, b.class_names);
}

#[test]
fn foolbox_cifar10_pngs_round_trip_through_the_binary_format() {
    let images = foolbox_images();
    let dir = cifar_dir(&images);
    let d = open(&DataSource::new(dir.path())).unwrap();
    assert_eq!((d.len(), d.height, d.width, d.channels), (20, 32, 32, 3));
    let expected: Vec<u8> = images.iter().flat_map(|(_, px)| px.iter().copied()).collect();
    assert_eq!(d.pixels(), PixelData::U8(&expected), "pixels equal the PNG pixels");
    assert_eq!(d.labels, images.iter().map(|(l, _)| i64::from(*l)).collect::<Vec<_>>(), "labels equal the file-name labels");
    assert_eq!(d.labels[..3], [3, 8, 8]);
    assert_eq!(d.class_names.as_deref().unwrap()[3], "cat");
    assert_eq!(d.image(0).to_u8(), images[0].1);
}

#[test]
fn the_same_images_as_folder_and_npz_give_identical_datasets() {
    let images = foolbox_images();
    let cifar = open(&DataSource::new(cifar_dir(&images).path())).unwrap();

    // Image folder: one sub-folder per class (empty ones too, so that indices match), files
    // named by their position so that the folder order is (class, position).
    let folder = tempfile::tempdir().unwrap();
    for name in CIFAR_CLASSES {
        std::fs::create_dir(folder.path().join(name)).unwrap();
    }
    for (i, (label, px)) in images.iter().enumerate() {
        let path = folder.path().join(CIFAR_CLASSES[*label as usize]).join(format!("{i:02}.png"));
        image::RgbImage::from_raw(32, 32, px.clone()).unwrap().save(path).unwrap();
    }
    let from_folder = open(&DataSource::new(folder.path())).unwrap();
    let mut order: Vec<usize> = (0..images.len()).collect();
    order.sort_by_key(|&i| (images[i].0, i));
    assert_same_content(&from_folder, &cifar.select(&order).unwrap());

    // NPZ, channels last and channels first: the layout is detected from the shape.
    let hwc: Vec<u8> = images.iter().flat_map(|(_, px)| px.iter().copied()).collect();
    let chw: Vec<u8> = images.iter().flat_map(|(_, px)| (0..3).flat_map(move |c| px.chunks_exact(3).map(move |p| p[c]))).collect();
    let labels: Vec<i64> = images.iter().map(|(l, _)| i64::from(*l)).collect();
    let dir = tempfile::tempdir().unwrap();
    for (name, shape, pixels) in [("nhwc.npz", [20, 32, 32, 3], &hwc), ("nchw.npz", [20, 3, 32, 32], &chw)] {
        let file = dir.path().join(name);
        npz(&file, &[("x_test.npy", npy_bytes(&shape, pixels).unwrap()), ("y_test.npy", npy_bytes(&[20], &labels).unwrap())]);
        let d = open(&DataSource::new(&file)).unwrap().with_class_names(cifar.class_names.clone());
        assert_same_content(&d, &cifar);
    }
}

#[test]
fn mnist_and_fashion_mnist_test_splits_read_fully() {
    for dir in [support::repo_root().join(".data/mnist"), PathBuf::from(FASHION_MNIST)] {
        let dir = installed(&dir);
        let d = open(&DataSource::new(&dir)).unwrap();
        assert_eq!((d.len(), d.height, d.width, d.channels), (10000, 28, 28, 1), "{}", dir.display());
        assert!(d.labels.iter().all(|l| (0..10).contains(l)), "{}", dir.display());
        for class in 0..10 {
            assert!(d.labels.contains(&class), "class {class} missing from {}", dir.display());
        }
        let t10k = DataSource { split: "t10k".parse::<Split>().unwrap(), format: Some(Format::Idx), ..DataSource::new(&dir) };
        assert_eq!(open(&t10k).unwrap().labels, d.labels);
    }
}

#[test]
fn files_written_by_numpy_read_back_and_ours_load_in_numpy() {
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("ours.npy");
    let ours_labels = dir.path().join("ours_labels.npy");
    write_npy(&ours, &[2, 3, 4], &(0..24u8).collect::<Vec<_>>()).unwrap();
    write_npy(&ours_labels, &[3], &[-1i64, 0, 1 << 40]).unwrap();
    let script = r#"
import sys, numpy as np
d = sys.argv[1]
x = np.arange(2 * 4 * 5 * 3, dtype=np.uint8).reshape(2, 4, 5, 3)
np.save(f"{d}/v1/images.npy", x)
np.save(f"{d}/v1/labels.npy", np.array([7, 2], dtype=np.int32))
with open(f"{d}/v3/images.npy", "wb") as f:
    np.lib.format.write_array(f, (x / 255).astype(np.float32), version=(3, 0))
with open(f"{d}/v3/labels.npy", "wb") as f:
    np.lib.format.write_array(f, np.array([[1], [0]], dtype=np.uint16), version=(2, 0))
np.savez_compressed(f"{d}/data.npz", x_train=x[:1], y_train=np.array([5], dtype=np.int64), x_test=x, y_test=np.array([1, 9], dtype=np.uint8))
a = np.load(f"{d}/ours.npy"); assert a.dtype == np.uint8 and a.shape == (2, 3, 4) and (a.ravel() == np.arange(24)).all(), a
b = np.load(f"{d}/ours_labels.npy"); assert b.dtype == np.int64 and b.tolist() == [-1, 0, 1 << 40], b
"#;
    std::fs::create_dir(dir.path().join("v1")).unwrap();
    std::fs::create_dir(dir.path().join("v3")).unwrap();
    let python = support::venv_python();
    assert!(python.is_file(), "`{}` is missing: run scripts/setup.sh", python.display());
    let out = Command::new(python).arg("-c").arg(script).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "numpy failed:\n{}", String::from_utf8_lossy(&out.stderr));

    let expected: Vec<u8> = (0..120u8).collect();
    let v1 = open(&DataSource::new(dir.path().join("v1"))).unwrap();
    assert_eq!((v1.pixels(), v1.labels.clone(), v1.channels), (PixelData::U8(&expected), vec![7, 2], 3));
    let v3 = open(&DataSource::new(dir.path().join("v3/images.npy"))).unwrap();
    assert_eq!(v3.labels, vec![1, 0]);
    assert!(v3.iter().flat_map(|i| i.pixels).zip(&expected).all(|(a, &b)| (a - f32::from(b) / 255.0).abs() < 1e-7));
    let npz = DataSource { layout: Some(Layout::Nhwc), ..DataSource::new(dir.path().join("data.npz")) };
    assert_eq!(open(&npz).unwrap().labels, vec![1, 9]);
    assert_eq!(open(&DataSource { split: Split::Train, ..npz }).unwrap().labels, vec![5]);
}

fn eval(args: &[&str]) -> (serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_archrepair-onnx")).arg("eval").args(args).arg("--json").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "eval {args:?} failed:\n{stderr}");
    (serde_json::from_slice(&out.stdout).unwrap(), stderr)
}

fn fixture(name: &str) -> String {
    support::repo_root().join("fixtures/models").join(name).to_string_lossy().into_owned()
}

#[test]
fn eval_reads_cifar_binary_and_pads_grey_28x28_into_an_rgb_32x32_model() {
    let model = fixture("resnet20_ts_op17_bn.onnx");
    let cifar = cifar_dir(&foolbox_images());
    let (report, _) = eval(&[&model, "--data", cifar.path().to_str().unwrap(), "--mean", "0.49,0.48,0.45", "--std", "0.25"]);
    assert_eq!(report["examples"], 20);
    assert_eq!(report["onnxruntime_accuracy"], report["lowered_accuracy"]);
    assert!(report["max_abs_output_diff"].as_f64().unwrap() <= 1e-4);
    assert!(report["input"].as_str().unwrap().contains("(x - [0.49, 0.48, 0.45]) / [0.25, 0.25, 0.25]"), "{report}");

    let (report, _) = eval(&[&model, "--data", FASHION_MNIST, "--limit", "7", "--fit", "pad", "--grey-to-rgb", "--split", "t10k"]);
    assert_eq!(report["examples"], 7);
    assert!(report["input"].as_str().unwrap().contains("pad 28x28→32x32, grey→RGB"), "{report}");
    assert!(report["data"].as_str().unwrap().contains("t10k-images-idx3-ubyte"), "{report}");
}

#[test]
fn eval_fills_up_the_last_batch_of_a_model_with_a_fixed_batch_size() {
    use archrepair_onnx::onnx::proto::{tensor_shape_proto::dimension, type_proto};
    let dir = tempfile::tempdir().unwrap();
    let mut model = archrepair_onnx::onnx::load_model(Path::new(&fixture("resnet20_28_ts_op17_bn.onnx"))).unwrap();
    let graph = model.graph.as_mut().unwrap();
    for vi in graph.input.iter_mut().take(1).chain(graph.output.iter_mut()) {
        let Some(type_proto::Value::TensorType(t)) = vi.r#type.as_mut().and_then(|t| t.value.as_mut()) else { panic!("tensor input") };
        t.shape.as_mut().unwrap().dim[0].value = Some(dimension::Value::DimValue(4));
    }
    let path = dir.path().join("batch4.onnx");
    archrepair_onnx::onnx::save_model(&model, &path).unwrap();
    let (fixed, _) = eval(&[path.to_str().unwrap(), "--data", FASHION_MNIST, "--limit", "10", "--batch", "64"]);
    let (free, _) = eval(&[&fixture("resnet20_28_ts_op17_bn.onnx"), "--data", FASHION_MNIST, "--limit", "10"]);
    assert_eq!(fixed["examples"], 10);
    assert!(fixed["input"].as_str().unwrap().contains("[4, 1, 28, 28]"), "{fixed}");
    assert_eq!(fixed["onnxruntime_accuracy"], free["onnxruntime_accuracy"]);
    assert_eq!(fixed["lowered_accuracy"], fixed["onnxruntime_accuracy"]);
}
