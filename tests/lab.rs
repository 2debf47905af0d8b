//! The lesson runner as a learner and an instructor use it.

use std::process::Command;

use support::{
    Failed, Requirement::*, Suite, cmd, describe, ensure, ensure_eq, run, scratch, stderr, stdout,
};

fn main() {
    let mut suite = Suite::new();
    suite.test("list_shows_every_lesson", &[], list_shows_every_lesson);
    suite.test("doctor_reports_the_machine", &[], doctor_reports);
    suite.test("lint_accepts_the_lessons", &[], lint_accepts_the_lessons);
    suite.test(
        "lint_names_file_line_and_fix",
        &[],
        lint_names_file_and_line,
    );
    suite.test(
        "check_of_an_unknown_lesson_is_bad_usage",
        &[],
        unknown_lesson,
    );
    suite.test(
        "check_fails_on_a_mismatch_with_the_step_line",
        &[],
        check_fails_on_mismatch,
    );
    suite.test(
        "run_walks_through_the_first_lesson",
        &[Root],
        run_first_lesson,
    );
    suite.test("book_pages_are_current", &[], book_current);
    suite.test(
        "lint_wants_a_sandbox_for_network_changes",
        &[],
        lint_wants_a_sandbox,
    );
    suite.test(
        "dry_run_of_a_sandboxed_lesson_makes_nothing",
        &[],
        dry_run_of_a_sandboxed_lesson,
    );
    suite.test_with_tools(
        "the_network_sandbox_keeps_the_machine_out_of_reach",
        &[Root],
        &["ip", "unshare", "nsenter", "sleep"],
        network_sandbox,
    );
    suite.run()
}

fn lab() -> Command {
    let mut command = cmd("lab");
    command.current_dir(env!("CARGO_MANIFEST_DIR"));
    command
}

fn list_shows_every_lesson() -> Result<(), Failed> {
    let out = run(lab().arg("list"))?;
    ensure(out.status.success(), describe(&out))?;
    let count = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/lessons"))?
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "yaml"))
        })
        .count();
    ensure_eq(stdout(&out).lines().count(), count, "one line per lesson")?;
    ensure(stdout(&out).contains("The PID namespace"), describe(&out))
}

fn doctor_reports() -> Result<(), Failed> {
    let out = run(lab().arg("doctor"))?;
    ensure(out.status.success(), describe(&out))?;
    let text = stdout(&out);
    let release = nix::sys::utsname::uname()?
        .release()
        .to_string_lossy()
        .into_owned();
    for needle in [
        "kernel",
        "cgroups",
        "user namespaces",
        "time namespaces",
        "overlayfs",
        "lessons run here",
    ] {
        ensure(
            text.contains(needle),
            format!("doctor mentions {needle}\n{text}"),
        )?;
    }
    ensure(
        text.contains(&release),
        format!("doctor names the kernel {release}\n{text}"),
    )
}

fn lint_accepts_the_lessons() -> Result<(), Failed> {
    let out = run(lab().arg("lint"))?;
    ensure(out.status.success(), describe(&out))?;
    ensure(stdout(&out).starts_with("ok: "), describe(&out))
}

fn lint_names_file_and_line() -> Result<(), Failed> {
    let dir = scratch();
    let file = dir.path().join("01-broken.yaml");
    std::fs::write(
        &file,
        "format_version: 1\ntitle: Broken\nchapter: namespaces/pid.md\nsummary: s\nrequires: [rooot]\nsteps: []\n",
    )?;
    let out = run(lab().arg("lint").arg(&file))?;
    ensure_eq(out.status.code(), Some(1), &describe(&out))?;
    let err = stderr(&out);
    ensure(
        err.contains(&format!("{}:5:", file.display())),
        format!("file:line in {err}"),
    )?;
    ensure(
        err.contains("user-namespaces"),
        format!("lists the known requirements: {err}"),
    )
}

fn unknown_lesson() -> Result<(), Failed> {
    let out = run(lab().args(["check", "99"]))?;
    ensure_eq(out.status.code(), Some(2), &describe(&out))?;
    ensure(
        stderr(&out).contains("there is no lesson 99"),
        describe(&out),
    )
}

