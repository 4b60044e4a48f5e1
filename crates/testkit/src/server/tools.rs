//! The fixture's tools: their `tools/list` entries and what each does on `tools/call`.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::LogLevel;
use super::core::{Call, Outcome, Responder, RpcError, Server, code, reply_outcome, spawn, stats};

/// `big` refuses more than this (64 MiB): enough for throughput benchmarks, small enough not to
/// exhaust a CI runner's memory by mistake.
pub(crate) const BIG_MAX_BYTES: u64 = 64 << 20;

/// `log` refuses a larger `count`, so a typo cannot flood the pipe for minutes.
const LOG_MAX_COUNT: u64 = 100_000;

/// How long `sample`, `elicit`, `roots` and `ping_client` wait for the client by default.
const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// Tools that wait (for time, cancellation or the client) and so run on their own thread, with
/// whether each is task-capable (`execution.taskSupport: "optional"`). Every other tool is answered
/// inline and is not task-capable.
const WAITING_TOOLS: [(&str, bool); 6] = [
    ("slow", true),
    ("wait_cancel", true),
    ("sample", true),
    ("elicit", false),
    ("roots", false),
    ("ping_client", false),
];

/// How a tool runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Behaviour {
    waits: bool,
    task_capable: bool,
}

fn behaviour(name: &str) -> Behaviour {
    match WAITING_TOOLS.iter().find(|(waiting, _)| *waiting == name) {
        Some(&(_, task_capable)) => Behaviour {
            waits: true,
            task_capable,
        },
        None => Behaviour {
            waits: false,
            task_capable: false,
        },
    }
}

/// Whether `name` is a tool of this variant (cheaper than building the catalog on every call).
fn exists(name: &str, variant: u32) -> bool {
    const NAMES: [&str; 15] = [
        "echo",
        "big",
        "slow",
        "wait_cancel",
        "sample",
        "elicit",
        "roots",
        "ping_client",
        "log",
        "notify_list_changed",
        "touch",
        "stats",
        "crash",
        "fail",
        "tool_error",
    ];
    NAMES.contains(&name)
        || (variant > 0
            && name
                .strip_prefix("variant_")
                .is_some_and(|n| n == variant.to_string()))
}

struct Tool {
    name: String,
    description: &'static str,
    input_schema: Value,
}

fn tool(name: &str, description: &'static str, properties: Value, required: &[&str]) -> Tool {
    Tool {
        name: name.to_owned(),
        description,
        input_schema: json!({"type": "object", "properties": properties, "required": required}),
    }
}

fn number(description: &str) -> Value {
    json!({"type": "integer", "minimum": 0, "description": description})
}

fn string(description: &str) -> Value {
    json!({"type": "string", "description": description})
}

fn boolean(description: &str) -> Value {
    json!({"type": "boolean", "description": description})
}

