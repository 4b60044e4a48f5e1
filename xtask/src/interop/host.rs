//! The host stage of `cargo xtask interop`: a real MCP host, Gemini CLI, starts shoal the way it
//! starts any stdio server.
//!
//! The SDK stage shows that shoal speaks MCP with clients it did not write. This stage shows that
//! what a user does works: the host's own `gemini mcp add` writes the host's config, `shoal
//! install` rewrites that config, and the host's own `gemini mcp list` (which starts each stdio
//! server, does the MCP initialize and a ping, and prints `✓ <name>: <command line> (stdio) -
//! Connected`) connects through shoal. Gemini CLI because those two commands work offline, with no
//! account and no model: a host that needs a login for every session could not run here.
//!
//! Two [`Workspace`]s, each a private `HOME` (so `~/.gemini` is ours and nothing of the user's
//! applies) and a project dir (with a `.git` dir, which `shoal install` takes for the project's top
//! level), share one private `SHOAL_RUNTIME_DIR`: Gemini CLI passes its environment to the
//! servers it starts, so it reaches every `shoal proxy`, which never sees the user's daemons.
//!
//! 1. `gemini mcp add -s user everything <shoal> proxy <node> <everything>`: a command line with no
//!    `--`, as Gemini CLI stores it (its argument parser drops a `--` anyway); `gemini mcp list`
//!    connects, through a daemon under the private runtime dir.
//! 2. `gemini mcp add` the plain server, `shoal install --host gemini --write` shares it, and two
//!    concurrent `gemini mcp list` connect through one daemon and one server process; that daemon
//!    answered both sessions (twice the requests it answered the one `list` of step 1), so neither
//!    fell back to running the server itself. `shoal install --undo --write` gives back the file
//!    `gemini mcp add` wrote, byte for byte, and `gemini mcp list` still connects, now to the
//!    server directly (the daemon answers nothing more).
//! 3. `shoal stop --all` leaves no daemon and no server process.
//!
//! Every command runs in a process group of its own, under one deadline for the whole stage: past
//! it the command's group is killed and the stage fails, never a stuck job. Nothing waits by
//! sleeping: each step follows the exit of the command before it.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;
use shoal_testkit::process::{is_alive, wait_for_exit};

use super::{
    Daemon, EXIT_WAIT, as_pid, parse_status, print_daemon_logs, processes, server_processes,
};
use crate::util::say;

/// The whole stage must fit in this. A normal run takes about 15 s, nearly all of it Gemini CLI
/// starting (about 2 s for each of its commands).
const DEADLINE: Duration = Duration::from_secs(90);
/// The name the server is added under, in both workspaces.
const NAME: &str = "everything";

/// The installed Gemini CLI.
pub(super) struct Gemini {
    /// Its entry point (`bin.gemini` of its package.json), run with the node interop found, so
    /// that no other node on `PATH` is picked up by its `#!/usr/bin/env node` line.
    entry: PathBuf,
    version: String,
}

impl Gemini {
    /// The Gemini CLI whose package.json is `manifest`.
    pub(super) fn installed(manifest: &Path) -> anyhow::Result<Gemini> {
        let package: Value = std::fs::read(manifest)
            .map_err(anyhow::Error::from)
            .and_then(|text| Ok(serde_json::from_slice(&text)?))
            .with_context(|| format!("failed to read {}", manifest.display()))?;
        let version = package["version"]
            .as_str()
            .with_context(|| format!("{} has no version", manifest.display()))?;
        let bin = package["bin"]["gemini"]
            .as_str()
            .with_context(|| format!("{} names no `gemini` bin", manifest.display()))?;
        let entry = manifest.with_file_name(bin);
        ensure!(
            entry.is_file(),
            "Gemini CLI's entry point {} is missing",
            entry.display()
        );
        Ok(Gemini {
            entry,
            version: version.to_owned(),
        })
    }
}

/// What the stage runs, and where.
pub(super) struct Setup<'a> {
    pub(super) shoal: &'a Path,
    pub(super) node: &'a Path,
    pub(super) server: &'a Path,
    pub(super) gemini: &'a Gemini,
    /// A directory of its own for the homes, projects and runtime dir; kept after a failure.
    pub(super) dir: PathBuf,
}

