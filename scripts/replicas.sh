#!/usr/bin/env bash
# N signerd replicas on one token behind HAProxy, all on loopback, for a try-out.
#
#   scripts/replicas.sh [N] [--softhsm]
#
# N (default 2) replicas share one SoftHSM token, reached as a network HSM through Debian's
# `p11-kit server` (each replica loads p11-kit-client.so; packages p11-kit, p11-kit-modules), or
# with --softhsm by loading SoftHSM on the same token folder. HAProxy runs config/haproxy.cfg
# with its server lines replaced by the replicas. Everything lives in a fresh temporary folder:
# a throwaway PKI (openssl), the token, the logs. The script prints the notary-server
# `trust_service` block, then waits; Ctrl-C stops every process it started, by PID.
#
# Ports: HAProxy on 127.0.0.1:$SIGNERD_REPLICAS_PORT (default 7900), replica i on that + i.
# The signerd binary: $SIGNERD_BIN, or target/debug/signerd (cargo build -p signerd).
# SIGNERD_KEEP=1 keeps the folder after exit.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }
n=2
mode=p11kit
for arg in "$@"; do
  case $arg in
    --softhsm) mode=softhsm ;;
    -h|--help) usage; exit 0 ;;
    ''|*[!0-9]*) echo "replicas.sh: unknown argument '$arg'" >&2; usage >&2; exit 2 ;;
    *) n=$arg ;;
  esac
done
[ "$n" -ge 1 ] || { echo "replicas.sh: N must be at least 1" >&2; exit 2; }

bin=${SIGNERD_BIN:-target/debug/signerd}
[ -x "$bin" ] || { echo "replicas.sh: $bin not found: run cargo build -p signerd (or set SIGNERD_BIN)" >&2; exit 1; }
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
softhsm_module=/usr/lib/softhsm/libsofthsm2.so
client_module=/usr/lib/$(uname -m)-linux-gnu/pkcs11/p11-kit-client.so
need() { command -v "$1" >/dev/null || { echo "replicas.sh: $1 not found: apt-get install -y $2" >&2; exit 1; }; }
need haproxy haproxy
need softhsm2-util softhsm2
if [ "$mode" = p11kit ]; then
  need p11-kit p11-kit
  [ -e "$client_module" ] || { echo "replicas.sh: $client_module not found: apt-get install -y p11-kit-modules" >&2; exit 1; }
fi
base=${SIGNERD_REPLICAS_PORT:-7900}

work=$(mktemp -d -t signerd-replicas.XXXXXX)
pids=()
names=()
cleanup() {
  trap - EXIT INT TERM
  # Stop in reverse order of start: HAProxy, the replicas, then the HSM stand-in.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "${SIGNERD_KEEP:-}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'echo; echo "stopping..."; exit 130' INT TERM

start() { # NAME COMMAND...: runs COMMAND in the background, output to $work/NAME.log
  local name=$1; shift
  "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
  names+=("$name")
}

wait_port() { # PORT NAME
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "replicas.sh: $2 did not listen on 127.0.0.1:$1; its log:" >&2
  tail -n 20 "$work/$2.log" >&2
  exit 1
}

# A throwaway PKI: every replica serves the same certificate (for the name notary-server dials).
pki=$work/pki
scripts/throwaway-pki.sh "$pki"

# The token, and how the replicas reach it.
scripts/softhsm-setup.sh "$work/softhsm" signerd >/dev/null
export SOFTHSM2_CONF=$work/softhsm/softhsm2.conf
if [ "$mode" = p11kit ]; then
  start p11-kit-server p11-kit server --foreground --name "$work/p11-kit.sock" \
    --provider "$softhsm_module" "pkcs11:token=signerd"
  for _ in $(seq 1 100); do [ -S "$work/p11-kit.sock" ] && break; sleep 0.1; done
  [ -S "$work/p11-kit.sock" ] || { echo "replicas.sh: p11-kit server did not start:" >&2; cat "$work/p11-kit-server.log" >&2; exit 1; }
  export P11_KIT_SERVER_ADDRESS=unix:path=$work/p11-kit.sock
  uri="pkcs11:token=signerd?module-path=$client_module&pin-source=file:$work/softhsm/pin"
else
  uri="pkcs11:token=signerd?module-path=$softhsm_module&pin-source=file:$work/softhsm/pin"
fi

servers=
for i in $(seq 1 "$n"); do
  port=$((base + i))
  mkdir -p "$work/replica-$i"
  start "signerd-$i" "$bin" serve --listen "127.0.0.1:$port" \
    --tls-cert "$pki/signer.crt" --tls-key "$pki/signer.key" --client-ca "$pki/ca.crt" \
    --token "$uri" --admin-socket "$work/replica-$i/admin.sock" --dev-dir "$work/replica-$i/dev"
  wait_port "$port" "signerd-$i"
  servers+="    server signerd-$i 127.0.0.1:$port"$'\n'
done

# The shipped configuration with its server lines replaced (the backend is its last section).
{ sed '/^[[:space:]]*server[[:space:]]/d' config/haproxy.cfg; printf '%s' "$servers"; } > "$work/haproxy.cfg"
SIGNERD_LB_LISTEN=127.0.0.1:$base SIGNERD_LB_STATS=$work/haproxy.sock \
  SIGNERD_CHECK_CA=$pki/ca.crt SIGNERD_CHECK_CERT=$pki/haproxy-check.pem \
  start haproxy haproxy -db -f "$work/haproxy.cfg"
wait_port "$base" haproxy

cat <<EOF
$n signerd replicas ($mode token) behind HAProxy on 127.0.0.1:$base; files in $work

notary-server's trust_service (its JSON config):
  "trust_service": {
    "type": "remote",
    "hostname": "127.0.0.1",
    "port": "$base",
    "key_algorithm": "ecdsa",
    "tls_ca_file": "$pki/ca.crt",
    "tls_client_cert": "$pki/notary-server.crt",
    "tls_client_key": "$pki/notary-server.key"
  }

Processes (stopped by PID on Ctrl-C):
EOF
for i in "${!pids[@]}"; do printf '  %-16s pid %-7s log %s\n' "${names[i]}" "${pids[i]}" "$work/${names[i]}.log"; done
cat <<EOF

Try: kill -9 <a replica's pid>, then (socat: apt-get install socat)
  echo "show stat" | socat - UNIX:$work/haproxy.sock | cut -d, -f1,2,5,18
shows it DOWN within two seconds while the others keep serving.
Ctrl-C stops everything.
EOF
# wait (a builtin) returns as soon as a trapped signal arrives, also a SIGINT sent to this
# script alone rather than to its process group.
while :; do sleep 1 & wait $! || true; done
