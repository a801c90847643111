"""Drives an llmclis MCP server with the official MCP Python SDK (PyPI `mcp`).

    python mcp_calls.py stdio BINARY [ARG...]     (the server as a child, over stdio)
    python mcp_calls.py http URL [BEARER_TOKEN]   (Streamable HTTP)

Reads a JSON list of calls, [{"tool": NAME, "args": {...}}, ...], from
stdin; makes them in order in one session; prints one JSON object:
{"server": NAME, "tools": [{"name", "description", "inputSchema"}],
 "results": [{"is_error": BOOL, "text": STR}]}. The test decides what is
right; this only speaks the protocol the way a real client does.
"""
import asyncio
import json
import os
import sys

from mcp import ClientSession


async def session_calls(session, calls):
    init = await session.initialize()
    listed = await session.list_tools()
    results = []
    for call in calls:
        r = await session.call_tool(call["tool"], call.get("args", {}))
        text = "".join(c.text for c in r.content if getattr(c, "type", "") == "text")
        results.append({"is_error": bool(r.is_error), "text": text})
    return {
        "server": init.server_info.name,
        "tools": [
            {"name": t.name, "description": t.description, "inputSchema": t.input_schema}
            for t in listed.tools
        ],
        "results": results,
    }


async def main():
    mode, target, *rest = sys.argv[1:]
    calls = json.load(sys.stdin)
    if mode == "stdio":
        from mcp import StdioServerParameters
        from mcp.client.stdio import stdio_client

        params = StdioServerParameters(command=target, args=rest, env=dict(os.environ))
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                out = await session_calls(session, calls)
    else:
        import httpx2 as httpx
        from mcp.client.streamable_http import streamable_http_client

        headers = {"Authorization": f"Bearer {rest[0]}"} if rest else {}
        async with httpx.AsyncClient(headers=headers, timeout=60) as http:
            async with streamable_http_client(target, http_client=http) as (read, write, *_):
                async with ClientSession(read, write) as session:
                    out = await session_calls(session, calls)
    json.dump(out, sys.stdout)


asyncio.run(main())
