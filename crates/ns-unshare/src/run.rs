//! The executor: walks a plan and makes each call. After a `fork()` the
//! parent and the child walk the same plan, each making only its own steps.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::setns;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{Gid, Pid, Uid, getpid, pipe2};
use steps::process::{Exit, Supervision};
use steps::sys::{Fork, fork};
use steps::{Error, Narrator, Plan, Step};

use crate::cli::{Program, Propagation};
use crate::namespace::Namespace;
use crate::plan::{Helper, NsStep, Op, Side, namespace_ids};

/// How a run ends.
#[derive(Debug)]
pub enum Outcome {
    /// The child ended so: end the same way.
    Ended(Exit),
    /// `--list`: one column per process, ours first.
    Listed(Vec<Column>),
}

/// The namespaces of one process, for `--list`.
#[derive(Debug)]
pub struct Column {
    pub pid: Option<i32>,
    pub command: String,
    pub ids: Vec<(Namespace, Result<u64, Errno>)>,
}

struct RunningHelper {
    pid: Pid,
    go: File,
    report: File,
}

struct Executor<'a> {
    narrator: &'a Narrator,
    here: Side,
    /// ns-unshare's own pid, which the helpers act on.
    origin: Pid,
    helpers: Vec<RunningHelper>,
    child: Option<Pid>,
    /// The signal mask of a supervising parent, from before the fork.
    supervision: Option<Supervision>,
    /// The parent holds the write end of this pipe until it dies; the child
    /// reads end of file from its end once that has happened.
    lifeline: Option<OwnedFd>,
    namespace_files: Vec<(Namespace, OwnedFd)>,
    columns: Vec<Column>,
}

/// Executes the plan. Returns only in ns-unshare's parent process, or when
/// a step fails, or for `--list`; otherwise the last step replaces the
/// process with the program.
pub fn run(plan: &Plan<NsStep>, narrator: &Narrator) -> Result<Outcome, Error> {
    let mut executor = Executor {
        narrator,
        here: Side::Caller,
        origin: getpid(),
        helpers: Vec::new(),
        child: None,
        supervision: None,
        lifeline: None,
        namespace_files: Vec::new(),
        columns: Vec::new(),
    };
    for (index, step) in plan.steps().iter().enumerate() {
        if step.side.is_other_than(executor.here) {
            continue;
        }
        narrator.announce(index, plan.len(), step);
        if let Some(outcome) = executor.execute(step)? {
            return Ok(outcome);
        }
    }
    Ok(Outcome::Listed(executor.columns))
}

