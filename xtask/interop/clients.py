#!/usr/bin/env python3
"""The client side of `cargo xtask interop`: real MCP clients talking to a real MCP server
(`@modelcontextprotocol/server-everything`) through `shoal proxy`.

Run by xtask/src/interop.rs, never by hand (it needs the coordinator on its stdin/stdout). The
clients are sessions of the official Python SDK (`mcp`), plus one of the official TypeScript SDK
(`ts-client.mjs`, driven over a pipe) when --ts-client is given. Each session is its own
`shoal proxy` process, started by its SDK's stdio transport exactly as an MCP host starts a
server; they all share one daemon and one server.

Protocol with the coordinator (one JSON object per line):
- stdout: {"event": "check", "name": ..., "detail": ...} for each passed check;
  {"event": "sync", "phase": ...} when the clients reached a point where the coordinator checks
  shoal from outside (and, at "mid-call", SIGKILLs the daemon); {"event": "fail", "reason": ...}
  then exit 1; {"event": "done"} then exit 0.
- stdin: one line answering each "sync": "ok", or "killed <pid>" after "mid-call".

Every wait has a deadline and a label, so a hang is a failure that says what it waited for; the
coordinator also has a global deadline and kills this process group when it expires.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import sys
import traceback
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import mcp.types as types
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError

# The calls below use the initialize-era resources/subscribe on purpose: that is the protocol the
# everything server and shoal's daemon speak. The SDK warns that 2026-07-28 removes it.
warnings.filterwarnings("ignore", message=r"resources/(un)?subscribe is removed")

# shoal's error code for a request in flight when the proxy lost its daemon
# (crates/proxy/src/session.rs; ErrorCode in crates/wire).
DAEMON_LOST = -32081

# How long any single step may take before it is a failure. Generous: on a loaded 2-core CI
# machine a cold daemon start plus `node` start takes a few seconds.
STEP = 30.0

RESOURCE = "demo://resource/dynamic/text/1"
SERVER_NAME = "mcp-servers/everything"
PROGRESS_STEPS = 4
# Long enough that it cannot finish before the coordinator's SIGKILL (which comes right after
# every client saw its first progress).
LONG_CALL_SECS = 120
# Tools the scenario needs; the sampling one exists only for clients that declare sampling
# (the daemon declares it for every session it serves).
TOOLS = {"echo", "trigger-long-running-operation", "trigger-sampling-request", "toggle-subscriber-updates"}

Progress = Callable[[float, "float | None"], Awaitable[None]]


class Failure(Exception):
    """A check that did not hold; the message says what was expected and what happened."""


class CallError(Exception):
    """A JSON-RPC error answer to a client's request, whichever SDK got it."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


def emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def check(name: str, detail: str) -> None:
    emit(event="check", name=name, detail=detail)


async def deadline(what: str, awaitable: Awaitable[Any], secs: float = STEP) -> Any:
    try:
        return await asyncio.wait_for(awaitable, secs)
    except TimeoutError:
        raise Failure(f"timed out after {secs:.0f} s waiting for {what}") from None
    except CallError as error:
        raise Failure(f"{what}: answered with error {error}") from None


def sampling_answer(name: str, asked: str) -> str:
    # Who answered, and the request's own text, so that the caller can check that the answer it
    # got back went with its own request.
    return f"sampled by {name} [{asked}]"


class Coordinator:
    """The xtask side, reached over our stdin/stdout."""

    def __init__(self) -> None:
        self.reader = asyncio.StreamReader()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(self.reader), sys.stdin)

    async def sync(self, phase: str) -> str:
        """Tell the coordinator we reached `phase`; wait for its answer (it checks shoal from
        outside meanwhile)."""
        emit(event="sync", phase=phase)
        line = await deadline(f"the coordinator's answer at {phase}", self.reader.readline(), 60)
        if not line:
            raise Failure(f"the coordinator closed our stdin at {phase}")
        return line.decode().strip()


