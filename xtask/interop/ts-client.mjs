// One MCP client session of the official TypeScript SDK, for `cargo xtask interop`.
//
// Driven by clients.py over stdin/stdout, one JSON object per line: requests
// {"id", "op": "open" | "tools" | "call" | "subscribe" | "read" | "close", ...} get
// {"id", "result"} or {"id", "error": {"code", "message"}}; events {"event": "progress" | "sampled"
// | "updated", ...} report what the server sent. The session itself is a `shoal proxy` process
// started by the SDK's StdioClientTransport, as an MCP host would start a server.
//
// xtask copies this file next to the installed SDK (target/interop/npm/), so that the imports
// below resolve to the pinned package.

import { createInterface } from "node:readline";
import { readFileSync } from "node:fs";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport, getDefaultEnvironment } from "@modelcontextprotocol/sdk/client/stdio.js";
import {
  CreateMessageRequestSchema,
  McpError,
  ResourceUpdatedNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";

const name = process.argv[process.argv.indexOf("--name") + 1];
// Read by path: the package's exports map sends `@modelcontextprotocol/sdk/package.json` elsewhere.
const sdkVersion = JSON.parse(
  readFileSync(new URL("./node_modules/@modelcontextprotocol/sdk/package.json", import.meta.url)),
).version;

function send(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

let client;
let transport;
let proxy;
const sdkErrors = [];

const ops = {
  async open({ command, args, env }) {
    transport = new StdioClientTransport({ command, args, env: { ...getDefaultEnvironment(), ...env } });
    client = new Client({ name: `shoal-interop-${name}`, version: "1" }, { capabilities: { sampling: {} } });
    client.setRequestHandler(CreateMessageRequestSchema, async (request) => {
      const asked = request.params.messages
        .map((message) => (message.content.type === "text" ? message.content.text : ""))
        .join("");
      send({ event: "sampled", asked });
      return {
        role: "assistant",
        content: { type: "text", text: `sampled by ${name} [${asked}]` },
        model: "shoal-interop",
        stopReason: "endTurn",
      };
    });
    client.setNotificationHandler(ResourceUpdatedNotificationSchema, (notification) => {
      send({ event: "updated", uri: notification.params.uri });
    });
    client.onerror = (error) => {
      // Our own progress tokens (see `call`) are unknown to the SDK; anything else is a failure.
      if (!String(error?.message).includes("progress notification for an unknown token")) {
        sdkErrors.push(String(error?.message ?? error));
      }
    };
    await client.connect(transport);
    // Progress is observed here, as it comes off the wire in order, rather than through
    // `onprogress`: the pinned SDK runs notification handlers a microtask later but retires a
    // request's progress handler synchronously with its response, so a final progress that
    // arrives in the same read as the response is dropped (typescript-sdk issue #2580). interop
    // checks what shoal delivers, not that race.
    const dispatch = transport.onmessage;
    transport.onmessage = (message, extra) => {
      const token = message.method === "notifications/progress" ? message.params?.progressToken : undefined;
      if (typeof token === "string" && token.startsWith("interop-")) {
        const { progress, total } = message.params;
        send({ event: "progress", id: Number(token.slice("interop-".length)), progress, total });
      }
      dispatch(message, extra);
    };
    // The proxy's ChildProcess, to check how it exits; a private field of the pinned SDK.
    proxy = transport._process;
    return {
      serverInfo: client.getServerVersion(),
      capabilities: client.getServerCapabilities(),
      sdk: sdkVersion,
    };
  },
  async tools() {
    return (await client.listTools()).tools.map((tool) => tool.name);
  },
  async call({ id, name: tool, arguments: args, withProgress }) {
    // A string token of our own (the Python SDK uses numbers), seen in `transport.onmessage`.
    const params = withProgress
      ? { name: tool, arguments: args, _meta: { progressToken: `interop-${id}` } }
      : { name: tool, arguments: args };
    const result = await client.callTool(params, undefined, { timeout: 600_000 });
    return result.content.filter((content) => content.type === "text").map((content) => content.text).join("\n");
  },
  async subscribe({ uri }) {
    await client.subscribeResource({ uri });
    return null;
  },
  async read({ uri }) {
    return (await client.readResource({ uri })).contents.length;
  },
  async close() {
    // Closing the transport ends the proxy's stdin; the SDK SIGTERMs it if it has not exited
    // within 2 s, which the exit status shows.
    const exited = new Promise((resolve) => {
      if (proxy === undefined || proxy.exitCode !== null || proxy.signalCode !== null) resolve();
      else proxy.once("exit", resolve);
    });
    await client.close();
    await exited;
    return { code: proxy?.exitCode ?? null, signal: proxy?.signalCode ?? null, sdkErrors };
  },
};

const lines = createInterface({ input: process.stdin });
lines.on("line", async (line) => {
  const request = JSON.parse(line);
  try {
    const result = await ops[request.op](request);
    send({ id: request.id, result });
    if (request.op === "close") {
      lines.close();
    }
  } catch (error) {
    const code = error instanceof McpError ? error.code : 0;
    send({ id: request.id, error: { code, message: String(error?.message ?? error) } });
  }
});
// clients.py gone (stdin closed): end the session, so that no proxy outlives the run.
lines.on("close", () => {
  transport?.close().finally(() => process.exit(0));
  if (transport === undefined) process.exit(0);
});
