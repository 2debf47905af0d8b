//! Subnets, and an address allocator that is safe under concurrency.
//!
//! Every container on a bridge needs an address of the bridge's subnet
//! that no other container has. Docker keeps them in its daemon; the CNI
//! `host-local` plugin, which has no daemon, keeps one file per address in
//! a directory (`/var/lib/cni/networks/NET/10.88.0.2`). So does this
//! module: a lease is the file `LEASES/ADDRESS`, made with
//! `open(…, O_CREAT|O_EXCL)`, which the kernel lets exactly one process
//! win. Fifty containers started at once try the same first address; one
//! gets it, the others move on to the next. Releasing is `unlink()`.
//! The files live under `/run`, so they go with a reboot, as the
//! interfaces do.
//!
//! A lease holds its holder, the veth's host end, on its first line; a
//! second line, `lo`, notes that `connect` found the namespace's
//! loopback down and brought it up, so that `disconnect` puts it down
//! again. The note lives and goes with the lease.

use std::fmt;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use steps::Error;

/// An IPv4 subnet: `10.208.0.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    network: Ipv4Addr,
    prefix: u8,
}

/// The subnet a bridge gets unless told otherwise: outside the ranges
/// Docker (172.17.0.0/16 up to 172.31, then 192.168), Podman (10.88.0.0/16)
/// and Kubernetes' defaults (10.96.0.0/12, 10.244.0.0/16) take.
pub const DEFAULT_SUBNET: &str = "10.208.0.0/24";

/// The prefix lengths a bridge's subnet may have: a /16 is the widest
/// network Docker hands out by default, a /30 the narrowest with room for
/// a gateway and one container.
const MIN_PREFIX: u8 = 16;
const MAX_PREFIX: u8 = 30;

/// Ranges no bridge can use, and why
/// ([RFC 6890](https://www.rfc-editor.org/rfc/rfc6890)).
const RESERVED: [(&str, &str); 5] = [
    ("0.0.0.0/8", "\"this network\", which no interface may have"),
    ("127.0.0.0/8", "the loopback range, which belongs to lo"),
    (
        "169.254.0.0/16",
        "the link-local range, which no router forwards",
    ),
    (
        "224.0.0.0/4",
        "the multicast range, which is no interface's",
    ),
    (
        "240.0.0.0/4",
        "the reserved range, which the kernel does not route",
    ),
];

