//! The steps of a rootfs build, and how each is made.
//!
//! Every step but the last writes inside the staging directory; the last
//! one moves the finished tree to its place in one `rename(2)`, which is
//! atomic: whoever looks at DIR sees either the old tree or the new one,
//! never half of one.

use std::ops::ControlFlow;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use steps::{Chapter, Error, Narrator, Step, chapter};

use super::fingerprint::Record;
use super::stamp::{self, Stamp};
use super::{Built, busybox, io_error};

/// What a copied file is to the rootfs, for the step's why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The static busybox binary.
    Busybox,
    /// A host program, the shell included.
    Program,
    /// The dynamic loader from the programs' `PT_INTERP`.
    Loader { needed_by: Vec<String> },
    /// A shared library and the programs that need it.
    Library { needed_by: Vec<String> },
}

/// Which file of `/etc` a write makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtcFile {
    Passwd,
    Group,
    Stamp,
}

/// One step of a rootfs build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// busybox's `stat(2)` is as the record beside DIR says it was when
    /// the stamp was computed, so the stamp is known without running it.
    StatBusybox { busybox: PathBuf, record: PathBuf },
    /// Keep busybox's `stat(2)` and the stamp it gave beside DIR, for the
    /// next check to need no more than that.
    RecordStat { path: PathBuf, record: Record },
    /// DIR already holds a rootfs from the same source: the plan's end.
    Keep { dir: PathBuf },
    /// A staging tree of an earlier build that was killed.
    RemoveLeftover { path: PathBuf },
    /// `mkdir -p` DIR's parent, for the cache's first use.
    MakeParents { dir: PathBuf },
    /// The directory the tree is built in, beside DIR.
    MakeStaging { staging: PathBuf },
    /// The directories every program expects, with their modes.
    MakeDirs {
        root: PathBuf,
        dirs: Vec<(&'static str, u32)>,
    },
    /// Copy one file from the host (following symlinks) to `path`, relative
    /// to `root`, and set its mode.
    Copy {
        from: PathBuf,
        root: PathBuf,
        path: PathBuf,
        mode: u32,
        role: Role,
    },
    /// A symlink to `/bin/busybox` for each applet path (relative to
    /// `root`).
    Applets { root: PathBuf, links: Vec<PathBuf> },
    /// Write a small file.
    Write {
        path: PathBuf,
        contents: String,
        file: EtcFile,
    },
    /// Move the finished tree to DIR, which is missing or empty.
    Rename {
        staging: PathBuf,
        dir: PathBuf,
        stamp: Stamp,
    },
    /// Swap the finished tree with the stale rootfs at DIR.
    Exchange {
        staging: PathBuf,
        dir: PathBuf,
        stamp: Stamp,
    },
    /// Remove the stale tree, swapped out to the staging path.
    RemoveOld { path: PathBuf },
}

/// `bin/sh, bin/ls, sbin/ip, …`: the applets a learner knows first.
fn some_applets(links: &[PathBuf]) -> String {
    const KNOWN: &[&str] = &["bin/sh", "bin/ls", "sbin/ip", "usr/bin/nc"];
    let mut shown: Vec<String> = KNOWN
        .iter()
        .filter(|k| links.iter().any(|l| l == Path::new(k)))
        .take(3)
        .map(|k| k.to_string())
        .collect();
    if shown.is_empty() {
        shown = links
            .iter()
            .take(3)
            .map(|l| l.display().to_string())
            .collect();
    }
    if links.len() > shown.len() {
        shown.push("…".into());
    }
    shown.join(", ")
}

/// `ls, cat, ps` or `ls, cat, ps and 9 more`.
fn programs(names: &[String]) -> String {
    const SHOWN: usize = 4;
    if names.len() <= SHOWN {
        names.join(", ")
    } else {
        format!(
            "{} and {} more",
            names[..SHOWN].join(", "),
            names.len() - SHOWN
        )
    }
}

fn mode_note(mode: u32) -> String {
    if mode == 0o755 {
        String::new()
    } else {
        format!(" ({mode:04o})")
    }
}

