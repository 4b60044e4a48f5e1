//! `shoal daemon`: run the daemon for one project and server command.

use std::ffi::OsString;
use std::fs::File;
use std::os::fd::{BorrowedFd, FromRawFd as _, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use shoal_daemon::{DaemonConfig, DaemonKey, ExitReason, Outcome, parse_idle_timeout};

use crate::exit;

/// Run the daemon that shares one MCP server between sessions (started by `shoal proxy`).
///
/// It takes the key's lock, listens on the key's socket, starts the server in the project root
/// and serves sessions until it has had none for the idle timeout. `shoal proxy` starts it
/// detached; run it by hand in the foreground to debug a server (logs go to stderr).
///
/// Example: shoal daemon --root ~/src/app --idle-timeout 0 -- npx -y @modelcontextprotocol/server-memory
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct DaemonArgs {
    /// The project root; the server runs there [default: the git top level of the current
    /// directory, else the current directory]
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,

    /// Seconds without sessions before the daemon exits; 0 means never [env: SHOAL_IDLE_TIMEOUT]
    /// [default: 300]
    #[arg(long, value_name = "SECS")]
    idle_timeout: Option<String>,

    /// An environment variable whose value is part of the daemon's identity (repeatable): sessions
    /// with different values get different daemons
    #[arg(long = "key-env", value_name = "NAME")]
    key_env: Vec<OsString>,

    /// Write the one-line readiness message to this inherited file descriptor, then close it
    #[arg(long, value_name = "FD")]
    ready_fd: Option<RawFd>,

    /// The MCP server's command line
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

pub(crate) fn run(args: DaemonArgs) -> ExitCode {
    let config = match config(&args) {
        Ok(config) => config,
        Err(error) => {
            crate::report(&error);
            return ExitCode::from(exit::USAGE);
        }
    };
    // Take the readiness fd before anything can spawn a process: it must not leak into the
    // backend, or the spawner would never see EOF if this daemon died.
    let readiness = match args.ready_fd.map(take_inherited_fd).transpose() {
        Ok(readiness) => readiness,
        Err(error) => {
            crate::report(&error);
            return ExitCode::from(exit::USAGE);
        }
    };
    init_logging();
    match shoal_daemon::run(config, readiness) {
        Ok(Outcome::Exited(reason)) => {
            tracing::info!(%reason, "daemon exited");
            if matches!(reason, ExitReason::Fenced(_)) {
                ExitCode::from(exit::FAILURE)
            } else {
                ExitCode::SUCCESS
            }
        }
        Ok(Outcome::Held { pid }) => {
            let holder =
                pid.map_or_else(|| "another process".to_owned(), |pid| format!("pid {pid}"));
            crate::report(&anyhow!(
                "start the daemon: {holder} already serves this project and command; connect to \
                 it with `shoal proxy`, or stop it with `shoal stop`"
            ));
            ExitCode::from(exit::HELD)
        }
        Err(error) => {
            crate::report(&anyhow::Error::new(error));
            ExitCode::from(exit::FAILURE)
        }
    }
}

fn config(args: &DaemonArgs) -> anyhow::Result<DaemonConfig> {
    let cwd = std::env::current_dir().context("read the current directory")?;
    let root = crate::root::project_root(args.root.as_deref(), &cwd).with_context(|| {
        format!(
            "use {} as the project root",
            args.root.as_deref().unwrap_or(&cwd).display()
        )
    })?;
    let idle_timeout = idle_timeout(args.idle_timeout.as_deref())?;
    let key_env = args
        .key_env
        .iter()
        .map(|name| (name.clone(), std::env::var_os(name)))
        .collect();
    let key = DaemonKey::new(
        root,
        args.command.clone(),
        env!("CARGO_PKG_VERSION"),
        shoal_wire::PROTOCOL,
        key_env,
    );
    let (runtime_dir, _) = shoal_daemon::resolve_runtime_dir(
        |name| std::env::var_os(name),
        nix::unistd::geteuid().as_raw(),
    );
    let mut config = DaemonConfig::new(key, runtime_dir);
    config.idle_timeout = idle_timeout;
    Ok(config)
}

/// `--idle-timeout`, else `SHOAL_IDLE_TIMEOUT`, else the default.
pub(crate) fn idle_timeout(flag: Option<&str>) -> anyhow::Result<Option<Duration>> {
    if let Some(value) = flag {
        return parse_idle_timeout(value).context("read --idle-timeout");
    }
    match std::env::var("SHOAL_IDLE_TIMEOUT") {
        Ok(value) => parse_idle_timeout(&value).context("read SHOAL_IDLE_TIMEOUT"),
        Err(std::env::VarError::NotPresent) => Ok(Some(shoal_daemon::DEFAULT_IDLE_TIMEOUT)),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(anyhow!("read SHOAL_IDLE_TIMEOUT: it is not valid UTF-8"))
        }
    }
}

/// Own the inherited descriptor `fd`, after checking it is open, and mark it close-on-exec.
fn take_inherited_fd(fd: RawFd) -> anyhow::Result<File> {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    if fd <= 2 {
        return Err(anyhow!("use fd {fd} for readiness: 0, 1 and 2 are stdio"));
    }
    // SAFETY: the borrow only lives for these two fcntl calls, and fcntl on a closed descriptor
    // fails with EBADF instead of touching anything.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    fcntl(borrowed, FcntlArg::F_GETFD)
        .with_context(|| format!("use fd {fd} for readiness: it is not open"))?;
    fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
        .with_context(|| format!("mark fd {fd} close-on-exec"))?;
    // SAFETY: the descriptor is open (checked above) and was inherited for this purpose; nothing
    // else in this process refers to it, so this is its only owner.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Logs go to stderr, which a spawner points at `daemon.log`. `SHOAL_LOG` sets the filter
/// (tracing's `EnvFilter` syntax); the default, `info`, never shows message payloads.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SHOAL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(filter)
        .init();
}