fn catalog(variant: u32) -> Vec<Tool> {
    let timeout = number("how long to wait for the client, in ms (default 30000)");
    let mut tools = vec![
        tool(
            "echo",
            "Returns `text` unchanged.",
            json!({"text": string("text to return")}),
            &["text"],
        ),
        tool(
            "big",
            "Returns a text result of exactly `bytes` bytes (at most 64 MiB).",
            json!({"bytes": number("result size in bytes")}),
            &["bytes"],
        ),
        tool(
            "slow",
            "Sends `steps` progress notifications over `ms` milliseconds, then answers, then \
             sends `late` more progress notifications. Stops silently if cancelled.",
            json!({
                "ms": number("total duration in ms (default 1000)"),
                "steps": number("progress notifications before the result (default 10)"),
                "late": number("progress notifications after the result (default 0)"),
            }),
            &[],
        ),
        tool(
            "wait_cancel",
            "Waits until cancelled (no response) or `timeout_ms` (an error result).",
            json!({"timeout_ms": number("how long to wait, in ms (default 30000)")}),
            &[],
        ),
        tool(
            "sample",
            "Asks the client for sampling/createMessage and returns its answer or error.",
            json!({"prompt": string("the user message to sample on"), "timeout_ms": timeout}),
            &["prompt"],
        ),
        tool(
            "elicit",
            "Asks the client for elicitation/create and returns its answer or error.",
            json!({"message": string("what to ask the user"), "timeout_ms": timeout}),
            &["message"],
        ),
        tool(
            "roots",
            "Asks the client for roots/list and returns its answer or error.",
            json!({"timeout_ms": timeout}),
            &[],
        ),
        tool(
            "ping_client",
            "Pings the client and returns its answer or error.",
            json!({"timeout_ms": timeout}),
            &[],
        ),
        tool(
            "log",
            "Sends `count` notifications/message at `level` if the current log level admits it.",
            json!({
                "level": json!({"type": "string", "enum": LogLevel::ALL.map(LogLevel::as_str)}),
                "message": string("the log data"),
                "logger": string("logger name"),
                "count": number("how many messages (default 1)"),
            }),
            &["level"],
        ),
        tool(
            "notify_list_changed",
            "Sends notifications/<kind>/list_changed; `variant` first changes the tool list.",
            json!({
                "kind": json!({"type": "string", "enum": ["tools", "resources", "prompts"]}),
                "variant": number("new tools variant"),
            }),
            &["kind"],
        ),
        tool(
            "touch",
            "Sends notifications/resources/updated for `uri` if it is subscribed (or `force`).",
            json!({"uri": string("resource URI"), "force": boolean("send even if not subscribed")}),
            &["uri"],
        ),
        tool(
            "stats",
            "Returns what the fixture has received so far.",
            json!({}),
            &[],
        ),
        tool(
            "crash",
            "Exits the process at once with `code` (default 1), or aborts; no response.",
            json!({"code": number("exit status"), "abort": boolean("abort instead of exit")}),
            &[],
        ),
        tool(
            "fail",
            "Answers with a JSON-RPC error.",
            json!({"code": json!({"type": "integer"}), "message": string("error message")}),
            &[],
        ),
        tool(
            "tool_error",
            "Answers with an isError result.",
            json!({"message": string("error text")}),
            &[],
        ),
    ];
    if variant > 0 {
        tools.push(tool(
            &format!("variant_{variant}"),
            "Exists only in this tools variant; returns the variant number.",
            json!({}),
            &[],
        ));
    }
    tools
}

/// The `tools/list` result for the current variant and protocol version.
pub(crate) fn list(server: &Server) -> Value {
    let variant = server.lock().tools_variant;
    let with_execution = server.tasks_enabled();
    let tools: Vec<Value> = catalog(variant)
        .into_iter()
        .map(|tool| {
            let mut entry = json!({
                "name": tool.name,
                "description": tool.description,
                "inputSchema": tool.input_schema,
            });
            if with_execution {
                let support = if behaviour(&tool.name).task_capable {
                    "optional"
                } else {
                    "forbidden"
                };
                entry["execution"] = json!({"taskSupport": support});
            }
            entry
        })
        .collect();
    json!({"tools": tools})
}

/// Handles `tools/call`: inline for quick tools, on a thread for waiting ones, as a task if asked.
pub(crate) fn call(mut call: Call, params: &Map<String, Value>, responder: Responder) {
    let server = call.server.clone();
    let Some(name) = params.get("name").and_then(Value::as_str) else {
        let error = RpcError::invalid_params("tools/call needs a string `name`");
        return responder.finish(Outcome::Error(error));
    };
    let arguments = match params.get("arguments") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(arguments)) => arguments.clone(),
        Some(_) => {
            let error = RpcError::invalid_params("`arguments` must be an object");
            return responder.finish(Outcome::Error(error));
        }
    };
    let variant = server.lock().tools_variant;
    if !exists(name, variant) {
        let error = RpcError::invalid_params(format!("unknown tool: {name}"));
        return responder.finish(Outcome::Error(error));
    }
    let name = name.to_owned();
    let tool = behaviour(&name);
    *server.lock().tool_calls.entry(name.clone()).or_default() += 1;

    if let Some(task) = params.get("task") {
        if !tool.task_capable {
            let error = RpcError::new(
                code::METHOD_NOT_FOUND,
                format!("tool {name} does not support task-augmented execution"),
            );
            return responder.finish(Outcome::Error(error));
        }
        let ttl = task.get("ttl").and_then(Value::as_u64);
        let (task, task_id, signal) = server.tasks.create(ttl);
        // Answer before starting the work, so the status notification cannot overtake it.
        responder.finish(Outcome::Result(json!({"task": task})));
        call.signal = signal;
        call.task_id = Some(task_id.clone());
        return spawn("task", move || {
            let outcome = run(&mut call, &name, &arguments);
            if let Some(status) = server.tasks.finish(&task_id, outcome) {
                server.notify("notifications/tasks/status", status);
            }
            send_after(&call);
        });
    }

    if tool.waits {
        spawn(&name.clone(), move || {
            let outcome = run(&mut call, &name, &arguments);
            responder.finish(outcome);
            send_after(&call);
        });
    } else {
        let outcome = run(&mut call, &name, &arguments);
        responder.finish(outcome);
        send_after(&call);
    }
}

