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

/// `clone()` with namespace flags and no new stack: a `fork()` whose child
/// starts in new namespaces. One call where `unshare()` then `fork()` would
/// take two, and the only way to be pid 1 of a new PID namespace without a
/// process in between: `unshare(CLONE_NEWPID)` moves only the children.
/// See [clone(2)](https://man7.org/linux/man-pages/man2/clone.2.html).
pub fn clone_into(namespaces: nix::sched::CloneFlags) -> Result<Fork, Errno> {
    let flags = namespaces.bits() as libc::c_ulong | libc::SIGCHLD as libc::c_ulong;
    // SAFETY: without CLONE_VM and with a NULL stack, the raw clone system
    // call behaves as fork(): the child runs on a copy of this address
    // space and stack. As for fork() above, our binaries are single-threaded
    // when they call it, so no lock can be held by a missing thread.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    };
    match Errno::result(ret)? {
        0 => Ok(Fork::Child),
        pid => Ok(Fork::Parent {
            child: Pid::from_raw(pid as i32),
        }),
    }
}

/// Marks every descriptor from `first` up close-on-exec, so that `exec`
/// leaves only stdin, stdout and stderr open: `close_range(first, ~0,
/// CLOSE_RANGE_CLOEXEC)` (Linux 5.11), else one `fcntl()` per descriptor
/// listed in `/proc/self/fd`.
pub fn close_on_exec_from(first: u32) -> Result<(), Errno> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes flags of this process's
    // descriptors; it touches no memory.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    if ret == 0 {
        return Ok(());
    }
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map_err(|_| Errno::ENOENT)?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd >= first as i32)
        .collect();
    for fd in fds {
        // SAFETY: F_SETFD on a descriptor number touches no memory; one
        // that was closed meanwhile (the directory's own) gives EBADF.
        let _ = unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

/// Makes the mount at `fd` and every mount beneath it read-only:
/// `mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, {MOUNT_ATTR_RDONLY})`
/// (Linux 5.12). A `mount -o remount,bind,ro` changes one mount only, so a
/// read-only bind of a directory with mounts inside would leave those
/// writable. ENOSYS on older kernels: the caller falls back to the remount.
/// See [mount_setattr(2)](https://man7.org/linux/man-pages/man2/mount_setattr.2.html).
pub fn read_only_recursive(fd: std::os::fd::BorrowedFd) -> Result<(), Errno> {
    use std::os::fd::AsRawFd;
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: the kernel reads `attr`, which lives across the call, for
    // the size given, and the empty C string; it writes nothing of ours.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    Errno::result(ret).map(drop)
}

/// Makes the terminal `fd` the controlling terminal of this process's
/// session: `ioctl(fd, TIOCSCTTY, 0)`. The caller has just made the
/// session with `setsid()`; then no capability is needed.
/// See [ioctl_tty(2)](https://man7.org/linux/man-pages/man2/TIOCSCTTY.2const.html).
pub fn set_controlling_terminal(fd: std::os::fd::BorrowedFd) -> Result<(), Errno> {
    use std::os::fd::AsRawFd;
    // SAFETY: TIOCSCTTY takes an int argument, passed by value; the
    // kernel touches no memory of ours.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) };
    Errno::result(ret).map(drop)
}

/// A terminal's size in rows and columns: `ioctl(fd, TIOCGWINSZ)`.
pub fn window_size(fd: std::os::fd::BorrowedFd) -> Result<libc::winsize, Errno> {
    use std::os::fd::AsRawFd;
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one struct winsize, which `size` is, and
    // lives across the call.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut size) };
    Errno::result(ret).map(|_| size)
}

/// Sets a terminal's size: `ioctl(fd, TIOCSWINSZ)`; the processes on it
/// get SIGWINCH.
pub fn set_window_size(fd: std::os::fd::BorrowedFd, size: &libc::winsize) -> Result<(), Errno> {
    use std::os::fd::AsRawFd;
    // SAFETY: TIOCSWINSZ reads one struct winsize, which `size` is.
    let ret = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TIOCSWINSZ,
            size as *const libc::winsize,
        )
    };
    Errno::result(ret).map(drop)
}

