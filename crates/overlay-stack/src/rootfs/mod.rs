//! A root filesystem from nothing.
//!
//! A container's processes see a directory tree of their own as `/`:
//! `chroot(2)` or `pivot_root(2)` makes a directory the root, and from then
//! on `/bin/sh` means that directory's `bin/sh`. An image is only a way of
//! shipping such a tree; this module makes one on the spot, with no
//! network, so there is always a root to start a container in. Used as the
//! lowest, read-only layer of an overlay, it is shared by every container
//! started on it. See <https://man7.org/linux/man-pages/man2/chroot.2.html>
//! and, for the directories it holds, hier(7):
//! <https://man7.org/linux/man-pages/man7/hier.7.html>.
//!
//! Programs come from one of two [`Source`]s:
//!
//! * the host's **static busybox** ([`busybox`]): one binary, copied to
//!   `/bin/busybox`, and a symlink to it for each of its applets — `sh`,
//!   `ls`, `ps`, `ip`, `httpd`, `nc`, `mount`, …;
//! * otherwise **the host's own programs** ([`host`]): a shell as `/bin/sh`
//!   and a few tools, with the shared libraries and the dynamic loader they
//!   need, found from their ELF headers ([`elf`]) and by asking the loader
//!   as `ldd` does ([`ldso`]).
//!
//! Both add the usual directories, `/etc/passwd` and `/etc/group` with
//! root and nobody, and the [`stamp`] `/etc/underhood-release` saying what
//! the tree was made from.
//!
//! A build is a [`Plan`] like every other change underhood makes: [`plan`]
//! looks (it runs `busybox --list-full`, `ld.so --list`) but writes nothing,
//! and [`build`] executes it. The tree is built in a staging directory
//! beside DIR and renamed into place at the end, so DIR never holds half a
//! rootfs; on an error the staging directory is removed. A DIR that already
//! holds a rootfs with the same stamp is kept as it is ("up to date"), one
//! with another stamp is replaced, and a directory holding anything else is
//! refused.
//!
//! Computing the stamp runs busybox and hashes it, too slow for every
//! container. [`ensure_default`], which `mini-run` calls for each one,
//! keeps busybox's [`fingerprint`] beside the cached tree and, while
//! `stat(2)` still shows the same file, keeps the tree without computing
//! the stamp again.

pub mod busybox;
pub mod elf;
pub mod fingerprint;
pub mod host;
pub mod ldso;
pub mod op;
pub mod stamp;

use std::fmt;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::errno::Errno;
use steps::{Error, Narrator, Plan};

use fingerprint::{Fingerprint, Record};
pub use op::{EtcFile, Op, Role};
use stamp::Stamp;

/// The directories of every rootfs, in the order they are made, with their
/// modes. `tmp` and `var/tmp` are writable by everyone but sticky (a user
/// may delete only their own files there); root's home is root's alone.
pub const SKELETON: &[(&str, u32)] = &[
    ("bin", 0o755),
    ("sbin", 0o755),
    ("usr", 0o755),
    ("usr/bin", 0o755),
    ("usr/sbin", 0o755),
    ("etc", 0o755),
    // Mount points: a container mounts its own proc, sys and dev here.
    ("proc", 0o755),
    ("sys", 0o755),
    ("dev", 0o755),
    ("tmp", 0o1777),
    ("root", 0o700),
    ("run", 0o755),
    ("var", 0o755),
    ("var/tmp", 0o1777),
    ("home", 0o755),
];

/// `/etc/passwd`: the superuser, and the user that unmapped ids show as
/// in a user namespace (65534, the overflow id).
pub const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
/// `/etc/group`, to match.
pub const GROUP: &str = "root:x:0:\nnobody:x:65534:\n";

/// The cached default rootfs when running as root.
pub const SYSTEM_CACHE: &str = "/var/cache/underhood/rootfs/default";
/// Below a user's cache directory, the cached default rootfs.
pub const USER_CACHE: &str = "underhood/rootfs/default";

