#!/usr/bin/env bash
# Installs the Debian packages lowbit builds against (plus any given as arguments). Idempotent; skips apt when all are present.
# Everything the build and tests need on a minbase Debian 12 (scripts/check_fresh.sh proves it),
# except the CUDA toolkit, which comes with the machine image. oneDNN is found by header and
# library (CMakeLists.txt), so its CMake package's OpenCL requirement does not apply.
set -euo pipefail
pkgs=(cmake ninja-build g++ ccache libeigen3-dev libdnnl-dev nlohmann-json3-dev
      libgtest-dev libgmock-dev libbenchmark-dev libopenmpi-dev openmpi-bin libopenblas-dev libomp-dev
      pkg-config libpcre2-dev libutf8proc-dev libsentencepiece-dev fortunes)
pkgs+=("$@")  # extra packages a caller needs (scripts/fuzz.sh: clang-14 libfuzzer-14-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
