//! The parent-death watchdog: notices that the MCP host which spawned the proxy is gone, even when it
//! was SIGKILLed and closed nothing itself, so that the proxy exits and the daemon's client count
//! drops (`docs/design/lifecycle.md`, "The proxy's life"; scenario 19 of `docs/scenarios.md`: host
//! SIGKILLed → proxy gone within 1 s).
//!
//! # Layers
//!
//! Whichever layer notices first wins; each covers a hole in the others.
//!
//! 1. **stdin EOF**, the primary signal, belongs to the piping code, not to this module. It is not
//!    enough alone: a host that leaked its end of our stdin pipe into a process that outlives it
//!    (a grandchild spawned without close-on-exec) keeps the pipe open after its own death.
//! 2. **`PR_SET_PDEATHSIG`** (Linux): the kernel sends the proxy SIGTERM as soon as its parent exits.
//!    It costs nothing while waiting and works before the async runtime exists. Why SIGTERM, and its
//!    per-thread quirk, are below.
//! 3. **pidfd** (Linux ≥ 5.3): `pidfd_open(original parent)`, awaited through tokio's `AsyncFd`. It
//!    becomes readable once the host has exited, reaped or not (a zombie host is common where pid 1
//!    does not reap, as in many containers). Where the kernel or a seccomp sandbox refuses it
//!    (`ENOSYS`, `EPERM`), the watchdog polls instead.
//! 4. **`getppid()` polling** every 250 ms (`POLL_INTERVAL`): the universal fallback, and the only
//!    layer besides stdin EOF on macOS. It compares with the *original* parent, never with 1: an
//!    orphan is reparented to the nearest subreaper (`systemd --user`, a container shim, `tini`, a
//!    test runner), whose pid is rarely 1.
//!
//! # The arming race
//!
//! The host may die at any instant, including before the watchdog is armed: `PR_SET_PDEATHSIG` only
//! reports deaths *after* the `prctl`, and a pid recorded before a death may have been reused by the
//! time it is opened as a pidfd. [`arm_parent_death_signal`] therefore runs, in this order:
//!
//! 1. Record `original = getppid()`.
//! 2. `prctl(PR_SET_PDEATHSIG, SIGTERM)`: from here on, the host's death is signalled.
//! 3. `pidfd_open(original)`.
//! 4. `getppid()` again. If it differs from `original`, the host died before step 2 or 3, and the
//!    watch reports [`ParentGone::AtArming`] at once. If it still matches, the host was still our
//!    parent after step 3, so the pidfd names the host and not a process that reused its pid: a pid is
//!    not reused while its process exists, and an exiting parent reparents its children before it
//!    becomes a zombie that anyone could reap.
//!
//! No pid comparison can see a host that died before step 1, because `getppid()` then already names
//! the reaper. Only stdin EOF covers that, which is why `main` arms before doing anything else.
//!
//! # Why SIGTERM
//!
//! - Until the proxy installs a handler for it, SIGTERM's default action ends the process, so the
//!   layer works from the first line of `main`, before the runtime exists, as SIGKILL would.
//! - Once the proxy's signal handling catches it (through tokio), the proxy can run its bounded drain
//!   (close the daemon connection cleanly, log why) instead of vanishing mid-write.
//! - It can be checked. `PR_SET_PDEATHSIG` fires when the parent *thread* exits, not the parent
//!   process: a host that spawned the proxy from a worker thread (a thread pool, a Go runtime thread)
//!   that later exits triggers it while the host lives on, and the proxy is quietly handed to another
//!   thread of the host. A SIGTERM handler can ask [`ParentWatch::parent_is_gone`]; but it cannot
//!   tell that quirk from a host asking its server to stop with SIGTERM, which it must obey. So the
//!   proxy switches the death signal off ([`ParentWatch::disarm_death_signal`]) once its event loop
//!   handles SIGTERM and awaits [`ParentWatch::parent_gone`]: the signal covers only the start-up,
//!   and afterwards the pidfd and polling layers, which watch the process and have no such quirk,
//!   see the host's death.
//! - Not SIGHUP: a host started under `nohup` hands an ignored SIGHUP down through `exec`, which
//!   would disable the layer until a handler exists; and SIGHUP already means "terminal hung up".
//!
//! `PR_SET_PDEATHSIG` is cleared in the child of a `fork`, so a daemon the proxy spawns does not die
//! with the proxy's host.

mod sys;

#[cfg(target_os = "linux")]
use std::io;
#[cfg(target_os = "linux")]
use std::os::fd::OwnedFd;
use std::time::Duration;

#[cfg(target_os = "linux")]
use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// Which layer noticed that the host is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParentGone {
    /// The host was already gone when the watchdog was armed: `getppid()` no longer named the
    /// original parent right after the death signal was armed.
    AtArming,
    /// The pidfd on the original parent became readable: the host exited (Linux ≥ 5.3).
    Pidfd,
    /// `getppid()` polling saw the proxy reparented, to init or to a subreaper.
    Polling,
}

