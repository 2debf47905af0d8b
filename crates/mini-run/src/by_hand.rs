//! The same container by hand: the chain of standalone commands —
//! `overlay-stack`, `veth-bridge`, `cg-limit`, `ns-unshare` — that builds
//! what `mini-run run` builds, as a learner typed them in the earlier
//! parts. `--explain` prints it before it runs the plan, so that mini-run
//! reads as exactly the tools the learner already used, composed.
//!
//! It is a sketch of the container, not all of it: what no standalone
//! tool makes is left out and said so — the small `/dev`, the `/etc`
//! files, the hidden `/proc` paths, the capability drop, `pivot_root` (the
//! chain ends in ns-unshare's `chroot`), `--init` and `-t`. The commands
//! run as printed, from an empty directory, as root.

use overlay_stack::stack::{Stack, Writable};

use crate::container::{Container, DEFAULT_BRIDGE, Network, Root, Source};
use crate::plan::{self, limit_flags};
use crate::state::{Dirs, Id};

/// What the chain leaves out, in one line.
pub const LEFT_OUT: &str = "without mini-run's /dev, /etc files, hidden /proc paths, capability drop, --init and -t, and with a chroot where mini-run pivots";

/// A word as a shell reads it back: quoted when it needs to be.
pub fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The commands, in order: set up, run, take down.
pub fn commands(container: &Container, id: &Id, default_rootfs: &std::path::Path) -> Vec<String> {
    let mut up = Vec::new();
    let mut down = Vec::new();
    // The same layers as mini-run's stack, in directories of the chain's
    // own, relative to where it runs.
    let root = match (
        plan::stack(container, &Dirs::of(id), default_rootfs),
        &container.root,
    ) {
        (Some(stack), _) => {
            let here = Stack {
                writable: Some(Writable {
                    upper: "upper".into(),
                    work: "work".into(),
                }),
                target: "merged".into(),
                ..stack
            };
            up.push(plan::overlay_command(&here));
            down.push("overlay-stack umount merged".to_string());
            "merged".to_string()
        }
        (None, Root::Dir(dir)) => dir.display().to_string(),
        (None, _) => unreachable!("only --rootfs has no stack"),
    };
    for volume in &container.volumes {
        let source = match &volume.source {
            Source::Host(path) => path.display().to_string(),
            Source::Named(name) => {
                let dir = crate::volume::dir(name).display().to_string();
                up.push(format!("mkdir -p {dir}"));
                dir
            }
        };
        let target = format!("{root}{}", volume.target.display());
        up.push(format!(
            "mkdir -p {} && mount --bind {} {}",
            quote(&target),
            quote(&source),
            quote(&target)
        ));
        if volume.read_only {
            up.push(format!("mount -o remount,bind,ro {}", quote(&target)));
        }
        down.insert(0, format!("umount {}", quote(&target)));
    }
    if container.workdir != std::path::Path::new("/") {
        // As mini-run does (and Docker): a missing working directory is made.
        let dir = format!("{root}{}", container.workdir.display());
        up.push(format!("mkdir -p {}", quote(&dir)));
    }
    let mut enter = String::new();
    let mut net = "";
    match &container.network {
        Network::None => net = " --net",
        Network::Host => {}
        Network::Bridge(bridge) => {
            if bridge == DEFAULT_BRIDGE {
                up.push(format!(
                    "ip link show {bridge} >/dev/null 2>&1 || {{ veth-bridge bridge add {bridge} && veth-bridge nat {bridge} on; }}"
                ));
            }
            up.push("touch net && ns-unshare --net=net true".to_string());
            if container.ports.is_empty() {
                up.push(format!("veth-bridge connect {bridge} --netns ./net"));
            } else {
                // The address connect leases is the one the ports lead to.
                up.push(format!(
                    "addr=$(veth-bridge connect {bridge} --netns ./net | awk '{{ print $4 }}' | cut -d/ -f1) && echo \"eth0 is $addr\""
                ));
                for port in &container.ports {
                    up.push(format!(
                        "veth-bridge publish {bridge} {}:{}/{} --to \"$addr\"",
                        port.host, port.container, port.proto
                    ));
                }
            }
            enter = "ns-unshare --enter --net=./net ".to_string();
            down.insert(
                0,
                format!("veth-bridge disconnect {bridge} --netns ./net && umount net && rm net"),
            );
        }
    }
    let hostname = container
        .hostname
        .clone()
        .unwrap_or_else(|| id.short().to_string());
    let user = container
        .user
        .map(|u| format!(" --setuid {} --setgid {}", u.uid, u.gid))
        .unwrap_or_default();
    let env: String = container
        .env
        .iter()
        .map(|e| format!(" {}", quote(e)))
        .collect();
    let argv: String = container
        .command
        .iter()
        .map(|a| format!(" {}", quote(a)))
        .collect();
    up.push(format!(
        "{enter}cg-limit{} --name by-hand-{} -- ns-unshare --fork --kill-child --pid --mount --uts --ipc{net} --cgroup --hostname {} --mount-proc --root {root} --wd {}{user} env -i{env}{argv}",
        limit_flags(&container.limits),
        id.short(),
        quote(&hostname),
        quote(&container.workdir.display().to_string()),
    ));
    up.extend(down);
    up
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_only_when_a_shell_would_split_or_expand_them() {
        assert_eq!(quote("PATH=/usr/bin:/bin"), "PATH=/usr/bin:/bin");
        assert_eq!(quote("echo $HOME"), "'echo $HOME'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
    }
}
