//! `meta.json`: what a daemon serves, for humans and `shoal status`.
//!
//! Written at start-up, and again at a clean exit with [`DaemonMeta::exited`] set, atomically
//! (temporary file, then rename), 0600. It is informative only: whether a daemon is alive is
//! decided by `daemon.lock`, never by this file. A crashed daemon's file stays as it was at
//! start (no `exited`) until the next daemon for the key overwrites it, which is how
//! `shoal status` tells a stopped daemon from a crashed one.

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The contents of `meta.json`.
///
/// ```
/// let meta: shoal_ipc::DaemonMeta = serde_json::from_str(r#"{
///     "pid": 4242, "version": "0.1.0", "protocol": 1, "key": "2c26b46b68ffc68f",
///     "root": "/home/me/project", "argv": ["npx", "-y", "server"],
///     "socket": "/run/user/1000/shoal/2c26b46b68ffc68f/daemon.sock",
///     "started_at_unix_ms": 1700000000000, "idle_timeout_ms": 300000
/// }"#)?;
/// assert_eq!(meta.argv[0], "npx");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonMeta {
    /// The daemon's process id.
    pub pid: u32,
    /// The daemon's shoal version.
    pub version: String,
    /// The wire protocol it speaks.
    pub protocol: u32,
    /// The key id (the directory's name).
    pub key: String,
    /// The project root, as text (non-UTF-8 bytes replaced).
    pub root: String,
    /// The backend command line, as text.
    pub argv: Vec<String>,
    /// The socket path.
    pub socket: String,
    /// When the daemon started, in milliseconds since the Unix epoch.
    pub started_at_unix_ms: u64,
    /// The idle timeout in milliseconds; `None` when the daemon never idles out.
    pub idle_timeout_ms: Option<u64>,
    /// Set by the daemon as it exits cleanly (idle, `shoal stop`, a signal); absent while it
    /// runs and after a crash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exited: Option<DaemonExit>,
}

/// How a daemon ended, as it recorded in `meta.json`.
///
/// ```
/// let exit: shoal_ipc::DaemonExit =
///     serde_json::from_str(r#"{"at_unix_ms": 1700000300000, "reason": "idle timeout"}"#)?;
/// assert_eq!(exit.reason, "idle timeout");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonExit {
    /// When, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// Why, for humans (`idle timeout`, `stop requested`, `SIGTERM`...).
    pub reason: String,
}

impl DaemonMeta {
    /// Write `path` atomically with mode 0600.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        let temporary = path.with_extension(format!("json.{}.tmp", std::process::id()));
        let result = (|| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                .open(&temporary)?;
            serde_json::to_writer_pretty(&mut file, self)?;
            file.write_all(b"\n")?;
            std::fs::rename(&temporary, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        result
    }

    /// Read a `meta.json`.
    ///
    /// ```no_run
    /// let meta = shoal_ipc::DaemonMeta::read(std::path::Path::new("/tmp/shoal-1000/2c26b46b68ffc68f/meta.json"))?;
    /// println!("{} serves {:?}", meta.pid, meta.argv);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn read(path: &Path) -> io::Result<DaemonMeta> {
        let bytes = std::fs::read(path)?;
        serde_json::from_slice(&bytes)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
    }
}
