//! A rootfs from the host's own programs, when there is no static busybox.
//!
//! A dynamically linked program does not run on its own: `execve(2)` reads
//! the loader's path from the program's `PT_INTERP` header and starts the
//! loader, which opens the shared libraries the program was linked
//! against. To run in another root, a program needs all three at the paths
//! it will look for them: the program, its loader at the exact `PT_INTERP`
//! path, and each library where the loader will search. Copying each file
//! to the same path it has on the host satisfies all of them at once. The
//! loader searches its built-in directories when there is no
//! `/etc/ld.so.cache`, and those are where the host's libraries are.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use steps::Error;

use super::elf::{self, Executable};
use super::ldso;
use super::op::Role;

/// The shell: copied as `/bin/sh`, whatever it is on the host.
pub const SHELL: &str = "/bin/sh";

/// The programs copied besides the shell, whichever the host has: enough
/// to look around a container and see that it is one.
pub const PROGRAMS: &[&str] = &[
    "ls", "cat", "echo", "ps", "mount", "umount", "hostname", "id", "env", "sleep", "true",
    "false", "mkdir", "rmdir", "rm", "cp", "mv", "ln", "touch", "uname", "pwd", "kill", "head",
    "wc", "grep", "readlink",
];

/// Where the programs are looked for, in order; a program is copied to the
/// path it was found at. `/bin` first, so that on a merged-`/usr` host
/// (where `/bin` is a link to `usr/bin`) they land in `/bin` together.
pub const SEARCH: &[&str] = &["/bin", "/sbin", "/usr/bin", "/usr/sbin"];

/// One file to copy: from where on the host, to which path in the rootfs
/// (absolute, as the programs inside will see it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFile {
    pub host: PathBuf,
    pub inside: PathBuf,
    pub role: Role,
}

/// The shell the host has at `/bin/sh`, if it is a program (not a script).
pub fn shell() -> Option<PathBuf> {
    let path = PathBuf::from(SHELL);
    matches!(
        elf::read(&path),
        Ok(Executable::Static | Executable::Dynamic { .. })
    )
    .then_some(path)
}

/// Where a program is on the host: the first of [`SEARCH`] that has it as
/// an executable file.
pub fn find(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    SEARCH
        .iter()
        .map(|dir| Path::new(dir).join(program))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Every file to copy: the programs that exist, and what they need.
/// Runs each program's loader with `--list`; writes nothing.
pub fn collect() -> Result<Vec<HostFile>, Error> {
    let shell = shell().ok_or_else(|| {
        Error::setup(format!(
            "{SHELL} is missing or not a program: no shell to copy"
        ))
    })?;
    let mut programs = vec![(shell, PathBuf::from(SHELL), "sh".to_string())];
    for name in PROGRAMS {
        if let Some(path) = find(name) {
            programs.push((path.clone(), path, name.to_string()));
        }
    }
    let mut files = Vec::new();
    // Which programs need each library or loader, in the order first seen.
    let mut needs: BTreeMap<PathBuf, (usize, Vec<String>)> = BTreeMap::new();
    let mut loaders: Vec<PathBuf> = Vec::new();
    for (host, inside, name) in programs {
        match elf::read(&host)? {
            // A script would need its interpreter too: leave it out.
            Executable::NotElf => continue,
            Executable::Static => {}
            Executable::Dynamic { interpreter } => {
                if !loaders.contains(&interpreter) {
                    loaders.push(interpreter.clone());
                }
                let listing = ldso::list(&interpreter, &host)?;
                let mut wanted = listing.found;
                if !wanted.contains(&interpreter) {
                    wanted.push(interpreter);
                }
                for path in wanted {
                    let order = needs.len();
                    let entry = needs.entry(path).or_insert((order, Vec::new()));
                    if !entry.1.contains(&name) {
                        entry.1.push(name.clone());
                    }
                }
            }
        }
        files.push(HostFile {
            host,
            inside,
            role: Role::Program,
        });
    }
    let mut needed: Vec<(PathBuf, (usize, Vec<String>))> = needs.into_iter().collect();
    needed.sort_by_key(|(_, (order, _))| *order);
    for (path, (_, needed_by)) in needed {
        let role = if loaders.contains(&path) {
            Role::Loader { needed_by }
        } else {
            Role::Library { needed_by }
        };
        files.push(HostFile {
            host: path.clone(),
            inside: path,
            role,
        });
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_gives_a_shell_ls_their_libraries_and_a_loader() {
        let files = collect().unwrap();
        let inside: Vec<&Path> = files.iter().map(|f| f.inside.as_path()).collect();
        assert_eq!(inside[0], Path::new("/bin/sh"), "{inside:?}");
        assert!(
            files
                .iter()
                .any(|f| f.role == Role::Program && f.inside.ends_with("ls")),
            "{inside:?}"
        );
        if let Ok(Executable::Dynamic { interpreter }) = elf::read(Path::new("/bin/ls")) {
            let loader = files.iter().find(|f| f.inside == interpreter).unwrap();
            assert!(
                matches!(&loader.role, Role::Loader { needed_by } if needed_by.contains(&"ls".to_string()))
            );
            assert!(
                files.iter().any(|f| matches!(f.role, Role::Library { .. })
                    && f.inside.to_string_lossy().contains("libc")),
                "{inside:?}"
            );
        }
        // Every path is absolute and each appears once.
        let mut unique = inside.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), inside.len(), "{inside:?}");
        assert!(inside.iter().all(|p| p.is_absolute()));
    }
}
