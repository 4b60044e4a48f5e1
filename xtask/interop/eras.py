#!/usr/bin/env python3
"""Run MCP clients of several protocol eras at once against one server command, and report what
each of them could observe.

    python eras.py --server-cmd '["python", "dual_era_server.py"]' --mode legacy --mode auto \
        --mode 2026-07-28 [--ts]

Each --mode is one session of the official Python SDK (`mcp` 2.3.0) with that `Client(mode=...)`:
`legacy` (initialize handshake), `auto` (server/discover, falling back to initialize), or a pinned
2026-07-28 (no negotiation on the wire). --ts adds one session of the official TypeScript SDK
(handshake era only), run by eras-ts.mjs. Every session spawns its own copy of the command through
its SDK's stdio transport, as an MCP host would; when the command is
`shoal proxy --no-fallback -- python dual_era_server.py`, the sessions share one server.

The server is meant to be dual_era_server.py: every client runs the same scenario against it and
records observations - what a session can tell: the negotiated version, serverInfo, capabilities,
tools, and which log, progress, elicitation and resource-update traffic reached it. Run directly
against the server, the observations describe the eras; run through shoal, a difference from the
direct run is something shoal changed.

Output: one line per client on stdout, {"client": name, "observations": {...}}, then exit 0. When
a client fails, what it failed at and its observations so far go to stderr, and the exit status
is 1; the other clients carry on, so their lines still show what they saw.

Lockstep: the clients are concurrent sessions, but they take the scenario's steps in lockstep,
behind a barrier - no client starts step k+1 before every client finished step k. Steps that make
the server talk to a session outside its own request/response (logs, progress, elicitation,
resource updates) go further: one client at a time acts, in --mode order, while the others wait
and watch. Each session files everything it receives under the turn it arrived in, so a
notification meant for one session that reaches another shows up as "others", never as noise
that depends on timing.

A turn ends with a fence, not a pause: once the acting client's call returned, every session
makes one `echo` call of its own and the turn ends when all of them are answered. The server
sends what a call causes (logs, progress, elicitation, updates) before that call's answer; one
server process reads its input in order, and shoal routes what the server writes in order onto
per-session queues that keep their order, so whatever the acting call sent any session reaches
that session before the answer to its fence. On the client side, each SDK hands notifications
to handlers it schedules itself: a Python session waits until every task of its event loop is
blocked, a TypeScript one for the next turn of node's event loop (see eras-ts.mjs `fence`), so
those handlers have run when the fence is down. The fences' own traffic is not observed.

Every wait has a deadline and a label: a hang is a failure that says what it waited for.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
import warnings
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import mcp_types as types
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp_types import LOG_LEVEL_META_KEY
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

# Logging, resources/subscribe and logging/setLevel are deprecated in 2026-07-28; the handshake-era
# clients use them on purpose.
warnings.filterwarnings("ignore", category=MCPDeprecationWarning)

# How long any single step may take. Generous: a cold shoal daemon plus a Python server start
# take a few seconds on a loaded machine.
STEP = 30.0
# A barrier waits longer than a step, so that a client stuck in a step fails with that step's
# label (and leaves the barrier) before the clients waiting for it time out.
BARRIER = STEP + 15.0

COUNTER = "counter://value"
ANSWERED_NAME = "Ada"
PROGRESS_STEPS = 3
LOG_LEVEL = "warning"

# The turn-taking steps, and what the server may send a session (any session) during each.
EXPECTED: dict[str, set[str]] = {
    "chatty, no level set": {"log"},
    f"chatty, level {LOG_LEVEL}": {"log"},
    "count": set(),
    "greet": {"elicitation"},
    "bump": {"updated"},
}


class Failure(Exception):
    """What a client was doing when it failed, and why."""


class CallError(Exception):
    """An error answer that eras-ts.mjs relayed; the step's label is added by `deadline`."""


