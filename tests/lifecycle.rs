//! A container's life after `mini-run run`, against the real kernel:
//! `run -d` prints an id and returns while the container runs; `ps` shows
//! it with its host pid, the same process that is pid 1 inside; `exec`
//! joins its PID namespace (ps inside shows the container's processes)
//! and its cgroup; `logs` outlives the container; `stop` escalates to
//! SIGKILL for a pid 1 that ignores SIGTERM; `rm` refuses a running one;
//! names are unique, also when many runs race for one; a killed mini-run
//! is cleaned up after. Every test removes its containers, and checks
//! that nothing is left: no state directory, no cgroup.

use std::path::Path;
use std::process::Output;

use support::{
    Failed, Requirement::*, Suite, cgroups_named, cmd, describe, ensure, ensure_eq, left_nothing,
    run_for, scratch, stderr, stdout,
};

const NEEDS: &[support::Requirement] = &[Root, Busybox, Overlayfs];

fn main() {
    support::bin("mini-run");
    let mut suite = Suite::new();
    suite.test(
        "a_detached_container_is_one_process_seen_from_two_pid_namespaces",
        NEEDS,
        detached_life,
    );
    suite.test(
        "exec_joins_the_pid_namespace_cgroup_and_user",
        NEEDS,
        exec_joins,
    );
    suite.test(
        "exec_it_gives_a_terminal_from_the_container_s_devpts",
        NEEDS,
        exec_terminal,
    );
    suite.test(
        "logs_outlive_the_container_and_follow_ends_with_it",
        NEEDS,
        logs_follow,
    );
    suite.test(
        "stop_escalates_to_sigkill_for_a_pid_1_that_ignores_sigterm",
        NEEDS,
        stop_escalates,
    );
    suite.test(
        "rm_refuses_a_running_container_and_rm_f_kills_it",
        NEEDS,
        rm_running,
    );
    suite.test(
        "bad_input_is_one_line_with_a_documented_code",
        NEEDS,
        bad_input,
    );
    suite.test("of_ten_runs_racing_for_one_name_one_wins", NEEDS, name_race);
    suite.test(
        "a_killed_mini_run_is_cleaned_up_after_and_its_container_kept_as_exited",
        NEEDS,
        killed_supervisor,
    );
    suite.test("stats_show_a_running_container_by_name", NEEDS, stats);
    suite.test(
        "a_foreground_run_is_kept_until_rm_and_run_rm_keeps_nothing",
        NEEDS,
        kept_until_rm,
    );
    suite.test(
        "rootless_a_detached_container_lives_in_the_user_s_runtime_directory",
        &[Root, Busybox, UserNamespaces, RootlessOverlay],
        rootless,
    );
    suite.run();
}

/// `mini-run ARGS…`, given a minute.
fn mini(args: &[&str]) -> Result<Output, Failed> {
    run_for(cmd("mini-run").args(args), 60)
}

/// `mini-run ARGS…`, which must succeed: its stdout.
fn ok(args: &[&str]) -> Result<String, Failed> {
    let out = mini(args)?;
    ensure(
        out.status.success(),
        format!("mini-run {args:?}\n{}", describe(&out)),
    )?;
    Ok(stdout(&out))
}

/// A unique container name for this test.
fn name(what: &str) -> String {
    format!("t-{what}-{}", std::process::id())
}

/// A container, removed (with -f) when dropped: its short id.
struct Detached {
    id: String,
}

impl Detached {
    fn start(args: &[&str], script: &str) -> Result<Self, Failed> {
        let mut all = vec!["run", "-d", "--network", "none"];
        all.extend(args);
        all.extend(["--", "sh", "-c", script]);
        let out = mini(&all)?;
        ensure(out.status.success(), describe(&out))?;
        let id = stdout(&out).trim().to_string();
        ensure(
            id.len() == 64 && id.chars().all(|c| c.is_ascii_hexdigit()),
            format!("run -d should print the 64-digit id, got {id:?}"),
        )?;
        ensure_eq(&stderr(&out), &String::new(), "run -d's stderr")?;
        Ok(Self {
            id: id[..12].to_string(),
        })
    }

