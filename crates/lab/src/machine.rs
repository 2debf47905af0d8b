//! What this machine supports: the facts `lab doctor` reports, and which
//! lesson requirements they meet. Probing reads `/proc` and `/sys` and, for
//! user namespaces, tries one in a throwaway child process.

use std::path::Path;

use crate::lesson::Requirement;

/// How the cgroup filesystem is laid out under `/sys/fs/cgroup`: told the
/// way cg-limit tells it.
pub use cg_limit::layout::Mounted as CgroupLayout;

/// Whether unprivileged users may create user namespaces, and if not why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserNamespaces {
    Allowed,
    Denied(String),
}

/// The facts about this machine.
#[derive(Debug, Clone)]
pub struct Machine {
    pub kernel: String,
    pub kernel_version: (u32, u32),
    pub root: bool,
    pub cgroups: CgroupLayout,
    pub user_namespaces: UserNamespaces,
    pub time_namespaces: bool,
    pub overlayfs: bool,
    /// The temporary directory's filesystem keeps `user.*` attributes
    /// (tmpfs does from Linux 6.6).
    pub temp_user_xattrs: bool,
    pub nft: Option<String>,
    pub busybox: Option<String>,
    /// As root: whether `/var/cache`'s filesystem takes idmapped mounts,
    /// and if not why; `None` without root, which cannot tell.
    pub idmapped_mounts: Option<Result<(), String>>,
}

impl Machine {
    pub fn probe() -> Self {
        let kernel = steps::kernel::release();
        let kernel_version = steps::kernel::version(&kernel);
        Self {
            root: nix::unistd::Uid::effective().is_root(),
            cgroups: CgroupLayout::detect(),
            user_namespaces: probe_user_namespaces(),
            time_namespaces: Path::new("/proc/self/ns/time").exists(),
            overlayfs: overlayfs_available(&kernel),
            temp_user_xattrs: overlay_stack::whiteout::keeps_user_xattrs(&std::env::temp_dir()),
            nft: which("nft"),
            busybox: which("busybox"),
            idmapped_mounts: nix::unistd::Uid::effective()
                .is_root()
                .then(|| probe_idmapped_mounts(Path::new(IDMAP_PROBED))),
            kernel,
            kernel_version,
        }
    }

    /// Whether unprivileged overlay mounts work inside a user namespace:
    /// mainline Linux allows them from 5.11.
    pub fn unprivileged_overlay(&self) -> bool {
        self.overlayfs && self.kernel_version >= (5, 11)
    }

    /// Whether a lesson can mount an overlay without root in a scratch
    /// directory under the temporary directory: overlayfs keeps its marks
    /// in `user.*` attributes there.
    pub fn rootless_overlay(&self) -> Result<(), String> {
        if !self.unprivileged_overlay() {
            Err("needs OverlayFS in user namespaces: Linux 5.11 or later".into())
        } else if !self.temp_user_xattrs {
            Err(format!(
                "needs user.* extended attributes in {}, which this filesystem does not keep \
                 (tmpfs keeps them from Linux 6.6); set TMPDIR to a directory on ext4",
                std::env::temp_dir().display()
            ))
        } else {
            Ok(())
        }
    }

    /// `Ok` if the requirement is met, else the reason and how to meet it.
    pub fn check(&self, requirement: Requirement) -> Result<(), String> {
        let ok_if = |met: bool, why: &str| if met { Ok(()) } else { Err(why.to_string()) };
        match requirement {
            Requirement::Root => ok_if(self.root, "needs root: run it with sudo"),
            Requirement::UserNamespaces => match &self.user_namespaces {
                UserNamespaces::Allowed => Ok(()),
                UserNamespaces::Denied(why) => {
                    Err(format!("needs unprivileged user namespaces: {why}"))
                }
            },
            Requirement::TimeNamespaces => ok_if(
                self.time_namespaces,
                "needs time namespaces: Linux 5.6 or later",
            ),
            Requirement::CgroupV2 => ok_if(
                self.cgroups == CgroupLayout::V2,
                "needs a cgroup v2 host (this one is not); see the cgroups chapter",
            ),
            Requirement::Overlayfs => ok_if(self.overlayfs, "needs OverlayFS: modprobe overlay"),
            Requirement::Nft => ok_if(self.nft.is_some(), "needs nft: apt install nftables"),
            Requirement::Busybox => ok_if(
                self.busybox.is_some(),
                "needs busybox: apt install busybox-static",
            ),
            Requirement::RootlessOverlay => self.rootless_overlay(),
            Requirement::IdmappedMounts => match &self.idmapped_mounts {
                Some(result) => result.clone(),
                None => Err("needs root to make an idmapped mount".into()),
            },
        }
    }

    /// Every unmet requirement and missing tool of a lesson.
    pub fn unmet(&self, lesson: &crate::lesson::Lesson) -> Vec<String> {
        let mut unmet: Vec<String> = lesson
            .requires
            .iter()
            .filter_map(|r| self.check(*r).err())
            .collect();
        for tool in &lesson.tools {
            if which(tool).is_none() {
                unmet.push(format!("needs the program {tool} on $PATH"));
            }
        }
        if let Some(sandbox) = lesson.sandbox {
            for tool in sandbox.tools() {
                if which(tool).is_none() && !lesson.tools.iter().any(|t| t == tool) {
                    unmet.push(format!(
                        "needs the program {tool} on $PATH, to make the {sandbox} sandbox"
                    ));
                }
            }
        }
        unmet
    }
}

