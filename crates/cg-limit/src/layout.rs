//! # Where the cgroups are
//!
//! cgroup **v2** has one hierarchy, mounted at `/sys/fs/cgroup`, with every
//! controller in it. cgroup **v1** has a hierarchy per controller (or per
//! few co-mounted controllers, like `cpu,cpuacct`), each a tree of its own
//! under `/sys/fs/cgroup/<controller>`. A *hybrid* machine mounts the v1
//! controllers and an empty v2 hierarchy at `/sys/fs/cgroup/unified`; its
//! controllers live in v1, so cg-limit uses v1 there.
//!
//! Which one a machine has is told once, by the filesystem magic number of
//! `/sys/fs/cgroup` (`statfs(2)`): `CGROUP2_SUPER_MAGIC` for v2, a tmpfs of
//! v1 mounts otherwise. Where each v1 controller is mounted is read from
//! `/proc/self/mountinfo`, and where the caller sits in each hierarchy from
//! `/proc/self/cgroup`. Both are parameters of [`Layout::v1`], so unit tests
//! describe a machine as text.
//!
//! The toolkit creates cgroups only beneath a parent named [`PARENT`], and
//! removes only what is beneath it.

use std::path::{Path, PathBuf};

use steps::Error;

/// The name of the toolkit's parent cgroup.
pub const PARENT: &str = "underhood";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::V1 => "cgroup v1",
            Self::V2 => "cgroup v2",
        })
    }
}

/// The controllers cg-limit uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Controller {
    Memory,
    Cpu,
    /// v1 only: CPU time is accounted by a controller of its own there.
    CpuAcct,
    Pids,
    /// `io` in v2, `blkio` in v1.
    Io,
}

/// In the order cg-limit creates and reports them. Memory comes first: its
/// directory is the one a run locks.
pub const CONTROLLERS: [Controller; 5] = [
    Controller::Memory,
    Controller::Cpu,
    Controller::CpuAcct,
    Controller::Pids,
    Controller::Io,
];

impl Controller {
    /// The controller's name in `cgroup.controllers` (v2); CPU time
    /// accounting has none, it is part of the core there.
    pub fn v2_name(self) -> Option<&'static str> {
        match self {
            Self::Memory => Some("memory"),
            Self::Cpu => Some("cpu"),
            Self::CpuAcct => None,
            Self::Pids => Some("pids"),
            Self::Io => Some("io"),
        }
    }

    /// The controller's name in a v1 mount's options and `/proc/self/cgroup`.
    pub fn v1_name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Cpu => "cpu",
            Self::CpuAcct => "cpuacct",
            Self::Pids => "pids",
            Self::Io => "blkio",
        }
    }

    /// The name a learner would use for it on this version.
    pub fn name(self, version: Version) -> &'static str {
        match version {
            Version::V2 => self.v2_name().unwrap_or("cpu"),
            Version::V1 => self.v1_name(),
        }
    }
}

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// How cgroups are mounted under `/sys/fs/cgroup`, told by the filesystem
/// magic of the mount points (`statfs(2)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mounted {
    /// One unified hierarchy: what current distributions use.
    V2,
    /// v1 controllers, plus an (often empty) v2 at `/sys/fs/cgroup/unified`.
    Hybrid,
    /// v1 controllers only.
    V1,
    Missing,
}

impl Mounted {
    pub fn detect() -> Self {
        #[allow(clippy::unnecessary_cast)]
        let magic = |path: &str| {
            nix::sys::statfs::statfs(path)
                .ok()
                .map(|s| s.filesystem_type().0 as i64)
        };
        match magic("/sys/fs/cgroup") {
            Some(CGROUP2_SUPER_MAGIC) => Self::V2,
            Some(TMPFS_MAGIC) if magic("/sys/fs/cgroup/unified") == Some(CGROUP2_SUPER_MAGIC) => {
                Self::Hybrid
            }
            Some(TMPFS_MAGIC) => Self::V1,
            _ => Self::Missing,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::V2 => "v2 (unified hierarchy at /sys/fs/cgroup)",
            Self::Hybrid => "hybrid (v1 controllers, v2 at /sys/fs/cgroup/unified)",
            Self::V1 => "v1 (one hierarchy per controller)",
            Self::Missing => "not mounted",
        }
    }
}

