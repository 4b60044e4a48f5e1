//! Helpers shared by the fixture's integration tests.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use shoal_testkit::client::Client;

/// Deadline for anything that should happen promptly.
pub(crate) const PROMPT: Duration = Duration::from_secs(10);

/// Window for negative checks ("this must not arrive"); a bug shows up well within it.
pub(crate) const QUIET: Duration = Duration::from_millis(200);

/// The fixture binary cargo built for these tests.
pub(crate) fn fixture_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shoal-fixture"));
    command.args(args);
    command
}

/// A started, initialized fixture (protocol 2025-11-25, capabilities `{}` plus `capabilities`).
pub(crate) fn fixture(args: &[&str], capabilities: Value) -> Client {
    let mut client = Client::spawn(fixture_command(args)).unwrap();
    client.initialize(capabilities).unwrap();
    client
}

/// A fixture for a test that needs nothing special.
pub(crate) fn plain() -> Client {
    fixture(&[], json!({}))
}

/// A fresh scratch directory under the target dir (removed and recreated).
pub(crate) fn scratch_dir(name: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("testkit-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The text of a `CallToolResult`'s first content block.
pub(crate) fn text(result: &Value) -> &str {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text content in {result}"))
}

/// Whether `message` is a `notifications/progress` for `token`.
pub(crate) fn is_progress_for(message: &Value, token: &Value) -> bool {
    message["method"] == "notifications/progress" && &message["params"]["progressToken"] == token
}
