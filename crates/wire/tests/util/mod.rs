//! Helpers shared by the integration tests.

// Each test crate includes this module and uses a different subset of it.
#![allow(dead_code, reason = "each test crate uses a subset of the helpers")]

use shoal_wire::{Envelope, Line, Validation};

/// A line from test text; panics on a newline (a test bug).
pub(crate) fn line(text: &str) -> Line {
    Line::new(text.to_owned()).expect("test lines have no newline")
}

/// Parse `text` with `validation`.
pub(crate) fn parse(text: &str, validation: Validation) -> Envelope {
    Envelope::parse(line(text), validation)
}

/// The bytes of a line as text.
pub(crate) fn text(line: &Line) -> String {
    String::from_utf8(line.as_bytes().to_vec()).expect("lines are UTF-8")
}
