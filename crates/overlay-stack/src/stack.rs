//! A stack of layers, checked before anything is mounted.
//!
//! An overlay mount takes three kinds of directory (see
//! <https://docs.kernel.org/filesystems/overlayfs.html>):
//!
//! * `lowerdir`: the read-only layers, **topmost first** — a name found in
//!   an earlier layer hides the same name in a later one;
//! * `upperdir`: the one writable layer: every change through the mount
//!   lands here;
//! * `workdir`: an empty scratch directory under the *same mount* as the
//!   upper, where overlayfs prepares a copy-up before it moves it into
//!   place with `rename()` (or `link()`), so that a crash never leaves a
//!   half-copied file visible.
//!
//! The kernel answers most mistakes with a bare `EINVAL` and a line in its
//! log. [`Stack::check`] catches the classic ones first and says what to
//! do; the rest get a hint from [`mount_hint`].

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::statfs::{FsType, statfs};
use steps::Error;

use crate::paths;

/// The writable half of a stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Writable {
    pub upper: PathBuf,
    pub work: PathBuf,
}

/// A stack as asked for on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stack {
    /// Topmost first, as in `lowerdir`.
    pub lowers: Vec<PathBuf>,
    pub writable: Option<Writable>,
    pub target: PathBuf,
    /// Keep overlayfs' markers in `user.overlay.*` (`userxattr`): needed
    /// when mounting inside a user namespace.
    pub userxattr: bool,
}

/// The largest mount options string the kernel reads: `mount(2)` copies
/// one page of options.
pub const OPTIONS_LIMIT: usize = 4095;

impl Stack {
    /// The options string for `mount(2)`, with the layers named as given.
    pub fn options_with(&self, lowers: &[String]) -> String {
        let mut options = format!("lowerdir={}", lowers.join(":"));
        if let Some(w) = &self.writable {
            options.push_str(&format!(
                ",upperdir={},workdir={}",
                w.upper.display(),
                w.work.display()
            ));
        }
        if self.userxattr {
            options.push_str(",userxattr");
        }
        options
    }

    /// The options string with every layer's full path.
    pub fn options(&self) -> String {
        let lowers: Vec<String> = self
            .lowers
            .iter()
            .map(|l| l.display().to_string())
            .collect();
        self.options_with(&lowers)
    }

    /// Whether the options fit in the one page `mount(2)` reads.
    pub fn fits_one_page(&self) -> bool {
        self.options().len() <= OPTIONS_LIMIT
    }

    /// Checks everything that can be checked before mounting, and makes
    /// every path absolute. Returns the directories that must be made.
    pub fn check(mut self) -> Result<(Self, Vec<PathBuf>), Error> {
        if self.lowers.is_empty() {
            return Err(Error::usage(
                "--lower: no layer given; name at least one directory",
            ));
        }
        if self.writable.is_none() && self.lowers.len() < 2 {
            return Err(Error::usage(
                "a stack without --upper is read-only, and overlayfs needs at least two lower \
                 layers for that; add a layer, or give --upper and --work",
            ));
        }
        for lower in &mut self.lowers {
            paths::check_layer("--lower", lower)?;
            *lower = absolute(lower);
            match std::fs::metadata(&*lower) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(Error::usage(format!(
                        "--lower {}: not a directory; a layer is a directory tree",
                        lower.display()
                    )));
                }
                Err(_) => {
                    return Err(Error::usage(format!(
                        "--lower {}: no such directory; check the path (layers are listed \
                         topmost first, separated by ':')",
                        lower.display()
                    )));
                }
            }
        }
        let mut make = Vec::new();
        if let Some(w) = &mut self.writable {
            paths::check_layer("--upper", &w.upper)?;
            paths::check_layer("--work", &w.work)?;
            w.upper = absolute(&w.upper);
            w.work = absolute(&w.work);
            check_writable(w, &self.lowers)?;
            check_not_in_use(w)?;
            if self.userxattr {
                check_user_xattrs(w)?;
            }
            for dir in [&w.upper, &w.work] {
                if !dir.exists() {
                    make.push(dir.clone());
                }
            }
        }
        paths::check("TARGET", &self.target)?;
        if paths::is_root(&self.target) {
            return Err(Error::usage(format!(
                "TARGET {}: the root directory; a stack mounted over it would hide the whole \
                 system: give an empty directory of its own",
                paths::shown(&self.target)
            )));
        }
        self.target = absolute(&self.target);
        match std::fs::metadata(&self.target) {
            Ok(m) if !m.is_dir() => {
                return Err(Error::usage(format!(
                    "{}: the mount point is not a directory",
                    self.target.display()
                )));
            }
            Ok(_) => {}
            Err(_) => make.push(self.target.clone()),
        }
        Ok((self, make))
    }
}

