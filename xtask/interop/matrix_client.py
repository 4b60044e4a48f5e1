#!/usr/bin/env python3
"""One MCP client session of the official Python SDK, any version from mcp 1.2.1 to 2.3.0, for the
matrix stage of `cargo xtask interop` (xtask/src/interop/matrix.rs).

    <venv>/bin/python matrix_client.py --server-cmd '["node", "dist/index.js", "stdio"]' [--mode auto]

It runs under each matrix venv (target/interop/venv-mcp-X, and the 2.3.0 one), spawns the server
command through the SDK's stdio transport as an MCP host would, and takes the generic scenario of
the matrix (scenario() below, the same steps as matrix-client.mjs): what the session negotiated,
the server's lists, ping, an echo, a call with progress, a prompt, a resource, an unknown tool, an
unknown method, logging/setLevel and a subscription, each where the server offers it, picked by
name from its own lists. mcp 1.x sessions are `ClientSession` over `stdio_client`; mcp 2.x ones the
high-level `Client`, in --mode legacy, auto or 2026-07-28.

Lockstep with the other sessions (run by matrix.rs): before each step the driver prints
{"sync": step} and waits for one line on stdin; at the end it prints {"observations": {...}}. A
failure prints {"failed": what, "observations": ...}: observations carry error codes, never
SDK-specific messages.

Notifications are counted by method, never by timing: the everything server sends log messages,
resource updates and stderr notices on timers of its own, so those methods are left out.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import sys
import warnings
from contextlib import AsyncExitStack
from importlib.metadata import version as installed_version
from typing import Any

import anyio
import anyio.to_thread
from pydantic import AnyUrl, BaseModel

# How long one request may take; a cold daemon plus a server start take a few seconds.
STEP = 30.0
# How long the driver waits for the other sessions at a step (they may be starting slowly).
SYNC = 120.0
# How long closing the session may take once everything was observed.
CLOSE = 2.0
# Sent by the everything server on timers of its own: not the scenario's, not shoal's.
TIMER_METHODS = {"notifications/message", "notifications/resources/updated", "notifications/stderr"}
PROGRESS_TOKEN = "matrix-progress"
MCP_VERSION = installed_version("mcp")
MCP_MAJOR = int(MCP_VERSION.split(".")[0])

if MCP_MAJOR >= 2:
    import mcp_types as types
    from mcp import Client, StdioServerParameters
    from mcp.shared.exceptions import MCPDeprecationWarning
    from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

    # The handshake-era methods (logging/setLevel, resources/subscribe) are used on purpose.
    warnings.filterwarnings("ignore", category=MCPDeprecationWarning)
else:
    import mcp.types as types
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client


def out(message: dict[str, Any]) -> None:
    print(json.dumps(message, sort_keys=True), flush=True)


def code_of(error: BaseException) -> Any:
    """The JSON-RPC error code of an SDK exception, else its type: never a message."""
    if isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        return code_of(error.exceptions[0])
    data = getattr(error, "error", None)
    if data is not None and isinstance(getattr(data, "code", None), int):
        return data.code
    if isinstance(error, TimeoutError):
        return "timeout"
    return type(error).__name__


def dump(model: Any) -> Any:
    return model.model_dump(by_alias=True, mode="json", exclude_none=True) if model is not None else None


def tool_result(result: Any) -> dict[str, Any]:
    content = [dump(block) for block in result.content]
    return {
        "isError": bool(getattr(result, "isError", None) or getattr(result, "is_error", None)),
        "text": "\n".join(block["text"] for block in content if block.get("type") == "text"),
        "content types": [block.get("type") for block in content],
    }


def resource_result(result: Any) -> list[dict[str, Any]]:
    contents = []
    for item in (dump(content) for content in result.contents):
        body = item.get("text", item.get("blob", ""))
        contents.append({
            "uri": item.get("uri"),
            "mimeType": item.get("mimeType"),
            "sha256": hashlib.sha256(body.encode()).hexdigest()[:16],
        })
    return contents


class Raw(BaseModel):
    """A request of any method, for what an SDK has no API for."""

    method: str
    params: dict[str, Any] | None = None


class Session:
    """What the scenario needs of one SDK session; V1 and V2 drive the two API generations."""

    def __init__(self, argv: list[str]) -> None:
        # The whole environment, not the SDK's default subset: SHOAL_RUNTIME_DIR must reach shoal.
        self.params = StdioServerParameters(command=argv[0], args=argv[1:], env=dict(os.environ))
        self.notifications: dict[str, int] = {}
        self.server_requests: dict[str, int] = {}
        self.progress = 0

    def notified(self, method: str, params: Any) -> None:
        if method == "notifications/progress":
            token = params.get("progressToken") if isinstance(params, dict) else getattr(params, "progressToken", None)
            if token == PROGRESS_TOKEN:
                self.progress += 1
        elif method not in TIMER_METHODS:
            self.notifications[method] = self.notifications.get(method, 0) + 1

    def asked(self, method: str) -> None:
        self.server_requests[method] = self.server_requests.get(method, 0) + 1

    async def sampling(self, *_: Any) -> Any:
        self.asked("sampling/createMessage")
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="sampled"), model="matrix"
        )

    async def roots(self, *_: Any) -> Any:
        self.asked("roots/list")
        return types.ListRootsResult(roots=[types.Root(uri="file:///matrix", name="matrix")])

    async def elicitation(self, *_: Any) -> Any:
        self.asked("elicitation/create")
        return types.ElicitResult(action="decline")


class V1(Session):
    """mcp 1.x: `ClientSession` over `stdio_client`, with a spy on what the transport reads."""

    async def open(self, stack: AsyncExitStack) -> dict[str, Any]:
        read, write = await stack.enter_async_context(stdio_client(self.params))
        # Everything the server sends passes the spy first, so progress and notifications are
        # counted as they come off the wire, whatever the SDK version does with them.
        spy_send, spy_read = anyio.create_memory_object_stream(100)
        tasks = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(tasks.cancel_scope.cancel)

        async def forward() -> None:
            async with spy_send:
                async for item in read:
                    root = getattr(getattr(item, "message", item), "root", None)
                    if isinstance(root, types.JSONRPCNotification):
                        self.notified(root.method, root.params or {})
                    await spy_send.send(item)

        tasks.start_soon(forward)
        # Each SDK version takes the callbacks it knows; 1.2.1 knows none (see `answer`).
        offered = {
            "sampling_callback": self.sampling,
            "list_roots_callback": self.roots,
            "elicitation_callback": self.elicitation,
            "client_info": types.Implementation(name="matrix-python", version=MCP_VERSION),
        }
        accepted = inspect.signature(ClientSession.__init__).parameters
        kwargs = {name: value for name, value in offered.items() if name in accepted}
        self.session = await stack.enter_async_context(ClientSession(spy_read, write, **kwargs))
        if "sampling_callback" not in accepted:
            tasks.start_soon(self.answer)
        with anyio.fail_after(STEP):
            result = await self.session.initialize()
        opened = {
            "protocol version": result.protocolVersion,
            "era": "handshake",
            "server": dump(result.serverInfo),
            "capabilities": dump(result.capabilities),
            "instructions": len(getattr(result, "instructions", None) or ""),
        }
        if "sampling_callback" not in accepted:
            # mcp 1.2.1 declares no `sampling` (it answers sampling requests all the same, see
            # `answer`): shoal does not send it requests it did not declare.
            opened["declares sampling"] = False
        return opened

    async def answer(self) -> None:
        """mcp 1.2.1 hands the server's requests to the application, which must answer them."""
        async for message in self.session.incoming_messages:
            request = getattr(getattr(message, "request", None), "root", None)
            if request is None:
                continue
            handlers = {"sampling/createMessage": self.sampling, "roots/list": self.roots}
            handler = handlers.get(request.method)
            if handler is None:
                await message.respond(types.ErrorData(code=-32601, message="Method not found"))
            else:
                await message.respond(types.ClientResult(await handler()))

    async def request(self, method: str, params: dict[str, Any] | None, result_type: Any) -> Any:
        # The generic request type of each 1.x version validates the method name; a request
        # model of our own does not, and serializes the same.
        return await self.session.send_request(Raw(method=method, params=params), result_type)

    async def call(self, name: str, arguments: dict[str, Any], progress: bool = False) -> Any:
        if not progress:
            return await self.session.call_tool(name, arguments)
        # Not every 1.x version can ask for progress: a token of our own, counted by the spy.
        params = {"name": name, "arguments": arguments, "_meta": {"progressToken": PROGRESS_TOKEN}}
        return await self.request("tools/call", params, types.CallToolResult)

    async def list(self, method: str, cursor: str | None) -> Any:
        lister = {
            "tools/list": self.session.list_tools,
            "prompts/list": self.session.list_prompts,
            "resources/list": self.session.list_resources,
        }[method]
        if "cursor" in inspect.signature(lister).parameters:
            return await lister(cursor=cursor)
        # mcp 1.2.1 lists the first page only.
        result_type = {
            "tools/list": types.ListToolsResult,
            "prompts/list": types.ListPromptsResult,
            "resources/list": types.ListResourcesResult,
        }[method]
        return await self.request(method, {"cursor": cursor} if cursor else None, result_type)

    async def ping(self) -> None:
        await self.session.send_ping()

    async def get_prompt(self, name: str) -> Any:
        return await self.session.get_prompt(name)

    async def read(self, uri: str) -> Any:
        return await self.session.read_resource(AnyUrl(uri))

    async def set_level(self, level: str) -> None:
        await self.session.set_logging_level(level)

    async def subscribe(self, uri: str) -> None:
        await self.session.subscribe_resource(AnyUrl(uri))

    async def unsubscribe(self, uri: str) -> None:
        await self.session.unsubscribe_resource(AnyUrl(uri))


