//! `archrepair-onnx corrupt`: the CIFAR-10-C layout it writes, its seeding, and its refusal to
//! overwrite.

use std::path::Path;
use std::process::{Command, Output};

use archrepair_onnx::data::corrupt::{corrupt_indexed, Corruption, ParamSet};
use archrepair_onnx::data::npy::{Dtype, NpyArray, Values};
use archrepair_onnx::data::{write_npy, Image};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_archrepair-onnx")).args(args).output().expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `images.npy` (n, h, w, c) uint8 and `labels.npy` int64 in `dir`; returns images and labels.
fn write_set(dir: &Path, n: usize, [h, w, c]: [usize; 3]) -> (Vec<u8>, Vec<i64>) {
    std::fs::create_dir_all(dir).unwrap();
    let images: Vec<u8> = (0..n * h * w * c).map(|i| ((i * 37 + (i / (h * w * c)) * 11) % 251) as u8).collect();
    let labels: Vec<i64> = (0..n as i64).map(|i| (i * 3) % 10).collect();
    write_npy(&dir.join("images.npy"), &[n, h, w, c], &images).unwrap();
    write_npy(&dir.join("labels.npy"), &[n], &labels).unwrap();
    (images, labels)
}

fn bytes_of(path: &Path) -> (Vec<usize>, Vec<u8>) {
    let array = NpyArray::read(path).unwrap();
    assert_eq!(array.dtype, Dtype::U8, "{}", path.display());
    let shape = array.shape.clone();
    match array.into_values().unwrap() {
        Values::U8(v) => (shape, v),
        other => panic!("{other:?}"),
    }
}

#[test]
fn corrupt_writes_the_cifar10c_layout_with_documented_seeding() {
    let tmp = tempfile::tempdir().unwrap();
    let (n, dims) = (5, [28, 28, 1]);
    let (images, labels) = write_set(&tmp.path().join("data"), n, dims);
    let out = tmp.path().join("out");
    let data = tmp.path().join("data");
    let args = [
        "corrupt",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--corruptions",
        "jpeg_compression,gaussian_noise",
        "--severities",
        "1,3",
    ];
    let result = run(&[&args[..], &["--seed", "4"]].concat());
    assert!(result.status.success(), "{}", text(&result.stderr));
    let stdout = text(&result.stdout);
    assert!(stdout.contains("gaussian_noise.npy") && stdout.contains("grey28"), "{stdout}");

    let mut files: Vec<String> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    assert_eq!(files, ["gaussian_noise.npy", "jpeg_compression.npy", "labels.npy", "manifest.json"]);

    // Severities stacked in order: rows [0, n) severity 1, [n, 2n) severity 3; each image as
    // the library corrupts image i with the same seed, bytes truncated as CIFAR-10-C's.
    for (corruption, name) in [(Corruption::GaussianNoise, "gaussian_noise"), (Corruption::JpegCompression, "jpeg_compression")] {
        let (shape, bytes) = bytes_of(&out.join(format!("{name}.npy")));
        assert_eq!(shape, vec![2 * n, 28, 28, 1], "{name}");
        let per = 28 * 28;
        for (k, severity) in [1u8, 3].into_iter().enumerate() {
            for i in 0..n {
                let clean = Image::from_u8(28, 28, 1, &images[i * per..(i + 1) * per]);
                let want = corrupt_indexed(&clean, corruption, severity, ParamSet::Grey28, 4, i as u64).to_u8();
                let row = k * n + i;
                assert_eq!(bytes[row * per..(row + 1) * per], want[..], "{name} severity {severity} image {i}");
            }
        }
    }
    let written_labels = NpyArray::read(&out.join("labels.npy")).unwrap();
    assert_eq!(written_labels.dtype, Dtype::I64);
    assert_eq!(written_labels.to_labels().unwrap(), [labels.clone(), labels].concat());

    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["params"], "grey28");
    assert_eq!(manifest["seed"], 4);
    assert_eq!(manifest["count"], 5);
    assert_eq!(manifest["severities"], serde_json::json!([1, 3]));
    assert_eq!(manifest["corruptions"], serde_json::json!(["gaussian_noise", "jpeg_compression"]));
    assert_eq!(manifest["version"], env!("CARGO_PKG_VERSION"));

    // An existing, non-empty output folder is refused (exit 2, nothing touched) ...
    let before = std::fs::read(out.join("gaussian_noise.npy")).unwrap();
    let again = run(&[&args[..], &["--seed", "5"]].concat());
    let stderr = text(&again.stderr);
    assert_eq!(again.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not empty") && stderr.contains("--force") && !stderr.contains("panicked"), "{stderr}");
    assert_eq!(std::fs::read(out.join("gaussian_noise.npy")).unwrap(), before);
    // ... unless --force, which rewrites it (another seed: other noise).
    let forced = run(&[&args[..], &["--seed", "5", "--force"]].concat());
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    assert_ne!(std::fs::read(out.join("gaussian_noise.npy")).unwrap(), before);
}

#[test]
fn rgb_images_default_to_cifar10c_and_bad_names_are_explained() {
    let tmp = tempfile::tempdir().unwrap();
    write_set(&tmp.path().join("data"), 3, [32, 32, 3]);
    let out = tmp.path().join("out");
    let data = tmp.path().join("data");
    let result = run(&["corrupt", "--data", data.to_str().unwrap(), "--out", out.to_str().unwrap(), "--corruptions", "frost", "--limit", "2", "--json"]);
    assert!(result.status.success(), "{}", text(&result.stderr));
    let report: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    assert_eq!(report["params"], "cifar10-c");
    assert_eq!(report["count"], 2);
    let (shape, _) = bytes_of(&out.join("frost.npy"));
    assert_eq!(shape, vec![10, 32, 32, 3]);

    let bad = run(&["corrupt", "--data", data.to_str().unwrap(), "--out", tmp.path().join("x").to_str().unwrap(), "--corruptions", "speckle_noise"]);
    let stderr = text(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("speckle_noise") && stderr.contains("gaussian_noise, shot_noise"), "{stderr}");
    assert!(!tmp.path().join("x").exists(), "a refused run created its output folder");
}
