//! What `bridge add|del`, `connect`, `disconnect`, `nat`, `publish` and
//! `unpublish` do, as plans of netlink requests and nft commands, each
//! shown beside the `ip` or `nft` command a learner would type for the
//! same effect; and the executor that makes them and, when one fails,
//! takes back what the others made.

use std::fs::File;
use std::net::Ipv4Addr;
use std::ops::ControlFlow;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use steps::process::Supervision;
use steps::{Chapter, Error, Narrator, Plan, Step, chapter};

use crate::alloc::{Leases, Subnet};
use crate::netlink::Netlink;
use crate::nft::{self, Chain, Proto, Published, Rule, Table};

/// What to give instead of a namespace that cannot be opened.
const NETNS_HINT: &str = "give a running process's --pid, a name from ip netns list, \
                          or a namespace file by its path (./NAME for one here)";

/// A network namespace other than this process's, as a file and as a
/// learner would name it to `ip`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netns {
    pub path: PathBuf,
}

impl Netns {
    /// `ip -n NAME` for a namespace under /run/netns, else through nsenter.
    fn ip(&self, args: &str) -> String {
        match self
            .path
            .strip_prefix("/run/netns")
            .ok()
            .and_then(|n| n.to_str())
        {
            Some(name) => format!("ip -n {name} {args}"),
            None => format!("nsenter --net={} ip {args}", self.path.display()),
        }
    }

    fn open(&self) -> Result<File, Error> {
        File::open(&self.path).map_err(|e| {
            Error::usage(format!(
                "{}: {}; {NETNS_HINT}",
                self.path.display(),
                steps::error::describe_io(&e)
            ))
        })
    }

    /// Checks, before anything is made, that the file is a network
    /// namespace, and another than veth-bridge's own (the host's, whose
    /// "container" end would land on the host itself).
    pub fn check(&self) -> Result<(), Error> {
        let file = self.open()?;
        let path = self.path.display();
        let stat = |what: &str, meta: std::io::Result<std::fs::Metadata>| {
            meta.map_err(|e| Error::io(format!("stat(\"{what}\")"), &e))
        };
        let it = stat(&path.to_string(), file.metadata())?;
        let own = stat(OWN_NETNS, std::fs::metadata(OWN_NETNS))?;
        // Every namespace file is on nsfs, one file system.
        if it.dev() != own.dev() {
            return Err(Error::usage(format!(
                "{path} is not a namespace file; {NETNS_HINT}"
            )));
        }
        if it.ino() == own.ino() {
            return Err(Error::usage(format!(
                "{path} is veth-bridge's own network namespace, the host's: its eth0 would \
                 be the host's; give a container's (ip netns add NAME, or --pid of a process \
                 in another network namespace)"
            )));
        }
        // Which kind of namespace it is, only setns(2) tells: EINVAL for
        // another kind. Tried in a thread of its own, which then ends.
        let joined = std::thread::scope(|scope| {
            scope
                .spawn(|| nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET))
                .join()
        });
        if let Ok(Err(nix::errno::Errno::EINVAL)) = joined {
            return Err(Error::usage(format!(
                "{path} is a namespace of another kind, not a network namespace; {NETNS_HINT}"
            )));
        }
        Ok(())
    }
}

/// This process's network namespace.
const OWN_NETNS: &str = "/proc/self/ns/net";

/// Refuses, before anything is made, to change the network without
/// `CAP_NET_ADMIN` (bit 12 of `CapEff` in /proc/self/status), which root
/// has: otherwise the first request would fail half-way into a plan.
pub fn require_net_admin(command: &str) -> Result<(), Error> {
    const CAP_NET_ADMIN: u32 = 12;
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| Error::io("read(\"/proc/self/status\")", &e))?;
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    if effective & (1 << CAP_NET_ADMIN) != 0 {
        return Ok(());
    }
    Err(Error::setup(format!(
        "{command} changes the network, which needs root (CAP_NET_ADMIN), and uid {} runs \
         it without; run it with sudo",
        nix::unistd::Uid::effective()
    )))
}

/// An address a step gives: known when the plan is made, or the one the
/// lease step takes when it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Address {
    Fixed(Ipv4Addr),
    Leased,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    AddBridge {
        name: String,
    },
    AddAddress {
        link: String,
        address: Address,
        prefix: u8,
        netns: Option<Netns>,
    },
    SetUp {
        link: String,
        netns: Option<Netns>,
    },
    /// A namespace's `lo` up, when it is down; noted in the lease of
    /// `holder` (in `dir`) first, for disconnect to put it down again.
    LoopbackUp {
        netns: Netns,
        dir: PathBuf,
        holder: String,
    },
    /// A namespace's `lo` down again: connect brought it up.
    LoopbackDown {
        netns: Netns,
    },
    /// The directory of the bridge's leases: the toolkit's mark that the
    /// bridge is its own.
    MakeLeases {
        dir: PathBuf,
    },
    TakeLease {
        dir: PathBuf,
        subnet: Subnet,
        wanted: Option<Ipv4Addr>,
        holder: String,
    },
    AddVeth {
        host: String,
        peer: String,
        netns: Netns,
    },
    SetMaster {
        link: String,
        bridge: String,
    },
    SetHairpin {
        link: String,
    },
    AddDefaultRoute {
        gateway: Ipv4Addr,
        netns: Netns,
    },
    DeleteLink {
        name: String,
        /// A veth's host end (else the bridge).
        veth: bool,
    },
    ReleaseLease {
        dir: PathBuf,
        holder: String,
    },
    RemoveLeases {
        dir: PathBuf,
    },
    /// `sysctl -w net.ipv4.ip_forward=1`, noting that the toolkit did it.
    EnableForwarding,
    /// Forwarding back off, if the toolkit turned it on.
    RestoreForwarding,
    /// A per-interface IPv4 setting, `net.ipv4.conf.LINK.KEY`.
    Sysctl {
        link: String,
        key: &'static str,
        value: u8,
        why: &'static str,
    },
    NftAddTable,
    NftAddChain {
        chain: Chain,
    },
    NftAddRule {
        chain: Chain,
        rule: String,
        why: &'static str,
    },
    /// Deletes the rules `select` picks, by the handles they have when
    /// the step runs; `handles` are those seen when the plan was made.
    NftDeleteRules {
        select: Select,
        handles: Vec<(Chain, u32)>,
    },
    /// The table goes when it holds no rule.
    NftDeleteTableIfEmpty,
    /// A chain of the table goes when it holds no rule while others do
    /// (a published port's chains, with NAT still on).
    NftDeleteChainIfEmpty {
        chain: Chain,
    },
}

/// Which of the table's rules a step deletes, by their comments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Select {
    /// Everything of a bridge's.
    Bridge(String),
    /// Its outbound NAT.
    Nat(String),
    /// Its loopback guard.
    Localnet(String),
    /// One published port.
    Published {
        bridge: String,
        host_port: u16,
        proto: Proto,
    },
    /// The ports published to one address.
    To { bridge: String, addr: Ipv4Addr },
}

