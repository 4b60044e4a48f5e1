//! Finding the key's daemon, or starting one (`docs/design/lifecycle.md`, "Finding or starting the daemon").
//!
//! 1. Fast path, no lock: connect to `daemon.sock`, read the daemon's hello (at most 4 KiB, 2 s),
//!    check it: protocol (by the hello parser), the daemon's pid equals the socket's peer pid
//!    (`SO_PEERCRED`), the peer's uid is ours, and the hello names our key. Then send our own
//!    `session` hello. Done.
//! 2. Slow path: make the runtime and key directories private (refusing unsafe ones), take
//!    `spawn.lock` (with a deadline), and connect again: whoever held the lock may just have
//!    started the daemon.
//! 3. Still nothing: start a daemon (`spawn.rs`), wait for its readiness line, release the lock,
//!    and go back to 1.
//!
//! Stale files are not judged here. A daemon that starts takes `daemon.lock` with
//! `shoal-lockfile`, which breaks a dead holder's lock, and publishes its socket by renaming it over
//! whatever is at `daemon.sock`; both happen only under `daemon.lock`
//! (`shoal_daemon::Ownership::take`). Doing it again here would add a second party that deletes
//! files. Spawning under `spawn.lock`, only after a failed connect, is what keeps 64 proxies
//! arriving at once down to one daemon: the first starts it, the 63 others find it on their
//! re-check.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shoal_lockfile::PersistentLock;
use shoal_wire::{
    Frame, FrameCodec, HELLO_TIMEOUT, Line, LineCodec, LineError, Role, read_daemon_hello,
};
use tokio::net::UnixStream;
use tokio_util::codec::FramedRead;

use crate::spawn::{self, Started};
use crate::{ProxyConfig, StartError};
use shoal_ipc::socket::{self, ReadHalf, WriteHalf};
use shoal_ipc::{next_item, send_hello};

/// A session connection to a daemon, hellos done.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) reader: DaemonReader,
    pub(crate) writer: WriteHalf,
    /// The daemon's pid, from its hello (checked against the peer credentials).
    pub(crate) pid: u32,
    /// The variables this session sets otherwise than the server's environment (names only).
    pub(crate) env_differs: Vec<String>,
    /// The custody pipe's reading end (non-blocking), when the daemon was handed the host's
    /// stdin (see `host.rs`); taken by the session.
    pub(crate) custody: Option<std::os::fd::OwnedFd>,
    /// The daemon holds (or held) the stdin and has not been sent
    /// [`shoal_wire::CUSTODY_RELEASE`] yet, which goes before anything else on the connection.
    pub(crate) release_owed: bool,
}

/// The daemon's side of the connection: routed frames when its hello offered them (this
/// proxy always asks for them then), lines from a daemon that did not (an older shoal's, or one
/// started with `--lines`).
#[derive(Debug)]
pub(crate) enum DaemonReader {
    Lines(FramedRead<ReadHalf, LineCodec>),
    Frames(FramedRead<ReadHalf, FrameCodec>),
}

/// One message from the daemon, as its reader gives it.
pub(crate) enum FromDaemon {
    Line(Line),
    Frame(Frame),
}

impl DaemonReader {
    /// The daemon's next message: `None` at its end; an inner error for one message it could
    /// not pass (too long), an outer one for a connection that cannot go on.
    pub(crate) async fn next(
        &mut self,
    ) -> Option<Result<Result<FromDaemon, LineError>, shoal_wire::Error>> {
        match self {
            DaemonReader::Lines(reader) => Some(
                next_item(reader)
                    .await?
                    .map(|item| item.map(FromDaemon::Line)),
            ),
            DaemonReader::Frames(reader) => Some(
                next_item(reader)
                    .await?
                    .map(|item| item.map(FromDaemon::Frame)),
            ),
        }
    }
}

/// How one connection attempt went.
enum Attempt {
    Connected(Connection),
    /// Nobody serves at the socket (missing, refused, or closed before its hello: a daemon on its
    /// way out). The slow path may start one.
    Absent(String),
    /// Something is wrong that starting a daemon would not fix.
    Failed(StartError),
}

