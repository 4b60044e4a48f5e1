//! The lock record: who holds a lock, as a small line-based `key=value` text file.
//!
//! ```text
//! shoal-lockfile 1
//! nonce=5f0c…(32 hex digits)
//! pid=4242
//! start=6a1e…-boot-id:123456
//! pidns=pid:[4026531836]
//! host=build-box
//! uid=1000
//! version=0.3.1
//! data=/run/user/1000/shoal/ab12/daemon.sock
//! created=1718000000.250000000
//! end=5f0c…(the nonce again)
//! ```
//!
//! Values are percent-encoded (`%`, space, control and non-ASCII bytes become `%XX`), so a value can
//! never forge a line. The `end=` sentinel repeats the nonce: a record cut short, or stitched from two
//! writes, does not parse. Unknown keys are ignored so that a later minor revision can add fields;
//! a different first line is a different format and does not parse. A record is at most
//! [`MAX_RECORD_LEN`](crate::MAX_RECORD_LEN) bytes, and reading one never allocates more than that.

use std::fmt;
use std::io::{self, Read};
use std::time::{Duration, SystemTime};

use crate::sys;

/// The longest record this crate writes or reads, in bytes. A file at the lock path that is larger is
/// garbage, not a record; the bound keeps a planted 100 MB file from costing 100 MB of memory.
pub const MAX_RECORD_LEN: usize = 4096;

/// The first line of every record: the format name and version.
const HEADER: &str = "shoal-lockfile 1";

/// Who holds (or held) a lock: the contents of a lock record.
///
/// A record *describes* a holder, for messages, status output and the fallback liveness check on
/// filesystems without kernel locks. It never proves the holder alive on its own: process ids are
/// recycled, so liveness comes from the kernel lock on the file.
///
/// # Examples
///
/// ```
/// # fn main() -> Result<(), shoal_lockfile::Error> {
/// # let dir = std::env::temp_dir().join(format!("shoal-lockfile-doc-record-{}", std::process::id()));
/// # shoal_lockfile::ensure_private_dir(&dir)?;
/// use shoal_lockfile::LockFile;
///
/// let lock = LockFile::new(dir.join("app.lock"))?.data("listening on 127.0.0.1:8080");
/// let guard = lock.try_acquire()?;
/// let record = guard.record();
/// assert_eq!(record.pid(), std::process::id());
/// assert_eq!(record.data(), "listening on 127.0.0.1:8080");
/// println!("held by {record}");
/// # drop(guard);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    nonce: String,
    pid: u32,
    start_token: Option<String>,
    pid_namespace: Option<String>,
    host: String,
    uid: u32,
    program_version: String,
    data: String,
    created_at: SystemTime,
}

impl Record {
    /// The random identity of this acquisition (32 hex digits). Two acquisitions never share a
    /// nonce, even when the kernel hands the second lock file the first one's inode number.
    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    /// The holder's process id, in its own pid namespace.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Something that changes when the holder's pid is reused: on Linux the boot id and the process
    /// start time. `None` where the platform gives no cheap way to read it (macOS, the BSDs).
    pub fn start_token(&self) -> Option<&str> {
        self.start_token.as_deref()
    }

    /// The holder's host name, as `gethostname(2)` reported it.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The holder's effective user id.
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// The holding program's version, as given to [`LockFile::program_version`]
    /// (empty if it gave none).
    ///
    /// [`LockFile::program_version`]: crate::LockFile::program_version
    pub fn program_version(&self) -> &str {
        &self.program_version
    }

    /// The caller's data, as given to [`LockFile::data`] (for example the path of a socket to
    /// connect to).
    ///
    /// [`LockFile::data`]: crate::LockFile::data
    pub fn data(&self) -> &str {
        &self.data
    }

    /// When the holder acquired the lock (by its clock).
    pub fn created_at(&self) -> SystemTime {
        self.created_at
    }

    /// A record for this process.
    pub(crate) fn for_this_process(program_version: &str, data: &str, nonce: String) -> Record {
        let pid = std::process::id();
        Record {
            nonce,
            pid,
            start_token: sys::start_token(pid),
            pid_namespace: sys::pid_namespace(),
            host: sys::host_name(),
            uid: sys::effective_uid(),
            program_version: program_version.to_owned(),
            data: data.to_owned(),
            created_at: SystemTime::now(),
        }
    }

    /// The pid namespace the holder's pid belongs to, if known.
    pub(crate) fn pid_namespace(&self) -> Option<&str> {
        self.pid_namespace.as_deref()
    }

    /// The record as file contents.
    pub(crate) fn encode(&self) -> String {
        let created = self
            .created_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let mut text = String::with_capacity(512);
        let mut line = |key: &str, value: &str| {
            text.push_str(key);
            text.push('=');
            escape_into(value, &mut text);
            text.push('\n');
        };
        line("nonce", &self.nonce);
        line("pid", &self.pid.to_string());
        line("start", self.start_token.as_deref().unwrap_or(""));
        line("pidns", self.pid_namespace.as_deref().unwrap_or(""));
        line("host", &self.host);
        line("uid", &self.uid.to_string());
        line("version", &self.program_version);
        line("data", &self.data);
        line(
            "created",
            &format!("{}.{:09}", created.as_secs(), created.subsec_nanos()),
        );
        line("end", &self.nonce);
        format!("{HEADER}\n{text}")
    }