impl Step for Op {
    fn call(&self) -> String {
        match self {
            Self::StatBusybox { busybox, record } => format!(
                "stat(\"{}\"): as in \"{}\"",
                busybox.display(),
                record.display()
            ),
            Self::RecordStat { path, .. } => format!("write \"{}\"", path.display()),
            Self::Keep { dir } => format!("read \"{}\"", dir.join(stamp::FILE).display()),
            Self::MakeParents { dir } => format!("mkdir -p \"{}\"", dir.display()),
            Self::MakeStaging { staging } => format!("mkdir(\"{}\", 0755)", staging.display()),
            Self::MakeDirs { root, dirs } => {
                let names: Vec<String> = dirs
                    .iter()
                    .map(|(name, mode)| format!("{name}{}", mode_note(*mode)))
                    .collect();
                format!(
                    "mkdir {} directories in \"{}\": {}",
                    dirs.len(),
                    root.display(),
                    names.join(" ")
                )
            }
            Self::Copy {
                from, root, path, ..
            } => format!(
                "copy \"{}\" → \"{}\"",
                from.display(),
                root.join(path).display()
            ),
            Self::Applets { links, .. } => format!(
                "symlink {} applets → /{} ({})",
                links.len(),
                busybox::IN_ROOTFS,
                some_applets(links)
            ),
            Self::Write { path, .. } => format!("write \"{}\"", path.display()),
            Self::Rename { staging, dir, .. } => {
                format!("rename(\"{}\", \"{}\")", staging.display(), dir.display())
            }
            Self::Exchange { staging, dir, .. } => format!(
                "renameat2(\"{}\", \"{}\", RENAME_EXCHANGE)",
                staging.display(),
                dir.display()
            ),
            Self::RemoveOld { path } | Self::RemoveLeftover { path } => {
                format!("rm -r \"{}\"", path.display())
            }
        }
    }

    fn why(&self) -> String {
        match self {
            Self::StatBusybox { .. } => "same device, inode, size, mtime and ctime as when its \
                 stamp was computed: the stamp is known without running busybox"
                .into(),
            Self::RecordStat { .. } => "busybox's stat(2) beside the stamp it gave: while stat \
                 says the same, the next run needs nothing more to know the stamp"
                .into(),
            Self::Keep { .. } => {
                "the rootfs there was built from the same source: it is kept as it is".into()
            }
            Self::MakeParents { .. } => "the directory the rootfs goes in".into(),
            Self::MakeStaging { .. } => "build beside DIR, on its filesystem, so one rename(2) \
                 puts the finished tree in place and nothing half-built is ever seen"
                .into(),
            Self::MakeDirs { .. } => "the directories programs expect; proc, sys and dev \
                 stay empty: a container mounts its own there"
                .into(),
            Self::Copy { role, .. } => match role {
                Role::Busybox => "one static binary is the whole userland: it reads argv[0] \
                     to know which tool to be"
                    .into(),
                Role::Program => {
                    "a host program, at its host path; its loader and libraries follow".into()
                }
                Role::Loader { needed_by } => format!(
                    "the dynamic loader in the PT_INTERP of {}: execve(2) starts it first, \
                     and it maps their libraries",
                    programs(needed_by)
                ),
                Role::Library { needed_by } => format!(
                    "needed by {}: found the way ldd finds it, by the loader's --list",
                    programs(needed_by)
                ),
            },
            Self::Applets { .. } => "busybox --list-full names every tool it can be; a link \
                 under that name makes it that tool (relative links, readable from the host too)"
                .into(),
            Self::Write { file, .. } => match file {
                EtcFile::Passwd => {
                    "users root (0) and nobody (65534), so id and ls -l show names".into()
                }
                EtcFile::Group => "groups root (0) and nobody (65534)".into(),
                EtcFile::Stamp => "what the tree was built from, written last: a later \
                     build from the same source keeps the tree"
                    .into(),
            },
            Self::Rename { .. } => "the finished tree takes DIR's name in one atomic step".into(),
            Self::Exchange { .. } => "swap the finished tree with the stale one at DIR in one \
                 atomic step (Linux 3.15+)"
                .into(),
            Self::RemoveOld { .. } => "the stale tree, now where the new one was built".into(),
            Self::RemoveLeftover { .. } => "half a tree from an earlier build of DIR that was \
                 killed before it could clean up"
                .into(),
        }
    }

    fn chapter(&self) -> Chapter {
        chapter::ROOTFS
    }
}

/// Makes `dir` with exactly `mode`: `mkdir(2)` applies the umask, so
/// `chmod(2)` after it.
fn make_dir(dir: &Path, mode: u32) -> Result<(), Error> {
    std::fs::DirBuilder::new()
        .mode(mode)
        .create(dir)
        .map_err(|e| io_error(format!("mkdir(\"{}\", {mode:04o})", dir.display()), e))?;
    set_mode(dir, mode)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), Error> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| io_error(format!("chmod(\"{}\", {mode:04o})", path.display()), e))
}

/// Makes each missing directory between `root` and `path`'s parent, 0755.
fn make_parents(root: &Path, path: &Path) -> Result<(), Error> {
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    let Ok(below) = parent.strip_prefix(root) else {
        return Ok(());
    };
    let mut dir = root.to_path_buf();
    for part in below {
        dir.push(part);
        if !dir.is_dir() {
            make_dir(&dir, 0o755)?;
        }
    }
    Ok(())
}