/// Which layers [`arm_parent_death_signal_with`] arms: all of them by default.
///
/// Only for tests, which switch layers off to show that each one works on its own.
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub struct WatchdogConfig {
    /// Arm `PR_SET_PDEATHSIG` (Linux only).
    pub death_signal: bool,
    /// Open a pidfd on the parent (Linux only).
    pub pidfd: bool,
    /// Poll `getppid()` when there is no pidfd.
    pub polling: bool,
    /// Take this as the original parent instead of asking `getppid()`, which lets a test put the host's
    /// death between step 1 of the arming race and the others.
    pub original_parent: Option<Pid>,
}

impl Default for WatchdogConfig {
    fn default() -> WatchdogConfig {
        WatchdogConfig {
            death_signal: true,
            pidfd: true,
            polling: true,
            original_parent: None,
        }
    }
}

/// The armed watchdog: the host's pid as recorded at start-up, and the layers watching it.
///
/// Made by [`arm_parent_death_signal`]; the proxy awaits [`ParentWatch::parent_gone`].
#[derive(Debug)]
pub struct ParentWatch {
    original_parent: Pid,
    gone_at_arming: bool,
    #[cfg(target_os = "linux")]
    death_signal: Result<(), Unarmed>,
    #[cfg(target_os = "linux")]
    pidfd: Result<OwnedFd, Unarmed>,
    polling: bool,
}

/// Arm the parent-death watchdog. `main` calls this first thing on the proxy's path, before the
/// runtime, logging or full argument parsing (a glance at argv to know it is `shoal proxy` is all
/// that should come first), because a host that dies before this call is seen only as stdin EOF.
/// Never on the daemon's path: a daemon that armed it would die with the proxy that spawned it.
///
/// On Linux this sets `PR_SET_PDEATHSIG` to SIGTERM: from now on the host's death ends the proxy by
/// SIGTERM's default action, until the proxy's signal handling installs a handler for SIGTERM and
/// calls [`ParentWatch::disarm_death_signal`] (the signal also fires when merely the host thread that
/// spawned the proxy exits). It also opens a pidfd on the host where the kernel allows.
///
/// Never fails: a layer the OS refuses is left out, and [`ParentWatch::parent_gone`] falls back to
/// polling. The returned watch knows whether the host was already gone
/// ([`ParentWatch::gone_at_arming`]).
pub fn arm_parent_death_signal() -> ParentWatch {
    arm_parent_death_signal_with(WatchdogConfig::default())
}

/// [`arm_parent_death_signal`] with some layers switched off, for tests.
#[doc(hidden)]
pub fn arm_parent_death_signal_with(config: WatchdogConfig) -> ParentWatch {
    // The numbered steps are those of "The arming race" in the module docs.
    // 1.
    let original_parent = config.original_parent.unwrap_or_else(sys::parent_pid);
    // 2.
    #[cfg(target_os = "linux")]
    let death_signal = if config.death_signal {
        sys::set_parent_death_signal(PARENT_DEATH_SIGNAL).map_err(Unarmed::Failed)
    } else {
        Err(Unarmed::Disabled)
    };
    // 3.
    #[cfg(target_os = "linux")]
    let pidfd = if config.pidfd {
        sys::pidfd_open(original_parent).map_err(Unarmed::Failed)
    } else {
        Err(Unarmed::Disabled)
    };
    // 4.
    let gone_at_arming = sys::parent_pid() != original_parent;
    ParentWatch {
        original_parent,
        gone_at_arming,
        #[cfg(target_os = "linux")]
        death_signal,
        #[cfg(target_os = "linux")]
        pidfd,
        polling: config.polling,
    }
}

impl ParentWatch {
    /// The host's pid, as `getppid()` gave it when the watchdog was armed.
    ///
    /// 0 means the host is outside the proxy's PID namespace: then only the death signal, stdin EOF,
    /// and polling (once the proxy is reparented inside the namespace) can see its death.
    pub fn original_parent(&self) -> Pid {
        self.original_parent
    }

    /// Whether the host was already gone when the watchdog was armed; if so,
    /// [`parent_gone`](ParentWatch::parent_gone) returns [`ParentGone::AtArming`] at once.
    pub fn gone_at_arming(&self) -> bool {
        self.gone_at_arming
    }

    /// Whether the host is gone now: the proxy's parent is no longer the original one.
    ///
    /// One `getppid()`, cheap enough for a signal handler's task to call on every SIGTERM to tell the
    /// host's death from a host thread's exit or an ordinary `kill`.
    pub fn parent_is_gone(&self) -> bool {
        sys::parent_pid() != self.original_parent
    }

