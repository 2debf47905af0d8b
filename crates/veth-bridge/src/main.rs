//! `veth-bridge`: the command line over the library. See
//! `veth-bridge --help`.

use std::net::Ipv4Addr;
use std::process::ExitCode;

use steps::{Error, Narrator};
use veth_bridge::alloc::Subnet;
use veth_bridge::cli::{BridgeAction, Cli, Command, OnOff};
use veth_bridge::netlink::Netlink;
use veth_bridge::nft::{self, Published};
use veth_bridge::plan::{self, Netns};
use veth_bridge::show;

fn main() -> ExitCode {
    steps::sys::restore_sigpipe();
    let cli: Cli = steps::cli::parse("veth-bridge");
    let narrator = cli.steps.narrator("veth-bridge");
    match go(&cli, &narrator) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => ExitCode::from(narrator.report(&error)),
    }
}

fn run(narrator: &Narrator, plan: &steps::Plan<plan::Op>) -> Result<bool, Error> {
    if narrator.is_dry_run() {
        let _ = narrator.print_plan(plan, &mut std::io::stdout().lock());
        return Ok(false);
    }
    // Held from before the first step: a Ctrl-C between two steps stops
    // the run there, and what was made is taken back.
    let held = steps::process::Supervision::start()
        .map_err(|e| Error::sys("sigprocmask(SIG_BLOCK, SIGINT|SIGTERM|SIGHUP)", e))?;
    plan::execute_or_stop(plan, narrator, &held)?;
    Ok(true)
}

/// Refuses to change the network without the privilege it needs, after
/// the values were checked (a bad one is named first) and before any
/// state is read: `--dry-run` needs none.
fn may_change(narrator: &Narrator, command: &str) -> Result<(), Error> {
    if narrator.is_dry_run() {
        return Ok(());
    }
    plan::require_net_admin(command)
}

fn go(cli: &Cli, narrator: &Narrator) -> Result<(), Error> {
    match &cli.command {
        Command::Bridge {
            action: BridgeAction::Add { name, subnet },
        } => {
            veth_bridge::cli::interface_name("bridge", name)?;
            let subnet =
                Subnet::parse(subnet).map_err(|e| Error::usage(format!("--subnet: {e}")))?;
            may_change(narrator, "bridge add")?;
            let nl = Netlink::open()?;
            let plan = plan::bridge_add(name, &subnet, &nl)?;
            if run(narrator, &plan)? {
                println!(
                    "{name}: bridge at {}/{} for {subnet}",
                    subnet.gateway(),
                    subnet.prefix()
                );
            }
        }
        Command::Bridge {
            action: BridgeAction::Del { name },
        } => {
            veth_bridge::cli::interface_name("bridge", name)?;
            may_change(narrator, "bridge del")?;
            let nl = Netlink::open()?;
            run(narrator, &plan::bridge_del(name, &nft::list()?, &nl)?)?;
        }
        Command::Connect { bridge, target, ip } => {
            veth_bridge::cli::interface_name("bridge", bridge)?;
            let wanted = ip
                .as_deref()
                .map(|ip| {
                    ip.parse::<Ipv4Addr>().map_err(|_| {
                        Error::usage(format!(
                            "--ip {ip:?}: not an IPv4 address; give one of the bridge's \
                             subnet, or leave --ip out"
                        ))
                    })
                })
                .transpose()?;
            let netns = Netns {
                path: target.checked_path()?,
            };
            may_change(narrator, "connect")?;
            let nl = Netlink::open()?;
            let bridge = plan::find_bridge(bridge, &nl)?;
            let plan = plan::connect(&bridge, &netns, wanted, &nl)?;
            if run(narrator, &plan)? {
                let host = plan::host_end(&netns.path)?;
                let addr = bridge
                    .leases
                    .find(&host)
                    .map_or("?".into(), |a| a.to_string());
                println!(
                    "{host} → eth0 {addr}/{} in {}, gateway {}",
                    bridge.subnet.prefix(),
                    netns.path.display(),
                    bridge.subnet.gateway()
                );
            }
        }
        Command::Disconnect { bridge, target } => {
            veth_bridge::cli::interface_name("bridge", bridge)?;
            let netns = Netns {
                path: target.checked_path()?,
            };
            may_change(narrator, "disconnect")?;
            let nl = Netlink::open()?;
            let bridge = plan::find_bridge(bridge, &nl)?;
            run(
                narrator,
                &plan::disconnect(&bridge, &netns, &nft::list()?, &nl)?,
            )?;
        }
        Command::Nat { bridge, state } => {
            veth_bridge::cli::interface_name("bridge", bridge)?;
            may_change(narrator, "nat")?;
            let nl = Netlink::open()?;
            let bridge = plan::find_bridge(bridge, &nl)?;
            let table = nft::list()?;
            let plan = match state {
                OnOff::On => plan::nat_on(&bridge, &table),
                OnOff::Off => plan::nat_off(&bridge, &table),
            };
            match plan {
                Some(plan) => {
                    nft::require()?;
                    if run(narrator, &plan)? && *state == OnOff::On {
                        println!(
                            "{}: NAT on for {} (nft list table {})",
                            bridge.name,
                            bridge.subnet,
                            nft::TABLE
                        );
                    }
                }
                None => println!(
                    "{}: NAT is {} already",
                    bridge.name,
                    if *state == OnOff::On { "on" } else { "off" }
                ),
            }
        }
        Command::Publish {
            bridge,
            mapping,
            to,
        } => {
            veth_bridge::cli::interface_name("bridge", bridge)?;
            let (host_port, port, proto) = nft::parse_mapping(mapping)
                .map_err(|e| Error::usage(format!("HOSTPORT:CTRPORT {mapping:?}: {e}")))?;
            let to = to.parse::<Ipv4Addr>().map_err(|_| {
                Error::usage(format!(
                    "--to {to:?}: not an IPv4 address; give a connected namespace's \
                     (veth-bridge show)"
                ))
            })?;
            may_change(narrator, "publish")?;
            let nl = Netlink::open()?;
            let bridge = plan::find_bridge(bridge, &nl)?;
            nft::require()?;
            let published = Published {
                bridge: bridge.name.clone(),
                host_port,
                proto,
                to,
                port,
            };
            let plan = plan::publish(&bridge, &published, &nft::list()?)?;
            if run(narrator, &plan)? {
                println!(
                    "{host_port}/{proto} → {to}:{port} (nft list table {})",
                    nft::TABLE
                );
            }
        }
        Command::Unpublish { bridge, port } => {
            veth_bridge::cli::interface_name("bridge", bridge)?;
            let (host_port, proto) = nft::parse_host_port(port)
                .map_err(|e| Error::usage(format!("HOSTPORT {port:?}: {e}")))?;
            may_change(narrator, "unpublish")?;
            let nl = Netlink::open()?;
            let bridge = plan::find_bridge(bridge, &nl)?;
            run(
                narrator,
                &plan::unpublish(&bridge, host_port, proto, &nft::list()?)?,
            )?;
        }
        Command::Show => {
            let nl = Netlink::open()?;
            // Some kernels (6.1) let only CAP_NET_ADMIN read nftables:
            // without it, show what can be read and say what is left out.
            let table = match nft::list() {
                Ok(table) => table,
                Err(error) if !nix::unistd::Uid::effective().is_root() => {
                    eprintln!(
                        "veth-bridge: NAT and published ports are left out: {error}; run it with sudo to see them"
                    );
                    nft::Table::default()
                }
                Err(error) => return Err(error),
            };
            print!("{}", show::render(&nl, &table, cli.steps.stdout_palette())?);
        }
    }
    Ok(())
}
