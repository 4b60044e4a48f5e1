//! `shoal daemon`: run the daemon for one project and server command.

use std::fs::File;
use std::os::fd::{BorrowedFd, FromRawFd as _, OwnedFd, RawFd};
use std::process::ExitCode;

use anyhow::{Context as _, anyhow};
use shoal_daemon::{DaemonConfig, ExitReason, Outcome};

use crate::exit;

/// Run the daemon that shares one MCP server between sessions (started by `shoal proxy`).
///
/// It takes the key's lock, listens on the key's socket, starts the server in the project root
/// and serves sessions until it has had none for the idle timeout. `shoal proxy` starts it
/// detached; run it by hand in the foreground to debug a server (logs go to stderr).
///
/// Example: shoal daemon --root ~/src/app --idle-timeout 0 -- npx -y @modelcontextprotocol/server-filesystem .
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct DaemonArgs {
    #[command(flatten)]
    server: crate::server::ServerArgs,

    /// Write the one-line readiness message to this inherited file descriptor, then close it
    #[arg(long, value_name = "FD")]
    ready_fd: Option<RawFd>,

    /// Fork at once and let the started process exit, so that the daemon is nobody's child (what
    /// `shoal proxy` asks for: a host that kills its servers' process tree must not reach it)
    #[arg(long, hide = true)]
    detach: bool,

    /// Send sessions plain lines, never routed frames, as a shoal from before them does (for
    /// tests of a proxy meeting such a daemon)
    #[arg(long, hide = true)]
    lines: bool,

    /// Never read a session's host input in custody: sessions send their host's messages over
    /// the socket, as a shoal from before custody does (for tests of a proxy meeting such a
    /// daemon)
    #[arg(long, hide = true)]
    no_custody: bool,
}

pub(crate) fn run(args: DaemonArgs) -> ExitCode {
    // First: the fork is only safe while this process has a single thread.
    if args.detach
        && let Err(error) = shoal_daemon::detach()
    {
        crate::report(&anyhow::Error::new(error));
        return ExitCode::from(exit::FAILURE);
    }
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
    let server = args.server.resolve()?;
    let mut config = DaemonConfig::new(server.key, server.runtime_dir);
    config.idle_timeout = server.idle_timeout;
    config.routed_frames = !args.lines;
    config.custody = !args.lines && !args.no_custody;
    Ok(config)
}

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
    // A bad config file is reported by the argument resolution, before this.
    let configured = crate::config::var("SHOAL_LOG").ok().flatten();
    let filter = configured
        .and_then(|value| tracing_subscriber::EnvFilter::try_new(value.to_string_lossy()).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(filter)
        .init();
}