/// Rounds of fast path + slow path before giving up. A round ends without a connection only when
/// a daemon that was just started cannot be reached, or a live daemon holds the key without
/// answering; both are rare, so a few rounds are plenty.
const ROUNDS: u32 = 5;

/// Connect to the key's daemon, starting one if needed. `host_pid` goes into our hello; with
/// `custody`, the daemon is handed the host's stdin if it offers to hold it.
pub(crate) async fn find_or_start(
    config: &ProxyConfig,
    host_pid: Option<u32>,
    custody: bool,
) -> Result<Connection, StartError> {
    let mut held_by = None;
    // A key dir pruned while this proxy waited for its lock costs a round that is not counted:
    // a new dir is made at once. Bounded all the same.
    let mut restarts = 0;
    let mut round = 0;
    while round < ROUNDS {
        match try_connect(config, host_pid, custody).await {
            Attempt::Connected(connection) => return Ok(connection),
            Attempt::Failed(error) => return Err(error),
            Attempt::Absent(why) => tracing::debug!(round, why, "no daemon answered"),
        }
        let lock = match private_dirs_and_spawn_lock(config) {
            Ok(lock) => lock,
            // Pruned between making the dir and opening it: make it again.
            Err(StartError::RuntimeDir(error)) if removed(&error) && restarts < ROUNDS => {
                restarts += 1;
                continue;
            }
            Err(error) => return Err(error),
        };
        let deadline = Instant::now() + config.tuning.spawn_lock_wait;
        let guard = match tokio::task::spawn_blocking(move || lock.lock(deadline))
            .await
            .map_err(|error| StartError::SpawnLock(join_error(&config.files.spawn_lock, error)))?
        {
            Ok(guard) => guard,
            // `shoal status` pruned the key dir of a daemon long stopped while we waited: the
            // next round makes it again.
            Err(error) if removed(&error) && restarts < ROUNDS => {
                tracing::debug!(%error, "the spawn lock was removed; starting over");
                restarts += 1;
                continue;
            }
            Err(error) => return Err(StartError::SpawnLock(error)),
        };
        match try_connect(config, host_pid, custody).await {
            Attempt::Connected(connection) => return Ok(connection),
            Attempt::Failed(error) => return Err(error),
            Attempt::Absent(why) => tracing::debug!(why, "still no daemon under the spawn lock"),
        }
        let started = spawn::start(config).await;
        // The daemon listens before it reports `ready`; connecting does not need the lock.
        drop(guard);
        match started? {
            Started::Ready { pid } => {
                tracing::info!(daemon_pid = pid, "started the shared daemon");
            }
            Started::Held { pid } => {
                // A live daemon holds the key but did not answer our connect: one started by
                // hand a moment ago, or a wedged one. Give it a moment, then look again.
                held_by = Some(pid);
                tokio::time::sleep(Duration::from_millis(50) * 2u32.pow(round)).await;
            }
        }
        round += 1;
    }
    let holder = match held_by {
        Some(Some(pid)) => format!("pid {pid}"),
        _ => "another process".to_owned(),
    };
    Err(StartError::Unusable {
        path: config.files.socket.clone(),
        detail: format!(
            "a live daemon ({holder}) holds the key but does not accept sessions; stop it with \
             `shoal stop` or kill it"
        ),
    })
}

/// Whether `error` says the key dir went away under this proxy: `shoal status` pruned it (the
/// lock's file or directory removed, or the directory gone before the lock could open it).
fn removed(error: &shoal_lockfile::Error) -> bool {
    error.is_removed()
        || matches!(error, shoal_lockfile::Error::Io { source, .. }
            if source.kind() == io::ErrorKind::NotFound)
}

