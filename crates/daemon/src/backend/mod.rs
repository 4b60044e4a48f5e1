//! Backend supervision: starting the shared MCP server, stopping its whole process tree, and
//! deciding when a crashed server is restarted.

mod lifecycle;
mod policy;
mod process;
mod stderr;
mod supervisor;

pub(crate) use lifecycle::{AfterStop, Failure, Lifecycle, LifecycleConfig, Step};
pub(crate) use policy::RestartPolicy;
pub use process::{BackendCommand, StopOutcome};
pub(crate) use process::{group_rss_bytes, process_rss_bytes};
pub(crate) use stderr::timestamp;
pub(crate) use supervisor::BackendEvent;
