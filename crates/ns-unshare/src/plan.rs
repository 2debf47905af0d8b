//! The plan: util-linux `unshare`'s sequence of kernel calls, as data.
//!
//! Building a plan reads nothing but `/proc/PID/ns/*` links (for `--enter`
//! with no namespace flags) and changes nothing; [`crate::run`] executes it.

use std::ffi::OsString;
use std::path::PathBuf;

use nix::sys::signal::Signal;
use steps::{Chapter, Plan, Step, chapter};

use crate::cli::{Enter, IdMaps, Program, Propagation, Setgroups, Unshare};
use crate::namespace::{Namespace, ORDERED, flag_names};

pub use steps::{Side, Sided};

/// A helper process forked before `unshare()`, so that it stays in the
/// original namespaces and can do from outside what the caller no longer
/// may do from inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Helper {
    /// Writes maps of many ids: only a process in the parent user namespace
    /// (with CAP_SETUID there, or through newuidmap) may.
    IdMapper {
        uid_map: Option<String>,
        gid_map: Option<String>,
    },
    /// Bind-mounts `/proc/PID/ns/*` onto files so the namespaces outlive
    /// their last process, in the mount namespace the caller started in.
    Binder(Vec<(Namespace, PathBuf)>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    StartHelper(Helper),
    Unshare(Vec<Namespace>),
    /// Let the id-map helper write the maps, and wait for it.
    MapIdsFromHelper {
        uid_map: Option<String>,
        gid_map: Option<String>,
    },
    SetClockOffset {
        clock: &'static str,
        seconds: i64,
    },
    Fork {
        pid_namespace: bool,
    },
    /// Let the bind helper make the bind mounts, and wait for it.
    BindFromHelper(Vec<(Namespace, PathBuf)>),
    WaitChild {
        forward_signals: bool,
    },
    SetDeathSignal(Signal),
    WriteProcSelf {
        file: &'static str,
        content: String,
    },
    SetPropagation(Propagation),
    Chroot(PathBuf),
    Chdir(PathBuf),
    MakePrivate(PathBuf),
    MountProc(PathBuf),
    SetHostname(String),
    DropGroups,
    SetGid(u32),
    SetUid(u32),
    Exec(Program),
    OpenNamespace {
        namespace: Namespace,
        path: PathBuf,
    },
    SetNs(Namespace),
    ReadNamespaces {
        pid: Option<i32>,
    },
}

/// One step of ns-unshare's plan: a call and the process that makes it.
pub type NsStep = Sided<Op>;

fn quoted(path: &std::path::Path) -> String {
    format!("\"{}\"", path.display())
}

