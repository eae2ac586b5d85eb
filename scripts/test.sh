#!/usr/bin/env bash
# Every test of signerd, on a plain Linux machine: installs what it needs, checks formatting and
# lints, builds, and runs all tests (unit, SoftHSM, real notary-server + notary CLI) with
# cargo-nextest, one process per test so each test has its own token and SOFTHSM2_CONF.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v softhsm2-util >/dev/null || missing+=(softhsm2)
{ [ -x /usr/bin/notary ] && [ -x /usr/bin/notary-server ] && [ -x /usr/bin/notary-signer ]; } || missing+=(notary)
command -v pkcs11-tool >/dev/null || missing+=(opensc)
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing ${missing[*]}"
  sudo=; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "==> installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

start=$(date +%s)
echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "==> cargo build (the binaries and the PKCS#11 shim library the integration tests load)"
cargo build --workspace
echo "==> cargo nextest run"
cargo nextest run --workspace --no-fail-fast "$@"
echo "==> all tests passed in $(( $(date +%s) - start ))s"
