//! `mount` and `umount` as plans: the calls they make, as data, and the
//! executor that makes them and undoes them when one fails.
//!
//! A stack whose options do not fit in the one page `mount(2)` reads is
//! mounted the way Docker's overlay2 driver does it: each layer gets a
//! short symlink in a directory of links, the process `chdir()`s there, and
//! `lowerdir` lists the short relative names. The kernel resolves the links
//! once, at mount time. (Linux 6.8's new mount API can instead pass the
//! layers one by one with `fsconfig(…, "lowerdir+", …)`.)

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use sha2::{Digest, Sha256};
use steps::{Chapter, Error, Narrator, Plan, Step, chapter};

use crate::stack::{self, Stack};

/// Where the short layer links of the stack mounted at `target` live.
pub fn links_dir(target: &Path) -> PathBuf {
    let digest = Sha256::digest(target.as_os_str().as_encoded_bytes());
    let id: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    PathBuf::from("/run/underhood/overlay").join(id)
}

/// What a directory made by `mount` is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Upper,
    Work,
    Target,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Make a missing directory of the stack.
    MakeDir {
        path: PathBuf,
        role: Role,
    },
    /// Give each layer a short name: `dir/0`, `dir/1`, …
    MakeLinks {
        dir: PathBuf,
        layers: Vec<PathBuf>,
    },
    /// Move into the links' directory, so the short names resolve.
    Chdir(PathBuf),
    Mount {
        target: PathBuf,
        options: String,
    },
    Umount(PathBuf),
    RemoveLinks(PathBuf),
}

fn quoted(path: &Path) -> String {
    format!("\"{}\"", path.display())
}

impl Step for Op {
    fn call(&self) -> String {
        match self {
            Op::MakeDir { path, .. } => format!("mkdir({}, 0755)", quoted(path)),
            Op::MakeLinks { dir, layers } => format!(
                "symlink({}, {}) … one per layer, {} in all",
                quoted(&layers[0]),
                quoted(&dir.join("0")),
                layers.len()
            ),
            Op::Chdir(dir) => format!("chdir({})", quoted(dir)),
            Op::Mount { target, options } => format!(
                "mount(\"overlay\", {}, \"overlay\", 0, \"{options}\")",
                quoted(target)
            ),
            Op::Umount(target) => format!("umount2({}, 0)", quoted(target)),
            Op::RemoveLinks(dir) => format!("rm -r {}", quoted(dir)),
        }
    }

    fn why(&self) -> String {
        match self {
            Op::MakeDir { role, .. } => match role {
                Role::Upper => "the upper layer: every change made through the mount lands here",
                Role::Work => {
                    "overlayfs's scratch space on the upper's filesystem, where a copy-up is \
                     prepared before it is moved into place"
                }
                Role::Target => "the mount point, where the merged view appears",
            }
            .into(),
            Op::MakeLinks { .. } => {
                "the layers' full paths would not fit in the one page of options mount(2) \
                 reads, so each gets a short name, as Docker's overlay2 driver does"
                    .into()
            }
            Op::Chdir(_) => "relative layer names resolve against the current directory".into(),
            Op::Mount { .. } => {
                "overlayfs shows the lower layers (topmost first) and the upper as one tree".into()
            }
            Op::Umount(_) => {
                "detach the merged view; the layers themselves stay as they are".into()
            }
            Op::RemoveLinks(_) => "the short layer names are no longer needed".into(),
        }
    }

    fn chapter(&self) -> Chapter {
        chapter::OVERLAY
    }
}

/// The target with its existing part's symlinks resolved, the way the
/// kernel will show it in mountinfo.
fn canonical(path: &Path) -> PathBuf {
    let existing = stack::existing_ancestor(path);
    let mut out = std::fs::canonicalize(existing).unwrap_or_else(|_| existing.to_path_buf());
    if let Ok(rest) = path.strip_prefix(existing) {
        out.extend(rest.components());
    }
    out
}

/// The plan that mounts a checked stack, making the directories in `make`.
pub fn mount_plan(stack: &Stack, make: &[PathBuf]) -> Plan<Op> {
    let mut plan = Plan::new();
    for path in make {
        let role = match &stack.writable {
            Some(w) if *path == w.upper => Role::Upper,
            Some(w) if *path == w.work => Role::Work,
            _ => Role::Target,
        };
        plan.push(Op::MakeDir {
            path: path.clone(),
            role,
        });
    }
    let options = if stack.fits_one_page() {
        stack.options()
    } else {
        let dir = links_dir(&canonical(&stack.target));
        plan.push(Op::MakeLinks {
            dir: dir.clone(),
            layers: stack.lowers.clone(),
        });
        plan.push(Op::Chdir(dir));
        let names: Vec<String> = (0..stack.lowers.len()).map(|i| i.to_string()).collect();
        stack.options_with(&names)
    };
    plan.push(Op::Mount {
        target: stack.target.clone(),
        options,
    });
    plan
}

