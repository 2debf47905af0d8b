//! veth-bridge against the real kernel. Nothing here touches the machine's
//! own interfaces, routes or firewall: each test first makes a sandbox
//! "host" network namespace and runs veth-bridge inside it with
//! `nsenter --net=FILE`; its "containers" are more namespaces the test
//! made. Traffic only flows between them. Each namespace is kept alive by
//! a bind mount on a file in the test's scratch directory
//! (`unshare --net=FILE true`), not under /run/netns, so the machine's
//! mount table ends as it began: a guard unmounts every one (and with the
//! last reference the namespace and its links go), and removes the test's
//! leases, also when the test fails.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use support::{
    Failed, Requirement::*, Suite, cmd, describe, ensure, ensure_eq, run, scratch, stderr, stdout,
};

fn main() {
    let mut suite = Suite::new();
    suite.test_with_tools(
        "two_containers_ping_each_other_across_the_bridge",
        &[Root, Busybox],
        &["ip", "unshare", "nsenter"],
        ping_across,
    );
    suite.test_with_tools(
        "fifty_concurrent_connects_get_fifty_addresses",
        &[Root],
        &["ip", "unshare", "nsenter"],
        fifty_at_once,
    );
    suite.test_with_tools(
        "a_failed_connect_leaves_no_veth_and_no_lease",
        &[Root],
        &["ip", "unshare", "nsenter"],
        failed_connect,
    );
    suite.test_with_tools(
        "bad_input_is_refused_before_anything_is_made",
        &[Root],
        &["ip", "unshare", "nsenter"],
        bad_input,
    );
    suite.test(
        "dry_run_shows_each_request_beside_its_ip_command",
        &[],
        dry_run,
    );
    suite.run();
}

/// Namespaces made for one test, and its bridge's leases: all removed
/// when dropped.
struct Sandbox {
    dir: tempfile::TempDir,
    made: Vec<PathBuf>,
    bridge: String,
}

impl Sandbox {
    fn new() -> Result<Self, Failed> {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let mut sandbox = Self {
            dir: scratch(),
            made: Vec::new(),
            bridge: format!("ubt{}x{n}", std::process::id() % 10000),
        };
        sandbox.netns("host")?;
        Ok(sandbox)
    }

    /// The file that holds the namespace `short`.
    fn name(&self, short: &str) -> String {
        self.dir.path().join(short).display().to_string()
    }

    /// A new, empty network namespace, kept by a bind mount on a file.
    fn netns(&mut self, short: &str) -> Result<String, Failed> {
        let name = self.name(short);
        std::fs::write(&name, "")?;
        let status = Command::new("unshare")
            .arg(format!("--net={name}"))
            .arg("true")
            .status()?;
        ensure(status.success(), format!("unshare --net={name} true"))?;
        self.made.push(PathBuf::from(&name));
        Ok(name)
    }

    /// veth-bridge ARGS…, run in the sandbox host.
    fn veth_bridge(&self, args: &[&str]) -> Result<Output, Failed> {
        let bin = support::bin("veth-bridge");
        run(Command::new("nsenter")
            .arg(format!("--net={}", self.name("host")))
            .arg(bin)
            .args(args)
            .env("LC_ALL", "C"))
    }

    /// A command in one of the sandbox's namespaces.
    fn exec(&self, short: &str, args: &[&str]) -> Result<Output, Failed> {
        run(Command::new("nsenter")
            .arg(format!("--net={}", self.name(short)))
            .args(args))
    }

    fn leases(&self) -> PathBuf {
        PathBuf::from("/run/underhood/net").join(&self.bridge)
    }

