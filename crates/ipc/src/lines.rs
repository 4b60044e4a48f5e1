//! Whole lines on a stream: the next item of a framed reader, and a line and its newline written
//! without copying the line.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;

use bytes::BytesMut;
use futures_core::Stream as _;
use shoal_wire::{ClientHello, Line, LineCodec, LineError, Role};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio_util::codec::{Decoder, FramedRead};

/// A reader keeps at most this much buffer between lines: after a larger line it gives the
/// memory back, so that one 20 MiB result does not stay resident for the reader's whole life.
pub const KEPT_READ_BUFFER: usize = 64 * 1024;

/// The next line of `reader`: `None` at its end. After a line longer than [`KEPT_READ_BUFFER`],
/// the buffer that held it is let go (what is left of the next line is copied to a small one).
pub async fn next_line<R>(
    reader: &mut FramedRead<R, LineCodec>,
) -> Option<Result<Result<Line, LineError>, shoal_wire::Error>>
where
    R: AsyncRead + Unpin,
{
    next_item(reader).await
}

/// The next item of `reader`, whatever its decoder, with the buffer handling of [`next_line`].
pub async fn next_item<R, D>(reader: &mut FramedRead<R, D>) -> Option<Result<D::Item, D::Error>>
where
    R: AsyncRead + Unpin,
    D: Decoder,
{
    let item = poll_fn(|context| Pin::new(&mut *reader).poll_next(context)).await;
    shrink(reader.read_buffer_mut());
    item
}

/// Replace a read buffer grown past [`KEPT_READ_BUFFER`] by a small copy of what it holds, unless
/// what it holds is itself that large (a long line still arriving). The codec's scan position is
/// an index into the buffer's contents, which the copy keeps where they were.
fn shrink(buffer: &mut BytesMut) {
    if buffer.capacity() > KEPT_READ_BUFFER && buffer.len() <= KEPT_READ_BUFFER / 2 {
        let mut small = BytesMut::with_capacity(buffer.len().max(INITIAL_READ_BUFFER));
        small.extend_from_slice(buffer);
        *buffer = small;
    }
}

/// What a fresh buffer starts with (tokio-util's own initial capacity).
const INITIAL_READ_BUFFER: usize = 8 * 1024;

/// Write `line` and its newline: one vectored write in the common case, never a copy of the
/// line (results can be many MiB), and correct when the writer takes only part of it.
pub async fn write_line<W>(writer: &mut W, line: &Line) -> io::Result<()>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    let bytes = line.as_bytes();
    let mut written = 0;
    while written < bytes.len() {
        let slices = [IoSlice::new(&bytes[written..]), IoSlice::new(b"\n")];
        let n = writer.write_vectored(&slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        written += n;
    }
    // `written` may have run one past the line: the newline went with the last write.
    if written == bytes.len() {
        writer.write_all(b"\n").await?;
    }
    writer.flush().await
}

/// Our hello for a daemon: role `role`, this process's pid, `host_pid` (a session's host),
/// `label` for logs and `shoal status`, and whether the daemon is to send routed frames (only if
/// its hello offered them); no custody (a session that hands over its stdin sets that).
pub fn client_hello(
    role: Role,
    label: &str,
    host_pid: Option<u32>,
    env_differs: Vec<String>,
    routed_frames: bool,
) -> ClientHello {
    ClientHello {
        role,
        pid: std::process::id(),
        host_pid,
        label: label.to_owned(),
        env_differs,
        routed_frames,
        custody: false,
    }
}

/// Answer a daemon's hello with ours ([`client_hello`]), after the caller read and checked the
/// daemon's.
pub async fn send_hello<W>(
    writer: &mut W,
    role: Role,
    label: &str,
    host_pid: Option<u32>,
    env_differs: Vec<String>,
    routed_frames: bool,
) -> io::Result<()>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    let hello = client_hello(role, label, host_pid, env_differs, routed_frames);
    write_line(writer, &hello.to_line()).await
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::*;

    /// Accepts at most `step` bytes per write, vectored or not.
    struct Trickle {
        written: Vec<u8>,
        step: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.step);
            self.written.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let mut left = self.step;
            let mut n = 0;
            for buf in bufs {
                let take = buf.len().min(left);
                self.written.extend_from_slice(&buf[..take]);
                left -= take;
                n += take;
            }
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_reader_gives_back_the_buffer_of_a_large_line() {
        let mut input = vec![b'x'; 1 << 20];
        input.extend_from_slice(b"\n{\"small\":1}\n{\"partial");
        let mut reader = FramedRead::new(&input[..], LineCodec::new());
        let first = next_line(&mut reader).await.unwrap().unwrap().unwrap();
        assert_eq!(first.len(), 1 << 20);
        assert!(
            reader.read_buffer().capacity() <= KEPT_READ_BUFFER,
            "kept {} bytes",
            reader.read_buffer().capacity()
        );
        let second = next_line(&mut reader).await.unwrap().unwrap().unwrap();
        assert_eq!(second.as_bytes(), b"{\"small\":1}");
        // The partial last line survived the copy, and comes out at EOF as the codec does it.
        assert_eq!(reader.read_buffer().as_ref(), b"{\"partial");
        let last = next_line(&mut reader).await.unwrap().unwrap().unwrap();
        assert_eq!(last.as_bytes(), b"{\"partial");
        assert!(next_line(&mut reader).await.is_none());
    }

    #[tokio::test]
    async fn writes_the_line_and_one_newline_whatever_the_writer_takes() {
        let line = Line::new(&b"{\"id\":1,\"result\":\"abcdef\"}"[..]).unwrap();
        for step in [1, 2, 5, 26, 27, 28, 1000] {
            let mut writer = Trickle {
                written: Vec::new(),
                step,
            };
            write_line(&mut writer, &line).await.unwrap();
            let mut expected = line.as_bytes().to_vec();
            expected.push(b'\n');
            assert_eq!(writer.written, expected, "{step} bytes per write");
        }
    }
}