impl Select {
    pub fn matches(&self, rule: &Rule) -> bool {
        let published = rule.published();
        match self {
            Select::Bridge(b) => rule.bridge() == b,
            Select::Nat(b) => rule.bridge() == b && rule.is_nat(),
            Select::Localnet(b) => rule.bridge() == b && rule.is_localnet(),
            Select::Published {
                bridge,
                host_port,
                proto,
            } => published.is_some_and(|p| {
                p.bridge == *bridge && p.host_port == *host_port && p.proto == *proto
            }),
            Select::To { bridge, addr } => {
                published.is_some_and(|p| p.bridge == *bridge && p.to == *addr)
            }
        }
    }
}

impl Op {
    /// The `ip` command (or file call) a learner would type for this step.
    fn by_hand(&self) -> String {
        let addr = |a: &Address, prefix: &u8| match a {
            Address::Fixed(ip) => format!("{ip}/{prefix}"),
            Address::Leased => format!("ADDR/{prefix}"),
        };
        match self {
            Op::AddBridge { name } => format!("ip link add {name} type bridge"),
            Op::AddAddress {
                link,
                address,
                prefix,
                netns,
            } => {
                let args = format!("addr add {} dev {link}", addr(address, prefix));
                netns.as_ref().map_or(format!("ip {args}"), |n| n.ip(&args))
            }
            Op::SetUp { link, netns } => {
                let args = format!("link set {link} up");
                netns.as_ref().map_or(format!("ip {args}"), |n| n.ip(&args))
            }
            Op::LoopbackUp { netns, .. } => netns.ip("link set lo up"),
            Op::LoopbackDown { netns } => netns.ip("link set lo down"),
            Op::MakeLeases { dir } => format!("mkdir -p {}", dir.display()),
            Op::TakeLease { dir, .. } => format!("set -C; echo HOLDER > {}/ADDR", dir.display()),
            Op::AddVeth { host, peer, netns } => {
                let ns = netns
                    .path
                    .strip_prefix("/run/netns")
                    .map(|n| n.display().to_string())
                    .unwrap_or_else(|_| netns.path.display().to_string());
                format!("ip link add {host} type veth peer name {peer} netns {ns}")
            }
            Op::SetMaster { link, bridge } => format!("ip link set {link} master {bridge}"),
            Op::SetHairpin { link } => format!("bridge link set dev {link} hairpin on"),
            Op::AddDefaultRoute { gateway, netns } => {
                netns.ip(&format!("route add default via {gateway}"))
            }
            Op::DeleteLink { name, .. } => format!("ip link del {name}"),
            Op::ReleaseLease { dir, .. } => format!("rm {}/ADDR", dir.display()),
            Op::RemoveLeases { dir } => format!("rmdir {}", dir.display()),
            Op::EnableForwarding => "sysctl -w net.ipv4.ip_forward=1".into(),
            Op::RestoreForwarding => "sysctl -w net.ipv4.ip_forward=0".into(),
            Op::Sysctl {
                link, key, value, ..
            } => format!("sysctl -w net.ipv4.conf.{link}.{key}={value}"),
            Op::NftAddTable => format!("nft {}", self.nft_command().expect("an nft step")),
            Op::NftAddChain { .. } | Op::NftAddRule { .. } => {
                format!("nft '{}'", self.nft_command().expect("an nft step"))
            }
            Op::NftDeleteRules { handles, .. } if handles.is_empty() => {
                format!("nft delete rule {} CHAIN handle N", nft::TABLE)
            }
            Op::NftDeleteRules { handles, .. } => handles
                .iter()
                .map(|(chain, handle)| {
                    format!(
                        "nft delete rule {} {} handle {handle}",
                        nft::TABLE,
                        chain.name()
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
            Op::NftDeleteTableIfEmpty => format!("nft delete table {}", nft::TABLE),
            Op::NftDeleteChainIfEmpty { chain } => {
                format!("nft delete chain {} {}", nft::TABLE, chain.name())
            }
        }
    }

    /// The request as netlink (or the file system) sees it.
    fn request(&self) -> String {
        let addr = |a: &Address, prefix: &u8| match a {
            Address::Fixed(ip) => format!("{ip}/{prefix}"),
            Address::Leased => format!("<leased>/{prefix}"),
        };
        let inside = |netns: &Option<Netns>| {
            netns
                .as_ref()
                .map_or(String::new(), |n| format!(" in {}", n.path.display()))
        };
        match self {
            Op::AddBridge { name } => format!("RTM_NEWLINK {{name {name}, kind bridge}}"),
            Op::AddAddress {
                link,
                address,
                prefix,
                netns,
            } => format!(
                "RTM_NEWADDR {{{link}, {}}}{}",
                addr(address, prefix),
                inside(netns)
            ),
            Op::SetUp { link, netns } => {
                format!("RTM_NEWLINK {{{link}, flags +IFF_UP}}{}", inside(netns))
            }
            Op::LoopbackUp { netns, .. } => {
                format!(
                    "RTM_NEWLINK {{lo, flags +IFF_UP}} in {}",
                    netns.path.display()
                )
            }
            Op::LoopbackDown { netns } => {
                format!(
                    "RTM_NEWLINK {{lo, flags -IFF_UP}} in {}",
                    netns.path.display()
                )
            }
            Op::MakeLeases { dir } => format!("mkdir(\"{}\")", dir.display()),
            Op::TakeLease { dir, wanted, .. } => format!(
                "open(\"{}/{}\", O_CREAT|O_EXCL)",
                dir.display(),
                wanted.map_or("<lowest free address>".into(), |a| a.to_string())
            ),
            Op::AddVeth { host, peer, netns } => format!(
                "RTM_NEWLINK {{name {host}, kind veth, peer {{name {peer}, netns fd of {}}}}}",
                netns.path.display()
            ),
            Op::SetMaster { link, bridge } => {
                format!("RTM_NEWLINK {{{link}, master {bridge}}}")
            }
            Op::SetHairpin { link } => {
                format!("RTM_NEWLINK {{{link}, bridge port {{hairpin on}}}}")
            }
            Op::AddDefaultRoute { gateway, netns } => format!(
                "RTM_NEWROUTE {{0.0.0.0/0 via {gateway}}} in {}",
                netns.path.display()
            ),
            Op::DeleteLink { name, .. } => format!("RTM_DELLINK {{{name}}}"),
            Op::ReleaseLease { dir, holder } => {
                format!("unlink(\"{}/<address of {holder}>\")", dir.display())
            }
            Op::RemoveLeases { dir } => format!("rmdir(\"{}\")", dir.display()),
            Op::EnableForwarding => format!("write(\"{}\", \"1\")", nft::FORWARDING),
            Op::RestoreForwarding => format!("write(\"{}\", \"0\")", nft::FORWARDING),
            Op::Sysctl {
                link, key, value, ..
            } => format!("write(\"/proc/sys/net/ipv4/conf/{link}/{key}\", \"{value}\")"),
            Op::NftAddTable
            | Op::NftAddChain { .. }
            | Op::NftAddRule { .. }
            | Op::NftDeleteRules { .. }
            | Op::NftDeleteTableIfEmpty
            | Op::NftDeleteChainIfEmpty { .. } => {
                unreachable!("nft steps are shown as the nft command")
            }
        }
    }

    /// The text after `nft` of an add step: what the step runs.
    fn nft_command(&self) -> Option<String> {
        match self {
            Op::NftAddTable => Some(format!("add table {}", nft::TABLE)),
            Op::NftAddChain { chain } => Some(format!(
                "add chain {} {} {}",
                nft::TABLE,
                chain.name(),
                chain.definition()
            )),
            Op::NftAddRule { chain, rule, .. } => {
                Some(format!("add rule {} {} {rule}", nft::TABLE, chain.name()))
            }
            _ => None,
        }
    }

    fn is_nft(&self) -> bool {
        matches!(
            self,
            Op::NftAddTable
                | Op::NftAddChain { .. }
                | Op::NftAddRule { .. }
                | Op::NftDeleteRules { .. }
                | Op::NftDeleteTableIfEmpty
                | Op::NftDeleteChainIfEmpty { .. }
        )
    }
}

impl Step for Op {
    fn call(&self) -> String {
        if self.is_nft() {
            // The step runs this very command.
            self.by_hand()
        } else {
            format!("{}  ≡  {}", self.request(), self.by_hand())
        }
    }

    fn why(&self) -> String {
        match self {
            Op::AddBridge { .. } => "a bridge is a switch in the kernel: the veths plugged into it reach each other, like docker0".into(),
            Op::AddAddress { netns: None, .. } => "the bridge's own address is the containers' gateway; it puts the subnet's route on the host".into(),
            Op::AddAddress { .. } => "the container's address, from the bridge's subnet".into(),
            Op::LoopbackUp { .. } => "a new network namespace has only lo, and it is down; when it is, the lease notes (a line lo) that connect brings it up, so that disconnect puts it down again".into(),
            Op::LoopbackDown { .. } => "connect brought lo up (its lease says so): it goes down again, as it was".into(),
            Op::SetUp { .. } => "a link carries nothing until it is up".into(),
            Op::MakeLeases { .. } => "one file per address taken: the toolkit's allocator, like CNI's host-local; made first, it marks the bridge as the toolkit's, so that bridge del can take back an add stopped at any step".into(),
            Op::TakeLease { .. } => "O_EXCL lets exactly one process make the file, so containers started at once never share an address".into(),
            Op::AddVeth { .. } => "a veth pair is a cable: the host end stays here, the other end is made directly inside the namespace as eth0, in one request".into(),
            Op::SetMaster { .. } => "plug the host end into the bridge".into(),
            Op::SetHairpin { .. } => "with br_netfilter loaded (Docker loads it), a container's connection to its own published port is DNATed inside the bridge and must go back out of the port it came in by".into(),
            Op::AddDefaultRoute { .. } => "everything not on the subnet goes to the bridge's address".into(),
            Op::DeleteLink { veth: true, .. } => "deleting one end of a veth pair deletes both".into(),
            Op::DeleteLink { .. } => "the bridge goes, and its address and the route to its subnet with it".into(),
            Op::ReleaseLease { .. } => "give the address back".into(),
            Op::RemoveLeases { .. } => "the bridge's allocator goes with it".into(),
            Op::EnableForwarding => "a host that forwards packets between its interfaces is a router; NAT and published ports need it (Docker turns it on too). veth-bridge turns it back off with its last rule".into(),
            Op::RestoreForwarding => "the toolkit turned forwarding on, and its last rule is gone".into(),
            Op::Sysctl { why, .. } => (*why).into(),
            Op::NftAddTable => "a table of the toolkit's own: its rules never mix with anyone else's, and deleting the table deletes them all".into(),
            Op::NftAddChain { chain: Chain::Prerouting } => "a chain on the prerouting hook sees every packet that arrives, before the routing decision; DNAT here changes where it goes".into(),
            Op::NftAddChain { chain: Chain::Output } => "packets the host itself sends never pass prerouting: they get a chain on the output hook".into(),
            Op::NftAddChain { chain: Chain::Postrouting } => "a chain on the postrouting hook sees every packet about to leave, after routing; masquerade changes where it seems to come from".into(),
            Op::NftAddChain { chain: Chain::Guard } => "a filter chain that runs before connection tracking and NAT".into(),
            Op::NftAddRule { why, .. } => (*why).into(),
            Op::NftDeleteRules { .. } => "rules are deleted by handle; the toolkit finds its own by their comments".into(),
            Op::NftDeleteTableIfEmpty => "the table holds no rule any more".into(),
            Op::NftDeleteChainIfEmpty { .. } => "this chain holds no rule any more; the table stays for the rules in its other chains".into(),
        }
    }

    fn chapter(&self) -> Chapter {
        match self {
            Op::EnableForwarding
            | Op::RestoreForwarding
            | Op::Sysctl { .. }
            | Op::NftAddTable
            | Op::NftAddChain { .. }
            | Op::NftAddRule { .. }
            | Op::NftDeleteRules { .. }
            | Op::NftDeleteTableIfEmpty
            | Op::NftDeleteChainIfEmpty { .. } => chapter::NAT,
            _ => chapter::NETWORK,
        }
    }
}

/// The host end's name for a namespace: `vb` and the namespace's inode
/// number in hex. A name found from the namespace alone lets `disconnect`
/// work with no state besides the kernel's.
pub fn host_end(netns: &Path) -> Result<String, Error> {
    let inode = std::fs::metadata(netns)
        .map_err(|e| {
            Error::usage(format!(
                "{}: {}; {NETNS_HINT}",
                netns.display(),
                steps::error::describe_io(&e)
            ))
        })?
        .ino();
    Ok(format!("vb{inode:x}"))
}

/// `bridge add NAME --subnet CIDR`.
pub fn bridge_add(name: &str, subnet: &Subnet, nl: &Netlink) -> Result<Plan<Op>, Error> {
    crate::cli::interface_name("bridge", name)?;
    if nl.link_index(name)?.is_some() {
        return Err(Error::usage(format!(
            "a link named {name} exists already; choose another name (ip link show {name})"
        )));
    }
    // Two interfaces with overlapping subnets leave the host two routes
    // to the same addresses; Docker refuses such a network too ("Pool
    // overlaps with other one on this address space").
    for link in nl.links()? {
        for (addr, prefix) in nl.addresses(link.index)? {
            if subnet.overlaps(&Subnet::containing(addr, prefix)) {
                return Err(Error::usage(format!(
                    "--subnet {subnet} overlaps {addr}/{prefix} on {}; choose a subnet no \
                     interface here has (ip -4 addr shows them)",
                    link.name
                )));
            }
        }
    }
    let mut plan = Plan::new();
    // The leases directory first: it is the toolkit's mark that a bridge
    // of this name is its own, so `bridge del` can take back an add
    // stopped after any step, a SIGKILL included. Made last, a bridge
    // left by a killed add would be nobody's, for all veth-bridge could
    // tell, and it deletes no link it cannot tell is its own.
    plan.push(Op::MakeLeases {
        dir: Leases::of(name).dir().to_path_buf(),
    });
    plan.push(Op::AddBridge { name: name.into() });
    plan.push(Op::AddAddress {
        link: name.into(),
        address: Address::Fixed(subnet.gateway()),
        prefix: subnet.prefix(),
        netns: None,
    });
    plan.push(Op::SetUp {
        link: name.into(),
        netns: None,
    });
    Ok(plan)
}

/// What the toolkit knows of one of its bridges.
#[derive(Debug, Clone)]
pub struct Bridge {
    pub name: String,
    pub index: u32,
    pub subnet: Subnet,
    pub leases: Leases,
}

/// A bridge the toolkit made, found in the kernel and in its state.
pub fn find_bridge(name: &str, nl: &Netlink) -> Result<Bridge, Error> {
    crate::cli::interface_name("bridge", name)?;
    let leases = Leases::of(name);
    let index = match (nl.link_index(name)?, leases.dir().is_dir()) {
        (Some(index), true) => index,
        (None, true) => {
            return Err(Error::usage(format!(
                "bridge {name} is half made (a bridge add was stopped before it made the \
                 link); take it back with veth-bridge bridge del {name}, then add it again"
            )));
        }
        (_, false) => return Err(no_bridge(name)),
    };
    let (addr, prefix) = nl.addresses(index)?.into_iter().next().ok_or_else(|| {
        Error::usage(format!(
            "bridge {name} has no IPv4 address (a bridge add was stopped before it gave it \
             one); take it back with veth-bridge bridge del {name}, then add it again"
        ))
    })?;
    Ok(Bridge {
        name: name.into(),
        index,
        subnet: Subnet::containing(addr, prefix),
        leases,
    })
}

fn no_bridge(name: &str) -> Error {
    Error::usage(format!(
        "no bridge {name} of the toolkit's; make it with veth-bridge bridge add {name}"
    ))
}

/// `bridge del NAME`: refused while namespaces are connected, as
/// `docker network rm` refuses a network with containers. It also takes
/// back a `bridge add` that was stopped after any of its steps: the
/// leases directory, made first, says the name is the toolkit's, and
/// whatever was made after it — the link, its address — goes.
pub fn bridge_del(name: &str, table: &Table, nl: &Netlink) -> Result<Plan<Op>, Error> {
    crate::cli::interface_name("bridge", name)?;
    let leases = Leases::of(name);
    let link = nl.links()?.into_iter().find(|l| l.name == name);
    if !leases.dir().is_dir() {
        return Err(match link {
            Some(_) => Error::usage(format!(
                "{name} is not a bridge of the toolkit's (there is no {}); veth-bridge \
                 removes only the bridges it made: if {name} is yours, ip link del {name}",
                leases.dir().display()
            )),
            None => no_bridge(name),
        });
    }
    let held = leases.list();
    if let Some((addr, holder)) = held.first() {
        return Err(Error::usage(format!(
            "bridge {name} still has {} connected ({holder} at {addr}{}); disconnect them first",
            steps::units::plural(held.len() as u64, "namespace", "namespaces"),
            if held.len() > 1 { ", …" } else { "" }
        )));
    }
    let mut plan = Plan::new();
    let rest = delete_rules(&mut plan, table, Select::Bridge(name.into()));
    tidy_table(&mut plan, &rest);
    // A link of another kind by that name is not the one the toolkit
    // made (its add stopped before making any): it stays.
    if link.is_some_and(|l| l.kind.as_deref() == Some("bridge")) {
        plan.push(Op::DeleteLink {
            name: name.into(),
            veth: false,
        });
    }
    plan.push(Op::RemoveLeases {
        dir: leases.dir().to_path_buf(),
    });
    Ok(plan)
}

/// `connect BRIDGE --pid P|--netns N [--ip ADDR]`.
pub fn connect(
    bridge: &Bridge,
    netns: &Netns,
    wanted: Option<Ipv4Addr>,
    nl: &Netlink,
) -> Result<Plan<Op>, Error> {
    netns.check()?;
    if let Some(addr) = wanted {
        if !bridge.subnet.is_container_address(addr) {
            return Err(crate::alloc::not_a_container_address(&bridge.subnet, addr));
        }
    }
    let host = host_end(&netns.path)?;
    if nl.link_index(&host)?.is_some() {
        let links = nl.links()?;
        let on = links
            .iter()
            .find(|l| l.name == host)
            .and_then(|l| l.master)
            .and_then(|m| links.iter().find(|b| b.index == m))
            .map_or(String::new(), |b| format!(" to {}", b.name));
        return Err(Error::usage(format!(
            "{} is connected already{on} (its host end {host} exists); a namespace \
             joins one bridge here: disconnect it first",
            netns.path.display()
        )));
    }
    let mut plan = Plan::new();
    plan.push(Op::TakeLease {
        dir: bridge.leases.dir().to_path_buf(),
        subnet: bridge.subnet,
        wanted,
        holder: host.clone(),
    });
    plan.push(Op::AddVeth {
        host: host.clone(),
        peer: "eth0".into(),
        netns: netns.clone(),
    });
    plan.push(Op::SetMaster {
        link: host.clone(),
        bridge: bridge.name.clone(),
    });
    plan.push(Op::SetHairpin { link: host.clone() });
    plan.push(Op::SetUp {
        link: host.clone(),
        netns: None,
    });
    plan.push(Op::LoopbackUp {
        netns: netns.clone(),
        dir: bridge.leases.dir().to_path_buf(),
        holder: host.clone(),
    });
    plan.push(Op::AddAddress {
        link: "eth0".into(),
        address: wanted.map_or(Address::Leased, Address::Fixed),
        prefix: bridge.subnet.prefix(),
        netns: Some(netns.clone()),
    });
    plan.push(Op::SetUp {
        link: "eth0".into(),
        netns: Some(netns.clone()),
    });
    plan.push(Op::AddDefaultRoute {
        gateway: bridge.subnet.gateway(),
        netns: netns.clone(),
    });
    Ok(plan)
}

/// `disconnect BRIDGE --pid P|--netns N`.
pub fn disconnect(
    bridge: &Bridge,
    netns: &Netns,
    table: &Table,
    nl: &Netlink,
) -> Result<Plan<Op>, Error> {
    netns.check()?;
    let host = host_end(&netns.path)?;
    let plan = disconnect_plan(bridge, &host, Some(netns), table, nl)?;
    if plan.is_empty() {
        return Err(Error::usage(format!(
            "{} is not connected to {} (no link {host}); see veth-bridge show",
            netns.path.display(),
            bridge.name
        )));
    }
    Ok(plan)
}

/// Disconnects the veth pair whose host end is `host`, by that name alone:
/// for a namespace that is gone (its container ended, and the kernel took
/// the pair with it), the lease and the published ports remain to undo.
/// Empty when there is nothing of `host`'s.
pub fn disconnect_end(
    bridge: &Bridge,
    host: &str,
    table: &Table,
    nl: &Netlink,
) -> Result<Plan<Op>, Error> {
    disconnect_plan(bridge, host, None, table, nl)
}

/// [`disconnect_end`], and with the namespace at hand, its `lo` put down
/// again if connect brought it up.
fn disconnect_plan(
    bridge: &Bridge,
    host: &str,
    netns: Option<&Netns>,
    table: &Table,
    nl: &Netlink,
) -> Result<Plan<Op>, Error> {
    let host = host.to_string();
    let linked = nl.link_index(&host)?.is_some();
    let leased = bridge.leases.find(&host);
    let mut plan = Plan::new();
    if !linked && leased.is_none() {
        return Ok(plan);
    }
    if let Some(addr) = leased {
        // As docker stop takes a container's published ports with it.
        let rest = delete_rules(
            &mut plan,
            table,
            Select::To {
                bridge: bridge.name.clone(),
                addr,
            },
        );
        let rest = unguard_if_unpublished(&mut plan, bridge, &rest);
        tidy_table(&mut plan, &rest);
    }
    // Before the lease goes, which holds the note.
    if let Some(netns) = netns {
        if bridge.leases.loopback_noted(&host) {
            plan.push(Op::LoopbackDown {
                netns: netns.clone(),
            });
        }
    }
    if linked {
        plan.push(Op::DeleteLink {
            name: host.clone(),
            veth: true,
        });
    }
    plan.push(Op::ReleaseLease {
        dir: bridge.leases.dir().to_path_buf(),
        holder: host,
    });
    Ok(plan)
}

/// Pushes the deletion of the rules `select` picks, if there are any,
/// and returns the table as it will be after it.
fn delete_rules(plan: &mut Plan<Op>, table: &Table, select: Select) -> Table {
    let (gone, kept): (Vec<&Rule>, Vec<&Rule>) =
        table.rules.iter().partition(|r| select.matches(r));
    if !gone.is_empty() {
        plan.push(Op::NftDeleteRules {
            select,
            handles: gone.iter().map(|r| (r.chain, r.handle)).collect(),
        });
    }
    Table {
        rules: kept.into_iter().cloned().collect(),
        ..table.clone()
    }
}

/// With the last rule gone, the table goes, and forwarding goes back off
/// if the toolkit turned it on. Also with no table: a run killed before
/// it made its table (or its first rule) leaves forwarding on.
fn tidy_table(plan: &mut Plan<Op>, after: &Table) {
    if !after.rules.is_empty() {
        // The chains left empty go: the table is as if what emptied them
        // had never been made.
        for chain in &after.chains {
            if !after.rules.iter().any(|r| r.chain == *chain) {
                plan.push(Op::NftDeleteChainIfEmpty { chain: *chain });
            }
        }
        return;
    }
    if after.exists {
        plan.push(Op::NftDeleteTableIfEmpty);
    }
    if nft::forwarding_mark().exists() {
        plan.push(Op::RestoreForwarding);
    }
}

/// With no port published on it any more, a bridge needs neither
/// route_localnet nor the guard that goes with it.
fn unguard_if_unpublished(plan: &mut Plan<Op>, bridge: &Bridge, after: &Table) -> Table {
    // route_localnet on without the guard: a publish killed between them.
    let localnet = format!("/proc/sys/net/ipv4/conf/{}/route_localnet", bridge.name);
    let routed = std::fs::read_to_string(localnet).is_ok_and(|v| v.trim() == "1");
    if after.published().iter().any(|p| p.bridge == bridge.name)
        || !(after.guarded(&bridge.name) || routed)
    {
        return after.clone();
    }
    plan.push(Op::Sysctl {
        link: bridge.name.clone(),
        key: "route_localnet",
        value: 0,
        why: "no port is published on the bridge any more, so nothing needs 127.0.0.1 routed to it",
    });
    delete_rules(plan, after, Select::Localnet(bridge.name.clone()))
}

/// Forwarding, the table and the chains a new rule needs, where missing.
fn prepare_table(plan: &mut Plan<Op>, table: &Table, chains: &[Chain]) {
    if !nft::forwarding() {
        plan.push(Op::EnableForwarding);
    }
    if !table.exists {
        plan.push(Op::NftAddTable);
    }
    for chain in chains {
        if !table.chains.contains(chain) {
            plan.push(Op::NftAddChain { chain: *chain });
        }
    }
}

/// `nat BRIDGE on`: masquerade what the bridge's containers send
/// elsewhere, as Docker's `-s 172.17.0.0/16 ! -o docker0 -j MASQUERADE`.
/// `None` when it is on already.
pub fn nat_on(bridge: &Bridge, table: &Table) -> Option<Plan<Op>> {
    if table.nat_on(&bridge.name) {
        return None;
    }
    let mut plan = Plan::new();
    prepare_table(&mut plan, table, &[Chain::Postrouting]);
    plan.push(Op::NftAddRule {
        chain: Chain::Postrouting,
        rule: nft::nat_rule(&bridge.name, &bridge.subnet),
        why: "masquerade: a packet from the subnet leaving by any other interface gets that interface's address as its source, and conntrack turns the replies back",
    });
    Some(plan)
}

/// `nat BRIDGE off`. `None` when it is off already, and no `nat on`
/// that was killed half-way left a table without rules or forwarding on.
pub fn nat_off(bridge: &Bridge, table: &Table) -> Option<Plan<Op>> {
    let mut plan = Plan::new();
    let rest = delete_rules(&mut plan, table, Select::Nat(bridge.name.clone()));
    tidy_table(&mut plan, &rest);
    (!plan.is_empty()).then_some(plan)
}

/// `publish BRIDGE HOSTPORT:CTRPORT --to ADDR`.
pub fn publish(bridge: &Bridge, port: &Published, table: &Table) -> Result<Plan<Op>, Error> {
    if !bridge.subnet.contains(port.to) {
        return Err(Error::usage(format!(
            "--to {} is not in {}'s subnet {}; give a connected namespace's address (veth-bridge show)",
            port.to, bridge.name, bridge.subnet
        )));
    }
    if !bridge.leases.list().iter().any(|(a, _)| *a == port.to) {
        return Err(Error::usage(format!(
            "no namespace is connected to {} at {}; connect one first (veth-bridge connect {} --netns …)",
            bridge.name, port.to, bridge.name
        )));
    }
    if let Some(taken) = table
        .published()
        .into_iter()
        .find(|p| p.host_port == port.host_port && p.proto == port.proto)
    {
        return Err(Error::usage(format!(
            "port {}/{} is published already, to {}:{} on {}; unpublish it first (veth-bridge unpublish {} {}/{})",
            taken.host_port,
            taken.proto,
            taken.to,
            taken.port,
            taken.bridge,
            taken.bridge,
            taken.host_port,
            taken.proto
        )));
    }
    let mut plan = Plan::new();
    prepare_table(&mut plan, table, &Chain::ALL);
    if !table.guarded(&bridge.name) {
        plan.push(Op::Sysctl {
            link: bridge.name.clone(),
            key: "route_localnet",
            value: 1,
            why: "a connection to 127.0.0.1:PORT is DNATed to the bridge; the kernel drops packets from 127.0.0.0/8 on any other interface unless route_localnet is on",
        });
        plan.push(Op::NftAddRule {
            chain: Chain::Guard,
            rule: nft::localnet_rule(&bridge.name),
            why: "route_localnet alone would also let a container send to the host's 127.0.0.1 services (CVE-2020-8558): drop what arrives on the bridge for 127.0.0.0/8",
        });
    }
    let [prerouting, output, postrouting] = port.rules(&bridge.subnet);
    plan.push(Op::NftAddRule {
        chain: prerouting.0,
        rule: prerouting.1,
        why: "DNAT in prerouting: a connection arriving for any of the host's addresses on the port goes to the container instead, from other hosts and from containers",
    });
    plan.push(Op::NftAddRule {
        chain: output.0,
        rule: output.1,
        why: "the same DNAT in output, for connections the host itself makes (127.0.0.1 too); DNAT in prerouting alone is the classic bug",
    });
    plan.push(Op::NftAddRule {
        chain: postrouting.0,
        rule: postrouting.1,
        why: "hairpin: a client on the bridge or on 127.0.0.1 would get the container's reply straight, not through the DNAT, and drop it; masquerading makes the reply come back through the host",
    });
    Ok(plan)
}

/// `unpublish BRIDGE HOSTPORT[/PROTO]`.
pub fn unpublish(
    bridge: &Bridge,
    host_port: u16,
    proto: Proto,
    table: &Table,
) -> Result<Plan<Op>, Error> {
    let select = Select::Published {
        bridge: bridge.name.clone(),
        host_port,
        proto,
    };
    let mut plan = Plan::new();
    let rest = delete_rules(&mut plan, table, select);
    let rest = unguard_if_unpublished(&mut plan, bridge, &rest);
    tidy_table(&mut plan, &rest);
    // With none of the port's rules, the plan still takes back what a
    // publish killed before its first rule left: the guard,
    // route_localnet, the table, forwarding.
    if plan.is_empty() {
        return Err(Error::usage(format!(
            "port {host_port}/{proto} is not published on {}; see veth-bridge show",
            bridge.name
        )));
    }
    Ok(plan)
}

/// What a failed plan must take back.
#[derive(Debug, Default)]
struct Undo {
    links: Vec<String>,
    /// Links inside a namespace that were down (its lo), to put down again.
    brought_up: Vec<(Netns, u32)>,
    lease: Option<(PathBuf, Ipv4Addr)>,
    leases_dir: Option<PathBuf>,
    /// The comments of the rules added.
    rules: Vec<String>,
    /// The chains added to a table that was there already.
    chains: Vec<Chain>,
    table: bool,
    forwarding: bool,
    sysctls: Vec<(PathBuf, String)>,
}

/// Makes a plan's requests; when one fails, deletes the links it made
/// and gives back the address it took. Signals are the caller's business
/// (mini-run runs these plans with its own).
pub fn execute(plan: &Plan<Op>, narrator: &Narrator) -> Result<(), Error> {
    execute_until(plan, narrator, None)
}

/// [`execute`], for the veth-bridge command: a SIGINT, SIGTERM or SIGHUP
/// that arrives while a step runs (held back by `held`, blocked since
/// [`Supervision::start`]) stops the run after that step, and what it
/// made is taken back as for a failure: a Ctrl-C never leaves half a
/// bridge or half a connection.
pub fn execute_or_stop(
    plan: &Plan<Op>,
    narrator: &Narrator,
    held: &Supervision,
) -> Result<(), Error> {
    execute_until(plan, narrator, Some(held))
}

/// What comes between step `number` (from 1) and the next: a fault a
/// test asked for (see [`steps::fault`]), or a signal that stops the run.
fn after_step(number: usize, held: Option<&Supervision>) -> Result<(), Error> {
    match steps::fault::between("veth-bridge", number, held)? {
        None => Ok(()),
        Some(signal) => Err(Error::with_code(
            format!(
                "stopped by {} after step {number}; what it had made is taken back",
                signal.as_str()
            ),
            128u8.wrapping_add(signal as u8),
        )),
    }
}

fn execute_until(
    plan: &Plan<Op>,
    narrator: &Narrator,
    held: Option<&Supervision>,
) -> Result<(), Error> {
    let host = Netlink::open()?;
    let mut number = 0;
    let mut inside: Option<(PathBuf, Netlink)> = None;
    let mut leased: Option<Ipv4Addr> = None;
    let mut undo = Undo::default();
    // Held from the first nft step to the end, undo included.
    let mut lock: Option<steps::lock::DirLock> = None;
    let result = plan.execute(narrator, |op| {
        number += 1;
        // Forwarding too: it goes off only while the table holds no rule.
        let shared = op.is_nft() || matches!(op, Op::EnableForwarding | Op::RestoreForwarding);
        if shared && lock.is_none() {
            lock = Some(nft::lock()?);
        }
        match op {
            Op::AddBridge { name } => {
                host.add_bridge(name)?;
                undo.links.push(name.clone());
            }
            Op::AddAddress {
                link,
                address,
                prefix,
                netns,
            } => {
                let addr = match address {
                    Address::Fixed(a) => *a,
                    Address::Leased => leased.expect("the lease step comes first"),
                };
                let nl = match netns {
                    Some(n) => netlink_in(&mut inside, n)?,
                    None => &host,
                };
                let index = must_exist(nl, link)?;
                nl.add_address(index, addr, *prefix)?;
            }
            Op::SetUp { link, netns } => {
                let nl = match netns {
                    Some(n) => netlink_in(&mut inside, n)?,
                    None => &host,
                };
                let index = must_exist(nl, link)?;
                nl.set_up(index)?;
            }
            Op::LoopbackUp { netns, dir, holder } => {
                let nl = netlink_in(&mut inside, netns)?;
                let index = must_exist(nl, "lo")?;
                if nl.links()?.iter().any(|l| l.index == index && !l.up) {
                    // The note first: killed between the two,
                    // disconnect puts down a lo that is down already.
                    Leases::at(dir.clone()).note_loopback(holder)?;
                    nl.set_up(index)?;
                    undo.brought_up.push((netns.clone(), index));
                }
            }
            Op::LoopbackDown { netns } => {
                let nl = netlink_in(&mut inside, netns)?;
                if let Some(index) = nl.link_index("lo")? {
                    nl.set_down(index)?;
                }
            }
            Op::MakeLeases { dir } => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::setup(format!("mkdir -p {}: {e}", dir.display())))?;
                undo.leases_dir = Some(dir.clone());
            }
            Op::TakeLease {
                dir,
                subnet,
                wanted,
                holder,
            } => {
                let addr = Leases::at(dir.clone()).take(subnet, *wanted, holder)?;
                leased = Some(addr);
                undo.lease = Some((dir.clone(), addr));
                narrator.note(&format!("leased {addr} to {holder}"));
            }
            Op::AddVeth {
                host: name,
                peer,
                netns,
            } => {
                let file = netns.open()?;
                host.add_veth_into(name, peer, &file)?;
                undo.links.push(name.clone());
            }
            Op::SetMaster { link, bridge } => {
                let index = must_exist(&host, link)?;
                let master = must_exist(&host, bridge)?;
                host.set_master(index, master)?;
            }
            Op::SetHairpin { link } => {
                let index = must_exist(&host, link)?;
                host.set_hairpin(index)?;
            }
            Op::AddDefaultRoute { gateway, netns } => {
                netlink_in(&mut inside, netns)?.add_default_route(*gateway)?;
            }
            Op::DeleteLink { name, .. } => {
                if let Some(index) = host.link_index(name)? {
                    // A veth whose namespace is going may vanish between
                    // the two requests: gone is what was asked for.
                    if let Err(e) = host.delete_link(index) {
                        if host.link_index(name)?.is_some() {
                            return Err(e);
                        }
                    }
                }
            }
            Op::ReleaseLease { dir, holder } => {
                let leases = Leases::at(dir.clone());
                if let Some(addr) = leases.find(holder) {
                    leases.release(addr)?;
                }
            }
            Op::RemoveLeases { dir } => {
                for (addr, _) in Leases::at(dir.clone()).list() {
                    Leases::at(dir.clone()).release(addr)?;
                }
                Leases::at(dir.clone()).tidy();
            }
            Op::EnableForwarding => {
                if !nft::forwarding() {
                    // The mark first: killed between the two, the toolkit
                    // still knows that forwarding is its to turn off.
                    let mark = nft::forwarding_mark();
                    std::fs::write(&mark, "")
                        .map_err(|e| Error::io(format!("write(\"{}\")", mark.display()), &e))?;
                    undo.forwarding = true;
                    write_sysctl(Path::new(nft::FORWARDING), "1")?;
                }
            }
            Op::RestoreForwarding => {
                let mark = nft::forwarding_mark();
                if mark.exists() && nft::list()?.rules.is_empty() {
                    write_sysctl(Path::new(nft::FORWARDING), "0")?;
                    let _ = std::fs::remove_file(mark);
                }
            }
            Op::Sysctl {
                link, key, value, ..
            } => {
                let path = PathBuf::from(format!("/proc/sys/net/ipv4/conf/{link}/{key}"));
                let before = std::fs::read_to_string(&path).unwrap_or_default();
                write_sysctl(&path, &value.to_string())?;
                undo.sysctls.push((path, before.trim().to_string()));
            }
            Op::NftAddTable => {
                let existed = nft::list()?.exists;
                nft::run(&op.nft_command().expect("an nft step"))?;
                undo.table = !existed;
            }
            Op::NftAddChain { chain } => {
                nft::run(&op.nft_command().expect("an nft step"))?;
                undo.chains.push(*chain);
            }
            Op::NftAddRule { rule, .. } => {
                nft::run(&op.nft_command().expect("an nft step"))?;
                undo.rules.push(comment_of(rule));
            }
            Op::NftDeleteRules { select, .. } => nft::delete_rules(|r| select.matches(r))?,
            Op::NftDeleteTableIfEmpty => {
                let table = nft::list()?;
                if table.exists && table.rules.is_empty() {
                    nft::run(&format!("delete table {}", nft::TABLE))?;
                } else if table.exists {
                    narrator.note("the table still holds rules of another bridge's; it stays");
                }
            }
            Op::NftDeleteChainIfEmpty { chain } => {
                let table = nft::list()?;
                if table.chains.contains(chain) && !table.rules.iter().any(|r| r.chain == *chain) {
                    nft::run(&format!("delete chain {} {}", nft::TABLE, chain.name()))?;
                } else if table.chains.contains(chain) {
                    narrator.note("the chain holds a rule again, of another bridge's; it stays");
                }
            }
        }
        after_step(number, held)?;
        Ok(ControlFlow::<()>::Continue(()))
    });
    if result.is_err() {
        for name in undo.links.iter().rev() {
            if let Ok(Some(index)) = host.link_index(name) {
                let _ = host.delete_link(index);
            }
        }
        for (netns, index) in &undo.brought_up {
            if let Ok(nl) = netlink_in(&mut inside, netns) {
                let _ = nl.set_down(*index);
            }
        }
        if let Some((dir, addr)) = undo.lease.clone() {
            let _ = Leases::at(dir).release(addr);
        }
        if let Some(dir) = undo.leases_dir.clone() {
            Leases::at(dir).tidy();
        }
        undo_nft(&undo);
    }
    drop(lock);
    result.map(drop)
}

/// Takes back the rules, table and settings a failed plan added.
fn undo_nft(undo: &Undo) {
    if !undo.rules.is_empty() {
        let _ = nft::delete_rules(|r| undo.rules.contains(&r.comment));
    }
    match nft::list() {
        Ok(t) if undo.table && t.exists && t.rules.is_empty() => {
            let _ = nft::run(&format!("delete table {}", nft::TABLE));
        }
        Ok(t) => {
            for chain in &undo.chains {
                if !t.rules.iter().any(|r| r.chain == *chain) {
                    let _ = nft::run(&format!("delete chain {} {}", nft::TABLE, chain.name()));
                }
            }
        }
        Err(_) => {}
    }
    for (path, before) in undo.sysctls.iter().rev() {
        let _ = std::fs::write(path, before);
    }
    if undo.forwarding {
        let _ = std::fs::write(nft::FORWARDING, "0");
        let _ = std::fs::remove_file(nft::forwarding_mark());
    }
}

/// The comment an added rule carries, which names it for undo.
fn comment_of(rule: &str) -> String {
    rule.rsplit_once(" comment \"")
        .map(|(_, c)| c.trim_end_matches('"').to_string())
        .unwrap_or_default()
}

fn write_sysctl(path: &Path, value: &str) -> Result<(), Error> {
    std::fs::write(path, value)
        .map_err(|e| Error::io(format!("write(\"{}\", \"{value}\")", path.display()), &e))
}

/// A netlink connection inside `netns`, opened once and reused.
fn netlink_in<'a>(
    inside: &'a mut Option<(PathBuf, Netlink)>,
    netns: &Netns,
) -> Result<&'a Netlink, Error> {
    if inside.as_ref().is_none_or(|(p, _)| *p != netns.path) {
        let file = netns.open()?;
        *inside = Some((netns.path.clone(), Netlink::open_in(&file)?));
    }
    Ok(&inside.as_ref().expect("opened above").1)
}

