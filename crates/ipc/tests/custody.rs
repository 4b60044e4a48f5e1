//! Custody with real processes: a process reads a source (a pipe, or a socket) through
//! [`Custody`] and forwards what it gets, and is SIGKILLed at every step of a read, and at
//! arbitrary moments. Whatever the moment, what is left in the source and what is in the custody
//! pipe must together be exactly what was written, in order, once; and everything it forwarded
//! must be in the custody pipe.
//!
//! One binary with its own `main`: run as `custody mover`, it is the process that is killed.

use std::io::{Read as _, Write as _};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

#[cfg(target_os = "linux")]
use shoal_ipc::custody::{Custody, Step};

/// The descriptor the mover finds the custody pipe's writing end on.
const CUSTODY_FD: i32 = 3;

/// Per run: an arbitrary but bounded wait for the mover to move what a scenario needs.
const DEADLINE: Duration = Duration::from_secs(20);

#[cfg(target_os = "linux")]
const SCENARIOS: &[shoal_testkit::scenarios::Scenario] = &[
    ("custody_of_a_pipe_survives_a_sigkill_at_every_step", || {
        every_step(Source::Pipe)
    }),
    (
        "custody_of_a_socket_survives_a_sigkill_at_every_step",
        || every_step(Source::Socket),
    ),
    (
        "custody_of_a_pipe_survives_a_sigkill_at_arbitrary_moments",
        || arbitrary_moments(Source::Pipe),
    ),
    (
        "custody_of_a_socket_survives_a_sigkill_at_arbitrary_moments",
        || arbitrary_moments(Source::Socket),
    ),
    (
        "custody_of_a_pipe_keeps_reading_a_writer_blocked_in_one_large_write",
        || one_large_write(Source::Pipe),
    ),
    (
        "custody_of_a_socket_keeps_reading_a_writer_blocked_in_one_large_write",
        || one_large_write(Source::Socket),
    ),
];

fn main() -> std::process::ExitCode {
    #[cfg(target_os = "linux")]
    {
        if std::env::args().nth(1).as_deref() == Some("mover") {
            mover();
            return std::process::ExitCode::SUCCESS;
        }
        // Each scenario runs one mover at a time; two scenarios at once keep two cores busy.
        shoal_testkit::scenarios::run(SCENARIOS, Duration::from_secs(300), 2)
    }
    #[cfg(not(target_os = "linux"))]
    std::process::ExitCode::SUCCESS
}

/// Where the mover kills itself: `FAIL_AT=copied:K` or `moved:K` (the K-th such step).
#[cfg(target_os = "linux")]
fn fail_at() -> Option<(&'static str, u32)> {
    static FAIL_AT: OnceLock<Option<(String, u32)>> = OnceLock::new();
    FAIL_AT
        .get_or_init(|| {
            let value = std::env::var("FAIL_AT").ok()?;
            let (step, count) = value.split_once(':')?;
            Some((step.to_owned(), count.parse().ok()?))
        })
        .as_ref()
        .map(|(step, count)| (step.as_str(), *count))
}

#[cfg(target_os = "linux")]
fn hook(step: Step) {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COPIED: AtomicU32 = AtomicU32::new(0);
    static MOVED: AtomicU32 = AtomicU32::new(0);
    let (name, counter) = match step {
        Step::Copied(_) => ("copied", &COPIED),
        Step::Moved(_) => ("moved", &MOVED),
    };
    let seen = counter.fetch_add(1, Ordering::Relaxed) + 1;
    if fail_at() == Some((name, seen)) {
        let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::SIGKILL);
    }
}

/// The process under test: stdin through custody (fd 3) to stdout, until the source ends.
#[cfg(target_os = "linux")]
fn mover() {
    use tokio::io::AsyncReadExt as _;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        use std::os::fd::AsFd as _;
        let source = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .expect("dup stdin");
        // SAFETY: the test opened descriptor 3 for this process, and nothing else in it owns it.
        let custody = unsafe { OwnedFd::from_raw_fd(CUSTODY_FD) };
        let mut custody = Custody::new(source, custody)
            .expect("custody of stdin")
            .with_hook(hook);
        let mut buffer = vec![0u8; 256 * 1024];
        let mut stdout = std::io::stdout().lock();
        loop {
            let read = custody
                .read(&mut buffer)
                .await
                .expect("read through custody");
            if read == 0 {
                return;
            }
            stdout.write_all(&buffer[..read]).expect("forward");
            stdout.flush().expect("forward");
        }
    });
}

#[derive(Clone, Copy, Debug)]
enum Source {
    Pipe,
    Socket,
}

