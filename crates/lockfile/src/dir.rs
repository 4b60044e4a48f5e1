//! Private directories: the place lock files live must belong to the user and be writable by nobody
//! else, or another user could plant, replace or delete the lock files in it (the tmux and watchman
//! rule).

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use crate::Error;
use crate::sys::{self, FileKind};

/// Make sure `path` is a private directory: create it if missing, then check it.
///
/// - Only the last component is created, with mode 0700 set explicitly (whatever the umask); the
///   parent must exist. Creating parents silently would also create them with whatever owner and mode
///   the defaults give, which is exactly what this check exists to catch.
/// - The directory must not be a symbolic link (checked with `O_NOFOLLOW` on the last component;
///   symbolic links among the *parents*, such as `/var/run` → `/run`, are followed).
/// - It must be owned by the effective user.
/// - It must not be writable by group or others. Read and search bits for others are accepted on an
///   existing directory (they cannot plant or remove files), though a directory created here is
///   0700.
///
/// A refusal is [`Error::UnsafeDirectory`], whose message names the path, the owner or mode found and
/// the fix.
///
/// # Examples
///
/// ```
/// # fn main() -> Result<(), shoal_lockfile::Error> {
/// use std::os::unix::fs::PermissionsExt;
///
/// let dir = std::env::temp_dir().join(format!("shoal-lockfile-doc-dir-{}", std::process::id()));
/// shoal_lockfile::ensure_private_dir(&dir)?;
/// let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
/// assert_eq!(mode & 0o777, 0o700);
///
/// // Writable by others: refused with a message that says how to fix it.
/// std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
/// let error = shoal_lockfile::ensure_private_dir(&dir).unwrap_err();
/// assert!(error.to_string().contains("chmod 700"), "{error}");
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok(())
/// # }
/// ```
pub fn ensure_private_dir(path: impl AsRef<Path>) -> Result<(), Error> {
    let path = path.as_ref();
    let created = match std::fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => true,
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(error) => return Err(Error::io("create the directory", path, error)),
    };
    let directory = Directory::open(path)?;
    if created {
        // The umask may have cleared owner bits (umask 0200 would give 0500); set exactly 0700.
        set_private_dir_mode(&directory)?;
    }
    directory.check_private()
}

/// Check that an existing `path` is a private directory, by the rules of [`ensure_private_dir`],
/// without creating anything.
///
/// # Examples
///
/// ```
/// # fn main() -> Result<(), shoal_lockfile::Error> {
/// let dir = std::env::temp_dir().join(format!("shoal-lockfile-doc-check-{}", std::process::id()));
/// shoal_lockfile::ensure_private_dir(&dir)?;
/// shoal_lockfile::check_private_dir(&dir)?;
///
/// // A symbolic link to a private directory is refused: whoever can change the link can move
/// // the lock files.
/// let link = dir.with_extension("link");
/// std::os::unix::fs::symlink(&dir, &link).unwrap();
/// let error = shoal_lockfile::check_private_dir(&link).unwrap_err();
/// assert!(matches!(error, shoal_lockfile::Error::UnsafeDirectory { .. }), "{error}");
/// # std::fs::remove_file(&link).unwrap();
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok(())
/// # }
/// ```
pub fn check_private_dir(path: impl AsRef<Path>) -> Result<(), Error> {
    Directory::open(path.as_ref())?.check_private()
}

/// An open directory that lock files are created in, relative to its descriptor (so that a directory
/// swapped at the path after the check is not used instead).
#[derive(Debug)]
pub(crate) struct Directory {
    pub(crate) fd: OwnedFd,
    pub(crate) path: PathBuf,
}

impl Directory {
    /// Open `path` (`O_DIRECTORY|O_NOFOLLOW|O_CLOEXEC`) without checking it.
    pub(crate) fn open(path: &Path) -> Result<Directory, Error> {
        match sys::open_directory(path) {
            Ok(fd) => Ok(Directory {
                fd,
                path: path.to_path_buf(),
            }),
            Err(error) => Err(match error.raw_os_error() {
                Some(libc::ELOOP) => unsafe_directory(
                    path,
                    "it is a symbolic link; point the configuration at the real directory instead"
                        .to_owned(),
                ),
                // Linux reports a symbolic link opened with O_DIRECTORY|O_NOFOLLOW as ENOTDIR.
                Some(libc::ENOTDIR) if is_symlink(path) => unsafe_directory(
                    path,
                    "it is a symbolic link; point the configuration at the real directory instead"
                        .to_owned(),
                ),
                Some(libc::ENOTDIR) => unsafe_directory(
                    path,
                    "it is not a directory; remove it or choose another location".to_owned(),
                ),
                _ => Error::io("open the directory", path, error),
            }),
        }
    }

    /// Open the directory that holds the file `path`, and that file's name in it.
    pub(crate) fn open_parent_of(path: &Path) -> Result<(Directory, &OsStr), Error> {
        let name = path.file_name().ok_or_else(|| Error::Io {
            action: "use as a lock file",
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the path has no file name",
            ),
        })?;
        let parent = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        Ok((Directory::open(parent)?, name))
    }

    /// Owned by the effective user, a directory, and not writable by group or others.
    pub(crate) fn check_private(&self) -> Result<(), Error> {
        let metadata = sys::metadata(&self.fd)
            .map_err(|error| Error::io("inspect the directory", &self.path, error))?;
        if metadata.kind != FileKind::Directory {
            return Err(unsafe_directory(
                &self.path,
                format!(
                    "it is a {}, not a directory; remove it or choose another location",
                    metadata.kind.describe()
                ),
            ));
        }
        let euid = sys::effective_uid();
        if metadata.uid != euid {
            return Err(unsafe_directory(
                &self.path,
                format!(
                    "it is owned by uid {}, not by uid {euid} (this process); use a directory \
                     you own, or remove this one so that it can be created",
                    metadata.uid
                ),
            ));
        }
        if metadata.mode & 0o022 != 0 {
            return Err(unsafe_directory(
                &self.path,
                format!(
                    "its mode {:04o} lets group or others write in it; run `chmod 700 {}`",
                    metadata.mode,
                    self.path.display()
                ),
            ));
        }
        Ok(())
    }
}

fn set_private_dir_mode(directory: &Directory) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    // fchmod through the descriptor, so that the directory we created is the one we change.
    let file = std::fs::File::from(
        directory
            .fd
            .try_clone()
            .map_err(|error| Error::io("set the mode of", &directory.path, error))?,
    );
    file.set_permissions(std::fs::Permissions::from_mode(0o700))
        .map_err(|error| Error::io("set the mode of", &directory.path, error))
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|metadata| metadata.file_type().is_symlink())
}

fn unsafe_directory(path: &Path, problem: String) -> Error {
    Error::UnsafeDirectory {
        path: path.to_path_buf(),
        problem,
    }
}
