#!/usr/bin/env python3
"""A local HTTPS webhook receiver for the demo: prints each notification and verifies its Standard
Webhooks signature with an implementation of its own (Python's hmac), independent of the dispatcher.

  hack/receiver.py --port 8443 --cert server.crt --key server.key --secret whsec_... \
      [--count 1] [--out received.jsonl]

Exits 0 after --count verified notifications, 1 on a bad signature or timeout.
"""
import argparse, base64, hashlib, hmac, json, ssl, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--cert", required=True)
p.add_argument("--key", required=True)
p.add_argument("--secret", required=True, help="whsec_<base64 key>")
p.add_argument("--count", type=int, default=1)
p.add_argument("--timeout", type=float, default=120)
p.add_argument("--out")
args = p.parse_args()
key = base64.b64decode(args.secret.removeprefix("whsec_"))
state = {"verified": 0, "bad": 0}


def verify(headers, body):
    msg_id, ts, sigs = headers.get("webhook-id"), headers.get("webhook-timestamp"), headers.get("webhook-signature")
    if not (msg_id and ts and sigs):
        return "missing webhook-id / webhook-timestamp / webhook-signature"
    if abs(time.time() - int(ts)) > 300:
        return "timestamp outside the 5-minute tolerance"
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
    for sig in sigs.split():
        version, _, value = sig.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return None
    return "no v1 signature matches"


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        problem = verify(self.headers, body)
        self.send_response(401 if problem else 204)
        self.end_headers()
        print(f"\n[receiver] POST {self.path}  content-type: {self.headers.get('content-type')}")
        print(f"[receiver] webhook-id: {self.headers.get('webhook-id')}")
        print(f"[receiver] webhook-signature: {self.headers.get('webhook-signature')}")
        if self.headers.get("authorization"):
            print(f"[receiver] authorization: {self.headers.get('authorization')} (a secretRef header)")
        try:
            print(json.dumps(json.loads(body), indent=2))
        except ValueError:
            print(body[:2000])
        if problem:
            print(f"[receiver] SIGNATURE INVALID: {problem}")
            state["bad"] += 1
        else:
            print("[receiver] signature verified (Standard Webhooks v1, HMAC-SHA256)")
            state["verified"] += 1
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps({"headers": dict(self.headers), "body": body.decode(errors="replace"),
                                    "verified": problem is None}) + "\n")
        sys.stdout.flush()

    def log_message(self, *_):
        pass


server = HTTPServer(("127.0.0.1", args.port), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(args.cert, args.key)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.timeout = 0.5
deadline = time.time() + args.timeout
print(f"[receiver] listening on https://127.0.0.1:{args.port}", flush=True)
while state["verified"] < args.count and state["bad"] == 0 and time.time() < deadline:
    server.handle_request()
sys.exit(0 if state["verified"] >= args.count and state["bad"] == 0 else 1)
