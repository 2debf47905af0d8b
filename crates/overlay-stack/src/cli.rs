//! The command line: flags parsed into requests, nothing touched.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use steps::StepArgs;

use crate::stack::{Stack, Writable};

/// What `--help` ends with: the codes a script can rely on.
pub const EXIT_STATUS: &str = "\
Exit status: 0 done; 2 bad usage or a bad value, named on one line, before anything was made
(a flag, a path that is missing, is a file, is / or has a separator overlayfs reads, a name
too long, an image that cannot be read as one); 125 overlay-stack itself failed: a kernel
call was refused (as a user: EPERM, EACCES), or an image's digest or size does not match; what
the plan had made is undone. Interrupted (Ctrl-C, SIGTERM, SIGHUP), it undoes its plan and
ends by that signal. A commit or import killed before its rename leaves its hidden staging
directory, which the next one into the same directory removes.";

/// OverlayFS by hand: layers, copy-on-write, whiteouts, images.
///
/// Mounts a stack of read-only lower layers under one writable upper layer
/// (mount -t overlay), shows what a stack changed (docker diff) and what
/// each layer holds (docker history), keeps an upper layer as a new layer
/// (docker commit), builds a small root filesystem from the host's busybox,
/// and unpacks container images into layers (docker load).
#[derive(Debug, Parser)]
#[command(
    name = "overlay-stack",
    version,
    max_term_width = 100,
    after_help = EXIT_STATUS
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    #[command(flatten)]
    pub steps: StepArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mount a stack of layers at TARGET (made if missing), like
    /// mount -t overlay overlay -o lowerdir=A:B,upperdir=U,workdir=W TARGET
    Mount {
        /// The read-only layers, topmost first, separated by ':' (repeat the
        /// flag to add more below)
        #[arg(long, value_name = "TOP:…:BASE", required_unless_present = "image")]
        lower: Vec<String>,
        /// An imported image's layers as the lower layers (below any
        /// --lower ones)
        #[arg(long, value_name = "DIR")]
        image: Option<PathBuf>,
        /// The writable layer that takes every change (made if missing);
        /// without it the stack is read-only
        #[arg(long, value_name = "DIR", requires = "work")]
        upper: Option<PathBuf>,
        /// An empty directory on the upper's filesystem for overlayfs's own
        /// use (made if missing)
        #[arg(long, value_name = "DIR", requires = "upper")]
        work: Option<PathBuf>,
        /// Where the merged view appears
        target: PathBuf,
    },
    /// Unmount the stack at TARGET; its layers stay as they are
    Umount {
        /// The mount point of the stack
        target: PathBuf,
    },
    /// What a stack changed, like docker diff: A added, C changed, D deleted
    Diff {
        /// A mount point, or an upper layer (of a mounted stack, or with
        /// --lower)
        upper: PathBuf,
        /// The lower layers to compare with, topmost first; found by
        /// themselves for a mounted stack
        #[arg(long, value_name = "TOP:…:BASE")]
        lower: Vec<String>,
        /// Also say how each change is kept on disk
        #[arg(short, long)]
        long: bool,
    },
    /// What each layer holds, like docker history: layers topmost first, a
    /// mount point, or an imported image
    History {
        /// Layer directories (topmost first), a mount point, or a directory
        /// made by import
        #[arg(required = true, value_name = "LAYER…|TARGET|IMAGE")]
        layers: Vec<PathBuf>,
        /// Do not shorten the CREATED BY column
        #[arg(long)]
        no_trunc: bool,
    },
    /// Keep an upper layer as a new read-only layer, like docker commit
    Commit {
        /// The upper layer to keep
        upper: PathBuf,
        /// The new layer's directory (must not exist)
        layer: PathBuf,
    },
    /// Build a small root filesystem from the host's static busybox (or its
    /// own binaries); without DIR, the cached one mini-run uses
    Rootfs {
        /// Where to build it (made if missing; an empty directory, or one
        /// holding a rootfs built here before)
        dir: Option<PathBuf>,
        /// Copy the host's shell and tools and their libraries, even where a
        /// static busybox exists
        #[arg(long)]
        from_host: bool,
    },
    /// Unpack an image — an OCI layout (directory or tar) or a docker save
    /// tar — into a directory of layers, checking every digest
    Import {
        /// The image: an OCI image layout directory or tar, or a docker save
        /// tarball
        image: PathBuf,
        /// Where its layers go (must not exist, or be empty)
        dir: PathBuf,
        /// Which image, when the source holds several (a tag)
        #[arg(long = "ref", value_name = "NAME")]
        reference: Option<String>,
    },
}

/// The layers named by `--lower` flags: each value split at ':'.
pub fn lowers(values: &[String]) -> Vec<PathBuf> {
    values
        .iter()
        .flat_map(|v| v.split(':'))
        .filter(|l| !l.is_empty())
        .map(PathBuf::from)
        .collect()
}

impl Command {
    /// The stack a `mount` asks for, unchecked.
    pub fn stack(&self) -> Option<Stack> {
        let Command::Mount {
            lower,
            upper,
            work,
            target,
            ..
        } = self
        else {
            return None;
        };
        Some(Stack {
            lowers: lowers(lower),
            writable: match (upper, work) {
                (Some(upper), Some(work)) => Some(Writable {
                    upper: upper.clone(),
                    work: work.clone(),
                }),
                _ => None,
            },
            target: target.clone(),
            userxattr: crate::whiteout::in_user_namespace(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_flags_split_at_colons_and_add_up() {
        let cli = Cli::try_parse_from([
            "overlay-stack",
            "mount",
            "--lower",
            "top:mid",
            "--lower",
            "base",
            "--upper",
            "u",
            "--work",
            "w",
            "m",
        ])
        .unwrap();
        let stack = cli.command.stack().unwrap();
        assert_eq!(
            stack.lowers,
            ["top", "mid", "base"].map(PathBuf::from).to_vec()
        );
        assert_eq!(stack.writable.unwrap().work, PathBuf::from("w"));
    }

    #[test]
    fn upper_needs_work() {
        let err = Cli::try_parse_from([
            "overlay-stack",
            "mount",
            "--lower",
            "a",
            "--upper",
            "u",
            "m",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("--work"), "{err}");
    }
}
