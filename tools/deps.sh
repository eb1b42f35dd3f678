#!/usr/bin/env bash
# tools/deps.sh: install the Debian packages weft builds, tests and trains with.
# Idempotent: installs only what is missing. Uses sudo when not root.
#   tools/deps.sh --cross   instead installs what the aarch64 cross step of tools/test.sh needs:
#                           the cross gcc, qemu-user, and arm64 Check and zlib through Debian
#                           multiarch (which brings the arm64 libc the programs run on).
#                           Exits non-zero when that cannot be done.
set -euo pipefail
if [ "${1:-}" = "--cross" ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  missing=()
  for p in gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user check:arm64 zlib1g-dev:arm64; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && exit 0
  echo "weft: installing ${missing[*]} for the aarch64 cross step"
  dpkg --print-foreign-architectures | grep -qx arm64 || $sudo dpkg --add-architecture arm64
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  exit 0
fi
pkgs=(meson ninja-build pkg-config gcc check libopenblas-dev libopenmpi-dev openmpi-bin
      zlib1g-dev dataset-fashion-mnist python3)
missing=()
arch=$(dpkg --print-architecture)
for p in "${pkgs[@]}"; do
  # "pkg:arch" too: once the cross step added arm64 copies, a bare name is ambiguous to dpkg
  dpkg -s "$p" >/dev/null 2>&1 || dpkg -s "$p:$arch" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "weft: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
