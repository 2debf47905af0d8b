//! # lab: the lesson runner
//!
//! Lessons are data ([`lesson`]); the book renders them ([`book`]), `lab`
//! walks learners through them and checks them ([`runner`]), and
//! [`machine`] says what a machine supports so that a lesson that cannot
//! run there is skipped with the reason, never passed. A lesson that
//! changes a network stack runs in a [`sandbox`] of its own.

pub mod book;
pub mod lesson;
pub mod machine;
pub mod runner;
pub mod sandbox;

use std::path::PathBuf;

/// Finds the lessons: `$UNDERHOOD_LESSONS`, else `lessons/` in the current
/// directory or one above it, else beside the source tree `lab` was built
/// from.
pub fn lessons_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("UNDERHOOD_LESSONS") {
        return dir.into();
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    for dir in cwd.ancestors().take(3) {
        let candidate = dir.join("lessons");
        if candidate.is_dir() {
            return candidate;
        }
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../lessons")
}

/// `book/src` beside a lessons directory.
pub fn book_src_for(lessons: &std::path::Path) -> PathBuf {
    match lessons.parent() {
        Some(parent) => parent.join("book/src"),
        None => lessons.join("../book/src"),
    }
}
