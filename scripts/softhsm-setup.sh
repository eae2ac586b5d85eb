#!/usr/bin/env bash
# Make a SoftHSM2 token in a folder of its own (nothing in /var/lib/softhsm is touched).
#
#   scripts/softhsm-setup.sh DIR [LABEL]
#
# Writes DIR/softhsm2.conf (token directory DIR/tokens), initializes token LABEL (default:
# signerd) with the user PIN from $SIGNERD_TOKEN_PIN (or a random one) and the SO PIN from
# $SIGNERD_TOKEN_SO_PIN (or a random one), stores them in DIR/pin and DIR/so-pin (mode 0600),
# and prints the SOFTHSM2_CONF export and the token URI for `signerd serve --token`.
# signerd's embedded default (`signerd serve` with nothing configured) does the same steps in code.
set -euo pipefail

dir=${1:?usage: scripts/softhsm-setup.sh DIR [LABEL]}
label=${2:-signerd}
module=/usr/lib/softhsm/libsofthsm2.so

command -v softhsm2-util >/dev/null || { echo "softhsm2-util not found: apt-get install -y softhsm2" >&2; exit 1; }
[ -e "$module" ] || { echo "$module not found: apt-get install -y softhsm2" >&2; exit 1; }

mkdir -p "$dir/tokens"
dir=$(cd "$dir" && pwd)
cat > "$dir/softhsm2.conf" <<CONF
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
export SOFTHSM2_CONF="$dir/softhsm2.conf"

if softhsm2-util --show-slots | grep -q "Label:[[:space:]]*$label\$"; then
  echo "token '$label' already exists in $dir" >&2
else
  pin=${SIGNERD_TOKEN_PIN:-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')}
  so_pin=${SIGNERD_TOKEN_SO_PIN:-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')}
  softhsm2-util --init-token --free --label "$label" --pin "$pin" --so-pin "$so_pin" >/dev/null
  (umask 077; printf '%s' "$pin" > "$dir/pin"; printf '%s' "$so_pin" > "$dir/so-pin")
fi

echo "export SOFTHSM2_CONF=$dir/softhsm2.conf"
echo "token URI: pkcs11:token=$label?module-path=$module&pin-source=file:$dir/pin"
