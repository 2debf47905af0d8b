//! `lab`: list, run and check the lessons; `lab doctor` tells what this
//! machine supports.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lab::lesson::{self, Lesson, LessonError};
use lab::machine::{Machine, UserNamespaces};
use lab::runner::{self, LessonRun, Verdict};
use steps::{Palette, StepArgs};

const AFTER_HELP: &str = "\
Exit status: 0 all went as the lessons say; 1 a lesson's output did not match
(check, run) or a lesson file has problems (lint, book --check); 2 bad usage;
3 the lesson cannot run on this machine (see lab doctor).";

/// The underhood lesson runner.
#[derive(Debug, Parser)]
#[command(name = "lab", version, about = "Run and check the underhood lessons", after_help = AFTER_HELP)]
struct Cli {
    /// The lessons directory (default: ./lessons, or $UNDERHOOD_LESSONS)
    #[arg(long, global = true, value_name = "DIR")]
    lessons: Option<PathBuf>,

    #[command(flatten)]
    steps: StepArgs,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the lessons and whether this machine can run each
    List,
    /// Walk through a lesson: explain, show the command, run it on Enter, check it
    Run {
        /// The lesson's number
        lesson: u32,
        /// Run every step without waiting for Enter
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Run lessons and check every output; exit 1 on a mismatch
    Check {
        /// Lesson numbers
        #[arg(value_name = "LESSON")]
        numbers: Vec<u32>,
        /// Check every lesson
        #[arg(long, conflicts_with = "numbers")]
        all: bool,
    },
    /// Tell what this machine supports and which lessons run here
    Doctor,
    /// Check lesson files for mistakes, with file:line and what to fix
    Lint {
        /// Lesson files (default: all)
        files: Vec<PathBuf>,
    },
    /// Regenerate the book's lesson pages from the lessons
    Book {
        /// Only check that the pages are up to date
        #[arg(long)]
        check: bool,
    },
}

const EXIT_MISMATCH: u8 = 1;
const EXIT_CANNOT_RUN: u8 = 3;

fn main() -> ExitCode {
    steps::sys::restore_sigpipe();
    let cli: Cli = steps::cli::parse("lab");
    let palette = cli.steps.stdout_palette();
    let dir = cli.lessons.clone().unwrap_or_else(lab::lessons_dir);
    let code = match &cli.command {
        Command::Lint { files } => lint(&dir, files, palette),
        command => match lesson::load_all(&dir) {
            Err(problems) => {
                report_problems(&problems);
                EXIT_MISMATCH
            }
            Ok(lessons) => match command {
                Command::List => list(&lessons, palette),
                Command::Run { lesson, yes } => run(&lessons, *lesson, *yes, &cli.steps, palette),
                Command::Check { numbers, all } => {
                    check(&lessons, numbers, *all, &cli.steps, palette)
                }
                Command::Doctor => doctor(&lessons, palette),
                Command::Book { check } => book(&dir, &lessons, *check),
                Command::Lint { .. } => unreachable!(),
            },
        },
    };
    ExitCode::from(code)
}

fn report_problems(problems: &[LessonError]) {
    for problem in problems {
        eprintln!("lab: {problem}");
    }
}

fn find(lessons: &[Lesson], number: u32) -> Result<&Lesson, u8> {
    lessons.iter().find(|l| l.number == number).ok_or_else(|| {
        let known: Vec<String> = lessons.iter().map(|l| l.number.to_string()).collect();
        eprintln!(
            "lab: there is no lesson {number}; the lessons are {} (lab list)",
            known.join(", ")
        );
        steps::exit::USAGE
    })
}

fn list(lessons: &[Lesson], p: Palette) -> u8 {
    print_lessons(lessons, &Machine::probe(), p);
    0
}

/// One line per lesson: number, title, and whether it runs on `machine`.
fn print_lessons(lessons: &[Lesson], machine: &Machine, p: Palette) {
    for lesson in lessons {
        let unmet = machine.unmet(lesson);
        let status = if unmet.is_empty() {
            p.good("runs here")
        } else {
            p.warn(&unmet.join("; "))
        };
        println!("{:>3}  {:<40} {status}", lesson.number, lesson.title);
    }
}

fn run(lessons: &[Lesson], number: u32, yes: bool, args: &StepArgs, p: Palette) -> u8 {
    let lesson = match find(lessons, number) {
        Ok(lesson) => lesson,
        Err(code) => return code,
    };
    println!(
        "{} {}",
        p.bold(&format!("Lesson {}:", lesson.number)),
        p.bold(&lesson.title)
    );
    println!("{}", lesson.summary.trim());
    println!(
        "{}",
        p.dim(&format!(
            "(the book explains it in book/src/{})",
            lesson.chapter
        ))
    );
    if lesson.sandbox.is_some() {
        println!(
            "{}",
            p.dim(&format!(
                "(in a network sandbox of its own; by hand, as root: {})",
                lab::sandbox::BY_HAND
            ))
        );
    }
    if !args.dry_run {
        let unmet = Machine::probe().unmet(lesson);
        if !unmet.is_empty() {
            eprintln!("lab: lesson {number} cannot run here: {}", unmet.join("; "));
            return EXIT_CANNOT_RUN;
        }
    }
    // --dry-run shows the steps and makes nothing, not even the sandbox.
    let session = if args.dry_run {
        None
    } else {
        match LessonRun::new(lesson, &runner::toolkit_dir()) {
            Ok(session) => Some(session),
            Err(e) => {
                eprintln!("lab: cannot prepare lesson {number}: {e}");
                return steps::exit::SETUP;
            }
        }
    };
    let interactive = !yes && std::io::stdin().is_terminal();
    // The same prompt as the book: `#` where the lesson needs root.
    let prompt = if lesson.requires.contains(&lesson::Requirement::Root) {
        "#"
    } else {
        "$"
    };
    let mut mismatches = 0;
    let total = lesson.steps.len();
    for (index, step) in lesson.steps.iter().enumerate() {
        println!("\n{}", p.bold(&format!("Step {} of {total}", index + 1)));
        println!("{}", step.notice.trim());
        println!("  {} {}", p.dim(prompt), p.call(&step.run));
        if args.explain || args.dry_run {
            for pattern in &step.expect.stdout {
                println!("  {}", p.dim(&format!("expect a line matching {pattern}")));
            }
            println!(
                "  {}",
                p.dim(&format!("expect exit status {}", step.expect.exit))
            );
        }
        let Some(session) = &session else {
            continue;
        };
        if interactive {
            print!("{}", p.dim("  [Enter] run it, [q] quit: "));
            let _ = std::io::stdout().flush();
            let mut answer = String::new();
            let read = std::io::stdin().lock().read_line(&mut answer).unwrap_or(0);
            if read > 0 && answer.trim().eq_ignore_ascii_case("q") {
                break;
            }
        }
        match session.run(step) {
            Ok(output) => {
                print!("{}", output.stdout);
                if !output.stderr.is_empty() {
                    print!("{}", p.dim(&output.stderr));
                }
                match step.expect.matches(&output, &step.shows) {
                    Ok(()) => println!("  {}", p.good("✓ as the book shows")),
                    Err(reasons) => {
                        mismatches += 1;
                        println!(
                            "  {} {}",
                            p.bad("✗ not what the book shows:"),
                            reasons.join("; ")
                        );
                    }
                }
            }
            Err(e) => {
                mismatches += 1;
                println!("  {} {e}", p.bad("✗"));
            }
        }
    }
    if let Some(Err(e)) = session.map(LessonRun::finish) {
        eprintln!("lab: {e}");
        mismatches += 1;
    }
    if mismatches == 0 { 0 } else { EXIT_MISMATCH }
}

fn check(lessons: &[Lesson], numbers: &[u32], all: bool, args: &StepArgs, p: Palette) -> u8 {
    if numbers.is_empty() && !all {
        eprintln!("lab: name lessons to check, or --all; see 'lab check --help'");
        return steps::exit::USAGE;
    }
    let mut chosen = Vec::new();
    if all {
        chosen.extend(lessons.iter());
    } else {
        for number in numbers {
            match find(lessons, *number) {
                Ok(lesson) => chosen.push(lesson),
                Err(code) => return code,
            }
        }
    }
    let machine = Machine::probe();
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for lesson in chosen {
        let label = format!("lesson {} ({})", lesson.id(), lesson.title);
        if args.dry_run {
            println!("{label}");
            for step in &lesson.steps {
                println!("  $ {}", step.run);
            }
            continue;
        }
        let unmet = machine.unmet(lesson);
        let verdict = if unmet.is_empty() {
            runner::check(lesson, &runner::toolkit_dir())
        } else {
            Verdict::Skipped(unmet)
        };
        match verdict {
            Verdict::Passed { steps } => {
                passed += 1;
                println!("{label} ... {} ({steps} steps)", p.good("ok"));
            }
            Verdict::Skipped(reasons) => {
                skipped += 1;
                println!("{label} ... {} {}", p.warn("skipped:"), reasons.join("; "));
            }
            Verdict::Failed {
                step,
                reasons,
                output,
            } => {
                failed += 1;
                let line = lesson.step_line(step.saturating_sub(1)).unwrap_or(0);
                println!("{label} ... {}", p.bad("FAILED"));
                println!(
                    "  {}:{line}: step {step}: {}",
                    lesson.path.display(),
                    reasons.join("; ")
                );
                if let Some(output) = output {
                    println!("  $ {}", lesson.steps[step - 1].run);
                    for line in output.stdout.lines() {
                        println!("  | {line}");
                    }
                    for line in output.stderr.lines() {
                        println!("  ! {line}");
                    }
                }
            }
        }
    }
    if !args.dry_run {
        println!("{passed} passed, {failed} failed, {skipped} skipped");
    }
    if failed == 0 { 0 } else { EXIT_MISMATCH }
}

fn yes_no(p: Palette, ok: bool, yes: &str, no: &str) -> String {
    if ok { p.good(yes) } else { p.warn(no) }
}

fn doctor(lessons: &[Lesson], p: Palette) -> u8 {
    let m = Machine::probe();
    let row = |name: &str, value: String| println!("{:<22} {value}", name);
    row(
        "kernel",
        format!(
            "{} (time namespaces need 5.6, unprivileged overlay 5.11)",
            m.kernel
        ),
    );
    row(
        "running as",
        yes_no(
            p,
            m.root,
            "root",
            "an unprivileged user: most lessons need sudo",
        ),
    );
    row("cgroups", m.cgroups.describe().to_string());
    row(
        "user namespaces",
        match &m.user_namespaces {
            UserNamespaces::Allowed => p.good("allowed for unprivileged users"),
            UserNamespaces::Denied(why) => p.warn(&format!("not for unprivileged users: {why}")),
        },
    );
    row(
        "time namespaces",
        yes_no(p, m.time_namespaces, "yes", "no (needs Linux 5.6)"),
    );
    row(
        "overlayfs",
        yes_no(p, m.overlayfs, "yes", "no (modprobe overlay)"),
    );
    row(
        "unprivileged overlay",
        match m.rootless_overlay() {
            Ok(()) => p.good("yes"),
            Err(why) => p.warn(&format!("no: {why}")),
        },
    );
    row(
        "idmapped mounts",
        match &m.idmapped_mounts {
            Some(Ok(())) => p.good(&format!("yes, of {}", lab::machine::IDMAP_PROBED)),
            Some(Err(why)) => p.warn(&format!("no: {why}")),
            None => p.warn("unknown (needs root to try)"),
        },
    );
    row(
        "nft",
        m.nft
            .clone()
            .map(|path| p.good(&path))
            .unwrap_or_else(|| p.warn("missing (apt install nftables)")),
    );
    row(
        "busybox",
        m.busybox
            .clone()
            .map(|path| p.good(&path))
            .unwrap_or_else(|| p.warn("missing (apt install busybox-static)")),
    );
    println!();
    let runnable = lessons.iter().filter(|l| m.unmet(l).is_empty()).count();
    println!("{runnable} of {} lessons run here:", lessons.len());
    print_lessons(lessons, &m, p);
    0
}

fn lint(dir: &Path, files: &[PathBuf], p: Palette) -> u8 {
    let parsed = if files.is_empty() {
        lesson::load_all(dir)
    } else {
        lesson::load_files(files)
    };
    let lessons = match parsed {
        Ok(lessons) => lessons,
        Err(problems) => {
            report_problems(&problems);
            return EXIT_MISMATCH;
        }
    };
    // What only the book can tell: the chapter exists and shows the lesson.
    let book_src = lab::book_src_for(dir);
    let mut problems = Vec::new();
    for lesson in &lessons {
        // What the parser lets through: a heuristic on the commands.
        problems.extend(
            lesson
                .unsandboxed_network_changes()
                .iter()
                .map(ToString::to_string),
        );
        let chapter = book_src.join(&lesson.chapter);
        let include = format!("{{{{#include ../lessons/{}.md}}}}", lesson.id());
        match std::fs::read_to_string(&chapter) {
            Err(_) => problems.push(format!(
                "{}: chapter {} does not exist under book/src; write it or fix chapter:",
                lesson.path.display(),
                lesson.chapter
            )),
            Ok(text) if !text.contains(&include) => problems.push(format!(
                "{}: chapter {} does not show the lesson; add the line {include}",
                lesson.path.display(),
                lesson.chapter
            )),
            Ok(_) => {}
        }
    }
    for problem in &problems {
        eprintln!("lab: {problem}");
    }
    if problems.is_empty() {
        let noun = if lessons.len() == 1 {
            "lesson"
        } else {
            "lessons"
        };
        println!("{} {} {noun}", p.good("ok:"), lessons.len());
        0
    } else {
        EXIT_MISMATCH
    }
}

fn book(dir: &Path, lessons: &[Lesson], check_only: bool) -> u8 {
    let book_src = lab::book_src_for(dir);
    if check_only {
        let stale = lab::book::stale_pages(&book_src, lessons);
        for page in &stale {
            eprintln!(
                "lab: {} is out of date with its lesson; run lab book",
                page.display()
            );
        }
        return if stale.is_empty() { 0 } else { EXIT_MISMATCH };
    }
    match lab::book::write_pages(&book_src, lessons) {
        Ok(written) => {
            for page in written {
                println!("wrote {}", page.display());
            }
            0
        }
        Err(e) => {
            eprintln!(
                "lab: cannot write the book's lesson pages under {}: {e}",
                book_src.display()
            );
            steps::exit::SETUP
        }
    }
}