/// Owns a descriptor the kernel has just passed in a message
/// (`SCM_RIGHTS`): it is new in this process, and nothing else owns it.
pub fn own_passed_fd(fd: std::os::fd::RawFd) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: recvmsg(2) installed `fd` for us alone; it is open and no
    // other owner will close it.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
}

/// A detached copy of the mount at `path` (not the mounts beneath it):
/// `open_tree(AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)`
/// (Linux 5.2). It is attached nowhere until [`move_mount_onto`], and goes
/// when its last descriptor closes. See
/// [open_tree(2)](https://man7.org/linux/man-pages/man2/open_tree.2.html).
pub fn open_tree_clone(path: &std::path::Path) -> Result<std::os::fd::OwnedFd, Errno> {
    use std::os::fd::FromRawFd;
    let path =
        std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: the kernel reads the NUL-terminated path, which lives
    // across the call; the descriptor it returns is new and ours alone.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC,
        )
    };
    let fd = Errno::result(ret)?;
    // SAFETY: open_tree returned a descriptor, open and owned by no one.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// Makes the detached mount `fd` an *idmapped* mount: its files' owners
/// are read through the id maps of the user namespace `userns`, so that a
/// file owned by 0 on disk is owned by whatever host id 0 stands for in
/// that namespace. `mount_setattr(fd, "", AT_EMPTY_PATH,
/// {MOUNT_ATTR_IDMAP, userns_fd})` (Linux 5.12; the filesystem must allow
/// it: ext4, xfs, btrfs, tmpfs from 6.3, …). See
/// [mount_setattr(2)](https://man7.org/linux/man-pages/man2/mount_setattr.2.html).
pub fn idmap_mount(
    fd: std::os::fd::BorrowedFd,
    userns: std::os::fd::BorrowedFd,
) -> Result<(), Errno> {
    use std::os::fd::AsRawFd;
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: as in read_only_recursive: the kernel reads `attr` and the
    // empty C string, and writes nothing of ours.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    Errno::result(ret).map(drop)
}

/// Attaches the detached mount `fd` on the directory or file `target`, an
/// open descriptor (`O_PATH` will do): `move_mount(fd, "", target, "",
/// MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)`. No path is looked
/// up, so nothing can be swapped for a symlink in between.
pub fn move_mount_onto(
    fd: std::os::fd::BorrowedFd,
    target: std::os::fd::BorrowedFd,
) -> Result<(), Errno> {
    use std::os::fd::AsRawFd;
    // SAFETY: the kernel reads the two empty C strings; it writes nothing
    // of ours.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            fd.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    Errno::result(ret).map(drop)
}

/// A descriptor that stands for the process `pid` itself, not for its
/// number: `pidfd_open(pid, 0)` (Linux 5.3). A signal sent through it
/// reaches that process or none, never one that took its number later;
/// it is readable (`poll` POLLIN) once the process has ended, which lets a
/// process wait for one that is not its child. See
/// [pidfd_open(2)](https://man7.org/linux/man-pages/man2/pidfd_open.2.html).
pub fn pidfd_open(pid: Pid) -> Result<std::os::fd::OwnedFd, Errno> {
    use std::os::fd::FromRawFd;
    // SAFETY: two integers in, a new descriptor out.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    let fd = Errno::result(ret)?;
    // SAFETY: pidfd_open returned a descriptor, open and owned by no one.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// `pidfd_send_signal(pidfd, signal, NULL, 0)` (Linux 5.1).
pub fn pidfd_send_signal(pidfd: std::os::fd::BorrowedFd, signal: Signal) -> Result<(), Errno> {
    use std::os::fd::AsRawFd;
    // SAFETY: a NULL siginfo asks the kernel to fill in its own.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    Errno::result(ret).map(drop)
}
