//! # Netlink: how `ip link`, `ip addr` and `ip route` talk to the kernel
//!
//! Network devices, addresses and routes are not files: there is no
//! `/sys/.../create-a-bridge` to write to. Programs ask the kernel over a
//! *netlink socket*, `socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE)`: they send
//! a message such as `RTM_NEWLINK` ("make a link") whose body is a small
//! header plus nested attributes (`IFLA_IFNAME "vb0"`,
//! `IFLA_LINKINFO { IFLA_INFO_KIND "bridge" }`), and the kernel answers with
//! an acknowledgement or an error number. `ip(8)` is a thin front end to these
//! messages; so is this module, built on the `rtnetlink` crate's builders.
//! See [netlink(7)](https://man7.org/linux/man-pages/man7/netlink.7.html),
//! [rtnetlink(7)](https://man7.org/linux/man-pages/man7/rtnetlink.7.html) and
//! the kernel's [introduction to netlink](https://docs.kernel.org/userspace-api/netlink/intro.html).
//!
//! ## A socket belongs to one network namespace
//!
//! A netlink socket speaks for the network namespace it was *created* in, for
//! its whole life ([network_namespaces(7)](https://man7.org/linux/man-pages/man7/network_namespaces.7.html)).
//! So to configure a container's namespace, [`Netlink::open_in`] creates the
//! socket in a short-lived thread that first joined that namespace with
//! [setns(2)](https://man7.org/linux/man-pages/man2/setns.2.html); the thread
//! ends, the socket stays there, and the calling thread never changes
//! namespace.
//!
//! ## A veth pair straight into a container
//!
//! A [veth(4)](https://man7.org/linux/man-pages/man4/veth.4.html) pair is a
//! virtual cable: what goes in one end comes out of the other. Docker plugs
//! one end into the bridge `docker0` and the other into the container, where
//! it is renamed `eth0`. `ip` does that in several commands (create, move,
//! rename); the kernel can do it in one `RTM_NEWLINK`: the peer's own
//! attributes, nested in `IFLA_LINKINFO / IFLA_INFO_DATA / VETH_INFO_PEER`,
//! carry its name and `IFLA_NET_NS_FD`, a file descriptor of the namespace it
//! must be born in ([`Netlink::add_veth_into`]).
//!
//! Every function here is synchronous: a [`Netlink`] owns a small
//! current-thread tokio runtime that drives its one connection while a request
//! waits for its answer.

use std::fmt;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, RawFd};

use futures_util::stream::TryStreamExt;
use nix::errno::Errno;
use nix::sched::{CloneFlags, setns, unshare};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkMessage,
};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteType};
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};
use steps::Error;
use tokio::runtime::Runtime;

/// A netlink connection to the kernel's routing subsystem (`NETLINK_ROUTE`),
/// opened in one network namespace.
pub struct Netlink {
    runtime: Runtime,
    handle: Handle,
    /// Where the socket was opened, for error messages: `None` is this
    /// process's own namespace.
    netns_fd: Option<RawFd>,
}

impl fmt::Debug for Netlink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Netlink")
            .field("netns_fd", &self.netns_fd)
            .finish_non_exhaustive()
    }
}

/// A network device as `ip -d link` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// `IFLA_IFNAME`: `vb0`, `eth0`, `lo`.
    pub name: String,
    /// The interface index (`ifindex`), unique within its namespace.
    pub index: u32,
    /// `IFLA_INFO_KIND`: `bridge`, `veth`, … (`None` for `lo` and real NICs).
    pub kind: Option<String>,
    /// `IFLA_MASTER`: the bridge this link is plugged into.
    pub master: Option<u32>,
    /// `IFF_UP`: set by `ip link set DEV up`.
    pub up: bool,
    /// `IFLA_LINK_NETNSID`: the peer lives in another namespace, which this
    /// namespace knows by this id (`ip netns list-id`).
    pub peer_netns_id: Option<i32>,
    /// `IFLA_LINK`: the peer's ifindex (in its own namespace), for a veth.
    pub link: Option<u32>,
}

impl Netlink {
    /// Opens a netlink socket in this thread's network namespace.
    pub fn open() -> Result<Self, Error> {
        let runtime = runtime()?;
        let handle = connect(&runtime)?;
        Ok(Self {
            runtime,
            handle,
            netns_fd: None,
        })
    }

