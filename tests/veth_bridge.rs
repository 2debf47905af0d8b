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

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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
    suite.test_with_tools(
        "a_published_port_answers_from_another_host_the_host_itself_and_the_bridge",
        &[Root, Busybox, Nft],
        &["ip", "unshare", "nsenter", "curl"],
        published_port,
    );
    suite.test_with_tools(
        "outbound_nat_shows_the_upstream_host_the_hosts_address",
        &[Root, Busybox, Nft],
        &["ip", "unshare", "nsenter", "curl"],
        outbound_nat,
    );
    suite.test_with_tools(
        "bad_nat_and_publish_requests_are_refused_and_leave_no_rule",
        &[Root, Nft],
        &["ip", "unshare", "nsenter"],
        bad_publish,
    );
    suite.test_with_tools(
        "a_publish_that_fails_halfway_takes_back_its_rules_and_settings",
        &[Root, Nft],
        &["ip", "unshare", "nsenter"],
        failed_publish,
    );
    for (name, walk) in [
        (
            "a_fault_after_any_step_of_bridge_add_leaves_nothing",
            faults_in_bridge_add as fn() -> _,
        ),
        (
            "a_fault_after_any_step_of_connect_leaves_nothing",
            faults_in_connect,
        ),
        (
            "a_fault_after_any_step_of_nat_on_leaves_nothing",
            faults_in_nat_on,
        ),
        (
            "a_fault_after_any_step_of_publish_leaves_nothing",
            faults_in_publish,
        ),
    ] {
        suite.test_with_tools(
            name,
            &[Root, Nft],
            &["ip", "unshare", "nsenter", "nft"],
            walk,
        );
    }
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
    servers: Vec<Child>,
}

