//! `mini-run exec`: a command run in a running container, as `docker
//! exec` and `nsenter` do it. A container is namespaces, a cgroup and a
//! root; a process joins them with `setns(2)` on the namespace links of
//! the container's first process (`/proc/PID/ns/*`), and with a write to
//! its cgroup's `cgroup.procs`.
//!
//! The PID namespace is the odd one: `setns(CLONE_NEWPID)` does not move
//! the caller, whose pid cannot change, only the children it makes after.
//! So mini-run joins the namespaces, then forks, and the child, a process
//! of the container's with a pid of its numbering, goes on to exec the
//! command; mini-run waits for it outside. It gets the same limits the
//! container has: Docker's capabilities, no new privileges, a session of
//! its own (or, with `-t`, a terminal from the container's devpts).
//! See [setns(2)](https://man7.org/linux/man-pages/man2/setns.2.html).

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::wait::waitpid;
use nix::unistd::{Pid, pipe2};
use steps::process::{Exit, Supervision};
use steps::sys::Fork;
use steps::{Chapter, Error, Narrator, Plan, Side, Sided, Step, chapter};

use crate::cli::ExecArgs;
use crate::plan::Op as PlanOp;
use crate::record::{self, Found};

/// The namespaces joined, in this order, as nsenter joins them: the user
/// namespace first (it owns the others, and gives the capabilities to
/// join them), the mount namespace last (after it, `/proc` is the
/// container's).
pub const ORDER: [(&str, CloneFlags, &str); 7] = [
    ("user", CloneFlags::CLONE_NEWUSER, "CLONE_NEWUSER"),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP, "CLONE_NEWCGROUP"),
    ("ipc", CloneFlags::CLONE_NEWIPC, "CLONE_NEWIPC"),
    ("uts", CloneFlags::CLONE_NEWUTS, "CLONE_NEWUTS"),
    ("net", CloneFlags::CLONE_NEWNET, "CLONE_NEWNET"),
    ("pid", CloneFlags::CLONE_NEWPID, "CLONE_NEWPID"),
    ("mnt", CloneFlags::CLONE_NEWNS, "CLONE_NEWNS"),
];

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Open the first process's namespace links and its cgroup's
    /// `cgroup.procs`, before any `setns` changes what `/proc` shows; each
    /// namespace with the inode number `run` recorded for it.
    Open {
        pid: i32,
        namespaces: Vec<(&'static str, u64)>,
        cgroup: Vec<PathBuf>,
    },
    /// Not dumpable until the exec: no process of the container's may
    /// open this one's `/proc/PID/exe` (runc's CVE-2019-5736).
    NotDumpable,
    Setns(&'static str),
    Fork,
    /// Child: into the container's cgroup, by the descriptors opened before.
    JoinCgroup,
    DeathSignal,
    Console,
    /// A step `run`'s child makes too: its ids, session, capabilities,
    /// working directory.
    Process(crate::plan::Op),
    Exec {
        argv: Vec<String>,
        env: Vec<String>,
    },
    Wait {
        tty: bool,
    },
}

impl Step for Op {
    fn call(&self) -> String {
        match self {
            Op::Open {
                pid,
                namespaces,
                cgroup,
            } => {
                let kinds: Vec<&str> = namespaces.iter().map(|(kind, _)| *kind).collect();
                let mut text = format!("open(\"/proc/{pid}/ns/{{{}}}\")", kinds.join(","));
                for dir in cgroup {
                    text.push_str(&format!("; open(\"{}/cgroup.procs\")", dir.display()));
                }
                text
            }
            Op::NotDumpable => "prctl(PR_SET_DUMPABLE, 0)".into(),
            Op::Setns(kind) => {
                let flag = ORDER
                    .iter()
                    .find(|(k, _, _)| k == kind)
                    .map_or("", |(_, _, name)| name);
                format!("setns(open(\"/proc/PID/ns/{kind}\"), {flag})")
            }
            Op::Fork => "fork()".into(),
            Op::JoinCgroup => "write(cgroup.procs, \"0\")".into(),
            Op::DeathSignal => "prctl(PR_SET_PDEATHSIG, SIGKILL)".into(),
            Op::Console => "open(\"/dev/ptmx\") → master, /dev/pts/N; sendmsg(console socket, SCM_RIGHTS, master); setsid(); ioctl(slave, TIOCSCTTY); dup2(slave, 0, 1, 2)".into(),
            Op::Process(op) => op.call(),
            Op::Exec { argv, .. } => format!("execve({:?}, …)", argv),
            Op::Wait { tty: false } => "waitpid(child)".into(),
            Op::Wait { tty: true } => "recvmsg(console socket) → master; relay stdin ↔ master until waitpid(child)".into(),
        }
    }

    fn why(&self) -> String {
        match self {
            Op::Open { .. } => "a namespace is joined by a descriptor of it: the links in /proc/PID/ns of any process inside, here the container's first".into(),
            Op::NotDumpable => "until it execs, this process is mini-run: a process of the container's must not reach its binary through /proc/PID/exe (runc's CVE-2019-5736)".into(),
            Op::Setns("user") => "first the user namespace: it owns the others, and its root may join them".into(),
            Op::Setns("pid") => "the PID namespace: it takes hold for the children made after, not for this process, whose pid cannot change".into(),
            Op::Setns("mnt") => "last the mount namespace: its root and working directory become the container's".into(),
            Op::Setns(kind) => format!("the container's {kind} namespace"),
            Op::Fork => "the child is born in the container's PID namespace, with a pid of its numbering; mini-run waits outside".into(),
            Op::JoinCgroup => "the command is counted and limited with the rest of the container (0: the writing process)".into(),
            Op::DeathSignal => "if mini-run exec dies, its command goes too".into(),
            Op::Console => "-t: a terminal of its own, from the container's devpts, its master passed out to mini-run".into(),
            Op::Process(op) => op.why(),
            Op::Exec { .. } => "the command replaces the child: a process of the container's, as ps inside shows".into(),
            Op::Wait { .. } => "wait for the command and exit with its status, passing signals on".into(),
        }
    }

    fn chapter(&self) -> Chapter {
        match self {
            Op::Setns(_) | Op::Open { .. } => chapter::ENTER,
            Op::Process(op) => op.chapter(),
            _ => chapter::LIFECYCLE,
        }
    }
}

pub type ExecStep = Sided<Op>;

/// The plan for `mini-run exec`: checks the flags, touches nothing.
pub fn exec_plan(found: &Found, args: &ExecArgs) -> Result<Plan<ExecStep>, Error> {
    let record::Status::Running(started) = &found.status else {
        return Err(crate::lifecycle::not_running(found));
    };
    let config = &found.config;
    let mut env = config.env.clone();
    for entry in &args.env {
        let Some((name, _)) = entry.split_once('=').filter(|(n, _)| !n.is_empty()) else {
            return Err(Error::usage(format!("-e {entry:?}: give NAME=VALUE")));
        };
        let prefix = format!("{name}=");
        env.retain(|e| !e.starts_with(&prefix));
        env.push(entry.clone());
    }
    let user = match args.user.as_deref().or(config.user.as_deref()) {
        Some(text) => Some(crate::container::parse_user(text)?),
        None => None,
    };
    let workdir = match &args.workdir {
        Some(dir) if dir.starts_with('/') => PathBuf::from(dir),
        Some(dir) => {
            return Err(Error::usage(format!(
                "-w {dir:?}: a path inside the container must be absolute"
            )));
        }
        None => config.workdir.clone(),
    };
    if args.command.first().is_none_or(|c| c.is_empty()) {
        return Err(Error::usage(
            "give a command to run, e.g. mini-run exec ID ps",
        ));
    }
    // Only the namespaces the container has of its own: with --network
    // host its network namespace is mini-run's, and joining one's own
    // user namespace is refused.
    let own = record::namespaces_of(std::process::id() as i32);
    let namespaces: Vec<(&'static str, u64)> = ORDER
        .iter()
        .filter_map(|(kind, _, _)| {
            let inode = *started.namespaces.get(*kind)?;
            (own.get(*kind) != Some(&inode)).then_some((*kind, inode))
        })
        .collect();
    let mut plan = Plan::new();
    let mut push = |side: Side, op: Op| plan.push(Sided { side, op });
    use Side::{Caller, Child, Parent};
    push(
        Caller,
        Op::Open {
            pid: started.pid,
            namespaces: namespaces.clone(),
            cgroup: config.cgroup.clone(),
        },
    );
    push(Caller, Op::NotDumpable);
    // In a user namespace mapped from the host's ids (--userns as root),
    // setgroups(2) is allowed; in a rootless one it is denied.
    let remapped = config.userns.is_some_and(|map| map.is_remapped());
    for (kind, _) in &namespaces {
        push(Caller, Op::Setns(kind));
        if *kind == "user" {
            push(Caller, Op::Process(PlanOp::BecomeRoot { groups: remapped }));
        }
    }
    push(Caller, Op::Fork);
    if !config.cgroup.is_empty() {
        push(Child, Op::JoinCgroup);
    }
    push(Child, Op::DeathSignal);
    push(
        Child,
        if args.tty {
            Op::Console
        } else {
            Op::Process(PlanOp::NewSession)
        },
    );
    for op in crate::plan::last_steps(&workdir, user) {
        push(Child, Op::Process(op));
    }
    push(
        Child,
        Op::Exec {
            argv: args.command.clone(),
            env,
        },
    );
    push(Parent, Op::Wait { tty: args.tty });
    Ok(plan)
}

struct Executor<'a> {
    narrator: &'a Narrator,
    supervision: Supervision,
    here: Side,
    namespaces: Vec<(&'static str, File)>,
    cgroup_procs: Vec<File>,
    child: Option<Pid>,
    report: Option<File>,
    console: Option<(OwnedFd, OwnedFd)>,
    exit: Option<Exit>,
}

/// Runs the plan: returns in mini-run with how the command ended.
pub fn run(plan: &Plan<ExecStep>, narrator: &Narrator) -> Result<Exit, Error> {
    let supervision = Supervision::start().map_err(|e| Error::sys("sigprocmask", e))?;
    let mut executor = Executor {
        narrator,
        supervision,
        here: Side::Caller,
        namespaces: Vec::new(),
        cgroup_procs: Vec::new(),
        child: None,
        report: None,
        console: None,
        exit: None,
    };
    for (index, step) in plan.steps().iter().enumerate() {
        if step.side.is_other_than(executor.here) {
            continue;
        }
        narrator.announce(index, plan.len(), step);
        if let Err(error) = executor.execute(step) {
            if executor.here == Side::Child {
                steps::process::report_and_exit(executor.report.take(), &error);
            }
            if let Some(child) = executor.child.take() {
                let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                let _ = waitpid(child, None);
            }
            return Err(error);
        }
    }
    Ok(executor.exit.expect("the plan waits for the command"))
}

impl Executor<'_> {
    fn execute(&mut self, step: &ExecStep) -> Result<(), Error> {
        let op = &step.op;
        let sys = |e| Error::sys(step.call(), e);
        match op {
            Op::Open {
                pid,
                namespaces,
                cgroup,
            } => {
                for (kind, recorded) in namespaces {
                    let path = format!("/proc/{pid}/ns/{kind}");
                    let file = File::open(&path)
                        .map_err(|e| Error::io(format!("open(\"{path}\")"), &e))?;
                    // The one run recorded, or the first process has
                    // ended and its number gone to another: a namespace
                    // is known by its inode, as lifecycle::first_process
                    // knows the container's.
                    let inode = nix::sys::stat::fstat(file.as_fd()).map_err(sys)?.st_ino;
                    if inode != *recorded {
                        return Err(Error::with_code(
                            "the container has just exited".to_string(),
                            crate::lifecycle::REFUSED,
                        ));
                    }
                    self.namespaces.push((kind, file));
                }
                for dir in cgroup {
                    let path = dir.join("cgroup.procs");
                    let file = std::fs::OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(|e| Error::io(format!("open(\"{}\")", path.display()), &e))?;
                    self.cgroup_procs.push(file);
                }
            }
            Op::NotDumpable => nix::sys::prctl::set_dumpable(false).map_err(sys)?,
            Op::Setns(kind) => {
                let (_, file) = self
                    .namespaces
                    .iter()
                    .find(|(k, _)| k == kind)
                    .expect("opened");
                let flag = ORDER
                    .iter()
                    .find(|(k, _, _)| k == kind)
                    .map(|(_, f, _)| *f)
                    .expect("known");
                nix::sched::setns(file.as_fd(), flag).map_err(sys)?;
            }
            Op::Fork => self.fork()?,
            Op::JoinCgroup => {
                use std::io::Write;
                for file in &mut self.cgroup_procs {
                    file.write_all(b"0").map_err(|e| Error::io(op.call(), &e))?;
                }
                self.cgroup_procs.clear();
            }
            Op::DeathSignal => nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(sys)?,
            Op::Console => {
                let (_, theirs) = self.console.take().expect("made before the fork");
                crate::tty::open_in_container(theirs)?;
            }
            Op::Process(op) => crate::run::process_step(op, &step.call())?,
            Op::Exec { argv, env } => {
                if let Err(e) = self.supervision.release_in_child() {
                    return Err(Error::sys("sigprocmask", e));
                }
                return Err(crate::run::exec_command(argv, env));
            }
            Op::Wait { tty } => self.wait(*tty)?,
        }
        Ok(())
    }

    fn fork(&mut self) -> Result<(), Error> {
        let (report_read, report_write) =
            pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::sys("pipe2", e))?;
        let console = crate::passfd::socket().map_err(|e| Error::sys("socketpair", e))?;
        match steps::sys::fork().map_err(|e| Error::sys("fork()", e))? {
            Fork::Parent { child } => {
                self.here = Side::Parent;
                self.child = Some(child);
                self.report = Some(File::from(report_read));
                self.console = Some(console);
                self.namespaces.clear();
                self.cgroup_procs.clear();
            }
            Fork::Child => {
                self.here = Side::Child;
                self.report = Some(File::from(report_write));
                self.console = Some(console);
                self.namespaces.clear();
            }
        }
        Ok(())
    }

    fn wait(&mut self, tty: bool) -> Result<(), Error> {
        let child = self.child.expect("forked");
        let (ours, theirs) = self.console.take().expect("made before the fork");
        drop(theirs);
        let master = if tty {
            crate::tty::receive(&ours).map_err(|e| Error::sys("recvmsg(console socket)", e))?
        } else {
            None
        };
        drop(ours);
        if let Some(error) = steps::process::read_report(self.report.take()) {
            let _ = waitpid(child, None);
            self.child = None;
            return Err(error);
        }
        let narrator = self.narrator;
        let on_signal = |signal: Signal| {
            narrator.note(&format!("passing {} on to the command", signal.as_str()))
        };
        let exit = match master {
            Some(master) => crate::tty::relay(master, child, on_signal),
            None => self.supervision.wait_detached(child, on_signal),
        }
        .map_err(|e| Error::sys("waitpid(child)", e))?;
        self.child = None;
        self.exit = Some(exit);
        Ok(())
    }
}
