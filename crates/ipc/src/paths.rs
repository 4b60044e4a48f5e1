//! Where a daemon's files live: the runtime directory and the per-key directory inside it.
//!
//! ```text
//! <runtime dir>/                 0700, owned by the user, not a symlink
//!     <key id>/                  0700: one directory per daemon key
//!         spawn.lock             held only around start/stop decisions, never unlinked
//!         daemon.lock            the daemon's lock record, held for its whole life
//!         daemon.sock            the socket sessions connect to (0600)
//!         daemon.log             the daemon's log and the backend's stderr
//!         meta.json              root, argv, version: for humans and `shoal status`
//! ```

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::key::KeyId;

/// The longest socket path we create, in bytes. `sun_path` holds 108 bytes on Linux and 104 on
/// macOS including the terminating NUL; 100 leaves room on both, so a bind never fails with
/// ENAMETOOLONG.
pub const MAX_SOCKET_PATH: usize = 100;

/// Where the runtime directory came from, so that errors and `shoal status` can say which setting
/// to change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuntimeDirSource {
    /// `$SHOAL_RUNTIME_DIR`, used as is.
    ShoalRuntimeDir,
    /// `$XDG_RUNTIME_DIR/shoal`.
    XdgRuntimeDir,
    /// `/tmp/shoal-<uid>`: no runtime dir was configured, or the configured one would make socket
    /// paths too long.
    Tmp,
}

/// Pick the runtime directory from the environment, in order: `$SHOAL_RUNTIME_DIR`,
/// `$XDG_RUNTIME_DIR/shoal`, `/tmp/shoal-<uid>`.
///
/// A candidate whose socket paths would exceed [`MAX_SOCKET_PATH`] is passed over for the next one
/// (a deep `$XDG_RUNTIME_DIR` must never surface as ENAMETOOLONG); `/tmp/shoal-<uid>` always fits.
/// Empty or relative values are ignored, as the XDG base directory specification requires.
///
/// `var` reads an environment variable; tests pass a closure instead of mutating the process
/// environment.
pub fn resolve_runtime_dir(
    var: impl Fn(&str) -> Option<OsString>,
    uid: u32,
) -> (PathBuf, RuntimeDirSource) {
    let usable = |path: PathBuf| path.is_absolute() && socket_fits(&path);
    if let Some(dir) = var("SHOAL_RUNTIME_DIR").map(PathBuf::from)
        && usable(dir.clone())
    {
        return (dir, RuntimeDirSource::ShoalRuntimeDir);
    }
    if let Some(xdg) = var("XDG_RUNTIME_DIR").map(PathBuf::from) {
        let dir = xdg.join("shoal");
        if usable(dir.clone()) {
            return (dir, RuntimeDirSource::XdgRuntimeDir);
        }
    }
    (
        PathBuf::from(format!("/tmp/shoal-{uid}")),
        RuntimeDirSource::Tmp,
    )
}

/// The files of one daemon key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonPaths {
    /// The key's directory.
    pub dir: PathBuf,
    /// `spawn.lock`: serialises start and stop decisions for this key.
    pub spawn_lock: PathBuf,
    /// `daemon.lock`: names the live daemon.
    pub daemon_lock: PathBuf,
    /// `daemon.sock`: the socket sessions connect to.
    pub socket: PathBuf,
    /// `daemon.log`: the daemon's log, with the backend's stderr.
    pub log: PathBuf,
    /// `meta.json`: what this daemon serves, for humans and `shoal status`.
    pub meta: PathBuf,
}

impl DaemonPaths {
    /// The paths of key `id` under `runtime_dir`.
    pub fn new(runtime_dir: &Path, id: &KeyId) -> Self {
        Self::in_dir(runtime_dir.join(id.as_str()))
    }

