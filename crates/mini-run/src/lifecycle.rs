//! A container after `run`: `ps`, `logs`, `stop`, `kill`, `rm`,
//! `inspect` and `stats`. There is no daemon: each command reads the
//! container's records ([`crate::record`]) and acts on its processes and
//! its cgroup directly, as `docker` would ask `dockerd` to.
//!
//! A container's first process is an ordinary process of the host's. It is
//! reached through a *pidfd* ([pidfd_open(2)]), checked to be in the PID
//! namespace `run` recorded, so a signal never reaches a process that
//! took the number of one that has ended.
//!
//! [pidfd_open(2)]: https://man7.org/linux/man-pages/man2/pidfd_open.2.html

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use cg_limit::CgroupFs;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use serde_json::{Value, json};
use steps::{Error, Narrator, Palette};

use crate::record::{self, Found, Status};
use crate::state::Id;

/// Exit code when a container is in the wrong state for what was asked:
/// `rm` of a running one, `kill` of a stopped one. Bad input (an unknown
/// id, an ambiguous prefix, a bad signal) is 2, as in every tool.
pub const REFUSED: u8 = 1;

fn refused(message: String) -> Error {
    Error::with_code(message, REFUSED)
}

/// The container's first process, pinned by a pidfd.
#[derive(Debug)]
pub struct FirstProcess {
    pub pid: Pid,
    pub fd: OwnedFd,
}

/// The first process of a running container, checked to be the one its
/// `run` started: still in the PID namespace it was recorded in.
pub fn first_process(found: &Found) -> Result<FirstProcess, Error> {
    let Status::Running(started) = &found.status else {
        return Err(not_running(found));
    };
    let pid = Pid::from_raw(started.pid);
    let gone = || refused(format!("container {} has just exited", found.shown()));
    let fd = steps::sys::pidfd_open(pid).map_err(|e| match e {
        Errno::ESRCH => gone(),
        e => Error::sys(format!("pidfd_open({pid})"), e),
    })?;
    // Checked after the pidfd is open: if the number was taken by another
    // process since, that one is not in the container's PID namespace.
    let now = record::namespaces_of(started.pid);
    if now.get("pid") != started.namespaces.get("pid") || now.is_empty() {
        return Err(gone());
    }
    Ok(FirstProcess { pid, fd })
}

/// The one-line refusal for a container that is not running (exit 1).
pub fn not_running(found: &Found) -> Error {
    let why = match &found.status {
        Status::Created => "is still being set up; try again in a moment".to_string(),
        Status::Dead(_) => {
            "is not running: its mini-run was killed (mini-run cleanup gives back what it held)"
                .to_string()
        }
        status => format!("is not running ({})", status.describe(record::now())),
    };
    refused(format!("container {} {why}", found.shown()))
}

/// Waits until the process behind `fd` has ended, for at most `timeout`
/// (`None`: as long as it takes). Returns whether it has.
fn wait_for_end(fd: &OwnedFd, timeout: Option<Duration>) -> Result<bool, Error> {
    let timeout = match timeout {
        None => PollTimeout::NONE,
        Some(t) => PollTimeout::try_from(t).unwrap_or(PollTimeout::MAX),
    };
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    loop {
        match poll(&mut fds, timeout) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys("poll(pidfd)", e)),
        }
    }
}

/// Waits until the container's mini-run has given back what it held and
/// recorded how the command ended: it lets go of the state directory's
/// lock only then.
fn wait_for_supervisor(dir: &Path) {
    if let Ok(file) = File::open(dir) {
        let _ = Flock::lock(file, FlockArg::LockShared);
    }
}

/// A signal by name (`TERM`, `SIGTERM`, `term`) or number.
pub fn parse_signal(text: &str) -> Result<Signal, Error> {
    steps::process::signal_named(text).ok_or_else(|| {
        Error::usage(format!(
            "-s {text:?}: not a signal; give a name (TERM, SIGKILL, HUP) or a number (kill -l lists them)"
        ))
    })
}

/// `mini-run kill`: sends `signal` to the container's first process.
pub fn kill(found: &Found, signal: Signal) -> Result<(), Error> {
    let process = first_process(found)?;
    steps::sys::pidfd_send_signal(process.fd.as_fd(), signal)
        .map_err(|e| Error::sys(format!("pidfd_send_signal({}, {signal})", process.pid), e))
}

