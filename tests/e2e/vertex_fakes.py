"""Fake Google Cloud services for the Vertex AI tests.

* :class:`MetadataFake` -- the GCE / GKE metadata server's token endpoint,
  ``GET /computeMetadata/v1/instance/service-accounts/default/token`` with
  ``Metadata-Flavor: Google``, answering ``{"access_token", "expires_in", "token_type"}``
  (https://cloud.google.com/compute/docs/access/authenticate-workloads#applications).
  Each fetch issues a new token with a short lifetime, so a refresh happens within a test.
* :class:`VertexFake` -- Vertex AI's publisher model endpoints, both publishers:
  ``POST /v1/projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent`` and
  ``:streamGenerateContent?alt=sse``
  (https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/inference), and
  ``.../publishers/anthropic/models/{m}:rawPredict`` / ``:streamRawPredict`` with an
  Anthropic Messages body carrying ``anthropic_version: vertex-2023-10-16`` and no ``model``
  (https://cloud.google.com/vertex-ai/generative-ai/docs/partner-models/claude/use-claude),
  and the text embedding models' ``.../publishers/google/models/{m}:predict`` with
  ``{"instances": [{"content", "task_type"}], "parameters": {"outputDimensionality"}}``,
  answering ``{"predictions": [{"embeddings": {"values", "statistics": {"token_count",
  "truncated"}}}]}``; at most 250 instances, one for ``gemini-embedding-001``
  (https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/text-embeddings-api).
  It accepts only ``Authorization: Bearer <token>`` with a token the metadata fake (or
  another issuer) issued and that has not expired; anything else gets Google's 401
  ``UNAUTHENTICATED``.
* :class:`OAuthFake` -- Google's OAuth2 token endpoint for service accounts (the JWT bearer
  grant, https://developers.google.com/identity/protocols/oauth2/service-account#httprest):
  ``POST /token`` with ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`` and an
  RS256 ``assertion``, whose signature it verifies with the key's public half (``openssl``)
  and whose claims (``iss``, ``aud``, ``scope``, ``iat``/``exp``) it checks.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import tempfile
import threading
import time
import urllib.parse
from typing import Optional

from fakes import (Event, FakeProvider, Recorded, Reply, _pieces, anthropic_error, anthropic_message,
                   anthropic_stream, fake_vector, gemini_response, last_user_text)

TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"


def google_error(status: int, message: str, code_name: str) -> Reply:
    """Google's error envelope (https://cloud.google.com/apis/design/errors)."""
    return Reply(status=status, json={"error": {"code": status, "message": message, "status": code_name}})


class MetadataFake(FakeProvider):
    """The metadata server's token endpoint; ``failing`` makes it answer 500."""

    kind = "gcp-metadata"

    def __init__(self, *a, lifetime: int = 4, **kw) -> None:
        super().__init__(*a, **kw)
        self.lifetime = lifetime
        self.failing = False
        self._issued: dict = {}  # token -> monotonic expiry
        self._issued_lock = threading.Lock()

    def routes(self, rec: Recorded) -> Optional[str]:
        return "token" if rec.method == "GET" and rec.path == TOKEN_PATH else None

    def auth_problem(self, rec: Recorded) -> Optional[Reply]:
        if rec.headers.get("metadata-flavor") != "Google":
            return Reply(status=403, body=b"Missing Metadata-Flavor:Google header.", content_type="text/html")
        return None

    def default_reply(self, rec: Recorded) -> Reply:
        if self.failing:
            return Reply(status=500, body=b"internal error", content_type="text/plain")
        token = f"ya29.fake-{self._next_id()}-{int(time.time() * 1000)}"
        with self._issued_lock:
            self._issued[token] = time.monotonic() + self.lifetime
        return Reply(json={"access_token": token, "expires_in": self.lifetime, "token_type": "Bearer"})

    def issued(self) -> list:
        """Tokens issued so far, oldest first."""
        with self._issued_lock:
            return list(self._issued)

    def valid(self, token: str) -> bool:
        with self._issued_lock:
            expiry = self._issued.get(token)
        return expiry is not None and time.monotonic() < expiry

    def fetches(self) -> int:
        return len([r for r in self.requests if r.path == TOKEN_PATH])


