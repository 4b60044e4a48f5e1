// One MCP client session of the official TypeScript SDK (handshake era only), for eras.py --ts.
//
// Driven by eras.py over stdin/stdout, one JSON object per line: requests
// {"id", "op": "open" | "tools" | "call" | "fence" | "setLevel" | "subscribe" | "close", ...} get
// {"id", "result"} or {"id", "error": {"code", "message"}}; events {"event": "log" | "progress" |
// "elicitation" | "updated" | "notification", ...} report what the server sent, as it arrives, so
// that eras.py files them under its current turn. The scenario and its observations live in
// eras.py; this script only does one SDK operation per request.
//
// eras.py copies this file next to the installed SDK (target/interop/npm/), so that the imports
// below resolve to the pinned package.

import { createInterface } from "node:readline";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport, getDefaultEnvironment } from "@modelcontextprotocol/sdk/client/stdio.js";
import {
  ElicitRequestSchema,
  LoggingMessageNotificationSchema,
  McpError,
  ResourceUpdatedNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";

function send(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

let client;
let transport;
let calls = 0;
const sdkErrors = [];

const ops = {
  async open({ command, args, env }) {
    transport = new StdioClientTransport({ command, args, env: { ...getDefaultEnvironment(), ...env } });
    client = new Client({ name: "eras-ts", version: "1" }, { capabilities: { elicitation: {} } });
    client.setRequestHandler(ElicitRequestSchema, async (request) => {
      send({ event: "elicitation", message: request.params.message });
      return { action: "accept", content: { name: "Ada" } };
    });
    client.setNotificationHandler(LoggingMessageNotificationSchema, (notification) => {
      send({ event: "log", level: notification.params.level });
    });
    client.setNotificationHandler(ResourceUpdatedNotificationSchema, (notification) => {
      send({ event: "updated", uri: notification.params.uri });
    });
    client.fallbackNotificationHandler = async (notification) => {
      send({ event: "notification", method: notification.method });
    };
    client.onerror = (error) => {
      // Our own progress tokens (see `call`) are unknown to the SDK; anything else is a failure.
      if (!String(error?.message).includes("progress notification for an unknown token")) {
        sdkErrors.push(String(error?.message ?? error));
      }
    };
    // The SDK keeps no negotiated version, and runs notification handlers a microtask later than
    // it retires a request's progress handler (typescript-sdk issue #2580): read both off the wire,
    // in order. The SDK's own handler, installed by connect(), runs after this one.
    let protocolVersion;
    transport.onmessage = (message) => {
      if (message.result?.protocolVersion !== undefined && message.result?.serverInfo !== undefined) {
        protocolVersion = message.result.protocolVersion;
      }
      const token = message.method === "notifications/progress" ? message.params?.progressToken : undefined;
      if (typeof token === "string" && token.startsWith("eras-")) {
        send({ event: "progress", progress: message.params.progress, total: message.params.total });
      }
    };
    await client.connect(transport);
    return {
      protocolVersion,
      serverInfo: client.getServerVersion(),
      capabilities: client.getServerCapabilities(),
    };
  },
  async tools() {
    return (await client.listTools()).tools.map((tool) => tool.name);
  },
  async call({ name, arguments: args, withProgress }) {
    // A string token of our own, seen in `transport.onmessage` (the SDK's `onprogress` would race
    // the answer, see above).
    calls += 1;
    const params = withProgress
      ? { name, arguments: args, _meta: { progressToken: `eras-${calls}` } }
      : { name, arguments: args };
    const result = await client.callTool(params, undefined, { timeout: 60_000 });
    const text = result.content.filter((content) => content.type === "text").map((content) => content.text).join("\n");
    return result.isError ? `error: ${text}` : text;
  },
  // One echo round trip, answered only after node's event loop has turned once more: the SDK
  // runs notification handlers in microtasks queued as it reads each message, and setImmediate
  // fires after every microtask queued so far, so every event for what arrived before the echo's
  // answer has been written by then.
  async fence() {
    await client.callTool({ name: "echo", arguments: { text: "fence" } }, undefined, { timeout: 60_000 });
    await new Promise((resolve) => setImmediate(resolve));
    return null;
  },
  async setLevel({ level }) {
    await client.setLoggingLevel(level);
    return null;
  },
  async subscribe({ uri }) {
    await client.subscribeResource({ uri });
    return null;
  },
  async close() {
    await client.close();
    if (sdkErrors.length > 0) {
      throw new Error(`the SDK reported errors: ${sdkErrors.join("; ")}`);
    }
    return null;
  },
};

const lines = createInterface({ input: process.stdin });
lines.on("line", async (line) => {
  const request = JSON.parse(line);
  try {
    const result = await ops[request.op](request);
    send({ id: request.id, result });
  } catch (error) {
    const code = error instanceof McpError ? error.code : 0;
    send({ id: request.id, error: { code, message: String(error?.message ?? error) } });
  }
});
// eras.py gone (stdin closed): end the session, so that no server or proxy outlives the run.
lines.on("close", () => {
  transport?.close().finally(() => process.exit(0));
  if (transport === undefined) process.exit(0);
});
