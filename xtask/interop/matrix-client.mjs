// One MCP client session of an official TypeScript SDK, any of the matrix's pinned versions, for
// the matrix stage of `cargo xtask interop` (xtask/src/interop/matrix.rs).
//
//     node matrix-client.mjs --sdk sdk-1.9.0 --server-cmd '["node", "dist/index.js"]' [--mode auto]
//
// --sdk names the installed package alias (target/interop/npm/package.json): the 1.x SDK
// (`@modelcontextprotocol/sdk`, `sdk-1.9.0`, ...) or the 2.x client (`client-2.4.0`), which is
// dual-era: --mode legacy (initialize), auto (server/discover, falling back) or 2026-07-28.
// matrix.rs copies this file next to the installed packages so that the imports resolve.
//
// The scenario is matrix_client.py's, step by step, with the same observations, so that the two
// drivers' sessions compare: see there for the lockstep protocol (stdout {"sync": step}, one line
// of stdin to go on; {"observations": ...} at the end) and what is left out (the everything
// server's timer-driven notifications).

import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { createInterface } from "node:readline";

const STEP_MS = 30_000;
const TIMER_METHODS = new Set(["notifications/message", "notifications/resources/updated", "notifications/stderr"]);
const PROGRESS_TOKEN = "matrix-progress";

function option(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  return at === -1 ? fallback : process.argv[at + 1];
}
const sdk = option("sdk");
const mode = option("mode", "legacy");
const argv = JSON.parse(option("server-cmd"));
// Read off the disk: not every version exports its package.json.
const manifest = new URL(`./node_modules/${sdk}/package.json`, import.meta.url);
const version = JSON.parse(readFileSync(manifest, "utf8")).version;
const v2 = Number(version.split(".")[0]) >= 2;

const { Client } = await import(v2 ? sdk : `${sdk}/client/index.js`);
const { StdioClientTransport, getDefaultEnvironment } = await import(v2 ? `${sdk}/stdio` : `${sdk}/client/stdio.js`);
// 1.x registers handlers by request schema, 2.x by method name.
const schemas = v2 ? {} : await import(`${sdk}/types.js`);
const handlerKey = (method, schema) => (v2 ? method : schemas[schema]);
// A result schema that takes anything, for requests of methods the SDK has no API for: zod's
// `parse` for 1.x, Standard Schema for 2.x.
const anyResult = v2
  ? { "~standard": { version: 1, vendor: "matrix", validate: (value) => ({ value }) } }
  : schemas.ResultSchema;

