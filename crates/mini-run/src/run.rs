//! The executor: walks the plan and makes each call. After the `clone()`
//! the parent (mini-run, on the host) and the child (the container's first
//! process) walk the same plan, each making only its own steps. The child
//! reports a failure to the parent through a pipe that closes when it
//! execs; the parent then takes down everything that was made.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use caps::{CapSet, Capability, CapsHashSet};
use cg_limit::CgroupFs;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::stat::SFlag;
use nix::sys::wait::waitpid;
use nix::unistd::{AccessFlags, Gid, Pid, Uid, pipe2};
use steps::process::{Exit, Supervision};
use steps::sys::{Fork, clone_into};
use steps::{Error, Narrator, Plan, Side, Step};

use crate::container::Port;
use crate::init;
use crate::inroot::{self, Make};
use crate::network::{self, Attachment};
use crate::plan::{Op, RunStep};
use crate::rootless;
use crate::security;
use crate::state::state_dir;
use crate::tty;
use crate::volume;

/// The file in a container's state directory that says where it is
/// connected: `BRIDGE HOST-END`.
const NETWORK_RECORD: &str = "network";

/// The file in a container's state directory that names the volumes its
/// run made, one per line.
const VOLUMES_RECORD: &str = "volumes-made";

struct Executor<'a> {
    narrator: &'a Narrator,
    /// None: no cgroup (rootless without a delegated one).
    fs: Option<&'a dyn CgroupFs>,
    here: Side,
    supervision: Supervision,
    child: Option<Pid>,
    /// Parent: the write end, held until the end (the child sees it close
    /// if mini-run dies). Child: the read end.
    sync: Option<File>,
    /// Parent: the read end of the child's failure report. Child: the
    /// write end, closed by exec.
    report: Option<File>,
    state: Option<(PathBuf, Flock<File>)>,
    cgroup: Option<(cg_limit::Name, Option<Flock<File>>)>,
    /// Caller and parent: the named volumes in use, share-locked.
    volumes: Vec<volume::InUse>,
    /// `-t`: the console socket's two ends, until the clone.
    console_pair: Option<(OwnedFd, OwnedFd)>,
    /// `-t`: mini-run's end of the console socket (parent), or the
    /// child's, until the terminal is made.
    console: Option<OwnedFd>,
    /// `--userns` as root: the layers socket's two ends, until the clone.
    layers_pair: Option<(OwnedFd, OwnedFd)>,
    /// `--userns` as root: this side's end of the layers socket.
    layers: Option<OwnedFd>,
    /// Child, `--userns` as root: the idmapped named volumes that came
    /// after the layers, in the order of their binds.
    idmapped_volumes: std::collections::VecDeque<OwnedFd>,
    /// Parent: the container's place on a bridge, once taken.
    network: Option<Attachment>,
    /// Child: the container's root filesystem, once mounted.
    root: Option<OwnedFd>,
    /// Child: the root was moved over / rather than pivoted to.
    moved_root: bool,
    /// `-d`, the supervisor: the pipe to the `run` that waits for the id.
    detached: Option<File>,
    /// Parent: the container's address on its bridge.
    address: Option<String>,
    /// Parent, `-t`: the master of the container's terminal.
    master: Option<OwnedFd>,
    exit: Option<Exit>,
}

/// Runs the container. Returns in mini-run's own process, with how the
/// container's command ended; the child becomes the command.
pub fn run(
    plan: &Plan<RunStep>,
    narrator: &Narrator,
    fs: Option<&dyn CgroupFs>,
) -> Result<Exit, Error> {
    // Ctrl-C or SIGTERM during set-up must not leave half a container:
    // they wait, blocked, until just before the clone, which then stops;
    // after it they are passed on to the container.
    let supervision = Supervision::start().map_err(|e| Error::sys("sigprocmask", e))?;
    let mut executor = Executor {
        narrator,
        fs,
        here: Side::Caller,
        supervision,
        child: None,
        sync: None,
        report: None,
        state: None,
        cgroup: None,
        volumes: Vec::new(),
        console_pair: None,
        console: None,
        layers_pair: None,
        layers: None,
        idmapped_volumes: std::collections::VecDeque::new(),
        network: None,
        root: None,
        moved_root: false,
        detached: None,
        address: None,
        master: None,
        exit: None,
    };
    let tty = plan.steps().iter().any(|s| s.op == Op::Console);
    if tty {
        // Made before the clone, so that both sides hold an end.
        let (ours, theirs) = crate::passfd::socket().map_err(|e| Error::sys("socketpair", e))?;
        executor.console_pair = Some((ours, theirs));
    }
    if plan
        .steps()
        .iter()
        .any(|s| matches!(s.op, Op::IdmapLayers { .. }))
    {
        let (ours, theirs) = crate::passfd::socket().map_err(|e| Error::sys("socketpair", e))?;
        executor.layers_pair = Some((ours, theirs));
    }
    for (index, step) in plan.steps().iter().enumerate() {
        if step.side.is_other_than(executor.here) {
            continue;
        }
        narrator.announce(index, plan.len(), step);
        if let Err(error) = executor.execute(step) {
            return Err(executor.fail(error));
        }
        // The clone's child did not make the clone: its parent answers
        // for that step.
        let made_it = !(step.side == Side::Caller && executor.here == Side::Child);
        match steps::fault::after("mini-run", index + 1).filter(|_| made_it) {
            None => {}
            Some(steps::fault::Fault::Fail) => {
                return Err(executor.fail(steps::fault::error(index + 1)));
            }
            Some(steps::fault::Fault::Kill) => executor.kill_mini_run(index + 1),
            // A Ctrl-C reaches mini-run (the container has a session of
            // its own); the child is not signalled this way.
            Some(steps::fault::Fault::Interrupt) if executor.here != Side::Child => {
                let _ = kill(nix::unistd::getpid(), Signal::SIGINT);
            }
            Some(steps::fault::Fault::Interrupt) => {}
        }
    }
    Ok(executor.exit.expect("the plan waits for the container"))
}

