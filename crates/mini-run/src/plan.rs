//! # The plan: `docker run` as a list of calls
//!
//! A container is made in three processes' worth of steps. mini-run (the
//! *caller*) makes the state directory and the cgroup, then `clone()`s the
//! container's first process straight into new namespaces. From there the
//! *parent* (mini-run, still on the host) puts the child in its cgroup and
//! lets it go; the *child* turns its new mount namespace into the
//! container's filesystem, locks itself down, and becomes the command.
//! The parent waits, and takes it all down when the command ends.
//!
//! Steps that another underhood tool makes are shown as that tool's
//! command (`cg-limit create …`, `overlay-stack mount …`) and made by its
//! library: mini-run composes the tools, it does not copy them.

use std::path::{Path, PathBuf};

use caps::Capability;
use cg_limit::controller::Limits;
use cg_limit::{CgroupFs, Version};
use nix::mount::MsFlags;
use ns_unshare::Namespace;
use overlay_stack::stack::{Stack, Writable};
use steps::{Chapter, Error, Plan, Side, Sided, Step, chapter};

use crate::container::{Container, DEFAULT_BRIDGE, Network, Port, Root, Source};
use crate::inroot::Make;
use crate::record;
use crate::rootless::IdMap;
use crate::security;
use crate::state::{self, Dirs, Id};

/// A mount of a filesystem the kernel makes up (proc, tmpfs, sysfs, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: &'static str,
    /// Absolute, inside the container.
    pub target: PathBuf,
    pub fstype: &'static str,
    pub flags: MsFlags,
    pub data: Option<&'static str>,
    pub why: &'static str,
}

