#!/usr/bin/env bash
# A throwaway PKI for try-outs (scripts/replicas.sh, scripts/soak.sh), made with openssl in DIR:
#
#   scripts/throwaway-pki.sh DIR
#
# ca.crt/ca.key (CA), signer.crt/.key (signerd's server certificate for localhost and
# 127.0.0.1), notary-server.crt/.key (the client certificate notary-server presents),
# haproxy-check.pem (a client certificate and key in one file, for HAProxy's health checks).
# Keys are unencrypted P-256, mode 0600. Not for production: the CA key sits beside the rest.
set -euo pipefail
dir=${1:?usage: scripts/throwaway-pki.sh DIR}
command -v openssl >/dev/null || { echo "openssl not found: apt-get install -y openssl" >&2; exit 1; }
mkdir -p "$dir"
cd "$dir"
umask 077
ossl() { openssl "$@" 2>/dev/null; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj /CN=signerd-throwaway-ca -keyout ca.key -out ca.crt
issue() { # NAME EXTENSIONS
  ossl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
    -keyout "$1.key" -out "$1.csr"
  ossl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
    -extfile <(printf '%b' "$2") -out "$1.crt"
  rm -f "$1.csr"
}
issue signer 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth'
issue notary-server 'extendedKeyUsage=clientAuth'
issue haproxy-check 'extendedKeyUsage=clientAuth'
cat haproxy-check.crt haproxy-check.key > haproxy-check.pem
chmod 644 ./*.crt
