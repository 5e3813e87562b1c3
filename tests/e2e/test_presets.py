"""OpenAI-compatible presets in a real Envoy, through the official `openai` SDK: a keyless
local server (Ollama) and a keyed cloud (Groq), each named only by its prefix; Groq's
quirks (a rejected parameter, `reasoning` renamed to `reasoning_content`, stream usage in
`x_groq`) as a client sees them; the presets' prices (Groq's from the built-in table,
OpenRouter's reported by each answer, Ollama's free); Perplexity's citations. The fakes
stand at 127.0.0.1 in place of the providers' default bases.
"""

from __future__ import annotations

import json
import time

import openai
import pytest

from fakes import Event, OpenAIFake, Reply, openai_chunk, openai_completion
from harness import gateway_for_test, running_gateway

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
def cloud_fake():
    """OpenRouter and Perplexity, told apart by the path prefix of their `api_base`."""
    with OpenAIFake(name="cloud", api_key=GROQ_KEY) as keyed:
        yield keyed


@pytest.fixture(scope="module")
def presets_session(tmp_path_factory, openai_fake, anthropic_fake, ollama_fake, groq_fake, cloud_fake):
    key = f"os.environ/{GROQ_ENV}"
    models = [
        {"model_name": "local", "litellm_params": {
            "model": "ollama_chat/llama3.2", "api_base": f"{ollama_fake.url}/v1"}},
        {"model_name": "fast", "litellm_params": {
            "model": "groq/llama-3.3-70b-versatile", "api_base": f"{groq_fake.url}/openai/v1",
            "api_key": key}},
        {"model_name": "oss", "litellm_params": {
            "model": "groq/openai/gpt-oss-120b", "api_base": f"{groq_fake.url}/openai/v1",
            "api_key": key}},
        {"model_name": "router", "litellm_params": {
            "model": "openrouter/openai/gpt-4o", "api_base": f"{cloud_fake.url}/api/v1", "api_key": key}},
        {"model_name": "search", "litellm_params": {
            "model": "perplexity/sonar", "api_base": cloud_fake.url, "api_key": key}},
    ]
    with running_gateway(tmp_path_factory.mktemp("presets"), openai_fake, anthropic_fake,
                         extra_models=models, env_extra={GROQ_ENV: GROQ_KEY}) as g:
        yield g


@pytest.fixture
def ps(presets_session, ollama_fake, groq_fake, cloud_fake, request):
    yield from gateway_for_test(presets_session, request, ollama_fake, groq_fake, cloud_fake)


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


def groq_stream(usage: dict, top_level: bool = False) -> Reply:
    """A Groq stream whose usage rides in `x_groq.usage` on the finishing chunk."""
    start = openai_chunk({"role": "assistant", "content": ""}, model="openai/gpt-oss-120b", id="chatcmpl-g")
    start["x_groq"] = {"id": "req_01"}
    last = openai_chunk({}, finish_reason="stop", model="openai/gpt-oss-120b", id="chatcmpl-g")
    last["x_groq"] = {"id": "req_01", "usage": {"queue_time": 0.07, **usage}}
    if top_level:
        last["usage"] = {"queue_time": 0.07, **usage}
    return Reply.sse([Event(start),
                      Event(openai_chunk({"content": "Hello there!"}, model="openai/gpt-oss-120b", id="chatcmpl-g")),
                      Event(last), Event("[DONE]")])


GROQ_USAGE = {"prompt_tokens": 23, "prompt_time": 0.006, "completion_tokens": 19,
              "completion_time": 0.022, "total_tokens": 42, "total_time": 0.028}


