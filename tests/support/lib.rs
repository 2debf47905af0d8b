//! Support for the integration tests: the toolkit's binaries, a harness in
//! which a test that cannot run here is reported *ignored* with its reason
//! (never passed), scratch directories, and guards that undo what a test
//! set up even when it fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

pub use lab::lesson::Requirement;

pub mod ledger;
pub mod tally;
use lab::machine::Machine;
pub use libtest_mimic::Failed;
use libtest_mimic::{Arguments, Trial};

/// The machine the tests run on, probed once.
pub fn machine() -> &'static Machine {
    static MACHINE: OnceLock<Machine> = OnceLock::new();
    MACHINE.get_or_init(Machine::probe)
}

/// Why a test cannot run here: what the machine lacks of `requires`,
/// each with how to get it. Empty when all are met.
pub fn unmet(requires: &[Requirement]) -> Vec<String> {
    requires
        .iter()
        .filter_map(|r| machine().check(*r).err())
        .collect()
}

/// The directory with the built binaries (`target/debug`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/test-HASH → target/debug
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// The path of one of the toolkit's binaries, built if it is not yet.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    if !path.exists() {
        static BUILD: OnceLock<()> = OnceLock::new();
        BUILD.get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "--workspace", "--bins"])
                .status()
                .expect("run cargo build");
            assert!(status.success(), "cargo build --workspace --bins failed");
        });
    }
    path
}

/// A command for one of the toolkit's binaries, with colour off and the
/// C locale so output is the same everywhere.
pub fn cmd(name: &str) -> Command {
    let mut command = Command::new(bin(name));
    command
        .env("LC_ALL", "C")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null());
    command
}

/// Runs a command to completion, killing it after `seconds`.
pub fn run_for(command: &mut Command, seconds: u64) -> Result<Output, Failed> {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {command:?}: {e}"))?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(seconds)) {
        Ok(output) => output.map_err(|e| format!("waiting for {command:?}: {e}").into()),
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            Err(format!("{command:?} did not finish within {seconds}s").into())
        }
    }
}

/// Runs a command with a 30 s limit.
pub fn run(command: &mut Command) -> Result<Output, Failed> {
    run_for(command, 30)
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Fails with `message` and both outputs unless `condition` holds.
pub fn ensure(condition: bool, message: impl std::fmt::Display) -> Result<(), Failed> {
    if condition {
        Ok(())
    } else {
        Err(message.to_string().into())
    }
}

/// Compares expected and actual, side by side, with the command's output.
pub fn ensure_eq<T: PartialEq + std::fmt::Debug>(
    actual: T,
    expected: T,
    what: &str,
) -> Result<(), Failed> {
    if actual == expected {
        Ok(())
    } else {
        Err(format!("{what}\n  expected: {expected:?}\n    actual: {actual:?}").into())
    }
}

/// Describes an output for failure messages.
pub fn describe(output: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status,
        stdout(output),
        stderr(output)
    )
}

/// What is wrong with `output` as `program`'s refusal of bad input, each
/// as a few words: the contract is exit `code`, one line on stderr that
/// starts `PROGRAM: ` and says each of `says`, and nothing on stdout.
/// Empty when it was refused as documented.
pub fn refusal_problems(output: &Output, program: &str, code: i32, says: &[&str]) -> Vec<String> {
    let err = stderr(output);
    let mut wrong = Vec::new();
    if output.status.code() != Some(code) {
        wrong.push(format!("exit {:?}, not {code}", output.status.code()));
    }
    if err.lines().count() != 1 || !err.starts_with(&format!("{program}: ")) {
        wrong.push(format!("not one line starting '{program}: '"));
    }
    for said in says {
        if !err.contains(said) {
            wrong.push(format!("does not say {said:?}"));
        }
    }
    if !output.stdout.is_empty() {
        wrong.push("wrote on stdout".to_string());
    }
    wrong
}

/// A temporary directory the given user can enter (tempfile's are 0700).
pub fn scratch() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("underhood-test-")
        .tempdir()
        .expect("scratch dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod scratch");
    dir
}

