#!/usr/bin/env python3
"""A local webhook receiver for `make demo`: prints each notification fleetgate sends,
with whether its X-Fleetgate-Signature matches the shared token. Usage:
notify-receiver.py TOKEN OUT_DIR; writes OUT_DIR/port, then OUT_DIR/<n>.json per delivery."""
import hashlib
import hmac
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

token, out = sys.argv[1].encode(), sys.argv[2]
count = 0


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        global count
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        expected = "sha256=" + hmac.new(token, body, hashlib.sha256).hexdigest()
        signed = hmac.compare_digest(expected, self.headers.get("X-Fleetgate-Signature", ""))
        count += 1
        with open(os.path.join(out, f"{count}.json"), "w") as f:
            json.dump({"signature": "valid" if signed else "INVALID", "body": json.loads(body)}, f, indent=2)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", 0), Handler)
with open(os.path.join(out, "port"), "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
