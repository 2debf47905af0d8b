//! `veth-bridge`: the command line over the library. See
//! `veth-bridge --help`.

use std::net::Ipv4Addr;
use std::process::ExitCode;

use steps::{Error, Narrator};
use veth_bridge::alloc::Subnet;
use veth_bridge::cli::{BridgeAction, Cli, Command};
use veth_bridge::netlink::Netlink;
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
    plan::execute(plan, narrator)?;
    Ok(true)
}

fn go(cli: &Cli, narrator: &Narrator) -> Result<(), Error> {
    match &cli.command {
        Command::Bridge {
            action: BridgeAction::Add { name, subnet },
        } => {
            let subnet =
                Subnet::parse(subnet).map_err(|e| Error::usage(format!("--subnet: {e}")))?;
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
            let nl = Netlink::open()?;
            let bridge = plan::find_bridge(name, &nl)?;
            run(narrator, &plan::bridge_del(&bridge)?)?;
        }
        Command::Connect { bridge, target, ip } => {
            let wanted = ip
                .as_deref()
                .map(|ip| {
                    ip.parse::<Ipv4Addr>()
                        .map_err(|_| Error::usage(format!("--ip {ip:?}: not an IPv4 address")))
                })
                .transpose()?;
            let nl = Netlink::open()?;
            let bridge = plan::find_bridge(bridge, &nl)?;
            let netns = Netns {
                path: target.path(),
            };
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
            let nl = Netlink::open()?;
            let bridge = plan::find_bridge(bridge, &nl)?;
            let netns = Netns {
                path: target.path(),
            };
            run(narrator, &plan::disconnect(&bridge, &netns, &nl)?)?;
        }
        Command::Show => {
            let nl = Netlink::open()?;
            print!("{}", show::render(&nl, cli.steps.stdout_palette())?);
        }
    }
    Ok(())
}
