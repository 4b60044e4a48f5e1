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
//! - `relay-front --half SOCKET -- SERVER...` (and the `relay-back --half` it starts): the floor
//!   of the "half one-relay" design (`docs/benchmarks.md`): the front hands its stdin (the host's
//!   pipe) to the back over the socket (`SCM_RIGHTS`), so requests go from the host straight to
//!   the back and only answers cross the front. The same copies otherwise.
//! - `relay-front --custody SOCKET -- SERVER...`: the half-relay floor with exact custody of the
//!   host's bytes (`docs/benchmarks.md`, "Custody"): the back learns what the host sent with
//!   `tee(2)` (a copy that leaves the bytes in the host's pipe), moves exactly those bytes into a
//!   pipe the front holds with `splice(2)`, and only then writes them to the server; the front
//!   drains that pipe before it writes each answer, as a proxy would read its ledger.

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
        Some("relay-front") if args.get(1).map(String::as_str) == Some("--connect") => {
            let socket = args.get(2).context("relay-front --connect SOCKET")?;
            relay_to(connect_within(socket)?, None)
        }
        Some("relay-front") => {
            let (relay, args) = Relay::parse(&args[1..]);
            relay_front(relay, args)
        }
        Some("mux-back") => mux_back(&args[1..]),
        Some("relay-back") => {
            let (relay, args) = Relay::parse(&args[1..]);
            relay_back(relay, args)
        }
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

/// How requests reach the back relay (see the module docs): through the front (the two-relay
/// floor), or from the host's stdin, which the front hands over, without or with custody.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Relay {
    Two,
    Half,
    Custody,
}

impl Relay {
    /// `[--half | --custody] REST...`: the mode and the rest.
    fn parse(args: &[String]) -> (Relay, &[String]) {
        match args.first().map(String::as_str) {
            Some("--half") => (Relay::Half, &args[1..]),
            Some("--custody") => (Relay::Custody, &args[1..]),
            _ => (Relay::Two, args),
        }
    }

    fn flag(self) -> Option<&'static str> {
        match self {
            Relay::Two => None,
            Relay::Half => Some("--half"),
            Relay::Custody => Some("--custody"),
        }
    }
}

/// The front relay: starts the back in the same mode and connects to it. Two relays: copies
/// stdin to the socket and the socket to stdout. Otherwise it hands the back its stdin (and,
/// with custody, the writing end of a pipe of its own, the custody pipe, which it empties before
/// it writes each answer) and copies the socket to stdout until the back closes it.
fn relay_front(relay: Relay, args: &[String]) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd as _;
    let (socket, server) = socket_and_server(args)?;
    let _ = std::fs::remove_file(socket);
    let mut back = Command::new(std::env::current_exe().context("find xtask")?)
        .args(["bench-peer", "relay-back"])
        .args(relay.flag())
        .args([socket, "--"])
        .args(server)
        .stdin(Stdio::null())
        .spawn()
        .context("start the back relay")?;
    let stream = connect_within(socket)?;
    if relay == Relay::Two {
        return relay_to(stream, Some(back));
    }
    let stdin = std::io::stdin();
    let pipe = if relay == Relay::Custody {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        Some((std::fs::File::from(read), write))
    } else {
        None
    };
    let mut fds = vec![stdin.as_raw_fd()];
    fds.extend(pipe.as_ref().map(|(_, write)| write.as_raw_fd()));
    nix::sys::socket::sendmsg::<()>(
        stream.as_raw_fd(),
        &[std::io::IoSlice::new(b"0")],
        &[nix::sys::socket::ControlMessage::ScmRights(&fds)],
        nix::sys::socket::MsgFlags::empty(),
        None,
    )
    .context("hand stdin to the back relay")?;
    match pipe {
        None => copy(&stream, std::io::stdout().lock())?,
        Some((custody, write)) => {
            drop(write);
            nix::fcntl::fcntl(
                &custody,
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
            )?;
            answers_after_custody(&stream, custody)?;
        }
    }
    let _ = back.wait();
    Ok(())
}

/// Copy `stream` to stdout, emptying `custody` (non-blocking) before each write: what a proxy
/// would read into its ledger, here only counted.
fn answers_after_custody(
    mut stream: &UnixStream,
    mut custody: std::fs::File,
) -> anyhow::Result<()> {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut ledger = vec![0u8; 64 * 1024];
    let mut stdout = std::io::stdout().lock();
    loop {
        let read = match stream.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error.into()),
        };
        loop {
            match custody.read(&mut ledger) {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error.into()),
            }
        }
        stdout.write_all(&buffer[..read])?;
        stdout.flush()?;
    }
}

