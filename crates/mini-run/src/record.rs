//! What mini-run keeps of a container, in its state directory, for the
//! commands that come after `run`: `ps`, `inspect`, `logs`, `stop`, `rm`.
//!
//! Docker's daemon keeps a `config.v2.json` per container; mini-run has no
//! daemon, so the records are plain files beside the container's upper
//! layer, each written once by the process that knows it:
//!
//! * `config.json` ([`Config`]): what was asked for, written by `run`
//!   before the `clone()`;
//! * `started.json` ([`Started`]): the host pid and namespaces, written by
//!   mini-run once the command runs;
//! * `exited.json` ([`Exited`]): how the command ended, written by mini-run
//!   when it has given back the cgroup and network.
//!
//! Whether a container is running is never written down: it is whether
//! its mini-run still holds the lock on the directory (`flock(2)` goes
//! with the process, also when it is killed), so no record can be stale.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use steps::Error;

use crate::state::state_dir;

pub const CONFIG: &str = "config.json";
pub const STARTED: &str = "started.json";
pub const EXITED: &str = "exited.json";
/// The container's stdout and stderr, with `run -d`.
pub const LOG: &str = "container.log";
/// The container's name (`--name`), alone in a file, for the check that
/// names are unique.
pub const NAME: &str = "name";

/// What `run` was asked for, as `inspect` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub id: String,
    pub name: Option<String>,
    /// Seconds since the epoch.
    pub created: u64,
    /// `busybox` (the default rootfs), the image's directory, or the
    /// `--rootfs` directory.
    pub image: String,
    pub command: Vec<String>,
    pub env: Vec<String>,
    pub workdir: PathBuf,
    /// `UID:GID` (`-u`), or none for root.
    pub user: Option<String>,
    pub hostname: String,
    /// `bridge NAME`, `none` or `host`.
    pub network: String,
    /// `HOST:CTR/PROTO`.
    pub ports: Vec<String>,
    /// `SOURCE:TARGET[:ro]`.
    pub volumes: Vec<String>,
    /// The limits as `run` took them: `memory`, `cpus`, `pids`.
    pub limits: BTreeMap<String, String>,
    /// The container's cgroup, one directory per hierarchy; empty when
    /// it has none (rootless without a delegated cgroup).
    pub cgroup: Vec<PathBuf>,
    /// The overlay's read-only layers, top first; empty with `--rootfs`.
    pub layers: Vec<PathBuf>,
    /// The container's own layer: every write it made is here.
    pub upper: Option<PathBuf>,
    /// Where its root was mounted (in its own mount namespace).
    pub rootfs: PathBuf,
    pub init: bool,
    pub tty: bool,
    /// `run -d`: the command's output goes to [`LOG`].
    pub detached: bool,
    /// `--rm`: the state goes when the command ends.
    pub remove: bool,
    /// `--userns` or rootless: the user namespace's map.
    pub userns: Option<crate::rootless::IdMap>,
}

/// What is known once the command runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Started {
    /// The container's first process, as the host numbers it.
    pub pid: i32,
    pub started: u64,
    /// Each namespace's inode number, as `/proc/PID/ns/*` links name
    /// them (`pid:[4026532301]`): two processes with the same number are
    /// in the same namespace.
    pub namespaces: BTreeMap<String, u64>,
    /// Its address on the bridge, `10.88.0.2/16`.
    pub address: Option<String>,
}

/// How the command ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exited {
    /// The status a shell would show: the code, or 128 + the signal.
    pub code: u8,
    /// `SIGKILL` when a signal ended it.
    pub signal: Option<String>,
    pub finished: u64,
}