/// `mini-run stop`: SIGTERM, then SIGKILL if the command has not ended
/// after `timeout`, as `docker stop` does; returns once the container's
/// mini-run has given back its cgroup and network. A container that is
/// not running is left as it is.
pub fn stop(found: &Found, timeout: Duration, narrator: &Narrator) -> Result<(), Error> {
    if !matches!(found.status, Status::Running(_)) {
        return Ok(());
    }
    let process = first_process(found)?;
    let send = |signal: Signal| {
        narrator.note(&format!(
            "pidfd_send_signal({}, {signal}) to container {}",
            process.pid,
            found.shown()
        ));
        match steps::sys::pidfd_send_signal(process.fd.as_fd(), signal) {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(e) => Err(Error::sys(format!("pidfd_send_signal({})", process.pid), e)),
        }
    };
    send(Signal::SIGTERM)?;
    if !wait_for_end(&process.fd, Some(timeout))? {
        narrator.note(&format!(
            "still running after {}s: a pid 1 ignores SIGTERM unless it handles it",
            timeout.as_secs()
        ));
        send(Signal::SIGKILL)?;
        wait_for_end(&process.fd, None)?;
    }
    wait_for_supervisor(&found.dir);
    Ok(())
}

/// What `reclaim` found to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Reclaimed {
    /// Its cgroup, address and ports were given back.
    GaveBack,
    /// Its bridge is in another network namespace: only a cleanup there
    /// can give them back.
    Elsewhere(String),
}

/// Gives back what a container whose mini-run was killed still holds:
/// its place on the bridge, the volumes its run made (while empty), its
/// cgroup. The caller holds the lock on its directory.
pub fn reclaim(
    dir: &Path,
    fs: Option<&dyn CgroupFs>,
    narrator: &Narrator,
) -> Result<Reclaimed, Error> {
    if let Some(attachment) = crate::run::network_record(dir) {
        if !attachment.is_here() {
            return Ok(Reclaimed::Elsewhere(format!(
                "its bridge {} is in another network namespace (net:[{}]); run mini-run cleanup there",
                attachment.bridge, attachment.netns
            )));
        }
        let veth = crate::run::narrator_for("veth-bridge", narrator);
        crate::network::disconnect(&attachment, &veth)?;
    }
    crate::run::take_back_volumes(dir);
    let id = dir
        .file_name()
        .and_then(|name| Id::parse(&name.to_string_lossy()));
    if let (Some(fs), Some(id)) = (fs, id) {
        if fs.layout().cgroup(&id.cgroup()).exists() {
            crate::run::remove_cgroup(fs, &id.cgroup(), narrator)?;
        }
    }
    Ok(Reclaimed::GaveBack)
}

/// `mini-run rm`: removes a container that is not running, with its
/// upper layer and log; `force` kills a running one first.
pub fn rm(
    found: &Found,
    force: bool,
    fs: Option<&dyn CgroupFs>,
    narrator: &Narrator,
) -> Result<(), Error> {
    if found.status.is_running() {
        if !force {
            return Err(refused(format!(
                "container {} is running; mini-run stop {0} first, or rm -f to kill it",
                found.shown()
            )));
        }
        match first_process(found) {
            Ok(process) => {
                narrator.note(&format!("pidfd_send_signal({}, SIGKILL)", process.pid));
                let _ = steps::sys::pidfd_send_signal(process.fd.as_fd(), Signal::SIGKILL);
                wait_for_end(&process.fd, None)?;
            }
            // Still being set up: its mini-run holds the lock until it
            // has undone or run it. Nothing to kill yet.
            Err(_) if found.status == Status::Created => {
                return Err(not_running(found));
            }
            Err(_) => {}
        }
        wait_for_supervisor(&found.dir);
    }
    // Exclusive: no other rm, and no cleanup, works on it at once.
    let file = File::open(&found.dir)
        .map_err(|e| Error::io(format!("open(\"{}\")", found.dir.display()), &e))?;
    let _lock = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::sys(format!("flock(\"{}\")", found.dir.display()), e))?;
    if !found.dir.exists() {
        // Another rm was first.
        return Ok(());
    }
    if !found.dir.join(record::EXITED).exists() {
        if let Reclaimed::Elsewhere(why) = reclaim(&found.dir, fs, narrator)? {
            return Err(refused(format!("container {}: {why}", found.shown())));
        }
    }
    crate::run::remove_state_dir(&found.dir);
    Ok(())
}

