//! The overlay mounts of this mount namespace, read back from
//! `/proc/self/mountinfo` (see
//! [proc_pid_mountinfo(5)](https://man7.org/linux/man-pages/man5/proc_pid_mountinfo.5.html)).
//!
//! The kernel shows an overlay's layers in its super options
//! (`lowerdir=…,upperdir=…,workdir=…`), so `diff` and `history` can be
//! given a mount point instead of the layers, like `docker diff` is given
//! a container.

use std::path::{Path, PathBuf};

/// One overlay mount, as the kernel shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayMount {
    pub target: PathBuf,
    /// Topmost first. Relative when the stack was mounted through short
    /// links (see [`crate::plan::links_dir`]); [`OverlayMount::resolve`]
    /// turns those back into the layers.
    pub lowers: Vec<PathBuf>,
    pub upper: Option<PathBuf>,
    pub work: Option<PathBuf>,
}

impl OverlayMount {
    /// The lower layers with short links followed back to the layers.
    pub fn resolved_lowers(&self) -> Vec<PathBuf> {
        let links = crate::plan::links_dir(&self.target);
        self.lowers
            .iter()
            .map(|lower| {
                if lower.is_absolute() {
                    lower.clone()
                } else {
                    std::fs::read_link(links.join(lower)).unwrap_or_else(|_| lower.clone())
                }
            })
            .collect()
    }
}

/// Parses one line of mountinfo; `None` unless it is an overlay.
fn parse_line(line: &str) -> Option<OverlayMount> {
    let (head, tail) = line.split_once(" - ")?;
    let target = steps::mountinfo::unescape(head.split(' ').nth(4)?);
    let mut tail = tail.split(' ');
    if tail.next()? != "overlay" {
        return None;
    }
    let _source = tail.next()?;
    let options = tail.next().unwrap_or("");
    let mut mount = OverlayMount {
        target: PathBuf::from(target),
        lowers: Vec::new(),
        upper: None,
        work: None,
    };
    for option in options.split(',') {
        let option = steps::mountinfo::unescape(option);
        if let Some(list) = option.strip_prefix("lowerdir=") {
            mount
                .lowers
                .extend(list.split(':').filter(|l| !l.is_empty()).map(PathBuf::from));
        } else if let Some(one) = option.strip_prefix("lowerdir+=") {
            mount.lowers.push(PathBuf::from(one));
        } else if let Some(upper) = option.strip_prefix("upperdir=") {
            mount.upper = Some(PathBuf::from(upper));
        } else if let Some(work) = option.strip_prefix("workdir=") {
            mount.work = Some(PathBuf::from(work));
        }
    }
    Some(mount)
}

/// Every overlay mount of this mount namespace, in mount order.
pub fn overlay_mounts() -> std::io::Result<Vec<OverlayMount>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(text.lines().filter_map(parse_line).collect())
}

/// The overlay mounted at `target` (the topmost, if several are), if any.
pub fn find(target: &Path) -> Option<OverlayMount> {
    let target = std::fs::canonicalize(target).ok()?;
    overlay_mounts()
        .ok()?
        .into_iter()
        .rev()
        .find(|m| m.target == target)
}

/// Every mount point of this mount namespace, in mount order.
fn mount_points() -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|t| PathBuf::from(steps::mountinfo::unescape(t)))
        .collect()
}

/// Whether anything at all is mounted at `path`.
pub fn is_mount_point(path: &Path) -> bool {
    let Ok(path) = std::fs::canonicalize(path) else {
        return false;
    };
    mount_points().contains(&path)
}

/// The mount point of the mount that `path` (which must exist) is on: the
/// deepest one above it. Two bind mounts of one filesystem are two mounts.
pub fn mount_of(path: &Path) -> Option<PathBuf> {
    let path = std::fs::canonicalize(path).ok()?;
    mount_points()
        .into_iter()
        .filter(|m| path.starts_with(m))
        .max_by_key(|m| m.components().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overlay_line_gives_its_layers() {
        let line = "44 27 0:39 / /tmp/my\\040stack/merged rw,relatime - overlay overlay \
                    rw,lowerdir=/l/top:/l/base,upperdir=/s/upper,workdir=/s/work,redirect_dir=on";
        let m = parse_line(line).unwrap();
        assert_eq!(m.target, PathBuf::from("/tmp/my stack/merged"));
        assert_eq!(
            m.lowers,
            [PathBuf::from("/l/top"), PathBuf::from("/l/base")]
        );
        assert_eq!(m.upper, Some(PathBuf::from("/s/upper")));
        assert_eq!(m.work, Some(PathBuf::from("/s/work")));
    }

    #[test]
    fn new_mount_api_layers_are_one_option_each() {
        let line = "44 27 0:39 / /m rw - overlay overlay ro,lowerdir+=/a,lowerdir+=/b";
        let m = parse_line(line).unwrap();
        assert_eq!(m.lowers, [PathBuf::from("/a"), PathBuf::from("/b")]);
        assert_eq!(m.upper, None);
    }

    #[test]
    fn other_filesystems_are_skipped() {
        let line = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw";
        assert_eq!(parse_line(line), None);
    }
}
