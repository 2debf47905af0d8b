//! # The network sandbox
//!
//! A lesson that changes a network stack — makes a bridge, moves one end of
//! a veth pair into a namespace, adds a route or a firewall rule — must
//! never change the machine's own. A lesson that says `sandbox: network`
//! gets a "host" of its own instead:
//!
//! * a new **network namespace**, whose only interface is `lo`, brought up
//!   (see [network_namespaces(7)]): its interfaces, routes, neighbours,
//!   nftables rules and `net.*` settings are the lesson's alone;
//! * a new **mount namespace**, private to it (nothing mounted in it
//!   reaches the machine's), with an empty tmpfs on `/run`: the toolkit
//!   keeps its leases under `/run/underhood/net/BRIDGE`, and `ip netns`
//!   its names under `/run/netns`, so two lessons, or a lesson and a test,
//!   that use the same bridge name never see each other's.
//!
//! Every step's `sh -c` runs inside both. A learner gets the same sandbox
//! by hand with [`BY_HAND`], which is what the book shows.
//!
//! Why a tmpfs on the whole of `/run` and not on `/run/underhood` alone:
//! since Linux 3.18 a directory that is a mount point in *another* mount
//! namespace can be removed, and the mount there goes with it; the toolkit
//! removes `/run/underhood` when it is empty, and a test on the machine
//! doing so would pull the sandbox's tmpfs away in mid-lesson. Nobody
//! removes `/run`.
//!
//! The namespaces are kept alive by two file descriptors this process
//! holds (`/proc/thread-self/ns/{net,mnt}`), not by bind mounts: if `lab`
//! itself dies, they go with it.
//!
//! Namespaces belong to threads, and a thread may enter a mount namespace
//! once it stops sharing its root and working directory with the others
//! (`unshare(CLONE_FS)`, see [setns(2)]). So the sandbox is made, and every
//! step spawned, from a short-lived thread that entered it: the child
//! inherits the thread's namespaces, the rest of the process (and the other
//! lessons the tests run beside it) stays where it was. A `pre_exec` hook
//! in the child would do the same, but needs `unsafe`, which this workspace
//! keeps in one room (`steps::sys`).
//!
//! At the end, whatever happened, [`NetworkSandbox::tear_down`] ends every
//! process the lesson left in its namespaces (found through
//! `/proc/PID/ns/*`), unmounts what the lesson mounted under its scratch
//! directory, and closes the descriptors: with the last reference gone the
//! kernel drops the mount namespace, the namespaces bind-mounted in it,
//! the network namespace and every interface in them. (A process that
//! moved into new namespaces of its own, no file of which the lesson kept,
//! is out of this reach; no lesson has reason to start one and leave it.)
//!
//! [network_namespaces(7)]: https://man7.org/linux/man-pages/man7/network_namespaces.7.html
//! [setns(2)]: https://man7.org/linux/man-pages/man2/setns.2.html

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use steps::error::describe;

/// The same sandbox by hand, in a root shell: a shell in a new network
/// namespace and a new mount namespace (util-linux `unshare` makes its
/// mounts private, as the runner does), with a tmpfs on `/run` and `lo`
/// up. `exit` leaves it, and the namespaces go with the shell.
pub const BY_HAND: &str =
    "unshare --net --mount sh -c 'mount -t tmpfs tmpfs /run && ip link set lo up && exec bash'";

/// The kinds of namespace a lesson may keep in a file (the names of
/// `/proc/PID/ns/*`, and what an nsfs mount's root says: `net:[4026532281]`).
const NAMESPACE_KINDS: [&str; 8] = ["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"];

/// How long the teardown waits for the processes it killed to go.
const END_WITHIN: Duration = Duration::from_secs(5);

/// A lesson's network namespace and mount namespace, held open.
#[derive(Debug)]
pub struct NetworkSandbox {
    net: File,
    mnt: File,
    /// The tmpfs on `/run`, by mount ID: what is mounted below it is the
    /// lesson's.
    run_mount: u64,
    scratch: PathBuf,
    torn_down: bool,
}

/// A process found in a lesson's namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    /// Its `comm`, as `ps` shows it.
    pub name: String,
}

impl Process {
    fn of(pid: u32) -> Self {
        let name = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|name| name.trim().to_string())
            .unwrap_or_else(|_| "?".into());
        Self { pid, name }
    }
}

/// What a lesson left behind in its sandbox, which the teardown ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Processes still running in the lesson's namespaces.
    pub processes: Vec<Process>,
    /// Mounts under the scratch directory, unmounted.
    pub mounts: Vec<PathBuf>,
}

