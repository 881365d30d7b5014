#!/usr/bin/env bash
# Makes the signatures of source::verify's unit tests with real gpg and ssh-keygen.
# Run from this folder; then update the fingerprints in ../tests.rs.
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export GNUPGHOME=$work/gnupg
mkdir -m 700 "$GNUPGHOME"
quiet=(--batch --yes --pinentry-mode loopback --passphrase '')
fpr() { gpg --with-colons --list-keys "$1" | awk -F: '/^fpr/ {print $10; exit}'; }
printf 'tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor Ada <ada@example.com> 1765000000 +0000\ncommitter Ada <ada@example.com> 1765000000 +0000\n\nfleet: first\n' >payload

# Ada: a certification-only primary key and a signing subkey.
gpg "${quiet[@]}" --quick-gen-key 'Ada <ada@example.com>' ed25519 cert 2y
gpg "${quiet[@]}" --quick-add-key "$(fpr ada@example.com)" ed25519 sign 2y
gpg --armor --export ada@example.com >ada.asc
gpg "${quiet[@]}" -u ada@example.com --detach-sign --armor -o payload.ada.asc payload

# Bob: one key that signs; also a SHA-1 signature and a text-mode one.
gpg "${quiet[@]}" --quick-gen-key 'Bob <bob@example.com>' ed25519 sign 2y
gpg --armor --export bob@example.com >bob.asc
gpg "${quiet[@]}" -u bob@example.com --detach-sign --armor -o payload.bob.asc payload
gpg "${quiet[@]}" -u bob@example.com --digest-algo SHA1 --detach-sign --armor -o payload.bob-sha1.asc payload
gpg "${quiet[@]}" -u bob@example.com --textmode --detach-sign --armor -o payload.bob-text.asc payload

# Ada's certificate as others see it once Bob certified her user ID.
gpg "${quiet[@]}" -u bob@example.com --quick-sign-key "$(fpr ada@example.com)"
gpg --armor --export ada@example.com >ada-certified-by-bob.asc

# Eve: signed, then revoked her key.
gpg "${quiet[@]}" --quick-gen-key 'Eve <eve@example.com>' ed25519 sign 2y
gpg "${quiet[@]}" -u eve@example.com --detach-sign --armor -o payload.eve.asc payload
# gpg made a revocation certificate with the key; its first line is guarded by a colon.
sed 's/^:-----BEGIN/-----BEGIN/' "$GNUPGHOME/openpgp-revocs.d/$(fpr eve@example.com).rev" |
  gpg "${quiet[@]}" --import
gpg --armor --export eve@example.com >eve-revoked.asc

# Carol and Dave: SSH keys; Carol is an allowed signer.
ssh-keygen -q -t ed25519 -N '' -C carol -f "$work/carol"
ssh-keygen -q -t ed25519 -N '' -C dave -f "$work/dave"
echo "carol@example.com $(cut -d' ' -f1,2 "$work/carol.pub")" >allowed_signers
cut -d' ' -f1,2 "$work/dave.pub" >dave.pub
rm -f payload.sig; ssh-keygen -Y sign -n git -f "$work/carol" payload && mv payload.sig payload.carol.sig
ssh-keygen -Y sign -n file -f "$work/carol" payload && mv payload.sig payload.carol-file.sig
ssh-keygen -Y sign -n git -f "$work/dave" payload && mv payload.sig payload.dave.sig

gpg --with-colons --list-keys --with-subkey-fingerprint | grep -E '^(uid|fpr)' | cut -d: -f1,10
ssh-keygen -l -f "$work/carol.pub"
