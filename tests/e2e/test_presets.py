"""OpenAI-compatible presets in a real Envoy, through the official `openai` SDK: a keyless
local server (Ollama) and a keyed cloud (Groq), each named only by its prefix; Groq's
quirks (a rejected parameter, `reasoning` renamed to `reasoning_content`) as a client sees
them. The fakes stand at 127.0.0.1 in place of the providers' default bases.
"""

from __future__ import annotations

import openai
import pytest

from fakes import Event, OpenAIFake, Reply, openai_chunk, openai_completion
from harness import running_gateway

GROQ_ENV, GROQ_KEY = "FAKE_GROQ_KEY", "gsk_fakeGroqProviderKey0123456789abcdef"


@pytest.fixture(scope="module")
def ollama_fake():
    with OpenAIFake(name="ollama") as keyless:
        yield keyless


@pytest.fixture(scope="module")
def groq_fake():
    with OpenAIFake(name="groq", api_key=GROQ_KEY) as keyed:
        yield keyed


@pytest.fixture(scope="module")
def presets_session(tmp_path_factory, openai_fake, anthropic_fake, ollama_fake, groq_fake):
    models = [
        {"model_name": "local", "litellm_params": {
            "model": "ollama_chat/llama3.2", "api_base": f"{ollama_fake.url}/v1"}},
        {"model_name": "fast", "litellm_params": {
            "model": "groq/llama-3.3-70b-versatile", "api_base": f"{groq_fake.url}/openai/v1",
            "api_key": f"os.environ/{GROQ_ENV}"}},
    ]
    with running_gateway(tmp_path_factory.mktemp("presets"), openai_fake, anthropic_fake,
                         extra_models=models, env_extra={GROQ_ENV: GROQ_KEY}) as g:
        yield g


@pytest.fixture
def ps(presets_session, ollama_fake, groq_fake, request):
    for f in (ollama_fake, groq_fake):
        f.reset()
    presets_session.reset()
    request.node._envoys = [presets_session.envoy]
    yield presets_session


MESSAGES = [{"role": "user", "content": "Hi"}]


def test_keyless_local_server(ps, ollama_fake):
    raw = ps.client().chat.completions.with_raw_response.create(model="local", messages=MESSAGES)
    assert raw.parse().choices[0].message.content == "echo: Hi"
    assert raw.headers.get("x-llm-provider") == "ollama"
    req = ollama_fake.last
    assert req.path == "/v1/chat/completions"
    assert req.json["model"] == "llama3.2"
    assert "authorization" not in req.headers


def test_keyed_cloud_with_its_default_shape(ps, groq_fake):
    stream = ps.client().chat.completions.create(model="fast", messages=MESSAGES, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "echo: Hi"
    req = groq_fake.last
    assert req.path == "/openai/v1/chat/completions"
    assert req.headers.get("authorization") == f"Bearer {GROQ_KEY}"
    assert req.json["model"] == "llama-3.3-70b-versatile"


def test_a_parameter_groq_rejects_is_named(ps, groq_fake):
    with pytest.raises(openai.BadRequestError) as raised:
        ps.client().chat.completions.create(model="fast", messages=MESSAGES, logit_bias={"50256": -100})
    assert raised.value.param == "logit_bias"
    assert raised.value.code == "unsupported_parameter"
    assert groq_fake.requests == []


def test_reasoning_comes_back_as_reasoning_content(ps, groq_fake):
    answer = openai_completion("17 is prime.", model="qwen/qwen3-32b")
    answer["choices"][0]["message"]["reasoning"] = "No divisors up to 4."
    groq_fake.enqueue(Reply(json=answer))
    r = ps.client().chat.completions.create(model="fast", messages=MESSAGES)
    assert r.choices[0].message.model_extra.get("reasoning_content") == "No divisors up to 4."

    groq_fake.enqueue(Reply.sse([Event(openai_chunk({"role": "assistant", "reasoning": "No divisors"})),
                                 Event(openai_chunk({"content": "17 is prime."})),
                                 Event(openai_chunk({}, finish_reason="stop")), Event("[DONE]")]))
    chunks = list(ps.client().chat.completions.create(model="fast", messages=MESSAGES, stream=True))
    reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in chunks if c.choices)
    assert reasoning == "No divisors"
