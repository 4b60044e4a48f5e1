//! The fixture's engine: reads lines, validates envelopes, dispatches requests, tracks what is in
//! flight, writes every outgoing message, and keeps the counters behind the `stats` tool.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, BufRead, Write};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::tasks::TaskStore;
use super::{Config, LogLevel, catalog, diag, tasks, tools};

/// JSON-RPC and MCP error codes the fixture uses.
pub(crate) mod code {
    pub(crate) const PARSE_ERROR: i64 = -32700;
    pub(crate) const INVALID_REQUEST: i64 = -32600;
    pub(crate) const METHOD_NOT_FOUND: i64 = -32601;
    pub(crate) const INVALID_PARAMS: i64 = -32602;
    pub(crate) const INTERNAL_ERROR: i64 = -32603;
    pub(crate) const RESOURCE_NOT_FOUND: i64 = -32002;
}

/// The first version whose capabilities include `tasks`.
const TASKS_VERSION: &str = "2025-11-25";

/// A JSON-RPC error object.
#[derive(Clone, Debug)]
pub(crate) struct RpcError {
    pub(crate) code: i64,
    pub(crate) message: String,
    pub(crate) data: Option<Value>,
}

impl RpcError {
    pub(crate) fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub(crate) fn invalid_params(message: impl Into<String>) -> RpcError {
        RpcError::new(code::INVALID_PARAMS, message)
    }

    fn to_json(&self) -> Value {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(data) = &self.data {
            error["data"] = data.clone();
        }
        error
    }
}

/// How a request ends.
#[derive(Clone, Debug)]
pub(crate) enum Outcome {
    Result(Value),
    Error(RpcError),
    /// No response at all (the request was cancelled).
    Silent,
}

impl From<Result<Value, RpcError>> for Outcome {
    fn from(result: Result<Value, RpcError>) -> Outcome {
        match result {
            Ok(value) => Outcome::Result(value),
            Err(error) => Outcome::Error(error),
        }
    }
}

/// A cancellation flag plus a mailbox for the client's answer to a server→client request, so one
/// wait can end on either.
#[derive(Default)]
pub(crate) struct Signal {
    state: Mutex<SignalState>,
    changed: Condvar,
}

#[derive(Default)]
struct SignalState {
    cancelled: bool,
    reply: Option<Value>,
}

/// Why [`Signal::wait`] returned.
pub(crate) enum Wake {
    Cancelled,
    Reply(Value),
    TimedOut,
}

impl Signal {
    pub(crate) fn cancel(&self) {
        lock(&self.state).cancelled = true;
        self.changed.notify_all();
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        lock(&self.state).cancelled
    }

    fn deliver(&self, reply: Value) {
        lock(&self.state).reply = Some(reply);
        self.changed.notify_all();
    }

