//! The fixture's process-level tricks (spawn counter, SIGTERM, grandchild): the one place with OS
//! calls and `unsafe` on the server side.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// First argument that makes `shoal-fixture` (or a binary embedding it) run as the grandchild.
pub const GRANDCHILD_ARG: &str = "--internal-grandchild";

/// The grandchild exits on its own after this long, so a test that fails before killing it does not
/// leave it behind for ever. Long enough for any test that kills process trees.
pub const GRANDCHILD_MAX_LIFETIME: Duration = Duration::from_secs(600);

/// The grandchild's whole life: sleep until killed, at most [`GRANDCHILD_MAX_LIFETIME`].
pub fn run_grandchild() -> ! {
    std::thread::sleep(GRANDCHILD_MAX_LIFETIME);
    std::process::exit(0)
}

/// Appends `"<pid>\n"` to `path`. One `write` on an `O_APPEND` file: concurrent starts never
/// interleave or overwrite each other's lines.
pub(crate) fn append_spawn_record(path: &Path) -> io::Result<()> {
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(format!("{}\n", std::process::id()).as_bytes())
}

/// Ignores SIGTERM for the whole process (and, since ignored dispositions survive `exec`, for the
/// grandchild started after it).
pub(crate) fn ignore_sigterm() -> io::Result<()> {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: installing SIG_IGN runs no handler code, so none of the async-signal-safety rules of
    // `signal` can be broken; no other code in this process installs a SIGTERM handler.
    unsafe { signal(Signal::SIGTERM, SigHandler::SigIgn) }
        .map(drop)
        .map_err(io::Error::from)
}

/// Starts the grandchild (a re-execution of this executable with [`GRANDCHILD_ARG`]) in our process
/// group with its stdio closed, and publishes its pid at `pid_file` atomically (temp + rename), so a
/// reader never sees a partial number.
///
/// Its stdio is closed so that it cannot keep the fixture's stdout pipe open after the fixture dies:
/// tests see the fixture's EOF, and what they check about the grandchild is only its lifetime.
pub(crate) fn spawn_grandchild(pid_file: &Path) -> io::Result<u32> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg(GRANDCHILD_ARG)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = child.id();
    let tmp = pid_file.with_extension(format!("tmp.{}", std::process::id()));
    fs::write(&tmp, format!("{pid}\n"))?;
    fs::rename(&tmp, pid_file)?;
    // Reap it if it dies while we live, so a liveness probe never mistakes a zombie for it.
    std::thread::Builder::new()
        .name("grandchild-reaper".to_owned())
        .spawn(move || child.wait())?;
    Ok(pid)
}
