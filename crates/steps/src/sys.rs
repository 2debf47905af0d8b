//! The one room where `unsafe` lives. Everything else in the workspace is
//! denied `unsafe_code`; what needs it comes here, small and commented.
#![allow(unsafe_code)]

use nix::errno::Errno;
use nix::sys::signal::{SigHandler, Signal};
use nix::unistd::Pid;

/// Which side of a `fork()` this process is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fork {
    Parent { child: Pid },
    Child,
}

/// `fork()`.
///
/// The underhood binaries are single-threaded when they fork, so the child
/// may run any code, not only async-signal-safe functions.
pub fn fork() -> Result<Fork, Errno> {
    // SAFETY: our binaries never start threads before forking, so no lock can
    // be held by a thread that does not exist in the child.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => Ok(Fork::Parent { child }),
        nix::unistd::ForkResult::Child => Ok(Fork::Child),
    }
}

/// Restore a signal's default action, so that a process can end itself with
/// the same signal that ended its child.
pub fn reset_signal(signal: Signal) -> Result<(), Errno> {
    // SAFETY: SIG_DFL installs no handler code, so nothing can run in signal
    // context.
    unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) }.map(drop)
}

/// Rust starts every program with SIGPIPE ignored. Put it back to the
/// default: a binary writing into a closed pipe then ends quietly like any
/// Unix tool, and — what matters more — the programs ns-unshare and friends
/// exec do not inherit an ignored SIGPIPE (`yes | head` must still end).
pub fn restore_sigpipe() {
    let _ = reset_signal(Signal::SIGPIPE);
}