fn send_after(call: &Call) {
    for message in &call.after_response {
        call.server.write(message);
    }
}

fn run(call: &mut Call, name: &str, arguments: &Map<String, Value>) -> Outcome {
    let args = Args {
        tool: name,
        arguments,
    };
    run_tool(call, name, &args).unwrap_or_else(Outcome::Error)
}

fn run_tool(call: &mut Call, name: &str, args: &Args<'_>) -> Result<Outcome, RpcError> {
    let server = call.server.clone();
    Ok(match name {
        "echo" => text_result(args.string("text")?.ok_or_else(|| args.missing("text"))?),
        "big" => {
            let bytes = args.number("bytes")?.ok_or_else(|| args.missing("bytes"))?;
            if bytes > BIG_MAX_BYTES {
                return Err(args.invalid("bytes", "at most 67108864 (64 MiB)"));
            }
            text_result(&"x".repeat(usize::try_from(bytes).unwrap_or(0)))
        }
        "slow" => slow(call, args)?,
        "wait_cancel" => {
            let timeout = Duration::from_millis(args.number("timeout_ms")?.unwrap_or(30_000));
            if call.signal.sleep(timeout) {
                Outcome::Silent
            } else {
                error_result(&format!(
                    "wait_cancel: not cancelled within {} ms",
                    timeout.as_millis()
                ))
            }
        }
        "sample" => {
            let prompt = args
                .string("prompt")?
                .ok_or_else(|| args.missing("prompt"))?;
            let params = json!({
                "messages": [{"role": "user", "content": {"type": "text", "text": prompt}}],
                "maxTokens": 64,
            });
            ask(call, args, "sampling/createMessage", params)?
        }
        "elicit" => {
            let message = args
                .string("message")?
                .ok_or_else(|| args.missing("message"))?;
            let params = json!({
                "message": message,
                "requestedSchema": {"type": "object", "properties": {"answer": {"type": "string"}}},
            });
            ask(call, args, "elicitation/create", params)?
        }
        "roots" => ask(call, args, "roots/list", json!({}))?,
        "ping_client" => ask(call, args, "ping", json!({}))?,
        "log" => log(&server, args)?,
        "notify_list_changed" => {
            let kind = args.string("kind")?.ok_or_else(|| args.missing("kind"))?;
            if !["tools", "resources", "prompts"].contains(&kind) {
                return Err(args.invalid("kind", "one of tools, resources, prompts"));
            }
            if let Some(variant) = args.number("variant")? {
                server.lock().tools_variant = u32::try_from(variant)
                    .map_err(|_| args.invalid("variant", "a 32-bit number"))?;
            }
            let method = format!("notifications/{kind}/list_changed");
            server.notify(&method, json!({}));
            structured_result(json!({"sent": method}))
        }
        "touch" => {
            let uri = args.string("uri")?.ok_or_else(|| args.missing("uri"))?;
            let force = args.boolean("force")?.unwrap_or(false);
            let emit = {
                let mut state = server.lock();
                let emit = force || state.subscriptions.contains(uri);
                if emit {
                    state.resource_updates_sent += 1;
                }
                emit
            };
            if emit {
                server.notify("notifications/resources/updated", json!({"uri": uri}));
            }
            structured_result(json!({"emitted": emit}))
        }
        "stats" => structured_result(stats(call)),
        "crash" => {
            let status = args.number("code")?.unwrap_or(1);
            if args.boolean("abort")?.unwrap_or(false) {
                super::diag(format_args!("aborting (crash tool)"));
                std::process::abort();
            }
            super::diag(format_args!("exiting with status {status} (crash tool)"));
            std::process::exit(i32::try_from(status).unwrap_or(1));
        }
        "fail" => {
            let code = match args.arguments.get("code") {
                None => -32000,
                Some(code) => code
                    .as_i64()
                    .ok_or_else(|| args.invalid("code", "an integer"))?,
            };
            let message = args
                .string("message")?
                .unwrap_or("fixture failure (the fail tool)");
            Outcome::Error(RpcError::new(code, message))
        }
        "tool_error" => error_result(
            args.string("message")?
                .unwrap_or("fixture tool error (the tool_error tool)"),
        ),
        variant => text_result(variant.trim_start_matches("variant_")),
    })
}

