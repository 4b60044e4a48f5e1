//! [`Readiness`]: the one line a starting daemon writes on its readiness pipe.
//!
//! The proxy that spawns a daemon creates a pipe *before* the spawn and hands the write end to the
//! daemon as its only inherited descriptor. The daemon writes exactly one line and closes it:
//! `ready` once it listens and its backend is starting, `held` when another daemon already serves
//! the key (the proxy connects to that one instead), or `error` with a reason a human can act on.
//! EOF without a line means the daemon died first; the proxy then shows the tail of `daemon.log`.
//!
//! Both ends always run the same shoal version (the version is part of the daemon key), but the
//! message is tagged like the control messages so that a garbled line is an error, not a guess.

use serde::{Deserialize, Serialize};

use crate::hello::{excerpt, to_line};
use crate::{Error, Line};

/// What a starting daemon reports on its readiness pipe.
///
/// ```
/// use shoal_wire::Readiness;
///
/// let ready = Readiness::Ready { pid: 4242, socket: "/run/user/1000/shoal/2c26b46b68ffc68f/daemon.sock".into() };
/// let line = ready.to_line();
/// assert_eq!(
///     line.as_bytes(),
///     br#"{"readiness":"ready","pid":4242,"socket":"/run/user/1000/shoal/2c26b46b68ffc68f/daemon.sock"}"#
/// );
/// assert_eq!(Readiness::parse(line.as_bytes())?, ready);
/// # Ok::<(), shoal_wire::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "readiness", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Readiness {
    /// The daemon listens on `socket`; its backend is starting or running.
    Ready {
        /// The daemon's process id (a client checks it against the socket's peer credentials).
        pid: u32,
        /// The socket path, as text.
        socket: String,
    },
    /// Another live daemon already serves this key; this one exits without touching it.
    Held {
        /// The live daemon's pid, when its lock record could be read.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pid: Option<u32>,
    },
    /// The daemon could not start; `reason` says what failed and, where possible, what to do.
    Error {
        /// A one-line explanation for a human.
        reason: String,
    },
}

impl Readiness {
    /// The message as a line.
    ///
    /// ```
    /// use shoal_wire::Readiness;
    ///
    /// assert_eq!(Readiness::Held { pid: Some(7) }.to_line().as_bytes(), br#"{"readiness":"held","pid":7}"#);
    /// ```
    pub fn to_line(&self) -> Line {
        to_line(self)
    }

    /// Parse a readiness line (without its newline).
    ///
    /// ```
    /// use shoal_wire::{Error, Readiness};
    ///
    /// let line = br#"{"readiness":"error","reason":"take the daemon lock: /tmp/x is a symlink"}"#;
    /// assert!(matches!(Readiness::parse(line)?, Readiness::Error { .. }));
    /// assert!(matches!(Readiness::parse(b"ok"), Err(Error::ReadinessMalformed { .. })));
    /// # Ok::<(), shoal_wire::Error>(())
    /// ```
    pub fn parse(line: &[u8]) -> Result<Readiness, Error> {
        serde_json::from_slice(line).map_err(|error| Error::ReadinessMalformed {
            detail: format!("{error}, in {}", excerpt(line)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(line: &str, expected: &str) {
        let rendered = match Readiness::parse(line.as_bytes()) {
            Ok(readiness) => format!("{readiness:?}"),
            Err(error) => format!("error: {error}"),
        };
        assert_eq!(rendered, expected);
    }

    #[test]
    fn parses_each_outcome_and_rejects_the_rest() {
        check(
            r#"{"readiness":"ready","pid":1,"socket":"/s"}"#,
            r#"Ready { pid: 1, socket: "/s" }"#,
        );
        check(r#"{"readiness":"held"}"#, "Held { pid: None }");
        check(
            r#"{"readiness":"error","reason":"no"}"#,
            r#"Error { reason: "no" }"#,
        );
        check(
            r#"{"readiness":"ready","pid":1}"#,
            r#"error: read the daemon's readiness message: missing field `socket`, in "{\"readiness\":\"ready\",\"pid\":1}""#,
        );
        check(
            "",
            r#"error: read the daemon's readiness message: EOF while parsing a value at line 1 column 0, in """#,
        );
    }
}
