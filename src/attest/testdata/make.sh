#!/usr/bin/env bash
# The keys the attest unit tests use, made as the docs tell a platform owner to make
# them: ed25519 with openssl (PKCS#8 PEM private keys, SubjectPublicKeyInfo PEM public
# keys), and a P-256 key that must be refused. Test keys only: never trust them.
set -euo pipefail
cd "$(dirname "$0")"
for name in signing other; do
  openssl genpkey -algorithm ed25519 -out "$name.pem"
  openssl pkey -in "$name.pem" -pubout -out "$name.pub"
done
openssl genpkey -algorithm ec -pkeyopt ec_paramgen_curve:P-256 -out p256.pem