    /// Removes it and checks that nothing of it is left.
    fn remove(self) -> Result<(), Failed> {
        let out = ok(&["rm", "-f", &self.id])?;
        ensure_eq(&out.trim(), &self.id.as_str(), "rm says what it removed")?;
        let id = self.id.clone();
        std::mem::forget(self);
        left_nothing(&id)
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        let _ = mini(&["rm", "-f", &self.id]);
    }
}

/// The JSON `inspect` prints for one container.
fn inspect(id: &str) -> Result<serde_json::Value, Failed> {
    let text = ok(&["inspect", id])?;
    let all: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    Ok(all[0].clone())
}

/// The line of `ps -a` for this container.
fn ps_line(id: &str) -> Result<String, Failed> {
    let text = ok(&["ps", "-a"])?;
    text.lines()
        .find(|l| l.starts_with(id))
        .map(String::from)
        .ok_or_else(|| format!("ps -a has no line for {id}:\n{text}").into())
}

fn detached_life() -> Result<(), Failed> {
    let name = name("life");
    let c = Detached::start(
        &["--name", &name],
        "echo started; trap 'echo stopping; exit 3' TERM; while :; do sleep 0.1; done",
    )?;
    let line = ps_line(&c.id)?;
    ensure(
        line.contains(&name) && line.contains(" Up "),
        format!("ps: {line}"),
    )?;
    let state = inspect(&name)?;
    let pid = state["State"]["Pid"]
        .as_i64()
        .ok_or_else(|| format!("no pid: {state}"))?;
    ensure(
        line.split_whitespace().any(|w| w == pid.to_string()),
        format!("ps shows the host pid {pid}: {line}"),
    )?;
    // One process, two numbers: its host pid, and 1 in its own namespace.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let nspid = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|v| v.split_whitespace().collect::<Vec<_>>())
        .unwrap_or_default();
    ensure_eq(
        &nspid,
        &vec![pid.to_string().as_str(), "1"],
        "NSpid: the host's number and the container's",
    )?;
    let link = std::fs::read_link(format!("/proc/{pid}/ns/pid"))?;
    ensure_eq(
        &state["Namespaces"]["pid"].as_str(),
        &Some(link.to_string_lossy().as_ref()),
        "inspect's pid namespace is the process's",
    )?;
    for dir in state["Cgroup"]["Paths"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let procs =
            std::fs::read_to_string(Path::new(dir.as_str().unwrap_or("")).join("cgroup.procs"))?;
        ensure(
            procs.lines().any(|p| p == pid.to_string()),
            format!("{dir} holds {pid}: {procs}"),
        )?;
    }
    ensure_eq(&ok(&["logs", &name])?, &"started\n".to_string(), "the log")?;
    ensure_eq(&ok(&["stop", &name])?.trim(), &name.as_str(), "stop's line")?;
    let line = ps_line(&c.id)?;
    ensure(
        line.contains("Exited (3)"),
        format!("ps -a after stop: {line}"),
    )?;
    ensure(
        !ok(&["ps"])?.contains(&c.id),
        "ps without -a leaves out exited containers",
    )?;
    ensure_eq(
        &ok(&["logs", &c.id])?,
        &"started\nstopping\n".to_string(),
        "the log after the container ended",
    )?;
    // Stopped: its cgroup is gone, its state is kept until rm.
    ensure(
        cgroups_named(&format!("mini-run-{}", c.id)).is_empty(),
        "the cgroup goes when the container ends",
    )?;
    c.remove()
}

