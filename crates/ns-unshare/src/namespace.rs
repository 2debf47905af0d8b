//! # The eight namespaces
//!
//! A namespace wraps one global resource of the kernel so that the processes
//! inside see their own instance of it: their own process ids, mounts,
//! hostname, IPC objects, network stack, user ids, cgroup root and clocks.
//! A container is nothing more than a process whose namespaces differ from
//! the host's. See <https://man7.org/linux/man-pages/man7/namespaces.7.html>.
//!
//! Each namespace a process belongs to shows up as a link under
//! `/proc/PID/ns/`; the number in the link is the namespace's inode id, and
//! two processes share a namespace exactly when those numbers are equal.

use nix::sched::CloneFlags;
use steps::{Chapter, chapter};

/// One kind of namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Namespace {
    User,
    Cgroup,
    Ipc,
    Uts,
    Net,
    Pid,
    Mount,
    Time,
}

/// The order namespaces are set up in, written down because it matters:
/// the user namespace comes first, because creating it gives the caller the
/// capabilities it needs for every other one (that is what lets an
/// unprivileged user run `ns-unshare -r --net ...`); the mount namespace
/// comes late, because entering it changes what paths like `/proc/PID/ns/*`
/// resolve to.
pub const ORDERED: [Namespace; 8] = [
    Namespace::User,
    Namespace::Cgroup,
    Namespace::Ipc,
    Namespace::Uts,
    Namespace::Net,
    Namespace::Pid,
    Namespace::Mount,
    Namespace::Time,
];

impl Namespace {
    /// The flag `unshare(2)`, `clone(2)` and `setns(2)` take.
    pub fn flag(self) -> CloneFlags {
        match self {
            Self::User => CloneFlags::CLONE_NEWUSER,
            Self::Cgroup => CloneFlags::CLONE_NEWCGROUP,
            Self::Ipc => CloneFlags::CLONE_NEWIPC,
            Self::Uts => CloneFlags::CLONE_NEWUTS,
            Self::Net => CloneFlags::CLONE_NEWNET,
            Self::Pid => CloneFlags::CLONE_NEWPID,
            Self::Mount => CloneFlags::CLONE_NEWNS,
            // nix has no constant for it yet; the value is the kernel's.
            Self::Time => CloneFlags::from_bits_retain(0x0000_0080),
        }
    }

    /// The flag's name as C code writes it.
    pub fn flag_name(self) -> &'static str {
        match self {
            Self::User => "CLONE_NEWUSER",
            Self::Cgroup => "CLONE_NEWCGROUP",
            Self::Ipc => "CLONE_NEWIPC",
            Self::Uts => "CLONE_NEWUTS",
            Self::Net => "CLONE_NEWNET",
            Self::Pid => "CLONE_NEWPID",
            Self::Mount => "CLONE_NEWNS",
            Self::Time => "CLONE_NEWTIME",
        }
    }

    /// The link's name under `/proc/PID/ns/`.
    pub fn proc_name(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Cgroup => "cgroup",
            Self::Ipc => "ipc",
            Self::Uts => "uts",
            Self::Net => "net",
            Self::Pid => "pid",
            Self::Mount => "mnt",
            Self::Time => "time",
        }
    }

    /// The link that names the namespace a process's *next children* get.
    /// `unshare(CLONE_NEWPID)` and `unshare(CLONE_NEWTIME)` do not move the
    /// caller itself, only the children it creates afterwards.
    pub fn for_children_name(self) -> &'static str {
        match self {
            Self::Pid => "pid_for_children",
            Self::Time => "time_for_children",
            other => other.proc_name(),
        }
    }

    /// Whether the caller itself stays outside and only its children enter.
    pub fn only_children_enter(self) -> bool {
        matches!(self, Self::Pid | Self::Time)
    }

    /// The long flag util-linux `unshare` uses for it.
    pub fn long_flag(self) -> &'static str {
        match self {
            Self::Mount => "mount",
            other => other.proc_name(),
        }
    }

    /// What a process inside sees of its own.
    pub fn isolates(self) -> &'static str {
        match self {
            Self::User => "user and group ids, and capabilities",
            Self::Cgroup => "the root of the cgroup hierarchy",
            Self::Ipc => "System V IPC objects and POSIX message queues",
            Self::Uts => "hostname and NIS domain name",
            Self::Net => "network devices, addresses, routes, firewall and ports",
            Self::Pid => "process ids",
            Self::Mount => "the mount table",
            Self::Time => "the boot-time and monotonic clocks",
        }
    }

    pub fn chapter(self) -> Chapter {
        match self {
            Self::User => chapter::USER,
            Self::Cgroup => chapter::CGROUP,
            Self::Ipc => chapter::IPC,
            Self::Uts => chapter::UTS,
            Self::Net => chapter::NET,
            Self::Pid => chapter::PID,
            Self::Mount => chapter::MOUNT,
            Self::Time => chapter::TIME,
        }
    }
}

/// `CLONE_NEWUSER|CLONE_NEWPID`, in setup order.
pub fn flag_names(namespaces: &[Namespace]) -> String {
    ORDERED
        .iter()
        .filter(|ns| namespaces.contains(ns))
        .map(|ns| ns.flag_name())
        .collect::<Vec<_>>()
        .join("|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_namespace_is_set_up_first_and_mount_late() {
        assert_eq!(ORDERED[0], Namespace::User);
        let mount = ORDERED.iter().position(|&n| n == Namespace::Mount).unwrap();
        let net = ORDERED.iter().position(|&n| n == Namespace::Net).unwrap();
        assert!(mount > net);
    }

    #[test]
    fn flags_render_in_setup_order() {
        assert_eq!(
            flag_names(&[Namespace::Mount, Namespace::Pid, Namespace::User]),
            "CLONE_NEWUSER|CLONE_NEWPID|CLONE_NEWNS"
        );
    }
}
