//! # Paths, checked before anything is made
//!
//! Every path overlay-stack is given is checked before its plan is made,
//! so that a mistake is named in one line, with what to do, and nothing
//! has been touched:
//!
//! * a name longer than the kernel takes (`NAME_MAX`, 255 bytes, for one
//!   name; `PATH_MAX`, 4096, for a whole path), which `mkdir(2)` would
//!   refuse only halfway through a plan with `ENAMETOOLONG`;
//! * a control character — a newline, a tab, an escape — that would break
//!   every one-line message and listing that shows the path;
//! * in a layer's path, `,`, `:` or `\`: overlayfs reads its `lowerdir=`
//!   option split at `:`, its options split at `,`, and `\` as an escape,
//!   so such a path would name other layers, or smuggle in options
//!   (`a,upperdir=/etc`). See
//!   <https://docs.kernel.org/filesystems/overlayfs.html#multiple-lower-layers>;
//! * a path that is, or leads through a symlink to, `/`: a mount over it
//!   would hide the whole system, and a copy of it would copy everything.
//!
//! A path is shown in messages as given, its control characters escaped.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use steps::Error;

/// The longest name the kernel takes for one file (`NAME_MAX`).
pub const NAME_MAX: usize = 255;
/// The longest path the kernel takes, its final NUL included (`PATH_MAX`).
pub const PATH_MAX: usize = 4096;

/// The bytes overlayfs reads as separators or an escape in its options.
const SEPARATORS: &[u8] = b",:\\";

/// `path` as given, with control characters escaped (`a\nb`), for a
/// message that must stay on one line.
pub fn shown(path: &Path) -> String {
    one_line(&path.to_string_lossy())
}

/// `text` with its control characters escaped, on one line.
pub fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The name of a control character, for a message.
fn control_name(c: u8) -> String {
    match c {
        b'\n' => "a newline".into(),
        b'\t' => "a tab".into(),
        b'\r' => "a carriage return".into(),
        0x1b => "an escape character".into(),
        c => format!("the control character 0x{c:02x}"),
    }
}

/// Refuses a path with a control character, or with a name or a length
/// the kernel would refuse.
pub fn check(field: &str, path: &Path) -> Result<(), Error> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() {
        return Err(Error::usage(format!(
            "{field}: an empty path; name a directory"
        )));
    }
    if let Some(&c) = bytes.iter().find(|b| b.is_ascii_control()) {
        return Err(Error::usage(format!(
            "{field} {}: the path has {}; rename it, or give a path without one",
            shown(path),
            control_name(c)
        )));
    }
    if let Some(long) = path
        .components()
        .map(|c| c.as_os_str())
        .find(|c| c.len() > NAME_MAX)
    {
        return Err(Error::usage(format!(
            "{field} {}…: a name of {} bytes; the kernel takes names of at most {NAME_MAX} \
             (NAME_MAX): give a shorter one",
            shown(Path::new(
                &long.to_string_lossy().chars().take(24).collect::<String>()
            )),
            long.len()
        )));
    }
    if bytes.len() >= PATH_MAX {
        return Err(Error::usage(format!(
            "{field}: a path of {} bytes; the kernel takes paths of at most {} (PATH_MAX): \
             give a shorter one, or work from a directory nearer",
            bytes.len(),
            PATH_MAX - 1
        )));
    }
    Ok(())
}

/// Refuses, besides what [`check`] refuses, a layer's path that overlayfs
/// would read as more than one path or as more options.
pub fn check_layer(field: &str, path: &Path) -> Result<(), Error> {
    check(field, path)?;
    match separator(path) {
        Some(c) => Err(Error::usage(format!(
            "{field} {}: the path has '{c}', which overlayfs reads as a separator in its \
             options; rename the directory or reach it through a symlink without one",
            shown(path),
        ))),
        None => Ok(()),
    }
}

/// The first byte of `path` that overlayfs reads as a separator.
fn separator(path: &Path) -> Option<char> {
    let bytes = path.as_os_str().as_bytes();
    bytes
        .iter()
        .find(|b| SEPARATORS.contains(b))
        .map(|&c| c as char)
}

/// Whether `path` is `/`, or a symlink (or a path through symlinks) to it.
pub fn is_root(path: &Path) -> bool {
    std::fs::canonicalize(path).is_ok_and(|p| p == Path::new("/"))
}

/// A path for something new that will be a layer or hold layers (a
/// committed layer, an imported image): checked as a layer's path, with a
/// name of its own (`example` shows one). Returns its parent (`.` for a
/// bare name) and its name.
pub fn new_layer_dir(
    field: &str,
    path: &Path,
    example: &str,
) -> Result<(PathBuf, OsString), Error> {
    check(field, path)?;
    if let Some(c) = separator(path) {
        return Err(Error::usage(format!(
            "{field} {}: the path has '{c}', which overlayfs reads as a separator in its \
             options, so its layers could not be mounted; give a path without one",
            shown(path),
        )));
    }
    let name = match path.components().next_back() {
        Some(Component::Normal(name)) => name.to_os_string(),
        _ => {
            return Err(Error::usage(format!(
                "{field} {}: not a name for a new directory; name one, e.g. {example}",
                shown(path)
            )));
        }
    };
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((parent, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_named_and_escaped() {
        let err = check("LAYER", Path::new("a\nb")).unwrap_err();
        assert_eq!(err.code(), 2);
        assert_eq!(
            err.to_string(),
            "LAYER a\\nb: the path has a newline; rename it, or give a path without one"
        );
        assert!(!err.to_string().contains('\n'));
    }

    #[test]
    fn names_and_paths_too_long_for_the_kernel_are_refused() {
        let long = "x".repeat(NAME_MAX + 1);
        let err = check("DIR", &Path::new("a").join(&long)).unwrap_err();
        assert!(err.to_string().contains("a name of 256 bytes"), "{err}");
        assert!(check("DIR", Path::new(&"x".repeat(NAME_MAX))).is_ok());
        let deep = vec!["x".repeat(200); 21].join("/");
        let err = check("DIR", Path::new(&deep)).unwrap_err();
        assert!(err.to_string().contains("PATH_MAX"), "{err}");
    }

    #[test]
    fn separators_are_refused_in_layers_only() {
        for bad in ["a,upperdir=/etc", "a:b", "a\\b"] {
            let err = check_layer("--lower", Path::new(bad)).unwrap_err();
            assert!(err.to_string().contains("separator"), "{err}");
            assert!(check("TARGET", Path::new(bad)).is_ok());
        }
    }

    #[test]
    fn a_new_directory_needs_a_name() {
        for bad in ["/", "x/..", "."] {
            let err = new_layer_dir("LAYER", Path::new(bad), "./l");
            assert!(err.is_err(), "{bad} was taken: {err:?}");
        }
        assert_eq!(
            new_layer_dir("LAYER", Path::new("layer2"), "./l").unwrap(),
            (PathBuf::from("."), OsString::from("layer2"))
        );
        assert_eq!(
            new_layer_dir("LAYER", Path::new("a/b/"), "./l").unwrap(),
            (PathBuf::from("a"), OsString::from("b"))
        );
        assert!(is_root(Path::new("/")) && is_root(Path::new("/..")));
        assert!(!is_root(Path::new("/tmp")));
    }
}
