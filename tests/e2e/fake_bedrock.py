"""A fake AWS Bedrock runtime: the Converse API (``POST /model/{modelId}/converse``) and
ConverseStream (``POST /model/{modelId}/converse-stream``, binary event-stream framing), and
InvokeModel for Claude's Messages API (``POST /model/{modelId}/invoke`` and
``/invoke-with-response-stream``: Anthropic's body with ``anthropic_version`` and without
``model`` or ``stream``; the stream's ``chunk`` events carry base64 Anthropic events).

Written from AWS's public references:

* Converse: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html
* ConverseStream: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html
* InvokeModel with Claude: https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-anthropic-claude-messages-request-response.html
  and https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_InvokeModelWithResponseStream.html
* Event-stream framing: https://docs.aws.amazon.com/transcribe/latest/dg/streaming-setting-up.html
* SigV4: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html
* InvokeModel: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_InvokeModel.html;
  Titan's ``{"inputText", "dimensions", "normalize"}`` -> ``{"embedding", "inputTextTokenCount"}``
  (https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-titan-embed-text.html),
  Cohere Embed's ``{"texts", "input_type", "embedding_types"}`` -> ``{"id", "embeddings",
  "texts", "response_type"}`` with the token count only in ``X-Amzn-Bedrock-Input-Token-Count``
  (https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-embed.html)
* Errors (``x-amzn-ErrorType`` header, ``{"message"}`` body):
  https://docs.aws.amazon.com/bedrock/latest/APIReference/CommonErrors.html

Every request, scripted or not, is checked as AWS checks it before anything else: a SigV4
``authorization`` recomputed with botocore's signer (an implementation independent of
Envoy's) from the received method, path, query, signed headers and the SHA-256 of the
received body, a ``x-amz-content-sha256`` that matches the body, a date within five
minutes, and the signed ``host`` equal to the Host received. A bad one gets AWS's 403
(``InvalidSignatureException`` / ``UnrecognizedClientException``) and is counted in
``signature_failures``. With ``api_key`` set, ``authorization: Bearer <key>`` (a Bedrock API
key) is accepted instead.

Streams are encoded here (``encode_message``) with the framing's CRC32s; a test checks that
botocore's own ``EventStreamBuffer`` decodes them.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import json
import struct
from typing import Any, Optional
from urllib.parse import unquote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

from fakes import Event, FakeProvider, Recorded, Reply, fake_vector, last_user_text

ACCESS_KEY = "AKIDFAKEBEDROCK00001"
SECRET_KEY = "fake-bedrock-secret-key-0123456789abcdefgh"
REGION = "us-east-1"
EVENT_STREAM = "application/vnd.amazon.eventstream"


def _header(name: str, value: str) -> bytes:
    n, v = name.encode(), value.encode()
    return struct.pack(">B", len(n)) + n + b"\x07" + struct.pack(">H", len(v)) + v


def encode_message(headers: dict, payload: bytes) -> bytes:
    """One event-stream message: prelude (lengths, CRC32), string headers, payload, CRC32."""
    h = b"".join(_header(k, v) for k, v in headers.items())
    total = 16 + len(h) + len(payload)
    prelude = struct.pack(">II", total, len(h))
    prelude += struct.pack(">I", binascii.crc32(prelude))
    body = prelude + h + payload
    return body + struct.pack(">I", binascii.crc32(body))


def converse_event(event_type: str, payload: dict) -> Event:
    """A ConverseStream ``event`` frame (``messageStart``, ``contentBlockDelta``, ...)."""
    return Event(raw=encode_message(
        {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
        json.dumps(payload).encode()))


def converse_exception(exception_type: str, message: str) -> Event:
    """An ``exception`` frame inside a stream (``throttlingException``, ...)."""
    return Event(raw=encode_message(
        {":exception-type": exception_type, ":content-type": "application/json",
         ":message-type": "exception"},
        json.dumps({"message": message}).encode()))


def converse_usage(input_tokens: int = 9, output_tokens: int = 5, cache_read: int = 0,
                   cache_write: int = 0) -> dict:
    u = {"inputTokens": input_tokens, "outputTokens": output_tokens,
         "totalTokens": input_tokens + output_tokens + cache_read + cache_write}
    if cache_read:
        u["cacheReadInputTokens"] = cache_read
    if cache_write:
        u["cacheWriteInputTokens"] = cache_write
    return u


def converse_message(content: Any = "Hello!", stop_reason: str = "end_turn",
                     usage: Optional[dict] = None) -> dict:
    """A Converse answer; ``content`` is a text or a list of content blocks."""
    blocks = [{"text": content}] if isinstance(content, str) else content
    return {"output": {"message": {"role": "assistant", "content": blocks}},
            "stopReason": stop_reason, "usage": usage or converse_usage(), "metrics": {"latencyMs": 12}}


def converse_stream(text: str = "Hello there!", stop_reason: str = "end_turn",
                    usage: Optional[dict] = None, tool_use: Optional[dict] = None) -> list:
    """A ConverseStream answer: text in pieces, an optional tool call, stop, usage."""
    events = [converse_event("messageStart", {"role": "assistant"})]
    index = 0
    if text:
        for i in range(0, len(text), 4):
            events.append(converse_event("contentBlockDelta", {
                "contentBlockIndex": 0, "delta": {"text": text[i:i + 4]}}))
        events.append(converse_event("contentBlockStop", {"contentBlockIndex": 0}))
        index = 1
    if tool_use:
        events.append(converse_event("contentBlockStart", {"contentBlockIndex": index, "start": {
            "toolUse": {"toolUseId": tool_use["toolUseId"], "name": tool_use["name"]}}}))
        args = json.dumps(tool_use["input"])
        for i in range(0, len(args), 7):
            events.append(converse_event("contentBlockDelta", {
                "contentBlockIndex": index, "delta": {"toolUse": {"input": args[i:i + 7]}}}))
        events.append(converse_event("contentBlockStop", {"contentBlockIndex": index}))
    events.append(converse_event("messageStop", {"stopReason": stop_reason}))
    events.append(converse_event("metadata", {"usage": usage or converse_usage(),
                                              "metrics": {"latencyMs": 12}}))
    return events


ANTHROPIC_VERSION = "bedrock-2023-05-31"


def invoke_chunk(event: dict) -> Event:
    """An InvokeModelWithResponseStream ``chunk`` frame carrying one Anthropic stream event."""
    data = base64.b64encode(json.dumps(event).encode()).decode()
    return converse_event("chunk", {"bytes": data})


def invoke_usage(input_tokens: int = 12, output_tokens: int = 6) -> dict:
    return {"input_tokens": input_tokens, "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}


def invoke_message(text: str = "Hello!", model: str = "claude-sonnet-4-5-20250929",
                   usage: Optional[dict] = None, thinking: Optional[tuple] = None) -> dict:
    """Claude's Message as InvokeModel answers it; ``thinking`` is (text, signature)."""
    content = [{"type": "thinking", "thinking": thinking[0], "signature": thinking[1]}] if thinking else []
    content.append({"type": "text", "text": text})
    return {"id": "msg_bdrk_01", "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": "end_turn", "stop_sequence": None,
            "usage": usage or invoke_usage()}


