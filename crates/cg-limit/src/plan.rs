//! The plan: the kernel calls a run or `create` makes, as data.
//!
//! Building a plan reads what the machine has (which cgroup version, which
//! controllers are enabled) and changes nothing; [`crate::run`] executes
//! it. The backends ([`crate::v1`], [`crate::v2`]) supply the steps that
//! differ between the versions.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use steps::{Chapter, Plan, Step, chapter};

use crate::CgroupFs;
use crate::controller::{self, Limits, Setting};
use crate::layout::{Cgroup, Name};

pub use steps::{Side, Sided};

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Make a cgroup above the new one, if it is missing. `toolkit`: the
    /// toolkit's own parent, shared by every run; otherwise the upper part
    /// of a nested name (`outer` of `outer/inner`).
    MakeParent {
        dir: PathBuf,
        toolkit: bool,
    },
    /// v2: hand controllers down to the children of `dir`.
    EnableControllers {
        dir: PathBuf,
        controllers: Vec<&'static str>,
    },
    /// Make the cgroup's directory; `hierarchy` names the v1 hierarchy.
    MakeCgroup {
        dir: PathBuf,
        hierarchy: Option<String>,
    },
    /// Hold a lock on the cgroup while cg-limit runs.
    Lock(PathBuf),
    Write {
        path: PathBuf,
        setting: Setting,
    },
    Fork,
    SetDeathSignal,
    /// Move the calling process into the cgroup.
    Join {
        dir: PathBuf,
        hierarchy: Option<String>,
    },
    Exec(Vec<OsString>),
    Wait,
    /// Read what the group used.
    ReadUsage {
        files: Vec<PathBuf>,
    },
    /// End every process left in the cgroup: through `cgroup.kill` where
    /// the kernel has it (v2, Linux 5.14+), else one `kill()` per pid.
    KillAll {
        dir: PathBuf,
        cgroup_kill: bool,
    },
    Remove(PathBuf),
    /// Remove a parent if it is empty: the toolkit's always (another run
    /// may have made it), the upper part of a nested name only if this run
    /// made it.
    RemoveParent {
        dir: PathBuf,
        toolkit: bool,
    },
}

/// One step of cg-limit's plan: a call and the process that makes it.
pub type CgStep = Sided<Op>;

fn quoted(path: &Path) -> String {
    format!("\"{}\"", path.display())
}

