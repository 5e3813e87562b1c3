"""`POST /v1/embeddings` in a real Envoy, driven by the official `openai` SDK
(`embeddings.create`): an OpenAI-compatible, a Gemini (`batchEmbedContents`) and a Cohere
(`/v2/embed`) deployment, floats and base64, `dimensions`; a fallback from a failing
embedding deployment to another provider; refusals of what cannot be embedded; a virtual
key's budget reserved from the input and refused once spent; and the stats and the access
log counting each request with its operation and cost.
"""

from __future__ import annotations

import base64
import json
import struct
import time
import urllib.request

import openai
import pytest

from fakes import CohereFake, GeminiFake, Reply, cohere_error, fake_vector, openai_error
from harness import deployment, gateway_for_test, key_sha256, openai_deployment, running_gateway

GEMINI_KEY_ENV, GEMINI_KEY = "FAKE_GEMINI_KEY", "AIza-fake-gemini-provider-key-0123456789"
COHERE_KEY_ENV, COHERE_KEY = "FAKE_COHERE_KEY", "co-fake-cohere-provider-key-0123456789"
EMBEDDER_KEY = "sk-gw-test-embedder-0123456789abcdef"
# `embed-pricey` costs $1,000 per million tokens: 100 tokens cost $0.10.
PRICEY_USD_PER_TOKEN = 0.001
BUDGET_USD = 0.25


def _floats(b64: str) -> list:
    raw = base64.b64decode(b64)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def _close(a: list, b: list) -> bool:
    return len(a) == len(b) and all(abs(x - y) < 1e-6 for x, y in zip(a, b))


@pytest.fixture(scope="module")
def gemini_fake():
    with GeminiFake(name="gemini", api_key=GEMINI_KEY) as f:
        yield f


@pytest.fixture(scope="module")
def cohere_fake():
    with CohereFake(name="cohere", api_key=COHERE_KEY) as f:
        yield f


@pytest.fixture(scope="module")
def emb_session(tmp_path_factory, openai_fake, anthropic_fake, gemini_fake, cohere_fake):
    o = openai_fake.url
    models = [
        openai_deployment("embed-openai", "text-embedding-3-small", o),
        deployment("embed-gemini", "gemini/gemini-embedding-001", gemini_fake.url, GEMINI_KEY_ENV),
        deployment("embed-cohere", "cohere/embed-v4.0", cohere_fake.url, COHERE_KEY_ENV),
        openai_deployment("embed-fb", "text-embedding-3-large", o),
        openai_deployment("embed-pricey", "my-embedder", o, input_cost_per_token=PRICEY_USD_PER_TOKEN,
                          output_cost_per_token=0.0),
    ]
    models[-1]["model_info"] = {"mode": "embedding"}
    with running_gateway(
            tmp_path_factory.mktemp("embeddings"), openai_fake, anthropic_fake, extra_models=models,
            env_extra={GEMINI_KEY_ENV: GEMINI_KEY, COHERE_KEY_ENV: COHERE_KEY},
            router_settings={"fallbacks": [{"embed-fb": ["embed-cohere"]}]},
            config_extra={"virtual_keys": [{"name": "embedder", "key_sha256": key_sha256(EMBEDDER_KEY),
                                            "max_budget": BUDGET_USD}]}) as g:
        yield g


@pytest.fixture
def emb(emb_session, gemini_fake, cohere_fake, request):
    yield from gateway_for_test(emb_session, request, gemini_fake, cohere_fake)


def test_openai_compatible_floats_and_tokens(emb):
    raw = emb.client().embeddings.with_raw_response.create(
        model="embed-openai", input=["hello world", "goodbye"], encoding_format="float")
    r = raw.parse()
    assert [d.embedding for d in r.data] == [fake_vector("hello world"), fake_vector("goodbye")]
    assert [d.index for d in r.data] == [0, 1]
    assert r.usage.prompt_tokens == 3 and r.usage.total_tokens == 3
    assert raw.headers["x-llm-provider"] == "openai"
    assert raw.headers["x-llm-model"] == "text-embedding-3-small"
    sent = emb.openai.last
    assert sent.path == "/v1/embeddings"
    assert sent.headers["authorization"] == f"Bearer {emb.openai_key}"
    # Only the model is rewritten.
    assert sent.json == {"model": "text-embedding-3-small", "input": ["hello world", "goodbye"],
                         "encoding_format": "float"}
    # Token arrays go through as they are.
    r = emb.client().embeddings.create(model="embed-openai", input=[[9906, 1917], [15339]],
                                       encoding_format="float", dimensions=4)
    assert len(r.data) == 2 and len(r.data[0].embedding) == 4
    assert emb.openai.last.json["input"] == [[9906, 1917], [15339]]
    assert r.usage.prompt_tokens == 3


