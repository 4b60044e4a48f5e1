//! `shoal demo`: shoal's main job, end to end, with nothing installed.
//!
//! Several real `shoal proxy` processes (this binary) attach to one daemon that serves a built-in
//! example server (`shoal demo-server`, the workspace's fixture MCP server with a start-up delay
//! standing in for a real server's indexing). Each session is a real MCP client on the proxy's
//! stdio: it initializes, asks the server for its pid and echoes through it. The demo prints
//! one row per session and a summary, then stops the daemon and removes everything it created.
//!
//! Everything lives in a private scratch directory (its own runtime dir and project root), so the
//! demo never touches the user's daemons.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

/// Run several `shoal proxy` sessions against a built-in example server through one daemon.
///
/// The first session starts the daemon and the server (a cold start); the others attach to the
/// running daemon (warm). Prints each session's attach time and the pid of the server it talks
/// to, then how many processes sharing saved. Uses a private scratch directory and cleans up.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  shoal demo --sessions 6")]
pub(crate) struct DemoArgs {
    /// How many sessions to attach.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(2..=64))]
    sessions: u32,
    /// The example server's start-up delay in milliseconds (what a real server spends loading).
    #[arg(long, value_name = "MS", default_value_t = 400)]
    server_startup_ms: u64,
}

/// How long any one step may take before the demo gives up.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) fn run(args: &DemoArgs) -> ExitCode {
    match demo(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            crate::report(&error.context("run the demo"));
            ExitCode::from(crate::exit::FAILURE)
        }
    }
}

/// `shoal demo-server`: the example server the demo shares (hidden; arguments are the fixture's).
pub(crate) fn serve(args: Vec<std::ffi::OsString>) -> ExitCode {
    use shoal_fixture::{self as server, Config, Parsed, USAGE};
    let config = match Config::from_env().and_then(|config| config.apply_args(args)) {
        Ok(Parsed::Run(config)) => config,
        Ok(Parsed::Help) => {
            let _ = std::io::stdout().write_all(USAGE.as_bytes());
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            crate::report(&anyhow::anyhow!("{error}").context("start the demo server"));
            return ExitCode::from(crate::exit::USAGE);
        }
    };
    match server::run_stdio(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            crate::report(&anyhow::Error::new(error).context("serve the demo server's stdio"));
            ExitCode::from(crate::exit::FAILURE)
        }
    }
}

fn demo(args: &DemoArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("find the shoal executable")?;
    let scratch = Scratch::new()?;
    let server = vec![
        exe.display().to_string(),
        "demo-server".to_owned(),
        "--startup-delay-ms".to_owned(),
        args.server_startup_ms.to_string(),
    ];

    say(&format!(
        "shoal demo: {} sessions of `shoal proxy` sharing one example MCP server \
         (start-up delay {} ms)\n",
        args.sessions, args.server_startup_ms
    ));

    // The baseline: what every host pays today, for every session.
    let direct = {
        let started = Instant::now();
        let mut session = Session::spawn(Command::new(&exe).args(&server[1..]), "direct")?;
        session.initialize()?;
        let elapsed = started.elapsed();
        session.close()?;
        elapsed
    };

    let mut sessions = Vec::new();
    let mut rows = Vec::new();
    for n in 1..=args.sessions {
        let mut command = Command::new(&exe);
        command
            .arg("proxy")
            .arg("--root")
            .arg(&scratch.project)
            .arg("--")
            .args(&server)
            .env("SHOAL_RUNTIME_DIR", &scratch.runtime)
            .env("SHOAL_IDLE_TIMEOUT", "30");
        let started = Instant::now();
        let mut session = Session::spawn(&mut command, &format!("session {n}"))?;
        session.initialize()?;
        let attach = started.elapsed();
        let pid = session.server_pid()?;
        session.echo(&format!("hello from session {n}"))?;
        rows.push((n, attach, pid));
        sessions.push(session);
    }

    say(&format!(
        "{:<9}  {:>12}  {:>10}",
        "session", "attach", "server pid"
    ));
    for (n, attach, pid) in &rows {
        let kind = if *n == 1 { "cold" } else { "warm" };
        say(&format!(
            "{:<9}  {:>7} {kind}  {:>10}",
            n,
            format_ms(*attach),
            pid
        ));
    }
    let pids: std::collections::BTreeSet<u64> = rows.iter().map(|(_, _, pid)| *pid).collect();
    let cold = rows[0].1;
    let mut warm: Vec<Duration> = rows[1..].iter().map(|(_, attach, _)| *attach).collect();
    warm.sort();
    let warm_median = warm[warm.len() / 2];
    say("");
    say(&format!(
        "{} sessions, {} server process{}: shoal saved {} server process{}.",
        args.sessions,
        pids.len(),
        if pids.len() == 1 { "" } else { "es" },
        args.sessions as usize - pids.len(),
        if args.sessions as usize - pids.len() == 1 {
            ""
        } else {
            "es"
        },
    ));
    say(&format!(
        "Attach: cold {} (daemon + server start), warm median {}; starting the server directly \
         took {}, {:.0}x the warm attach.",
        format_ms(cold),
        format_ms(warm_median),
        format_ms(direct),
        direct.as_secs_f64() / warm_median.as_secs_f64().max(1e-6),
    ));

    for session in sessions {
        session.close()?;
    }
    let status = Command::new(&exe)
        .args(["stop", "--all"])
        .env("SHOAL_RUNTIME_DIR", &scratch.runtime)
        .stdout(Stdio::null())
        .status()
        .context("run `shoal stop --all` on the demo's daemon")?;
    if !status.success() {
        bail!("`shoal stop --all` on the demo's daemon exited with {status}");
    }
    say("Stopped the demo's daemon and its server; removed the scratch directory.");
    Ok(())
}

