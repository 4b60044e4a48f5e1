//! Task-augmented `tools/call` (MCP 2025-11-25, experimental there): a small in-memory task store
//! with `tasks/get`, `tasks/result`, `tasks/cancel` and `tasks/list`.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use super::core::{Call, Outcome, RpcError, Server, Signal, code, lock};

/// Retention the fixture reports when the request gives no `ttl` (it never actually expires tasks).
const DEFAULT_TTL_MS: u64 = 60_000;

/// Suggested polling interval reported in every task.
const POLL_INTERVAL_MS: u64 = 100;

/// How often a blocked `tasks/result` checks whether it was itself cancelled.
const RESULT_CANCEL_CHECK: Duration = Duration::from_millis(50);

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

    fn is_terminal(self) -> bool {
        self != Status::Working
    }
}

struct Task {
    id: String,
    status: Status,
    status_message: Option<String>,
    created_at: String,
    last_updated_at: String,
    ttl: u64,
    outcome: Option<Outcome>,
    signal: Arc<Signal>,
}

impl Task {
    fn to_json(&self) -> Value {
        let mut task = json!({
            "taskId": self.id,
            "status": self.status.as_str(),
            "createdAt": self.created_at,
            "lastUpdatedAt": self.last_updated_at,
            "ttl": self.ttl,
            "pollInterval": POLL_INTERVAL_MS,
        });
        if let Some(message) = &self.status_message {
            task["statusMessage"] = json!(message);
        }
        task
    }

    fn set_status(&mut self, status: Status, message: Option<String>) {
        self.status = status;
        self.status_message = message;
        self.last_updated_at = now_iso8601();
    }
}

/// Every task of one connection, in creation order.
#[derive(Default)]
pub(crate) struct TaskStore {
    tasks: Mutex<Vec<Task>>,
    changed: Condvar,
}

impl TaskStore {
    pub(crate) fn len(&self) -> usize {
        lock(&self.tasks).len()
    }

    /// A new `working` task: its JSON, its id, and the signal that cancels its work.
    pub(crate) fn create(&self, ttl: Option<u64>) -> (Value, String, Arc<Signal>) {
        let mut tasks = lock(&self.tasks);
        let now = now_iso8601();
        let task = Task {
            id: format!("fixture-task-{}", tasks.len() + 1),
            status: Status::Working,
            status_message: None,
            created_at: now.clone(),
            last_updated_at: now,
            ttl: ttl.unwrap_or(DEFAULT_TTL_MS),
            outcome: None,
            signal: Arc::new(Signal::default()),
        };
        let created = (task.to_json(), task.id.clone(), Arc::clone(&task.signal));
        tasks.push(task);
        created
    }

    /// Records how the work ended; returns the task's new JSON unless it was cancelled already.
    pub(crate) fn finish(&self, id: &str, outcome: Outcome) -> Option<Value> {
        let mut tasks = lock(&self.tasks);
        let task = tasks.iter_mut().find(|task| task.id == id)?;
        if task.status.is_terminal() {
            return None;
        }
        let status = match &outcome {
            Outcome::Result(result) if result.get("isError") == Some(&Value::Bool(true)) => {
                Status::Failed
            }
            Outcome::Result(_) => Status::Completed,
            Outcome::Error(_) => Status::Failed,
            Outcome::Silent => Status::Cancelled,
        };
        task.set_status(status, None);
        task.outcome = Some(outcome);
        let json = task.to_json();
        drop(tasks);
        self.changed.notify_all();
        Some(json)
    }

    pub(crate) fn get(&self, params: &Map<String, Value>) -> Result<Value, RpcError> {
        let id = task_id(params)?;
        let tasks = lock(&self.tasks);
        find(&tasks, id).map(Task::to_json)
    }

    pub(crate) fn list(&self) -> Value {
        let tasks = lock(&self.tasks);
        json!({"tasks": tasks.iter().map(Task::to_json).collect::<Vec<_>>()})
    }
}

/// `tasks/cancel`: -32602 for an unknown or already terminal task.
pub(crate) fn cancel(server: &Server, params: &Map<String, Value>) -> Result<Value, RpcError> {
    let id = task_id(params)?;
    let store = &server.tasks;
    let mut tasks = lock(&store.tasks);
    let task = tasks
        .iter_mut()
        .find(|task| task.id == id)
        .ok_or_else(|| unknown(id))?;
    if task.status.is_terminal() {
        return Err(RpcError::invalid_params(format!(
            "task {id} is already {}",
            task.status.as_str()
        )));
    }
    task.set_status(
        Status::Cancelled,
        Some("cancelled by tasks/cancel".to_owned()),
    );
    task.signal.cancel();
    let json = task.to_json();
    drop(tasks);
    store.changed.notify_all();
    server.notify("notifications/tasks/status", json.clone());
    Ok(json)
}

/// `tasks/result`: blocks until the task is terminal (or this request is cancelled), then answers
/// what the `tools/call` would have, marked with the related task.
pub(crate) fn result(call: &Call, params: &Map<String, Value>) -> Outcome {
    let id = match task_id(params) {
        Ok(id) => id,
        Err(error) => return Outcome::Error(error),
    };
    let store = &call.server.tasks;
    let mut tasks = lock(&store.tasks);
    loop {
        let task = match find(&tasks, id) {
            Ok(task) => task,
            Err(error) => return Outcome::Error(error),
        };
        if task.status == Status::Cancelled {
            return Outcome::Error(RpcError::new(
                code::INTERNAL_ERROR,
                format!("task {id} was cancelled"),
            ));
        }
        if let Some(outcome) = &task.outcome {
            return match outcome.clone() {
                Outcome::Result(mut result) => {
                    result["_meta"] =
                        json!({"io.modelcontextprotocol/related-task": {"taskId": id}});
                    Outcome::Result(result)
                }
                other => other,
            };
        }
        if call.signal.is_cancelled() {
            return Outcome::Silent;
        }
        tasks = store
            .changed
            .wait_timeout(tasks, RESULT_CANCEL_CHECK)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0;
    }
}

fn task_id(params: &Map<String, Value>) -> Result<&str, RpcError> {
    params
        .get("taskId")
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::invalid_params("`taskId` must be a string"))
}

fn find<'a>(tasks: &'a [Task], id: &str) -> Result<&'a Task, RpcError> {
    tasks
        .iter()
        .find(|task| task.id == id)
        .ok_or_else(|| unknown(id))
}

fn unknown(id: &str) -> RpcError {
    RpcError::invalid_params(format!("unknown task {id}"))
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn now_iso8601() -> String {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format_utc(since_epoch)
}

fn format_utc(since_epoch: Duration) -> String {
    let seconds = since_epoch.as_secs();
    let (days, second_of_day) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
        since_epoch.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(seconds: u64, millis: u64, expected: &str) {
        let since_epoch = Duration::from_secs(seconds) + Duration::from_millis(millis);
        assert_eq!(format_utc(since_epoch), expected);
    }

    #[test]
    fn timestamps() {
        check(0, 0, "1970-01-01T00:00:00.000Z");
        check(951_782_400, 5, "2000-02-29T00:00:00.005Z");
        check(1_764_028_800 + 3661, 999, "2025-11-25T01:01:01.999Z");
    }
}