    /// Resolves once the host is gone, saying which layer noticed: the pidfd where the kernel gave
    /// one, else `getppid()` polling. Never resolves while the host lives.
    ///
    /// Needs a tokio runtime with IO and time enabled. Cancel-safe, and may be called again: it
    /// keeps no state between calls. In a `select!` loop, pin one call outside the loop rather than
    /// making a new one each turn, which would duplicate the pidfd and log the layers each time.
    ///
    /// The death signal is not awaited here: it is SIGTERM, which the proxy's signal handling owns
    /// (see [`arm_parent_death_signal`]).
    pub async fn parent_gone(&self) -> ParentGone {
        if self.gone_at_arming {
            return ParentGone::AtArming;
        }
        tracing::debug!(watch = ?self, "watching the host");
        #[cfg(target_os = "linux")]
        if let Ok(pidfd) = &self.pidfd {
            match sys::wait_for_exit(pidfd).await {
                Ok(()) => return ParentGone::Pidfd,
                Err(error) => {
                    tracing::debug!(%error, "cannot wait on the host's pidfd; polling getppid() instead");
                }
            }
        }
        if self.polling {
            self.poll().await
        } else {
            // Only a test's WatchdogConfig gets here: it watches another layer on its own.
            std::future::pending().await
        }
    }

    /// Switch the death signal off (Linux; a no-op elsewhere), once the proxy's event loop awaits
    /// [`parent_gone`](ParentWatch::parent_gone) and handles SIGTERM itself.
    ///
    /// The death signal only has to cover the start-up, before the pidfd or the polling is awaited.
    /// After that it does more harm than good: it also fires when the host *thread* that spawned
    /// the proxy exits while the host lives on, and the proxy cannot tell that SIGTERM from a host
    /// (or a user) asking it to stop. With the signal off, SIGTERM always means "stop", and the
    /// host's death is seen by the pidfd or polling layers, which watch the process, not a thread.
    pub fn disarm_death_signal(&self) {
        #[cfg(target_os = "linux")]
        if self.death_signal.is_ok()
            && let Err(error) = sys::clear_parent_death_signal()
        {
            tracing::debug!(%error, "could not clear the parent-death signal");
        }
    }

    /// The polling layer: resolves once `getppid()` differs from the original parent.
    async fn poll(&self) -> ParentGone {
        let mut interval = tokio::time::interval(POLL_INTERVAL);
        // After a suspend or a stall, one check is enough; a burst of catch-up ticks buys nothing.
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // The first tick is immediate, which also covers a death between arming and this call.
            interval.tick().await;
            if self.parent_is_gone() {
                return ParentGone::Polling;
            }
        }
    }
}

/// The parent-death signal. Why SIGTERM and not SIGKILL or SIGHUP: see the module docs.
#[cfg(target_os = "linux")]
const PARENT_DEATH_SIGNAL: Signal = Signal::SIGTERM;

/// How often the polling layer asks `getppid()`.
///
/// 250 ms: a death is seen within 250 ms plus scheduling, leaving at least 750 ms of the 1 s budget
/// (scenario 19) for the proxy's drain, while four wake-ups a second of one cheap system call
/// each cost nothing measurable even with dozens of proxies. It only runs where there is no pidfd
/// (macOS, kernels before 5.3, sandboxes that forbid `pidfd_open`).
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Why a layer is not armed; kept so that [`ParentWatch::parent_gone`] can log it once logging is
/// set up (arming runs before that).
#[cfg(target_os = "linux")]
#[derive(Debug)]
enum Unarmed {
    /// Switched off by a test's [`WatchdogConfig`].
    Disabled,
    /// The OS refused: `ENOSYS` or `EPERM` from a kernel or sandbox without pidfds, `ESRCH` or
    /// `EINVAL` for a parent that is already gone or outside our PID namespace.
    Failed(#[expect(dead_code, reason = "only read through Debug, for the log line")] io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Arm in this test process, with the death signal off (it would outlive the test and fire
    /// when whichever thread of cargo spawned us exits), and with `original_parent` as given.
    /// Then check `gone_at_arming` and what `parent_gone` says within a short bound (`None`: still
    /// pending, as it must be while the parent lives).
    fn check(original_parent: Option<Pid>, pidfd: bool, expected: Option<ParentGone>) {
        let watch = arm_parent_death_signal_with(WatchdogConfig {
            death_signal: false,
            pidfd,
            polling: true,
            original_parent,
        });
        assert_eq!(
            watch.gone_at_arming(),
            expected == Some(ParentGone::AtArming)
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let outcome = runtime.block_on(async {
            // A bound, not a synchronisation: long enough for the first poll and a pidfd check.
            tokio::time::timeout(Duration::from_millis(50), watch.parent_gone())
                .await
                .ok()
        });
        assert_eq!(outcome, expected, "{watch:?}");
    }

    #[test]
    fn a_live_parent_is_not_gone() {
        check(None, true, None);
        check(None, false, None);
    }

    #[test]
    fn a_parent_that_is_not_ours_was_gone_at_arming() {
        // Our own pid is certainly not our parent, and is alive, so a pidfd opens on it.
        let not_our_parent = Pid::this();
        check(Some(not_our_parent), true, Some(ParentGone::AtArming));
        check(Some(not_our_parent), false, Some(ParentGone::AtArming));
    }
}