impl Subnet {
    /// Parses `A.B.C.D/N`; the address must be the network's own (host
    /// bits zero), as `docker network create --subnet` requires. The
    /// prefix is 16 to 30, and the range one a bridge can use.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (addr, prefix) = text.split_once('/').ok_or_else(|| {
            format!("{text:?} is not a subnet: write it as A.B.C.D/N, e.g. 10.208.0.0/24")
        })?;
        let network: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IPv4 address (four numbers 0-255)"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32 && prefix.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| {
                format!(
                    "{:?} is not a prefix length: give {MIN_PREFIX} to {MAX_PREFIX}",
                    format!("/{prefix}")
                )
            })?;
        if prefix > MAX_PREFIX {
            return Err(format!(
                "/{prefix} leaves no room for a gateway and containers: give {MIN_PREFIX} to \
                 {MAX_PREFIX}"
            ));
        }
        if prefix < MIN_PREFIX {
            return Err(format!(
                "/{prefix} is wider than one bridge should be: it would claim every address \
                 of the range for the bridge, other networks in it included; give \
                 {MIN_PREFIX} to {MAX_PREFIX} (Docker's own networks are /16 at most)"
            ));
        }
        let subnet = Self { network, prefix };
        if subnet.network() != network {
            return Err(format!(
                "{text} has host bits set: the subnet is {}",
                Self {
                    network: subnet.network(),
                    prefix
                }
            ));
        }
        if let Some((range, what)) = RESERVED
            .iter()
            .find(|(range, _)| subnet.overlaps(&Subnet::parse_known(range)))
        {
            return Err(format!(
                "{subnet} is in {range}, {what}; give a private range, e.g. {DEFAULT_SUBNET}"
            ));
        }
        Ok(subnet)
    }

    /// A subnet written in this file.
    fn parse_known(text: &str) -> Self {
        let (addr, prefix) = text.split_once('/').expect("A.B.C.D/N");
        Self {
            network: addr.parse().expect("an address"),
            prefix: prefix.parse().expect("a prefix"),
        }
    }

    /// Whether the two share any address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.contains(other.network()) || other.contains(self.network())
    }

    /// Whether `addr` may be a container's: in the subnet, and not its
    /// network address, gateway or broadcast address.
    pub fn is_container_address(&self, addr: Ipv4Addr) -> bool {
        self.contains(addr)
            && addr != self.gateway()
            && addr != self.broadcast()
            && addr != self.network()
    }

    /// The subnet an address with a prefix length belongs to.
    pub fn containing(addr: Ipv4Addr, prefix: u8) -> Self {
        let network = Self {
            network: addr,
            prefix,
        }
        .network();
        Self { network, prefix }
    }

    fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }

    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) & self.mask())
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()) | !self.mask())
    }

    /// The bridge's own address, the containers' default route: the first
    /// host address, as Docker gives docker0 172.17.0.1.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()) + 1)
    }

    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & self.mask() == u32::from(self.network())
    }

    /// The addresses a container may get: every host address but the
    /// gateway, lowest first.
    pub fn container_addresses(&self) -> impl Iterator<Item = Ipv4Addr> {
        let first = u32::from(self.gateway()) + 1;
        let last = u32::from(self.broadcast()) - 1;
        (first..=last).map(Ipv4Addr::from)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

/// The leases of one bridge: a directory with a file per address taken.
#[derive(Debug, Clone)]
pub struct Leases {
    dir: PathBuf,
}

/// Where the toolkit keeps the leases of each bridge.
pub const STATE_DIR: &str = "/run/underhood/net";

impl Leases {
    /// The leases of `bridge` under [`STATE_DIR`].
    pub fn of(bridge: &str) -> Self {
        Self::at(Path::new(STATE_DIR).join(bridge))
    }

    /// Leases kept in `dir`: tests point it at a scratch directory.
    pub fn at(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn file(&self, addr: Ipv4Addr) -> PathBuf {
        self.dir.join(addr.to_string())
    }

    /// Takes `wanted`, or else the lowest free address of `subnet`, for
    /// `holder` (written into the lease: who has it).
    pub fn take(
        &self,
        subnet: &Subnet,
        wanted: Option<Ipv4Addr>,
        holder: &str,
    ) -> Result<Ipv4Addr, Error> {
        std::fs::create_dir_all(&self.dir).map_err(|e| io_error("mkdir", &self.dir, &e))?;
        if let Some(addr) = wanted {
            if !subnet.is_container_address(addr) {
                return Err(not_a_container_address(subnet, addr));
            }
            return match self.try_take(addr, holder)? {
                true => Ok(addr),
                false => Err(Error::usage(format!(
                    "--ip {addr}: taken by {}; choose another, or leave --ip out",
                    self.holder(addr)
                        .unwrap_or_else(|| "another container".into())
                ))),
            };
        }
        for addr in subnet.container_addresses() {
            if self.try_take(addr, holder)? {
                return Ok(addr);
            }
        }
        Err(Error::setup(format!(
            "{subnet} has no free address left; disconnect a container or make the bridge \
             with a larger --subnet"
        )))
    }

    /// `open(LEASES/ADDR, O_CREAT|O_EXCL|O_WRONLY)`: true when this call made
    /// the file, false when it existed.
    fn try_take(&self, addr: Ipv4Addr, holder: &str) -> Result<bool, Error> {
        let path = self.file(addr);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut file) => {
                file.write_all(format!("{holder}\n").as_bytes())
                    .map_err(|e| io_error("write", &path, &e))?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io_error("open(O_CREAT|O_EXCL)", &path, &e)),
        }
    }

    /// Who holds `addr`, if anyone: the lease's first line.
    pub fn holder(&self, addr: Ipv4Addr) -> Option<String> {
        std::fs::read_to_string(self.file(addr))
            .ok()
            .map(|s| s.lines().next().unwrap_or("").trim().to_string())
    }

    /// Notes in `holder`'s lease that the namespace's loopback was down
    /// and is being brought up (appends the line `lo`).
    pub fn note_loopback(&self, holder: &str) -> Result<(), Error> {
        let addr = self.find(holder).ok_or_else(|| {
            Error::setup(format!(
                "no lease of {holder}'s in {}; it went away while veth-bridge ran",
                self.dir.display()
            ))
        })?;
        let path = self.file(addr);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut file| file.write_all(b"lo\n"))
            .map_err(|e| io_error("write", &path, &e))
    }

    /// Whether `holder`'s lease notes that its namespace's loopback was
    /// brought up by `connect`.
    pub fn loopback_noted(&self, holder: &str) -> bool {
        self.find(holder).is_some_and(|addr| {
            std::fs::read_to_string(self.file(addr))
                .is_ok_and(|text| text.lines().skip(1).any(|l| l.trim() == "lo"))
        })
    }

    /// Gives `addr` back. Releasing an address nobody holds is not an
    /// error: teardown after a failed setup may find it gone.
    pub fn release(&self, addr: Ipv4Addr) -> Result<(), Error> {
        let path = self.file(addr);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("unlink", &path, &e)),
        }
    }

    /// Every lease: address and holder, lowest address first.
    pub fn list(&self) -> Vec<(Ipv4Addr, String)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut leases: Vec<(Ipv4Addr, String)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse::<Ipv4Addr>().ok())
            .filter_map(|addr| Some((addr, self.holder(addr)?)))
            .collect();
        leases.sort();
        leases
    }

    /// The address `holder` has, if any.
    pub fn find(&self, holder: &str) -> Option<Ipv4Addr> {
        self.list()
            .into_iter()
            .find(|(_, h)| h == holder)
            .map(|(addr, _)| addr)
    }

    /// Removes the leases directory once it is empty (and the toolkit's
    /// directories above it, when nothing else is there).
    pub fn tidy(&self) {
        for dir in self.dir.ancestors().take(3) {
            if std::fs::remove_dir(dir).is_err() {
                break;
            }
        }
    }
}

