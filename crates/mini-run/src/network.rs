//! # The bridge network, by veth-bridge's library
//!
//! `--network bridge` is what the Networking part built by hand: a bridge
//! (the toolkit's docker0, `underhood0`, made on first use), a veth pair
//! whose host end is plugged into it and whose other end is the
//! container's `eth0`, an address leased from the bridge's subnet, a
//! default route through the bridge's address, NAT out, and published
//! ports. mini-run calls veth-bridge's plans for each, so `--explain`
//! shows them as the `veth-bridge` commands they are.
//!
//! Going is simpler than coming: when the container's last process ends,
//! its network namespace goes, and the kernel deletes the veth pair with
//! it. What stays is the toolkit's own bookkeeping — the lease and the
//! published ports' nftables rules — which [`disconnect`] gives back.

use std::net::Ipv4Addr;
use std::path::Path;

use nix::unistd::Pid;
use steps::{Error, Narrator};
use veth_bridge::alloc::Subnet;
use veth_bridge::netlink::Netlink;
use veth_bridge::nft::{self, Published, Table};
use veth_bridge::plan::{self as vb, Bridge, Netns};

use crate::container::{DEFAULT_BRIDGE, Port};

/// A container's place on a bridge: enough to give it back once its
/// network namespace is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub bridge: String,
    /// The veth's host end, which also holds the lease.
    pub host: String,
    /// The network namespace the bridge is in, by its inode: only there
    /// can the connection be undone.
    pub netns: u64,
    /// Ports were published: there are nftables rules to remove too.
    pub published: bool,
}

impl Attachment {
    /// As kept in the container's state directory: `BRIDGE HOST
    /// net:INODE`, and `ports` when it published some.
    pub fn record(&self) -> String {
        let ports = if self.published { " ports" } else { "" };
        format!("{} {} net:{}{ports}\n", self.bridge, self.host, self.netns)
    }

    pub fn parse(text: &str) -> Option<Self> {
        let mut words = text.split_whitespace();
        let (bridge, host) = (words.next()?, words.next()?);
        let netns = words.next()?.strip_prefix("net:")?.parse().ok()?;
        let published = match words.next() {
            None => false,
            Some("ports") => true,
            Some(_) => return None,
        };
        Some(Self {
            bridge: bridge.into(),
            host: host.into(),
            netns,
            published,
        })
    }

    /// Whether this process is in the network namespace of the bridge.
    pub fn is_here(&self) -> bool {
        current_netns() == Some(self.netns)
    }
}

/// The inode of this process's network namespace.
fn current_netns() -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/net").ok().map(|m| m.ino())
}

/// Holds the lock that makes one mini-run at a time look at and change the
/// bridges and the nftables table: two first containers must not both make
/// `underhood0`, nor plan from the same view of the table.
fn lock() -> Result<steps::lock::DirLock, Error> {
    // On the toolkit's /run directory itself. (veth-bridge's library locks
    // /run/underhood/net for its nft changes.)
    steps::lock::exclusive(Path::new("/run/underhood"))
}

fn table() -> Result<Table, Error> {
    match nft::require() {
        Ok(()) => nft::list(),
        // No nft, no rules of the toolkit's to find.
        Err(_) => Ok(Table::default()),
    }
}

/// The host end a process's network namespace gets: known before anything
/// is made, so it can be recorded first.
pub fn attachment(bridge: &str, child: Pid, ports: &[Port]) -> Result<Attachment, Error> {
    let host = vb::host_end(&netns_of(child))?;
    Ok(Attachment {
        bridge: bridge.into(),
        host,
        netns: current_netns().unwrap_or(0),
        published: !ports.is_empty(),
    })
}

fn netns_of(child: Pid) -> std::path::PathBuf {
    Path::new("/proc").join(child.to_string()).join("ns/net")
}