    /// The links of the sandbox host, but lo.
    fn host_links(&self) -> Result<Vec<String>, Failed> {
        let out = self.exec("host", &["ip", "-o", "link", "show"])?;
        Ok(stdout(&out)
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
            .filter(|n| n != "lo")
            .collect())
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for file in &self.made {
            let _ = nix::mount::umount2(file, nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir_all(self.leases());
        let _ = std::fs::remove_dir("/run/underhood/net");
        let _ = std::fs::remove_dir("/run/underhood");
    }
}

fn ok(output: Output) -> Result<Output, Failed> {
    ensure(output.status.success(), describe(&output))?;
    Ok(output)
}

fn ping_across() -> Result<(), Failed> {
    let mut s = Sandbox::new()?;
    let (one, two) = (s.netns("one")?, s.netns("two")?);
    ok(s.veth_bridge(&[
        "bridge",
        "add",
        &s.bridge.clone(),
        "--subnet",
        "10.208.7.0/24",
    ])?)?;
    let out = ok(s.veth_bridge(&["connect", &s.bridge.clone(), "--netns", &one])?)?;
    ensure(stdout(&out).contains("eth0 10.208.7.2/24"), describe(&out))?;
    ok(s.veth_bridge(&["connect", &s.bridge.clone(), "--netns", &two])?)?;
    let again = s.veth_bridge(&["connect", &s.bridge.clone(), "--netns", &two])?;
    ensure(
        again.status.code() == Some(2) && stderr(&again).contains("connected already"),
        describe(&again),
    )?;
    // Inside: eth0 with its address, lo up, the default route.
    let addr = ok(s.exec("one", &["ip", "-4", "-o", "addr", "show", "eth0"])?)?;
    ensure(stdout(&addr).contains("10.208.7.2/24"), describe(&addr))?;
    let route = ok(s.exec("one", &["ip", "route", "show", "default"])?)?;
    ensure(
        stdout(&route).contains("via 10.208.7.1 dev eth0"),
        describe(&route),
    )?;
    ok(s.exec(
        "one",
        &["busybox", "ping", "-c", "1", "-W", "5", "10.208.7.3"],
    )?)?;
    ok(s.exec(
        "two",
        &["busybox", "ping", "-c", "1", "-W", "5", "10.208.7.1"],
    )?)?;
    let show = ok(s.veth_bridge(&["show"])?)?;
    let text = stdout(&show);
    ensure(
        text.contains(&s.bridge) && text.contains("10.208.7.1/24") && text.contains("10.208.7.3"),
        describe(&show),
    )?;
    ok(s.veth_bridge(&["disconnect", &s.bridge.clone(), "--netns", &one])?)?;
    ok(s.veth_bridge(&["disconnect", &s.bridge.clone(), "--netns", &two])?)?;
    ok(s.veth_bridge(&["bridge", "del", &s.bridge.clone()])?)?;
    ensure_eq(
        s.host_links()?,
        Vec::<String>::new(),
        "links left in the sandbox host",
    )?;
    ensure(
        !s.leases().exists(),
        "the leases directory survived bridge del",
    )
}

fn fifty_at_once() -> Result<(), Failed> {
    let mut s = Sandbox::new()?;
    let names: Vec<String> = (0..50)
        .map(|i| s.netns(&format!("c{i}")))
        .collect::<Result<_, _>>()?;
    ok(s.veth_bridge(&[
        "bridge",
        "add",
        &s.bridge.clone(),
        "--subnet",
        "10.208.8.0/24",
    ])?)?;
    let bin = support::bin("veth-bridge");
    let handles: Vec<_> = names
        .iter()
        .map(|name| {
            Command::new("nsenter")
                .arg(format!("--net={}", s.name("host")))
                .arg(&bin)
                .args(["connect", &s.bridge, "--netns", name])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    let mut addresses = Vec::new();
    for handle in handles {
        let out = ok(handle.wait_with_output()?)?;
        let text = stdout(&out);
        let addr = text
            .split_whitespace()
            .nth(3)
            .unwrap_or_default()
            .to_string();
        addresses.push(addr);
    }
    addresses.sort();
    addresses.dedup();
    ensure_eq(addresses.len(), 50, "distinct addresses")?;
    let leases = std::fs::read_dir(s.leases())?.count();
    ensure_eq(leases, 50, "leases")
}

fn failed_connect() -> Result<(), Failed> {
    let mut s = Sandbox::new()?;
    let one = s.netns("one")?;
    ok(s.veth_bridge(&[
        "bridge",
        "add",
        &s.bridge.clone(),
        "--subnet",
        "10.208.9.0/24",
    ])?)?;
    // An eth0 already in the namespace: the veth request fails after the
    // address was leased, and both must be taken back.
    ok(s.exec(
        "one",
        &[
            "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "other0",
        ],
    )?)?;
    let out = s.veth_bridge(&["connect", &s.bridge.clone(), "--netns", &one])?;
    ensure(
        out.status.code() == Some(125) && stderr(&out).lines().count() == 1,
        describe(&out),
    )?;
    ensure_eq(
        s.host_links()?,
        vec![s.bridge.clone()],
        "links left in the sandbox host",
    )?;
    ensure_eq(std::fs::read_dir(s.leases())?.count(), 0, "leases left")
}

fn bad_input() -> Result<(), Failed> {
    let mut s = Sandbox::new()?;
    let one = s.netns("one")?;
    let bridge = s.bridge.clone();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["bridge", "add", "a-name-far-too-long"],
            "the kernel's limit is 15",
        ),
        (
            vec!["bridge", "add", &bridge, "--subnet", "10.0.0.1/33"],
            "not a prefix length",
        ),
        (
            vec!["bridge", "add", &bridge, "--subnet", "300.1.1.1/24"],
            "not an IPv4 address",
        ),
        (
            vec!["connect", "nosuchbridge", "--netns", &one],
            "no bridge nosuchbridge",
        ),
        (
            vec!["connect", &bridge, "--netns", "no-such-netns"],
            "no bridge",
        ),
    ];
    for (args, says) in cases {
        let out = s.veth_bridge(&args)?;
        ensure(
            out.status.code() == Some(2) && stderr(&out).contains(says),
            format!("{args:?}: {}", describe(&out)),
        )?;
    }
    ok(s.veth_bridge(&["bridge", "add", &bridge, "--subnet", "10.208.10.0/24"])?)?;
    for (args, says) in [
        (
            vec!["connect", &bridge, "--netns", "no-such-netns"],
            "no-such-netns",
        ),
        (
            vec!["connect", &bridge, "--netns", &one, "--ip", "10.208.11.5"],
            "not a container address",
        ),
        (
            vec!["connect", &bridge, "--netns", &one, "--ip", "10.208.10.1"],
            "the gateway",
        ),
        (vec!["bridge", "add", &bridge], "exists already"),
    ] {
        let out = s.veth_bridge(&args)?;
        ensure(
            out.status.code() == Some(2) && stderr(&out).contains(says),
            format!("{args:?}: {}", describe(&out)),
        )?;
    }
    ensure_eq(
        s.host_links()?,
        vec![bridge.clone()],
        "links in the sandbox host",
    )?;
    ensure_eq(std::fs::read_dir(s.leases())?.count(), 0, "leases")
}

fn dry_run() -> Result<(), Failed> {
    let out = run(cmd("veth-bridge").args(["--dry-run", "bridge", "add", "ubdry"]))?;
    // Without root the netlink socket still opens; listing links needs none.
    ensure(out.status.success(), describe(&out))?;
    let text = stdout(&out);
    ensure(
        text.contains("RTM_NEWLINK {name ubdry, kind bridge}  ≡  ip link add ubdry type bridge")
            && text.contains("ip addr add 10.208.0.1/24 dev ubdry"),
        describe(&out),
    )
}