fn exec_joins() -> Result<(), Failed> {
    let c = Detached::start(
        &["--memory", "48m", "-e", "FROM_RUN=1", "-w", "/tmp"],
        "echo started; while :; do sleep 0.1; done",
    )?;
    let ps = ok(&["exec", &c.id, "ps", "-o", "pid,comm"])?;
    let rows: Vec<Vec<&str>> = ps
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    ensure_eq(
        &rows.first().cloned(),
        &Some(vec!["1", "sh"]),
        "ps inside: the container's command is pid 1",
    )?;
    ensure(
        rows.iter().any(|r| r.get(1) == Some(&"ps")),
        format!("ps sees itself among the container's processes:\n{ps}"),
    )?;
    ensure(
        rows.len() <= 4,
        format!("only the container's processes:\n{ps}"),
    )?;
    let inside = ok(&[
        "exec",
        "-e",
        "FROM_EXEC=2",
        &c.id,
        "sh",
        "-c",
        "hostname; pwd; echo $FROM_RUN$FROM_EXEC; cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /proc/self/cgroup | head -1; id -u",
    ])?;
    let lines: Vec<&str> = inside.lines().collect();
    ensure_eq(
        &lines.first(),
        &Some(&c.id.as_str()),
        "the container's hostname",
    )?;
    ensure_eq(&lines.get(1), &Some(&"/tmp"), "the container's workdir")?;
    ensure_eq(&lines.get(2), &Some(&"12"), "the container's env and -e")?;
    ensure_eq(&lines.last(), &Some(&"0"), "root, as the container")?;
    let user = ok(&["exec", "-u", "1000:1000", &c.id, "id"])?;
    ensure(user.starts_with("uid=1000 gid=1000"), format!("-u: {user}"))?;
    // The command's status is exec's; mini-run's own failures are 125.
    let out = mini(&["exec", &c.id, "sh", "-c", "exit 7"])?;
    ensure_eq(&out.status.code(), &Some(7), "exec's status")?;
    let out = mini(&["exec", &c.id, "no-such-command"])?;
    ensure_eq(&out.status.code(), &Some(127), "a command not found")?;
    // In the container's cgroup, and its cgroup namespace: every
    // hierarchy shows the process at the namespace's root, which is the
    // container's cgroup (outside it, it would read /../…).
    let cgroups = ok(&["exec", &c.id, "cat", "/proc/self/cgroup"])?;
    ensure(
        !cgroups.is_empty() && cgroups.lines().all(|l| l.ends_with(":/")),
        format!("exec'd into the container's cgroup:\n{cgroups}"),
    )?;
    c.remove()
}

fn exec_terminal() -> Result<(), Failed> {
    // The test stands for a learner's terminal: exec's stdin, stdout and
    // stderr are the slave of a pty of the test's.
    let c = Detached::start(&[], "while :; do sleep 0.1; done")?;
    let pty = nix::pty::openpty(None, None)?;
    let master = std::fs::File::from(pty.master);
    let slave = std::fs::File::from(pty.slave);
    let mut child = support::spawn_group(
        cmd("mini-run")
            .args(["exec", "-it", &c.id, "sh", "-c"])
            .arg("tty; echo ready; read line; echo \"got $line from $$\"; exit 5")
            .stdin(slave.try_clone()?)
            .stdout(slave.try_clone()?)
            .stderr(slave.try_clone()?),
    )?;
    let mut seen = String::new();
    support::read_until(&master, &mut seen, "ready")?;
    // The container's first terminal was never made: -it here makes its
    // devpts's first, /dev/pts/0, not one of the host's.
    ensure(seen.contains("/dev/pts/0"), format!("tty inside:\n{seen}"))?;
    std::io::Write::write_all(&mut &master, b"hello\n")?;
    support::read_until(&master, &mut seen, "got hello from")?;
    let status = child.0.wait()?;
    ensure_eq(&status.code(), &Some(5), "exec's status")?;
    c.remove()
}

fn logs_follow() -> Result<(), Failed> {
    let dir = scratch();
    let lab = format!("{}:/lab", dir.path().display());
    let c = Detached::start(
        &["-v", &lab],
        "echo one; echo err >&2; until [ -e /lab/go ]; do sleep 0.05; done; echo two",
    )?;
    let mut follow = support::spawn_group(
        cmd("mini-run")
            .args(["logs", "-f", &c.id])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped()),
    )?;
    let mut reader = std::io::BufReader::new(follow.0.stdout.take().ok_or("no stdout")?);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut reader, &mut line)?;
    ensure_eq(&line.as_str(), &"one\n", "logs -f shows what was written")?;
    std::fs::write(dir.path().join("go"), "")?;
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest)?;
    ensure_eq(
        &rest.as_str(),
        &"err\ntwo\n",
        "the rest, until the container ended",
    )?;
    let status = follow.0.wait()?;
    ensure_eq(
        &status.code(),
        &Some(0),
        "logs -f ends when the container does",
    )?;
    ensure_eq(
        &ok(&["logs", &c.id])?,
        &"one\nerr\ntwo\n".to_string(),
        "stdout and stderr in one log, kept after the exit",
    )?;
    ensure(
        ps_line(&c.id)?.contains("Exited (0)"),
        "it exited by itself",
    )?;
    c.remove()
}

