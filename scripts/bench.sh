#!/usr/bin/env bash
# Side-by-side benchmark: the Go notary-signer (memory store), signerd (SoftHSM) and the token
# alone (C_Sign in a loop), in one run, each server pinned to one CPU and the load generator to
# another, then a second signerd on both CPUs against the token alone on two threads (the
# two-core point; --no-two-cores skips it), and the stack floor: signerd's gRPC server with a
# handler that answers at once (what TLS, HTTP/2 and gRPC cost alone), pinned beside the ECDSA
# series and on both CPUs beside the two-core point. Prints one table (README
# "Performance" says how to read it).
#
#   scripts/bench.sh [--duration SECS] [--repetitions N] [--in-flight 1,8,32,64] [--plot FILE.svg] ...
#
# Everything after the script name goes to `signerd-bench run` (`--help` lists it all). Builds
# release binaries first. Starts processes on 127.0.0.1 only, stops them by PID, writes only
# in its temp dir (and the plot file). Not part of scripts/test.sh: timings are no test.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in notary-signer softhsm2-util taskset; do
  command -v "$tool" >/dev/null || {
    echo "$tool not found: scripts/test.sh installs what is missing (notary, softhsm2, util-linux)" >&2
    exit 1
  }
done
if [ "$(nproc)" -lt 2 ]; then
  echo "warning: $(nproc) CPU: servers and load generator share it, ratios still hold, rates do not" >&2
fi

echo "==> cargo build --release -p signerd -p signerd-bench" >&2
cargo build --release -q -p signerd -p signerd-bench

exec target/release/signerd-bench run --signerd "$PWD/target/release/signerd" "$@"