impl NetworkSandbox {
    /// Makes the namespaces, the tmpfs on `/run` and brings `lo` up; the
    /// steps will run in `scratch`, which must exist and lie outside `/run`.
    pub fn new(scratch: &Path) -> io::Result<Self> {
        if scratch.starts_with("/run") {
            return Err(io::Error::other(format!(
                "the lesson's scratch directory {} is under /run, which the network sandbox \
                 covers with a tmpfs; set TMPDIR to a directory outside /run",
                scratch.display()
            )));
        }
        let (net, mnt, run_mount) = in_a_thread(make)?;
        Ok(Self {
            net,
            mnt,
            run_mount,
            scratch: scratch.to_path_buf(),
            torn_down: false,
        })
    }

    /// Spawns `command` inside the sandbox.
    pub fn spawn(&self, command: &mut Command) -> io::Result<Child> {
        in_a_thread(|| {
            self.enter(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWNET)?;
            command.spawn()
        })
    }

    /// Moves the calling thread into the sandbox's namespaces.
    fn enter(&self, kinds: CloneFlags) -> io::Result<()> {
        // A thread shares its root and working directory with the others
        // until it unshares them, and setns() refuses to move a thread
        // that shares them into another mount namespace.
        nix::sched::unshare(CloneFlags::CLONE_FS).map_err(|e| sys("unshare(CLONE_FS)", e))?;
        if kinds.contains(CloneFlags::CLONE_NEWNS) {
            nix::sched::setns(&self.mnt, CloneFlags::CLONE_NEWNS)
                .map_err(|e| sys("setns(mnt, CLONE_NEWNS)", e))?;
        }
        if kinds.contains(CloneFlags::CLONE_NEWNET) {
            nix::sched::setns(&self.net, CloneFlags::CLONE_NEWNET)
                .map_err(|e| sys("setns(net, CLONE_NEWNET)", e))?;
        }
        Ok(())
    }

    /// Ends every process the lesson left in its namespaces, unmounts what
    /// it mounted under the scratch directory, and lets the namespaces go.
    /// Returns what it had to end; an error names what survived.
    pub fn tear_down(mut self) -> io::Result<Leftovers> {
        self.end_everything()
    }

    fn end_everything(&mut self) -> io::Result<Leftovers> {
        self.torn_down = true;
        let mounts = in_a_thread(|| {
            self.enter(CloneFlags::CLONE_NEWNS)?;
            Ok(self.lessons_mounts(&read_mountinfo("/proc/thread-self/mountinfo")?))
        })?;
        // The lesson's processes: in its network or mount namespace, or in
        // a namespace it keeps in a file (`unshare --net=web.ns`, `ip netns
        // add web`). Never the machine's own namespaces, whatever a lesson
        // bind-mounted: those hold every other process.
        let mut namespaces: Vec<(&str, u64)> = vec![
            ("net", self.net.metadata()?.ino()),
            ("mnt", self.mnt.metadata()?.ino()),
        ];
        namespaces.extend(mounts.iter().filter_map(Mount::namespace));
        namespaces.retain(|(kind, inode)| {
            ["/proc/1", "/proc/self"].iter().all(|proc| {
                std::fs::metadata(format!("{proc}/ns/{kind}")).map_or(true, |m| m.ino() != *inode)
            })
        });
        let (ended, survivors) = end_processes(&namespaces);
        let under_scratch: Vec<PathBuf> = mounts
            .iter()
            .filter(|m| m.point.starts_with(&self.scratch))
            .map(|m| m.point.clone())
            .collect();
        let unmounted = in_a_thread(|| {
            self.enter(CloneFlags::CLONE_NEWNS)?;
            // Deepest first, so that a mount is never detached from under
            // another one.
            let mut points = under_scratch.clone();
            points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
            for point in &points {
                nix::mount::umount2(point, MntFlags::MNT_DETACH).map_err(|e| {
                    sys(&format!("umount2(\"{}\", MNT_DETACH)", point.display()), e)
                })?;
            }
            Ok(points)
        })?;
        if !survivors.is_empty() {
            return Err(io::Error::other(format!(
                "{} of the lesson's sandbox did not end within {}s of SIGKILL; \
                 the sandbox stays until {} do",
                name_processes(&survivors),
                END_WITHIN.as_secs(),
                if survivors.len() == 1 { "it" } else { "they" },
            )));
        }
        Ok(Leftovers {
            processes: ended,
            mounts: unmounted,
        })
    }

