//! # The cgroup v2 backend
//!
//! One hierarchy, one directory per cgroup. Two rules shape what cg-limit
//! does here: a controller reaches a cgroup only if its parent lists it in
//! `cgroup.subtree_control`, and a cgroup that does so may hold no
//! processes itself (the "no internal processes" rule) — so the toolkit's
//! parent sits at the top of the tree, holds no process, and hands every
//! controller down. See
//! <https://docs.kernel.org/admin-guide/cgroup-v2.html#controlling-controllers>.

use std::path::PathBuf;

use steps::Error;

use crate::CgroupFs;
use crate::layout::{Cgroup, Controller, Layout, Version};
use crate::plan::Op;

#[derive(Debug, Clone)]
pub struct CgroupV2 {
    layout: Layout,
    mount: PathBuf,
    /// The controllers the top of the hierarchy hands down.
    available: Vec<String>,
    /// Whether cgroups have `cgroup.kill` (Linux 5.14+).
    cgroup_kill: bool,
}

impl CgroupV2 {
    /// The v2 hierarchy mounted at `mount`, as the kernel has it.
    pub fn new(mount: PathBuf) -> Self {
        let available = std::fs::read_to_string(mount.join("cgroup.subtree_control"))
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let cgroup_kill = steps::kernel::version(&steps::kernel::release()) >= (5, 14);
        Self::with(mount, available, cgroup_kill)
    }

    /// A hierarchy described by its parts, for tests.
    pub fn with(mount: PathBuf, available: Vec<String>, cgroup_kill: bool) -> Self {
        Self {
            layout: Layout::V2 {
                mount: mount.clone(),
            },
            mount,
            available,
            cgroup_kill,
        }
    }

    /// The controllers cg-limit hands down: those it uses that the top of
    /// the hierarchy has.
    fn handed_down(&self) -> Vec<&'static str> {
        ["cpu", "io", "memory", "pids"]
            .into_iter()
            .filter(|c| self.available.iter().any(|a| a == c))
            .collect()
    }

    /// The directories above the cgroup: the toolkit's parent, then the
    /// upper parts of a nested name.
    fn parents(&self, cgroup: &Cgroup) -> Vec<(PathBuf, bool)> {
        let toolkit = self.mount.join(crate::layout::PARENT);
        let mut parents = vec![(toolkit.clone(), true)];
        for ancestor in cgroup.name.ancestors() {
            parents.push((toolkit.join(ancestor.as_str()), false));
        }
        parents
    }

    fn dir(cgroup: &Cgroup) -> PathBuf {
        cgroup.distinct_dirs()[0].to_path_buf()
    }
}

impl CgroupFs for CgroupV2 {
    fn layout(&self) -> &Layout {
        &self.layout
    }

    fn check(&self, needed: &[Controller]) -> Result<(), Error> {
        for controller in needed {
            let name = controller.name(Version::V2);
            if !self.available.iter().any(|a| a == name) {
                let top = self.mount.join("cgroup.subtree_control");
                return Err(Error::setup(format!(
                    "the {name} controller is not handed down from the top of the cgroup v2 hierarchy ({} lists: {})",
                    top.display(),
                    if self.available.is_empty() { "nothing".into() } else { self.available.join(" ") }
                ))
                .hint(format!("as root: echo +{name} > {}", top.display())));
            }
        }
        Ok(())
    }

    fn create(&self, cgroup: &Cgroup, lock: bool) -> Vec<Op> {
        let controllers = self.handed_down();
        let mut ops = Vec::new();
        for (dir, toolkit) in self.parents(cgroup) {
            ops.push(Op::MakeParent {
                dir: dir.clone(),
                toolkit,
            });
            if !controllers.is_empty() {
                ops.push(Op::EnableControllers {
                    dir,
                    controllers: controllers.clone(),
                });
            }
        }
        let dir = Self::dir(cgroup);
        ops.push(Op::MakeCgroup {
            dir: dir.clone(),
            hierarchy: None,
        });
        if lock {
            ops.push(Op::Lock(dir));
        }
        ops
    }

    fn join(&self, cgroup: &Cgroup) -> Vec<Op> {
        vec![Op::Join {
            dir: Self::dir(cgroup),
            hierarchy: None,
        }]
    }

    fn usage_files(&self, cgroup: &Cgroup) -> Vec<PathBuf> {
        let dir = Self::dir(cgroup);
        let mut files = vec![dir.join("cpu.stat")];
        let handed = self.handed_down();
        for (controller, names) in [
            ("memory", &["memory.peak", "memory.events"][..]),
            ("pids", &["pids.peak", "pids.events"][..]),
            ("io", &["io.stat"][..]),
        ] {
            if handed.contains(&controller) {
                files.extend(names.iter().map(|n| dir.join(n)));
            }
        }
        files
    }

    fn remove(&self, cgroup: &Cgroup) -> Vec<Op> {
        let dir = Self::dir(cgroup);
        let mut ops = vec![
            Op::KillAll {
                dir: dir.clone(),
                cgroup_kill: self.cgroup_kill,
            },
            Op::Remove(dir),
        ];
        for (dir, toolkit) in self.parents(cgroup).into_iter().rev() {
            ops.push(Op::RemoveParent { dir, toolkit });
        }
        ops
    }
}
