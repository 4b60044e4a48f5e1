//! Which of this session's environment variables the shared server does not see.
//!
//! The server runs with the environment of the session whose proxy started the daemon; a later
//! session with another `DATABASE_URL` or token would silently get the first one's server. The
//! proxy compares its own environment with the daemon's (`/proc/<pid>/environ`: the daemon's
//! environment is the one its server got) right after the hellos, and names the variables it sets
//! otherwise: the proxy warns on stderr, and the names travel in the session hello so that the
//! daemon logs them once and `shoal status` shows them. Values never leave the proxy.
//!
//! Variables that differ between sessions without meaning anything to a server are not
//! compared: [`IGNORED`] and [`IGNORED_PREFIXES`] (terminal, shell, locale and login-session
//! state, the hosts' own variables, `PATH`, which hosts rewrite, and shoal's own). A variable the
//! server has and the session lacks is not reported either: hosts that pass servers only a few
//! variables (Codex CLI) would report the whole of the user's shell. Variables the server has
//! with another value come first in the report, before those it lacks: when the server was
//! started by such a host, the session's whole shell is "lacked", and the variable that matters
//! (another `DATABASE_URL`) must not be cut off by the bound.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt as _;

use shoal_wire::{ENV_NAME_MAX_LEN, ENV_NAMES_MAX};

/// Variables never compared, by exact name.
pub(crate) const IGNORED: &[&str] = &[
    "_",
    "COLORTERM",
    "COLUMNS",
    "DISPLAY",
    "GPG_TTY",
    "HISTFILE",
    "INFOPATH",
    "LINES",
    "LS_COLORS",
    "MANPATH",
    "OLDPWD",
    "PATH",
    "PROMPT_COMMAND",
    "PS1",
    "PWD",
    "SESSION_MANAGER",
    "SHLVL",
    "STY",
    "TERM",
    "TMUX",
    "TMUX_PANE",
    "WAYLAND_DISPLAY",
    "WINDOWID",
    "CLAUDECODE",
    "DBUS_SESSION_BUS_ADDRESS",
    "DESKTOP_SESSION",
    "EDITOR",
    "GIT_ASKPASS",
    "HISTCONTROL",
    "HISTSIZE",
    "HOSTNAME",
    "INVOCATION_ID",
    "JOURNAL_STREAM",
    "LANG",
    "LANGUAGE",
    "LESS",
    "LESSOPEN",
    "MAIL",
    "MANAGERPID",
    "PAGER",
    "SHELL",
    "SYSTEMD_EXEC_PID",
    "VISUAL",
    "VTE_VERSION",
    "WINDOWPATH",
    "WT_SESSION",
    "XAUTHORITY",
];

/// Variables never compared, by prefix.
pub(crate) const IGNORED_PREFIXES: &[&str] = &[
    "SHOAL_",
    "TERM_",
    "SSH_",
    "XDG_",
    "CLAUDE_CODE_",
    "CODEX_",
    "GEMINI_CLI",
    "VSCODE_",
    "CURSOR_",
    "OPENCODE",
    "npm_",
    "LC_",
    "ELECTRON_",
    "ITERM_",
    "KONSOLE_",
    "GNOME_",
    "KITTY_",
    "ALACRITTY_",
];

fn ignored(name: &OsStr) -> bool {
    let name = name.as_bytes();
    IGNORED.iter().any(|ignored| name == ignored.as_bytes())
        || IGNORED_PREFIXES
            .iter()
            .any(|prefix| name.starts_with(prefix.as_bytes()))
}

