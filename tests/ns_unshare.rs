//! ns-unshare against the real kernel: each namespace observed from inside
//! and from outside, exit status and signals passed on, persistent
//! namespace files, entering a running process, and bad input.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::{
    Failed, MountGuard, Requirement::*, Suite, cmd, describe, ensure, ensure_eq, run, scratch,
    spawn_group, stderr, stdout,
};

fn main() {
    let mut suite = Suite::new();
    let shared = scratch();
    let nobody_bin = support::copy_for_any_user("ns-unshare", shared.path());
    suite.keep(shared);
    let bin = nobody_bin.clone();
    let root_inside_is_nobody_outside = move || root_inside_is_nobody_outside(&bin);
    let unprivileged_needs_r = move || unprivileged_needs_r(&nobody_bin);
    suite.test("man_page_example_prints_1", &[Root], man_page_example);
    suite.test_with_tools(
        "pid_namespace_ps_sees_only_itself",
        &[Root],
        &["ps"],
        ps_sees_only_itself,
    );
    suite.test(
        "uts_hostname_changes_inside_only",
        &[Root],
        hostname_inside_only,
    );
    suite.test_with_tools(
        "mount_is_invisible_outside",
        &[Root],
        &["sh"],
        mount_invisible_outside,
    );
    suite.test_with_tools("net_namespace_has_only_lo", &[Root], &["ip"], net_only_lo);
    suite.test_with_tools(
        "ipc_queue_stays_inside",
        &[Root],
        &["ipcmk", "ipcs"],
        ipc_queue_stays_inside,
    );
    suite.test(
        "root_inside_is_nobody_outside",
        &[UserNamespaces],
        root_inside_is_nobody_outside,
    );
    suite.test(
        "unprivileged_unshare_without_r_fails_with_a_hint",
        &[Root],
        unprivileged_needs_r,
    );
    suite.test(
        "cgroup_namespace_root_is_slash",
        &[Root],
        cgroup_root_is_slash,
    );
    suite.test(
        "time_namespace_offsets_uptime",
        &[Root, TimeNamespaces],
        time_offsets_uptime,
    );
    suite.test("exit_code_is_passed_on", &[Root], exit_code_passed_on);
    suite.test("terminating_signal_is_passed_on", &[Root], signal_passed_on);
    suite.test(
        "kill_child_kills_the_child_when_ns_unshare_dies",
        &[Root],
        kill_child,
    );
    suite.test(
        "kill_child_works_inside_a_pid_namespace",
        &[Root],
        kill_child_in_pid_namespace,
    );
    suite.test(
        "forward_signals_passes_sigterm_on",
        &[Root],
        forward_signals,
    );
    suite.test_with_tools(
        "persistent_uts_namespace_file",
        &[Root],
        &["nsenter"],
        persistent_uts,
    );
    suite.test_with_tools(
        "persistent_mount_namespace_file",
        &[Root],
        &["nsenter"],
        persistent_mount,
    );
    suite.test(
        "enter_joins_a_running_process",
        &[Root],
        enter_running_process,
    );
    suite.test_with_tools(
        "enter_pid_namespace_forks_into_it",
        &[Root],
        &["ps"],
        enter_pid_namespace,
    );
    suite.test(
        "list_marks_the_namespaces_that_differ",
        &[Root],
        list_marks_differences,
    );
    suite.test("shell_is_the_default_program", &[Root], shell_is_default);
    suite.test("root_wd_setuid_and_setgid", &[Root], root_wd_and_ids);
    suite.test(
        "explain_narrates_on_stderr_only",
        &[Root],
        explain_on_stderr,
    );
    suite.test("dry_run_makes_no_calls", &[], dry_run_makes_no_calls);
    suite.test("color_always_and_never", &[], color_choice);
    suite.test(
        "bad_input_gets_one_line_and_a_documented_code",
        &[],
        bad_input,
    );
    suite.test_with_tools(
        "where_user_namespaces_are_refused_one_line_says_where_to_look",
        &[Root, UserNamespaces],
        &["unshare"],
        user_namespaces_refused,
    );
    suite.run()
}

