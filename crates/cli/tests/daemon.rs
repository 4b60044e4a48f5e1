//! `shoal daemon` as a user (or `shoal proxy`) runs it: the real binary, a readiness pipe on an
//! inherited descriptor, the environment variables it honours, its help and its errors.

use std::io::{BufRead as _, BufReader, Read as _};
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use shoal_wire::Readiness;

/// `shoal`, reading no config file: the user's own must not change what the tests see.
fn shoal_command() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"));
    command.env("SHOAL_CONFIG", "/nonexistent/shoal-tests/config.toml");
    command
}

const WAIT: Duration = Duration::from_secs(20);

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos());
        let path = PathBuf::from(format!("/tmp/sc-{name}-{}-{nanos:x}", std::process::id()));
        std::fs::create_dir_all(path.join("project")).unwrap();
        Scratch(path)
    }
    fn project(&self) -> PathBuf {
        self.0.join("project")
    }
    fn runtime_dir(&self) -> PathBuf {
        self.0.join("rt")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `shoal daemon` with the readiness pipe as fd 3 and the scratch runtime dir.
fn shoal_daemon(scratch: &Scratch, extra: &[&str], env: &[(&str, &str)]) -> (Child, OwnedFd) {
    let (reader, writer) = std::io::pipe().unwrap();
    let writer = OwnedFd::from(writer);
    let raw = writer.as_raw_fd();
    let mut command = shoal_command();
    command
        .arg("daemon")
        .arg("--root")
        .arg(scratch.project())
        .args(["--ready-fd", "3"])
        .args(extra)
        .arg("--")
        .arg(shoal_testkit::fixture_bin())
        .env("SHOAL_RUNTIME_DIR", scratch.runtime_dir())
        .env_remove("SHOAL_IDLE_TIMEOUT")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: dup2 and fcntl are async-signal-safe; the closure allocates nothing.
    unsafe {
        command.pre_exec(move || {
            // dup2 onto itself keeps close-on-exec set, so clear it instead.
            let result = if raw == 3 {
                nix::libc::fcntl(3, nix::libc::F_SETFD, 0)
            } else {
                nix::libc::dup2(raw, 3)
            };
            if result < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().unwrap();
    drop(writer);
    (child, OwnedFd::from(reader))
}

fn read_readiness(pipe: &OwnedFd) -> (Readiness, BufReader<std::fs::File>) {
    let mut reader = BufReader::new(std::fs::File::from(pipe.try_clone().unwrap()));
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    (
        Readiness::parse(line.trim_end().as_bytes())
            .unwrap_or_else(|error| panic!("{error}: {line:?}")),
        reader,
    )
}

fn wait_exit(child: &mut Child) -> i32 {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        assert!(
            Instant::now() < deadline,
            "shoal daemon still running after {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn ready_on_the_fd_which_the_backend_does_not_inherit_then_idles_out() {
    let scratch = Scratch::new("ready");
    // Long enough that the daemon is surely still idling when the EOF check below runs.
    let (mut child, pipe) = shoal_daemon(&scratch, &[], &[("SHOAL_IDLE_TIMEOUT", "2")]);
    let (readiness, mut rest) = read_readiness(&pipe);
    let Readiness::Ready { pid, socket } = readiness else {
        panic!("expected ready, got {readiness:?}");
    };
    assert_eq!(pid, child.id());
    assert!(Path::new(&socket).starts_with(scratch.runtime_dir()));
    // EOF right after the line, while the daemon and its backend still run: neither kept the fd
    // (a backend that inherited it would hold the spawner's wait open forever).
    let mut tail = Vec::new();
    rest.read_to_end(&mut tail).unwrap();
    assert!(tail.is_empty());
    assert!(
        child.try_wait().unwrap().is_none(),
        "the daemon should still be idling"
    );
    assert_eq!(
        wait_exit(&mut child),
        0,
        "idle exit after SHOAL_IDLE_TIMEOUT"
    );
}

#[test]
fn a_second_daemon_for_the_key_exits_with_code_3() {
    let scratch = Scratch::new("held");
    let (mut first, first_pipe) = shoal_daemon(&scratch, &["--idle-timeout", "0"], &[]);
    assert!(matches!(
        read_readiness(&first_pipe).0,
        Readiness::Ready { .. }
    ));
    let (mut second, second_pipe) = shoal_daemon(&scratch, &["--idle-timeout", "0"], &[]);
    assert_eq!(
        read_readiness(&second_pipe).0,
        Readiness::Held {
            pid: Some(first.id())
        }
    );
    assert_eq!(wait_exit(&mut second), 3);
    let mut stderr = String::new();
    second
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        stderr.contains(&format!("pid {} already serves", first.id())),
        "{stderr}"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(wait_exit(&mut first), 0);
}

#[test]
fn bad_idle_timeouts_and_fds_are_usage_errors() {
    let scratch = Scratch::new("usage");
    for (args, env, expected) in [
        (
            vec!["--idle-timeout", "5m"],
            vec![],
            "shoal: failed to read --idle-timeout: use \"5m\" as an idle timeout",
        ),
        (
            vec![],
            vec![("SHOAL_IDLE_TIMEOUT", "soon")],
            "shoal: failed to read SHOAL_IDLE_TIMEOUT: use \"soon\"",
        ),
    ] {
        let (mut child, _pipe) = shoal_daemon(&scratch, &args, &env);
        assert_eq!(wait_exit(&mut child), 2, "{args:?} {env:?}");
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(stderr.starts_with(expected), "{stderr}");
    }
    let output = shoal_command()
        .args(["daemon", "--ready-fd", "77", "--", "true"])
        .env("SHOAL_RUNTIME_DIR", scratch.runtime_dir())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "shoal: failed to use fd 77 for readiness: it is not open: EBADF: Bad file number\n"
    );
}

#[test]
fn help() {
    let output = shoal_command().args(["daemon", "--help"]).output().unwrap();
    assert!(output.status.success());
    insta::assert_snapshot!("daemon_help", String::from_utf8_lossy(&output.stdout));
}
