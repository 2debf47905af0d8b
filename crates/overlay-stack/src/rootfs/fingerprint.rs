//! busybox's fingerprint: "nothing changed" from `stat(2)` alone.
//!
//! The stamp a busybox rootfs would get takes running `busybox --list-full`
//! and `busybox --help` and hashing the binary: milliseconds, which
//! `mini-run run` would spend on every container only to learn that its
//! cached rootfs is up to date. Yet all of it follows from one file, and
//! `stat(2)` tells cheaply whether a file may have changed: writing to it
//! moves its mtime and ctime, replacing it (a package upgrade, `cp` over,
//! `mv`) gives another inode, and no program can set a ctime back. So
//! beside the cached tree, `.NAME.source-stat` keeps busybox's device,
//! inode, size, mtime and ctime next to the stamp computed from it; while
//! `stat(2)` says the same, that stamp holds without running anything.
//! `make` trusts mtimes the same way, and git's index whole `stat` records.
//! See <https://man7.org/linux/man-pages/man2/stat.2.html> and, for what
//! changes which time, inode(7):
//! <https://man7.org/linux/man-pages/man7/inode.7.html>.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::stamp::{self, Stamp};

/// What the record beside DIR is called: `.DIR.source-stat`.
const RECORD_MARK: &str = ".source-stat";

/// How long ago a file must have last changed before its fingerprint is
/// kept. A timestamp is only as fine as the kernel's clock tick (and 2 s
/// on some filesystems), so a file written again within the tick it was
/// read in would keep its fingerprint: the "racy git" problem. A file
/// older than this, once read, cannot change without a new ctime.
pub const SETTLE: Duration = Duration::from_secs(3);

/// What `stat(2)` says about a file, as far as its contents go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    /// Seconds and nanoseconds since the epoch.
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

impl Fingerprint {
    /// The fingerprint of the file at `path` (a symlink followed, as
    /// `execve(2)` would).
    pub fn of(path: &Path) -> Option<Self> {
        let m = std::fs::metadata(path).ok()?;
        Some(Self {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }

    /// Whether the file last changed [`SETTLE`] or more before `now`.
    pub fn settled_at(&self, now: SystemTime) -> bool {
        let (seconds, nanos) = self.ctime;
        let Ok(seconds) = u64::try_from(seconds) else {
            return false;
        };
        let changed =
            SystemTime::UNIX_EPOCH + Duration::new(seconds, nanos.clamp(0, 999_999_999) as u32);
        now.duration_since(changed).is_ok_and(|age| age >= SETTLE)
    }
}

/// What the record beside a cached rootfs says: busybox looked like
/// `fingerprint` when it gave `stamp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub fingerprint: Fingerprint,
    pub stamp: Stamp,
}

impl Record {
    /// The file's text: the fingerprint, then the stamp's fields, in the
    /// stamp's own `KEY="value"` format.
    pub fn render(&self) -> String {
        let f = &self.fingerprint;
        let time = |(seconds, nanos): (i64, i64)| format!("{seconds}.{nanos:09}");
        let mut text = String::from(
            "# busybox's stat(2) when the stamp below was computed, written by\n\
             # mini-run: while stat says the same, the rootfs beside this file is\n\
             # up to date without running busybox. Remove it to check the long way.\n",
        );
        text.push_str(&stamp::line("STAT_DEV", &f.dev.to_string()));
        text.push_str(&stamp::line("STAT_INO", &f.ino.to_string()));
        text.push_str(&stamp::line("STAT_SIZE", &f.size.to_string()));
        text.push_str(&stamp::line("STAT_MTIME", &time(f.mtime)));
        text.push_str(&stamp::line("STAT_CTIME", &time(f.ctime)));
        text.push_str(&self.stamp.fields());
        text
    }

    /// Parses a record; `None` unless it has every field (a record cut
    /// short by a crash is no record).
    pub fn parse(text: &str) -> Option<Self> {
        let stamp = Stamp::parse(text)?;
        let (mut dev, mut ino, mut size, mut mtime, mut ctime) = (None, None, None, None, None);
        let time = |value: &str| {
            let (seconds, nanos) = value.split_once('.')?;
            Some((seconds.parse().ok()?, nanos.parse().ok()?))
        };
        for (key, value) in stamp::pairs(text)? {
            match key {
                "STAT_DEV" => dev = value.parse().ok(),
                "STAT_INO" => ino = value.parse().ok(),
                "STAT_SIZE" => size = value.parse().ok(),
                "STAT_MTIME" => mtime = time(&value),
                "STAT_CTIME" => ctime = time(&value),
                _ => {}
            }
        }
        Some(Self {
            fingerprint: Fingerprint {
                dev: dev?,
                ino: ino?,
                size: size?,
                mtime: mtime?,
                ctime: ctime?,
            },
            stamp,
        })
    }

    /// The record kept for the rootfs at `dir`, if there is a whole one.
    pub fn read(dir: &Path) -> Option<Self> {
        Self::parse(&std::fs::read_to_string(path_for(dir)?).ok()?)
    }

    /// Whether this record vouches for `busybox` as it is now: the same
    /// path, the same fingerprint, and a stamp this builder would still
    /// write (not one of an older layout).
    pub fn holds_for(&self, busybox: &Path, now: &Fingerprint) -> bool {
        self.fingerprint == *now
            && self.stamp.layout == stamp::LAYOUT
            && self.stamp.source == stamp::BUSYBOX
            && self.stamp.path == Some(busybox.display().to_string())
    }
}

/// Where the record of the rootfs at `dir` is kept: beside it, not in it,
/// since the tree is a lower layer that containers may have mounted.
pub fn path_for(dir: &Path) -> Option<PathBuf> {
    let name = dir.file_name()?;
    let mut file = std::ffi::OsString::from(".");
    file.push(name);
    file.push(RECORD_MARK);
    Some(dir.parent()?.join(file))
}