/// One v1 hierarchy: where it is mounted, which controllers it has, and the
/// directory of the caller's own cgroup in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Hierarchy {
    pub mount: PathBuf,
    pub controllers: Vec<Controller>,
    pub home: PathBuf,
}

/// The cgroup filesystem of this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// The one hierarchy's mount point.
    V2 { mount: PathBuf },
    /// The hierarchies of the controllers cg-limit uses.
    V1 { hierarchies: Vec<V1Hierarchy> },
}

impl Layout {
    /// Detects the layout of `/sys/fs/cgroup`; a hybrid machine is used as
    /// v1, where its controllers are.
    pub fn detect() -> Result<Self, Error> {
        match Mounted::detect() {
            Mounted::V2 => Ok(Self::V2 {
                mount: PathBuf::from("/sys/fs/cgroup"),
            }),
            Mounted::V1 | Mounted::Hybrid => {
                let read = |path: &str| {
                    std::fs::read_to_string(path)
                        .map_err(|e| Error::setup(format!("read {path}: {e}")))
                };
                Self::v1(&read("/proc/self/mountinfo")?, &read("/proc/self/cgroup")?)
            }
            Mounted::Missing => Err(Error::setup(
                "/sys/fs/cgroup is neither a cgroup2 mount nor a tmpfs of v1 hierarchies; hint: is /sys mounted? then mount -t cgroup2 none /sys/fs/cgroup",
            )),
        }
    }

    /// A v1 layout from the text of `/proc/self/mountinfo` and
    /// `/proc/self/cgroup`. Toolkit cgroups go beneath the caller's own
    /// cgroup in each hierarchy, so that limits the caller lives under still
    /// apply — unless the caller is itself in a toolkit cgroup: then beside
    /// it, under the same parent, as on v2.
    pub fn v1(mountinfo: &str, proc_self_cgroup: &str) -> Result<Self, Error> {
        let mut hierarchies: Vec<V1Hierarchy> = Vec::new();
        for line in mountinfo.lines() {
            let Some((root, mount, controllers)) = v1_mount(line) else {
                continue;
            };
            if controllers
                .iter()
                .any(|c| hierarchies.iter().any(|h| h.controllers.contains(c)))
            {
                continue; // mounted twice: the first mount is the one used
            }
            let own = caller_path(proc_self_cgroup, controllers[0].v1_name());
            let own = own.strip_prefix(root.as_str()).unwrap_or(&own);
            let own = format!("/{}", own.trim_start_matches('/'));
            let own = outside_the_toolkit(&own);
            let home = mount.join(own.trim_start_matches('/'));
            hierarchies.push(V1Hierarchy {
                mount,
                controllers,
                home,
            });
        }
        hierarchies.sort_by_key(|h| h.controllers.iter().min().copied());
        if !hierarchies
            .iter()
            .any(|h| h.controllers.contains(&Controller::Memory))
        {
            return Err(Error::setup(
                "no cgroup v1 memory hierarchy is mounted; hint: mount the v1 controllers (mount -t cgroup -o memory cgroup /sys/fs/cgroup/memory) or boot with cgroup v2",
            ));
        }
        Ok(Self::V1 { hierarchies })
    }

    pub fn version(&self) -> Version {
        match self {
            Self::V2 { .. } => Version::V2,
            Self::V1 { .. } => Version::V1,
        }
    }

    /// The mount point of the hierarchy that has `controller`.
    pub fn mount_of(&self, controller: Controller) -> Option<&Path> {
        match self {
            Self::V2 { mount } => Some(mount),
            Self::V1 { hierarchies } => hierarchies
                .iter()
                .find(|h| h.controllers.contains(&controller))
                .map(|h| h.mount.as_path()),
        }
    }

