//! The stamp `/etc/underhood-release`: what a rootfs was built from.
//!
//! It is written last, so a tree that has one is complete, and it is how a
//! later build recognises a tree it may keep (same stamp: "up to date") or
//! replace (another stamp: built from something else), and a directory it
//! must not touch (no stamp). It follows the `os-release` format —
//! `KEY=value` lines, values in double quotes with `\"`, `\\`, `` \` `` and
//! `\$` escaped — so `cat` or `. /etc/underhood-release` read it. See
//! <https://www.freedesktop.org/software/systemd/man/latest/os-release.html>.

use std::path::Path;

use sha2::{Digest, Sha256};

/// Where the stamp lives, relative to the root.
pub const FILE: &str = "etc/underhood-release";
/// `ID=` of every underhood rootfs.
pub const ID: &str = "underhood-rootfs";
/// The version of what the builder makes (`VERSION_ID=`). Bump it when the
/// tree changes — another directory, another file in `/etc` — so that
/// cached trees from an older builder are rebuilt.
pub const LAYOUT: u32 = 1;

/// `SOURCE=` of a rootfs made from copied host programs.
pub const HOST_BINARIES: &str = "host binaries";
/// `SOURCE=` of a rootfs made from busybox.
pub const BUSYBOX: &str = "busybox";

/// What one rootfs was built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// [`LAYOUT`] when it was built.
    pub layout: u32,
    /// [`BUSYBOX`] or [`HOST_BINARIES`].
    pub source: String,
    /// The busybox binary's path on the host.
    pub path: Option<String>,
    /// What busybox says its version is.
    pub version: Option<String>,
    /// The busybox binary's sha256; for host binaries, the sha256 of the
    /// `sha256sum`-style list of every copied file's hash.
    pub sha256: String,
}

impl Stamp {
    /// The file's text.
    pub fn render(&self) -> String {
        let mut text = String::from(
            "# What this root filesystem was built from, written last by\n\
             # `overlay-stack rootfs`: a build from the same source keeps it.\n",
        );
        text.push_str(&self.fields());
        text
    }

    /// The `KEY="value"` lines, without the comment above them.
    pub fn fields(&self) -> String {
        let mut text = line("NAME", "underhood rootfs");
        text.push_str(&line("ID", ID));
        text.push_str(&line("VERSION_ID", &self.layout.to_string()));
        text.push_str(&line("SOURCE", &self.source));
        if let Some(path) = &self.path {
            text.push_str(&line("SOURCE_PATH", path));
        }
        if let Some(version) = &self.version {
            text.push_str(&line("SOURCE_VERSION", version));
        }
        text.push_str(&line("SOURCE_SHA256", &self.sha256));
        text
    }

    /// Parses a stamp; `None` unless it says `ID=underhood-rootfs` and has
    /// everything a stamp must.
    pub fn parse(text: &str) -> Option<Self> {
        let mut id = None;
        let mut layout = None;
        let mut stamp = Stamp {
            layout: 0,
            source: String::new(),
            path: None,
            version: None,
            sha256: String::new(),
        };
        for (key, value) in pairs(text)? {
            match key {
                "ID" => id = Some(value),
                "VERSION_ID" => layout = value.parse().ok(),
                "SOURCE" => stamp.source = value,
                "SOURCE_PATH" => stamp.path = Some(value),
                "SOURCE_VERSION" => stamp.version = Some(value),
                "SOURCE_SHA256" => stamp.sha256 = value,
                _ => {}
            }
        }
        if id.as_deref() != Some(ID) || stamp.source.is_empty() || stamp.sha256.is_empty() {
            return None;
        }
        stamp.layout = layout?;
        Some(stamp)
    }

    /// The stamp of the rootfs at `root`, if it has a valid one.
    pub fn read(root: &Path) -> Option<Self> {
        Self::parse(&std::fs::read_to_string(root.join(FILE)).ok()?)
    }
}

/// One `KEY="value"` line.
pub(super) fn line(key: &str, value: &str) -> String {
    format!("{key}=\"{}\"\n", escape(value))
}

