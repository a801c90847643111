"""Drives llmclis's gateway with OpenAI's official Python library (PyPI `openai`).

    python openai_calls.py BASE_URL API_KEY

Reads a JSON list of steps from stdin and runs them in order with one
client; prints a JSON list with one result per step: {"ok": true, "value":
...} or {"ok": false, "error": {"type", "status", "message"}}. Steps:

    {"op": "models"}
    {"op": "chat", "model", "messages", ...any create() keyword}
    {"op": "stream", "model", "messages", ...}     (the text, joined from the chunks)
    {"op": "embed", "model", "input"}
    {"op": "raw_chat", ...}                         (with the response headers)
    {"op": "responses", "model", "input", ...}      (client.responses.create)
    {"op": "responses_stream", "model", "input", ...}
        (client.responses.stream: the event types, the text from the deltas,
        and the final response the SDK put together)
    {"op": "responses_chain", "first": {...}, "second": {...}}
        (the second with previous_response_id = the first's id)
    {"op": "responses_get", "id"} / {"op": "responses_delete", "id"}
"""
import json
import sys

import openai


def error(e):
    return {
        "type": type(e).__name__,
        "status": getattr(e, "status_code", None),
        "message": str(e),
    }


def run(client, step):
    op = step.pop("op")
    if op == "models":
        return [m.id for m in client.models.list().data]
    if op == "chat":
        r = client.chat.completions.create(**step)
        m = r.choices[0].message
        return {
            "model": r.model,
            "content": m.content,
            "finish_reason": r.choices[0].finish_reason,
            "tool_calls": [
                {"id": c.id, "name": c.function.name, "arguments": json.loads(c.function.arguments)}
                for c in (m.tool_calls or [])
            ],
            "usage": r.usage.model_dump() if r.usage else None,
        }
    if op == "raw_chat":
        raw = client.chat.completions.with_raw_response.create(**step)
        r = raw.parse()
        return {
            "headers": {k: v for k, v in raw.headers.items() if k.startswith("x-llmclis")},
            "content": r.choices[0].message.content,
        }
    if op == "stream":
        text, chunks, usage, finish = "", 0, None, None
        for chunk in client.chat.completions.create(stream=True, **step):
            chunks += 1
            if chunk.usage:
                usage = chunk.usage.model_dump()
            for c in chunk.choices:
                text += c.delta.content or ""
                finish = c.finish_reason or finish
        return {"text": text, "chunks": chunks, "usage": usage, "finish_reason": finish}
    if op == "embed":
        r = client.embeddings.create(**step)
        return {"model": r.model, "dims": [len(d.embedding) for d in r.data],
                "first": r.data[0].embedding[:3]}
    if op == "responses":
        return response(client.responses.create(**step))
    if op == "responses_stream":
        types, text = [], ""
        with client.responses.stream(**step) as s:
            for event in s:
                types.append(event.type)
                if event.type == "response.output_text.delta":
                    text += event.delta
                if event.type == "error":
                    return {"types": types, "error": event.message}
            final = s.get_final_response()
        return {"types": types, "text": text, "final": response(final)}
    if op == "responses_chain":
        first = client.responses.create(**step["first"])
        second = client.responses.create(previous_response_id=first.id, **step["second"])
        return {"first": response(first), "second": response(second)}
    if op == "responses_get":
        return response(client.responses.retrieve(step["id"]))
    if op == "responses_delete":
        client.responses.delete(step["id"])
        return True
    raise ValueError(f"unknown op {op}")


def response(r):
    return {
        "id": r.id,
        "model": r.model,
        "status": r.status,
        "output_text": r.output_text,
        "calls": [
            {"call_id": o.call_id, "name": o.name, "arguments": json.loads(o.arguments)}
            for o in r.output
            if o.type == "function_call"
        ],
        "types": [o.type for o in r.output],
        "usage": r.usage.model_dump() if r.usage else None,
    }


def main():
    base_url, key = sys.argv[1], sys.argv[2]
    client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=60)
    out = []
    for step in json.load(sys.stdin):
        try:
            out.append({"ok": True, "value": run(client, step)})
        except Exception as e:  # the test reads the error's type and status
            out.append({"ok": False, "error": error(e)})
    json.dump(out, sys.stdout)


main()