class V2(Session):
    """mcp 2.x: the high-level `Client` in one of its modes (legacy, auto, 2026-07-28)."""

    def __init__(self, argv: list[str], mode: str) -> None:
        super().__init__(argv)
        self.mode = mode

    async def on_message(self, message: Any) -> None:
        if not isinstance(message, Exception):
            self.notified(message.method, message.params)

    async def open(self, stack: AsyncExitStack) -> dict[str, Any]:
        async def on_progress(*_: Any) -> None:
            self.progress += 1

        self.on_progress = on_progress
        client = Client(
            self.params,
            mode=self.mode,
            read_timeout_seconds=STEP,
            client_info=types.Implementation(name="matrix-python", version=MCP_VERSION),
            message_handler=self.on_message,
            sampling_callback=self.sampling,
            list_roots_callback=self.roots,
            elicitation_callback=self.elicitation,
        )
        await stack.enter_async_context(client)
        self.client = client
        version = client.protocol_version
        opened = {
            "protocol version": version,
            "era": "handshake" if version in HANDSHAKE_PROTOCOL_VERSIONS else "2026-07-28",
            "server": dump(client.server_info),
            "capabilities": dump(client.server_capabilities),
            "instructions": len(client.instructions or ""),
        }
        if opened["era"] != "handshake":
            # A pinned client negotiates nothing on the wire: what the server is, it learns by
            # asking, as a host of this era would.
            with anyio.fail_after(STEP):
                discovered = types.DiscoverResult.model_validate(
                    await client.session.send_discover(version)
                )
            opened["server"] = (discovered.meta or {}).get(types.SERVER_INFO_META_KEY)
            opened["capabilities"] = dump(discovered.capabilities)
            opened["supported versions"] = discovered.supported_versions
        return opened

    async def call(self, name: str, arguments: dict[str, Any], progress: bool = False) -> Any:
        return await self.client.call_tool(name, arguments, progress_callback=self.on_progress if progress else None)

    async def list(self, method: str, cursor: str | None) -> Any:
        lister = {
            "tools/list": self.client.list_tools,
            "prompts/list": self.client.list_prompts,
            "resources/list": self.client.list_resources,
        }[method]
        return await lister(cursor=cursor)

    async def ping(self) -> None:
        await self.client.send_ping()

    async def get_prompt(self, name: str) -> Any:
        return await self.client.get_prompt(name, {})

    async def read(self, uri: str) -> Any:
        return await self.client.read_resource(uri)

    async def set_level(self, level: str) -> None:
        await self.client.set_logging_level(level)

    async def subscribe(self, uri: str) -> None:
        await self.client.subscribe_resource(uri)

    async def unsubscribe(self, uri: str) -> None:
        await self.client.unsubscribe_resource(uri)

    async def request(self, method: str, params: dict[str, Any] | None, result_type: Any) -> Any:
        return await self.client.session.send_request(types.Request(method=method, params=params), result_type)


