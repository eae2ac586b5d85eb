#!/usr/bin/env bash
# python-pkcs11's own test suite, run as its authors run it, against SoftHSM directly and
# against signerd through pkcs11-shim, with both results side by side.
#
#   scripts/pkcs11-suite.sh            # needs: cargo build --workspace (signerd, the shim)
#
# The suite's tests come from python-pkcs11's sdist on PyPI (pip download; the tests are in it),
# the library from PyPI into a venv (pinned as tests/src/python.rs pins it). Everything else is
# made in a temporary folder: a throwaway SoftHSM token for the direct run, and a signerd with
# its development token there, on loopback, stopped by its PID.
#
# Exit status: 0 when every in-scope test that passes on SoftHSM passes through the shim; 1
# when one does not (or the run could not be made). Out-of-scope tests (docs/pkcs11-clients.md)
# are run and shown, never counted. KEEP=1 keeps the temporary folder.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON_PKCS11=python-pkcs11==0.10.1
SUITE_DEPS=(cryptography==44.0.3 parameterized==0.9.0 pytest==8.3.4)
SOFTHSM_MODULE=${SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
SIGNERD=${SIGNERD:-$ROOT/target/debug/signerd}
SHIM=${SHIM:-$ROOT/target/debug/libpkcs11_shim.so}
CACHE=$ROOT/target/python/pkcs11-suite
# The suite's files whose tests are in scope, in part or in whole (the rest: out of scope).
FILES=(test_ecc.py test_rsa.py test_sessions.py test_slots_and_tokens.py test_attributes.py
       test_x509.py test_public_key_external.py test_iterators.py test_threading.py)

for f in "$SIGNERD" "$SHIM" "$SOFTHSM_MODULE"; do
    [ -e "$f" ] || { echo "pkcs11-suite: $f is missing (cargo build --workspace; Debian softhsm2)" >&2; exit 1; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pkcs11-suite.XXXXXX")
SIGNERD_PID=
cleanup() {
    if [ -n "$SIGNERD_PID" ]; then
        kill "$SIGNERD_PID" 2>/dev/null || true
        wait "$SIGNERD_PID" 2>/dev/null || true
    fi
    if [ "${KEEP:-0}" = 1 ]; then echo "pkcs11-suite: kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# --- the venv and the suite's sources (both kept under target/ for the next run) ---
mkdir -p "$CACHE"
VENV=$CACHE/venv
if ! "$VENV/bin/python" -c 'import pkcs11, pytest, parameterized, cryptography' 2>/dev/null; then
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "$PYTHON_PKCS11" "${SUITE_DEPS[@]}"
fi
SDIST=$CACHE/${PYTHON_PKCS11/==/-}
if [ ! -d "$SDIST/tests" ]; then
    # Only this package as source: its build dependencies may come as wheels.
    "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps \
        --no-binary python-pkcs11 "$PYTHON_PKCS11" -d "$CACHE/dl"
    mkdir -p "$SDIST"
    tar xzf "$CACHE"/dl/python_pkcs11-*.tar.gz -C "$SDIST" --strip-components=1
fi
# The tests only, beside the installed library (the sdist's own pkcs11/ is not built).
mkdir -p "$WORK/suite"
cp -r "$SDIST/tests" "$WORK/suite/tests"

# One pytest process per file: a test whose setUp fails leaves its logged-in session open for
# the rest of the process, and the next file's logins would fail for it.
run_suite() { # name module label pin so-pin [env...]
    local name=$1 module=$2 label=$3 pin=$4 so_pin=$5 file
    shift 5
    mkdir -p "$WORK/results-$name"
    for file in "${FILES[@]}"; do
        (cd "$WORK/suite" && env "$@" PKCS11_MODULE="$module" PKCS11_TOKEN_LABEL="$label" \
            PKCS11_TOKEN_PIN="$pin" PKCS11_TOKEN_SO_PIN="$so_pin" \
            "$VENV/bin/python" -m pytest -q -p no:cacheprovider -W ignore \
            --junitxml="$WORK/results-$name/$file.xml" "tests/$file" >> "$WORK/$name.log" 2>&1) || true
        [ -s "$WORK/results-$name/$file.xml" ] || { echo "pkcs11-suite: the $name run of $file made no report:" >&2; cat "$WORK/$name.log" >&2; exit 1; }
    done
}

# --- SoftHSM directly, on a token of its own ---
mkdir -p "$WORK/softhsm/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
    "$WORK/softhsm/tokens" > "$WORK/softhsm/softhsm2.conf"
SOFTHSM2_CONF=$WORK/softhsm/softhsm2.conf softhsm2-util --init-token --free --label suite \
    --pin 123456 --so-pin 12345678 > /dev/null
run_suite softhsm "$SOFTHSM_MODULE" suite 123456 12345678 SOFTHSM2_CONF="$WORK/softhsm/softhsm2.conf"

# --- signerd through the shim: its development token, its admin socket in $WORK ---
DEV=$WORK/signerd
mkdir -p "$DEV"
(cd "$DEV" && exec "$SIGNERD" serve --dev-dir "$DEV/dev" --listen 127.0.0.1:0 \
    --admin-socket "$DEV/admin.sock" > "$DEV/signerd.log" 2>&1) &
SIGNERD_PID=$!
for _ in $(seq 1 200); do
    [ -S "$DEV/admin.sock" ] && break
    kill -0 "$SIGNERD_PID" 2>/dev/null || { echo "pkcs11-suite: signerd did not start:" >&2; cat "$DEV/signerd.log" >&2; exit 1; }
    sleep 0.1
done
[ -S "$DEV/admin.sock" ] || { echo "pkcs11-suite: signerd made no admin socket" >&2; cat "$DEV/signerd.log" >&2; exit 1; }
# The suite picks its device switches (Only/Not/FIXME.softhsm2) by the module's file name: the
# shim is loaded through a link of SoftHSM's name, so both runs get the same tests.
mkdir -p "$WORK/shim-module"
ln -s "$SHIM" "$WORK/shim-module/libsofthsm2.so"
run_suite shim "$WORK/shim-module/libsofthsm2.so" signerd-dev "$(cat "$DEV/dev/pin")" "$(cat "$DEV/dev/so-pin")" \
    SIGNERD_SOCKET="$DEV/admin.sock" SIGNERD_SHIM_LOG="$WORK/shim.log"

# --- side by side ---
"$VENV/bin/python" - "$WORK/results-softhsm" "$WORK/results-shim" <<'EOF'
import os, re, sys
import xml.etree.ElementTree as ET

# Out of scope for a signing provider (docs/pkcs11-clients.md says why).
OUT_OF_SCOPE = [
    (r"encrypt|decrypt|partial_decrypt|hybrid_file_encryption", "encryption"),
    (r"wrap", "wrapping"),
    (r"derive|ecdh", "derivation"),
    (r"generate_key$|copy_object|seed_random|generate_random", "symmetric keys, object copies, random numbers"),
    (r"set_pin|init_pin|login_so", "the token's PINs are signerd's operator's"),
    (r"(^|_)dsa$|ed448", "key types signerd does not hold (DSA, Ed448)"),
    (r"unload_reload|nonexistent_lib|double_initialise", "loading other modules in the same process"),
    (r"import_key|decode_rsa_private_key", "importing key material as session objects"),
    (r"get_mechanism_info$", "encryption (asks for RSA-OAEP)"),
    (r"^SessionTests\.test_(create|destroy)_object$", "symmetric keys (an AES key)"),
    (r"^SessionTests\.test_generate_keypair$", "1024-bit RSA keys, and encryption with them"),
    (r"^SlotsAndTokensTests\.test_get_(slots|tokens)$",
     "SoftHSM's own slot layout (its free, uninitialised slot beside the token)"),
    (r"^RSATests\.|ExternalPublicKeyTests\.test_rsa|self_sign_certificate|sign_csr",
     "1024-bit RSA keys: signerd makes RSA keys of 2048 bits and more"),
]

def outcomes(folder):
    result = {}
    cases = [c for f in sorted(os.listdir(folder)) for c in ET.parse(os.path.join(folder, f)).getroot().iter("testcase")]
    for case in cases:
        name = f"{case.get('classname').split('.')[-1]}.{case.get('name')}"
        if case.find("skipped") is not None:
            result[name] = "skip: " + (case.find("skipped").get("message") or "")[:60]
        elif case.find("failure") is not None or case.find("error") is not None:
            node = case.find("failure") if case.find("failure") is not None else case.find("error")
            result[name] = "FAIL: " + (node.get("message") or "").splitlines()[0][:70] if node.get("message") else "FAIL"
        else:
            result[name] = "pass"
    return result

def scope(name):
    test = name.split(".")[-1]
    for pattern, why in OUT_OF_SCOPE:
        if re.search(pattern, test) or (pattern.startswith("^") and re.search(pattern, name)):
            return why
    return None

softhsm, shim = outcomes(sys.argv[1]), outcomes(sys.argv[2])
names = sorted(set(softhsm) | set(shim))
width = max(len(n) for n in names)
regressions, skipped, counted = [], [], {"softhsm": [0, 0], "shim": [0, 0]}
print(f"{'test':<{width}}  {'SoftHSM':<8}  shim")
for n in names:
    a, b = softhsm.get(n, "absent"), shim.get(n, "absent")
    why = scope(n)
    if why is None:
        for side, r in (("softhsm", a), ("shim", b)):
            if not r.startswith("skip"):
                counted[side][1] += 1
                counted[side][0] += r == "pass"
        if a == "pass" and b.startswith("FAIL"):
            regressions.append(n)
    note = f"  (out of scope: {why})" if why else ""
    print(f"{n:<{width}}  {a.split(':')[0]:<8}  {b}{note}")
    if why is None and a == "pass" and b.startswith("skip"):
        skipped.append(n)
print()
for side in ("softhsm", "shim"):
    p, m = counted[side]
    print(f"in scope, {side}: {p} passed of {m} run")
if skipped:
    print(f"\n{len(skipped)} in-scope test(s) pass on SoftHSM and are skipped by the suite on the shim (mechanisms it lacks, see above)")
if regressions:
    print(f"\n{len(regressions)} in-scope test(s) pass on SoftHSM but not through the shim:")
    for n in regressions:
        print(f"  {n}: {shim.get(n)}")
    sys.exit(1)
print("every in-scope test that passes on SoftHSM passes through the shim")
EOF