def describe(error: BaseException) -> str:
    """A one-line account of an exception, through the SDK's exception groups."""
    if isinstance(error, BaseExceptionGroup):
        return "; ".join(describe(inner) for inner in error.exceptions)
    if isinstance(error, Failure | CallError):
        return str(error)
    if isinstance(error, MCPError):
        return f"JSON-RPC error {error.error.code}: {error.error.message}" + (
            f" (data: {json.dumps(error.error.data)})" if error.error.data is not None else ""
        )
    if isinstance(error, TimeoutError):
        return "timed out"
    return f"{type(error).__name__}: {error}"


async def deadline(label: str, awaitable: Awaitable[Any], secs: float = STEP) -> Any:
    try:
        with anyio.fail_after(secs):
            return await awaitable
    except TimeoutError:
        raise Failure(f"timed out after {secs:.0f} s waiting for {label}") from None
    except Failure:
        raise
    except Exception as error:
        raise Failure(f"{label}: {describe(error)}") from error


class Lockstep:
    """A reusable barrier over the clients still running, which also names the current phase.

    The phase is set by whoever releases the barrier, before any waiter resumes: a notification
    is filed under the phase current when it arrives, so no client may lag in updating it.
    """

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.arrived = 0
        self.released = anyio.Event()
        self.phase: tuple[str, str] = ("start", "*")
        self.next_phase: tuple[str, str] = self.phase

    def _release_if_complete(self) -> None:
        if self.arrived > 0 and self.arrived >= self.parties:
            self.phase = self.next_phase
            self.arrived = 0
            released, self.released = self.released, anyio.Event()
            released.set()

    async def sync(self, label: str, phase: tuple[str, str]) -> None:
        """Wait for every running client to arrive; then the phase is `phase`."""
        if self.arrived > 0 and phase != self.next_phase:
            # Every client must pass the same barriers in the same order, or lockstep is a lie.
            raise Failure(f"clients out of step: one waits at {label!r}, another for phase {self.next_phase}")
        released = self.released
        self.next_phase = phase
        self.arrived += 1
        self._release_if_complete()
        try:
            with anyio.fail_after(BARRIER):
                await released.wait()
        except TimeoutError:
            raise Failure(f"timed out after {BARRIER:.0f} s waiting for the other clients at {label!r}") from None

    def leave(self) -> None:
        """A client is done (or failed): the others no longer wait for it."""
        self.parties -= 1
        self._release_if_complete()


class Session:
    """One client session and its record of the scenario; subclasses drive an SDK."""

    def __init__(self, name: str, lockstep: Lockstep) -> None:
        self.name = name
        self.lockstep = lockstep
        self.observations: dict[str, Any] = {}
        # (phase, kind, value) for everything the server sent this session outside the answers.
        self.received: list[tuple[tuple[str, str], str, Any]] = []
        self.step = "start"
        self.failure: str | None = None

    def note(self, kind: str, value: Any) -> None:
        self.received.append((self.lockstep.phase, kind, value))

    def seen(self, step: str, kind: str, own: bool) -> list[Any]:
        return [
            value
            for (phase_step, actor), k, value in self.received
            if phase_step == step and k == kind and (actor == self.name) == own
        ]

    def own_and_others(self, step: str, kind: str) -> dict[str, Any]:
        return {"own": self.seen(step, kind, True), "others": self.seen(step, kind, False)}

    async def together(self, step: str, action: Callable[[], Awaitable[None]]) -> None:
        """All clients take `step` at once."""
        await self.lockstep.sync(f"start of {step}", (step, "*"))
        self.step = step
        await action()

    async def in_turns(self, step: str, order: list[str], action: Callable[[], Awaitable[None]]) -> None:
        """Clients take `step` one at a time, in `order`; everyone watches every turn."""
        for actor in order:
            await self.lockstep.sync(f"{step}, before {actor}'s turn", (step, actor))
            if actor == self.name:
                self.step = step
                await action()
            await self.lockstep.sync(f"{step}, {actor} acted", (step, actor))
            self.step = f"{step}, fence after {actor}'s turn"
            await deadline(f"the fence after {actor}'s turn of {step}", self.fence())
        await self.lockstep.sync(f"end of {step}", (f"after {step}", "*"))

    async def fence(self) -> None:
        """One `echo` round trip, answered only once everything sent before it was handled."""
        raise NotImplementedError

    def strays(self) -> list[str]:
        """What arrived outside a turn that could have caused it, or was not expected at all."""
        return sorted(
            f"{kind} during {step}"
            for (step, _), kind, _ in self.received
            if kind not in EXPECTED.get(step, set())
        )

    async def run(self, order: list[str]) -> None:
        try:
            await self.scenario(order)
        except Exception as error:
            if isinstance(error, Failure):
                self.failure = str(error)
            else:
                self.failure = describe(error)
                if os.environ.get("ERAS_TRACEBACK"):
                    traceback.print_exception(error)
        finally:
            self.lockstep.leave()

    async def scenario(self, order: list[str]) -> None:
        raise NotImplementedError


