//! Tasks (2025-11-25): a task belongs to the client whose request created it. Only that client may
//! query, await or cancel it, hears its status, and sees it in `tasks/list`; requests the backend
//! makes on the task's behalf go to that client.
//!
//! Task messages are rare, so their few fields are read with a full JSON parse rather than being
//! added to the hot path's envelope scanner.

use std::collections::HashMap;

use serde_json::Value;
use shoal_wire::{Envelope, ErrorCode, Id, Line, error_response, response_value};

use super::dispatch::ClientId;
use crate::outbox::Outgoing;

/// The `_meta` key that ties a message to a task.
const RELATED_TASK: &str = "io.modelcontextprotocol/related-task";

#[derive(Debug, Default)]
pub(super) struct Tasks {
    /// Task id → owner; `None` once the owner left (the task stays off-limits to everyone else).
    owners: HashMap<String, Option<ClientId>>,
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
    /// A task-augmented request of `client` succeeded: the task in its answer is `client`'s.
    pub(super) fn created(&mut self, client: ClientId, answer: &Envelope) {
        if let Some(task) = string_at(answer, "/result/task/taskId") {
            self.owners.insert(task, Some(client));
        }
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

    /// The owner of the task a `notifications/tasks/status` is about.
    pub(super) fn owner_of_notification(&self, envelope: &Envelope) -> Option<ClientId> {
        let task = string_at(envelope, "/params/taskId")?;
        self.owners.get(&task).copied().flatten()
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
    }

    /// Tasks live in the backend process: a new one has none.
    pub(super) fn backend_lost(&mut self) {
        self.owners.clear();
    }
}