/// The descriptors the front relay sent over `stream` (see [`relay_front`]).
fn receive_fds(stream: &UnixStream) -> anyhow::Result<Vec<std::os::fd::OwnedFd>> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
    let mut byte = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 2]);
    let message = nix::sys::socket::recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .context("receive the host's stdin")?;
    let mut fds = Vec::new();
    for control in message.cmsgs().context("read the control message")? {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(received) = control {
            // SAFETY: the kernel just installed these descriptors in this process for us; no
            // one else owns them.
            fds.extend(
                received
                    .into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    Ok(fds)
}

/// Copy the host's pipe to the server with exact custody: `tee(2)` copies what the host sent
/// into a private pipe without taking it from the host's pipe; `splice(2)` then moves exactly
/// those bytes into the custody pipe, and only then do they go to the server. Had this process
/// died before the move, the bytes would still be in the host's pipe for whoever reads it next;
/// after it, the front finds them in the custody pipe. No byte is in neither or in both.
///
/// A host's stdin may be a socket instead (a Node host's is): `tee` takes pipes only, so the
/// bytes are read with `recv(MSG_PEEK)`, which leaves them in the socket, and moved from the
/// socket with the same `splice`. Either way this process is the only reader while it runs, so
/// what the move takes is what was read.
fn custody_copy(
    host: std::os::fd::OwnedFd,
    custody: std::os::fd::OwnedFd,
    mut to: impl Write,
) -> std::io::Result<()> {
    use nix::fcntl::SpliceFFlags;
    use nix::sys::stat::SFlag;
    use std::os::fd::AsRawFd as _;
    let kind = SFlag::from_bits_truncate(nix::sys::stat::fstat(&host)?.st_mode) & SFlag::S_IFMT;
    // A pipe's bytes are copied into this private pipe by `tee`, then read from it.
    let private = if kind == SFlag::S_IFSOCK {
        None
    } else {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        Some((std::fs::File::from(read), write))
    };
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let copied = match &private {
            None => nix::sys::socket::recv(
                host.as_raw_fd(),
                &mut buffer,
                nix::sys::socket::MsgFlags::MSG_PEEK,
            ),
            Some((_, write)) => nix::fcntl::tee(&host, write, buffer.len(), SpliceFFlags::empty()),
        };
        let copied = match copied {
            Ok(0) => return Ok(()),
            Ok(copied) => copied,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(error) => return Err(error.into()),
        };
        if let Some((read, _)) = &private {
            (&*read).read_exact(&mut buffer[..copied])?;
        }
        let mut moved = 0;
        while moved < copied {
            moved += nix::fcntl::splice(
                &host,
                None,
                &custody,
                None,
                copied - moved,
                SpliceFFlags::empty(),
            )?;
        }
        to.write_all(&buffer[..copied])?;
        to.flush()?;
    }
}

/// Connect to `socket`, which a process started a moment ago is about to listen on.
fn connect_within(socket: &str) -> anyhow::Result<UnixStream> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match UnixStream::connect(socket) {
            Ok(stream) => return Ok(stream),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
            Err(error) => return Err(error).context("connect to the back relay"),
        }
    }
}

/// The front relay's copies: stdin to `stream`, `stream` to stdout; then wait for `back`.
fn relay_to(stream: UnixStream, back: Option<std::process::Child>) -> anyhow::Result<()> {
    let to_back = stream.try_clone()?;
    let up = std::thread::spawn(move || {
        let copied = copy(std::io::stdin().lock(), &to_back);
        // The other half of the socket is still open (reading): pass the end on explicitly.
        let _ = to_back.shutdown(std::net::Shutdown::Write);
        copied
    });
    copy(stream, std::io::stdout().lock())?;
    let _ = up.join();
    if let Some(mut back) = back {
        let _ = back.wait();
    }
    Ok(())
}

