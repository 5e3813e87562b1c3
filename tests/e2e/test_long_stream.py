"""A long stream (10,000 events) goes through Envoy intact, and the Wasm VM's memory stays
flat: the translator holds at most one event, never the stream."""

from __future__ import annotations

from fakes import Reply, anthropic_stream, openai_stream
from harness import rss_kb

EVENTS = 10_000


def long_anthropic() -> list:
    return anthropic_stream(pieces=[f"w{i} " for i in range(EVENTS)], ping=False)


def run_once(gw) -> None:
    gw.anthropic.enqueue(Reply.sse(long_anthropic()))
    s = gw.stream({"model": "claude-test", "messages": [{"role": "user", "content": "long"}], "stream": True},
                  timeout=60, max_seconds=60)
    assert s.status == 200
    assert s.done_count == 1
    assert s.content() == "".join(f"w{i} " for i in range(EVENTS))
    assert s.finish_reasons() == ["stop"]


def test_ten_thousand_events_keep_memory_flat(gw):
    pid = gw.envoy.proc.pid
    run_once(gw)  # warm up: the VM's buffers reach their working size
    after_first = rss_kb(pid)
    for _ in range(3):
        run_once(gw)
    after_four = rss_kb(pid)
    # Three more long streams may not grow Envoy by more than a few MB (a leak of even
    # one byte per event would add 30 KB per stream; holding the stream would add MBs).
    assert after_four - after_first < 4096, (after_first, after_four)


def test_long_openai_compatible_stream(gw):
    gw.openai.enqueue(Reply.sse(openai_stream(" ".join(f"t{i}" for i in range(EVENTS)), include_usage=True)))
    s = gw.stream({"model": "gpt-test", "messages": [{"role": "user", "content": "long"}], "stream": True},
                  timeout=60, max_seconds=60)
    assert s.status == 200 and s.done_count == 1
    assert s.content() == " ".join(f"t{i}" for i in range(EVENTS))