fn check_fails_on_mismatch() -> Result<(), Failed> {
    let dir = scratch();
    std::fs::write(
        dir.path().join("01-wrong.yaml"),
        "format_version: 1\ntitle: Wrong\nchapter: namespaces/pid.md\nsummary: s\nsteps:\n  - notice: n\n    run: echo two\n    shows: |\n      one\n    expect:\n      stdout: ['^one$']\n",
    )?;
    let out = run(lab().arg("--lessons").arg(dir.path()).args(["check", "1"]))?;
    ensure_eq(out.status.code(), Some(1), &describe(&out))?;
    let text = stdout(&out);
    ensure(
        text.contains("01-wrong.yaml:7: step 1: stdout has no line matching '^one$'"),
        text.clone(),
    )?;
    ensure(text.contains("| two"), text.clone())?;
    ensure(text.ends_with("0 passed, 1 failed, 0 skipped\n"), text)
}

fn run_first_lesson() -> Result<(), Failed> {
    let out = run(lab().args(["run", "1", "--yes"]))?;
    ensure(out.status.success(), describe(&out))?;
    let text = stdout(&out);
    ensure(text.contains("Lesson 1: The PID namespace"), text.clone())?;
    ensure(!text.contains('✗'), text.clone())?;
    ensure(text.matches("✓ as the book shows").count() >= 5, text)
}

fn book_current() -> Result<(), Failed> {
    let out = run(lab().args(["book", "--check"]))?;
    ensure(out.status.success(), describe(&out))
}

fn lint_wants_a_sandbox() -> Result<(), Failed> {
    let dir = scratch();
    let file = dir.path().join("05-bridge.yaml");
    std::fs::write(
        &file,
        "format_version: 1\ntitle: Bridge\nchapter: namespaces/net.md\nsummary: s\nrequires: [root]\nsteps:\n  - notice: n\n    run: veth-bridge bridge add ub0\n",
    )?;
    let out = run(lab().arg("lint").arg(&file))?;
    ensure_eq(out.status.code(), Some(1), &describe(&out))?;
    let err = stderr(&out);
    ensure(
        err.contains(&format!(
            "{}:8: step 1: `veth-bridge bridge` changes a network stack",
            file.display()
        )) && err.contains("add `sandbox: network`"),
        format!("names the step and the fix: {err}"),
    )?;
    std::fs::write(
        &file,
        "format_version: 1\ntitle: Bridge\nchapter: namespaces/net.md\nsummary: s\nsandbox: network\nsteps:\n  - notice: n\n    run: veth-bridge bridge add ub0\n",
    )?;
    let out = run(lab().arg("lint").arg(&file))?;
    ensure_eq(out.status.code(), Some(1), &describe(&out))?;
    ensure(
        stderr(&out).contains(&format!(
            "{}:5: sandbox: network makes namespaces, which needs root; add root to requires:",
            file.display()
        )),
        describe(&out),
    )
}

/// A lesson in a network sandbox, in its own lessons directory.
fn sandboxed_lessons(dir: &std::path::Path, lessons: &[(&str, &str)]) -> Result<(), Failed> {
    for (name, steps) in lessons {
        std::fs::write(
            dir.join(name),
            format!(
                "format_version: 1\ntitle: Sandboxed\nchapter: network/README.md\nsummary: s\n\
                 sandbox: network\nrequires: [root]\nsteps:\n{steps}"
            ),
        )?;
    }
    Ok(())
}

fn dry_run_of_a_sandboxed_lesson() -> Result<(), Failed> {
    let dir = scratch();
    sandboxed_lessons(
        dir.path(),
        &[(
            "01-only-lo.yaml",
            "  - notice: n\n    run: ip -brief link\n",
        )],
    )?;
    let out = run(lab()
        .arg("--lessons")
        .arg(dir.path())
        .args(["--dry-run", "run", "1"]))?;
    ensure(out.status.success(), describe(&out))?;
    ensure(
        stdout(&out).contains(&format!(
            "in a network sandbox of its own; by hand, as root: {}",
            lab::sandbox::BY_HAND
        )),
        describe(&out),
    )
}

/// Whether a process is gone (or a zombie, waiting for init to reap it:
/// it has left its namespaces).
fn gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