/// `path` made absolute against the current directory, without following
/// symlinks (the kernel resolves them at mount time).
pub fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return normalize(path);
    }
    match std::env::current_dir() {
        Ok(cwd) => normalize(&cwd.join(path)),
        Err(_) => path.to_path_buf(),
    }
}

/// Drops `.` components and trailing slashes, so paths compare and print
/// cleanly.
fn normalize(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

/// The nearest existing directory at or above `path`.
pub(crate) fn existing_ancestor(path: &Path) -> &Path {
    let mut here = path;
    while !here.exists() {
        match here.parent() {
            Some(parent) => here = parent,
            None => break,
        }
    }
    here
}

/// Filesystems that cannot hold an upper layer: overlayfs needs one that
/// is writable, keeps `trusted.*` xattrs and file types in its directory
/// entries, and can rename with a whiteout.
const NO_UPPER: &[(i64, &str)] = &[
    (0x794c_7630, "an overlayfs"),
    (0x6969, "NFS"),
    (0x4d44, "FAT"),
    (0x2011_bab0, "exFAT"),
    (0x5346_544e, "NTFS"),
    (0x6573_5546, "a FUSE filesystem"),
    (0x7371_7368, "squashfs, which is read-only"),
    (0xe0f5_e1e2, "EROFS, which is read-only"),
    (0x9660, "ISO 9660, which is read-only"),
];

/// What kind of filesystem `path` is on, when it is one that cannot hold
/// an upper layer.
fn unsupported_upper(path: &Path) -> Option<&'static str> {
    let fs: FsType = statfs(path).ok()?.filesystem_type();
    #[allow(clippy::unnecessary_cast)]
    let magic = fs.0 as i64;
    NO_UPPER
        .iter()
        .find(|(m, _)| *m == magic)
        .map(|(_, name)| *name)
}

/// `path` with the symlinks of its existing part resolved, as the kernel
/// will resolve them when it mounts.
fn resolved(path: &Path) -> PathBuf {
    let existing = existing_ancestor(path);
    let rest = path.strip_prefix(existing).unwrap_or(Path::new(""));
    match std::fs::canonicalize(existing) {
        Ok(real) if rest.as_os_str().is_empty() => real,
        Ok(real) => real.join(rest),
        Err(_) => path.to_path_buf(),
    }
}