#[derive(Clone, Copy, Debug)]
enum Kill {
    /// The mover kills itself at the K-th step of this name.
    At(&'static str, u32),
    /// The test kills it once it has forwarded at least this many bytes.
    AfterForwarding(usize),
    /// Nobody kills it: the source ends and it exits.
    Never,
}

/// What one run wrote: numbered lines of lengths that vary from a few bytes to beyond a pipe's
/// capacity, so that copies and moves split lines anywhere.
fn payload(seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut bytes = Vec::new();
    for n in 0..400 {
        let len = match next() % 16 {
            0 => 70_000 + (next() % 70_000) as usize,
            1..=3 => 1_000 + (next() % 8_000) as usize,
            _ => (next() % 200) as usize,
        };
        bytes.extend_from_slice(format!("{{\"id\":{n},\"pad\":\"").as_bytes());
        bytes.extend(std::iter::repeat_n(b'a' + (n % 26) as u8, len));
        bytes.extend_from_slice(b"\"}\n");
    }
    bytes
}

/// A kill at each of the first steps of the mover's reads, with the custody pipe drained as it
/// fills (the proxy reading) and left to fill (the proxy behind: the mover then waits for room
/// after a read or two, so only its first steps ever come), and one run to the source's end.
#[cfg(target_os = "linux")]
fn every_step(source: Source) {
    for (seed, drain_custody) in [(1, true), (2, false)] {
        for step in ["copied", "moved"] {
            let last = match (drain_custody, step) {
                (true, _) => 6,
                (false, "copied") => 2,
                (false, _) => 1,
            };
            for count in 1..=last {
                run(
                    source,
                    Kill::At(step, count),
                    seed + u64::from(count),
                    drain_custody,
                );
            }
        }
    }
    run(source, Kill::Never, 7, true);
}

/// Kills from a few bytes in to most of the way through, with the custody pipe drained as it
/// fills, or left to fill (then at most a pipe's capacity is ever forwarded).
#[cfg(target_os = "linux")]
fn arbitrary_moments(source: Source) {
    for round in 0..40u64 {
        let drain = round % 3 != 0;
        let range = if drain { 3_000_000 } else { 60_000 };
        let forwarded = 1 + usize::try_from(round.wrapping_mul(2_654_435_761)).unwrap_or(0) % range;
        run(source, Kill::AfterForwarding(forwarded), 100 + round, drain);
    }
}

/// One mover over `source`, killed as `kill` says; see the module docs for what is checked.
#[cfg(target_os = "linux")]
fn run(source: Source, kill: Kill, seed: u64, drain_custody: bool) {
    let what = format!("{source:?}, {kill:?}, seed {seed}, draining custody: {drain_custody}");
    let written = payload(seed);
    // The source: the test writes one end; the mover reads the other; the test keeps a second
    // reader to take what is left once the mover is dead.
    let (mover_end, left_reader, mut writer): (OwnedFd, OwnedFd, Box<dyn std::io::Write + Send>) =
        match source {
            Source::Pipe => {
                let (read, write) =
                    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("a pipe");
                let left = read.try_clone().expect("dup");
                (read, left, Box::new(std::fs::File::from(write)))
            }
            Source::Socket => {
                let (ours, theirs) = UnixStream::pair().expect("a socket pair");
                let left = OwnedFd::from(theirs.try_clone().expect("dup"));
                (OwnedFd::from(theirs), left, Box::new(ours))
            }
        };
    let (custody_read, custody_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("a custody pipe");
    let custody_raw = custody_write.as_raw_fd();
    let mut command = Command::new(std::env::current_exe().expect("this test binary"));
    command
        .arg("mover")
        .stdin(Stdio::from(mover_end))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Kill::At(step, count) = kill {
        command.env("FAIL_AT", format!("{step}:{count}"));
    }
    // SAFETY: only dup2(2), which is async-signal-safe, between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if nix::libc::dup2(custody_raw, CUSTODY_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().expect("start the mover");
    // Only the mover may write the custody pipe now, so that its end is the pipe's end.
    drop(custody_write);
    let total = written.len();
    let writing = std::thread::spawn(move || {
        // The writer stops when the source is closed on the other side.
        let _ = writer.write_all(&written);
        drop(writer);
        written
    });
    let mut custody = std::fs::File::from(custody_read);
    let draining = drain_custody.then(|| {
        let mut custody = custody.try_clone().expect("dup");
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            custody.read_to_end(&mut bytes).expect("read custody");
            bytes
        })
    });
    let mut stdout = child.stdout.take().expect("piped");
    // A mover that hangs is killed at the deadline, and the run fails.
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("a pid"));
    let (finished, finish) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        let hung = finish.recv_timeout(DEADLINE).is_err();
        if hung {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGKILL);
        }
        hung
    });
    let mut forwarded = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut killed = false;
    loop {
        if let Kill::AfterForwarding(enough) = kill
            && !killed
            && forwarded.len() >= enough.min(total)
        {
            child.kill().expect("SIGKILL the mover");
            killed = true;
        }
        // EOF: the mover exited (killed, or at the source's end).
        match stdout.read(&mut chunk).expect("read the mover's output") {
            0 => break,
            read => forwarded.extend_from_slice(&chunk[..read]),
        }
    }
    let status = child.wait().expect("wait for the mover");
    let _ = finished.send(());
    assert!(
        !watchdog.join().expect("the watchdog"),
        "{what}: the mover did not finish within {DEADLINE:?}"
    );
    if matches!(kill, Kill::Never) {
        assert!(status.success(), "{what}: the mover failed: {status}");
    }
    let mut held = match draining {
        Some(draining) => draining.join().expect("the custody reader"),
        None => {
            let mut bytes = Vec::new();
            custody.read_to_end(&mut bytes).expect("read custody");
            bytes
        }
    };
    // What is left in the source: read until the writer is done and has closed its end.
    let mut left = std::fs::File::from(left_reader);
    let taker = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        left.read_to_end(&mut bytes).expect("read what is left");
        bytes
    });
    let written = writing.join().expect("the writer");
    let left = taker.join().expect("the reader of what is left");
    assert!(
        held.starts_with(&forwarded),
        "{what}: the mover forwarded {} bytes that are not all in custody ({} there)",
        forwarded.len(),
        held.len()
    );
    let held_len = held.len();
    held.extend_from_slice(&left);
    assert!(
        held == written,
        "{what}: custody ({held_len} bytes) and the source ({} bytes) do not add up to what \
         was written ({} bytes), once each",
        left.len(),
        written.len()
    );
}