fn stop_escalates() -> Result<(), Failed> {
    let c = Detached::start(
        &[],
        "trap '' TERM; echo ignoring; while :; do sleep 0.1; done",
    )?;
    let started = std::time::Instant::now();
    let out = mini(&["stop", "-t", "1", &c.id])?;
    ensure(out.status.success(), describe(&out))?;
    ensure(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "stop waited for the timeout before SIGKILL",
    )?;
    let state = inspect(&c.id)?;
    ensure_eq(
        &state["State"]["ExitCode"].as_u64(),
        &Some(137),
        "128 + SIGKILL",
    )?;
    ensure_eq(
        &state["State"]["Signal"].as_str(),
        &Some("SIGKILL"),
        "the signal that ended it",
    )?;
    // A stopped container is left as it is by stop, as by docker stop.
    ensure(mini(&["stop", &c.id])?.status.success(), "stop again")?;
    c.remove()
}

fn rm_running() -> Result<(), Failed> {
    let c = Detached::start(&["--memory", "32m"], "while :; do sleep 0.1; done")?;
    let out = mini(&["rm", &c.id])?;
    ensure_eq(&out.status.code(), &Some(1), "rm of a running container")?;
    ensure(
        stderr(&out).contains("is running; mini-run stop"),
        describe(&out),
    )?;
    ensure(
        ps_line(&c.id)?.contains(" Up "),
        "still running after the refusal",
    )?;
    ensure(
        !cgroups_named(&format!("mini-run-{}", c.id)).is_empty(),
        "its cgroup is still there",
    )?;
    c.remove()
}

/// Each bad command: the exit code, and one line on stderr naming the
/// problem.
fn bad_input() -> Result<(), Failed> {
    let stopped = Detached::start(&["--name", &name("stopped")], "true")?;
    ensure_eq(
        &ok(&["stop", &stopped.id])?.trim(),
        &stopped.id.as_str(),
        "stop",
    )?;
    // stop returns once it has ended; a container that ended by itself is
    // waited for by its mini-run's lock.
    let running = Detached::start(&["--name", &name("running")], "while :; do sleep 0.1; done")?;
    let foreground = kept()?;
    let running_name = name("running");
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec!["logs", "no-such-container"],
            2,
            "no such container: no-such-container",
        ),
        (vec!["stop", "no-such-container"], 2, "no such container"),
        (vec!["kill", "no-such-container"], 2, "no such container"),
        (vec!["rm", "no-such-container"], 2, "no such container"),
        (vec!["inspect", "no-such-container"], 2, "no such container"),
        (
            vec!["exec", "no-such-container", "true"],
            125,
            "no such container",
        ),
        (vec!["rm", &running.id], 1, "is running"),
        (vec!["kill", &stopped.id], 1, "is not running (Exited (0)"),
        (vec!["exec", &stopped.id, "true"], 125, "is not running"),
        (vec!["logs", &foreground.id], 1, "ran in the foreground"),
        (
            vec!["kill", "-s", "NOPE", &running.id],
            2,
            "-s \"NOPE\": not a signal",
        ),
        (
            vec!["run", "--name", &running_name, "--", "true"],
            125,
            "has that name",
        ),
        (vec!["run", "--name", "_bad", "--", "true"], 125, "--name"),
        (
            vec!["run", "--name", "a/b", "--", "true"],
            125,
            "--name \"a/b\"",
        ),
        (vec!["run", "-d", "-t", "--", "true"], 125, "-t"),
        (vec!["exec", &running.id], 125, "CMD"),
    ];
    for (args, code, says) in &cases {
        let out = mini(args)?;
        ensure_eq(
            &out.status.code(),
            &Some(*code),
            &format!("mini-run {args:?}"),
        )?;
        let err = stderr(&out);
        ensure(
            err.lines().count() == 1,
            format!("one line for {args:?}:\n{err}"),
        )?;
        ensure(
            err.contains(says),
            format!("{args:?} should say {says:?}:\n{err}"),
        )?;
        support::tally::add(support::tally::Tally::BadInput, 1);
    }
    ensure(
        ps_line(&running.id)?.contains(" Up "),
        "refusals change nothing",
    )?;
    // An id prefix that is more than one container's: of 17 ids, two
    // share their first digit.
    let made: Vec<Detached> = (0..17).map(|_| kept()).collect::<Result<_, _>>()?;
    let shared = made
        .iter()
        .find(|a| made.iter().filter(|b| b.id[..1] == a.id[..1]).count() > 1)
        .ok_or("17 ids, and no two share a first digit")?;
    let out = mini(&["inspect", &shared.id[..1]])?;
    ensure_eq(&out.status.code(), &Some(2), "an ambiguous prefix")?;
    ensure(stderr(&out).contains("containers' ids"), describe(&out))?;
    support::tally::add(support::tally::Tally::BadInput, 1);
    for c in made {
        c.remove()?;
    }
    foreground.remove()?;
    running.remove()?;
    stopped.remove()
}