/// A narrator for another tool's steps, in the same mode as mini-run's.
pub(crate) fn narrator_for(program: &'static str, narrator: &Narrator) -> Narrator {
    Narrator::new(program, narrator.mode(), narrator.palette())
}

impl Executor<'_> {
    fn execute(&mut self, step: &RunStep) -> Result<(), Error> {
        let call = || step.call();
        let sys = |e: Errno| Error::sys(step.call(), e);
        match &step.op {
            Op::Detach => self.detach(call)?,
            Op::MakeState { dir, name } => self.make_state(dir, name.as_deref())?,
            Op::Output { log } => {
                use std::os::unix::fs::OpenOptionsExt;
                let file = std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .mode(0o640)
                    .open(log)
                    .map_err(|e| Error::io(call(), &e))?;
                let null = File::open("/dev/null").map_err(|e| Error::io(call(), &e))?;
                nix::unistd::dup2_stdout(&file).map_err(sys)?;
                nix::unistd::dup2_stderr(&file).map_err(sys)?;
                nix::unistd::dup2_stdin(&null).map_err(sys)?;
            }
            Op::Started { dir, .. } => self.started(dir)?,
            Op::RecordExit { dir } => {
                let exit = self.exit.expect("waited");
                let record = crate::record::Exited::of(exit);
                crate::record::write(dir, crate::record::EXITED, &record)?;
            }
            Op::WriteFile { path, content, .. } => {
                std::fs::write(path, content).map_err(|e| Error::io(call(), &e))?
            }
            Op::Volume { name, .. } => {
                let in_use = volume::acquire(name)?;
                // Noted in the state directory: after a SIGKILL, mini-run
                // cleanup takes back the volumes the run made.
                if let (true, Some((dir, _))) = (in_use.made, &self.state) {
                    let mut record = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(dir.join(VOLUMES_RECORD))
                        .map_err(|e| Error::io(call(), &e))?;
                    writeln!(record, "{name}").map_err(|e| Error::io(call(), &e))?;
                }
                self.volumes.push(in_use);
            }
            Op::Cgroup { name, limits } => {
                let fs = self.fs.expect("the plan has a cgroup");
                let plan = cg_limit::plan::hold_plan(fs, name, limits)?;
                let cgroup = fs.layout().cgroup(name);
                let narrator = narrator_for("cg-limit", self.narrator);
                match cg_limit::run::run(&plan, &narrator, fs, &cgroup)? {
                    cg_limit::run::Outcome::Created { held } => {
                        self.cgroup = Some((name.clone(), held))
                    }
                    cg_limit::run::Outcome::Ended(_) => unreachable!("the plan runs nothing"),
                }
            }
            Op::Clone(namespaces) => self.clone(namespaces, call)?,
            Op::MapIds(map) => {
                let child = self.child.expect("cloned");
                // Root may map any range; a user only their own id, once,
                // and only after denying setgroups(2).
                let mut writes = vec![("uid_map", format!("0 {} {}", map.uid, map.count))];
                if !map.is_remapped() {
                    writes.push(("setgroups", "deny".to_string()));
                }
                writes.push(("gid_map", format!("0 {} {}", map.gid, map.count)));
                for (file, content) in writes {
                    let path = format!("/proc/{child}/{file}");
                    std::fs::write(&path, &content)
                        .map_err(|e| Error::io(format!("write {path} \"{content}\""), &e))?;
                }
            }
            Op::GiveState { dir, uid, gid } => {
                give(dir, *uid, *gid).map_err(|e| Error::io(call(), &e))?
            }
            Op::IdmapLayers { sources, volumes } => {
                let all: Vec<PathBuf> = sources.iter().chain(volumes).cloned().collect();
                self.idmap_layers(&all)?
            }
            Op::AttachLayers { targets, root } => {
                let socket = self.layers.take().expect("made before the clone");
                let fds = crate::passfd::receive(&socket)
                    .map_err(|e| Error::sys("recvmsg(layers socket)", e))?;
                if fds.len() < targets.len() {
                    return Err(Error::setup(format!(
                        "{}: {} layer(s) came for {}",
                        call(),
                        fds.len(),
                        targets.len()
                    )));
                }
                let mut fds = fds.into_iter();
                // Targets first: zip takes from its first iterator before
                // it finds the second one done, and would drop a volume.
                for (target, fd) in targets.iter().zip(fds.by_ref()) {
                    std::fs::create_dir_all(target).map_err(|e| Error::io(call(), &e))?;
                    let attach = || -> Result<(), Errno> {
                        let onto = nix::fcntl::open(
                            target.as_path(),
                            OFlag::O_PATH
                                | OFlag::O_DIRECTORY
                                | OFlag::O_NOFOLLOW
                                | OFlag::O_CLOEXEC,
                            nix::sys::stat::Mode::empty(),
                        )?;
                        steps::sys::move_mount_onto(fd.as_fd(), onto.as_fd())
                    };
                    attach().map_err(|e| {
                        Error::sys(
                            format!(
                                "move_mount(fd, \"\", open(\"{}\", O_PATH), \"\", MOVE_MOUNT_F_EMPTY_PATH|MOVE_MOUNT_T_EMPTY_PATH)",
                                target.display()
                            ),
                            e,
                        )
                    })?;
                }
                self.idmapped_volumes = fds.collect();
                if *root {
                    self.root = Some(inroot::open_root(&targets[0])?);
                }
            }
            Op::JoinCgroup { dirs } => {
                let child = self.child.expect("cloned").to_string();
                for dir in dirs {
                    cg_limit::cgfs::write(&dir.join("cgroup.procs"), &child).map_err(sys)?;
                }
            }
            Op::Connect { bridge, ports } => self.connect(bridge, ports)?,
            Op::Disconnect { .. } => self.disconnect()?,
            Op::Release => {
                let sync = self.sync.as_mut().expect("cloned");
                sync.write_all(b"g").map_err(|e| Error::io(call(), &e))?;
            }
            Op::Wait { .. } => self.wait()?,
            Op::RemoveCgroup { .. } => self.remove_cgroup()?,
            Op::RemoveState { .. } => self.remove_state(),
            Op::AwaitParent => {
                let mut byte = [0u8; 1];
                let sync = self.sync.as_mut().expect("cloned");
                if sync.read(&mut byte).unwrap_or(0) != 1 {
                    // mini-run failed before it let us go; it cleans up.
                    std::process::exit(i32::from(steps::exit::SETUP));
                }
            }
            Op::BecomeRoot { .. }
            | Op::NewSession
            | Op::DropCapabilities(_)
            | Op::SetUser { .. }
            | Op::NoNewPrivileges
            | Op::Chdir(_)
            | Op::CloseFds => process_step(&step.op, &step.call())?,
            Op::DeathSignal => {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(sys)?;
                // mini-run may have died before the prctl: its end of the
                // sync pipe is closed then.
                let sync = self.sync.as_ref().expect("cloned");
                let mut fds = [PollFd::new(sync.as_fd(), PollFlags::POLLIN)];
                if matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0) {
                    std::process::exit(i32::from(steps::exit::SETUP));
                }
            }
            Op::Unshare(namespaces) => {
                let flags = namespaces
                    .iter()
                    .fold(nix::sched::CloneFlags::empty(), |f, n| f | n.flag());
                nix::sched::unshare(flags).map_err(sys)?;
            }
            Op::SetHostname(name) => nix::unistd::sethostname(name).map_err(sys)?,
            Op::MakePrivate => mount(
                Some("none"),
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .map_err(sys)?,
            Op::Overlay(stack) => {
                let make = [
                    stack.target.clone(),
                    stack.writable.as_ref().expect("writable").upper.clone(),
                    stack.writable.as_ref().expect("writable").work.clone(),
                ];
                let plan = overlay_stack::plan::mount_plan(stack, &make);
                let narrator = narrator_for("overlay-stack", self.narrator);
                overlay_stack::plan::execute(&plan, Some(stack), &narrator)?;
                self.root = Some(inroot::open_root(&stack.target)?);
            }
            Op::BindRoot { dir, target } => {
                std::fs::create_dir_all(target).map_err(|e| Error::io(call(), &e))?;
                mount(
                    Some(dir.as_path()),
                    target.as_path(),
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(sys)?;
                self.root = Some(inroot::open_root(target)?);
            }
            Op::Mount(m) => {
                let target = inroot::open(self.root(), &m.target, Make::Dir)?;
                mount(
                    Some(m.source),
                    &target.path(),
                    Some(m.fstype),
                    m.flags,
                    m.data,
                )
                .map_err(|e| mount_error(call(), e, m.fstype))?;
            }
            Op::Bind(b) => {
                let target = inroot::open(self.root(), &b.target, b.make)?;
                if b.idmapped {
                    let fd = self
                        .idmapped_volumes
                        .pop_front()
                        .ok_or_else(|| Error::setup(format!("{}: none came", call())))?;
                    steps::sys::move_mount_onto(fd.as_fd(), target.fd.as_fd()).map_err(sys)?;
                } else {
                    mount(
                        Some(b.source.as_path()),
                        &target.path(),
                        None::<&str>,
                        MsFlags::MS_BIND | MsFlags::MS_REC,
                        None::<&str>,
                    )
                    .map_err(sys)?;
                }
                if b.read_only {
                    // Read-only all the way down, as Docker 25 does: a
                    // mount inside the volume's source stays covered.
                    let top = inroot::open(self.root(), &b.target, Make::Nothing)?;
                    match steps::sys::read_only_recursive(top.fd.as_fd()) {
                        Ok(()) => {}
                        Err(Errno::ENOSYS) => {
                            self.remount_read_only(&b.target, MsFlags::empty(), call)?
                        }
                        Err(e) => {
                            return Err(Error::sys(
                                "mount_setattr(MOUNT_ATTR_RDONLY, AT_RECURSIVE)",
                                e,
                            ));
                        }
                    }
                }
            }
            Op::Symlink { target, link } => {
                let parent = link.parent().unwrap_or(Path::new("/"));
                let dir = inroot::open(self.root(), parent, Make::Dir)?;
                let name = link.file_name().expect("a link has a name");
                // An O_PATH descriptor cannot be a dirfd for symlinkat:
                // go through /proc/self/fd, which names the same directory.
                let dir_fd = nix::fcntl::open(
                    &dir.path(),
                    OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
                .map_err(sys)?;
                match nix::unistd::symlinkat(*target, dir_fd.as_fd(), name) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(sys(e)),
                }
            }
            Op::Mask(path) => {
                let target = match inroot::open(self.root(), Path::new(path), Make::Nothing) {
                    Ok(target) => target,
                    // Not every kernel has every one of them.
                    Err(_) => return Ok(()),
                };
                let stat = nix::sys::stat::fstat(target.fd.as_fd()).map_err(sys)?;
                let is_dir =
                    SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
                if is_dir {
                    mount(
                        Some("tmpfs"),
                        &target.path(),
                        Some("tmpfs"),
                        MsFlags::MS_RDONLY,
                        Some("size=0"),
                    )
                    .map_err(sys)?;
                } else {
                    mount(
                        Some("/dev/null"),
                        &target.path(),
                        None::<&str>,
                        MsFlags::MS_BIND,
                        None::<&str>,
                    )
                    .map_err(sys)?;
                }
            }
            Op::ReadOnly(path) => {
                let target = match inroot::open(self.root(), Path::new(path), Make::Nothing) {
                    Ok(target) => target,
                    Err(_) => return Ok(()),
                };
                mount(
                    Some(&target.path()),
                    &target.path(),
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(sys)?;
                let proc_flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
                self.remount_read_only(Path::new(path), proc_flags, call)?;
            }
            Op::PivotRoot(root) => {
                // The descriptor of the old view of the rootfs must not
                // outlive the pivot.
                self.root = None;
                nix::unistd::chdir(root.as_path()).map_err(sys)?;
                match nix::unistd::pivot_root(".", ".") {
                    Ok(()) => {}
                    Err(Errno::EINVAL) if root_is_initramfs() => {
                        // The initial ramfs cannot be pivoted away from
                        // (a machine booted into its initramfs, as the
                        // test VM is): move the rootfs over / and chroot,
                        // as runc --no-pivot does. Weaker: the old root
                        // stays beneath, so say so.
                        self.narrator.note(
                            "pivot_root refuses an initramfs root: moving the rootfs over / and chrooting instead (runc --no-pivot); a chroot is weaker, so the host's other mounts are detached first",
                        );
                        // What stays beneath must hold nothing the
                        // container could use: a host /proc left in the
                        // namespace would let root, in a user namespace
                        // of its own, mount a fresh proc with a writable
                        // /proc/sys (the kernel allows it while a fully
                        // visible proc is mounted somewhere).
                        detach_all_but(root);
                        mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
                            .map_err(sys)?;
                        nix::unistd::chroot(".").map_err(sys)?;
                        self.moved_root = true;
                    }
                    Err(e) => return Err(sys(e)),
                }
            }
            Op::Console => {
                let socket = self.console.take().expect("made before the clone");
                tty::open_in_container(socket)?;
            }
            Op::DetachOldRoot => {
                if !self.moved_root {
                    umount2(".", MntFlags::MNT_DETACH).map_err(sys)?;
                }
                nix::unistd::chdir("/").map_err(sys)?;
            }
            Op::Init => self.start_init(call)?,
            Op::Exec { argv, env, .. } => return Err(self.exec(argv, env)),
        }
        Ok(())
    }

    fn root(&self) -> &OwnedFd {
        self.root.as_ref().expect("the plan mounts the root first")
    }

    fn remount_read_only(
        &self,
        target: &Path,
        keep: MsFlags,
        call: impl Fn() -> String,
    ) -> Result<(), Error> {
        // Opened again: the first descriptor is of what the bind covers.
        let top = inroot::open(self.root(), target, Make::Nothing)?;
        mount(
            None::<&str>,
            &top.path(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | keep,
            None::<&str>,
        )
        .map_err(|e| Error::sys(call(), e))
    }

    fn make_state(&mut self, dir: &Path, name: Option<&str>) -> Result<(), Error> {
        let call = || format!("mkdir(\"{}\", 0700)", dir.display());
        // A container that ends now may remove the parent between our two
        // mkdirs: make it again.
        // The parent is locked until the new directory is locked:
        // `mini-run cleanup` and `ps` lock it before they look, so they
        // never take a directory in the instant before its lock; and no
        // two runs take the same name.
        let containers = state_dir();
        if rootless::is_rootless() {
            use std::os::unix::fs::DirBuilderExt;
            // In /tmp, another user could have made it first.
            let own = rootless::runtime_dir();
            let _ = std::fs::DirBuilder::new()
                .mode(0o700)
                .recursive(true)
                .create(&own);
            rootless::check_own(&own)?;
        }
        let mut tries = 0;
        let _parent = loop {
            std::fs::create_dir_all(&containers).map_err(|e| Error::io(call(), &e))?;
            let parent = File::open(&containers)
                .ok()
                .and_then(|f| Flock::lock(f, FlockArg::LockExclusive).ok());
            if let Some(name) = name {
                if let Some(other) = crate::record::named(&containers, name) {
                    return Err(Error::setup(format!(
                        "--name {name}: container {} has that name; mini-run rm {name} removes it, or choose another",
                        &other[..12.min(other.len())]
                    )));
                }
            }
            match std::fs::create_dir(dir) {
                Ok(()) => break parent,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 5 => tries += 1,
                Err(e) => return Err(Error::io(call(), &e)),
            }
        };
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        let file = File::open(dir).map_err(|e| Error::io(call(), &e))?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| Error::sys(format!("flock(\"{}\")", dir.display()), e))?;
        self.state = Some((dir.to_path_buf(), lock));
        if let Some(name) = name {
            let path = dir.join(crate::record::NAME);
            std::fs::write(&path, format!("{name}\n"))
                .map_err(|e| Error::io(format!("write \"{}\"", path.display()), &e))?;
        }
        Ok(())
    }

    fn clone(
        &mut self,
        namespaces: &[ns_unshare::Namespace],
        call: impl Fn() -> String,
    ) -> Result<(), Error> {
        if let Some(signal) = self
            .supervision
            .take_pending()
            .map_err(|e| Error::sys("signalfd", e))?
        {
            return Err(Error::with_code(
                format!("{signal} arrived before the container started; it was not run"),
                128 + signal as u8,
            ));
        }
        let (sync_read, sync_write) =
            pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::sys("pipe2", e))?;
        let (report_read, report_write) =
            pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::sys("pipe2", e))?;
        let flags = namespaces
            .iter()
            .fold(nix::sched::CloneFlags::empty(), |f, n| f | n.flag());
        match clone_into(flags)
            .map_err(|e| ns_unshare::run::unshare_error(call(), e, namespaces))?
        {
            Fork::Parent { child } => {
                self.here = Side::Parent;
                self.child = Some(child);
                self.console = self.console_pair.take().map(|(ours, _)| ours);
                self.layers = self.layers_pair.take().map(|(ours, _)| ours);
                self.sync = Some(File::from(sync_write));
                self.report = Some(File::from(report_read));
            }
            Fork::Child => {
                self.here = Side::Child;
                self.console = self.console_pair.take().map(|(_, theirs)| theirs);
                self.layers = self.layers_pair.take().map(|(_, theirs)| theirs);
                // The locks belong to mini-run, and the descriptors are
                // of host directories: a `-w /proc/self/fd/N` would walk
                // out of the container through them (CVE-2024-21626).
                // Close the copies now, without unlocking: a flock belongs
                // to the open file, which the clone shares, and is released
                // only with its last descriptor, which mini-run holds.
                if let Some((_, lock)) = self.state.take() {
                    close_without_unlocking(lock);
                }
                if let Some((_, Some(lock))) = self.cgroup.take() {
                    close_without_unlocking(lock);
                }
                for volume in self.volumes.drain(..) {
                    close_without_unlocking(volume.lock);
                }
                self.sync = Some(File::from(sync_read));
                self.report = Some(File::from(report_write));
            }
        }
        Ok(())
    }

    /// `--userns` as root: an idmapped copy of each layer, made here on
    /// the host (only root in the initial user namespace may make one),
    /// passed to the child, which attaches them in its mount namespace.
    fn idmap_layers(&mut self, sources: &[PathBuf]) -> Result<(), Error> {
        let child = self.child.expect("cloned");
        let userns_path = format!("/proc/{child}/ns/user");
        let userns = File::open(&userns_path)
            .map_err(|e| Error::io(format!("open(\"{userns_path}\")"), &e))?;
        let mut fds = Vec::new();
        for source in sources {
            let fd = steps::sys::open_tree_clone(source).map_err(|e| {
                Error::sys(
                    format!("open_tree(\"{}\", OPEN_TREE_CLONE)", source.display()),
                    e,
                )
            })?;
            steps::sys::idmap_mount(fd.as_fd(), userns.as_fd()).map_err(|e| {
                let error = Error::sys(
                    format!(
                        "mount_setattr(\"{}\", MOUNT_ATTR_IDMAP, {userns_path})",
                        source.display()
                    ),
                    e,
                );
                match e {
                    Errno::EINVAL => error.hint(
                        "its filesystem cannot be idmapped (ext4, xfs and btrfs can, tmpfs from Linux 6.3); keep the rootfs or image on one that can, or run without --userns",
                    ),
                    _ => error,
                }
            })?;
            fds.push(fd);
        }
        let socket = self.layers.take().expect("made before the clone");
        let raw: Vec<_> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
        crate::passfd::send(&socket, &raw)
            .map_err(|e| Error::sys("sendmsg(layers socket, SCM_RIGHTS)", e))
    }

    fn connect(&mut self, bridge: &str, ports: &[Port]) -> Result<(), Error> {
        let child = self.child.expect("cloned");
        let attachment = network::attachment(bridge, child, ports)?;
        // Recorded before anything is made: after a SIGKILL, mini-run
        // cleanup finds what to give back here.
        if let Some((dir, _)) = &self.state {
            let record = dir.join(NETWORK_RECORD);
            std::fs::write(&record, attachment.record())
                .map_err(|e| Error::io(format!("write \"{}\"", record.display()), &e))?;
        }
        self.network = Some(attachment);
        let narrator = narrator_for("veth-bridge", self.narrator);
        let addr = network::connect(bridge, child, ports, &narrator)?;
        self.narrator
            .note(&format!("the container's eth0 is {addr} on {bridge}"));
        self.address = Some(addr.to_string());
        Ok(())
    }

    fn disconnect(&mut self) -> Result<(), Error> {
        match self.network.take() {
            Some(attachment) => {
                network::disconnect(&attachment, &narrator_for("veth-bridge", self.narrator))
            }
            None => Ok(()),
        }
    }

    /// `-d`: the first mini-run waits here for the id, or for the
    /// supervisor's failure, and never returns; the supervisor goes on in
    /// a session of its own, without the terminal's signals.
    fn detach(&mut self, call: impl Fn() -> String) -> Result<(), Error> {
        let (read, write) = pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::sys("pipe2", e))?;
        match steps::sys::fork().map_err(|e| Error::sys(call(), e))? {
            Fork::Child => {
                drop(read);
                nix::unistd::setsid().map_err(|e| Error::sys("setsid()", e))?;
                self.detached = Some(File::from(write));
                Ok(())
            }
            Fork::Parent { child } => {
                drop(write);
                let mut id = String::new();
                let _ = File::from(read).read_to_string(&mut id);
                if !id.is_empty() {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{id}");
                    let _ = out.flush();
                    std::process::exit(0);
                }
                // It failed, and said why on the terminal: its status is ours.
                let code = match waitpid(child, None) {
                    Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => code,
                    _ => i32::from(steps::exit::SETUP),
                };
                std::process::exit(code);
            }
        }
    }

    /// The command runs, or the child says why it could not.
    fn started(&mut self, dir: &Path) -> Result<(), Error> {
        let child = self.child.expect("cloned");
        // The child either reports why it could not run the command, or
        // execs, which closes its end of the pipe.
        self.master = match self.console.take() {
            Some(socket) => {
                tty::receive(&socket).map_err(|e| Error::sys("recvmsg(console socket)", e))?
            }
            None => None,
        };
        if let Some(error) = steps::process::read_report(self.report.take()) {
            let _ = waitpid(child, None);
            self.child = None;
            return Err(error);
        }
        let started = crate::record::Started {
            pid: child.as_raw(),
            started: crate::record::now(),
            namespaces: crate::record::namespaces_of(child.as_raw()),
            address: self.address.clone(),
        };
        crate::record::write(dir, crate::record::STARTED, &started)?;
        if let Some(mut waiting) = self.detached.take() {
            let id = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            waiting
                .write_all(id.as_bytes())
                .map_err(|e| Error::io("write(id pipe)", &e))?;
            drop(waiting);
            // Nobody reads the terminal's pipes for the supervisor now: a
            // test's, or a shell's $(…), would wait for them to close.
            if let Ok(null) = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
            {
                let _ = nix::unistd::dup2_stdin(&null);
                let _ = nix::unistd::dup2_stdout(&null);
                let _ = nix::unistd::dup2_stderr(&null);
            }
        }
        Ok(())
    }

    fn wait(&mut self) -> Result<(), Error> {
        let child = self.child.expect("cloned");
        let master = self.master.take();
        let narrator = self.narrator;
        let on_signal = |signal: Signal| {
            narrator.note(&format!("passing {} on to the container", signal.as_str()))
        };
        let exit = match master {
            Some(master) => tty::relay(master, child, on_signal),
            // The child has a session of its own (NewSession): the
            // terminal's Ctrl-C reaches mini-run alone, to be passed on.
            None => self.supervision.wait_detached(child, on_signal),
        }
        .map_err(|e| Error::sys("waitpid(child)", e))?;
        self.child = None;
        self.sync = None;
        narrator.note(&format!("the container {exit}"));
        self.exit = Some(exit);
        Ok(())
    }

    fn remove_cgroup(&mut self) -> Result<(), Error> {
        let Some((name, held)) = self.cgroup.take() else {
            return Ok(());
        };
        drop(held);
        remove_cgroup(
            self.fs.expect("the plan has a cgroup"),
            &name,
            self.narrator,
        )
    }

    fn remove_state(&mut self) {
        let Some((dir, _lock)) = self.state.take() else {
            return;
        };
        remove_state_dir(&dir);
    }

    /// `--init`: this process stays as pid 1, the init, and never returns;
    /// its child goes on with the plan, to exec the command.
    fn start_init(&mut self, call: impl Fn() -> String) -> Result<(), Error> {
        let signals = init::Signals::block_all().map_err(|e| Error::sys("signalfd", e))?;
        match steps::sys::fork().map_err(|e| Error::sys(call(), e))? {
            Fork::Parent { child } => {
                // The command reports its own failure to exec; the init's
                // copies of the pipes would keep mini-run waiting.
                self.sync = None;
                self.report = None;
                init::serve(child, signals)
            }
            Fork::Child => Ok(()),
        }
    }

    /// Replaces this process with the command; returns only the error.
    fn exec(&mut self, argv: &[String], env: &[String]) -> Error {
        if let Err(e) = self.supervision.release_in_child() {
            return Error::sys("sigprocmask", e);
        }
        exec_command(argv, env)
    }

    /// `UNDERHOOD_FAULT=kill@N`: mini-run ends by SIGKILL, as `kill -9`
    /// would end it. The child cannot signal mini-run, which is outside
    /// its PID namespace: it says on stderr that mini-run is to be killed
    /// now, for the test to do it, and waits for that on the sync pipe.
    fn kill_mini_run(&mut self, number: usize) {
        if self.here != Side::Child {
            let _ = kill(nix::unistd::getpid(), Signal::SIGKILL);
            return;
        }
        let _ = std::io::stderr().write_all(
            format!(
                "mini-run: {}: kill mini-run now (after step {number})\n",
                steps::fault::VARIABLE
            )
            .as_bytes(),
        );
        let mut byte = [0u8; 1];
        if let Some(sync) = self.sync.as_mut() {
            while matches!(sync.read(&mut byte), Ok(n) if n > 0) {}
        }
        std::process::exit(i32::from(steps::exit::SETUP));
    }

    /// Undoes what was made and gives back the error. In the child, the
    /// error goes to the parent instead, which undoes.
    fn fail(&mut self, error: Error) -> Error {
        if self.here == Side::Child {
            steps::process::report_and_exit(self.report.take(), &error);
        }
        if let Some(child) = self.child.take() {
            let _ = kill(child, Signal::SIGKILL);
            let _ = waitpid(child, None);
        }
        self.sync = None;
        let _ = self.disconnect();
        let _ = self.remove_cgroup();
        self.remove_state();
        // A volume this run made is taken back while it is still empty:
        // the command never ran, or wrote nothing there.
        for in_use in self.volumes.drain(..) {
            drop(in_use.lock);
            if in_use.made {
                volume::take_back(&in_use.dir);
            }
        }
        self.narrator
            .note("undid what was made; nothing is left behind");
        error
    }
}