    /// The toolkit's parent directory in each hierarchy, with the
    /// controllers that hierarchy has: at the top of the v2 hierarchy —
    /// a v2 cgroup that has processes cannot hand controllers to children
    /// (the "no internal processes" rule), and the caller's cgroup has the
    /// caller in it.
    pub fn parents(&self) -> Vec<(Vec<Controller>, PathBuf)> {
        match self {
            Self::V2 { mount } => vec![(
                CONTROLLERS
                    .into_iter()
                    .filter(|c| *c != Controller::CpuAcct)
                    .collect(),
                mount.join(PARENT),
            )],
            Self::V1 { hierarchies } => hierarchies
                .iter()
                .map(|h| (h.controllers.clone(), h.home.join(PARENT)))
                .collect(),
        }
    }

    /// The cgroup called `name` under the toolkit's parent(s).
    pub fn cgroup(&self, name: &Name) -> Cgroup {
        let dirs = self
            .parents()
            .into_iter()
            .flat_map(|(controllers, parent)| {
                let dir = parent.join(name.as_str());
                controllers.into_iter().map(move |c| (c, dir.clone()))
            })
            .collect();
        Cgroup {
            name: name.clone(),
            dirs,
        }
    }

    /// Every toolkit cgroup that exists now, parents before children.
    pub fn existing(&self) -> Vec<Name> {
        let mut names: Vec<Name> = Vec::new();
        for (_, parent) in self.toolkit_parents() {
            let mut found = Vec::new();
            walk(&parent, "", &mut found);
            for name in found {
                if !names.iter().any(|n| n.as_str() == name) {
                    names.push(Name(name));
                }
            }
        }
        names.sort();
        names
    }

    /// The toolkit's parent directories that exist. On v1 they may sit
    /// beneath other callers' cgroups too, so each hierarchy is searched.
    pub fn toolkit_parents(&self) -> Vec<(Vec<Controller>, PathBuf)> {
        match self {
            Self::V2 { .. } => self
                .parents()
                .into_iter()
                .filter(|(_, p)| p.is_dir())
                .collect(),
            Self::V1 { hierarchies } => {
                let mut found = Vec::new();
                for h in hierarchies {
                    let mut parents = Vec::new();
                    find_parents(&h.mount, 0, &mut parents);
                    found.extend(parents.into_iter().map(|p| (h.controllers.clone(), p)));
                }
                found
            }
        }
    }
}

/// `(root, mount point, controllers)` of a v1 mount line of mountinfo whose
/// controllers include one cg-limit uses.
fn v1_mount(line: &str) -> Option<(String, PathBuf, Vec<Controller>)> {
    let (left, right) = line.split_once(" - ")?;
    let left: Vec<&str> = left.split(' ').collect();
    let right: Vec<&str> = right.split(' ').collect();
    if right.first() != Some(&"cgroup") {
        return None;
    }
    let options = right.get(2)?;
    let controllers: Vec<Controller> = CONTROLLERS
        .into_iter()
        .filter(|c| options.split(',').any(|o| o == c.v1_name()))
        .collect();
    if controllers.is_empty() {
        return None;
    }
    Some((
        steps::mountinfo::unescape(left.get(3)?),
        PathBuf::from(steps::mountinfo::unescape(left.get(4)?)),
        controllers,
    ))
}

/// The caller's cgroup in the v1 hierarchy that has `controller`.
fn caller_path(proc_self_cgroup: &str, controller: &str) -> String {
    proc_self_cgroup
        .lines()
        .find_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, names, path) = (parts.next()?, parts.next()?, parts.next()?);
            names
                .split(',')
                .any(|n| n == controller)
                .then(|| path.to_string())
        })
        .unwrap_or_else(|| "/".into())
}

/// `/a/underhood/x/y` → `/a`: a caller inside a toolkit cgroup makes new
/// ones beside its own, not nested in it.
fn outside_the_toolkit(path: &str) -> &str {
    match path.find(&format!("/{PARENT}/")) {
        Some(pos) => &path[..pos],
        None => path.strip_suffix(&format!("/{PARENT}")).unwrap_or(path),
    }
}

/// Finds directories named [`PARENT`] under `dir`, not looking inside them.
fn find_parents(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) {
    if depth > 12 {
        return;
    }
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if entry.file_name() == PARENT {
            found.push(entry.path());
        } else {
            find_parents(&entry.path(), depth + 1, found);
        }
    }
}

/// The cgroups directly below `dir`: its subdirectories, by name.
pub fn child_cgroups(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs
}