/// `--ip ADDR` that no container of `subnet` can have.
pub fn not_a_container_address(subnet: &Subnet, addr: Ipv4Addr) -> Error {
    Error::usage(format!(
        "--ip {addr}: not a container address of {subnet} (the gateway is {}); give one \
         from {} to {}, or leave --ip out",
        subnet.gateway(),
        Ipv4Addr::from(u32::from(subnet.gateway()) + 1),
        Ipv4Addr::from(u32::from(subnet.broadcast()) - 1),
    ))
}

fn io_error(call: &str, path: &Path, error: &std::io::Error) -> Error {
    Error::io(format!("{call}(\"{}\")", path.display()), error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_name_their_parts() {
        let s = Subnet::parse("10.208.0.0/24").unwrap();
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 208, 0, 1));
        assert_eq!(s.broadcast(), Ipv4Addr::new(10, 208, 0, 255));
        assert_eq!(s.to_string(), "10.208.0.0/24");
        let addrs: Vec<_> = s.container_addresses().collect();
        assert_eq!(addrs.len(), 253);
        assert_eq!(addrs[0], Ipv4Addr::new(10, 208, 0, 2));
        assert!(s.contains(Ipv4Addr::new(10, 208, 0, 77)));
        assert!(!s.contains(Ipv4Addr::new(10, 208, 1, 1)));
        assert!(s.is_container_address(Ipv4Addr::new(10, 208, 0, 2)));
        for not in [
            [10, 208, 0, 0],
            [10, 208, 0, 1],
            [10, 208, 0, 255],
            [10, 9, 0, 2],
        ] {
            assert!(!s.is_container_address(not.into()), "{not:?}");
        }
        let wide = Subnet::parse("10.208.0.0/16").unwrap();
        assert!(s.overlaps(&wide) && wide.overlaps(&s));
        assert!(!s.overlaps(&Subnet::parse("10.208.1.0/24").unwrap()));
    }

    #[test]
    fn bad_subnets_say_what_is_wrong() {
        for (text, says) in [
            ("10.0.0.1/33", "not a prefix length"),
            ("300.1.1.1/24", "not an IPv4 address"),
            ("10.0.0.0", "A.B.C.D/N"),
            ("10.0.0.1/24", "host bits set: the subnet is 10.0.0.0/24"),
            ("10.0.0.0/31", "leaves no room"),
            ("10.0.0.0/8", "wider than one bridge should be"),
            ("10.0.0.0/-1", "\"/-1\" is not a prefix length"),
            ("10.0.0.0/+24", "\"/+24\" is not a prefix length"),
            ("10.0.0.0/2\n4", "\"/2\\n4\" is not a prefix length"),
            ("127.0.0.0/24", "the loopback range"),
            ("0.0.0.0/16", "\"this network\""),
            ("169.254.0.0/16", "link-local"),
            ("224.0.0.0/24", "multicast"),
            ("255.255.255.0/24", "reserved"),
        ] {
            let err = Subnet::parse(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn leases_go_lowest_first_and_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let leases = Leases::at(dir.path().join("br"));
        let s = Subnet::parse("10.208.0.0/29").unwrap();
        let a = leases.take(&s, None, "one").unwrap();
        let b = leases.take(&s, None, "two").unwrap();
        assert_eq!(
            (a, b),
            (Ipv4Addr::new(10, 208, 0, 2), Ipv4Addr::new(10, 208, 0, 3))
        );
        assert_eq!(leases.find("two"), Some(b));
        assert!(!leases.loopback_noted("two"));
        leases.note_loopback("two").unwrap();
        assert!(leases.loopback_noted("two"));
        assert_eq!(leases.holder(b).as_deref(), Some("two"));
        assert!(leases.note_loopback("nobody").is_err());
        leases.release(a).unwrap();
        assert_eq!(leases.take(&s, None, "three").unwrap(), a);
        let err = leases.take(&s, Some(b), "four").unwrap_err();
        assert!(err.to_string().contains("taken by two"), "{err}");
        let err = leases.take(&s, Some(s.gateway()), "five").unwrap_err();
        assert!(
            err.to_string().contains("the gateway is 10.208.0.1"),
            "{err}"
        );
        // A /29 has 5 container addresses: 2 taken, 3 left.
        for holder in ["x", "y", "w"] {
            leases.take(&s, None, holder).unwrap();
        }
        let err = leases.take(&s, None, "z").unwrap_err();
        assert!(err.to_string().contains("no free address"), "{err}");
    }

    #[test]
    fn fifty_at_once_get_fifty_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let leases = Leases::at(dir.path().join("br"));
        let s = Subnet::parse("10.208.0.0/24").unwrap();
        let barrier = std::sync::Barrier::new(50);
        let taken: Vec<Ipv4Addr> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..50)
                .map(|i| {
                    let (leases, barrier) = (&leases, &barrier);
                    scope.spawn(move || {
                        barrier.wait();
                        leases.take(&s, None, &format!("c{i}")).unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut unique = taken.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 50);
        assert_eq!(leases.list().len(), 50);
    }
}