/// The steps of a process on its way into a container that need nothing
/// but the process itself: its ids, session, capabilities and directory.
/// `run`'s child makes them, and so does each `exec`'s.
/// `called` is the step as its plan shows it (`child: chdir("/srv")`),
/// for the errors.
pub(crate) fn process_step(op: &Op, called: &str) -> Result<(), Error> {
    let call = || called.to_string();
    let sys = |e: Errno| Error::sys(called, e);
    match op {
        Op::BecomeRoot { groups } => {
            if *groups {
                nix::unistd::setgroups(&[]).map_err(sys)?;
            }
            let root_gid = Gid::from_raw(0);
            let root_uid = Uid::from_raw(0);
            nix::unistd::setresgid(root_gid, root_gid, root_gid).map_err(sys)?;
            nix::unistd::setresuid(root_uid, root_uid, root_uid).map_err(sys)?;
        }
        Op::NewSession => {
            nix::unistd::setsid().map_err(sys)?;
        }
        Op::DropCapabilities(drop) => {
            drop_capabilities(drop).map_err(|e| Error::setup(format!("{}: {e}", call())))?
        }
        Op::SetUser { uid, gid } => {
            nix::unistd::setgroups(&[]).map_err(sys)?;
            nix::unistd::setgid(Gid::from_raw(*gid)).map_err(sys)?;
            nix::unistd::setuid(Uid::from_raw(*uid)).map_err(sys)?;
        }
        Op::NoNewPrivileges => nix::sys::prctl::set_no_new_privs().map_err(sys)?,
        Op::Chdir(dir) => {
            // Docker makes a missing working directory.
            let _ = std::fs::create_dir_all(dir);
            nix::unistd::chdir(dir.as_path()).map_err(|e| {
                Error::sys(call(), e).hint("-w names a directory inside the container")
            })?;
            // As runc does: a directory reached through a descriptor
            // opened outside would leave the cwd outside the root,
            // which getcwd(2) reports as unreachable.
            let inside = nix::unistd::getcwd().is_ok_and(|cwd| cwd.starts_with("/"));
            if !inside {
                return Err(Error::setup(format!(
                    "{}: the working directory is outside the container",
                    call()
                ))
                .hint("-w names a directory inside the container"));
            }
        }
        Op::CloseFds => steps::sys::close_on_exec_from(3).map_err(sys)?,
        other => unreachable!("{} is not a process step", other.call()),
    }
    Ok(())
}