/// Collects the cgroups under a toolkit parent as names like `a` and `a/b`.
fn walk(dir: &Path, prefix: &str, found: &mut Vec<String>) {
    for child in child_cgroups(dir) {
        let leaf = child.file_name().unwrap_or_default().to_string_lossy();
        let name = format!("{prefix}{leaf}");
        found.push(name.clone());
        walk(&child, &format!("{name}/"), found);
    }
}

/// A toolkit cgroup's name: a path of one or more components below the
/// toolkit's parent, each safe as a directory name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(String);

impl Name {
    /// Checks a name the user gave.
    pub fn parse(text: &str) -> Result<Self, String> {
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.len() <= 64
                && !c.starts_with(['.', '-'])
                && c.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
        };
        let components: Vec<&str> = text.split('/').collect();
        if components.len() <= 4 && components.iter().all(|c| component_ok(c)) {
            Ok(Self(text.to_string()))
        } else {
            Err(format!(
                "'{}' is not a cgroup name: use letters, digits, '-', '_' and '.' (at most 64, not starting with '.' or '-'), and '/' to nest up to 4 deep",
                text.escape_debug()
            ))
        }
    }

    /// A name for a run that was given none: the program and cg-limit's pid.
    pub fn for_program(program: &str, pid: u32) -> Self {
        let base = Path::new(program)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let clean: String = base
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
            .take(32)
            .collect();
        let clean = clean.trim_start_matches('-');
        let stem = if clean.is_empty() { "run" } else { clean };
        Self(format!("{stem}-{pid}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `a/b/c` → `[a, a/b]`: the names of the cgroups above it.
    pub fn ancestors(&self) -> Vec<Name> {
        let parts: Vec<&str> = self.0.split('/').collect();
        (1..parts.len())
            .map(|n| Name(parts[..n].join("/")))
            .collect()
    }

    /// Whether this cgroup is somewhere below `other`: `a/b/c` is below
    /// `a` and `a/b`, not below `a/b/c` nor `a/bc`.
    pub fn is_below(&self, other: &Name) -> bool {
        self.0
            .strip_prefix(other.as_str())
            .is_some_and(|rest| rest.starts_with('/'))
    }

    /// How deep below the toolkit's parent: `a` is 1, `a/b` is 2.
    pub fn depth(&self) -> usize {
        self.0.split('/').count()
    }

    /// The last component.
    pub fn leaf(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One toolkit cgroup: its directory for each controller (in v2 they are
/// all the same directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    pub name: Name,
    pub dirs: Vec<(Controller, PathBuf)>,
}

impl Cgroup {
    /// The directory that holds `controller`'s files, if it is mounted.
    pub fn dir(&self, controller: Controller) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(c, _)| *c == controller)
            .map(|(_, d)| d.as_path())
    }

    /// Each directory once, memory's first.
    pub fn distinct_dirs(&self) -> Vec<&Path> {
        let mut dirs: Vec<&Path> = Vec::new();
        for (_, dir) in &self.dirs {
            if !dirs.contains(&dir.as_path()) {
                dirs.push(dir);
            }
        }
        dirs
    }

    /// The directory a run holds its lock on: memory's.
    pub fn lock_dir(&self) -> &Path {
        self.dir(Controller::Memory)
            .unwrap_or_else(|| self.dirs[0].1.as_path())
    }

    /// Whether any of its directories exists.
    pub fn exists(&self) -> bool {
        self.distinct_dirs().iter().any(|d| d.is_dir())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_below_its_ancestors_only() {
        let name = |s: &str| Name::parse(s).unwrap();
        assert!(name("a/b/c").is_below(&name("a")));
        assert!(name("a/b/c").is_below(&name("a/b")));
        assert!(!name("a/b/c").is_below(&name("a/b/c")));
        assert!(!name("a/bc").is_below(&name("a/b")));
        assert!(!name("a").is_below(&name("a/b")));
    }

    const MOUNTINFO: &str = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate
34 30 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:15 - cgroup cgroup rw,cpu,cpuacct
35 30 0:31 / /sys/fs/cgroup/memory rw,nosuid shared:16 - cgroup cgroup rw,memory
36 30 0:32 / /sys/fs/cgroup/pids rw,nosuid shared:17 - cgroup cgroup rw,pids
37 30 0:33 / /sys/fs/cgroup/freezer rw,nosuid shared:18 - cgroup cgroup rw,freezer
";
    const CGROUP: &str = "\
6:freezer:/
5:pids:/user.slice/user-1000.slice
4:memory:/session/7
3:cpu,cpuacct:/
0::/user.slice
";

    #[test]
    fn v1_cgroups_go_beneath_the_callers_own() {
        let layout = Layout::v1(MOUNTINFO, CGROUP).unwrap();
        let cgroup = layout.cgroup(&Name::parse("demo").unwrap());
        let dir = |c| cgroup.dir(c).map(Path::to_path_buf);
        assert_eq!(
            dir(Controller::Memory),
            Some("/sys/fs/cgroup/memory/session/7/underhood/demo".into())
        );
        assert_eq!(
            dir(Controller::Pids),
            Some("/sys/fs/cgroup/pids/user.slice/user-1000.slice/underhood/demo".into())
        );
        assert_eq!(dir(Controller::Io), None, "blkio is not mounted here");
        // cpu and cpuacct are mounted together: one directory for both.
        assert_eq!(dir(Controller::Cpu), dir(Controller::CpuAcct));
        assert_eq!(cgroup.distinct_dirs().len(), 3);
        assert_eq!(
            cgroup.lock_dir(),
            Path::new("/sys/fs/cgroup/memory/session/7/underhood/demo")
        );
    }

    #[test]
    fn a_caller_inside_the_toolkit_makes_cgroups_beside_its_own() {
        let cgroup = CGROUP.replace("4:memory:/session/7", "4:memory:/session/7/underhood/outer");
        let layout = Layout::v1(MOUNTINFO, &cgroup).unwrap();
        let demo = layout.cgroup(&Name::parse("demo").unwrap());
        assert_eq!(
            demo.dir(Controller::Memory),
            Some(Path::new("/sys/fs/cgroup/memory/session/7/underhood/demo"))
        );
    }

    #[test]
    fn v1_without_memory_is_refused() {
        let mountinfo: String = MOUNTINFO
            .lines()
            .filter(|l| !l.contains("memory"))
            .map(|l| format!("{l}\n"))
            .collect();
        let error = Layout::v1(&mountinfo, CGROUP).unwrap_err();
        assert!(
            error.to_string().contains("no cgroup v1 memory hierarchy"),
            "{error}"
        );
    }

    #[test]
    fn v2_cgroups_are_one_directory() {
        let layout = Layout::V2 {
            mount: "/sys/fs/cgroup".into(),
        };
        let cgroup = layout.cgroup(&Name::parse("a/b").unwrap());
        assert_eq!(
            cgroup.distinct_dirs(),
            [Path::new("/sys/fs/cgroup/underhood/a/b")]
        );
        assert_eq!(cgroup.dir(Controller::CpuAcct), None);
    }

    #[test]
    fn names_cannot_escape_the_parent() {
        let long = "x".repeat(65);
        for bad in [
            "",
            "../x",
            "a//b",
            "/a",
            "a/",
            ".hidden",
            "-x",
            "a\nb",
            "é",
            &long,
            "a/b/c/d/e",
        ] {
            assert!(Name::parse(bad).is_err(), "{bad:?}");
        }
        for good in ["web-1.test_2", "outer/inner"] {
            assert!(Name::parse(good).is_ok(), "{good:?}");
        }
        assert_eq!(
            Name::parse("a/b/c").unwrap().ancestors(),
            [Name("a".into()), Name("a/b".into())]
        );
    }

    #[test]
    fn default_names_come_from_the_program() {
        assert_eq!(Name::for_program("/usr/bin/hog", 42).as_str(), "hog-42");
        assert_eq!(Name::for_program("--", 42).as_str(), "run-42");
        assert!(Name::parse(Name::for_program("a b/ü", 7).as_str()).is_ok());
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(steps::mountinfo::unescape("/a\\040b"), "/a b");
        assert_eq!(steps::mountinfo::unescape("/plain"), "/plain");
    }
}
