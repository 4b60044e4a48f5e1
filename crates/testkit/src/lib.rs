//! Test support for shoal: a configurable fixture MCP server and a blocking MCP test client.
//!
//! - [`server`]: the fixture server behind the `shoal-fixture` binary (and `shoal demo`'s built-in
//!   example server). Every routing rule the daemon implements can be triggered and observed
//!   through it: progress, cancellation, server→client requests, subscriptions, log levels,
//!   `list_changed`, tasks, batches, crashes, slow start-up, spawn counting, process trees.
//! - [`client`]: a synchronous client that drives any MCP server over a child's stdio or any byte
//!   stream, with a deadline and a label on every wait.
//! - [`scenarios`]: the runner of the real-process scenario test binaries.
//! - [`fixture_bin`]: where the `shoal-fixture` binary is, building it if needed, for tests of
//!   other crates (cargo builds no binaries of dev-dependencies).
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
pub mod server;

pub use locate::{FIXTURE_BIN_ENV, fixture_bin};