async def sync(step: str) -> None:
    out({"sync": step})
    with anyio.fail_after(SYNC):
        line = await anyio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
    if line.strip() != "go":
        raise RuntimeError(f"the coordinator said {line!r} at {step!r}")


async def attempt(action: Any, shape: Any = None) -> Any:
    """Run one request under the step deadline and `shape` its result; an error answer is an
    observation too: its code."""
    try:
        with anyio.fail_after(STEP):
            result = await action
    except Exception as error:
        return {"error": code_of(error)}
    return "ok" if shape is None else shape(result)


async def every(session: Session, method: str, key: str) -> list[Any] | dict[str, Any]:
    """Every item of a list, following cursors (which shoal must leave untouched)."""
    found: list[Any] = []
    cursor = None
    for _ in range(100):
        page = await attempt(session.list(method, cursor), lambda page: page)
        if isinstance(page, dict):
            return page
        found += getattr(page, key)
        cursor = getattr(page, "nextCursor", None) or getattr(page, "next_cursor", None)
        if not cursor:
            break
    return found


def prompt_result(result: Any) -> dict[str, Any]:
    messages = [dump(message) for message in result.messages]
    return {
        "roles": [message["role"] for message in messages],
        "text": [message["content"].get("text") for message in messages],
    }


async def scenario(session: Session, obs: dict[str, Any], closing: anyio.CancelScope) -> None:
    async with AsyncExitStack() as stack:
        await sync("open")
        try:
            opened = await session.open(stack)
        except Exception as error:
            # A pinned 2026-07-28 session on a handshake-era server ends here, directly and
            # through shoal alike.
            obs["open"] = {"error": code_of(error)}
            return
        obs["open"] = opened
        capabilities = opened["capabilities"] or {}

        await sync("lists")
        tools = await every(session, "tools/list", "tools")
        schemas = {tool.name: dump(tool)["inputSchema"] for tool in tools} if isinstance(tools, list) else {}
        obs["tools"] = sorted(schemas) if isinstance(tools, list) else tools
        prompts: Any = "not offered"
        if "prompts" in capabilities:
            prompts = await every(session, "prompts/list", "prompts")
            prompts = sorted(p.name for p in prompts) if isinstance(prompts, list) else prompts
        obs["prompts"] = prompts
        resources: Any = "not offered"
        if "resources" in capabilities:
            resources = await every(session, "resources/list", "resources")
            resources = sorted(str(r.uri) for r in resources) if isinstance(resources, list) else resources
        obs["resources"] = resources

        await sync("ping and echo")
        obs["ping"] = await attempt(session.ping())
        if "echo" in schemas:
            arguments = {name: "matrix says hello" for name in schemas["echo"].get("required", [])}
            obs["echo"] = await attempt(session.call("echo", arguments), tool_result)
        else:
            obs["echo"] = "not offered"

        await sync("progress")
        slow = next((name for name in ("trigger-long-running-operation", "longRunningOperation", "count") if name in schemas), None)
        if slow is None:
            obs["progress"] = "not offered"
        else:
            arguments = {"n": 3} if slow == "count" else {"duration": 0.3, "steps": 3}
            obs["progress"] = await attempt(session.call(slow, arguments, progress=True), tool_result)

        await sync("prompt and resource")
        simple = next((name for name in ("simple-prompt", "simple_prompt") if isinstance(prompts, list) and name in prompts), None)
        obs["prompt"] = await attempt(session.get_prompt(simple), prompt_result) if simple else "not offered"
        uri = resources[0] if isinstance(resources, list) and resources else None
        obs["resource"] = await attempt(session.read(uri), resource_result) if uri else "not offered"

        await sync("unknown tool and method")
        obs["unknown tool"] = await attempt(session.call("matrix-no-such-tool", {}), tool_result)
        obs["unknown method"] = await attempt(session.request("matrix/no-such-method", None, types.EmptyResult))

        await sync("logging/setLevel")
        obs["logging/setLevel"] = await attempt(session.set_level("warning")) if "logging" in capabilities else "not offered"

        # Where the server says it can, as a host would.
        subscribable = uri is not None and (capabilities.get("resources") or {}).get("subscribe")
        await sync("subscribe")
        if subscribable:
            obs["subscribe"] = await attempt(session.subscribe(uri))
        else:
            obs["subscribe"] = "not offered"
        await sync("unsubscribe")
        if subscribable:
            obs["unsubscribe"] = await attempt(session.unsubscribe(uri))
        else:
            obs["unsubscribe"] = "not offered"

        await sync("close")
        # The SDKs run callbacks in tasks of their own: once every task is blocked, they ran.
        await anyio.wait_all_tasks_blocked()
        obs["progress notifications"] = session.progress
        obs["notifications"] = dict(sorted(session.notifications.items()))
        obs["server requests"] = dict(sorted(session.server_requests.items()))
        out({"observations": obs})
        # Leaving the stack closes the server's stdin. Some servers never exit on that (the
        # everything server's timers keep node alive), and mcp 1.2.1 waits for the exit without
        # a bound: give it one. matrix.rs kills whatever is left in the process group.
        closing.deadline = anyio.current_time() + CLOSE


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server-cmd", required=True, help="the server command, a JSON array of strings")
    parser.add_argument("--mode", default="legacy", help="mcp 2.x Client mode: legacy, auto or 2026-07-28")
    args = parser.parse_args()
    argv = json.loads(args.server_cmd)
    session: Session = V2(argv, args.mode) if MCP_MAJOR >= 2 else V1(argv)
    obs: dict[str, Any] = {}
    try:
        with anyio.CancelScope() as closing:
            await scenario(session, obs, closing)
    except Exception as error:
        out({"failed": f"{type(error).__name__}: {error}", "observations": obs})
        return 1
    if "open" in obs and "error" in obs["open"]:
        out({"observations": obs})
    return 0


if __name__ == "__main__":
    sys.exit(anyio.run(main))
