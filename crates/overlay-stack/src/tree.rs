//! Walking and copying a layer's directory tree.
//!
//! A layer is an ordinary directory, but one whose every detail matters:
//! owners, modes (setuid included), times, extended attributes (file
//! capabilities live in `security.capability`), hard links, device nodes
//! and — the layer's own vocabulary — whiteouts and opaque directories.
//! [`copy`] keeps all of them, as `cp -a` does.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags};
use nix::sys::stat::{Mode, SFlag, UtimensatFlags, mknod, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, fchownat};

use crate::whiteout;

/// One entry of a tree, by its path inside the tree.
#[derive(Debug)]
pub struct Entry {
    /// Relative to the tree's root; never empty.
    pub path: PathBuf,
    pub metadata: Metadata,
}

/// Every entry below `root`, parents before their children, names in
/// byte order. Symlinks are not followed.
pub fn walk(root: &Path) -> std::io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    walk_into(root, Path::new(""), &mut out)?;
    Ok(out)
}

fn walk_into(root: &Path, rel: &Path, out: &mut Vec<Entry>) -> std::io::Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(root.join(rel))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        let path = rel.join(&name);
        let metadata = std::fs::symlink_metadata(root.join(&path))?;
        let is_dir = metadata.is_dir();
        out.push(Entry {
            path: path.clone(),
            metadata,
        });
        if is_dir {
            walk_into(root, &path, out)?;
        }
    }
    Ok(())
}

/// What a layer holds, counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    /// Bytes of regular files, each hard-linked file once.
    pub bytes: u64,
    /// Entries that are not directories or whiteouts.
    pub files: u64,
    pub whiteouts: u64,
    pub opaque_dirs: u64,
}

/// Counts what a layer holds.
pub fn size(root: &Path) -> std::io::Result<Size> {
    let mut size = Size::default();
    let mut seen = std::collections::HashSet::new();
    for entry in walk(root)? {
        let m = &entry.metadata;
        if whiteout::is_whiteout(m) {
            size.whiteouts += 1;
        } else if m.is_dir() {
            if whiteout::is_opaque(&root.join(&entry.path)) {
                size.opaque_dirs += 1;
            }
        } else {
            size.files += 1;
            if m.is_file() && (m.nlink() == 1 || seen.insert((m.dev(), m.ino()))) {
                size.bytes += m.len();
            }
        }
    }
    Ok(size)
}

/// Extended attributes overlayfs keeps about the stack an upper layer was
/// mounted in (its lower inodes, its identity): meaningless in a new layer.
fn is_stack_bookkeeping(name: &str) -> bool {
    let Some(rest) = name
        .strip_prefix("trusted.overlay.")
        .or_else(|| name.strip_prefix("user.overlay."))
    else {
        return false;
    };
    matches!(rest, "origin" | "impure" | "nlink" | "uuid" | "upper")
}

/// An error copying one entry, named by the call.
fn failed(call: &str, path: &Path, errno: Errno) -> steps::Error {
    steps::Error::sys(format!("{call}(\"{}\")", path.display()), errno)
}

/// The same, for a call made through `std`.
fn failed_io(call: &str, path: &Path, error: &std::io::Error) -> steps::Error {
    steps::Error::io(format!("{call}(\"{}\")", path.display()), error)
}

/// Copies the tree at `from` into `to`, which must not exist, keeping
/// everything a layer needs: contents, types, owners, modes, times,
/// extended attributes, hard links, devices, whiteouts and opaque marks.
pub fn copy(from: &Path, to: &Path) -> Result<(), steps::Error> {
    std::fs::create_dir(to).map_err(|e| failed_io("mkdir", to, &e))?;
    copy_into(from, to)
}

/// [`copy`] into `to`, an empty directory already made; it takes the
/// owner, mode, attributes and times of `from` (of the directory a
/// symlink `from` points to).
pub fn copy_into(from: &Path, to: &Path) -> Result<(), steps::Error> {
    let io =
        |call: &'static str, path: PathBuf| move |e: std::io::Error| failed_io(call, &path, &e);
    let root_meta = std::fs::metadata(from).map_err(io("stat", from.to_path_buf()))?;
    let entries = walk(from).map_err(io("opendir", from.to_path_buf()))?;
    let mut linked: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut dirs = vec![(to.to_path_buf(), from.to_path_buf(), root_meta)];
    for entry in entries {
        let src = from.join(&entry.path);
        let dst = to.join(&entry.path);
        let m = entry.metadata;
        let kind = m.file_type();
        if kind.is_dir() {
            std::fs::create_dir(&dst).map_err(io("mkdir", dst.clone()))?;
            dirs.push((dst, src, m));
            continue;
        }
        if !kind.is_dir() && m.nlink() > 1 {
            if let Some(first) = linked.get(&(m.dev(), m.ino())) {
                std::fs::hard_link(first, &dst).map_err(io("link", dst.clone()))?;
                continue;
            }
            linked.insert((m.dev(), m.ino()), dst.clone());
        }
        if kind.is_file() {
            if xattr::get(&src, "trusted.overlay.metacopy")
                .ok()
                .flatten()
                .is_some()
            {
                return Err(steps::Error::setup(format!(
                    "{}: a metacopy file (its data is still in a lower layer); commit a stack \
                     mounted without metacopy=on",
                    src.display()
                )));
            }
            std::fs::copy(&src, &dst).map_err(io("copy", src.clone()))?;
        } else if kind.is_symlink() {
            let target = std::fs::read_link(&src).map_err(io("readlink", src.clone()))?;
            std::os::unix::fs::symlink(&target, &dst).map_err(io("symlink", dst.clone()))?;
        } else {
            let sflag = if kind.is_char_device() {
                SFlag::S_IFCHR
            } else if kind.is_block_device() {
                SFlag::S_IFBLK
            } else if kind.is_fifo() {
                SFlag::S_IFIFO
            } else {
                SFlag::S_IFSOCK
            };
            mknod(
                &dst,
                sflag,
                Mode::from_bits_truncate(m.mode() & 0o7777),
                m.rdev(),
            )
            .map_err(|e| failed("mknod", &dst, e))?;
        }
        keep_attributes(&src, &dst, &m)?;
    }
    // Directories last, deepest first: writing into a directory changes
    // its mtime, and a read-only mode would stop the writes.
    for (dst, src, m) in dirs.into_iter().rev() {
        keep_attributes(&src, &dst, &m)?;
    }
    Ok(())
}