    /// Opens a netlink socket in the network namespace `netns` (an open
    /// `/proc/PID/ns/net` or `/run/netns/NAME`): a helper thread joins the
    /// namespace, creates the socket and ends; the socket keeps speaking
    /// for that namespace.
    pub fn open_in(netns: &File) -> Result<Self, Error> {
        let runtime = runtime()?;
        let fd = netns.as_raw_fd();
        let handle = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    setns(netns, CloneFlags::CLONE_NEWNET).map_err(|errno| {
                        let e = Error::sys(format!("setns({fd}, CLONE_NEWNET)"), errno);
                        match errno {
                            Errno::EINVAL => e.hint("the fd is not a network namespace"),
                            Errno::EPERM => e.hint("needs CAP_SYS_ADMIN: run with sudo"),
                            _ => e,
                        }
                    })?;
                    connect(&runtime)
                })
                .join()
                .unwrap_or_else(|_| Err(Error::setup("the thread opening netlink panicked")))
        })?;
        Ok(Self {
            runtime,
            handle,
            netns_fd: Some(fd),
        })
    }

    /// The ifindex of the link called `name`, if there is one (`ip link show NAME`).
    pub fn link_index(&self, name: &str) -> Result<Option<u32>, Error> {
        let request = self.get_link(name);
        let answer = self.runtime.block_on(async {
            let mut links = request.execute();
            links.try_next().await
        });
        match answer {
            Ok(link) => Ok(link.map(|link| link.header.index)),
            Err(e) if errno_of(&e) == Some(Errno::ENODEV) => Ok(None),
            Err(e) => Err(self.fail(Request::GetLink(name), e)),
        }
    }

    fn get_link(&self, name: &str) -> rtnetlink::LinkGetRequest {
        self.handle.link().get().match_name(name)
    }

    /// Creates a bridge, down (`ip link add NAME type bridge`); returns its ifindex.
    pub fn add_bridge(&self, name: &str) -> Result<u32, Error> {
        let message = LinkMessageBuilder::<LinkBridge>::new(name).build();
        self.add_link(Request::NewBridge(name), name, message)
    }

    /// Creates a veth pair in ONE request: the end `host_name` stays in this
    /// connection's namespace, the peer is born in `peer_netns` as
    /// `peer_name` (`ip link add HOST type veth peer name PEER netns FD`).
    /// Both ends start down. Returns the host end's ifindex.
    pub fn add_veth_into(
        &self,
        host_name: &str,
        peer_name: &str,
        peer_netns: &File,
    ) -> Result<u32, Error> {
        let netns_fd = peer_netns.as_raw_fd();
        // The peer is a whole link message of its own, nested in the veth's
        // IFLA_INFO_DATA as VETH_INFO_PEER; IFLA_NET_NS_FD inside it moves
        // only the peer.
        let peer = LinkUnspec::new_with_name(peer_name)
            .setns_by_fd(netns_fd)
            .build();
        let message = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(host_name)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        let request = Request::NewVeth {
            host: host_name,
            peer: peer_name,
            netns_fd,
        };
        self.add_link(request, host_name, message)
    }

    /// Sends an `RTM_NEWLINK` and looks up the new link's ifindex.
    fn add_link(&self, request: Request, name: &str, message: LinkMessage) -> Result<u32, Error> {
        let add = self.handle.link().add(message);
        self.runtime
            .block_on(add.execute())
            .map_err(|e| self.fail(request, e))?;
        self.link_index(name)?.ok_or_else(|| {
            Error::setup(format!(
                "{}: the kernel made no link {name}",
                self.text(request)
            ))
        })
    }

    /// Plugs a link into a bridge (`ip link set DEV master BRIDGE`).
    pub fn set_master(&self, index: u32, bridge: u32) -> Result<(), Error> {
        let message = LinkUnspec::new_with_index(index).controller(bridge).build();
        let set = self.handle.link().set(message);
        self.runtime
            .block_on(set.execute())
            .map_err(|e| self.fail(Request::SetMaster { index, bridge }, e))
    }

    /// Lets the bridge send a frame back out of the port it came in by
    /// (`bridge link set dev DEV hairpin on`).
    pub fn set_hairpin(&self, index: u32) -> Result<(), Error> {
        let message = rtnetlink::LinkBridgePort::new(index).hairpin(true).build();
        let set = self.handle.link().set_port(message);
        self.runtime
            .block_on(set.execute())
            .map_err(|e| self.fail(Request::SetHairpin(index), e))
    }

    /// Brings a link up (`ip link set DEV up`).
    pub fn set_up(&self, index: u32) -> Result<(), Error> {
        let message = LinkUnspec::new_with_index(index).up().build();
        let set = self.handle.link().set(message);
        self.runtime
            .block_on(set.execute())
            .map_err(|e| self.fail(Request::SetUp(index), e))
    }

    /// Takes a link down (`ip link set DEV down`).
    pub fn set_down(&self, index: u32) -> Result<(), Error> {
        let message = LinkUnspec::new_with_index(index).down().build();
        let set = self.handle.link().set(message);
        self.runtime
            .block_on(set.execute())
            .map_err(|e| self.fail(Request::SetDown(index), e))
    }

    /// Adds an IPv4 address (`ip addr add ADDR/PREFIX dev DEV`). The kernel
    /// adds the route to the subnet itself, once the link is up.
    pub fn add_address(&self, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<(), Error> {
        let add = self.handle.address().add(index, IpAddr::V4(addr), prefix);
        self.runtime.block_on(add.execute()).map_err(|e| {
            self.fail(
                Request::NewAddress {
                    index,
                    addr,
                    prefix,
                },
                e,
            )
        })
    }

    /// Adds the default route (`ip route add default via GATEWAY`): the
    /// gateway must be on a subnet of a link that is up.
    pub fn add_default_route(&self, gateway: Ipv4Addr) -> Result<(), Error> {
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gateway)
            .build();
        let add = self.handle.route().add(route);
        self.runtime
            .block_on(add.execute())
            .map_err(|e| self.fail(Request::NewDefaultRoute(gateway), e))
    }

    /// Deletes a link (`ip link del DEV`); deleting either end of a veth
    /// deletes the pair.
    pub fn delete_link(&self, index: u32) -> Result<(), Error> {
        let del = self.handle.link().del(index);
        self.runtime
            .block_on(del.execute())
            .map_err(|e| self.fail(Request::DelLink(index), e))
    }

    /// Every link in this namespace (`ip -d link`).
    pub fn links(&self) -> Result<Vec<LinkInfo>, Error> {
        let dump = self.handle.link().get().execute();
        let messages: Vec<LinkMessage> = self
            .runtime
            .block_on(dump.try_collect())
            .map_err(|e| self.fail(Request::DumpLinks, e))?;
        Ok(messages.iter().map(link_info).collect())
    }

    /// The IPv4 addresses of one link, with their prefix lengths (`ip -4 addr show DEV`).
    pub fn addresses(&self, index: u32) -> Result<Vec<(Ipv4Addr, u8)>, Error> {
        let dump = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        let messages: Vec<AddressMessage> = self
            .runtime
            .block_on(dump.try_collect())
            .map_err(|e| self.fail(Request::DumpAddresses, e))?;
        Ok(messages
            .iter()
            .filter(|m| m.header.family == AddressFamily::Inet)
            .filter_map(|m| {
                m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Local(IpAddr::V4(ip)) => Some((*ip, m.header.prefix_len)),
                    _ => None,
                })
            })
            .collect())
    }

    /// The gateway of the IPv4 default route in the main table, if there is
    /// one (`ip route show default`).
    pub fn default_gateway(&self) -> Result<Option<Ipv4Addr>, Error> {
        let dump = self
            .handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute();
        let routes: Vec<_> = self
            .runtime
            .block_on(dump.try_collect())
            .map_err(|e| self.fail(Request::DumpRoutes, e))?;
        Ok(routes
            .iter()
            .filter(|r| {
                r.header.address_family == AddressFamily::Inet
                    && r.header.table == RouteHeader::RT_TABLE_MAIN
                    && r.header.kind == RouteType::Unicast
                    && r.header.destination_prefix_length == 0
            })
            .find_map(|r| {
                r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Gateway(RouteAddress::Inet(gw)) => Some(*gw),
                    _ => None,
                })
            }))
    }

    /// The request as errors show it, with the namespace when it is not ours.
    fn text(&self, request: Request) -> String {
        match self.netns_fd {
            Some(fd) => format!("{request} (in netns fd {fd})"),
            None => request.to_string(),
        }
    }

    /// An error that names the request, its errno and a hint.
    fn fail(&self, request: Request, error: rtnetlink::Error) -> Error {
        let text = self.text(request);
        match errno_of(&error) {
            Some(errno) => {
                let e = Error::sys(text, errno);
                match request.hint(errno) {
                    Some(hint) => e.hint(hint),
                    None => e,
                }
            }
            None => Error::setup(format!("{text}: {}", lower_first(&error.to_string()))),
        }
    }
}