/// What a failed mount must take back: the directories and links it
/// made and, when it fails after the mount itself (stopped by a signal,
/// or an injected fault), the mount.
#[derive(Debug, Default)]
struct Undo {
    dirs: Vec<PathBuf>,
    links: Option<PathBuf>,
    mounted: Option<PathBuf>,
}

impl Undo {
    fn run(self) {
        if let Some(target) = self.mounted {
            // Ours, and only just made; if something already holds it
            // busy, it is detached, as umount -l does.
            let detached = nix::mount::umount2(&target, MntFlags::empty())
                .or_else(|_| nix::mount::umount2(&target, MntFlags::MNT_DETACH));
            if detached.is_err() {
                // Still mounted: removing the directories would remove
                // files through the mount. Better left as it is.
                return;
            }
        }
        if let Some(links) = self.links {
            remove_links(&links);
        }
        for dir in self.dirs.into_iter().rev() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Makes a plan's calls; when one fails, or the plan is stopped between
/// two of them ([`crate::interrupt`]), removes what the others made.
pub fn execute(plan: &Plan<Op>, stack: Option<&Stack>, narrator: &Narrator) -> Result<(), Error> {
    let mut undo = Undo::default();
    let mut number = 0;
    let result = plan.execute(narrator, |op| {
        make(op, stack, &mut undo)?;
        number += 1;
        crate::interrupt::after_step(number)?;
        Ok(ControlFlow::<()>::Continue(()))
    });
    match result {
        Ok(_) => Ok(()),
        Err(error) => {
            undo.run();
            Err(error)
        }
    }
}

fn make(op: &Op, stack: Option<&Stack>, undo: &mut Undo) -> Result<(), Error> {
    let io = |call: String| move |e: std::io::Error| Error::io(call, &e);
    match op {
        Op::MakeDir { path, .. } => {
            let mut missing = path.as_path();
            while let Some(parent) = missing.parent()
                && !parent.exists()
            {
                missing = parent;
            }
            std::fs::create_dir_all(path).map_err(io(op.call()))?;
            undo.dirs.push(missing.to_path_buf());
        }
        Op::MakeLinks { dir, layers } => {
            let _ = std::fs::remove_dir_all(dir);
            std::fs::create_dir_all(dir).map_err(io(format!("mkdir({})", quoted(dir))))?;
            undo.links = Some(dir.clone());
            for (index, layer) in layers.iter().enumerate() {
                let link = dir.join(index.to_string());
                std::os::unix::fs::symlink(layer, &link).map_err(io(format!(
                    "symlink({}, {})",
                    quoted(layer),
                    quoted(&link)
                )))?;
            }
        }
        Op::Chdir(dir) => nix::unistd::chdir(dir).map_err(|e| Error::sys(op.call(), e))?,
        Op::Mount { target, options } => {
            let log = KernelLog::open();
            nix::mount::mount(
                Some("overlay"),
                target,
                Some("overlay"),
                MsFlags::empty(),
                Some(options.as_str()),
            )
            .map_err(|errno| {
                let error = Error::sys(op.call(), errno);
                if let Some(said) = log.and_then(|log| log.overlay_says()) {
                    return error.hint(format!("the kernel log says: {said}"));
                }
                match stack.map(|s| stack::mount_hint(errno, s)) {
                    Some(hint) if !hint.is_empty() => error.hint(hint),
                    _ => error,
                }
            })?;
            undo.mounted = Some(target.clone());
        }
        Op::Umount(target) => {
            nix::mount::umount2(target, MntFlags::empty()).map_err(|errno| {
                let error = Error::sys(op.call(), errno);
                match errno {
                    Errno::EBUSY => error.hint(format!(
                        "a process still uses the mount (its current directory or an open \
                         file); find it with fuser -vm {}",
                        target.display()
                    )),
                    _ => error,
                }
            })?;
        }
        Op::RemoveLinks(dir) => {
            std::fs::remove_dir_all(dir).map_err(io(op.call()))?;
            remove_empty_parents(dir);
        }
    }
    Ok(())
}

/// A links directory, and the directories above it once no other stack
/// has links there.
fn remove_links(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    remove_empty_parents(dir);
}

fn remove_empty_parents(dir: &Path) {
    for parent in dir.ancestors().skip(1).take(2) {
        if std::fs::remove_dir(parent).is_err() {
            break;
        }
    }
}

/// The kernel log from now on: overlayfs explains an `EINVAL` there
/// (`overlay: filesystem on /x/upper is read-only`), not in the errno.
/// Reading `/dev/kmsg` needs `CAP_SYSLOG`; without it there is no log.
struct KernelLog(std::fs::File);

impl KernelLog {
    fn open() -> Option<Self> {
        use std::io::{Seek, SeekFrom};
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open("/dev/kmsg")
            .ok()?;
        file.seek(SeekFrom::End(0)).ok()?;
        Some(Self(file))
    }

    /// The last overlayfs message logged since [`KernelLog::open`].
    fn overlay_says(mut self) -> Option<String> {
        use std::io::Read;
        let mut said = None;
        let mut record = [0u8; 8192];
        // One record per read, until EAGAIN says there are no more.
        while let Ok(n) = self.0.read(&mut record) {
            if n == 0 {
                break;
            }
            let text = String::from_utf8_lossy(&record[..n]);
            let message = text.split_once(';').map_or("", |(_, m)| m).lines().next();
            if let Some(message) = message
                && let Some(rest) = message
                    .strip_prefix("overlayfs: ")
                    .or_else(|| message.strip_prefix("overlay: "))
            {
                said = Some(rest.trim().to_string());
            }
        }
        said
    }
}

/// The plan that unmounts the overlay at `target`; an error if there is
/// none there. A `mount` killed after it made the short layer links but
/// before it mounted (a SIGKILL, which nothing can undo) left only the
/// links: then the plan removes them, so `umount` also cleans up after a
/// mount that never finished.
pub fn umount_plan(target: &Path) -> Result<Plan<Op>, Error> {
    crate::paths::check("TARGET", target)?;
    // Where / itself is an overlay (in a container), detaching it would
    // take the whole system from under every process.
    if crate::paths::is_root(target) {
        return Err(Error::usage(format!(
            "TARGET {}: the root directory; overlay-stack unmounts the stacks it mounted: give \
             a stack's mount point",
            crate::paths::shown(target)
        )));
    }
    let Some(mount) = crate::mounts::find(target) else {
        let links = links_dir(&canonical(target));
        if !crate::mounts::is_mount_point(target) && links.is_dir() {
            let mut plan = Plan::new();
            plan.push(Op::RemoveLinks(links));
            return Ok(plan);
        }
        let what = if crate::mounts::is_mount_point(target) {
            "is a mount point, but not an overlay"
        } else if target.exists() {
            "is not a mount point"
        } else {
            "does not exist"
        };
        return Err(Error::usage(format!(
            "{}: {what}; list the overlay mounts with findmnt -t overlay",
            target.display()
        )));
    };
    let mut plan = Plan::new();
    plan.push(Op::Umount(mount.target.clone()));
    let links = links_dir(&mount.target);
    if links.exists() {
        plan.push(Op::RemoveLinks(links));
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::Writable;

    fn stack(lowers: Vec<PathBuf>) -> Stack {
        Stack {
            lowers,
            writable: Some(Writable {
                upper: "/s/upper".into(),
                work: "/s/work".into(),
            }),
            target: "/s/merged".into(),
            userxattr: false,
        }
    }

    #[test]
    fn a_small_stack_mounts_in_one_call() {
        let s = stack(vec!["/l/top".into(), "/l/base".into()]);
        let plan = mount_plan(&s, &["/s/upper".into(), "/s/work".into()]);
        assert_eq!(
            plan.calls(),
            [
                "mkdir(\"/s/upper\", 0755)",
                "mkdir(\"/s/work\", 0755)",
                "mount(\"overlay\", \"/s/merged\", \"overlay\", 0, \
                 \"lowerdir=/l/top:/l/base,upperdir=/s/upper,workdir=/s/work\")",
            ]
        );
    }

    #[test]
    fn a_stack_over_one_page_goes_through_short_links() {
        let lowers: Vec<PathBuf> = (0..200)
            .map(|i| PathBuf::from(format!("/var/lib/images/layers/layer-number-{i:04}")))
            .collect();
        let s = stack(lowers);
        assert!(!s.fits_one_page());
        let plan = mount_plan(&s, &[]);
        let calls = plan.calls();
        assert_eq!(calls.len(), 3, "{calls:?}");
        assert!(calls[0].starts_with(
            "symlink(\"/var/lib/images/layers/layer-number-0000\", \"/run/underhood/overlay/"
        ));
        assert!(calls[0].ends_with("/0\") … one per layer, 200 in all"));
        assert!(calls[1].starts_with("chdir(\"/run/underhood/overlay/"));
        assert!(calls[2].contains("\"lowerdir=0:1:2:3:"), "{}", calls[2]);
        assert!(calls[2].len() < 1500);
    }

    #[test]
    fn links_dirs_differ_per_target() {
        assert_ne!(links_dir(Path::new("/a")), links_dir(Path::new("/b")));
        assert_eq!(links_dir(Path::new("/a")), links_dir(Path::new("/a")));
    }
}
