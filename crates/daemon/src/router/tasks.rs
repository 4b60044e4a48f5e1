//! Tasks (2025-11-25): a task belongs to the client whose request created it. Only that client may
//! query, await or cancel it, hears its status, and sees it in `tasks/list`; requests the backend
//! makes on the task's behalf go to that client.
//!
//! Two things outlive the creating request's answer. The request's progress token stays valid
//! until the task reaches a terminal status (the spec says so), so progress under it still
//! reaches the owner. And a server may send the task's first `notifications/tasks/status` before
//! its `CreateTaskResult`: while a task-creating request is in flight, a status about a task
//! nobody owns yet is held (at most [`MAX_HELD`], for at most [`HOLD_FOR`]) and delivered to
//! the owner just before the answer that names it; once no such request is in flight, it is
//! dropped like any status about an unknown task.
//!
//! Task messages are rare, so their few fields are read with a full JSON parse rather than being
//! added to the hot path's envelope scanner.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::Value;
use shoal_wire::{Envelope, ErrorCode, Id, Line, error_response, response_value};

use super::dispatch::ClientId;
use crate::outbox::Outgoing;
use crate::own_keys::OwnKeyMap;

/// The `_meta` key that ties a message to a task.
const RELATED_TASK: &str = "io.modelcontextprotocol/related-task";

/// Status notifications held for tasks whose owner is not known yet, at most.
pub(super) const MAX_HELD: usize = 256;

/// How long a status notification waits for its task's owner to become known.
pub(super) const HOLD_FOR: Duration = Duration::from_secs(10);

/// Task statuses after which nothing more happens to a task.
const TERMINAL_STATUSES: [&str; 3] = ["completed", "failed", "cancelled"];

#[derive(Debug, Default)]
pub(super) struct Tasks {
    /// Task id → owner; `None` once the owner left (the task stays off-limits to everyone else).
    owners: HashMap<String, Option<ClientId>>,
    /// Progress tokens of running tasks, by the backend's token (the creating request's
    /// backend id).
    progress: OwnKeyMap<u64, TaskProgress>,
    /// Status notifications about tasks with no known owner yet, oldest first.
    held: VecDeque<Held>,
}

/// A running task's progress token.
#[derive(Debug)]
pub(super) struct TaskProgress {
    task: String,
    pub(super) client: ClientId,
    /// The token the client sent.
    pub(super) token: Id,
}

#[derive(Debug)]
struct Held {
    since: Instant,
    status: Status,
    line: Line,
}

/// What a `notifications/tasks/status` is about.
#[derive(Debug)]
pub(super) struct Status {
    pub(super) task: String,
    pub(super) terminal: bool,
}

/// The task and status of a `notifications/tasks/status`.
pub(super) fn status_of(envelope: &Envelope) -> Option<Status> {
    let message = parse(envelope)?;
    let params = message.get("params")?;
    let task = params.get("taskId")?.as_str()?.to_owned();
    let terminal = params
        .get("status")
        .and_then(Value::as_str)
        .is_some_and(|status| TERMINAL_STATUSES.contains(&status));
    Some(Status { task, terminal })
}

/// Whether a client request asks to run as a task (`params.task` is an object).
pub(super) fn is_task_augmented(envelope: &Envelope) -> bool {
    // Cheap pre-filter: most requests never mention a task.
    memchr::memmem::find(envelope.line().as_bytes(), b"\"task\"").is_some()
        && parse(envelope).is_some_and(|message| {
            message
                .pointer("/params/task")
                .is_some_and(Value::is_object)
        })
}

fn parse(envelope: &Envelope) -> Option<Value> {
    serde_json::from_slice(envelope.line().as_bytes()).ok()
}

