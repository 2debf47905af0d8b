//! The executor: walks a plan and makes each call. After the `fork()` the
//! parent and the child walk the same plan, each making only its own
//! steps. Whatever fails, and whenever, what was made is undone before the
//! error is reported: no cgroup outlives a run that failed.

use std::ffi::CString;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::{Pid, getpid, getppid, pipe2};
use steps::fault::Fault;
use steps::process::{Exit, Supervision};
use steps::sys::{Fork, fork};
use steps::{Error, Narrator, Plan, Step};

use crate::controller::{self, Usage};
use crate::layout::{Cgroup, Controller, Version};
use crate::plan::{CgStep, Op, Side};
use crate::{CgroupFs, cgfs};

/// How a run ended: what the summary tells.
#[derive(Debug, Clone)]
pub struct Report {
    pub name: String,
    pub exit: Exit,
    pub wall: Duration,
    pub usage: Usage,
    /// Peaks cg-limit sampled itself where the kernel keeps none.
    pub sampled: Sampled,
    /// Processes still running in the cgroup when the command ended.
    pub left: usize,
}

/// Peaks sampled while the command ran, every [`SAMPLE_EVERY`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sampled {
    pub memory: Option<u64>,
    pub pids: Option<u64>,
}

/// How often peaks are sampled on kernels without `memory.peak` (5.19)
/// or `pids.peak` (6.1).
pub const SAMPLE_EVERY: Duration = Duration::from_millis(10);

#[derive(Debug)]
pub enum Outcome {
    /// The command ended; the cgroup is gone.
    Ended(Box<Report>),
    /// `create`: the cgroup exists and stays. `held`: the lock on it, for
    /// a plan made by [`crate::plan::hold_plan`]; `cg-limit cleanup` leaves
    /// the cgroup be while it is held.
    Created { held: Option<Flock<File>> },
}

/// Something this run made, to undo if it fails.
#[derive(Debug)]
enum Made {
    /// A cgroup above the new one; `ours` if this run made it.
    Parent {
        dir: PathBuf,
        toolkit: bool,
        ours: bool,
    },
    Cgroup(PathBuf),
}

struct Executor<'a> {
    narrator: &'a Narrator,
    fs: &'a dyn CgroupFs,
    version: Version,
    cgroup: &'a Cgroup,
    here: Side,
    made: Vec<Made>,
    /// Held from the moment a cgroup is made until it is locked: while a
    /// parent is share-locked, `cg-limit cleanup` leaves its children be.
    parent_lock: Option<Flock<File>>,
    lock: Option<Flock<File>>,
    supervision: Supervision,
    child: Option<Pid>,
    /// The child reports a failure before exec through this pipe; it
    /// closes on exec.
    failure: Option<File>,
    caller: Pid,
    started: Option<Instant>,
    exit: Option<Exit>,
    wall: Duration,
    usage: Usage,
    sampled: Sampled,
    left: usize,
}

/// Executes the plan for `cgroup`. Returns in cg-limit's own process only:
/// the child becomes the command, or exits with its error.
pub fn run(
    plan: &Plan<CgStep>,
    narrator: &Narrator,
    fs: &dyn CgroupFs,
    cgroup: &Cgroup,
) -> Result<Outcome, Error> {
    // Ctrl-C or SIGTERM during setup must not leave half a cgroup: they
    // wait, blocked, until the last step before the fork, which then stops
    // the run and undoes it; after the fork they are passed on to the
    // command.
    // Inside another tool of the toolkit (mini-run makes its cgroups with
    // this executor), the signals are blocked already: that tool takes them.
    let outermost = SigSet::thread_get_mask().is_ok_and(|mask| !mask.contains(Signal::SIGINT));
    let supervision = Supervision::start().map_err(|e| Error::sys("sigprocmask", e))?;
    let mut executor = Executor {
        narrator,
        fs,
        version: fs.version(),
        cgroup,
        here: Side::Caller,
        made: Vec::new(),
        parent_lock: None,
        lock: None,
        supervision,
        child: None,
        failure: None,
        caller: getpid(),
        started: None,
        exit: None,
        wall: Duration::ZERO,
        usage: Usage::default(),
        sampled: Sampled::default(),
        left: 0,
    };
    let steps = plan.steps();
    let mut index = 0;
    while index < steps.len() {
        let step = &steps[index];
        if !step.side.is_other_than(executor.here) {
            narrator.announce(index, plan.len(), step);
            let mut result = executor.execute(step);
            // A concurrent run may remove a shared parent between our
            // mkdir of it and of the cgroup below: make it again.
            let mut tries = 0;
            while matches!(&result, Err((Errno::ENOENT, _))) && is_creation(&step.op) && tries < 5 {
                tries += 1;
                result = executor
                    .remake_parents(&steps[..index], &step.op)
                    .and_then(|()| executor.execute(step));
            }
            if let Err((_, error)) = result {
                return Err(executor.fail(error));
            }
            // The fork's child did not make the fork: its parent answers
            // for that step.
            let made_it = !(step.side == Side::Caller && executor.here == Side::Child);
            if let Some(fault) = steps::fault::after("cg-limit", index + 1).filter(|_| made_it) {
                executor.inject(fault, index + 1)?;
            }
        }
        index += 1;
    }
    executor.parent_lock = None;
    match executor.exit {
        Some(exit) => Ok(Outcome::Ended(Box::new(Report {
            name: cgroup.name.to_string(),
            exit,
            wall: executor.wall,
            usage: executor.usage,
            sampled: executor.sampled,
            left: executor.left,
        }))),
        None => {
            // `create`: nothing ran, so there is no command to pass a
            // Ctrl-C or SIGTERM on to. One that came while the cgroup was
            // being made stops cg-limit, and the cgroup goes, as before a
            // run's fork: the user did not get what they asked for.
            let made_one = executor.made.iter().any(|m| matches!(m, Made::Cgroup(_)));
            if outermost
                && made_one
                && let Err((_, error)) =
                    executor.stop_if_signalled("the cgroup was ready; it was removed")
            {
                return Err(executor.fail(error));
            }
            let _ = executor.supervision.release_in_child();
            Ok(Outcome::Created {
                held: executor.lock.take(),
            })
        }
    }
}