/// A container run in the foreground, and kept: `hostname` prints its id.
fn kept() -> Result<Detached, Failed> {
    let out = mini(&["run", "--network", "none", "--", "hostname"])?;
    ensure(out.status.success(), describe(&out))?;
    Ok(Detached {
        id: stdout(&out).trim().to_string(),
    })
}

fn name_race() -> Result<(), Failed> {
    let name = name("race");
    let threads: Vec<_> = (0..10)
        .map(|_| {
            let name = name.clone();
            std::thread::spawn(move || {
                mini(&[
                    "run",
                    "-d",
                    "--network",
                    "none",
                    "--name",
                    &name,
                    "--",
                    "sleep",
                    "60",
                ])
            })
        })
        .collect();
    let outs: Vec<Output> = threads
        .into_iter()
        .map(|t| t.join().map_err(|_| Failed::from("a run panicked"))?)
        .collect::<Result<_, _>>()?;
    let won: Vec<&Output> = outs.iter().filter(|o| o.status.success()).collect();
    let winner = won.first().map(|o| Detached {
        id: stdout(o).trim().chars().take(12).collect(),
    });
    ensure_eq(&won.len(), &1, "runs that got the name")?;
    for out in outs.iter().filter(|o| !o.status.success()) {
        ensure_eq(&out.status.code(), &Some(125), "a run that lost")?;
        ensure(stderr(out).contains("has that name"), describe(out))?;
    }
    // The losers left nothing: only the winner has a state directory.
    let named = ok(&["ps", "-a"])?
        .lines()
        .filter(|l| l.contains(&name))
        .count();
    ensure_eq(&named, &1, "containers of that name")?;
    winner.ok_or("no winner")?.remove()
}

fn killed_supervisor() -> Result<(), Failed> {
    for remove in [false, true] {
        let mut args = vec![];
        if remove {
            args.push("--rm");
        }
        let c = Detached::start(&args, "while :; do sleep 0.1; done")?;
        let pid = inspect(&c.id)?["State"]["Pid"].as_i64().ok_or("no pid")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let supervisor: i32 = status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or("no PPid")?;
        // The container's parent is its mini-run, not the test.
        let comm = std::fs::read_to_string(format!("/proc/{supervisor}/comm"))?;
        ensure_eq(&comm.trim(), &"mini-run", "the supervisor")?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(supervisor),
            nix::sys::signal::Signal::SIGKILL,
        )?;
        // The death signal takes the container with it; ps sees it dead
        // once the kernel has released the lock.
        let line = run_for(
            std::process::Command::new("sh").arg("-c").arg(format!(
                "while [ -e /proc/{pid} ] || [ -e /proc/{supervisor} ]; do sleep 0.05; done"
            )),
            30,
        )?;
        ensure(line.status.success(), describe(&line))?;
        ensure(ps_line(&c.id)?.contains("Dead"), "ps -a: Dead")?;
        ensure(
            !cgroups_named(&format!("mini-run-{}", c.id)).is_empty(),
            "the cgroup is still there before cleanup",
        )?;
        let said = ok(&["cleanup"])?;
        let ours: Vec<&str> = said.lines().filter(|l| l.contains(&c.id)).collect();
        if remove {
            ensure_eq(
                &ours,
                &vec![format!("removed {}", c.id).as_str()],
                "cleanup",
            )?;
            std::mem::forget(c);
        } else {
            ensure(
                ours.len() == 1 && ours[0].starts_with("gave back what"),
                format!("cleanup: {said}"),
            )?;
            ensure(ps_line(&c.id)?.contains("Exited (137)"), "kept as exited")?;
            ensure(
                cgroups_named(&format!("mini-run-{}", c.id)).is_empty(),
                "its cgroup is given back",
            )?;
            let id = c.id.clone();
            c.remove()?;
            left_nothing(&id)?;
        }
    }
    Ok(())
}