fn ns_unshare() -> Command {
    cmd("ns-unshare")
}

fn man_page_example() -> Result<(), Failed> {
    let out =
        run(ns_unshare().args(["--fork", "--pid", "--mount-proc", "readlink", "/proc/self"]))?;
    ensure_eq(stdout(&out).as_str(), "1\n", &describe(&out))
}

/// `ps -o pid=,comm=` output as `"PID COMM"` lines.
fn processes(out: &std::process::Output) -> Vec<String> {
    stdout(out)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

fn ps_sees_only_itself() -> Result<(), Failed> {
    let out = run(ns_unshare().args([
        "--fork",
        "--pid",
        "--mount-proc",
        "ps",
        "-e",
        "-o",
        "pid=,comm=",
    ]))?;
    let lines = processes(&out);
    ensure_eq(
        lines,
        vec!["1 ps".to_string()],
        "ps inside a new pid namespace",
    )?;
    // Outside, the host still has its many processes.
    let host = std::fs::read_dir("/proc")?
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        })
        .count();
    ensure(host > 1, "the host /proc lists more than one process")
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn hostname_inside_only() -> Result<(), Failed> {
    let before = hostname();
    let out = run(ns_unshare().args(["--uts", "sh", "-c", "hostname test-inside && hostname"]))?;
    ensure_eq(stdout(&out).as_str(), "test-inside\n", &describe(&out))?;
    ensure_eq(hostname(), before, "the host's hostname after the run")
}

fn mount_invisible_outside() -> Result<(), Failed> {
    let dir = scratch();
    let target = dir.path().join("m");
    std::fs::create_dir(&target)?;
    let script = format!(
        "mount -t tmpfs underhood-test-tmpfs {0} && touch {0}/inside && grep -c underhood-test-tmpfs /proc/self/mountinfo",
        target.display()
    );
    let out = run(ns_unshare().args(["--mount", "sh", "-c", &script]))?;
    ensure_eq(stdout(&out).as_str(), "1\n", &describe(&out))?;
    let host_mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
    ensure(
        !host_mounts.contains("underhood-test-tmpfs"),
        "the tmpfs shows in the host's mount table",
    )?;
    ensure(
        std::fs::read_dir(&target)?.next().is_none(),
        "the file made inside is visible outside",
    )
}

fn net_only_lo() -> Result<(), Failed> {
    let out = run(ns_unshare().args(["--net", "ip", "-o", "link"]))?;
    let names: Vec<String> = stdout(&out)
        .lines()
        .filter_map(|l| l.split(": ").nth(1).map(str::to_string))
        .collect();
    ensure_eq(names, vec!["lo".to_string()], &describe(&out))?;
    let inside = run(ns_unshare().args(["--net", "readlink", "/proc/self/ns/net"]))?;
    let outside = std::fs::read_link("/proc/self/ns/net")?;
    ensure(
        stdout(&inside).trim() != outside.to_string_lossy(),
        "the net namespace id inside equals the host's",
    )
}

fn ipc_queue_stays_inside() -> Result<(), Failed> {
    let out = run(ns_unshare().args(["--ipc", "sh", "-c", "ipcmk --queue >/dev/null && ipcs -q"]))?;
    let key = stdout(&out)
        .lines()
        .find(|l| l.starts_with("0x"))
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .ok_or_else(|| format!("no queue listed inside\n{}", describe(&out)))?;
    let host = run(Command::new("ipcs").arg("-q"))?;
    ensure(
        !stdout(&host).contains(&key),
        format!("queue {key} is visible on the host"),
    )
}

/// Runs ns-unshare as user nobody, from a copy nobody can reach.
fn as_nobody(bin: &Path) -> Command {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(bin);
    command
        .uid(65534)
        .gid(65534)
        .env("LC_ALL", "C")
        .current_dir("/");
    command
}

