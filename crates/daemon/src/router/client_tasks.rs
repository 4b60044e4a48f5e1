//! Tasks the server asks "the client" to run (2025-11-25 client-side tasks): the daemon runs them.
//!
//! A handshake-era backend is initialized declaring that its client can run `sampling/createMessage`
//! and `elicitation/create` as tasks, so that servers offer what they offer only to such clients.
//! Whatever each session can do, the daemon is that client: a task-augmented request gets a
//! `CreateTaskResult` of the daemon's at once, and goes to the one session routed as any request
//! (`server_requests.rs`) without its `task` field, as the plain request every session can
//! answer. The session's answer completes the task (its error fails it); the server's
//! `tasks/get`, `tasks/result`, `tasks/list` and `tasks/cancel` are answered by the daemon, and
//! each change of status is announced with `notifications/tasks/status`.
//!
//! Invariants: a task reaches a terminal status exactly once (completed, failed or cancelled), and
//! every `tasks/result` the server sends gets exactly one answer: at once for a terminal task,
//! else when it ends (or an error when the backend is gone, which takes its tasks along). At most
//! [`MAX_TASKS`] are kept; finished ones go when their `ttl` runs out, or first when room is
//! needed.

use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};
use shoal_wire::{Envelope, ErrorCode, Id, Validation, error_response, notification_value};

use super::asked::Reply;
use super::dispatch::{ClientId, Outputs, Router, cancellation};
use super::server_requests::Need;
use super::stateless::{RawObject, raw};
use crate::own_keys::OwnKeyMap;

/// Tasks kept at once, running or finished.
const MAX_TASKS: usize = 256;
/// How often the server is told to poll, in milliseconds (it hears of each change anyway).
const POLL_INTERVAL_MS: u64 = 1000;
const RELATED_TASK: &str = "io.modelcontextprotocol/related-task";

#[derive(Debug, Default)]
pub(super) struct ClientTasks {
    tasks: OwnKeyMap<u64, Task>,
}

#[derive(Debug)]
struct Task {
    /// The number of the request out at the client, while the task runs.
    asked: Option<u64>,
    status: Status,
    /// The client's result object, or its error object.
    outcome: Option<Result<Map<String, Value>, Value>>,
    created: SystemTime,
    updated: SystemTime,
    /// As the server asked, in milliseconds; `None`: kept until room is needed.
    ttl: Option<u64>,
    /// The backend's `tasks/result` requests waiting for the end.
    waiting: Vec<Id>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Working,
    Completed,
    Failed,
    Cancelled,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Working => "working",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }
}

impl ClientTasks {
    /// The backend is gone: its tasks mean nothing to the next one.
    pub(super) fn backend_lost(&mut self) {
        self.tasks.clear();
    }

    /// Make room for one more: drop finished tasks whose time is up, then the oldest finished
    /// one if still full. `false` if every kept task still runs.
    fn make_room(&mut self, now: SystemTime) -> bool {
        self.tasks.retain(|_, task| {
            task.status == Status::Working
                || task.ttl.is_none_or(|ttl| {
                    now.duration_since(task.updated).unwrap_or_default()
                        < Duration::from_millis(ttl)
                })
        });
        if self.tasks.len() < MAX_TASKS {
            return true;
        }
        let oldest = self
            .tasks
            .iter()
            .filter(|(_, task)| task.status != Status::Working)
            .min_by_key(|(_, task)| task.updated)
            .map(|(&number, _)| number);
        match oldest {
            Some(number) => {
                self.tasks.remove(&number);
                true
            }
            None => false,
        }
    }
}

impl Router {
    /// A task-augmented `sampling/createMessage` or `elicitation/create` from the backend: run
    /// it as a task of the daemon's. Returns the client it was sent to.
    pub(super) fn run_as_task(
        &mut self,
        backend_id: Id,
        envelope: &Envelope,
        need: Need,
        out: &mut Outputs,
    ) -> Option<ClientId> {
        let Some((plain, ttl)) = without_task(envelope) else {
            let refusal = error_response(
                Some(&backend_id),
                ErrorCode::INVALID_PARAMS,
                "shoal could not read the task-augmented request",
            );
            out.to_backend.push(refusal.into());
            return None;
        };
        let now = (self.clock)();
        if !self.client_tasks.make_room(now) {
            let refusal = error_response(
                Some(&backend_id),
                ErrorCode::INTERNAL_ERROR,
                &format!("shoal is already running {MAX_TASKS} tasks for this server; retry later"),
            );
            out.to_backend.push(refusal.into());
            return None;
        }
        let number = self.mint_id();
        let (client, asked) =
            self.ask_client(backend_id.clone(), &plain, need, Reply::Task(number), out)?;
        let task = Task {
            asked: Some(asked),
            status: Status::Working,
            outcome: None,
            created: now,
            updated: now,
            ttl,
            waiting: Vec::new(),
        };
        let created = json!({ "task": self.task_value(number, &task) });
        self.client_tasks.tasks.insert(number, task);
        self.reply_backend(&backend_id, created, out);
        Some(client)
    }

