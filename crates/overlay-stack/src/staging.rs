//! # Made beside, then renamed
//!
//! `commit` and `import` make their result — a layer, an image — in a
//! hidden directory beside it, `.NAME.commit-PID` or `.NAME.import-PID`,
//! and [`rename(2)`](https://man7.org/linux/man-pages/man2/rename.2.html)
//! it to NAME at the end: `rename` is atomic, so whoever looks at NAME
//! finds nothing or the whole result, never half of one. On an error or a
//! Ctrl-C the staging directory is removed before the command ends; a
//! SIGKILL cannot be caught, so a command killed before its rename leaves
//! it behind.
//!
//! The next command for the same NAME removes such a leftover as the
//! first step of its plan, once it knows the command that made it has
//! ended:
//!
//! * no process has its PID: [`kill(PID, 0)`](https://man7.org/linux/man-pages/man2/kill.2.html)
//!   fails with `ESRCH` (or the process is a zombie, dead already);
//! * and nobody holds the [`flock(2)`](https://man7.org/linux/man-pages/man2/flock.2.html)
//!   its maker took on it. The kernel drops a lock when its holder ends,
//!   however it ends; the lock also covers a maker in another PID
//!   namespace (a container), whose PID means nothing here.
//!
//! A staging directory of a command still running is never touched.

use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::Pid;

/// The longest file name the kernel takes (`NAME_MAX`).
pub const NAME_MAX: usize = 255;

/// The most digits a PID has (`pid_max` is at most 2^22; a pid_t is 32 bits).
const PID_DIGITS: usize = 10;

/// What a staging directory is for: its name says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Commit,
    Import,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Commit => "commit",
            Kind::Import => "import",
        }
    }
}

/// `.NAME.KIND-`: what every staging directory for NAME starts with. A
/// NAME too long to leave room for the rest is cut, the same way each
/// time, so that the staging name fits in `NAME_MAX` bytes too.
fn prefix(name: &OsStr, kind: Kind) -> OsString {
    let tail = format!(".{}-", kind.word());
    let room = NAME_MAX - 1 - tail.len() - PID_DIGITS;
    let bytes = name.as_bytes();
    let mut prefix = vec![b'.'];
    prefix.extend_from_slice(&bytes[..bytes.len().min(room)]);
    prefix.extend_from_slice(tail.as_bytes());
    OsString::from_vec(prefix)
}

/// This process's staging directory for NAME in `parent`.
pub fn path(parent: &Path, name: &OsStr, kind: Kind) -> PathBuf {
    let mut staging = prefix(name, kind);
    staging.push(std::process::id().to_string());
    parent.join(staging)
}

/// A staging directory made and locked by this process: the lock goes
/// when this is dropped, or when the process ends, however it ends.
#[derive(Debug)]
pub struct Held(#[allow(dead_code)] Flock<OwnedFd>);

/// `mkdir(path, 0755)`, then `flock(LOCK_EX)` on it, for as long as the
/// returned [`Held`] lives. Errors are the failed call's errno.
pub fn make(path: &Path) -> Result<Held, (&'static str, Errno)> {
    nix::unistd::mkdir(path, Mode::from_bits_truncate(0o755)).map_err(|e| ("mkdir", e))?;
    let fd = open_dir(path).map_err(|e| ("open", e))?;
    // Blocking: a later command looking at it may hold the lock for an
    // instant, to see whether it is free.
    Flock::lock(fd, FlockArg::LockExclusive)
        .map(Held)
        .map_err(|(_, e)| ("flock", e))
}

fn open_dir(path: &Path) -> Result<OwnedFd, Errno> {
    nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// A staging directory whose command has ended without removing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub path: PathBuf,
    /// The PID in its name: the command that made it.
    pub pid: u32,
}

/// The staging directories for NAME in `parent` whose commands have
/// ended, in name order.
pub fn leftovers(parent: &Path, name: &OsStr, kind: Kind) -> Vec<Leftover> {
    let prefix = prefix(name, kind);
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut found: Vec<Leftover> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|entry| {
            let file_name = entry.file_name();
            let digits = file_name.as_bytes().strip_prefix(prefix.as_bytes())?;
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let pid = std::str::from_utf8(digits).ok()?.parse::<u32>().ok()?;
            let path = entry.path();
            ended(pid, &path).then_some(Leftover { path, pid })
        })
        .collect();
    found.sort_by(|a, b| a.path.cmp(&b.path));
    found
}

