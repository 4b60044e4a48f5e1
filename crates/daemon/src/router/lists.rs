//! `list_changed`: bursts coalesced, and after a backend restart announced only if a list changed.
//!
//! Coalescing: the first `notifications/<kind>/list_changed` of a burst goes out at once and opens
//! a short window; more of the same kind inside the window are folded into one more notification at
//! its end. A client therefore re-lists at most twice per window, and never misses the last change.
//!
//! Restarts: after every `initialize` the daemon lists each kind the backend offers (following
//! cursors) and keeps a fingerprint. After a restart it compares the new backend's lists with the
//! old one's and tells clients only about the kinds that differ, or that it cannot tell about (the
//! old lists were never fingerprinted, a listing failed, or a change was announced since).
//!
//! A change announced while a listing is under way may or may not be in it, so the listing starts
//! over (a few times at most; then the kind counts as "cannot tell"). Servers announce every list
//! right after `initialized`, so this is the common case, not a corner.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;
use std::time::{Duration, Instant};

/// A list with a `list_changed` notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ListKind {
    Tools,
    Resources,
    Prompts,
}

impl ListKind {
    pub(crate) const ALL: [ListKind; 3] = [ListKind::Tools, ListKind::Resources, ListKind::Prompts];

    pub(crate) fn from_notification(method: &str) -> Option<ListKind> {
        ListKind::ALL
            .into_iter()
            .find(|kind| kind.notification() == method)
    }

    pub(crate) fn notification(self) -> &'static str {
        match self {
            ListKind::Tools => "notifications/tools/list_changed",
            ListKind::Resources => "notifications/resources/list_changed",
            ListKind::Prompts => "notifications/prompts/list_changed",
        }
    }

    pub(crate) fn list_method(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/list",
            ListKind::Resources => "resources/list",
            ListKind::Prompts => "prompts/list",
        }
    }

    /// The server capability that offers this list.
    pub(crate) fn capability(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Resources => "resources",
            ListKind::Prompts => "prompts",
        }
    }
}

/// How long a burst of one kind is folded into one trailing notification.
pub(crate) const COALESCE_WINDOW: Duration = Duration::from_millis(100);

/// A fingerprinting listing follows at most this many pages: a server whose cursor never ends must
/// not keep the daemon listing forever (the kind is then treated as "cannot tell").
pub(crate) const MAX_PAGES: u32 = 64;

/// How many times a listing starts over because of changes announced during it.
const MAX_ATTEMPTS: u32 = 4;

#[derive(Debug)]
struct Hold {
    until: Instant,
    again: bool,
}

#[derive(Debug)]
struct Check {
    hasher: DefaultHasher,
    pages: u32,
    /// After a restart: announce the kind if its fingerprint differs, and absorb the backend's own
    /// `list_changed` of it meanwhile (servers announce every list right after `initialized`).
    announce: bool,
    /// A change was announced while listing: the fingerprint may predate it.
    stale: bool,
    attempts: u32,
}

/// What a page of a fingerprinting listing leads to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CheckStep {
    /// Ask for the next page with this cursor.
    NextPage,
    /// Start over from the first page: the list changed while it was being read.
    Again,
    /// Done; `true` if clients must be told the list changed.
    Done(bool),
}

#[derive(Debug, Default)]
pub(crate) struct Lists {
    holds: HashMap<ListKind, Hold>,
    fingerprints: HashMap<ListKind, u64>,
    checks: HashMap<ListKind, Check>,
}

impl Lists {
    /// The backend announced a change. Returns whether to broadcast it now.
    pub(crate) fn backend_changed(&mut self, kind: ListKind, now: Instant) -> bool {
        if let Some(check) = self.checks.get_mut(&kind) {
            check.stale = true;
            if check.announce {
                // The check's comparison with the old backend's list decides.
                return false;
            }
        }
        self.fingerprints.remove(&kind);
        self.coalesce(kind, now)
    }

    /// Whether to broadcast a change of `kind` now (else it is folded into the window's end).
    pub(crate) fn coalesce(&mut self, kind: ListKind, now: Instant) -> bool {
        match self.holds.get_mut(&kind) {
            Some(hold) => {
                hold.again = true;
                false
            }
            None => {
                self.holds.insert(
                    kind,
                    Hold {
                        until: now + COALESCE_WINDOW,
                        again: false,
                    },
                );
                true
            }
        }
    }