/// The `KEY=value` lines of an os-release text, with their values
/// unquoted; comments and blank lines are skipped. `None` if a line is
/// neither, or its quotes do not close (a file cut short).
pub(super) fn pairs(text: &str) -> Option<Vec<(&str, String)>> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (key, value) = line.split_once('=')?;
            Some((key, unquote(value)?))
        })
        .collect()
}

/// A backslash before the characters a shell would treat specially inside
/// double quotes.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '"' | '\\' | '`' | '$') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A value as os-release allows it: bare, or in double or single quotes.
fn unquote(value: &str) -> Option<String> {
    let value = value.trim();
    if let Some(inner) = value.strip_prefix('\'') {
        return inner.strip_suffix('\'').map(str::to_string);
    }
    let Some(inner) = value.strip_prefix('"') else {
        return Some(value.to_string());
    };
    let inner = inner.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.push(chars.next()?);
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// The sha256 of a file, in hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

/// The sha256 of a list of `(hash, path)` pairs as `sha256sum` prints
/// them, one `HASH  PATH` line each, sorted by path: one hash that changes
/// when any file, or the set of files, does.
pub fn sha256_of_list(files: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = files.iter().collect();
    sorted.sort_by(|a, b| a.1.cmp(&b.1));
    let mut hasher = Sha256::new();
    for (hash, path) in sorted {
        hasher.update(format!("{hash}  {path}\n"));
    }
    hex(&hasher.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busybox() -> Stamp {
        Stamp {
            layout: LAYOUT,
            source: BUSYBOX.into(),
            path: Some("/usr/bin/busybox".into()),
            version: Some("BusyBox v1.35.0 (Debian 1:1.35.0-4+deb12u1+b1)".into()),
            sha256: "ab".repeat(32),
        }
    }

    #[test]
    fn a_stamp_reads_back_as_written() {
        let stamp = busybox();
        let text = stamp.render();
        assert!(text.contains("\nID=\"underhood-rootfs\"\n"), "{text}");
        assert!(
            text.contains("\nSOURCE_PATH=\"/usr/bin/busybox\"\n"),
            "{text}"
        );
        assert_eq!(Stamp::parse(&text), Some(stamp));
        let host = Stamp {
            source: HOST_BINARIES.into(),
            path: None,
            version: None,
            ..busybox()
        };
        assert_eq!(Stamp::parse(&host.render()), Some(host));
    }

    #[test]
    fn quoting_follows_os_release() {
        let odd = Stamp {
            path: Some("/opt/my \"odd\" $dir\\busybox".into()),
            ..busybox()
        };
        assert_eq!(Stamp::parse(&odd.render()), Some(odd));
        let written_by_hand =
            "ID=underhood-rootfs\nVERSION_ID='1'\nSOURCE=busybox\nSOURCE_SHA256=\"00\"\n";
        assert_eq!(
            Stamp::parse(written_by_hand).map(|s| (s.layout, s.source)),
            Some((1, "busybox".to_string()))
        );
    }

    #[test]
    fn other_files_are_not_stamps() {
        let debian =
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n";
        assert_eq!(Stamp::parse(debian), None);
        assert_eq!(Stamp::parse("ID=underhood-rootfs\nSOURCE=busybox\n"), None);
        assert_eq!(Stamp::parse("not a stamp at all"), None);
        assert_eq!(Stamp::parse("ID=\"underhood-rootfs\nVERSION_ID=1"), None);
    }

    #[test]
    fn the_list_hash_ignores_order_but_not_content() {
        let a = ("11".to_string(), "/bin/ls".to_string());
        let b = ("22".to_string(), "/bin/sh".to_string());
        assert_eq!(
            sha256_of_list(&[a.clone(), b.clone()]),
            sha256_of_list(&[b.clone(), a.clone()])
        );
        let changed = ("33".to_string(), "/bin/sh".to_string());
        assert_ne!(
            sha256_of_list(&[a.clone(), b]),
            sha256_of_list(&[a, changed])
        );
        // sha256 of the empty string.
        assert_eq!(
            sha256_of_list(&[]),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
