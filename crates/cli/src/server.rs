//! The arguments that name a daemon — project root, server command, key variables — and its idle
//! timeout. `shoal proxy` and `shoal daemon` share them because both must compute the very same
//! key from them: the daemon's hello names its key, and a proxy refuses any other.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use shoal_daemon::parse_idle_timeout;
use shoal_ipc::DaemonKey;

#[derive(Debug, clap::Args)]
pub(crate) struct ServerArgs {
    /// The project root; the server runs there [default: the git top level of the current
    /// directory, else the current directory]
    #[arg(long, value_name = "DIR")]
    pub(crate) root: Option<PathBuf>,

    /// Seconds without sessions before the daemon exits; 0 means never [env: SHOAL_IDLE_TIMEOUT]
    /// [config: idle_timeout]
    /// [default: 300]
    #[arg(long, value_name = "SECS")]
    pub(crate) idle_timeout: Option<String>,

    /// An environment variable whose value is part of the daemon's identity (repeatable): sessions
    /// with different values get different daemons
    #[arg(long = "key-env", value_name = "NAME")]
    pub(crate) key_env: Vec<OsString>,

    /// The MCP server's command line: everything from the first word that is not one of these
    /// options on, its own options included (`--` before it is accepted, not needed: some hosts
    /// drop it from a configured command line)
    #[arg(
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub(crate) command: Vec<OsString>,
}

/// What the arguments and the environment resolve to.
pub(crate) struct Server {
    pub(crate) root: PathBuf,
    pub(crate) key: DaemonKey,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) runtime_dir: PathBuf,
}

impl ServerArgs {
    pub(crate) fn resolve(&self) -> anyhow::Result<Server> {
        let cwd = std::env::current_dir().context("read the current directory")?;
        let root = crate::root::project_root(self.root.as_deref(), &cwd).with_context(|| {
            format!(
                "use {} as the project root",
                self.root.as_deref().unwrap_or(&cwd).display()
            )
        })?;
        let idle_timeout = idle_timeout(self.idle_timeout.as_deref())?;
        let key_env = self
            .key_env
            .iter()
            .map(|name| (name.clone(), std::env::var_os(name)))
            .collect();
        let key = DaemonKey::new(
            root.clone(),
            self.command.clone(),
            env!("CARGO_PKG_VERSION"),
            shoal_wire::PROTOCOL,
            key_env,
        );
        let (runtime_dir, _) = crate::select::runtime_dir()?;
        Ok(Server {
            root,
            key,
            idle_timeout,
            runtime_dir,
        })
    }
}

/// `--idle-timeout`, else `SHOAL_IDLE_TIMEOUT` (environment, then config file), else the default.
fn idle_timeout(flag: Option<&str>) -> anyhow::Result<Option<Duration>> {
    if let Some(value) = flag {
        return parse_idle_timeout(value).context("read --idle-timeout");
    }
    match crate::config::var("SHOAL_IDLE_TIMEOUT")? {
        Some(value) => {
            let value = value
                .into_string()
                .map_err(|_| anyhow!("read SHOAL_IDLE_TIMEOUT: it is not valid UTF-8"))?;
            parse_idle_timeout(&value).context("read SHOAL_IDLE_TIMEOUT")
        }
        None => Ok(Some(shoal_daemon::DEFAULT_IDLE_TIMEOUT)),
    }
}
