//! # Rootless: a container without root
//!
//! An ordinary user may make a *user namespace*, and in it be root: every
//! capability, but only over what that namespace owns. Made together with
//! it, the container's other namespaces are owned by it, so the user may
//! mount a `/proc`, an overlay (with `userxattr`), a `tmpfs`, bind mounts,
//! and `pivot_root` — all in a mount namespace no one else sees. The
//! user's own uid and gid are *mapped* to 0 inside (`/proc/PID/uid_map`,
//! `0 UID 1`): root in the container is the user on the host, and files
//! the user owns show as root's. See
//! <https://man7.org/linux/man-pages/man7/user_namespaces.7.html>.
//!
//! What a user may not do is change the host: make a veth or a bridge, or
//! write to a cgroup that is not theirs. So a rootless container has
//! `--network none`, and limits only where the user was *delegated* a
//! cgroup v2 subtree (as systemd's `user@UID.service` is, with
//! `Delegate=yes`). Everything else mini-run does works the same; its
//! state, default rootfs and named volumes live in the user's own
//! directories.
//!
//! Root may ask for the same isolation with `--userns`, and may map more:
//! the container's ids 0 to 65535 stand for 65536 host ids no one uses
//! ([`IdMap::remapped`]), so root in the container is a stranger to every
//! host file, as with Docker's `--userns-remap`. The image's files are
//! root's on disk; *idmapped mounts* of its layers show them as the
//! container root's, without a copy or a `chown`.

use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid};
use steps::Error;

use crate::cli::RunArgs;
use crate::container::{Container, Network};

/// The container's ids 0 to `count - 1` stand for the host's from `uid`
/// (and `gid`) on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdMap {
    pub uid: u32,
    pub gid: u32,
    pub count: u32,
}

/// `--userns` as root: the host ids from which the container's 65536 are
/// taken when `/etc/subuid` gives the user `underhood` no range. Above
/// the ranges `useradd` hands out (`SUB_UID_MAX` is 600100000), so no
/// user's rootless containers share them.
pub const DEFAULT_BASE: u32 = 1_000_000_000;

/// How many ids `--userns` maps as root: 0 to 65535, nobody included.
pub const COUNT: u32 = 65536;

/// The user whose `/etc/subuid` and `/etc/subgid` ranges `--userns` takes,
/// as Docker's `--userns-remap=default` takes `dockremap`'s.
pub const SUBID_USER: &str = "underhood";

impl IdMap {
    /// The caller's own ids: what an unprivileged user may map.
    pub fn caller() -> Self {
        Self {
            uid: Uid::effective().as_raw(),
            gid: Gid::effective().as_raw(),
            count: 1,
        }
    }

    /// `--userns` as root: [`SUBID_USER`]'s ranges, or [`DEFAULT_BASE`].
    pub fn remapped() -> Result<Self, Error> {
        let range = |file: &str| -> Result<Option<(u32, u32)>, Error> {
            match std::fs::read_to_string(file) {
                Ok(text) => {
                    subid_range(&text, SUBID_USER).map_err(|e| Error::setup(format!("{file}: {e}")))
                }
                Err(_) => Ok(None),
            }
        };
        let (uid, uids) = range("/etc/subuid")?.unwrap_or((DEFAULT_BASE, COUNT));
        let (gid, gids) = range("/etc/subgid")?.unwrap_or((DEFAULT_BASE, COUNT));
        Ok(Self {
            uid,
            gid,
            count: uids.min(gids).min(COUNT),
        })
    }

    /// More than the caller's own id: root made the map, and the
    /// container's files need idmapped layers to be its own.
    pub fn is_remapped(&self) -> bool {
        self.count > 1
    }
}

/// `NAME:START:COUNT` lines of `/etc/subuid`: the first range of `user`,
/// which must hold at least 65536 ids.
pub fn subid_range(text: &str, user: &str) -> Result<Option<(u32, u32)>, String> {
    for line in text.lines() {
        let fields: Vec<&str> = line.trim().split(':').collect();
        if fields.first() != Some(&user) {
            continue;
        }
        let numbers = match fields.as_slice() {
            [_, start, count] => start.parse::<u32>().ok().zip(count.parse::<u32>().ok()),
            _ => None,
        };
        return match numbers {
            Some((start, count)) if count >= COUNT && start.checked_add(count).is_some() => {
                Ok(Some((start, count)))
            }
            Some(_) => Err(format!(
                "the range of {user} holds fewer than {COUNT} ids; give it {user}:START:{COUNT}"
            )),
            None => Err(format!("{line:?} is not NAME:START:COUNT")),
        };
    }
    Ok(None)
}