/// Make both directories private, then open `spawn.lock` in the key dir.
fn private_dirs_and_spawn_lock(config: &ProxyConfig) -> Result<PersistentLock, StartError> {
    let files = &config.files;
    shoal_lockfile::ensure_private_dir(&config.runtime_dir).map_err(StartError::RuntimeDir)?;
    shoal_lockfile::ensure_private_dir(&files.dir).map_err(StartError::RuntimeDir)?;
    PersistentLock::new(&files.spawn_lock).map_err(StartError::RuntimeDir)
}

fn join_error(path: &Path, error: tokio::task::JoinError) -> shoal_lockfile::Error {
    // Only a panic in the lock call gets here; say so rather than unwinding the proxy.
    shoal_lockfile::Error::Io {
        action: "wait for",
        path: path.to_path_buf(),
        source: io::Error::other(error.to_string()),
    }
}

/// One connection attempt: connect, read and check the daemon's hello, send ours (with the
/// host's stdin and a custody pipe, with `custody` and the daemon offering it).
async fn try_connect(config: &ProxyConfig, host_pid: Option<u32>, custody: bool) -> Attempt {
    let path = &config.files.socket;
    let stream = match connect(path).await {
        Ok(stream) => stream,
        Err(error) => return classify_connect_error(config, error),
    };
    let unusable = |detail: String| {
        Attempt::Failed(StartError::Unusable {
            path: path.clone(),
            detail,
        })
    };
    let credentials = match stream.peer_cred() {
        Ok(credentials) => credentials,
        Err(error) => return unusable(format!("cannot read the peer's credentials: {error}")),
    };
    let uid = nix::unistd::geteuid().as_raw();
    if credentials.uid() != uid {
        // Our key dir is private, so only root or a broken setup gets here: never talk to it.
        return unusable(format!(
            "the socket is served by uid {}, not by this user (uid {uid}); remove {} if no \
             daemon of yours runs",
            credentials.uid(),
            path.display()
        ));
    }
    let (read, mut writer) = match socket::split(stream) {
        Ok(halves) => halves,
        Err(error) => return unusable(format!("cannot register the connection: {error}")),
    };
    let mut reader = FramedRead::new(read, LineCodec::new());
    let hello = match read_daemon_hello(&mut reader, HELLO_TIMEOUT).await {
        Ok(hello) => hello,
        Err(shoal_wire::Error::HelloClosed { .. }) => {
            return Attempt::Absent("the daemon closed the connection before its hello".into());
        }
        Err(error) => {
            return unusable(format!(
                "{error}; if a daemon is stuck, `shoal stop` or `shoal restart` it"
            ));
        }
    };
    let peer_pid = credentials.pid().and_then(|pid| u32::try_from(pid).ok());
    if peer_pid != Some(hello.pid) {
        return unusable(format!(
            "the hello names pid {} but the socket's peer is {}",
            hello.pid,
            peer_pid.map_or_else(|| "unknown".to_owned(), |pid| format!("pid {pid}"))
        ));
    }
    if hello.key != config.key {
        return unusable(format!(
            "the daemon (pid {}, shoal {}) serves key {}, not {}: the shoal binary was probably \
             replaced while this session ran; restart the MCP host",
            hello.pid, hello.version, hello.key, config.key
        ));
    }
    let env_differs = crate::environment::differing_from(hello.pid);
    let custody = custody && hello.custody && hello.routed_frames;
    let sent = if custody {
        hand_over_stdin(&writer, config, host_pid, env_differs.clone())
    } else {
        send_hello(
            &mut writer,
            Role::Session,
            &config.label,
            host_pid,
            env_differs.clone(),
            hello.routed_frames,
        )
        .await
        .map(|()| None)
    };
    let pipe = match sent {
        Ok(pipe) => pipe,
        Err(error) => {
            // The daemon went away between its hello and ours: it was exiting.
            return Attempt::Absent(format!("the daemon closed the connection: {error}"));
        }
    };
    // The daemon sends nothing more before it has our hello, so nothing of its first message
    // is in the line codec's buffer yet; the frame codec takes the buffer over as it is.
    let reader = if hello.routed_frames {
        DaemonReader::Frames(reader.map_decoder(|_| FrameCodec::new()))
    } else {
        // The daemon ends every line; a tail without a newline at EOF is a message cut short
        // by its death or by it cutting this session off, and must never reach the host torn
        // (the frame codec drops a frame cut short the same way).
        reader.decoder_mut().set_keep_partial_last_line(false);
        DaemonReader::Lines(reader)
    };
    Attempt::Connected(Connection {
        reader,
        writer,
        pid: hello.pid,
        env_differs,
        release_owed: pipe.is_some(),
        custody: pipe,
    })
}