fn check_writable(w: &Writable, lowers: &[PathBuf]) -> Result<(), Error> {
    for (flag, dir) in [("--upper", &w.upper), ("--work", &w.work)] {
        if paths::is_root(dir) {
            return Err(Error::usage(format!(
                "{flag} {}: the root directory; overlayfs would write into the whole system: \
                 give a directory of the stack's own",
                dir.display()
            )));
        }
    }
    let (upper, work) = (resolved(&w.upper), resolved(&w.work));
    if upper == work || work.starts_with(&upper) || upper.starts_with(&work) {
        return Err(Error::usage(format!(
            "--upper {} and --work {}: one is inside the other; overlayfs needs them side by \
             side, e.g. DIR/upper and DIR/work",
            w.upper.display(),
            w.work.display()
        )));
    }
    for lower in lowers {
        let real = resolved(lower);
        if upper.starts_with(&real) || real.starts_with(&upper) {
            return Err(Error::usage(format!(
                "--upper {} overlaps --lower {}; the layers of a stack must be separate \
                 directories",
                w.upper.display(),
                lower.display()
            )));
        }
    }
    let upper_at = existing_ancestor(&w.upper);
    let work_at = existing_ancestor(&w.work);
    if let Some(kind) = unsupported_upper(upper_at) {
        return Err(Error::usage(format!(
            "--upper {}: it is on {kind}, which cannot hold an upper layer; put upper and \
             work on a tmpfs (mount -t tmpfs tmpfs DIR) or a disk filesystem like ext4",
            w.upper.display()
        )));
    }
    let (Ok(upper_meta), Ok(work_meta)) = (std::fs::metadata(upper_at), std::fs::metadata(work_at))
    else {
        return Ok(());
    };
    if upper_meta.dev() != work_meta.dev() {
        return Err(Error::usage(format!(
            "--upper {} and --work {} are on different filesystems; overlayfs moves files \
             from work to upper with rename(), so put both on the same one",
            w.upper.display(),
            w.work.display()
        )));
    }
    if crate::mounts::mount_of(upper_at) != crate::mounts::mount_of(work_at) {
        return Err(Error::usage(format!(
            "--upper {} and --work {} are on two mounts of one filesystem (a bind mount); \
             overlayfs needs both under the same mount, so put them side by side",
            w.upper.display(),
            w.work.display()
        )));
    }
    if w.work.is_dir() {
        let strangers: Vec<String> = std::fs::read_dir(&w.work)
            .map_err(|e| Error::setup(format!("opendir(\"{}\"): {e}", w.work.display())))?
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .filter(|name| !is_overlay_own(name))
            .map(|name| name.to_string_lossy().into_owned())
            .collect();
        if let Some(first) = strangers.first() {
            return Err(Error::usage(format!(
                "--work {}: not empty (it has {first}{}); overlayfs needs an empty work \
                 directory: use a new one",
                w.work.display(),
                if strangers.len() > 1 { " and more" } else { "" }
            )));
        }
    } else if w.work.exists() {
        return Err(Error::usage(format!(
            "--work {}: not a directory",
            w.work.display()
        )));
    }
    if w.upper.exists() && !w.upper.is_dir() {
        return Err(Error::usage(format!(
            "--upper {}: not a directory",
            w.upper.display()
        )));
    }
    Ok(())
}

/// In a user namespace overlayfs keeps its marks in `user.*` attributes,
/// so the upper's filesystem must keep them: without them the first
/// opaque directory fails with `EIO`.
fn check_user_xattrs(w: &Writable) -> Result<(), Error> {
    if crate::whiteout::keeps_user_xattrs(existing_ancestor(&w.upper)) {
        return Ok(());
    }
    Err(Error::usage(format!(
        "--upper {}: its filesystem keeps no user.* extended attributes, which overlayfs \
         needs in a user namespace (tmpfs keeps them from Linux 6.6); put upper and work on \
         a disk filesystem like ext4",
        w.upper.display()
    )))
}

/// Refuses an upper or work directory that a mounted stack already uses:
/// the kernel only warns, and the two stacks then corrupt each other.
fn check_not_in_use(w: &Writable) -> Result<(), Error> {
    let canonical = |p: &Path| std::fs::canonicalize(p).ok();
    let (upper, work) = (canonical(&w.upper), canonical(&w.work));
    for mount in crate::mounts::overlay_mounts().unwrap_or_default() {
        for (ours, flag) in [(&upper, "--upper"), (&work, "--work")] {
            let Some(ours) = ours else { continue };
            if mount.upper.as_ref() == Some(ours) || mount.work.as_ref() == Some(ours) {
                return Err(Error::usage(format!(
                    "{flag} {}: already in use by the stack mounted at {}; two stacks \
                     sharing an upper or work directory corrupt each other: give this one \
                     its own, or unmount that one first",
                    ours.display(),
                    mount.target.display()
                )));
            }
        }
    }
    Ok(())
}

/// The entries overlayfs makes in a work directory itself: a reused work
/// directory of an unmounted stack has them and is fine.
fn is_overlay_own(name: &OsStr) -> bool {
    name == "work" || name == "index"
}