/// Whether the command that made the staging directory `path` has ended.
fn ended(pid: u32, path: &Path) -> bool {
    // This process made nothing yet: a directory with its PID is an older
    // process's, whose PID has come round again.
    if pid != std::process::id() && runs(pid) {
        return false;
    }
    let Ok(fd) = open_dir(path) else {
        // Cannot look: not ours to remove.
        return false;
    };
    // Taken for an instant, and let go at once: it was free.
    Flock::lock(fd, FlockArg::LockExclusiveNonblock).is_ok()
}

/// Whether a process with this PID runs (a zombie has ended already).
fn runs(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if raw <= 0 {
        return false;
    }
    match nix::sys::signal::kill(Pid::from_raw(raw), None) {
        Err(Errno::ESRCH) => false,
        // EPERM: it runs, as another user.
        _ => !is_zombie(raw),
    }
}

fn is_zombie(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next());
    matches!(state, Some('Z' | 'X'))
}

/// Removes a leftover; another command may have removed it first.
pub fn remove(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_staging_name_fits_in_name_max_however_long_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let long = OsString::from("x".repeat(NAME_MAX));
        let staging = path(dir.path(), &long, Kind::Commit);
        let name = staging.file_name().unwrap().as_bytes();
        assert!(name.len() <= NAME_MAX, "{}", name.len());
        assert!(
            name.starts_with(b".xxx") && name.ends_with(std::process::id().to_string().as_bytes())
        );
        let short = path(dir.path(), OsStr::new("layer2"), Kind::Import);
        assert_eq!(
            short.file_name().unwrap(),
            OsString::from(format!(".layer2.import-{}", std::process::id())).as_os_str()
        );
    }

    #[test]
    fn only_the_staging_of_an_ended_command_is_a_leftover() {
        let dir = tempfile::tempdir().unwrap();
        let name = OsStr::new("layer");
        // A child that has ended: its PID runs no more.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        let dead = dir.path().join(format!(".layer.commit-{gone}"));
        std::fs::create_dir(&dead).unwrap();
        // This process runs: its directory, locked, stays.
        let ours = path(dir.path(), name, Kind::Commit);
        let held = make(&ours).unwrap();
        // Another kind, another name, and not a PID: none of them.
        for other in [".layer.import-1", ".layer2.commit-1", ".layer.commit-x1"] {
            std::fs::create_dir(dir.path().join(other)).unwrap();
        }
        let found = leftovers(dir.path(), name, Kind::Commit);
        assert_eq!(
            found,
            [Leftover {
                path: dead.clone(),
                pid: gone
            }]
        );
        // Unlocked, this process's own is an older one's whose PID came
        // round again: it is a leftover too.
        drop(held);
        assert_eq!(leftovers(dir.path(), name, Kind::Commit).len(), 2);
        remove(&dead).unwrap();
        remove(&dead).unwrap();
    }

    #[test]
    fn a_locked_staging_directory_is_not_a_leftover_whatever_its_pid() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        // As a maker in another PID namespace would look: its PID is no
        // process here, but it holds the lock.
        let staging = dir.path().join(format!(".img.import-{gone}"));
        std::fs::create_dir(&staging).unwrap();
        let lock = Flock::lock(open_dir(&staging).unwrap(), FlockArg::LockExclusive).unwrap();
        assert!(leftovers(dir.path(), OsStr::new("img"), Kind::Import).is_empty());
        drop(lock);
        assert_eq!(
            leftovers(dir.path(), OsStr::new("img"), Kind::Import).len(),
            1
        );
    }
}