/// Send our hello with the host's stdin and the writing end of a new custody pipe passed along
/// (see `host.rs`): the pipe's reading end, non-blocking, or why not.
#[cfg(target_os = "linux")]
fn hand_over_stdin(
    writer: &WriteHalf,
    config: &ProxyConfig,
    host_pid: Option<u32>,
    env_differs: Vec<String>,
) -> io::Result<Option<std::os::fd::OwnedFd>> {
    use nix::fcntl::OFlag;
    use std::os::fd::AsFd as _;
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    let hello = shoal_wire::ClientHello {
        custody: true,
        ..shoal_ipc::client_hello(Role::Session, &config.label, host_pid, env_differs, true)
    };
    let mut line = hello.to_line().as_bytes().to_vec();
    line.push(b'\n');
    writer.send_with_fds(&line, &[std::io::stdin().as_fd(), write.as_fd()])?;
    // The daemon holds the writing end now: the pipe ends when it closes it or dies.
    drop(write);
    Ok(Some(read))
}

#[cfg(not(target_os = "linux"))]
fn hand_over_stdin(
    _: &WriteHalf,
    _: &ProxyConfig,
    _: Option<u32>,
    _: Vec<String>,
) -> io::Result<Option<std::os::fd::OwnedFd>> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Connect, retrying briefly while the daemon's accept backlog is full (`EAGAIN`), which a burst
/// of sessions can cause and which clears as soon as the daemon accepts.
async fn connect(path: &Path) -> io::Result<UnixStream> {
    let mut delay = Duration::from_millis(2);
    let deadline = Instant::now() + HELLO_TIMEOUT;
    loop {
        match UnixStream::connect(path).await {
            Err(error)
                if error.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline =>
            {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

fn classify_connect_error(config: &ProxyConfig, error: io::Error) -> Attempt {
    use nix::libc;
    let path = &config.files.socket;
    match error.raw_os_error() {
        // A directory on the way that another user owns: say whose it is, not "a sandbox".
        Some(libc::EACCES | libc::EPERM) if let Some((dir, owner)) = foreign_dir(config) => {
            Attempt::Failed(StartError::NotOurs {
                path: dir,
                owner,
                uid: nix::unistd::geteuid().as_raw(),
            })
        }
        // The socket cannot be used at all here: a sandbox without Unix sockets, or a path we
        // may not reach. Starting a daemon would not help.
        Some(libc::EACCES | libc::EPERM | libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT) => {
            Attempt::Failed(StartError::SocketForbidden {
                path: path.to_path_buf(),
                source: error,
            })
        }
        // ENOENT, ECONNREFUSED (a stale socket file), ENOTSOCK (something else at the path),
        // a still-full backlog...: a starting daemon replaces the path under its lock.
        _ => Attempt::Absent(format!("connect to {}: {error}", path.display())),
    }
}

/// The first of the runtime dir and the key dir that exists and belongs to another user, with
/// its owner.
fn foreign_dir(config: &ProxyConfig) -> Option<(PathBuf, u32)> {
    use std::os::unix::fs::MetadataExt as _;
    let uid = nix::unistd::geteuid().as_raw();
    [&config.runtime_dir, &config.files.dir]
        .into_iter()
        .find_map(|dir| {
            let owner = std::fs::symlink_metadata(dir).ok()?.uid();
            (owner != uid).then(|| (dir.clone(), owner))
        })
}