/// Removes a container's state directory, and the directories above it
/// once they are empty.
pub fn remove_state_dir(dir: &Path) {
    if std::fs::remove_dir_all(dir).is_err() {
        // Rootless, root's power to read any directory is gone: overlayfs
        // makes work/work with mode 000, which its owner may not list
        // until it gives itself the right again.
        let _ = let_owner_in(dir);
        let _ = std::fs::remove_dir_all(dir);
    }
    let links = overlay_stack::plan::links_dir(&dir.join("rootfs"));
    if links.exists() {
        let _ = std::fs::remove_dir_all(&links);
        let _ = std::fs::remove_dir(links.parent().unwrap_or(&links));
    }
    let containers = state_dir();
    if std::fs::remove_dir(&containers).is_ok() {
        let _ = std::fs::remove_dir(containers.parent().unwrap_or(&containers));
    }
}

/// `chown -R uid:gid dir`, symlinks themselves rather than what they
/// point to.
fn give(dir: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
    if std::fs::symlink_metadata(dir)?.is_dir() {
        for entry in std::fs::read_dir(dir)? {
            give(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Gives the owner read, write and search on every directory under `dir`.
fn let_owner_in(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Ok(());
    }
    let mode = meta.permissions().mode() | 0o700;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))?;
    for entry in std::fs::read_dir(dir)? {
        let _ = let_owner_in(&entry?.path());
    }
    Ok(())
}

/// Detaches every mount of this mount namespace but `/`, `root`, what is
/// beneath `root` and the directories above it, the deepest first.
fn detach_all_but(root: &Path) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| PathBuf::from(steps::mountinfo::unescape(point)))
        .filter(|point| {
            point != Path::new("/") && !point.starts_with(root) && !root.starts_with(point)
        })
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    for point in points {
        // One above may have taken it already: EINVAL then.
        let _ = umount2(&point, MntFlags::MNT_DETACH);
    }
}