    /// Waits until cancelled, a reply is delivered (only if `want_reply`), or `deadline`.
    pub(crate) fn wait(&self, deadline: Instant, want_reply: bool) -> Wake {
        let mut state = lock(&self.state);
        loop {
            if want_reply && let Some(reply) = state.reply.take() {
                return Wake::Reply(reply);
            }
            if state.cancelled {
                return Wake::Cancelled;
            }
            let now = Instant::now();
            if now >= deadline {
                return Wake::TimedOut;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Sleeps for `duration` unless cancelled first; returns whether it was cancelled.
    pub(crate) fn sleep(&self, duration: Duration) -> bool {
        matches!(self.wait(Instant::now() + duration, false), Wake::Cancelled)
    }
}

/// The answer to a server→client request.
pub(crate) enum ClientReply {
    Result(Value),
    Error(Value),
    Cancelled,
    TimedOut,
}

/// Everything a request handler may need besides its params.
pub(crate) struct Call {
    pub(crate) server: Arc<Server>,
    pub(crate) signal: Arc<Signal>,
    /// `_meta.progressToken` of the request, as received.
    pub(crate) progress_token: Option<Value>,
    /// Set when running on behalf of a task.
    pub(crate) task_id: Option<String>,
    /// Key of the request itself (so `stats` can leave itself out of `inFlight`).
    pub(crate) request_key: String,
    /// Messages to send after the response (e.g. `slow`'s late progress).
    pub(crate) after_response: Vec<Value>,
}

impl Call {
    /// Sends `notifications/progress` if the request asked for progress.
    pub(crate) fn progress(&self, progress: u64, total: u64, message: String) {
        if let Some(token) = &self.progress_token {
            self.server.notify(
                "notifications/progress",
                json!({"progressToken": token, "progress": progress, "total": total, "message": message}),
            );
        }
    }

    /// Sends a server→client request and waits for its answer, for `timeout` at most. If the call
    /// is cancelled (or times out) first, tells the client with `notifications/cancelled`.
    pub(crate) fn ask_client(
        &self,
        method: &str,
        mut params: Map<String, Value>,
        timeout: Duration,
    ) -> ClientReply {
        let server = &self.server;
        let id = json!(server.next_outgoing_id.fetch_add(1, Ordering::Relaxed));
        let key = id_key(&id);
        if let Some(task_id) = &self.task_id {
            let meta = params
                .entry("_meta")
                .or_insert_with(|| Value::Object(Map::new()));
            meta["io.modelcontextprotocol/related-task"] = json!({"taskId": task_id});
        }
        server
            .lock()
            .pending_outgoing
            .insert(key.clone(), Pending::Call(Arc::clone(&self.signal)));
        server.write(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let reason = match self.signal.wait(Instant::now() + timeout, true) {
            Wake::Reply(reply) => {
                return match reply.get("error") {
                    Some(error) => ClientReply::Error(error.clone()),
                    None => {
                        ClientReply::Result(reply.get("result").cloned().unwrap_or(Value::Null))
                    }
                };
            }
            Wake::Cancelled => "the request that needed it was cancelled",
            Wake::TimedOut => "no answer in time",
        };
        if server.lock().pending_outgoing.remove(&key).is_some() {
            server.notify(
                "notifications/cancelled",
                json!({"requestId": id, "reason": reason}),
            );
        }
        if self.signal.is_cancelled() {
            ClientReply::Cancelled
        } else {
            ClientReply::TimedOut
        }
    }
}

/// Who waits for the answer to a server→client request.
enum Pending {
    /// A tool, woken through its signal.
    Call(Arc<Signal>),
    /// Nobody: the answer to the chatty `roots/list` is kept for `stats`.
    ChattyRoots,
}

/// One request in flight.
struct InFlight {
    id: Value,
    signal: Arc<Signal>,
}

/// The mutable state behind one connection (and the `stats` tool).
pub(crate) struct State {
    initialize_count: u64,
    initialized_notifications: u64,
    protocol_version: Option<String>,
    client_info: Value,
    client_capabilities: Value,
    requests: u64,
    requests_before_initialized: u64,
    methods: BTreeMap<String, u64>,
    notifications: BTreeMap<String, u64>,
    pub(crate) tool_calls: BTreeMap<String, u64>,
    cancellations: Vec<Value>,
    in_flight: HashMap<String, InFlight>,
    duplicate_ids: Vec<Value>,
    pending_outgoing: HashMap<String, Pending>,
    responses_received: u64,
    unexpected_responses: Vec<Value>,
    pub(crate) subscriptions: BTreeSet<String>,
    subscribe_requests: u64,
    unsubscribe_requests: u64,
    pub(crate) resource_updates_sent: u64,
    pub(crate) log_level: LogLevel,
    set_level_requests: Vec<String>,
    pub(crate) tools_variant: u32,
    chatty_roots: Value,
    batches: u64,
    invalid_messages: u64,
}

/// One connection's server.
pub(crate) struct Server {
    pub(crate) config: Config,
    output: Mutex<Box<dyn Write + Send>>,
    output_failed: AtomicBool,
    state: Mutex<State>,
    next_outgoing_id: AtomicI64,
    pub(crate) tasks: TaskStore,
}

impl Server {
    fn new(config: Config, output: Box<dyn Write + Send>) -> Server {
        let state = State {
            initialize_count: 0,
            initialized_notifications: 0,
            protocol_version: None,
            client_info: Value::Null,
            client_capabilities: Value::Null,
            requests: 0,
            requests_before_initialized: 0,
            methods: BTreeMap::new(),
            notifications: BTreeMap::new(),
            tool_calls: BTreeMap::new(),
            cancellations: Vec::new(),
            in_flight: HashMap::new(),
            duplicate_ids: Vec::new(),
            pending_outgoing: HashMap::new(),
            responses_received: 0,
            unexpected_responses: Vec::new(),
            subscriptions: BTreeSet::new(),
            subscribe_requests: 0,
            unsubscribe_requests: 0,
            resource_updates_sent: 0,
            log_level: config.log_level,
            set_level_requests: Vec::new(),
            tools_variant: config.tools_variant,
            chatty_roots: Value::Null,
            batches: 0,
            invalid_messages: 0,
        };
        Server {
            config,
            output: Mutex::new(output),
            output_failed: AtomicBool::new(false),
            state: Mutex::new(state),
            next_outgoing_id: AtomicI64::new(0),
            tasks: TaskStore::default(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Writes one message as one line, whole, and flushes it.
    pub(crate) fn write(&self, message: &Value) {
        let mut line = serde_json::to_vec(message).expect("a serde_json::Value always serializes");
        line.push(b'\n');
        let mut output = lock(&self.output);
        if let Err(error) = output.write_all(&line).and_then(|()| output.flush())
            && !self.output_failed.swap(true, Ordering::Relaxed)
        {
            diag(format_args!("failed to write to stdout: {error}"));
        }
    }

    pub(crate) fn notify(&self, method: &str, params: Value) {
        self.write(&json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// Whether the negotiated protocol version has tasks (and tools' `execution`).
    pub(crate) fn tasks_enabled(&self) -> bool {
        self.lock()
            .protocol_version
            .as_deref()
            .is_some_and(|version| version >= TASKS_VERSION)
    }

    fn stats(&self, own_key: &str) -> Value {
        let state = self.lock();
        let in_flight: Vec<&Value> = state
            .in_flight
            .iter()
            .filter(|(key, _)| key.as_str() != own_key)
            .map(|(_, entry)| &entry.id)
            .collect();
        json!({
            "pid": std::process::id(),
            "name": self.config.name,
            "initializeCount": state.initialize_count,
            "initializedNotifications": state.initialized_notifications,
            "protocolVersion": state.protocol_version,
            "clientInfo": state.client_info,
            "clientCapabilities": state.client_capabilities,
            "requests": state.requests,
            "requestsBeforeInitialized": state.requests_before_initialized,
            "methods": state.methods,
            "notifications": state.notifications,
            "toolCalls": state.tool_calls,
            "cancellations": state.cancellations,
            "inFlight": in_flight,
            "duplicateIds": state.duplicate_ids,
            "subscriptions": state.subscriptions,
            "subscribeRequests": state.subscribe_requests,
            "unsubscribeRequests": state.unsubscribe_requests,
            "resourceUpdatesSent": state.resource_updates_sent,
            "logLevel": state.log_level.as_str(),
            "setLevelRequests": state.set_level_requests,
            "responsesReceived": state.responses_received,
            "unexpectedResponses": state.unexpected_responses,
            "toolsVariant": state.tools_variant,
            "chattyRoots": state.chatty_roots,
            "tasks": self.tasks.len(),
            "batches": state.batches,
            "invalidMessages": state.invalid_messages,
        })
    }
}

/// Where a request's answer goes: straight out, or into the array answering its batch.
#[derive(Clone)]
pub(crate) enum Sink {
    Direct,
    Batch(mpsc::Sender<Value>),
}

impl Sink {
    fn emit(&self, server: &Server, message: Value) {
        match self {
            Sink::Direct => server.write(&message),
            // The collector outlives every sender, so this cannot fail.
            Sink::Batch(sender) => drop(sender.send(message)),
        }
    }

    fn error(&self, server: &Server, id: Value, error: &RpcError) {
        self.emit(
            server,
            json!({"jsonrpc": "2.0", "id": id, "error": error.to_json()}),
        );
    }
}

/// Answers one request exactly once (or not at all if [`Outcome::Silent`]) and takes it off the
/// in-flight table first, even if dropped unanswered.
pub(crate) struct Responder {
    server: Arc<Server>,
    id: Value,
    key: String,
    signal: Arc<Signal>,
    sink: Sink,
    released: bool,
}

impl Responder {
    pub(crate) fn finish(mut self, outcome: Outcome) {
        self.release();
        let message = match outcome {
            Outcome::Result(result) => json!({"jsonrpc": "2.0", "id": self.id, "result": result}),
            Outcome::Error(error) => {
                json!({"jsonrpc": "2.0", "id": self.id, "error": error.to_json()})
            }
            Outcome::Silent => return,
        };
        self.sink.emit(&self.server, message);
    }

    fn release(&mut self) {
        if std::mem::replace(&mut self.released, true) {
            return;
        }
        let mut state = self.server.lock();
        // Remove only our own entry: a duplicate id may have replaced it.
        if state
            .in_flight
            .get(&self.key)
            .is_some_and(|entry| Arc::ptr_eq(&entry.signal, &self.signal))
        {
            state.in_flight.remove(&self.key);
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.release();
    }
}

/// The key a request id is tracked under: its JSON text, so `"1"` and `1` stay distinct.
pub(crate) fn id_key(id: &Value) -> String {
    id.to_string()
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `work` on a new thread (named after what it serves).
pub(crate) fn spawn(name: &str, work: impl FnOnce() + Send + 'static) {
    if let Err(error) = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(work)
    {
        diag(format_args!("failed to start a thread for {name}: {error}"));
    }
}

pub(crate) fn serve(
    config: Config,
    mut input: impl BufRead,
    output: Box<dyn Write + Send>,
) -> io::Result<()> {
    let server = Arc::new(Server::new(config, output));
    let mut line = Vec::new();
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        handle_line(&server, &line);
    }
    if server.config.ignore_stdin_eof {
        diag(format_args!("stdin closed; staying up (ignore-stdin-eof)"));
        loop {
            std::thread::park();
        }
    }
    Ok(())
}

fn handle_line(server: &Arc<Server>, line: &[u8]) {
    let line = line.trim_ascii();
    if line.is_empty() {
        return;
    }
    let message: Value = match serde_json::from_slice(line) {
        Ok(message) => message,
        Err(error) => {
            let message = format!("parse error: {error}");
            return reject(
                server,
                &Sink::Direct,
                Value::Null,
                code::PARSE_ERROR,
                message,
            );
        }
    };
    match message {
        Value::Array(batch) => handle_batch(server, batch),
        message => handle_message(server, message, &Sink::Direct),
    }
}

/// Handles every element, then writes one array with all the answers once the last one is in.
fn handle_batch(server: &Arc<Server>, batch: Vec<Value>) {
    server.lock().batches += 1;
    if batch.is_empty() {
        let message = "invalid request: empty batch".to_owned();
        return reject(
            server,
            &Sink::Direct,
            Value::Null,
            code::INVALID_REQUEST,
            message,
        );
    }
    let (sender, receiver) = mpsc::channel();
    let sink = Sink::Batch(sender);
    for message in batch {
        handle_message(server, message, &sink);
    }
    drop(sink);
    let server = Arc::clone(server);
    spawn("batch", move || {
        // Ends when every responder (each holds a sender) is done.
        let answers: Vec<Value> = receiver.iter().collect();
        if !answers.is_empty() {
            server.write(&Value::Array(answers));
        }
    });
}

/// Answers a message that is not valid JSON-RPC, and counts it.
fn reject(server: &Server, sink: &Sink, id: Value, code: i64, message: String) {
    server.lock().invalid_messages += 1;
    sink.error(server, id, &RpcError::new(code, message));
}

fn handle_message(server: &Arc<Server>, message: Value, sink: &Sink) {
    let Value::Object(mut message) = message else {
        let message = "invalid request: not a JSON object".to_owned();
        return reject(server, sink, Value::Null, code::INVALID_REQUEST, message);
    };
    let id = message.remove("id");
    let valid_id = match &id {
        Some(id @ (Value::String(_) | Value::Number(_))) => Some(id.clone()),
        _ => None,
    };
    let invalid = |reason: &str| {
        let id = valid_id.clone().unwrap_or(Value::Null);
        let message = format!("invalid request: {reason}");
        reject(server, sink, id, code::INVALID_REQUEST, message);
    };
    if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return invalid("`jsonrpc` must be \"2.0\"");
    }
    match message.remove("method") {
        Some(Value::String(method)) => {
            let params = match message.remove("params") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(params)) => params,
                Some(_) => {
                    if let Some(id) = valid_id {
                        let error = RpcError::invalid_params("`params` must be an object");
                        sink.error(server, id, &error);
                    }
                    return;
                }
            };
            match (id, &valid_id) {
                (None, _) => handle_notification(server, &method, &params),
                (Some(_), Some(id)) => dispatch(server, id.clone(), method, params, sink.clone()),
                (Some(_), None) => invalid("`id` must be a string or a number"),
            }
        }
        Some(_) => invalid("`method` must be a string"),
        None => match &valid_id {
            Some(id) if message.contains_key("result") || message.contains_key("error") => {
                handle_response(server, id.clone(), message);
            }
            _ => invalid("neither a request, a notification nor a response"),
        },
    }
}

fn handle_notification(server: &Arc<Server>, method: &str, params: &Map<String, Value>) {
    let mut state = server.lock();
    *state.notifications.entry(method.to_owned()).or_default() += 1;
    match method {
        "notifications/initialized" => {
            state.initialized_notifications += 1;
            let has_roots = state.client_capabilities.get("roots").is_some();
            drop(state);
            if server.config.chatty {
                be_chatty(server, has_roots);
            }
        }
        "notifications/cancelled" => {
            let request_id = params.get("requestId").cloned().unwrap_or(Value::Null);
            // Off the in-flight table at once (it will get no response), so a `stats` sent right
            // after the cancel does not race the worker thread winding down.
            let entry = state.in_flight.remove(&id_key(&request_id));
            let in_flight = entry.is_some();
            if let Some(entry) = entry {
                entry.signal.cancel();
            }
            state.cancellations.push(json!({
                "requestId": request_id,
                "reason": params.get("reason"),
                "inFlight": in_flight,
            }));
        }
        _ => {}
    }
}

/// What the reference "everything" server does right after `notifications/initialized`.
fn be_chatty(server: &Arc<Server>, has_roots: bool) {
    for kind in ["tools", "resources", "prompts"] {
        server.notify(&format!("notifications/{kind}/list_changed"), json!({}));
    }
    if !has_roots {
        return;
    }
    // The answer is recorded by the reader itself (see `handle_response`), so a `stats` call sent
    // after answering always sees it.
    let id = json!(server.next_outgoing_id.fetch_add(1, Ordering::Relaxed));
    server
        .lock()
        .pending_outgoing
        .insert(id_key(&id), Pending::ChattyRoots);
    server.write(&json!({"jsonrpc": "2.0", "id": id, "method": "roots/list", "params": {}}));
}

fn handle_response(server: &Arc<Server>, id: Value, message: Map<String, Value>) {
    let mut state = server.lock();
    state.responses_received += 1;
    match state.pending_outgoing.remove(&id_key(&id)) {
        Some(Pending::Call(signal)) => {
            drop(state);
            signal.deliver(Value::Object(message));
        }
        Some(Pending::ChattyRoots) => state.chatty_roots = Value::Object(message),
        None => {
            diag(format_args!("response to unknown request id {id}"));
            state.unexpected_responses.push(id);
        }
    }
}

fn dispatch(
    server: &Arc<Server>,
    id: Value,
    method: String,
    params: Map<String, Value>,
    sink: Sink,
) {
    let key = id_key(&id);
    let signal = Arc::new(Signal::default());
    {
        let mut state = server.lock();
        state.requests += 1;
        if let Some(limit) = server.config.crash_after_requests
            && state.requests > limit
        {
            diag(format_args!(
                "exiting on request {} ({method}): crash-after-requests {limit}",
                state.requests
            ));
            std::process::exit(1);
        }
        *state.methods.entry(method.clone()).or_default() += 1;
        if state.initialized_notifications == 0 && method != "initialize" {
            state.requests_before_initialized += 1;
        }
        let previous = state.in_flight.insert(
            key.clone(),
            InFlight {
                id: id.clone(),
                signal: Arc::clone(&signal),
            },
        );
        if previous.is_some() {
            state.duplicate_ids.push(id.clone());
        }
    }
    let progress_token = params
        .get("_meta")
        .and_then(|meta| meta.get("progressToken"))
        .cloned();
    let responder = Responder {
        server: Arc::clone(server),
        id,
        key: key.clone(),
        signal: Arc::clone(&signal),
        sink,
        released: false,
    };
    let call = Call {
        server: Arc::clone(server),
        signal,
        progress_token,
        task_id: None,
        request_key: key,
        after_response: Vec::new(),
    };
    match method.as_str() {
        "tools/call" => tools::call(call, &params, responder),
        "tasks/result" => spawn("tasks/result", move || {
            let outcome = tasks::result(&call, &params);
            responder.finish(outcome);
        }),
        _ => {
            let outcome = handle_simple_request(&call, &method, &params);
            responder.finish(outcome);
        }
    }
}

/// Requests answered inline, in arrival order.
fn handle_simple_request(call: &Call, method: &str, params: &Map<String, Value>) -> Outcome {
    let server = &call.server;
    let config = &server.config;
    let result = match method {
        "initialize" => initialize(server, params),
        "ping" => Ok(json!({})),
        "tools/list" => Ok(tools::list(server)),
        "resources/list" => catalog::list_resources(config, params),
        "resources/templates/list" => Ok(catalog::list_resource_templates()),
        "resources/read" => catalog::read_resource(params),
        "resources/subscribe" | "resources/unsubscribe" => {
            subscription(server, method == "resources/subscribe", params)
        }
        "prompts/list" => Ok(catalog::list_prompts()),
        "prompts/get" => catalog::get_prompt(params),
        "completion/complete" => catalog::complete(params),
        "logging/setLevel" => set_level(server, params),
        "tasks/get" => server.tasks.get(params),
        "tasks/list" => Ok(server.tasks.list()),
        "tasks/cancel" => tasks::cancel(server, params),
        _ => Err(RpcError::new(
            code::METHOD_NOT_FOUND,
            format!("method not found: {method}"),
        )),
    };
    result.into()
}

/// The `stats` tool's result.
pub(crate) fn stats(call: &Call) -> Value {
    call.server.stats(&call.request_key)
}

fn initialize(server: &Server, params: &Map<String, Value>) -> Result<Value, RpcError> {
    let requested = params
        .get("protocolVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::invalid_params("initialize needs a string `protocolVersion`"))?;
    let version = server.config.negotiate(requested);
    let mut capabilities = json!({
        "tools": {"listChanged": true},
        "resources": {"subscribe": true, "listChanged": true},
        "prompts": {"listChanged": true},
        "logging": {},
        "completions": {},
    });
    if version.as_str() >= TASKS_VERSION {
        capabilities["tasks"] =
            json!({"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}});
    }
    {
        let mut state = server.lock();
        state.initialize_count += 1;
        if state.initialize_count > 1 {
            diag(format_args!(
                "initialize #{} on one connection (accepted)",
                state.initialize_count
            ));
        }
        state.protocol_version = Some(version.clone());
        state.client_info = params.get("clientInfo").cloned().unwrap_or(Value::Null);
        state.client_capabilities = params.get("capabilities").cloned().unwrap_or(Value::Null);
    }
    Ok(json!({
        "protocolVersion": version,
        "capabilities": capabilities,
        "serverInfo": {"name": server.config.name, "version": env!("CARGO_PKG_VERSION")},
        "instructions": "shoal-fixture: a test server; call the `stats` tool to see what it received.",
    }))
}

fn subscription(
    server: &Server,
    subscribe: bool,
    params: &Map<String, Value>,
) -> Result<Value, RpcError> {
    let uri = params
        .get("uri")
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::invalid_params("`uri` must be a string"))?;
    let mut state = server.lock();
    if subscribe {
        state.subscribe_requests += 1;
        state.subscriptions.insert(uri.to_owned());
    } else {
        state.unsubscribe_requests += 1;
        state.subscriptions.remove(uri);
    }
    Ok(json!({}))
}

fn set_level(server: &Server, params: &Map<String, Value>) -> Result<Value, RpcError> {
    let name = params
        .get("level")
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::invalid_params("`level` must be a string"))?;
    let level = LogLevel::parse(name)
        .ok_or_else(|| RpcError::invalid_params(format!("unknown log level {name:?}")))?;
    let mut state = server.lock();
    state.log_level = level;
    state.set_level_requests.push(name.to_owned());
    Ok(json!({}))
}

/// Maps a server→client answer to a tool result the test can inspect.
pub(crate) fn reply_outcome(method: &str, reply: ClientReply, timeout: Duration) -> Outcome {
    let (text, structured, is_error) = match reply {
        ClientReply::Result(result) => (
            format!("{method} answered: {result}"),
            json!({"response": result}),
            false,
        ),
        ClientReply::Error(error) => (
            format!("{method} failed: {error}"),
            json!({"error": error}),
            true,
        ),
        ClientReply::TimedOut => (
            format!("{method}: no answer within {} ms", timeout.as_millis()),
            json!({"timedOut": true}),
            true,
        ),
        ClientReply::Cancelled => return Outcome::Silent,
    };
    Outcome::Result(json!({
        "content": [{"type": "text", "text": text}],
        "structuredContent": structured,
        "isError": is_error,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Output shared with the test: each call to `serve` writes here.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            lock(&self.0).extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Feeds `input` lines (only inline-answered ones, so the output is complete when `serve`
    /// returns) and compares the output lines.
    fn check(input: &[&str], expected: &[Value]) {
        let output = Captured::default();
        let text = input.join("\n") + "\n";
        serve(Config::default(), text.as_bytes(), Box::new(output.clone())).unwrap();
        let bytes = lock(&output.0).clone();
        let actual: Vec<Value> = String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(actual, expected);
    }

    #[test]
    fn envelopes() {
        check(
            &[
                "not json",
                r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
                r#"{"jsonrpc":"1.0","id":7,"method":"ping"}"#,
                r#"{"jsonrpc":"2.0","id":"a","method":"ping"}"#,
                r#"{"jsonrpc":"2.0","id":1,"method":"server/discover"}"#,
                r#"{"jsonrpc":"2.0","id":2,"method":"ping","params":[1]}"#,
                r#"{"jsonrpc":"2.0","method":"notifications/whatever"}"#,
                "42",
            ],
            &[
                json!({"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error: expected ident at line 1 column 2"}}),
                json!({"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: `id` must be a string or a number"}}),
                json!({"jsonrpc":"2.0","id":7,"error":{"code":-32600,"message":"invalid request: `jsonrpc` must be \"2.0\""}}),
                json!({"jsonrpc":"2.0","id":"a","result":{}}),
                json!({"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"method not found: server/discover"}}),
                json!({"jsonrpc":"2.0","id":2,"error":{"code":-32602,"message":"`params` must be an object"}}),
                json!({"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: not a JSON object"}}),
            ],
        );
    }

    #[test]
    fn signal_prefers_a_delivered_reply() {
        let signal = Signal::default();
        signal.deliver(json!(1));
        signal.cancel();
        assert!(matches!(signal.wait(Instant::now(), true), Wake::Reply(_)));
        assert!(matches!(signal.wait(Instant::now(), true), Wake::Cancelled));
        assert!(matches!(
            Signal::default().wait(Instant::now(), true),
            Wake::TimedOut
        ));
    }
}