impl Op {
    /// Makes the step. `files` counts what the build wrote (files and
    /// links). A `Break` ends the build early with its result.
    pub fn run(&self, narrator: &Narrator, files: &mut usize) -> Result<ControlFlow<Built>, Error> {
        match self {
            // Checked when the plan was made, as Keep's stamp was read.
            Self::StatBusybox { .. } => {}
            // Only a shortcut: without it the next run takes the long way.
            Self::RecordStat { path, record } => {
                if let Err(e) = std::fs::write(path, record.render()) {
                    narrator.note(&format!(
                        "{} failed ({}): the next run checks busybox the long way",
                        self.call(),
                        steps::error::describe_io(&e)
                    ));
                }
            }
            Self::Keep { dir } => {
                return Ok(ControlFlow::Break(Built::UpToDate { dir: dir.clone() }));
            }
            Self::MakeParents { dir } => std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(|e| io_error(self.call(), e))?,
            Self::MakeStaging { staging } => make_dir(staging, 0o755)?,
            Self::MakeDirs { root, dirs } => {
                for (name, mode) in dirs {
                    let dir = root.join(name);
                    make_parents(root, &dir)?;
                    make_dir(&dir, *mode)?;
                }
            }
            Self::Copy {
                from,
                root,
                path,
                mode,
                ..
            } => {
                let to = root.join(path);
                make_parents(root, &to)?;
                std::fs::copy(from, &to).map_err(|e| io_error(self.call(), e))?;
                // Not the host's mode: no setuid bit survives into the rootfs.
                set_mode(&to, *mode)?;
                *files += 1;
            }
            Self::Applets { root, links } => {
                for link in links {
                    let path = root.join(link);
                    make_parents(root, &path)?;
                    let target = busybox::link_target(link);
                    std::os::unix::fs::symlink(&target, &path).map_err(|e| {
                        io_error(
                            format!("symlink(\"{}\", \"{}\")", target.display(), path.display()),
                            e,
                        )
                    })?;
                    *files += 1;
                }
            }
            Self::Write { path, contents, .. } => {
                std::fs::write(path, contents).map_err(|e| io_error(self.call(), e))?;
                set_mode(path, 0o644)?;
                *files += 1;
            }
            Self::Rename {
                staging,
                dir,
                stamp,
            } => {
                if let Err(e) = std::fs::rename(staging, dir) {
                    let errno = Errno::from_raw(e.raw_os_error().unwrap_or(0));
                    if matches!(errno, Errno::ENOTEMPTY | Errno::EEXIST) {
                        return lost_race(narrator, staging, dir, stamp, self.call(), errno);
                    }
                    return Err(rename_error(self.call(), errno, dir));
                }
            }
            Self::Exchange {
                staging,
                dir,
                stamp,
            } => {
                if Stamp::read(dir).as_ref() == Some(stamp) {
                    return lost_race(narrator, staging, dir, stamp, self.call(), Errno::EEXIST);
                }
                let exchanged = nix::fcntl::renameat2(
                    nix::fcntl::AT_FDCWD,
                    staging.as_path(),
                    nix::fcntl::AT_FDCWD,
                    dir.as_path(),
                    nix::fcntl::RenameFlags::RENAME_EXCHANGE,
                );
                match exchanged {
                    Ok(()) => {}
                    // Removed since the plan was made: a plain rename will do.
                    Err(Errno::ENOENT) if !dir.exists() => {
                        std::fs::rename(staging, dir).map_err(|e| {
                            io_error(
                                format!("rename(\"{}\", \"{}\")", staging.display(), dir.display()),
                                e,
                            )
                        })?
                    }
                    Err(errno) => return Err(rename_error(self.call(), errno, dir)),
                }
            }
            Self::RemoveOld { path } => {
                std::fs::remove_dir_all(path).map_err(|e| io_error(self.call(), e))?
            }
            // Another build may have removed it first.
            Self::RemoveLeftover { path } => match std::fs::remove_dir_all(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io_error(self.call(), e));
                }
                _ => {}
            },
        }
        Ok(ControlFlow::Continue(()))
    }
}

/// DIR became a rootfs while this build ran: another build of the same
/// source got there first. Its tree is as good as this one, so this one is
/// discarded and the build succeeds.
fn lost_race(
    narrator: &Narrator,
    staging: &Path,
    dir: &Path,
    stamp: &Stamp,
    call: String,
    errno: Errno,
) -> Result<ControlFlow<Built>, Error> {
    if Stamp::read(dir).as_ref() != Some(stamp) {
        return Err(Error::sys(call, errno).hint(format!(
            "something else wrote to {} during the build; remove it or choose another directory",
            dir.display()
        )));
    }
    narrator.note(&format!(
        "another build finished {} first; this one's tree is removed",
        dir.display()
    ));
    std::fs::remove_dir_all(staging)
        .map_err(|e| io_error(format!("rm -r \"{}\"", staging.display()), e))?;
    Ok(ControlFlow::Break(Built::UpToDate {
        dir: dir.to_path_buf(),
    }))
}

fn rename_error(call: String, errno: Errno, dir: &Path) -> Error {
    let error = Error::sys(call, errno);
    match errno {
        Errno::EBUSY => error.hint(format!(
            "{} is a mount point; build into a directory inside it",
            dir.display()
        )),
        Errno::EINVAL => error.hint(format!(
            "this filesystem cannot swap directories; remove {} and build again",
            dir.display()
        )),
        _ => error,
    }
}