/// Whether this mount namespace's root is the kernel's initial ramfs,
/// which `pivot_root(2)` cannot leave: `/` is a `rootfs` mount there.
fn root_is_initramfs() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split_whitespace().nth(4) == Some("/"))
        .any(|l| l.contains(" - rootfs "))
}

/// Replaces this process with `argv[0]`, found in `env`'s `PATH`;
/// returns only the error, with Docker's exit codes.
pub(crate) fn exec_command(argv: &[String], env: &[String]) -> Error {
    let path_var = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(crate::container::DEFAULT_PATH);
    let program = match find_program(&argv[0], path_var) {
        Ok(program) => program,
        Err(errno) => return exec_error(&argv[0], errno, path_var),
    };
    let cstrings = |list: &[String]| {
        list.iter()
            .map(|s| CString::new(s.as_bytes()))
            .collect::<Result<Vec<_>, _>>()
    };
    let (Ok(args), Ok(vars), Ok(path)) = (
        cstrings(argv),
        cstrings(env),
        CString::new(program.as_os_str().as_encoded_bytes()),
    ) else {
        return Error::usage("an argument or variable contains a NUL byte");
    };
    // mini-run ignores SIGPIPE (see main); the command must not.
    steps::sys::restore_sigpipe();
    let errno = nix::unistd::execve(&path, &args, &vars).unwrap_err();
    exec_error(&argv[0], errno, path_var)
}

