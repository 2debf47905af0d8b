//! # Between two steps
//!
//! A plan is undone when one of its steps fails. Two other things can end
//! it between two steps, and must leave as little behind:
//!
//! * a Ctrl-C (SIGINT), a SIGTERM or a hang-up. While `overlay-stack`
//!   executes a plan it holds these blocked ([`hold`]); after each step it
//!   looks whether one came, and if so the executor undoes what the plan
//!   made, and the binary then ends by that signal, as a shell expects of
//!   a program it interrupted. The step under way finishes first: a whole
//!   `mount(2)` can be undone, half of one could not.
//! * a fault a test injects ([`steps::fault`]): `fail@N` fails as if step
//!   N had, `kill@N` ends the tool with SIGKILL (nothing is undone: no
//!   program survives that), `int@N` sends it SIGINT.
//!
//! `mount`'s plan and the rootfs build also run inside mini-run, which
//! holds its signals itself. There [`hold`] is never called, so no signal
//! of mini-run's is taken here, and an unnamed fault (`fail@N`) counts
//! mini-run's steps, not these. See
//! [signal(7)](https://man7.org/linux/man-pages/man7/signal.7.html).

use std::sync::OnceLock;

use nix::sys::signal::Signal;
use steps::Error;
use steps::fault;
use steps::process::Supervision;

/// The signals held, once the binary asked for it.
static HELD: OnceLock<Supervision> = OnceLock::new();
/// The signal that stopped a plan.
static STOPPED_BY: OnceLock<Signal> = OnceLock::new();

/// Holds SIGINT, SIGTERM and SIGHUP blocked for the rest of the process,
/// so that they wait for the end of the step under way. For the binary,
/// just before it executes a plan.
pub fn hold() -> Result<(), Error> {
    if HELD.get().is_none() {
        let held = Supervision::start()
            .map_err(|e| Error::sys("sigprocmask(SIG_BLOCK, SIGINT|SIGTERM|SIGHUP)", e))?;
        let _ = HELD.set(held);
    }
    Ok(())
}

/// After step `number` (from 1) of a plan: an error if a fault asks for a
/// failure there, or a held signal came; the executor then undoes.
pub(crate) fn after_step(number: usize) -> Result<(), Error> {
    match fault::between("overlay-stack", number, HELD.get())? {
        Some(signal) => {
            let _ = STOPPED_BY.set(signal);
            Err(Error::setup(format!(
                "stopped by {} after step {number}; what the plan had made is undone",
                signal.as_str()
            )))
        }
        None => Ok(()),
    }
}

/// The signal the binary is to end by: the one that stopped its plan, or
/// one that came after the plan's last step was checked.
pub fn stopping_signal() -> Option<Signal> {
    if let Some(signal) = STOPPED_BY.get() {
        return Some(*signal);
    }
    HELD.get()?.take_pending().ok().flatten()
}