/// What marks a staging directory's name: `.DIR.staging-PID-N`.
const STAGING_MARK: &str = ".staging-";
/// The longest name DIR may have: its staging directory's name, with the
/// dot, the mark, a PID of up to 10 digits, a dash and a count of up to
/// 4, must fit in `NAME_MAX`.
const MAX_NAME: usize = crate::paths::NAME_MAX - 1 - STAGING_MARK.len() - 10 - 1 - 4;

/// Where a rootfs's programs come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A static busybox binary on the host.
    Busybox { path: PathBuf },
    /// The host's shell and tools, with their libraries and loader.
    Host,
}

impl Source {
    /// The first `busybox` on `$PATH` if it is static, else the host's
    /// programs; `from_host` asks for the host's programs anyway. A
    /// dynamically linked busybox is passed over: it would need its
    /// libraries, as the host's programs do.
    pub fn detect(from_host: bool) -> Result<Source, Error> {
        if !from_host {
            if let Some(path) = busybox::find() {
                let kind = elf::read(&path).map_err(|e| {
                    e.hint(
                        "the busybox first on $PATH is damaged: reinstall busybox-static, \
                         or build with --from-host",
                    )
                })?;
                if kind == elf::Executable::Static {
                    return Ok(Source::Busybox { path });
                }
            }
        }
        if host::shell().is_none() {
            return Err(Error::setup(format!(
                "no static busybox on $PATH and no shell at {} to copy",
                host::SHELL
            ))
            .hint("install a static busybox: apt install busybox-static"));
        }
        Ok(Source::Host)
    }

    /// `busybox` or `host-binary`, as in "a busybox rootfs".
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Busybox { .. } => "busybox",
            Self::Host => "host-binary",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Busybox { path } => write!(f, "busybox {}", path.display()),
            Self::Host => f.write_str(stamp::HOST_BINARIES),
        }
    }
}

/// What a build did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Built {
    /// A new tree is at `dir`, with `files` files and links.
    Made { dir: PathBuf, files: usize },
    /// `dir` already held a rootfs from the same source.
    UpToDate { dir: PathBuf },
}

impl Built {
    pub fn dir(&self) -> &Path {
        match self {
            Self::Made { dir, .. } | Self::UpToDate { dir } => dir,
        }
    }
}

/// What goes into the tree: the files to copy, the applet links, and the
/// stamp that says so.
struct Content {
    /// (host path, path relative to the root, mode, role)
    copies: Vec<(PathBuf, PathBuf, u32, Role)>,
    applets: Vec<PathBuf>,
    stamp: Stamp,
}

impl Content {
    fn gather(source: &Source) -> Result<Self, Error> {
        match source {
            Source::Busybox { path } => Self::from_busybox(path),
            Source::Host => Self::from_host(),
        }
    }

    fn from_busybox(path: &Path) -> Result<Self, Error> {
        match elf::read(path)? {
            elf::Executable::Static => {}
            elf::Executable::Dynamic { interpreter } => {
                return Err(Error::usage(format!(
                    "{} is linked dynamically (its loader is {}), so alone it runs nowhere; \
                     use a static busybox (apt install busybox-static) or --from-host",
                    path.display(),
                    interpreter.display()
                )));
            }
            elf::Executable::NotElf => {
                return Err(Error::usage(format!(
                    "{} is not a program (not an ELF file)",
                    path.display()
                )));
            }
        }
        let applets = busybox::applets(path)?;
        let version = busybox::version(path)?;
        let sha256 = stamp::sha256_file(path)
            .map_err(|e| io_error(format!("read \"{}\"", path.display()), e))?;
        Ok(Self {
            copies: vec![(
                path.to_path_buf(),
                busybox::IN_ROOTFS.into(),
                0o755,
                Role::Busybox,
            )],
            applets,
            stamp: Stamp {
                layout: stamp::LAYOUT,
                source: stamp::BUSYBOX.into(),
                path: Some(path.display().to_string()),
                version: Some(version),
                sha256,
            },
        })
    }