/// A hint for an errno from `mount("overlay", …)`.
pub fn mount_hint(errno: Errno, stack: &Stack) -> String {
    match errno {
        Errno::ENODEV => "this kernel has no overlayfs; load it with modprobe overlay".into(),
        Errno::EPERM if stack.userxattr => format!(
            "overlayfs can be mounted inside a user namespace from Linux 5.11 (this is {}); \
             run as root instead",
            steps::kernel::release()
        ),
        Errno::EPERM => {
            "mounting needs CAP_SYS_ADMIN: run with sudo, or in a user namespace of your own \
             (ns-unshare -r --mount overlay-stack mount …, Linux 5.11+)"
                .into()
        }
        Errno::EBUSY => {
            "the upper or work directory is in use by another overlay mount; give this stack \
             its own"
                .into()
        }
        Errno::ELOOP => "two layers overlap: one is inside another".into(),
        Errno::EINVAL => {
            "overlayfs refused the options; the kernel log says why: dmesg | grep overlay".into()
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(lowers: &[&str], upper: Option<(&str, &str)>) -> Stack {
        Stack {
            lowers: lowers.iter().map(PathBuf::from).collect(),
            writable: upper.map(|(u, w)| Writable {
                upper: u.into(),
                work: w.into(),
            }),
            target: "/m".into(),
            userxattr: false,
        }
    }

    #[test]
    fn options_name_the_layers_topmost_first() {
        let s = stack(&["/l/top", "/l/base"], Some(("/u", "/w")));
        assert_eq!(
            s.options(),
            "lowerdir=/l/top:/l/base,upperdir=/u,workdir=/w"
        );
        let mut s = stack(&["/a", "/b"], None);
        s.userxattr = true;
        assert_eq!(s.options(), "lowerdir=/a:/b,userxattr");
    }

    #[test]
    fn separators_in_paths_are_refused() {
        for bad in ["/tmp/a,upperdir=/etc", "/tmp/a:b", "/tmp/a\\b"] {
            let err = stack(&[bad, "/tmp"], None).check().unwrap_err();
            assert_eq!(err.code(), 2, "{bad}");
            assert!(err.to_string().contains("separator"), "{err}");
        }
        let err = stack(&["/tmp/a\nb", "/tmp"], None).check().unwrap_err();
        assert!(err.to_string().contains("a newline"), "{err}");
    }

    #[test]
    fn the_root_is_no_mount_point_nor_upper() {
        let mut s = stack(&["/tmp", "/usr"], None);
        s.target = "/".into();
        let err = s.check().unwrap_err();
        assert!(
            err.to_string().starts_with("TARGET /: the root directory"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("root");
        std::os::unix::fs::symlink("/", &link).unwrap();
        let mut s = stack(&["/tmp"], Some((link.to_str().unwrap(), "/w")));
        s.target = dir.path().join("m");
        let err = s.check().unwrap_err();
        assert!(err.to_string().contains("the root directory"), "{err}");
    }

    #[test]
    fn a_read_only_stack_needs_two_layers() {
        let err = stack(&["/tmp"], None).check().unwrap_err();
        assert!(err.to_string().contains("at least two lower"), "{err}");
    }

    #[test]
    fn a_missing_lower_is_named() {
        let err = stack(&["/no/such/layer", "/tmp"], None)
            .check()
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--lower /no/such/layer: no such directory"),
            "{err}"
        );
    }

    #[test]
    fn upper_and_work_must_be_side_by_side() {
        let err = stack(&["/tmp"], Some(("/x/upper", "/x/upper/work")))
            .check()
            .unwrap_err();
        assert!(err.to_string().contains("one is inside the other"), "{err}");
    }

    #[test]
    fn a_work_dir_with_files_is_refused_but_overlays_own_are_fine() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir_all(work.join("work")).unwrap();
        let lower = dir.path().join("lower");
        std::fs::create_dir(&lower).unwrap();
        let s = |w: &Path| Stack {
            lowers: vec![lower.clone()],
            writable: Some(Writable {
                upper: dir.path().join("upper"),
                work: w.to_path_buf(),
            }),
            target: dir.path().join("merged"),
            userxattr: false,
        };
        let (_, make) = s(&work).check().unwrap();
        assert_eq!(make, [dir.path().join("upper"), dir.path().join("merged")]);
        std::fs::write(work.join("notes.txt"), "x").unwrap();
        let err = s(&work).check().unwrap_err();
        assert!(
            err.to_string().contains("not empty (it has notes.txt)"),
            "{err}"
        );
    }

    #[test]
    fn relative_paths_become_absolute() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(absolute(Path::new("./a/b/")), cwd.join("a/b"));
        assert_eq!(absolute(Path::new("/x/./y")), PathBuf::from("/x/y"));
    }
}
