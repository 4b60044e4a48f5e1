//! `shoal logs`: the tail of the selected daemons' `daemon.log`, optionally followed.
//!
//! A log is read from its key dir, so the log of a daemon that exited (or was killed) stays
//! readable until the next daemon for that key starts and appends to it, or the dir is removed.
//!
//! Several daemons selected: each log is printed after a `==> ROOT (COMMAND) [KEY] <==` header,
//! like `tail` does for several files; with `-f`, a header is printed again whenever the output
//! switches to another daemon's log. One daemon selected: no header.
//!
//! Following polls the file every [`FOLLOW_INTERVAL`] (like `tail -f` does without inotify): a
//! log that is truncated is read again from its start, and one that is replaced (a new file at
//! the path) is read to its end, then the new file from its start. Ctrl-C ends it.

use std::fs::File;
use std::io::{self, Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::anyhow;

use crate::exit;
use crate::select::{self, KeyDir, SelectionArgs};
use crate::status::command_line;

/// Print the end of daemons' logs (daemon events and the MCP server's stderr).
///
/// Without --all or --root, shows the logs of the current project's daemons. Logs of daemons
/// that have exited stay readable until the next daemon for the same project and command
/// starts. shoal's own lines hold no message payloads at the default level (SHOAL_LOG=info);
/// the server's stderr is copied as the server wrote it.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  shoal logs                                   # this project's daemons, last 50 lines each
  shoal logs -f --root ~/src/app -- npx -y @modelcontextprotocol/server-filesystem .
  shoal logs --all -n 200

With several daemons selected, each log gets a `==> ROOT (COMMAND) [KEY] <==` header.")]
pub(crate) struct LogsArgs {
    /// Keep printing lines as they are appended, until Ctrl-C
    #[arg(short, long)]
    follow: bool,

    /// How many lines of each log to print first
    #[arg(short = 'n', long, value_name = "LINES", default_value_t = 50)]
    lines: usize,

    #[command(flatten)]
    selection: SelectionArgs,
}

/// How often `-f` looks for new lines.
pub(crate) const FOLLOW_INTERVAL: Duration = Duration::from_millis(200);

/// At most this much of a log is read for the initial tail: a server that writes megabytes
/// without a newline must not make `shoal logs` read (and hold) all of it.
const MAX_TAIL_BYTES: u64 = 4 * 1024 * 1024;

pub(crate) fn run(args: &LogsArgs) -> ExitCode {
    match logs(args) {
        Ok(()) => ExitCode::SUCCESS,
        // `shoal logs | head`: the reader has what it wanted.
        Err(error)
            if error
                .downcast_ref::<io::Error>()
                .is_some_and(|error| error.kind() == io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(error) => {
            crate::report(&error);
            ExitCode::from(exit::FAILURE)
        }
    }
}

fn logs(args: &LogsArgs) -> anyhow::Result<()> {
    let selection = args.selection.resolve()?;
    let (runtime_dir, _) = select::runtime_dir()?;
    let dirs = select::key_dirs(&runtime_dir)?;
    let selected = selection.apply(dirs);
    if selected.is_empty() {
        return Err(anyhow!(selection.none_matched()));
    }
    let several = selected.len() > 1;
    let mut stdout = io::stdout().lock();
    let mut followers = Vec::new();
    for (index, dir) in selected.iter().enumerate() {
        let header = header(dir);
        if several {
            if index > 0 {
                writeln!(stdout)?;
            }
            writeln!(stdout, "{header}")?;
        }
        match File::open(&dir.paths.log) {
            Ok(mut file) => {
                let (tail, end) = tail(&mut file, args.lines)
                    .map_err(|error| read_error(&dir.paths.log, error))?;
                stdout.write_all(&tail)?;
                followers.push(Follower::new(
                    dir.paths.log.clone(),
                    Some((file, end)),
                    header,
                ));
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                writeln!(stdout, "(no log yet at {})", dir.paths.log.display())?;
                followers.push(Follower::new(dir.paths.log.clone(), None, header));
            }
            Err(error) => return Err(read_error(&dir.paths.log, error)),
        }
    }
    stdout.flush()?;
    if !args.follow {
        return Ok(());
    }
    drop(stdout);
    // The last header printed is the last log's (or none, for a single log).
    let mut current = several.then(|| followers.len() - 1);
    loop {
        for (index, follower) in followers.iter_mut().enumerate() {
            let new = follower
                .poll()
                .map_err(|error| read_error(&follower.path, error))?;
            if new.is_empty() {
                continue;
            }
            let mut stdout = io::stdout().lock();
            if several && current != Some(index) {
                writeln!(stdout, "\n{}", follower.header)?;
                current = Some(index);
            }
            stdout.write_all(&new)?;
            stdout.flush()?;
        }
        std::thread::sleep(FOLLOW_INTERVAL);
    }
}

fn read_error(path: &std::path::Path, error: io::Error) -> anyhow::Error {
    anyhow::Error::new(error).context(format!("read {}", path.display()))
}

fn header(dir: &KeyDir) -> String {
    match &dir.meta {
        Ok(meta) => format!(
            "==> {} ({}) [{}] <==",
            meta.root,
            command_line(&meta.argv),
            dir.key
        ),
        Err(_) => format!("==> [{}] <==", dir.key),
    }
}

/// The last `lines` lines of `file` (at most [`MAX_TAIL_BYTES`]), and the offset they end at.
/// Reads backwards in blocks, so a long log costs only what is printed.
fn tail(file: &mut File, lines: usize) -> io::Result<(Vec<u8>, u64)> {
    const BLOCK: u64 = 64 * 1024;
    let end = file.seek(SeekFrom::End(0))?;
    if lines == 0 {
        return Ok((Vec::new(), end));
    }
    let floor = end.saturating_sub(MAX_TAIL_BYTES);
    let mut start = end;
    let mut buffer: Vec<u8> = Vec::new();
    loop {
        // A final newline ends the last line; it does not start another one.
        let body = buffer.strip_suffix(b"\n").unwrap_or(&buffer);
        let newlines = memchr::memchr_iter(b'\n', body).count();
        if newlines >= lines {
            let cut = memchr::memrchr_iter(b'\n', body)
                .nth(lines - 1)
                .map_or(0, |at| at + 1);
            buffer.drain(..cut);
            return Ok((buffer, end));
        }
        if start == floor {
            if start > 0 {
                // Cut mid-line: drop the partial first line.
                let cut = memchr::memchr(b'\n', &buffer).map_or(buffer.len(), |at| at + 1);
                buffer.drain(..cut);
            }
            return Ok((buffer, end));
        }
        let next = start.saturating_sub(BLOCK).max(floor);
        let mut block = vec![0; usize::try_from(start - next).unwrap_or(0)];
        file.seek(SeekFrom::Start(next))?;
        file.read_exact(&mut block)?;
        block.extend_from_slice(&buffer);
        buffer = block;
        start = next;
    }
}

/// One followed log: its open file and how far it was printed.
struct Follower {
    path: PathBuf,
    /// The open file and the offset printed up to; `None` until the file exists.
    open: Option<(File, u64)>,
    header: String,
}

impl Follower {
    fn new(path: PathBuf, open: Option<(File, u64)>, header: String) -> Follower {
        Follower { path, open, header }
    }

    /// What was appended since the last call. Handles truncation (read again from the start)
    /// and replacement (finish the old file, then switch to the new one from its start).
    fn poll(&mut self) -> io::Result<Vec<u8>> {
        let mut new = Vec::new();
        if let Some((file, position)) = &mut self.open {
            let length = file.metadata()?.len();
            if length < *position {
                *position = 0;
            }
            file.seek(SeekFrom::Start(*position))?;
            let read = file.read_to_end(&mut new)?;
            *position += read as u64;
        }
        let replaced = match (&self.open, std::fs::metadata(&self.path)) {
            (_, Err(error)) if error.kind() == io::ErrorKind::NotFound => false,
            (_, Err(error)) => return Err(error),
            (None, Ok(_)) => true,
            (Some((file, _)), Ok(now)) => {
                let open = file.metadata()?;
                (open.dev(), open.ino()) != (now.dev(), now.ino())
            }
        };
        if replaced {
            match File::open(&self.path) {
                Ok(file) => {
                    self.open = Some((file, 0));
                    new.extend(self.poll()?);
                }
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str, contents: &[u8]) -> (PathBuf, File) {
        let path = std::env::temp_dir().join(format!("shoal-logs-{name}-{}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        let file = File::open(&path).unwrap();
        (path, file)
    }

    #[test]
    fn tails_whole_lines() {
        let (path, mut file) = scratch("tail", b"one\ntwo\nthree\n");
        let mut text = |lines| String::from_utf8(tail(&mut file, lines).unwrap().0).unwrap();
        assert_eq!(text(0), "");
        assert_eq!(text(1), "three\n");
        assert_eq!(text(2), "two\nthree\n");
        assert_eq!(text(3), "one\ntwo\nthree\n");
        assert_eq!(text(9), "one\ntwo\nthree\n");
        std::fs::write(&path, b"one\npartial").unwrap();
        assert_eq!(text(1), "partial");
        assert_eq!(text(2), "one\npartial");
        let long: Vec<u8> = (0..100_000)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        std::fs::write(&path, &long).unwrap();
        assert_eq!(text(2), "line 99998\nline 99999\n");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_huge_line_is_cut_at_the_bound() {
        let mut contents = vec![b'x'; usize::try_from(MAX_TAIL_BYTES).unwrap() + 10];
        contents.extend_from_slice(b"\nlast\n");
        let (path, mut file) = scratch("huge", &contents);
        let (text, end) = tail(&mut file, 5).unwrap();
        assert_eq!(text, b"last\n");
        assert_eq!(end, contents.len() as u64);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn follows_appends_truncation_and_replacement() {
        let (path, mut file) = scratch("follow", b"old\n");
        let end = tail(&mut file, 1).unwrap().1;
        let mut follower = Follower::new(path.clone(), Some((file, end)), String::new());
        assert_eq!(follower.poll().unwrap(), b"");
        let append = |text: &[u8]| {
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            file.write_all(text).unwrap();
        };
        append(b"new\n");
        assert_eq!(follower.poll().unwrap(), b"new\n");
        std::fs::write(&path, b"t\n").unwrap();
        assert_eq!(
            follower.poll().unwrap(),
            b"t\n",
            "truncated: from the start"
        );
        append(b"last of the old file\n");
        let replacement = path.with_extension("new");
        std::fs::write(&replacement, b"first of the new file\n").unwrap();
        std::fs::rename(&replacement, &path).unwrap();
        assert_eq!(
            follower.poll().unwrap(),
            b"last of the old file\nfirst of the new file\n"
        );
        std::fs::remove_file(&path).unwrap();
        assert_eq!(follower.poll().unwrap(), b"", "removed: wait for a new one");
        std::fs::write(&path, b"recreated\n").unwrap();
        assert_eq!(follower.poll().unwrap(), b"recreated\n");
        let _ = std::fs::remove_file(&path);
    }
}