    /// The client answered the request task `number` runs.
    pub(super) fn client_task_answered(
        &mut self,
        number: u64,
        envelope: &Envelope,
        out: &mut Outputs,
    ) {
        let message = serde_json::from_slice::<Value>(envelope.line().as_bytes()).ok();
        let outcome = match message {
            Some(Value::Object(mut message)) => {
                match (message.remove("result"), message.remove("error")) {
                    (Some(Value::Object(result)), _) => Ok(result),
                    (_, Some(error)) => Err(error),
                    _ => Err(json!({
                        "code": ErrorCode::INTERNAL_ERROR.code(),
                        "message": "the client's answer had no result object",
                    })),
                }
            }
            _ => Err(json!({
                "code": ErrorCode::INTERNAL_ERROR.code(),
                "message": "the client's answer could not be read",
            })),
        };
        let status = if outcome.is_ok() {
            Status::Completed
        } else {
            Status::Failed
        };
        self.end_task(number, status, outcome, out);
    }

    /// The client the request of task `number` went to left before answering.
    pub(super) fn client_task_failed(&mut self, number: u64, why: &str, out: &mut Outputs) {
        let error = json!({ "code": ErrorCode::INTERNAL_ERROR.code(), "message": why });
        self.end_task(number, Status::Failed, Err(error), out);
    }

    /// `tasks/get`, `tasks/result`, `tasks/cancel` or `tasks/list` from the backend.
    pub(super) fn client_task_request(
        &mut self,
        method: &str,
        backend_id: Id,
        envelope: &Envelope,
        out: &mut Outputs,
    ) {
        if method == "tasks/list" {
            let mut numbers: Vec<u64> = self.client_tasks.tasks.keys().copied().collect();
            numbers.sort_unstable();
            let tasks: Vec<Value> = numbers
                .iter()
                .filter_map(|number| {
                    let task = self.client_tasks.tasks.get(number)?;
                    Some(self.task_value(*number, task))
                })
                .collect();
            return self.reply_backend(&backend_id, json!({ "tasks": tasks }), out);
        }
        let named = serde_json::from_slice::<Value>(envelope.line().as_bytes())
            .ok()
            .and_then(|message| {
                let task_id = message.pointer("/params/taskId")?.as_str()?.to_owned();
                Some(task_id)
            });
        let number = named
            .as_deref()
            .and_then(|task_id| self.parse_task_id(task_id));
        let Some(number) = number.filter(|number| self.client_tasks.tasks.contains_key(number))
        else {
            let refusal = error_response(
                Some(&backend_id),
                ErrorCode::INVALID_PARAMS,
                &format!("`{method}` names no task this client runs"),
            );
            return out.to_backend.push(refusal.into());
        };
        match method {
            "tasks/get" => {
                let task = self.task_value_of(number);
                self.reply_backend(&backend_id, task, out);
            }
            "tasks/result" => {
                let Some(task) = self.client_tasks.tasks.get_mut(&number) else {
                    return;
                };
                if task.outcome.is_none() {
                    task.waiting.push(backend_id);
                } else {
                    self.answer_result(number, &backend_id, out);
                }
            }
            _ => {
                let running = self
                    .client_tasks
                    .tasks
                    .get(&number)
                    .is_some_and(|task| task.status == Status::Working);
                if !running {
                    let refusal = error_response(
                        Some(&backend_id),
                        ErrorCode::INVALID_PARAMS,
                        "the task has already ended; it cannot be cancelled",
                    );
                    return out.to_backend.push(refusal.into());
                }
                let asked = self
                    .client_tasks
                    .tasks
                    .get(&number)
                    .and_then(|task| task.asked);
                if let Some(withdrawn) = asked.and_then(|asked| self.asked.withdraw(asked)) {
                    out.to_clients.push((
                        withdrawn.client,
                        cancellation(
                            &self.asked_id(withdrawn.number),
                            "the MCP server cancelled the task",
                        )
                        .into(),
                    ));
                }
                let error = json!({
                    "code": ErrorCode::INTERNAL_ERROR.code(),
                    "message": "the task was cancelled",
                });
                self.end_task(number, Status::Cancelled, Err(error), out);
                let task = self.task_value_of(number);
                self.reply_backend(&backend_id, task, out);
            }
        }
    }

    /// Task `number` ends with `outcome`, once: waiting `tasks/result`s are answered and the
    /// server is told.
    fn end_task(
        &mut self,
        number: u64,
        status: Status,
        outcome: Result<Map<String, Value>, Value>,
        out: &mut Outputs,
    ) {
        let now = (self.clock)();
        let Some(task) = self.client_tasks.tasks.get_mut(&number) else {
            return;
        };
        if task.status != Status::Working {
            return;
        }
        task.status = status;
        task.outcome = Some(outcome);
        task.asked = None;
        task.updated = now;
        let waiting = std::mem::take(&mut task.waiting);
        let status = self.task_value_of(number);
        out.to_backend
            .push(notification_value("notifications/tasks/status", Some(&status)).into());
        for backend_id in waiting {
            self.answer_result(number, &backend_id, out);
        }
    }

