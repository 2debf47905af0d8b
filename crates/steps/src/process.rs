//! Supervising a child: the parent blocks the signals it must handle before
//! it forks, reads them from a signalfd so nothing runs in signal context,
//! passes SIGINT, SIGTERM and SIGHUP on when asked, and in the end dies the
//! way its child did, so the shell sees the child's exit status or signal.

use std::os::fd::AsFd;
use std::process::ExitCode;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// In a child between `fork()` and `execve()`: tells the parent why the
/// program could not be run, through a close-on-exec pipe (`CODE`, a
/// newline, the message), and exits with that code. A successful exec
/// closes the pipe with nothing written, which is how the parent tells the
/// two apart.
pub fn report_and_exit(pipe: Option<std::fs::File>, error: &crate::Error) -> ! {
    use std::io::Write;
    if let Some(mut pipe) = pipe {
        let _ = pipe.write_all(format!("{}\n{error}", error.code()).as_bytes());
    }
    std::process::exit(i32::from(error.code()));
}

/// In the parent: reads the child's report to its end, which comes when
/// the child has exec'd or exited. `None`: it exec'd.
pub fn read_report(pipe: Option<std::fs::File>) -> Option<crate::Error> {
    use std::io::Read;
    let mut report = String::new();
    if let Some(mut pipe) = pipe {
        let _ = pipe.read_to_string(&mut report);
    }
    if report.is_empty() {
        return None;
    }
    let (code, message) = report.split_once('\n').unwrap_or(("125", &report));
    Some(crate::Error::with_code(
        message,
        code.parse().unwrap_or(crate::exit::SETUP),
    ))
}

/// A signal as `kill` takes one: by name (`KILL`, `SIGKILL`, `kill`) or
/// number (`9`).
pub fn signal_named(text: &str) -> Option<Signal> {
    if let Ok(number) = text.parse::<i32>() {
        return Signal::try_from(number).ok();
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>().ok()
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(u8),
    Signal(Signal),
}

impl Exit {
    /// How a child ended, from `waitpid`'s status; `None` while it has not
    /// (still running, or only stopped or continued).
    pub fn of(status: WaitStatus) -> Option<Self> {
        match status {
            WaitStatus::Exited(_, code) => Some(Self::Code(code as u8)),
            WaitStatus::Signaled(_, signal, _) => Some(Self::Signal(signal)),
            _ => None,
        }
    }

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
    /// Blocks SIGINT, SIGTERM, SIGHUP and SIGCHLD. Call before `fork()`:
    /// then no signal can arrive between the fork and the wait.
    pub fn start() -> Result<Self, Errno> {
        let mut handled = SigSet::empty();
        handled.add(Signal::SIGINT);
        handled.add(Signal::SIGTERM);
        handled.add(Signal::SIGHUP);
        handled.add(Signal::SIGCHLD);
        let mut before = SigSet::empty();
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&handled), Some(&mut before))?;
        Ok(Self { handled, before })
    }

    /// Takes a SIGINT, SIGTERM or SIGHUP that arrived since
    /// [`Supervision::start`] and waits, blocked. Checked just before the
    /// fork: such a signal came while there was no child to pass it on to
    /// (a Ctrl-C during set-up reached only the tool), so the tool should
    /// stop rather than start the program.
    pub fn take_pending(&self) -> Result<Option<Signal>, Errno> {
        let mut stops = self.handled;
        stops.remove(Signal::SIGCHLD);
        let signals = SignalFd::with_flags(&stops, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
        Ok(signals
            .read_signal()?
            .and_then(|info| Signal::try_from(info.ssi_signo as i32).ok()))
    }

    /// In the child: the signal mask it had before, for the program it runs.
    pub fn release_in_child(&self) -> Result<(), Errno> {
        sigprocmask(SigmaskHow::SIG_SETMASK, Some(&self.before), None)
    }

    /// Waits for `child`. With `forward`, SIGINT, SIGTERM and SIGHUP sent
    /// to the parent are passed on to the child (and reported to
    /// `on_signal`); without, they stay pending while the parent waits.
    pub fn wait(
        &self,
        child: Pid,
        forward: bool,
        on_signal: impl FnMut(Signal),
    ) -> Result<Exit, Errno> {
        if forward {
            return self.wait_ticking(child, None, on_signal, || {});
        }
        loop {
            match waitpid(child, None) {
                Ok(status) => {
                    if let Some(exit) = Exit::of(status) {
                        return Ok(exit);
                    }
                }
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits for `child`, passing signals on, and calls `tick` about every
    /// `every` while it runs (to sample what it uses). The signals are read
    /// from a signalfd, which also tells who sent each: one the terminal
    /// sent (Ctrl-C, a hang-up) went to the child's whole process group,
    /// the child included, so it is not passed on a second time.
    pub fn wait_ticking(
        &self,
        child: Pid,
        every: Option<Duration>,
        on_signal: impl FnMut(Signal),
        tick: impl FnMut(),
    ) -> Result<Exit, Errno> {
        self.wait_passing(child, every, false, on_signal, tick)
    }

    /// Waits for `child`, which runs in a session of its own, away from
    /// the terminal: then the terminal's signals (Ctrl-C, a hang-up)
    /// reach only this process, and are passed on like any other.
    pub fn wait_detached(&self, child: Pid, on_signal: impl FnMut(Signal)) -> Result<Exit, Errno> {
        self.wait_passing(child, None, true, on_signal, || {})
    }

    fn wait_passing(
        &self,
        child: Pid,
        every: Option<Duration>,
        terminal_too: bool,
        mut on_signal: impl FnMut(Signal),
        mut tick: impl FnMut(),
    ) -> Result<Exit, Errno> {
        /// `si_code` of a signal the kernel itself sent, as the terminal's
        /// line discipline does (SI_KERNEL in <asm-generic/siginfo.h>).
        const SI_KERNEL: i32 = 0x80;
        let signals = SignalFd::with_flags(
            &self.handled,
            SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK,
        )?;
        let timeout = every
            .map(|every| PollTimeout::try_from(every).unwrap_or(PollTimeout::MAX))
            .unwrap_or(PollTimeout::NONE);
        loop {
            match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(status) => match Exit::of(status) {
                    Some(exit) => return Ok(exit),
                    None => continue,
                },
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e),
            }
            tick();
            let mut fds = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
            while let Some(info) = signals.read_signal()? {
                let Ok(signal) = Signal::try_from(info.ssi_signo as i32) else {
                    continue;
                };
                if signal != Signal::SIGCHLD && (terminal_too || info.ssi_code != SI_KERNEL) {
                    on_signal(signal);
                    let _ = kill(child, signal);
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::raise;

    #[test]
    fn a_stop_signal_that_came_during_set_up_is_taken_once() {
        // The mask is this test thread's own, and raise() sends to the
        // calling thread, so the signal waits for it and no other test sees it.
        let supervision = Supervision::start().unwrap();
        assert_eq!(supervision.take_pending().unwrap(), None);
        raise(Signal::SIGTERM).unwrap();
        assert_eq!(supervision.take_pending().unwrap(), Some(Signal::SIGTERM));
        assert_eq!(supervision.take_pending().unwrap(), None);
        sigprocmask(SigmaskHow::SIG_SETMASK, Some(&supervision.before), None).unwrap();
    }
}
