//! Test support for shoal. It is never part of the `shoal` binary: the fixture server it drives
//! is its own crate, `shoal-fixture`, which `shoal demo` embeds.
//!
//! - [`client`]: a synchronous client that drives any MCP server over a child's stdio or any byte
//!   stream, with a deadline and a label on every wait.
//! - [`scenarios`]: the runner of the real-process scenario test binaries.
//! - [`fixture_bin`]: where the `shoal-fixture` binary is, building it if needed, for tests of
//!   other crates (cargo builds no binaries of dev-dependencies).
//! - [`process`]: liveness and process-group helpers for process-tree tests.
//!
//! Synchronous on purpose (std threads and `serde_json` only): it builds fast, the fixture starts in
//! about a millisecond, and tests read top to bottom.
//!
//! ```no_run
//! use serde_json::json;
//! use shoal_testkit::client::Client;
//!
//! let mut client = Client::spawn_fixture(["--chatty"]).unwrap();
//! client.initialize(json!({"roots": {}})).unwrap();
//! let result = client.call_tool("echo", json!({"text": "hi"})).unwrap();
//! assert_eq!(result["content"][0]["text"], "hi");
//! let stats = client.stats().unwrap();
//! assert_eq!(stats["initializeCount"], 1);
//! ```

#![deny(missing_docs)]

pub mod client;
mod locate;
pub mod process;
pub mod scenarios;

pub use locate::{FIXTURE_BIN_ENV, fixture_bin};
