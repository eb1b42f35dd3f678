#!/usr/bin/env bash
# tools/deps.sh: install the Debian packages weft builds, tests and trains with.
# Idempotent: installs only what is missing. Uses sudo when not root.
set -euo pipefail
pkgs=(meson ninja-build pkg-config gcc check libopenblas-dev libopenmpi-dev openmpi-bin
      zlib1g-dev dataset-fashion-mnist python3)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "weft: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