fn overlayfs_available(kernel: &str) -> bool {
    let listed = std::fs::read_to_string("/proc/filesystems")
        .map(|text| {
            text.lines()
                .any(|l| l.split_whitespace().last() == Some("overlay"))
        })
        .unwrap_or(false);
    listed || Path::new(&format!("/lib/modules/{kernel}/kernel/fs/overlayfs")).exists()
}

/// The full path of a program on `$PATH`.
pub fn which(program: &str) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            use std::os::unix::fs::PermissionsExt;
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .map(|p| p.display().to_string())
}

/// Where idmapped mounts are tried: the default rootfs's filesystem.
pub const IDMAP_PROBED: &str = "/var/cache";

/// Tries to make an idmapped mount of `dir` (or of the nearest directory
/// above it that exists, on the filesystem `dir` will be made on), with
/// the user namespace of a throwaway child: `mini-run run --userns` makes
/// them of its layers.
fn probe_idmapped_mounts(dir: &Path) -> Result<(), String> {
    use std::io::Read;
    let dir = dir
        .ancestors()
        .find(|d| d.is_dir())
        .unwrap_or(Path::new("/"));
    use std::os::fd::AsFd;
    use steps::sys::{Fork, fork};
    let probe_error = |e: nix::errno::Errno| format!("could not probe: {e}");
    // `go`: the parent is done; `ready`: the child has its namespace.
    let (go_read, go_write) = nix::unistd::pipe().map_err(probe_error)?;
    let (ready_read, ready_write) = nix::unistd::pipe().map_err(probe_error)?;
    let child = match fork().map_err(probe_error)? {
        Fork::Child => {
            drop(go_write);
            drop(ready_read);
            let _ = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER);
            drop(ready_write);
            let _ = std::fs::File::from(go_read).read(&mut [0u8; 1]);
            std::process::exit(0);
        }
        Fork::Parent { child } => child,
    };
    drop(go_read);
    drop(ready_write);
    let tried = (|| {
        // Closed by the child once it has unshared (or died).
        let _ = std::fs::File::from(ready_read).read(&mut [0u8; 1]);
        let path = format!("/proc/{child}/ns/user");
        for map in ["uid_map", "gid_map"] {
            std::fs::write(format!("/proc/{child}/{map}"), "0 1000000000 1")
                .map_err(|e| format!("could not probe: write {map}: {e}"))?;
        }
        let userns = std::fs::File::open(&path).map_err(|e| format!("could not probe: {e}"))?;
        let tree = steps::sys::open_tree_clone(dir)
            .map_err(|e| format!("could not probe: open_tree({}): {e}", dir.display()))?;
        steps::sys::idmap_mount(tree.as_fd(), userns.as_fd()).map_err(|e| {
            format!(
                "needs idmapped mounts of {} ({}), which its filesystem does not take \
                 (ext4, xfs and btrfs do; tmpfs from Linux 6.3)",
                dir.display(),
                e.desc()
            )
        })
    })();
    drop(go_write);
    let _ = nix::sys::wait::waitpid(child, None);
    tried
}

/// Tries to create a user namespace as an unprivileged user, in a child.
fn probe_user_namespaces() -> UserNamespaces {
    let max = std::fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap_or_default();
    if max.trim() == "0" {
        return UserNamespaces::Denied("/proc/sys/user/max_user_namespaces is 0".into());
    }
    let apparmor =
        std::fs::read_to_string("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
            .is_ok_and(|v| v.trim() == "1");
    let debian_knob = std::fs::read_to_string("/proc/sys/kernel/unprivileged_userns_clone")
        .is_ok_and(|v| v.trim() == "0");
    if debian_knob {
        return UserNamespaces::Denied("kernel.unprivileged_userns_clone is 0".into());
    }
    match try_user_namespace_as_nobody() {
        Ok(true) => UserNamespaces::Allowed,
        Ok(false) if apparmor => UserNamespaces::Denied(
            "AppArmor restricts them (kernel.apparmor_restrict_unprivileged_userns=1)".into(),
        ),
        Ok(false) => UserNamespaces::Denied(
            "unshare(CLONE_NEWUSER) was refused to an unprivileged user".into(),
        ),
        Err(errno) => UserNamespaces::Denied(format!("could not probe: {errno}")),
    }
}

fn try_user_namespace_as_nobody() -> Result<bool, nix::errno::Errno> {
    use nix::sys::wait::{WaitStatus, waitpid};
    use steps::sys::{Fork, fork};
    match fork()? {
        Fork::Child => {
            // As root, become nobody first: root may always create one.
            if nix::unistd::Uid::effective().is_root() {
                let nobody = nix::unistd::Gid::from_raw(65534);
                let ok = nix::unistd::setgroups(&[]).is_ok()
                    && nix::unistd::setgid(nobody).is_ok()
                    && nix::unistd::setuid(nix::unistd::Uid::from_raw(65534)).is_ok();
                if !ok {
                    std::process::exit(2);
                }
            }
            let created = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER).is_ok();
            std::process::exit(if created { 0 } else { 1 });
        }
        Fork::Parent { child } => Ok(matches!(waitpid(child, None)?, WaitStatus::Exited(_, 0))),
    }
}