impl Executor<'_> {
    fn execute(&mut self, step: &NsStep) -> Result<Option<Outcome>, Error> {
        let call = || step.call();
        match &step.op {
            Op::StartHelper(helper) => self
                .start_helper(helper)
                .map_err(|e| Error::sys(call(), e))?,
            Op::Unshare(namespaces) => {
                let flags = namespaces
                    .iter()
                    .fold(nix::sched::CloneFlags::empty(), |f, n| f | n.flag());
                nix::sched::unshare(flags).map_err(|e| unshare_error(call(), e, namespaces))?;
            }
            Op::MapIdsFromHelper { .. } | Op::BindFromHelper(_) => self.release_helper(call())?,
            Op::SetClockOffset { clock, seconds } => write_proc(
                "/proc/self/timens_offsets",
                &format!("{clock} {seconds} 0"),
                call,
            )?,
            Op::Fork { .. } => self.fork(call)?,
            Op::WaitChild { forward_signals } => {
                return self.wait_child(*forward_signals).map(Some);
            }
            Op::SetDeathSignal(signal) => {
                nix::sys::prctl::set_pdeathsig(*signal).map_err(|e| Error::sys(call(), e))?;
                // ns-unshare may have died before the prctl: then nobody
                // would send the signal, so stop here as util-linux does.
                // (getppid() cannot tell: in a new PID namespace it is 0.)
                if self.parent_is_gone() {
                    return Err(Error::setup("ns-unshare died before the child was set up"));
                }
            }
            Op::WriteProcSelf { file, content } => {
                write_proc(&format!("/proc/self/{file}"), content, call)?
            }
            Op::SetPropagation(mode) => {
                let flags = match mode {
                    Propagation::Private => MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                    Propagation::Shared => MsFlags::MS_REC | MsFlags::MS_SHARED,
                    Propagation::Slave => MsFlags::MS_REC | MsFlags::MS_SLAVE,
                    Propagation::Unchanged => MsFlags::empty(),
                };
                mount(Some("none"), "/", None::<&str>, flags, None::<&str>)
                    .map_err(|e| Error::sys(call(), e))?;
            }
            Op::Chroot(dir) => {
                nix::unistd::chroot(dir.as_path()).map_err(|e| path_error(call(), e, dir))?
            }
            Op::Chdir(dir) => {
                nix::unistd::chdir(dir.as_path()).map_err(|e| path_error(call(), e, dir))?
            }
            Op::MakePrivate(dir) => {
                match mount(
                    Some("none"),
                    dir.as_path(),
                    None::<&str>,
                    MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                    None::<&str>,
                ) {
                    // Not a mount point yet: nothing to make private.
                    Ok(()) | Err(Errno::EINVAL) => {}
                    Err(e) => return Err(Error::sys(call(), e)),
                }
            }
            Op::MountProc(dir) => {
                let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
                mount(Some("proc"), dir.as_path(), Some("proc"), flags, None::<&str>).map_err(|e| {
                    let error = path_error(call(), e, dir);
                    if e == Errno::EPERM {
                        error.hint("inside a user namespace, proc can be mounted only together with a new PID namespace: add --fork --pid")
                    } else {
                        error
                    }
                })?;
            }
            Op::SetHostname(name) => {
                nix::unistd::sethostname(name).map_err(|e| Error::sys(call(), e))?
            }
            Op::DropGroups => nix::unistd::setgroups(&[]).map_err(|e| Error::sys(call(), e))?,
            Op::SetGid(gid) => nix::unistd::setgid(Gid::from_raw(*gid)).map_err(|e| {
                Error::sys(call(), e)
                    .hint("the gid must be mapped in the user namespace (see --map-group)")
            })?,
            Op::SetUid(uid) => nix::unistd::setuid(Uid::from_raw(*uid)).map_err(|e| {
                Error::sys(call(), e)
                    .hint("the uid must be mapped in the user namespace (see --map-user)")
            })?,
            Op::Exec(program) => return Err(exec(program)),
            Op::OpenNamespace { namespace, path } => {
                let fd = open_namespace_file(path)?;
                self.namespace_files.push((*namespace, fd));
            }
            Op::SetNs(namespace) => {
                let fd = self
                    .namespace_files
                    .iter()
                    .find(|(ns, _)| ns == namespace)
                    .map(|(_, fd)| fd)
                    .expect("the plan opens every namespace before joining it");
                setns(fd.as_fd(), namespace.flag()).map_err(|e| {
                    let error = Error::sys(call(), e);
                    match e {
                        Errno::EPERM => error
                            .hint("joining a namespace needs CAP_SYS_ADMIN over it: run as root"),
                        Errno::EINVAL => error.hint(
                            "the file is a different kind of namespace, or you are in it already",
                        ),
                        _ => error,
                    }
                })?;
            }
            Op::ReadNamespaces { pid } => self.columns.push(Column {
                pid: *pid,
                command: command_of(*pid),
                ids: namespace_ids(*pid),
            }),
        }
        Ok(None)
    }

    fn start_helper(&mut self, helper: &Helper) -> Result<(), Errno> {
        let (go_read, go_write) = pipe2(OFlag::O_CLOEXEC)?;
        let (report_read, report_write) = pipe2(OFlag::O_CLOEXEC)?;
        match fork()? {
            Fork::Parent { child } => {
                drop(go_read);
                drop(report_write);
                self.helpers.push(RunningHelper {
                    pid: child,
                    go: File::from(go_write),
                    report: File::from(report_read),
                });
                Ok(())
            }
            Fork::Child => {
                // Only this helper's own pipe ends stay open in it.
                self.helpers.clear();
                drop(go_write);
                drop(report_read);
                let mut byte = [0u8; 1];
                let told_to_go = File::from(go_read).read(&mut byte).unwrap_or(0) == 1;
                if !told_to_go {
                    // ns-unshare failed before it needed us.
                    std::process::exit(0);
                }
                let result = match helper {
                    Helper::IdMapper { uid_map, gid_map } => {
                        write_id_maps(self.origin, uid_map, gid_map)
                    }
                    Helper::Binder(binds) => bind_namespaces(self.origin, binds),
                };
                match result {
                    Ok(()) => std::process::exit(0),
                    Err(error) => {
                        let _ = File::from(report_write).write_all(error.to_string().as_bytes());
                        std::process::exit(1);
                    }
                }
            }
        }
    }

    /// Tells the oldest waiting helper to go, and waits for its verdict.
    fn release_helper(&mut self, call: String) -> Result<(), Error> {
        let mut helper = self.helpers.remove(0);
        helper
            .go
            .write_all(&[1])
            .map_err(|e| Error::setup(format!("{call}: helper is gone: {e}")))?;
        let mut report = String::new();
        let _ = helper.report.read_to_string(&mut report);
        let status = waitpid(helper.pid, None).map_err(|e| Error::sys("waitpid(helper)", e))?;
        match status {
            WaitStatus::Exited(_, 0) => Ok(()),
            _ if !report.is_empty() => Err(Error::setup(report)),
            other => Err(Error::setup(format!("{call}: helper ended with {other:?}"))),
        }
    }

    fn fork(&mut self, call: impl Fn() -> String) -> Result<(), Error> {
        // The parent only waits: Ctrl-C and SIGTERM are for the child (they
        // reach it directly from the terminal), or are passed on with
        // --forward-signals.
        let supervision = Supervision::start().map_err(|e| Error::sys("sigprocmask", e))?;
        let (lifeline_read, lifeline_write) =
            pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::sys("pipe2", e))?;
        match fork().map_err(|e| Error::sys(call(), e))? {
            Fork::Parent { child } => {
                self.child = Some(child);
                self.here = Side::Parent;
                self.lifeline = Some(lifeline_write);
            }
            Fork::Child => {
                supervision
                    .release_in_child()
                    .map_err(|e| Error::sys("sigprocmask", e))?;
                self.helpers.clear();
                self.here = Side::Child;
                drop(lifeline_write);
                self.lifeline = Some(lifeline_read);
            }
        }
        self.supervision = Some(supervision);
        Ok(())
    }

    /// In the child: whether the parent has died (its end of the lifeline
    /// is closed).
    fn parent_is_gone(&self) -> bool {
        let Some(lifeline) = &self.lifeline else {
            return false;
        };
        let mut fds = [PollFd::new(lifeline.as_fd(), PollFlags::POLLIN)];
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
    }

    fn wait_child(&mut self, forward_signals: bool) -> Result<Outcome, Error> {
        let child = self.child.expect("the plan forks before it waits");
        let supervision = self.supervision.as_ref().expect("set up by the fork");
        let narrator = self.narrator;
        let exit = supervision
            .wait(child, forward_signals, |signal| {
                narrator.note(&format!("passing {} on to the child", signal.as_str()))
            })
            .map_err(|e| Error::sys("waitpid(child)", e))?;
        match exit {
            Exit::Code(code) => narrator.note(&format!(
                "child {child} exited with {code}; so does ns-unshare"
            )),
            Exit::Signal(signal) => narrator.note(&format!(
                "child {child} was killed by {}; ns-unshare ends itself the same way",
                signal.as_str()
            )),
        }
        Ok(Outcome::Ended(exit))
    }
}