/// `-r` as a user who is not root: uid 0 inside, the same uid as before
/// outside. Run as root, the test becomes user nobody first.
fn root_inside_is_nobody_outside(bin: &Path) -> Result<(), Failed> {
    let (mut command, outside) = if support::is_root() {
        (as_nobody(bin), "65534".to_string())
    } else {
        (ns_unshare(), nix::unistd::Uid::current().to_string())
    };
    let mut guard = spawn_group(
        command
            .args(["-r", "sh", "-c", "id -u; exec sleep 60"])
            .stdout(Stdio::piped()),
    )?;
    let pid = guard.0.id();
    let mut first = String::new();
    BufReader::new(guard.0.stdout.take().unwrap()).read_line(&mut first)?;
    ensure_eq(first.as_str(), "0\n", "uid inside with -r")?;
    // The same process seen from outside: the uid it had before.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let uid_line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap_or_default()
        .to_string();
    ensure_eq(
        uid_line.split_whitespace().nth(1),
        Some(outside.as_str()),
        &format!("outside uid of the process ({uid_line})"),
    )
}

fn unprivileged_needs_r(bin: &Path) -> Result<(), Failed> {
    let out = run(as_nobody(bin).args(["--uts", "true"]))?;
    ensure_eq(out.status.code(), Some(125), &describe(&out))?;
    let err = stderr(&out);
    ensure(err.lines().count() == 1, format!("one line: {err}"))?;
    ensure(
        err.contains("unshare(CLONE_NEWUTS): operation not permitted (EPERM); hint:"),
        err.clone(),
    )?;
    ensure(err.contains("-r"), format!("the hint names -r: {err}"))
}

fn cgroup_root_is_slash() -> Result<(), Failed> {
    let out = run(ns_unshare().args(["--cgroup", "cat", "/proc/self/cgroup"]))?;
    for line in stdout(&out).lines() {
        ensure(
            line.ends_with(":/"),
            format!("cgroup path inside is not /: {line}"),
        )?;
    }
    ensure(stdout(&out).lines().any(|l| l == "0::/"), describe(&out))
}

fn uptime_seconds(text: &str) -> f64 {
    text.split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(-1.0)
}

fn time_offsets_uptime() -> Result<(), Failed> {
    let out = run(ns_unshare().args([
        "--time",
        "--boottime",
        "864000",
        "--fork",
        "cat",
        "/proc/uptime",
    ]))?;
    let inside = uptime_seconds(&stdout(&out));
    let outside = uptime_seconds(&std::fs::read_to_string("/proc/uptime")?);
    ensure(
        inside >= 864000.0,
        format!("uptime inside {inside}\n{}", describe(&out)),
    )?;
    ensure(
        (inside - 864000.0 - outside).abs() < 60.0,
        format!("inside {inside}, outside {outside}"),
    )?;
    ensure(outside < inside - 800000.0, "the host's uptime moved")
}

fn exit_code_passed_on() -> Result<(), Failed> {
    for fork in [true, false] {
        let mut command = ns_unshare();
        if fork {
            command.arg("--fork");
        }
        let out = run(command.args(["--uts", "sh", "-c", "exit 7"]))?;
        ensure_eq(out.status.code(), Some(7), &describe(&out))?;
    }
    Ok(())
}

fn signal_passed_on() -> Result<(), Failed> {
    use std::os::unix::process::ExitStatusExt;
    let out = run(ns_unshare().args(["--fork", "sh", "-c", "kill -TERM $$"]))?;
    ensure_eq(
        out.status.signal(),
        Some(Signal::SIGTERM as i32),
        &describe(&out),
    )
}

fn read_line(child: &mut std::process::Child) -> Result<String, Failed> {
    let stdout = child.stdout.as_mut().ok_or("no stdout")?;
    let mut line = String::new();
    let mut byte = [0u8; 1];
    use std::io::Read;
    while stdout.read(&mut byte)? == 1 && byte[0] != b'\n' {
        line.push(byte[0] as char);
    }
    Ok(line)
}