    /// Answer `tasks/result` for a task that ended: what its request would have answered.
    fn answer_result(&mut self, number: u64, backend_id: &Id, out: &mut Outputs) {
        let task_id = self.task_id(number);
        let Some(outcome) = self
            .client_tasks
            .tasks
            .get(&number)
            .and_then(|task| task.outcome.clone())
        else {
            return;
        };
        match outcome {
            Ok(mut result) => {
                let meta = result
                    .entry("_meta")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(meta) = meta {
                    meta.insert(RELATED_TASK.to_owned(), json!({ "taskId": task_id }));
                }
                self.reply_backend(backend_id, Value::Object(result), out);
            }
            Err(error) => {
                // The client's error object as it sent it, under the backend's id.
                let text = format!(
                    r#"{{"jsonrpc":"2.0","id":{},"error":{error}}}"#,
                    backend_id.as_str()
                );
                match shoal_wire::Line::new(text.into_bytes()).ok() {
                    Some(line) => out.to_backend.push(line.into()),
                    None => out.to_backend.push(
                        error_response(
                            Some(backend_id),
                            ErrorCode::INTERNAL_ERROR,
                            "the task failed",
                        )
                        .into(),
                    ),
                }
            }
        }
    }

    fn reply_backend(&self, backend_id: &Id, result: Value, out: &mut Outputs) {
        out.to_backend
            .push(shoal_wire::response_value(backend_id, &result).into());
    }

    /// The task's id as the server knows it: unique to this daemon process, like the ids of its
    /// requests to clients.
    fn task_id(&self, number: u64) -> String {
        format!("{}task-{number}", self.asked_prefix)
    }

    fn parse_task_id(&self, task_id: &str) -> Option<u64> {
        task_id
            .strip_prefix(self.asked_prefix.as_str())?
            .strip_prefix("task-")?
            .parse()
            .ok()
    }

    fn task_value_of(&self, number: u64) -> Value {
        self.client_tasks
            .tasks
            .get(&number)
            .map(|task| self.task_value(number, task))
            .unwrap_or(Value::Null)
    }

    /// The task as the protocol has it (`Task`).
    fn task_value(&self, number: u64, task: &Task) -> Value {
        let mut value = json!({
            "taskId": self.task_id(number),
            "status": task.status.as_str(),
            "ttl": task.ttl,
            "createdAt": crate::backend::timestamp(task.created),
            "lastUpdatedAt": crate::backend::timestamp(task.updated),
            "pollInterval": POLL_INTERVAL_MS,
        });
        if let (Some(Err(error)), Value::Object(value)) = (&task.outcome, &mut value)
            && let Some(message) = error.get("message").and_then(Value::as_str)
        {
            value.insert("statusMessage".to_owned(), json!(message));
        }
        value
    }
}

/// The request without its `task` field, and the `ttl` it asked for; every other member as the
/// server wrote it.
fn without_task(envelope: &Envelope) -> Option<(Envelope, Option<u64>)> {
    let mut message: RawObject = serde_json::from_slice(envelope.line().as_bytes()).ok()?;
    let mut params: RawObject = serde_json::from_str(message.get("params")?.get()).ok()?;
    let task: Value = serde_json::from_str(params.remove("task")?.get()).ok()?;
    let ttl = task.get("ttl").and_then(Value::as_u64);
    message.insert("params".to_owned(), raw(&params).ok()?);
    let line = shoal_wire::Line::new(serde_json::to_vec(&message).ok()?).ok()?;
    Some((Envelope::parse(line, Validation::Envelope), ttl))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(status: Status, updated: SystemTime, ttl: Option<u64>) -> Task {
        Task {
            asked: None,
            status,
            outcome: None,
            created: updated,
            updated,
            ttl,
            waiting: Vec::new(),
        }
    }

    #[test]
    fn room_is_made_from_finished_tasks_only() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let mut tasks = ClientTasks::default();
        for number in 0..MAX_TASKS as u64 {
            tasks
                .tasks
                .insert(number, task(Status::Working, start, Some(10)));
        }
        assert!(!tasks.make_room(start), "every kept task still runs");
        // One finished 5 ms ago with a 10 ms ttl: kept, but the first to go when full.
        tasks
            .tasks
            .insert(7, task(Status::Completed, start, Some(10)));
        assert!(tasks.make_room(start + Duration::from_millis(5)));
        assert!(!tasks.tasks.contains_key(&7));
        // Finished tasks whose ttl ran out go even when there is room.
        tasks.tasks.clear();
        tasks.tasks.insert(1, task(Status::Failed, start, Some(10)));
        tasks.tasks.insert(2, task(Status::Completed, start, None));
        tasks
            .tasks
            .insert(3, task(Status::Working, start, Some(10)));
        assert!(tasks.make_room(start + Duration::from_millis(11)));
        let mut kept: Vec<u64> = tasks.tasks.keys().copied().collect();
        kept.sort_unstable();
        assert_eq!(kept, [2, 3]);
    }
}