def test_groq_stream_usage_in_x_groq_is_counted_and_priced(ps, groq_fake):
    """Groq's `x_groq.usage` reaches the SDK as OpenAI's usage chunk, priced from the built-in
    table (gpt-oss-120b on Groq: 23 x $0.15/M + 19 x $0.60/M = 14.85 micro-USD), once even
    when Groq repeats it at the top level; without `include_usage` it is still counted."""
    for top_level in (False, True):
        groq_fake.enqueue(groq_stream(GROQ_USAGE, top_level))
        chunks = list(ps.client().chat.completions.create(
            model="oss", messages=MESSAGES, stream=True, stream_options={"include_usage": True}))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello there!"
        with_usage = [c for c in chunks if c.usage is not None]
        assert len(with_usage) == 1, chunks
        usage = with_usage[0].usage
        assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (23, 19, 42)
        if not top_level:
            assert with_usage[0].choices == [] and chunks[-1] is with_usage[0]
            assert usage.model_extra.get("cost_usd") == pytest.approx(0.000015)
            assert with_usage[0].model_extra["llm_gateway"]["provider"] == "groq"
        assert groq_fake.last.json["stream_options"] == {"include_usage": True}

    groq_fake.enqueue(groq_stream(GROQ_USAGE))
    raw = ps.client().chat.completions.with_raw_response.create(model="oss", messages=MESSAGES, stream=True)
    chunks = list(raw.parse())
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].model_extra["x_groq"]["usage"]["total_tokens"] == 42
    log = access_log_line(ps, lambda e: e.get("model") == "oss" and str(e.get("completion_tokens")) == "19")
    assert str(log["prompt_tokens"]) == "23" and str(log["cost_micro_usd"]) == "15", log


def access_log_line(g, match) -> dict:
    """The last access-log line `match` takes, waiting for it a few seconds."""
    deadline = time.monotonic() + 10
    while True:
        lines = [json.loads(l) for l in g.envoy.log_text().splitlines() if l.startswith("{")]
        found = [l for l in lines if match(l)]
        if found or time.monotonic() > deadline:
            assert found, lines[-5:]
            return found[-1]
        time.sleep(0.2)


def test_openrouter_answers_are_priced_by_their_reported_cost(ps, cloud_fake):
    answer = openai_completion("Hello!", model="openai/gpt-4o",
                               usage={"prompt_tokens": 194, "completion_tokens": 2, "total_tokens": 196,
                                      "cost": 0.000505, "is_byok": False})
    cloud_fake.enqueue(Reply(json=answer))
    raw = ps.client().chat.completions.with_raw_response.create(model="router", messages=MESSAGES)
    assert raw.parse().choices[0].message.content == "Hello!"
    assert raw.headers.get("x-llm-cost-usd") == "0.000505"
    assert cloud_fake.last.path == "/api/v1/chat/completions"


def test_local_servers_cost_nothing(ps, ollama_fake):
    raw = ps.client().chat.completions.with_raw_response.create(model="local", messages=MESSAGES)
    assert raw.headers.get("x-llm-cost-usd") == "0.000000"


def test_perplexity_citations_reach_the_sdk(ps, cloud_fake):
    citations = ["https://www.toureiffel.paris/en/the-monument/history", "https://en.wikipedia.org/wiki/Eiffel_Tower"]
    results = [{"title": "Eiffel Tower", "url": citations[1], "date": None}]
    answer = openai_completion("Built 1887-1889 [1][2].", model="sonar", citations=citations,
                               search_results=results)
    cloud_fake.enqueue(Reply(json=answer))
    r = ps.client().chat.completions.create(model="search", messages=MESSAGES)
    assert r.model_extra["citations"] == citations
    assert r.model_extra["search_results"] == results

    def chunk(delta, finish=None):
        c = openai_chunk(delta, finish_reason=finish, model="sonar", id="p1",
                         usage={"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14,
                                "cost": {"total_cost": 0.005}})
        return {**c, "citations": citations, "search_results": results}

    cloud_fake.enqueue(Reply.sse([Event(chunk({"role": "assistant", "content": "Built"})),
                                  Event(chunk({"content": " 1887-1889 [1][2]."})),
                                  Event(chunk({}, "stop")), Event("[DONE]")]))
    chunks = list(ps.client().chat.completions.create(model="search", messages=MESSAGES, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Built 1887-1889 [1][2]."
    assert all(c.model_extra["citations"] == citations for c in chunks)
    assert all(c.model_extra["search_results"] == results for c in chunks)
    assert all(c.usage is None for c in chunks)