    fn from_host() -> Result<Self, Error> {
        let mut copies = Vec::new();
        let mut hashes = Vec::new();
        for file in host::collect()? {
            let hash = stamp::sha256_file(&file.host)
                .map_err(|e| io_error(format!("read \"{}\"", file.host.display()), e))?;
            hashes.push((hash, file.inside.display().to_string()));
            let mode = match file.role {
                Role::Library { .. } => 0o644,
                _ => 0o755,
            };
            let inside = file
                .inside
                .strip_prefix("/")
                .unwrap_or(&file.inside)
                .to_path_buf();
            copies.push((file.host, inside, mode, file.role));
        }
        Ok(Self {
            copies,
            applets: Vec::new(),
            stamp: Stamp {
                layout: stamp::LAYOUT,
                source: stamp::HOST_BINARIES.into(),
                path: None,
                version: None,
                sha256: stamp::sha256_of_list(&hashes),
            },
        })
    }
}

/// What is at DIR now.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Found {
    Missing,
    Empty,
    /// A rootfs with the stamp this build would write.
    UpToDate,
    /// A rootfs from another source or an older builder.
    Stale,
}

fn look_at(dir: &Path, expected: &Stamp) -> Result<Found, Error> {
    let metadata = match std::fs::symlink_metadata(dir) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Missing),
        Err(e) => return Err(io_error(format!("stat(\"{}\")", dir.display()), e)),
    };
    if metadata.is_symlink() {
        return Err(Error::usage(format!(
            "{} is a symbolic link; give the directory it points to, or a new path",
            dir.display()
        )));
    }
    if !metadata.is_dir() {
        return Err(Error::usage(format!(
            "{} exists and is not a directory; give a new or empty directory",
            dir.display()
        )));
    }
    let mut entries = std::fs::read_dir(dir)
        .map_err(|e| io_error(format!("opendir(\"{}\")", dir.display()), e))?;
    if entries.next().is_none() {
        return Ok(Found::Empty);
    }
    match Stamp::read(dir) {
        Some(found) if found == *expected => Ok(Found::UpToDate),
        Some(_) => Ok(Found::Stale),
        None => Err(Error::usage(format!(
            "{} is not empty and holds no underhood rootfs (no {}); give a new or empty directory",
            dir.display(),
            stamp::FILE
        ))),
    }
}

/// How old a staging directory of a build that is gone must be before a
/// later build removes it: long past any build still running, even one
/// in another pid namespace, whose pid this one cannot see.
const LEFTOVER_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Staging directories beside DIR left by builds that were killed (a
/// Ctrl-C, a SIGKILL) before they could remove them: named for DIR, with
/// the pid of a process that no longer exists, and not touched for
/// [`LEFTOVER_AGE`].
fn leftovers(parent: &Path, name: &std::ffi::OsStr) -> Vec<PathBuf> {
    let prefix = format!(".{}{STAGING_MARK}", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|entry| {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = file_name.strip_prefix(&prefix) else {
                return false;
            };
            let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
                return false;
            };
            let gone = !Path::new("/proc").join(pid.to_string()).exists();
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > LEFTOVER_AGE);
            gone && old && entry.file_type().is_ok_and(|t| t.is_dir())
        })
        .map(|entry| entry.path())
        .collect();
    found.sort();
    found
}

/// DIR as an absolute path, with its parent and its name.
fn dir_parts(dir: &Path) -> Result<(PathBuf, PathBuf, std::ffi::OsString), Error> {
    // A rootfs is a layer: mini-run stacks it as a lowerdir.
    crate::paths::check_layer("DIR", dir)?;
    let named = dir.file_name().map_or(0, |n| n.len());
    if named > MAX_NAME {
        return Err(Error::usage(format!(
            "DIR {}…: a name of {named} bytes; a rootfs's name has at most {MAX_NAME}, for \
             its staging directory beside it to fit in the kernel's {}",
            crate::paths::shown(Path::new(
                &dir.to_string_lossy().chars().take(24).collect::<String>()
            )),
            crate::paths::NAME_MAX
        )));
    }
    let dir = std::path::absolute(dir).map_err(|_| {
        Error::usage(format!(
            "{:?} is not a directory's path",
            dir.display().to_string()
        ))
    })?;
    let (Some(name), Some(parent)) = (dir.file_name(), dir.parent()) else {
        return Err(Error::usage(format!(
            "{} cannot hold a rootfs; name a directory (not / and not ending in ..)",
            dir.display()
        )));
    };
    let (name, parent) = (name.to_os_string(), parent.to_path_buf());
    Ok((dir, parent, name))
}

