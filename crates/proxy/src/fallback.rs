//! The fallback: when shoal cannot share the server here, become the server.
//!
//! `execvp` replaces the proxy with the server, so the server is the host's child with the host's
//! stdin, stdout and stderr, exactly as if the host had started it itself. Nothing may have read
//! stdin before (the proxy reads it only once a daemon answered), or the host's first messages
//! would be lost.

use std::ffi::{CString, OsString};
use std::io;
use std::os::unix::ffi::OsStringExt as _;

/// Replace this process with `argv[0] argv[1..]` (searched in `PATH`), with the signal state a
/// freshly started process expects. Returns only if that failed.
///
/// Call it only before [`run`](crate::run) has read stdin, i.e. on
/// [`Error::Start`](crate::Error::Start), and with the [`ParentWatch`](crate::ParentWatch) still
/// armed or dropped: the death signal is cleared here, as the host would not have set one.
pub fn exec_directly(argv: &[OsString]) -> io::Error {
    use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, sigprocmask};
    let Some(program) = argv.first() else {
        return io::Error::new(io::ErrorKind::InvalidInput, "no command to run");
    };
    let to_c = |arg: &OsString| CString::new(arg.clone().into_vec());
    let program = match to_c(program) {
        Ok(program) => program,
        Err(error) => return io::Error::new(io::ErrorKind::InvalidInput, error),
    };
    let args: Result<Vec<CString>, _> = argv.iter().map(to_c).collect();
    let args = match args {
        Ok(args) => args,
        Err(error) => return io::Error::new(io::ErrorKind::InvalidInput, error),
    };
    // The Rust runtime ignores SIGPIPE, and an ignored signal stays ignored across exec: a server
    // started by a host would have the default (die on a broken pipe). Handlers installed by tokio
    // are reset by exec itself; the mask is not.
    // SAFETY: setting the default disposition installs no handler of ours.
    let _ = unsafe { nix::sys::signal::signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_pdeathsig(None);
    match nix::unistd::execvp(&program, &args) {
        Err(errno) => io::Error::from(errno),
        // execvp returns only on failure.
        Ok(never) => match never {},
    }
}