fn network_sandbox() -> Result<(), Failed> {
    let dir = scratch();
    let lessons = dir.path().join("lessons");
    std::fs::create_dir(&lessons)?;
    let out_dir = dir.path().display().to_string();
    // A link made inside, with a name no link on the machine has (this
    // test's pid is in it).
    let link = format!("lsb{}", std::process::id() % 100_000);
    ensure(
        !run(Command::new("ip").args(["link", "show", &link]))?
            .status
            .success(),
        format!("a link {link} exists on this machine already"),
    )?;
    let clean = format!(
        "  - notice: only lo, up\n    run: ip -brief link\n    shows: |\n      lo  UNKNOWN  00:00:00:00:00:00 <LOOPBACK,UP,LOWER_UP>\n    \
         expect:\n      stdout: ['^lo +UNKNOWN .*<LOOPBACK,UP']\n      stdout_lines: 1\n\
         \x20 - notice: a veth pair, in the sandbox\n    run: ip link add {link} type veth peer name {link}p \
         && ip -brief link | wc -l && pwd > {out_dir}/scratch\n    shows: |\n      3\n    \
         expect:\n      stdout: ['^3$']\n"
    );
    let leaves = format!(
        "  - notice: processes left behind, in the sandbox and in a namespace kept in a file\n    \
         run: sleep 300 >/dev/null 2>&1 & echo $! > {out_dir}/sleeper; touch web.ns \
         && unshare --net=web.ns true && (nsenter --net=web.ns sleep 301 >/dev/null 2>&1 & \
         echo $! > {out_dir}/inside) && ip netns add db && pwd > {out_dir}/scratch2\n\
         \x20 - notice: they run\n    run: kill -0 $(cat {out_dir}/sleeper) $(cat {out_dir}/inside) \
         && findmnt -no FSTYPE web.ns && findmnt -no FSTYPE /run/netns/db\n    shows: |\n      nsfs\n      nsfs\n    \
         expect:\n      stdout_lines: 2\n"
    );
    // A process in a session of its own outlives the step's process
    // group, which a timeout kills.
    let times_out = format!(
        "  - notice: too slow\n    run: setsid sleep 302 >/dev/null 2>&1 </dev/null & \
         echo $! > {out_dir}/late; sleep 60\n    timeout: 1\n"
    );
    // A process left in the background with the step's output: the step
    // ends, its output never does.
    let holds_output = format!(
        "  - notice: output held\n    run: sleep 303 & echo $! > {out_dir}/holder\n    timeout: 1\n"
    );
    sandboxed_lessons(
        &lessons,
        &[
            ("01-clean.yaml", &clean),
            ("02-leaves.yaml", &leaves),
            ("03-times-out.yaml", &times_out),
            ("04-holds-output.yaml", &holds_output),
        ],
    )?;
    let out = run(lab()
        .arg("--lessons")
        .arg(&lessons)
        .args(["check", "1", "2", "3", "4"]))?;
    let text = stdout(&out);
    ensure_eq(out.status.code(), Some(1), &describe(&out))?;
    ensure(
        text.contains("lesson 01-clean (Sandboxed) ... ok"),
        describe(&out),
    )?;
    ensure(
        text.contains("step 2: the lesson left 2 processes (pid ")
            && text.contains("running in its sandbox, which lab ended"),
        describe(&out),
    )?;
    ensure(
        text.contains("step 1: `setsid sleep 302")
            && text.contains("did not finish within 1s and was killed"),
        describe(&out),
    )?;
    ensure(
        text.contains("step 1: `sleep 303 &") && text.contains("still holds its output open"),
        describe(&out),
    )?;
    ensure(
        text.ends_with("1 passed, 3 failed, 0 skipped\n"),
        describe(&out),
    )?;
    // The link was made in the sandbox, never on the machine.
    let host = run(Command::new("ip").args(["link", "show", &link]))?;
    ensure(
        !host.status.success(),
        format!("{link} is on the machine:\n{}", describe(&host)),
    )?;
    // The processes the lesson left are gone.
    for file in ["sleeper", "inside", "late", "holder"] {
        let pid = std::fs::read_to_string(dir.path().join(file))?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !gone(&pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        ensure(
            gone(&pid),
            format!("the {file} process {} survived", pid.trim()),
        )?;
    }
    // Nothing the lessons mounted reached the machine, and their scratch
    // directories are gone.
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    for file in ["scratch", "scratch2"] {
        let scratch = std::fs::read_to_string(dir.path().join(file))?;
        let scratch = scratch.trim();
        ensure(
            !std::path::Path::new(scratch).exists(),
            format!("{scratch} survived"),
        )?;
        ensure(
            !mountinfo.contains(scratch),
            format!("a mount under {scratch} on the machine:\n{mountinfo}"),
        )?;
    }
    ensure(
        !std::path::Path::new("/run/netns/db").exists(),
        "ip netns add in the sandbox made /run/netns/db on the machine",
    )
}