/// `mini-run ps`: one line per container, running ones only unless `all`.
pub fn ps(all: bool, quiet: bool, p: Palette) -> String {
    let now = record::now();
    let shown: Vec<Found> = record::all()
        .into_iter()
        .filter(|f| all || f.status.is_running())
        .collect();
    if quiet {
        return shown.iter().map(|f| format!("{}\n", f.short())).collect();
    }
    let mut rows: Vec<[String; 8]> = vec![[
        "CONTAINER ID".into(),
        "NAME".into(),
        "IMAGE".into(),
        "COMMAND".into(),
        "STATUS".into(),
        "PID".into(),
        "ADDRESS".into(),
        "PORTS".into(),
    ]];
    for found in &shown {
        let running = matches!(found.status, Status::Running(_));
        let started = found.started().filter(|_| running);
        rows.push([
            found.short().to_string(),
            found.config.name.clone().unwrap_or_else(|| "-".into()),
            found.config.image.clone(),
            shorten(&found.config.command.join(" "), 24),
            found.status.describe(now),
            started.map_or("-".into(), |s| s.pid.to_string()),
            started
                .and_then(|s| s.address.clone())
                .unwrap_or_else(|| "-".into()),
            if found.config.ports.is_empty() {
                "-".into()
            } else {
                found.config.ports.join(",")
            },
        ]);
    }
    steps::table::columns(&rows, p)
}

fn shorten(text: &str, most: usize) -> String {
    if text.chars().count() <= most {
        return format!("\"{text}\"");
    }
    let kept: String = text.chars().take(most - 1).collect();
    format!("\"{kept}…\"")
}

/// `mini-run logs`: what the container's command wrote; with `follow`,
/// what it goes on writing, until it ends.
pub fn logs(found: &Found, follow: bool) -> Result<(), Error> {
    let path = found.dir.join(record::LOG);
    if !found.config.detached {
        return Err(refused(format!(
            "container {} ran in the foreground: its output went to the terminal, and no log was kept; run -d keeps one",
            found.shown()
        )));
    }
    let mut out = std::io::stdout().lock();
    let copy = |file: &mut File, out: &mut std::io::StdoutLock| -> Result<bool, Error> {
        let mut buffer = [0u8; 64 * 1024];
        loop {
            let n = file
                .read(&mut buffer)
                .map_err(|e| Error::io(format!("read \"{}\"", path.display()), &e))?;
            if n == 0 {
                return Ok(out.flush().is_ok());
            }
            // A reader that went away (logs -f | head) ends the copy.
            if out.write_all(&buffer[..n]).is_err() {
                return Ok(false);
            }
        }
    };
    let open =
        || File::open(&path).map_err(|e| Error::io(format!("open \"{}\"", path.display()), &e));
    if !follow {
        if path.exists() {
            copy(&mut open()?, &mut out)?;
        }
        return Ok(());
    }
    // Watched before the first read, so that nothing written or ended in
    // between goes unseen: the log is written to, and closed by every
    // process that ends; the records are renamed into the directory.
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    let inotify =
        Inotify::init(InitFlags::IN_CLOEXEC).map_err(|e| Error::sys("inotify_init1", e))?;
    inotify
        .add_watch(
            &found.dir,
            AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_CLOSE_WRITE | AddWatchFlags::IN_MOVED_TO,
        )
        .map_err(|e| Error::sys(format!("inotify_add_watch(\"{}\")", found.dir.display()), e))?;
    let mut file = loop {
        if let Ok(file) = File::open(&path) {
            break Some(file);
        }
        if !record::is_locked(&found.dir) {
            break None;
        }
        let _ = inotify.read_events();
    };
    let Some(file) = file.as_mut() else {
        return Ok(());
    };
    loop {
        let running = record::is_locked(&found.dir) && !found.dir.join(record::EXITED).exists();
        if !copy(file, &mut out)? {
            return Ok(());
        }
        // Ended before the copy began: what it wrote is all copied.
        if !running {
            return Ok(());
        }
        match inotify.read_events() {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(Error::sys("read(inotify)", e)),
        }
    }
}

