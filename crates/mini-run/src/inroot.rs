//! # Paths resolved inside the rootfs
//!
//! Before `pivot_root`, mini-run mounts `/proc`, `/dev`, volumes and the
//! `/etc` files at paths *in the image*. An image is untrusted: its
//! `/proc` may be a symlink to `/` (or to `../../../etc`), and a mount
//! made through it would land on the host. So every target is opened with
//! `openat2(…, RESOLVE_IN_ROOT)`: the kernel resolves the path as if the
//! rootfs were `/`, every symlink and `..` included, and can never step out
//! of it. The mount is then made on the descriptor it returned, through
//! `/proc/self/fd/N`, so nothing can swap the path in between. This is the
//! fix of runc's CVE-2021-30465 and the class of escapes it closed.
//! See [openat2(2)](https://man7.org/linux/man-pages/man2/openat2.2.html).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::{Mode, mkdirat};
use steps::Error;

/// What to make when the target is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Make {
    Nothing,
    Dir,
    File,
}

/// A path opened inside a rootfs: the descriptor, and the path through it
/// that the mount calls take.
#[derive(Debug)]
pub struct Opened {
    pub fd: OwnedFd,
}

impl Opened {
    /// `/proc/self/fd/N`: the opened file itself, whatever its path.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }
}

/// `openat2(root, path, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`.
/// The kernel gives EAGAIN when a mount or a rename anywhere on the
/// machine (another container starting, say) raced the walk, and asks the
/// caller to try again: so do we, a bounded number of times.
fn resolve(root: &impl AsFd, path: &Path, flags: OFlag) -> Result<OwnedFd, Errno> {
    let how = || {
        OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
    };
    let mut tries = 0;
    loop {
        match openat2(root.as_fd(), path, how()) {
            Err(Errno::EAGAIN) if tries < 1000 => tries += 1,
            result => return result,
        }
    }
}

/// Opens `path` (absolute, inside the container) under `root`, making it
/// first if it is missing and `make` says so; its parents are made as
/// directories, each also resolved inside `root`.
pub fn open(root: &impl AsFd, path: &Path, make: Make) -> Result<Opened, Error> {
    open_following(root, path, make, 0)
}

/// How many symlinks a missing target may lead through, as the kernel's
/// own limit for one path.
const MOST_LINKS: usize = 40;

/// The path with `.` and `..` taken out, never above `/`: how
/// `RESOLVE_IN_ROOT` treats a `..` at the root.
fn normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::Normal(name) => out.push(name),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

