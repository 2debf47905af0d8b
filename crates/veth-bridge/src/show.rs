//! `veth-bridge show`: the toolkit's bridges, the veths plugged into
//! each, which namespace (and which processes) each leads to, and the
//! addresses leased — what `docker network inspect` tells of a network.

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;

use steps::{Error, Palette};

use crate::alloc::{Leases, STATE_DIR, Subnet};
use crate::netlink::Netlink;
use crate::nft::Table;

/// The processes whose network namespace has inode `inode`.
fn pids_in(inode: u64) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| m.ino() == inode)
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// The table, a bridge and then its ports.
pub fn render(nl: &Netlink, table: &Table, palette: Palette) -> Result<String, Error> {
    let mut names: Vec<String> = std::fs::read_dir(STATE_DIR)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str().map(String::from))
                // Not a bridge's: the nft lock and the forwarding mark.
                .filter(|name| !name.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let links = nl.links()?;
    let mut out = String::new();
    if names.is_empty() {
        out.push_str("no bridges; make one with veth-bridge bridge add NAME\n");
        return Ok(out);
    }
    for name in names {
        let Some(bridge) = links.iter().find(|l| l.name == name) else {
            let _ = writeln!(
                out,
                "{} {}",
                palette.bold(&name),
                palette.warn("(its leases are here, but the link is gone)")
            );
            continue;
        };
        let address = nl
            .addresses(bridge.index)?
            .first()
            .map(|(a, p)| format!("{a}/{p} (subnet {})", Subnet::containing(*a, *p)))
            .unwrap_or_else(|| "no address".into());
        let _ = writeln!(
            out,
            "{}  {address}  {}  nat {}",
            palette.bold(&name),
            if bridge.up {
                palette.good("up")
            } else {
                palette.warn("down")
            },
            if table.nat_on(&name) { "on" } else { "off" }
        );
        let leases = Leases::of(&name);
        for port in links.iter().filter(|l| l.master == Some(bridge.index)) {
            let lease = leases
                .find(&port.name)
                .map_or("no lease".to_string(), |a| a.to_string());
            let inode = port
                .name
                .strip_prefix("vb")
                .and_then(|hex| u64::from_str_radix(hex, 16).ok());
            let leads = match inode {
                Some(inode) => {
                    let pids = pids_in(inode);
                    let shown: Vec<String> = pids.iter().take(5).map(u32::to_string).collect();
                    format!(
                        "netns net:[{inode}]{}",
                        if pids.is_empty() {
                            " (no process in it)".into()
                        } else {
                            format!(", pid {}", shown.join(" "))
                        }
                    )
                }
                None => "another namespace".into(),
            };
            let _ = writeln!(out, "  {:<15} → eth0 {lease:<15} {leads}", port.name);
        }
        for p in table.published().iter().filter(|p| p.bridge == name) {
            let key = format!("{}/{}", p.host_port, p.proto);
            let _ = writeln!(out, "  published {key:<9} → {}:{}", p.to, p.port);
        }
    }
    Ok(out)
}