/// A bind mount of a host path into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    /// Absolute, inside the container.
    pub target: PathBuf,
    pub read_only: bool,
    /// `--userns` as root: the source comes idmapped from the parent
    /// (with the layers), and is attached rather than bound.
    pub idmapped: bool,
    pub make: Make,
    pub why: &'static str,
    pub chapter: Chapter,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `-d`: fork; the copy goes on in a session of its own, as the
    /// container's supervisor, and the first waits until the command runs.
    Detach,
    /// Make the container's state directory and hold a lock on it; with
    /// `--name`, check that no other container has the name, and keep it.
    MakeState {
        dir: PathBuf,
        name: Option<String>,
    },
    WriteFile {
        path: PathBuf,
        content: String,
        why: &'static str,
    },
    /// `--userns` as root: the state directory becomes the container
    /// root's, so that it may make its upper layer and write its /etc
    /// files there.
    GiveState {
        dir: PathBuf,
        uid: u32,
        gid: u32,
    },
    /// A named volume, made if missing, and share-locked while the
    /// container runs.
    Volume {
        name: String,
        dir: PathBuf,
    },
    /// The container's cgroup, made and held by cg-limit's library.
    Cgroup {
        name: cg_limit::Name,
        limits: Limits,
    },
    /// `clone()` the container's first process into new namespaces.
    Clone(Vec<Namespace>),
    /// Parent, rootless: map the caller's ids to root in the child's new
    /// user namespace.
    MapIds(IdMap),
    /// Parent, `--userns` as root: idmapped copies of the root's layers
    /// (or of the `--rootfs` directory), passed to the child.
    IdmapLayers {
        sources: Vec<PathBuf>,
        /// The named volumes' directories, idmapped too.
        volumes: Vec<PathBuf>,
    },
    /// Parent: move the child into the cgroup, before it runs anything.
    JoinCgroup {
        dirs: Vec<PathBuf>,
    },
    /// Parent: plug the child's network namespace into a bridge with a
    /// veth pair, by veth-bridge's library: the bridge made first if it is
    /// the default and missing, NAT on, then the ports published.
    Connect {
        bridge: String,
        ports: Vec<Port>,
    },
    /// Parent: the container's address back, its published ports removed
    /// (its veth pair went with its network namespace).
    Disconnect {
        bridge: String,
    },
    /// Parent: tell the child to go on.
    Release,
    /// Parent: the command runs (the child's report pipe closed on
    /// exec): its pid, namespaces and address recorded; with `-d`, the
    /// waiting `run` is told, and this supervisor lets go of the terminal.
    Started {
        dir: PathBuf,
        detached: bool,
    },
    /// Parent: wait for the command, passing signals on; with `-t`,
    /// relaying between the host's terminal and the container's.
    Wait {
        tty: bool,
    },
    /// Parent, without `--rm`: how the command ended, kept with the
    /// container's state for `ps -a` and `inspect`.
    RecordExit {
        dir: PathBuf,
    },
    RemoveCgroup {
        name: cg_limit::Name,
    },
    RemoveState {
        dir: PathBuf,
    },
    /// Child: wait until the parent has set things up from outside.
    AwaitParent,
    /// Child, `-d`: stdout and stderr to the container's log, stdin from
    /// /dev/null.
    Output {
        log: PathBuf,
    },
    /// Child, in a user namespace: take the ids 0 of it, so that the host
    /// ids the map gives root are this process's own. `groups`: drop the
    /// supplementary groups too (not possible once setgroups is denied).
    BecomeRoot {
        groups: bool,
    },
    DeathSignal,
    Unshare(Vec<Namespace>),
    SetHostname(String),
    MakePrivate,
    /// The idmapped layers from the parent, attached at `targets`; with
    /// `root`, the one target is the container's root.
    AttachLayers {
        targets: Vec<PathBuf>,
        root: bool,
    },
    /// The overlay root, mounted by overlay-stack's library.
    Overlay(Stack),
    /// `--rootfs DIR`: the directory bound onto the mount point.
    BindRoot {
        dir: PathBuf,
        target: PathBuf,
    },
    Mount(Mount),
    Bind(Bind),
    Symlink {
        target: &'static str,
        link: PathBuf,
    },
    Mask(&'static str),
    ReadOnly(&'static str),
    PivotRoot(PathBuf),
    DetachOldRoot,
    /// `-t`: a terminal from the container's own devpts, its master
    /// passed out to mini-run.
    Console,
    /// Without `-t`: a session of its own, without a controlling terminal.
    NewSession,
    DropCapabilities(Vec<Capability>),
    SetUser {
        uid: u32,
        gid: u32,
    },
    NoNewPrivileges,
    Chdir(PathBuf),
    CloseFds,
    /// `--init`: fork; pid 1 stays as the init, its child goes on to exec.
    Init,
    Exec {
        argv: Vec<String>,
        env: Vec<String>,
        /// Pid 2, the child of the init, rather than pid 1.
        under_init: bool,
    },
}

/// One step of mini-run's plan: a call and the process that makes it.
pub type RunStep = Sided<Op>;

fn quoted(path: &Path) -> String {
    format!("\"{}\"", path.display())
}

/// `MS_NOSUID|MS_NODEV`: the flags as a C programmer writes them.
pub fn flag_names(flags: MsFlags) -> String {
    const NAMES: &[(MsFlags, &str)] = &[
        (MsFlags::MS_BIND, "MS_BIND"),
        (MsFlags::MS_REC, "MS_REC"),
        (MsFlags::MS_REMOUNT, "MS_REMOUNT"),
        (MsFlags::MS_RDONLY, "MS_RDONLY"),
        (MsFlags::MS_NOSUID, "MS_NOSUID"),
        (MsFlags::MS_NODEV, "MS_NODEV"),
        (MsFlags::MS_NOEXEC, "MS_NOEXEC"),
        (MsFlags::MS_STRICTATIME, "MS_STRICTATIME"),
        (MsFlags::MS_PRIVATE, "MS_PRIVATE"),
    ];
    let names: Vec<&str> = NAMES
        .iter()
        .filter(|(f, _)| flags.contains(*f))
        .map(|(_, n)| *n)
        .collect();
    if names.is_empty() {
        "0".into()
    } else {
        names.join("|")
    }
}

/// `--memory 64M --cpus 0.5`: the limits as cg-limit's flags.
pub fn limit_flags(limits: &Limits) -> String {
    let mut flags = String::new();
    if let Some(memory) = limits.memory {
        flags.push_str(&format!(" --memory {memory}"));
    }
    if let Some(cpus) = limits.cpus {
        flags.push_str(&format!(" --cpus {cpus}"));
    }
    if let Some(pids) = limits.pids {
        flags.push_str(&format!(" --pids {pids}"));
    }
    flags
}

/// `overlay-stack mount --lower … --upper … --work … TARGET`.
pub fn overlay_command(stack: &Stack) -> String {
    let mut command = String::from("overlay-stack mount");
    for lower in &stack.lowers {
        command.push_str(&format!(" --lower {}", lower.display()));
    }
    if let Some(Writable { upper, work }) = &stack.writable {
        command.push_str(&format!(
            " --upper {} --work {}",
            upper.display(),
            work.display()
        ));
    }
    command.push_str(&format!(" {}", stack.target.display()));
    command
}

impl Step for Op {
    fn call(&self) -> String {
        match self {
            Op::Detach => "fork(); setsid() in the child, which goes on; the parent waits for the id".into(),
            Op::MakeState { dir, name: None } => format!("mkdir({}, 0700); flock(LOCK_EX)", quoted(dir)),
            Op::MakeState { dir, name: Some(name) } => format!(
                "flock(containers, LOCK_EX); no other */name holds \"{name}\"; mkdir({}, 0700); flock(LOCK_EX); write name",
                quoted(dir)
            ),
            Op::WriteFile { path, content, .. } => {
                let first = content.lines().next().unwrap_or("");
                let more = if content.lines().count() > 1 {
                    "…"
                } else {
                    ""
                };
                format!("write {} \"{first}{more}\"", quoted(path))
            }
            Op::Volume { dir, .. } => {
                format!(
                    "mkdir({}, 0755) unless it exists; flock(LOCK_SH)",
                    quoted(dir)
                )
            }
            Op::Cgroup { name, limits } => {
                format!("cg-limit create {name}{}", limit_flags(limits))
            }
            Op::Clone(namespaces) => format!(
                "clone({}|SIGCHLD)",
                ns_unshare::namespace::flag_names(namespaces)
            ),
            Op::MapIds(map) if map.is_remapped() => format!(
                "write /proc/$CHILD/uid_map \"0 {} {}\"; write /proc/$CHILD/gid_map \"0 {} {}\"",
                map.uid, map.count, map.gid, map.count
            ),
            Op::MapIds(map) => format!(
                "write /proc/$CHILD/uid_map \"0 {} 1\"; write /proc/$CHILD/setgroups \"deny\"; write /proc/$CHILD/gid_map \"0 {} 1\"",
                map.uid, map.gid
            ),
            Op::GiveState { dir, uid, gid } => format!("chown -R {uid}:{gid} {}", quoted(dir)),
            Op::IdmapLayers { sources, volumes } => format!(
                "open_tree({}, OPEN_TREE_CLONE) for each of {} layer(s){}; mount_setattr(fd, MOUNT_ATTR_IDMAP, /proc/$CHILD/ns/user); sendmsg(layers socket, SCM_RIGHTS)",
                sources.first().map(|s| quoted(s)).unwrap_or_default(),
                sources.len(),
                match volumes.len() {
                    0 => String::new(),
                    n => format!(" and {n} named volume(s)"),
                }
            ),
            Op::AttachLayers { targets, .. } => format!(
                "recvmsg(layers socket); move_mount(fd, \"\", open({}, O_PATH), \"\", MOVE_MOUNT_F_EMPTY_PATH|MOVE_MOUNT_T_EMPTY_PATH) for each of {}",
                targets.first().map(|t| quoted(t)).unwrap_or_default(),
                targets.len()
            ),
            Op::JoinCgroup { dirs } => dirs
                .iter()
                .map(|d| format!("write {} \"$CHILD\"", quoted(&d.join("cgroup.procs"))))
                .collect::<Vec<_>>()
                .join("; "),
            Op::Connect { bridge, ports } => connect_commands(bridge, ports),
            Op::Disconnect { bridge } => format!("veth-bridge disconnect {bridge} --pid $CHILD"),
            Op::Release => "write(sync pipe, \"go\")".into(),
            Op::Started { dir, detached } => format!(
                "read(report pipe) → EOF: the command runs; readlink /proc/$CHILD/ns/*; write {}{}",
                quoted(&dir.join(crate::record::STARTED)),
                if *detached { "; write(id pipe, ID); dup2(/dev/null, 0, 1, 2)" } else { "" }
            ),
            Op::RecordExit { dir } => format!("write {}", quoted(&dir.join(crate::record::EXITED))),
            Op::Output { log } => format!(
                "dup2(open({}, O_WRONLY|O_APPEND|O_CREAT), 1 and 2); dup2(open(\"/dev/null\"), 0)",
                quoted(log)
            ),
            Op::Wait { tty: false } => "waitpid(child)".into(),
            Op::Wait { tty: true } => "recvmsg(console socket) → the terminal's master; tcsetattr(stdin, raw); stdin → master → stdout until waitpid(child)".into(),
            Op::RemoveCgroup { name } => format!("cg-limit cleanup {name}"),
            Op::RemoveState { dir } => format!("rm -r {}", quoted(dir)),
            Op::AwaitParent => "read(sync pipe)".into(),
            Op::BecomeRoot { groups: true } => "setgroups(0, NULL); setresgid(0, 0, 0); setresuid(0, 0, 0)".into(),
            Op::BecomeRoot { groups: false } => "setresgid(0, 0, 0); setresuid(0, 0, 0)".into(),
            Op::DeathSignal => "prctl(PR_SET_PDEATHSIG, SIGKILL)".into(),
            Op::Unshare(namespaces) => {
                format!("unshare({})", ns_unshare::namespace::flag_names(namespaces))
            }
            Op::SetHostname(name) => format!("sethostname(\"{name}\")"),
            Op::MakePrivate => "mount(\"none\", \"/\", NULL, MS_REC|MS_PRIVATE, NULL)".into(),
            Op::Overlay(stack) => overlay_command(stack),
            Op::BindRoot { dir, target } => format!(
                "mount({}, {}, NULL, MS_BIND|MS_REC, NULL)",
                quoted(dir),
                quoted(target)
            ),
            Op::Mount(m) => format!(
                "mount(\"{}\", \"$ROOTFS{}\", \"{}\", {}, {})",
                m.source,
                m.target.display(),
                m.fstype,
                flag_names(m.flags),
                m.data.map_or("NULL".into(), |d| format!("\"{d}\""))
            ),
            Op::Bind(b) => {
                let mut call = if b.idmapped {
                    format!(
                        "move_mount(the idmapped copy of {}, \"\", open(\"$ROOTFS{}\", O_PATH), \"\", MOVE_MOUNT_F_EMPTY_PATH|MOVE_MOUNT_T_EMPTY_PATH)",
                        quoted(&b.source),
                        b.target.display()
                    )
                } else {
                    format!(
                        "mount({}, \"$ROOTFS{}\", NULL, MS_BIND|MS_REC, NULL)",
                        quoted(&b.source),
                        b.target.display()
                    )
                };
                if b.read_only {
                    call.push_str(&format!(
                        "; mount_setattr(\"$ROOTFS{}\", AT_RECURSIVE, MOUNT_ATTR_RDONLY)",
                        b.target.display()
                    ));
                }
                call
            }
            Op::Symlink { target, link } => {
                format!("symlink(\"{target}\", \"$ROOTFS{}\")", link.display())
            }
            Op::Mask(path) => format!(
                "mount(\"/dev/null\", \"$ROOTFS{path}\", NULL, MS_BIND, NULL), or on a directory mount(\"tmpfs\", …, MS_RDONLY, \"size=0\")"
            ),
            Op::ReadOnly(path) => format!(
                "mount(\"$ROOTFS{path}\", \"$ROOTFS{path}\", NULL, MS_BIND|MS_REC, NULL); mount(NULL, \"$ROOTFS{path}\", NULL, MS_BIND|MS_REMOUNT|MS_RDONLY, NULL)"
            ),
            Op::PivotRoot(root) => {
                format!("chdir({}); pivot_root(\".\", \".\")", quoted(root))
            }
            Op::DetachOldRoot => "umount2(\".\", MNT_DETACH); chdir(\"/\")".into(),
            Op::NewSession => "setsid()".into(),
            Op::Console => "open(\"/dev/ptmx\") → master, /dev/pts/N; sendmsg(console socket, SCM_RIGHTS, master); setsid(); ioctl(slave, TIOCSCTTY); dup2(slave, 0, 1, 2)".into(),
            Op::DropCapabilities(drop) => format!(
                "prctl(PR_CAPBSET_DROP, cap) for {}; capset(keep Docker's defaults)",
                security::names(drop, 3)
            ),
            Op::SetUser { uid, gid } => {
                format!("setgroups(0, NULL); setgid({gid}); setuid({uid})")
            }
            Op::NoNewPrivileges => "prctl(PR_SET_NO_NEW_PRIVS, 1)".into(),
            Op::Chdir(dir) => format!("chdir({})", quoted(dir)),
            Op::CloseFds => "fcntl(fd, F_SETFD, FD_CLOEXEC) for every fd above 2".into(),
            Op::Init => "fork(): pid 1 stays, as the init; its child, pid 2, goes on".into(),
            Op::Exec { argv, env, .. } => format!(
                "execve(\"{}\", [{}], [{} variables])",
                argv[0],
                argv.iter()
                    .map(|a| format!("\"{a}\""))
                    .collect::<Vec<_>>()
                    .join(", "),
                env.len()
            ),
        }
    }

    fn why(&self) -> String {
        match self {
            Op::Detach => "-d: mini-run stays behind as the container's supervisor, as containerd-shim or conmon does for Docker and Podman: a process of the host's that waits for the container and gives back what it held; the first mini-run prints the id and returns".into(),
            Op::Started { detached: false, .. } => "the command runs: its pid on the host and its namespaces are recorded, for ps, exec and inspect".into(),
            Op::Started { detached: true, .. } => "the command runs: its pid on the host and its namespaces are recorded, for ps, exec and inspect; the first mini-run prints the id and returns".into(),
            Op::RecordExit { .. } => "without --rm the container is kept, its upper layer and log too, for ps -a, logs and inspect, until mini-run rm".into(),
            Op::Output { .. } => "-d: nobody is at a terminal: what the command writes goes to a file in its state directory, which mini-run logs reads, and it reads nothing".into(),
            Op::MakeState { .. } => "the container's own directory under /run (rootless: in your runtime directory): its upper layer, its root's mount point, its /etc files; the lock says it is in use".into(),
            Op::WriteFile { why, .. } => (*why).into(),
            Op::Volume { name, .. } => format!("the named volume {name}: a directory mini-run keeps, made on first use and kept after the container for the next one; the shared lock tells mini-run volume rm it is in use"),
            Op::Cgroup { .. } => "every container gets a cgroup, limited or not: it holds the limits, counts what the container uses, and lets mini-run end every process in it".into(),
            Op::Clone(_) => "the container's first process is born in new namespaces, and is pid 1 in its PID namespace".into(),
            Op::MapIds(map) if map.is_remapped() => format!("--userns: the container's ids 0 to {} stand for host ids {} to {}, which no user or file of the host has: root inside is a stranger outside", map.count - 1, map.uid, map.uid as u64 + map.count as u64 - 1),
            Op::GiveState { .. } => "the container's root is a stranger to the host: the state directory becomes its own, for its upper layer and its /etc files".into(),
            Op::IdmapLayers { .. } => "the image's files are root's on disk, a stranger's to the container; an idmapped mount shows them through the container's id maps, as its root's, without a copy or a chown (Linux 5.12; overlayfs takes idmapped layers from 5.19)".into(),
            Op::AttachLayers { root: false, .. } => "the idmapped layers, attached in the container's own mount namespace, become the overlay's lower layers".into(),
            Op::AttachLayers { root: true, .. } => "the idmapped --rootfs directory, attached in the container's own mount namespace, is its root".into(),
            Op::MapIds(_) => "rootless: your own uid and gid stand for root in the container's user namespace (an unprivileged user may map only those, and must deny setgroups first); root there has every capability, but only over what its namespaces own".into(),
            Op::JoinCgroup { .. } => "the child joins the cgroup before it runs anything, so all it starts is counted and limited".into(),
            Op::Connect { ports, .. } if !ports.is_empty() => "the container's eth0, an address of the bridge's subnet and a route through its gateway, NAT to reach out, and its ports published on the host, as Docker's default network does".into(),
            Op::Connect { .. } => "the container's eth0, an address of the bridge's subnet and a route through its gateway, and NAT to reach out, as Docker's default network does".into(),
            Op::Disconnect { .. } => "the kernel took the veth pair with the network namespace; its address and published ports are given back".into(),
            Op::Release => "what is made from outside is ready (id maps, cgroup, network): the child may build the container".into(),
            Op::Wait { tty: false } => "wait for the container's command and exit with its status; SIGINT, SIGTERM and SIGHUP are passed on to it".into(),
            Op::Wait { tty: true } => "the host's terminal in raw mode, so every key reaches the container's terminal as it is (Ctrl-C included), its size passed on at each SIGWINCH; then the command's status, as without -t".into(),
            Op::RemoveCgroup { .. } => "end whatever is left in the container's cgroup and remove it".into(),
            Op::RemoveState { .. } => "the upper layer and the /etc files go with the container (as with docker run --rm)".into(),
            Op::AwaitParent => "wait until the parent has set this process up from outside: its id maps, its cgroup, its network".into(),
            Op::BecomeRoot { .. } => "a process keeps the host ids it was cloned with, which the map may not cover (host root's are not): it becomes the namespace's root, whose host ids the map gives; capabilities are kept, but only over what this user namespace owns".into(),
            Op::DeathSignal => "if mini-run dies, the kernel kills the container: nothing is left running unsupervised".into(),
            Op::Unshare(_) => "a cgroup namespace made inside the cgroup: the container sees its own cgroup as the root of /sys/fs/cgroup and /proc/self/cgroup".into(),
            Op::SetHostname(_) => "the new UTS namespace gets its own hostname: the container's short id, as Docker's".into(),
            Op::MakePrivate => "systemd makes / shared; a pivot_root with a shared parent fails with EINVAL, and the container's mounts would show up on the host".into(),
            Op::Overlay(_) => "the image's layers, read-only, under an upper layer of the container's own: every write is copied up there".into(),
            Op::BindRoot { .. } => "--rootfs: the directory itself is the root (writes go into it); a bind mount makes it a mount point for pivot_root".into(),
            Op::Mount(m) => m.why.into(),
            Op::Bind(b) => b.why.into(),
            Op::Symlink { .. } => "the standard /dev links a program expects".into(),
            Op::Mask(_) => "hidden: it would show the host's memory, keys or hardware to the container".into(),
            Op::ReadOnly(_) => "readable but not writable: these control the whole machine, not the container".into(),
            Op::PivotRoot(_) => "the rootfs becomes /, and the old root is stacked on top of it, to be detached (chroot would leave the host's root one chroot escape away)".into(),
            Op::DetachOldRoot => "the host's filesystem is gone from the container's mount namespace".into(),
            Op::NewSession => "a session of its own, without the host's terminal as its controlling terminal: ioctl(TIOCSTI), which pushes keys into a terminal's input, works only on one's own controlling terminal (or with CAP_SYS_ADMIN), so the container cannot type commands into the shell that started mini-run (the class of bubblewrap's CVE-2017-5226)".into(),
            Op::Console => "-t: a terminal of the container's own, /dev/pts/N of its devpts, as the controlling terminal of a new session and as stdin, stdout and stderr; its master goes out to mini-run, as runc's goes to its --console-socket".into(),
            Op::DropCapabilities(_) => "root inside keeps only Docker's default capabilities, less CAP_MKNOD: no mount, no module loading, no device nodes, no reboot".into(),
            Op::SetUser { .. } => "run the command as this user and group (-u)".into(),
            Op::NoNewPrivileges => "no setuid program the container runs can gain privileges".into(),
            Op::Chdir(_) => "the command starts in its working directory (-w)".into(),
            Op::CloseFds => "no descriptor of mini-run's leaks into the container (the runc CVE-2024-21626 class: a leaked host directory is a way out)".into(),
            Op::Init => "--init: pid 1 is a tiny init of mini-run's own, as Docker's is tini: it passes signals on to the command and reaps orphans; it drops every capability and is not dumpable, so the container cannot read mini-run's binary through /proc/1/exe".into(),
            Op::Exec { under_init: false, .. } => "the container's command replaces this process: it is pid 1".into(),
            Op::Exec { under_init: true, .. } => "the container's command replaces this process: it is pid 2, the init's child".into(),
        }
    }

    fn chapter(&self) -> Chapter {
        match self {
            Op::Cgroup { .. } | Op::JoinCgroup { .. } | Op::RemoveCgroup { .. } => chapter::CGROUPS,
            Op::Unshare(_) => chapter::CGROUP,
            Op::SetHostname(_) => chapter::UTS,
            Op::Overlay(_) => chapter::COPY_ON_WRITE,
            Op::MakePrivate
            | Op::BindRoot { .. }
            | Op::Mount(_)
            | Op::Symlink { .. }
            | Op::PivotRoot(_)
            | Op::DetachOldRoot => chapter::CONTAINER_MOUNTS,
            Op::Console => chapter::CONTAINERS,
            Op::NewSession => chapter::SECURITY,
            Op::Bind(b) => b.chapter,
            Op::Mask(_)
            | Op::ReadOnly(_)
            | Op::DropCapabilities(_)
            | Op::NoNewPrivileges
            | Op::CloseFds => chapter::SECURITY,
            Op::Connect { ports, .. } if !ports.is_empty() => chapter::NAT,
            Op::Connect { .. } | Op::Disconnect { .. } => chapter::NETWORK,
            Op::Clone(_) | Op::Wait { .. } | Op::AwaitParent | Op::DeathSignal | Op::Release => {
                chapter::CONTAINERS
            }
            Op::SetUser { .. } => chapter::USER,
            Op::MapIds(_)
            | Op::GiveState { .. }
            | Op::IdmapLayers { .. }
            | Op::AttachLayers { .. }
            | Op::BecomeRoot { .. } => chapter::ROOTLESS,
            Op::Init => chapter::PID,
            Op::Volume { .. } => chapter::CONTAINER_MOUNTS,
            Op::Detach | Op::Started { .. } | Op::RecordExit { .. } | Op::Output { .. } => {
                chapter::LIFECYCLE
            }
            Op::MakeState { .. }
            | Op::WriteFile { .. }
            | Op::RemoveState { .. }
            | Op::Chdir(_)
            | Op::Exec { .. } => chapter::CONTAINERS,
        }
    }
}

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// The filesystems every container gets, in order: `/proc`, a small
/// `/dev`, `/sys` read-only.
fn kernel_mounts(version: Version) -> Vec<Mount> {
    let mount = |source, target: &str, fstype, flags, data, why| Mount {
        source,
        target: PathBuf::from(target),
        fstype,
        flags,
        data,
        why,
    };
    let mut mounts = vec![
        mount(
            "proc",
            "/proc",
            "proc",
            NOSUID_NODEV_NOEXEC,
            None,
            "a proc of the new PID namespace: ps inside shows only the container's processes",
        ),
        mount(
            "tmpfs",
            "/dev",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
            Some("mode=755,size=65536k"),
            "an empty /dev of the container's own: only the few devices bound below, never the host's disks",
        ),
        mount(
            "devpts",
            "/dev/pts",
            "devpts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=0620"),
            "a new instance of devpts: the container's terminals, not the host's",
        ),
        mount(
            "shm",
            "/dev/shm",
            "tmpfs",
            NOSUID_NODEV_NOEXEC,
            Some("mode=1777,size=65536k"),
            "POSIX shared memory, private to the container (64 MiB, Docker's default)",
        ),
        mount(
            "mqueue",
            "/dev/mqueue",
            "mqueue",
            NOSUID_NODEV_NOEXEC,
            None,
            "POSIX message queues of the new IPC namespace",
        ),
        mount(
            "sysfs",
            "/sys",
            "sysfs",
            NOSUID_NODEV_NOEXEC | MsFlags::MS_RDONLY,
            None,
            "/sys read-only: programs read it, but its files configure the host's hardware",
        ),
    ];
    if version == Version::V2 {
        mounts.push(mount("cgroup", "/sys/fs/cgroup", "cgroup2", NOSUID_NODEV_NOEXEC | MsFlags::MS_RDONLY, None,
            "the cgroup filesystem, read-only: through the cgroup namespace the container sees its own cgroup as the root"));
    }
    mounts
}