/// Run the stage; on a failure, kill what it started and show the daemon logs.
pub(super) fn run(setup: &Setup<'_>) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut stage = Stage::new(setup)?;
    let outcome = stage.drive();
    match &outcome {
        Ok(()) => say(&format!(
            "interop: host stage: all {} checks passed in {:.1?}: Gemini CLI {} connected through \
             `shoal proxy` as `gemini mcp add` and `shoal install` wrote it, two concurrent \
             sessions shared one daemon and server, --undo gave the config back byte for byte, \
             nothing left running",
            stage.checks,
            started.elapsed(),
            setup.gemini.version,
        )),
        Err(_) => stage.report_failure(),
    }
    outcome
}

/// A private `HOME` and a project dir: one user of Gemini CLI in one project.
struct Workspace {
    home: PathBuf,
    project: PathBuf,
}

impl Workspace {
    fn new(dir: &Path) -> anyhow::Result<Workspace> {
        let home = dir.join("home");
        let project = dir.join("project");
        for made in [home.join(".gemini"), project.join(".git")] {
            std::fs::create_dir_all(&made)
                .with_context(|| format!("failed to create {}", made.display()))?;
        }
        // Real paths: Gemini CLI compares them with its trusted folders, shoal keys daemons by
        // them, and `/proc` shows them.
        let real = |path: &Path| {
            std::fs::canonicalize(path)
                .with_context(|| format!("failed to resolve {}", path.display()))
        };
        let (home, project) = (real(&home)?, real(&project)?);
        // Gemini CLI starts no server of an untrusted folder (`mcp list` says "Disabled").
        let trusted = home.join(".gemini/trustedFolders.json");
        let text = serde_json::json!({ project.to_string_lossy(): "TRUST_FOLDER" }).to_string();
        std::fs::write(&trusted, text)
            .with_context(|| format!("failed to write {}", trusted.display()))?;
        Ok(Workspace { home, project })
    }

    /// Gemini CLI's user settings, where `gemini mcp add -s user` writes.
    fn settings(&self) -> PathBuf {
        self.home.join(".gemini/settings.json")
    }

    /// The settings file's bytes, and the command line stored for [`NAME`] in it.
    fn stored(&self) -> anyhow::Result<(Vec<u8>, Vec<String>)> {
        let path = self.settings();
        let bytes =
            std::fs::read(&path).with_context(|| format!("failed to read {}", path.display()))?;
        let settings: Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        let entry = &settings["mcpServers"][NAME];
        let words = entry["command"]
            .as_str()
            .into_iter()
            .chain(
                entry["args"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|arg| arg.as_str().unwrap_or("<not a string>")),
            )
            .map(str::to_owned)
            .collect::<Vec<_>>();
        ensure!(
            !words.is_empty(),
            "{} has no command for server {NAME:?}: {settings}",
            path.display()
        );
        Ok((bytes, words))
    }
}

/// A command running in a process group of its own; its output arrives on `done`.
struct Running {
    what: String,
    group: nix::unistd::Pid,
    done: mpsc::Receiver<std::io::Result<Output>>,
}

/// One run of the host stage: what it runs, and what it started and saw.
struct Stage<'a> {
    setup: &'a Setup<'a>,
    /// shoal, node and the server as absolute paths: they go into the host's config, which
    /// Gemini CLI runs from the project dir.
    shoal: PathBuf,
    node: PathBuf,
    server: PathBuf,
    runtime_dir: PathBuf,
    deadline: Instant,
    /// Every workspace's project dir, whose server processes must be gone at the end.
    projects: Vec<PathBuf>,
    /// Every daemon and server pid seen, checked gone at the end.
    daemons: BTreeSet<(u32, u32)>,
    checks: usize,
}