fn write_proc(path: &str, content: &str, call: impl Fn() -> String) -> Result<(), Error> {
    std::fs::write(path, content).map_err(|e| {
        let errno = Errno::from_raw(e.raw_os_error().unwrap_or(0));
        let error = Error::sys(call(), errno);
        match (path.rsplit('/').next(), errno) {
            (Some("uid_map" | "gid_map"), Errno::EPERM) => {
                error.hint("without root, a process may map only its own id, once, and gid_map needs setgroups denied first")
            }
            (Some("timens_offsets"), Errno::EACCES | Errno::EPERM) => {
                error.hint("offsets can be set only before any process has entered the time namespace")
            }
            _ => error,
        }
    })
}

/// The error of an `unshare` or `clone` that makes `namespaces`, with the
/// hint for its errno: root, disabled user namespaces, a missing kind.
/// mini-run's clone words its failures the same way.
pub fn unshare_error(call: String, errno: Errno, namespaces: &[Namespace]) -> Error {
    let error = Error::sys(call, errno);
    match errno {
        Errno::EPERM if !Uid::effective().is_root() && !namespaces.contains(&Namespace::User) => {
            error.hint("creating namespaces needs root; without root, add -r (--map-root-user) to create a user namespace first")
        }
        Errno::EPERM | Errno::ENOSPC if namespaces.contains(&Namespace::User) => error.hint(
            "user namespaces may be disabled or limited: see /proc/sys/user/max_user_namespaces (and on Ubuntu, kernel.apparmor_restrict_unprivileged_userns)",
        ),
        Errno::EINVAL if namespaces.contains(&Namespace::Time) => {
            error.hint("time namespaces need Linux 5.6 or later with CONFIG_TIME_NS")
        }
        Errno::EINVAL => error.hint("this kernel lacks one of these namespace types, or the process is threaded"),
        _ => error,
    }
}