/// The names of `ours` that `server` (a `/proc/<pid>/environ` block: `NAME=VALUE` entries, each
/// ended by a NUL) holds with another value, sorted, then those it lacks, sorted; at most
/// [`ENV_NAMES_MAX`] in all. Names that are not UTF-8 or longer than [`ENV_NAME_MAX_LEN`] are
/// left out.
pub(crate) fn differing(
    ours: impl IntoIterator<Item = (OsString, OsString)>,
    server: &[u8],
) -> Vec<String> {
    let server: BTreeMap<&[u8], &[u8]> = server
        .split(|&byte| byte == 0)
        .filter_map(|entry| {
            // A name may not contain `=`; the first one ends it (an empty name is not a variable).
            let at = entry.iter().position(|&byte| byte == b'=')?;
            (at > 0).then(|| (&entry[..at], &entry[at + 1..]))
        })
        .collect();
    let mut changed = Vec::new();
    let mut lacked = Vec::new();
    for (name, value) in ours {
        if ignored(&name) {
            continue;
        }
        let theirs = server.get(name.as_bytes()).copied();
        if theirs == Some(value.as_bytes()) {
            continue;
        }
        let Ok(name) = name.into_string() else {
            continue;
        };
        if name.len() > ENV_NAME_MAX_LEN {
            continue;
        }
        if theirs.is_some() {
            changed.push(name);
        } else {
            lacked.push(name);
        }
    }
    for names in [&mut changed, &mut lacked] {
        names.sort_unstable();
        names.dedup();
    }
    changed.extend(lacked);
    changed.truncate(ENV_NAMES_MAX);
    changed
}

/// The variables this session sets otherwise than the process `pid` (the daemon); empty when its
/// environment cannot be read (another platform, or a daemon made undumpable).
pub(crate) fn differing_from(pid: u32) -> Vec<String> {
    match std::fs::read(format!("/proc/{pid}/environ")) {
        Ok(server) => differing(std::env::vars_os(), &server),
        Err(error) => {
            tracing::debug!(%error, pid, "cannot read the daemon's environment to compare");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(name, value)| (OsString::from(name), OsString::from(value)))
            .collect()
    }

    #[test]
    fn names_what_the_server_lacks_or_has_otherwise_never_noise() {
        let server =
            b"HOME=/home/me\0DATABASE_URL=postgres://a\0TOKEN=x=y\0PATH=/usr/bin\0ONLY_SERVER=1\0";
        let session = ours(&[
            ("HOME", "/home/me"),
            ("DATABASE_URL", "postgres://b"),
            ("TOKEN", "x=y"),
            ("API_KEY", "k"),
            ("PATH", "/opt/host/bin:/usr/bin"),
            ("PWD", "/elsewhere"),
            ("TERM_PROGRAM", "vscode"),
            ("SHOAL_LOG", "debug"),
            ("CLAUDE_CODE_ENTRYPOINT", "cli"),
        ]);
        assert_eq!(
            differing(session, server),
            ["DATABASE_URL", "API_KEY"],
            "another value first, then what the server lacks"
        );
        assert!(differing(ours(&[("HOME", "/home/me")]), server).is_empty());
    }

    #[test]
    fn bounded_and_robust_to_odd_blocks() {
        let many: Vec<(OsString, OsString)> = (0..40)
            .map(|n| (OsString::from(format!("V{n:02}")), OsString::from("1")))
            .chain([(OsString::from("L".repeat(65)), OsString::from("1"))])
            .collect();
        let names = differing(many, b"");
        assert_eq!(names.len(), ENV_NAMES_MAX);
        assert_eq!(names[0], "V00");
        // What matters is not cut off by a whole shell the server lacks.
        let shell: Vec<(OsString, OsString)> = (0..40)
            .map(|n| (OsString::from(format!("A{n:02}")), OsString::from("1")))
            .chain([(OsString::from("ZZ_URL"), OsString::from("b"))])
            .collect();
        assert_eq!(differing(shell, b"ZZ_URL=a\0")[0], "ZZ_URL");
        assert!(names.iter().all(|name| name.len() <= ENV_NAME_MAX_LEN));
        // No `=`, an empty name, a trailing entry without NUL: none panics or matches.
        assert_eq!(
            differing(ours(&[("A", "1"), ("B", "")]), b"junk\0=1\0B="),
            ["A"]
        );
    }

    #[test]
    fn reads_a_real_process_environment() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env_clear()
            .env("SHOAL_TEST_SHARED", "same")
            .env("SHOAL_TEST_X", "1")
            .env("HOME", "/nonexistent/home")
            .spawn()
            .unwrap();
        let server = std::fs::read(format!("/proc/{}/environ", child.id())).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        let names = differing(
            ours(&[("HOME", "/nonexistent/home"), ("MY_TOKEN", "t")]),
            &server,
        );
        assert_eq!(names, ["MY_TOKEN"]);
    }
}