fn open_following(
    root: &impl AsFd,
    path: &Path,
    make: Make,
    links: usize,
) -> Result<Opened, Error> {
    let path = &normal(path);
    let call = || {
        format!(
            "openat2(rootfs, \"{}\", O_PATH, RESOLVE_IN_ROOT)",
            path.display()
        )
    };
    match resolve(root, path, OFlag::O_PATH) {
        Ok(fd) => return Ok(Opened { fd }),
        Err(Errno::ENOENT) if make != Make::Nothing => {}
        Err(e) => return Err(Error::sys(call(), e)),
    }
    let names: Vec<&std::ffi::OsStr> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name),
            _ => None,
        })
        .collect();
    let Some((last, parents)) = names.split_last() else {
        return Err(Error::sys(call(), Errno::ENOENT));
    };
    // A name that is a symlink, dangling or not: go on along what it
    // names, resolved inside the root like everything else.
    let follow =
        |parent: &OwnedFd, dir: &Path, name: &std::ffi::OsStr, rest: &[&std::ffi::OsStr]| {
            let target = nix::fcntl::readlinkat(parent.as_fd(), name).ok()?;
            if links >= MOST_LINKS {
                return Some(Err(Error::sys(call(), Errno::ELOOP)));
            }
            let next: PathBuf = std::iter::once(dir.join(PathBuf::from(target)).into_os_string())
                .chain(rest.iter().map(|n| n.to_os_string()))
                .collect();
            Some(open_following(root, &next, make, links + 1))
        };
    let mut dir = PathBuf::from("/");
    for (i, name) in parents.iter().enumerate() {
        let parent = resolve(root, &dir, OFlag::O_PATH | OFlag::O_DIRECTORY)
            .map_err(|e| Error::sys(call(), e))?;
        match mkdirat(parent.as_fd(), *name, Mode::from_bits_truncate(0o755)) {
            Ok(()) => {}
            Err(Errno::EEXIST) => {
                let rest = &names[i + 1..];
                if let Some(opened) = follow(&parent, &dir, name, rest) {
                    return opened;
                }
            }
            Err(e) => {
                return Err(Error::sys(
                    format!("mkdirat(\"{}\")", dir.join(name).display()),
                    e,
                ));
            }
        }
        dir.push(name);
    }
    let parent = resolve(root, &dir, OFlag::O_PATH | OFlag::O_DIRECTORY)
        .map_err(|e| Error::sys(call(), e))?;
    let made = match make {
        Make::Dir => mkdirat(parent.as_fd(), *last, Mode::from_bits_truncate(0o755)),
        // O_NOFOLLOW: a dangling symlink in the image must not make a file
        // wherever it points.
        _ => openat(
            parent.as_fd(),
            *last,
            OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .map(drop),
    };
    match made {
        Ok(()) => {}
        // The name is a symlink that leads to nothing yet (an image's
        // /etc/resolv.conf → ../run/…, say, or a volume's target): make
        // what it points to.
        Err(Errno::EEXIST | Errno::ELOOP) => {
            if let Some(opened) = follow(&parent, &dir, last, &[]) {
                return opened;
            }
        }
        Err(e) => return Err(Error::sys(format!("make \"{}\"", path.display()), e)),
    }
    resolve(root, path, OFlag::O_PATH)
        .map(|fd| Opened { fd })
        .map_err(|e| Error::sys(call(), e))
}

/// Opens the rootfs directory itself, the root every path resolves in.
pub fn open_root(dir: &Path) -> Result<OwnedFd, Error> {
    nix::fcntl::open(
        dir,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::sys(format!("open(\"{}\", O_PATH)", dir.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_to_the_host_root_stays_inside() {
        let scratch = std::env::temp_dir().join(format!("mini-run-inroot-{}", std::process::id()));
        let root = scratch.join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        std::os::unix::fs::symlink("/", root.join("proc")).unwrap();
        std::os::unix::fs::symlink("../../../../tmp", root.join("up")).unwrap();
        let fd = open_root(&root).unwrap();
        // Where `path`, opened (and made) inside the root, really is.
        let resolved = |path: &str, make| {
            std::fs::read_link(open(&fd, Path::new(path), make).unwrap().path()).unwrap()
        };
        // /proc → / resolves to the rootfs itself, not the host's /.
        assert_eq!(resolved("/proc/etc", Make::Nothing), root.join("etc"));
        // Made through a symlink that climbs out: made inside.
        assert_eq!(resolved("/up/x/y", Make::Dir), root.join("tmp/x/y"));
        assert_eq!(resolved("/etc/hosts", Make::File), root.join("etc/hosts"));
        // A dangling link: what it names is made, inside.
        std::os::unix::fs::symlink("../../run/stub.conf", root.join("etc/resolv.conf")).unwrap();
        assert_eq!(
            resolved("/etc/resolv.conf", Make::File),
            root.join("run/stub.conf")
        );
        // A dangling link as a directory, and as a parent, climbing out.
        std::os::unix::fs::symlink("/../../srv/data", root.join("data")).unwrap();
        assert_eq!(resolved("/data", Make::Dir), root.join("srv/data"));
        std::os::unix::fs::symlink("../../var/lib", root.join("lib")).unwrap();
        assert_eq!(
            resolved("/lib/app/x", Make::Dir),
            root.join("var/lib/app/x")
        );
        // A loop ends in an error, not a stack overflow.
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        assert!(open(&fd, Path::new("/loop"), Make::Dir).is_err());
        std::fs::remove_dir_all(&scratch).unwrap();
    }
}