/// The plan that builds a rootfs from `source` at `dir`. Reads what it
/// needs (`busybox --list-full`, `ld.so --list`, the files' hashes, DIR's
/// stamp) but writes nothing.
pub fn plan(dir: &Path, source: &Source) -> Result<Plan<Op>, Error> {
    plan_remembering(dir, source, None)
}

/// [`plan`], and with a `fingerprint` of busybox taken before it was run,
/// a step that keeps it beside DIR with the stamp, for
/// [`plan_if_unchanged`] to find.
fn plan_remembering(
    dir: &Path,
    source: &Source,
    fingerprint: Option<Fingerprint>,
) -> Result<Plan<Op>, Error> {
    let (dir, parent, name) = dir_parts(dir)?;
    let content = Content::gather(source)?;
    let found = look_at(&dir, &content.stamp)?;
    let remember = match (fingerprint, fingerprint::path_for(&dir)) {
        (Some(fingerprint), Some(path)) => Some(Op::RecordStat {
            path,
            record: Record {
                fingerprint,
                stamp: content.stamp.clone(),
            },
        }),
        _ => None,
    };
    let mut plan = Plan::new();
    for path in leftovers(&parent, &name) {
        plan.push(Op::RemoveLeftover { path });
    }
    if found == Found::UpToDate {
        if let Some(remember) = remember {
            plan.push(remember);
        }
        plan.push(Op::Keep { dir });
        return Ok(plan);
    }
    if found == Found::Stale {
        refuse_if_mounted(&dir)?;
    }
    // Two builds in one process (tests, threads) get distinct names too.
    static BUILDS: AtomicUsize = AtomicUsize::new(0);
    let staging = parent.join(format!(
        ".{}{STAGING_MARK}{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        BUILDS.fetch_add(1, Ordering::Relaxed)
    ));
    if !parent.is_dir() {
        plan.push(Op::MakeParents {
            dir: parent.clone(),
        });
    }
    plan.push(Op::MakeStaging {
        staging: staging.clone(),
    });
    plan.push(Op::MakeDirs {
        root: staging.clone(),
        dirs: SKELETON.to_vec(),
    });
    for (from, path, mode, role) in content.copies {
        plan.push(Op::Copy {
            from,
            root: staging.clone(),
            path,
            mode,
            role,
        });
    }
    if !content.applets.is_empty() {
        plan.push(Op::Applets {
            root: staging.clone(),
            links: content.applets,
        });
    }
    let etc = staging.join("etc");
    plan.push(Op::Write {
        path: etc.join("passwd"),
        contents: PASSWD.into(),
        file: EtcFile::Passwd,
    });
    plan.push(Op::Write {
        path: etc.join("group"),
        contents: GROUP.into(),
        file: EtcFile::Group,
    });
    plan.push(Op::Write {
        path: staging.join(stamp::FILE),
        contents: content.stamp.render(),
        file: EtcFile::Stamp,
    });
    let stamp = content.stamp;
    if let Some(remember) = remember {
        plan.push(remember);
    }
    match found {
        Found::Stale => {
            plan.push(Op::Exchange {
                staging: staging.clone(),
                dir,
                stamp,
            });
            plan.push(Op::RemoveOld { path: staging });
        }
        _ => plan.push(Op::Rename {
            staging,
            dir,
            stamp,
        }),
    }
    Ok(plan)
}