/// Keeps Docker's capabilities and drops the rest: from the bounding set
/// (so no exec can gain them back), and from the sets the process holds.
pub(crate) fn drop_capabilities(drop: &[Capability]) -> Result<(), caps::errors::CapsError> {
    for cap in drop {
        caps::drop(None, CapSet::Bounding, *cap)?;
    }
    caps::clear(None, CapSet::Ambient)?;
    caps::clear(None, CapSet::Inheritable)?;
    let keep: CapsHashSet = security::DEFAULT_CAPABILITIES.into_iter().collect();
    let effective: CapsHashSet = caps::read(None, CapSet::Effective)?
        .intersection(&keep)
        .copied()
        .collect();
    caps::set(None, CapSet::Effective, &effective)?;
    caps::set(None, CapSet::Permitted, &effective)?;
    Ok(())
}

/// The program `name` names, searched in the container's `$PATH` as a
/// shell would.
fn find_program(name: &str, path_var: &str) -> Result<PathBuf, Errno> {
    if name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    let mut found = Errno::ENOENT;
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(name);
        match std::fs::metadata(&candidate) {
            Ok(meta) if meta.is_file() => {
                match nix::unistd::access(&candidate, AccessFlags::X_OK) {
                    Ok(()) => return Ok(candidate),
                    Err(e) => found = e,
                }
            }
            _ => {}
        }
    }
    Err(found)
}