fn is_creation(op: &Op) -> bool {
    matches!(
        op,
        Op::MakeParent { .. } | Op::EnableControllers { .. } | Op::MakeCgroup { .. }
    )
}

/// An error with the errno that caused it, so the executor can tell a
/// vanished parent from other failures.
type Failure = (Errno, Error);

fn failed(errno: Errno, error: Error) -> Failure {
    (errno, error)
}

impl Executor<'_> {
    fn execute(&mut self, step: &CgStep) -> Result<(), Failure> {
        let call = || step.call();
        match &step.op {
            Op::MakeParent { dir, toolkit } => match std::fs::create_dir(dir) {
                Ok(()) => self.made.push(Made::Parent {
                    dir: dir.clone(),
                    toolkit: *toolkit,
                    ours: true,
                }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if *toolkit {
                        self.made.push(Made::Parent {
                            dir: dir.clone(),
                            toolkit: true,
                            ours: false,
                        });
                    }
                }
                Err(e) => {
                    let errno = cgfs::errno_of(&e);
                    return Err(failed(errno, mkdir_error(call(), errno)));
                }
            },
            Op::EnableControllers { dir, controllers } => {
                let path = dir.join("cgroup.subtree_control");
                let value = crate::plan::enable_value(controllers);
                cgfs::write(&path, &value).map_err(|errno| {
                    let error = Error::sys(call(), errno);
                    let error = match errno {
                        Errno::EBUSY => error.hint(format!(
                            "{} holds processes, and in cgroup v2 only a cgroup without processes may hand controllers to children; nest under a cgroup made with cg-limit create",
                            dir.display()
                        )),
                        Errno::ENOENT if dir.exists() => error.hint(
                            "a controller is not available in this cgroup: its parent does not hand it down",
                        ),
                        Errno::EACCES | Errno::EPERM => error.hint(NEEDS_ROOT),
                        _ => error,
                    };
                    failed(errno, error)
                })?;
            }
            Op::MakeCgroup { dir, .. } => {
                if self.parent_lock.is_none()
                    && let Some(parent) = dir.parent()
                {
                    self.parent_lock = lock(parent, FlockArg::LockShared).ok();
                }
                std::fs::create_dir(dir).map_err(|e| {
                    let errno = cgfs::errno_of(&e);
                    let error = mkdir_error(call(), errno);
                    let name = &self.cgroup.name;
                    let error = if errno == Errno::EEXIST {
                        error.hint(format!(
                            "a cgroup named {name} exists: another cg-limit run is using it, or a killed run left it (cg-limit cleanup {name})"
                        ))
                    } else {
                        error
                    };
                    failed(errno, error)
                })?;
                self.made.push(Made::Cgroup(dir.clone()));
            }
            Op::Lock(dir) => {
                let held = lock(dir, FlockArg::LockExclusiveNonblock)
                    .map_err(|errno| failed(errno, Error::sys(call(), errno)))?;
                self.lock = Some(held);
                self.parent_lock = None;
            }
            Op::Write { path, setting } => match cgfs::write(path, &setting.value) {
                Err(Errno::ENOENT) if setting.if_present => self.narrator.note(&format!(
                    "{} is not there: this kernel does not account swap",
                    path.display()
                )),
                result => {
                    result.map_err(|errno| failed(errno, write_error(call(), errno, path)))?
                }
            },
            Op::Fork => self.fork(call)?,
            Op::SetDeathSignal => {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
                    .map_err(|e| failed(e, Error::sys(call(), e)))?;
                // cg-limit may have died before the prctl: then nobody
                // would send the signal.
                if getppid() != self.caller {
                    std::process::exit(i32::from(steps::exit::SETUP));
                }
            }
            Op::Join { dir, .. } => {
                cgfs::write(&dir.join("cgroup.procs"), "0")
                    .map_err(|errno| failed(errno, Error::sys(call(), errno)))?;
            }
            Op::Exec(argv) => {
                let error = exec(argv);
                return Err(failed(Errno::UnknownErrno, error));
            }
            Op::Wait => self.wait()?,
            Op::ReadUsage { .. } => {
                self.usage = controller::usage(self.fs.layout(), self.cgroup);
            }
            Op::KillAll { dir, cgroup_kill } => {
                self.left = self.left.max(
                    kill_all(dir, *cgroup_kill)
                        .map_err(|error| failed(Errno::UnknownErrno, error))?,
                );
            }
            Op::Remove(dir) => {
                remove(dir).map_err(|errno| failed(errno, Error::sys(call(), errno)))?;
                self.made
                    .retain(|m| !matches!(m, Made::Cgroup(d) if d == dir));
            }
            Op::RemoveParent { dir, toolkit } => {
                let ours = self
                    .made
                    .iter()
                    .any(|m| matches!(m, Made::Parent { dir: d, ours: true, .. } if d == dir));
                if *toolkit || ours {
                    remove_if_empty(dir);
                }
                self.made
                    .retain(|m| !matches!(m, Made::Parent { dir: d, .. } if d == dir));
            }
        }
        Ok(())
    }

    /// Makes again the parents of the directory `op` makes, after they
    /// vanished under a concurrent run's clean-up.
    fn remake_parents(&mut self, before: &[CgStep], op: &Op) -> Result<(), Failure> {
        let target = match op {
            Op::MakeParent { dir, .. }
            | Op::EnableControllers { dir, .. }
            | Op::MakeCgroup { dir, .. } => dir,
            _ => return Ok(()),
        };
        // Every parent above it, and its own directory when the failed
        // step writes into it (handing controllers down to it): that
        // parent may be the one that vanished.
        let remade_itself = matches!(op, Op::EnableControllers { .. });
        for step in before {
            match &step.op {
                Op::MakeParent { dir, .. }
                    if target.starts_with(dir) && (target != dir || remade_itself) =>
                {
                    self.execute(step)?;
                }
                Op::EnableControllers { dir, .. } if target.starts_with(dir) && target != dir => {
                    self.execute(step)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// An error if SIGINT, SIGTERM or SIGHUP came, blocked, before
    /// `before`.
    fn stop_if_signalled(&self, before: &str) -> Result<(), Failure> {
        match self
            .supervision
            .take_pending()
            .map_err(|e| failed(e, Error::sys("signalfd", e)))?
        {
            Some(signal) => Err(failed(
                Errno::EINTR,
                Error::with_code(
                    format!("{signal} arrived before {before}"),
                    128 + signal as u8,
                ),
            )),
            None => Ok(()),
        }
    }

    fn fork(&mut self, call: impl Fn() -> String) -> Result<(), Failure> {
        self.stop_if_signalled("the command started; it was not run")?;
        self.parent_lock = None;
        let (read, write) =
            pipe2(OFlag::O_CLOEXEC).map_err(|e| failed(e, Error::sys("pipe2", e)))?;
        match fork().map_err(|e| failed(e, Error::sys(call(), e)))? {
            Fork::Parent { child } => {
                self.child = Some(child);
                self.started = Some(Instant::now());
                self.here = Side::Parent;
                drop(write);
                self.failure = Some(File::from(read));
            }
            Fork::Child => {
                self.here = Side::Child;
                drop(read);
                self.failure = Some(File::from(write));
                self.supervision
                    .release_in_child()
                    .map_err(|e| failed(e, Error::sys("sigprocmask", e)))?;
            }
        }
        Ok(())
    }

    fn wait(&mut self) -> Result<(), Failure> {
        let child = self.child.expect("the plan forks before it waits");
        // The child either reports why it could not run the command, or
        // execs, which closes its end of the pipe.
        if let Some(error) = steps::process::read_report(self.failure.take()) {
            let _ = waitpid(child, None);
            self.child = None;
            return Err(failed(Errno::UnknownErrno, error));
        }
        let narrator = self.narrator;
        let on_signal = |signal: Signal| {
            narrator.note(&format!("passing {} on to the command", signal.as_str()))
        };
        let peaks = self.peaks_to_sample();
        let every = (!peaks.is_empty()).then_some(SAMPLE_EVERY);
        let sampled = &mut self.sampled;
        let exit = self
            .supervision
            .wait_ticking(child, every, on_signal, || {
                for (kind, file) in &peaks {
                    if let Some(now) = cgfs::read_u64(file) {
                        let peak = match kind {
                            Peak::Memory => &mut sampled.memory,
                            Peak::Pids => &mut sampled.pids,
                        };
                        *peak = Some(peak.unwrap_or(0).max(now));
                    }
                }
            })
            .map_err(|e| failed(e, Error::sys("waitpid(child)", e)))?;
        self.child = None;
        self.wall = self.started.map(|s| s.elapsed()).unwrap_or_default();
        self.exit = Some(exit);
        narrator.note(&format!("the command {exit}"));
        Ok(())
    }

    /// The current-usage files to sample, where the kernel keeps no peak.
    fn peaks_to_sample(&self) -> Vec<(Peak, PathBuf)> {
        let mut peaks = Vec::new();
        if self.version == Version::V2
            && let Some(dir) = self.cgroup.dir(Controller::Memory)
            && dir.join("memory.current").exists()
            && !dir.join("memory.peak").exists()
        {
            peaks.push((Peak::Memory, dir.join("memory.current")));
        }
        if let Some(dir) = self.cgroup.dir(Controller::Pids)
            && dir.join("pids.current").exists()
            && !dir.join("pids.peak").exists()
        {
            peaks.push((Peak::Pids, dir.join("pids.current")));
        }
        peaks
    }

    /// `UNDERHOOD_FAULT` after step `number`, for the reliability tests
    /// (see [`steps::fault`]). A failure takes the path a real one of the
    /// step would. SIGKILL and SIGINT go to cg-limit itself, the process
    /// that started the plan, also from the child, as `kill` from another
    /// terminal would send them; the child, whose command never started,
    /// goes with a killed cg-limit (its death signal would end it anyway).
    fn inject(&mut self, fault: Fault, number: usize) -> Result<(), Error> {
        match fault {
            Fault::Fail => return Err(self.fail(steps::fault::error(number))),
            Fault::Kill => {
                let _ = kill(self.caller, Signal::SIGKILL);
                if self.here == Side::Child {
                    let _ = kill(getpid(), Signal::SIGKILL);
                }
            }
            // Blocked until the fork, or passed on to the command after
            // it, like any SIGINT cg-limit gets.
            Fault::Interrupt => {
                let _ = kill(self.caller, Signal::SIGINT);
            }
        }
        Ok(())
    }

    /// Undoes what was made, in reverse, and gives back the error. In the
    /// child, the error goes to the parent instead, which undoes.
    fn fail(&mut self, error: Error) -> Error {
        if self.here == Side::Child {
            steps::process::report_and_exit(self.failure.take(), &error);
        }
        if let Some(child) = self.child.take() {
            let _ = kill(child, Signal::SIGKILL);
            let _ = waitpid(child, None);
        }
        self.lock = None;
        self.parent_lock = None;
        while let Some(made) = self.made.pop() {
            match made {
                Made::Cgroup(dir) => {
                    let _ = kill_all(&dir, false);
                    let _ = remove(&dir);
                }
                Made::Parent {
                    dir, toolkit, ours, ..
                } if toolkit || ours => remove_if_empty(&dir),
                Made::Parent { .. } => {}
            }
        }
        self.narrator
            .note("undid what was made; nothing is left behind");
        error
    }
}

#[derive(Debug, Clone, Copy)]
enum Peak {
    Memory,
    Pids,
}

/// What a refused mkdir or write in a cgroup tree most often means.
const NEEDS_ROOT: &str =
    "making and changing cgroups needs root (or a cgroup delegated to you); run cg-limit with sudo";

fn mkdir_error(call: String, errno: Errno) -> Error {
    let error = Error::sys(call, errno);
    match errno {
        Errno::EACCES | Errno::EPERM | Errno::EROFS => error.hint(NEEDS_ROOT),
        _ => error,
    }
}

fn write_error(call: String, errno: Errno, path: &Path) -> Error {
    let error = Error::sys(call, errno);
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match (file.as_str(), errno) {
        ("memory.memsw.limit_in_bytes", Errno::ENOENT) => error.hint(
            "this kernel does not account swap in cgroup v1: boot with swapaccount=1, or leave out --memory-swap",
        ),
        ("memory.swap.max", Errno::ENOENT) => {
            error.hint("this kernel does not account swap (CONFIG_MEMCG_SWAP); leave out --memory-swap")
        }
        (f, Errno::EINVAL | Errno::ENODEV) if f.starts_with("io.") || f.starts_with("blkio.") => {
            error.hint("io limits apply to whole disks (/dev/sda, not /dev/sda1) on a block layer that throttles (lsblk -d lists them)")
        }
        (_, Errno::EACCES) if !nix::unistd::geteuid().is_root() => error.hint(NEEDS_ROOT),
        (_, Errno::EINVAL) => error.hint("the value is outside what this file accepts; see the chapter on its controller"),
        (_, Errno::EBUSY) => error.hint("the group already uses more than this limit"),
        _ => error,
    }
}

/// `flock()` on a directory. A lock belongs to the open file: it goes when
/// the last descriptor of it closes, so also when cg-limit is killed.
fn lock(dir: &Path, how: FlockArg) -> Result<Flock<File>, Errno> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_DIRECTORY | OFlag::O_CLOEXEC).bits())
        .open(dir)
        .map_err(|e| cgfs::errno_of(&e))?;
    Flock::lock(file, how).map_err(|(_, errno)| errno)
}