/// Waits for a process that is not our child to end, by pidfd-less polling
/// of its /proc entry against a deadline (the condition, not a guess at a
/// duration, decides).
fn wait_gone(pid: i32, deadline: Duration) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < deadline {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat)
                if stat
                    .rsplit(')')
                    .next()
                    .is_some_and(|rest| rest.trim_start().starts_with('Z')) =>
            {
                return true;
            }
            Ok(_) => std::thread::yield_now(),
        }
    }
    false
}

fn kill_child() -> Result<(), Failed> {
    let mut guard = spawn_group(
        ns_unshare()
            .args(["--kill-child", "sh", "-c", "echo $$; exec sleep 60"])
            .stdout(Stdio::piped()),
    )?;
    let grandchild: i32 = read_line(&mut guard.0)?.trim().parse()?;
    kill(Pid::from_raw(guard.0.id() as i32), Signal::SIGKILL)?;
    let _ = guard.0.wait();
    let gone = wait_gone(grandchild, Duration::from_secs(10));
    if !gone {
        let _ = kill(Pid::from_raw(grandchild), Signal::SIGKILL);
    }
    ensure(gone, "the child outlived ns-unshare despite --kill-child")
}

fn kill_child_in_pid_namespace() -> Result<(), Failed> {
    // getppid() is 0 in a new PID namespace: the check that ns-unshare is
    // still alive must not rely on it.
    let out = run(ns_unshare().args([
        "--kill-child",
        "--pid",
        "--mount-proc",
        "readlink",
        "/proc/self",
    ]))?;
    ensure_eq(stdout(&out).as_str(), "1\n", &describe(&out))
}

fn forward_signals() -> Result<(), Failed> {
    let mut guard = spawn_group(
        ns_unshare()
            .args([
                "--forward-signals",
                "sh",
                "-c",
                "trap 'echo got TERM; exit 9' TERM; echo ready; while :; do sleep 0.05; done",
            ])
            .stdout(Stdio::piped()),
    )?;
    ensure_eq(
        read_line(&mut guard.0)?.as_str(),
        "ready",
        "the child started",
    )?;
    kill(Pid::from_raw(guard.0.id() as i32), Signal::SIGTERM)?;
    ensure_eq(
        read_line(&mut guard.0)?.as_str(),
        "got TERM",
        "the child's trap ran",
    )?;
    let status = guard.0.wait()?;
    ensure_eq(
        status.code(),
        Some(9),
        "ns-unshare passes on the child's exit",
    )
}

fn persistent_uts() -> Result<(), Failed> {
    let dir = scratch();
    let file = dir.path().join("uts.ns");
    let out = run(ns_unshare().arg(format!("--uts={}", file.display())).args([
        "--hostname",
        "kept",
        "true",
    ]))?;
    let _bind = MountGuard(file.clone());
    ensure(out.status.success(), describe(&out))?;
    let theirs = run(Command::new("nsenter")
        .arg(format!("--uts={}", file.display()))
        .arg("hostname"))?;
    ensure_eq(
        stdout(&theirs).as_str(),
        "kept\n",
        "nsenter into the kept namespace",
    )?;
    let ours = run(ns_unshare()
        .arg("--enter")
        .arg(format!("--uts={}", file.display()))
        .arg("hostname"))?;
    ensure_eq(stdout(&ours).as_str(), "kept\n", &describe(&ours))
}

