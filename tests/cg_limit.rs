//! cg-limit against the real kernel, on whichever cgroup version the machine
//! has (the host here is v1/hybrid; tests/vm/run runs the same tests on a
//! cgroup v2 kernel): limits that hold, measured; the summary a learner
//! reads; the exit status; signals; clean-up after every ending; bad input.
//!
//! Tests that measure time or CPU share hold [`MEASURING`], so that no other
//! test of this suite competes with them for the CPUs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::{
    Failed, Requirement::*, Suite, cmd, describe, ensure, ensure_eq, run, run_for, scratch,
    spawn_group, stderr, stdout,
};

static MEASURING: Mutex<()> = Mutex::new(());

/// Held by tests that make cgroups meant to outlive a run (`create`, a
/// killed run), and by the one that cleans up without names.
static CLEANING: Mutex<()> = Mutex::new(());

fn main() {
    support::bin("hog");
    let mut suite = Suite::new();
    let shared = scratch();
    let nobody_bin = support::copy_for_any_user("cg-limit", shared.path());
    suite.keep(shared);
    suite.test("as_a_user_it_says_root_is_needed", &[Root], move || {
        unprivileged(&nobody_bin)
    });
    suite.test("stats_streams_a_table_every_second", &[Root], stats_stream);
    suite.test(
        "cleanup_without_names_removes_every_unheld_cgroup",
        &[Root],
        cleanup_all,
    );
    suite.test(
        "memory_limit_oom_kills_and_the_summary_says_so",
        &[Root],
        oom_kill,
    );
    suite.test(
        "memory_under_the_limit_survives_with_its_peak",
        &[Root],
        memory_peak,
    );
    suite.test(
        "cpus_half_holds_the_command_to_half_a_cpu",
        &[Root],
        cpu_quota,
    );
    suite.test(
        "cpu_weights_share_a_contended_cpu_in_proportion",
        &[Root],
        cpu_weights,
    );
    suite.test("pids_limit_refuses_the_eleventh_task", &[Root], pids_limit);
    suite.test(
        "pids_limit_leaves_the_cgroup_working",
        &[Root],
        pids_cgroup_survives,
    );
    suite.test_with_tools(
        "io_write_limit_holds_on_a_loop_device",
        &[Root],
        &["losetup"],
        io_limit,
    );
    suite.test(
        "the_command_is_in_the_cgroup_before_it_runs",
        &[Root],
        joined_before_exec,
    );
    suite.test("exit_status_is_the_commands", &[Root], exit_status);
    suite.test(
        "processes_left_behind_are_killed_and_counted",
        &[Root],
        leftovers_killed,
    );
    suite.test(
        "sigterm_reaches_the_command_and_the_cgroup_goes",
        &[Root],
        || signal_forwarded(Signal::SIGTERM),
    );
    suite.test(
        "sigint_reaches_the_command_and_the_cgroup_goes",
        &[Root],
        || signal_forwarded(Signal::SIGINT),
    );
    suite.test_with_tools(
        "ctrl_c_at_the_terminal_reaches_the_command_once",
        &[Root],
        &["setsid"],
        ctrl_c_once,
    );
    suite.test(
        "sigkill_leaves_a_cgroup_that_cleanup_removes",
        &[Root],
        sigkill_then_cleanup,
    );
    suite.test("cleanup_keeps_a_cgroup_in_use", &[Root], cleanup_keeps_held);
    suite.test(
        "a_nested_cgroup_is_held_to_its_parents_limit",
        &[Root],
        nested_inherits,
    );
    suite.test("stats_shows_a_running_cgroup", &[Root], stats_running);
    suite.test(
        "a_name_in_use_is_refused_and_nothing_leaks",
        &[Root],
        name_in_use,
    );
    suite.test(
        "a_missing_command_exits_127_and_leaves_nothing",
        &[Root],
        missing_command,
    );
    suite.test(
        "a_fault_after_any_step_of_a_run_leaves_nothing",
        &[Root],
        || {
            let name = format!("t-fault-run-{}", std::process::id());
            walk_faults(
                &name,
                &["--memory", "64m", "--name", &name, "--quiet", "--", "true"],
            )
        },
    );
    suite.test(
        "a_fault_after_any_step_of_a_nested_run_leaves_nothing",
        &[Root],
        || {
            // The run makes the cgroup above, and undoes it too; killed, it
            // leaves it for cleanup, which cannot tell it from a created one.
            let outer = format!("t-fault-nest-{}", std::process::id());
            let name = format!("{outer}/inner");
            walk_faults(
                &outer,
                &["--pids", "8", "--name", &name, "--quiet", "--", "true"],
            )
        },
    );
    suite.test(
        "a_fault_after_any_step_of_create_leaves_nothing",
        &[Root],
        || {
            let name = format!("t-fault-create-{}", std::process::id());
            walk_faults(&name, &["create", &name, "--memory", "64m"])
        },
    );
    suite.test("dry_run_prints_the_plan_and_touches_nothing", &[], dry_run);
    suite.test(
        "explain_narrates_which_file_gets_which_value",
        &[Root],
        explain,
    );
    suite.test(
        "bad_input_is_refused_in_one_line_before_any_side_effect",
        &[],
        bad_input,
    );
    suite.run()
}

