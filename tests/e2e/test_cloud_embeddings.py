"""The cloud providers' embedding models behind `POST /v1/embeddings` in a real Envoy, driven by
the official `openai` SDK (`embeddings.create`): Amazon Titan Text Embeddings V2 and Cohere
Embed on AWS Bedrock (`InvokeModel`, signed by Envoy's SigV4 filter; the fake Bedrock
recomputes every signature with botocore), and Vertex AI's `text-embedding-005` and
`gemini-embedding-001` (`:predict`, with the access token the module fetches from the fake
metadata server). Floats and base64, `dimensions`, `input_type`; more inputs than a
one-input model takes is a 400 naming `input`; the access log and the stats count each
request's tokens and cost.
"""

from __future__ import annotations

import base64
import json
import struct
import time
import urllib.request

import pytest

from fake_bedrock import ACCESS_KEY, REGION, SECRET_KEY, BedrockFake
from fakes import fake_vector
from harness import deployment, running_gateway
from vertex_fakes import TOKEN_PATH, MetadataFake, VertexFake

PROJECT = "test-project"
VERTEX_BASE = f"/v1/projects/{PROJECT}/locations/us-central1/publishers/google/models"


def _close(a: list, b: list) -> bool:
    return len(a) == len(b) and all(abs(x - y) < 1e-6 for x, y in zip(a, b))


def _floats(b64: str) -> list:
    raw = base64.b64decode(b64)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


@pytest.fixture(scope="module")
def metadata():
    with MetadataFake(name="gcp-metadata", lifetime=30) as f:
        yield f


@pytest.fixture(scope="module")
def vertex_fake(metadata):
    with VertexFake(name="vertex", metadata=metadata) as f:
        yield f


@pytest.fixture(scope="module")
def bedrock_fake():
    with BedrockFake(name="bedrock") as f:
        yield f


@pytest.fixture(scope="module")
def cloud_session(tmp_path_factory, openai_fake, anthropic_fake, bedrock_fake, vertex_fake, metadata):
    def bedrock(alias, model):
        return deployment(alias, f"bedrock/{model}", bedrock_fake.url, aws_region_name=REGION)

    def vertex(alias, model):
        return {**deployment(alias, f"vertex_ai/{model}", vertex_fake.url, vertex_project=PROJECT,
                             vertex_location="us-central1"),
                "model_info": {"mode": "embedding"}}

    models = [bedrock("embed-titan", "amazon.titan-embed-text-v2:0"),
              bedrock("embed-bedrock-cohere", "cohere.embed-english-v3"),
              vertex("embed-vertex", "text-embedding-005"),
              vertex("embed-vertex-gemini", "gemini-embedding-001")]
    env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
           "AWS_EC2_METADATA_DISABLED": "true"}
    with running_gateway(tmp_path_factory.mktemp("cloud-embeddings"), openai_fake, anthropic_fake,
                         extra_models=models, env_extra=env,
                         general_extra={"gcp_token_url": f"{metadata.url}{TOKEN_PATH}"}) as g:
        yield g


@pytest.fixture
def cloud(cloud_session, bedrock_fake, vertex_fake, metadata, request):
    cloud_session.reset()
    bedrock_fake.reset()
    vertex_fake.reset()
    request.node._envoys = [cloud_session.envoy]
    # The module has a token once it fetched one that is still valid.
    deadline = time.monotonic() + 10
    while not any(metadata.valid(t) for t in metadata.issued()) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)
    yield cloud_session
    bedrock_fake.reset()
    vertex_fake.reset()


def _signed(fake: BedrockFake) -> None:
    assert fake.signature_failures == [] and fake.signed_ok >= 1, fake.signature_failures
    assert fake.last.headers["authorization"].startswith("AWS4-HMAC-SHA256 ")


def test_titan_on_bedrock(cloud, bedrock_fake):
    raw = cloud.client().embeddings.with_raw_response.create(
        model="embed-titan", input="hello big world", dimensions=256, encoding_format="float")
    r = raw.parse()
    assert r.data[0].embedding == fake_vector("hello big world", 256) and r.data[0].index == 0
    assert r.usage.prompt_tokens == 3 and r.usage.total_tokens == 3
    assert r.model == "amazon.titan-embed-text-v2:0"
    assert raw.headers["x-llm-provider"] == "bedrock"
    req = bedrock_fake.last
    assert req.raw_path == "/model/amazon.titan-embed-text-v2%3A0/invoke"
    assert req.json == {"inputText": "hello big world", "dimensions": 256, "normalize": True}
    _signed(bedrock_fake)
    # The SDK's default base64: float32 bytes of Titan's floats.
    r = cloud.client().embeddings.create(model="embed-titan", input="Hello")
    assert _close(r.data[0].embedding, fake_vector("Hello", 1024))