/// The devices of `/dev`, bound from the host's.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// The standard links in `/dev`.
const DEV_LINKS: [(&str, &str); 5] = [
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
    ("pts/ptmx", "/dev/ptmx"),
];

/// `veth-bridge …` commands that connect the container as
/// [`Op::Connect`] does.
fn connect_commands(bridge: &str, ports: &[Port]) -> String {
    let mut commands = Vec::new();
    if bridge == DEFAULT_BRIDGE {
        commands.push(format!(
            "veth-bridge bridge add {bridge} (if missing); veth-bridge nat {bridge} on"
        ));
    }
    commands.push(format!("veth-bridge connect {bridge} --pid $CHILD"));
    for port in ports {
        commands.push(format!(
            "veth-bridge publish {bridge} {}:{}/{} --to $ADDR",
            port.host, port.container, port.proto
        ));
    }
    commands.join("; ")
}

/// The namespaces the container's first process is cloned into.
pub fn namespaces(container: &Container) -> Vec<Namespace> {
    // The user namespace first: the kernel makes it before the others in
    // the same clone, and they are owned by it.
    let mut namespaces = Vec::new();
    if container.userns.is_some() {
        namespaces.push(Namespace::User);
    }
    namespaces.extend([
        Namespace::Pid,
        Namespace::Mount,
        Namespace::Uts,
        Namespace::Ipc,
    ]);
    if container.network != Network::Host {
        namespaces.push(Namespace::Net);
    }
    namespaces
}