// --- helpers -------------------------------------------------------------------

/// Every directory of the toolkit cgroup `name`, in any hierarchy: found by
/// walking /sys/fs/cgroup, not by asking cg-limit.
fn dirs_of(name: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, name: &str, depth: usize, found: &mut Vec<PathBuf>) {
        if depth > 10 {
            return;
        }
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = entry.path();
            if entry.file_name() == "underhood" && path.join(name).is_dir() {
                found.push(path.join(name));
            }
            walk(&path, name, depth + 1, found);
        }
    }
    let mut found = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), name, 0, &mut found);
    found
}

fn ensure_gone(name: &str) -> Result<(), Failed> {
    let left = dirs_of(name);
    ensure(
        left.is_empty(),
        format!("cgroup {name} was left behind: {left:?}"),
    )
}

/// Removes the cgroup `name` when dropped, if a failing test left it.
struct Tidy<S: AsRef<str>>(S);

impl<S: AsRef<str>> Drop for Tidy<S> {
    fn drop(&mut self) {
        let name = self.0.as_ref();
        if !dirs_of(name).is_empty() {
            let _ = run(cmd("cg-limit").args(["cleanup", name]));
        }
    }
}

/// Polls `condition` until it holds, failing after `seconds`: waiting for
/// a state, never for a guessed time.
fn wait_until(what: &str, seconds: u64, mut condition: impl FnMut() -> bool) -> Result<(), Failed> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !condition() {
        if Instant::now() > deadline {
            return Err(format!("timed out waiting until {what}").into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// The processes in a cgroup: read from its first directory.
fn procs_of(name: &str) -> Vec<i32> {
    dirs_of(name)
        .first()
        .and_then(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

/// What a shell would show: the code, or 128 + the signal.
fn shell_status(output: &Output) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    output
        .status
        .code()
        .unwrap_or_else(|| 128 + output.status.signal().unwrap_or(0))
}

/// The number before " CPUs" in a line that has one.
fn cpus_in(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.trim_start().starts_with(prefix))
        .find_map(|l| {
            let before = l.split(" CPUs").next()?;
            before.rsplit([' ', '=']).next()?.parse().ok()
        })
}

/// cg-limit with the toolkit (hog, cg-limit) first on the command's $PATH.
fn limited(args: &[&str]) -> Command {
    let mut command = cmd("cg-limit");
    let mut dirs = vec![support::bin_dir()];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    command
        .env("PATH", std::env::join_paths(dirs).expect("a PATH"))
        .args(args);
    command
}

// --- limits that hold ----------------------------------------------------------

fn oom_kill() -> Result<(), Failed> {
    let _tidy = Tidy("t-oom");
    let output = run(&mut limited(&[
        "--memory", "32M", "--name", "t-oom", "--", "hog", "memory", "100M",
    ]))?;
    let err = stderr(&output);
    ensure_eq(shell_status(&output), 137, "a SIGKILLed command gives 137")?;
    ensure(
        err.contains(
            "t-oom was killed by the kernel OOM killer: memory limit 32M reached (exit 137)",
        ),
        describe(&output),
    )?;
    ensure(
        err.contains("; 1 OOM kill") || err.contains("OOM kills"),
        describe(&output),
    )?;
    // It got as far as the limit allows, not further.
    let last = stdout(&output)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    ensure(
        [
            "allocated 8M",
            "allocated 16M",
            "allocated 24M",
            "allocated 32M",
        ]
        .contains(&last.as_str()),
        format!(
            "hog got to {last:?} under a 32M limit\n{}",
            describe(&output)
        ),
    )?;
    ensure_gone("t-oom")
}

fn memory_peak() -> Result<(), Failed> {
    let _tidy = Tidy("t-peak");
    let output = run(&mut limited(&[
        "--memory", "64M", "--name", "t-peak", "--", "hog", "memory", "24M",
    ]))?;
    ensure_eq(shell_status(&output), 0, "hog stays under its limit")?;
    let err = stderr(&output);
    let peak = err
        .lines()
        .find_map(|l| l.trim().strip_prefix("memory  peak "))
        .unwrap_or_default();
    // 24M of hog's own, plus the program and its libraries.
    let megabytes: f64 = peak
        .split_once('M')
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or(0.0);
    ensure(
        (24.0..40.0).contains(&megabytes) && peak.contains("of 64M; no OOM kill"),
        format!("peak line {peak:?}\n{}", describe(&output)),
    )?;
    ensure_gone("t-peak")
}

fn cpu_quota() -> Result<(), Failed> {
    let _measuring = MEASURING.lock();
    let _tidy = Tidy("t-half");
    let output = run(&mut limited(&[
        "--cpus",
        "0.5",
        "--name",
        "t-half",
        "--",
        "hog",
        "cpu",
        "4",
        "--threads",
        "2",
    ]))?;
    ensure_eq(shell_status(&output), 0, "hog cpu ends well")?;
    let out = stdout(&output);
    let err = stderr(&output);
    // What hog measured itself, and what the kernel accounted.
    let seen_by_hog = cpus_in(&out, "used").ok_or_else(|| describe(&output))?;
    let accounted = cpus_in(&err, "cpu").ok_or_else(|| describe(&output))?;
    for (who, cpus) in [("hog", seen_by_hog), ("the cgroup", accounted)] {
        ensure(
            (0.475..=0.525).contains(&cpus),
            format!(
                "{who} used {cpus} CPUs under --cpus 0.5 (allowed 0.475..0.525)\n{}",
                describe(&output)
            ),
        )?;
    }
    ensure(err.contains("throttled in "), describe(&output))?;
    ensure_gone("t-half")
}

fn cpu_weights() -> Result<(), Failed> {
    let _measuring = MEASURING.lock();
    let _light = Tidy("t-weight-100");
    let _heavy = Tidy("t-weight-300");
    // Both pinned to CPU 0, so they compete for it.
    let spawn = |weight: &str, name: &str| {
        let mut command = limited(&[
            "--cpu-weight",
            weight,
            "--name",
            name,
            "--quiet",
            "--",
            "hog",
            "cpu",
            "3",
            "--pin",
            "0",
        ]);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        command.spawn()
    };
    let light = spawn("100", "t-weight-100")?;
    let heavy = spawn("300", "t-weight-300")?;
    let light = light.wait_with_output()?;
    let heavy = heavy.wait_with_output()?;
    let light_cpus = cpus_in(&stdout(&light), "used").ok_or_else(|| describe(&light))?;
    let heavy_cpus = cpus_in(&stdout(&heavy), "used").ok_or_else(|| describe(&heavy))?;
    let ratio = heavy_cpus / light_cpus;
    // The weights promise the ratio, not the total: on a busy machine
    // (the VM lane's vCPU shares the host) the two together may get well
    // under one CPU. The total only has to show that both really ran.
    ensure(
        (2.0..=4.5).contains(&ratio) && heavy_cpus + light_cpus > 0.5,
        format!(
            "weights 300 and 100 on one CPU got {heavy_cpus} and {light_cpus} CPUs (ratio {ratio:.2}, expected about 3)"
        ),
    )?;
    ensure_gone("t-weight-100")?;
    ensure_gone("t-weight-300")
}

fn pids_limit() -> Result<(), Failed> {
    let _tidy = Tidy("t-pids");
    let output = run(&mut limited(&[
        "--pids", "10", "--name", "t-pids", "--", "hog", "forks", "20",
    ]))?;
    // hog and 9 children make 10 tasks: the 11th is refused.
    ensure_eq(
        stdout(&output).trim(),
        "started 9 children; fork 10 failed: resource temporarily unavailable (EAGAIN)",
        "hog's report",
    )?;
    ensure_eq(
        shell_status(&output),
        1,
        "hog exits 1 when a fork is refused",
    )?;
    ensure(
        stderr(&output).contains("pids    peak 10 of 10")
            && stderr(&output).contains("1 fork refused (EAGAIN)"),
        describe(&output),
    )?;
    ensure_gone("t-pids")
}

fn pids_cgroup_survives() -> Result<(), Failed> {
    let _tidy = Tidy("t-pids-on");
    let output = run(&mut limited(&[
        "--pids",
        "10",
        "--name",
        "t-pids-on",
        "--",
        "sh",
        "-c",
        "hog forks 20; echo \"hog exited $?\"; hog forks 5",
    ]))?;
    // sh, hog and 8 children make 10; once they are gone, forks work again.
    ensure_eq(
        stdout(&output),
        "started 8 children; fork 9 failed: resource temporarily unavailable (EAGAIN)\n\
         hog exited 1\n\
         started 5 children\n"
            .to_string(),
        "the group refuses the 11th task, then carries on",
    )?;
    ensure_eq(shell_status(&output), 0, "the last hog succeeds")?;
    ensure_gone("t-pids-on")
}

/// A loop device over a file in a scratch directory, detached when dropped.
struct LoopDevice(String);

impl LoopDevice {
    fn attach(file: &Path) -> Result<Self, Failed> {
        let output = run(Command::new("losetup")
            .arg("--find")
            .arg("--show")
            .arg(file))?;
        ensure(output.status.success(), describe(&output))?;
        Ok(Self(stdout(&output).trim().to_string()))
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

fn io_limit() -> Result<(), Failed> {
    let _measuring = MEASURING.lock();
    let _tidy = Tidy("t-io");
    let dir = scratch();
    let image = dir.path().join("disk.img");
    std::fs::File::create(&image)?.set_len(64 << 20)?;
    let device = LoopDevice::attach(&image)?;
    let limit = format!("{}=8M", device.0);
    let output = run_for(
        &mut limited(&[
            "--io-write-bps",
            &limit,
            "--name",
            "t-io",
            "--",
            "hog",
            "io",
            "write",
            &device.0,
            "24M",
            "--direct",
        ]),
        60,
    )?;
    ensure_eq(shell_status(&output), 0, "the write ends well")?;
    // "wrote 24M to /dev/loop0 in 3.00s: 8.0M/s"
    let out = stdout(&output);
    let seconds: f64 = out
        .split(" in ")
        .nth(1)
        .and_then(|rest| rest.split('s').next())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| describe(&output))?;
    let rate = 24.0 / seconds;
    ensure(
        (7.2..=8.8).contains(&rate),
        format!(
            "24M written in {seconds}s is {rate:.2}M/s under an 8M/s limit (allowed ±10%)\n{}",
            describe(&output)
        ),
    )?;
    ensure(
        stderr(&output).contains("wrote 24M"),
        format!("the summary counts the bytes\n{}", describe(&output)),
    )?;
    ensure_gone("t-io")
}

// --- the run itself ------------------------------------------------------------

fn joined_before_exec() -> Result<(), Failed> {
    let _tidy = Tidy("t-join");
    let output = run(&mut limited(&[
        "--name",
        "t-join",
        "--",
        "cat",
        "/proc/self/cgroup",
    ]))?;
    // v2: "0::/underhood/t-join"; v1: one line per hierarchy, each in it.
    let lines: Vec<String> = stdout(&output).lines().map(str::to_string).collect();
    let in_it = |line: &&String| line.ends_with("/underhood/t-join");
    ensure(
        lines
            .iter()
            .filter(|l| l.contains(":memory:") || l.starts_with("0::"))
            .any(|l| in_it(&l)),
        format!(
            "the command's /proc/self/cgroup does not show it in t-join\n{}",
            describe(&output)
        ),
    )?;
    ensure_gone("t-join")
}

fn exit_status() -> Result<(), Failed> {
    let output = run(&mut limited(&[
        "--name", "t-exit", "--", "sh", "-c", "exit 3",
    ]))?;
    ensure_eq(shell_status(&output), 3, "the command's exit code")?;
    ensure(
        stderr(&output).starts_with("cg-limit: t-exit exited with 3 after "),
        describe(&output),
    )?;
    let quiet = run(&mut limited(&[
        "-q", "--name", "t-exit", "--", "sh", "-c", "exit 4",
    ]))?;
    ensure_eq(shell_status(&quiet), 4, "the command's exit code")?;
    ensure_eq(stderr(&quiet), String::new(), "--quiet prints no summary")?;
    ensure_gone("t-exit")
}

fn leftovers_killed() -> Result<(), Failed> {
    let _tidy = Tidy("t-left");
    let output = run(&mut limited(&[
        "--name",
        "t-left",
        "--",
        "sh",
        "-c",
        "sleep 60 & echo $!; sleep 60 & echo $!",
    ]))?;
    ensure(
        stderr(&output).contains("2 processes were still running when the command ended"),
        describe(&output),
    )?;
    for pid in stdout(&output).lines() {
        ensure(
            !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z ")),
            format!("the sleep with pid {pid} is still running"),
        )?;
    }
    ensure_gone("t-left")
}

fn signal_forwarded(signal: Signal) -> Result<(), Failed> {
    let name: &'static str = if signal == Signal::SIGTERM {
        "t-term"
    } else {
        "t-int"
    };
    let _tidy = Tidy(name);
    let mut command = limited(&[
        "--name",
        name,
        "--",
        "sh",
        "-c",
        "trap 'echo caught; exit 7' TERM INT; echo ready; while :; do sleep 0.05; done",
    ]);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = spawn_group(&mut command)?;
    let pid = Pid::from_raw(child.0.id() as i32);
    let mut out = child.0.stdout.take().expect("piped");
    let mut first = [0u8; 6];
    std::io::Read::read_exact(&mut out, &mut first)?;
    ensure_eq(&first, b"ready\n", "the command started")?;
    // Only cg-limit gets the signal: it must pass it on.
    kill(pid, signal)?;
    let status = child.0.wait()?;
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest)?;
    ensure_eq(rest.as_str(), "caught\n", "the command caught the signal")?;
    ensure_eq(status.code(), Some(7), "cg-limit exits as the command did")?;
    ensure_gone(name)
}

/// Ctrl-C makes the terminal send SIGINT to its whole foreground process
/// group — cg-limit and the command both get it. cg-limit must not pass it
/// on a second time.
fn ctrl_c_once() -> Result<(), Failed> {
    use std::io::Read;
    let _tidy = Tidy("t-ctrl-c");
    let pty = nix::pty::openpty(None, None)?;
    let mut command = Command::new("setsid");
    command
        .args(["--ctty", "--wait"])
        .arg(support::bin("cg-limit"))
        .args([
            "-q",
            "--explain",
            "--name",
            "t-ctrl-c",
            "--",
            "sh",
            "-c",
            "trap 'echo trapped' INT; echo ready; i=0; while [ $i -lt 20 ]; do sleep 0.05; i=$((i+1)); done; echo done",
        ])
        .stdin(Stdio::from(pty.slave.try_clone()?))
        .stdout(Stdio::from(pty.slave.try_clone()?))
        .stderr(Stdio::from(pty.slave));
    let mut child = spawn_group(&mut command)?;
    // The command holds the slave's descriptors: let them go, so reading
    // the master ends when the child's side closes.
    drop(command);
    let mut master = std::fs::File::from(pty.master);
    let mut seen = String::new();
    let mut buffer = [0u8; 256];
    while !seen.contains("\nready\r\n") {
        let n = master.read(&mut buffer)?;
        ensure(
            n > 0,
            format!("the command ended before it was ready: {seen:?}"),
        )?;
        seen.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
    std::io::Write::write_all(&mut master, b"\x03")?;
    let status = child.0.wait()?;
    // The slave side is closed now: read what is left until EIO.
    while let Ok(n) = master.read(&mut buffer) {
        if n == 0 {
            break;
        }
        seen.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
    // --explain says so whenever cg-limit passes a signal on; two SIGINTs
    // close together would merge, so the trap alone cannot tell.
    ensure(
        !seen.contains("passing SIGINT on"),
        format!("cg-limit passed the terminal's SIGINT on a second time: {seen:?}"),
    )?;
    ensure_eq(
        seen.matches("trapped\r\n").count(),
        1,
        &format!("the trap ran once: {seen:?}"),
    )?;
    ensure(
        seen.contains("done") && status.success(),
        format!("the command carried on and ended well: {seen:?}, {status}"),
    )?;
    ensure_gone("t-ctrl-c")
}

fn sigkill_then_cleanup() -> Result<(), Failed> {
    let _cleaning = CLEANING.lock();
    let _tidy = Tidy("t-killed");
    let mut command = limited(&[
        "--name",
        "t-killed",
        "--",
        "sh",
        "-c",
        "sleep 60 & echo ready; wait",
    ]);
    command.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = spawn_group(&mut command)?;
    let mut out = child.0.stdout.take().expect("piped");
    let mut first = [0u8; 6];
    std::io::Read::read_exact(&mut out, &mut first)?;
    kill(Pid::from_raw(child.0.id() as i32), Signal::SIGKILL)?;
    child.0.wait()?;
    // The shell dies with cg-limit (PR_SET_PDEATHSIG); the sleep it
    // started is left in the cgroup, which nobody removed.
    wait_until("only the sleep is left in t-killed", 10, || {
        procs_of("t-killed").len() == 1
    })?;
    let sleeper = procs_of("t-killed")[0];
    ensure(
        !dirs_of("t-killed").is_empty(),
        "t-killed should be left behind",
    )?;
    let output = run(cmd("cg-limit").args(["cleanup", "t-killed"]))?;
    ensure_eq(
        stdout(&output),
        "removed t-killed (killed 1 process)\n".to_string(),
        "cleanup's report",
    )?;
    ensure(output.status.success(), describe(&output))?;
    wait_until("the sleep is gone", 10, || {
        std::fs::read_to_string(format!("/proc/{sleeper}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
    })?;
    ensure_gone("t-killed")
}

fn cleanup_keeps_held() -> Result<(), Failed> {
    let _tidy = Tidy("t-held");
    let mut command = limited(&[
        "--name",
        "t-held",
        "--",
        "sh",
        "-c",
        "echo ready; read line; exit 0",
    ]);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn_group(&mut command)?;
    let mut out = child.0.stdout.take().expect("piped");
    let mut first = [0u8; 6];
    std::io::Read::read_exact(&mut out, &mut first)?;
    let output = run(cmd("cg-limit").args(["cleanup", "t-held"]))?;
    ensure_eq(
        stdout(&output),
        "kept t-held: a running cg-limit holds it\n".to_string(),
        "cleanup's report",
    )?;
    ensure_eq(
        output.status.code(),
        Some(1),
        "cleanup exits 1 when it kept one",
    )?;
    ensure(!dirs_of("t-held").is_empty(), "t-held must still be there")?;
    // The run goes on, and ends normally.
    drop(child.0.stdin.take());
    let status = child.0.wait()?;
    ensure(status.success(), format!("the run ended with {status}"))?;
    ensure_gone("t-held")
}

fn nested_inherits() -> Result<(), Failed> {
    let _cleaning = CLEANING.lock();
    let _tidy = Tidy("t-outer");
    let created = run(cmd("cg-limit").args(["create", "t-outer", "--memory", "32M"]))?;
    ensure(
        created.status.success() && stdout(&created).starts_with("created t-outer at "),
        describe(&created),
    )?;
    let tree = run(&mut limited(&[
        "--name",
        "t-outer/inner",
        "--memory",
        "1G",
        "--",
        "cg-limit",
        "tree",
    ]))?;
    let tree_text = stdout(&tree);
    let rows: Vec<&str> = tree_text.lines().collect();
    ensure(
        rows.iter()
            .any(|r| r.contains("t-outer") && r.contains(" 32M ")),
        format!("the tree shows t-outer's 32M\n{}", describe(&tree)),
    )?;
    ensure(
        rows.iter()
            .any(|r| r.contains("└─ inner") && r.contains(" 1G (32M) ")),
        format!(
            "the tree shows inner's own 1G held to 32M\n{}",
            describe(&tree)
        ),
    )?;
    let oom = run(&mut limited(&[
        "--name",
        "t-outer/inner",
        "--memory",
        "1G",
        "--",
        "hog",
        "memory",
        "100M",
    ]))?;
    ensure_eq(shell_status(&oom), 137, "inner is OOM-killed")?;
    ensure(
        stderr(&oom).contains(
            "t-outer/inner was killed by the kernel OOM killer: memory limit 32M reached",
        ),
        describe(&oom),
    )?;
    // The run removed its own cgroup, not the one create made.
    ensure(
        dirs_of("t-outer/inner").is_empty() && !dirs_of("t-outer").is_empty(),
        "after the run, t-outer stays and t-outer/inner is gone",
    )?;
    let cleaned = run(cmd("cg-limit").args(["cleanup", "t-outer"]))?;
    ensure_eq(
        stdout(&cleaned),
        "removed t-outer\n".to_string(),
        "cleanup's report",
    )?;
    ensure_gone("t-outer")
}

fn stats_running() -> Result<(), Failed> {
    let _measuring = MEASURING.lock();
    let _tidy = Tidy("t-stats");
    let mut command = limited(&[
        "--name", "t-stats", "--cpus", "0.5", "--memory", "64M", "--quiet", "--", "hog", "cpu",
        "20",
    ]);
    command.stdout(Stdio::null()).stderr(Stdio::null());
    let _child = spawn_group(&mut command)?;
    wait_until("t-stats runs hog", 10, || !procs_of("t-stats").is_empty())?;
    let output = run(cmd("cg-limit").args(["stats", "--no-stream", "t-stats"]))?;
    let text = stdout(&output);
    let mut lines = text.lines();
    ensure_eq(
        lines.next().unwrap_or_default(),
        "NAME      CPU %    MEM USAGE / LIMIT   MEM %   PIDS   BLOCK I/O",
        "the heading",
    )
    .or_else(|_| {
        ensure(
            text.starts_with("NAME ") && text.lines().next().is_some_and(|l| l.contains("CPU %")),
            describe(&output),
        )
    })?;
    let row: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("t-stats "))
        .ok_or_else(|| describe(&output))?
        .split_whitespace()
        .collect();
    // t-stats  49.90%  1M / 64M  1.56%  2  0B / 0B
    let cpu: f64 = row[1].trim_end_matches('%').parse()?;
    ensure(
        (40.0..=60.0).contains(&cpu),
        format!("CPU % of a --cpus 0.5 hog: {cpu}\n{}", describe(&output)),
    )?;
    ensure_eq(row[4], "64M", "the memory limit")?;
    ensure_eq(row[6], "2", "hog and its spinning thread")?;
    Ok(())
}

fn name_in_use() -> Result<(), Failed> {
    let _tidy = Tidy("t-dup");
    let mut command = limited(&[
        "--name",
        "t-dup",
        "--",
        "sh",
        "-c",
        "echo ready; read line; exit 0",
    ]);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut first = spawn_group(&mut command)?;
    let mut out = first.0.stdout.take().expect("piped");
    let mut ready = [0u8; 6];
    std::io::Read::read_exact(&mut out, &mut ready)?;
    let second = run(&mut limited(&["--name", "t-dup", "--", "true"]))?;
    ensure_eq(second.status.code(), Some(125), "cg-limit's own failure")?;
    let err = stderr(&second);
    ensure(
        err.lines().count() == 1
            && err.contains("(EEXIST)")
            && err.contains("a cgroup named t-dup exists"),
        describe(&second),
    )?;
    // The first run is untouched and ends normally, removing the cgroup.
    drop(first.0.stdin.take());
    let status = first.0.wait()?;
    ensure(
        status.success(),
        format!("the first run ended with {status}"),
    )?;
    ensure_gone("t-dup")
}

fn missing_command() -> Result<(), Failed> {
    let output = run(&mut limited(&[
        "--name",
        "t-missing",
        "--",
        "no-such-program",
    ]))?;
    ensure_eq(output.status.code(), Some(127), "not found")?;
    let err = stderr(&output);
    ensure(
        err.lines().count() == 1 && err.starts_with("cg-limit: execvp(\"no-such-program\")"),
        describe(&output),
    )?;
    ensure_gone("t-missing")
}

// --- a fault after any step ----------------------------------------------------

/// The numbered calls of `cg-limit ARGS --dry-run`, as printed.
fn plan_of(args: &[&str]) -> Result<Vec<String>, Failed> {
    // Before the command's `--`, and after a subcommand: in front of one
    // it would make the subcommand's name the command to run.
    let mut dry = args.to_vec();
    let at = dry.iter().position(|a| *a == "--").unwrap_or(dry.len());
    dry.insert(at, "--dry-run");
    let output = run(cmd("cg-limit").args(dry))?;
    ensure(output.status.success(), describe(&output))?;
    Ok(stdout(&output)
        .lines()
        .filter_map(|line| {
            let (number, call) = line.trim_start().split_once(". ")?;
            number.parse::<usize>().ok().map(|_| call.to_string())
        })
        .collect())
}

/// Fails unless no cgroup directory named `name` is left in any hierarchy.
fn nothing_left(name: &str, after: &str) -> Result<(), Failed> {
    let left = support::cgroups_named(name);
    ensure(
        left.is_empty(),
        format!("{after}: cgroup {name} was left behind: {left:?}"),
    )
}

/// For every step N of `cg-limit ARGS`, whose cgroup is `name` or below
/// it, as its dry run numbers them: `fail@N` exits 125 with one line
/// saying so and leaves nothing; `int@N` stops cg-limit before the command
/// starts, or the command ends by it or before it, and leaves nothing;
/// `kill@N` leaves nothing once `cg-limit cleanup NAME` ran.
fn walk_faults(name: &str, args: &[&str]) -> Result<(), Failed> {
    use std::os::unix::process::ExitStatusExt;
    let _cleaning = CLEANING.lock();
    let _tidy = Tidy(name.to_string());
    let steps = plan_of(args)?;
    ensure(steps.len() >= 5, format!("a plan of {} steps", steps.len()))?;
    let variable = steps::fault::VARIABLE;
    let fork = steps.iter().position(|s| s == "fork()");
    for (index, step) in steps.iter().enumerate() {
        let n = index + 1;
        let after = |fault: &str| format!("{fault}@{n}, after {step}");
        // The command replaced the child at its exec: no fault comes
        // after that step, and the command runs.
        let runs = step.starts_with("child: execvp(");
        let faulty = |fault: &str| {
            let mut command = limited(args);
            command.env(variable, format!("{fault}@{n}"));
            command
        };

        let out = run_for(&mut faulty("fail"), 60)?;
        let said = format!("cg-limit: injected failure after step {n} ({variable}=fail@{n})");
        let failed = out.status.code() == Some(125) && stderr(&out) == format!("{said}\n");
        ensure(
            failed || (runs && out.status.success()),
            format!("{}\n{}", after("fail"), describe(&out)),
        )?;
        nothing_left(name, &after("fail"))?;
        support::tally::add(support::tally::Tally::FaultPoint, 1);

        // Before the fork, SIGINT stops cg-limit; after it, it is passed
        // on to the command, which ends by it or has ended already.
        let out = run_for(&mut faulty("int"), 60)?;
        let stopped = shell_status(&out) == 130
            && stderr(&out).starts_with("cg-limit: SIGINT arrived before ");
        let ok = match fork {
            Some(fork) if index >= fork => stopped || matches!(shell_status(&out), 0 | 130),
            _ => stopped,
        };
        ensure(ok, format!("{}\n{}", after("int"), describe(&out)))?;
        nothing_left(name, &after("int"))?;
        support::tally::add(support::tally::Tally::FaultPoint, 1);

        // A lock dies with its last holder: a child still on its way out
        // may hold it a moment longer, and cleanup then keeps the cgroup.
        let out = run_for(&mut faulty("kill"), 60)?;
        ensure(
            out.status.signal() == Some(9) || (runs && out.status.success()),
            format!("{}\n{}", after("kill"), describe(&out)),
        )?;
        let mut cleanup = None;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !support::cgroups_named(name).is_empty() && Instant::now() < deadline {
            cleanup = Some(run(cmd("cg-limit").args(["cleanup", name]))?);
            std::thread::sleep(Duration::from_millis(10));
        }
        nothing_left(name, &after("kill")).map_err(|e| match &cleanup {
            Some(out) => format!("{e:?}\ncg-limit cleanup {name}: {}", describe(out)).into(),
            None => e,
        })?;
        support::tally::add(support::tally::Tally::FaultPoint, 1);
    }
    Ok(())
}

fn dry_run() -> Result<(), Failed> {
    let output = run(&mut limited(&[
        "--dry-run",
        "--memory",
        "64M",
        "--name",
        "t-dry",
        "--",
        "true",
    ]))?;
    ensure(output.status.success(), describe(&output))?;
    let out = stdout(&output);
    ensure(
        out.contains("nothing was done (--dry-run)")
            && (out.contains("memory.max \"67108864\"")
                || out.contains("memory.limit_in_bytes \"67108864\""))
            && (out.contains("memory.swap.max \"0\" if the file exists")
                || out.contains("memory.memsw.limit_in_bytes \"67108864\" if the file exists"))
            && out.contains("cgroup.procs \"0\"")
            && out.contains("child: execvp(\"true\""),
        describe(&output),
    )?;
    ensure_gone("t-dry")
}

fn explain() -> Result<(), Failed> {
    let output = run(&mut limited(&[
        "--explain",
        "--memory",
        "64M",
        "--name",
        "t-explain",
        "--",
        "true",
    ]))?;
    ensure(output.status.success(), describe(&output))?;
    let err = stderr(&output);
    ensure(
        err.contains("[cg-limit ")
            && err.contains("--memory 64M: the most memory the group may use")
            && err.contains("[book: cgroups/memory.md]"),
        describe(&output),
    )?;
    ensure_eq(stdout(&output), String::new(), "stdout stays the command's")?;
    ensure_gone("t-explain")
}

fn bad_input() -> Result<(), Failed> {
    let long = "x".repeat(300);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--memory", "abc"], "--memory"),
        (vec!["--memory", "-1"], "--memory"),
        (vec!["--memory", "0"], "--memory"),
        (vec!["--memory", "1e99"], "--memory"),
        (vec!["--memory", "18446744073709551616"], "--memory"),
        (vec!["--memory-swap", "1G"], "--memory-swap"),
        (
            vec!["--memory", "1G", "--memory-swap", "64M"],
            "--memory-swap",
        ),
        (vec!["--cpus", "0"], "--cpus"),
        (vec!["--cpus", "-1"], "--cpus"),
        (vec!["--cpus", "abc"], "--cpus"),
        (vec!["--cpus", "5000"], "--cpus"),
        (vec!["--cpu-weight", "0"], "--cpu-weight"),
        (vec!["--cpu-weight", "10001"], "--cpu-weight"),
        (vec!["--pids", "0"], "--pids"),
        (vec!["--pids", "-1"], "--pids"),
        (vec!["--pids", "99999999"], "--pids"),
        (vec!["--name", "../x"], "--name"),
        (vec!["--name", "a/b"], ""),
        (vec!["--name", ""], "--name"),
        (vec!["--name", &long], "--name"),
        (vec!["--name", "-x"], "--name"),
        (vec!["--name", "a\nb"], "--name"),
        (vec!["--name", "é"], "--name"),
        (vec!["--io-read-bps", "/dev/null=1M"], "--io-read-bps"),
        (vec!["--io-read-bps", "/nonexistent=1M"], "--io-read-bps"),
        (vec!["--io-write-bps", "8:0"], "--io-write-bps"),
        (vec!["--io-write-bps", "8:0=fast"], "--io-write-bps"),
    ];
    let mut problems = Vec::new();
    for (args, flag) in cases {
        if flag.is_empty() {
            continue; // a valid nested name, listed to show it is allowed
        }
        let mut all = args.clone();
        all.extend(["--name", "t-bad", "--", "true"]);
        if args.contains(&"--name") {
            all.truncate(all.len() - 4);
            all.extend(["--", "true"]);
        }
        let output = run(&mut limited(&all))?;
        let err = stderr(&output);
        if output.status.code() != Some(2) || err.lines().count() != 1 || !err.contains(flag) {
            problems.push(format!("{args:?}: {}", describe(&output)));
        } else {
            support::tally::add(support::tally::Tally::BadInput, 1);
        }
    }
    ensure(problems.is_empty(), problems.join("\n"))?;
    ensure_gone("t-bad")
}

fn unprivileged(bin: &Path) -> Result<(), Failed> {
    use std::os::unix::process::CommandExt;
    let output = run(Command::new(bin)
        .args(["--memory", "64M", "--name", "t-nobody", "--", "true"])
        .env("LC_ALL", "C")
        .uid(65534)
        .gid(65534))?;
    ensure_eq(output.status.code(), Some(125), "cg-limit's own failure")?;
    let err = stderr(&output);
    // The first refusal is a mkdir, or, when another run has made the
    // toolkit's parent already, the write that hands controllers down.
    ensure(
        err.lines().count() == 1
            && (err.contains("mkdir(") || err.contains("write "))
            && err.contains("needs root")
            && err.contains("sudo"),
        describe(&output),
    )?;
    support::tally::add(support::tally::Tally::BadInput, 1);
    ensure_gone("t-nobody")
}

fn stats_stream() -> Result<(), Failed> {
    use std::io::{BufRead, BufReader};
    let _tidy = Tidy("t-stream");
    let mut busy = limited(&[
        "--name",
        "t-stream",
        "--quiet",
        "--",
        "sh",
        "-c",
        "echo ready; read line; exit 0",
    ]);
    busy.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut busy = spawn_group(&mut busy)?;
    let mut ready = [0u8; 6];
    std::io::Read::read_exact(busy.0.stdout.as_mut().expect("piped"), &mut ready)?;
    let mut stats = cmd("cg-limit");
    stats
        .args(["stats", "t-stream"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut stats = spawn_group(&mut stats)?;
    let lines = BufReader::new(stats.0.stdout.take().expect("piped")).lines();
    // Not a terminal: one table after another, each a heading and a row.
    let mut headings = 0;
    let mut rows = 0;
    for line in lines {
        let line = line?;
        if line.starts_with("NAME ") {
            headings += 1;
        } else if line.starts_with("t-stream ") {
            rows += 1;
        }
        if headings == 2 && rows == 2 {
            break;
        }
    }
    ensure(
        headings == 2 && rows == 2,
        format!("expected two tables, saw {headings} headings and {rows} rows"),
    )?;
    drop(stats);
    drop(busy.0.stdin.take());
    busy.0.wait()?;
    ensure_gone("t-stream")
}

fn cleanup_all() -> Result<(), Failed> {
    let _cleaning = CLEANING.lock();
    let _kept = Tidy("t-all-kept");
    let _made = Tidy("t-all-made");
    let created = run(cmd("cg-limit").args(["create", "t-all-made"]))?;
    ensure(created.status.success(), describe(&created))?;
    let mut command = limited(&[
        "--name",
        "t-all-kept",
        "--",
        "sh",
        "-c",
        "echo ready; read line; exit 0",
    ]);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut held = spawn_group(&mut command)?;
    let mut ready = [0u8; 6];
    std::io::Read::read_exact(held.0.stdout.as_mut().expect("piped"), &mut ready)?;
    let output = run(cmd("cg-limit").arg("cleanup"))?;
    let out = stdout(&output);
    ensure(
        out.lines().any(|l| l == "removed t-all-made")
            && out
                .lines()
                .any(|l| l == "kept t-all-kept: a running cg-limit holds it")
            && output.status.success(),
        describe(&output),
    )?;
    ensure(
        dirs_of("t-all-made").is_empty() && !dirs_of("t-all-kept").is_empty(),
        "cleanup removed the unheld cgroup and kept the held one",
    )?;
    drop(held.0.stdin.take());
    held.0.wait()?;
    ensure_gone("t-all-kept")
}
