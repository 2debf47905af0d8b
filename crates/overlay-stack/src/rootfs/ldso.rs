//! Which shared libraries a program needs, found the way `ldd` finds them.
//!
//! `ldd` is not a separate resolver: it is a shell script that runs the
//! program's own dynamic loader with `LD_TRACE_LOADED_OBJECTS=1` set. In
//! that mode the loader resolves every library exactly as for a real run —
//! `DT_RPATH`, `LD_LIBRARY_PATH`, `/etc/ld.so.cache`, the default
//! directories — prints where it found each, and exits before the program
//! runs. `ld.so --list PROGRAM` is the loader's own spelling of the same
//! mode, and what is used here. See ldd(1) and ld.so(8):
//! <https://man7.org/linux/man-pages/man1/ldd.1.html>,
//! <https://man7.org/linux/man-pages/man8/ld.so.8.html>.
//!
//! Like `ldd`, this is for programs you trust: a loader other than the
//! system's could do anything when asked to list.
//!
//! The output has one line per object:
//!
//! ```text
//!     linux-vdso.so.1 (0x00007ffc6f9e4000)
//!     libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2ccde5d000)
//!     /lib64/ld-linux-x86-64.so.2 (0x00007f2cce0a6000)
//!     libmissing.so.1 => not found
//! ```
//!
//! The vDSO has no file — the kernel maps it into every process — and the
//! line with only a path is the loader itself.

use std::path::{Path, PathBuf};
use std::process::Command;

use steps::Error;

use super::io_error;

/// What the loader reported for one program.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Every file the program needs, the loader included, in the order
    /// listed.
    pub found: Vec<PathBuf>,
    /// Libraries the loader could not find, by name.
    pub missing: Vec<String>,
}

/// Runs `LOADER --list PROGRAM` and parses what it prints.
pub fn list(loader: &Path, program: &Path) -> Result<Listing, Error> {
    let call = format!("{} --list {}", loader.display(), program.display());
    let output = Command::new(loader)
        .arg("--list")
        .arg(program)
        // Inside the rootfs these will not be set, so they must not steer
        // the search here either.
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("LD_PRELOAD")
        .output()
        .map_err(|e| io_error(format!("execve(\"{}\")", loader.display()), e))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let listing = parse(&text);
    if !output.status.success() && listing.found.is_empty() && listing.missing.is_empty() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(Error::setup(format!(
            "{call} failed ({}): {}",
            output.status,
            stderr.trim()
        )));
    }
    if !listing.missing.is_empty() {
        return Err(Error::setup(format!(
            "{call}: the loader cannot find {}",
            listing.missing.join(", ")
        ))
        .hint(format!(
            "{} does not run on this host either; leave it out",
            program.display()
        )));
    }
    Ok(listing)
}

/// Parses the loader's `--list` output.
pub fn parse(text: &str) -> Listing {
    let mut listing = Listing::default();
    for line in text.lines().map(str::trim) {
        let (name, rest) = match line.split_once(" => ") {
            Some((name, rest)) => (Some(name.trim()), rest.trim()),
            None => (None, line),
        };
        if rest.starts_with("not found") {
            listing.missing.push(name.unwrap_or(rest).to_string());
            continue;
        }
        // Drop the load address, ` (0x…)`.
        let path = match rest.rfind(" (0x") {
            Some(at) => rest[..at].trim(),
            None if rest.starts_with("(0x") => "",
            None => rest,
        };
        // `linux-vdso.so.1 (0x…)`: no file. An old glibc printed
        // `linux-vdso.so.1 =>  (0x…)` for it; `statically linked` has no
        // path either.
        if path.starts_with('/') {
            let path = PathBuf::from(path);
            if !listing.found.contains(&path) {
                listing.found.push(path);
            }
        }
    }
    listing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_listing_gives_libraries_and_loader_but_no_vdso() {
        let text = "\tlinux-vdso.so.1 (0x00007ffc6f9e4000)\n\
                    \tlibselinux.so.1 => /lib/x86_64-linux-gnu/libselinux.so.1 (0x00007f2cce03f000)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2ccde5d000)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f2cce0a6000)\n";
        assert_eq!(
            parse(text),
            Listing {
                found: vec![
                    "/lib/x86_64-linux-gnu/libselinux.so.1".into(),
                    "/lib/x86_64-linux-gnu/libc.so.6".into(),
                    "/lib64/ld-linux-x86-64.so.2".into(),
                ],
                missing: vec![],
            }
        );
    }

    #[test]
    fn missing_libraries_are_named() {
        let text = "\tlibfoo.so.1 => not found\n\tlibc.so.6 => /lib/libc.so.6 (0x1000)\n";
        let listing = parse(text);
        assert_eq!(listing.missing, ["libfoo.so.1"]);
        assert_eq!(listing.found, [PathBuf::from("/lib/libc.so.6")]);
    }

    #[test]
    fn old_vdso_lines_musl_and_static_programs() {
        // glibc before 2.13 showed the vDSO with an empty path.
        assert_eq!(
            parse("\tlinux-vdso.so.1 =>  (0x00007fff)\n"),
            Listing::default()
        );
        // musl's loader is also its libc.
        let musl = "\t/lib/ld-musl-x86_64.so.1 (0x7f00)\n\
                    \tlibc.musl-x86_64.so.1 => /lib/ld-musl-x86_64.so.1 (0x7f00)\n";
        assert_eq!(
            parse(musl).found,
            [PathBuf::from("/lib/ld-musl-x86_64.so.1")]
        );
        assert_eq!(parse("\tstatically linked\n"), Listing::default());
        // A path without an address.
        assert_eq!(
            parse("\tlibz.so.1 => /usr/lib/libz.so.1\n").found,
            [PathBuf::from("/usr/lib/libz.so.1")]
        );
    }

    #[test]
    fn the_hosts_ls_needs_libc_through_its_loader() {
        let ls = Path::new("/bin/ls");
        let super::super::elf::Executable::Dynamic { interpreter } =
            super::super::elf::read(ls).unwrap()
        else {
            eprintln!("skipped: /bin/ls is not dynamically linked here");
            return;
        };
        let listing = list(&interpreter, ls).unwrap();
        assert!(
            listing.found.iter().any(|p| p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libc"))),
            "{listing:?}"
        );
        assert!(listing.found.contains(&interpreter), "{listing:?}");
    }
}
