//! # veth-bridge
//!
//! A docker0 of your own. A new network namespace has nothing but a
//! loopback interface that is down; Docker's default network plugs it into
//! the host with a *veth pair* — two interfaces joined like the ends of a
//! cable — whose host end is plugged into a *bridge*, a switch in the
//! kernel (`docker0`), whose own address is every container's gateway.
//! See [veth(4)](https://man7.org/linux/man-pages/man4/veth.4.html),
//! [network_namespaces(7)](https://man7.org/linux/man-pages/man7/network_namespaces.7.html)
//! and <https://docs.kernel.org/networking/bridge.html>.
//!
//! * [`alloc`] parses subnets and leases addresses, safely under
//!   concurrency;
//! * [`netlink`] makes the requests, through the rust-netlink crates;
//! * [`nft`] keeps NAT and published ports in the toolkit's own
//!   nftables table;
//! * [`plan`] turns `bridge add|del`, `connect`, `disconnect`, `nat`,
//!   `publish` and `unpublish` into plans of those requests, each shown
//!   beside its `ip` or `nft` command;
//! * [`show`] reads it all back.

pub mod alloc;
pub mod cli;
pub mod netlink;
pub mod nft;
pub mod plan;
pub mod show;
