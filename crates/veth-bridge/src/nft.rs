//! The toolkit's own nftables table, `ip underhood`: outbound NAT and
//! published ports, as rules a learner can list with
//! `nft list table ip underhood`.
//!
//! Every rule carries a comment that says whose it is — `ub0 nat`,
//! `ub0 localnet`, `ub0 8080/tcp 10.208.0.2:80` — so removing a bridge's
//! rules finds exactly those, and nobody else's table is ever read or
//! written. Rules are added with the `nft` commands `--explain` shows,
//! one command per step, and read back as JSON (`nft -j -a`), parsedd by
//! the `nftables` crate. Changes are serialised by a lock file, so two
//! runs never both decide the table is empty.

use std::fmt;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use nftables::schema::{NfListObject, NfObject};
use steps::Error;

use crate::alloc::{STATE_DIR, Subnet};

/// The table's family and name.
pub const TABLE: &str = "ip underhood";

/// A transport protocol a port can be published for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// A published port: `HOSTPORT/PROTO` on every host address leads to
/// `TO:PORT` on a bridge, like `docker run -p 8080:80`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub bridge: String,
    pub host_port: u16,
    pub proto: Proto,
    pub to: Ipv4Addr,
    pub port: u16,
}

/// Parses `HOSTPORT:CTRPORT[/tcp|/udp]`, as `docker run -p` writes it.
pub fn parse_mapping(text: &str) -> Result<(u16, u16, Proto), String> {
    let (ports, proto) = split_proto(text)?;
    let (host, ctr) = ports.split_once(':').ok_or_else(|| {
        format!("{text:?} is not a mapping: write HOSTPORT:CTRPORT, e.g. 8080:80 or 5353:53/udp")
    })?;
    Ok((parse_port(host)?, parse_port(ctr)?, proto))
}

/// Parses `HOSTPORT[/tcp|/udp]`, the key of a published port.
pub fn parse_host_port(text: &str) -> Result<(u16, Proto), String> {
    let (port, proto) = split_proto(text)?;
    Ok((parse_port(port)?, proto))
}

/// `TEXT[/tcp|/udp]`: the text before the protocol, and the protocol
/// (TCP when none is given).
fn split_proto(text: &str) -> Result<(&str, Proto), String> {
    match text.rsplit_once('/') {
        Some((rest, "tcp")) => Ok((rest, Proto::Tcp)),
        Some((rest, "udp")) => Ok((rest, Proto::Udp)),
        Some((_, other)) => Err(format!(
            "{:?} is not a protocol: give /tcp or /udp",
            format!("/{other}")
        )),
        None => Ok((text, Proto::Tcp)),
    }
}

/// A port number, 1 to 65535, in digits only (u16's parser would take
/// "+80" too).
fn parse_port(text: &str) -> Result<u16, String> {
    text.parse::<u16>()
        .ok()
        .filter(|n| *n > 0 && text.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| format!("{text:?} is not a port: give 1 to 65535"))
}

impl Published {
    /// The comment on each of its rules: `ub0 8080/tcp 10.208.0.2:80`.
    pub fn comment(&self) -> String {
        format!(
            "{} {}/{} {}:{}",
            self.bridge, self.host_port, self.proto, self.to, self.port
        )
    }

    fn from_comment(comment: &str) -> Option<Self> {
        let mut words = comment.split(' ');
        let (bridge, key, target) = (words.next()?, words.next()?, words.next()?);
        let (host_port, proto) = parse_host_port(key).ok()?;
        let (to, port) = target.split_once(':')?;
        Some(Self {
            bridge: bridge.into(),
            host_port,
            proto,
            to: to.parse().ok()?,
            port: port.parse().ok()?,
        })
    }

    /// The three rules, as `nft` commands: DNAT for connections that
    /// arrive (PREROUTING) and for those the host itself makes (OUTPUT),
    /// and the masquerade that lets replies find their way back when the
    /// client is on the same bridge or on the host's loopback.
    pub fn rules(&self, subnet: &Subnet) -> [(Chain, String); 3] {
        let Self {
            bridge,
            host_port,
            proto,
            to,
            port,
        } = self;
        let comment = self.comment();
        let dnat = format!(
            "fib daddr type local {proto} dport {host_port} dnat to {to}:{port} comment \"{comment}\""
        );
        [
            (Chain::Prerouting, dnat.clone()),
            (Chain::Output, dnat),
            (
                Chain::Postrouting,
                format!(
                    "oifname \"{bridge}\" ip saddr {{ {subnet}, 127.0.0.0/8 }} ip daddr {to} \
                     {proto} dport {port} ct status dnat masquerade comment \"{comment}\""
                ),
            ),
        ]
    }
}

