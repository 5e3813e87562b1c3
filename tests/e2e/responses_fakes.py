"""A fake OpenAI that also speaks the Responses API: ``POST /v1/responses`` (and Azure's
``/openai/v1/responses``), besides everything :class:`fakes.OpenAIFake` answers.

Written from OpenAI's API reference:

* the request and the Response object: https://platform.openai.com/docs/api-reference/responses/create
  and https://platform.openai.com/docs/api-reference/responses/object
* the stream: https://platform.openai.com/docs/api-reference/responses-streaming
  (``event: <type>`` and ``data: {"type": <type>, "sequence_number": n, ...}``; no ``[DONE]``:
  the stream ends with ``response.completed``, ``response.incomplete`` or ``response.failed``)

Unscripted requests get the text ``echo: <last user text>``; :func:`responses_reply` builds
any other answer (text and function calls), streamed or not as the request asks.
"""

from __future__ import annotations

import time
from typing import Any, Optional

from fakes import Event, OpenAIFake, Recorded, Reply, openai_error

INPUT_TOKENS = 11
OUTPUT_TOKENS = 7


def message_item(text: str, item_id: str = "msg_fake") -> dict:
    return {"type": "message", "id": item_id, "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


def call_item(name: str, arguments: str, call_id: str = "call_fake", item_id: str = "fc_fake") -> dict:
    return {"type": "function_call", "id": item_id, "call_id": call_id, "name": name,
            "arguments": arguments, "status": "completed"}


def usage(input_tokens: int = INPUT_TOKENS, output_tokens: int = OUTPUT_TOKENS, cached: int = 0) -> dict:
    return {"input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens}


def response_object(output: list, model: str, request: Optional[dict] = None, status: str = "completed",
                    resp_id: str = "resp_fake", with_usage: bool = True) -> dict:
    """A Response object as OpenAI returns it, repeating the request's settings."""
    req = request or {}
    return {
        "id": resp_id, "object": "response", "created_at": int(time.time()), "status": status,
        "background": False, "error": None, "incomplete_details": None,
        "instructions": req.get("instructions"), "max_output_tokens": req.get("max_output_tokens"),
        "model": model, "output": output, "parallel_tool_calls": req.get("parallel_tool_calls", True),
        "previous_response_id": req.get("previous_response_id"),
        "reasoning": req.get("reasoning") or {"effort": None, "summary": None},
        "store": req.get("store", True), "temperature": req.get("temperature", 1.0),
        "text": req.get("text") or {"format": {"type": "text"}},
        "tool_choice": req.get("tool_choice", "auto"), "tools": req.get("tools", []),
        "top_p": req.get("top_p", 1.0), "truncation": "disabled",
        "usage": usage() if with_usage else None, "user": None, "metadata": req.get("metadata") or {},
    }


def response_events(output: list, model: str, request: Optional[dict] = None,
                    resp_id: str = "resp_fake") -> list:
    """The streamed form of a Response with ``output``: every event OpenAI sends for it."""
    seq = iter(range(1_000_000))
    events: list = []

    def emit(kind: str, **fields: Any) -> None:
        events.append(Event(event=kind, data={"type": kind, "sequence_number": next(seq), **fields}))

    start = response_object([], model, request, status="in_progress", resp_id=resp_id, with_usage=False)
    emit("response.created", response=start)
    emit("response.in_progress", response=start)
    for i, item in enumerate(output):
        if item["type"] == "message":
            text = item["content"][0]["text"]
            emit("response.output_item.added", output_index=i,
                 item={**item, "status": "in_progress", "content": []})
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            emit("response.content_part.added", item_id=item["id"], output_index=i, content_index=0, part=part)
            for k in range(0, len(text), 4):
                emit("response.output_text.delta", item_id=item["id"], output_index=i, content_index=0,
                     delta=text[k:k + 4], logprobs=[])
            emit("response.output_text.done", item_id=item["id"], output_index=i, content_index=0,
                 text=text, logprobs=[])
            emit("response.content_part.done", item_id=item["id"], output_index=i, content_index=0,
                 part={**part, "text": text})
        elif item["type"] == "function_call":
            emit("response.output_item.added", output_index=i,
                 item={**item, "arguments": "", "status": "in_progress"})
            args = item["arguments"]
            for k in range(0, len(args), 5):
                emit("response.function_call_arguments.delta", item_id=item["id"], output_index=i,
                     delta=args[k:k + 5])
            emit("response.function_call_arguments.done", item_id=item["id"], output_index=i, arguments=args)
        emit("response.output_item.done", output_index=i, item=item)
    emit("response.completed", response=response_object(output, model, request, resp_id=resp_id))
    return events


def responses_reply(output: list) -> Any:
    """A scripted answer with ``output``, streamed when the request asks for a stream."""
    def reply(rec: Recorded) -> Reply:
        body = rec.json if isinstance(rec.json, dict) else {}
        model = str(body.get("model", "gpt-4o-mini"))
        if body.get("stream") is True:
            return Reply.sse(response_events(output, model, body))
        return Reply(json=response_object(output, model, body))
    return reply


def last_input_text(body: dict) -> str:
    """The text of the last user message of a Responses ``input``."""
    items = body.get("input")
    if isinstance(items, str):
        return items
    for item in reversed(items if isinstance(items, list) else []):
        if isinstance(item, dict) and item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, str):
                return content
            texts = [p.get("text", "") for p in content or [] if isinstance(p, dict) and p.get("type") == "input_text"]
            return "".join(texts)
    return ""


class ResponsesOpenAIFake(OpenAIFake):
    """OpenAI with the Responses API (and Chat Completions, from :class:`OpenAIFake`)."""

    def routes(self, rec: Recorded) -> Optional[str]:
        if rec.method == "POST" and rec.path in ("/v1/responses", "/openai/v1/responses"):
            return "responses"
        return super().routes(rec)

    def default_reply(self, rec: Recorded) -> Reply:
        if self.routes(rec) != "responses":
            return super().default_reply(rec)
        body = rec.json
        if not isinstance(body, dict) or not body.get("model") or body.get("input") is None:
            return openai_error(400, "Missing required parameter: 'input'.", param="input",
                                code="missing_required_parameter")
        n = self._next_id()
        output = [message_item(f"echo: {last_input_text(body)}", item_id=f"msg_fake{n}")]
        return responses_reply(output)(rec)
