//! `cargo xtask race lockfile`: the 64-contender acquire and stale-break races of `shoal-lockfile`
//! (scenarios 1 and 2 of `docs/scenarios.md`), with real processes.
//!
//! Each round starts 64 contenders (this binary, re-executed as `xtask race-child lockfile contend
//! ...`) behind two barriers:
//!
//! 1. Go: one stdin pipe shared by all. Each contender prints `ready` and blocks reading one byte;
//!    the coordinator waits for 64 `ready`s and writes 64 bytes in one `write`, so they wake together.
//! 2. Exit: a FIFO each contender opened at start-up (the coordinator holds it open read-write from
//!    before the spawn, so those opens never block). After one `try_acquire`, each contender prints
//!    its outcome and blocks reading the FIFO. Only when all 64 have reported does the coordinator
//!    close it. So a winner still holds the lock while every other contender tries: two holders
//!    would both be seen.
//!
//! The stale-break race first leaves a stale lock: even rounds a holder process SIGKILLed while
//! holding, odd rounds a garbage file nobody holds.

use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use shoal_lockfile::{LockFile, LockState};

use crate::util::say;

const CONTENDERS: usize = 64;
/// The longest any one wait may take before the round is a failure.
const WAIT: Duration = Duration::from_secs(30);

pub(crate) fn run(rounds: u32) -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let started = Instant::now();
    let mut acquire_ok = 0;
    for round in 0..rounds {
        let dir = scratch.round_dir("acquire", round)?;
        let outcomes = race(&dir.join("race.lock"), &scratch)?;
        if exactly_one_holder(&outcomes) {
            acquire_ok += 1;
        } else {
            say(&format!("acquire race round {round}: {outcomes:?}"));
        }
        std::fs::remove_dir_all(&dir).ok();
    }
    let acquire_time = started.elapsed();
    let started = Instant::now();
    let mut break_ok = 0;
    for round in 0..rounds {
        let dir = scratch.round_dir("break", round)?;
        let lock_path = dir.join("race.lock");
        leave_stale_lock(&lock_path, round)?;
        let outcomes = race(&lock_path, &scratch)?;
        if exactly_one_holder(&outcomes) {
            break_ok += 1;
        } else {
            say(&format!("stale-break race round {round}: {outcomes:?}"));
        }
        std::fs::remove_dir_all(&dir).ok();
    }
    let break_time = started.elapsed();
    say(&format!(
        "acquire race: {acquire_ok}/{rounds} rounds with exactly one holder ({CONTENDERS} processes \
         per round, {acquire_time:.1?})"
    ));
    say(&format!(
        "stale-break race: {break_ok}/{rounds} rounds with exactly one holder ({CONTENDERS} \
         processes per round, {break_time:.1?})"
    ));
    ensure!(
        acquire_ok == rounds && break_ok == rounds,
        "some rounds did not end with exactly one holder"
    );
    Ok(())
}

pub(crate) fn child(args: &[String]) -> anyhow::Result<()> {
    let [role, path, rest @ ..] = args else {
        bail!("usage: race-child lockfile contend|hold LOCK_PATH [EXIT_FIFO]");
    };
    let lock = LockFile::new(path)?;
    match (role.as_str(), rest) {
        ("contend", [exit_fifo]) => {
            let exit = File::open(exit_fifo).with_context(|| format!("open {exit_fifo}"))?;
            report("ready")?;
            wait_for_one_byte_on_stdin()?;
            let outcome = lock.try_acquire();
            let line = match &outcome {
                Ok(_) => "acquired".to_owned(),
                Err(error) if error.is_held() => match error.holder() {
                    Some(holder) => format!("held {}", holder.pid()),
                    None => "held ?".to_owned(),
                },
                Err(error) => format!("error {error}"),
            };
            report(&line)?;
            read_to_eof(exit)?;
            drop(outcome);
            Ok(())
        }
        ("hold", []) => {
            let _guard = lock.try_acquire()?;
            report("acquired")?;
            // Held until the coordinator SIGKILLs us; EOF (the coordinator died) ends it too.
            read_to_eof(raw_stdin()?)
        }
        _ => bail!("unknown race-child lockfile arguments {args:?}"),
    }
}