fn string_at(envelope: &Envelope, pointer: &str) -> Option<String> {
    parse(envelope)?
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

impl Tasks {
    /// A task-augmented request of `client` succeeded: the task in its answer is `client`'s, and
    /// so is `progress`, the request's (backend token, client token), until the task ends.
    /// Returns the status notifications held for that task, to deliver before the answer.
    pub(super) fn created(
        &mut self,
        client: ClientId,
        answer: &Envelope,
        progress: Option<(u64, Id)>,
    ) -> Vec<Line> {
        let Some(task) = string_at(answer, "/result/task/taskId") else {
            return Vec::new();
        };
        let mut held = Vec::new();
        let mut terminal = false;
        self.held.retain(|entry| {
            if entry.status.task != task {
                return true;
            }
            terminal |= entry.status.terminal;
            held.push(entry.line.clone());
            false
        });
        if let Some((backend_token, token)) = progress
            && !terminal
        {
            self.progress.insert(
                backend_token,
                TaskProgress {
                    task: task.clone(),
                    client,
                    token,
                },
            );
        }
        self.owners.insert(task, Some(client));
        held
    }

    /// Hold a status notification about `task`, which has no known owner yet, until the answer
    /// that creates it arrives. Drops what has waited longer than [`HOLD_FOR`], and this one if
    /// [`MAX_HELD`] are waiting.
    pub(super) fn hold_status(&mut self, status: Status, line: Line, now: Instant) {
        while self
            .held
            .front()
            .is_some_and(|entry| now.duration_since(entry.since) > HOLD_FOR)
        {
            self.held.pop_front();
        }
        if self.held.len() >= MAX_HELD {
            tracing::debug!("dropped a task status: too many wait for their task's owner");
            return;
        }
        self.held.push_back(Held {
            since: now,
            status,
            line,
        });
    }

    /// No task-creating request is in flight any more: what is held will never find an owner.
    pub(super) fn drop_held(&mut self) {
        self.held.clear();
    }

    /// A running task's progress token, by the token the backend uses.
    pub(super) fn progress(&self, backend_token: u64) -> Option<&TaskProgress> {
        self.progress.get(&backend_token)
    }

    /// `task` reached a terminal status: its progress token is spent.
    pub(super) fn ended(&mut self, task: &str) {
        self.progress.retain(|_, progress| progress.task != task);
    }

    /// `tasks/get`, `tasks/result` or `tasks/cancel` from `client` on a task that is not its own:
    /// the error to answer with, as if the task did not exist.
    pub(super) fn refuse(
        &self,
        client: ClientId,
        method: &str,
        envelope: &Envelope,
    ) -> Option<Line> {
        let task = string_at(envelope, "/params/taskId")?;
        match self.owners.get(&task) {
            Some(&Some(owner)) if owner == client => None,
            // Unknown to the daemon: the backend answers (it knows no such task either).
            None => None,
            Some(_) => Some(error_response(
                envelope.id().as_ref(),
                ErrorCode::INVALID_PARAMS,
                &format!("{method}: no task {task:?} belongs to this session"),
            )),
        }
    }

    /// The answer to `client`'s `tasks/list`, narrowed to its own tasks, under its `id`.
    pub(super) fn narrow_list(
        &self,
        client: ClientId,
        id: &Id,
        answer: &Envelope,
    ) -> Result<Outgoing, String> {
        let mut message = parse(answer).ok_or("the answer is not valid JSON")?;
        let result = message
            .get_mut("result")
            .ok_or("the answer has no result")?;
        if let Some(Value::Array(tasks)) = result.get_mut("tasks") {
            tasks.retain(|task| {
                task.get("taskId")
                    .and_then(Value::as_str)
                    .and_then(|task| self.owners.get(task))
                    .is_some_and(|owner| *owner == Some(client))
            });
        }
        Ok(response_value(id, result).into())
    }

    /// The owner of `task`: `Some(None)` if it left, `None` if the task is unknown.
    pub(super) fn owner(&self, task: &str) -> Option<Option<ClientId>> {
        self.owners.get(task).copied()
    }

    /// The owner of the task a server-to-client request relates to, if it is marked.
    pub(super) fn related_owner(&self, envelope: &Envelope) -> Option<ClientId> {
        memchr::memmem::find(envelope.line().as_bytes(), RELATED_TASK.as_bytes())?;
        let message = parse(envelope)?;
        let task = message
            .get("params")?
            .get("_meta")?
            .get(RELATED_TASK)?
            .get("taskId")?
            .as_str()?;
        self.owners.get(task).copied().flatten()
    }

    pub(super) fn client_left(&mut self, client: ClientId) {
        for owner in self.owners.values_mut() {
            if *owner == Some(client) {
                *owner = None;
            }
        }
        self.progress
            .retain(|_, progress| progress.client != client);
    }

    /// Tasks live in the backend process: a new one has none.
    pub(super) fn backend_lost(&mut self) {
        self.owners.clear();
        self.progress.clear();
        self.held.clear();
    }
}

#[cfg(test)]
mod tests {
    use shoal_wire::Validation;

    use super::*;

    fn status(task: &str) -> Line {
        Line::new(
            format!(
                r#"{{"jsonrpc":"2.0","method":"notifications/tasks/status","params":{{"taskId":"{task}","status":"working"}}}}"#
            )
            .into_bytes(),
        )
        .expect("no newline")
    }

    fn working(task: &str) -> Status {
        Status {
            task: task.to_owned(),
            terminal: false,
        }
    }

    fn created(task: &str) -> Envelope {
        let line = Line::new(
            format!(r#"{{"jsonrpc":"2.0","id":2,"result":{{"task":{{"taskId":"{task}"}}}}}}"#)
                .into_bytes(),
        )
        .expect("no newline");
        Envelope::parse(line, Validation::Envelope)
    }

    #[test]
    fn held_statuses_are_bounded_in_number_and_time() {
        let mut tasks = Tasks::default();
        let start = Instant::now();
        for _ in 0..MAX_HELD + 1 {
            tasks.hold_status(working("T"), status("T"), start);
        }
        assert_eq!(tasks.created(1, &created("T"), None).len(), MAX_HELD);

        tasks.hold_status(working("U"), status("U"), start);
        tasks.hold_status(
            working("W"),
            status("W"),
            start + HOLD_FOR + Duration::from_millis(1),
        );
        assert!(
            tasks.created(1, &created("U"), None).is_empty(),
            "U's status waited too long"
        );
        assert_eq!(tasks.created(1, &created("W"), None).len(), 1);
    }

    #[test]
    fn a_tasks_progress_token_is_spent_when_it_ends_or_its_client_leaves() {
        let mut tasks = Tasks::default();
        tasks.created(1, &created("T"), Some((7, Id::string("p"))));
        tasks.created(2, &created("U"), Some((8, Id::string("q"))));
        assert_eq!(tasks.progress(7).map(|progress| progress.client), Some(1));
        tasks.ended("T");
        assert!(tasks.progress(7).is_none());
        tasks.client_left(2);
        assert!(tasks.progress(8).is_none());
    }
}