/// Executes a plan from [`plan`], narrating each step when the narrator
/// explains. (For `--dry-run` the caller prints the plan instead.) On an
/// error, or when the build is stopped between two steps
/// ([`crate::interrupt`]), what it made is taken back before the error is
/// returned: the staging directory, the parents it made, and a tree it
/// had already put in place (a replaced rootfs is swapped back, until the
/// last step has removed it).
pub fn build(plan: &Plan<Op>, narrator: &Narrator) -> Result<Built, Error> {
    let mut files = 0;
    let mut made = Made::default();
    let mut number = 0;
    let outcome = plan.execute(narrator, |op| {
        match op {
            // Ours to remove on an error from the moment it is made, but
            // not if it was there before.
            Op::MakeStaging { staging } if !staging.exists() => {
                made.staging = Some(staging.clone());
            }
            Op::MakeParents { dir } => made.parents = missing_ancestors(dir),
            _ => {}
        }
        let flow = op.run(narrator, &mut files)?;
        match op {
            Op::Rename { dir, .. } if flow.is_continue() => made.placed = Some(dir.clone()),
            // DIR was gone: a plain rename put the tree there.
            Op::Exchange { staging, dir, .. } if !staging.exists() => {
                made.placed = Some(dir.clone());
            }
            Op::Exchange { staging, dir, .. } => {
                made.swapped = Some((staging.clone(), dir.clone()));
            }
            Op::RemoveOld { .. } => made.swapped = None,
            _ => {}
        }
        number += 1;
        crate::interrupt::after_step(number)?;
        Ok(flow)
    });
    match outcome {
        Ok(ControlFlow::Break(built)) => Ok(built),
        Ok(ControlFlow::Continue(())) => Ok(Built::Made {
            dir: target(plan).unwrap_or_default(),
            files,
        }),
        Err(error) => made.take_back(error),
    }
}

/// What a build has made so far, to take back if it does not finish.
#[derive(Debug, Default)]
struct Made {
    staging: Option<PathBuf>,
    /// The parents `MakeParents` made, deepest first.
    parents: Vec<PathBuf>,
    /// DIR, where the new tree was renamed.
    placed: Option<PathBuf>,
    /// The staging path and DIR, their trees swapped: the old one waits
    /// at the staging path.
    swapped: Option<(PathBuf, PathBuf)>,
}

impl Made {
    fn take_back(self, error: Error) -> Result<Built, Error> {
        if let Some((staging, dir)) = &self.swapped {
            // The old tree back at DIR; the new one, now at the staging
            // path, goes with it below.
            let _ = nix::fcntl::renameat2(
                nix::fcntl::AT_FDCWD,
                staging.as_path(),
                nix::fcntl::AT_FDCWD,
                dir.as_path(),
                nix::fcntl::RenameFlags::RENAME_EXCHANGE,
            );
        }
        let mut left = Vec::new();
        for tree in self.placed.iter().chain(&self.staging) {
            match std::fs::remove_dir_all(tree) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => left.push((tree, e)),
                _ => {}
            }
        }
        for parent in &self.parents {
            let _ = std::fs::remove_dir(parent);
        }
        match left.first() {
            None => Err(error),
            Some((tree, e)) => Err(error.hint(format!(
                "removing the half-built {} failed too ({e}); remove it by hand",
                tree.display()
            ))),
        }
    }
}

/// The directories `mkdir -p dir` would make, deepest first.
fn missing_ancestors(dir: &Path) -> Vec<PathBuf> {
    dir.ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
        .map(Path::to_path_buf)
        .collect()
}

/// The directory a plan builds.
fn target(plan: &Plan<Op>) -> Option<PathBuf> {
    plan.steps().iter().find_map(|op| match op {
        Op::Keep { dir } | Op::Rename { dir, .. } | Op::Exchange { dir, .. } => Some(dir.clone()),
        _ => None,
    })
}

/// Where the default rootfs is cached: [`SYSTEM_CACHE`] as root, else
/// [`USER_CACHE`] under `$XDG_CACHE_HOME` (or `~/.cache`).
pub fn default_dir() -> PathBuf {
    if nix::unistd::Uid::effective().is_root() {
        PathBuf::from(SYSTEM_CACHE)
    } else {
        user_cache().join(USER_CACHE)
    }
}

/// The user's cache directory by the XDG base directory rules: a relative
/// `$XDG_CACHE_HOME` is ignored.
fn user_cache() -> PathBuf {
    let absolute =
        |value: Option<std::ffi::OsString>| value.map(PathBuf::from).filter(|p| p.is_absolute());
    if let Some(cache) = absolute(std::env::var_os("XDG_CACHE_HOME")) {
        return cache;
    }
    let home = absolute(std::env::var_os("HOME")).or_else(|| {
        nix::unistd::User::from_uid(nix::unistd::Uid::effective())
            .ok()
            .flatten()
            .map(|user| user.dir)
    });
    match home {
        Some(home) => home.join(".cache"),
        None => std::env::temp_dir().join(format!("underhood-{}", nix::unistd::Uid::effective())),
    }
}