/// Makes a new, empty network namespace (only `lo`, down) and returns a file
/// descriptor of it: a helper thread calls `unshare(CLONE_NEWNET)`, opens
/// `/proc/thread-self/ns/net` and ends. The open descriptor alone keeps the
/// namespace alive, as the bind mount of `ip netns add` does; it can be
/// given to [`Netlink::open_in`], [`Netlink::add_veth_into`] or `setns(2)`.
pub fn new_netns() -> Result<File, Error> {
    std::thread::spawn(|| {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|errno| {
            let e = Error::sys("unshare(CLONE_NEWNET)", errno);
            match errno {
                Errno::EPERM => e.hint("needs CAP_SYS_ADMIN: run with sudo"),
                _ => e,
            }
        })?;
        let path = "/proc/thread-self/ns/net";
        File::open(path).map_err(|e| match e.raw_os_error() {
            Some(code) => Error::sys(format!("open(\"{path}\")"), Errno::from_raw(code)),
            None => Error::setup(format!("open(\"{path}\"): {e}")),
        })
    })
    .join()
    .unwrap_or_else(|_| {
        Err(Error::setup(
            "the thread making a network namespace panicked",
        ))
    })
}

/// A current-thread runtime with an I/O driver: the netlink socket is
/// non-blocking and the runtime waits on it with epoll.
fn runtime() -> Result<Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| match e.raw_os_error() {
            Some(code) => Error::sys("epoll_create1(EPOLL_CLOEXEC)", Errno::from_raw(code))
                .context("starting the tokio runtime"),
            None => Error::setup(format!("starting the tokio runtime: {e}")),
        })
}

