//! Passing descriptors between mini-run and the container's first
//! process: a `SOCK_SEQPACKET` socket pair made before the clone, and
//! `sendmsg(2)` with `SCM_RIGHTS`, which installs copies of the sender's
//! descriptors in the receiver, whatever namespaces each is in. `-t`
//! passes the terminal's master out this way (as runc's
//! `--console-socket`), `--userns` the idmapped layers in. See
//! <https://man7.org/linux/man-pages/man7/unix.7.html>.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};

/// The most descriptors one message carries (the kernel's SCM_MAX_FD).
pub const MAX: usize = 253;

/// The two ends: mini-run's and the child's.
pub fn socket() -> Result<(OwnedFd, OwnedFd), Errno> {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
}

/// Sends copies of `fds` in one message.
pub fn send(socket: &OwnedFd, fds: &[RawFd]) -> Result<(), Errno> {
    sendmsg::<()>(
        socket.as_raw_fd(),
        &[IoSlice::new(b"f")],
        &[ControlMessage::ScmRights(fds)],
        MsgFlags::empty(),
        None,
    )
    .map(drop)
}

/// The descriptors of the next message, at most [`MAX`]; none when the
/// other end closed first.
pub fn receive(socket: &OwnedFd) -> Result<Vec<OwnedFd>, Errno> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; MAX]);
    let message = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut received = Vec::new();
    for cmsg in message.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            received.extend(fds.into_iter().map(steps::sys::own_passed_fd));
        }
    }
    Ok(received)
}