/// The rule that masquerades what a bridge's containers send out of any
/// other interface.
pub fn nat_rule(bridge: &str, subnet: &Subnet) -> String {
    format!("ip saddr {subnet} oifname != \"{bridge}\" masquerade comment \"{bridge} nat\"")
}

/// The rule that drops packets for 127.0.0.0/8 arriving on a bridge:
/// `route_localnet` (which DNAT from 127.0.0.1 needs) would otherwise let
/// a container reach the host's loopback services (CVE-2020-8558).
pub fn localnet_rule(bridge: &str) -> String {
    format!("iifname \"{bridge}\" ip daddr 127.0.0.0/8 drop comment \"{bridge} localnet\"")
}

/// The table's chains: three NAT hooks, and an early filter hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chain {
    Prerouting,
    Output,
    Postrouting,
    Guard,
}

impl Chain {
    pub const ALL: [Chain; 4] = [
        Chain::Prerouting,
        Chain::Output,
        Chain::Postrouting,
        Chain::Guard,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Chain::Prerouting => "prerouting",
            Chain::Output => "output",
            Chain::Postrouting => "postrouting",
            Chain::Guard => "guard",
        }
    }

    /// Its hook, as `nft add chain` takes it. Output's NAT priority is
    /// given as a number: `dstnat` is a name for prerouting only.
    pub fn definition(self) -> &'static str {
        match self {
            Chain::Prerouting => "{ type nat hook prerouting priority dstnat; policy accept; }",
            Chain::Output => "{ type nat hook output priority -100; policy accept; }",
            Chain::Postrouting => "{ type nat hook postrouting priority srcnat; policy accept; }",
            Chain::Guard => "{ type filter hook prerouting priority raw; policy accept; }",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// One of the table's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub chain: Chain,
    pub handle: u32,
    pub comment: String,
}

impl Rule {
    /// The bridge it belongs to: its comment's first word.
    pub fn bridge(&self) -> &str {
        self.comment.split(' ').next().unwrap_or_default()
    }

    pub fn published(&self) -> Option<Published> {
        Published::from_comment(&self.comment)
    }

    pub fn is_nat(&self) -> bool {
        self.comment.ends_with(" nat")
    }

    pub fn is_localnet(&self) -> bool {
        self.comment.ends_with(" localnet")
    }
}

/// What the table holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    pub exists: bool,
    pub chains: Vec<Chain>,
    pub rules: Vec<Rule>,
}

impl Table {
    /// The ports published, each once (its rules share a comment).
    pub fn published(&self) -> Vec<Published> {
        let mut out: Vec<Published> = Vec::new();
        for p in self.rules.iter().filter_map(Rule::published) {
            if !out.contains(&p) {
                out.push(p);
            }
        }
        out.sort_by_key(|p| (p.host_port, p.proto as u8));
        out
    }

    pub fn nat_on(&self, bridge: &str) -> bool {
        self.rules
            .iter()
            .any(|r| r.bridge() == bridge && r.is_nat())
    }

    pub fn guarded(&self, bridge: &str) -> bool {
        self.rules
            .iter()
            .any(|r| r.bridge() == bridge && r.is_localnet())
    }
}

/// Fails, saying what to install, unless the `nft` program is installed:
/// asked before a plan that adds rules, since [`list`] takes a missing
/// `nft` for an empty table.
pub fn require() -> Result<(), Error> {
    let installed = Command::new("nft")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if installed {
        Ok(())
    } else {
        Err(missing_nft())
    }
}

fn missing_nft() -> Error {
    Error::setup("nft is not installed: install nftables (apt-get install nftables)")
}