def test_openai_compatible_base64_stays_bytes(emb):
    # The SDK asks for base64 itself when the caller names no format, and decodes it.
    r = emb.client().embeddings.create(model="embed-openai", input="hello world", dimensions=6)
    assert emb.openai.last.json["encoding_format"] == "base64"
    assert emb.openai.last.json["dimensions"] == 6
    assert _close(r.data[0].embedding, fake_vector("hello world", 6))
    # Asked for explicitly, the string is the provider's, byte for byte.
    r = emb.client().embeddings.create(model="embed-openai", input="hello world", encoding_format="base64")
    assert r.data[0].embedding == base64.b64encode(
        struct.pack("<8f", *fake_vector("hello world"))).decode()


def test_gemini_batch_embed_contents(emb, gemini_fake):
    raw = emb.client().embeddings.with_raw_response.create(
        model="embed-gemini", input=["What is the meaning of life?", "How does the brain work?"],
        dimensions=4, encoding_format="float", extra_body={"input_type": "search_query"})
    r = raw.parse()
    assert [d.embedding for d in r.data] == [fake_vector("What is the meaning of life?", 4),
                                             fake_vector("How does the brain work?", 4)]
    # Gemini reports no usage: the gateway's estimate (about four bytes a token), said so.
    assert r.usage.prompt_tokens == 7 + 6
    assert raw.headers["x-llm-usage-estimated"] == "true"
    assert r.model == "gemini-embedding-001"
    req = gemini_fake.last
    assert req.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert req.headers["x-goog-api-key"] == GEMINI_KEY and "key" not in req.query
    assert req.json["requests"][0] == {
        "model": "models/gemini-embedding-001", "content": {"parts": [{"text": "What is the meaning of life?"}]},
        "taskType": "RETRIEVAL_QUERY", "outputDimensionality": 4}
    # The SDK's default base64: float32 bytes of Gemini's floats.
    r = emb.client().embeddings.create(model="embed-gemini", input="Hello")
    assert _close(r.data[0].embedding, fake_vector("Hello"))


def test_cohere_embed(emb, cohere_fake):
    r = emb.client().embeddings.create(model="embed-cohere", input=["hello big world", "bye"],
                                       encoding_format="float")
    assert [d.embedding for d in r.data] == [fake_vector("hello big world"), fake_vector("bye")]
    assert r.usage.prompt_tokens == 4
    req = cohere_fake.last
    assert req.path == "/v2/embed" and req.headers["authorization"] == f"Bearer {COHERE_KEY}"
    assert req.json == {"model": "embed-v4.0", "texts": ["hello big world", "bye"],
                        "input_type": "search_document", "embedding_types": ["float"]}
    # base64 asked of Cohere, passed on; input_type and dimensions mapped.
    r = emb.client().embeddings.create(model="embed-cohere", input="where is it", encoding_format="base64",
                                       dimensions=4, extra_body={"input_type": "search_query"})
    assert _close(_floats(r.data[0].embedding), fake_vector("where is it", 4))
    assert cohere_fake.last.json == {"model": "embed-v4.0", "texts": ["where is it"], "input_type": "search_query",
                                     "embedding_types": ["base64"], "output_dimension": 4}


def test_fallback_to_another_provider(emb, cohere_fake):
    emb.openai.enqueue(openai_error(503, "The server is overloaded", type="server_error"))
    raw = emb.client().embeddings.with_raw_response.create(model="embed-fb", input="fall back",
                                                           encoding_format="float")
    assert raw.headers["x-llm-provider"] == "cohere" and raw.headers["x-llm-attempts"] == "2"
    assert raw.parse().data[0].embedding == fake_vector("fall back")
    assert emb.openai.last.path == "/v1/embeddings"
    assert cohere_fake.last.json["model"] == "embed-v4.0"
    # The Cohere attempt carries only its own credentials.
    assert cohere_fake.last.headers["authorization"] == f"Bearer {COHERE_KEY}"