/// Kills a child's whole process group, and reaps the child, when dropped.
/// Spawn it with `process_group(0)` (see [`spawn_group`]) so that what it
/// forked — a namespace's pid 1, say — goes too.
#[derive(Debug)]
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(-(self.0.id() as i32));
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns a command in a process group of its own, guarded.
pub fn spawn_group(command: &mut Command) -> Result<ChildGuard, Failed> {
    use std::os::unix::process::CommandExt;
    let child = command
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start {command:?}: {e}"))?;
    Ok(ChildGuard(child))
}

/// A copy of one of the toolkit's binaries that any user can run (the
/// build tree may sit in a directory only root may enter). Make it before
/// the tests start their threads: a binary written while another thread
/// forks can fail to exec with ETXTBSY.
pub fn copy_for_any_user(name: &str, dir: &Path) -> PathBuf {
    let copy = dir.join(name);
    std::fs::copy(bin(name), &copy).expect("copy the binary");
    copy
}

/// Detaches a mount when dropped.
#[derive(Debug)]
pub struct MountGuard(pub PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Whether the tests run as root.
pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

type TestFn = Box<dyn FnOnce() -> Result<(), Failed> + Send>;

/// A set of tests in which each names what it needs from the machine.
#[derive(Default)]
pub struct Suite {
    trials: Vec<Trial>,
    skipped: Vec<(String, String)>,
    kept: Vec<tempfile::TempDir>,
}

impl std::fmt::Debug for Suite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Suite")
            .field("trials", &self.trials.len())
            .field("skipped", &self.skipped)
            .finish()
    }
}

impl Suite {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a test; if the machine lacks what it requires, it is reported
    /// ignored, with the reason printed before the run.
    pub fn test(
        &mut self,
        name: &str,
        requires: &[Requirement],
        test: impl FnOnce() -> Result<(), Failed> + Send + 'static,
    ) {
        self.add(name, unmet(requires), Box::new(test));
    }

    /// Adds a test that needs tools on `$PATH` as well.
    pub fn test_with_tools(
        &mut self,
        name: &str,
        requires: &[Requirement],
        tools: &[&str],
        test: impl FnOnce() -> Result<(), Failed> + Send + 'static,
    ) {
        let mut unmet = unmet(requires);
        for tool in tools {
            if lab::machine::which(tool).is_none() {
                unmet.push(format!("needs the program {tool}"));
            }
        }
        self.add(name, unmet, Box::new(test));
    }

    /// Adds a test that needs `requires`, and is skipped as well for a
    /// reason known to the caller (`skip`): a tool, a payload not built.
    pub fn test_if(
        &mut self,
        name: &str,
        requires: &[Requirement],
        skip: Option<String>,
        test: impl FnOnce() -> Result<(), Failed> + Send + 'static,
    ) {
        let mut unmet = unmet(requires);
        unmet.extend(skip);
        self.add(name, unmet, Box::new(test));
    }

    /// Adds a test that is skipped for a reason known to the caller.
    pub fn test_unless(
        &mut self,
        name: &str,
        skip: Option<String>,
        test: impl FnOnce() -> Result<(), Failed> + Send + 'static,
    ) {
        self.add(name, skip.into_iter().collect(), Box::new(test));
    }

    fn add(&mut self, name: &str, unmet: Vec<String>, test: TestFn) {
        let skip = !unmet.is_empty();
        if skip {
            self.skipped.push((name.to_string(), unmet.join("; ")));
        }
        // Root's tests make what the ledger watches: each is checked on
        // its own, one at a time.
        let test: TestFn = if is_root() {
            Box::new(move || ledger::checked(test))
        } else {
            test
        };
        self.trials
            .push(Trial::test(name, test).with_ignored_flag(skip));
    }

    /// Keeps a directory until the suite has run, then removes it.
    pub fn keep(&mut self, dir: tempfile::TempDir) {
        self.kept.push(dir);
    }

    /// Runs the suite and exits with libtest's status.
    pub fn run(self) -> ! {
        self.run_then(|_| None)
    }