fn path_error(call: String, errno: Errno, path: &Path) -> Error {
    let error = Error::sys(call, errno);
    match errno {
        Errno::ENOENT => error.hint(format!("{} does not exist", path.display())),
        Errno::ENOTDIR => error.hint(format!("{} is not a directory", path.display())),
        _ => error,
    }
}

/// The nsfs filesystem's magic number: every namespace file is on it.
const NSFS_MAGIC: i64 = 0x6e73_6673;

fn open_namespace_file(path: &Path) -> Result<OwnedFd, Error> {
    let call = format!("open(\"{}\", O_RDONLY)", path.display());
    let file = File::open(path).map_err(|e| {
        let errno = Errno::from_raw(e.raw_os_error().unwrap_or(0));
        let error = Error::sys(&call, errno);
        if errno == Errno::ENOENT {
            error.hint("no such namespace file; make one with ns-unshare --net=FILE, or name /proc/PID/ns/net")
        } else {
            error
        }
    })?;
    let fs = nix::sys::statfs::fstatfs(&file)
        .map_err(|e| Error::sys(format!("fstatfs(\"{}\")", path.display()), e))?;
    #[allow(clippy::unnecessary_cast)]
    if fs.filesystem_type().0 as i64 != NSFS_MAGIC {
        return Err(Error::usage(format!(
            "{} is not a namespace file; give /proc/PID/ns/TYPE or a file that ns-unshare --TYPE=FILE bound",
            path.display()
        )));
    }
    Ok(OwnedFd::from(file))
}

fn command_of(pid: Option<i32>) -> String {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/comm"),
        None => "/proc/self/comm".into(),
    };
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

fn cstring(arg: &std::ffi::OsStr) -> Result<CString, Error> {
    CString::new(arg.as_bytes()).map_err(|_| {
        Error::usage(format!(
            "argument {:?} contains a NUL byte",
            arg.to_string_lossy()
        ))
    })
}

