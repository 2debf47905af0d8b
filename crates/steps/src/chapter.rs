//! The book's chapters that steps point to. The list is data so that a test
//! can check every chapter a step names exists in `book/src/SUMMARY.md`.

/// A chapter of the book, by title and by its path under `book/src`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chapter {
    pub title: &'static str,
    pub path: &'static str,
}

impl std::fmt::Display for Chapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (book/src/{})", self.title, self.path)
    }
}

macro_rules! chapters {
    ($($name:ident = $title:literal, $path:literal;)*) => {
        $(pub const $name: Chapter = Chapter { title: $title, path: $path };)*
        /// Every chapter a step may name.
        pub const ALL: &[Chapter] = &[$($name),*];
    };
}

chapters! {
    NAMESPACES = "Namespaces", "namespaces/README.md";
    PID = "The PID namespace", "namespaces/pid.md";
    MOUNT = "The mount namespace", "namespaces/mount.md";
    UTS = "The UTS namespace", "namespaces/uts.md";
    IPC = "The IPC namespace", "namespaces/ipc.md";
    NET = "The network namespace", "namespaces/net.md";
    USER = "The user namespace", "namespaces/user.md";
    CGROUP = "The cgroup namespace", "namespaces/cgroup.md";
    TIME = "The time namespace", "namespaces/time.md";
    ENTER = "Looking at and entering namespaces", "namespaces/enter.md";
    PROCESSES = "Processes, fork and exec", "namespaces/processes.md";
    CGROUPS = "Control groups", "cgroups/README.md";
    MEMORY = "Memory and the OOM killer", "cgroups/memory.md";
    CPU = "CPU: quota and weight", "cgroups/cpu.md";
    PIDS = "Pids: stopping a fork bomb", "cgroups/pids.md";
    IO = "I/O: throttling a disk", "cgroups/io.md";
    WATCHING = "Watching cgroups: stats and the tree", "cgroups/watching.md";
    OVERLAY = "Union filesystems: OverlayFS", "overlay/README.md";
    COPY_ON_WRITE = "Copy-on-write and whiteouts", "overlay/copy-on-write.md";
    IMAGES = "Images are stacks of layers", "overlay/images.md";
    ROOTFS = "A root filesystem from nothing", "overlay/rootfs.md";
    NETWORK = "Networking: a docker0 of your own", "network/README.md";
    NAT = "NAT and published ports", "network/nat.md";
    NETWORK_MODES = "Host, bridge and none: docker network", "network/modes.md";
    MULTI_HOST = "Across hosts: overlay networks and VXLAN", "network/overlay.md";
    CONTAINERS = "A container of your own: mini-run", "containers/README.md";
    CONTAINER_MOUNTS = "The container's filesystem: mounts and pivot_root", "containers/mounts.md";
    SECURITY = "Security defaults and the escapes they stop", "containers/security.md";
    ROOTLESS = "Rootless containers", "containers/rootless.md";
    LIFECYCLE = "A container's life: run -d, ps, exec, logs, stop, rm", "containers/lifecycle.md";
}