/// `mini-run inspect`: everything about a container, as JSON.
pub fn inspect(found: &Found) -> Value {
    let config = &found.config;
    let running = matches!(found.status, Status::Running(_));
    let started = found.started();
    let exited = match &found.status {
        Status::Exited(_, e) => Some(e),
        _ => None,
    };
    let namespaces: serde_json::Map<String, Value> = started
        .map(|s| {
            s.namespaces
                .iter()
                .map(|(kind, inode)| (kind.clone(), json!(format!("{kind}:[{inode}]"))))
                .collect()
        })
        .unwrap_or_default();
    let mut limits = serde_json::Map::new();
    for dir in &config.cgroup {
        for file in [
            "memory.max",
            "memory.limit_in_bytes",
            "cpu.max",
            "cpu.cfs_quota_us",
            "cpu.cfs_period_us",
            "pids.max",
        ] {
            if let Ok(text) = std::fs::read_to_string(dir.join(file)) {
                limits.insert(file.into(), json!(text.trim()));
            }
        }
    }
    let mounts: Vec<Value> = started
        .filter(|_| running)
        .map(|s| mounts_of(s.pid))
        .unwrap_or_default();
    json!({
        "Id": config.id,
        "Name": config.name,
        "Created": record::rfc3339(config.created),
        "State": {
            "Status": found.status.word(),
            "Running": running,
            "Pid": started.filter(|_| running).map(|s| s.pid),
            "ExitCode": exited.map(|e| e.code),
            "Signal": exited.and_then(|e| e.signal.clone()),
            "StartedAt": started.map(|s| record::rfc3339(s.started)),
            "FinishedAt": exited.map(|e| record::rfc3339(e.finished)),
        },
        "Image": config.image,
        "Command": config.command,
        "Env": config.env,
        "WorkingDir": config.workdir,
        "User": config.user,
        "Hostname": config.hostname,
        "Namespaces": namespaces,
        "Cgroup": {
            "Paths": config.cgroup,
            "Asked": config.limits,
            "Limits": limits,
        },
        "Layers": {
            "Lower": config.layers,
            "Upper": config.upper,
            "Merged": config.rootfs,
        },
        "Volumes": config.volumes,
        "Mounts": mounts,
        "Network": {
            "Mode": config.network,
            "Address": started.and_then(|s| s.address.clone()),
            "Ports": config.ports,
        },
        // CONTAINER-ID:HOST-ID:COUNT, as a line of uid_map.
        "UserNamespace": config.userns.map(|m| format!("0:{}:{}", m.uid, m.count)),
        "Init": config.init,
        "Tty": config.tty,
        "AutoRemove": config.remove,
        "LogPath": config.detached.then(|| found.dir.join(record::LOG)),
        "StateDir": found.dir,
    })
}

/// The mounts the container sees, from its first process's mountinfo:
/// target, type and source.
fn mounts_of(pid: i32) -> Vec<Value> {
    std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let target = steps::mountinfo::unescape(left.split(' ').nth(4)?);
            let mut right = right.split(' ');
            let fstype = right.next()?;
            let source = steps::mountinfo::unescape(right.next()?);
            Some(json!({ "Target": target, "Type": fstype, "Source": source }))
        })
        .collect()
}

/// `mini-run stats`: cg-limit's view of each running container's cgroup,
/// by the container's name or short id.
pub fn stats(fs: &dyn CgroupFs, wanted: &[Found], stream: bool, p: Palette) -> Result<u8, Error> {
    let ids: Vec<String> = wanted.iter().map(|f| f.config.id.clone()).collect();
    let cgroups = || -> Vec<(cg_limit::Name, String)> {
        record::all()
            .into_iter()
            .filter(|f| matches!(f.status, Status::Running(_)))
            .filter(|f| ids.is_empty() || ids.contains(&f.config.id))
            .filter_map(|f| {
                let name = cg_limit::Name::parse(&format!("mini-run-{}", f.short())).ok()?;
                Some((name, f.shown().to_string()))
            })
            .collect()
    };
    cg_limit::stats::watch(fs, &cgroups, stream, p)
}