/// Plugs `child`'s network namespace into the bridge and publishes the
/// ports; returns the container's address. On failure, what this made of
/// the connection is the caller's to [`disconnect`].
pub fn connect(
    bridge: &str,
    child: Pid,
    ports: &[Port],
    narrator: &Narrator,
) -> Result<Ipv4Addr, Error> {
    let _lock = lock()?;
    let nl = Netlink::open()?;
    let bridge = bridge_for(bridge, &nl, narrator)?;
    let netns = Netns {
        path: netns_of(child),
    };
    let host = vb::host_end(&netns.path)?;
    vb::execute(&vb::connect(&bridge, &netns, None, &nl)?, narrator)?;
    let addr = bridge.leases.find(&host).ok_or_else(|| {
        Error::setup(format!(
            "{}: the lease of {host} is missing after connecting",
            bridge.name
        ))
    })?;
    if !ports.is_empty() {
        nft::require()?;
    }
    for port in ports {
        let published = Published {
            bridge: bridge.name.clone(),
            host_port: port.host,
            proto: port.proto,
            to: addr,
            port: port.container,
        };
        let plan = vb::publish(&bridge, &published, &nft::list()?)
            .map_err(|e| e.hint(format!("-p {port}")))?;
        vb::execute(&plan, narrator)?;
    }
    Ok(addr)
}

/// Checks, before anything is made, that a bridge named with `--network`
/// is one of the toolkit's (the default one is made when missing).
pub fn check(bridge: &str) -> Result<(), Error> {
    if bridge == DEFAULT_BRIDGE {
        return Ok(());
    }
    vb::find_bridge(bridge, &Netlink::open()?)
        .map(drop)
        .map_err(|e| e.hint(bridge_hint()))
}

fn bridge_hint() -> &'static str {
    "--network takes bridge (the default), none, host, or a bridge of the toolkit's"
}

/// The bridge to connect to: the default one is made, with NAT on, the
/// first time; any other must have been made with veth-bridge. NAT is
/// turned on only then, as docker0's is when dockerd makes it: after
/// `veth-bridge nat underhood0 off` it stays off, and no container pays
/// for listing the nftables table on every start.
fn bridge_for(name: &str, nl: &Netlink, narrator: &Narrator) -> Result<Bridge, Error> {
    if name != DEFAULT_BRIDGE {
        return vb::find_bridge(name, nl).map_err(|e| e.hint(bridge_hint()));
    }
    if nl.link_index(name)?.is_some() {
        return vb::find_bridge(name, nl);
    }
    nft::require().map_err(|e| e.hint("or run with --network none"))?;
    let subnet = Subnet::parse(veth_bridge::alloc::DEFAULT_SUBNET).map_err(Error::setup)?;
    vb::execute(&vb::bridge_add(name, &subnet, nl)?, narrator)?;
    let bridge = vb::find_bridge(name, nl)?;
    if let Some(plan) = vb::nat_on(&bridge, &nft::list()?) {
        vb::execute(&plan, narrator)?;
    }
    Ok(bridge)
}

/// Gives back what a container held on its bridge: its published ports,
/// its lease, and its veth pair if the kernel has not taken it already.
pub fn disconnect(attachment: &Attachment, narrator: &Narrator) -> Result<(), Error> {
    let _lock = lock()?;
    let nl = Netlink::open()?;
    let Ok(bridge) = vb::find_bridge(&attachment.bridge, &nl) else {
        // The bridge is gone (its rules went with veth-bridge bridge del,
        // or with the network namespace it was in); a lease may be left.
        let leases = veth_bridge::alloc::Leases::of(&attachment.bridge);
        if let Some(addr) = leases.find(&attachment.host) {
            leases.release(addr)?;
        }
        return Ok(());
    };
    // Without published ports there is no rule of the container's to
    // find: no need to list the table.
    let table = if attachment.published {
        table()?
    } else {
        Table::default()
    };
    let plan = vb::disconnect_end(&bridge, &attachment.host, &table, &nl)?;
    if !plan.is_empty() {
        vb::execute(&plan, narrator)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attachment_reads_back_as_written() {
        for published in [false, true] {
            let a = Attachment {
                bridge: "underhood0".into(),
                host: "vbf0000123".into(),
                netns: 4026531840,
                published,
            };
            assert_eq!(Attachment::parse(&a.record()), Some(a));
        }
        assert_eq!(Attachment::parse("garbage"), None);
        assert_eq!(Attachment::parse("underhood0 vbf0000123"), None);
        assert_eq!(Attachment::parse("underhood0 vbf0000123 net:1 what"), None);
    }
}