impl<'a> Stage<'a> {
    fn new(setup: &'a Setup<'a>) -> anyhow::Result<Stage<'a>> {
        let _ = std::fs::remove_dir_all(&setup.dir);
        std::fs::create_dir_all(&setup.dir)
            .with_context(|| format!("failed to create {}", setup.dir.display()))?;
        let absolute = |path: &Path| {
            std::path::absolute(path)
                .with_context(|| format!("failed to make {} absolute", path.display()))
        };
        Ok(Stage {
            shoal: absolute(setup.shoal)?,
            node: absolute(setup.node)?,
            server: absolute(setup.server)?,
            // Short: the daemons' sockets live under it.
            runtime_dir: std::fs::canonicalize(&setup.dir)
                .with_context(|| format!("failed to resolve {}", setup.dir.display()))?
                .join("run"),
            deadline: Instant::now() + DEADLINE,
            projects: Vec::new(),
            daemons: BTreeSet::new(),
            checks: 0,
            setup,
        })
    }

    fn drive(&mut self) -> anyhow::Result<()> {
        let one_list = self.without_dashes()?;
        self.installed(one_list)?;
        self.stop_all()
    }

    /// 1. `shoal proxy <server>` as Gemini CLI stores a command line, without `--`, connects
    ///    through a daemon. Returns how many requests the daemon answered for one `gemini mcp
    ///    list`.
    fn without_dashes(&mut self) -> anyhow::Result<u64> {
        let added = self.workspace("added")?;
        let line = [
            self.shoal.as_os_str(),
            OsStr::new("proxy"),
            self.node.as_os_str(),
            self.server.as_os_str(),
        ];
        self.run(
            "gemini mcp add (the shoal proxy line)",
            self.gemini_add(&added, &line),
        )?;
        let (_, stored) = added.stored()?;
        ensure!(
            stored == words(&line),
            "gemini mcp add stored {stored:?} for `{}`; expected exactly that command line",
            words(&line).join(" ")
        );
        self.pass(
            "gemini mcp add",
            "stored `shoal proxy node <everything>` as given, with no `--`",
        );
        let what = "gemini mcp list (the shoal proxy line)";
        let listed = self.run(what, self.gemini(&added, ["mcp", "list"]))?;
        connected(what, &listed, &stored)?;
        let (daemon, one_list) = self.one_daemon(&added)?;
        ensure!(
            one_list > 0,
            "gemini mcp list connected, but the daemon answered no request"
        );
        self.pass(
            "Gemini CLI connects through `shoal proxy <server>`",
            &format!(
                "daemon {} (under the private runtime dir) and server {} answered its {one_list} \
                 requests",
                daemon.pid, daemon.backend_pid
            ),
        );
        Ok(one_list)
    }

    /// 2. `shoal install` shares the server of the config `gemini mcp add` wrote; two concurrent
    ///    sessions share one daemon, each of them answered (`one_list` requests each); `--undo`
    ///    gives the file back.
    fn installed(&mut self, one_list: u64) -> anyhow::Result<()> {
        let installed = self.workspace("installed")?;
        let plain = [self.node.as_os_str(), self.server.as_os_str()];
        self.run(
            "gemini mcp add (the plain server)",
            self.gemini_add(&installed, &plain),
        )?;
        let (original, stored) = installed.stored()?;
        ensure!(
            stored == words(&plain),
            "gemini mcp add stored {stored:?}; expected {:?}",
            words(&plain)
        );
        let mut install = self.command(&installed, &self.shoal);
        install
            .args(["install", "--host", "gemini", "--shoal"])
            .arg(&self.shoal)
            .arg("--write");
        let output = self.run("shoal install --write", install)?;
        let said = String::from_utf8_lossy(&output.stdout);
        ensure!(
            said.lines()
                .any(|row| row.split_whitespace().take(3).eq(["user", NAME, "share"]))
                && said.contains("1 server in 1 file shared through shoal."),
            "shoal install did not report server {NAME:?} of the user settings as shared; it \
             printed:\n{}",
            printed(&output)
        );
        let (_, shared) = installed.stored()?;
        let mut expected = words(&[self.shoal.as_os_str()]);
        expected.extend(["proxy".to_owned(), "--".to_owned()]);
        expected.extend(words(&plain));
        ensure!(
            shared == expected,
            "after shoal install, {} stores {shared:?}; expected {expected:?}",
            installed.settings().display()
        );
        self.pass(
            "shoal install --host gemini --write",
            "shared the server `gemini mcp add` wrote: `shoal proxy -- node <everything>`",
        );
        let first = self.spawn(
            "gemini mcp list (1 of 2)",
            self.gemini(&installed, ["mcp", "list"]),
        );
        let second = self.spawn(
            "gemini mcp list (2 of 2)",
            self.gemini(&installed, ["mcp", "list"]),
        );
        // Both end (or are killed) before either is judged: nothing is left running.
        let first = first.and_then(|running| self.finish(running));
        let second = second.and_then(|running| self.finish(running));
        for (what, output) in [
            ("gemini mcp list (1 of 2)", first),
            ("gemini mcp list (2 of 2)", second),
        ] {
            connected(what, &succeeded(what, output?)?, &shared)?;
        }
        let (daemon, served) = self.one_daemon(&installed)?;
        ensure!(
            served == 2 * one_list,
            "two gemini mcp list connected, but the daemon answered {served} requests, not \
             {} (twice the {one_list} of one list): a session did not go through it",
            2 * one_list
        );
        self.pass(
            "two concurrent Gemini CLI sessions share one server",
            &format!(
                "both connected; one daemon {} and one server {} answered all {served} requests",
                daemon.pid, daemon.backend_pid
            ),
        );
        let mut undo = self.command(&installed, &self.shoal);
        undo.args(["install", "--undo", "--host", "gemini", "--write"]);
        self.run("shoal install --undo --write", undo)?;
        let (restored, stored) = installed.stored()?;
        ensure!(
            restored == original,
            "shoal install --undo did not give back {} as gemini mcp add wrote it:\n--- \
             written by gemini mcp add\n{}\n--- after --undo\n{}",
            installed.settings().display(),
            String::from_utf8_lossy(&original),
            String::from_utf8_lossy(&restored)
        );
        let what = "gemini mcp list (after --undo)";
        let listed = self.run(what, self.gemini(&installed, ["mcp", "list"]))?;
        connected(what, &listed, &stored)?;
        let (after, served) = self.one_daemon(&installed)?;
        ensure!(
            after == daemon,
            "after --undo, the daemon or its server changed: {} / {} then {} / {}",
            daemon.pid,
            daemon.backend_pid,
            after.pid,
            after.backend_pid
        );
        ensure!(
            served == 2 * one_list,
            "after --undo, gemini mcp list still went through shoal: the daemon answered \
             {served} requests, {} before",
            2 * one_list
        );
        self.pass(
            "shoal install --undo --write",
            "gave back the settings byte for byte; Gemini CLI connects to the server directly",
        );
        Ok(())
    }

    /// A fresh workspace under the stage's dir.
    fn workspace(&mut self, name: &str) -> anyhow::Result<Workspace> {
        let workspace = Workspace::new(&self.setup.dir.join(name))?;
        self.projects.push(workspace.project.clone());
        Ok(workspace)
    }

    /// `program`, run as the workspace's user in its project, with only the environment the stage
    /// gives it: nothing of the user's (a `GEMINI_CLI_HOME`, a shoal config, `SHOAL_*`) applies.
    fn command(&self, workspace: &Workspace, program: &Path) -> Command {
        let mut command = Command::new(program);
        command
            .current_dir(&workspace.project)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &workspace.home)
            .env("SHOAL_RUNTIME_DIR", &self.runtime_dir)
            .env("SHOAL_CONFIG", self.setup.dir.join("no-shoal-config.toml"))
            // Nor the machine's: Gemini CLI reads system settings from /etc/gemini-cli otherwise.
            .env(
                "GEMINI_CLI_SYSTEM_SETTINGS_PATH",
                self.setup.dir.join("no-system-settings.json"),
            )
            .env(
                "GEMINI_CLI_SYSTEM_DEFAULTS_PATH",
                self.setup.dir.join("no-system-defaults.json"),
            );
        command
    }

    /// Gemini CLI with `args`, as the workspace's user.
    fn gemini<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(
        &self,
        workspace: &Workspace,
        args: I,
    ) -> Command {
        let mut command = self.command(workspace, &self.node);
        command.arg(&self.setup.gemini.entry).args(args);
        command
    }

    /// `gemini mcp add -s user NAME <line>`.
    fn gemini_add(&self, workspace: &Workspace, line: &[&OsStr]) -> Command {
        let mut command = self.gemini(workspace, ["mcp", "add", "-s", "user", NAME]);
        command.args(line);
        command
    }

    /// Start `command` in a process group of its own, with its output captured.
    fn spawn(&self, what: &str, mut command: Command) -> anyhow::Result<Running> {
        let child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("failed to start {what}: {command:?}"))?;
        let group = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
        let (tx, done) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        Ok(Running {
            what: what.to_owned(),
            group,
            done,
        })
    }

    /// Wait for `running` to exit, until the stage's deadline; past it, kill its group (the
    /// host and the proxies it started) and fail.
    fn finish(&self, running: Running) -> anyhow::Result<Output> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if let Ok(output) = running.done.recv_timeout(left) {
            return output.with_context(|| format!("failed to wait for {}", running.what));
        }
        // The leader is not reaped yet (its waiter is still waiting), so the group id is still
        // its own.
        let _ = nix::sys::signal::killpg(running.group, nix::sys::signal::Signal::SIGKILL);
        // Its pipes close with the group: a daemon that a proxy starts does not hold them.
        let output = running
            .done
            .recv_timeout(EXIT_WAIT)
            .ok()
            .and_then(Result::ok)
            .map_or_else(|| "(its output was lost)".to_owned(), |out| printed(&out));
        bail!(
            "{} did not finish within the host stage's deadline ({DEADLINE:?}); killed it. It \
             printed:\n{output}",
            running.what
        )
    }

    /// Run `command` to its end; fail with what it printed unless it succeeds.
    fn run(&self, what: &str, command: Command) -> anyhow::Result<Output> {
        let output = self.finish(self.spawn(what, command)?)?;
        succeeded(what, output)
    }

    /// `shoal status --json`, as the workspaces' proxies see it.
    fn status(&self) -> anyhow::Result<Vec<Value>> {
        let mut status = Command::new(&self.shoal);
        status
            .args(["status", "--json"])
            .env("SHOAL_RUNTIME_DIR", &self.runtime_dir);
        let output = self.run("shoal status --json", status)?;
        parse_status(&String::from_utf8_lossy(&output.stdout))
    }

    /// The one daemon of `workspace`'s project, running under the private runtime dir for
    /// `node <everything>` with a server that never restarted, and the requests it answered;
    /// `/proc` must show that server as the project's only server process (once the servers
    /// the host started itself, which end with it, are gone).
    fn one_daemon(&mut self, workspace: &Workspace) -> anyhow::Result<(Daemon, u64)> {
        let status = self.status()?;
        let ours: Vec<&Value> = status
            .iter()
            .filter(|entry| {
                entry["root"]
                    .as_str()
                    .is_some_and(|root| Path::new(root) == workspace.project)
            })
            .collect();
        ensure!(
            ours.len() == 1 && ours[0]["state"] == "running",
            "expected exactly one daemon for {}, running; status shows {}",
            workspace.project.display(),
            Value::from(status.clone())
        );
        let entry = ours[0];
        let dir = entry["dir"].as_str().unwrap_or_default();
        ensure!(
            Path::new(dir).starts_with(&self.runtime_dir),
            "the daemon's dir {dir} is not under the private runtime dir {}",
            self.runtime_dir.display()
        );
        let argv = words(&[self.node.as_os_str(), self.server.as_os_str()]);
        ensure!(
            entry["argv"] == Value::from(argv.clone())
                && entry["backend_state"] == "running"
                && entry["backend_restarts"] == 0,
            "expected a daemon for {argv:?} with a running server that never restarted: {entry}"
        );
        let pid = as_pid(&entry["pid"]).with_context(|| format!("no daemon pid in {entry}"))?;
        let backend_pid =
            as_pid(&entry["backend_pid"]).with_context(|| format!("no server pid in {entry}"))?;
        let served = entry["requests_served"]
            .as_u64()
            .with_context(|| format!("no requests_served in {entry}"))?;
        self.daemons.insert((pid, backend_pid));
        let servers = server_processes(&self.node, &self.server, &workspace.project);
        for &other in servers.iter().filter(|&&server| server != backend_pid) {
            ensure!(
                wait_for_exit(other, EXIT_WAIT),
                "server process {other} of {} still runs after its host exited",
                workspace.project.display()
            );
        }
        let servers = server_processes(&self.node, &self.server, &workspace.project);
        ensure!(
            servers == [backend_pid],
            "expected one server process ({backend_pid}) for {}, found {servers:?}",
            workspace.project.display()
        );
        Ok((Daemon { pid, backend_pid }, served))
    }

    /// 3. `shoal stop --all` ends every daemon, and with it its server; nothing of ours is left.
    fn stop_all(&mut self) -> anyhow::Result<()> {
        let mut stop = Command::new(&self.shoal);
        stop.args(["stop", "--all"])
            .env("SHOAL_RUNTIME_DIR", &self.runtime_dir);
        self.run("shoal stop --all", stop)?;
        let detail = super::all_stopped(
            &self.daemons,
            || {
                self.projects
                    .iter()
                    .flat_map(|project| server_processes(&self.node, &self.server, project))
                    .collect()
            },
            || self.status(),
        )?;
        self.pass("shoal stop --all", &detail);
        Ok(())
    }

    fn pass(&mut self, name: &str, detail: &str) {
        self.checks += 1;
        say(&format!("interop: ok  {name}: {detail}"));
    }

    /// After a failure: kill what is left, and show the daemon logs. Every command the stage
    /// started has ended or was killed with its group by [`Stage::finish`]; what may be left are
    /// the daemons the proxies started, their servers, and a server a host left behind.
    fn report_failure(&mut self) {
        // The stage's deadline may be past; the cleanup gets time of its own.
        self.deadline = Instant::now() + EXIT_WAIT;
        let mut stop = Command::new(&self.shoal);
        stop.args(["stop", "--all"])
            .env("SHOAL_RUNTIME_DIR", &self.runtime_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = stop.status();
        let listed = self.status().unwrap_or_default();
        let ours = |pid: &u32| {
            std::fs::read_link(format!("/proc/{pid}/cwd"))
                .is_ok_and(|cwd| self.projects.contains(&cwd))
        };
        let proxies = processes(|argv| {
            argv.first() == Some(&self.shoal.as_os_str().as_encoded_bytes())
                && argv.get(1) == Some(&b"proxy".as_slice())
        })
        .into_iter()
        .filter(ours);
        let leftovers: Vec<u32> = self
            .daemons
            .iter()
            .flat_map(|&(daemon, server)| [daemon, server])
            .chain(listed.iter().filter_map(|entry| as_pid(&entry["pid"])))
            .chain(proxies)
            .chain(
                self.projects
                    .iter()
                    .flat_map(|project| server_processes(&self.node, &self.server, project)),
            )
            .filter(|&pid| is_alive(pid))
            .collect();
        for pid in leftovers {
            say(&format!("interop: killing leftover process {pid}"));
            let _ = shoal_testkit::process::kill(pid);
        }
        print_daemon_logs(&self.runtime_dir);
        say(&format!(
            "interop: kept {} for inspection",
            self.setup.dir.display()
        ));
    }
}