/// Docker's exit codes: 127 when the command is not found, 126 when it
/// cannot be run.
fn exec_error(program: &str, errno: Errno, path_var: &str) -> Error {
    let in_path = if program.contains('/') {
        String::new()
    } else {
        format!(" in the container's $PATH ({path_var})")
    };
    match errno {
        Errno::ENOENT => Error::with_code(
            format!(
                "exec \"{program}\": not found{in_path}; check the name, and that the image has it"
            ),
            steps::exit::NOT_FOUND,
        ),
        _ => Error::with_code(
            format!(
                "exec \"{program}\": {}; the file must be a program or a script with #!, with execute permission",
                steps::error::describe(errno)
            ),
            steps::exit::NOT_EXECUTABLE,
        ),
    }
}

fn mount_error(call: String, errno: Errno, fstype: &str) -> Error {
    let error = Error::sys(call, errno);
    match (errno, fstype) {
        (Errno::EPERM, "sysfs") => error.hint(
            "sysfs can be mounted only in a network namespace of one's own, or as root on the host's",
        ),
        (Errno::ENODEV, _) => error.hint(format!("this kernel has no {fstype} filesystem")),
        _ => error,
    }
}

/// Ends whatever is left in a container's cgroup and removes it, by
/// cg-limit's plan.
pub(crate) fn remove_cgroup(
    fs: &dyn CgroupFs,
    name: &cg_limit::Name,
    narrator: &Narrator,
) -> Result<(), Error> {
    let plan = cg_limit::plan::remove_plan(fs, name);
    let cgroup = fs.layout().cgroup(name);
    cg_limit::run::run(&plan, &narrator_for("cg-limit", narrator), fs, &cgroup)?;
    Ok(())
}

