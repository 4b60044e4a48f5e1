//! The one place that talks to the operating system: every `nix` and `libc` call and every `unsafe`
//! block of the crate lives here, so there is one file to audit and one file to port.
//!
//! Every function retries `EINTR` itself: an interrupted system call is never reported to a caller as
//! "not acquired" or as an error.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, Flock, FlockArg, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};

/// A file's identity: the pair that names one inode while any descriptor to it is open.
///
/// Inode numbers are recycled once a file is gone, which is why a lock record also carries a nonce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileId {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
}

/// What kind of file a path names, for "this is not a lock file" messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileKind {
    Regular,
    Directory,
    Symlink,
    Fifo,
    Socket,
    Device,
    Other,
}

impl FileKind {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            FileKind::Regular => "regular file",
            FileKind::Directory => "directory",
            FileKind::Symlink => "symbolic link",
            FileKind::Fifo => "named pipe (FIFO)",
            FileKind::Socket => "socket",
            FileKind::Device => "device node",
            FileKind::Other => "special file",
        }
    }
}

/// The parts of `stat(2)` the crate looks at.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Metadata {
    pub(crate) id: FileId,
    pub(crate) kind: FileKind,
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) nlink: u64,
    pub(crate) size: u64,
    pub(crate) modified: SystemTime,
}

/// Why a non-blocking kernel lock was not taken.
#[derive(Debug)]
pub(crate) enum LockFailure {
    /// Another open file description holds a conflicting lock.
    WouldBlock,
    /// The filesystem does not do kernel locks (`ENOLCK`, `EOPNOTSUPP`: some network filesystems).
    Unsupported,
    Io(io::Error),
}

/// A file with an exclusive `flock(2)` lock, released when dropped (after the descriptor closes at the
/// latest).
pub(crate) type LockedFile = Flock<File>;

/// Open a directory without following a symbolic link at its last component.
pub(crate) fn open_directory(path: &Path) -> io::Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    retry(|| nix::fcntl::open(path, flags, Mode::empty()))
}

/// Create `name` in `dir` with `O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC` and mode 0600 set explicitly,
/// whatever the umask.
pub(crate) fn create_private_file(dir: &OwnedFd, name: &OsStr) -> io::Result<File> {
    let flags = OFlag::O_RDWR
        | OFlag::O_CREAT
        | OFlag::O_EXCL
        | OFlag::O_NOFOLLOW
        | OFlag::O_CLOEXEC
        | OFlag::O_NONBLOCK;
    let fd = retry(|| nix::fcntl::openat(dir, name, flags, private_file_mode()))?;
    // The umask may have removed bits (or a umask of 000 may not have), so set the mode exactly.
    retry(|| nix::sys::stat::fchmod(&fd, private_file_mode()))?;
    Ok(File::from(fd))
}

/// Open an existing `name` in `dir` for reading, without following symbolic links and without
/// blocking (a FIFO planted at the path would otherwise block `open` until a writer appears).
pub(crate) fn open_existing(dir: &OwnedFd, name: &OsStr) -> io::Result<File> {
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
    let fd = retry(|| nix::fcntl::openat(dir, name, flags, Mode::empty()))?;
    Ok(File::from(fd))
}

/// Open `name` in `dir` for writing, creating it with mode 0600 if it does not exist. Returns the
/// file and whether this call created it.
pub(crate) fn open_or_create_private(dir: &OwnedFd, name: &OsStr) -> io::Result<(File, bool)> {
    loop {
        match create_private_file(dir, name) {
            Ok(file) => return Ok((file, true)),
            Err(error) if error.raw_os_error() == Some(libc::EEXIST) => {}
            Err(error) => return Err(error),
        }
        let flags = OFlag::O_RDWR | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
        match retry(|| nix::fcntl::openat(dir, name, flags, Mode::empty())) {
            Ok(fd) => return Ok((File::from(fd), false)),
            // Removed between our two opens: create it again.
            Err(error) if error.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(error) => return Err(error),
        }
    }
}

/// `fstat(2)`.
pub(crate) fn metadata(file: &impl AsFd) -> io::Result<Metadata> {
    retry(|| nix::sys::stat::fstat(file.as_fd())).map(convert_stat)
}

/// `fstatat(2)` without following a symbolic link.
pub(crate) fn metadata_at(dir: &OwnedFd, name: &OsStr) -> io::Result<Metadata> {
    retry(|| nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)).map(convert_stat)
}