/// The stack of the container's root, or `None` for `--rootfs`.
pub fn stack(container: &Container, dirs: &Dirs, default_rootfs: &Path) -> Option<Stack> {
    let lowers = match &container.root {
        Root::Default => vec![default_rootfs.to_path_buf()],
        Root::Image { lowers, .. } => lowers.clone(),
        Root::Dir(_) => return None,
    };
    Some(Stack {
        lowers,
        writable: Some(Writable {
            upper: dirs.upper(),
            work: dirs.work(),
        }),
        target: dirs.rootfs(),
        // In a user namespace overlayfs may not use trusted.* xattrs.
        userxattr: container.userns.is_some(),
    })
}

/// Where the container's cgroup is made: the machine's hierarchy (`fs`),
/// or none (rootless without a delegated cgroup), on a machine with
/// `version`.
#[derive(Debug, Clone, Copy)]
pub struct Cgroups<'a> {
    pub fs: Option<&'a dyn CgroupFs>,
    pub version: Version,
}

impl<'a> Cgroups<'a> {
    pub fn of(fs: &'a dyn CgroupFs) -> Self {
        Self {
            fs: Some(fs),
            version: fs.version(),
        }
    }
}

/// The last steps of every process that goes into a container, before its
/// exec: the container's own first process, and each that `exec` starts.
pub fn last_steps(workdir: &Path, user: Option<crate::container::User>) -> Vec<Op> {
    let mut steps = vec![
        Op::DropCapabilities(security::to_drop()),
        // The working directory is made and entered as root, before the
        // switch of user, as Docker does: the user may not write to its
        // parent.
        Op::Chdir(workdir.to_path_buf()),
    ];
    if let Some(user) = user {
        steps.push(Op::SetUser {
            uid: user.uid,
            gid: user.gid,
        });
    }
    steps.extend([Op::NoNewPrivileges, Op::CloseFds]);
    steps
}