/// A host that writes a large message in one blocking `write(2)`, read through custody in reads
/// of varying sizes (the line decoder's room varies so): every byte must come through. Linux
/// wakes a pipe's readers in the middle of such a write only when the writer finds the pipe
/// empty, so a reader that took less than the pipe held, and took it as a copy and a move that
/// the writer can slip bytes between, gets no wake-up for what it left: if it then believes
/// the pipe drained, it waits for ever beside a full pipe and a blocked writer. (A socket wakes
/// its reader on every write; it is held to the same.)
#[cfg(target_os = "linux")]
fn one_large_write(source: Source) {
    use tokio::io::AsyncReadExt as _;
    const TOTAL: usize = 8 << 20;
    const ROUNDS: usize = 20;
    const ROOMS: [usize; 5] = [4096, 65536, 61440, 100_000, 1000];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .expect("a runtime");
    for round in 0..ROUNDS {
        let (source_read, source_write): (OwnedFd, OwnedFd) = match source {
            Source::Pipe => nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap(),
            Source::Socket => {
                let (ours, theirs) = UnixStream::pair().unwrap();
                (ours.into(), theirs.into())
            }
        };
        let (custody_read, custody_write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let writer = std::thread::spawn(move || {
            let mut file = std::fs::File::from(source_write);
            file.write_all(&vec![b'x'; TOTAL]).expect("the write");
        });
        let drainer = std::thread::spawn(move || {
            let mut file = std::fs::File::from(custody_read);
            let mut drained = Vec::new();
            file.read_to_end(&mut drained)
                .expect("drain the custody pipe");
            drained.len()
        });
        let read = runtime.block_on(async {
            // Non-blocking, as a registered descriptor must be; the writer's end stays blocking.
            for fd in [&source_read, &custody_write] {
                nix::fcntl::fcntl(
                    fd,
                    nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
                )
                .unwrap();
            }
            let mut custody = Custody::new(source_read, custody_write).expect("custody");
            let mut buffer = vec![0u8; 100_000];
            let mut read = 0;
            for room in ROOMS.iter().cycle() {
                let got = tokio::time::timeout(DEADLINE, custody.read(&mut buffer[..*room]))
                    .await
                    .unwrap_or_else(|_| {
                        panic!(
                            "{source:?}, round {round}: no more bytes after {read} of {TOTAL} \
                             within {DEADLINE:?}: the reader missed a wake-up"
                        )
                    })
                    .expect("read through custody");
                if got == 0 {
                    return read;
                }
                read += got;
            }
            unreachable!("the cycle of rooms never ends")
        });
        writer.join().unwrap();
        assert_eq!(read, TOTAL, "round {round}: what came through custody");
        assert_eq!(
            drainer.join().unwrap(),
            TOTAL,
            "round {round}: the custody pipe"
        );
    }
}
