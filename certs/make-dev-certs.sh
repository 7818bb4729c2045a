#!/usr/bin/env bash
# make-dev-certs.sh: development-only keys and certificates, made with the
# openssl command line alone.
#
#   certs/make-dev-certs.sh OUTDIR [--force]
#
# Makes, in OUTDIR (created 0700 if missing):
#   ca.pem, ca.key                   a development CA (EC P-256, 10 years)
#   server.pem, server.key           localhost / 127.0.0.1 / ::1, serverAuth
#   client-crm.pem, client-crm.key   CN=crm, clientAuth (mTLS tests)
#   client-other.pem, client-other.key CN=other, clientAuth
#   receipt-key.pem                  Ed25519 private key for signed receipts
#
# Idempotent: a file that already exists is kept, so running it again (as
# `make certs` does before every `make run`) changes nothing. --force makes
# everything again. Keys are written 0600. Nothing here is fit for
# production: see certs/README.md.
set -euo pipefail

usage() {
    echo "usage: $0 OUTDIR [--force]" >&2
    exit 2
}

out=""
force=0
for arg in "$@"; do
    case "$arg" in
    --force) force=1 ;;
    -h | --help) usage ;;
    -*) echo "make-dev-certs.sh: unknown option '$arg'" >&2; usage ;;
    *) [ -z "$out" ] || usage; out="$arg" ;;
    esac
done
[ -n "$out" ] || usage
command -v openssl >/dev/null || { echo "make-dev-certs.sh: openssl not found" >&2; exit 1; }

umask 077
mkdir -p "$out"
cd "$out"

days_ca=3650
days_leaf=825 # the longest validity some clients accept for a leaf

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

have() {
    [ "$force" -eq 0 ] && [ -s "$1" ]
}
remake_leaves=0

# An EC P-256 key: the widest-supported choice after RSA, and small.
make_ec_key() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
        -pkeyopt ec_param_enc:named_curve -out "$1.tmp" 2>/dev/null
    chmod 600 "$1.tmp"
    mv "$1.tmp" "$1"
}

# make_leaf NAME SUBJECT EXTFILE: key + certificate signed by the CA.
make_leaf() {
    local name=$1 subj=$2 ext=$3
    if [ "$remake_leaves" -eq 0 ] && have "$name.key" && have "$name.pem"; then
        return 0
    fi
    make_ec_key "$name.key"
    openssl req -new -key "$name.key" -subj "$subj" -out "$tmp/$name.csr"
    openssl x509 -req -in "$tmp/$name.csr" -CA ca.pem -CAkey ca.key \
        -set_serial "0x$(openssl rand -hex 16)" -days "$days_leaf" -sha256 \
        -extfile "$ext" -out "$name.pem.tmp" 2>/dev/null
    chmod 644 "$name.pem.tmp"
    mv "$name.pem.tmp" "$name.pem"
    echo "made $out/$name.pem"
}

# A new CA invalidates every leaf signed by the old one: remake them all.
if ! have ca.key || ! have ca.pem; then
    make_ec_key ca.key
    cat >"$tmp/ca.ext" <<'EOF'
[req]
distinguished_name = dn
x509_extensions = v3_ca
prompt = no
[dn]
CN = deletion-gateway development CA
O = extend-deletion-gateway (development only)
[v3_ca]
basicConstraints = critical, CA:true, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF
    openssl req -x509 -new -key ca.key -config "$tmp/ca.ext" -days "$days_ca" -sha256 \
        -set_serial "0x$(openssl rand -hex 16)" -out ca.pem.tmp
    chmod 644 ca.pem.tmp
    mv ca.pem.tmp ca.pem
    echo "made $out/ca.pem"
    remake_leaves=1
fi

cat >"$tmp/server.ext" <<'EOF'
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
cat >"$tmp/client.ext" <<'EOF'
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF

make_leaf server "/CN=localhost/O=extend-deletion-gateway (development only)" "$tmp/server.ext"
make_leaf client-crm "/CN=crm/O=extend-deletion-gateway (development only)" "$tmp/client.ext"
make_leaf client-other "/CN=other/O=extend-deletion-gateway (development only)" "$tmp/client.ext"

if ! have receipt-key.pem; then
    openssl genpkey -algorithm ED25519 -out receipt-key.pem.tmp
    chmod 600 receipt-key.pem.tmp
    mv receipt-key.pem.tmp receipt-key.pem
    echo "made $out/receipt-key.pem"
fi

chmod 600 ./*.key receipt-key.pem
