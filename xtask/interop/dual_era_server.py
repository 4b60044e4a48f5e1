#!/usr/bin/env python3
"""A dual-era MCP server on stdio, a test peer of `cargo xtask interop` (and of eras.py).

Built on the official Python SDK's `MCPServer` (mcp 2.3.0), which serves a connection in the era
its client opens with: the initialize handshake (2024-11-05 .. 2025-11-25) or the stateless
2026-07-28 revision (`server/discover`, per-request `_meta`). Each tool exercises one MCP feature,
so that a difference between eras - or between talking to this server directly and through
`shoal proxy` - shows up as a difference in one observation of eras.py:

- `echo(text)`: plain request/response.
- `chatty()`: four log messages (debug, info, warning, error), to see which levels a session gets.
- `count(n)`: n progress notifications.
- `greet()`: asks the client for a name (elicitation), then answers "hello <name>".
- `bump()`: changes the resource `counter://value` and says so to whoever subscribed.
- resource `counter://value`: the counter.

Run: `python dual_era_server.py` (stdio; the SDK's own logging goes to stderr).
"""

from __future__ import annotations

import warnings
from typing import Annotated, Any

import mcp_types as types
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.resolve import Elicit, Resolve
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import BaseModel

# Logging, resources/subscribe and logging/setLevel are deprecated (or gone) in 2026-07-28, but
# serving handshake-era clients is the point of this server.
warnings.filterwarnings("ignore", category=MCPDeprecationWarning)

COUNTER = "counter://value"

# RFC 5424 order, as the spec's LoggingLevel; an index is a severity.
LEVELS: tuple[str, ...] = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")

# WARNING: the SDK's per-request INFO lines on stderr would drown a failing run's own messages.
mcp = MCPServer("shoal-dual-era", version="1", log_level="WARNING")

# Handshake-era state. One process serves one connection (the SDK locks a stdio connection to
# the era of its first request), so process-wide state is that connection's state.
state: dict[str, Any] = {
    "counter": 0,
    # logging/setLevel's level; None until a client sets one, meaning every level is sent (what
    # the SDK does for a handshake connection that never set a level).
    "min_level": None,
    # URIs the handshake client subscribed to with resources/subscribe.
    "subscribed": set(),
}


def handshake_era(ctx: Context) -> bool:
    return ctx.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS


@mcp.tool()
def echo(text: str) -> str:
    """Answers with its argument."""
    return text


@mcp.tool()
async def chatty(ctx: Context) -> str:
    """Logs one message at each of debug, info, warning and error."""
    for level in ("debug", "info", "warning", "error"):
        # In a handshake era, filtering by logging/setLevel is the application's job (the SDK
        # sends whatever it is given); in 2026-07-28 the SDK itself drops what the request's
        # `_meta` log level did not opt in to, so this check never applies there.
        minimum = state["min_level"]
        if handshake_era(ctx) and minimum is not None and LEVELS.index(level) < LEVELS.index(minimum):
            continue
        await ctx.log(level, f"chatty says {level}", logger_name="chatty")
    return "done"


@mcp.tool()
async def count(n: int, ctx: Context) -> str:
    """Reports progress n times (1/n .. n/n), then answers with n."""
    for i in range(1, n + 1):
        await ctx.report_progress(i, n, f"step {i}")
    return str(n)


class Name(BaseModel):
    name: str


def ask_name() -> Elicit[Name]:
    # A resolver rather than ctx.elicit(): the SDK turns it into whatever the negotiated era
    # has - a standalone elicitation/create request mid-call in a handshake era, an
    # InputRequiredResult and a retried tools/call in 2026-07-28.
    return Elicit("What is your name?", Name)


@mcp.tool()
async def greet(name: Annotated[Name, Resolve(ask_name)]) -> str:
    """Asks the client for a name and greets it."""
    return f"hello {name.name}"


@mcp.tool()
async def bump(ctx: Context) -> str:
    """Increments counter://value and notifies its subscribers; answers with the new value."""
    state["counter"] += 1
    # 2026-07-28 subscribers listen with subscriptions/listen streams, fed by the SDK's bus.
    await ctx.notify_resource_updated(COUNTER)
    # Handshake-era subscribers used resources/subscribe; the bus does not reach them. Sent
    # before the answer, so a client has it by the time the call returns.
    if handshake_era(ctx) and COUNTER in state["subscribed"]:
        await ctx.session.send_resource_updated(COUNTER)
    return str(state["counter"])


@mcp.resource(COUNTER, name="counter", mime_type="text/plain")
def counter() -> str:
    """How many times bump() ran."""
    return str(state["counter"])


# MCPServer offers no decorators for the deprecated handshake-era methods; the low-level server
# does, and advertises resources.subscribe and logging in initialize once they are registered.


async def on_subscribe(ctx: Any, params: types.SubscribeRequestParams) -> types.EmptyResult:
    state["subscribed"].add(str(params.uri))
    return types.EmptyResult()


async def on_unsubscribe(ctx: Any, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
    state["subscribed"].discard(str(params.uri))
    return types.EmptyResult()


async def on_set_level(ctx: Any, params: types.SetLevelRequestParams) -> types.EmptyResult:
    state["min_level"] = params.level
    return types.EmptyResult()


lowlevel = mcp._lowlevel_server  # pyright: ignore[reportPrivateUsage]
lowlevel.add_request_handler("resources/subscribe", types.SubscribeRequestParams, on_subscribe)
lowlevel.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, on_unsubscribe)
lowlevel.add_request_handler("logging/setLevel", types.SetLevelRequestParams, on_set_level)


if __name__ == "__main__":
    mcp.run()
