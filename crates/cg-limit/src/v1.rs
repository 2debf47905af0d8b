//! # The cgroup v1 backend
//!
//! A hierarchy per controller (or per few mounted together, like
//! `cpu,cpuacct`): a cgroup is one directory in each, made, joined and
//! removed one by one. cg-limit makes them beneath the caller's own cgroup
//! in each hierarchy, so that limits the caller lives under still apply.
//! See <https://docs.kernel.org/admin-guide/cgroup-v1/cgroups.html>.

use std::path::PathBuf;

use steps::Error;

use crate::CgroupFs;
use crate::layout::{Cgroup, Controller, Layout, PARENT, V1Hierarchy};
use crate::plan::Op;

#[derive(Debug, Clone)]
pub struct CgroupV1 {
    layout: Layout,
    hierarchies: Vec<V1Hierarchy>,
}

impl CgroupV1 {
    pub fn new(hierarchies: Vec<V1Hierarchy>) -> Self {
        Self {
            layout: Layout::V1 {
                hierarchies: hierarchies.clone(),
            },
            hierarchies,
        }
    }

    /// Each hierarchy with its name (`memory`, `cpu,cpuacct`) and the
    /// cgroup's directory in it.
    fn parts(&self, cgroup: &Cgroup) -> Vec<(String, &V1Hierarchy, PathBuf)> {
        self.hierarchies
            .iter()
            .filter_map(|h| {
                let dir = cgroup.dir(h.controllers[0])?.to_path_buf();
                let name = h
                    .controllers
                    .iter()
                    .map(|c| c.v1_name())
                    .collect::<Vec<_>>()
                    .join(",");
                Some((name, h, dir))
            })
            .collect()
    }
}

impl CgroupFs for CgroupV1 {
    fn layout(&self) -> &Layout {
        &self.layout
    }

    fn check(&self, needed: &[Controller]) -> Result<(), Error> {
        for controller in needed {
            if !self
                .hierarchies
                .iter()
                .any(|h| h.controllers.contains(controller))
            {
                let name = controller.v1_name();
                return Err(Error::setup(format!(
                    "no cgroup v1 {name} hierarchy is mounted"
                ))
                .hint(format!(
                    "as root: mkdir -p /sys/fs/cgroup/{name} && mount -t cgroup -o {name} cgroup /sys/fs/cgroup/{name}"
                )));
            }
        }
        Ok(())
    }

    fn create(&self, cgroup: &Cgroup, lock: bool) -> Vec<Op> {
        let mut ops = Vec::new();
        for (index, (name, hierarchy, dir)) in self.parts(cgroup).into_iter().enumerate() {
            let toolkit = hierarchy.home.join(PARENT);
            ops.push(Op::MakeParent {
                dir: toolkit.clone(),
                toolkit: true,
            });
            for ancestor in cgroup.name.ancestors() {
                ops.push(Op::MakeParent {
                    dir: toolkit.join(ancestor.as_str()),
                    toolkit: false,
                });
            }
            ops.push(Op::MakeCgroup {
                dir: dir.clone(),
                hierarchy: Some(name),
            });
            // The first hierarchy is memory's: its directory is the lock.
            if lock && index == 0 {
                ops.push(Op::Lock(dir));
            }
        }
        ops
    }

    fn join(&self, cgroup: &Cgroup) -> Vec<Op> {
        self.parts(cgroup)
            .into_iter()
            .map(|(name, _, dir)| Op::Join {
                dir,
                hierarchy: Some(name),
            })
            .collect()
    }

    fn usage_files(&self, cgroup: &Cgroup) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let mut add = |controller, names: &[&str]| {
            if let Some(dir) = cgroup.dir(controller) {
                files.extend(names.iter().map(|n| dir.join(n)));
            }
        };
        add(
            Controller::Memory,
            &["memory.max_usage_in_bytes", "memory.oom_control"],
        );
        add(Controller::CpuAcct, &["cpuacct.usage", "cpuacct.stat"]);
        add(Controller::Cpu, &["cpu.stat"]);
        add(Controller::Pids, &["pids.peak", "pids.events"]);
        add(Controller::Io, &["blkio.throttle.io_service_bytes"]);
        files
    }

    fn remove(&self, cgroup: &Cgroup) -> Vec<Op> {
        let mut ops = Vec::new();
        for (_, hierarchy, dir) in self.parts(cgroup) {
            ops.push(Op::KillAll {
                dir: dir.clone(),
                cgroup_kill: false,
            });
            ops.push(Op::Remove(dir));
            let toolkit = hierarchy.home.join(PARENT);
            for ancestor in cgroup.name.ancestors().into_iter().rev() {
                ops.push(Op::RemoveParent {
                    dir: toolkit.join(ancestor.as_str()),
                    toolkit: false,
                });
            }
            ops.push(Op::RemoveParent {
                dir: toolkit,
                toolkit: true,
            });
        }
        ops
    }
}