/// `lstat(2)` of a path.
pub(crate) fn metadata_of_path(path: &Path) -> io::Result<Metadata> {
    retry(|| nix::sys::stat::lstat(path)).map(convert_stat)
}

/// Take an exclusive, non-blocking `flock(2)` lock on `file`.
///
/// `flock` locks belong to the open file description, not to the process: opening and closing the
/// same file again elsewhere in the holder does not drop the lock (unlike POSIX `fcntl` locks).
pub(crate) fn lock_exclusive_nonblocking(file: File) -> Result<LockedFile, (File, LockFailure)> {
    let mut file = file;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => return Ok(locked),
            Err((returned, Errno::EINTR)) => file = returned,
            Err((returned, errno)) => {
                let failure = match errno {
                    Errno::EWOULDBLOCK => LockFailure::WouldBlock,
                    Errno::ENOLCK | Errno::EOPNOTSUPP => LockFailure::Unsupported,
                    other => LockFailure::Io(other.into()),
                };
                return Err((returned, failure));
            }
        }
    }
}

/// `linkat(2)`: give the file `from` a second name `to` in the same directory. Never replaces `to`.
pub(crate) fn link(dir: &OwnedFd, from: &OsStr, to: &OsStr) -> io::Result<()> {
    retry(|| nix::unistd::linkat(dir, from, dir, to, AtFlags::empty()))
}

/// `renameat(2)` within one directory. Replaces `to` if it exists: only used with private names.
pub(crate) fn rename(dir: &OwnedFd, from: &OsStr, to: &OsStr) -> io::Result<()> {
    retry(|| nix::fcntl::renameat(dir, from, dir, to))
}

/// `unlinkat(2)` of a non-directory.
pub(crate) fn unlink(dir: &OwnedFd, name: &OsStr) -> io::Result<()> {
    retry(|| nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir))
}

/// The names in `dir`, read through the descriptor so that a directory swapped at its path is not
/// listed instead.
pub(crate) fn list_directory(dir: &OwnedFd) -> io::Result<Vec<OsString>> {
    use std::os::unix::ffi::OsStrExt;
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let mut listing = retry(|| nix::dir::Dir::openat(dir, ".", flags, Mode::empty()))?;
    let mut names = Vec::new();
    for entry in listing.iter() {
        let entry = entry.map_err(io::Error::from)?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name != "." && name != ".." {
            names.push(name.to_os_string());
        }
    }
    Ok(names)
}

/// The effective user id of this process.
pub(crate) fn effective_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// This host's name, or an empty string if it cannot be read.
pub(crate) fn host_name() -> String {
    nix::unistd::gethostname()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Whether a process exists, as far as `kill(pid, 0)` can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProcessProbe {
    /// `ESRCH`: no such process.
    Gone,
    /// The signal could be sent, or `EPERM`: the process exists under another user.
    Exists,
}

/// `kill(pid, 0)`. A pid that does not fit in `pid_t` (or is 0, which would mean "my process
/// group") names no process.
pub(crate) fn probe_process(pid: u32) -> ProcessProbe {
    let Ok(raw) = i32::try_from(pid) else {
        return ProcessProbe::Gone;
    };
    if raw <= 0 {
        return ProcessProbe::Gone;
    }
    match retry(|| nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None)) {
        Err(error) if error.raw_os_error() == Some(libc::ESRCH) => ProcessProbe::Gone,
        _ => ProcessProbe::Exists,
    }
}

/// Fill `buffer` with random bytes from the kernel (getrandom(2), or `/dev/urandom`).
pub(crate) fn random_bytes(buffer: &mut [u8]) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let mut filled = 0;
        while filled < buffer.len() {
            let rest = &mut buffer[filled..];
            // SAFETY: `rest` is a valid, writable buffer of `rest.len()` bytes for the whole call.
            let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
            if n < 0 {
                let error = io::Error::last_os_error();
                match error.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    // Kernels older than 3.17 have no getrandom(2).
                    Some(libc::ENOSYS) => return read_urandom(buffer),
                    _ => return Err(error),
                }
            }
            // `n` is non-negative here and at most `rest.len()`.
            filled += n.unsigned_abs();
        }
        Ok(())
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        read_urandom(buffer)
    }
}

