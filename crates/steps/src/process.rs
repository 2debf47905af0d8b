//! Supervising a child: the parent blocks the signals it must handle before
//! it forks, waits with `sigwait()` so nothing runs in signal context,
//! passes SIGINT and SIGTERM on when asked, and in the end dies the way its
//! child did, so the shell sees the child's exit status or signal.

use std::process::ExitCode;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(u8),
    Signal(Signal),
}

impl Exit {
    /// The status a shell would show: the code, or 128 + the signal.
    pub fn shell_status(self) -> u8 {
        match self {
            Self::Code(code) => code,
            Self::Signal(signal) => 128u8.wrapping_add(signal as u8),
        }
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Code(code) => write!(f, "exited with {code}"),
            Self::Signal(signal) => write!(f, "was killed by {}", signal.as_str()),
        }
    }
}

/// The signal mask a supervising parent holds from before the fork on.
#[derive(Debug, Clone)]
pub struct Supervision {
    handled: SigSet,
    before: SigSet,
}

impl Supervision {
    /// Blocks SIGINT, SIGTERM and SIGCHLD. Call before `fork()`: then no
    /// signal can arrive between the fork and the wait.
    pub fn start() -> Result<Self, Errno> {
        let mut handled = SigSet::empty();
        handled.add(Signal::SIGINT);
        handled.add(Signal::SIGTERM);
        handled.add(Signal::SIGCHLD);
        let mut before = SigSet::empty();
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&handled), Some(&mut before))?;
        Ok(Self { handled, before })
    }

    /// In the child: the signal mask it had before, for the program it runs.
    pub fn release_in_child(&self) -> Result<(), Errno> {
        sigprocmask(SigmaskHow::SIG_SETMASK, Some(&self.before), None)
    }

    /// Waits for `child`. With `forward`, SIGINT and SIGTERM sent to the
    /// parent are passed on to the child (and reported to `on_signal`);
    /// without, they stay pending while the parent waits.
    pub fn wait(
        &self,
        child: Pid,
        forward: bool,
        mut on_signal: impl FnMut(Signal),
    ) -> Result<Exit, Errno> {
        loop {
            let flags = forward.then_some(WaitPidFlag::WNOHANG);
            match waitpid(child, flags) {
                Ok(WaitStatus::StillAlive) => {
                    let signal = self.handled.wait()?;
                    if signal != Signal::SIGCHLD {
                        on_signal(signal);
                        let _ = kill(child, signal);
                    }
                }
                Ok(WaitStatus::Exited(_, code)) => return Ok(Exit::Code(code as u8)),
                Ok(WaitStatus::Signaled(_, signal, _)) => return Ok(Exit::Signal(signal)),
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// Ends this process the way the child ended: with its exit code, or by
/// its signal (so that a shell sees the same), falling back to 128 + N when
/// the signal does not end us.
pub fn end_like(exit: Exit) -> ExitCode {
    match exit {
        Exit::Code(code) => ExitCode::from(code),
        Exit::Signal(signal) => {
            if signal != Signal::SIGKILL {
                let _ = crate::sys::reset_signal(signal);
            }
            let mut set = SigSet::empty();
            set.add(signal);
            let _ = sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None);
            let _ = kill(nix::unistd::getpid(), signal);
            ExitCode::from(exit.shell_status())
        }
    }
}
