"""Azure OpenAI deployments in a real Envoy, through the official `openai` SDK: the classic
deployment path with `api-key`, the v1 path with an Entra ID bearer token, content filters
in an answer, in a refusal and in a stream, and a 429 falling back to another provider.

The module runs its own Envoy in front of an Azure fake (`fakes.AzureFake`).
"""

from __future__ import annotations

import openai
import pytest

from fakes import AZURE_SAFE, AzureFake, Event, Reply, azure_content_filter_error, azure_prompt_filter_chunk, openai_chunk, openai_completion
from harness import deployment, gateway_for_test, running_gateway

KEY_ENV, KEY = "FAKE_AZURE_KEY", "azure-fake-key-0123456789abcdef0123"
TOKEN_ENV, TOKEN = "FAKE_AZURE_AD_TOKEN", "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.fake-entra-token"
DEPLOYMENT = "gpt4o-prod"


@pytest.fixture(scope="module")
def azure_fake():
    with AzureFake(name="azure", api_key=KEY, token=TOKEN) as f:
        yield f


@pytest.fixture(scope="module")
def az_session(tmp_path_factory, openai_fake, anthropic_fake, azure_fake):
    model, url = f"azure/{DEPLOYMENT}", azure_fake.url
    models = [
        deployment("azure-classic", model, url, KEY_ENV),
        deployment("azure-v1", model, url, api_version="v1", azure_ad_token=f"os.environ/{TOKEN_ENV}"),
        deployment("azure-primary", model, url, KEY_ENV),
    ]
    with running_gateway(tmp_path_factory.mktemp("azure"), openai_fake, anthropic_fake,
                         extra_models=models, env_extra={KEY_ENV: KEY, TOKEN_ENV: TOKEN},
                         router_settings={"fallbacks": [{"azure-primary": ["gpt-test"]}]}) as g:
        yield g


@pytest.fixture
def az(az_session, azure_fake, request):
    yield from gateway_for_test(az_session, request, azure_fake)


MESSAGES = [{"role": "user", "content": "Tell me a story."}]


def test_classic_path_with_api_key(az, azure_fake):
    r = az.client().chat.completions.create(model="azure-classic", messages=MESSAGES)
    assert r.choices[0].message.content == "echo: Tell me a story."
    req = azure_fake.last
    assert req.path == f"/openai/deployments/{DEPLOYMENT}/chat/completions"
    assert req.query == {"api-version": "2024-10-21"}
    assert req.headers.get("api-key") == KEY
    assert "authorization" not in req.headers


def test_v1_path_with_an_entra_token(az, azure_fake):
    r = az.client().chat.completions.create(model="azure-v1", messages=MESSAGES)
    assert r.choices[0].finish_reason == "stop"
    req = azure_fake.last
    assert req.path == "/openai/v1/chat/completions" and req.query == {}
    assert req.json["model"] == DEPLOYMENT
    assert req.headers.get("authorization") == f"Bearer {TOKEN}"
    assert "api-key" not in req.headers


def test_content_filter_in_an_answer(az, azure_fake):
    answer = openai_completion(None, model="gpt-4o-2024-08-06", finish_reason="content_filter")
    answer["choices"][0]["content_filter_results"] = {**AZURE_SAFE, "violence": {"filtered": True, "severity": "medium"}}
    azure_fake.enqueue(Reply(json=answer))
    r = az.client().chat.completions.create(model="azure-classic", messages=MESSAGES)
    assert r.choices[0].finish_reason == "content_filter"
    assert r.choices[0].message.content is None


def test_filtered_prompt_is_a_400_with_its_inner_error(az, azure_fake):
    azure_fake.enqueue(azure_content_filter_error("hate"))
    with pytest.raises(openai.BadRequestError) as raised:
        az.client().chat.completions.create(model="azure-classic", messages=MESSAGES)
    e = raised.value
    assert e.status_code == 400 and e.code == "content_filter" and e.param == "prompt"
    inner = e.body["innererror"]
    assert inner["code"] == "ResponsibleAIPolicyViolation"
    assert inner["content_filter_result"]["hate"] == {"filtered": True, "severity": "high"}
    assert len(azure_fake.requests) == 1, "a content filter refusal is not retried elsewhere"


@pytest.mark.parametrize("model", ["azure-classic", "azure-v1"])
def test_stream_with_prompt_filter_and_content_filter(az, azure_fake, model):
    def chunk(delta, finish=None, filtered=False):
        c = openai_chunk(delta, finish_reason=finish, model="gpt-4o-2024-08-06")
        c["choices"][0]["content_filter_results"] = (
            {**AZURE_SAFE, "violence": {"filtered": True, "severity": "medium"}} if filtered else AZURE_SAFE)
        return c
    usage = openai_chunk(choices=[], usage={"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16})
    azure_fake.enqueue(Reply.sse([Event(azure_prompt_filter_chunk()), Event(chunk({"role": "assistant", "content": ""})),
                                  Event(chunk({"content": "Once upon"})), Event(chunk({}, "content_filter", True)),
                                  Event(usage), Event("[DONE]")]))
    stream = az.client().chat.completions.create(model=model, messages=MESSAGES, stream=True)
    chunks = list(stream)
    # Code written for OpenAI reads choices[0] of every chunk when it did not ask for usage.
    assert all(c.choices for c in chunks), [c.model_dump() for c in chunks]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Once upon"
    assert chunks[-1].choices[0].finish_reason == "content_filter"


def test_a_429_falls_back_to_another_provider(az, azure_fake):
    azure_fake.enqueue(Reply(status=429, headers={"retry-after": "0"}, json={"error": {
        "code": "429", "message": "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded token rate limit."}}))
    raw = az.client().chat.completions.with_raw_response.create(model="azure-primary", messages=MESSAGES)
    r = raw.parse()
    assert r.choices[0].message.content == "echo: Tell me a story."
    assert raw.headers.get("x-llm-provider") == "openai"
    assert len(azure_fake.requests) == 1
    assert az.openai.last.path == "/v1/chat/completions"
