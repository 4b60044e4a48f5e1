//! The routing rules, input by input, without processes. End-to-end checks of every row against
//! the real daemon and fixture server are in `tests/routing.rs`.