/// Replaces this process with the program; returns only the error.
fn exec(program: &Program) -> Error {
    match program {
        Program::Command(args) => {
            let argv = match args
                .iter()
                .map(|a| cstring(a))
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(argv) => argv,
                Err(error) => return error,
            };
            let errno = nix::unistd::execvp(&argv[0], &argv).unwrap_err();
            Error::exec(&args[0].to_string_lossy(), errno)
        }
        Program::Shell(shell) => {
            let name = shell.file_name().unwrap_or_default();
            let mut login = b"-".to_vec();
            login.extend_from_slice(name.as_bytes());
            let (Ok(path), Ok(arg0)) = (cstring(shell.as_os_str()), CString::new(login)) else {
                return Error::usage("$SHELL contains a NUL byte");
            };
            let errno = nix::unistd::execv(&path, &[arg0]).unwrap_err();
            Error::exec(&shell.to_string_lossy(), errno)
                .hint("set $SHELL to a shell that exists, or name a program")
        }
    }
}

/// In the id-map helper: write the maps of ns-unshare's new user namespace.
fn write_id_maps(
    target: Pid,
    uid_map: &Option<String>,
    gid_map: &Option<String>,
) -> Result<(), Error> {
    for (kind, map, tool) in [
        ("uid_map", uid_map, "newuidmap"),
        ("gid_map", gid_map, "newgidmap"),
    ] {
        let Some(map) = map else { continue };
        let lines = map.replace("\\n", "\n");
        if Uid::effective().is_root() {
            let path = format!("/proc/{target}/{kind}");
            write_proc(&path, &lines, || format!("write {path} \"{map}\""))?;
        } else {
            // Without root, the setuid helpers from shadow's uidmap package
            // may write the ranges /etc/subuid and /etc/subgid grant.
            let status = std::process::Command::new(tool)
                .arg(target.to_string())
                .args(lines.split_whitespace())
                .status()
                .map_err(|e| {
                    Error::setup(format!(
                        "{tool}: {e}; hint: install the uidmap package, or run as root"
                    ))
                })?;
            if !status.success() {
                return Err(Error::setup(format!(
                    "{tool} {target} {}: {status}; hint: the ranges must be yours in /etc/sub{}id",
                    lines.replace('\n', " "),
                    &kind[..1]
                )));
            }
        }
    }
    Ok(())
}

/// In the bind helper: keep ns-unshare's new namespaces alive at files.
fn bind_namespaces(target: Pid, binds: &[(Namespace, PathBuf)]) -> Result<(), Error> {
    let mut done: Vec<&Path> = Vec::new();
    let mut created: Vec<&Path> = Vec::new();
    let result = (|| {
        for (namespace, file) in binds {
            if !file.exists() {
                File::create(file)
                    .map_err(|e| Error::setup(format!("create {}: {e}", file.display())))?;
                created.push(file);
            }
            let source = format!("/proc/{target}/ns/{}", namespace.for_children_name());
            mount(Some(source.as_str()), file.as_path(), None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(|e| {
                let error = Error::sys(format!("mount(\"{source}\", \"{}\", NULL, MS_BIND, NULL)", file.display()), e);
                match (namespace, e) {
                    (Namespace::Mount, Errno::EINVAL) => error.hint(format!(
                        "a mount namespace can be kept only on a private mount: mount --bind {0} {0}; mount --make-private {0}",
                        file.parent().unwrap_or(Path::new("/")).display()
                    )),
                    (_, Errno::EPERM) => error.hint("keeping a namespace in a file needs root in the original namespaces"),
                    _ => error,
                }
            })?;
            done.push(file);
        }
        Ok(())
    })();
    if result.is_err() {
        // Leave nothing behind: undo the binds and the files we created.
        for file in done {
            let _ = umount2(file, MntFlags::MNT_DETACH);
        }
        for file in created {
            let _ = std::fs::remove_file(file);
        }
    }
    result
}