/// Whether mini-run runs without root, and must go rootless.
pub fn is_rootless() -> bool {
    !Uid::effective().is_root()
}

/// An absolute path from an environment variable, or none: the XDG rules
/// ignore a relative one.
fn absolute_var(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

fn home() -> Option<PathBuf> {
    absolute_var("HOME").or_else(|| {
        nix::unistd::User::from_uid(Uid::effective())
            .ok()
            .flatten()
            .map(|user| user.dir)
    })
}

/// The toolkit's directory in the user's runtime directory, for state
/// that goes at logout or reboot: `underhood` in `$XDG_RUNTIME_DIR`
/// (`/run/user/UID`), else `underhood-UID` in `/tmp`.
pub fn runtime_dir() -> PathBuf {
    match absolute_var("XDG_RUNTIME_DIR") {
        Some(dir) => dir.join("underhood"),
        None => std::env::temp_dir().join(format!("underhood-{}", Uid::effective())),
    }
}

/// The user's data directory, for what is kept: `$XDG_DATA_HOME`, else
/// `~/.local/share`.
pub fn data_dir() -> PathBuf {
    absolute_var("XDG_DATA_HOME")
        .or_else(|| home().map(|h| h.join(".local/share")))
        .unwrap_or_else(|| runtime_dir().join("data"))
}

/// Refuses a directory of the user's that someone else made or that is a
/// symlink: in `/tmp` anyone may make `underhood-UID` first.
pub fn check_own(dir: &Path) -> Result<(), Error> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| Error::io(format!("lstat(\"{}\")", dir.display()), &e))?;
    if !meta.is_dir() || meta.uid() != Uid::effective().as_raw() {
        return Err(Error::setup(format!(
            "{}: not a directory of your own; remove it, or set XDG_RUNTIME_DIR to one",
            dir.display()
        )));
    }
    Ok(())
}

/// Turns a container into a rootless one, or says which flag asks for
/// what needs root. `delegated`: whether a delegated cgroup can hold its
/// limits. Returns a line to tell the user when a default changed.
pub fn adapt(
    container: &mut Container,
    args: &RunArgs,
    delegated: bool,
) -> Result<Option<String>, Error> {
    let mut notice = None;
    match (&container.network, args.network.is_some()) {
        (Network::None, _) => {}
        (Network::Bridge(_), false) if args.publish.is_empty() => {
            container.network = Network::None;
            notice = Some(
                "rootless: --network none (a bridge and a veth are made on the host, which needs root; --network none says so and this line goes)".to_string(),
            );
        }
        (Network::Host, _) => {
            return Err(Error::setup(
                "--network host: not available rootless (the host's /sys cannot be mounted from a user namespace); use --network none, or run as root",
            ));
        }
        (Network::Bridge(_), _) => {
            return Err(Error::setup(
                "--network bridge and -p need a veth and a bridge on the host, which only root may make; rootless containers have --network none",
            )
            .hint("drop them, or run as root"));
        }
    }
    if !container.limits.controllers().is_empty() && !delegated {
        return Err(Error::setup(
            "--memory, --cpus and --pids-limit need a cgroup; without root that is only a cgroup v2 subtree delegated to you, and there is none here",
        )
        .hint("systemd-run --user --scope -p Delegate=yes mini-run run …, or run as root"));
    }
    if container.user.is_some_and(|u| u.uid == 0 && u.gid == 0) {
        // Already root inside; and with setgroups denied, the switch of
        // user (setgroups(0, NULL) first) would fail.
        container.user = None;
    }
    if let Some(user) = container.user {
        return Err(Error::setup(format!(
            "-u {}:{}: rootless, the user namespace maps only your own uid and gid (to 0); other ids need newuidmap and /etc/subuid, which mini-run does not use",
            user.uid, user.gid
        ))
        .hint("drop -u, or run as root"));
    }
    container.userns = Some(IdMap::caller());
    Ok(notice)
}