    /// Runs the suite, prints what `summary` makes of how it went (a line
    /// for the README's count, say), and exits with libtest's status.
    pub fn run_then(self, summary: impl FnOnce(&libtest_mimic::Conclusion) -> Option<String>) -> ! {
        let args = Arguments::from_args();
        for (name, reason) in &self.skipped {
            println!("skipped: {name}: {reason}");
        }
        // Only root's tests make what the ledger watches; listing the
        // tests makes nothing.
        let before = (is_root() && !args.list).then(ledger::Ledger::take);
        let conclusion = libtest_mimic::run(&args, self.trials);
        drop(self.kept);
        if let Some(line) = summary(&conclusion) {
            println!("{line}");
        }
        if let Some(before) = before {
            // Each test was checked on its own; this is for what the suite
            // kept until the end.
            let left = ledger::Ledger::left_after(&before);
            let after = ledger::Ledger::take();
            if !left.is_empty() {
                println!("leak ledger: the suite left behind:");
                for line in &left {
                    println!("  {line}");
                }
                std::process::exit(1);
            }
            println!(
                "leak ledger: nothing left behind by {} tests checked one by one ({} mounts, links, tables, cgroups, files, sysctls and processes watched)",
                tally::count(tally::Tally::LedgerChecked),
                after.len()
            );
        }
        // One line tests/run adds up over the suites, for the README.
        if !args.list {
            println!("{}", tally::line());
        }
        conclusion.exit()
    }
}

// ---------------------------------------------------------------------------
// mini-run's containers, as the suites that run them check them

/// `$PATH` with the toolkit's binaries first.
pub fn toolkit_first() -> String {
    format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Runs a shell script in a network and mount namespace of its own (mounts
/// private), with the toolkit first on `$PATH`, given a minute: a "host"
/// of the test's, whose links, routes, firewall and (after a tmpfs over
/// /run) runtime state go with it.
pub fn in_own_network(script: &str) -> Result<Output, Failed> {
    run_for(
        Command::new("unshare")
            .args(["--net", "--mount", "--propagation", "private"])
            .args(["sh", "-c", script])
            .env("PATH", toolkit_first()),
        60,
    )
}

/// The cgroup directories named `name`, in any hierarchy.
pub fn cgroups_named(name: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, name: &str, depth: usize, found: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                if entry.file_name().to_string_lossy() == name {
                    found.push(path.clone());
                }
                if depth > 0 {
                    walk(&path, name, depth - 1, found);
                }
            }
        }
    }
    let mut found = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), name, 6, &mut found);
    found
}

/// Checks that the container with this short id left no state directory
/// and no cgroup.
pub fn left_nothing(id: &str) -> Result<(), Failed> {
    ensure(
        id.len() == 12 && id.chars().all(|c| c.is_ascii_hexdigit()),
        format!("the first line should be the container's short id, got {id:?}"),
    )?;
    let states: Vec<String> = std::fs::read_dir("/run/underhood/containers")
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(id))
                .collect()
        })
        .unwrap_or_default();
    ensure(states.is_empty(), format!("state left behind: {states:?}"))?;
    let cgroups = cgroups_named(&format!("mini-run-{id}"));
    ensure(
        cgroups.is_empty(),
        format!("cgroups left behind: {cgroups:?}"),
    )
}

/// `mini-run run ARGS…`, given a minute (the first run builds the rootfs).
/// On the machine's own network stack, which tests must leave alone, a
/// container gets `--network none` unless the test says otherwise; the
/// bridge tests run in a sandbox of their own.
pub fn mini_run(args: &[&str]) -> Result<Output, Failed> {
    run_for(
        cmd("mini-run")
            .args(["run", "--rm"])
            .args(no_network(args))
            .args(args),
        60,
    )
}

pub fn no_network(args: &[&str]) -> &'static [&'static str] {
    if args.contains(&"--network") {
        &[]
    } else {
        &["--network", "none"]
    }
}

/// Runs `script` in a default container after `args`; the container
/// prints its hostname first, and the test fails if it left anything.
pub fn container(args: &[&str], script: &str) -> Result<(Output, Vec<String>), Failed> {
    let script = format!("hostname; {script}");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--", "sh", "-c", &script]);
    let out = mini_run(&all)?;
    let lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
    if let Some(id) = lines.first() {
        left_nothing(id)?;
    }
    Ok((out, lines.into_iter().skip(1).collect()))
}

