//! Backend supervision: starting the shared MCP server, stopping its whole process tree, and
//! deciding when a crashed server is restarted.

mod policy;
mod process;
mod supervisor;

pub(crate) use policy::{CrashHistory, RestartDecision, RestartPolicy};
pub use process::{BackendCommand, StopOutcome};
pub(crate) use process::{StopTimeouts, group_rss_bytes, process_rss_bytes};
pub(crate) use supervisor::{Backend, BackendEvent};
