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
    /// `/run/user/<uid>/shoal`: the user's runtime directory exists and is private.
    UserRuntimeDir,
    /// `/tmp/shoal-<uid>`: the user has no private runtime directory, or `$SHOAL_RUNTIME_DIR`
    /// would make socket paths too long.
    Tmp,
}

/// Pick the runtime directory, in order: `$SHOAL_RUNTIME_DIR`; `/run/user/<uid>/shoal` when
/// `/run/user/<uid>` is a directory owned by `uid` and closed to everyone else (what logind
/// creates at login); `/tmp/shoal-<uid>`.
///
/// `$XDG_RUNTIME_DIR` is deliberately not read: hosts pass their servers different environments
/// (Codex CLI keeps only a fixed list of variables), and a runtime directory that depends on one
/// would give two hosts of one project two daemons. The default depends on the uid alone.
///
/// A `$SHOAL_RUNTIME_DIR` whose socket paths would exceed [`MAX_SOCKET_PATH`] is passed over for
/// the next candidate (it must never surface as ENAMETOOLONG); the others always fit. Empty or
/// relative values are ignored.
///
/// `var` reads an environment variable; tests pass a closure instead of mutating the process
/// environment.
pub fn resolve_runtime_dir(
    var: impl Fn(&str) -> Option<OsString>,
    uid: u32,
) -> (PathBuf, RuntimeDirSource) {
    resolve(var, uid, |dir| is_private_dir_of(dir, uid))
}

fn resolve(
    var: impl Fn(&str) -> Option<OsString>,
    uid: u32,
    is_private: impl Fn(&Path) -> bool,
) -> (PathBuf, RuntimeDirSource) {
    if let Some(dir) = var("SHOAL_RUNTIME_DIR").map(PathBuf::from)
        && dir.is_absolute()
        && socket_fits(&dir)
    {
        return (dir, RuntimeDirSource::ShoalRuntimeDir);
    }
    let user_dir = PathBuf::from(format!("/run/user/{uid}"));
    if is_private(&user_dir) {
        return (user_dir.join("shoal"), RuntimeDirSource::UserRuntimeDir);
    }
    (
        PathBuf::from(format!("/tmp/shoal-{uid}")),
        RuntimeDirSource::Tmp,
    )
}

/// Whether `dir` is a directory (not a symlink) owned by `uid` with no access for group or others.
fn is_private_dir_of(dir: &Path, uid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(dir).is_ok_and(|metadata| {
        metadata.is_dir() && metadata.uid() == uid && metadata.mode() & 0o077 == 0
    })
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
    /// The key dir must exist (`shoal_lockfile::ensure_private_dir` makes it).
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

    fn check(vars: &[(&str, &str)], user_dir: bool, expected: (&str, RuntimeDirSource)) {
        let lookup = |name: &str| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| OsString::from(value))
        };
        let (dir, source) = resolve(lookup, 1000, |dir| {
            assert_eq!(dir, Path::new("/run/user/1000"));
            user_dir
        });
        assert_eq!((dir.to_str().unwrap(), source), expected, "vars: {vars:?}");
    }

    #[test]
    fn resolution_order() {
        use RuntimeDirSource::*;
        check(&[], false, ("/tmp/shoal-1000", Tmp));
        check(&[], true, ("/run/user/1000/shoal", UserRuntimeDir));
        check(
            &[("XDG_RUNTIME_DIR", "/elsewhere")],
            false,
            ("/tmp/shoal-1000", Tmp),
        );
        check(
            &[("SHOAL_RUNTIME_DIR", "/x/rt")],
            true,
            ("/x/rt", ShoalRuntimeDir),
        );
        // Relative and empty values are ignored.
        check(
            &[("SHOAL_RUNTIME_DIR", "")],
            true,
            ("/run/user/1000/shoal", UserRuntimeDir),
        );
        check(
            &[("SHOAL_RUNTIME_DIR", "rt")],
            false,
            ("/tmp/shoal-1000", Tmp),
        );
    }

    #[test]
    fn a_long_shoal_runtime_dir_is_passed_over() {
        use RuntimeDirSource::*;
        let long = format!("/home/{}", "d".repeat(120));
        check(
            &[("SHOAL_RUNTIME_DIR", &long)],
            false,
            ("/tmp/shoal-1000", Tmp),
        );
        check(
            &[("SHOAL_RUNTIME_DIR", &long)],
            true,
            ("/run/user/1000/shoal", UserRuntimeDir),
        );
    }

    #[test]
    fn only_a_private_directory_of_the_user_is_theirs() {
        use std::os::unix::fs::PermissionsExt;
        let scratch =
            std::env::temp_dir().join(format!("shoal-ipc-private-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir(&scratch).unwrap();
        // Ours: we just created it.
        let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&scratch).unwrap());
        let set_mode = |mode| {
            std::fs::set_permissions(&scratch, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        set_mode(0o700);
        assert!(is_private_dir_of(&scratch, uid));
        assert!(
            !is_private_dir_of(&scratch, uid.wrapping_add(1)),
            "another user's"
        );
        set_mode(0o750);
        assert!(!is_private_dir_of(&scratch, uid), "open to the group");
        set_mode(0o700);
        let link = scratch.with_extension("link");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&scratch, &link).unwrap();
        assert!(!is_private_dir_of(&link, uid), "a symlink");
        assert!(!is_private_dir_of(&scratch.join("missing"), uid));
        std::fs::remove_file(&link).unwrap();
        std::fs::remove_dir(&scratch).unwrap();
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
