//! `--init`: a tiny pid 1, as `docker run --init` gives (Docker's is
//! tini). The command a container runs is seldom written to be pid 1: the
//! kernel gives pid 1 no default action for a signal it has no handler
//! for, so a `SIGTERM` is dropped, and every orphan of the container is
//! re-parented to pid 1, which must reap it or leave a zombie. The init
//! does both for the command, which runs as its child, pid 2.
//!
//! It is mini-run's own code, forked after the container was built rather
//! than a program exec'd from the image or the host: nothing of the host
//! is put into the container for it. It holds no capability and is not
//! dumpable, so the container's root cannot open `/proc/1/exe`, which
//! still names mini-run's binary on the host (the CVE-2019-5736 class).

use std::os::fd::AsFd;

use caps::CapSet;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use steps::process::Exit;

/// `si_code` of a signal the kernel itself sent, as the terminal's line
/// discipline does for Ctrl-C (SI_KERNEL in <asm-generic/siginfo.h>).
const SI_KERNEL: i32 = 0x80;

/// What the init needs from before the fork: every signal blocked, so
/// none is lost between the fork and the first read, and read from a
/// signalfd (close-on-exec, so the command never holds it).
#[derive(Debug)]
pub struct Signals(SignalFd);

impl Signals {
    /// Blocks every signal and opens the signalfd. Call before the fork;
    /// the command's side gives back its own mask before it execs.
    pub fn block_all() -> Result<Self, Errno> {
        let all = SigSet::all();
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&all), None)?;
        Ok(Self(SignalFd::with_flags(
            &all,
            SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK,
        )?))
    }
}

/// Pid 1 from the fork on: passes every signal on to `command` (those the
/// terminal sent went to it already) and reaps every child, and exits as
/// the command did, with 128 + N for a signal N, as tini does.
pub fn serve(command: Pid, signals: Signals) -> ! {
    let _ = nix::sys::prctl::set_dumpable(false);
    for set in [CapSet::Effective, CapSet::Permitted, CapSet::Inheritable] {
        let _ = caps::clear(None, set);
    }
    let Signals(signals) = signals;
    loop {
        if let Some(status) = reap(command) {
            std::process::exit(status);
        }
        let mut fds = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::NONE);
        while let Ok(Some(info)) = signals.read_signal() {
            let Ok(signal) = Signal::try_from(info.ssi_signo as i32) else {
                continue;
            };
            if signal != Signal::SIGCHLD && info.ssi_code != SI_KERNEL {
                let _ = kill(command, signal);
            }
        }
    }
}

/// Reaps every child that has ended; the command's status once it has.
fn reap(command: Pid) -> Option<i32> {
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return None,
            Ok(status) if status.pid() == Some(command) => {
                if let Some(exit) = Exit::of(status) {
                    return Some(i32::from(exit.shell_status()));
                }
            }
            // An orphan, reaped: no zombie left.
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(_) => return None,
        }
    }
}