/// Whether another cg-limit holds the cgroup at `dir`.
pub fn is_held(dir: &Path) -> bool {
    matches!(
        lock(dir, FlockArg::LockExclusiveNonblock),
        Err(Errno::EWOULDBLOCK)
    )
}

/// A share lock on a parent, for `cleanup` to take exclusively.
pub fn lock_parent(dir: &Path, exclusive: bool) -> Option<Flock<File>> {
    let how = if exclusive {
        FlockArg::LockExclusive
    } else {
        FlockArg::LockShared
    };
    lock(dir, how).ok()
}

/// How long cg-limit waits for killed processes to leave a cgroup.
const EMPTY_WITHIN: Duration = Duration::from_secs(10);

/// Ends every process in the cgroup at `dir` and waits until it is empty.
/// Returns how many processes there were.
pub fn kill_all(dir: &Path, cgroup_kill: bool) -> Result<usize, Error> {
    let procs_file = dir.join("cgroup.procs");
    let first = cgfs::procs(dir);
    if first.is_empty() || !dir.exists() {
        return Ok(0);
    }
    let deadline = Instant::now() + EMPTY_WITHIN;
    let mut pause = Duration::from_millis(1);
    loop {
        let now = cgfs::procs(dir);
        if now.is_empty() {
            return Ok(first.len());
        }
        if Instant::now() > deadline {
            return Err(Error::setup(format!(
                "processes {now:?} are still in {} after SIGKILL; hint: a process stuck in the kernel (state D) ends only when its I/O does",
                procs_file.display()
            )));
        }
        // cgroup.kill kills atomically, forks in flight included; without
        // it, a process may fork between our read and our kill: go again.
        if cgroup_kill {
            cgfs::write(&dir.join("cgroup.kill"), "1").map_err(|e| {
                Error::sys(crate::cgfs::write_call(&dir.join("cgroup.kill"), "1"), e)
            })?;
        } else {
            for pid in now {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// `rmdir` of a cgroup, waiting out the moment after its last process
/// exited in which the kernel still counts it busy.
pub fn remove(dir: &Path) -> Result<(), Errno> {
    let deadline = Instant::now() + EMPTY_WITHIN;
    loop {
        match std::fs::remove_dir(dir).map_err(|e| cgfs::errno_of(&e)) {
            Ok(()) | Err(Errno::ENOENT) => return Ok(()),
            Err(Errno::EBUSY) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => return Err(e),
        }
    }
}

/// `rmdir` of a parent that may still have children: then it stays.
pub fn remove_if_empty(dir: &Path) {
    let _ = std::fs::remove_dir(dir);
}

/// Replaces this process with the command; returns only the error.
fn exec(argv: &[std::ffi::OsString]) -> Error {
    let args = match argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(args) => args,
        Err(_) => return Error::usage("an argument of the command contains a NUL byte"),
    };
    let errno = nix::unistd::execvp(&args[0], &args).unwrap_err();
    Error::exec(&argv[0].to_string_lossy(), errno)
}
