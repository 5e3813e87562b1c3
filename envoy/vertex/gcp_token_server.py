#!/usr/bin/env python3
"""A token server for the gateway's Vertex AI deployments outside Google Cloud.

It trades a service-account key file for OAuth2 access tokens (the JWT bearer grant of
https://developers.google.com/identity/protocols/oauth2/service-account#httprest: an RS256
JWT signed with the key, posted to the key's `token_uri`) and serves them with the metadata
server's protocol, `GET /computeMetadata/v1/instance/service-accounts/default/token` with
`Metadata-Flavor: Google`, answering `{"access_token", "expires_in", "token_type"}`. Point
`general_settings.gcp_token_url` at it: the gateway fetches and refreshes tokens from it as
it does from the metadata server, and the module needs no RSA code.

Python's standard library and the `openssl` command only. It listens on 127.0.0.1 unless
told otherwise, keeps one token until five minutes before it expires, and never prints a
token or the key.

    python3 envoy/vertex/gcp_token_server.py --key-file sa.json --port 8181
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
REFRESH_MARGIN = 300  # seconds before expiry when a new token is fetched


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class KeyFile:
    """A service-account key: its email, token URI and private key (kept in a 0600 file
    for `openssl`, removed on exit)."""

    def __init__(self, path: str) -> None:
        with open(path, encoding="utf-8") as f:
            key = json.load(f)
        if key.get("type") != "service_account":
            raise SystemExit(f"{path}: not a service-account key file (type is {key.get('type')!r})")
        self.email = key["client_email"]
        self.key_id = key.get("private_key_id")
        self.token_uri = key.get("token_uri") or DEFAULT_TOKEN_URI
        fd, self.pem_path = tempfile.mkstemp(prefix="gcp-key-", suffix=".pem")
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key["private_key"])

    def close(self) -> None:
        try:
            os.unlink(self.pem_path)
        except FileNotFoundError:
            pass

    def assertion(self, scope: str, now: int) -> str:
        """The signed JWT the token endpoint trades for an access token."""
        header = {"alg": "RS256", "typ": "JWT"}
        if self.key_id:
            header["kid"] = self.key_id
        claims = {"iss": self.email, "scope": scope, "aud": self.token_uri, "iat": now, "exp": now + 3600}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        signed = subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.pem_path],
                                input=signing_input.encode(), capture_output=True, timeout=30)
        if signed.returncode != 0:
            raise RuntimeError("openssl could not sign with the key")
        return f"{signing_input}.{b64url(signed.stdout)}"


class TokenSource:
    """One token at a time, fetched again shortly before it expires."""

    def __init__(self, key: KeyFile, scope: str) -> None:
        self.key, self.scope = key, scope
        self.lock = threading.Lock()
        self.token: str | None = None
        self.expires_at = 0.0
        self.lifetime = 3600.0

    def get(self) -> tuple:
        with self.lock:
            now = time.time()
            if self.token is None or now + min(REFRESH_MARGIN, self.lifetime / 2) >= self.expires_at:
                self._fetch(int(now))
            return self.token, max(int(self.expires_at - time.time()), 0)

    def _fetch(self, now: int) -> None:
        form = urllib.parse.urlencode({"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                                       "assertion": self.key.assertion(self.scope, now)}).encode()
        req = urllib.request.Request(self.key.token_uri, data=form, method="POST",
                                     headers={"content-type": "application/x-www-form-urlencoded"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                answer = json.load(resp)
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"the token endpoint answered {e.code}") from None
        self.token = answer["access_token"]
        self.lifetime = float(answer["expires_in"])
        self.expires_at = now + self.lifetime
        print(f"access token refreshed for {self.key.email}; it expires in {int(self.lifetime)} s",
              file=sys.stderr, flush=True)


def serve(source: TokenSource, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # no access log: quiet, and nothing secret
            pass

        def do_GET(self) -> None:  # noqa: N802 - stdlib naming
            if self.path.split("?")[0] != TOKEN_PATH:
                return self._reply(404, b"not found", "text/plain")
            if self.headers.get("Metadata-Flavor") != "Google":
                return self._reply(403, b"Missing Metadata-Flavor:Google header.", "text/plain")
            try:
                token, expires_in = source.get()
            except Exception as e:  # noqa: BLE001 - any failure is a 500 the gateway retries
                print(f"token fetch failed: {e}", file=sys.stderr, flush=True)
                return self._reply(500, b"token fetch failed", "text/plain")
            body = json.dumps({"access_token": token, "expires_in": expires_in, "token_type": "Bearer"})
            self._reply(200, body.encode(), "application/json")

        def _reply(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def main(argv: list | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--key-file", required=True, help="the service-account key (JSON)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8181)
    p.add_argument("--scope", default=SCOPE)
    args = p.parse_args(argv)
    key = KeyFile(args.key_file)

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    server = serve(TokenSource(key, args.scope), args.host, args.port)
    print(f"serving tokens for {key.email} on http://{args.host}:{server.server_address[1]}{TOKEN_PATH}",
          file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        key.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
