"""Verifies a DSSE envelope (JSON file) against an ed25519 public key (PEM) with
securesystemslib, the reference implementation, independently of fleetgate's own code:

    python3 dsse-verify.py ENVELOPE.json PUBLIC.pem

Exit 0 and prints the payload type when one signature of that key verifies; exit 1
otherwise. The key id is taken from the envelope: the signature alone decides."""
import json
import sys

from cryptography.hazmat.primitives.serialization import load_pem_public_key
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey

envelope = Envelope.from_dict(json.load(open(sys.argv[1])))
keyid = next(iter(envelope.signatures))
with open(sys.argv[2], "rb") as pem:
    key = SSlibKey.from_crypto(load_pem_public_key(pem.read()), keyid=keyid)
try:
    envelope.verify([key], 1)
except Exception as e:  # VerificationError, or a malformed signature
    print(f"not verified: {e}")
    sys.exit(1)
print(f"verified: {envelope.payload_type}")