#[expect(clippy::print_stdout, reason = "the demo's table is its output")]
fn say(line: &str) {
    println!("{line}");
}

fn format_ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

/// A private directory for the demo: its own runtime dir and project root.
struct Scratch {
    base: PathBuf,
    runtime: PathBuf,
    project: PathBuf,
}

impl Scratch {
    fn new() -> anyhow::Result<Scratch> {
        use std::os::unix::fs::DirBuilderExt as _;
        let base = std::env::temp_dir().join(format!("shoal-demo-{}", std::process::id()));
        let runtime = base.join("run");
        let project = base.join("project");
        for dir in [&base, &runtime, &project] {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(dir)
                .with_context(|| {
                    format!("create the demo's scratch directory {}", dir.display())
                })?;
        }
        Ok(Scratch {
            base,
            runtime,
            project,
        })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// A minimal MCP client on a child's stdio.
struct Session {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    next_id: u64,
}

impl Session {
    fn spawn(command: &mut Command, name: &str) -> anyhow::Result<Session> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start {name}"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("the child's stdout is piped")?;
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Session {
            name: name.to_owned(),
            child,
            stdin,
            lines,
            next_id: 1,
        })
    }

    fn request(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let message = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send(&message)?;
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(wait).map_err(|_| {
                anyhow::anyhow!(
                    "{}: no answer to `{method}` within {STEP_TIMEOUT:?}",
                    self.name
                )
            })?;
            let Ok(message) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if message.get("id") != Some(&json!(id)) || message.get("method").is_some() {
                continue;
            }
            if let Some(error) = message.get("error") {
                bail!("{}: `{method}` failed: {error}", self.name);
            }
            return Ok(message.get("result").cloned().unwrap_or(Value::Null));
        }
    }

    fn send(&mut self, message: &Value) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("the session is closed")?;
        writeln!(stdin, "{message}").with_context(|| format!("{}: write", self.name))
    }

    fn initialize(&mut self) -> anyhow::Result<()> {
        self.request(
            "initialize",
            json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "shoal-demo", "version": env!("CARGO_PKG_VERSION")},
            }),
        )?;
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
    }

    fn server_pid(&mut self) -> anyhow::Result<u64> {
        let result = self.request("tools/call", json!({"name": "stats", "arguments": {}}))?;
        result["structuredContent"]["pid"]
            .as_u64()
            .with_context(|| format!("{}: the server did not say its pid", self.name))
    }

    fn echo(&mut self, text: &str) -> anyhow::Result<()> {
        let result = self.request(
            "tools/call",
            json!({"name": "echo", "arguments": {"text": text}}),
        )?;
        if result["content"][0]["text"] != text {
            bail!("{}: the echo came back wrong: {result}", self.name);
        }
        Ok(())
    }

    /// End the session as a host does: close stdin, and wait for the process to exit.
    fn close(mut self) -> anyhow::Result<()> {
        drop(self.stdin.take());
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "{} did not exit within {STEP_TIMEOUT:?} of its stdin closing",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