/// `output`, unless its command failed: then fail with what it printed.
fn succeeded(what: &str, output: Output) -> anyhow::Result<Output> {
    ensure!(
        output.status.success(),
        "{what} exited with {}; it printed:\n{}",
        output.status,
        printed(&output)
    );
    Ok(output)
}

/// That `gemini mcp list` printed `✓ NAME: <line> (stdio) - Connected` for exactly the command
/// line stored.
fn connected(what: &str, output: &Output, line: &[String]) -> anyhow::Result<()> {
    let expected = format!("✓ {NAME}: {} (stdio) - Connected", line.join(" "));
    let text = printed(output);
    ensure!(
        text.lines().any(|printed| printed.trim() == expected),
        "{what} did not print `{expected}`; it printed:\n{text}"
    );
    Ok(())
}

/// What a command printed, stdout then stderr (Gemini CLI prints its lists on stderr).
fn printed(output: &Output) -> String {
    let text = [output.stdout.as_slice(), output.stderr.as_slice()]
        .map(String::from_utf8_lossy)
        .join("\n");
    let text = text.trim();
    if text.is_empty() {
        "(nothing)".to_owned()
    } else {
        text.to_owned()
    }
}

/// A command line as the settings and `shoal status` hold it: strings.
fn words(line: &[&OsStr]) -> Vec<String> {
    line.iter()
        .map(|word| word.to_string_lossy().into_owned())
        .collect()
}
