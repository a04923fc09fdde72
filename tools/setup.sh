#!/bin/bash
# Installs what Lyra's build needs on a fresh Debian machine (Bazel 4 from bazel-bootstrap, Abseil,
# GoogleTest, Google Benchmark, nlohmann/json). Idempotent and quiet when nothing is missing.
# The CUDA toolkit is expected at /usr/local/cuda (or LYRA_CUDA_PATH); it is not a Debian package.
set -euo pipefail
packages=(bazel-bootstrap libabsl-dev libgtest-dev libbenchmark-dev nlohmann-json3-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  sudo=""
  [[ $(id -u) == 0 ]] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >/dev/null
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
cuda=${LYRA_CUDA_PATH:-/usr/local/cuda}
if [[ ! -x $cuda/bin/nvcc ]]; then
  echo "setup: no CUDA toolkit at $cuda (install it or set LYRA_CUDA_PATH)" >&2
  exit 1
fi
