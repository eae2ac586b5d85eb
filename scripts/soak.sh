#!/usr/bin/env bash
# Soak: signerd under a notary-server-like load for MINUTES (default 10), not part of the tests.
#
#   scripts/soak.sh [MINUTES]
#
# Starts signerd on a throwaway SoftHSM token and PKI in a temporary folder (loopback only) and
# runs the soak load generator (tests/examples/soak.rs) against it: 32 calls in flight over one
# mutual-TLS connection, mostly Sign, some GetKeyInfo, health checks, a CreateKey/DeleteKey
# every second. Every minute it prints requests, req/s, p50/p99 latency, errors by code, and
# signerd's RSS, open file descriptors and threads. Exits 1 on any error, or when the last
# minute's RSS is more than 10 % above the first's or descriptors or threads grew.
#
# Environment: SIGNERD_BIN (default target/release/signerd if built, else target/debug/signerd;
# measure a release build: cargo build --release -p signerd), SOAK_IN_FLIGHT [32],
# SOAK_REPORT_SECS [60], SOAK_PORT [7950], SOAK_ROTATE [1; 0 leaves out the per-second
# CreateKey/DeleteKey], SIGNERD_KEEP=1 keeps the folder.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=${1:-10}
case $minutes in ''|*[!0-9]*) echo "usage: scripts/soak.sh [MINUTES]" >&2; exit 2 ;; esac
if [ -n "${SIGNERD_BIN:-}" ]; then bin=$SIGNERD_BIN
elif [ -x target/release/signerd ]; then bin=target/release/signerd
else bin=target/debug/signerd
fi
[ -x "$bin" ] || { echo "soak.sh: $bin not found: cargo build --release -p signerd (or set SIGNERD_BIN)" >&2; exit 1; }
case $bin in target/debug/*) echo "soak.sh: measuring a debug build ($bin); numbers for the record need a release build" >&2 ;; esac
port=${SOAK_PORT:-7950}

# The load generator in the same profile as signerd.
case $bin in
  */debug/*) profile=(); load=target/debug/examples/soak ;;
  *) profile=(--release); load=target/release/examples/soak ;;
esac
echo "==> building the load generator (cargo build ${profile[*]} -p signerd-tests --example soak)"
cargo build -q "${profile[@]}" -p signerd-tests --example soak

work=$(mktemp -d -t signerd-soak.XXXXXX)
signerd_pid=
cleanup() {
  trap - EXIT INT TERM
  if [ -n "$signerd_pid" ]; then kill -TERM "$signerd_pid" 2>/dev/null || true; wait "$signerd_pid" 2>/dev/null || true; fi
  if [ "${SIGNERD_KEEP:-}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

scripts/throwaway-pki.sh "$work/pki"
scripts/softhsm-setup.sh "$work/softhsm" soak >/dev/null
uri="pkcs11:token=soak?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:$work/softhsm/pin"
SOFTHSM2_CONF=$work/softhsm/softhsm2.conf "$bin" serve --listen "127.0.0.1:$port" \
  --tls-cert "$work/pki/signer.crt" --tls-key "$work/pki/signer.key" --client-ca "$work/pki/ca.crt" \
  --token "$uri" --dev-dir "$work/dev" >"$work/signerd.log" 2>&1 &
signerd_pid=$!
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
kill -0 "$signerd_pid" 2>/dev/null || { echo "soak.sh: signerd did not start:" >&2; tail -n 20 "$work/signerd.log" >&2; exit 1; }

echo "==> signerd $bin (pid $signerd_pid) on 127.0.0.1:$port; its log: $work/signerd.log"
status=0
SOAK_ADDR=127.0.0.1:$port SOAK_CA=$work/pki/ca.crt SOAK_CERT=$work/pki/notary-server.crt \
  SOAK_KEY=$work/pki/notary-server.key SOAK_PID=$signerd_pid SOAK_MINUTES=$minutes \
  "$load" || status=$?
echo "==> signerd log: $(wc -l <"$work/signerd.log") lines, $(du -h "$work/signerd.log" | cut -f1)"
exit "$status"