    /// When [`Lists::expired`] next has something to do.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.holds.values().map(|hold| hold.until).min()
    }

    /// Kinds whose window ended with changes folded into it: broadcast each once more.
    pub(crate) fn expired(&mut self, now: Instant) -> Vec<ListKind> {
        let mut due = Vec::new();
        self.holds.retain(|&kind, hold| {
            if hold.until > now {
                return true;
            }
            if hold.again {
                due.push(kind);
                hold.again = false;
                hold.until = now + COALESCE_WINDOW;
                true
            } else {
                false
            }
        });
        due
    }

    /// A new backend is initialized: start fingerprinting `kind`.
    pub(crate) fn start_check(&mut self, kind: ListKind, after_restart: bool) {
        self.checks.insert(
            kind,
            Check {
                hasher: DefaultHasher::new(),
                pages: 0,
                announce: after_restart,
                stale: false,
                attempts: 1,
            },
        );
    }

    /// One page of a fingerprinting listing: the raw `result` (without its `nextCursor`, which
    /// the caller follows), or `None` if the listing failed.
    pub(crate) fn check_page(
        &mut self,
        kind: ListKind,
        page: Option<&[u8]>,
        more: bool,
    ) -> CheckStep {
        let Some(check) = self.checks.get_mut(&kind) else {
            return CheckStep::Done(false);
        };
        if let Some(page) = page {
            check.hasher.write(page);
            check.pages += 1;
            if more && check.pages < MAX_PAGES {
                return CheckStep::NextPage;
            }
            if check.stale && check.attempts < MAX_ATTEMPTS {
                check.hasher = DefaultHasher::new();
                check.pages = 0;
                check.stale = false;
                check.attempts += 1;
                return CheckStep::Again;
            }
        }
        let Some(check) = self.checks.remove(&kind) else {
            return CheckStep::Done(false);
        };
        let fingerprint = (page.is_some() && !more && !check.stale).then(|| check.hasher.finish());
        let previous = self.fingerprints.remove(&kind);
        if let Some(fingerprint) = fingerprint {
            self.fingerprints.insert(kind, fingerprint);
        }
        CheckStep::Done(
            check.announce
                && (fingerprint.is_none() || previous.is_none() || previous != fingerprint),
        )
    }

    /// Whether no listing is under way.
    pub(crate) fn settled(&self) -> bool {
        self.checks.is_empty()
    }

    /// The backend is gone: its listings will never finish.
    pub(crate) fn backend_lost(&mut self) {
        self.checks.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_becomes_one_now_and_one_at_the_end() {
        let mut lists = Lists::default();
        let start = Instant::now();
        assert!(lists.backend_changed(ListKind::Tools, start));
        assert!(!lists.backend_changed(ListKind::Tools, start));
        assert!(!lists.backend_changed(ListKind::Tools, start));
        assert!(
            lists.backend_changed(ListKind::Prompts, start),
            "kinds are independent"
        );
        assert!(lists.expired(start).is_empty());
        let end = lists.deadline().unwrap();
        assert_eq!(lists.expired(end), [ListKind::Tools]);
        // The trailing notification opened a new window, which ends quietly.
        let end = lists.deadline().unwrap();
        assert!(lists.expired(end).is_empty());
        assert_eq!(lists.deadline(), None);
    }

    #[test]
    fn after_a_restart_only_changed_lists_are_announced() {
        let mut lists = Lists::default();
        for kind in ListKind::ALL {
            lists.start_check(kind, false);
        }
        assert_eq!(
            lists.check_page(ListKind::Tools, Some(b"[a]"), true),
            CheckStep::NextPage
        );
        assert_eq!(
            lists.check_page(ListKind::Tools, Some(b"[b]"), false),
            CheckStep::Done(false)
        );
        assert_eq!(
            lists.check_page(ListKind::Prompts, Some(b"[p]"), false),
            CheckStep::Done(false)
        );
        assert_eq!(
            lists.check_page(ListKind::Resources, None, false),
            CheckStep::Done(false)
        );

        for kind in ListKind::ALL {
            lists.start_check(kind, true);
        }
        assert!(
            !lists.backend_changed(ListKind::Tools, Instant::now()),
            "absorbed while checking"
        );
        assert_eq!(
            lists.check_page(ListKind::Tools, Some(b"[x]"), false),
            CheckStep::Again,
            "the listing may predate the change: start over"
        );
        lists.check_page(ListKind::Tools, Some(b"[a]"), true);
        assert_eq!(
            lists.check_page(ListKind::Tools, Some(b"[b]"), false),
            CheckStep::Done(false)
        );
        assert_eq!(
            lists.check_page(ListKind::Prompts, Some(b"[q]"), false),
            CheckStep::Done(true)
        );
        assert_eq!(
            lists.check_page(ListKind::Resources, Some(b"[r]"), false),
            CheckStep::Done(true),
            "never fingerprinted: cannot tell, so announce"
        );
    }
}