fn argv(args: &[OsString]) -> String {
    args.iter()
        .map(|a| format!("\"{}\"", a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Step for Op {
    fn call(&self) -> String {
        match self {
            Op::StartHelper(Helper::IdMapper { .. }) => "fork() = id-map helper".into(),
            Op::StartHelper(Helper::Binder(_)) => "fork() = bind helper".into(),
            Op::Unshare(namespaces) => format!("unshare({})", flag_names(namespaces)),
            Op::MapIdsFromHelper { uid_map, gid_map } => {
                let mut writes = Vec::new();
                if let Some(map) = uid_map {
                    writes.push(format!("write /proc/$NS_UNSHARE/uid_map \"{map}\""));
                }
                if let Some(map) = gid_map {
                    writes.push(format!("write /proc/$NS_UNSHARE/gid_map \"{map}\""));
                }
                format!("helper: {}", writes.join("; "))
            }
            Op::SetClockOffset { clock, seconds } => {
                format!("write /proc/self/timens_offsets \"{clock} {seconds} 0\"")
            }
            Op::Fork { .. } => "fork()".into(),
            Op::BindFromHelper(binds) => {
                let mounts = binds
                    .iter()
                    .map(|(ns, file)| {
                        format!(
                            "mount(\"/proc/$NS_UNSHARE/ns/{}\", {}, NULL, MS_BIND, NULL)",
                            ns.for_children_name(),
                            quoted(file)
                        )
                    })
                    .collect::<Vec<_>>();
                format!("helper: {}", mounts.join("; "))
            }
            Op::WaitChild { .. } => "waitpid(child)".into(),
            Op::SetDeathSignal(signal) => format!("prctl(PR_SET_PDEATHSIG, {})", signal.as_str()),
            Op::WriteProcSelf { file, content } => format!("write /proc/self/{file} \"{content}\""),
            Op::SetPropagation(mode) => format!(
                "mount(\"none\", \"/\", NULL, {}, NULL)",
                propagation_flags(*mode)
            ),
            Op::Chroot(dir) => format!("chroot({})", quoted(dir)),
            Op::Chdir(dir) => format!("chdir({})", quoted(dir)),
            Op::MakePrivate(dir) => format!(
                "mount(\"none\", {}, NULL, MS_REC|MS_PRIVATE, NULL)",
                quoted(dir)
            ),
            Op::MountProc(dir) => format!(
                "mount(\"proc\", {}, \"proc\", MS_NOSUID|MS_NODEV|MS_NOEXEC, NULL)",
                quoted(dir)
            ),
            Op::SetHostname(name) => format!("sethostname(\"{name}\")"),
            Op::DropGroups => "setgroups(0, NULL)".into(),
            Op::SetGid(gid) => format!("setgid({gid})"),
            Op::SetUid(uid) => format!("setuid({uid})"),
            Op::Exec(Program::Command(args)) => {
                format!(
                    "execvp(\"{}\", [{}])",
                    args[0].to_string_lossy(),
                    argv(args)
                )
            }
            Op::Exec(Program::Shell(shell)) => {
                let name = shell.file_name().unwrap_or_default().to_string_lossy();
                format!("execv({}, [\"-{name}\"])", quoted(shell))
            }
            Op::OpenNamespace { path, .. } => format!("open({}, O_RDONLY)", quoted(path)),
            Op::SetNs(ns) => format!("setns(fd, {})", ns.flag_name()),
            Op::ReadNamespaces { pid } => match pid {
                Some(pid) => format!("readlink(\"/proc/{pid}/ns/*\")"),
                None => "readlink(\"/proc/self/ns/*\")".into(),
            },
        }
    }

    fn why(&self) -> String {
        match self {
            Op::StartHelper(Helper::IdMapper { .. }) => {
                "a helper stays in the parent user namespace: only from there may a map of many ids be written".into()
            }
            Op::StartHelper(Helper::Binder(_)) => {
                "a helper stays in the original namespaces, where the bind mounts that keep the new ones alive must go".into()
            }
            Op::Unshare(namespaces) => {
                let own = namespaces.iter().map(|n| n.isolates()).collect::<Vec<_>>().join("; ");
                let mut why = format!("new namespaces, so this process gets its own: {own}");
                if namespaces.iter().any(|n| n.only_children_enter()) {
                    why.push_str(if namespaces.contains(&Namespace::Time) {
                        " (pid and time namespaces take in the children created from now on; recent kernels also move the program into the time namespace at exec)"
                    } else {
                        " (a pid namespace takes in only the children created from now on)"
                    });
                }
                why
            }
            Op::MapIdsFromHelper { .. } => "ids inside the new user namespace now stand for ids outside it".into(),
            Op::SetClockOffset { clock, .. } => {
                format!("CLOCK_{} runs this far ahead inside; offsets must be set before any process enters", clock.to_ascii_uppercase())
            }
            Op::Fork { pid_namespace: true } => {
                "the child is the first process of the new PID namespace, so it is pid 1 there".into()
            }
            Op::Fork { pid_namespace: false } => {
                "the program runs as a child, so ns-unshare can wait for it and pass on its exit".into()
            }
            Op::BindFromHelper(_) => {
                "a bind mount of a namespace's /proc link keeps the namespace alive after its last process exits".into()
            }
            Op::WaitChild { forward_signals } => {
                let mut why = "wait for the program, then exit with its exit code or die of its signal".to_string();
                if *forward_signals {
                    why.push_str("; SIGINT and SIGTERM are passed on to it meanwhile");
                }
                why
            }
            Op::SetDeathSignal(_) => "the kernel sends the child this signal if ns-unshare dies (--kill-child)".into(),
            Op::WriteProcSelf { file, .. } => match *file {
                "setgroups" => "an unprivileged gid_map is allowed only once setgroups(2) is denied".into(),
                "uid_map" => "the caller's user id outside shows as this id inside".into(),
                _ => "the caller's group id outside shows as this id inside".into(),
            },
            Op::SetPropagation(_) => {
                "systemd makes / shared: without this, mounts made inside would show up on the host".into()
            }
            Op::Chroot(_) => "this directory becomes / for the program (--root)".into(),
            Op::Chdir(_) => "the program starts in this directory".into(),
            Op::MakePrivate(_) => "the new proc mount must not propagate back to the host".into(),
            Op::MountProc(_) => "ps and top read /proc: a new proc shows the new PID namespace's processes".into(),
            Op::SetHostname(_) => "the new UTS namespace has its own hostname; the host's is untouched".into(),
            Op::DropGroups => "drop supplementary groups before changing gid".into(),
            Op::SetGid(_) => "run the program as this group (--setgid)".into(),
            Op::SetUid(_) => "run the program as this user (--setuid)".into(),
            Op::Exec(Program::Shell(_)) => "no program given: start $SHELL as a login shell".into(),
            Op::Exec(Program::Command(_)) => "replace this process with the program; it keeps the namespaces".into(),
            Op::OpenNamespace { .. } => "open every namespace first: entering the mount namespace changes what /proc paths mean".into(),
            Op::SetNs(Namespace::Pid) => {
                "join the PID namespace; like unshare, this applies only to children, hence the fork below".into()
            }
            Op::SetNs(_) => "join the namespace the descriptor refers to".into(),
            Op::ReadNamespaces { .. } => "each link's number is a namespace's inode id: equal ids, same namespace".into(),
        }
    }

    fn chapter(&self) -> Chapter {
        match self {
            Op::StartHelper(Helper::IdMapper { .. })
            | Op::MapIdsFromHelper { .. }
            | Op::WriteProcSelf { .. }
            | Op::DropGroups
            | Op::SetGid(_)
            | Op::SetUid(_) => chapter::USER,
            Op::StartHelper(Helper::Binder(_)) | Op::BindFromHelper(_) => chapter::ENTER,
            Op::Unshare(namespaces) => match namespaces.as_slice() {
                [one] => one.chapter(),
                _ => chapter::NAMESPACES,
            },
            Op::SetClockOffset { .. } => chapter::TIME,
            Op::Fork {
                pid_namespace: true,
            }
            | Op::MountProc(_)
            | Op::MakePrivate(_) => chapter::PID,
            Op::Fork { .. } | Op::WaitChild { .. } | Op::SetDeathSignal(_) | Op::Exec(_) => {
                chapter::PROCESSES
            }
            Op::SetPropagation(_) | Op::Chroot(_) | Op::Chdir(_) => chapter::MOUNT,
            Op::SetHostname(_) => chapter::UTS,
            Op::OpenNamespace { .. } | Op::SetNs(_) | Op::ReadNamespaces { .. } => chapter::ENTER,
        }
    }
}

pub fn propagation_flags(mode: Propagation) -> &'static str {
    match mode {
        Propagation::Private => "MS_REC|MS_PRIVATE",
        Propagation::Shared => "MS_REC|MS_SHARED",
        Propagation::Slave => "MS_REC|MS_SLAVE",
        Propagation::Unchanged => "0",
    }
}

fn id_maps_for_helper(
    maps: &IdMaps,
    outer_uid: u32,
    outer_gid: u32,
) -> (Option<String>, Option<String>) {
    let lines = |range: Option<crate::idmap::IdRange>, single: Option<u32>, outer: u32| {
        let mut lines = Vec::new();
        if let Some(range) = range {
            lines.push(range.map_line());
            if let Some(inner) = single {
                lines.push(format!("{inner} {outer} 1"));
            }
        }
        (!lines.is_empty()).then(|| lines.join("\\n"))
    };
    (
        lines(maps.users, maps.user, outer_uid),
        lines(maps.groups, maps.group, outer_gid),
    )
}

/// The plan for creating namespaces and running a program in them, in
/// util-linux's order.
pub fn unshare_plan(request: &Unshare) -> Plan<NsStep> {
    let mut plan = Plan::new();
    let mut side = Side::Caller;
    let push = |plan: &mut Plan<NsStep>, side: Side, op: Op| plan.push(NsStep { side, op });

    let binds: Vec<(Namespace, PathBuf)> = request
        .namespaces
        .iter()
        .filter_map(|n| n.file.clone().map(|f| (n.namespace, f)))
        .collect();
    let (helper_uid_map, helper_gid_map) =
        id_maps_for_helper(&request.maps, request.outer_uid, request.outer_gid);
    let map_helper = helper_uid_map.is_some() || helper_gid_map.is_some();

    if !binds.is_empty() {
        push(
            &mut plan,
            side,
            Op::StartHelper(Helper::Binder(binds.clone())),
        );
    }
    if map_helper {
        push(
            &mut plan,
            side,
            Op::StartHelper(Helper::IdMapper {
                uid_map: helper_uid_map.clone(),
                gid_map: helper_gid_map.clone(),
            }),
        );
    }
    let namespaces: Vec<Namespace> = request.namespaces.iter().map(|n| n.namespace).collect();
    if !namespaces.is_empty() {
        push(&mut plan, side, Op::Unshare(namespaces));
    }
    if map_helper {
        push(
            &mut plan,
            side,
            Op::MapIdsFromHelper {
                uid_map: helper_uid_map.clone(),
                gid_map: helper_gid_map.clone(),
            },
        );
    }
    if let Some(seconds) = request.boottime {
        push(
            &mut plan,
            side,
            Op::SetClockOffset {
                clock: "boottime",
                seconds,
            },
        );
    }
    if let Some(seconds) = request.monotonic {
        push(
            &mut plan,
            side,
            Op::SetClockOffset {
                clock: "monotonic",
                seconds,
            },
        );
    }
    if request.fork {
        push(
            &mut plan,
            side,
            Op::Fork {
                pid_namespace: request.has(Namespace::Pid),
            },
        );
        side = Side::Parent;
    }
    if !binds.is_empty() {
        push(&mut plan, side, Op::BindFromHelper(binds));
    }
    if request.fork {
        push(
            &mut plan,
            side,
            Op::WaitChild {
                forward_signals: request.forward_signals,
            },
        );
        side = Side::Child;
    }
    if let Some(signal) = request.kill_child {
        push(&mut plan, side, Op::SetDeathSignal(signal));
    }
    if let (Some(inner), false) = (
        request.maps.user,
        map_helper && request.maps.users.is_some(),
    ) {
        let content = format!("{inner} {} 1", request.outer_uid);
        push(
            &mut plan,
            side,
            Op::WriteProcSelf {
                file: "uid_map",
                content,
            },
        );
    }
    if let (Some(inner), false) = (
        request.maps.group,
        map_helper && request.maps.groups.is_some(),
    ) {
        push(
            &mut plan,
            side,
            Op::WriteProcSelf {
                file: "setgroups",
                content: "deny".into(),
            },
        );
        let content = format!("{inner} {} 1", request.outer_gid);
        push(
            &mut plan,
            side,
            Op::WriteProcSelf {
                file: "gid_map",
                content,
            },
        );
    } else if let Some(mode) = request.setgroups {
        let content = match mode {
            Setgroups::Allow => "allow",
            Setgroups::Deny => "deny",
        };
        push(
            &mut plan,
            side,
            Op::WriteProcSelf {
                file: "setgroups",
                content: content.into(),
            },
        );
    }
    if request.has(Namespace::Mount) && request.propagation != Propagation::Unchanged {
        push(&mut plan, side, Op::SetPropagation(request.propagation));
    }
    if let Some(name) = &request.hostname {
        push(&mut plan, side, Op::SetHostname(name.clone()));
    }
    if let Some(root) = &request.root {
        push(&mut plan, side, Op::Chroot(root.clone()));
        push(
            &mut plan,
            side,
            Op::Chdir(request.wd.clone().unwrap_or_else(|| "/".into())),
        );
    } else if let Some(wd) = &request.wd {
        push(&mut plan, side, Op::Chdir(wd.clone()));
    }
    if let Some(dir) = &request.mount_proc {
        // With the default propagation the recursive change of / above has
        // already made an existing proc mount private.
        if request.root.is_none() && request.propagation != Propagation::Private {
            push(&mut plan, side, Op::MakePrivate(dir.clone()));
        }
        push(&mut plan, side, Op::MountProc(dir.clone()));
    }
    if let Some(gid) = request.setgid {
        push(&mut plan, side, Op::DropGroups);
        push(&mut plan, side, Op::SetGid(gid));
    }
    if let Some(uid) = request.setuid {
        push(&mut plan, side, Op::SetUid(uid));
    }
    push(&mut plan, side, Op::Exec(request.program.clone()));
    plan
}

/// The namespace ids of a process, read from its `/proc/PID/ns` links.
pub fn namespace_ids(pid: Option<i32>) -> Vec<(Namespace, Result<u64, nix::errno::Errno>)> {
    let base = match pid {
        Some(pid) => format!("/proc/{pid}/ns"),
        None => "/proc/self/ns".into(),
    };
    let mut sorted = ORDERED;
    sorted.sort_by_key(|ns| ns.proc_name());
    sorted
        .iter()
        .map(|&ns| (ns, read_namespace_id(&format!("{base}/{}", ns.proc_name()))))
        .collect()
}

/// `net:[4026531840]` → 4026531840.
pub fn read_namespace_id(path: &str) -> Result<u64, nix::errno::Errno> {
    let link = nix::fcntl::readlink(path)?;
    let text = link.to_string_lossy();
    text.split_once(":[")
        .and_then(|(_, rest)| rest.strip_suffix(']'))
        .and_then(|id| id.parse().ok())
        .ok_or(nix::errno::Errno::EINVAL)
}

/// The plan for joining namespaces (nsenter-style).
pub fn enter_plan(request: &Enter) -> Result<Plan<NsStep>, steps::Error> {
    let mut chosen: Vec<(Namespace, PathBuf)> = Vec::new();
    if request.namespaces.is_empty() {
        // Every namespace of the target that differs from ours, like nsenter --all.
        let pid = request.target.expect("checked by Cli::request");
        let ours = namespace_ids(None);
        let theirs = namespace_ids(Some(pid));
        for ((ns, mine), (_, target)) in ours.iter().zip(theirs.iter()) {
            match target {
                Err(nix::errno::Errno::ENOENT) if ns_missing_for_process(pid) => {
                    return Err(steps::Error::usage(format!(
                        "--enter={pid}: no such process; list processes with ps"
                    )));
                }
                Err(errno) => {
                    return Err(steps::Error::sys(
                        format!("readlink(\"/proc/{pid}/ns/{}\")", ns.proc_name()),
                        *errno,
                    )
                    .hint("entering another user's process needs root (ptrace access to it)"));
                }
                Ok(id) if mine.as_ref().ok() != Some(id) => {
                    chosen.push((*ns, format!("/proc/{pid}/ns/{}", ns.proc_name()).into()));
                }
                Ok(_) => {}
            }
        }
    } else {
        for arg in &request.namespaces {
            let path = match (&arg.file, request.target) {
                (Some(file), _) => file.clone(),
                (None, Some(pid)) => format!("/proc/{pid}/ns/{}", arg.namespace.proc_name()).into(),
                (None, None) => unreachable!("checked by Cli::request"),
            };
            chosen.push((arg.namespace, path));
        }
    }
    if let Some(pid) = request.target
        && ns_missing_for_process(pid)
    {
        return Err(steps::Error::usage(format!(
            "--enter={pid}: no such process; list processes with ps"
        )));
    }
    chosen.sort_by_key(|(ns, _)| ORDERED.iter().position(|o| o == ns));

    let mut plan = Plan::new();
    let push = |plan: &mut Plan<NsStep>, side: Side, op: Op| plan.push(NsStep { side, op });
    for (namespace, path) in &chosen {
        push(
            &mut plan,
            Side::Caller,
            Op::OpenNamespace {
                namespace: *namespace,
                path: path.clone(),
            },
        );
    }
    // root can join the other namespaces first and the user namespace last;
    // an unprivileged caller needs the capabilities the target's user
    // namespace gives it before it may join the others (nsenter does the same).
    let user_first = !nix::unistd::Uid::effective().is_root();
    let mut order: Vec<Namespace> = chosen.iter().map(|(ns, _)| *ns).collect();
    if !user_first && let Some(pos) = order.iter().position(|n| *n == Namespace::User) {
        let user = order.remove(pos);
        order.push(user);
    }
    for namespace in &order {
        push(&mut plan, Side::Caller, Op::SetNs(*namespace));
    }
    if let Some(root) = &request.root {
        push(&mut plan, Side::Caller, Op::Chroot(root.clone()));
        push(
            &mut plan,
            Side::Caller,
            Op::Chdir(request.wd.clone().unwrap_or_else(|| "/".into())),
        );
    } else if let Some(wd) = &request.wd {
        push(&mut plan, Side::Caller, Op::Chdir(wd.clone()));
    }
    let mut side = Side::Caller;
    // setns() moves the caller into every kind of namespace at once except
    // a PID namespace, which only its children enter: fork for that one.
    if order.contains(&Namespace::Pid) {
        push(
            &mut plan,
            side,
            Op::Fork {
                pid_namespace: true,
            },
        );
        push(
            &mut plan,
            Side::Parent,
            Op::WaitChild {
                forward_signals: true,
            },
        );
        side = Side::Child;
    }
    push(&mut plan, side, Op::Exec(request.program.clone()));
    Ok(plan)
}

fn ns_missing_for_process(pid: i32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The plan for `--list`: read our links and each process's.
pub fn list_plan(pids: &[i32]) -> Plan<NsStep> {
    let mut plan = Plan::new();
    plan.push(NsStep {
        side: Side::Caller,
        op: Op::ReadNamespaces { pid: None },
    });
    for pid in pids {
        plan.push(NsStep {
            side: Side::Caller,
            op: Op::ReadNamespaces { pid: Some(*pid) },
        });
    }
    plan
}