    /// The mounts the lesson made: under its scratch directory, or on the
    /// sandbox's `/run`.
    fn lessons_mounts(&self, mounts: &[Mount]) -> Vec<Mount> {
        let parents: HashMap<u64, u64> = mounts.iter().map(|m| (m.id, m.parent)).collect();
        let below_run = |mut id: u64| {
            // A mount's ancestors end at the namespace's root, whose parent
            // is outside the namespace; the walk is bounded for safety.
            for _ in 0..mounts.len() {
                match parents.get(&id) {
                    Some(&parent) if parent == self.run_mount => return true,
                    Some(&parent) if parent != id => id = parent,
                    _ => return false,
                }
            }
            false
        };
        mounts
            .iter()
            .filter(|m| m.point.starts_with(&self.scratch) || below_run(m.id))
            .cloned()
            .collect()
    }
}

impl Drop for NetworkSandbox {
    fn drop(&mut self) {
        if !self.torn_down {
            let _ = self.end_everything();
        }
    }
}

/// Makes the sandbox in the calling thread, which must be one of its own:
/// its namespaces change.
fn make() -> io::Result<(File, File, u64)> {
    nix::sched::unshare(CloneFlags::CLONE_FS | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWNET)
        .map_err(|e| {
            let error = sys("unshare(CLONE_NEWNET|CLONE_NEWNS)", e);
            if e == Errno::EPERM {
                io::Error::other(format!(
                    "{error}; the network sandbox needs root: run lab with sudo"
                ))
            } else {
                error
            }
        })?;
    // What the lesson mounts must not reach the machine's mount table, as
    // `unshare --mount` does by default.
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| sys("mount(NULL, \"/\", NULL, MS_REC|MS_PRIVATE, NULL)", e))?;
    nix::mount::mount(
        Some("tmpfs"),
        "/run",
        Some("tmpfs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| sys("mount(\"tmpfs\", \"/run\", \"tmpfs\", 0, NULL)", e))?;
    let open = |path: &str| {
        File::open(path).map_err(|e| {
            io::Error::other(format!(
                "open(\"{path}\"): {}",
                steps::error::describe_io(&e)
            ))
        })
    };
    let net = open("/proc/thread-self/ns/net")?;
    let mnt = open("/proc/thread-self/ns/mnt")?;
    let run_mount = read_mountinfo("/proc/thread-self/mountinfo")?
        .iter()
        .rev()
        .find(|m| m.point == Path::new("/run"))
        .map(|m| m.id)
        .ok_or_else(|| io::Error::other("the tmpfs just mounted on /run is not in mountinfo"))?;
    bring_lo_up()?;
    Ok((net, mnt, run_mount))
}

/// `ip link set lo up`, the same command a learner types (the book shows
/// it), in the calling thread's network namespace.
fn bring_lo_up() -> io::Result<()> {
    let up = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            io::Error::other(format!(
                "ip link set lo up: {}; install iproute2",
                steps::error::describe_io(&e)
            ))
        })?;
    if !up.status.success() {
        return Err(io::Error::other(format!(
            "ip link set lo up in the sandbox failed ({}): {}",
            up.status,
            String::from_utf8_lossy(&up.stderr).trim()
        )));
    }
    Ok(())
}

/// Runs `work` in a thread of its own, whose namespaces it may change.
fn in_a_thread<T: Send>(work: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(work)
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the sandbox's thread panicked")))
    })
}

fn sys(call: &str, errno: Errno) -> io::Error {
    io::Error::other(format!("{call}: {}", describe(errno)))
}

/// One line of `/proc/PID/mountinfo`, the fields the sandbox needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub id: u64,
    pub parent: u64,
    /// The root of the mount within its filesystem: for a namespace file,
    /// `net:[4026532281]`.
    pub root: String,
    pub point: PathBuf,
    pub fstype: String,
}

impl Mount {
    /// Parses a line of mountinfo (see proc_pid_mountinfo(5)).
    pub fn parse(line: &str) -> Option<Self> {
        let fields: Vec<&str> = line.split(' ').collect();
        let separator = fields.iter().position(|f| *f == "-")?;
        Some(Self {
            id: fields.first()?.parse().ok()?,
            parent: fields.get(1)?.parse().ok()?,
            root: steps::mountinfo::unescape(fields.get(3)?),
            point: PathBuf::from(steps::mountinfo::unescape(fields.get(4)?)),
            fstype: fields.get(separator + 1)?.to_string(),
        })
    }

    /// The namespace a namespace file holds: its kind and inode.
    pub fn namespace(&self) -> Option<(&'static str, u64)> {
        if self.fstype != "nsfs" {
            return None;
        }
        let (kind, rest) = self.root.split_once(":[")?;
        let inode = rest.strip_suffix(']')?.parse().ok()?;
        let kind = NAMESPACE_KINDS.iter().find(|k| **k == kind)?;
        Some((kind, inode))
    }
}

