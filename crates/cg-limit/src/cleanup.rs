//! `cg-limit cleanup`: removes the toolkit's cgroups that no running
//! cg-limit holds — what a SIGKILLed run left behind, and the cgroups
//! `create` made — killing any process still in them first.
//!
//! A running cg-limit holds an exclusive `flock()` on its cgroup's
//! directory (memory's, on v1) until it ends, and a share lock on the
//! parent while it makes the cgroup; cleanup takes the parent's lock
//! exclusively before it looks. So it never removes a cgroup in use, nor
//! one a run is in the middle of making — and a lock dies with its process,
//! so a killed run's cgroup is free to go.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;

use steps::{Error, Palette};

use crate::CgroupFs;
use crate::layout::{Controller, Name};
use crate::run::{is_held, kill_all, lock_parent, remove, remove_if_empty};
use crate::units::plural;

/// Exit code when a cgroup asked for could not be removed.
pub const KEPT: u8 = 1;

/// Removes what can be removed and says what it did on `out`.
pub fn run(
    fs: &dyn CgroupFs,
    wanted: &[Name],
    out: &mut impl Write,
    p: Palette,
) -> Result<u8, Error> {
    let layout = fs.layout();
    let existing = layout.existing();
    for name in wanted {
        if !existing.contains(name) {
            return Err(Error::usage(format!(
                "there is no toolkit cgroup named {name}; cg-limit tree shows those there are"
            )));
        }
    }
    // What to look at: the names asked for and everything below them, or
    // everything; the deepest first, so children go before their parents.
    let mut names: Vec<&Name> = existing
        .iter()
        .filter(|n| wanted.is_empty() || wanted.iter().any(|w| n == &w || n.is_below(w)))
        .collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.depth()));

    let parents = layout.toolkit_parents();
    // The memory hierarchy's parents come first: that is where runs lock.
    let (lockers, others): (Vec<_>, Vec<_>) = parents
        .iter()
        .partition(|(controllers, _)| controllers.contains(&Controller::Memory));
    let mut kept: BTreeSet<Name> = BTreeSet::new();
    let mut said = false;
    let mut code = 0;
    for name in names {
        let held_below = kept.iter().any(|k| k.is_below(name));
        let dirs: Vec<PathBuf> = lockers
            .iter()
            .chain(others.iter())
            .map(|(_, parent)| parent.join(name.as_str()))
            .filter(|d| d.is_dir())
            .collect();
        // Hold the parents still while deciding: no run can be making a
        // cgroup in them meanwhile.
        let _guards: Vec<_> = dirs
            .iter()
            .filter_map(|d| d.parent().and_then(|p| lock_parent(p, true)))
            .collect();
        let held = dirs.iter().any(|d| is_held(d));
        if held || held_below {
            kept.insert(name.clone());
            let why = if held {
                "a running cg-limit holds it"
            } else {
                "a cgroup below it is in use"
            };
            let _ = writeln!(out, "kept {name}: {why}");
            said = true;
            if wanted.contains(name) {
                code = KEPT;
            }
            continue;
        }
        let mut killed = 0;
        let mut failure = None;
        for dir in &dirs {
            match kill_all(dir, false) {
                Ok(n) => killed = killed.max(n),
                Err(e) => failure = Some(e.to_string()),
            }
            if let Err(errno) = remove(dir) {
                failure =
                    Some(Error::sys(format!("rmdir(\"{}\")", dir.display()), errno).to_string());
            }
        }
        match failure {
            Some(why) => {
                let _ = writeln!(out, "{}", p.bad(&format!("could not remove {name}: {why}")));
                kept.insert(name.clone());
                code = KEPT;
            }
            None if killed > 0 => {
                let killed = plural(killed as u64, "process", "processes");
                let _ = writeln!(out, "removed {name} (killed {killed})");
            }
            None => {
                let _ = writeln!(out, "removed {name}");
            }
        }
        said = true;
    }
    for (_, parent) in &parents {
        remove_if_empty(parent);
    }
    if !said {
        let _ = writeln!(out, "nothing to clean up: no toolkit cgroup is left");
    }
    Ok(code)
}
