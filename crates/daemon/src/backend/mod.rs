//! Backend supervision: starting the shared MCP server, stopping its whole process tree, and
//! deciding when a crashed server is restarted.

mod policy;
mod process;

pub use process::{BackendCommand, StopOutcome};
