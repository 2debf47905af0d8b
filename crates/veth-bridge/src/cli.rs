//! The command line: flags parsed into requests, nothing touched.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use steps::{Error, StepArgs};

const AFTER_HELP: &str = "\
Exit status: 0 done (or nothing to do: NAT off already); 2 bad usage or a
request refused before anything was made (a name, subnet, address, port or
namespace that cannot be used, a bridge that is not the toolkit's, a port
published already), with one line naming what and how to fix it; 125
veth-bridge itself failed (a kernel call or nft command was refused, or it
ran without root), and what it had made is taken back; 130 (128+N) stopped
by SIGINT (signal N) between two steps, what it had made taken back.";

/// A docker0 of your own: a bridge, veth pairs into network namespaces,
/// addresses, routes, NAT and published ports.
///
/// Makes a bridge with a gateway address (like docker0), and connects a
/// network namespace to it with a veth pair whose container end is eth0,
/// with an address from the bridge's subnet and a default route through
/// the gateway. NAT and published ports are nftables rules in a table of
/// the toolkit's own, `ip underhood`. Every change is a netlink request
/// or an nft command; --explain shows each beside the ip or nft command
/// that does the same.
#[derive(Debug, Parser)]
#[command(name = "veth-bridge", version, max_term_width = 100, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    #[command(flatten)]
    pub steps: StepArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make or remove a bridge
    Bridge {
        #[command(subcommand)]
        action: BridgeAction,
    },
    /// Connect a network namespace to a bridge with a veth pair
    Connect {
        /// The bridge (made with veth-bridge bridge add)
        bridge: String,
        #[command(flatten)]
        target: Target,
        /// The container's address (default: the lowest free one)
        #[arg(long, value_name = "ADDR")]
        ip: Option<String>,
    },
    /// Remove a namespace's veth pair from a bridge and give back its address
    Disconnect {
        bridge: String,
        #[command(flatten)]
        target: Target,
    },
    /// Masquerade what the bridge's namespaces send to other networks
    Nat {
        bridge: String,
        #[arg(value_enum)]
        state: OnOff,
    },
    /// Publish a port: HOSTPORT on every host address leads to the
    /// container's CTRPORT, like docker run -p 8080:80
    Publish {
        bridge: String,
        /// HOSTPORT:CTRPORT, optionally /tcp (the default) or /udp
        #[arg(value_name = "HOSTPORT:CTRPORT[/PROTO]")]
        mapping: String,
        /// The address of a namespace connected to the bridge
        #[arg(long, value_name = "ADDR")]
        to: String,
    },
    /// Remove a published port
    Unpublish {
        bridge: String,
        #[arg(value_name = "HOSTPORT[/PROTO]")]
        port: String,
    },
    /// The toolkit's bridges, their ports, where each leads, the
    /// addresses, NAT and published ports
    Show,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Debug, Subcommand)]
pub enum BridgeAction {
    /// Make a bridge with the subnet's first address as its own, up
    Add {
        name: String,
        /// The bridge's subnet: /16 to /30 (Docker takes wider ones),
        /// overlapping no address of another interface here, and outside
        /// the loopback, link-local and multicast ranges
        #[arg(long, value_name = "CIDR", default_value = crate::alloc::DEFAULT_SUBNET)]
        subnet: String,
    },
    /// Remove a bridge no namespace is connected to
    Del { name: String },
}

/// Which network namespace: a process's, or a namespace file.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// The network namespace of this process
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// A namespace file (a bind mount, /proc/PID/ns/net) or a name under
    /// /run/netns (ip netns add NAME)
    #[arg(long, value_name = "PATH|NAME")]
    pub netns: Option<String>,
}

impl Target {
    /// The namespace file this target names, once the value is one a
    /// learner can type and see back: not empty, no control character,
    /// not `.` or `..`, a process id above 0.
    pub fn checked_path(&self) -> Result<PathBuf, Error> {
        if let Some(netns) = &self.netns {
            let why = if netns.is_empty() {
                Some("is empty")
            } else if netns.chars().any(char::is_control) {
                Some("has a control character in it")
            } else if netns == "." || netns == ".." {
                Some("is a directory, not a name")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(Error::usage(format!(
                    "--netns {netns:?} {why}; give a namespace file by its path, or a name \
                     from ip netns list"
                )));
            }
        }
        if self.pid == Some(0) {
            return Err(Error::usage(
                "--pid 0 is no process; give the pid of a process in the namespace",
            ));
        }
        Ok(self.path())
    }

    /// The namespace file this target names.
    pub fn path(&self) -> PathBuf {
        match (&self.pid, &self.netns) {
            (Some(pid), _) => PathBuf::from(format!("/proc/{pid}/ns/net")),
            (None, Some(netns)) if netns.contains('/') => PathBuf::from(netns),
            (None, Some(name)) => PathBuf::from("/run/netns").join(name),
            (None, None) => unreachable!("clap requires one of --pid and --netns"),
        }
    }
}

/// Checks a network interface name as the kernel will: at most 15 bytes
/// (IFNAMSIZ is 16 with the terminating zero), no '/', no whitespace, not
/// '.' or '..'.
pub fn interface_name(what: &str, name: &str) -> Result<(), Error> {
    let why = if name.is_empty() {
        Some("is empty".to_string())
    } else if name.len() > 15 {
        Some(format!(
            "is {} bytes long; the kernel's limit is 15",
            name.len()
        ))
    } else if name == "." || name == ".." {
        Some("is not a name".into())
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        // The kernel takes more, but the name goes into nft rules and
        // file names; Docker allows the same set.
        Some("has characters other than letters, digits, '-', '_' and '.'".into())
    } else if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        Some("does not start with a letter or a digit".into())
    } else {
        None
    };
    match why {
        Some(why) => Err(Error::usage(format!(
            "{what} {:?} {why}; choose another name",
            name
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_follow_the_kernels_rules() {
        assert!(interface_name("bridge", "ub0").is_ok());
        for bad in [
            "",
            "a-name-longer-than-15",
            "a/b",
            "..",
            "a b",
            "-x",
            "a\"b",
            "a;b",
            ".x",
        ] {
            let err = interface_name("bridge", bad).unwrap_err();
            assert_eq!(err.code(), 2, "{bad}");
        }
    }

    #[test]
    fn a_target_is_a_pid_a_path_or_a_name() {
        let t = |pid, netns: Option<&str>| Target {
            pid,
            netns: netns.map(String::from),
        };
        assert_eq!(t(Some(42), None).path(), PathBuf::from("/proc/42/ns/net"));
        assert_eq!(t(None, Some("web")).path(), PathBuf::from("/run/netns/web"));
        assert_eq!(t(None, Some("/tmp/ns")).path(), PathBuf::from("/tmp/ns"));
        for bad in ["", "a\nb", "..", "."] {
            let err = t(None, Some(bad)).checked_path().unwrap_err();
            assert_eq!(err.code(), 2, "{bad:?}");
            assert_eq!(err.to_string().lines().count(), 1, "{bad:?}");
        }
        assert!(t(Some(0), None).checked_path().is_err());
        assert!(t(None, Some("web")).checked_path().is_ok());
    }
}
