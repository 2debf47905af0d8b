//! `-t`: a terminal of the container's own, as `docker run -t` gives.
//!
//! A pseudo-terminal is a pair: the *master*, which a terminal emulator
//! (or sshd, or here mini-run) holds, and the *slave*, `/dev/pts/N`, which
//! the shell has as its terminal. The container's is made from its own
//! `devpts` instance (mounted with `newinstance`), inside, so it is
//! `/dev/pts/0` there and the host's terminals stay out of reach. The
//! child opens `/dev/ptmx` after `pivot_root`, makes the slave its
//! controlling terminal and its stdin, stdout and stderr, and passes the
//! master out to mini-run over a socket (`SCM_RIGHTS`), as runc passes it
//! over its `--console-socket`. mini-run then puts the host's terminal in
//! raw mode and copies bytes both ways until the command ends: keys go
//! to the container's terminal unchanged, so Ctrl-C there is the
//! container's line discipline's to turn into a `SIGINT`.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{SetArg, Termios, cfmakeraw, tcgetattr, tcsetattr};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use steps::Error;
use steps::process::Exit;

/// Child, inside the container: a new terminal from the container's
/// `/dev/ptmx`, its master sent out over `socket`, its slave made the
/// controlling terminal of a new session and the standard descriptors.
pub fn open_in_container(socket: OwnedFd) -> Result<(), Error> {
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|e| Error::sys("open(\"/dev/ptmx\")", e))?;
    nix::pty::grantpt(&master).map_err(|e| Error::sys("grantpt", e))?;
    nix::pty::unlockpt(&master).map_err(|e| Error::sys("ioctl(TIOCSPTLCK)", e))?;
    let name = nix::pty::ptsname_r(&master).map_err(|e| Error::sys("ioctl(TIOCGPTN)", e))?;
    let slave = nix::fcntl::open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::sys(format!("open(\"{name}\")"), e))?;
    crate::passfd::send(&socket, &[master.as_raw_fd()])
        .map_err(|e| Error::sys("sendmsg(console socket, SCM_RIGHTS)", e))?;
    drop(master);
    drop(socket);
    nix::unistd::setsid().map_err(|e| Error::sys("setsid", e))?;
    steps::sys::set_controlling_terminal(slave.as_fd())
        .map_err(|e| Error::sys(format!("ioctl(\"{name}\", TIOCSCTTY)"), e))?;
    nix::unistd::dup2_stdin(&slave).map_err(|e| Error::sys(format!("dup2(\"{name}\", 0)"), e))?;
    nix::unistd::dup2_stdout(&slave).map_err(|e| Error::sys(format!("dup2(\"{name}\", 1)"), e))?;
    nix::unistd::dup2_stderr(&slave).map_err(|e| Error::sys(format!("dup2(\"{name}\", 2)"), e))?;
    Ok(())
}

/// mini-run: the master, once the child sends it; `None` when the child
/// closed its end first (it failed, and says why on its report pipe).
pub fn receive(socket: &OwnedFd) -> Result<Option<OwnedFd>, Errno> {
    Ok(crate::passfd::receive(socket)?.into_iter().next())
}

/// The host's terminal in raw mode, put back as it was when dropped.
struct RawMode {
    saved: Termios,
}

impl RawMode {
    fn enter(fd: BorrowedFd) -> Option<Self> {
        let saved = tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(fd, SetArg::TCSANOW, &raw).ok()?;
        Some(Self { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// Copies the host terminal's size (if stdin is one) to the container's.
fn copy_size(master: BorrowedFd) {
    if let Ok(size) = steps::sys::window_size(std::io::stdin().as_fd()) {
        let _ = steps::sys::set_window_size(master, &size);
    }
}

/// mini-run, while the command runs: stdin to the master, the master to
/// stdout, the host terminal's size to the container's on SIGWINCH, and
/// SIGINT, SIGTERM and SIGHUP sent to mini-run passed on to `child`
/// (reported to `on_signal`). Returns how `child` ended.
pub fn relay(
    master: OwnedFd,
    child: Pid,
    mut on_signal: impl FnMut(Signal),
) -> Result<Exit, Errno> {
    let mut signals = SigSet::empty();
    for signal in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGCHLD,
        Signal::SIGWINCH,
    ] {
        signals.add(signal);
    }
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&signals), None)?;
    let signalfd = SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
    let stdin = std::io::stdin();
    let _raw = nix::unistd::isatty(stdin.as_fd())
        .unwrap_or(false)
        .then(|| RawMode::enter(stdin.as_fd()))
        .flatten();
    copy_size(master.as_fd());
    let mut master = std::fs::File::from(master);
    let mut stdin_open = true;
    let mut master_open = true;
    let mut buffer = [0u8; 8192];
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(status) => match Exit::of(status) {
                Some(exit) => return Ok(drain(&mut master, exit)),
                None => continue,
            },
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
        let stdin_fd = stdin.as_fd();
        let master_fd = master.as_fd();
        let mut fds = vec![PollFd::new(signalfd.as_fd(), PollFlags::POLLIN)];
        if master_open {
            fds.push(PollFd::new(master_fd, PollFlags::POLLIN));
        }
        if stdin_open {
            fds.push(PollFd::new(stdin_fd, PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
        let ready = |fd: &PollFd| {
            fd.revents().is_some_and(|r| {
                r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
            })
        };
        let signal_ready = ready(&fds[0]);
        let master_ready = master_open && ready(&fds[1]);
        let stdin_ready = stdin_open && ready(&fds[if master_open { 2 } else { 1 }]);
        drop(fds);
        // Signals first: a resize the host made before it typed a key is
        // the container's before that key is.
        if signal_ready {
            while let Some(info) = signalfd.read_signal()? {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGWINCH) => copy_size(master.as_fd()),
                    Ok(Signal::SIGCHLD) | Err(_) => {}
                    Ok(signal) => {
                        on_signal(signal);
                        let _ = kill(child, signal);
                    }
                }
            }
        }
        if master_ready {
            match master.read(&mut buffer) {
                Ok(0) | Err(_) => master_open = false,
                Ok(n) => {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(&buffer[..n]).and_then(|()| out.flush());
                }
            }
        }
        if stdin_ready {
            // The descriptor itself, not Rust's buffered Stdin: what a
            // buffer kept back, poll would not see.
            match nix::unistd::read(stdin.as_fd(), &mut buffer) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    if master.write_all(&buffer[..n]).is_err() {
                        stdin_open = false;
                    }
                }
            }
        }
    }
}

/// What the command wrote last, still in the terminal, copied out.
fn drain(master: &mut std::fs::File, exit: Exit) -> Exit {
    let _ = nix::fcntl::fcntl(
        master.as_fd(),
        nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK),
    );
    let mut buffer = [0u8; 8192];
    let mut out = std::io::stdout().lock();
    while let Ok(n) = master.read(&mut buffer) {
        if n == 0 || out.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    let _ = out.flush();
    exit
}