impl Sandbox {
    fn new() -> Result<Self, Failed> {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let mut sandbox = Self {
            dir: scratch(),
            made: Vec::new(),
            bridge: format!("ubt{}x{n}", std::process::id() % 10000),
            servers: Vec::new(),
        };
        sandbox.netns("host")?;
        // A host's loopback is up; a new namespace's is not. And a new
        // namespace copies ip_forward from the machine's (on where Docker
        // runs): start from a fresh host's 0.
        ok(sandbox.exec("host", &["ip", "link", "set", "lo", "up"])?)?;
        ok(sandbox.exec(
            "host",
            &["sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward"],
        )?)?;
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

    /// Links the sandbox host to a namespace standing for another host
    /// on its network: `up0` 198.51.100.1/24 here, eth0 198.51.100.2/24
    /// there (TEST-NET-2). That host has no route to any bridge's subnet.
    fn upstream(&mut self, short: &str) -> Result<String, Failed> {
        let name = self.netns(short)?;
        for (ns, line) in [
            (
                "host",
                format!("ip link add up0 type veth peer name eth0 netns {name}"),
            ),
            ("host", "ip addr add 198.51.100.1/24 dev up0".into()),
            ("host", "ip link set up0 up".into()),
            (short, "ip link set lo up".into()),
            (short, "ip addr add 198.51.100.2/24 dev eth0".into()),
            (short, "ip link set eth0 up".into()),
        ] {
            ok(self.exec(ns, &line.split(' ').collect::<Vec<_>>())?)?;
        }
        Ok(name)
    }

    /// busybox httpd on port 80 in namespace `short`, serving `index.html`
    /// ("hello from SHORT") and `/cgi-bin/addr`, which answers with the
    /// client's address as the server sees it. Returns once it listens.
    fn serve(&mut self, short: &str) -> Result<(), Failed> {
        let www = self.dir.path().join(format!("www-{short}"));
        std::fs::create_dir_all(www.join("cgi-bin"))?;
        std::fs::write(www.join("index.html"), format!("hello from {short}\n"))?;
        let cgi = www.join("cgi-bin/addr");
        std::fs::write(
            &cgi,
            "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"$REMOTE_ADDR\"\n",
        )?;
        std::fs::set_permissions(&cgi, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.name(short)))
            .args(["busybox", "httpd", "-f", "-p", "80", "-h"])
            .arg(&www)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.servers.push(child);
        // Wait for the listening socket itself (state 0A in /proc/net/tcp).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let tcp = ok(self.exec(short, &["cat", "/proc/net/tcp", "/proc/net/tcp6"])?)?;
            if stdout(&tcp).lines().any(|l| {
                l.split_whitespace()
                    .nth(1)
                    .is_some_and(|a| a.ends_with(":0050"))
                    && l.split_whitespace().nth(3) == Some("0A")
            }) {
                return Ok(());
            }
            ensure(
                Instant::now() < deadline,
                format!("httpd in {short} never listened"),
            )?;
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// curl URL from namespace `short`: what it printed.
    fn curl(&self, short: &str, url: &str) -> Result<String, Failed> {
        let out = ok(self.exec(short, &["curl", "-sS", "--max-time", "10", url])?)?;
        Ok(stdout(&out).trim().to_string())
    }

    /// The sandbox host's nftables ruleset, and whether it forwards.
    fn firewall(&self) -> Result<(String, String), Failed> {
        let rules = ok(self.exec("host", &["nft", "list", "ruleset"])?)?;
        let forwarding = ok(self.exec("host", &["cat", "/proc/sys/net/ipv4/ip_forward"])?)?;
        Ok((stdout(&rules), stdout(&forwarding).trim().to_string()))
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
        for server in &mut self.servers {
            let _ = server.kill();
            let _ = server.wait();
        }
        // The mark veth-bridge leaves while it has forwarding on.
        if let Ok(host) = std::fs::metadata(self.name("host")) {
            let _ = std::fs::remove_file(format!(
                "/run/underhood/net/.forwarding-net:[{}]",
                host.ino()
            ));
        }
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

fn published_port() -> Result<(), Failed> {
    let mut s = Sandbox::new()?;
    let bridge = s.bridge.clone();
    let (web, other) = (s.netns("web")?, s.netns("other")?);
    s.upstream("far")?;
    ok(s.veth_bridge(&["bridge", "add", &bridge, "--subnet", "10.208.12.0/24"])?)?;
    ok(s.veth_bridge(&["connect", &bridge, "--netns", &web])?)?;
    ok(s.veth_bridge(&["connect", &bridge, "--netns", &other])?)?;
    s.serve("web")?;
    let out = ok(s.veth_bridge(&["publish", &bridge, "8080:80", "--to", "10.208.12.2"])?)?;
    ensure(
        stdout(&out).contains("8080/tcp → 10.208.12.2:80"),
        describe(&out),
    )?;
    let (rules, forwarding) = s.firewall()?;
    ensure(
        rules.contains("chain prerouting")
            && rules.contains("chain output")
            && rules.matches("dnat to 10.208.12.2:80").count() == 2,
        format!("DNAT in prerouting and in output:\n{rules}"),
    )?;
    ensure_eq(
        forwarding.as_str(),
        "1",
        "ip_forward while a port is published",
    )?;
    // Another host on the network: it reaches the container, which sees
    // the client's own address, as with docker run -p.
    ensure_eq(
        s.curl("far", "http://198.51.100.1:8080/")?,
        "hello from web".into(),
        "from another host",
    )?;
    ensure(
        s.curl("far", "http://198.51.100.1:8080/cgi-bin/addr")?
            .contains("198.51.100.2"),
        "the container sees the far client's address",
    )?;
    // The host itself, by its own address and by 127.0.0.1 (OUTPUT DNAT,
    // route_localnet, and the masquerade for replies).
    ensure_eq(
        s.curl("host", "http://198.51.100.1:8080/")?,
        "hello from web".into(),
        "from the host",
    )?;
    ensure_eq(
        s.curl("host", "http://127.0.0.1:8080/")?,
        "hello from web".into(),
        "from 127.0.0.1",
    )?;
    // Hairpin: another container on the bridge, and the container itself.
    ensure_eq(
        s.curl("other", "http://10.208.12.1:8080/")?,
        "hello from web".into(),
        "from the bridge",
    )?;
    ensure_eq(
        s.curl("other", "http://198.51.100.1:8080/")?,
        "hello from web".into(),
        "from the bridge, by the host's other address",
    )?;
    ensure_eq(
        s.curl("web", "http://10.208.12.1:8080/")?,
        "hello from web".into(),
        "from the container itself",
    )?;
    let show = ok(s.veth_bridge(&["show"])?)?;
    ensure(
        stdout(&show).contains("published 8080/tcp  → 10.208.12.2:80"),
        describe(&show),
    )?;
    // Disconnecting the container takes its published port with it; the
    // last rule takes the table, and forwarding goes back off.
    ok(s.veth_bridge(&["disconnect", &bridge, "--netns", &web])?)?;
    ok(s.veth_bridge(&["disconnect", &bridge, "--netns", &other])?)?;
    ok(s.veth_bridge(&["bridge", "del", &bridge])?)?;
    let (rules, forwarding) = s.firewall()?;
    ensure_eq(rules.trim(), "", "rules left")?;
    ensure_eq(forwarding.as_str(), "0", "ip_forward after the last rule")?;
    ensure_eq(s.host_links()?, vec!["up0".to_string()], "links left")?;
    ensure(!s.leases().exists(), "the leases survived bridge del")
}

fn outbound_nat() -> Result<(), Failed> {
    let mut s = Sandbox::new()?;
    let bridge = s.bridge.clone();
    let one = s.netns("one")?;
    s.upstream("far")?;
    s.serve("far")?;
    ok(s.veth_bridge(&["bridge", "add", &bridge, "--subnet", "10.208.13.0/24"])?)?;
    ok(s.veth_bridge(&["connect", &bridge, "--netns", &one])?)?;
    let out = ok(s.veth_bridge(&["nat", &bridge, "on"])?)?;
    ensure(
        stdout(&out).contains("NAT on for 10.208.13.0/24"),
        describe(&out),
    )?;
    let again = ok(s.veth_bridge(&["nat", &bridge, "on"])?)?;
    ensure(
        stdout(&again).contains("NAT is on already"),
        describe(&again),
    )?;
    // The far host has no route to 10.208.13.0/24: only masquerade lets
    // the container through, and the far host sees the host's address.
    let seen = s.curl("one", "http://198.51.100.2/cgi-bin/addr")?;
    ensure(
        seen.contains("198.51.100.1") && !seen.contains("10.208.13."),
        format!("the far host saw {seen:?}"),
    )?;
    let (rules, _) = s.firewall()?;
    ensure(
        rules.contains(&format!(
            "ip saddr 10.208.13.0/24 oifname != \"{bridge}\" masquerade"
        )),
        rules,
    )?;
    let show = ok(s.veth_bridge(&["show"])?)?;
    ensure(stdout(&show).contains("nat on"), describe(&show))?;
    ok(s.veth_bridge(&["nat", &bridge, "off"])?)?;
    let (rules, forwarding) = s.firewall()?;
    ensure_eq(rules.trim(), "", "rules after nat off")?;
    ensure_eq(forwarding.as_str(), "0", "ip_forward after nat off")?;
    // bridge del takes NAT with it too.
    ok(s.veth_bridge(&["nat", &bridge, "on"])?)?;
    ok(s.veth_bridge(&["disconnect", &bridge, "--netns", &one])?)?;
    ok(s.veth_bridge(&["bridge", "del", &bridge])?)?;
    let (rules, forwarding) = s.firewall()?;
    ensure_eq(rules.trim(), "", "rules after bridge del")?;
    ensure_eq(forwarding.as_str(), "0", "ip_forward after bridge del")
}

fn bad_publish() -> Result<(), Failed> {
    let mut s = Sandbox::new()?;
    let bridge = s.bridge.clone();
    let one = s.netns("one")?;
    ok(s.veth_bridge(&["bridge", "add", &bridge, "--subnet", "10.208.14.0/24"])?)?;
    ok(s.veth_bridge(&["connect", &bridge, "--netns", &one])?)?;
    for (args, says) in [
        (
            vec!["publish", &bridge, "8080", "--to", "10.208.14.2"],
            "HOSTPORT:CTRPORT",
        ),
        (
            vec!["publish", &bridge, "8080:0", "--to", "10.208.14.2"],
            "not a port",
        ),
        (
            vec!["publish", &bridge, "8080:80/sctp", "--to", "10.208.14.2"],
            "/tcp or /udp",
        ),
        (
            vec!["publish", &bridge, "8080:80", "--to", "10.208.15.2"],
            "not in",
        ),
        (
            vec!["publish", &bridge, "8080:80", "--to", "10.208.14.9"],
            "no namespace is connected",
        ),
        (
            vec!["publish", &bridge, "8080:80", "--to", "nowhere"],
            "not an IPv4 address",
        ),
        (
            vec!["publish", "nosuch", "8080:80", "--to", "10.208.14.2"],
            "no bridge nosuch",
        ),
        (vec!["unpublish", &bridge, "8080"], "not published"),
        (vec!["nat", "nosuch", "on"], "no bridge nosuch"),
    ] {
        let out = s.veth_bridge(&args)?;
        ensure(
            out.status.code() == Some(2)
                && stderr(&out).contains(says)
                && stderr(&out).lines().count() == 1,
            format!("{args:?}: {}", describe(&out)),
        )?;
    }
    let (rules, forwarding) = s.firewall()?;
    ensure_eq(rules.trim(), "", "rules after refused requests")?;
    ensure_eq(
        forwarding.as_str(),
        "0",
        "ip_forward after refused requests",
    )?;
    // The same host port twice, even for another protocol's sake: named.
    ok(s.veth_bridge(&["publish", &bridge, "8080:80", "--to", "10.208.14.2"])?)?;
    let twice = s.veth_bridge(&["publish", &bridge, "8080:81", "--to", "10.208.14.2"])?;
    ensure(
        twice.status.code() == Some(2)
            && stderr(&twice).contains("published already, to 10.208.14.2:80"),
        describe(&twice),
    )?;
    ok(s.veth_bridge(&["publish", &bridge, "8080:53/udp", "--to", "10.208.14.2"])?)?;
    ok(s.veth_bridge(&["unpublish", &bridge, "8080"])?)?;
    ok(s.veth_bridge(&["unpublish", &bridge, "8080/udp"])?)?;
    let (rules, forwarding) = s.firewall()?;
    ensure_eq(rules.trim(), "", "rules after unpublish")?;
    ensure_eq(forwarding.as_str(), "0", "ip_forward after unpublish")
}

fn failed_publish() -> Result<(), Failed> {
    let mut s = Sandbox::new()?;
    let bridge = s.bridge.clone();
    let one = s.netns("one")?;
    ok(s.veth_bridge(&["bridge", "add", &bridge, "--subnet", "10.208.16.0/24"])?)?;
    ok(s.veth_bridge(&["connect", &bridge, "--netns", &one])?)?;
    // A chain "output" of the wrong type in the toolkit's table: the
    // DNAT rule for it fails after the prerouting rule and the guard were
    // added.
    ok(s.exec(
        "host",
        &["nft", "add table ip underhood; add chain ip underhood output { type filter hook output priority 0; }"],
    )?)?;
    let out = s.veth_bridge(&["publish", &bridge, "8080:80", "--to", "10.208.16.2"])?;
    ensure(
        out.status.code() == Some(125) && stderr(&out).lines().count() == 1,
        describe(&out),
    )?;
    let (rules, forwarding) = s.firewall()?;
    ensure(
        !rules.contains("dnat") && !rules.contains("comment"),
        format!("rules left after the failed publish:\n{rules}"),
    )?;
    ensure(
        rules.contains("chain output"),
        format!("the table it did not make must stay:\n{rules}"),
    )?;
    ensure_eq(
        forwarding.as_str(),
        "0",
        "ip_forward after the failed publish",
    )?;
    let localnet = ok(s.exec(
        "host",
        &[
            "cat",
            &format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet"),
        ],
    )?)?;
    ensure_eq(
        stdout(&localnet).trim(),
        "0",
        "route_localnet after the failed publish",
    )
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

/// A network and mount namespace of the test's own, with a tmpfs over
/// /run, held by a sleeping process: its links, routes, firewall and
/// sysctls, veth-bridge's leases and marks under /run, and the
/// "containers'" namespaces (bound on files in that /run) all go with it
/// when it is dropped. Nothing of the machine's is seen or changed.
struct OwnNetwork {
    holder: support::ChildGuard,
}

impl OwnNetwork {
    fn new() -> Result<Self, Failed> {
        use std::io::BufRead;
        let mut holder = support::spawn_group(
            Command::new("unshare")
                .args(["--net", "--mount", "--propagation", "private", "sh", "-c"])
                .arg(
                    "mount -t tmpfs sandbox /run && ip link set lo up && \
                     echo 0 > /proc/sys/net/ipv4/ip_forward && echo ready && exec sleep 100000",
                )
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        )?;
        let mut line = String::new();
        std::io::BufReader::new(holder.0.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
        ensure_eq(line.trim(), "ready", "the sandbox's set-up")?;
        Ok(Self { holder })
    }

    /// `nsenter` into the sandbox's network and mount namespaces.
    fn enter(&self) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--target={}", self.holder.0.id()))
            .args(["--net", "--mount"])
            .env("LC_ALL", "C");
        command
    }

    fn exec(&self, args: &[&str]) -> Result<Output, Failed> {
        support::run_for(self.enter().args(args), 60)
    }

    fn sh(&self, script: &str) -> Result<String, Failed> {
        Ok(stdout(&ok(self.exec(&["sh", "-c", script])?)?))
    }

    /// veth-bridge ARGS… in the sandbox, with `UNDERHOOD_FAULT=fault`.
    fn veth_bridge(&self, args: &[&str], fault: Option<&str>) -> Result<Output, Failed> {
        let mut command = self.enter();
        command.arg(support::bin("veth-bridge")).args(args);
        if let Some(fault) = fault {
            command.env(steps::fault::VARIABLE, fault);
        }
        support::run_for(&mut command, 60)
    }

    /// A new network namespace, bound on /run/SHORT in the sandbox.
    fn netns(&self, short: &str) -> Result<String, Failed> {
        let file = format!("/run/{short}");
        self.sh(&format!("touch {file} && unshare --net={file} true"))?;
        Ok(file)
    }

    /// Everything a veth-bridge command can make or change in the sandbox
    /// and in the namespaces `inside`, as text to compare: links (name and
    /// whether up; a bridge's MAC and carrier follow its ports), IPv4
    /// addresses and routes, the ruleset, the sysctls it writes, and the
    /// files under /run.
    fn state(&self, inside: &[&str]) -> Result<String, Failed> {
        const NETWORK: &str = r#"ip -o link show | sed -E 's/^[0-9]+: ([^:@]+)[^<]*<([^>]*)>.*/\1 <\2>/; s/(LOWER_UP|NO-CARRIER|M-DOWN),?//g; s/,>/>/'
            ip -4 -o addr show | sed -E 's/^[0-9]+: //; s/ +valid_lft.*//'
            ip -4 route show table all | sed 's/ linkdown//'"#;
        let mut text = self.sh(&format!(
            "{NETWORK}
            nft list ruleset
            echo ip_forward=$(cat /proc/sys/net/ipv4/ip_forward)
            grep -H . /proc/sys/net/ipv4/conf/*/route_localnet
            find /run | sort"
        ))?;
        for netns in inside {
            text.push_str(&format!("--- in {netns}\n"));
            let network = self.sh(&format!(
                "nsenter --net={netns} sh -c '{}'",
                NETWORK.replace('\'', "'\\''")
            ))?;
            // lo's flags count (a failed connect puts it down again), not
            // the 127.0.0.1 the kernel gave it when it came up, which it
            // keeps down.
            for line in network.lines().filter(|l| {
                let lo_address = l.starts_with("lo ") && l.contains(" inet ");
                !(lo_address || l.contains(" dev lo "))
            }) {
                text.push_str(line);
                text.push('\n');
            }
        }
        Ok(text)
    }
}

/// One command's walk: its `--dry-run` plan's steps, and for each step N
/// that fail@N fails with 125 and one line, int@N stops with 130 and one
/// line, and both leave the sandbox as it was; and that kill@N leaves it
/// as it was once `cleanup` (the command's inverse) has run. Nothing is
/// taken back by hand.
struct Walk<'a> {
    sandbox: &'a OwnNetwork,
    command: Vec<&'a str>,
    cleanup: Vec<&'a str>,
    inside: Vec<&'a str>,
}

impl Walk<'_> {
    fn run(&self) -> Result<(), Failed> {
        let s = self.sandbox;
        let plan = ok(s.veth_bridge(&[&["--dry-run"], &self.command[..]].concat(), None)?)?;
        let steps: Vec<String> = stdout(&plan)
            .lines()
            .filter(|l| l.chars().nth(3) == Some('.'))
            .map(String::from)
            .collect();
        ensure(!steps.is_empty(), describe(&plan))?;
        let before = s.state(&self.inside)?;
        let same = |what: String| -> Result<(), Failed> {
            let after = s.state(&self.inside)?;
            ensure(
                after == before,
                format!("{what}: left in the sandbox\n--- before\n{before}--- after\n{after}"),
            )
        };
        for n in 1..=steps.len() {
            let after = &steps[n - 1];
            for (fault, code, says) in [
                ("fail", 125, format!("injected failure after step {n}")),
                ("int", 130, format!("stopped by SIGINT after step {n}")),
            ] {
                let out = s.veth_bridge(&self.command, Some(&format!("{fault}@{n}")))?;
                ensure(
                    out.status.code() == Some(code)
                        && stderr(&out).lines().count() == 1
                        && stderr(&out).contains(&says),
                    format!("{fault}@{n}, after {after}\n{}", describe(&out)),
                )?;
                same(format!("{fault}@{n}, after {after}"))?;
                support::tally::add(support::tally::Tally::FaultPoint, 1);
            }
            let out = s.veth_bridge(&self.command, Some(&format!("kill@{n}")))?;
            ensure(
                std::os::unix::process::ExitStatusExt::signal(&out.status) == Some(9),
                format!("kill@{n}, after {after}\n{}", describe(&out)),
            )?;
            let cleanup = s.veth_bridge(&self.cleanup, None)?;
            ensure(
                cleanup.status.success(),
                format!(
                    "kill@{n}, after {after}: {:?}\n{}",
                    self.cleanup,
                    describe(&cleanup)
                ),
            )?;
            same(format!("kill@{n}, after {after}, then {:?}", self.cleanup))?;
            support::tally::add(support::tally::Tally::FaultPoint, 1);
        }
        Ok(())
    }
}

/// A bridge in a sandbox of its own, and (with `connected`) a namespace
/// connected to it at 10.208.20.2.
fn bridge_in_own_network(connected: bool) -> Result<(OwnNetwork, Vec<String>), Failed> {
    let s = OwnNetwork::new()?;
    ok(s.veth_bridge(
        &["bridge", "add", "ub0", "--subnet", "10.208.20.0/24"],
        None,
    )?)?;
    let mut inside = Vec::new();
    if connected {
        let one = s.netns("one")?;
        ok(s.veth_bridge(&["connect", "ub0", "--netns", &one], None)?)?;
        inside.push(one);
    }
    Ok((s, inside))
}

fn faults_in_bridge_add() -> Result<(), Failed> {
    let s = OwnNetwork::new()?;
    // The leases directory, veth-bridge's mark that the bridge is its
    // own, is made first: killed after any step, bridge del takes the
    // rest back.
    Walk {
        sandbox: &s,
        command: vec!["bridge", "add", "ub0", "--subnet", "10.208.20.0/24"],
        cleanup: vec!["bridge", "del", "ub0"],
        inside: vec![],
    }
    .run()
}

fn faults_in_connect() -> Result<(), Failed> {
    let (s, _) = bridge_in_own_network(false)?;
    let one = s.netns("one")?;
    Walk {
        sandbox: &s,
        command: vec!["connect", "ub0", "--netns", &one],
        cleanup: vec!["disconnect", "ub0", "--netns", &one],
        inside: vec![&one],
    }
    .run()
}

fn faults_in_nat_on() -> Result<(), Failed> {
    let (s, inside) = bridge_in_own_network(true)?;
    Walk {
        sandbox: &s,
        command: vec!["nat", "ub0", "on"],
        cleanup: vec!["nat", "ub0", "off"],
        inside: inside.iter().map(String::as_str).collect(),
    }
    .run()
}

fn faults_in_publish() -> Result<(), Failed> {
    let (s, inside) = bridge_in_own_network(true)?;
    Walk {
        sandbox: &s,
        command: vec!["publish", "ub0", "8080:80", "--to", "10.208.20.2"],
        cleanup: vec!["unpublish", "ub0", "8080"],
        inside: inside.iter().map(String::as_str).collect(),
    }
    .run()
}