/// Opens the socket in the calling thread's network namespace and starts
/// the task that drives it on `runtime`.
fn connect(runtime: &Runtime) -> Result<Handle, Error> {
    // The socket registers with the runtime's I/O driver as it is made.
    let _entered = runtime.enter();
    let (connection, handle, _) = rtnetlink::new_connection().map_err(|e| {
        let call = "socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE)";
        match e.raw_os_error() {
            Some(code) => Error::sys(call, Errno::from_raw(code)),
            None => Error::setup(format!("{call}: {e}")),
        }
    })?;
    runtime.spawn(connection);
    Ok(handle)
}

/// The errno of a netlink error answer (the kernel sends it negated).
fn errno_of(error: &rtnetlink::Error) -> Option<Errno> {
    match error {
        rtnetlink::Error::NetlinkError(message) => {
            message.code.map(|code| Errno::from_raw(-code.get()))
        }
        _ => None,
    }
}

fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn link_info(message: &LinkMessage) -> LinkInfo {
    let mut link = LinkInfo {
        name: String::new(),
        index: message.header.index,
        kind: None,
        master: None,
        up: message.header.flags.contains(LinkFlags::Up),
        peer_netns_id: None,
        link: None,
    };
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => link.name = name.clone(),
            LinkAttribute::Controller(index) => link.master = Some(*index),
            LinkAttribute::LinkNetNsId(id) => link.peer_netns_id = Some(*id),
            LinkAttribute::Link(index) => link.link = Some(*index),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let rtnetlink::packet_route::link::LinkInfo::Kind(kind) = info {
                        link.kind = Some(kind.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    link
}

/// One rtnetlink request, as errors name it: the message type, then its
/// arguments in `ip(8)`'s words.
#[derive(Debug, Clone, Copy)]
enum Request<'a> {
    GetLink(&'a str),
    DumpLinks,
    NewBridge(&'a str),
    NewVeth {
        host: &'a str,
        peer: &'a str,
        netns_fd: RawFd,
    },
    SetMaster {
        index: u32,
        bridge: u32,
    },
    SetUp(u32),
    SetDown(u32),
    SetHairpin(u32),
    NewAddress {
        index: u32,
        addr: Ipv4Addr,
        prefix: u8,
    },
    NewDefaultRoute(Ipv4Addr),
    DelLink(u32),
    DumpAddresses,
    DumpRoutes,
}

impl fmt::Display for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::GetLink(name) => write!(f, "RTM_GETLINK {name}"),
            Self::DumpLinks => write!(f, "RTM_GETLINK (dump)"),
            Self::NewBridge(name) => write!(f, "RTM_NEWLINK {name} type bridge"),
            Self::NewVeth {
                host,
                peer,
                netns_fd,
            } => write!(
                f,
                "RTM_NEWLINK {host} type veth peer {peer} netns fd {netns_fd}"
            ),
            Self::SetMaster { index, bridge } => {
                write!(f, "RTM_SETLINK ifindex {index} master {bridge}")
            }
            Self::SetUp(index) => write!(f, "RTM_SETLINK ifindex {index} up"),
            Self::SetDown(index) => write!(f, "RTM_SETLINK ifindex {index} down"),
            Self::SetHairpin(index) => {
                write!(f, "RTM_NEWLINK ifindex {index} bridge port hairpin on")
            }
            Self::NewAddress {
                index,
                addr,
                prefix,
            } => write!(f, "RTM_NEWADDR {addr}/{prefix} ifindex {index}"),
            Self::NewDefaultRoute(gateway) => write!(f, "RTM_NEWROUTE default via {gateway}"),
            Self::DelLink(index) => write!(f, "RTM_DELLINK ifindex {index}"),
            Self::DumpAddresses => write!(f, "RTM_GETADDR (dump)"),
            Self::DumpRoutes => write!(f, "RTM_GETROUTE (dump)"),
        }
    }
}

