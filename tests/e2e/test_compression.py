"""Providers compress their answers for clients that accept it (the OpenAI SDK sends
`Accept-Encoding: gzip, deflate`, and the real APIs then answer gzip). Whatever reaches
the provider, the client must get a usable answer with the usage headers."""

from __future__ import annotations

import gzip
import json

import pytest

from harness import MASTER_KEY, request

CASES = [("gpt-test", "openai", "gpt-4o-mini"), ("claude-test", "anthropic", "claude-sonnet-4-5")]


@pytest.mark.parametrize("model,fake,upstream", CASES)
def test_sdk_against_a_compressing_provider(gw, model, fake, upstream):
    getattr(gw, fake).compress = True
    raw = gw.client().chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "compressed?"}])
    completion = raw.parse()
    assert completion.choices[0].message.content == "echo: compressed?"
    assert completion.model == upstream
    assert raw.headers["x-llm-prompt-tokens"] == str(completion.usage.prompt_tokens)
    assert raw.headers["x-llm-completion-tokens"] == str(completion.usage.completion_tokens)


@pytest.mark.parametrize("model,fake,upstream", CASES)
def test_raw_client_accepting_gzip(gw, model, fake, upstream):
    getattr(gw, fake).compress = True
    r = request(gw.port, "POST", "/v1/chat/completions",
                {"model": model, "messages": [{"role": "user", "content": "zip it"}]},
                key=MASTER_KEY, headers={"Accept-Encoding": "gzip"})
    assert r.status == 200, r.body[:200]
    body = gzip.decompress(r.body) if r.header("content-encoding") == "gzip" else r.body
    assert json.loads(body)["choices"][0]["message"]["content"] == "echo: zip it"
    assert r.header("x-llm-prompt-tokens") is not None
