#!/usr/bin/env bash
# Every test of signerd, on a plain Linux machine: installs what it needs, checks formatting and
# lints, builds, and runs all tests (unit, SoftHSM, real notary-server + notary CLI) with
# cargo-nextest, one process per test so each test has its own token and SOFTHSM2_CONF.
set -euo pipefail
cd "$(dirname "$0")/.."

# Every Debian package any test, script or build step uses, one per line. A test that needs a new
# tool adds its package here; nothing else installs system packages.
PACKAGES=(
  gnutls-bin                # p11tool (relabelling keys into a domain, README security model)
  softhsm2                  # the token every test uses (libsofthsm2.so, softhsm2-util)
  notary                    # notary-server, the notary CLI and the Go notary-signer (the reference)
  opensc                    # pkcs11-tool
  openssl                   # the openssl CLI (certificates, engine tests)
  libengine-pkcs11-openssl  # libp11's OpenSSL engine: openssl and the notary CLI through the shim
  valgrind                  # the shim's leak check
  util-linux                # setpriv, unshare (socket-peer tests, private mount namespaces)
  p11-kit                   # p11-kit server: the network-HSM stand-in (remote token, replicas)
  p11-kit-modules           # p11-kit-client.so, the module signerd loads for that remote token
  haproxy                   # the load balancer in front of signerd replicas
  systemd                   # systemd-analyze verify of config/signerd.service
  iproute2                  # ip: loopback up in the docs test's private network namespace
  curl                      # docs/trust-pinning.md waits for notary-server's health with it
  postgresql                # a throwaway cluster for notary-signer's key database (migration)
  mariadb-server            # a throwaway MariaDB server for notary-signer's MySQL key store (migration)
  python3-venv              # python-tuf and securesystemslib (pip, in a venv) sign TUF metadata through the shim
  # What the tests run directly, named even where a package above pulls it in (Debian 12):
  postgresql-client-15      # /usr/lib/postgresql/15/bin: initdb, pg_ctl, psql of the throwaway cluster
  mariadb-client-core       # /usr/bin/mariadb: the client that fills the MariaDB key store
  python3.11-minimal        # /usr/bin/python3: the venvs' interpreter
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing ${missing[*]}"
  sudo=; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
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
echo "==> cargo clippy of the fuzz targets (not a workspace member; run them with cargo +nightly fuzz, docs/fuzzing.md)"
# The workspace's target dir, versions and profile: the dependencies checked above are reused,
# as long as fuzz/Cargo.lock pins the versions Cargo.lock pins (else every differing crate and
# all that depends on it is checked a second time).
lock_versions() { awk '/^name = /{n=$3} /^version = /{print n" "$3}' "$1" | sort -u; }
drift=$(comm -13 <(lock_versions Cargo.lock) <(lock_versions fuzz/Cargo.lock) \
  | grep -v -E '^"(arbitrary|derive_arbitrary|jobserver|libfuzzer-sys|signerd-fuzz)" ' || true)
if [ -n "$drift" ]; then
  echo "fuzz/Cargo.lock pins versions Cargo.lock does not:"; echo "$drift"
  echo "-> cp Cargo.lock fuzz/Cargo.lock && cargo tree --manifest-path fuzz/Cargo.toml >/dev/null"
  exit 1
fi
cargo clippy --manifest-path fuzz/Cargo.toml --target-dir target --bins -- -D warnings
target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
echo "==> cargo build -p signerd --features fault-injection (the crash tests' signerd, kept as signerd-fault-injection)"
# Before the workspace build, which puts the normal signerd back in place.
cargo build -p signerd --features fault-injection
cp --remove-destination "$target_dir/debug/signerd" "$target_dir/debug/signerd-fault-injection"
export SIGNERD_FAULT_BIN="$target_dir/debug/signerd-fault-injection"
echo "==> cargo build (the binaries and the PKCS#11 shim library the integration tests load)"
cargo build --workspace
# Tests never build: they run exactly these files (tests/src/artifacts.rs).
export SIGNERD_BIN="$target_dir/debug/signerd"
export PKCS11_SHIM_SO="$target_dir/debug/libpkcs11_shim.so"
echo "==> cargo nextest run (SIGNERD_BIN=$SIGNERD_BIN PKCS11_SHIM_SO=$PKCS11_SHIM_SO)"
cargo nextest run --workspace --no-fail-fast "$@"
echo "==> all tests passed in $(( $(date +%s) - start ))s"