/// Where the container in `dir` was connected, if it was.
pub fn network_record(dir: &Path) -> Option<Attachment> {
    std::fs::read_to_string(dir.join(NETWORK_RECORD))
        .ok()
        .and_then(|text| Attachment::parse(&text))
}

/// Takes back the volumes the run of the container in `dir` made, while
/// they are still empty.
pub fn take_back_volumes(dir: &Path) {
    for name in std::fs::read_to_string(dir.join(VOLUMES_RECORD))
        .unwrap_or_default()
        .lines()
        .filter(|n| volume::check_name(n).is_ok())
    {
        volume::take_back(&volume::dir(name));
    }
}

/// `mini-run cleanup`: gives back what containers whose mini-run is gone
/// still hold — killed with SIGKILL, which no program can clean up after.
/// Their containers died with them (the death signal); what stays is on
/// the host: a cgroup, an address and ports, the state directory. The
/// state goes too when the container ran with `--rm` or never started;
/// otherwise it is kept, as exited, for `ps -a` and `rm`. A running
/// mini-run holds a lock on its state directory, so its container is left
/// be. Returns one line per container, saying what was done.
pub fn cleanup(fs: Option<&dyn CgroupFs>, narrator: &Narrator) -> Result<Vec<String>, Error> {
    let mut said = Vec::new();
    let containers = state_dir();
    let Ok(entries) = std::fs::read_dir(&containers) else {
        return Ok(said);
    };
    let _parent = File::open(&containers)
        .ok()
        .and_then(|f| Flock::lock(f, FlockArg::LockExclusive).ok());
    for entry in entries.flatten() {
        let dir = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(short) = name.get(..12) else {
            continue;
        };
        let Ok(file) = File::open(&dir) else { continue };
        let Ok(_lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
            said.push(format!("kept {short}: its mini-run is running"));
            continue;
        };
        if dir.join(crate::record::EXITED).exists() {
            // Ended as it should: it holds nothing but its state.
            continue;
        }
        if let crate::lifecycle::Reclaimed::Elsewhere(why) =
            crate::lifecycle::reclaim(&dir, fs, narrator)?
        {
            said.push(format!("kept {short}: {why}"));
            continue;
        }
        let config: Option<crate::record::Config> =
            crate::record::read(&dir, crate::record::CONFIG);
        let ran = dir.join(crate::record::STARTED).exists();
        match config {
            Some(config) if ran && !config.remove => {
                // Its death signal, when its mini-run died.
                let record = crate::record::Exited::of(Exit::Signal(Signal::SIGKILL));
                crate::record::write(&dir, crate::record::EXITED, &record)?;
                said.push(format!(
                    "gave back what {short} held; kept it, killed with its mini-run (mini-run rm {short} removes it)"
                ));
            }
            _ => {
                remove_state_dir(&dir);
                said.push(format!("removed {short}"));
            }
        }
    }
    Ok(said)
}

/// Closes a copy of a locked file's descriptor, leaving the lock (which
/// belongs to the open file) to whoever holds the other descriptors.
fn close_without_unlocking(lock: Flock<File>) {
    use std::os::fd::AsRawFd;
    let fd = lock.as_raw_fd();
    std::mem::forget(lock);
    let _ = nix::unistd::close(fd);
}
