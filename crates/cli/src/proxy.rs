//! `shoal proxy`: what an MCP host runs in place of the server.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::OnceLock;

use anyhow::{Context as _, anyhow};
use shoal_ipc::DaemonPaths;
use shoal_proxy::{DaemonCommand, Outcome, ParentWatch, ProxyConfig};

use crate::exit;

/// Share one MCP server between the agent sessions of a project: put this in front of the
/// server's command in the MCP host's configuration.
///
/// The first session starts a background daemon for the project and command; later sessions
/// connect to it, so the server runs once. If shoal cannot work here (an unusable runtime
/// directory, sockets forbidden by a sandbox), it says why on stderr and runs the server directly
/// instead, unless --no-fallback is given.
///
/// Example: shoal proxy -- npx -y @modelcontextprotocol/server-filesystem .
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct ProxyArgs {
    #[command(flatten)]
    server: crate::server::ServerArgs,

    /// Fail (exit 1) instead of running the server directly when shoal cannot share it here
    #[arg(long)]
    no_fallback: bool,
}

impl ProxyArgs {
    /// The server's command line.
    pub(crate) fn server_command(&self) -> &[OsString] {
        &self.server.command
    }

    /// The `--key-env` names.
    pub(crate) fn key_env(&self) -> &[OsString] {
        &self.server.key_env
    }
}

/// The watchdog, armed by [`arm_if_proxy`] before anything else ran.
static WATCH: OnceLock<ParentWatch> = OnceLock::new();

/// Arm the parent-death watchdog if this process is `shoal proxy`, first thing in `main`: a host
/// that dies before the watchdog is armed is seen only as stdin EOF (see
/// `shoal_proxy::arm_parent_death_signal`). A glance at argv is all that runs before it.
pub(crate) fn arm_if_proxy() {
    if std::env::args_os().nth(1).is_some_and(|arg| arg == "proxy") {
        let _ = WATCH.set(shoal_proxy::arm_parent_death_signal());
    }
}

pub(crate) fn run(args: ProxyArgs) -> ExitCode {
    // Resolve our own binary before anything else: an upgrade may replace or delete it while the
    // host runs, and the daemon must be this very version.
    let program = current_exe();
    let watch = WATCH.get_or_init(shoal_proxy::arm_parent_death_signal);
    let config = match program.and_then(|program| config(&args, program, watch)) {
        Ok(config) => config,
        Err(error) => {
            crate::report(&error);
            return ExitCode::from(exit::USAGE);
        }
    };
    init_logging();
    // A command that does not exist is the host's configuration to fix, not something shoal
    // could share or fall back from: say so as a shell would, before any daemon is started.
    if let Err(missing) = find_command(&args.server.command[0], &config.daemon.cwd) {
        crate::report(&missing);
        return ExitCode::from(exit::NOT_FOUND);
    }
    match shoal_proxy::run(config, watch) {
        Ok(Outcome::InputClosed | Outcome::HostGone | Outcome::Terminated) => ExitCode::SUCCESS,
        Err(shoal_proxy::Error::Start(error)) if !args.no_fallback => {
            #[expect(clippy::print_stderr, reason = "the CLI reports failures on stderr")]
            {
                eprintln!(
                    "shoal: running the MCP server directly, unshared, because shoal cannot \
                     share it here: {:#}; fix that to share it (or pass --no-fallback to fail \
                     instead)",
                    anyhow::Error::new(error)
                );
            }
            let error = shoal_proxy::exec_directly(&args.server.command);
            crate::report(&anyhow::Error::new(error).context(format!(
                "run `{}`",
                args.server.command[0].to_string_lossy()
            )));
            ExitCode::from(exit::FAILURE)
        }
        Err(shoal_proxy::Error::Start(error)) => {
            crate::report(
                &anyhow::Error::new(error)
                    .context("share the MCP server (--no-fallback: not running it directly)"),
            );
            ExitCode::from(exit::FAILURE)
        }
        Err(error) => {
            crate::report(&anyhow::Error::new(error));
            ExitCode::from(exit::FAILURE)
        }
    }
}

