//! The command line, util-linux `unshare`'s flags first, then ours. Parsing
//! only validates: [`Cli::request`] turns the flags into a [`Request`] with
//! every implication applied, and nothing here touches the kernel.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;
use nix::sys::signal::Signal;
use nix::unistd::{Gid, Group, Uid, User};
use steps::{Error, StepArgs};

use crate::idmap::{IdRange, parse_range};
use crate::namespace::Namespace;

const AFTER_HELP: &str = "\
Beyond util-linux unshare:
  --hostname NAME     set the hostname in the new UTS namespace (implies -u)
  --list [PID...]     show this process's namespaces beside those of PIDs
  --enter[=PID]       join namespaces instead of creating them, like nsenter:
                      the namespace flags pick which (all that differ when
                      none is given), --net=FILE etc. name a namespace file
  --explain, --dry-run, --color   narrate or only print the kernel calls

Where it differs from util-linux unshare:
  * its own failures exit 125, bad usage 2, a program that cannot be run 126
    or 127 (util-linux exits 1 for all of these); otherwise the exit code or
    terminating signal of the program is passed on, as util-linux does;
  * --map-users/--map-groups take OUTER,INNER,COUNT (util-linux 2.38) or
    INNER:OUTER:COUNT (2.39+); --map-auto, --map-subids, --owner, --keep-caps,
    --load-interp, --mount-binfmt and the environment flags are not
    implemented.

Exit status: the program's, or 128+N when it was killed by signal N and the
signal could not be passed on; 2 bad usage; 125 ns-unshare itself failed;
126 the program could not be executed; 127 the program was not found.";

