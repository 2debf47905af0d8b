//! Every lesson runs on the real kernel and shows what the book says, and
//! the book cannot drift: its lesson pages are exactly what the lessons
//! render, and its hand-written pages show no commands of their own.

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use lab::lesson::{self, Lesson};
use lab::runner::Verdict;
use support::{Failed, Suite, ensure, machine};

/// Lessons run side by side, but one that `measures` runs alone: another
/// lesson's work on the same CPUs would skew a CPU share or a rate.
static SIDE_BY_SIDE: RwLock<()> = RwLock::new(());

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn main() {
    // Lessons run the toolkit's binaries from where cargo built them.
    support::bin("ns-unshare");
    let lessons = match lesson::load_all(&root().join("lessons")) {
        Ok(lessons) => lessons,
        Err(problems) => {
            for problem in problems {
                eprintln!("{problem}");
            }
            std::process::exit(1);
        }
    };
    let mut suite = Suite::new();
    for lesson in lessons.clone() {
        let unmet = machine().unmet(&lesson);
        let skip = (!unmet.is_empty()).then(|| unmet.join("; "));
        suite.test_unless(
            &format!("lesson_{}", lesson.id().replace('-', "_")),
            skip,
            move || check(&lesson),
        );
    }
    let all = lessons.clone();
    suite.test("book_lesson_pages_match_the_lessons", &[], move || {
        book_in_sync(&all)
    });
    suite.test(
        "book_pages_show_no_commands_of_their_own",
        &[],
        hand_written_pages_show_no_commands,
    );
    suite.test(
        "every_chapter_a_step_names_is_in_the_book",
        &[],
        chapters_exist,
    );
    suite.test("lessons_live_in_their_chapters", &[], move || {
        chapters_include(&lessons)
    });
    suite.run()
}

fn check(lesson: &Lesson) -> Result<(), Failed> {
    let verdict = if lesson.measures {
        let _alone = SIDE_BY_SIDE.write().unwrap_or_else(|e| e.into_inner());
        lab::runner::check(lesson, &support::bin_dir())
    } else {
        let _beside = SIDE_BY_SIDE.read().unwrap_or_else(|e| e.into_inner());
        lab::runner::check(lesson, &support::bin_dir())
    };
    match verdict {
        Verdict::Passed { .. } => Ok(()),
        Verdict::Skipped(reasons) => {
            Err(format!("skipped after all: {}", reasons.join("; ")).into())
        }
        Verdict::Failed {
            step,
            reasons,
            output,
        } => {
            let line = lesson.step_line(step.saturating_sub(1)).unwrap_or(0);
            let mut message = format!(
                "{}:{line}: step {step}: {}",
                lesson.path.display(),
                reasons.join("; ")
            );
            if let Some(output) = output {
                message.push_str(&format!(
                    "\n$ {}\n--- stdout\n{}--- stderr\n{}",
                    lesson.steps[step - 1].run,
                    output.stdout,
                    output.stderr
                ));
            }
            Err(message.into())
        }
    }
}

fn book_src() -> PathBuf {
    root().join("book/src")
}

fn book_in_sync(lessons: &[Lesson]) -> Result<(), Failed> {
    let stale = lab::book::stale_pages(&book_src(), lessons);
    ensure(
        stale.is_empty(),
        format!("out of date with their lessons (run `cargo run --bin lab -- book`): {stale:?}"),
    )
}

fn markdown_pages(dir: &Path, pages: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            markdown_pages(&path, pages);
        } else if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
}

fn hand_written_pages_show_no_commands() -> Result<(), Failed> {
    let mut pages = Vec::new();
    markdown_pages(&book_src(), &mut pages);
    let mut problems = Vec::new();
    for page in pages {
        let text = std::fs::read_to_string(&page)?;
        if text.starts_with(lab::book::GENERATED_MARK) {
            continue;
        }
        let mut in_fence = false;
        for (number, line) in text.lines().enumerate() {
            let trimmed = line.trim_start();
            if let Some(info) = trimmed.strip_prefix("```") {
                if !in_fence {
                    let language = info.trim();
                    if ["", "console", "sh", "bash", "shell", "zsh"].contains(&language) {
                        problems.push(format!(
                            "{}:{}: a ```{language} block; commands belong in a lesson (lessons/*.yaml)",
                            page.display(),
                            number + 1
                        ));
                    }
                }
                in_fence = !in_fence;
            }
        }
    }
    ensure(problems.is_empty(), problems.join("\n"))
}

fn chapters_exist() -> Result<(), Failed> {
    let summary = std::fs::read_to_string(book_src().join("SUMMARY.md"))?;
    let missing: Vec<_> = steps::chapter::ALL
        .iter()
        .filter(|c| {
            !summary.contains(&format!("({})", c.path)) || !book_src().join(c.path).exists()
        })
        .map(|c| c.path)
        .collect();
    ensure(
        missing.is_empty(),
        format!("chapters named by steps but missing from the book: {missing:?}"),
    )
}

fn chapters_include(lessons: &[Lesson]) -> Result<(), Failed> {
    let mut problems = Vec::new();
    for lesson in lessons {
        let include = format!("{{{{#include ../lessons/{}.md}}}}", lesson.id());
        let chapter = std::fs::read_to_string(book_src().join(&lesson.chapter)).unwrap_or_default();
        if !chapter.contains(&include) {
            problems.push(format!("{} should contain {include}", lesson.chapter));
        }
    }
    ensure(problems.is_empty(), problems.join("\n"))
}
