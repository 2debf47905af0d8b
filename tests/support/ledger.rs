//! The leak ledger: what a test could leave on the host, written down
//! before it runs and again after, so that whatever is new at the end is
//! named — a mount, a network link, an nft table, a cgroup or a state file
//! of the toolkit's, a changed sysctl, a toolkit process still running.
//! Each test cleans up after itself; the ledger is what proves it, test by
//! test, also for the tests that passed. The ledger is the machine's, so
//! the tests it checks take turns; the suite takes one more around them
//! all, for what it keeps until the end.

use std::collections::BTreeSet;
use std::path::Path;

/// Everything watched, one line each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger(BTreeSet<String>);

/// The toolkit's programs, whose processes must not outlive a suite.
const PROGRAMS: [&str; 6] = [
    "mini-run",
    "ns-unshare",
    "cg-limit",
    "overlay-stack",
    "veth-bridge",
    "hog",
];

/// Files whose value the toolkit may change, and must give back.
const SYSCTLS: [&str; 3] = [
    "/proc/sys/net/ipv4/ip_forward",
    "/proc/sys/kernel/core_pattern",
    "/proc/sys/net/ipv4/conf/all/route_localnet",
];

impl Ledger {
    /// What is there now.
    pub fn take() -> Self {
        let mut lines = BTreeSet::new();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for line in mountinfo.lines() {
            let point = line.split(' ').nth(4).unwrap_or("");
            let fstype = line.split(" - ").nth(1).and_then(|r| r.split(' ').next());
            lines.insert(format!("mount {point} ({})", fstype.unwrap_or("?")));
        }
        for entry in std::fs::read_dir("/sys/class/net")
            .into_iter()
            .flatten()
            .flatten()
        {
            lines.insert(format!("link {}", entry.file_name().to_string_lossy()));
        }
        if let Ok(out) = std::process::Command::new("nft")
            .args(["list", "tables"])
            .output()
        {
            for table in String::from_utf8_lossy(&out.stdout).lines() {
                lines.insert(format!("nft {table}"));
            }
        }
        toolkit_cgroups(Path::new("/sys/fs/cgroup"), false, 8, &mut lines);
        for dir in ["/run/underhood", "/var/lib/underhood"] {
            files(Path::new(dir), 4, &mut lines);
        }
        for entry in std::fs::read_dir("/tmp").into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("underhood-") {
                lines.insert(format!("file /tmp/{name}"));
            }
        }
        for sysctl in SYSCTLS {
            if let Ok(value) = std::fs::read_to_string(sysctl) {
                lines.insert(format!("sysctl {sysctl} = {}", value.trim()));
            }
        }
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let pid = entry.file_name().to_string_lossy().into_owned();
            if !pid.chars().all(|c| c.is_ascii_digit()) {
                continue;
            }
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            // A zombie is dead already, waiting for its parent (or init)
            // to reap it.
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let state = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next());
            if PROGRAMS.contains(&comm.trim()) && !matches!(state, Some('Z' | 'X')) {
                lines.insert(format!("process {} {pid}", comm.trim()));
            }
        }
        Self(lines)
    }

    /// What is here now and was not in `before`.
    pub fn since(&self, before: &Ledger) -> Vec<String> {
        self.0.difference(&before.0).cloned().collect()
    }

    /// What is left after `before`, once the processes among it that are
    /// on their way out (killed by a test, or by their parent's death
    /// signal) have ended: each is waited for through a pidfd, for at most
    /// five seconds, and the ledger taken again.
    pub fn left_after(before: &Ledger) -> Vec<String> {
        let left = Ledger::take().since(before);
        let mut waited = false;
        for line in &left {
            let Some(pid) = line
                .strip_prefix("process ")
                .and_then(|rest| rest.rsplit(' ').next())
                .and_then(|pid| pid.parse::<i32>().ok())
            else {
                continue;
            };
            if let Ok(fd) = steps::sys::pidfd_open(nix::unistd::Pid::from_raw(pid)) {
                use std::os::fd::AsFd;
                let mut fds = [nix::poll::PollFd::new(
                    fd.as_fd(),
                    nix::poll::PollFlags::POLLIN,
                )];
                let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(5000u16));
                waited = true;
            }
        }
        if waited {
            Ledger::take().since(before)
        } else {
            left
        }
    }

    /// What a sandbox's network namespace (kept by a bind mount on
    /// `netns`) holds that the toolkit could change, as [`NETNS`] prints
    /// it. A network test takes it once its sandbox is set up, and again
    /// at the end, as the machine's ledger is taken around it.
    pub fn of_netns(netns: &Path) -> Result<Self, String> {
        let out = std::process::Command::new("nsenter")
            .arg(format!("--net={}", netns.display()))
            .args(["sh", "-ec", NETNS])
            .output()
            .map_err(|e| format!("nsenter --net={}: {e}", netns.display()))?;
        if !out.status.success() {
            return Err(format!(
                "the ledger of {}: {}",
                netns.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let mut ledger = Self::default();
        ledger.add_lines("", &String::from_utf8_lossy(&out.stdout), |_| true);
        Ok(ledger)
    }

    /// Adds the lines of `text` (what [`NETNS`] printed, run however the
    /// test enters its namespace) that `keep` keeps, after `prefix`.
    pub fn add_lines(&mut self, prefix: &str, text: &str, keep: impl Fn(&str) -> bool) {
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && keep(l))
        {
            self.0.insert(format!("{prefix}{line}"));
        }
    }

    /// Adds one line.
    pub fn add(&mut self, line: String) {
        self.0.insert(line);
    }

    /// Adds every line of `other`.
    pub fn extend(&mut self, other: Ledger) {
        self.0.extend(other.0);
    }

    /// How this ledger differs from `before`: `+ line` for what is new,
    /// `- line` for what is gone. Empty when they are the same.
    pub fn changes_since(&self, before: &Ledger) -> Vec<String> {
        let added = self.0.difference(&before.0).map(|l| format!("+ {l}"));
        let gone = before.0.difference(&self.0).map(|l| format!("- {l}"));
        added.chain(gone).collect()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Runs `test` under the ledger, alone: it fails if anything it made is
/// left when it ends (and a failed test's message names what it left).
pub fn checked(
    test: impl FnOnce() -> Result<(), libtest_mimic::Failed>,
) -> Result<(), libtest_mimic::Failed> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    // A test that panicked held the turn; the next takes it all the same.
    let _turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let before = Ledger::take();
    let outcome = test();
    let left = Ledger::left_after(&before);
    let named = left
        .iter()
        .map(|line| format!("\n  {line}"))
        .collect::<String>();
    match outcome {
        Ok(()) if left.is_empty() => {
            crate::tally::add(crate::tally::Tally::LedgerChecked, 1);
            Ok(())
        }
        Ok(()) => Err(format!("leak ledger: the test passed but left behind:{named}").into()),
        Err(failed) if left.is_empty() => Err(failed),
        Err(failed) => Err(format!(
            "{}\nleak ledger: and it left behind:{named}",
            failed.message().unwrap_or("")
        )
        .into()),
    }
}

/// A shell script that prints, a line each, what a network namespace
/// holds that the toolkit could change: its links and their flags (but
/// carrier, which a bridge loses with its last port and had before its
/// first), addresses and routes in every table (but IPv6 link-local ones
/// and their routes, which the kernel adds a while after a link gets
/// carrier, and takes with it), the nftables
/// ruleset by table and chain (with counters' values left out), and the
/// sysctls veth-bridge writes: forwarding, and route_localnet for all,
/// the defaults and each link.
pub const NETNS: &str = r#"
ip -o link show | sed -E 's/(LOWER_UP|NO-CARRIER|M-DOWN),?//g; s/,>/>/' |
    awk '{ sub(/@[^:]*:$/, ":", $2); print "link", $2, $3 }'
ip -o addr show | awk '$4 !~ /^fe80:/ { print "address", $2, $3, $4 }'
ip route show table all | grep -v 'fe80:' | sed -e 's/ linkdown//' -e 's/^/route /'
if command -v nft >/dev/null; then
    nft list ruleset | sed 's/counter packets [0-9]* bytes [0-9]*/counter/' |
        awk '$1 == "table" { t = $2 " " $3 } $1 == "chain" { c = $2 }
             { $1 = $1; if ($0 != "}" && $0 != "") print "nft", t, c ":", $0 }'
fi
echo "sysctl net.ipv4.ip_forward = $(cat /proc/sys/net/ipv4/ip_forward)"
grep -H . /proc/sys/net/ipv4/conf/*/route_localnet | sed 's/^/sysctl /'
"#;

/// The cgroups at or below a directory named `underhood` (the toolkit's
/// parents) or `underhood-…` (the bench's), in any hierarchy.
fn toolkit_cgroups(dir: &Path, inside: bool, depth: usize, lines: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = inside || name == "underhood" || name.starts_with("underhood-");
        if ours {
            lines.insert(format!("cgroup {}", entry.path().display()));
        }
        if depth > 0 {
            toolkit_cgroups(&entry.path(), ours, depth - 1, lines);
        }
    }
}

fn files(dir: &Path, depth: usize, lines: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        lines.insert(format!("file {}", entry.path().display()));
        if depth > 0 && entry.file_type().is_ok_and(|t| t.is_dir()) {
            files(&entry.path(), depth - 1, lines);
        }
    }
}