/// Run a program with some namespaces unshared from the parent.
#[derive(Debug, Parser)]
#[command(
    name = "ns-unshare",
    version,
    about = "Run a program in new namespaces (util-linux unshare, with a narrator)",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Unshare the mount namespace; with =FILE, keep it alive at FILE
    #[arg(short = 'm', long, value_name = "FILE", num_args = 0..=1, require_equals = true)]
    pub mount: Option<Option<PathBuf>>,
    /// Unshare the UTS namespace (hostname and domain name)
    #[arg(short = 'u', long, value_name = "FILE", num_args = 0..=1, require_equals = true)]
    pub uts: Option<Option<PathBuf>>,
    /// Unshare the System V IPC namespace
    #[arg(short = 'i', long, value_name = "FILE", num_args = 0..=1, require_equals = true)]
    pub ipc: Option<Option<PathBuf>>,
    /// Unshare the network namespace
    #[arg(short = 'n', long, value_name = "FILE", num_args = 0..=1, require_equals = true)]
    pub net: Option<Option<PathBuf>>,
    /// Unshare the PID namespace (its first child becomes pid 1; see --fork)
    #[arg(short = 'p', long, value_name = "FILE", num_args = 0..=1, require_equals = true)]
    pub pid: Option<Option<PathBuf>>,
    /// Unshare the user namespace
    #[arg(short = 'U', long, value_name = "FILE", num_args = 0..=1, require_equals = true)]
    pub user: Option<Option<PathBuf>>,
    /// Unshare the cgroup namespace
    #[arg(short = 'C', long, value_name = "FILE", num_args = 0..=1, require_equals = true)]
    pub cgroup: Option<Option<PathBuf>>,
    /// Unshare the time namespace (children enter it, and on recent kernels the program at exec)
    #[arg(short = 'T', long, value_name = "FILE", num_args = 0..=1, require_equals = true)]
    pub time: Option<Option<PathBuf>>,

    /// Fork before running the program, which then runs as the child
    #[arg(short = 'f', long)]
    pub fork: bool,
    /// Map the current user and group to root (implies --user)
    #[arg(short = 'r', long)]
    pub map_root_user: bool,
    /// Map the current user and group to themselves (implies --user)
    #[arg(short = 'c', long)]
    pub map_current_user: bool,
    /// Map the current user to UID inside (implies --user)
    #[arg(long, value_name = "UID|NAME")]
    pub map_user: Option<String>,
    /// Map the current group to GID inside (implies --user, --setgroups=deny)
    #[arg(long, value_name = "GID|NAME")]
    pub map_group: Option<String>,
    /// Map a block of user ids (implies --user)
    #[arg(long, value_name = "OUTER,INNER,COUNT")]
    pub map_users: Option<String>,
    /// Map a block of group ids (implies --user)
    #[arg(long, value_name = "OUTER,INNER,COUNT")]
    pub map_groups: Option<String>,
    /// When ns-unshare dies, send SIGNAL (default SIGKILL) to the child (implies --fork)
    #[arg(long, value_name = "SIGNAL", num_args = 0..=1, require_equals = true)]
    pub kill_child: Option<Option<String>>,
    /// Pass SIGINT and SIGTERM on to the child (implies --fork)
    #[arg(long)]
    pub forward_signals: bool,
    /// Mount a new proc filesystem at DIR (default /proc) first (implies --mount)
    #[arg(long, value_name = "DIR", num_args = 0..=1, require_equals = true)]
    pub mount_proc: Option<Option<PathBuf>>,
    /// Mount propagation of / in the new mount namespace
    #[arg(long, value_enum, value_name = "MODE")]
    pub propagation: Option<Propagation>,
    /// Whether setgroups(2) is allowed in the user namespace
    #[arg(long, value_enum, value_name = "MODE")]
    pub setgroups: Option<Setgroups>,
    /// Change the root directory to DIR (chroot) before running the program
    #[arg(short = 'R', long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Change the working directory to DIR
    #[arg(short = 'w', long, value_name = "DIR")]
    pub wd: Option<PathBuf>,
    /// Set the user id in the new namespaces
    #[arg(short = 'S', long, value_name = "UID")]
    pub setuid: Option<u32>,
    /// Set the group id (and drop supplementary groups) in the new namespaces
    #[arg(short = 'G', long, value_name = "GID")]
    pub setgid: Option<u32>,
    /// Offset CLOCK_MONOTONIC by SECONDS in the new time namespace (needs -T)
    #[arg(long, value_name = "SECONDS", allow_hyphen_values = true)]
    pub monotonic: Option<i64>,
    /// Offset CLOCK_BOOTTIME by SECONDS in the new time namespace (needs -T)
    #[arg(long, value_name = "SECONDS", allow_hyphen_values = true)]
    pub boottime: Option<i64>,

    /// Set the hostname in the new UTS namespace (implies --uts)
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Show this process's namespaces beside those of each PID given
    #[arg(long, conflicts_with_all = ["enter", "fork", "mount_proc", "hostname", "root", "wd"])]
    pub list: bool,
    /// Join the namespaces of PID (or the files given with --net=FILE etc.)
    #[arg(long, value_name = "PID", num_args = 0..=1, require_equals = true)]
    pub enter: Option<Option<i32>>,

    #[command(flatten)]
    pub steps: StepArgs,

    /// The program and its arguments (default: $SHELL); with --list, PIDs
    #[arg(trailing_var_arg = true, value_name = "PROGRAM")]
    pub program: Vec<OsString>,
}

/// What `--propagation` sets on `/` in a new mount namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Propagation {
    Private,
    Shared,
    Slave,
    Unchanged,
}

/// What gets written to `/proc/self/setgroups`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Setgroups {
    Allow,
    Deny,
}

/// One namespace to create or join, and the file that keeps or names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceArg {
    pub namespace: Namespace,
    pub file: Option<PathBuf>,
}

/// The program to run at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    Command(Vec<OsString>),
    /// `$SHELL` (or `/bin/sh`), started as a login shell like util-linux does.
    Shell(PathBuf),
}

/// How the user namespace's id maps are written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdMaps {
    /// `inside` for the caller's own uid, written by the process itself.
    pub user: Option<u32>,
    pub group: Option<u32>,
    /// Blocks of ids, written by a helper that stays outside.
    pub users: Option<IdRange>,
    pub groups: Option<IdRange>,
}

impl IdMaps {
    pub fn needs_helper(&self) -> bool {
        self.users.is_some() || self.groups.is_some()
    }
}

/// What the flags ask for, with util-linux's implications applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Unshare(Unshare),
    List(Vec<i32>),
    Enter(Enter),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unshare {
    pub namespaces: Vec<NamespaceArg>,
    pub fork: bool,
    pub kill_child: Option<Signal>,
    pub forward_signals: bool,
    pub maps: IdMaps,
    /// The caller's effective ids: what the single-id maps map from.
    pub outer_uid: u32,
    pub outer_gid: u32,
    pub setgroups: Option<Setgroups>,
    pub propagation: Propagation,
    pub mount_proc: Option<PathBuf>,
    pub root: Option<PathBuf>,
    pub wd: Option<PathBuf>,
    pub setuid: Option<u32>,
    pub setgid: Option<u32>,
    pub monotonic: Option<i64>,
    pub boottime: Option<i64>,
    pub hostname: Option<String>,
    pub program: Program,
}

