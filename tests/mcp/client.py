"""A real MCP client (the official Python SDK, `mcp` 2.x) driving Herald's MCP server.

Run by `tests/it/mcp.rs`, which starts Herald and asserts on what this prints:

    client.py http  URL TOKEN          SCENARIO [ARG...]   Streamable HTTP (`/mcp`)
    client.py stdio HERALD_BIN [--url URL] SCENARIO [ARG...]   `herald mcp` over stdio

For stdio, the environment of this process (HERALD_DATA_DIR, HERALD_LISTEN, HERALD_TOKEN, ...)
is passed to `herald mcp`. Each scenario prints one JSON object per line: `{"phase": ...}`
lines while it runs (some scenarios then read a line from stdin before going on, so the Rust
test can act in between), and a final `{"phase": "done", ...}` line. Any failure exits 1 with
the reason on stderr.
"""

import base64
import contextlib
import json
import os
import sys
import time
import urllib.request

import anyio
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError


def emit(phase, **fields):
    print(json.dumps({"phase": phase, **fields}), flush=True)


async def read_line():
    """The next line the Rust test writes to our stdin."""
    return (await anyio.to_thread.run_sync(sys.stdin.readline)).strip()


def post(url, body, content_type="application/json", headers=None):
    """POSTs to a callback URL, as the job calling back would."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, method="POST", headers={"content-type": content_type, **(headers or {})}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status


async def apost(url, body, content_type="application/json", headers=None):
    return await anyio.to_thread.run_sync(lambda: post(url, body, content_type, headers))


async def call(session, name, args):
    """A tool call that must succeed; returns its structured content."""
    result = await session.call_tool(name, args)
    if result.is_error:
        raise AssertionError(f"{name} failed: {result.content[0].text}")
    return result.structured_content


async def tool_error(session, name, args):
    """A tool call that must fail as a *tool* error (the model reads it); returns the text."""
    result = await session.call_tool(name, args)
    if not result.is_error:
        raise AssertionError(f"{name} succeeded but should have failed: {result.structured_content}")
    return result.content[0].text


async def protocol_error(session, name, args):
    """A tool call that must fail as a JSON-RPC error; returns its message."""
    try:
        result = await session.call_tool(name, args)
    except MCPError as e:
        return e.error.message
    raise AssertionError(f"{name} returned {result} instead of a protocol error")


# --- Scenarios -------------------------------------------------------------------------------


async def tools(session):
    """Lists the tools and checks every schema is a valid JSON Schema with an object root."""
    from jsonschema.validators import validator_for

    listed = (await session.list_tools()).tools
    problems = []
    for t in listed:
        for kind, schema in (("input", t.input_schema), ("output", t.output_schema)):
            if schema is None:
                problems.append(f"{t.name}: no {kind} schema")
                continue
            if schema.get("type") != "object":
                problems.append(f"{t.name}: {kind} schema root is {schema.get('type')!r}, not object")
            for combinator in ("oneOf", "anyOf", "allOf"):
                if combinator in schema:
                    problems.append(f"{t.name}: {kind} schema root uses {combinator}")
            try:
                validator_for(schema).check_schema(schema)
            except Exception as e:  # noqa: BLE001 - reported, not swallowed
                problems.append(f"{t.name}: invalid {kind} schema: {e}")
        if not t.description:
            problems.append(f"{t.name}: no description")
    emit(
        "done",
        tools=sorted(t.name for t in listed),
        inputs={t.name: sorted(t.input_schema.get("properties", {})) for t in listed},
        required={t.name: sorted(t.input_schema.get("required", [])) for t in listed},
        outputs={t.name: sorted(t.output_schema.get("properties", {})) for t in listed if t.output_schema},
        problems=problems,
        protocol_version=session.protocol_version,
    )


async def roundtrip(session):
    """create → wait (blocked) → POST → the wait returns the body; then text and binary bodies."""
    created = await call(session, "create_callback_endpoint", {"label": "render job"})
    slug, url = created["slug"], created["url"]
    results = {}

    async def waiter():
        results["json"] = await call(session, "wait_for_callback", {"slug": slug, "timeout_ms": 20000})

    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        # Give the wait time to block, so the callback wakes it rather than being found at once.
        await anyio.sleep(0.3)
        await apost(url, {"render": "done", "frames": 240})
    waited_s = time.monotonic() - started

    cursor = results["json"]["cursor"]
    await apost(url, "plain words".encode(), "text/plain")
    text = await call(session, "wait_for_callback", {"slug": slug, "after": cursor, "timeout_ms": 5000})
    await apost(url, bytes([0, 159, 146, 150, 255]), "application/octet-stream")
    binary = await call(session, "wait_for_callback", {"slug": slug, "after": text["cursor"], "timeout_ms": 5000})
    emit(
        "done",
        created=created,
        json=results["json"],
        waited_s=waited_s,
        text=text,
        binary=binary,
        binary_decoded=list(base64.b64decode(binary["callback"]["body_base64"])),
    )


async def early(session):
    """A callback that arrived before the wait is returned at once, with its cursor."""
    created = await call(session, "create_callback_endpoint", {})
    await apost(created["url"], {"early": True})
    started = time.monotonic()
    got = await call(session, "wait_for_callback", {"slug": created["slug"], "timeout_ms": 30000})
    elapsed = time.monotonic() - started
    again = await call(session, "wait_for_callback", {"id": created["id"], "after": 0, "timeout_ms": 30000})
    emit("done", got=got, again=again, elapsed_s=elapsed)


async def timeout(session, timeout_ms="700"):
    """Nothing arrives: `pending` with the caller's cursor, after about the timeout (`default`:
    no `timeout_ms`, so the server's default applies)."""
    created = await call(session, "create_callback_endpoint", {})
    args = {"slug": created["slug"], "after": 3}
    if timeout_ms != "default":
        args["timeout_ms"] = int(timeout_ms)
    started = time.monotonic()
    got = await call(session, "wait_for_callback", args)
    emit("done", got=got, elapsed_s=time.monotonic() - started)