fn must_exist(nl: &Netlink, name: &str) -> Result<u32, Error> {
    nl.link_index(name)?.ok_or_else(|| {
        Error::setup(format!(
            "no link {name}; it went away while veth-bridge ran"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bridge whose leases live in a temporary directory, with one
    /// namespace connected at .2.
    fn bridge(dir: &Path) -> Bridge {
        let subnet = Subnet::parse("10.208.0.0/24").unwrap();
        let leases = Leases::at(dir.join("ub0"));
        std::fs::create_dir_all(leases.dir()).unwrap();
        leases.take(&subnet, None, "vb1").unwrap();
        Bridge {
            name: "ub0".into(),
            index: 7,
            subnet,
            leases,
        }
    }

    fn port(host_port: u16, to: [u8; 4]) -> Published {
        Published {
            bridge: "ub0".into(),
            host_port,
            proto: Proto::Tcp,
            to: to.into(),
            port: 80,
        }
    }

    /// The table after `plan`'s nft adds, as the kernel would list it.
    fn table_after(plan: &Plan<Op>) -> Table {
        let mut table = Table::default();
        for (handle, op) in plan.steps().iter().enumerate() {
            match op {
                Op::NftAddTable => table.exists = true,
                Op::NftAddChain { chain } => table.chains.push(*chain),
                Op::NftAddRule { chain, rule, .. } => table.rules.push(Rule {
                    chain: *chain,
                    handle: handle as u32,
                    comment: comment_of(rule),
                }),
                _ => {}
            }
        }
        table
    }

    fn nft_steps(plan: &Plan<Op>) -> Vec<String> {
        plan.steps()
            .iter()
            .filter(|op| op.is_nft())
            .map(Op::by_hand)
            .collect()
    }

    #[test]
    fn the_first_published_port_makes_the_table_the_guard_and_three_rules() {
        let dir = tempfile::tempdir().unwrap();
        let bridge = bridge(dir.path());
        let plan = publish(&bridge, &port(8080, [10, 208, 0, 2]), &Table::default()).unwrap();
        let steps = nft_steps(&plan);
        assert_eq!(steps[0], "nft add table ip underhood");
        assert_eq!(steps.iter().filter(|s| s.contains("add chain")).count(), 4);
        assert_eq!(
            steps
                .iter()
                .filter(|s| s.contains("dnat to 10.208.0.2:80"))
                .count(),
            2
        );
        assert!(
            steps
                .iter()
                .any(|s| s.contains("ct status dnat masquerade"))
        );
        assert!(
            steps
                .iter()
                .any(|s| s.contains("ip daddr 127.0.0.0/8 drop"))
        );
        assert!(
            plan.steps()
                .iter()
                .any(|op| matches!(op, Op::Sysctl { value: 1, .. }))
        );

        // A second port adds its three rules and nothing else.
        let table = table_after(&plan);
        let second = publish(&bridge, &port(8443, [10, 208, 0, 2]), &table).unwrap();
        assert_eq!(nft_steps(&second).len(), 3);
    }

    #[test]
    fn a_port_is_published_once_and_only_to_a_connected_address() {
        let dir = tempfile::tempdir().unwrap();
        let bridge = bridge(dir.path());
        let table = table_after(
            &publish(&bridge, &port(8080, [10, 208, 0, 2]), &Table::default()).unwrap(),
        );
        let twice = publish(&bridge, &port(8080, [10, 208, 0, 2]), &table).unwrap_err();
        assert!(twice.to_string().contains("published already"), "{twice}");
        for to in [[10, 208, 0, 9], [10, 9, 0, 2]] {
            let err = publish(&bridge, &port(9000, to), &Table::default()).unwrap_err();
            assert_eq!(err.code(), 2);
        }
    }

    #[test]
    fn the_last_port_takes_the_guard_and_the_table_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let bridge = bridge(dir.path());
        let one = publish(&bridge, &port(8080, [10, 208, 0, 2]), &Table::default()).unwrap();
        let table = table_after(&one);
        let plan = unpublish(&bridge, 8080, Proto::Tcp, &table).unwrap();
        let ops = plan.steps();
        assert!(matches!(&ops[0], Op::NftDeleteRules { handles, .. } if handles.len() == 3));
        assert!(matches!(&ops[1], Op::Sysctl { value: 0, .. }));
        assert!(matches!(
            &ops[2],
            Op::NftDeleteRules {
                select: Select::Localnet(_),
                ..
            }
        ));
        assert!(matches!(&ops[3], Op::NftDeleteTableIfEmpty));

        // With NAT on too, the table stays.
        let nat = nat_on(&bridge, &table).unwrap();
        let mut both = table.clone();
        both.rules
            .extend(table_after(&nat).rules.into_iter().map(|r| Rule {
                handle: r.handle + 100,
                ..r
            }));
        let plan = unpublish(&bridge, 8080, Proto::Tcp, &both).unwrap();
        assert!(
            !plan
                .steps()
                .iter()
                .any(|op| matches!(op, Op::NftDeleteTableIfEmpty))
        );
        assert!(nat_on(&bridge, &both).is_none(), "NAT is on already");
        assert!(unpublish(&bridge, 9999, Proto::Tcp, &both).is_err());
    }

    #[test]
    fn rules_are_picked_by_the_bridge_and_address_in_their_comments() {
        let rule = |comment: &str| Rule {
            chain: Chain::Postrouting,
            handle: 1,
            comment: comment.into(),
        };
        let to = Select::To {
            bridge: "ub0".into(),
            addr: Ipv4Addr::new(10, 208, 0, 2),
        };
        assert!(to.matches(&rule("ub0 8080/tcp 10.208.0.2:80")));
        assert!(!to.matches(&rule("ub0 8080/tcp 10.208.0.3:80")));
        assert!(!to.matches(&rule("ub1 8080/tcp 10.208.0.2:80")));
        assert!(!to.matches(&rule("ub0 nat")));
        assert!(Select::Bridge("ub0".into()).matches(&rule("ub0 nat")));
        assert!(!Select::Bridge("ub0".into()).matches(&rule("ub01 nat")));
        assert!(Select::Nat("ub0".into()).matches(&rule("ub0 nat")));
        assert!(!Select::Nat("ub0".into()).matches(&rule("ub0 localnet")));
    }
}