fn slow(call: &mut Call, args: &Args<'_>) -> Result<Outcome, RpcError> {
    let total = Duration::from_millis(args.number("ms")?.unwrap_or(1000));
    let steps = args.number("steps")?.unwrap_or(10);
    let late = args.number("late")?.unwrap_or(0);
    if steps == 0 {
        if call.signal.sleep(total) {
            return Ok(Outcome::Silent);
        }
    } else {
        let interval = total / u32::try_from(steps).unwrap_or(u32::MAX);
        for step in 1..=steps {
            if call.signal.sleep(interval) {
                return Ok(Outcome::Silent);
            }
            call.progress(step, steps, format!("step {step}/{steps}"));
        }
    }
    if let Some(token) = &call.progress_token {
        for extra in 1..=late {
            call.after_response.push(json!({
                "jsonrpc": "2.0",
                "method": "notifications/progress",
                "params": {"progressToken": token, "progress": steps + extra, "message": "late"},
            }));
        }
    }
    Ok(text_result(&format!(
        "slow: done after {} ms and {steps} steps",
        total.as_millis()
    )))
}

fn ask(call: &Call, args: &Args<'_>, method: &str, params: Value) -> Result<Outcome, RpcError> {
    let timeout = args
        .number("timeout_ms")?
        .map_or(DEFAULT_WAIT, Duration::from_millis);
    let Value::Object(params) = params else {
        unreachable!("request params are built as objects")
    };
    let reply = call.ask_client(method, params, timeout);
    Ok(reply_outcome(method, reply, timeout))
}

fn log(server: &Server, args: &Args<'_>) -> Result<Outcome, RpcError> {
    let level_name = args.string("level")?.ok_or_else(|| args.missing("level"))?;
    let level = LogLevel::parse(level_name)
        .ok_or_else(|| args.invalid("level", "an MCP log level (debug … emergency)"))?;
    let message = args.string("message")?.unwrap_or("fixture log message");
    let logger = args.string("logger")?;
    let count = args.number("count")?.unwrap_or(1);
    if count > LOG_MAX_COUNT {
        return Err(args.invalid("count", "at most 100000"));
    }
    let emitted = if level >= server.lock().log_level {
        count
    } else {
        0
    };
    for _ in 0..emitted {
        let mut params = json!({"level": level.as_str(), "data": message});
        if let Some(logger) = logger {
            params["logger"] = json!(logger);
        }
        server.notify("notifications/message", params);
    }
    Ok(structured_result(json!({"emitted": emitted})))
}

fn text_result(text: &str) -> Outcome {
    Outcome::Result(json!({"content": [{"type": "text", "text": text}]}))
}

fn error_result(text: &str) -> Outcome {
    Outcome::Result(json!({"content": [{"type": "text", "text": text}], "isError": true}))
}

/// A result with `structuredContent`, and the same JSON as text for clients before 2025-06-18.
fn structured_result(value: Value) -> Outcome {
    Outcome::Result(json!({
        "content": [{"type": "text", "text": value.to_string()}],
        "structuredContent": value,
    }))
}

/// A tool's arguments, with -32602 errors that name the tool and the argument.
struct Args<'a> {
    tool: &'a str,
    arguments: &'a Map<String, Value>,
}

impl Args<'_> {
    fn invalid(&self, name: &str, expected: &str) -> RpcError {
        RpcError::invalid_params(format!("tool {}: `{name}` must be {expected}", self.tool))
    }

    fn missing(&self, name: &str) -> RpcError {
        RpcError::invalid_params(format!("tool {}: missing argument `{name}`", self.tool))
    }

    fn string(&self, name: &str) -> Result<Option<&str>, RpcError> {
        match self.arguments.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(value)) => Ok(Some(value)),
            Some(_) => Err(self.invalid(name, "a string")),
        }
    }

    fn number(&self, name: &str) -> Result<Option<u64>, RpcError> {
        match self.arguments.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.invalid(name, "a non-negative integer")),
        }
    }

    fn boolean(&self, name: &str) -> Result<Option<bool>, RpcError> {
        match self.arguments.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(value)) => Ok(Some(*value)),
            Some(_) => Err(self.invalid(name, "a boolean")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_matches_the_catalog() {
        for variant in [0, 3] {
            let names: Vec<String> = catalog(variant).into_iter().map(|tool| tool.name).collect();
            for name in &names {
                assert!(exists(name, variant), "{name} in variant {variant}");
            }
            for (waiting, _) in WAITING_TOOLS {
                assert!(names.iter().any(|name| name == waiting), "{waiting}");
            }
            assert_eq!(names.len(), 15 + usize::from(variant > 0));
        }
        assert!(!exists("variant_3", 0));
        assert!(!exists("variant_2", 3));
    }
}
