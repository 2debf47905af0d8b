//! Named volumes: `-v NAME:/path`. A directory mini-run keeps under
//! [`VOLUMES_DIR`] (rootless: in the user's data directory), made on
//! first use and kept when the container goes, so the next container
//! that names it finds what the last one wrote — the difference from a
//! bind mount being only who chose the directory, and who keeps it. Docker keeps its volumes in `/var/lib/docker/volumes`.
//!
//! A container holds a shared `flock` on each volume it uses, for as long
//! as it runs; `mini-run volume rm` takes an exclusive one, so it cannot
//! remove a volume from under a running container.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use steps::Error;

/// Where named volumes live, as root.
pub const VOLUMES_DIR: &str = "/var/lib/underhood/volumes";

/// Where this caller's named volumes live: [`VOLUMES_DIR`], or without
/// root `underhood/volumes` in the user's data directory.
pub fn volumes_dir() -> PathBuf {
    if crate::rootless::is_rootless() {
        crate::rootless::data_dir().join("underhood/volumes")
    } else {
        PathBuf::from(VOLUMES_DIR)
    }
}

/// The exit status of a refusal: the volume is in use.
pub const IN_USE: u8 = 1;

/// Docker's rule for a volume name: a letter or digit, then letters,
/// digits, `_`, `.` or `-`; at least two characters.
pub fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if first_ok && rest_ok && (2..=128).contains(&name.len()) {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a volume name: use 2 to 128 letters, digits, '_', '.' or '-', starting with a letter or digit"
        ))
    }
}

/// The directory of the volume `name`.
pub fn dir(name: &str) -> PathBuf {
    volumes_dir().join(name)
}

/// A volume in use by this container: its lock, held until dropped.
#[derive(Debug)]
pub struct InUse {
    pub dir: PathBuf,
    pub lock: Flock<File>,
    /// This run made the volume: a failed run takes it back if it is
    /// still empty.
    pub made: bool,
}

/// Makes the volume if it is missing and holds a shared lock on it.
pub fn acquire(name: &str) -> Result<InUse, Error> {
    let dir = dir(name);
    let call = || format!("mkdir(\"{}\", 0755)", dir.display());
    // `volume rm` may remove the directory between our open and our
    // lock: then the lock is on a directory no longer there; again. And
    // the last volume's removal takes the empty directory of volumes
    // with it, maybe between our two mkdirs: then it is made again.
    for _ in 0..10 {
        std::fs::create_dir_all(volumes_dir()).map_err(|e| Error::io(call(), &e))?;
        let made = match std::fs::create_dir(&dir) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(call(), &e)),
        };
        let Ok(file) = File::open(&dir) else { continue };
        let lock = Flock::lock(file, FlockArg::LockShared)
            .map_err(|(_, e)| Error::sys(format!("flock(\"{}\", LOCK_SH)", dir.display()), e))?;
        let same = match (lock.metadata(), std::fs::metadata(&dir)) {
            (Ok(held), Ok(now)) => held.ino() == now.ino() && held.dev() == now.dev(),
            _ => false,
        };
        if same {
            return Ok(InUse { dir, lock, made });
        }
    }
    Err(Error::setup(format!(
        "volume {name}: removed again and again while mini-run took it; try again"
    )))
}

/// Takes back a volume a run made and never used: removed if it is still
/// empty and no container holds it.
pub fn take_back(dir: &Path) {
    let Ok(file) = File::open(dir) else { return };
    if let Ok(_lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        let _ = std::fs::remove_dir(dir);
        let _ = std::fs::remove_dir(volumes_dir());
    }
}

/// `mini-run volume create NAME`: makes it (or finds it there).
pub fn create(name: &str) -> Result<(), Error> {
    check_name(name).map_err(Error::usage)?;
    acquire(name).map(drop)
}

/// The volumes there are, by name, each with whether a container uses it.
pub fn list() -> Vec<(String, bool)> {
    let Ok(entries) = std::fs::read_dir(volumes_dir()) else {
        return Vec::new();
    };
    let mut volumes: Vec<(String, bool)> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let in_use = File::open(e.path())
                .map(|f| Flock::lock(f, FlockArg::LockExclusiveNonblock).is_err())
                .unwrap_or(false);
            (name, in_use)
        })
        .collect();
    volumes.sort();
    volumes
}

/// `mini-run volume rm NAME`: removes the volume and what is in it,
/// unless a running container uses it.
pub fn remove(name: &str) -> Result<(), Error> {
    check_name(name).map_err(Error::usage)?;
    let dir = dir(name);
    let file = File::open(&dir).map_err(|e| {
        Error::usage(format!(
            "volume {name}: {}; mini-run volume ls lists the volumes there are",
            steps::error::describe_io(&e)
        ))
    })?;
    let _lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((_, Errno::EWOULDBLOCK)) => {
            return Err(Error::with_code(
                format!(
                    "volume {name} is in use by a running container; remove it once that has ended"
                ),
                IN_USE,
            ));
        }
        Err((_, e)) => return Err(Error::sys(format!("flock(\"{}\")", dir.display()), e)),
    };
    std::fs::remove_dir_all(&dir)
        .map_err(|e| Error::io(format!("rm -r \"{}\"", dir.display()), &e))?;
    let volumes = volumes_dir();
    if std::fs::remove_dir(&volumes).is_ok() {
        let _ = std::fs::remove_dir(volumes.parent().unwrap_or(Path::new("/")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_docker_s_rule() {
        for good in ["data", "db-1", "my_vol.v2", "0x"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "a",
            "-data",
            ".data",
            "a/b",
            "../x",
            "data:ro",
            "dätä",
            &"x".repeat(129),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