class PythonSession(Session):
    """A session of the official Python SDK's `Client`, in one of its modes."""

    def __init__(self, name: str, mode: str, command: list[str], lockstep: Lockstep) -> None:
        super().__init__(name, lockstep)
        self.mode = mode
        self.client: Client | None = None
        self.progress: list[float] = []
        # The whole environment, not the SDK's safe default subset: SHOAL_RUNTIME_DIR and the
        # like must reach `shoal proxy`.
        self.params = StdioServerParameters(command=command[0], args=command[1:], env=dict(os.environ))

    async def on_log(self, params: types.LoggingMessageNotificationParams) -> None:
        self.note("log", params.level)

    async def on_message(self, message: Any) -> None:
        if isinstance(message, Exception):
            self.note("transport error", repr(message))
        elif isinstance(message, types.ResourceUpdatedNotification):
            self.note("updated", str(message.params.uri))
        # Logs come through on_log, progress through the call's own callback.
        elif not isinstance(message, types.LoggingMessageNotification | types.ProgressNotification):
            self.note(message.method, None)

    async def on_elicit(self, context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.note("elicitation", params.message)
        return types.ElicitResult(action="accept", content={"name": ANSWERED_NAME})

    async def scenario(self, order: list[str]) -> None:
        obs = self.observations
        async with AsyncExitStack() as stack:
            client = Client(
                self.params,
                mode=self.mode,
                # Bounds every request, including the one that opens the session (initialize or
                # server/discover), which `deadline` cannot wrap: the SDK enters task groups there.
                read_timeout_seconds=STEP,
                client_info=types.Implementation(name=f"eras-{self.name}", version="1"),
                logging_callback=self.on_log,
                message_handler=self.on_message,
                elicitation_callback=self.on_elicit,
            )

            async def open_session() -> None:
                await stack.enter_async_context(client)
                version = client.protocol_version
                obs["protocol_version"] = version
                obs["era"] = "handshake" if version in HANDSHAKE_PROTOCOL_VERSIONS else "2026"
                obs["server_name"] = client.server_info.name if client.server_info is not None else None
                obs["capabilities"] = client.server_capabilities.model_dump(
                    by_alias=True, mode="json", exclude_none=True
                )

            self.client = client
            self.step = "open"
            try:
                await open_session()
            except Exception as error:
                raise Failure(f"opening the session (mode {self.mode}): {describe(error)}") from error
            await self.lockstep.sync("opened", ("opened", "*"))
            handshake = obs["era"] == "handshake"

            # A pinned-version client negotiates nothing on the wire, so it knows nothing of the
            # server until it asks; every 2026 session asks, so that their observations compare.
            async def discover() -> None:
                if not handshake:
                    raw = await deadline("server/discover", client.session.send_discover(client.protocol_version))
                    result = types.DiscoverResult.model_validate(raw)
                    stamp = (result.meta or {}).get(types.SERVER_INFO_META_KEY) or {}
                    obs["discover"] = {
                        "supported_versions": result.supported_versions,
                        "server_name": stamp.get("name"),
                        "capabilities": result.capabilities.model_dump(by_alias=True, mode="json", exclude_none=True),
                    }

            await self.together("server/discover", discover)

            async def tools() -> None:
                listed = await deadline("tools/list", client.list_tools())
                obs["tools"] = sorted(tool.name for tool in listed.tools)

            await self.together("tools/list", tools)

            async def echo() -> None:
                text = f"echo from {self.name}"
                obs["echo"] = text_of(await deadline("tools/call echo", client.call_tool("echo", {"text": text})))

            await self.together("echo", echo)

            # The server's default log stream: no level set anywhere.
            async def chatty() -> None:
                await deadline("tools/call chatty", client.call_tool("chatty", {}))

            await self.in_turns("chatty, no level set", order, chatty)
            obs["logs, no level set"] = self.own_and_others("chatty, no level set", "log")

            async def set_level() -> None:
                if handshake:
                    await deadline(f"logging/setLevel {LOG_LEVEL}", client.set_logging_level(LOG_LEVEL))
                    obs["set level"] = f"logging/setLevel {LOG_LEVEL}"
                else:
                    # 2026-07-28 has no logging/setLevel: a request opts in to logs in its _meta.
                    obs["set level"] = f"_meta {LOG_LEVEL_META_KEY}={LOG_LEVEL} on the call"

            await self.together("set level", set_level)

            async def chatty_at_level() -> None:
                meta = None if handshake else {LOG_LEVEL_META_KEY: LOG_LEVEL}
                await deadline("tools/call chatty", client.call_tool("chatty", {}, meta=meta))

            await self.in_turns(f"chatty, level {LOG_LEVEL}", order, chatty_at_level)
            obs[f"logs, level {LOG_LEVEL}"] = self.own_and_others(f"chatty, level {LOG_LEVEL}", "log")

            async def count() -> None:
                async def on_progress(value: float, total: float | None, message: str | None) -> None:
                    self.progress.append(value)

                result = await deadline(
                    f"tools/call count({PROGRESS_STEPS})",
                    client.call_tool("count", {"n": PROGRESS_STEPS}, progress_callback=on_progress),
                )
                obs["progress"] = {"result": text_of(result)}

            await self.in_turns("count", order, count)
            # The SDK runs progress callbacks in tasks of their own: read them after the fence.
            obs["progress"] |= {"count": len(self.progress), "values": self.progress}

            async def greet() -> None:
                obs["greet"] = text_of(await deadline("tools/call greet", client.call_tool("greet", {})))

            await self.in_turns("greet", order, greet)
            obs["elicitations"] = self.own_and_others("greet", "elicitation")

            async def subscribe() -> None:
                # As a host would: only when the server says it can (for a 2026 session, in what
                # server/discover answered: a pinned client's own capabilities view is empty).
                capabilities = obs["capabilities"] if handshake else obs["discover"]["capabilities"]
                if not capabilities.get("resources", {}).get("subscribe"):
                    obs["subscription"] = "none: the capabilities lack resources.subscribe"
                elif handshake:
                    await deadline(f"resources/subscribe {COUNTER}", client.subscribe_resource(COUNTER))
                    obs["subscription"] = "resources/subscribe"
                else:
                    # Kept open until the session ends: the stream is the subscription.
                    listening = await deadline(
                        f"subscriptions/listen {COUNTER} (its acknowledgement)",
                        stack.enter_async_context(client.listen(resource_subscriptions=[COUNTER])),
                    )
                    honored = listening.honored.model_dump(by_alias=True, mode="json", exclude_none=True)
                    obs["subscription"] = f"subscriptions/listen, honored {json.dumps(honored, sort_keys=True)}"

            await self.together("subscribe", subscribe)

            async def bump() -> None:
                obs["bump"] = text_of(await deadline("tools/call bump", client.call_tool("bump", {})))

            await self.in_turns("bump", order, bump)
            obs["updates"] = {k: len(v) for k, v in self.own_and_others("bump", "updated").items()}

            obs["strays"] = self.strays()
            self.step = "close"
        # Leaving the stack closes the command's stdin; the SDK bounds the wait for it to exit.

    async def fence(self) -> None:
        assert self.client is not None
        await self.client.call_tool("echo", {"text": "fence"})
        # The SDK spawns a task per notification (and per progress callback) as it reads it, so
        # the fence's answer can overtake their handlers; once every task is blocked, they ran.
        await anyio.wait_all_tasks_blocked()


def text_of(result: types.CallToolResult) -> str:
    text = "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))
    return f"error: {text}" if result.is_error else text


class TypeScriptSession(Session):
    """A session of the official TypeScript SDK (handshake era), run by eras-ts.mjs over a pipe.

    eras-ts.mjs does one operation per request line and reports what the server sent as events;
    the scenario, its turns and its observations stay here, shared with the Python sessions.
    """

    def __init__(self, name: str, node: str, script: str, command: list[str], lockstep: Lockstep):
        super().__init__(name, lockstep)
        self.node = node
        self.script = script
        self.command = command
        self.process: anyio.abc.Process | None = None
        self.ids = 0
        self.answers: dict[int, tuple[anyio.Event, list[Any]]] = {}
        self.progress: list[float] = []

    async def request(self, op: str, **fields: Any) -> Any:
        assert self.process is not None and self.process.stdin is not None
        self.ids += 1
        id = self.ids
        answered = anyio.Event()
        self.answers[id] = (answered, [])
        await self.process.stdin.send((json.dumps({"id": id, "op": op, **fields}) + "\n").encode())
        await answered.wait()
        (message,) = self.answers.pop(id)[1]
        if "error" in message:
            error = message["error"]
            raise CallError(f"error {error.get('code')}: {error.get('message')}")
        return message.get("result")

    async def read_events(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        buffer = b""
        async for chunk in self.process.stdout:
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                message = json.loads(line)
                event = message.get("event")
                if event == "log":
                    self.note("log", message["level"])
                elif event == "updated":
                    self.note("updated", message["uri"])
                elif event == "elicitation":
                    self.note("elicitation", message["message"])
                elif event == "progress":
                    self.progress.append(message["progress"])
                elif event == "notification":
                    self.note(message["method"], None)
                elif (waiting := self.answers.get(message.get("id"))) is not None:
                    waiting[1].append(message)
                    waiting[0].set()
        for answered, slot in self.answers.values():
            slot.append({"error": {"code": None, "message": "eras-ts.mjs exited"}})
            answered.set()

    async def scenario(self, order: list[str]) -> None:
        obs = self.observations
        async with await anyio.open_process(
            [self.node, self.script], stdin=-1, stdout=-1, stderr=None
        ) as process, anyio.create_task_group() as tasks:
            self.process = process
            tasks.start_soon(self.read_events)
            try:
                await self.ts_scenario(obs, order)
                await deadline("close", self.request("close"))
            finally:
                assert process.stdin is not None
                await process.stdin.aclose()
                with anyio.move_on_after(10):
                    await process.wait()
                tasks.cancel_scope.cancel()

    async def ts_scenario(self, obs: dict[str, Any], order: list[str]) -> None:
        self.step = "open"
        opened = await deadline(
            "open (initialize)",
            self.request("open", command=self.command[0], args=self.command[1:], env=dict(os.environ)),
        )
        obs["protocol_version"] = opened["protocolVersion"]
        obs["era"] = "handshake"
        obs["server_name"] = (opened.get("serverInfo") or {}).get("name")
        obs["capabilities"] = opened["capabilities"]
        await self.lockstep.sync("opened", ("opened", "*"))
        # Only 2026 sessions discover; this one still takes the step, to stay in lockstep.
        await self.together("server/discover", anyio.lowlevel.checkpoint)

        async def tools() -> None:
            obs["tools"] = sorted(await deadline("tools/list", self.request("tools")))

        await self.together("tools/list", tools)

        async def echo() -> None:
            text = f"echo from {self.name}"
            obs["echo"] = await deadline("tools/call echo", self.request("call", name="echo", arguments={"text": text}))

        await self.together("echo", echo)

        async def chatty() -> None:
            await deadline("tools/call chatty", self.request("call", name="chatty", arguments={}))

        await self.in_turns("chatty, no level set", order, chatty)
        obs["logs, no level set"] = self.own_and_others("chatty, no level set", "log")

        async def set_level() -> None:
            await deadline(f"logging/setLevel {LOG_LEVEL}", self.request("setLevel", level=LOG_LEVEL))
            obs["set level"] = f"logging/setLevel {LOG_LEVEL}"

        await self.together("set level", set_level)
        await self.in_turns(f"chatty, level {LOG_LEVEL}", order, chatty)
        obs[f"logs, level {LOG_LEVEL}"] = self.own_and_others(f"chatty, level {LOG_LEVEL}", "log")

        async def count() -> None:
            self.progress = []
            result = await deadline(
                f"tools/call count({PROGRESS_STEPS})",
                self.request("call", name="count", arguments={"n": PROGRESS_STEPS}, withProgress=True),
            )
            obs["progress"] = {"result": result}

        await self.in_turns("count", order, count)
        obs["progress"] |= {"count": len(self.progress), "values": self.progress}

        async def greet() -> None:
            obs["greet"] = await deadline("tools/call greet", self.request("call", name="greet", arguments={}))

        await self.in_turns("greet", order, greet)
        obs["elicitations"] = self.own_and_others("greet", "elicitation")

        async def subscribe() -> None:
            if not obs["capabilities"].get("resources", {}).get("subscribe"):
                obs["subscription"] = "none: the capabilities lack resources.subscribe"
                return
            await deadline(f"resources/subscribe {COUNTER}", self.request("subscribe", uri=COUNTER))
            obs["subscription"] = "resources/subscribe"

        await self.together("subscribe", subscribe)

        async def bump() -> None:
            obs["bump"] = await deadline("tools/call bump", self.request("call", name="bump", arguments={}))

        await self.in_turns("bump", order, bump)
        obs["updates"] = {k: len(v) for k, v in self.own_and_others("bump", "updated").items()}
        obs["strays"] = self.strays()
        self.step = "close"

    async def fence(self) -> None:
        # eras-ts.mjs answers only after node ran every handler of what arrived before the answer;
        # its events reach read_events in that order.
        await self.request("fence")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server-cmd", required=True, help="the server command, as a JSON array of strings")
    parser.add_argument(
        "--mode",
        action="append",
        help="a Python SDK client mode: legacy, auto or 2026-07-28; repeatable (default: all three)",
    )
    parser.add_argument("--ts", action="store_true", help="add a TypeScript SDK client (handshake era)")
    parser.add_argument("--node", default="node", help="node executable for --ts")
    parser.add_argument(
        "--ts-dir",
        default=str(Path(__file__).resolve().parents[2] / "target" / "interop" / "npm"),
        help="where @modelcontextprotocol/sdk is installed for --ts (eras-ts.mjs is copied there to run)",
    )
    args = parser.parse_args()

    command = json.loads(args.server_cmd)
    if not (isinstance(command, list) and command and all(isinstance(part, str) for part in command)):
        parser.error("--server-cmd must be a non-empty JSON array of strings")
    modes: list[str] = args.mode or ["legacy", "auto", "2026-07-28"]

    names: list[str] = []
    for mode in modes + (["ts"] if args.ts else []):
        name = mode if mode not in names else f"{mode}#{sum(n.split('#')[0] == mode for n in names) + 1}"
        names.append(name)
    lockstep = Lockstep(len(names))
    sessions: list[Session] = [
        PythonSession(name, mode, command, lockstep) for name, mode in zip(names, modes)
    ]
    if args.ts:
        # The SDK resolves from the script's own directory, so the script runs from next to it.
        script = Path(args.ts_dir) / "eras-ts.mjs"
        script.write_text((Path(__file__).parent / "eras-ts.mjs").read_text())
        sessions.append(TypeScriptSession(names[-1], args.node, str(script), command, lockstep))

    async with anyio.create_task_group() as tasks:
        for session in sessions:
            tasks.start_soon(session.run, names)

    failed = False
    for session in sessions:
        if session.failure is None:
            print(json.dumps({"client": session.name, "observations": session.observations}), flush=True)
        else:
            failed = True
            print(f"eras: client {session.name} failed at {session.step!r}: {session.failure}", file=sys.stderr)
            print(f"eras: {session.name} observed so far: {json.dumps(session.observations)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(anyio.run(main))
