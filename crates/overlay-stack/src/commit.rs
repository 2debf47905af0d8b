//! An upper layer kept as a new read-only layer, like `docker commit`.
//!
//! `docker commit` turns a container's changes into a new image layer.
//! For overlayfs that is a copy of the upper directory — whiteouts and
//! opaque directories included, since they are what makes the layer
//! delete things from the layers below it — that can then be given as a
//! lower layer to any number of new stacks.
//!
//! The copy is made beside the new layer's name and renamed into place
//! at the end, so a failed commit leaves no half layer behind.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use steps::{Chapter, Error, Narrator, Plan, Step, chapter};

use crate::paths;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Copy the upper layer's tree, everything kept.
    Copy { from: PathBuf, to: PathBuf },
    /// Put the finished copy in place.
    Rename { from: PathBuf, to: PathBuf },
}

impl Step for Op {
    fn call(&self) -> String {
        match self {
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
    let staging = parent.join(format!(
        ".{}.commit-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mut plan = Plan::new();
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
    let mut number = 0;
    let result = plan.execute(narrator, |op| {
        match op {
            Op::Copy { from, to } => {
                made = Some(to.clone());
                crate::tree::copy(from, to)?;
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