    /// The paths of the key whose directory is `dir`: for tools that enumerate the runtime dir
    /// (`shoal status`) and so know a key's directory but not its [`DaemonKey`](crate::DaemonKey).
    ///
    /// ```
    /// let paths = shoal_ipc::DaemonPaths::in_dir("/tmp/shoal-1000/2c26b46b68ffc68f".into());
    /// assert!(paths.socket.ends_with("2c26b46b68ffc68f/daemon.sock"));
    /// ```
    pub fn in_dir(dir: PathBuf) -> Self {
        DaemonPaths {
            spawn_lock: dir.join("spawn.lock"),
            daemon_lock: dir.join("daemon.lock"),
            socket: dir.join(SOCKET_NAME),
            log: dir.join("daemon.log"),
            meta: dir.join("meta.json"),
            dir,
        }
    }
}

impl DaemonPaths {
    /// Open `daemon.log` for appending (created 0600 if missing). The daemon passes it to the
    /// backend as stderr; a spawner opens it for the daemon's own stdout and stderr.
    ///
    /// The key dir must exist (see [`shoal_lockfile::ensure_private_dir`]).
    pub fn open_log(&self) -> std::io::Result<std::fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(&self.log)
    }
}

const SOCKET_NAME: &str = "daemon.sock";

/// The longest socket-like name created in a key dir: the socket is bound at a temporary name
/// (`daemon.sock.<pid>.tmp`, pid ≤ 7 digits) and renamed into place.
const LONGEST_SOCKET_NAME: usize = SOCKET_NAME.len() + ".4194304.tmp".len();

/// Whether sockets under `runtime_dir/<16-hex key id>/` fit in [`MAX_SOCKET_PATH`].
fn socket_fits(runtime_dir: &Path) -> bool {
    let separators = 2;
    runtime_dir.as_os_str().as_bytes().len() + separators + 16 + LONGEST_SOCKET_NAME
        <= MAX_SOCKET_PATH
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(vars: &[(&str, &str)], expected: (&str, RuntimeDirSource)) {
        let lookup = |name: &str| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| OsString::from(value))
        };
        let (dir, source) = resolve_runtime_dir(lookup, 1000);
        assert_eq!((dir.to_str().unwrap(), source), expected, "vars: {vars:?}");
    }

    #[test]
    fn resolution_order() {
        use RuntimeDirSource::*;
        check(&[], ("/tmp/shoal-1000", Tmp));
        check(
            &[("XDG_RUNTIME_DIR", "/run/user/1000")],
            ("/run/user/1000/shoal", XdgRuntimeDir),
        );
        check(
            &[
                ("XDG_RUNTIME_DIR", "/run/user/1000"),
                ("SHOAL_RUNTIME_DIR", "/x/rt"),
            ],
            ("/x/rt", ShoalRuntimeDir),
        );
        // Relative and empty values are ignored.
        check(
            &[("XDG_RUNTIME_DIR", "run/user"), ("SHOAL_RUNTIME_DIR", "")],
            ("/tmp/shoal-1000", Tmp),
        );
    }

    #[test]
    fn long_runtime_dirs_fall_back_to_tmp() {
        use RuntimeDirSource::*;
        let long = format!("/home/{}", "d".repeat(120));
        check(&[("XDG_RUNTIME_DIR", &long)], ("/tmp/shoal-1000", Tmp));
        check(
            &[("SHOAL_RUNTIME_DIR", &long), ("XDG_RUNTIME_DIR", "/run/u")],
            ("/run/u/shoal", XdgRuntimeDir),
        );
    }

    #[test]
    fn every_chosen_dir_fits_socket_paths() {
        for len in 1..200 {
            let configured = format!("/{}", "x".repeat(len));
            let (dir, _) = resolve_runtime_dir(
                |name| (name == "SHOAL_RUNTIME_DIR").then(|| OsString::from(&configured)),
                u32::MAX,
            );
            let paths = DaemonPaths::new(&dir, &KeyId::for_tests("0123456789abcdef"));
            let temp_socket = format!("{}.4294967.tmp", paths.socket.display());
            assert!(
                temp_socket.len() <= MAX_SOCKET_PATH,
                "{temp_socket} is too long"
            );
        }
    }
}
