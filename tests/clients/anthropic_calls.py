"""Drives llmclis's gateway with Anthropic's official Python library (PyPI `anthropic`).

    python anthropic_calls.py BASE_URL API_KEY

Reads a JSON list of steps from stdin and runs them in order with one
client; prints a JSON list with one result per step: {"ok": true, "value":
...} or {"ok": false, "error": {"type", "status", "message"}}. Steps:

    {"op": "count_tokens", "model", "messages", ...}   (messages.count_tokens)
    {"op": "message", "model", "max_tokens", "messages", ...}
    {"op": "stream", ...}   (messages.stream: the text, and the final message's usage)
"""
import json
import sys

import anthropic


def error(e):
    return {
        "type": type(e).__name__,
        "status": getattr(e, "status_code", None),
        "message": str(e),
    }


def usage(u):
    return {
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "cache_read_input_tokens": u.cache_read_input_tokens,
        "cache_creation_input_tokens": u.cache_creation_input_tokens,
    }


def run(client, step):
    op = step.pop("op")
    if op == "count_tokens":
        return client.messages.count_tokens(**step).input_tokens
    if op == "message":
        m = client.messages.create(**step)
        return {
            "model": m.model,
            "text": "".join(b.text for b in m.content if b.type == "text"),
            "stop_reason": m.stop_reason,
            "usage": usage(m.usage),
        }
    if op == "stream":
        with client.messages.stream(**step) as s:
            text = "".join(s.text_stream)
            final = s.get_final_message()
        return {"text": text, "stop_reason": final.stop_reason, "usage": usage(final.usage)}
    raise ValueError(f"unknown op {op}")


def main():
    base_url, key = sys.argv[1], sys.argv[2]
    client = anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0, timeout=60)
    out = []
    for step in json.load(sys.stdin):
        try:
            out.append({"ok": True, "value": run(client, step)})
        except Exception as e:  # the test reads the error's type and status
            out.append({"ok": False, "error": error(e)})
    json.dump(out, sys.stdout)


main()
