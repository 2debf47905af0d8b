//! veth-bridge against the real kernel. Nothing here touches the machine's
//! own interfaces, routes or firewall: each test first makes a sandbox
//! "host" network namespace and runs veth-bridge inside it with
//! `nsenter --net=FILE`; its "containers" are more namespaces the test
//! made. Traffic only flows between them. Each namespace is kept alive by
//! a bind mount on a file in the test's scratch directory
//! (`unshare --net=FILE true`), not under /run/netns, so the machine's
//! mount table ends as it began.
//!
//! Every test that uses a sandbox runs through [`sandboxed`], which
//! writes down the sandbox's ledger — the host's links, addresses,
//! routes, ruleset and the sysctls veth-bridge writes, each container's
//! links, addresses and routes, the bridge's leases and the forwarding
//! mark — when the sandbox is made, and again when the test has passed:
//! a passing test whose veth-bridge commands left anything behind fails,
//! naming it line by line. What the test made by hand (a server, a link
//! to an "upstream" host) it takes back first; what veth-bridge made,
//! only veth-bridge's own commands may take back.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::tally::{self, Tally};
use support::{
    Failed, Requirement::*, Suite, cmd, describe, ensure, ensure_eq, run, scratch, stderr, stdout,
};

fn main() {
    let mut suite = Suite::new();
    let shared = scratch();
    let nobody_bin = support::copy_for_any_user("veth-bridge", shared.path());
    suite.keep(shared);
    suite.test_with_tools(
        "two_containers_ping_each_other_across_the_bridge",
        &[Root, Busybox],
        &["ip", "unshare", "nsenter"],
        || sandboxed(ping_across),
    );
    suite.test_with_tools(
        "fifty_concurrent_connects_get_fifty_addresses",
        &[Root],
        &["ip", "unshare", "nsenter"],
        || sandboxed(fifty_at_once),
    );
    suite.test_with_tools(
        "a_failed_connect_leaves_no_veth_and_no_lease",
        &[Root],
        &["ip", "unshare", "nsenter"],
        || sandboxed(failed_connect),
    );
    suite.test_with_tools(
        "bad_input_is_refused_in_one_line_before_anything_is_made",
        &[Root],
        &["ip", "unshare", "nsenter", "setpriv"],
        move || sandboxed(|s| bad_input(s, &nobody_bin)),
    );
    suite.test_with_tools(
        "a_published_port_answers_from_another_host_the_host_itself_and_the_bridge",
        &[Root, Busybox, Nft],
        &["ip", "unshare", "nsenter", "curl"],
        || sandboxed(published_port),
    );
    suite.test_with_tools(
        "outbound_nat_shows_the_upstream_host_the_hosts_address",
        &[Root, Busybox, Nft],
        &["ip", "unshare", "nsenter", "curl"],
        || sandboxed(outbound_nat),
    );
    suite.test_with_tools(
        "bad_nat_and_publish_requests_are_refused_and_leave_no_rule",
        &[Root, Nft],
        &["ip", "unshare", "nsenter"],
        || sandboxed(bad_publish),
    );
    suite.test_with_tools(
        "a_publish_that_fails_halfway_takes_back_its_rules_and_settings",
        &[Root, Nft],
        &["ip", "unshare", "nsenter"],
        || sandboxed(failed_publish),
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

/// The ledger of the sandbox's namespaces: support's, whose lines each
/// test compares at its end.
type NetLedger = support::ledger::Ledger;

/// Fails, naming each line, unless nothing changed since `before`.
fn same_as(now: &NetLedger, before: &NetLedger, when: &str) -> Result<(), Failed> {
    let changes = now.changes_since(before);
    ensure(
        changes.is_empty(),
        format!("{when}, the sandbox changed:\n  {}", changes.join("\n  ")),
    )
}

/// A container's namespace: lo's flags count (connect brings it up,
/// disconnect puts it down again), not the 127.0.0.1 and the routes the
/// kernel gave it when it came up, which it keeps down.
fn not_of_lo(line: &str) -> bool {
    !(line.starts_with("address lo ") || line.contains(" dev lo "))
}

/// Makes a sandbox, writes down its ledger, runs `test` in it, and when
/// the test passed, checks that the ledger is as it was. A test that
/// fails leaves the sandbox to its `Drop`.
fn sandboxed(test: impl FnOnce(&mut Sandbox) -> Result<(), Failed>) -> Result<(), Failed> {
    let mut sandbox = Sandbox::new()?;
    test(&mut sandbox)?;
    sandbox.finish()
}

mod sandbox {
    use super::*;

    /// Namespaces made for one test: the sandbox host, its containers,
    /// and hosts on its network; the ledger written when it was made.
    pub struct Sandbox {
        pub dir: tempfile::TempDir,
        made: Vec<PathBuf>,
        pub bridge: String,
        servers: Vec<Child>,
        /// The containers' namespaces, whose state the ledger holds.
        containers: Vec<String>,
        /// Links the test made on the host for its upstreams.
        upstreams: Vec<String>,
        before: NetLedger,
    }

    impl Sandbox {
        /// Only [`sandboxed`] makes one, so that every test using one
        /// has its ledger checked.
        pub(super) fn new() -> Result<Self, Failed> {
            static COUNT: AtomicUsize = AtomicUsize::new(0);
            let n = COUNT.fetch_add(1, Ordering::Relaxed);
            let mut sandbox = Self {
                dir: scratch(),
                made: Vec::new(),
                bridge: format!("ubt{}x{n}", std::process::id() % 10000),
                servers: Vec::new(),
                containers: Vec::new(),
                upstreams: Vec::new(),
                before: NetLedger::default(),
            };
            sandbox.make_netns("host")?;
            // A host's loopback is up; a new namespace's is not. And a
            // new namespace copies ip_forward from the machine's (on
            // where Docker runs): start from a fresh host's 0.
            ok(sandbox.exec("host", &["ip", "link", "set", "lo", "up"])?)?;
            ok(sandbox.exec(
                "host",
                &["sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward"],
            )?)?;
            sandbox.before = sandbox.ledger()?;
            Ok(sandbox)
        }

        /// The file that holds the namespace `short`.
        pub fn name(&self, short: &str) -> String {
            self.dir.path().join(short).display().to_string()
        }

        fn make_netns(&mut self, short: &str) -> Result<String, Failed> {
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

        /// A new, empty network namespace for a container, kept by a bind
        /// mount on a file; the ledger holds its state from now on.
        pub fn netns(&mut self, short: &str) -> Result<String, Failed> {
            let name = self.make_netns(short)?;
            let mut born = NetLedger::default();
            self.container_state(short, &mut born)?;
            self.before.extend(born);
            self.containers.push(short.into());
            Ok(name)
        }

        /// veth-bridge ARGS…, run in the sandbox host.
        pub fn veth_bridge(&self, args: &[&str]) -> Result<Output, Failed> {
            self.veth_bridge_as(&support::bin("veth-bridge"), &[], args)
        }

        /// `PREFIX… BIN ARGS…` in the sandbox host: veth-bridge as
        /// another user, say.
        pub fn veth_bridge_as(
            &self,
            bin: &Path,
            prefix: &[&str],
            args: &[&str],
        ) -> Result<Output, Failed> {
            run(Command::new("nsenter")
                .arg(format!("--net={}", self.name("host")))
                .args(prefix)
                .arg(bin)
                .args(args)
                .env("LC_ALL", "C"))
        }

        /// A command in one of the sandbox's namespaces.
        pub fn exec(&self, short: &str, args: &[&str]) -> Result<Output, Failed> {
            run(Command::new("nsenter")
                .arg(format!("--net={}", self.name(short)))
                .args(args))
        }

        /// Links the sandbox host to a namespace standing for another
        /// host on its network: `up0` 198.51.100.1/24 here, eth0
        /// 198.51.100.2/24 there (TEST-NET-2). That host has no route to
        /// any bridge's subnet. The sandbox takes it back before the
        /// ledger is checked.
        pub fn upstream(&mut self, short: &str) -> Result<String, Failed> {
            let name = self.make_netns(short)?;
            self.upstreams.push("up0".into());
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

        /// busybox httpd on port 80 in namespace `short`, serving
        /// `index.html` ("hello from SHORT") and `/cgi-bin/addr`, which
        /// answers with the client's address as the server sees it.
        /// Returns once it listens.
        pub fn serve(&mut self, short: &str) -> Result<(), Failed> {
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
        pub fn curl(&self, short: &str, url: &str) -> Result<String, Failed> {
            let out = ok(self.exec(short, &["curl", "-sS", "--max-time", "10", url])?)?;
            Ok(stdout(&out).trim().to_string())
        }

        /// The sandbox host's nftables ruleset, and whether it forwards.
        pub fn firewall(&self) -> Result<(String, String), Failed> {
            let rules = ok(self.exec("host", &["nft", "list", "ruleset"])?)?;
            let forwarding = ok(self.exec("host", &["cat", "/proc/sys/net/ipv4/ip_forward"])?)?;
            Ok((stdout(&rules), stdout(&forwarding).trim().to_string()))
        }

        /// The bridge's leases directory, veth-bridge's under /run.
        pub fn leases(&self) -> PathBuf {
            PathBuf::from("/run/underhood/net").join(&self.bridge)
        }

        /// The mark veth-bridge leaves while forwarding is on because it
        /// turned it on, in the sandbox host.
        fn forwarding_mark(&self) -> Result<PathBuf, Failed> {
            let host = std::fs::metadata(self.name("host"))?;
            Ok(PathBuf::from(format!(
                "/run/underhood/net/.forwarding-net:[{}]",
                host.ino()
            )))
        }

        fn container_state(&self, short: &str, ledger: &mut NetLedger) -> Result<(), Failed> {
            let out = ok(self.exec(short, &["sh", "-c", support::ledger::NETNS])?)?;
            ledger.add_lines(&format!("in {short}: "), &stdout(&out), not_of_lo);
            Ok(())
        }

        /// Everything veth-bridge could have made or changed here: the
        /// host's network and firewall, each container's network, the
        /// bridge's leases and the forwarding mark.
        pub fn ledger(&self) -> Result<NetLedger, Failed> {
            let mut ledger = NetLedger::default();
            let host = ok(self.exec("host", &["sh", "-c", support::ledger::NETNS])?)?;
            ledger.add_lines("", &stdout(&host), |_| true);
            for short in &self.containers {
                self.container_state(short, &mut ledger)?;
            }
            let leases = self.leases();
            if leases.exists() {
                ledger.add(format!("file {}", leases.display()));
                for path in support::walkdir(&leases) {
                    ledger.add(format!("file {}", path.display()));
                }
            }
            let mark = self.forwarding_mark()?;
            if mark.exists() {
                ledger.add(format!("file {}", mark.display()));
            }
            Ok(ledger)
        }

        /// After a test passed: what it made by hand goes, then what
        /// veth-bridge made must be gone already.
        pub(super) fn finish(mut self) -> Result<(), Failed> {
            self.stop_servers();
            for link in std::mem::take(&mut self.upstreams) {
                ok(self.exec("host", &["ip", "link", "del", &link])?)?;
            }
            same_as(&self.ledger()?, &self.before, "after the test passed")
        }

        fn stop_servers(&mut self) {
            for server in &mut self.servers {
                let _ = server.kill();
                let _ = server.wait();
            }
            self.servers.clear();
        }
    }

    impl Drop for Sandbox {
        /// Unmounting the namespaces' files takes them, and all their
        /// links and rules, with them. A test that passed was checked to
        /// leave none of veth-bridge's state under /run; for one that
        /// failed, the leases and the forwarding mark go here, last, so
        /// that the machine's ledger names only the failure.
        fn drop(&mut self) {
            self.stop_servers();
            if let Ok(mark) = self.forwarding_mark() {
                let _ = std::fs::remove_file(mark);
            }
            for file in &self.made {
                let _ = nix::mount::umount2(file, nix::mount::MntFlags::MNT_DETACH);
            }
            let _ = std::fs::remove_dir_all(self.leases());
            let _ = std::fs::remove_dir("/run/underhood/net");
            let _ = std::fs::remove_dir("/run/underhood");
        }
    }
}

use sandbox::Sandbox;

fn ok(output: Output) -> Result<Output, Failed> {
    ensure(output.status.success(), describe(&output))?;
    Ok(output)
}

fn ping_across(s: &mut Sandbox) -> Result<(), Failed> {
    let bridge = s.bridge.clone();
    let (one, two) = (s.netns("one")?, s.netns("two")?);
    ok(s.veth_bridge(&["bridge", "add", &bridge, "--subnet", "10.208.7.0/24"])?)?;
    let out = ok(s.veth_bridge(&["connect", &bridge, "--netns", &one])?)?;
    ensure(stdout(&out).contains("eth0 10.208.7.2/24"), describe(&out))?;
    ok(s.veth_bridge(&["connect", &bridge, "--netns", &two])?)?;
    let again = s.veth_bridge(&["connect", &bridge, "--netns", &two])?;
    ensure(
        again.status.code() == Some(2) && stderr(&again).contains("connected already"),
        describe(&again),
    )?;
    // Inside: eth0 with its address, lo up, the default route.
    let addr = ok(s.exec("one", &["ip", "-4", "-o", "addr", "show", "eth0"])?)?;
    ensure(stdout(&addr).contains("10.208.7.2/24"), describe(&addr))?;
    let lo = ok(s.exec("one", &["ip", "-o", "link", "show", "lo"])?)?;
    ensure(stdout(&lo).contains(",UP"), describe(&lo))?;
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
        text.contains(&bridge) && text.contains("10.208.7.1/24") && text.contains("10.208.7.3"),
        describe(&show),
    )?;
    // The ledger checks that these took everything back, lo's state in
    // the containers included.
    ok(s.veth_bridge(&["disconnect", &bridge, "--netns", &one])?)?;
    ok(s.veth_bridge(&["disconnect", &bridge, "--netns", &two])?)?;
    ok(s.veth_bridge(&["bridge", "del", &bridge])?)?;
    Ok(())
}

/// `veth-bridge COMMAND BRIDGE --netns NAME` for every name at once;
/// each one's output.
fn all_at_once(s: &Sandbox, command: &str, names: &[String]) -> Result<Vec<Output>, Failed> {
    let bin = support::bin("veth-bridge");
    let handles: Vec<_> = names
        .iter()
        .map(|name| {
            Command::new("nsenter")
                .arg(format!("--net={}", s.name("host")))
                .arg(&bin)
                .args([command, &s.bridge, "--netns", name])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    handles
        .into_iter()
        .map(|handle| ok(handle.wait_with_output()?))
        .collect()
}

fn fifty_at_once(s: &mut Sandbox) -> Result<(), Failed> {
    let bridge = s.bridge.clone();
    let names: Vec<String> = (0..50)
        .map(|i| s.netns(&format!("c{i}")))
        .collect::<Result<_, _>>()?;
    ok(s.veth_bridge(&["bridge", "add", &bridge, "--subnet", "10.208.8.0/24"])?)?;
    let mut addresses: Vec<String> = all_at_once(s, "connect", &names)?
        .iter()
        .map(|out| {
            stdout(out)
                .split_whitespace()
                .nth(3)
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    addresses.sort();
    addresses.dedup();
    ensure_eq(addresses.len(), 50, "distinct addresses")?;
    let leases = std::fs::read_dir(s.leases())?.count();
    ensure_eq(leases, 50, "leases")?;
    // And fifty disconnects at once give them all back.
    all_at_once(s, "disconnect", &names)?;
    ok(s.veth_bridge(&["bridge", "del", &bridge])?)?;
    Ok(())
}

fn failed_connect(s: &mut Sandbox) -> Result<(), Failed> {
    let bridge = s.bridge.clone();
    let one = s.netns("one")?;
    ok(s.veth_bridge(&["bridge", "add", &bridge, "--subnet", "10.208.9.0/24"])?)?;
    // An eth0 already in the namespace: the veth request fails after the
    // address was leased and lo was left as it was, and both must be
    // taken back.
    ok(s.exec(
        "one",
        &[
            "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "other0",
        ],
    )?)?;
    let before = s.ledger()?;
    let out = s.veth_bridge(&["connect", &bridge, "--netns", &one])?;
    ensure(
        out.status.code() == Some(125) && stderr(&out).lines().count() == 1,
        describe(&out),
    )?;
    same_as(&s.ledger()?, &before, "after the failed connect")?;
    ok(s.exec("one", &["ip", "link", "del", "eth0"])?)?;
    ok(s.veth_bridge(&["bridge", "del", &bridge])?)?;
    Ok(())
}

/// A value veth-bridge must refuse: what is wrong with it, the command
/// line, the exit status, and what the one line must say (the flag or
/// the value, and the way out).
struct Refusal {
    what: String,
    args: Vec<String>,
    code: i32,
    says: Vec<String>,
}

fn refusal(what: &str, args: &[&str], code: i32, says: &[&str]) -> Refusal {
    Refusal {
        what: what.into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        code,
        says: says.iter().map(|a| a.to_string()).collect(),
    }
}

/// Runs each refusal (after `prefix`, as `bin`) and checks it: the exit
/// status, one line on stderr beginning `veth-bridge: ` and saying what
/// it should, and a sandbox whose ledger is as it was. Counts the ones
/// that passed; fails naming all the others.
fn refused(s: &Sandbox, bin: &Path, prefix: &[&str], refusals: &[Refusal]) -> Result<(), Failed> {
    let before = s.ledger()?;
    let mut problems = Vec::new();
    for r in refusals {
        let args: Vec<&str> = r.args.iter().map(String::as_str).collect();
        let out = s.veth_bridge_as(bin, prefix, &args)?;
        let says: Vec<&str> = r.says.iter().map(String::as_str).collect();
        let mut wrong = support::refusal_problems(&out, "veth-bridge", r.code, &says);
        let changes = s.ledger()?.changes_since(&before);
        if !changes.is_empty() {
            wrong.push(format!("changed the sandbox: {}", changes.join("; ")));
        }
        if wrong.is_empty() {
            tally::add(Tally::BadInput, 1);
        } else {
            problems.push(format!(
                "{} {:?}: {}\n    {}",
                r.what,
                r.args,
                wrong.join(", "),
                describe(&out).replace('\n', "\n    ")
            ));
        }
    }
    ensure(
        problems.is_empty(),
        format!(
            "{} of {} bad inputs were not refused as documented:\n  {}",
            problems.len(),
            refusals.len(),
            problems.join("\n  ")
        ),
    )
}

/// The bad-input table: names, interface names over 15 bytes, subnets,
/// addresses, ports, namespaces that are missing or are none, and a user
/// who is not root. veth-bridge reads no file of its own (no YAML), so
/// there is none to give it malformed. Exit 2 is bad usage, 125 a tool
/// that cannot work here (`veth-bridge --help`, "Exit status").
fn bad_input(s: &mut Sandbox, nobody_bin: &Path) -> Result<(), Failed> {
    let b = s.bridge.clone();
    let b = b.as_str();
    // A second bridge's name, for bridge add: the first exists.
    let new = format!("{b}n");
    let new = new.as_str();
    let one = s.netns("one")?;
    let two = s.netns("two")?;
    ok(s.veth_bridge(&["bridge", "add", b, "--subnet", "10.208.10.0/24"])?)?;
    ok(s.veth_bridge(&["connect", b, "--netns", &one])?)?;
    let plain = s.dir.path().join("plain");
    std::fs::write(&plain, "not a namespace\n")?;
    let plain = plain.display().to_string();
    let dir = s.dir.path().display().to_string();
    let long = "x".repeat(300);
    let name = |arg: &str, says: &str| {
        refusal(
            "a bridge name",
            &["bridge", "add", arg],
            2,
            &["bridge ", says, "choose another name"],
        )
    };
    let subnet = |cidr: &str, says: &str| {
        refusal(
            "a subnet",
            &["bridge", "add", new, "--subnet", cidr],
            2,
            &["--subnet", says],
        )
    };
    let ip = |addr: &str, says: &str| {
        refusal(
            "an --ip",
            &["connect", b, "--netns", &two, "--ip", addr],
            2,
            &["--ip", says],
        )
    };
    let netns = |args: &[&str], says: &str| {
        let mut all = vec!["connect", b];
        all.extend(args);
        refusal("a namespace", &all, 2, &[says])
    };
    let publish = |mapping: &str, says: &str| {
        refusal(
            "a published port",
            &["publish", b, "--to", "10.208.10.2", "--", mapping],
            2,
            &["HOSTPORT:CTRPORT", says],
        )
    };
    let unpublish = |port: &str, says: &str| {
        refusal(
            "an unpublished port",
            &["unpublish", b, "--", port],
            2,
            &["HOSTPORT", says],
        )
    };
    let cases = vec![
        // Names: the kernel's rules, and those of the files and nft rules
        // a name goes into.
        name("../x", "\"../x\" has characters other than"),
        name("a/b", "\"a/b\" has characters other than"),
        name("", "\"\" is empty"),
        name(&long, "is 300 bytes long; the kernel's limit is 15"),
        name("a\nb", "\"a\\nb\" has characters other than"),
        name("é", "\"é\" has characters other than"),
        name("..", "\"..\" is not a name"),
        refusal(
            "a name with a leading -",
            &["bridge", "add", "-x"],
            2,
            &["'-x'", "use '-- -x'"],
        ),
        refusal(
            "a name with a leading -",
            &["bridge", "add", "--", "-x"],
            2,
            &["\"-x\" does not start with a letter or a digit"],
        ),
        // Interface names over 15 bytes: the limit is in bytes.
        name(
            "abcdefghijklmnop",
            "is 16 bytes long; the kernel's limit is 15",
        ),
        name("éééééééé", "is 16 bytes long; the kernel's limit is 15"),
        refusal(
            "a bridge name",
            &["connect", "../x", "--netns", &two],
            2,
            &["\"../x\""],
        ),
        refusal(
            "a bridge name",
            &["disconnect", "a/b", "--netns", &one],
            2,
            &["\"a/b\""],
        ),
        refusal("a bridge name", &["nat", "", "on"], 2, &["\"\" is empty"]),
        refusal(
            "a bridge name",
            &["publish", &long, "8080:80", "--to", "10.208.10.2"],
            2,
            &["is 300 bytes long"],
        ),
        refusal(
            "a bridge name",
            &["bridge", "del", "a\nb"],
            2,
            &["\"a\\nb\""],
        ),
        refusal(
            "a bridge name in use",
            &["bridge", "add", b],
            2,
            &[&format!("a link named {b} exists already")],
        ),
        refusal(
            "a bridge that is not there",
            &["connect", "nosuch", "--netns", &two],
            2,
            &["no bridge nosuch of the toolkit's", "bridge add nosuch"],
        ),
        refusal(
            "a link that is not the toolkit's",
            &["bridge", "del", "lo"],
            2,
            &["lo is not a bridge of the toolkit's", "ip link del lo"],
        ),
        refusal(
            "a bridge still in use",
            &["bridge", "del", b],
            2,
            &["still has 1 namespace connected", "disconnect them first"],
        ),
        // Subnets.
        subnet(
            "10.0.0.1/33",
            "\"/33\" is not a prefix length: give 16 to 30",
        ),
        subnet("300.1.1.1/24", "\"300.1.1.1\" is not an IPv4 address"),
        subnet("10.0.0.0/8", "/8 is wider than one bridge should be"),
        subnet("abc", "\"abc\" is not a subnet: write it as A.B.C.D/N"),
        subnet("10.0.0.0", "\"10.0.0.0\" is not a subnet"),
        subnet("10.0.0.0/", "\"/\" is not a prefix length"),
        subnet("", "\"\" is not a subnet"),
        subnet(
            "10.0.0.1/24",
            "has host bits set: the subnet is 10.0.0.0/24",
        ),
        subnet("10.0.0.0/31", "/31 leaves no room"),
        subnet("127.0.0.0/24", "the loopback range"),
        subnet("224.0.0.0/24", "the multicast range"),
        subnet("169.254.0.0/16", "the link-local range"),
        subnet("10.208.10.0/24", &format!("overlaps 10.208.10.1/24 on {b}")),
        subnet("10.208.0.0/16", &format!("overlaps 10.208.10.1/24 on {b}")),
        // Addresses.
        ip("abc", "\"abc\": not an IPv4 address"),
        ip("10.208.10.300", "\"10.208.10.300\": not an IPv4 address"),
        ip("10.208.10.1", "10.208.10.1: not a container address"),
        ip("10.208.10.0", "10.208.10.0: not a container address"),
        ip("10.208.10.255", "10.208.10.255: not a container address"),
        ip("10.208.11.5", "10.208.11.5: not a container address"),
        ip("10.208.10.2", "10.208.10.2: taken by"),
        // Namespaces: missing, not a namespace, not a network one, the
        // host's own, one connected already.
        netns(&["--netns", "/nonexistent"], "/nonexistent: no such file"),
        netns(&["--netns", "nosuch"], "/run/netns/nosuch: no such file"),
        netns(&["--netns", &plain], "is not a namespace file"),
        netns(&["--netns", &dir], "is not a namespace file"),
        netns(
            &["--netns", "/proc/self/ns/pid"],
            "a namespace of another kind, not a network namespace",
        ),
        netns(
            &["--netns", "/proc/self/ns/net"],
            "veth-bridge's own network namespace",
        ),
        netns(&["--netns", ""], "--netns \"\" is empty"),
        netns(
            &["--netns", "a\nb"],
            "--netns \"a\\nb\" has a control character",
        ),
        netns(&["--pid", "0"], "--pid 0 is no process"),
        netns(
            &["--pid", "99999999"],
            "/proc/99999999/ns/net: no such file",
        ),
        netns(&["--pid", "-1"], "'-1'"),
        netns(&["--pid", "abc"], "invalid value 'abc' for '--pid <PID>'"),
        netns(&[], "--netns"),
        netns(&["--netns", &one], "is connected already"),
        refusal(
            "a namespace",
            &["disconnect", b, "--netns", &plain],
            2,
            &["is not a namespace file"],
        ),
        refusal(
            "a namespace not connected",
            &["disconnect", b, "--netns", &two],
            2,
            &["is not connected to", "veth-bridge show"],
        ),
        // Ports.
        publish("0:80", "\"0\" is not a port: give 1 to 65535"),
        publish("65536:80", "\"65536\" is not a port"),
        publish("-1:80", "\"-1\" is not a port"),
        publish("abc:80", "\"abc\" is not a port"),
        publish(
            "18446744073709551616:80",
            "\"18446744073709551616\" is not a port",
        ),
        publish("+8080:80", "\"+8080\" is not a port"),
        publish("8080:0", "\"0\" is not a port"),
        publish("8080:65536", "\"65536\" is not a port"),
        publish("8080:-1", "\"-1\" is not a port"),
        publish("8080:abc", "\"abc\" is not a port"),
        publish("8080", "\"8080\" is not a mapping: write HOSTPORT:CTRPORT"),
        publish("", "\"\" is not a mapping"),
        publish(
            "8080:80/sctp",
            "\"/sctp\" is not a protocol: give /tcp or /udp",
        ),
        unpublish("0", "\"0\" is not a port"),
        unpublish("65536", "\"65536\" is not a port"),
        unpublish("-1", "\"-1\" is not a port"),
        unpublish("abc", "\"abc\" is not a port"),
        unpublish(
            "18446744073709551616",
            "\"18446744073709551616\" is not a port",
        ),
        unpublish("8080:80", "\"8080:80\" is not a port"),
        unpublish("8080/sctp", "\"/sctp\" is not a protocol"),
        refusal(
            "a nat state",
            &["nat", b, "maybe"],
            2,
            &["invalid value 'maybe'", "on, off"],
        ),
    ];
    refused(s, &support::bin("veth-bridge"), &[], &cases)?;
    // Not root: every command that changes something says so, and
    // changes nothing. The state is read-only to everyone: show works.
    let nobody = [
        "setpriv",
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
    ];
    let not_root = |command: &str, args: &[&str]| {
        refusal(
            "not root",
            args,
            125,
            &[
                &format!("{command} changes the network"),
                "needs root (CAP_NET_ADMIN)",
                "run it with sudo",
            ],
        )
    };
    let cases = vec![
        not_root("bridge add", &["bridge", "add", new]),
        not_root("bridge del", &["bridge", "del", b]),
        not_root("connect", &["connect", b, "--netns", &two]),
        not_root("disconnect", &["disconnect", b, "--netns", &one]),
        not_root("nat", &["nat", b, "on"]),
        not_root("nat", &["nat", b, "off"]),
        not_root("publish", &["publish", b, "8080:80", "--to", "10.208.10.2"]),
        not_root("unpublish", &["unpublish", b, "8080"]),
    ];
    refused(s, nobody_bin, &nobody, &cases)?;
    let show = ok(s.veth_bridge_as(nobody_bin, &nobody, &["show"])?)?;
    ensure(stdout(&show).contains("10.208.10.2"), describe(&show))?;
    ok(s.veth_bridge(&["disconnect", b, "--netns", &one])?)?;
    ok(s.veth_bridge(&["bridge", "del", b])?)?;
    Ok(())
}

fn published_port(s: &mut Sandbox) -> Result<(), Failed> {
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
    ensure_eq(forwarding.as_str(), "0", "ip_forward after the last rule")
}

fn outbound_nat(s: &mut Sandbox) -> Result<(), Failed> {
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

fn bad_publish(s: &mut Sandbox) -> Result<(), Failed> {
    let bridge = s.bridge.clone();
    let b = bridge.as_str();
    let one = s.netns("one")?;
    ok(s.veth_bridge(&["bridge", "add", b, "--subnet", "10.208.14.0/24"])?)?;
    ok(s.veth_bridge(&["connect", b, "--netns", &one])?)?;
    let publish = |mapping: &str, to: &str, says: &[&str]| {
        refusal("a publish", &["publish", b, mapping, "--to", to], 2, says)
    };
    let cases = vec![
        publish("8080", "10.208.14.2", &["HOSTPORT:CTRPORT"]),
        publish("8080:0", "10.208.14.2", &["not a port"]),
        publish("8080:80/sctp", "10.208.14.2", &["/tcp or /udp"]),
        publish("8080:80", "10.208.15.2", &["--to 10.208.15.2 is not in"]),
        publish(
            "8080:80",
            "10.208.14.9",
            &["no namespace is connected", "connect one first"],
        ),
        publish(
            "8080:80",
            "nowhere",
            &["--to \"nowhere\": not an IPv4 address"],
        ),
        refusal(
            "a publish",
            &["publish", "nosuch", "8080:80", "--to", "10.208.14.2"],
            2,
            &["no bridge nosuch"],
        ),
        refusal(
            "an unpublish",
            &["unpublish", b, "8080"],
            2,
            &["not published", "veth-bridge show"],
        ),
        refusal("a nat", &["nat", "nosuch", "on"], 2, &["no bridge nosuch"]),
    ];
    refused(s, &support::bin("veth-bridge"), &[], &cases)?;
    let (rules, forwarding) = s.firewall()?;
    ensure_eq(rules.trim(), "", "rules after refused requests")?;
    ensure_eq(
        forwarding.as_str(),
        "0",
        "ip_forward after refused requests",
    )?;
    // The same host port twice, even for another protocol's sake: named.
    ok(s.veth_bridge(&["publish", b, "8080:80", "--to", "10.208.14.2"])?)?;
    let twice = s.veth_bridge(&["publish", b, "8080:81", "--to", "10.208.14.2"])?;
    ensure(
        twice.status.code() == Some(2)
            && stderr(&twice).contains("published already, to 10.208.14.2:80"),
        describe(&twice),
    )?;
    ok(s.veth_bridge(&["publish", b, "8080:53/udp", "--to", "10.208.14.2"])?)?;
    ok(s.veth_bridge(&["unpublish", b, "8080"])?)?;
    ok(s.veth_bridge(&["unpublish", b, "8080/udp"])?)?;
    let (rules, forwarding) = s.firewall()?;
    ensure_eq(rules.trim(), "", "rules after unpublish")?;
    ensure_eq(forwarding.as_str(), "0", "ip_forward after unpublish")?;
    ok(s.veth_bridge(&["disconnect", b, "--netns", &one])?)?;
    ok(s.veth_bridge(&["bridge", "del", b])?)?;
    Ok(())
}

fn failed_publish(s: &mut Sandbox) -> Result<(), Failed> {
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
    ensure(
        !rules.contains("chain prerouting") && !rules.contains("chain guard"),
        format!("the chains the failed publish added must go:\n{rules}"),
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
    )?;
    // The table the test made goes by hand; the rest by veth-bridge.
    ok(s.exec("host", &["nft", "delete", "table", "ip", "underhood"])?)?;
    ok(s.veth_bridge(&["disconnect", &bridge, "--netns", &one])?)?;
    ok(s.veth_bridge(&["bridge", "del", &bridge])?)?;
    Ok(())
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
    /// and in the namespaces `inside`, as the sandboxed tests' ledger
    /// has it, and the files under this sandbox's own /run.
    fn state(&self, inside: &[&str]) -> Result<NetLedger, Failed> {
        let mut ledger = NetLedger::default();
        let host = self.sh(&format!(
            "{}\nfind /run | sed 's/^/file /'",
            support::ledger::NETNS
        ))?;
        ledger.add_lines("", &host, |_| true);
        for netns in inside {
            let network = self.sh(&format!(
                "nsenter --net={netns} sh -c '{}'",
                support::ledger::NETNS.replace('\'', "'\\''")
            ))?;
            ledger.add_lines(&format!("in {netns}: "), &network, not_of_lo);
        }
        Ok(ledger)
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
        let same = |what: String| same_as(&s.state(&self.inside)?, &before, &what);
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