def test_cohere_on_bedrock(cloud, bedrock_fake):
    r = cloud.client().embeddings.create(
        model="embed-bedrock-cohere", input=["hello big world", "bye"], encoding_format="float",
        extra_body={"input_type": "search_query"})
    assert [d.embedding for d in r.data] == [fake_vector("hello big world"), fake_vector("bye")]
    # Bedrock says the count only in X-Amzn-Bedrock-Input-Token-Count.
    assert r.usage.prompt_tokens == 4
    req = bedrock_fake.last
    assert req.raw_path == "/model/cohere.embed-english-v3/invoke"
    assert req.json == {"texts": ["hello big world", "bye"], "input_type": "search_query",
                        "embedding_types": ["float"]}
    _signed(bedrock_fake)
    r = cloud.client().embeddings.create(model="embed-bedrock-cohere", input="where is it",
                                         encoding_format="base64")
    assert _close(_floats(r.data[0].embedding), fake_vector("where is it"))
    assert bedrock_fake.last.json["input_type"] == "search_document"


def test_text_embedding_on_vertex(cloud, vertex_fake, metadata):
    raw = cloud.client().embeddings.with_raw_response.create(
        model="embed-vertex", input=["hello big world", "bye"], dimensions=4, encoding_format="float",
        extra_body={"input_type": "RETRIEVAL_QUERY"})
    r = raw.parse()
    assert [d.embedding for d in r.data] == [fake_vector("hello big world", 4), fake_vector("bye", 4)]
    assert r.usage.prompt_tokens == 4 and r.model == "text-embedding-005"
    assert raw.headers["x-llm-provider"] == "vertex_ai"
    req = vertex_fake.last
    assert req.path == f"{VERTEX_BASE}/text-embedding-005:predict"
    assert metadata.valid(req.headers["authorization"][len("Bearer "):])
    assert req.json == {"instances": [{"content": "hello big world", "task_type": "RETRIEVAL_QUERY"},
                                      {"content": "bye", "task_type": "RETRIEVAL_QUERY"}],
                        "parameters": {"outputDimensionality": 4}}
    r = cloud.client().embeddings.create(model="embed-vertex-gemini", input="Hello")
    assert _close(r.data[0].embedding, fake_vector("Hello"))
    assert vertex_fake.last.path == f"{VERTEX_BASE}/gemini-embedding-001:predict"


@pytest.mark.parametrize("body,says", [
    ({"model": "embed-titan", "input": ["a", "b"]}, "Titan embeds one input per request"),
    ({"model": "embed-vertex-gemini", "input": ["a", "b"]}, "one input per request"),
    ({"model": "embed-bedrock-cohere", "input": ["t"] * 97}, "at most 96"),
    ({"model": "embed-vertex", "input": ["t"] * 251}, "at most 250"),
    ({"model": "embed-vertex", "input": [[1, 2]]}, "token ids"),
])
def test_bad_input_is_a_400_naming_the_field(cloud, bedrock_fake, vertex_fake, body, says):
    r = cloud.request("POST", "/v1/embeddings", body)
    assert r.status == 400, r.body
    error = r.json["error"]
    assert error["param"] == "input" and says in error["message"], error
    assert not bedrock_fake.requests and not vertex_fake.requests


def _admin_stats(g) -> dict:
    with urllib.request.urlopen(f"{g.admin_url}/stats?format=json", timeout=5) as r:
        doc = json.load(r)
    return {s["name"]: s.get("value") for s in doc["stats"] if "value" in s}


def test_stats_and_access_log_count_tokens_and_cost(cloud):
    client = cloud.client()
    text = "word " * 100  # 100 tokens, as the fakes count
    for model in ("embed-titan", "embed-bedrock-cohere", "embed-vertex-gemini", "embed-vertex"):
        client.embeddings.create(model=model, input=text, encoding_format="float")
    # Titan V2 $0.02, Cohere Embed 3 $0.10, gemini-embedding-001 $0.15 per million tokens;
    # text-embedding-005 bills per character: unpriced.
    expected = {"embed-titan": "2", "embed-bedrock-cohere": "10", "embed-vertex-gemini": "15"}

    def lines_now() -> list:
        return [json.loads(l) for l in cloud.envoy.log_text().splitlines() if l.startswith("{")]

    lines: list = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = [l for l in lines_now() if l.get("operation") == "embeddings"]
        if len(lines) >= 4:
            break
        time.sleep(0.3)
    by_model = {l["model"]: l for l in lines}
    for model, cost in expected.items():
        line = by_model[model]
        assert line["prompt_tokens"] == "100" and line["completion_tokens"] == "0", line
        assert line["cost_micro_usd"] == cost, line
    assert by_model["embed-titan"]["provider"] == "bedrock"
    assert by_model["embed-vertex"]["provider"] == "vertex_ai"
    assert by_model["embed-vertex"]["prompt_tokens"] == "100"
    stats: dict = {}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        stats = _admin_stats(cloud)
        tokens = {n: v for n, v in stats.items()
                  if n.startswith("wasmcustom.llm_tokens_total") and ".operation=embeddings;" in n}
        if any(".model=embed-vertex;" in n for n in tokens):
            break
        time.sleep(0.5)
    for model in ("embed-titan", "embed-bedrock-cohere", "embed-vertex-gemini", "embed-vertex"):
        assert any(f".model={model};" in n and ".token_type=input;" in n and v >= 100
                   for n, v in tokens.items()), (model, tokens)