/// The start token of process `pid`: something that changes when the pid is reused. On Linux, the
/// boot id joined with the process start time in clock ticks since boot (field 22 of
/// `/proc/<pid>/stat`). `None` where it cannot be read (the process is gone, or the platform has no
/// cheap way: on macOS and the BSDs this is a documented degraded mode).
pub(crate) fn start_token(pid: u32) -> Option<String> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        let stat = read_bounded(Path::new(&format!("/proc/{pid}/stat")), 4096)?;
        let start_time = parse_start_time(&stat)?;
        Some(format!("{}:{start_time}", boot_id.trim()))
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = pid;
        None
    }
}

/// The identity of this process's pid namespace (Linux: the target of `/proc/self/ns/pid`), so that a
/// record written in another container is never judged by pids that mean something else here.
pub(crate) fn pid_namespace() -> Option<String> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        std::fs::read_link("/proc/self/ns/pid")
            .ok()
            .map(|target| target.to_string_lossy().into_owned())
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        None
    }
}

/// Kill this process with SIGKILL: the test hook that simulates a crash at a chosen step.
pub(crate) fn kill_self() -> ! {
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    // raise(SIGKILL) does not return; abort is the belt to its braces.
    std::process::abort()
}

/// Sleep for about `duration`; used for backoff between attempts.
pub(crate) fn sleep(duration: Duration) {
    std::thread::sleep(duration);
}

/// Mode 0600.
fn private_file_mode() -> Mode {
    Mode::S_IRUSR | Mode::S_IWUSR
}

/// Retry `call` while it fails with `EINTR`.
fn retry<T>(mut call: impl FnMut() -> nix::Result<T>) -> io::Result<T> {
    loop {
        match call() {
            Err(Errno::EINTR) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
}

#[allow(
    clippy::unnecessary_cast,
    reason = "the stat field types differ between platforms (st_dev is i32 on macOS, u64 on Linux)"
)]
fn convert_stat(stat: FileStat) -> Metadata {
    let format = SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits());
    let kind = match format {
        SFlag::S_IFREG => FileKind::Regular,
        SFlag::S_IFDIR => FileKind::Directory,
        SFlag::S_IFLNK => FileKind::Symlink,
        SFlag::S_IFIFO => FileKind::Fifo,
        SFlag::S_IFSOCK => FileKind::Socket,
        SFlag::S_IFCHR | SFlag::S_IFBLK => FileKind::Device,
        _ => FileKind::Other,
    };
    let modified = if stat.st_mtime >= 0 {
        SystemTime::UNIX_EPOCH
            + Duration::new(
                stat.st_mtime as u64,
                stat.st_mtime_nsec.clamp(0, 999_999_999) as u32,
            )
    } else {
        SystemTime::UNIX_EPOCH
    };
    Metadata {
        id: FileId {
            dev: stat.st_dev as u64,
            ino: stat.st_ino as u64,
        },
        kind,
        mode: (stat.st_mode as u32) & 0o7777,
        uid: stat.st_uid as u32,
        nlink: stat.st_nlink as u64,
        size: stat.st_size.max(0) as u64,
        modified,
    }
}

fn read_urandom(buffer: &mut [u8]) -> io::Result<()> {
    use std::io::Read;
    File::open("/dev/urandom")?.read_exact(buffer)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn read_bounded(path: &Path, limit: u64) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    File::open(path)
        .ok()?
        .take(limit)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// Field 22 (`starttime`) of `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may
/// itself contain spaces and `)`, so fields are counted from after the **last** `)`.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn parse_start_time(stat: &str) -> Option<u64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    // After the name comes field 3 (state); field 22 is the 20th from there.
    after_name.split_ascii_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn start_time_is_counted_after_the_last_parenthesis() {
        fn check(stat: &str, expected: Option<u64>) {
            assert_eq!(super::parse_start_time(stat), expected, "{stat:?}");
        }
        let tail = "S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 424242 20 21";
        check(&format!("12 (bash) {tail}"), Some(424_242));
        check(&format!("12 (a) b) (c) {tail}"), Some(424_242));
        check(&format!("12 (x y z) {tail}"), Some(424_242));
        check("12 (bash) S 1 2", None);
        check("garbage", None);
    }

    #[test]
    fn own_start_token_is_stable_and_random_bytes_differ() {
        let me = std::process::id();
        assert_eq!(super::start_token(me), super::start_token(me));
        #[cfg(target_os = "linux")]
        assert!(super::start_token(me).is_some());
        let mut a = [0u8; 16];
        let mut b = [0u8; 16];
        super::random_bytes(&mut a).unwrap();
        super::random_bytes(&mut b).unwrap();
        assert_ne!(a, b);
    }
}
