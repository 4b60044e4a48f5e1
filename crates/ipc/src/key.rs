//! The identity of a daemon: which project, server command and shoal version it serves.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Everything that decides whether two sessions may share one daemon.
///
/// Two proxies share a daemon exactly when their keys are equal: same canonical project root, same
/// backend argv, same shoal version and wire protocol, and same values of the environment variables
/// the user named with `--key-env` (for servers whose behaviour depends on, say, an API token).
///
/// The shoal version is part of the key, not just the wire protocol number: after an upgrade, new
/// sessions get a new daemon running the new code while the old daemon keeps serving its sessions
/// and idles out. Nothing ever has to talk across versions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonKey {
    root: PathBuf,
    argv: Vec<OsString>,
    shoal_version: String,
    protocol: u32,
    key_env: Vec<(OsString, Option<OsString>)>,
}

/// The short, filesystem-safe name of a [`DaemonKey`]: 16 lowercase hex characters (the first 64
/// bits of a SHA-256 over the key's fields), used as the name of the key's runtime directory.
///
/// 64 bits keep socket paths short; an accidental collision between two keys of one user is
/// negligible (and would show up as a meta.json mismatch rather than silent sharing, because the
/// daemon records its full key).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl DaemonKey {
    /// A key for serving `argv` in the project at `root`.
    ///
    /// `root` must already be canonical (the caller resolves symlinks and the git top level), so
    /// that `/work/p` and `/work/./p` share. `key_env` is sorted here, so the order the user listed
    /// the variables in does not matter; a variable that is unset is distinct from one set to "".
    pub fn new(
        root: PathBuf,
        argv: Vec<OsString>,
        shoal_version: impl Into<String>,
        protocol: u32,
        mut key_env: Vec<(OsString, Option<OsString>)>,
    ) -> Self {
        key_env.sort();
        key_env.dedup_by(|a, b| a.0 == b.0);
        DaemonKey {
            root,
            argv,
            shoal_version: shoal_version.into(),
            protocol,
            key_env,
        }
    }

    /// The project root the backend runs in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The backend's command line.
    pub fn argv(&self) -> &[OsString] {
        &self.argv
    }

    /// The shoal version this key belongs to.
    pub fn shoal_version(&self) -> &str {
        &self.shoal_version
    }

    /// The wire protocol number this key belongs to.
    pub fn protocol(&self) -> u32 {
        self.protocol
    }

    /// The hashed name of this key.
    pub fn id(&self) -> KeyId {
        let mut hasher = Sha256::new();
        // Every field is tagged and length-prefixed so that no two different keys can encode to
        // the same bytes (argv ["a b"] vs ["a", "b"], an env value vs the next name, ...).
        hasher.update(b"shoal-key-v1");
        field(&mut hasher, b'r', self.root.as_os_str());
        hasher.update((self.argv.len() as u64).to_le_bytes());
        for arg in &self.argv {
            field(&mut hasher, b'a', arg);
        }
        field(&mut hasher, b'v', OsStr::new(&self.shoal_version));
        hasher.update(self.protocol.to_le_bytes());
        for (name, value) in &self.key_env {
            field(&mut hasher, b'n', name);
            match value {
                Some(value) => field(&mut hasher, b'e', value),
                None => hasher.update([b'u']),
            }
        }
        let digest = hasher.finalize();
        let mut id = String::with_capacity(16);
        for byte in &digest[..8] {
            id.push(char::from(HEX[usize::from(byte >> 4)]));
            id.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        KeyId(id)
    }
}

impl KeyId {
    /// The 16 hex characters.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
impl KeyId {
    pub(crate) fn for_tests(id: &str) -> Self {
        KeyId(id.to_owned())
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn field(hasher: &mut Sha256, tag: u8, value: &OsStr) {
    let bytes = value.as_bytes();
    hasher.update([tag]);
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(root: &str, argv: &[&str], version: &str, env: &[(&str, Option<&str>)]) -> DaemonKey {
        DaemonKey::new(
            PathBuf::from(root),
            argv.iter().map(OsString::from).collect(),
            version,
            1,
            env.iter()
                .map(|(name, value)| (OsString::from(name), value.map(OsString::from)))
                .collect(),
        )
    }

    fn check_distinct(a: DaemonKey, b: DaemonKey) {
        assert_ne!(a.id(), b.id(), "{a:?} and {b:?} must not share a daemon");
    }

    #[test]
    fn id_is_16_lowercase_hex_and_stable() {
        let id = key("/p", &["server", "--flag"], "0.1.0", &[]).id();
        assert_eq!(id.as_str().len(), 16);
        assert!(
            id.as_str()
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        // Pinned: a change here silently splits every user's running daemons across an upgrade
        // of the same version, so it must be deliberate.
        assert_eq!(
            id.as_str(),
            key("/p", &["server", "--flag"], "0.1.0", &[]).id().as_str()
        );
        assert_eq!(id.as_str(), "d5a9c36603445f47");
    }

    #[test]
    fn every_field_separates_keys() {
        let base = || key("/p", &["a", "b"], "0.1.0", &[("TOKEN", Some("x"))]);
        check_distinct(
            base(),
            key("/q", &["a", "b"], "0.1.0", &[("TOKEN", Some("x"))]),
        );
        check_distinct(
            base(),
            key("/p", &["a b"], "0.1.0", &[("TOKEN", Some("x"))]),
        );
        check_distinct(base(), key("/p", &["ab"], "0.1.0", &[("TOKEN", Some("x"))]));
        check_distinct(
            base(),
            key("/p", &["a", "b"], "0.2.0", &[("TOKEN", Some("x"))]),
        );
        check_distinct(
            base(),
            key("/p", &["a", "b"], "0.1.0", &[("TOKEN", Some("y"))]),
        );
        check_distinct(base(), key("/p", &["a", "b"], "0.1.0", &[("TOKEN", None)]));
        check_distinct(
            base(),
            key("/p", &["a", "b"], "0.1.0", &[("TOKEN", Some(""))]),
        );
        check_distinct(base(), key("/p", &["a", "b"], "0.1.0", &[]));
        let mut other_protocol = base();
        other_protocol.protocol = 2;
        check_distinct(base(), other_protocol);
    }

    #[test]
    fn key_env_order_does_not_matter() {
        assert_eq!(
            key("/p", &["s"], "1", &[("A", Some("1")), ("B", None)]).id(),
            key("/p", &["s"], "1", &[("B", None), ("A", Some("1"))]).id(),
        );
    }
}
