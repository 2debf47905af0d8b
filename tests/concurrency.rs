//! mini-run under load and under signals, against the real kernel: twenty
//! containers started at once each get their own id, cgroup and state and
//! leave nothing; SIGTERM, SIGINT and SIGHUP sent to mini-run reach the
//! command, and mini-run ends with 128 + the signal, as a shell reports
//! it; with `--init`, a hundred orphans are reaped, none left a zombie.

use std::process::{Output, Stdio};

use support::{
    Failed, Requirement::*, Suite, cmd, describe, ensure, ensure_eq, left_nothing, run_for,
    spawn_group, stdout,
};

const NEEDS: &[support::Requirement] = &[Root, Busybox, Overlayfs];

fn main() {
    support::bin("mini-run");
    let mut suite = Suite::new();
    suite.test(
        "twenty_containers_at_once_each_leave_nothing",
        NEEDS,
        twenty_at_once,
    );
    suite.test(
        "sigterm_sigint_and_sighup_end_mini_run_with_128_plus_n",
        NEEDS,
        signals,
    );
    suite.test("with_init_a_hundred_orphans_are_reaped", NEEDS, orphans);
    suite.run();
}

fn twenty_at_once() -> Result<(), Failed> {
    let runs: Vec<_> = (0..20)
        .map(|_| {
            std::thread::spawn(|| {
                run_for(
                    cmd("mini-run").args([
                        "run",
                        "--rm",
                        "--network",
                        "none",
                        "--memory",
                        "32m",
                        "--",
                        "sh",
                        "-c",
                        "hostname; cat /proc/self/cgroup | wc -l",
                    ]),
                    120,
                )
            })
        })
        .collect();
    let outs: Vec<Output> = runs
        .into_iter()
        .map(|t| t.join().map_err(|_| Failed::from("a run panicked"))?)
        .collect::<Result<_, _>>()?;
    let mut ids = Vec::new();
    for out in &outs {
        ensure(out.status.success(), describe(out))?;
        let id = stdout(out).lines().next().unwrap_or("").to_string();
        ids.push(id);
    }
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    ensure_eq(&distinct.len(), &20, "distinct ids")?;
    for id in &ids {
        left_nothing(id)?;
    }
    Ok(())
}

fn signals() -> Result<(), Failed> {
    use nix::sys::signal::Signal;
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        // With --init, pid 1 passes the signal on to the command, which
        // has no handler and ends by it.
        let mut child = spawn_group(
            cmd("mini-run")
                .args(["run", "--rm", "--init", "--network", "none", "--"])
                .args(["sh", "-c", "hostname; echo ready; exec sleep 60"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )?;
        let mut reader = std::io::BufReader::new(child.0.stdout.take().ok_or("no stdout")?);
        let mut id = String::new();
        std::io::BufRead::read_line(&mut reader, &mut id)?;
        let mut ready = String::new();
        std::io::BufRead::read_line(&mut reader, &mut ready)?;
        ensure_eq(&ready.trim(), &"ready", "the container started")?;
        // `exec sleep` replaced the shell that said ready; its pid is the
        // same, and so the signal finds sleep.
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.0.id() as i32), signal)?;
        let status = child.0.wait()?;
        ensure_eq(
            &status.code(),
            &Some(128 + signal as i32),
            &format!("mini-run's status after {signal}"),
        )?;
        left_nothing(id.trim())?;
    }
    Ok(())
}

fn orphans() -> Result<(), Failed> {
    // A hundred processes whose parents end first: each is reparented to
    // pid 1, the init, which must reap it when it ends. The script waits
    // until none is left, zombie or not; without a reaper it would wait
    // until the test's timeout.
    let script = "hostname; \
        for i in $(seq 100); do sh -c 'sleep 0.1 &' ; done; \
        until [ -z \"$(ps -o stat,comm | grep -e sleep -e '^Z')\" ]; do sleep 0.05; done; \
        echo reaped; ps -o pid,stat,comm | grep -c .";
    let out = run_for(
        cmd("mini-run").args([
            "run",
            "--rm",
            "--init",
            "--network",
            "none",
            "--pids-limit",
            "200",
            "--",
            "sh",
            "-c",
            script,
        ]),
        60,
    )?;
    ensure(out.status.success(), describe(&out))?;
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    ensure_eq(&lines.get(1), &Some(&"reaped"), "every orphan reaped")?;
    left_nothing(lines.first().unwrap_or(&""))
}