async def progress(session, timeout_ms="1500"):
    """A wait with a progress token: notifications arrive while it waits."""
    created = await call(session, "create_callback_endpoint", {})
    seen = []

    async def on_progress(progress, total, message):
        seen.append({"progress": progress, "total": total, "message": message, "at": time.monotonic()})

    started = time.monotonic()
    result = await session.call_tool(
        "wait_for_callback",
        {"slug": created["slug"], "timeout_ms": int(timeout_ms)},
        progress_callback=on_progress,
    )
    elapsed = time.monotonic() - started
    for s in seen:
        s["at"] -= started
    emit("done", got=result.structured_content, notifications=seen, elapsed_s=elapsed)


async def cancel(session):
    """Starts a long wait, cancels it when told to, then stays connected until told to finish."""
    created = await call(session, "create_callback_endpoint", {})
    async def waiter(scope):
        with scope:
            await session.call_tool(
                "wait_for_callback", {"slug": created["slug"], "timeout_ms": 50000}
            )

    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()
        tg.start_soon(waiter, scope)
        emit("waiting", endpoint_id=created["id"])
        assert await read_line() == "cancel"
        started = time.monotonic()
        scope.cancel()
    emit("cancelled", cancelled_after_s=time.monotonic() - started)
    assert await read_line() == "done"
    # The session still works after the cancellation.
    listed = await call(session, "list_callback_endpoints", {})
    emit("done", endpoints=len(listed["data"]))


async def reply(session, tenant):
    """publish_event with a reply channel; the Rust test plays the subscriber that answers."""
    published = await call(
        session,
        "publish_event",
        {"tenant_id": tenant, "topic": "review.requested", "data": {"plan": 7}, "reply": {"ttl_seconds": 600}},
    )
    emit("published", **published)
    reply_slug = published["reply_url"].rsplit("/in/", 1)[1]
    answer = await call(session, "wait_for_callback", {"slug": reply_slug, "timeout_ms": 20000})
    by_event = await call(session, "wait_for_callback", {"id": published["id"], "timeout_ms": 1000})
    deliveries = await call(session, "list_deliveries", {"tenant_id": tenant, "event_id": published["id"]})
    delivery = await call(session, "get_delivery", {"id": deliveries["data"][0]["id"]})
    emit("done", published=published, answer=answer, by_event=by_event, deliveries=deliveries, delivery=delivery)


async def catalog(session, tenant):
    """list_event_types, then a publish that fails its type's schema: a tool error naming where."""
    types = await call(session, "list_event_types", {})
    refused = await tool_error(
        session, "publish_event", {"tenant_id": tenant, "topic": "job.completed", "data": {"job_id": "j1", "tokens": -1}}
    )
    emit("done", types=types, refused=refused)


async def retry(session, delivery_id):
    """retry_delivery: a manual attempt now."""
    emit("done", retried=await call(session, "retry_delivery", {"id": delivery_id}))