function out(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

const stdin = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function sync(step) {
  out({ sync: step });
  const { value, done } = await stdin.next();
  if (done || value.trim() !== "go") throw new Error(`the coordinator said ${JSON.stringify(value)} at ${step}`);
}

// An error answer is an observation: its JSON-RPC code (McpError, ProtocolError), else the SDK's
// own error code or name; never a message.
function codeOf(error) {
  if (typeof error?.code === "number") return error.code;
  if (error?.code !== undefined) return `sdk: ${error.code}`;
  return error?.name ?? "Error";
}

async function attempt(action, shape) {
  try {
    const result = await action();
    return shape === undefined ? "ok" : shape(result);
  } catch (error) {
    return { error: codeOf(error) };
  }
}

const options = { timeout: STEP_MS };
const toolResult = (result) => ({
  isError: Boolean(result.isError),
  text: result.content.filter((block) => block.type === "text").map((block) => block.text).join("\n"),
  "content types": result.content.map((block) => block.type),
});
const promptResult = (result) => ({
  roles: result.messages.map((message) => message.role),
  text: result.messages.map((message) => message.content?.text ?? null),
});
const resourceResult = (result) =>
  result.contents.map((content) => ({
    uri: content.uri,
    mimeType: content.mimeType,
    sha256: createHash("sha256").update(content.text ?? content.blob ?? "").digest("hex").slice(0, 16),
  }));

const notifications = {};
const serverRequests = {};
let progress = 0;
let initializeResult;
const asked = (method) => {
  serverRequests[method] = (serverRequests[method] ?? 0) + 1;
};

// Sees every message the server sends before the SDK does, whatever the SDK version does with it:
// progress is counted off the wire (the 1.x SDKs drop progress that shares a read with its
// answer, typescript-sdk issue #2580), and so is the initialize answer (1.x keeps no version).
function spy(message) {
  if (message.result?.protocolVersion !== undefined && message.result?.serverInfo !== undefined) {
    initializeResult = message.result;
  }
  if (message.method === "notifications/progress") {
    if (message.params?.progressToken === PROGRESS_TOKEN) progress += 1;
  } else if (message.method !== undefined && message.id === undefined && !TIMER_METHODS.has(message.method)) {
    notifications[message.method] = (notifications[message.method] ?? 0) + 1;
  }
}

const transport = new StdioClientTransport({
  command: argv[0],
  args: argv.slice(1),
  // The whole environment: SHOAL_RUNTIME_DIR must reach shoal.
  env: { ...getDefaultEnvironment(), ...process.env },
});
// The SDK assigns its handler when it connects; wrap whatever it assigns.
let sdkOnMessage;
Object.defineProperty(transport, "onmessage", {
  get: () => sdkOnMessage && ((message, extra) => (spy(message), sdkOnMessage(message, extra))),
  set: (handler) => {
    sdkOnMessage = handler;
  },
});

// Every capability this SDK version can answer for, as a host of its time would declare.
const capabilities = { sampling: {}, roots: {} };
const canElicit = v2 || schemas.ElicitRequestSchema !== undefined;
if (canElicit) capabilities.elicitation = {};
const clientOptions = { capabilities };
if (v2 && mode !== "legacy") {
  clientOptions.versionNegotiation = { mode: mode === "auto" ? "auto" : { pin: mode } };
}
const client = new Client({ name: "matrix-ts", version }, clientOptions);
client.setRequestHandler(handlerKey("sampling/createMessage", "CreateMessageRequestSchema"), async () => {
  asked("sampling/createMessage");
  return { role: "assistant", content: { type: "text", text: "sampled" }, model: "matrix" };
});
client.setRequestHandler(handlerKey("roots/list", "ListRootsRequestSchema"), async () => {
  asked("roots/list");
  return { roots: [{ uri: "file:///matrix", name: "matrix" }] };
});
if (canElicit) {
  client.setRequestHandler(handlerKey("elicitation/create", "ElicitRequestSchema"), async () => {
    asked("elicitation/create");
    return { action: "decline" };
  });
}
// Our own progress token is unknown to the SDK, which says so here; nothing else is expected.
client.onerror = () => {};

// Every item of a list, following cursors (the 2.x client follows them itself).
async function every(list, key) {
  let found = [];
  let cursor;
  for (let page = 0; page < 100; page += 1) {
    const result = await list(cursor === undefined ? undefined : { cursor }, options);
    found = found.concat(result[key]);
    cursor = result.nextCursor;
    if (!cursor) break;
  }
  return found;
}

async function scenario(obs) {
  await sync("open");
  try {
    await client.connect(transport, options);
  } catch (error) {
    // A pinned 2026-07-28 session on a handshake-era server ends here, directly and through
    // shoal alike.
    obs.open = { error: codeOf(error) };
    return;
  }
  const negotiated = v2 ? client.getNegotiatedProtocolVersion() : initializeResult?.protocolVersion;
  const era = v2 && client.getProtocolEra() === "modern" ? "2026-07-28" : "handshake";
  const serverCapabilities = client.getServerCapabilities() ?? {};
  obs.open = {
    "protocol version": negotiated,
    era,
    server: client.getServerVersion(),
    capabilities: serverCapabilities,
    instructions: (client.getInstructions?.() ?? initializeResult?.instructions ?? "").length,
  };
  if (era !== "handshake") obs.open["supported versions"] = client.getDiscoverResult()?.supportedVersions;

  await sync("lists");
  const tools = await attempt(() => every((params, o) => client.listTools(params, o), "tools"), (list) => list);
  const inputSchemas = Array.isArray(tools) ? Object.fromEntries(tools.map((tool) => [tool.name, tool.inputSchema])) : {};
  obs.tools = Array.isArray(tools) ? Object.keys(inputSchemas).sort() : tools;
  const names = (field) => (list) => list.map((item) => item[field]).sort();
  obs.prompts = serverCapabilities.prompts
    ? await attempt(() => every((params, o) => client.listPrompts(params, o), "prompts"), names("name"))
    : "not offered";
  obs.resources = serverCapabilities.resources
    ? await attempt(() => every((params, o) => client.listResources(params, o), "resources"), names("uri"))
    : "not offered";

  await sync("ping and echo");
  obs.ping = await attempt(() => client.ping(options));
  if (inputSchemas.echo !== undefined) {
    const args = Object.fromEntries((inputSchemas.echo.required ?? []).map((name) => [name, "matrix says hello"]));
    obs.echo = await attempt(() => client.callTool({ name: "echo", arguments: args }, undefined, options), toolResult);
  } else {
    obs.echo = "not offered";
  }

  await sync("progress");
  const slow = ["trigger-long-running-operation", "longRunningOperation", "count"].find((name) => name in inputSchemas);
  if (slow === undefined) {
    obs.progress = "not offered";
  } else {
    const args = slow === "count" ? { n: 3 } : { duration: 0.3, steps: 3 };
    const params = { name: slow, arguments: args, _meta: { progressToken: PROGRESS_TOKEN } };
    obs.progress = await attempt(() => client.callTool(params, undefined, options), toolResult);
  }

  await sync("prompt and resource");
  const simple = ["simple-prompt", "simple_prompt"].find((name) => Array.isArray(obs.prompts) && obs.prompts.includes(name));
  obs.prompt = simple ? await attempt(() => client.getPrompt({ name: simple }, options), promptResult) : "not offered";
  const uri = Array.isArray(obs.resources) ? obs.resources[0] : undefined;
  obs.resource = uri ? await attempt(() => client.readResource({ uri }, options), resourceResult) : "not offered";

  await sync("unknown tool and method");
  obs["unknown tool"] = await attempt(
    () => client.callTool({ name: "matrix-no-such-tool", arguments: {} }, undefined, options),
    toolResult,
  );
  obs["unknown method"] = await attempt(() => client.request({ method: "matrix/no-such-method" }, anyResult, options));

  await sync("logging/setLevel");
  obs["logging/setLevel"] = serverCapabilities.logging
    ? await attempt(() => client.setLoggingLevel("warning", options))
    : "not offered";

  // Where the server says it can, as a host would.
  const subscribable = uri !== undefined && serverCapabilities.resources?.subscribe;
  await sync("subscribe");
  obs.subscribe = subscribable ? await attempt(() => client.subscribeResource({ uri }, options)) : "not offered";
  await sync("unsubscribe");
  obs.unsubscribe = subscribable ? await attempt(() => client.unsubscribeResource({ uri }, options)) : "not offered";

  await sync("close");
  // The SDK runs notification handlers in microtasks queued as it reads: one more turn of the
  // event loop and every one of them has run.
  await new Promise((resolve) => setImmediate(resolve));
  obs["progress notifications"] = progress;
  obs.notifications = Object.fromEntries(Object.entries(notifications).sort());
  obs["server requests"] = Object.fromEntries(Object.entries(serverRequests).sort());
}

const obs = {};
try {
  await scenario(obs);
  out({ observations: obs });
} catch (error) {
  out({ failed: String(error?.stack ?? error), observations: obs });
  process.exitCode = 1;
}
// Closing ends the server's stdin; matrix.rs kills whatever is left in the process group.
await Promise.race([transport.close().catch(() => {}), new Promise((resolve) => setTimeout(resolve, 2_000).unref())]);
process.exit();