class Peer:
    """One MCP client session through its own `shoal proxy`: what the scenario needs of it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.samples: list[str] = []
        # URI -> how many notifications/resources/updated this session received for it.
        self.updates: dict[str, int] = {}
        self.updated = asyncio.Condition()

    async def note_update(self, uri: str) -> None:
        async with self.updated:
            self.updates[uri] = self.updates.get(uri, 0) + 1
            self.updated.notify_all()

    async def wait_updates(self, uri: str, at_least: int) -> None:
        async with self.updated:
            await deadline(
                f"{self.name}: notifications/resources/updated #{at_least} for {uri}",
                self.updated.wait_for(lambda: self.updates.get(uri, 0) >= at_least),
            )

    async def open(self) -> str:
        """Start the proxy and initialize; a description of the server."""
        raise NotImplementedError

    async def tool_names(self) -> set[str]:
        raise NotImplementedError

    async def call(self, tool: str, arguments: dict[str, Any], progress: Progress | None = None) -> str:
        """tools/call; the result's text. A JSON-RPC error is a `CallError`."""
        raise NotImplementedError

    async def subscribe(self, uri: str) -> None:
        raise NotImplementedError

    async def read(self, uri: str) -> int:
        """resources/read; how many contents it returned."""
        raise NotImplementedError

    async def close(self) -> str:
        """Close the proxy's stdin, as a host ends a session; what is known of its exit."""
        raise NotImplementedError


class PythonPeer(Peer):
    """A session of the official Python SDK.

    The SDK's transport and session are anyio task groups, which must be entered and left by the
    same task: the session's whole life is one task (`live`); the scenario only uses it.
    """

    def __init__(self, name: str, params: StdioServerParameters) -> None:
        super().__init__(name)
        self.params = params
        self.session: ClientSession | None = None
        self.opened: asyncio.Future[types.InitializeResult] = asyncio.get_running_loop().create_future()
        self.closing = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.transport_errors: list[str] = []
        # When set, the next sampling request signals the first event and is answered only once
        # the second is set; `sampling_withdrawn` is set if the request is cancelled while it
        # waits (the SDK cancels the callback on `notifications/cancelled`).
        self.sampling_gate: tuple[asyncio.Event, asyncio.Event] | None = None
        self.sampling_withdrawn = asyncio.Event()

    async def open(self) -> str:
        self.task = asyncio.ensure_future(self.live())
        result = await asyncio.shield(self.opened)
        if result.server_info.name != SERVER_NAME:
            raise Failure(f"{self.name}: initialize names server {result.server_info.name!r}, expected {SERVER_NAME!r}")
        resources = result.capabilities.resources
        if resources is None or not resources.subscribe:
            raise Failure(f"{self.name}: the server's capabilities lost resources.subscribe: {result.capabilities}")
        return f"{result.server_info.name} {result.server_info.version}, protocol {result.protocol_version}"

    async def live(self) -> None:
        try:
            async with stdio_client(self.params) as (read, write), ClientSession(
                read,
                write,
                sampling_callback=self.on_sampling,
                message_handler=self.on_message,
                client_info=types.Implementation(name=f"shoal-interop-{self.name}", version="1"),
            ) as session:
                self.session = session
                async with asyncio.timeout(STEP):
                    result = await session.initialize()
                self.opened.set_result(result)
                # Leaving the `async with` closes the proxy's stdin.
                await self.closing.wait()
        except BaseException as error:
            if not self.opened.done():
                self.opened.set_exception(error)
            raise

    @property
    def s(self) -> ClientSession:
        assert self.session is not None, "session opened"
        return self.session

    async def on_sampling(self, context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        asked = "".join(m.content.text for m in params.messages if isinstance(m.content, types.TextContent))
        self.samples.append(asked)
        if (gate := self.sampling_gate) is not None:
            self.sampling_gate = None
            arrived, release = gate
            arrived.set()
            try:
                await release.wait()
            except asyncio.CancelledError:
                self.sampling_withdrawn.set()
                raise
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=sampling_answer(self.name, asked)),
            model="shoal-interop",
            stop_reason="endTurn",
        )

    async def on_message(self, message: Any) -> None:
        if isinstance(message, Exception):
            self.transport_errors.append(repr(message))
        elif isinstance(message, types.ResourceUpdatedNotification):
            await self.note_update(str(message.params.uri))

    async def tool_names(self) -> set[str]:
        return {tool.name for tool in (await self.s.list_tools()).tools}

    async def call(self, tool: str, arguments: dict[str, Any], progress: Progress | None = None) -> str:
        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            assert progress is not None
            await progress(value, total)

        try:
            result = await self.s.call_tool(tool, arguments, progress_callback=on_progress if progress else None)
        except MCPError as error:
            raise CallError(error.code, error.message) from None
        return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))

    async def subscribe(self, uri: str) -> None:
        await self.s.subscribe_resource(uri)

    async def read(self, uri: str) -> int:
        return len((await self.s.read_resource(uri)).contents)

    async def close(self) -> str:
        self.closing.set()
        if self.task is not None:
            await self.task
        if self.transport_errors:
            raise Failure(f"{self.name}: the SDK reported transport errors: {self.transport_errors}")
        return "session ended by closing its proxy's stdin"