/// A copy of the default busybox rootfs at `dir/rootfs`, to plant things
/// in; a container is run first, which builds the rootfs if need be.
pub fn rootfs_copy(dir: &Path) -> Result<PathBuf, Failed> {
    let out = run_for(
        cmd("mini-run").args(["run", "--rm", "--network", "none", "--", "true"]),
        60,
    )?;
    ensure(out.status.success(), describe(&out))?;
    let root = dir.join("rootfs");
    let out = run_for(
        Command::new("cp")
            .args(["-a", "/var/cache/underhood/rootfs/default"])
            .arg(&root),
        60,
    )?;
    ensure(out.status.success(), describe(&out))?;
    Ok(root)
}

/// Reads a terminal's master until `want` shows in what was read, for at
/// most 20 seconds.
pub fn read_until(master: &std::fs::File, seen: &mut String, want: &str) -> Result<(), Failed> {
    use std::os::fd::AsFd;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut buffer = [0u8; 4096];
    while !seen.contains(want) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        ensure(
            !left.is_zero(),
            format!("no {want:?} on the terminal:\n{seen}"),
        )?;
        let mut fds = [nix::poll::PollFd::new(
            master.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let timeout = nix::poll::PollTimeout::try_from(left).unwrap_or(nix::poll::PollTimeout::MAX);
        if nix::poll::poll(&mut fds, timeout)? == 0 {
            continue;
        }
        let n = nix::unistd::read(master.as_fd(), &mut buffer)?;
        ensure(
            n > 0,
            format!("the terminal closed before {want:?}:\n{seen}"),
        )?;
        seen.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
    Ok(())
}

/// An unprivileged user for rootless runs: nobody, with a home and a
/// runtime directory of its own in a scratch directory, gone after.
#[derive(Debug)]
pub struct Nobody {
    pub dir: tempfile::TempDir,
}

impl Nobody {
    pub const ID: u32 = 65534;

    pub fn new() -> Result<Self, Failed> {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch();
        for sub in ["home", "run"] {
            let path = dir.path().join(sub);
            std::fs::create_dir(&path)?;
            std::os::unix::fs::lchown(&path, Some(Self::ID), Some(Self::ID))?;
        }
        std::fs::set_permissions(
            dir.path().join("run"),
            std::fs::Permissions::from_mode(0o700),
        )?;
        Ok(Self { dir })
    }

    pub fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    pub fn volumes(&self) -> PathBuf {
        self.dir.path().join("home/.local/share/underhood/volumes")
    }

    /// `mini-run` as nobody, with a user's environment and nothing else.
    pub fn mini_run(&self) -> std::process::Command {
        self.mini_run_after(&[])
    }

    /// The same, started by `prefix`, a command that ends by running the
    /// rest as root (`sh -c '…; exec "$@"' sh`).
    pub fn mini_run_after(&self, prefix: &[&str]) -> std::process::Command {
        let mut command = std::process::Command::new(prefix.first().unwrap_or(&"setpriv"));
        if !prefix.is_empty() {
            command.args(&prefix[1..]).arg("setpriv");
        }
        let id = Self::ID.to_string();
        command
            .args([&format!("--reuid={id}"), &format!("--regid={id}")])
            .args(["--clear-groups", "--"])
            .arg(bin("mini-run"))
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", self.dir.path().join("home"))
            .env("XDG_RUNTIME_DIR", self.run_dir());
        command
    }

    /// Nothing of mini-run's is left in nobody's runtime directory: no
    /// container's state, not even the directory that holds them.
    pub fn left_nothing(&self) -> Result<(), Failed> {
        let left = self.run_dir().join("underhood");
        ensure(
            !left.exists(),
            format!("left behind in the runtime directory: {:?}", walkdir(&left)),
        )
    }
}

pub fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            found.push(entry.path());
            found.extend(walkdir(&entry.path()));
        }
    }
    found
}