/// What `config.json` keeps of the container.
fn record_of(
    container: &Container,
    id: &Id,
    hostname: &str,
    cgroup: &[PathBuf],
    stack: Option<&Stack>,
) -> record::Config {
    let image = match &container.root {
        Root::Default => "busybox".to_string(),
        Root::Image { dir, .. } | Root::Dir(dir) => dir.display().to_string(),
    };
    let mut limits = std::collections::BTreeMap::new();
    if let Some(memory) = container.limits.memory {
        limits.insert("memory".to_string(), memory.to_string());
    }
    if let Some(cpus) = &container.limits.cpus {
        limits.insert("cpus".to_string(), cpus.to_string());
    }
    if let Some(pids) = &container.limits.pids {
        limits.insert("pids".to_string(), pids.to_string());
    }
    let volumes = container
        .volumes
        .iter()
        .map(|v| {
            let source = match &v.source {
                Source::Host(path) => path.display().to_string(),
                Source::Named(name) => name.clone(),
            };
            let ro = if v.read_only { ":ro" } else { "" };
            format!("{source}:{}{ro}", v.target.display())
        })
        .collect();
    record::Config {
        id: id.full().to_string(),
        name: container.name.clone(),
        created: record::now(),
        image,
        command: container.command.clone(),
        env: container.env.clone(),
        workdir: container.workdir.clone(),
        user: container.user.map(|u| format!("{}:{}", u.uid, u.gid)),
        hostname: hostname.to_string(),
        network: match &container.network {
            Network::None => "none".into(),
            Network::Host => "host".into(),
            Network::Bridge(name) => format!("bridge {name}"),
        },
        ports: container.ports.iter().map(ToString::to_string).collect(),
        volumes,
        limits,
        cgroup: cgroup.to_vec(),
        layers: stack.map(|s| s.lowers.clone()).unwrap_or_default(),
        upper: stack.and_then(|s| s.writable.as_ref().map(|w| w.upper.clone())),
        rootfs: stack.map_or_else(|| Dirs::of(id).rootfs(), |s| s.target.clone()),
        init: container.init,
        tty: container.tty,
        detached: container.detach,
        remove: container.remove,
        userns: container.userns,
    }
}