/// Reads the table. With no `nft` installed there can be no table of
/// ours, since the toolkit makes its rules with `nft`.
pub fn list() -> Result<Table, Error> {
    let output = match Command::new("nft")
        .args(["-j", "-a", "list", "table", "ip", "underhood"])
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Table::default()),
        Err(e) => return Err(Error::io("nft -j -a list table ip underhood", &e)),
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        // No such table; or no nf_tables in the kernel (and none to load),
        // so no table either.
        if stderr.contains("No such file or directory")
            || !std::path::Path::new("/sys/module/nf_tables").exists()
        {
            return Ok(Table::default());
        }
        return Err(Error::setup(format!(
            "nft list table ip underhood failed: {}",
            first_error_line(&stderr)
        )));
    }
    parse(&String::from_utf8_lossy(&output.stdout))
}

/// Parses `nft -j -a list table ip underhood`.
pub fn parse(json: &str) -> Result<Table, Error> {
    let doc: nftables::schema::Nftables = serde_json::from_str(json)
        .map_err(|e| Error::setup(format!("nft printed JSON this program cannot read: {e}")))?;
    let mut table = Table::default();
    for object in doc.objects.iter() {
        match object {
            NfObject::ListObject(NfListObject::Table(t)) if t.name == "underhood" => {
                table.exists = true;
            }
            NfObject::ListObject(NfListObject::Chain(c)) if c.table == "underhood" => {
                table.chains.extend(Chain::from_name(&c.name));
            }
            NfObject::ListObject(NfListObject::Rule(r)) if r.table == "underhood" => {
                let (Some(chain), Some(handle)) = (Chain::from_name(&r.chain), r.handle) else {
                    continue;
                };
                table.rules.push(Rule {
                    chain,
                    handle,
                    comment: r.comment.as_deref().unwrap_or_default().to_string(),
                });
            }
            _ => {}
        }
    }
    Ok(table)
}

/// nft's own message, without the script position it puts before it
/// (`/dev/stdin:1:1-124: Error: …`).
fn first_error_line(stderr: &str) -> String {
    let line = stderr
        .lines()
        .find(|l| l.contains("Error:"))
        .or_else(|| stderr.lines().next())
        .unwrap_or("no message");
    line.find("Error:")
        .map_or(line, |at| &line[at..])
        .trim()
        .to_string()
}

/// Runs one `nft` command (its text as the shell would pass it, after
/// `nft`), as a one-line script on stdin, which nft applies as one
/// transaction.
pub fn run(command: &str) -> Result<(), Error> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => missing_nft(),
            _ => Error::io("nft -f -", &e),
        })?;
    let mut stdin = child.stdin.take().expect("piped");
    let written = stdin.write_all(format!("{command}\n").as_bytes());
    drop(stdin);
    let output = child
        .wait_with_output()
        .map_err(|e| Error::io("nft -f -", &e))?;
    if output.status.success() && written.is_ok() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let error = Error::setup(format!("nft {command}: {}", first_error_line(&stderr)));
    Err(
        if stderr.contains("Could not process rule") || stderr.contains("not supported") {
            error.hint(format!(
                "the kernel lacks an nftables module (nf_tables, nft_chain_nat, nft_nat, nft_masq, \
                 nft_fib_ipv4, nft_ct), or a chain of the table was changed by hand (nft list table {TABLE})"
            ))
        } else {
            error
        },
    )
}

/// Deletes the table's rules that `doomed` picks, as they are listed
/// now, in one transaction.
pub fn delete_rules(doomed: impl Fn(&Rule) -> bool) -> Result<(), Error> {
    let commands: Vec<String> = list()?
        .rules
        .iter()
        .filter(|r| doomed(r))
        .map(|r| format!("delete rule {TABLE} {} handle {}", r.chain.name(), r.handle))
        .collect();
    if commands.is_empty() {
        return Ok(());
    }
    run(&commands.join("; "))
}

/// Takes the lock that serialises the toolkit's nftables changes, on the
/// state directory itself, waiting for another run to finish its change.
pub fn lock() -> Result<steps::lock::DirLock, Error> {
    steps::lock::exclusive(std::path::Path::new(STATE_DIR))
}

/// Where the toolkit notes that it turned IPv4 forwarding on in this
/// network namespace, so that removing its last rule turns it back off.
pub fn forwarding_mark() -> PathBuf {
    let inode = std::fs::metadata("/proc/self/ns/net").map_or(0, |m| m.ino());
    PathBuf::from(format!("{STATE_DIR}/.forwarding-net:[{inode}]"))
}

pub const FORWARDING: &str = "/proc/sys/net/ipv4/ip_forward";