fn persistent_mount() -> Result<(), Failed> {
    let dir = scratch();
    // A mount namespace may be kept only on a private mount.
    let status = Command::new("mount")
        .args(["--bind"])
        .arg(dir.path())
        .arg(dir.path())
        .status()?;
    ensure(status.success(), "bind the scratch dir onto itself")?;
    let _private_guard = MountGuard(dir.path().to_path_buf());
    let status = Command::new("mount")
        .arg("--make-private")
        .arg(dir.path())
        .status()?;
    ensure(status.success(), "make the scratch dir private")?;
    let file = dir.path().join("mnt.ns");
    let marker = dir.path().join("marker");
    std::fs::create_dir(&marker)?;
    let script = format!("mount -t tmpfs underhood-kept {}", marker.display());
    let out = run(ns_unshare()
        .arg(format!("--mount={}", file.display()))
        .args(["sh", "-c", &script]))?;
    let _bind = MountGuard(file.clone());
    ensure(out.status.success(), describe(&out))?;
    let inside = run(Command::new("nsenter")
        .arg(format!("--mount={}", file.display()))
        .args(["grep", "-c", "underhood-kept", "/proc/self/mountinfo"]))?;
    ensure_eq(
        stdout(&inside).as_str(),
        "1\n",
        "the kept mount namespace still has its tmpfs",
    )?;
    let host = std::fs::read_to_string("/proc/self/mountinfo")?;
    ensure(
        !host.contains("underhood-kept"),
        "the tmpfs leaked to the host",
    )
}

fn spawn_ready(args: &[&str]) -> Result<support::ChildGuard, Failed> {
    let mut guard = spawn_group(ns_unshare().args(args).stdout(Stdio::piped()))?;
    ensure_eq(
        read_line(&mut guard.0)?.as_str(),
        "ready",
        "the target started",
    )?;
    Ok(guard)
}

fn enter_running_process() -> Result<(), Failed> {
    let target = spawn_ready(&[
        "--uts",
        "--net",
        "--hostname",
        "target-box",
        "sh",
        "-c",
        "echo ready; exec sleep 60",
    ])?;
    let pid = target.0.id().to_string();
    let out = run(ns_unshare().arg(format!("--enter={pid}")).arg("hostname"))?;
    ensure_eq(stdout(&out).as_str(), "target-box\n", &describe(&out))?;
    let out = run(ns_unshare().arg(format!("--enter={pid}")).args([
        "--net",
        "readlink",
        "/proc/self/ns/net",
    ]))?;
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/net"))?;
    ensure_eq(
        stdout(&out).trim(),
        &*theirs.to_string_lossy(),
        "net namespace after --enter --net",
    )
}

fn enter_pid_namespace() -> Result<(), Failed> {
    let target = spawn_ready(&[
        "--fork",
        "--pid",
        "--mount-proc",
        "sh",
        "-c",
        "echo ready; exec sleep 60",
    ])?;
    // The process in the new pid namespace is ns-unshare's child.
    let outer = target.0.id();
    let children = std::fs::read_to_string(format!("/proc/{outer}/task/{outer}/children"))?;
    let inner = children
        .split_whitespace()
        .next()
        .ok_or("the target has no child")?
        .to_string();
    let out = run(ns_unshare().arg(format!("--enter={inner}")).args([
        "--pid",
        "--mount",
        "ps",
        "-e",
        "-o",
        "pid=,comm=",
    ]))?;
    let lines = processes(&out);
    ensure(
        lines.contains(&"1 sleep".to_string()),
        format!("pid 1 is the target's sleep\n{}", describe(&out)),
    )?;
    ensure_eq(
        lines.len(),
        2,
        &format!("only sleep and ps are in there\n{}", describe(&out)),
    )
}

fn list_marks_differences() -> Result<(), Failed> {
    let target = spawn_ready(&["--uts", "sh", "-c", "echo ready; exec sleep 60"])?;
    let pid = target.0.id().to_string();
    let out = run(ns_unshare().args(["--list", &pid]))?;
    let text = stdout(&out);
    let row = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_default()
            .to_string()
    };
    ensure(row("uts").ends_with('*'), format!("uts differs\n{text}"))?;
    ensure(!row("net").ends_with('*'), format!("net is shared\n{text}"))?;
    ensure(
        row("net").split_whitespace().nth(1) == row("net").split_whitespace().nth(2),
        text.clone(),
    )
}

