//! A container's id and its directory of state.
//!
//! Like Docker's runtime state, a container's files live under `/run`
//! (a rootless one's in the user's runtime directory)
//! (a tmpfs: gone at reboot, as a container is): one directory per
//! container, named by its id, holding its overlay's upper and work
//! directories, the mount point of its root, and the `/etc/hostname`,
//! `/etc/hosts` and `/etc/resolv.conf` it is given. mini-run holds a lock on
//! the directory while the container runs and removes it when it ends.

use std::io::Read;
use std::path::PathBuf;

use steps::Error;

/// Where every container's directory is, as root.
pub const STATE_DIR: &str = "/run/underhood/containers";

/// Where this caller's containers' directories are: [`STATE_DIR`], or
/// without root `containers` in the toolkit's runtime directory of the
/// user's ([`crate::rootless::runtime_dir`]).
pub fn state_dir() -> PathBuf {
    if crate::rootless::is_rootless() {
        crate::rootless::runtime_dir().join("containers")
    } else {
        PathBuf::from(STATE_DIR)
    }
}

/// A container's id: 64 hex digits, shown by its first 12, as Docker's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Id(String);

impl Id {
    /// A new random id.
    pub fn new() -> Result<Self, Error> {
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(|e| Error::io("read(\"/dev/urandom\")", &e))?;
        Ok(Self(bytes.iter().map(|b| format!("{b:02x}")).collect()))
    }

    /// The id a state directory is named by: 64 hex digits.
    pub fn parse(text: &str) -> Option<Self> {
        (text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| Self(text.to_string()))
    }

    pub fn full(&self) -> &str {
        &self.0
    }

    /// The first 12 digits: the hostname, and what people type.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }

    /// The container's cgroup, under the toolkit's parent.
    pub fn cgroup(&self) -> cg_limit::Name {
        cg_limit::Name::parse(&format!("mini-run-{}", self.short())).expect("hex is a valid name")
    }
}

/// The paths of one container's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dirs {
    pub dir: PathBuf,
}

impl Dirs {
    pub fn of(id: &Id) -> Self {
        Self {
            dir: state_dir().join(id.full()),
        }
    }

    /// Where the root filesystem is mounted, before `pivot_root`.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }

    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }

    /// `--userns` as root: where the idmapped layer `index` is attached.
    pub fn layer(&self, index: usize) -> PathBuf {
        self.dir.join("layers").join(index.to_string())
    }

    /// One of the files bound over the container's `/etc`.
    pub fn etc(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// `/etc/hosts`: loopback, and the container's own name.
pub fn hosts(hostname: &str) -> String {
    format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
    )
}

/// `/etc/resolv.conf`: the host's; in a network namespace of its own,
/// without the nameservers on loopback (a systemd-resolved 127.0.0.53
/// means nothing there), and Docker's fallback when none is left.
pub fn resolv_conf(host: &str, own_network: bool) -> String {
    if !own_network {
        return host.to_string();
    }
    let mut out = String::new();
    let mut servers = 0;
    for line in host.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("nameserver") {
            let addr = words.next().unwrap_or("");
            if addr.starts_with("127.") || addr == "::1" {
                continue;
            }
            servers += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    if servers == 0 {
        out.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex_and_short_is_12() {
        let id = Id::new().unwrap();
        assert_eq!(id.full().len(), 64);
        assert!(id.full().chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(id.short(), &id.full()[..12]);
        assert_eq!(id.cgroup().as_str(), format!("mini-run-{}", id.short()));
        assert_eq!(Id::parse(id.full()), Some(id.clone()));
        for bad in ["", "abc", &id.full()[1..], &format!("{}g", &id.full()[1..])] {
            assert_eq!(Id::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn loopback_nameservers_are_dropped() {
        assert_eq!(
            resolv_conf("nameserver 127.0.0.53\nsearch lan\n", true),
            "search lan\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(
            resolv_conf("nameserver 10.0.0.1\n", true),
            "nameserver 10.0.0.1\n"
        );
        // The host's network: its resolver on loopback works there.
        assert_eq!(
            resolv_conf("nameserver 127.0.0.53\n", false),
            "nameserver 127.0.0.53\n"
        );
    }
}
