//! BusyBox: one static binary that is a whole userland.
//!
//! BusyBox is a *multi-call binary*: `sh`, `ls`, `ip`, `httpd`, `nc`,
//! `mount` and some three hundred other tools are compiled into one
//! program, which looks at the name it was started under (`argv[0]`) to
//! know which tool to be. A symlink `bin/ls → busybox` is therefore all an
//! `ls` needs. Built static (Debian's `busybox-static`), it needs no shared
//! library and no loader, so one file plus its links is a working root
//! filesystem. `busybox --list-full` names each tool with the path it
//! belongs at; `busybox --install -s DIR` would make the links, but only
//! for the running system's layout, so the links are made here instead.
//! See <https://busybox.net/FAQ.html#getting_started>.

use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use steps::Error;

use super::io_error;

/// Where the binary goes in the rootfs, and what every applet links to.
pub const IN_ROOTFS: &str = "bin/busybox";

/// The first `busybox` on `$PATH`, as a shell would find it.
pub fn find() -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join("busybox"))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Runs `busybox ARG` and gives back what it printed on stdout.
fn run(busybox: &Path, arg: &str) -> Result<String, Error> {
    let call = format!("{} {arg}", busybox.display());
    let output = Command::new(busybox)
        .arg(arg)
        .output()
        .map_err(|e| io_error(format!("execve(\"{}\")", busybox.display()), e))?;
    if !output.status.success() {
        return Err(Error::setup(format!(
            "{call} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Where each applet belongs, relative to the root, from
/// `busybox --list-full` (`bin/sh`, `sbin/ip`, `usr/bin/nc`, …); busybox's
/// own entry is left out.
pub fn applets(busybox: &Path) -> Result<Vec<PathBuf>, Error> {
    let text = run(busybox, "--list-full").map_err(|e| {
        e.hint("a busybox older than 1.20 cannot list its applets' paths; use --from-host")
    })?;
    let links = parse_list_full(&text);
    if links.is_empty() {
        return Err(Error::setup(format!(
            "{} --list-full listed no applets",
            busybox.display()
        )));
    }
    Ok(links)
}

/// Parses `--list-full`: one relative path a line. A line that is not a
/// plain relative path (`/x`, `../x`) is ignored rather than followed out
/// of the rootfs, and so is `linuxrc`, an initrd's first program, which
/// would only clutter `/`.
pub fn parse_list_full(text: &str) -> Vec<PathBuf> {
    let mut links: Vec<PathBuf> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(PathBuf::from)
        .filter(|path| {
            path.components().all(|c| matches!(c, Component::Normal(_)))
                && path != Path::new(IN_ROOTFS)
                && path != Path::new("linuxrc")
        })
        .collect();
    links.sort();
    links.dedup();
    links
}

/// `BusyBox v1.35.0 (Debian 1:1.35.0-4+deb12u1+b1)`: the first line of
/// `busybox --help`.
pub fn version(busybox: &Path) -> Result<String, Error> {
    let text = run(busybox, "--help")?;
    parse_version(&text).ok_or_else(|| {
        Error::setup(format!(
            "{} --help does not start with \"BusyBox v…\"",
            busybox.display()
        ))
    })
}

pub fn parse_version(help: &str) -> Option<String> {
    let first = help.lines().next()?.trim();
    if !first.starts_with("BusyBox v") {
        return None;
    }
    let version = first.strip_suffix("multi-call binary.").unwrap_or(first);
    Some(version.trim().to_string())
}

/// The target of the symlink at `link` (relative to the root) that
/// reaches `bin/busybox`: `busybox` from `bin/sh`, `../../bin/busybox`
/// from `usr/bin/nc`. Relative links resolve both inside the container
/// and when the layer is looked at from the host.
pub fn link_target(link: &Path) -> PathBuf {
    let target = Path::new(IN_ROOTFS);
    let from: Vec<&OsStr> = link
        .parent()
        .map(|p| p.iter().collect())
        .unwrap_or_default();
    let to: Vec<&OsStr> = target.iter().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut relative = PathBuf::new();
    for _ in common..from.len() {
        relative.push("..");
    }
    for part in &to[common..] {
        relative.push(part);
    }
    relative
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_full_gives_safe_relative_paths_without_busybox_itself() {
        let text = "linuxrc\nusr/bin/[\nbin/ash\nbin/busybox\nsbin/ip\n/etc/passwd\n../escape\nusr/bin/nc\nbin/sh\n\n";
        assert_eq!(
            parse_list_full(text),
            ["bin/ash", "bin/sh", "sbin/ip", "usr/bin/[", "usr/bin/nc"]
                .map(PathBuf::from)
                .to_vec()
        );
    }

    #[test]
    fn the_version_is_the_banners_first_words() {
        let help = "BusyBox v1.35.0 (Debian 1:1.35.0-4+deb12u1+b1) multi-call binary.\n\
                    BusyBox is copyrighted by many authors between 1998-2015.\n";
        assert_eq!(
            parse_version(help).as_deref(),
            Some("BusyBox v1.35.0 (Debian 1:1.35.0-4+deb12u1+b1)")
        );
        assert_eq!(parse_version("Usage: toybox\n"), None);
    }

    #[test]
    fn links_reach_bin_busybox_relatively() {
        assert_eq!(link_target(Path::new("bin/sh")), Path::new("busybox"));
        assert_eq!(
            link_target(Path::new("sbin/ip")),
            Path::new("../bin/busybox")
        );
        assert_eq!(
            link_target(Path::new("usr/bin/nc")),
            Path::new("../../bin/busybox")
        );
        assert_eq!(link_target(Path::new("linuxrc")), Path::new("bin/busybox"));
    }

    #[test]
    fn the_hosts_busybox_lists_a_shell_and_ip() {
        let Some(busybox) = find() else {
            eprintln!("skipped: no busybox on $PATH");
            return;
        };
        let applets = applets(&busybox).unwrap();
        assert!(applets.contains(&PathBuf::from("bin/sh")), "{applets:?}");
        assert!(applets.iter().any(|a| a.ends_with("ip")), "{applets:?}");
        assert!(version(&busybox).unwrap().starts_with("BusyBox v"));
    }
}