fn root_wd_and_ids() -> Result<(), Failed> {
    let out = run(ns_unshare().args(["-R", "/", "-w", "/etc", "pwd"]))?;
    ensure_eq(stdout(&out).as_str(), "/etc\n", &describe(&out))?;
    let out = run(ns_unshare().args([
        "-S",
        "65534",
        "-G",
        "65534",
        "sh",
        "-c",
        "id -u; id -g; id -G",
    ]))?;
    ensure_eq(
        stdout(&out).as_str(),
        "65534\n65534\n65534\n",
        &describe(&out),
    )
}

fn shell_is_default() -> Result<(), Failed> {
    let mut child = ns_unshare()
        .arg("--uts")
        .env("SHELL", "/bin/sh")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"echo \"$0\"\n")?;
    let out = child.wait_with_output()?;
    ensure_eq(stdout(&out).as_str(), "-sh\n", "a login shell, named -sh")
}

fn explain_on_stderr() -> Result<(), Failed> {
    let out = run(ns_unshare().args([
        "--explain",
        "--fork",
        "--pid",
        "--mount-proc",
        "readlink",
        "/proc/self",
    ]))?;
    ensure_eq(stdout(&out).as_str(), "1\n", "stdout stays the program's")?;
    let err = stderr(&out);
    ensure(
        err.contains("[ns-unshare 1/6] unshare(CLONE_NEWPID|CLONE_NEWNS)"),
        err.clone(),
    )?;
    ensure(err.contains("[book: namespaces/pid.md]"), err.clone())?;
    ensure(
        err.contains("child: mount(\"proc\", \"/proc\", \"proc\""),
        err.clone(),
    )
}

fn dry_run_makes_no_calls() -> Result<(), Failed> {
    let before = hostname();
    let out = run(ns_unshare().args(["--dry-run", "--hostname", "not-set", "hostname"]))?;
    ensure(out.status.success(), describe(&out))?;
    let text = stdout(&out);
    ensure(
        text.contains("unshare(CLONE_NEWUTS)") && text.contains("sethostname(\"not-set\")"),
        text.clone(),
    )?;
    ensure(!text.contains("\nnot-set\n"), "the program ran")?;
    ensure_eq(hostname(), before, "hostname after --dry-run")
}

fn color_choice() -> Result<(), Failed> {
    let always = run(ns_unshare().args(["--color", "always", "--dry-run", "-u", "true"]))?;
    ensure(stdout(&always).contains('\u{1b}'), "--color always colours")?;
    let never = run(ns_unshare().args(["--color", "never", "--dry-run", "-u", "true"]))?;
    ensure(!stdout(&never).contains('\u{1b}'), "--color never")?;
    let auto = run(ns_unshare().args(["--dry-run", "-u", "true"]))?;
    ensure(
        !stdout(&auto).contains('\u{1b}'),
        "auto stays plain into a pipe",
    )
}

