//! The terminal `shoal status` prints to, if it prints to one.

use std::io::IsTerminal as _;

nix::ioctl_read_bad!(window_size, nix::libc::TIOCGWINSZ, nix::libc::winsize);

/// The width of the terminal on stdout: `None` when stdout is not a terminal (piped output is
/// never cut). `$COLUMNS` wins when set to a number; else the terminal's own size; else 80.
pub(crate) fn stdout_width() -> Option<usize> {
    let stdout = std::io::stdout();
    if !stdout.is_terminal() {
        return None;
    }
    if let Some(columns) = std::env::var("COLUMNS")
        .ok()
        .and_then(|columns| columns.trim().parse::<usize>().ok())
        .filter(|columns| *columns > 0)
    {
        return Some(columns);
    }
    let mut size = nix::libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which points at ours.
    let asked = unsafe { window_size(std::os::fd::AsRawFd::as_raw_fd(&stdout), &raw mut size) };
    Some(match asked {
        Ok(_) if size.ws_col > 0 => usize::from(size.ws_col),
        _ => 80,
    })
}
