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