fn stats() -> Result<(), Failed> {
    let name = name("stats");
    let c = Detached::start(
        &["--name", &name, "--memory", "32m"],
        "while :; do sleep 0.1; done",
    )?;
    let table = ok(&["stats", "--no-stream", &name])?;
    let lines: Vec<&str> = table.lines().collect();
    ensure(lines.len() == 2, format!("a header and one row:\n{table}"))?;
    ensure(
        lines[1].starts_with(&name) && lines[1].contains("/ 32M"),
        format!("the row names the container and its limit:\n{table}"),
    )?;
    c.remove()
}

fn kept_until_rm() -> Result<(), Failed> {
    let out = mini(&[
        "run",
        "--network",
        "none",
        "--",
        "sh",
        "-c",
        "hostname; exit 4",
    ])?;
    ensure_eq(&out.status.code(), &Some(4), "the command's status")?;
    let id = stdout(&out).trim().to_string();
    let line = ps_line(&id)?;
    ensure(line.contains("Exited (4)"), format!("ps -a: {line}"))?;
    ensure(
        cgroups_named(&format!("mini-run-{id}")).is_empty(),
        "no cgroup once it has exited",
    )?;
    let upper = inspect(&id)?["Layers"]["Upper"]
        .as_str()
        .unwrap_or("")
        .to_string();
    ensure(
        Path::new(&upper).is_dir(),
        format!("its upper layer is kept: {upper}"),
    )?;
    ensure_eq(&ok(&["rm", &id])?.trim(), &id.as_str(), "rm")?;
    left_nothing(&id)?;
    let out = mini(&["run", "--rm", "--network", "none", "--", "hostname"])?;
    ensure(out.status.success(), describe(&out))?;
    left_nothing(stdout(&out).trim())
}

fn rootless() -> Result<(), Failed> {
    let nobody = support::Nobody::new()?;
    let as_nobody =
        |args: &[&str]| -> Result<Output, Failed> { run_for(nobody.mini_run().args(args), 60) };
    let out = as_nobody(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "mine",
        "--",
        "sh",
        "-c",
        "echo started; trap 'exit 0' TERM; while :; do sleep 0.1; done",
    ])?;
    ensure(out.status.success(), describe(&out))?;
    // root's containers are not nobody's, nor nobody's root's.
    ensure(
        !ok(&["ps", "-a"])?.contains("mine"),
        "root's ps lists only root's containers",
    )?;
    let ps = as_nobody(&["ps"])?;
    ensure(stdout(&ps).contains("mine"), describe(&ps))?;
    let inside = as_nobody(&["exec", "mine", "sh", "-c", "id -u; cat /proc/self/uid_map"])?;
    let text = stdout(&inside);
    let words: Vec<&str> = text.split_whitespace().collect();
    ensure_eq(
        &words,
        &vec!["0", "0", "65534", "1"],
        "root inside, nobody outside",
    )?;
    ensure_eq(
        &stdout(&as_nobody(&["logs", "mine"])?),
        &"started\n".to_string(),
        "the log",
    )?;
    let stop = as_nobody(&["stop", "mine"])?;
    ensure(stop.status.success(), describe(&stop))?;
    let rm = as_nobody(&["rm", "mine"])?;
    ensure(rm.status.success(), describe(&rm))?;
    nobody.left_nothing()
}