fn bad_input() -> Result<(), Failed> {
    let dir = scratch();
    let not_executable = dir.path().join("not-executable");
    std::fs::write(&not_executable, "echo hi\n")?;
    let not_executable = not_executable.to_string_lossy().into_owned();
    let not_a_namespace = format!("--uts={not_executable}");
    let long = format!("--hostname={}", "x".repeat(300));
    let file_root = format!("--root={not_executable}");
    let missing_root = format!("--root={}", dir.path().join("missing").display());
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["--uts", "--hostname=", "true"],
            2,
            "--hostname '': use 1 to 64",
        ),
        (&["--uts", &long, "true"], 2, "use 1 to 64 letters"),
        (&["--uts", "--hostname=-x", "true"], 2, "--hostname '-x'"),
        (
            &["--uts", "--hostname=a\nb", "true"],
            2,
            "--hostname 'a\\nb'",
        ),
        (&["--uts", "--hostname=é", "true"], 2, "--hostname 'é'"),
        (
            &["--uts", "--hostname=../x", "true"],
            2,
            "--hostname '../x'",
        ),
        (&["--uts", "--hostname=a/b", "true"], 2, "--hostname 'a/b'"),
        (&["--map-users", "abc", "true"], 2, "--map-users: 'abc'"),
        (
            &["--setgroups", "x", "true"],
            2,
            "possible values: allow, deny",
        ),
        (
            &["--no-such-flag"],
            2,
            "unexpected argument '--no-such-flag'",
        ),
        (&["--monotonic", "5", "true"], 2, "add -T (--time)"),
        (
            &["--propagation", "sideways", "true"],
            2,
            "possible values: private, shared, slave, unchanged",
        ),
        (&["--kill-child=NOPE", "true"], 2, "unknown signal 'NOPE'"),
        (
            &["--hostname", "bad name", "true"],
            2,
            "--hostname 'bad name'",
        ),
        (&["--map-users", "1,2", "true"], 2, "OUTER,INNER,COUNT"),
        (
            &["-r", "--setgroups", "allow", "true"],
            2,
            "--setgroups=allow cannot go with",
        ),
        (&["--enter=999999999", "true"], 2, "no such process"),
        (&["--enter", "true"], 2, "needs a namespace file"),
        (&["--list", "abc"], 2, "--list takes process ids"),
        (
            &["--fork", "/no/such/program"],
            127,
            "execvp(\"/no/such/program\"): no such file or directory (ENOENT)",
        ),
        (&[&not_executable], 126, "permission denied (EACCES)"),
        (
            &["--enter", &not_a_namespace, "true"],
            2,
            "is not a namespace file",
        ),
    ];
    // A root that is missing or a file is found in the child, once the
    // mount namespace it needs (and root) is there.
    let roots: &[(&[&str], i32, &str)] = &[
        (
            &["--mount", "--fork", &missing_root, "true"],
            125,
            "no such file or directory (ENOENT); hint:",
        ),
        (
            &["--mount", "--fork", &file_root, "true"],
            125,
            "not a directory (ENOTDIR); hint:",
        ),
    ];
    let roots = if support::is_root() { roots } else { &[] };
    for (args, code, message) in cases.iter().chain(roots) {
        let out = run(ns_unshare().args(*args))?;
        let err = stderr(&out);
        ensure_eq(
            out.status.code(),
            Some(*code),
            &format!("exit code for {args:?}\n{}", describe(&out)),
        )?;
        ensure(
            err.lines().count() == 1,
            format!("one line for {args:?}: {err}"),
        )?;
        ensure(
            err.starts_with("ns-unshare: "),
            format!("names the program for {args:?}: {err}"),
        )?;
        ensure(
            err.contains(message),
            format!("{args:?}: expected {message:?} in {err}"),
        )?;
        support::tally::add(support::tally::Tally::BadInput, 1);
    }
    Ok(())
}

/// A host where user namespaces are refused, as Debian's
/// `kernel.unprivileged_userns_clone=0` or Ubuntu's AppArmor refuses them
/// (EPERM), stood for by a user namespace of util-linux `unshare -U` with
/// no id mapped: the kernel refuses a nested one to a process whose ids
/// are not mapped, and nothing on the machine is changed.
fn user_namespaces_refused() -> Result<(), Failed> {
    let out = run(std::process::Command::new("unshare")
        .arg("-U")
        .arg(support::bin("ns-unshare"))
        .args(["--user", "--fork", "true"])
        .env("LC_ALL", "C"))?;
    let err = stderr(&out);
    ensure_eq(out.status.code(), Some(125), &describe(&out))?;
    ensure(
        err.lines().count() == 1
            && err.starts_with("ns-unshare: unshare(CLONE_NEWUSER")
            && err.contains("see /proc/sys/user/max_user_namespaces"),
        describe(&out),
    )?;
    support::tally::add(support::tally::Tally::BadInput, 1);
    Ok(())
}