async def queue(session, target_url):
    """poll_events / ack_event as a work queue, replay_callback, verify_signature, delete."""
    a = await call(session, "create_callback_endpoint", {"label": "a"})
    b = await call(session, "create_callback_endpoint", {"label": "b"})
    await apost(a["url"], {"n": 1})
    await apost(b["url"], {"n": 2})
    before = await call(session, "poll_events", {})
    only_b = await call(session, "poll_events", {"slug": b["slug"]})
    acked = await call(session, "ack_event", {"event_id": before["data"][0]["id"]})
    after = await call(session, "poll_events", {})
    replayed = await call(session, "replay_callback", {"id": only_b["data"][0]["id"], "target_url": target_url})
    listed = await call(session, "list_callback_endpoints", {})
    deleted = await call(session, "delete_callback_endpoint", {"slug": a["slug"]})
    listed_after = await call(session, "list_callback_endpoints", {})
    gone = await tool_error(session, "wait_for_callback", {"slug": a["slug"], "timeout_ms": 100})
    emit(
        "done",
        before=before,
        only_b=only_b,
        acked=acked,
        after=after,
        replayed=replayed,
        listed=listed,
        deleted=deleted,
        listed_after=listed_after,
        gone=gone,
    )


async def verify(session, secret, msg_id, timestamp, signature, body):
    """verify_signature with a vector the Rust test computed, then with a tampered body."""
    headers = {"webhook-id": msg_id, "webhook-timestamp": timestamp, "webhook-signature": signature}
    good = await call(
        session, "verify_signature", {"scheme": "standard_webhooks", "secret": secret, "headers": headers, "body": body}
    )
    bad = await call(
        session,
        "verify_signature",
        {"scheme": "standard_webhooks", "secret": secret, "headers": headers, "body": body + " "},
    )
    unknown = await tool_error(
        session, "verify_signature", {"scheme": "pgp", "secret": secret, "headers": headers, "body": body}
    )
    # The same signed request, sent to an endpoint verifying with that secret, is accepted.
    created = await call(
        session,
        "create_callback_endpoint",
        {"verification": {"scheme": "standard_webhooks", "secret": secret}, "ttl_seconds": 600},
    )
    await apost(created["url"], body.encode(), headers=headers)
    ingested = await call(session, "wait_for_callback", {"slug": created["slug"], "timeout_ms": 5000})
    emit("done", good=good, bad=bad, unknown=unknown, created=created, ingested=ingested)


async def errors(session, foreign_slug=""):
    """What the model sees as tool errors, and what is a protocol error."""
    out = {
        "bad_scheme": await tool_error(session, "create_callback_endpoint", {"verification": {"scheme": "pgp"}}),
        "bad_ttl": await tool_error(session, "create_callback_endpoint", {"ttl_seconds": 0}),
        "unknown_slug": await tool_error(session, "wait_for_callback", {"slug": "no-such-slug", "timeout_ms": 100}),
        "no_target": await tool_error(session, "wait_for_callback", {"timeout_ms": 100}),
        "wrong_type": await tool_error(session, "wait_for_callback", {"slug": "x", "timeout_ms": "soon"}),
        "unknown_tool": await protocol_error(session, "launch_rockets", {}),
    }
    if foreign_slug:
        out["foreign"] = await tool_error(session, "wait_for_callback", {"slug": foreign_slug, "timeout_ms": 100})
        out["own"] = await call(session, "create_callback_endpoint", {})
        out["listed"] = await call(session, "list_callback_endpoints", {})
    emit("done", **out)


SCENARIOS = {
    "tools": tools,
    "roundtrip": roundtrip,
    "early": early,
    "timeout": timeout,
    "progress": progress,
    "cancel": cancel,
    "reply": reply,
    "queue": queue,
    "retry": retry,
    "catalog": catalog,
    "verify": verify,
    "errors": errors,
}


async def main(argv):
    transport, rest = argv[0], argv[1:]
    stack = contextlib.AsyncExitStack()
    if transport == "http":
        url, token, scenario, args = rest[0], rest[1], rest[2], rest[3:]
        http = await stack.enter_async_context(
            create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
        )
        connect = streamable_http_client(url, http_client=http)
    elif transport == "stdio":
        binary, rest = rest[0], rest[1:]
        server_args = ["mcp"]
        if rest[0] == "--url":
            server_args += ["--url", rest[1]]
            rest = rest[2:]
        scenario, args = rest[0], rest[1:]
        env = {k: v for k, v in os.environ.items() if k.startswith("HERALD_") or k in ("RUST_LOG", "PATH")}
        connect = stdio_client(StdioServerParameters(command=binary, args=server_args, env=env))
    else:
        raise SystemExit(f"unknown transport {transport!r}")
    async with stack, connect as (read, write):
        async with ClientSession(read, write) as session:
            if os.environ.get("MCP_PROTOCOL") == "modern":
                await session.discover()  # 2026-07-28: stateless, no initialize handshake
            else:
                await session.initialize()  # 2025-11-25: the initialize handshake
            await SCENARIOS[scenario](session, *args)


if __name__ == "__main__":
    try:
        anyio.run(main, sys.argv[1:])
    except BaseException as e:  # noqa: BLE001 - the Rust test reads the reason from stderr
        import traceback

        traceback.print_exc()
        sys.exit(1)