fn read_mountinfo(path: &str) -> io::Result<Vec<Mount>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| io::Error::other(format!("read {path}: {}", steps::error::describe_io(&e))))?;
    Ok(text.lines().filter_map(Mount::parse).collect())
}

/// Kills, with SIGKILL, every process in one of `namespaces` until none
/// is left; returns those it ended and those that outlived [`END_WITHIN`].
fn end_processes(namespaces: &[(&str, u64)]) -> (Vec<Process>, Vec<Process>) {
    let deadline = Instant::now() + END_WITHIN;
    let mut ended: Vec<Process> = Vec::new();
    loop {
        let found = processes_in(namespaces);
        if found.is_empty() {
            return (ended, Vec::new());
        }
        if Instant::now() > deadline {
            return (ended, found.into_iter().map(Process::of).collect());
        }
        for pid in found {
            if !ended.iter().any(|p| p.pid == pid) {
                ended.push(Process::of(pid));
            }
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The processes (not this one) in any of `namespaces`. A zombie has
/// left its namespaces already, and is not counted.
fn processes_in(namespaces: &[(&str, u64)]) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            namespaces.iter().any(|(kind, inode)| {
                std::fs::metadata(format!("/proc/{pid}/ns/{kind}")).is_ok_and(|m| m.ino() == *inode)
            })
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// `2 processes (pid 41 sleep, pid 42 busybox)`.
pub fn name_processes(processes: &[Process]) -> String {
    let named: Vec<String> = processes
        .iter()
        .map(|p| format!("pid {} {}", p.pid, p.name))
        .collect();
    format!(
        "{} ({})",
        steps::units::plural(processes.len() as u64, "process", "processes"),
        named.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_name_their_namespace_files() {
        let line = "90 89 0:4 net:[4026532455] /run/netns/web rw shared:2 - nsfs nsfs rw";
        let mount = Mount::parse(line).unwrap();
        assert_eq!((mount.id, mount.parent), (90, 89));
        assert_eq!(mount.point, PathBuf::from("/run/netns/web"));
        assert_eq!(mount.namespace(), Some(("net", 4026532455)));
        let tmpfs = Mount::parse("88 68 0:40 / /run rw,relatime - tmpfs tmpfs rw").unwrap();
        assert_eq!(tmpfs.namespace(), None);
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        let line = r"91 88 0:4 net:[1] /tmp/a\040b\134c rw - nsfs nsfs rw";
        let mount = Mount::parse(line).unwrap();
        assert_eq!(mount.point, PathBuf::from(r"/tmp/a b\c"));
        assert_eq!(Mount::parse("not a mountinfo line"), None);
    }

    #[test]
    fn the_lessons_mounts_are_below_run_or_in_scratch() {
        let sandbox_mounts: Vec<Mount> = [
            "1 0 8:1 / / rw - ext4 /dev/sda1 rw",
            "30 1 0:30 / /run rw - tmpfs tmpfs rw",
            "88 30 0:40 / /run rw - tmpfs tmpfs rw",
            "89 88 0:40 /netns /run/netns rw - tmpfs tmpfs rw",
            "90 89 0:4 net:[7] /run/netns/web rw - nsfs nsfs rw",
            "91 30 0:4 net:[8] /run/docker/netns/x rw - nsfs nsfs rw",
            "92 1 0:4 net:[9] /tmp/lab-22/db.ns rw - nsfs nsfs rw",
        ]
        .iter()
        .map(|l| Mount::parse(l).unwrap())
        .collect();
        // Only the structure matters here: no namespaces are made.
        let (net, mnt) = (
            File::open("/dev/null").unwrap(),
            File::open("/dev/null").unwrap(),
        );
        let sandbox = NetworkSandbox {
            net,
            mnt,
            run_mount: 88,
            scratch: PathBuf::from("/tmp/lab-22"),
            torn_down: true,
        };
        let ids: Vec<u64> = sandbox
            .lessons_mounts(&sandbox_mounts)
            .iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(ids, vec![89, 90, 92]);
    }

    #[test]
    fn processes_are_named_by_pid_and_name() {
        assert_eq!(
            name_processes(&[
                Process {
                    pid: 41,
                    name: "sleep".into()
                },
                Process {
                    pid: 42,
                    name: "busybox".into()
                }
            ]),
            "2 processes (pid 41 sleep, pid 42 busybox)"
        );
    }

    #[test]
    fn the_book_line_is_what_the_runner_does() {
        for part in [
            "--net",
            "--mount",
            "mount -t tmpfs tmpfs /run",
            "ip link set lo up",
        ] {
            assert!(BY_HAND.contains(part), "{part}");
        }
    }
}