/// Refuses to replace a rootfs that a mounted stack uses as a layer: the
/// kernel calls changing a lower layer under a mount undefined, and the
/// containers on it would see files vanish.
fn refuse_if_mounted(dir: &Path) -> Result<(), Error> {
    let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mounts = crate::mounts::overlay_mounts().unwrap_or_default();
    if let Some(mount) = mounts.iter().find(|m| {
        m.resolved_lowers()
            .iter()
            .any(|l| l.starts_with(&canonical))
    }) {
        return Err(Error::usage(format!(
            "{}: holds a rootfs from another source, and the stack mounted at {} uses it \
             as a layer; unmount that stack (or stop its container) before rebuilding",
            dir.display(),
            mount.target.display()
        )));
    }
    Ok(())
}

/// The plan that keeps the rootfs at `dir` without computing its stamp:
/// `busybox` has the fingerprint recorded beside DIR, and DIR the stamp
/// recorded with it. `None` when anything differs or is missing; then
/// only [`plan`] can tell. Runs nothing: a `stat(2)` of busybox, the
/// record, DIR's stamp, and a look for leftovers beside DIR.
pub fn plan_if_unchanged(dir: &Path, busybox: &Path) -> Option<Plan<Op>> {
    let (dir, parent, name) = dir_parts(dir).ok()?;
    let now = Fingerprint::of(busybox)?;
    let record = Record::read(&dir)?;
    if !record.holds_for(busybox, &now) || look_at(&dir, &record.stamp).ok()? != Found::UpToDate {
        return None;
    }
    let mut plan = Plan::new();
    for path in leftovers(&parent, &name) {
        plan.push(Op::RemoveLeftover { path });
    }
    plan.push(Op::StatBusybox {
        busybox: busybox.to_path_buf(),
        record: fingerprint::path_for(&dir)?,
    });
    plan.push(Op::Keep { dir });
    Some(plan)
}

/// The cached default rootfs, built first if it is missing or stale (its
/// source changed). With a `--dry-run` narrator nothing is built.
///
/// While the first busybox on `$PATH` is unchanged since its stamp was
/// last computed ([`plan_if_unchanged`]), nothing is run; otherwise the
/// source is detected and planned as `overlay-stack rootfs` does, and the
/// plan also records busybox's fingerprint for the next time.
pub fn ensure_default(narrator: &Narrator) -> Result<PathBuf, Error> {
    let dir = default_dir();
    let unchanged = busybox::find().and_then(|busybox| plan_if_unchanged(&dir, &busybox));
    let plan = match unchanged {
        Some(plan) => plan,
        None => {
            let source = Source::detect(false)?;
            // Taken before busybox is run and hashed: a change after this
            // moves its ctime, and the next run sees the difference.
            let fingerprint = match &source {
                Source::Busybox { path } => {
                    Fingerprint::of(path).filter(|f| f.settled_at(std::time::SystemTime::now()))
                }
                Source::Host => None,
            };
            plan_remembering(&dir, &source, fingerprint)?
        }
    };
    if !narrator.is_dry_run() {
        build(&plan, narrator)?;
    }
    Ok(dir)
}

/// An I/O error as a failed call: `copy "a" → "b": no space left on device
/// (ENOSPC)`, with a hint where one helps.
pub(crate) fn io_error(call: impl fmt::Display, error: std::io::Error) -> Error {
    let errno = error.raw_os_error().map(Errno::from_raw);
    let error = Error::io(call, &error);
    match errno {
        Some(Errno::ENOSPC) => {
            error.hint("the filesystem is full; free some space or build elsewhere")
        }
        Some(Errno::EACCES | Errno::EPERM | Errno::EROFS) => {
            error.hint("build in a directory you may write to (the default needs no root)")
        }
        _ => error,
    }
}

#[cfg(test)]
mod tests;