impl Request<'_> {
    /// What a learner can do about `errno` after this request.
    fn hint(&self, errno: Errno) -> Option<&'static str> {
        use Request::*;
        Some(match (self, errno) {
            (_, Errno::EPERM) => "needs CAP_NET_ADMIN: run with sudo",
            (NewBridge(_) | NewVeth { .. }, Errno::EEXIST) => {
                "a link of that name exists; see ip link"
            }
            // The kernel loads a link type's module on demand
            // (request_module("rtnl-link-KIND")); without it, the type is
            // unknown.
            (NewBridge(_), Errno::EOPNOTSUPP | Errno::ENODEV) => {
                "the bridge driver is missing: modprobe bridge"
            }
            (NewVeth { .. }, Errno::EOPNOTSUPP | Errno::ENODEV) => {
                "the veth driver is missing: modprobe veth"
            }
            (NewBridge(_) | NewVeth { .. }, Errno::ERANGE) => {
                "interface names are at most 15 bytes (IFNAMSIZ)"
            }
            (NewBridge(_), Errno::EINVAL) => {
                "interface names are 1 to 15 bytes (IFNAMSIZ), without '/' or spaces"
            }
            (NewVeth { .. }, Errno::EINVAL) => {
                "either the netns fd is not a network namespace (open /proc/PID/ns/net), or a name is not 1 to 15 bytes without '/' or spaces"
            }
            (NewVeth { .. }, Errno::EBADF) => "the netns fd is not open",
            (SetMaster { .. }, Errno::ENODEV | Errno::EINVAL) => {
                "no link or no bridge with that ifindex here; see ip -d link"
            }
            (SetMaster { .. }, Errno::EOPNOTSUPP) => "the master must be a bridge; see ip -d link",
            (SetMaster { .. }, Errno::ELOOP) => "a bridge cannot be plugged into itself",
            (SetUp(_) | SetDown(_) | DelLink(_) | NewAddress { .. }, Errno::ENODEV) => {
                "no link with that ifindex here; see ip link"
            }
            (NewAddress { .. }, Errno::EEXIST) => "the link has that address already; see ip addr",
            (NewDefaultRoute(_), Errno::EEXIST) => "a default route exists already; see ip route",
            (NewDefaultRoute(_), Errno::ENETUNREACH) => {
                "the gateway is on no connected subnet: add an address in its subnet to a link and set the link up first"
            }
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    /// Runs `test` on a thread of its own that has left the machine's network
    /// namespace for a new, empty one: nothing it does touches the host's
    /// interfaces, routes or firewall.
    fn in_fresh_netns<T: Send + 'static>(test: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(move || {
            unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
            let host = Netlink::open().expect("open");
            let links = host.links().expect("links");
            // Refuse to go on anywhere but in an empty namespace.
            assert_eq!(
                links.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
                ["lo"],
                "not a fresh network namespace"
            );
            test()
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    fn named<'a>(links: &'a [LinkInfo], name: &str) -> &'a LinkInfo {
        links
            .iter()
            .find(|l| l.name == name)
            .unwrap_or_else(|| panic!("no link {name} in {links:#?}"))
    }

    #[test]
    fn a_bridge_and_a_veth_into_a_container() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        in_fresh_netns(|| {
            let host = Netlink::open().unwrap();
            let gateway = Ipv4Addr::new(10, 200, 0, 1);
            let container_ip = Ipv4Addr::new(10, 200, 0, 2);

            let bridge = host.add_bridge("vb0").unwrap();
            host.add_address(bridge, gateway, 24).unwrap();
            host.set_up(bridge).unwrap();

            let container_ns = new_netns().unwrap();
            let started = Instant::now();
            let veth = host
                .add_veth_into("vb-1234", "eth0", &container_ns)
                .unwrap();
            eprintln!(
                "add_veth_into (one RTM_NEWLINK + lookup): {:?}",
                started.elapsed()
            );
            host.set_master(veth, bridge).unwrap();
            host.set_up(veth).unwrap();

            let container = Netlink::open_in(&container_ns).unwrap();
            let lo = container.link_index("lo").unwrap().unwrap();
            container.set_up(lo).unwrap();
            let eth0 = container
                .link_index("eth0")
                .unwrap()
                .expect("eth0 in the container");
            container.add_address(eth0, container_ip, 24).unwrap();
            container.set_up(eth0).unwrap();
            container.add_default_route(gateway).unwrap();

            // The host side: the bridge, up, with the gateway address; the
            // veth's host end plugged into it, its peer in another namespace.
            let links = host.links().unwrap();
            let vb0 = named(&links, "vb0");
            assert_eq!(vb0.kind.as_deref(), Some("bridge"));
            assert!(vb0.up);
            assert_eq!(host.addresses(bridge).unwrap(), [(gateway, 24)]);
            let end = named(&links, "vb-1234");
            assert_eq!(end.index, veth);
            assert_eq!(end.kind.as_deref(), Some("veth"));
            assert_eq!(end.master, Some(bridge));
            assert!(end.up);
            assert!(end.peer_netns_id.is_some(), "{end:?}");
            assert_eq!(end.link, Some(eth0));
            assert!(links.iter().all(|l| l.name != "eth0"));

            // The container side: lo up, eth0 with its address, a default
            // route via the bridge.
            let links = container.links().unwrap();
            assert!(named(&links, "lo").up);
            let eth0_info = named(&links, "eth0");
            assert_eq!(eth0_info.kind.as_deref(), Some("veth"));
            assert!(eth0_info.up);
            assert_eq!(eth0_info.link, Some(veth));
            assert_eq!(container.addresses(eth0).unwrap(), [(container_ip, 24)]);
            assert_eq!(container.default_gateway().unwrap(), Some(gateway));
            assert_eq!(host.default_gateway().unwrap(), None);

            // Deleting the host end deletes the pair.
            host.delete_link(veth).unwrap();
            assert_eq!(host.link_index("vb-1234").unwrap(), None);
            assert_eq!(container.link_index("eth0").unwrap(), None);
            assert_eq!(
                container
                    .links()
                    .unwrap()
                    .iter()
                    .map(|l| l.name.as_str())
                    .collect::<Vec<_>>(),
                ["lo"]
            );
        });
    }

    #[test]
    fn errors_name_the_request_errno_and_a_hint() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        in_fresh_netns(|| {
            let host = Netlink::open().unwrap();
            assert_eq!(host.link_index("nope0").unwrap(), None);
            host.add_bridge("vb0").unwrap();
            assert_eq!(
                host.add_bridge("vb0").unwrap_err().to_string(),
                "RTM_NEWLINK vb0 type bridge: file exists (EEXIST); hint: a link of that name exists; see ip link"
            );
            let too_long = host.add_bridge("a-name-longer-than-ifnamsiz").unwrap_err();
            assert!(
                too_long
                    .to_string()
                    .starts_with("RTM_NEWLINK a-name-longer-than-ifnamsiz type bridge: ")
                    && too_long.to_string().contains("IFNAMSIZ"),
                "{too_long}"
            );
            let null = File::open("/dev/null").unwrap();
            let not_a_netns = host.add_veth_into("vb-0", "eth0", &null).unwrap_err();
            assert!(
                not_a_netns
                    .to_string()
                    .contains("(EINVAL); hint: either the netns fd is not a network namespace"),
                "{not_a_netns}"
            );
            assert_eq!(
                host.set_up(9999).unwrap_err().to_string(),
                "RTM_SETLINK ifindex 9999 up: no such device (ENODEV); hint: no link with that ifindex here; see ip link"
            );
            let unreachable = host
                .add_default_route(Ipv4Addr::new(10, 9, 9, 1))
                .unwrap_err();
            assert!(
                unreachable
                    .to_string()
                    .starts_with("RTM_NEWROUTE default via 10.9.9.1: network is unreachable (ENETUNREACH); hint: "),
                "{unreachable}"
            );

            let container_ns = new_netns().unwrap();
            host.add_veth_into("vb-1", "eth0", &container_ns).unwrap();
            let fd = container_ns.as_raw_fd();
            assert_eq!(
                host.add_veth_into("vb-2", "eth0", &container_ns)
                    .unwrap_err()
                    .to_string(),
                format!(
                    "RTM_NEWLINK vb-2 type veth peer eth0 netns fd {fd}: file exists (EEXIST); hint: a link of that name exists; see ip link"
                )
            );
            let container = Netlink::open_in(&container_ns).unwrap();
            assert_eq!(
                container.set_up(9999).unwrap_err().to_string(),
                format!(
                    "RTM_SETLINK ifindex 9999 up (in netns fd {fd}): no such device (ENODEV); hint: no link with that ifindex here; see ip link"
                )
            );
        });
    }

    #[test]
    fn open_in_refuses_a_file_that_is_no_netns() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let not_a_netns = File::open("/dev/null").unwrap();
        let fd = not_a_netns.as_raw_fd();
        assert_eq!(
            Netlink::open_in(&not_a_netns).unwrap_err().to_string(),
            format!(
                "setns({fd}, CLONE_NEWNET): invalid argument (EINVAL); hint: the fd is not a network namespace"
            )
        );
    }

    #[test]
    fn add_veth_into_takes_about_a_millisecond() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        in_fresh_netns(|| {
            let host = Netlink::open().unwrap();
            let rounds = 20;
            let mut veth_total = Duration::ZERO;
            let mut ns_total = Duration::ZERO;
            let mut namespaces = Vec::new();
            for i in 0..rounds {
                let started = Instant::now();
                let ns = new_netns().unwrap();
                ns_total += started.elapsed();
                let started = Instant::now();
                host.add_veth_into(&format!("vb-{i}"), "eth0", &ns).unwrap();
                veth_total += started.elapsed();
                namespaces.push(ns);
            }
            eprintln!(
                "over {rounds} rounds: new_netns {:?}, add_veth_into {:?} (mean)",
                ns_total / rounds,
                veth_total / rounds
            );
        });
    }

    #[test]
    fn requests_read_like_ip_commands() {
        let veth = Request::NewVeth {
            host: "vb-1234",
            peer: "eth0",
            netns_fd: 5,
        };
        assert_eq!(
            veth.to_string(),
            "RTM_NEWLINK vb-1234 type veth peer eth0 netns fd 5"
        );
        assert_eq!(
            veth.hint(Errno::EOPNOTSUPP),
            Some("the veth driver is missing: modprobe veth")
        );
        assert_eq!(
            Request::NewBridge("vb0").hint(Errno::EOPNOTSUPP),
            Some("the bridge driver is missing: modprobe bridge")
        );
        assert_eq!(
            Request::SetUp(3).hint(Errno::EPERM),
            Some("needs CAP_NET_ADMIN: run with sudo")
        );
        assert_eq!(Request::DumpLinks.hint(Errno::EIO), None);
    }
}