/// The whole plan for `mini-run run`.
pub fn run_plan(
    container: &Container,
    id: &Id,
    cgroups: Cgroups,
    default_rootfs: &Path,
) -> Result<Plan<RunStep>, Error> {
    let dirs = Dirs::of(id);
    let hostname = container
        .hostname
        .clone()
        .unwrap_or_else(|| id.short().to_string());
    let cgroup_name = id.cgroup();
    if let Some(fs) = cgroups.fs {
        fs.check(&container.limits.controllers())?;
    }
    let remapped = container.userns.filter(IdMap::is_remapped);
    let mut plan = Plan::new();
    let mut push = |side: Side, op: Op| plan.push(Sided { side, op });
    use Side::{Caller, Child, Parent};

    if container.detach {
        push(Caller, Op::Detach);
    }
    push(
        Caller,
        Op::MakeState {
            dir: dirs.dir.clone(),
            name: container.name.clone(),
        },
    );
    push(
        Caller,
        Op::WriteFile {
            path: dirs.etc("hostname"),
            content: format!("{hostname}\n"),
            why: "the container's /etc/hostname, bound over the image's",
        },
    );
    push(
        Caller,
        Op::WriteFile {
            path: dirs.etc("hosts"),
            content: state::hosts(&hostname),
            why: "the container's /etc/hosts: loopback and its own name",
        },
    );
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    push(
        Caller,
        Op::WriteFile {
            path: dirs.etc("resolv.conf"),
            content: state::resolv_conf(&host_resolv, container.network != Network::Host),
            why: if container.network == Network::Host {
                "the host's /etc/resolv.conf, as it is: the container shares the host's network"
            } else {
                "the host's /etc/resolv.conf, without nameservers on loopback: 127.0.0.53 means nothing in another network namespace"
            },
        },
    );
    let root_stack = stack(container, &dirs, default_rootfs);
    let cgroup_dirs: Vec<PathBuf> = match cgroups.fs {
        Some(fs) => fs
            .layout()
            .cgroup(&cgroup_name)
            .distinct_dirs()
            .iter()
            .map(|d| d.to_path_buf())
            .collect(),
        None => Vec::new(),
    };
    let config = record_of(container, id, &hostname, &cgroup_dirs, root_stack.as_ref());
    push(
        Caller,
        Op::WriteFile {
            path: dirs.dir.join(record::CONFIG),
            content: record::to_json(&config),
            why: "the container as it was asked for, kept with it: ps, inspect and exec read it",
        },
    );
    if let Some(map) = remapped {
        push(
            Caller,
            Op::GiveState {
                dir: dirs.dir.clone(),
                uid: map.uid,
                gid: map.gid,
            },
        );
    }
    for volume in &container.volumes {
        if let Source::Named(name) = &volume.source {
            push(
                Caller,
                Op::Volume {
                    name: name.clone(),
                    dir: crate::volume::dir(name),
                },
            );
        }
    }
    if cgroups.fs.is_some() {
        push(
            Caller,
            Op::Cgroup {
                name: cgroup_name.clone(),
                limits: container.limits.clone(),
            },
        );
    }
    push(Caller, Op::Clone(namespaces(container)));

    if let Some(map) = container.userns {
        push(Parent, Op::MapIds(map));
    }
    if remapped.is_some() {
        let sources = match (&root_stack, &container.root) {
            (Some(stack), _) => stack.lowers.clone(),
            (None, Root::Dir(dir)) => vec![dir.clone()],
            (None, _) => unreachable!("only --rootfs has no stack"),
        };
        let volumes = container
            .volumes
            .iter()
            .filter_map(|v| match &v.source {
                Source::Named(name) => Some(crate::volume::dir(name)),
                Source::Host(_) => None,
            })
            .collect();
        push(Parent, Op::IdmapLayers { sources, volumes });
    }
    if cgroups.fs.is_some() {
        push(
            Parent,
            Op::JoinCgroup {
                dirs: cgroup_dirs.clone(),
            },
        );
    }
    if let Network::Bridge(bridge) = &container.network {
        push(
            Parent,
            Op::Connect {
                bridge: bridge.clone(),
                ports: container.ports.clone(),
            },
        );
    }
    push(Parent, Op::Release);

    push(Child, Op::AwaitParent);
    if container.userns.is_some() {
        push(
            Child,
            Op::BecomeRoot {
                groups: remapped.is_some(),
            },
        );
    }
    if container.detach {
        push(
            Child,
            Op::Output {
                log: dirs.dir.join(record::LOG),
            },
        );
    }
    push(Child, Op::DeathSignal);
    push(Child, Op::Unshare(vec![Namespace::Cgroup]));
    push(Child, Op::SetHostname(hostname));
    push(Child, Op::MakePrivate);
    let rootfs = dirs.rootfs();
    match (root_stack, &container.root) {
        (Some(mut stack), _) => {
            if remapped.is_some() {
                let targets: Vec<PathBuf> =
                    (0..stack.lowers.len()).map(|i| dirs.layer(i)).collect();
                push(
                    Child,
                    Op::AttachLayers {
                        targets: targets.clone(),
                        root: false,
                    },
                );
                stack.lowers = targets;
            }
            push(Child, Op::Overlay(stack))
        }
        (None, Root::Dir(_)) if remapped.is_some() => push(
            Child,
            Op::AttachLayers {
                targets: vec![rootfs.clone()],
                root: true,
            },
        ),
        (None, Root::Dir(dir)) => push(
            Child,
            Op::BindRoot {
                dir: dir.clone(),
                target: rootfs.clone(),
            },
        ),
        (None, _) => unreachable!("only --rootfs has no stack"),
    }
    for mount in kernel_mounts(cgroups.version) {
        push(Child, Op::Mount(mount));
    }
    for device in DEVICES {
        push(
            Child,
            Op::Bind(Bind {
                source: Path::new("/dev").join(device),
                target: Path::new("/dev").join(device),
                read_only: false,
                idmapped: false,
                make: Make::File,
                why: "a device the container may use, bound from the host's; it can make no others (CAP_MKNOD is dropped)",
                chapter: chapter::CONTAINER_MOUNTS,
            }),
        );
    }
    for (target, link) in DEV_LINKS {
        push(
            Child,
            Op::Symlink {
                target,
                link: PathBuf::from(link),
            },
        );
    }
    for name in ["hostname", "hosts", "resolv.conf"] {
        push(
            Child,
            Op::Bind(Bind {
                source: dirs.etc(name),
                target: Path::new("/etc").join(name),
                read_only: false,
                idmapped: false,
                make: Make::File,
                why: "a file of the container's own over the image's, as Docker binds its /etc files",
                chapter: chapter::CONTAINER_MOUNTS,
            }),
        );
    }
    for volume in &container.volumes {
        let idmapped = remapped.is_some() && matches!(volume.source, Source::Named(_));
        let (source, make, why) = match &volume.source {
            Source::Host(path) => (
                path.clone(),
                if path.is_dir() { Make::Dir } else { Make::File },
                "a bind mount (-v): the host's directory itself, shared with the container; its target is resolved inside the rootfs, so an image's symlink cannot point it at the host",
            ),
            Source::Named(name) if idmapped => (
                crate::volume::dir(name),
                Make::Dir,
                "a named volume, idmapped as the layers are: its files keep the container's ids on disk, so root in any container, with --userns or without, finds them its own",
            ),
            Source::Named(name) => (
                crate::volume::dir(name),
                Make::Dir,
                "a named volume (-v NAME:…) is a bind mount too, of the directory mini-run keeps for it",
            ),
        };
        push(
            Child,
            Op::Bind(Bind {
                source,
                target: volume.target.clone(),
                read_only: volume.read_only,
                idmapped,
                make,
                why,
                chapter: chapter::CONTAINER_MOUNTS,
            }),
        );
    }
    for path in security::MASKED {
        push(Child, Op::Mask(path));
    }
    for path in security::READ_ONLY {
        push(Child, Op::ReadOnly(path));
    }
    push(Child, Op::PivotRoot(rootfs));
    push(Child, Op::DetachOldRoot);
    push(
        Child,
        if container.tty {
            Op::Console
        } else {
            Op::NewSession
        },
    );
    for op in last_steps(&container.workdir, container.user) {
        push(Child, op);
    }
    if container.init {
        push(Child, Op::Init);
    }
    push(
        Child,
        Op::Exec {
            argv: container.command.clone(),
            env: container.env.clone(),
            under_init: container.init,
        },
    );

    push(
        Parent,
        Op::Started {
            dir: dirs.dir.clone(),
            detached: container.detach,
        },
    );
    push(Parent, Op::Wait { tty: container.tty });
    if let Network::Bridge(bridge) = &container.network {
        push(
            Parent,
            Op::Disconnect {
                bridge: bridge.clone(),
            },
        );
    }
    if cgroups.fs.is_some() {
        push(Parent, Op::RemoveCgroup { name: cgroup_name });
    }
    push(
        Parent,
        if container.remove {
            Op::RemoveState { dir: dirs.dir }
        } else {
            Op::RecordExit { dir: dirs.dir }
        },
    );
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_read_like_c() {
        assert_eq!(
            flag_names(NOSUID_NODEV_NOEXEC),
            "MS_NOSUID|MS_NODEV|MS_NOEXEC"
        );
        assert_eq!(flag_names(MsFlags::empty()), "0");
    }

    /// The plan of `run --network none` on the default rootfs at /rootfs,
    /// in a user namespace with `map`, without a cgroup.
    fn plan_in_userns(map: IdMap) -> (Plan<RunStep>, Id) {
        use clap::Parser;
        let cli =
            crate::cli::Cli::try_parse_from(["mini-run", "run", "--network", "none"]).unwrap();
        let crate::cli::Command::Run(args) = cli.command else {
            unreachable!()
        };
        let mut container = Container::from_args(&args).unwrap();
        container.userns = Some(map);
        let id = Id::new().unwrap();
        let cgroups = Cgroups {
            fs: None,
            version: Version::V2,
        };
        let plan = run_plan(&container, &id, cgroups, Path::new("/rootfs")).unwrap();
        (plan, id)
    }

    #[test]
    fn rootless_the_user_namespace_comes_first_and_no_cgroup_without_one() {
        let (plan, _) = plan_in_userns(IdMap {
            uid: 1000,
            gid: 1000,
            count: 1,
        });
        let calls: Vec<String> = plan.steps().iter().map(|s| s.op.call()).collect();
        let clone = calls.iter().position(|c| c.starts_with("clone(")).unwrap();
        assert!(
            calls[clone].starts_with("clone(CLONE_NEWUSER|"),
            "{}",
            calls[clone]
        );
        assert_eq!(
            calls[clone + 1],
            "write /proc/$CHILD/uid_map \"0 1000 1\"; write /proc/$CHILD/setgroups \"deny\"; write /proc/$CHILD/gid_map \"0 1000 1\""
        );
        assert!(
            !calls
                .iter()
                .any(|c| c.contains("cg-limit") || c.contains("cgroup.procs"))
        );
        assert!(
            plan.steps()
                .iter()
                .any(|s| matches!(&s.op, Op::Overlay(stack) if stack.userxattr))
        );
    }

    #[test]
    fn with_userns_as_root_the_layers_are_idmapped_and_the_state_given() {
        let (plan, id) = plan_in_userns(IdMap {
            uid: 1_000_000_000,
            gid: 1_000_000_000,
            count: 65536,
        });
        let ops: Vec<&Op> = plan.steps().iter().map(|s| &s.op).collect();
        let dirs = Dirs::of(&id);
        assert!(ops.contains(&&Op::GiveState {
            dir: dirs.dir.clone(),
            uid: 1_000_000_000,
            gid: 1_000_000_000
        }));
        assert!(ops.contains(&&Op::IdmapLayers {
            sources: vec![PathBuf::from("/rootfs")],
            volumes: vec![],
        }));
        // Root may map a range, and keeps setgroups(2) for -u.
        let map = ops.iter().find(|op| matches!(op, Op::MapIds(_))).unwrap();
        assert!(!map.call().contains("setgroups"), "{}", map.call());
        let attach = ops
            .iter()
            .position(|op| matches!(op, Op::AttachLayers { root: false, .. }))
            .unwrap();
        match ops[attach + 1] {
            Op::Overlay(stack) => assert_eq!(stack.lowers, vec![dirs.layer(0)]),
            other => panic!("after the layers: {other:?}"),
        }
        assert!(ops.contains(&&Op::BecomeRoot { groups: true }));
    }

    #[test]
    fn kernel_mounts_put_proc_first_and_cgroup2_only_on_v2() {
        let v1 = kernel_mounts(Version::V1);
        assert_eq!(v1[0].target, Path::new("/proc"));
        assert!(v1.iter().all(|m| m.fstype != "cgroup2"));
        assert!(
            kernel_mounts(Version::V2)
                .iter()
                .any(|m| m.fstype == "cgroup2")
        );
        // /dev is mounted before what goes in it.
        let dev = v1
            .iter()
            .position(|m| m.target == Path::new("/dev"))
            .unwrap();
        let pts = v1
            .iter()
            .position(|m| m.target == Path::new("/dev/pts"))
            .unwrap();
        assert!(dev < pts);
    }
}
