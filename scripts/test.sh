#!/usr/bin/env bash
# Runs every test suite. Installs what the suites need first, so it works on a
# fresh Debian machine with a Rust toolchain (and as root, or with sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v openssl >/dev/null || need_pkgs+=(openssl)
command -v make >/dev/null || need_pkgs+=(make)   # builds jemalloc
if [ ${#need_pkgs[@]} -gt 0 ]; then
  sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update
  $sudo_ apt-get install -y "${need_pkgs[@]}"
fi

cargo test --all-targets --locked
e2e/run.sh
