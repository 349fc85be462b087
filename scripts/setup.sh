#!/usr/bin/env bash
# One idempotent set-up step shared by scripts/run.sh and scripts/test.sh.
#
#   1. Python venv in .venv with the pinned packages of requirements.txt, every dependency held
#      at the version of requirements.lock (torch = libtorch for tch, onnxruntime = the runtime
#      ort loads, onnx/onnxscript/torchvision for tests and the fixture scripts). Skipped when
#      neither file has changed since.
#   2. Data packages from Debian: Fashion-MNIST (dataset-fashion-mnist). Skipped when present.
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

# 3. Build ------------------------------------------------------------------------------------
eval "$(env_lines)"
step "cargo build --release (first time: ~3 minutes)"
cargo build --release --locked --quiet