def invoke_stream(text: str = "Hello there!", usage: Optional[dict] = None,
                  thinking: Optional[tuple] = None) -> list:
    """Claude's stream as InvokeModelWithResponseStream sends it: Anthropic's events in
    ``chunk`` frames, Bedrock's invocation metrics on ``message_stop``."""
    u = usage or invoke_usage()
    events = [{"type": "message_start", "message": {**invoke_message("", usage={**u, "output_tokens": 1}),
                                                    "content": [], "stop_reason": None}}]
    index = 0
    if thinking:
        events += [{"type": "content_block_start", "index": 0,
                    "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
                   {"type": "content_block_delta", "index": 0,
                    "delta": {"type": "thinking_delta", "thinking": thinking[0]}},
                   {"type": "content_block_delta", "index": 0,
                    "delta": {"type": "signature_delta", "signature": thinking[1]}},
                   {"type": "content_block_stop", "index": 0}]
        index = 1
    events.append({"type": "content_block_start", "index": index,
                   "content_block": {"type": "text", "text": ""}})
    for i in range(0, len(text), 4):
        events.append({"type": "content_block_delta", "index": index,
                       "delta": {"type": "text_delta", "text": text[i:i + 4]}})
    events += [{"type": "content_block_stop", "index": index},
               {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": u["output_tokens"]}},
               {"type": "message_stop", "amazon-bedrock-invocationMetrics": {
                   "inputTokenCount": u["input_tokens"], "outputTokenCount": u["output_tokens"],
                   "invocationLatency": 120, "firstByteLatency": 40}}]
    return [invoke_chunk(e) for e in events]


def bedrock_error(status: int, error_type: str, message: str) -> Reply:
    """An error as Bedrock sends it: the type in ``x-amzn-ErrorType``, the message in JSON."""
    return Reply(status=status, json={"message": message}, headers={
        "x-amzn-ErrorType": f"{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/"})


def stream_reply(events: list) -> Reply:
    return Reply.sse(events, content_type=EVENT_STREAM)


def _parse_authorization(value: str) -> Optional[dict]:
    if not value.startswith("AWS4-HMAC-SHA256 "):
        return None
    parts = {}
    for item in value[len("AWS4-HMAC-SHA256 "):].split(","):
        k, _, v = item.strip().partition("=")
        parts[k] = v
    if not {"Credential", "SignedHeaders", "Signature"} <= set(parts):
        return None
    return parts


class _Verifier(SigV4Auth):
    """botocore's SigV4 signer over exactly the headers the request says it signed (botocore
    itself would leave out `user-agent`, which a signer may sign)."""

    def __init__(self, credentials: Credentials, service: str, region: str, signed: list) -> None:
        super().__init__(credentials, service, region)
        self._signed = signed

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        headers = HTTPHeaders()
        for name in self._signed:
            headers[name] = request.headers.get(name, "")
        return headers


def verify_sigv4(rec: Recorded, access_key: str, secret_key: str, region: str,
                 service: str = "bedrock") -> Optional[str]:
    """Why ``rec`` is not correctly signed, or None when it is (botocore recomputes it)."""
    auth = _parse_authorization(rec.headers.get("authorization", ""))
    if auth is None:
        return "missing or malformed SigV4 authorization"
    scope = auth["Credential"].split("/")
    if len(scope) != 5 or scope[0] != access_key:
        return f"unknown access key in {auth['Credential']!r}"
    if scope[2:] != [region, service, "aws4_request"]:
        return f"wrong credential scope {scope[1:]}"
    amz_date = rec.headers.get("x-amz-date", "")
    try:
        when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return f"bad x-amz-date {amz_date!r}"
    if abs((datetime.datetime.now(datetime.timezone.utc) - when).total_seconds()) > 300:
        return "x-amz-date is more than five minutes off"
    digest = hashlib.sha256(rec.body).hexdigest()
    if rec.headers.get("x-amz-content-sha256") != digest:
        return "x-amz-content-sha256 does not match the body received"
    signed = auth["SignedHeaders"].split(";")
    if "host" not in signed:
        return "host is not signed"
    headers = {name: rec.headers.get(name, "") for name in signed}
    request = AWSRequest(method=rec.method, url=f"http://{rec.headers.get('host', '')}{rec.raw_path}",
                         data=rec.body, headers=headers)
    request.context["timestamp"] = amz_date
    signer = _Verifier(Credentials(access_key, secret_key), service, region, signed)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if expected != auth["Signature"]:
        return "signature mismatch"
    return None


class BedrockFake(FakeProvider):
    """Bedrock runtime: Converse, ConverseStream and InvokeModel (Claude's Messages),
    signatures verified on every request."""

    kind = "bedrock"

    def __init__(self, *a: Any, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY,
                 region: str = REGION, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.access_key, self.secret_key, self.region = access_key, secret_key, region
        self.signature_failures: list = []
        self.signed_ok = 0

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.signature_failures = []
            self.signed_ok = 0

    def routes(self, rec: Recorded) -> Optional[str]:
        parts = rec.path.split("/")
        if rec.method == "POST" and len(parts) == 4 and parts[1] == "model" and \
                parts[3] in ("converse", "converse-stream", "invoke", "invoke-with-response-stream"):
            return parts[3]
        return None

    def model_id(self, rec: Recorded) -> str:
        return unquote(rec.path.split("/")[2])

    def not_found(self, rec: Recorded) -> Reply:
        return bedrock_error(404, "UnknownOperationException", f"no route {rec.method} {rec.path}")

    def auth_problem(self, rec: Recorded) -> Optional[Reply]:
        return None  # checked first, for every request (see _next_reply)

    def _check_signature(self, rec: Recorded) -> Optional[Reply]:
        authz = rec.headers.get("authorization", "")
        if self.api_key is not None and authz.startswith("Bearer "):
            if authz == f"Bearer {self.api_key}":
                return None
            self.signature_failures.append("bad API key")
            return bedrock_error(403, "UnrecognizedClientException", "The security token included in the request is invalid.")
        why = verify_sigv4(rec, self.access_key, self.secret_key, self.region)
        if why is None:
            with self._lock:
                self.signed_ok += 1
            return None
        with self._lock:
            self.signature_failures.append(why)
        return bedrock_error(403, "InvalidSignatureException",
                             f"The request signature we calculated does not match the signature you provided ({why}).")

    def _next_reply(self, rec: Recorded) -> Reply:
        # Scripted answers too: AWS checks the signature before anything else.
        if self.routes(rec) is not None:
            problem = self._check_signature(rec)
            if problem is not None:
                return problem
        return super()._next_reply(rec)

    def default_reply(self, rec: Recorded) -> Reply:
        body = rec.json
        # InvokeModel serves the embedding models and Claude's Messages bodies alike.
        if self.routes(rec) == "invoke" and "embed" in self.model_id(rec):
            return self._invoke(self.model_id(rec), body)
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
            return bedrock_error(400, "ValidationException", "messages is required")
        if "model" in body or "stream" in body:
            return bedrock_error(400, "ValidationException", "extraneous key in the request body")
        route = self.routes(rec)
        if route in ("invoke", "invoke-with-response-stream"):
            if body.get("anthropic_version") != ANTHROPIC_VERSION:
                return bedrock_error(400, "ValidationException",
                                     f"anthropic_version must be {ANTHROPIC_VERSION}")
            text = f"echo: {last_user_text(body['messages'])}"
            if route == "invoke":
                return Reply(json=invoke_message(text))
            return stream_reply(invoke_stream(text))
        for i, m in enumerate(body["messages"]):
            if m.get("role") not in ("user", "assistant") or not isinstance(m.get("content"), list):
                return bedrock_error(400, "ValidationException", f"messages.{i} is malformed")
        text = f"echo: {_last_user_text(body['messages'])}"
        if self.routes(rec) == "converse-stream":
            return stream_reply(converse_stream(text))
        return Reply(json=converse_message(text))


    @staticmethod
    def _invoke(model: str, body: Any) -> Reply:
        """The embedding models' InvokeModel answers: a vector from ``fake_vector`` per text,
        one token a word; Cohere's count only in the header, as Bedrock sends it."""
        if not isinstance(body, dict):
            return bedrock_error(400, "ValidationException", "Malformed input request")
        if "titan-embed-text" in model:
            text = body.get("inputText")
            extra = set(body) - {"inputText", "dimensions", "normalize", "embeddingTypes"}
            if not isinstance(text, str) or not text or extra:
                return bedrock_error(400, "ValidationException",
                                     f"Malformed input request: extraneous key {sorted(extra)} is not permitted"
                                     if extra else "Malformed input request: inputText is required")
            dims = body.get("dimensions", 1024)
            if dims not in (256, 512, 1024):
                return bedrock_error(400, "ValidationException", "dimensions must be 256, 512 or 1024")
            vector = fake_vector(text, dims)
            tokens = len(text.split())
            return Reply(json={"embedding": vector, "inputTextTokenCount": tokens,
                               "embeddingsByType": {"float": vector}},
                         headers={"X-Amzn-Bedrock-Input-Token-Count": str(tokens)})
        if "cohere.embed" in model:
            texts, types = body.get("texts"), body.get("embedding_types")
            extra = set(body) - {"texts", "input_type", "truncate", "embedding_types", "output_dimension",
                                 "images", "inputs", "max_tokens"}
            if extra or not isinstance(texts, list) or not 0 < len(texts) <= 96 or \
                    body.get("input_type") not in ("search_document", "search_query", "classification",
                                                   "clustering"):
                return bedrock_error(400, "ValidationException", "Malformed input request")
            dims = body.get("output_dimension", 8)
            vectors = [fake_vector(t, dims) for t in texts]
            headers = {"X-Amzn-Bedrock-Input-Token-Count": str(sum(len(t.split()) for t in texts))}
            if types is None:
                return Reply(json={"id": "emb-fake", "embeddings": vectors, "texts": texts,
                                   "response_type": "embeddings_floats"}, headers=headers)
            if types != ["float"]:
                return bedrock_error(400, "ValidationException", f"embedding_types {types} not scripted")
            return Reply(json={"id": "emb-fake", "embeddings": {"float": vectors}, "texts": texts,
                               "response_type": "embeddings_by_type"}, headers=headers)
        return bedrock_error(400, "ValidationException", f"{model} is not scripted for InvokeModel")


def _last_user_text(messages: list) -> str:
    """The text of the last user turn, tool results included."""
    for m in reversed(messages):
        if m.get("role") == "user":
            parts = []
            for b in m.get("content", []):
                if not isinstance(b, dict):
                    continue
                parts.append(b.get("text", ""))
                for c in (b.get("toolResult") or {}).get("content", []):
                    parts.append(c.get("text", ""))
            return "".join(parts)
    return last_user_text([])
