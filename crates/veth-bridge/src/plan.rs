//! What `bridge add|del`, `connect` and `disconnect` do, as plans of
//! netlink requests, each shown beside the `ip` command a learner would
//! type for the same effect; and the executor that makes them and, when
//! one fails, takes back what the others made.

use std::fs::File;
use std::net::Ipv4Addr;
use std::ops::ControlFlow;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use steps::{Chapter, Error, Narrator, Plan, Step, chapter};

use crate::alloc::{Leases, Subnet};
use crate::netlink::Netlink;

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
                "{}: {}; give a running process's --pid, or a namespace file (ip netns list)",
                self.path.display(),
                steps::error::describe_io(&e)
            ))
        })
    }
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
    AddDefaultRoute {
        gateway: Ipv4Addr,
        netns: Netns,
    },
    DeleteLink {
        name: String,
    },
    ReleaseLease {
        dir: PathBuf,
        holder: String,
    },
    RemoveLeases {
        dir: PathBuf,
    },
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
            Op::AddDefaultRoute { gateway, netns } => {
                netns.ip(&format!("route add default via {gateway}"))
            }
            Op::DeleteLink { name } => format!("ip link del {name}"),
            Op::ReleaseLease { dir, .. } => format!("rm {}/ADDR", dir.display()),
            Op::RemoveLeases { dir } => format!("rmdir {}", dir.display()),
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
            Op::AddDefaultRoute { gateway, netns } => format!(
                "RTM_NEWROUTE {{0.0.0.0/0 via {gateway}}} in {}",
                netns.path.display()
            ),
            Op::DeleteLink { name } => format!("RTM_DELLINK {{{name}}}"),
            Op::ReleaseLease { dir, holder } => {
                format!("unlink(\"{}/<address of {holder}>\")", dir.display())
            }
            Op::RemoveLeases { dir } => format!("rmdir(\"{}\")", dir.display()),
        }
    }
}

impl Step for Op {
    fn call(&self) -> String {
        format!("{}  ≡  {}", self.request(), self.by_hand())
    }

    fn why(&self) -> String {
        match self {
            Op::AddBridge { .. } => "a bridge is a switch in the kernel: the veths plugged into it reach each other, like docker0".into(),
            Op::AddAddress { netns: None, .. } => "the bridge's own address is the containers' gateway; it puts the subnet's route on the host".into(),
            Op::AddAddress { .. } => "the container's address, from the bridge's subnet".into(),
            Op::SetUp { link, .. } if link == "lo" => "a new network namespace has only lo, and it is down".into(),
            Op::SetUp { .. } => "a link carries nothing until it is up".into(),
            Op::MakeLeases { .. } => "one file per address taken: the toolkit's allocator, like CNI's host-local".into(),
            Op::TakeLease { .. } => "O_EXCL lets exactly one process make the file, so containers started at once never share an address".into(),
            Op::AddVeth { .. } => "a veth pair is a cable: the host end stays here, the other end is made directly inside the namespace as eth0, in one request".into(),
            Op::SetMaster { .. } => "plug the host end into the bridge".into(),
            Op::AddDefaultRoute { .. } => "everything not on the subnet goes to the bridge's address".into(),
            Op::DeleteLink { .. } => "deleting one end of a veth pair deletes both".into(),
            Op::ReleaseLease { .. } => "give the address back".into(),
            Op::RemoveLeases { .. } => "the bridge's allocator goes with it".into(),
        }
    }

    fn chapter(&self) -> Chapter {
        chapter::NET
    }
}