/// Owner, mode, extended attributes and times of `src`, given to `dst`.
fn keep_attributes(src: &Path, dst: &Path, m: &Metadata) -> Result<(), steps::Error> {
    match fchownat(
        AT_FDCWD,
        dst,
        Some(Uid::from_raw(m.uid())),
        Some(Gid::from_raw(m.gid())),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    ) {
        // Without privilege, files are the copier's own: what a user can do.
        Err(Errno::EPERM | Errno::EINVAL) if !Uid::effective().is_root() => {}
        Err(e) => return Err(failed("lchown", dst, e)),
        Ok(()) => {}
    }
    if let Ok(names) = xattr::list(src) {
        for name in names {
            let Some(text) = name.to_str() else { continue };
            if is_stack_bookkeeping(text) {
                continue;
            }
            if let Ok(Some(value)) = xattr::get(src, &name) {
                xattr::set(dst, &name, &value)
                    .map_err(|e| failed_io(&format!("lsetxattr[{text}]"), dst, &e))?;
            }
        }
    }
    let is_symlink = m.file_type().is_symlink();
    if !is_symlink {
        // After chown, which clears setuid and setgid.
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(m.mode() & 0o7777))
            .map_err(|e| failed_io("chmod", dst, &e))?;
    }
    let atime = TimeSpec::new(m.atime(), m.atime_nsec());
    let mtime = TimeSpec::new(m.mtime(), m.mtime_nsec());
    utimensat(
        AT_FDCWD,
        dst,
        &atime,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| failed("utimensat", dst, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_lists_parents_first_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("b/c")).unwrap();
        std::fs::write(dir.path().join("a"), "1").unwrap();
        std::fs::write(dir.path().join("b/c/d"), "22").unwrap();
        let paths: Vec<PathBuf> = walk(dir.path())
            .unwrap()
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(
            paths,
            ["a", "b", "b/c", "b/c/d"].map(PathBuf::from).to_vec()
        );
        let size = size(dir.path()).unwrap();
        assert_eq!((size.bytes, size.files), (3, 2));
    }

    #[test]
    fn copy_keeps_modes_links_and_times() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("from");
        std::fs::create_dir_all(from.join("sub")).unwrap();
        std::fs::write(from.join("sub/file"), "data").unwrap();
        std::fs::set_permissions(from.join("sub/file"), PermissionsExt::from_mode(0o4750)).unwrap();
        std::fs::hard_link(from.join("sub/file"), from.join("hard")).unwrap();
        std::os::unix::fs::symlink("sub/file", from.join("soft")).unwrap();
        std::fs::set_permissions(from.join("sub"), PermissionsExt::from_mode(0o555)).unwrap();
        let to = dir.path().join("to");
        copy(&from, &to).unwrap();
        let file = std::fs::symlink_metadata(to.join("sub/file")).unwrap();
        assert_eq!(file.mode() & 0o7777, 0o4750);
        assert_eq!(std::fs::read(to.join("sub/file")).unwrap(), b"data");
        assert_eq!(
            file.ino(),
            std::fs::metadata(to.join("hard")).unwrap().ino()
        );
        assert_eq!(
            std::fs::read_link(to.join("soft")).unwrap(),
            PathBuf::from("sub/file")
        );
        let sub = std::fs::metadata(to.join("sub")).unwrap();
        assert_eq!(sub.mode() & 0o7777, 0o555);
        assert_eq!(
            sub.mtime(),
            std::fs::metadata(from.join("sub")).unwrap().mtime()
        );
        std::fs::set_permissions(to.join("sub"), PermissionsExt::from_mode(0o755)).unwrap();
        std::fs::set_permissions(from.join("sub"), PermissionsExt::from_mode(0o755)).unwrap();
    }

    #[test]
    fn bookkeeping_xattrs_are_not_copied() {
        assert!(is_stack_bookkeeping("trusted.overlay.origin"));
        assert!(is_stack_bookkeeping("user.overlay.impure"));
        assert!(!is_stack_bookkeeping("trusted.overlay.opaque"));
        assert!(!is_stack_bookkeeping("security.capability"));
    }
}