/// Whether the server's `program` can be started: a path (relative ones from the project root,
/// where the daemon runs it) naming an executable file, or a name found on `PATH`.
fn find_command(program: &OsString, root: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::ffi::OsStrExt as _;
    let is_executable = |path: &std::path::Path| {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(path)
            .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
    };
    let shown = program.to_string_lossy();
    if program.as_bytes().contains(&b'/') {
        let path = root.join(program);
        if is_executable(&path) {
            return Ok(());
        }
        return Err(anyhow!(
            "start the MCP server `{shown}`: {} is not an executable file; fix the server's \
             command in the MCP host's configuration",
            path.display()
        ));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .any(|dir| is_executable(&dir.join(program)))
    {
        return Ok(());
    }
    Err(anyhow!(
        "start the MCP server `{shown}`: command not found (searched PATH={}); install it, or \
         give its absolute path in the MCP host's configuration",
        path.to_string_lossy()
    ))
}

/// This binary's path, checked to still exist.
fn current_exe() -> anyhow::Result<PathBuf> {
    let program = std::env::current_exe().context("find the shoal binary to start the daemon")?;
    // On Linux a deleted executable reads as "<path> (deleted)".
    if !program.is_file() {
        return Err(anyhow!(
            "find the shoal binary to start the daemon: {} no longer exists (shoal was upgraded \
             or removed while the MCP host ran); restart the MCP host",
            program.display()
        ));
    }
    Ok(program)
}

fn config(args: &ProxyArgs, program: PathBuf, watch: &ParentWatch) -> anyhow::Result<ProxyConfig> {
    // Resolved here so that a bad value is a usage error now, not a daemon that fails to start.
    let crate::server::Server {
        root,
        key,
        runtime_dir,
        ..
    } = args.server.resolve()?;
    let paths = DaemonPaths::new(&runtime_dir, &key.id());

    let mut daemon_args: Vec<OsString> = vec![
        "daemon".into(),
        "--detach".into(),
        "--ready-fd".into(),
        shoal_proxy::READY_FD.to_string().into(),
        "--root".into(),
        root.clone().into(),
    ];
    if let Some(idle_timeout) = &args.server.idle_timeout {
        daemon_args.extend(["--idle-timeout".into(), idle_timeout.into()]);
    }
    for name in &args.server.key_env {
        daemon_args.extend(["--key-env".into(), name.clone()]);
    }
    daemon_args.push("--".into());
    daemon_args.extend(args.server.command.iter().cloned());

    Ok(ProxyConfig {
        runtime_dir: runtime_dir.clone(),
        files: paths,
        key: key.id().as_str().to_owned(),
        daemon: DaemonCommand {
            program,
            args: daemon_args,
            // The runtime dir as resolved here, so that the daemon cannot pick another one.
            env: vec![("SHOAL_RUNTIME_DIR".into(), runtime_dir.into())],
            cwd: root,
        },
        label: host_label(watch),
        tuning: shoal_proxy::Tuning::default(),
    })
}

/// The host's process name, for the daemon's logs and `shoal status`.
fn host_label(watch: &ParentWatch) -> String {
    let host = watch.original_parent().as_raw();
    std::fs::read_to_string(format!("/proc/{host}/comm"))
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| format!("host pid {host}"))
}

/// Diagnostics go to stderr, which hosts keep in their MCP logs; stdout is the host's MCP
/// channel and carries nothing else. `SHOAL_LOG` sets the filter; the default, `warn`, shows
/// only what went wrong (a lost daemon, a reconnect), never message payloads.
///
/// Without `SHOAL_LOG`, a plain level filter stands in for `EnvFilter`: parsing even the default
/// directive compiles `EnvFilter`'s regular expressions, and the code and heap that takes stay
/// resident in every proxy for its whole life (`cargo xtask bench session` measures the proxy's
/// RSS, whose target is 4 MiB).
fn init_logging() {
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false);
    // A bad config file is reported by the argument resolution, after this.
    if let Some(configured) = crate::config::var("SHOAL_LOG").ok().flatten() {
        let filter = tracing_subscriber::EnvFilter::try_new(configured.to_string_lossy())
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        subscriber.with_env_filter(filter).init();
    } else {
        subscriber
            .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
            .init();
    }
}
