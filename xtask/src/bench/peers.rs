//! The processes `cargo xtask bench session` measures shoal against, run as `xtask bench-peer
//! <kind>` by the release xtask itself:
//!
//! - `fast-server`: an MCP server that answers in a few microseconds (the fixture parses and
//!   validates every message, and its own time hides what a relay costs). It knows exactly what
//!   the bench and shoal's daemon send it: `initialize`, `tools/list`, `ping`, the `echo` and
//!   `big` tools; anything else gets -32601.
//! - `relay-front SOCKET -- SERVER...` and `relay-back SOCKET -- SERVER...`: the floor of shoal's
//!   design, two relay processes that copy bytes and parse nothing. The front (what the host
//!   runs, in the proxy's place) starts the back (in the daemon's place), which listens on a unix
//!   socket and starts the server; the front copies its stdin to the socket and the socket to its
//!   stdout, the back the socket to the server's stdin and the server's stdout to the socket.
//!   Every copy is `read(2)` into a 64 KiB buffer and `write(2)` of what was read, two threads per
//!   relay: the least any relay that looks at the bytes can do.

use std::io::{BufRead as _, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// Run the peer named by `args[0]`.
pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    match args.first().map(String::as_str) {
        Some("fast-server") => fast_server(),
        Some("relay-front") => relay_front(&args[1..]),
        Some("relay-back") => relay_back(&args[1..]),
        other => bail!("unknown bench peer {other:?}"),
    }
}

/// `SOCKET -- SERVER...` → the socket path and the server's command line.
fn socket_and_server(args: &[String]) -> anyhow::Result<(&str, &[String])> {
    match args {
        [socket, dash, server @ ..] if dash == "--" && !server.is_empty() => Ok((socket, server)),
        _ => bail!("expected SOCKET -- SERVER..., got {args:?}"),
    }
}

fn relay_front(args: &[String]) -> anyhow::Result<()> {
    let (socket, server) = socket_and_server(args)?;
    let _ = std::fs::remove_file(socket);
    let mut back = Command::new(std::env::current_exe().context("find xtask")?)
        .args(["bench-peer", "relay-back", socket, "--"])
        .args(server)
        .stdin(Stdio::null())
        .spawn()
        .context("start the back relay")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let stream = loop {
        match UnixStream::connect(socket) {
            Ok(stream) => break stream,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
            Err(error) => return Err(error).context("connect to the back relay"),
        }
    };
    let to_back = stream.try_clone()?;
    let up = std::thread::spawn(move || {
        let copied = copy(std::io::stdin().lock(), &to_back);
        // The other half of the socket is still open (reading): pass the end on explicitly.
        let _ = to_back.shutdown(std::net::Shutdown::Write);
        copied
    });
    copy(stream, std::io::stdout().lock())?;
    let _ = up.join();
    let _ = back.wait();
    Ok(())
}

fn relay_back(args: &[String]) -> anyhow::Result<()> {
    let (socket, server) = socket_and_server(args)?;
    let listener = UnixListener::bind(Path::new(socket)).context("bind the relay socket")?;
    let mut child = Command::new(&server[0])
        .args(&server[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("start the server")?;
    let (stream, _) = listener.accept().context("accept the front relay")?;
    let _ = std::fs::remove_file(socket);
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        bail!("the server's stdio is not piped");
    };
    let from_front = stream.try_clone()?;
    let up = std::thread::spawn(move || copy(from_front, stdin));
    copy(stdout, &stream)?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
    let _ = child.wait();
    Ok(())
}

/// Copy until end of input, as read/write pairs of at most 64 KiB; the writer is closed (dropped)
/// at the end, which passes the end on.
fn copy(mut from: impl Read, mut to: impl Write) -> std::io::Result<()> {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = match from.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        to.write_all(&buffer[..read])?;
        to.flush()?;
    }
}

/// The value of `"key":` in `line` as raw JSON text: a number, or a string with its quotes.
fn raw_value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = line[start..].trim_start();
    let end = if let Some(body) = rest.strip_prefix('"') {
        // The bench's strings have no escapes.
        body.find('"')? + 2
    } else {
        rest.find([',', '}'])?
    };
    Some(&rest[..end])
}

fn fast_server() -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let mut input = BufReader::with_capacity(64 * 1024, stdin.lock());
    let mut output = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    let mut line = String::new();
    let mut big = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let Some(id) = raw_value(&line, "id") else {
            continue; // a notification
        };
        let method = raw_value(&line, "method").unwrap_or("\"\"");
        let result = match method {
            "\"initialize\"" => {
                let version = raw_value(&line, "protocolVersion").unwrap_or("\"2025-11-25\"");
                format!(
                    "{{\"protocolVersion\":{version},\"capabilities\":{{\"tools\":{{}}}},\
                     \"serverInfo\":{{\"name\":\"bench-fast-server\",\"version\":\"1\"}}}}"
                )
            }
            "\"ping\"" => "{}".to_owned(),
            "\"tools/list\"" => "{\"tools\":[{\"name\":\"echo\",\"inputSchema\":{\"type\":\
                                 \"object\"}},{\"name\":\"big\",\"inputSchema\":{\"type\":\
                                 \"object\"}}]}"
                .to_owned(),
            "\"tools/call\"" if raw_value(&line, "name") == Some("\"echo\"") => {
                let text = raw_value(&line, "text").unwrap_or("\"\"");
                format!("{{\"content\":[{{\"type\":\"text\",\"text\":{text}}}]}}")
            }
            "\"tools/call\"" if raw_value(&line, "name") == Some("\"big\"") => {
                let bytes: usize = raw_value(&line, "bytes")
                    .and_then(|bytes| bytes.parse().ok())
                    .unwrap_or(0);
                if big.len() != bytes {
                    big = "x".repeat(bytes);
                }
                writeln!(
                    output,
                    "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{{\"content\":[{{\"type\":\
                     \"text\",\"text\":\"{big}\"}}]}}}}"
                )?;
                output.flush()?;
                continue;
            }
            _ => {
                writeln!(
                    output,
                    "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"error\":{{\"code\":-32601,\
                     \"message\":\"method not found\"}}}}"
                )?;
                output.flush()?;
                continue;
            }
        };
        writeln!(
            output,
            "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{result}}}"
        )?;
        output.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::raw_value;

    #[test]
    fn raw_values() {
        let line = r#"{"jsonrpc":"2.0","id":17,"method":"tools/call","params":{"name":"echo","arguments":{"text":"bench 17"}}}"#;
        assert_eq!(raw_value(line, "id"), Some("17"));
        assert_eq!(raw_value(line, "method"), Some("\"tools/call\""));
        assert_eq!(raw_value(line, "name"), Some("\"echo\""));
        assert_eq!(raw_value(line, "text"), Some("\"bench 17\""));
        assert_eq!(raw_value(r#"{"id":"s-1","x":1}"#, "id"), Some("\"s-1\""));
        assert_eq!(raw_value(r#"{"method":"x"}"#, "id"), None);
    }
}