/// Whether this network namespace forwards IPv4 packets between
/// interfaces (routes), which NAT and published ports need.
pub fn forwarding() -> bool {
    std::fs::read_to_string(FORWARDING).is_ok_and(|v| v.trim() == "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_read_like_docker_run_p() {
        assert_eq!(parse_mapping("8080:80"), Ok((8080, 80, Proto::Tcp)));
        assert_eq!(parse_mapping("5353:53/udp"), Ok((5353, 53, Proto::Udp)));
        assert_eq!(parse_mapping("1:65535/tcp"), Ok((1, 65535, Proto::Tcp)));
        for bad in [
            "8080",
            "0:80",
            "8080:65536",
            "a:80",
            "8080:80/sctp",
            ":80",
            "8080:",
            "+8080:80",
            "8080:+80",
            "-1:80",
            "8080:80:90",
            "18446744073709551616:80",
        ] {
            assert!(parse_mapping(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_mapping("8080:80/t\ncp").unwrap_err(),
            "\"/t\\ncp\" is not a protocol: give /tcp or /udp"
        );
        assert_eq!(
            parse_host_port("8080:80").unwrap_err(),
            "\"8080:80\" is not a port: give 1 to 65535"
        );
        assert_eq!(parse_host_port("8080"), Ok((8080, Proto::Tcp)));
        assert_eq!(parse_host_port("53/udp"), Ok((53, Proto::Udp)));
        assert!(parse_host_port("8080:80").is_err());
    }

    fn published() -> Published {
        Published {
            bridge: "ub0".into(),
            host_port: 8080,
            proto: Proto::Tcp,
            to: Ipv4Addr::new(10, 208, 0, 2),
            port: 80,
        }
    }

    #[test]
    fn a_published_port_is_known_again_by_its_comment() {
        let p = published();
        assert_eq!(p.comment(), "ub0 8080/tcp 10.208.0.2:80");
        assert_eq!(Published::from_comment(&p.comment()), Some(p));
        assert_eq!(Published::from_comment("ub0 nat"), None);
        assert_eq!(Published::from_comment("ub0 localnet"), None);
    }

    #[test]
    fn a_published_port_is_dnat_in_prerouting_and_output_and_a_hairpin_masquerade() {
        let subnet = Subnet::parse("10.208.0.0/24").unwrap();
        let rules = published().rules(&subnet);
        assert_eq!(rules[0].0, Chain::Prerouting);
        assert_eq!(rules[1].0, Chain::Output);
        assert_eq!(rules[0].1, rules[1].1);
        assert_eq!(
            rules[0].1,
            "fib daddr type local tcp dport 8080 dnat to 10.208.0.2:80 comment \"ub0 8080/tcp 10.208.0.2:80\""
        );
        assert_eq!(
            rules[2].1,
            "oifname \"ub0\" ip saddr { 10.208.0.0/24, 127.0.0.0/8 } ip daddr 10.208.0.2 tcp dport 80 ct status dnat masquerade comment \"ub0 8080/tcp 10.208.0.2:80\""
        );
    }

    #[test]
    fn the_listing_is_read_from_nfts_json() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
            {"table": {"family": "ip", "name": "underhood", "handle": 3}},
            {"chain": {"family": "ip", "table": "underhood", "name": "postrouting", "handle": 1, "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}},
            {"rule": {"family": "ip", "table": "underhood", "chain": "postrouting", "handle": 4, "comment": "ub0 nat",
              "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "10.208.0.0", "len": 24}}}},
                       {"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": "ub0"}}, {"masquerade": null}]}},
            {"rule": {"family": "ip", "table": "underhood", "chain": "postrouting", "handle": 5, "comment": "ub0 8080/tcp 10.208.0.2:80",
              "expr": [{"match": {"op": "==", "left": {"ct": {"key": "status"}}, "right": "dnat"}}, {"masquerade": null}]}}]}"#;
        let table = parse(json).unwrap();
        assert!(table.exists);
        assert_eq!(table.chains, vec![Chain::Postrouting]);
        assert_eq!(table.rules.len(), 2);
        assert!(table.nat_on("ub0"));
        assert!(!table.nat_on("ub1"));
        assert_eq!(table.published(), vec![published()]);
        assert_eq!(table.rules[1].handle, 5);
    }
}