impl Exited {
    /// How `exit` ended the command, now.
    pub fn of(exit: steps::process::Exit) -> Self {
        Self {
            code: exit.shell_status(),
            signal: match exit {
                steps::process::Exit::Signal(signal) => Some(signal.as_str().to_string()),
                steps::process::Exit::Code(_) => None,
            },
            finished: now(),
        }
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A record as JSON, one object, pretty-printed as `inspect` shows it.
pub fn to_json<T: Serialize>(record: &T) -> String {
    serde_json::to_string_pretty(record).expect("records are plain data") + "\n"
}

/// Writes a record so that no reader sees half of it: to a temporary
/// name, then renamed over.
pub fn write<T: Serialize>(dir: &Path, name: &str, record: &T) -> Result<(), Error> {
    let path = dir.join(name);
    let partial = dir.join(format!(".{name}.partial"));
    std::fs::write(&partial, to_json(record))
        .and_then(|()| std::fs::rename(&partial, &path))
        .map_err(|e| Error::io(format!("write \"{}\"", path.display()), &e))
}

/// A record of the container in `dir`, if it is there and whole.
pub fn read<T: for<'de> Deserialize<'de>>(dir: &Path, name: &str) -> Option<T> {
    let text = std::fs::read_to_string(dir.join(name)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Where a container stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Its mini-run is setting it up.
    Created,
    Running(Started),
    Exited(Started, Exited),
    /// Its mini-run was killed before it could say how the command
    /// ended, or before it ran: `mini-run cleanup` gives back what it held.
    Dead(Option<Started>),
}

impl Status {
    pub fn is_running(&self) -> bool {
        matches!(self, Status::Running(_) | Status::Created)
    }

    /// `Up 5 seconds`, `Exited (0) 2 minutes ago`, as `docker ps` says.
    pub fn describe(&self, now: u64) -> String {
        match self {
            Status::Created => "Created".into(),
            Status::Running(started) => {
                format!("Up {}", duration(now.saturating_sub(started.started)))
            }
            Status::Exited(_, exited) => format!(
                "Exited ({}) {} ago",
                exited.code,
                duration(now.saturating_sub(exited.finished))
            ),
            Status::Dead(_) => "Dead".into(),
        }
    }

    /// The word `inspect` and `ps --format` use.
    pub fn word(&self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running(_) => "running",
            Status::Exited(..) => "exited",
            Status::Dead(_) => "dead",
        }
    }
}

/// `5 seconds`, `2 minutes`, `3 hours`, `4 days`, as Docker rounds them.
pub fn duration(seconds: u64) -> String {
    let (n, unit) = match seconds {
        0 => return "Less than a second".into(),
        1..=59 => (seconds, "second"),
        60..=3599 => (seconds / 60, "minute"),
        3600..=86399 => (seconds / 3600, "hour"),
        _ => (seconds / 86400, "day"),
    };
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

/// A UTC time as RFC 3339, `2026-11-24T09:30:00Z`, as `inspect` shows it.
pub fn rfc3339(seconds: u64) -> String {
    // Days to a civil date: Howard Hinnant's algorithm, proleptic Gregorian.
    let days = (seconds / 86400) as i64;
    let secs = seconds % 86400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// One container, as found in its state directory.
#[derive(Debug, Clone)]
pub struct Found {
    pub dir: PathBuf,
    pub config: Config,
    pub status: Status,
}

impl Found {
    /// The first 12 digits of its id.
    pub fn short(&self) -> &str {
        &self.config.id[..12.min(self.config.id.len())]
    }

    /// Its name, or its short id.
    pub fn shown(&self) -> &str {
        self.config.name.as_deref().unwrap_or_else(|| self.short())
    }

    pub fn started(&self) -> Option<&Started> {
        match &self.status {
            Status::Running(s) | Status::Exited(s, _) | Status::Dead(Some(s)) => Some(s),
            _ => None,
        }
    }
}

/// Whether some process (the container's mini-run) holds the lock on
/// `dir`. A shared lock of our own, taken and let go at once, does not
/// stand in another reader's way.
pub fn is_locked(dir: &Path) -> bool {
    let Ok(file) = File::open(dir) else {
        return false;
    };
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(_lock) => false,
        Err((_, Errno::EWOULDBLOCK)) => true,
        Err(_) => false,
    }
}

/// The container in `dir`, or `None` if there is none there (yet).
pub fn load(dir: &Path) -> Option<Found> {
    let config: Config = read(dir, CONFIG)?;
    let started: Option<Started> = read(dir, STARTED);
    let exited: Option<Exited> = read(dir, EXITED);
    let status = match (is_locked(dir), started, exited) {
        (_, Some(s), Some(e)) => Status::Exited(s, e),
        (true, Some(s), None) => Status::Running(s),
        (true, None, _) => Status::Created,
        (false, s, _) => Status::Dead(s),
    };
    Some(Found {
        dir: dir.to_path_buf(),
        config,
        status,
    })
}

/// Every container of this caller's, newest first. The directory of all
/// containers is share-locked while they are read: a `run` makes its
/// directory and locks it under an exclusive lock, so none is seen in
/// the instant between.
pub fn all() -> Vec<Found> {
    let containers = state_dir();
    let Ok(entries) = std::fs::read_dir(&containers) else {
        return Vec::new();
    };
    let _parent = File::open(&containers)
        .ok()
        .and_then(|f| Flock::lock(f, FlockArg::LockShared).ok());
    let mut found: Vec<Found> = entries
        .flatten()
        .filter_map(|entry| load(&entry.path()))
        .collect();
    found.sort_by(|a, b| (a.config.created, &a.config.id).cmp(&(b.config.created, &b.config.id)));
    found
}

/// Finds the container `wanted` names: its name, its whole id, or a
/// prefix of its id that no other container's id has, as Docker finds
/// one. Exit code 2 when there is none, or the prefix is ambiguous.
pub fn find(wanted: &str) -> Result<Found, Error> {
    find_in(all(), wanted)
}

pub fn find_in(all: Vec<Found>, wanted: &str) -> Result<Found, Error> {
    if wanted.is_empty() {
        return Err(Error::usage(
            "an empty container id; give an id, a prefix of one, or a name (mini-run ps -a lists them)",
        ));
    }
    if let Some(found) = all
        .iter()
        .find(|f| f.config.name.as_deref() == Some(wanted) || f.config.id == wanted)
    {
        return Ok(found.clone());
    }
    let matching: Vec<&Found> = all
        .iter()
        .filter(|f| f.config.id.starts_with(wanted))
        .collect();
    match matching.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(Error::usage(format!(
            "no such container: {wanted}; mini-run ps -a lists them, by id and name"
        ))),
        many => Err(Error::usage(format!(
            "{wanted} is the start of {} containers' ids ({}); give more of the id",
            many.len(),
            many.iter()
                .map(|f| f.short())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The container named `name`, among the directories in `containers`.
pub fn named(containers: &Path, name: &str) -> Option<String> {
    std::fs::read_dir(containers)
        .ok()?
        .flatten()
        .find(|entry| {
            std::fs::read_to_string(entry.path().join(NAME)).is_ok_and(|n| n.trim_end() == name)
        })
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
}

/// A container name as Docker takes one: a letter or digit, then
/// letters, digits, `_`, `.` and `-`.
pub fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if first_ok && rest_ok && name.len() <= 128 {
        Ok(())
    } else {
        Err(format!(
            "--name {name:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit"
        ))
    }
}

/// The inode number of each of `pid`'s namespaces.
pub fn namespaces_of(pid: i32) -> BTreeMap<String, u64> {
    let mut found = BTreeMap::new();
    for kind in ["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"] {
        let Ok(link) = std::fs::read_link(format!("/proc/{pid}/ns/{kind}")) else {
            continue;
        };
        // `pid:[4026532301]`
        let text = link.to_string_lossy();
        if let Some(number) = text
            .split_once('[')
            .and_then(|(_, rest)| rest.strip_suffix(']'))
            .and_then(|n| n.parse().ok())
        {
            found.insert(kind.to_string(), number);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(id: &str, name: Option<&str>) -> Found {
        Found {
            dir: PathBuf::from("/nowhere"),
            config: Config {
                id: id.into(),
                name: name.map(Into::into),
                created: 0,
                image: "busybox".into(),
                command: vec!["sh".into()],
                env: vec![],
                workdir: "/".into(),
                user: None,
                hostname: "x".into(),
                network: "none".into(),
                ports: vec![],
                volumes: vec![],
                limits: BTreeMap::new(),
                cgroup: vec![],
                layers: vec![],
                upper: None,
                rootfs: "/".into(),
                init: false,
                tty: false,
                detached: false,
                remove: false,
                userns: None,
            },
            status: Status::Dead(None),
        }
    }

    #[test]
    fn ids_are_found_by_name_whole_or_unique_prefix() {
        let all = || {
            vec![
                found("abc123", Some("web")),
                found("abd456", None),
                found("web999", None),
            ]
        };
        assert_eq!(find_in(all(), "web").unwrap().config.id, "abc123");
        assert_eq!(find_in(all(), "abd").unwrap().config.id, "abd456");
        assert_eq!(find_in(all(), "web9").unwrap().config.id, "web999");
        let ambiguous = find_in(all(), "ab").unwrap_err();
        assert_eq!(ambiguous.code(), steps::exit::USAGE);
        assert!(
            ambiguous.to_string().contains("abc123, abd456"),
            "{ambiguous}"
        );
        let none = find_in(all(), "zzz").unwrap_err();
        assert!(
            none.to_string().starts_with("no such container: zzz"),
            "{none}"
        );
        assert!(find_in(all(), "").is_err());
    }

    #[test]
    fn names_are_dockers() {
        for good in ["web", "web-1", "a.b_c", "9lives"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-web", "_x", "a b", "a/b", "é"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_and_times_read_as_dockers() {
        assert_eq!(duration(0), "Less than a second");
        assert_eq!(duration(1), "1 second");
        assert_eq!(duration(59), "59 seconds");
        assert_eq!(duration(125), "2 minutes");
        assert_eq!(duration(7200), "2 hours");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