/// One round: 64 contenders behind the barriers; returns each one's outcome line.
fn race(lock_path: &Path, scratch: &Scratch) -> anyhow::Result<Vec<String>> {
    let fifo = scratch.path.join("exit.fifo");
    let _ = std::fs::remove_file(&fifo);
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .with_context(|| format!("create {}", fifo.display()))?;
    let exit = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .context("hold the exit FIFO open")?;
    let (reader, mut go) = std::io::pipe().context("create the go pipe")?;
    let mut contenders = Vec::with_capacity(CONTENDERS);
    for index in 0..CONTENDERS {
        let mut command = child_command(&["contend", path_str(lock_path)?, path_str(&fifo)?])?;
        command.stdin(Stdio::from(reader.try_clone()?));
        contenders.push(Contender::start(command, format!("contender {index}"))?);
    }
    drop(reader);
    for contender in &contenders {
        let line = contender.line("ready")?;
        ensure!(
            line == "ready",
            "{}: expected ready, got {line:?}",
            contender.label
        );
    }
    go.write_all(&[b'g'; CONTENDERS])
        .context("release the go barrier")?;
    let outcomes = contenders
        .iter()
        .map(|contender| contender.line("outcome"))
        .collect::<anyhow::Result<Vec<String>>>()?;
    drop(exit);
    for contender in &mut contenders {
        let status = contender.wait()?;
        ensure!(status.success(), "{} exited with {status}", contender.label);
    }
    Ok(outcomes)
}

fn exactly_one_holder(outcomes: &[String]) -> bool {
    let holders = outcomes.iter().filter(|line| *line == "acquired").count();
    let others_held = outcomes
        .iter()
        .all(|line| line == "acquired" || line.starts_with("held "));
    holders == 1 && others_held
}

/// Leave a stale lock at `lock_path`: a SIGKILLed holder's record, or a garbage file.
fn leave_stale_lock(lock_path: &Path, round: u32) -> anyhow::Result<()> {
    if round.is_multiple_of(2) {
        let mut command = child_command(&["hold", path_str(lock_path)?])?;
        command.stdin(Stdio::piped());
        let mut holder = Contender::start(command, "holder".to_owned())?;
        let line = holder.line("acquired")?;
        ensure!(
            line == "acquired",
            "holder: expected acquired, got {line:?}"
        );
        holder.child.kill().context("SIGKILL the holder")?;
        holder.wait()?;
    } else {
        std::fs::write(lock_path, b"\x00not a lock record\xff")
            .with_context(|| format!("write {}", lock_path.display()))?;
    }
    let state = LockFile::new(lock_path)?.inspect()?;
    ensure!(
        matches!(state, LockState::Stale(_)),
        "expected a stale lock, found {state:?}"
    );
    Ok(())
}

struct Contender {
    child: Child,
    lines: mpsc::Receiver<Option<String>>,
    label: String,
}

impl Contender {
    fn start(mut command: Command, label: String) -> anyhow::Result<Contender> {
        command.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = command.spawn().with_context(|| format!("spawn {label}"))?;
        let stdout = child.stdout.take().context("piped stdout")?;
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(Some(line)).is_err() {
                    return;
                }
            }
            let _ = sender.send(None);
        });
        Ok(Contender {
            child,
            lines,
            label,
        })
    }

    fn line(&self, what: &str) -> anyhow::Result<String> {
        match self.lines.recv_timeout(WAIT) {
            Ok(Some(line)) => Ok(line),
            Ok(None) => bail!("{}: exited before printing {what}", self.label),
            Err(_) => bail!("{}: no {what} within {WAIT:?}", self.label),
        }
    }

    fn wait(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            ensure!(
                Instant::now() < deadline,
                "{}: did not exit within {WAIT:?}",
                self.label
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Contender {
    fn drop(&mut self) {
        // A failed round must not leave contenders behind.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A private directory for the run, removed at the end.
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn new() -> anyhow::Result<Scratch> {
        let path = std::env::temp_dir().join(format!("shoal-race-lockfile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        shoal_lockfile::ensure_private_dir(&path)?;
        Ok(Scratch { path })
    }

    fn round_dir(&self, race: &str, round: u32) -> anyhow::Result<PathBuf> {
        let dir = self.path.join(format!("{race}-{round}"));
        shoal_lockfile::ensure_private_dir(&dir)?;
        Ok(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn child_command(args: &[&str]) -> anyhow::Result<Command> {
    let exe = std::env::current_exe().context("find the xtask binary")?;
    let mut command = Command::new(exe);
    command.args(["race-child", "lockfile"]).args(args);
    Ok(command)
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))
}

fn report(line: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()?;
    Ok(())
}

/// Stdin without std's buffering, so that a contender takes exactly the one byte it reads.
fn raw_stdin() -> anyhow::Result<File> {
    Ok(File::from(std::io::stdin().as_fd().try_clone_to_owned()?))
}

fn wait_for_one_byte_on_stdin() -> anyhow::Result<()> {
    let mut stdin = raw_stdin()?;
    let mut byte = [0u8; 1];
    loop {
        match stdin.read(&mut byte) {
            Ok(1) => return Ok(()),
            Ok(_) => bail!("stdin closed before the go barrier opened"),
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error.into()),
        }
    }
}

fn read_to_eof(mut file: File) -> anyhow::Result<()> {
    let mut sink = [0u8; 64];
    loop {
        match file.read(&mut sink) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error.into()),
        }
    }
}