@pytest.mark.parametrize("body,param", [
    ({"model": "embed-openai", "input": ""}, "input"),
    ({"model": "embed-openai", "input": []}, "input"),
    ({"model": "embed-openai", "input": ["a", ""]}, "input[1]"),
    ({"model": "embed-openai"}, "input"),
    ({"model": "embed-openai", "input": "x", "encoding_format": "int8"}, "encoding_format"),
    ({"model": "embed-cohere", "input": ["t"] * 97}, "input"),
    ({"model": "embed-gemini", "input": ["t"] * 101}, "input"),
    ({"model": "embed-gemini", "input": [[1, 2]]}, "input"),
    ({"model": "gpt-test", "input": "x"}, "model"),
    ({"model": "claude-test", "input": "x"}, "model"),
])
def test_bad_input_is_a_400_naming_the_field(emb, gemini_fake, cohere_fake, body, param):
    r = emb.request("POST", "/v1/embeddings", body)
    assert r.status == 400, r.body
    error = r.json["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error", error
    assert not emb.provider_requests() and not gemini_fake.requests and not cohere_fake.requests


def test_chat_request_to_an_embedding_model(emb):
    with pytest.raises(openai.BadRequestError) as info:
        emb.client().chat.completions.create(model="embed-openai", messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["param"] == "model" and "embedding model" in info.value.body["message"]
    with pytest.raises(openai.BadRequestError) as info:
        emb.client().embeddings.create(model="gpt-test", input="hi")
    assert "chat model" in info.value.body["message"]
    assert not emb.provider_requests()


def test_budget_reserved_from_the_input_and_refused_when_spent(emb):
    client = emb.client(key=EMBEDDER_KEY)
    text = "word " * 100  # 500 bytes: about 125 tokens reserved; the fake reports 100
    for _ in range(2):
        r = client.embeddings.with_raw_response.create(model="embed-pricey", input=text, encoding_format="float")
        assert r.headers["x-llm-cost-usd"].startswith("0.1"), r.headers["x-llm-cost-usd"]
    # $0.20 spent: another $0.125 reservation does not fit in $0.25.
    with pytest.raises(openai.RateLimitError) as info:
        client.embeddings.create(model="embed-pricey", input=text, encoding_format="float")
    assert info.value.body["code"] == "budget_exceeded"
    assert len([q for q in emb.openai.requests if q.path == "/v1/embeddings"]) == 2


def _admin_stats(g) -> dict:
    with urllib.request.urlopen(f"{g.admin_url}/stats?format=json", timeout=5) as r:
        doc = json.load(r)
    return {s["name"]: s.get("value") for s in doc["stats"] if "value" in s}


def test_stats_and_access_log_count_embeddings_with_their_cost(emb):
    client = emb.client()
    client.embeddings.create(model="embed-openai", input="count me " * 50, encoding_format="float")
    emb.openai.enqueue(openai_error(503, "overloaded", type="server_error"))
    client.embeddings.create(model="embed-fb", input="count me too", encoding_format="float")

    def find(lines, model, tokens):
        return [l for l in lines if l.get("model") == model and l.get("prompt_tokens") == tokens]

    lines: list = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = [json.loads(l) for l in emb.envoy.log_text().splitlines() if l.startswith("{")]
        if find(lines, "embed-openai", "100") and find(lines, "embed-fb", "3"):
            break
        time.sleep(0.3)
    # 100 words reported by the fake, at text-embedding-3-small's $0.02 per million.
    first = find(lines, "embed-openai", "100")
    assert len(first) == 1, lines
    assert first[0]["operation"] == "embeddings" and first[0]["completion_tokens"] == "0", first
    assert first[0]["cost_micro_usd"] == "2" and first[0]["provider"] == "openai", first
    fb = find(lines, "embed-fb", "3")
    assert len(fb) == 1 and fb[0]["operation"] == "embeddings", lines
    assert fb[0]["provider"] == "cohere" and fb[0]["attempts"] == 2, fb
    # 3 tokens at embed-v4.0's $0.12 per million: priced, rounded to 0.
    assert fb[0]["cost_micro_usd"] == "0", fb
    # Chat lines carry no operation.
    assert all(l.get("operation") in (None, "embeddings") for l in lines)
    # Stats carry the operation label; the pricey key's spend is counted in micro-USD.
    deadline = time.monotonic() + 10
    stats: dict = {}
    while time.monotonic() < deadline:
        stats = _admin_stats(emb)
        names = [n for n in stats if n.startswith("wasmcustom.llm_requests_total") and "operation=embeddings" in n]
        if names:
            break
        time.sleep(0.5)
    requests = {n: v for n, v in stats.items()
                if n.startswith("wasmcustom.llm_requests_total") and ".operation=embeddings;" in n}
    assert any(".model=embed-fb;.provider=cohere;" in n for n in requests), requests
    assert any(n.startswith("wasmcustom.llm_fallbacks_total") and ".operation=embeddings;" in n
               for n in stats), sorted(stats)[:50]
    tokens = {n: v for n, v in stats.items()
              if n.startswith("wasmcustom.llm_tokens_total") and ".operation=embeddings;" in n}
    assert any(".model=embed-openai;" in n and ".token_type=input;" in n and v >= 100 for n, v in tokens.items()), tokens