class TypeScriptPeer(Peer):
    """A session of the official TypeScript SDK, run by ts-client.mjs, which we drive with one
    JSON request per line and which reports progress, sampling and updates as events."""

    def __init__(self, name: str, node: str, script: str, proxy: list[str], env: dict[str, str]) -> None:
        super().__init__(name)
        self.command = [node, script, "--name", name]
        self.proxy = proxy
        self.env = env
        self.process: asyncio.subprocess.Process | None = None
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.progress: dict[int, Progress] = {}
        self.reader: asyncio.Task[None] | None = None

    async def request(self, op: str, **fields: Any) -> Any:
        assert self.process is not None and self.process.stdin is not None
        id = next(self.ids)
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[id] = answer
        if "progress" in fields:
            self.progress[id] = fields.pop("progress")
            fields["withProgress"] = True
        self.process.stdin.write((json.dumps({"id": id, "op": op, **fields}) + "\n").encode())
        await self.process.stdin.drain()
        try:
            return await answer
        finally:
            self.pending.pop(id, None)
            self.progress.pop(id, None)

    async def read_events(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while line := await self.process.stdout.readline():
            message = json.loads(line)
            event = message.get("event")
            if event == "progress":
                callback = self.progress.get(message["id"])
                if callback is not None:
                    await callback(message["progress"], message.get("total"))
            elif event == "sampled":
                self.samples.append(message["asked"])
            elif event == "updated":
                await self.note_update(message["uri"])
            elif (answer := self.pending.get(message.get("id"))) is not None and not answer.done():
                if "error" in message:
                    error = message["error"]
                    answer.set_exception(CallError(error.get("code", 0), error.get("message", "")))
                else:
                    answer.set_result(message.get("result"))
        for answer in self.pending.values():
            if not answer.done():
                answer.set_exception(Failure(f"{self.name}: ts-client.mjs exited"))

    async def open(self) -> str:
        self.process = await asyncio.create_subprocess_exec(
            *self.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        self.reader = asyncio.ensure_future(self.read_events())
        result = await self.request("open", command=self.proxy[0], args=self.proxy[1:], env=self.env)
        server = result["serverInfo"]
        if server["name"] != SERVER_NAME:
            raise Failure(f"{self.name}: initialize names server {server['name']!r}, expected {SERVER_NAME!r}")
        if not result["capabilities"].get("resources", {}).get("subscribe"):
            raise Failure(f"{self.name}: the server's capabilities lost resources.subscribe: {result['capabilities']}")
        return f"{server['name']} {server['version']} (TypeScript SDK {result['sdk']})"

    async def tool_names(self) -> set[str]:
        return set(await self.request("tools"))

    async def call(self, tool: str, arguments: dict[str, Any], progress: Progress | None = None) -> str:
        if progress is None:
            return await self.request("call", name=tool, arguments=arguments)
        return await self.request("call", name=tool, arguments=arguments, progress=progress)

    async def subscribe(self, uri: str) -> None:
        await self.request("subscribe", uri=uri)

    async def read(self, uri: str) -> int:
        return await self.request("read", uri=uri)

    async def close(self) -> str:
        exit = await self.request("close")
        assert self.process is not None
        await self.process.wait()
        # The TypeScript SDK SIGTERMs a server that has not exited 2 s after its stdin closed;
        # a proxy must exit by itself.
        if exit["sdkErrors"]:
            raise Failure(f"{self.name}: the SDK reported errors: {exit['sdkErrors']}")
        if (exit["code"], exit["signal"]) != (0, None):
            raise Failure(f"{self.name}: its proxy did not exit 0 by itself after stdin closed: {exit}")
        return "its proxy exited 0 on stdin EOF"


async def all_of(coros: list[Awaitable[Any]]) -> list[Any]:
    """Run the clients' steps concurrently; the first failure fails the phase and cancels the rest."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def initialize(peer: Peer) -> None:
    detail = await deadline(f"{peer.name}: initialize through shoal proxy", peer.open())
    check(f"{peer.name} initialized", detail)


async def list_tools(peer: Peer, label: str) -> None:
    names = await deadline(f"{peer.name}: tools/list", peer.tool_names())
    if not TOOLS <= names:
        raise Failure(f"{peer.name}: tools/list lacks {sorted(TOOLS - names)} (got {sorted(names)})")
    check(f"{peer.name} tools/list {label}", f"{len(names)} tools, sampling tool offered")


async def echo(peer: Peer, label: str) -> None:
    message = f"{peer.name} says hello {label}"
    text = await deadline(f"{peer.name}: echo", peer.call("echo", {"message": message}))
    if message not in text:
        raise Failure(f"{peer.name}: echo answered {text!r}, expected it to contain {message!r}")
    check(f"{peer.name} echo {label}", "answered")


async def progress_call(peer: Peer) -> None:
    seen: list[tuple[float, float | None]] = []
    all_seen = asyncio.Event()

    async def on_progress(progress: float, total: float | None) -> None:
        seen.append((progress, total))
        if len(seen) >= PROGRESS_STEPS:
            all_seen.set()

    text = await deadline(
        f"{peer.name}: trigger-long-running-operation",
        peer.call("trigger-long-running-operation", {"duration": 0.4, "steps": PROGRESS_STEPS}, on_progress),
    )
    if "completed" not in text:
        raise Failure(f"{peer.name}: long-running operation answered {text!r}")
    # The server sends every progress before its answer, but an SDK may run callbacks after it
    # resolved the call: wait for them rather than count now.
    await deadline(f"{peer.name}: {PROGRESS_STEPS} progress notifications (saw {seen})", all_seen.wait())
    expected = [(float(i), float(PROGRESS_STEPS)) for i in range(1, PROGRESS_STEPS + 1)]
    if sorted(seen) != expected:
        raise Failure(f"{peer.name}: progress {seen}, expected {expected} (each session gets only its own)")
    check(f"{peer.name} progress", f"{len(seen)} notifications under its own token, then the result")


async def sampling_call(peer: Peer, label: str) -> str:
    """trigger-sampling-request: the server sends sampling/createMessage to a client in the
    middle of the tool call. Returns the name of the client that answered."""
    prompt = f"question from {peer.name} {label}"
    text = await deadline(
        f"{peer.name}: trigger-sampling-request (server -> client sampling/createMessage)",
        peer.call("trigger-sampling-request", {"prompt": prompt, "maxTokens": 16}),
    )
    # The answer quotes the request it answered: the server got the answer to *this* call's
    # sampling request, whichever session shoal routed it to.
    if "sampled by " not in text or prompt not in text:
        raise Failure(f"{peer.name}: sampling tool answered {text!r}, expected a client's answer quoting {prompt!r}")
    answered_by = text.split("sampled by ", 1)[1].split(" ", 1)[0]
    check(f"{peer.name} sampling {label}", f"round trip answered by {answered_by}")
    return answered_by


async def task_sampling_call(peer: Peer) -> None:
    """trigger-sampling-request-async: sampling/createMessage as a client-side task."""
    tool = "trigger-sampling-request-async"
    names = await deadline(f"{peer.name}: tools/list", peer.tool_names())
    if tool not in names:
        raise Failure(f"{peer.name}: tools/list lacks {tool}: the server did not see a client that runs sampling as a task")
    prompt = f"task question from {peer.name}"
    text = await deadline(f"{peer.name}: {tool}", peer.call(tool, {"prompt": prompt, "maxTokens": 16}))
    if not text.startswith("[COMPLETED]") or f"sampled by {peer.name}" not in text or prompt not in text:
        raise Failure(f"{peer.name}: {tool} answered {text!r}, expected a completed task holding its own sampling answer")
    check(f"{peer.name} sampling as a client-side task", "run by shoal, answered by the session, polled by the server")


async def subscribe(peer: Peer) -> None:
    await deadline(f"{peer.name}: resources/subscribe {RESOURCE}", peer.subscribe(RESOURCE))
    if await deadline(f"{peer.name}: resources/read {RESOURCE}", peer.read(RESOURCE)) < 1:
        raise Failure(f"{peer.name}: resources/read {RESOURCE} returned no contents")
    check(f"{peer.name} subscribed", RESOURCE)


async def toggle_updates(peer: Peer) -> None:
    text = await deadline(f"{peer.name}: toggle-subscriber-updates", peer.call("toggle-subscriber-updates", {}))
    if "Started" not in text:
        raise Failure(f"{peer.name}: toggle-subscriber-updates answered {text!r}, expected it to start updates")


async def interrupted_call(peer: Peer, tool: str, arguments: dict[str, Any], progress: Progress | None) -> str:
    """A tool call that is in flight when the daemon is SIGKILLed. shoal's proxy answers it with
    -32081 (a tool call is not safe to retry); anything else is a failure."""
    try:
        text = await peer.call(tool, arguments, progress)
    except CallError as error:
        if error.code != DAEMON_LOST:
            raise Failure(f"{peer.name}: the {tool} call in flight at the kill failed with {error}, expected {DAEMON_LOST}") from None
        return error.message
    raise Failure(f"{peer.name}: the {tool} call in flight at the kill completed ({text!r}); the kill came too late")


async def scenario(peers: list[Peer], coordinator: Coordinator) -> None:
    # 1. Concurrent start: the proxies race to start one daemon.
    await all_of([initialize(p) for p in peers])
    await coordinator.sync("connected")
    await all_of([list_tools(p, "before the kill") for p in peers])

    # 2. Tool calls with progress, all at once.
    await all_of([progress_call(p) for p in peers])

    # 3. Sampling. Alone, a session's sampling request must come back to it (it is the only one
    # with a request in flight); concurrently, shoal picks one capable session per request (the
    # one with the most recent request in flight: docs/routing.md), and each is answered once.
    for peer in peers:
        if await sampling_call(peer, "alone") != peer.name:
            raise Failure(f"{peer.name}: its sampling request went to another session while it was the only one with a request in flight")
    samples_before = sum(len(p.samples) for p in peers)
    await all_of([sampling_call(p, "concurrently") for p in peers])
    answered = sum(len(p.samples) for p in peers) - samples_before
    if answered != len(peers):
        raise Failure(f"the clients answered {answered} sampling requests for {len(peers)} sampling calls")
    check("sampling requests", f"{answered} routed to clients, each answered once")

    # 3b. Client-side tasks (2025-11-25): shoal declares that its client runs sampling as a task,
    # so the server offers its async sampling tool; the daemon runs the task, the session answers
    # a plain sampling request, and the server polls the daemon for the outcome.
    await task_sampling_call(peers[0])

    # 4. Subscriptions: every client subscribes; the server's update reaches each of them.
    await all_of([subscribe(p) for p in peers])
    await toggle_updates(peers[0])
    await all_of([p.wait_updates(RESOURCE, 1) for p in peers])
    check("resource updates", f"notifications/resources/updated for {RESOURCE} reached all {len(peers)} subscribers")

    # 5. SIGKILL the daemon while every client has a tool call in flight: the others a long
    # operation that has reported progress, the first a sampling tool whose sampling request it
    # holds unanswered until after the kill (as a host waiting for its user would). Started last,
    # its call is the most recent, so the sampling request comes to it (docs/routing.md).
    holder = peers[0]
    assert isinstance(holder, PythonPeer)
    sampling_arrived, sampling_release = asyncio.Event(), asyncio.Event()
    holder.sampling_gate = (sampling_arrived, sampling_release)
    calls: list[asyncio.Future[str]] = []
    waits: list[Awaitable[Any]] = []
    for peer in peers[1:]:
        progressed = asyncio.Event()

        async def on_progress(progress: float, total: float | None, progressed: asyncio.Event = progressed) -> None:
            progressed.set()

        long_call = {"duration": LONG_CALL_SECS, "steps": LONG_CALL_SECS}
        calls.append(asyncio.ensure_future(interrupted_call(peer, "trigger-long-running-operation", long_call, on_progress)))
        waits.append(deadline(f"{peer.name}: first progress of its long call", progressed.wait()))
    try:
        await all_of(waits)
        prompt = {"prompt": "held across the kill", "maxTokens": 16}
        calls.insert(0, asyncio.ensure_future(interrupted_call(holder, "trigger-sampling-request", prompt, None)))
        await deadline(f"{holder.name}: the server's sampling request", sampling_arrived.wait())
        check(
            "mid-call",
            f"{holder.name} holds a sampling request of its tool call, {len(peers) - 1} clients have a long call in flight and saw its progress",
        )
        answer = await coordinator.sync("mid-call")
        if not answer.startswith("killed "):
            raise Failure(f"the coordinator answered {answer!r} at mid-call, expected 'killed <pid>'")
        messages = await all_of([
            deadline(f"{p.name}: an answer to the call in flight at the kill", asyncio.shield(c))
            for p, c in zip(peers, calls)
        ])
        check("in-flight calls at the kill", f"each answered {DAEMON_LOST} by its proxy: {messages[0]!r}")
        # The dead daemon's sampling request can never be answered: the proxy withdraws it
        # (`notifications/cancelled`), which the SDK turns into cancelling the callback. Whatever
        # the SDK still sends for it is dropped by the proxy; the echo below is the session's
        # next request and must not be disturbed.
        await deadline(f"{holder.name}: the held sampling request withdrawn", holder.sampling_withdrawn.wait())
        check("held sampling request", f"{holder.name} was told the dead daemon's request is withdrawn")
    finally:
        for call in calls:
            call.cancel()
        sampling_release.set()

    # 6. Same sessions, no restart: every client keeps working against the new daemon.
    await all_of([echo(p, "after the kill") for p in peers])
    await all_of([list_tools(p, "after the kill") for p in peers])
    await all_of([sampling_call(p, "after the kill") for p in peers])
    # The new server knows of the subscription only because shoal replayed it: start its
    # updates and every client must hear about the resource again. (Counted from here: the old
    # server's periodic updates all arrived before the answers above, and the new server sends
    # none before it is told to.)
    updates_before = {p.name: p.updates.get(RESOURCE, 0) for p in peers}
    await toggle_updates(peers[1])
    await all_of([p.wait_updates(RESOURCE, updates_before[p.name] + 1) for p in peers])
    check("subscriptions after the kill", f"replayed: all {len(peers)} clients got updates from the new server")
    await coordinator.sync("recovered")

    # 7. Closing stdin is how a host ends a session: each proxy drains and exits.
    results = await all_of([deadline(f"{p.name}: closing its session", p.close()) for p in peers])
    for peer, result in zip(peers, results):
        check(f"{peer.name} closed", result)


async def main() -> int:
    """Run the scenario; the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shoal", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--runtime-dir", required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--server", required=True, help="the everything server's dist/index.js")
    parser.add_argument("--python-clients", type=int, default=3)
    parser.add_argument("--ts-client", help="ts-client.mjs, next to the installed TypeScript SDK")
    args = parser.parse_args()

    coordinator = Coordinator()
    await coordinator.start()
    # The coordinator sends SIGUSR1 before it kills us at its deadline: say where every task is.
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump_tasks)
    proxy = [args.shoal, "proxy", "--root", args.root, "--no-fallback", "--", args.node, args.server, "stdio"]
    # The TypeScript client's proxy gets the server's command without `--`, as Gemini CLI and the
    # MCP Inspector store it: it must find the same daemon (the scenario checks there is one).
    without_dash = [arg for arg in proxy if arg != "--"]
    # The SDKs pass the server only a few safe variables; shoal's runtime dir must be ours, or the
    # proxies would find (or start) the user's own daemons.
    env = {"SHOAL_RUNTIME_DIR": args.runtime_dir}
    params = StdioServerParameters(command=proxy[0], args=proxy[1:], env=env)
    peers: list[Peer] = [PythonPeer(f"client-{n}", params) for n in range(1, args.python_clients + 1)]
    if args.ts_client:
        peers.append(TypeScriptPeer(f"client-{len(peers) + 1}-ts", args.node, args.ts_client, without_dash, env))
    try:
        await scenario(peers, coordinator)
    except Failure as failure:
        emit(event="fail", reason=str(failure))
        return 1
    except BaseException as error:  # noqa: BLE001 - report anything, then exit 1
        traceback.print_exception(error, file=sys.stderr)
        emit(event="fail", reason=f"unexpected {type(error).__name__}: {error}")
        return 1
    emit(event="done")
    return 0


def dump_tasks() -> None:
    for task in asyncio.all_tasks():
        sys.stderr.write(f"clients.py: task {task.get_name()}:\n")
        task.print_stack(file=sys.stderr)
    sys.stderr.flush()


async def run() -> None:
    code = await main()
    # Exit at once, without letting asyncio wind down whatever a failure left open (a session
    # that never closed would wait on its proxy forever): our proxies and ts-client.mjs see stdin
    # EOF when we are gone, and the coordinator cleans up the rest.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    asyncio.run(run())