/// `--userns` as root: refuses what the container's user namespace
/// cannot give, before anything is made.
pub fn check_remapped(container: &Container, map: &IdMap) -> Result<(), Error> {
    if container.network == Network::Host {
        return Err(Error::usage(
            "--userns with --network host: the host's network namespace is not the container's user namespace's, so its /sys cannot be mounted there",
        )
        .hint("use --network none or a bridge, or drop --userns"));
    }
    if let Some(user) = container.user
        && (user.uid >= map.count || user.gid >= map.count)
    {
        return Err(Error::usage(format!(
            "-u {}:{}: the user namespace maps ids 0 to {} only",
            user.uid,
            user.gid,
            map.count - 1
        ))
        .hint("give an id in that range, or drop --userns"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn rootless(flags: &[&str], delegated: bool) -> Result<(Container, Option<String>), Error> {
        let mut argv = vec!["mini-run", "run"];
        argv.extend_from_slice(flags);
        let cli = crate::cli::Cli::try_parse_from(argv).unwrap();
        let crate::cli::Command::Run(args) = cli.command else {
            unreachable!()
        };
        let mut container = Container::from_args(&args)?;
        let notice = adapt(&mut container, &args, delegated)?;
        Ok((container, notice))
    }

    #[test]
    fn subid_ranges_are_read_by_user_and_checked() {
        let text = "alice:100000:65536\nunderhood:2000000:65536\n";
        assert_eq!(subid_range(text, "underhood"), Ok(Some((2000000, 65536))));
        assert_eq!(subid_range(text, "bob"), Ok(None));
        assert!(
            subid_range("underhood:5:10\n", "underhood")
                .unwrap_err()
                .contains("fewer than 65536")
        );
        assert!(
            subid_range("underhood:x\n", "underhood")
                .unwrap_err()
                .contains("NAME:START:COUNT")
        );
    }

    #[test]
    fn with_userns_as_root_host_network_and_ids_outside_the_map_are_refused() {
        let map = IdMap {
            uid: DEFAULT_BASE,
            gid: DEFAULT_BASE,
            count: COUNT,
        };
        let check = |flags: &[&str]| {
            let mut argv = vec!["mini-run", "run"];
            argv.extend_from_slice(flags);
            let cli = crate::cli::Cli::try_parse_from(argv).unwrap();
            let crate::cli::Command::Run(args) = cli.command else {
                unreachable!()
            };
            check_remapped(&Container::from_args(&args).unwrap(), &map)
        };
        assert!(
            check(&["--network", "host"])
                .unwrap_err()
                .to_string()
                .contains("--network host")
        );
        assert!(
            check(&["-u", "65536"])
                .unwrap_err()
                .to_string()
                .contains("ids 0 to 65535")
        );
        assert!(check(&["-u", "65535:1000"]).is_ok());
        assert!(check(&[]).is_ok());
    }

    #[test]
    fn the_default_bridge_becomes_none_and_says_so() {
        let (c, notice) = rootless(&[], false).unwrap();
        assert_eq!(c.network, Network::None);
        assert!(notice.unwrap().contains("--network none"));
        assert_eq!(c.userns, Some(IdMap::caller()));
        let (_, notice) = rootless(&["--network", "none"], false).unwrap();
        assert_eq!(notice, None);
    }

    #[test]
    fn what_needs_root_is_refused_by_its_flag() {
        for (flags, names) in [
            (&["--network", "bridge"][..], "--network bridge"),
            (&["-p", "8080:80"][..], "-p"),
            (&["--network", "host"][..], "--network host"),
            (&["--memory", "64m"][..], "--memory"),
            (&["-u", "1000"][..], "-u 1000:1000"),
        ] {
            let error = rootless(flags, false).unwrap_err().to_string();
            assert!(error.contains(names), "{flags:?}: {error}");
        }
        // A delegated cgroup holds the limits.
        assert!(rootless(&["--memory", "64m"], true).is_ok());
        assert!(rootless(&["-u", "0:0"], false).is_ok());
    }
}
