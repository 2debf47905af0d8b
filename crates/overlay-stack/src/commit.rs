//! An upper layer kept as a new read-only layer, like `docker commit`.
//!
//! `docker commit` turns a container's changes into a new image layer.
//! For overlayfs that is a copy of the upper directory — whiteouts and
//! opaque directories included, since they are what makes the layer
//! delete things from the layers below it — that can then be given as a
//! lower layer to any number of new stacks.
//!
//! The copy is made beside the new layer's name and renamed into place
//! at the end, so a failed commit leaves no half layer behind; the copy a
//! killed commit left, the next commit of that name removes
//! ([`crate::staging`]).

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use steps::{Chapter, Error, Narrator, Plan, Step, chapter};

use crate::paths;
use crate::staging::{self, Kind};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// The copy of a commit of the same name that was killed.
    RemoveLeftover { path: PathBuf, pid: u32 },
    /// Copy the upper layer's tree, everything kept, into a staging
    /// directory this commit makes and locks.
    Copy { from: PathBuf, to: PathBuf },
    /// Put the finished copy in place.
    Rename { from: PathBuf, to: PathBuf },
}

impl Step for Op {
    fn call(&self) -> String {
        match self {
            Op::RemoveLeftover { path, .. } => format!("rm -r \"{}\"", path.display()),
            Op::Copy { from, to } => format!(
                "copy the tree \"{}\" → \"{}\" (contents, owners, modes, times, xattrs, \
                 whiteouts; like cp -a)",
                from.display(),
                to.display()
            ),
            Op::Rename { from, to } => {
                format!("rename(\"{}\", \"{}\")", from.display(), to.display())
            }
        }
    }

    fn why(&self) -> String {
        match self {
            Op::RemoveLeftover { pid, .. } => format!(
                "the copy a commit of the same name left when it was killed: no process \
                 {pid} runs, and none holds its lock"
            ),
            Op::Copy { .. } => {
                "the upper layer holds every change of the stack, deletions as whiteouts: \
                 copied, it is a layer that makes the same changes to any stack"
                    .into()
            }
            Op::Rename { .. } => {
                "rename is atomic: the new layer appears whole or not at all".into()
            }
        }
    }

    fn chapter(&self) -> Chapter {
        chapter::COPY_ON_WRITE
    }
}

/// The plan that commits `upper` as the new layer `layer`. Reads what it
/// needs, writes nothing.
pub fn plan(upper: &Path, layer: &Path) -> Result<Plan<Op>, Error> {
    let from = check_upper(upper)?;
    let (parent, name) = paths::new_layer_dir("LAYER", layer, "./layer2")?;
    if std::fs::symlink_metadata(layer).is_ok() {
        return Err(Error::usage(format!(
            "LAYER {}: already exists; a committed layer gets a new name",
            paths::shown(layer)
        )));
    }
    if !parent.is_dir() {
        return Err(Error::usage(format!(
            "LAYER {}: its parent {} is not a directory; make it first (mkdir -p {})",
            paths::shown(layer),
            paths::shown(&parent),
            paths::shown(&parent)
        )));
    }
    let inside = std::fs::canonicalize(&parent)
        .is_ok_and(|p| std::fs::canonicalize(&from).is_ok_and(|from| p.starts_with(from)));
    if inside {
        return Err(Error::usage(format!(
            "LAYER {}: inside the upper layer {}, which would then copy itself and hold \
             the new layer; put the layer beside the upper",
            paths::shown(layer),
            paths::shown(upper)
        )));
    }
    let mut plan = Plan::new();
    for leftover in staging::leftovers(&parent, &name, Kind::Commit) {
        plan.push(Op::RemoveLeftover {
            path: leftover.path,
            pid: leftover.pid,
        });
    }
    let staging = staging::path(&parent, &name, Kind::Commit);
    plan.push(Op::Copy {
        from,
        to: staging.clone(),
    });
    plan.push(Op::Rename {
        from: staging,
        to: layer.to_path_buf(),
    });
    Ok(plan)
}

/// UPPER must be a directory, and not `/`. Gives back the tree to copy:
/// UPPER, or the directory it is a symlink to.
fn check_upper(upper: &Path) -> Result<PathBuf, Error> {
    paths::check("UPPER", upper)?;
    let shown = paths::shown(upper);
    match std::fs::metadata(upper) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::usage(format!(
                "UPPER {shown}: not a directory; give the upper layer of a stack (its --upper)"
            )));
        }
        Err(_) => {
            return Err(Error::usage(format!(
                "UPPER {shown}: no such directory; give the upper layer of a stack (its --upper)"
            )));
        }
    }
    if paths::is_root(upper) {
        return Err(Error::usage(format!(
            "UPPER {shown}: the root directory, not an upper layer; give the --upper of a stack"
        )));
    }
    // The tree is the directory a symlink points to, with its attributes.
    let is_link = std::fs::symlink_metadata(upper).is_ok_and(|m| m.file_type().is_symlink());
    if is_link {
        Ok(std::fs::canonicalize(upper).unwrap_or_else(|_| upper.to_path_buf()))
    } else {
        Ok(upper.to_path_buf())
    }
}

/// Makes the copy and renames it into place; on failure removes the copy,
/// and the new layer too if the plan is stopped after the rename.
pub fn execute(plan: &Plan<Op>, narrator: &Narrator) -> Result<(), Error> {
    let mut made = None;
    // The lock on the copy, held until the commit ends.
    let mut held = None;
    let mut number = 0;
    let result = plan.execute(narrator, |op| {
        match op {
            Op::RemoveLeftover { path, .. } => {
                staging::remove(path).map_err(|e| Error::io(op.call(), &e))?;
            }
            Op::Copy { from, to } => {
                held = Some(staging::make(to).map_err(|(call, errno)| {
                    let error = Error::sys(format!("{call}(\"{}\")", to.display()), errno);
                    match errno {
                        nix::errno::Errno::EACCES | nix::errno::Errno::EPERM => error.hint(
                            "you may not write in the layer's directory: commit into one \
                             of yours, or run as root",
                        ),
                        _ => error,
                    }
                })?);
                made = Some(to.clone());
                crate::tree::copy_into(from, to)?;
            }
            Op::Rename { from, to } => {
                std::fs::rename(from, to).map_err(|e| Error::io(op.call(), &e))?;
                made = Some(to.clone());
            }
        }
        number += 1;
        crate::interrupt::after_step(number)?;
        Ok(ControlFlow::<()>::Continue(()))
    });
    if let (Err(_), Some(made)) = (&result, made) {
        let _ = std::fs::remove_dir_all(made);
    }
    drop(held);
    result.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_copies_beside_then_renames() {
        let dir = tempfile::tempdir().unwrap();
        let upper = dir.path().join("upper");
        std::fs::create_dir(&upper).unwrap();
        let layer = dir.path().join("layer2");
        let plan = plan(&upper, &layer).unwrap();
        let calls = plan.calls();
        assert!(calls[0].starts_with(&format!("copy the tree \"{}\"", upper.display())));
        assert!(calls[1].ends_with(&format!("\"{}\")", layer.display())));
        execute(&plan, &Narrator::quiet("test")).unwrap();
        assert!(layer.is_dir());
        let err = super::plan(&upper, &layer).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
    }
}