/// The floor of a multiplexer (what the daemon does, minus everything but the id rewriting no
/// multiplexer can skip): one `poll(2)` loop over the listening socket, every front relay's
/// connection and the server's stdout. Each request's `id` is replaced by a number of its own
/// and restored in the answer; notifications pass as they are. It serves until the server
/// exits (the bench stops it by killing it).
fn mux_back(args: &[String]) -> anyhow::Result<()> {
    use std::collections::HashMap;
    use std::os::fd::AsFd as _;

    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

    let (socket, server) = socket_and_server(args)?;
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(Path::new(socket)).context("bind the mux socket")?;
    let (mut child, mut to_server, mut from_server) = start_server(server)?;
    struct Client {
        stream: UnixStream,
        pending: Vec<u8>,
    }
    // A front that left keeps its slot (`None`), so that routes' indices stay valid.
    let mut clients: Vec<Option<Client>> = Vec::new();
    let mut server_pending: Vec<u8> = Vec::new();
    let mut routes: HashMap<u64, (usize, String)> = HashMap::new();
    let mut next_id: u64 = 1;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let mut fds = vec![
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(from_server.as_fd(), PollFlags::POLLIN),
        ];
        let mut polled = Vec::with_capacity(clients.len());
        for (index, client) in clients.iter().enumerate() {
            if let Some(client) = client {
                fds.push(PollFd::new(client.stream.as_fd(), PollFlags::POLLIN));
                polled.push(index);
            }
        }
        poll(&mut fds, PollTimeout::NONE).context("poll")?;
        let ready: Vec<bool> = fds
            .iter()
            .map(|fd| fd.revents().is_some_and(|events| !events.is_empty()))
            .collect();
        drop(fds);
        if ready[0] {
            let (stream, _) = listener.accept().context("accept")?;
            clients.push(Some(Client {
                stream,
                pending: Vec::new(),
            }));
        }
        if ready[1] {
            let read = from_server.read(&mut buffer)?;
            if read == 0 {
                let _ = child.wait();
                return Ok(());
            }
            server_pending.extend_from_slice(&buffer[..read]);
            let mut start = 0;
            while let Some(end) = server_pending[start..].iter().position(|&b| b == b'\n') {
                let line = std::str::from_utf8(&server_pending[start..start + end])?;
                start += end + 1;
                let Some(ours) = raw_value(line, "id").and_then(|id| id.parse::<u64>().ok()) else {
                    continue;
                };
                let Some((client, original)) = routes.remove(&ours) else {
                    continue;
                };
                let mut rewritten =
                    line.replacen(&format!("\"id\":{ours}"), &format!("\"id\":{original}"), 1);
                rewritten.push('\n');
                if let Some(client) = &mut clients[client] {
                    client.stream.write_all(rewritten.as_bytes())?;
                }
            }
            server_pending.drain(..start);
        }
        for (&client, _) in polled.iter().zip(&ready[2..]).filter(|(_, ready)| **ready) {
            let Some(slot) = &mut clients[client] else {
                continue;
            };
            let read = slot.stream.read(&mut buffer)?;
            if read == 0 {
                clients[client] = None;
                continue;
            }
            let pending = &mut slot.pending;
            pending.extend_from_slice(&buffer[..read]);
            let mut start = 0;
            while let Some(end) = pending[start..].iter().position(|&b| b == b'\n') {
                let line = std::str::from_utf8(&pending[start..start + end])?.to_owned();
                start += end + 1;
                let mut forwarded = match raw_value(&line, "id") {
                    Some(original) => {
                        let ours = next_id;
                        next_id += 1;
                        routes.insert(ours, (client, original.to_owned()));
                        line.replacen(&format!("\"id\":{original}"), &format!("\"id\":{ours}"), 1)
                    }
                    None => line,
                };
                forwarded.push('\n');
                to_server.write_all(forwarded.as_bytes())?;
            }
            pending.drain(..start);
        }
    }
}

/// The back relay: starts the server and copies its stdout to the socket. The requests come
/// from the socket (two relays) or from the host's stdin the front hands over, moved through
/// the custody pipe first with custody (see [`custody_copy`]).
fn relay_back(relay: Relay, args: &[String]) -> anyhow::Result<()> {
    let (socket, server) = socket_and_server(args)?;
    let listener = UnixListener::bind(Path::new(socket)).context("bind the relay socket")?;
    let (mut child, stdin, stdout) = start_server(server)?;
    let (stream, _) = listener.accept().context("accept the front relay")?;
    let _ = std::fs::remove_file(socket);
    let up = if relay == Relay::Two {
        let from_front = stream.try_clone()?;
        std::thread::spawn(move || copy(from_front, stdin))
    } else {
        let mut fds = receive_fds(&stream)?.into_iter();
        let host = fds.next().context("the front relay sent no descriptor")?;
        if relay == Relay::Custody {
            let pipe = fds.next().context("the front relay sent no custody pipe")?;
            std::thread::spawn(move || custody_copy(host, pipe, stdin))
        } else {
            std::thread::spawn(move || copy(std::fs::File::from(host), stdin))
        }
    };
    copy(stdout, &stream)?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
    let _ = child.wait();
    Ok(())
}

/// Start the server with piped stdin and stdout.
fn start_server(
    server: &[String],
) -> anyhow::Result<(
    std::process::Child,
    std::process::ChildStdin,
    std::process::ChildStdout,
)> {
    let mut child = Command::new(&server[0])
        .args(&server[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("start the server")?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        bail!("the server's stdio is not piped");
    };
    Ok((child, stdin, stdout))
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
