//! Scratch directories for the crate's unit tests, removed when the test ends, passing or not.

use std::ops::Deref;
use std::path::{Path, PathBuf};

/// A fresh directory under the system temp dir, named after the test; removed on drop.
pub(crate) struct ScratchDir(PathBuf);

impl ScratchDir {
    /// The path is made unique by the pid and a clock reading; the directory is not created
    /// (some tests need it absent).
    pub(crate) fn new(prefix: &str, name: &str) -> ScratchDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos());
        ScratchDir(
            std::env::temp_dir().join(format!("{prefix}-{name}-{}-{nanos}", std::process::id())),
        )
    }
}

impl Deref for ScratchDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for ScratchDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