    /// Parse file contents; `None` for anything that is not one complete, well-formed record.
    pub(crate) fn parse(bytes: &[u8]) -> Option<Record> {
        let text = std::str::from_utf8(bytes).ok()?;
        let body = text.strip_prefix(HEADER)?.strip_prefix('\n')?;
        let body = body.strip_suffix('\n')?;
        let mut nonce = None;
        let mut pid = None;
        let mut start_token = None;
        let mut pid_namespace = None;
        let mut host = None;
        let mut uid = None;
        let mut program_version = None;
        let mut data = None;
        let mut created_at = None;
        let mut end = None;
        for line in body.split('\n') {
            // The sentinel must be the last line: anything after it means two writes were mixed.
            if end.is_some() {
                return None;
            }
            let (key, raw_value) = line.split_once('=')?;
            let value = unescape(raw_value)?;
            let slot = match key {
                "nonce" => &mut nonce,
                "pid" => &mut pid,
                "start" => &mut start_token,
                "pidns" => &mut pid_namespace,
                "host" => &mut host,
                "uid" => &mut uid,
                "version" => &mut program_version,
                "data" => &mut data,
                "created" => &mut created_at,
                "end" => &mut end,
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return None;
            }
        }
        let nonce = nonce?;
        if end? != nonce || nonce.len() != 32 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(Record {
            nonce,
            pid: pid?.parse().ok()?,
            start_token: start_token.filter(|token| !token.is_empty()),
            pid_namespace: pid_namespace.filter(|namespace| !namespace.is_empty()),
            host: host?,
            uid: uid?.parse().ok()?,
            program_version: program_version?,
            data: data?,
            created_at: parse_time(&created_at?)?,
        })
    }
}

impl fmt::Display for Record {
    /// One line for humans: `pid 4242 on build-box (uid 1000, version 0.3.1)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {} on {} (uid {}", self.pid, self.host, self.uid)?;
        if !self.program_version.is_empty() {
            write!(f, ", version {}", self.program_version)?;
        }
        if let Ok(age) = SystemTime::now().duration_since(self.created_at) {
            write!(f, ", for {}s", age.as_secs())?;
        }
        f.write_str(")")
    }
}

/// Read at most [`MAX_RECORD_LEN`] + 1 bytes from `file` (so that "too big" is detectable without
/// reading more) and parse them. `Ok(None)`: empty, partial, oversized or not a record.
pub(crate) fn read_record(file: &mut impl Read) -> io::Result<Option<Record>> {
    let mut bytes = Vec::with_capacity(1024);
    let limit = u64::try_from(MAX_RECORD_LEN + 1).unwrap_or(u64::MAX);
    loop {
        match file
            .take(limit - bytes.len() as u64)
            .read_to_end(&mut bytes)
        {
            Ok(_) => break,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
    if bytes.len() > MAX_RECORD_LEN {
        return Ok(None);
    }
    Ok(Record::parse(&bytes))
}

fn parse_time(text: &str) -> Option<SystemTime> {
    let (seconds, nanos) = text.split_once('.')?;
    let duration = Duration::new(seconds.parse().ok()?, nanos.parse().ok()?);
    SystemTime::UNIX_EPOCH.checked_add(duration)
}

/// Percent-encode everything but printable ASCII other than `%` and space.
fn escape_into(value: &str, out: &mut String) {
    for byte in value.bytes() {
        if byte.is_ascii_graphic() && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
}

fn unescape(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let hex = tail.get(..2)?;
            let hex = std::str::from_utf8(hex).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(data: &str) -> Record {
        Record::for_this_process("1.2.3", data, "0123456789abcdef0123456789abcdef".into())
    }

    fn check(bytes: &[u8], expected: Option<&Record>) {
        assert_eq!(
            Record::parse(bytes).as_ref(),
            expected,
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }

    #[test]
    fn round_trips_any_data() {
        for data in [
            "",
            "plain",
            "with space",
            "new\nline=x%41",
            "ünïcödé\u{0}\t",
            "end=forged",
        ] {
            let record = sample(data);
            check(record.encode().as_bytes(), Some(&record));
        }
    }

    #[test]
    fn rejects_partial_mixed_and_foreign_contents() {
        let record = sample("x");
        let text = record.encode();
        for cut in 0..text.len() {
            check(&text.as_bytes()[..cut], None);
        }
        check(format!("{text}{text}").as_bytes(), None);
        check(
            text.replace("shoal-lockfile 1", "shoal-lockfile 2")
                .as_bytes(),
            None,
        );
        check(text.replacen("end=0123", "end=9123", 1).as_bytes(), None);
        check(b"\xff\xfe garbage", None);
        check(b"", None);
    }

    #[test]
    fn ignores_unknown_keys() {
        let record = sample("x");
        let text = record.encode().replace("\nhost=", "\nfuture=1\nhost=");
        check(text.as_bytes(), Some(&record));
    }

    #[test]
    fn reading_is_bounded() {
        let record = sample("x");
        let mut padded = record.encode().into_bytes();
        padded.resize(MAX_RECORD_LEN * 3, b'a');
        assert_eq!(read_record(&mut padded.as_slice()).unwrap(), None);
        let exact = record.encode().into_bytes();
        assert_eq!(read_record(&mut exact.as_slice()).unwrap(), Some(record));
    }
}