/// The host end's name for a namespace: `vb` and the namespace's inode
/// number in hex. A name found from the namespace alone lets `disconnect`
/// work with no state besides the kernel's.
pub fn host_end(netns: &Path) -> Result<String, Error> {
    let inode = std::fs::metadata(netns)
        .map_err(|e| {
            Error::usage(format!(
                "{}: {e}; give a running process's --pid, or a namespace file",
                netns.display()
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
    let mut plan = Plan::new();
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
    plan.push(Op::MakeLeases {
        dir: Leases::of(name).dir().to_path_buf(),
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
    let index = nl.link_index(name)?;
    let (Some(index), true) = (index, leases.dir().is_dir()) else {
        return Err(Error::usage(format!(
            "no bridge {name} of the toolkit's; make it with veth-bridge bridge add {name}"
        )));
    };
    let (addr, prefix) = nl.addresses(index)?.into_iter().next().ok_or_else(|| {
        Error::setup(format!(
            "bridge {name} has no IPv4 address; remove it and add it again"
        ))
    })?;
    Ok(Bridge {
        name: name.into(),
        index,
        subnet: Subnet::containing(addr, prefix),
        leases,
    })
}

/// `bridge del NAME`: refused while namespaces are connected, as
/// `docker network rm` refuses a network with containers.
pub fn bridge_del(bridge: &Bridge) -> Result<Plan<Op>, Error> {
    let held = bridge.leases.list();
    if let Some((addr, holder)) = held.first() {
        return Err(Error::usage(format!(
            "bridge {} still has {} connected ({holder} at {addr}{}); disconnect them first",
            bridge.name,
            steps::units::plural(held.len() as u64, "namespace", "namespaces"),
            if held.len() > 1 { ", …" } else { "" }
        )));
    }
    let mut plan = Plan::new();
    plan.push(Op::DeleteLink {
        name: bridge.name.clone(),
    });
    plan.push(Op::RemoveLeases {
        dir: bridge.leases.dir().to_path_buf(),
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
    let host = host_end(&netns.path)?;
    if nl.link_index(&host)?.is_some() {
        return Err(Error::usage(format!(
            "{} is connected already (its host end {host} exists); disconnect it first",
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
    plan.push(Op::SetUp {
        link: host.clone(),
        netns: None,
    });
    plan.push(Op::SetUp {
        link: "lo".into(),
        netns: Some(netns.clone()),
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
pub fn disconnect(bridge: &Bridge, netns: &Netns, nl: &Netlink) -> Result<Plan<Op>, Error> {
    let host = host_end(&netns.path)?;
    let linked = nl.link_index(&host)?.is_some();
    let leased = bridge.leases.find(&host).is_some();
    if !linked && !leased {
        return Err(Error::usage(format!(
            "{} is not connected to {} (no link {host}); see veth-bridge show",
            netns.path.display(),
            bridge.name
        )));
    }
    let mut plan = Plan::new();
    if linked {
        plan.push(Op::DeleteLink { name: host.clone() });
    }
    plan.push(Op::ReleaseLease {
        dir: bridge.leases.dir().to_path_buf(),
        holder: host,
    });
    Ok(plan)
}

/// What a failed plan must take back.
#[derive(Debug, Default)]
struct Undo {
    links: Vec<String>,
    lease: Option<(PathBuf, Ipv4Addr)>,
    leases_dir: Option<PathBuf>,
}

/// Makes a plan's requests; when one fails, deletes the links it made
/// and gives back the address it took.
pub fn execute(plan: &Plan<Op>, narrator: &Narrator) -> Result<(), Error> {
    let host = Netlink::open()?;
    let mut inside: Option<(PathBuf, Netlink)> = None;
    let mut leased: Option<Ipv4Addr> = None;
    let mut undo = Undo::default();
    let result = plan.execute(narrator, |op| {
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
            Op::AddDefaultRoute { gateway, netns } => {
                netlink_in(&mut inside, netns)?.add_default_route(*gateway)?;
            }
            Op::DeleteLink { name } => {
                if let Some(index) = host.link_index(name)? {
                    host.delete_link(index)?;
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
        }
        Ok(ControlFlow::<()>::Continue(()))
    });
    if result.is_err() {
        for name in undo.links.iter().rev() {
            if let Ok(Some(index)) = host.link_index(name) {
                let _ = host.delete_link(index);
            }
        }
        if let Some((dir, addr)) = undo.lease {
            let _ = Leases::at(dir).release(addr);
        }
        if let Some(dir) = undo.leases_dir {
            Leases::at(dir).tidy();
        }
    }
    result.map(drop)
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