_VERTEX_PATH = re.compile(
    r"^/v1/projects/(?P<project>[a-z0-9-]+)/locations/(?P<location>[a-z0-9-]+)"
    r"/publishers/(?P<publisher>google|anthropic)/models/(?P<model>[^/:]+)"
    r":(?P<op>generateContent|streamGenerateContent|rawPredict|streamRawPredict|predict)$")


class VertexFake(FakeProvider):
    """Vertex AI's Gemini and Claude endpoints, checking the bearer token."""

    kind = "vertex"

    def __init__(self, *a, metadata: MetadataFake, **kw) -> None:
        super().__init__(*a, **kw)
        self.issuers = [metadata]

    def routes(self, rec: Recorded) -> Optional[str]:
        m = _VERTEX_PATH.match(rec.path)
        if rec.method != "POST" or not m:
            return None
        publisher, op = m.group("publisher"), m.group("op")
        if publisher == "google" and op in ("generateContent", "streamGenerateContent", "predict"):
            return op
        if publisher == "anthropic" and op in ("rawPredict", "streamRawPredict"):
            return op
        return None

    def not_found(self, rec: Recorded) -> Reply:
        return google_error(404, f"Publisher model path not found: {rec.path}", "NOT_FOUND")

    def auth_problem(self, rec: Recorded) -> Optional[Reply]:
        auth = rec.headers.get("authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
        if not token or not any(i.valid(token) for i in self.issuers):
            return google_error(401, "Request had invalid authentication credentials. Expected OAuth 2 access "
                                     "token, login cookie or other valid authentication credential.",
                                "UNAUTHENTICATED")
        return None

    def default_reply(self, rec: Recorded) -> Reply:
        m = _VERTEX_PATH.match(rec.path)
        model, op = m.group("model"), m.group("op")
        body = rec.json if isinstance(rec.json, dict) else {}
        if m.group("publisher") == "anthropic":
            return self._claude(model, op, body)
        if op == "predict":
            return self._embed(model, body)
        text = ""
        for c in reversed(body.get("contents") or []):
            if isinstance(c, dict) and c.get("role", "user") == "user":
                text = " ".join(p.get("text", "") for p in c.get("parts") or [] if isinstance(p, dict))
                break
        answer = f"echo: {text}"
        if op == "streamGenerateContent":
            if rec.query.get("alt") != "sse":
                return google_error(400, "only alt=sse is scripted", "INVALID_ARGUMENT")
            pieces = _pieces(answer)
            events = []
            for i, p in enumerate(pieces):
                chunk = {"candidates": [{"content": {"role": "model", "parts": [{"text": p}]}, "index": 0}],
                         "modelVersion": model}
                if i == len(pieces) - 1:
                    chunk["candidates"][0]["finishReason"] = "STOP"
                    chunk["usageMetadata"] = {"promptTokenCount": 9, "candidatesTokenCount": 5,
                                              "totalTokenCount": 14}
                events.append(Event(chunk))
            return Reply.sse(events)
        return Reply(json=gemini_response(answer, model=model))

    @staticmethod
    def _embed(model: str, body: dict) -> Reply:
        """Text embeddings: a ``fake_vector`` per instance, one token a word."""
        instances = body.get("instances")
        limit = 1 if model.startswith("gemini-embedding") else 250
        if not isinstance(instances, list) or not 0 < len(instances) <= limit:
            return google_error(400, f"{model} takes 1 to {limit} instances per request", "INVALID_ARGUMENT")
        dims = (body.get("parameters") or {}).get("outputDimensionality", 8)
        predictions = []
        for i in instances:
            text = i.get("content") if isinstance(i, dict) else None
            if not isinstance(text, str) or set(i) - {"content", "task_type", "title"}:
                return google_error(400, "Invalid instance: content is required", "INVALID_ARGUMENT")
            predictions.append({"embeddings": {
                "statistics": {"truncated": False, "token_count": len(text.split())},
                "values": fake_vector(text, dims)}})
        return Reply(json={"predictions": predictions, "metadata": {
            "billableCharacterCount": sum(len(i["content"]) for i in instances)}})

    def _claude(self, model: str, op: str, body: dict) -> Reply:
        if body.get("anthropic_version") != "vertex-2023-10-16":
            return anthropic_error(400, "anthropic_version: vertex-2023-10-16 is required")
        if "model" in body:
            return anthropic_error(400, "model: Extra inputs are not permitted")
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs or "max_tokens" not in body:
            return anthropic_error(400, "messages and max_tokens are required")
        text = f"echo: {last_user_text(msgs)}"
        mid = f"msg_vrtx_{self._next_id()}"
        if op == "streamRawPredict":
            if body.get("stream") is not True:
                return anthropic_error(400, "streamRawPredict needs stream: true")
            return Reply.sse(anthropic_stream(text, model=model, id=mid))
        return Reply(json=anthropic_message(text, model=model, id=mid))


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class OAuthFake(FakeProvider):
    """Google's token endpoint for the JWT bearer grant, verifying the assertion."""

    kind = "gcp-oauth"

    def __init__(self, *a, public_key_pem: str, client_email: str, lifetime: int = 3600, **kw) -> None:
        super().__init__(*a, **kw)
        self.public_key_pem = public_key_pem
        self.client_email = client_email
        self.lifetime = lifetime
        self._issued: dict = {}
        self._issued_lock = threading.Lock()
        self.verified = 0  # assertions whose signature and claims checked out

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    def routes(self, rec: Recorded) -> Optional[str]:
        return "token" if rec.method == "POST" and rec.path == "/token" else None

    def _refuse(self, why: str) -> Reply:
        return Reply(status=400, json={"error": "invalid_grant", "error_description": why})

    def default_reply(self, rec: Recorded) -> Reply:
        form = urllib.parse.parse_qs(rec.body.decode())
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            return self._refuse("unsupported grant_type")
        parts = (form.get("assertion") or [""])[0].split(".")
        if len(parts) != 3:
            return self._refuse("the assertion is not a JWT")
        header, claims = (json.loads(_b64url_decode(p)) for p in parts[:2])
        if header.get("alg") != "RS256":
            return self._refuse("alg must be RS256")
        with tempfile.NamedTemporaryFile(suffix=".sig") as sig:
            sig.write(_b64url_decode(parts[2]))
            sig.flush()
            check = subprocess.run(["openssl", "dgst", "-sha256", "-verify", self.public_key_pem,
                                    "-signature", sig.name], input=f"{parts[0]}.{parts[1]}".encode(),
                                   capture_output=True, timeout=30)
        if check.returncode != 0:
            return self._refuse("Invalid JWT Signature.")
        now = time.time()
        if (claims.get("iss") != self.client_email or claims.get("aud") != self.token_uri
                or "cloud-platform" not in claims.get("scope", "")
                or not claims.get("iat", 0) - 60 <= now <= claims.get("exp", 0)
                or claims["exp"] - claims["iat"] > 3600):
            return self._refuse(f"bad claims {sorted(claims)}")
        self.verified += 1
        token = f"ya29.sa-{self._next_id()}"
        with self._issued_lock:
            self._issued[token] = time.monotonic() + self.lifetime
        return Reply(json={"access_token": token, "expires_in": self.lifetime, "token_type": "Bearer"})

    def issued(self) -> list:
        with self._issued_lock:
            return list(self._issued)

    def valid(self, token: str) -> bool:
        with self._issued_lock:
            expiry = self._issued.get(token)
        return expiry is not None and time.monotonic() < expiry