impl Unshare {
    pub fn has(&self, namespace: Namespace) -> bool {
        self.namespaces.iter().any(|n| n.namespace == namespace)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enter {
    pub target: Option<i32>,
    /// Empty means every namespace of the target that differs from ours.
    pub namespaces: Vec<NamespaceArg>,
    pub root: Option<PathBuf>,
    pub wd: Option<PathBuf>,
    pub program: Program,
}

impl Cli {
    fn namespace_args(&self) -> Vec<NamespaceArg> {
        let flags = [
            (Namespace::User, &self.user),
            (Namespace::Cgroup, &self.cgroup),
            (Namespace::Ipc, &self.ipc),
            (Namespace::Uts, &self.uts),
            (Namespace::Net, &self.net),
            (Namespace::Pid, &self.pid),
            (Namespace::Mount, &self.mount),
            (Namespace::Time, &self.time),
        ];
        flags
            .into_iter()
            .filter_map(|(namespace, arg)| {
                arg.as_ref().map(|file| NamespaceArg {
                    namespace,
                    file: file.clone(),
                })
            })
            .collect()
    }

    fn program(&self) -> Program {
        if self.program.is_empty() {
            let shell = std::env::var_os("SHELL")
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "/bin/sh".into());
            Program::Shell(shell.into())
        } else {
            Program::Command(self.program.clone())
        }
    }

    /// Checks the flags and applies their implications. Reads the user and
    /// group databases for names, nothing else.
    pub fn request(&self) -> Result<Request, Error> {
        if self.list {
            return self.list_request();
        }
        if let Some(target) = self.enter {
            return self.enter_request(target);
        }
        self.unshare_request().map(Request::Unshare)
    }

    fn list_request(&self) -> Result<Request, Error> {
        let pids = self
            .program
            .iter()
            .map(|arg| {
                let text = arg.to_string_lossy();
                text.parse::<i32>()
                    .ok()
                    .filter(|pid| *pid > 0)
                    .ok_or_else(|| {
                        Error::usage(format!(
                            "--list takes process ids, not '{text}'; try: ns-unshare --list $$"
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Request::List(pids))
    }

    fn enter_request(&self, target: Option<i32>) -> Result<Request, Error> {
        let namespaces = self.namespace_args();
        if let Some(pid) = target.filter(|pid| *pid <= 0) {
            return Err(Error::usage(format!(
                "--enter takes a process id, not {pid}"
            )));
        }
        if target.is_none()
            && (namespaces.is_empty() || namespaces.iter().any(|n| n.file.is_none()))
        {
            return Err(Error::usage(
                "--enter without a PID needs a namespace file for each namespace, e.g. --enter --net=/run/netns/demo",
            ));
        }
        let unsupported = self.fork
            || self.map_root_user
            || self.map_current_user
            || self.map_user.is_some()
            || self.map_group.is_some()
            || self.mount_proc.is_some()
            || self.hostname.is_some()
            || self.monotonic.is_some()
            || self.boottime.is_some();
        if unsupported {
            return Err(Error::usage(
                "--enter joins existing namespaces: it takes namespace flags, -R, -w and a program, not flags that set up new ones",
            ));
        }
        Ok(Request::Enter(Enter {
            target,
            namespaces,
            root: self.root.clone(),
            wd: self.wd.clone(),
            program: self.program(),
        }))
    }

    fn unshare_request(&self) -> Result<Unshare, Error> {
        let mut namespaces = self.namespace_args();
        let mut imply = |namespace: Namespace| {
            if !namespaces.iter().any(|n| n.namespace == namespace) {
                namespaces.push(NamespaceArg {
                    namespace,
                    file: None,
                });
            }
        };

        let outer_uid = Uid::effective().as_raw();
        let outer_gid = Gid::effective().as_raw();
        let mut maps = IdMaps::default();
        // As in util-linux, the last of -r, -c and --map-user wins; here they
        // are applied in a fixed order, which is the same unless a script
        // mixes them.
        if self.map_current_user {
            maps.user = Some(outer_uid);
            maps.group = Some(outer_gid);
        }
        if self.map_root_user {
            maps.user = Some(0);
            maps.group = Some(0);
        }
        if let Some(user) = &self.map_user {
            maps.user = Some(lookup_user(user)?);
        }
        if let Some(group) = &self.map_group {
            maps.group = Some(lookup_group(group)?);
        }
        if let Some(users) = &self.map_users {
            maps.users =
                Some(parse_range(users).map_err(|e| Error::usage(format!("--map-users: {e}")))?);
        }
        if let Some(groups) = &self.map_groups {
            maps.groups =
                Some(parse_range(groups).map_err(|e| Error::usage(format!("--map-groups: {e}")))?);
        }
        if maps != IdMaps::default() {
            imply(Namespace::User);
        }
        if self.mount_proc.is_some() {
            imply(Namespace::Mount);
        }
        if self.hostname.is_some() {
            imply(Namespace::Uts);
        }

        let has_time = namespaces.iter().any(|n| n.namespace == Namespace::Time);
        if (self.monotonic.is_some() || self.boottime.is_some()) && !has_time {
            return Err(Error::usage(
                "--monotonic and --boottime set clocks of a new time namespace: add -T (--time)",
            ));
        }
        if maps.group.is_some() && self.setgroups == Some(Setgroups::Allow) {
            return Err(Error::usage(
                "--setgroups=allow cannot go with --map-group or -r: an unprivileged gid_map needs setgroups denied",
            ));
        }
        if let Some(name) = &self.hostname {
            validate_hostname(name)?;
        }
        let kill_child = match &self.kill_child {
            None => None,
            Some(None) => Some(Signal::SIGKILL),
            Some(Some(name)) => Some(parse_signal(name)?),
        };

        namespaces.sort_by_key(|n| {
            crate::namespace::ORDERED
                .iter()
                .position(|o| *o == n.namespace)
        });
        Ok(Unshare {
            namespaces,
            fork: self.fork || kill_child.is_some() || self.forward_signals,
            kill_child,
            forward_signals: self.forward_signals,
            maps,
            outer_uid,
            outer_gid,
            setgroups: self.setgroups,
            propagation: self.propagation.unwrap_or(Propagation::Private),
            mount_proc: self
                .mount_proc
                .as_ref()
                .map(|dir| dir.clone().unwrap_or_else(|| "/proc".into())),
            root: self.root.clone(),
            wd: self.wd.clone(),
            setuid: self.setuid,
            setgid: self.setgid,
            monotonic: self.monotonic,
            boottime: self.boottime,
            hostname: self.hostname.clone(),
            program: self.program(),
        })
    }
}

fn lookup_user(text: &str) -> Result<u32, Error> {
    if let Ok(uid) = text.parse::<u32>() {
        return Ok(uid);
    }
    match User::from_name(text) {
        Ok(Some(user)) => Ok(user.uid.as_raw()),
        _ => Err(Error::usage(format!(
            "--map-user: no user '{text}'; give a uid or a name from /etc/passwd"
        ))),
    }
}

fn lookup_group(text: &str) -> Result<u32, Error> {
    if let Ok(gid) = text.parse::<u32>() {
        return Ok(gid);
    }
    match Group::from_name(text) {
        Ok(Some(group)) => Ok(group.gid.as_raw()),
        _ => Err(Error::usage(format!(
            "--map-group: no group '{text}'; give a gid or a name from /etc/group"
        ))),
    }
}

/// `KILL`, `SIGKILL`, `kill` or `9`.
pub fn parse_signal(text: &str) -> Result<Signal, Error> {
    steps::process::signal_named(text).ok_or_else(|| {
        Error::usage(match text.parse::<i32>() {
            Ok(number) => format!("--kill-child: no signal number {number}; try KILL or TERM"),
            Err(_) => format!("--kill-child: unknown signal '{text}'; try KILL or TERM"),
        })
    })
}

/// The kernel takes up to 64 bytes; we also refuse what would surprise a
/// shell prompt or `/etc/hosts`.
pub fn validate_hostname(name: &str) -> Result<(), Error> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if valid {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "--hostname '{}': use 1 to 64 letters, digits, '-' and '.', not starting with '-'",
            name.escape_debug()
        )))
    }
}
