//! What a container changed: its upper layer, read like `docker diff`.
//!
//! Everything a process changes through an overlay mount lands in the
//! upper layer, so the upper layer *is* the container's diff:
//!
//! * a file there that no lower layer has was **A**dded;
//! * a file there that a lower layer has too was **C**hanged — copied up
//!   whole on its first write, even for a one-byte change or a `chmod`;
//! * a whiteout there (a character device 0:0) **D**eleted a lower file;
//! * an opaque directory there was deleted and made again: it hides
//!   everything beneath it in the lower layers.
//!
//! Whether a lower layer "has" a path follows overlayfs' own lookup: a
//! whiteout or opaque directory in a higher lower layer hides the layers
//! below it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use steps::Palette;

use crate::tree;
use crate::whiteout;

/// What happened to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    Changed,
    Deleted,
}

impl Change {
    /// `A`, `C` or `D`, as `docker diff` prints them.
    pub fn letter(self) -> char {
        match self {
            Change::Added => 'A',
            Change::Changed => 'C',
            Change::Deleted => 'D',
        }
    }
}

/// How the change is kept in the upper layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDisk {
    File { bytes: u64 },
    Dir,
    OpaqueDir,
    Symlink,
    Whiteout,
    Other,
}

/// One changed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the layer's root.
    pub path: PathBuf,
    pub change: Change,
    pub on_disk: OnDisk,
}

/// Whether the merged view of `lowers` (topmost first) has `path`,
/// following overlayfs' lookup: the first layer with the name decides,
/// and a whiteout or an opaque directory on the way down ends the search.
pub fn lowers_have(lowers: &[PathBuf], path: &Path) -> bool {
    for layer in lowers {
        let mut here = layer.clone();
        let mut blocked = false;
        let components: Vec<_> = path.components().collect();
        for (i, component) in components.iter().enumerate() {
            here.push(component);
            let Ok(m) = std::fs::symlink_metadata(&here) else {
                // Missing here: look in the next layer down.
                break;
            };
            if whiteout::is_whiteout(&m) {
                return false;
            }
            let last = i + 1 == components.len();
            if last {
                return true;
            }
            if !m.is_dir() {
                // A file where a directory was needed hides the layers below.
                return false;
            }
            if whiteout::is_opaque(&here) {
                blocked = true;
            }
        }
        if blocked {
            return false;
        }
    }
    false
}

/// The changes an upper layer holds against its lower layers, in path
/// order.
pub fn diff(upper: &Path, lowers: &[PathBuf]) -> std::io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for entry in tree::walk(upper)? {
        let m = &entry.metadata;
        let kind = m.file_type();
        let on_disk = if whiteout::is_whiteout(m) {
            OnDisk::Whiteout
        } else if kind.is_dir() {
            if whiteout::is_opaque(&upper.join(&entry.path)) {
                OnDisk::OpaqueDir
            } else {
                OnDisk::Dir
            }
        } else if kind.is_file() {
            OnDisk::File { bytes: m.len() }
        } else if kind.is_symlink() {
            OnDisk::Symlink
        } else {
            OnDisk::Other
        };
        let change = if on_disk == OnDisk::Whiteout {
            Change::Deleted
        } else if lowers_have(lowers, &entry.path) {
            Change::Changed
        } else {
            Change::Added
        };
        out.push(Entry {
            path: entry.path,
            change,
            on_disk,
        });
    }
    Ok(out)
}

/// `docker diff`'s lines, `C /etc`; with `long`, how each is kept on disk.
pub fn render(entries: &[Entry], long: bool, palette: Palette) -> String {
    let mut out = String::new();
    for entry in entries {
        let letter = entry.change.letter().to_string();
        let letter = match entry.change {
            Change::Added => palette.good(&letter),
            Change::Changed => palette.warn(&letter),
            Change::Deleted => palette.bad(&letter),
        };
        let path = format!("/{}", entry.path.display());
        if !long {
            let _ = writeln!(out, "{letter} {path}");
            continue;
        }
        let note = match entry.on_disk {
            OnDisk::File { bytes } => format!("file, {}", steps::units::human(bytes)),
            OnDisk::Dir => "directory".into(),
            OnDisk::OpaqueDir => "opaque directory: hides the lower layers' entries".into(),
            OnDisk::Symlink => "symlink".into(),
            OnDisk::Whiteout => "whiteout: character device 0:0".into(),
            OnDisk::Other => "special file".into(),
        };
        let _ = writeln!(out, "{letter} {path:<40} {}", palette.dim(&note));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_stops_at_the_first_layer_with_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().join("top");
        let base = dir.path().join("base");
        std::fs::create_dir_all(base.join("etc")).unwrap();
        std::fs::write(base.join("etc/motd"), "hi").unwrap();
        std::fs::create_dir_all(&top).unwrap();
        std::fs::write(top.join("etc"), "a file hides the directory").unwrap();
        let lowers = [top.clone(), base.clone()];
        assert!(lowers_have(&lowers, Path::new("etc")));
        assert!(!lowers_have(&lowers, Path::new("etc/motd")));
        assert!(lowers_have(&lowers[1..], Path::new("etc/motd")));
        assert!(!lowers_have(&lowers, Path::new("nothing")));
    }

    #[test]
    fn an_upper_file_is_added_or_changed_by_the_lowers() {
        let dir = tempfile::tempdir().unwrap();
        let lower = dir.path().join("lower");
        let upper = dir.path().join("upper");
        std::fs::create_dir_all(lower.join("etc")).unwrap();
        std::fs::write(lower.join("etc/hostname"), "a").unwrap();
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        std::fs::write(upper.join("etc/hostname"), "b").unwrap();
        std::fs::write(upper.join("etc/motd"), "new").unwrap();
        let entries = diff(&upper, &[lower]).unwrap();
        let text = render(&entries, false, Palette::plain());
        assert_eq!(text, "C /etc\nC /etc/hostname\nA /etc/motd\n");
        let long = render(&entries, true, Palette::plain());
        assert!(long.contains("A /etc/motd"), "{long}");
        assert!(long.contains("file, 3B"), "{long}");
    }
}