fn file_names(files: &[PathBuf]) -> String {
    let mut dirs: Vec<&Path> = Vec::new();
    for file in files {
        if let Some(dir) = file.parent()
            && !dirs.contains(&dir)
        {
            dirs.push(dir);
        }
    }
    dirs.iter()
        .map(|dir| {
            let names: Vec<String> = files
                .iter()
                .filter(|f| f.parent() == Some(dir))
                .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect();
            format!("{}/{{{}}}", dir.display(), names.join(","))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl Step for Op {
    fn call(&self) -> String {
        match self {
            Op::MakeParent { dir, .. } => format!("mkdir({}, 0755) unless it exists", quoted(dir)),
            Op::EnableControllers { dir, controllers } => crate::cgfs::write_call(
                &dir.join("cgroup.subtree_control"),
                &enable_value(controllers),
            ),
            Op::MakeCgroup { dir, .. } => format!("mkdir({}, 0755)", quoted(dir)),
            Op::Lock(dir) => format!("flock(open({}), LOCK_EX)", quoted(dir)),
            Op::Write { path, setting } if setting.if_present => {
                format!(
                    "{} if the file exists",
                    crate::cgfs::write_call(path, &setting.value)
                )
            }
            Op::Write { path, setting } => crate::cgfs::write_call(path, &setting.value),
            Op::Fork => "fork()".into(),
            Op::SetDeathSignal => "prctl(PR_SET_PDEATHSIG, SIGKILL)".into(),
            Op::Join { dir, .. } => crate::cgfs::write_call(&dir.join("cgroup.procs"), "0"),
            Op::Exec(argv) => format!(
                "execvp(\"{}\", [{}])",
                argv[0].to_string_lossy(),
                argv.iter()
                    .map(|a| format!("\"{}\"", a.to_string_lossy()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Op::Wait => "waitpid(child)".into(),
            Op::ReadUsage { files } => format!("read {}", file_names(files)),
            Op::KillAll {
                dir,
                cgroup_kill: true,
            } => crate::cgfs::write_call(&dir.join("cgroup.kill"), "1"),
            Op::KillAll {
                dir,
                cgroup_kill: false,
            } => format!(
                "kill(PID, SIGKILL) for each PID in {}",
                dir.join("cgroup.procs").display()
            ),
            Op::Remove(dir) => format!("rmdir({})", quoted(dir)),
            Op::RemoveParent { dir, .. } => format!("rmdir({}) if it is empty", quoted(dir)),
        }
    }

    fn why(&self) -> String {
        match self {
            Op::MakeParent { toolkit: true, .. } => {
                "the toolkit keeps its cgroups under a parent of its own, shared by every run".into()
            }
            Op::MakeParent { toolkit: false, .. } => {
                "a nested name: the cgroup above is made if it is missing".into()
            }
            Op::EnableControllers { .. } => {
                "v2 gives a controller to a cgroup's children only if the cgroup lists it here; such a cgroup may hold no processes itself".into()
            }
            Op::MakeCgroup {
                hierarchy: Some(h), ..
            } => format!(
                "a cgroup is a directory, one per v1 hierarchy: this is its {h} part, and the kernel fills it with {h}'s files"
            ),
            Op::MakeCgroup { hierarchy: None, .. } => {
                "a cgroup is a directory: the kernel fills it with every enabled controller's files".into()
            }
            Op::Lock(_) => {
                "held while cg-limit runs: cg-limit cleanup removes only cgroups that no running cg-limit holds".into()
            }
            Op::Write { setting, .. } => format!("{}: {}", setting.flag, setting.why),
            Op::Fork => {
                "the child joins the cgroup and becomes the command; cg-limit waits, reports and cleans up".into()
            }
            Op::SetDeathSignal => {
                "if cg-limit is killed, so is the command: nothing runs on in a cgroup nobody watches".into()
            }
            Op::Join {
                hierarchy: Some(h), ..
            } => format!(
                "the child moves itself (0 means the writer) into the cgroup's {h} part before it runs the command"
            ),
            Op::Join { hierarchy: None, .. } => {
                "the child moves itself (0 means the writer) into the cgroup before it runs the command, so the command never runs unlimited".into()
            }
            Op::Exec(_) => {
                "the command replaces the child and stays in the cgroup, with every process it starts".into()
            }
            Op::Wait => {
                "wait for the command; SIGINT, SIGTERM and SIGHUP sent to cg-limit are passed on to it".into()
            }
            Op::ReadUsage { .. } => "what the group used, for the summary".into(),
            Op::KillAll {
                cgroup_kill: true, ..
            } => {
                "end whatever the command left running: every process in the group gets SIGKILL at once".into()
            }
            Op::KillAll {
                cgroup_kill: false, ..
            } => "end whatever the command left running, one process at a time".into(),
            Op::Remove(_) => "an empty cgroup is removed with rmdir; its files go with it".into(),
            Op::RemoveParent { toolkit: true, .. } => {
                "the toolkit's parent goes too, once no other cgroup is in it".into()
            }
            Op::RemoveParent { toolkit: false, .. } => {
                "the cgroup above goes too if this run made it and it is empty".into()
            }
        }
    }

    fn chapter(&self) -> Chapter {
        match self {
            Op::Write { setting, .. } => setting.chapter(),
            Op::Fork | Op::SetDeathSignal | Op::Exec(_) | Op::Wait => chapter::PROCESSES,
            Op::ReadUsage { .. } => chapter::WATCHING,
            _ => chapter::CGROUPS,
        }
    }
}

/// `+cpu +io +memory +pids`.
pub fn enable_value(controllers: &[&str]) -> String {
    controllers
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A run: a command in a new cgroup with limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub name: Name,
    pub limits: Limits,
    pub command: Vec<OsString>,
}

fn push(plan: &mut Plan<CgStep>, side: Side, ops: impl IntoIterator<Item = Op>) {
    for op in ops {
        plan.push(CgStep { side, op });
    }
}

/// The cgroup with its limits written.
fn creation(fs: &dyn CgroupFs, cgroup: &Cgroup, limits: &Limits, lock: bool) -> Vec<Op> {
    let mut ops = fs.create(cgroup, lock);
    for setting in controller::settings(fs.version(), limits) {
        let dir = cgroup
            .dir(setting.controller)
            .expect("checked by CgroupFs::check")
            .to_path_buf();
        ops.push(Op::Write {
            path: dir.join(setting.file),
            setting,
        });
    }
    ops
}

/// The plan for running a command in a new cgroup.
pub fn run_plan(fs: &dyn CgroupFs, run: &Run) -> Result<Plan<CgStep>, steps::Error> {
    fs.check(&run.limits.controllers())?;
    let cgroup = fs.layout().cgroup(&run.name);
    let mut plan = Plan::new();
    push(
        &mut plan,
        Side::Caller,
        creation(fs, &cgroup, &run.limits, true),
    );
    push(&mut plan, Side::Caller, [Op::Fork]);
    push(&mut plan, Side::Child, [Op::SetDeathSignal]);
    push(&mut plan, Side::Child, fs.join(&cgroup));
    push(&mut plan, Side::Child, [Op::Exec(run.command.clone())]);
    push(&mut plan, Side::Parent, [Op::Wait]);
    push(
        &mut plan,
        Side::Parent,
        [Op::ReadUsage {
            files: fs.usage_files(&cgroup),
        }],
    );
    push(&mut plan, Side::Parent, fs.remove(&cgroup));
    Ok(plan)
}

/// The plan for `create`: a cgroup with limits and no process.
pub fn create_plan(
    fs: &dyn CgroupFs,
    name: &Name,
    limits: &Limits,
) -> Result<Plan<CgStep>, steps::Error> {
    made_plan(fs, name, limits, false)
}

/// A cgroup made with its limits, locked or not, and nothing run in it.
fn made_plan(
    fs: &dyn CgroupFs,
    name: &Name,
    limits: &Limits,
    lock: bool,
) -> Result<Plan<CgStep>, steps::Error> {
    fs.check(&limits.controllers())?;
    let cgroup = fs.layout().cgroup(name);
    let mut plan = Plan::new();
    push(&mut plan, Side::Caller, creation(fs, &cgroup, limits, lock));
    Ok(plan)
}

/// The plan for a cgroup that another process of the toolkit fills and
/// holds: made with its limits and locked, like a run's, but with no
/// command. `mini-run` makes its containers' cgroups so.
pub fn hold_plan(
    fs: &dyn CgroupFs,
    name: &Name,
    limits: &Limits,
) -> Result<Plan<CgStep>, steps::Error> {
    made_plan(fs, name, limits, true)
}

/// The plan that ends what is left in a cgroup and removes it: the end of
/// a run's plan, on its own.
pub fn remove_plan(fs: &dyn CgroupFs, name: &Name) -> Plan<CgStep> {
    let cgroup = fs.layout().cgroup(name);
    let mut plan = Plan::new();
    push(&mut plan, Side::Caller, fs.remove(&cgroup));
    plan
}
