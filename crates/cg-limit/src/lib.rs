//! # cg-limit
//!
//! Runs a command in a new control group with limits, watches what it uses,
//! and removes the group when the command ends — `systemd-run -p`,
//! `cgexec` and `docker stats` in one small tool built to be read.
//!
//! A control group (cgroup) is a directory in the cgroup filesystem: the
//! processes listed in its `cgroup.procs` share the limits written to its
//! files, and every ancestor's limits apply too. See
//! <https://docs.kernel.org/admin-guide/cgroup-v2.html> and
//! [cgroups(7)](https://man7.org/linux/man-pages/man7/cgroups.7.html).
//!
//! * [`layout`] finds the cgroup filesystem (v2, or v1 and hybrid) once;
//! * [`v1`] and [`v2`] are the two backends behind [`Hierarchy`];
//! * [`controller`] has one file per controller — memory, cpu, pids, io —
//!   each saying which file of which version a flag writes, and how usage
//!   is read back;
//! * [`plan`] turns a request into the [`steps::Plan`] of file writes and
//!   process calls that [`run`] executes;
//! * [`stats`], [`tree`] and [`cleanup`] observe and tidy up.

pub mod cgfs;
pub mod cleanup;
pub mod cli;
pub mod controller;
pub mod layout;
pub mod plan;
pub mod run;
pub mod stats;
pub mod summary;
pub mod tree;
pub mod units;
pub mod v1;
pub mod v2;

use std::path::PathBuf;

pub use layout::{Cgroup, Controller, Layout, Name, Version};
use steps::Error;

/// What differs between cgroup v1 and v2, behind one interface: how a
/// cgroup is made, joined and removed, and where its usage is read.
/// Everything else — which file a flag writes — is per controller, in
/// [`controller`].
pub trait CgroupFs: std::fmt::Debug {
    fn layout(&self) -> &Layout;
    fn version(&self) -> Version {
        self.layout().version()
    }
    /// Whether the controllers are available here; an error says how to
    /// make them so.
    fn check(&self, needed: &[Controller]) -> Result<(), Error>;
    /// The steps that make a cgroup, the cgroups above it first; with
    /// `lock`, one that holds it while cg-limit runs.
    fn create(&self, cgroup: &Cgroup, lock: bool) -> Vec<plan::Op>;
    /// The steps by which a process moves itself into the cgroup.
    fn join(&self, cgroup: &Cgroup) -> Vec<plan::Op>;
    /// The files the summary reads.
    fn usage_files(&self, cgroup: &Cgroup) -> Vec<PathBuf>;
    /// The steps that end what is left in the cgroup and remove it, and
    /// the cgroups above it that are no longer needed.
    fn remove(&self, cgroup: &Cgroup) -> Vec<plan::Op>;
}

/// The cgroup filesystem of this machine, detected once.
pub fn open() -> Result<Box<dyn CgroupFs>, Error> {
    Ok(match Layout::detect()? {
        Layout::V2 { mount } => Box::new(v2::CgroupV2::new(mount)),
        Layout::V1 { hierarchies } => Box::new(v1::CgroupV1::new(hierarchies)),
    })
}

/// Without root: the cgroup v2 subtree delegated to the caller, as a
/// hierarchy of its own whose top is the delegated cgroup, or `None`.
///
/// Root may write anywhere in `/sys/fs/cgroup`; a user only to files they
/// own. Delegating a subtree (systemd's `Delegate=yes`) hands the user its
/// directory and its `cgroup.procs`, and a user may move a process
/// between two cgroups when they may write the `cgroup.procs` of the two's
/// common ancestor. So the top of what was delegated is the highest
/// cgroup above the caller's own whose `cgroup.procs` the caller owns:
/// the toolkit's parent goes beneath it, and processes may move from the
/// caller's cgroup into it. v1 is never delegated.
/// See <https://docs.kernel.org/admin-guide/cgroup-v2.html#delegation>.
pub fn delegated() -> Option<Box<dyn CgroupFs>> {
    use std::os::unix::fs::MetadataExt;
    if layout::Mounted::detect() != layout::Mounted::V2 {
        return None;
    }
    let mount = PathBuf::from("/sys/fs/cgroup");
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let own = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    let uid = nix::unistd::Uid::effective().as_raw();
    let owned = |dir: &std::path::Path| {
        std::fs::metadata(dir.join("cgroup.procs")).is_ok_and(|m| m.uid() == uid)
    };
    let mut top = None;
    let mut dir = mount.join(own.trim_start_matches('/'));
    while dir != mount && owned(&dir) {
        top = Some(dir.clone());
        dir.pop();
    }
    top.map(|top| Box::new(v2::CgroupV2::new(top)) as Box<dyn CgroupFs>)
}
