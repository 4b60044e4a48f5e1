//! Routing between client sessions and the one shared backend; `docs/routing.md` is the user's
//! view of these rules.
//!
//! The router does no I/O: each input (a line from a client or the backend, a client joining or
//! leaving, the backend starting or going, a timer) becomes [`Outputs`], so the hub stays the only
//! place that touches queues, and every rule is tested against the router alone (`tests.rs`:
//! messages in, messages out). Invariants, and the file that keeps each:
//!
//! - a backend's first message is the daemon's `server/discover` probe, which settles its era
//!   (`stateless.rs`); a handshake-era backend then sees exactly one `initialize` per process, the
//!   daemon's own, and clients' are answered from its result with a protocol version negotiated
//!   per client (`handshake.rs`); a 2026-07-28 backend sees nothing else of the daemon's own but
//!   the `subscriptions/listen` streams it opens for handshake-era clients (`subscriptions.rs`),
//!   and those clients' requests reach it carrying their own `_meta` (`stateless.rs`,
//!   `rounds.rs`);
//! - every client request reaches the backend under a daemon-unique id (and progress token), and
//!   its answer and progress return to that client only, with the client's own id and token, byte
//!   for byte (`dispatch.rs`: `Router::forward` rewrites, `Router::backend_answer` restores; the
//!   table of requests at the backend is `in_flight.rs`);
//! - every client request gets exactly one answer: from the backend, locally, or an error when the
//!   backend is lost or the daemon stops; a cancelled request may go unanswered, as JSON-RPC allows
//!   (`dispatch.rs`: `Router::reply` is the one exit; held requests: `pending.rs`);
//! - every server-to-client request gets exactly one answer at the backend: locally (`ping`,
//!   `roots/list`, a task-augmented request's `CreateTaskResult` and the `tasks/*` about it:
//!   `client_tasks.rs`), from the one client it was routed to, or an error when no client can
//!   answer or the chosen one leaves (`server_requests.rs`; the table of requests out at clients
//!   is `asked.rs`);
//! - nothing addressed to one client (answers, progress, routed requests, subscribed updates,
//!   task status) reaches another (`notifications.rs`, `subscriptions.rs`, `tasks.rs`);
//! - the backend never sees an array (`batch.rs`).

mod asked;
mod batch;
mod client_tasks;
mod dispatch;
mod elicitations;
mod handshake;
mod in_flight;
mod levels;
mod lists;
mod notifications;
mod pending;
mod rounds;
mod server_requests;
mod stateless;
mod subscriptions;
mod tasks;

pub(crate) use dispatch::{ClientId, Outputs, Router, Signal};

#[cfg(test)]
mod tests;
