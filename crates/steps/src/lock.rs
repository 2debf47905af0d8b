//! Locks the tools take on their own state directories: a `flock(2)` on
//! the directory itself, so no lock file is ever left behind. The lock
//! belongs to the open directory and goes when it is closed — also when
//! the process is killed.

use std::fs::File;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use crate::Error;

/// A held lock on a directory, released when dropped.
#[derive(Debug)]
pub struct DirLock(#[allow(dead_code)] Flock<File>);

/// Makes `dir` if it is missing and takes an exclusive lock on it,
/// waiting for whoever holds it.
pub fn exclusive(dir: &Path) -> Result<DirLock, Error> {
    let call = || format!("flock(\"{}\", LOCK_EX)", dir.display());
    std::fs::create_dir_all(dir).map_err(|e| Error::io(call(), &e))?;
    let file = File::open(dir).map_err(|e| Error::io(call(), &e))?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map(DirLock)
        .map_err(|(_, e)| Error::sys(call(), e))
}
