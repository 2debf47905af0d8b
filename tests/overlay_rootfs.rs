//! `overlay-stack rootfs` against the real machine: a busybox rootfs and a
//! host-binary rootfs that a shell runs in (chroot, as root); building
//! again is "up to date"; a rootfs from another source is replaced; a
//! directory holding anything else is refused and left as it was;
//! `--dry-run` writes nothing; two builds of one directory at once both
//! succeed. Every build goes into a scratch directory, never the cache.

use std::path::Path;
use std::process::Output;

use support::{
    Failed, Requirement::*, Suite, cmd, describe, ensure, ensure_eq, run, run_for, scratch, stderr,
    stdout,
};

fn main() {
    support::bin("overlay-stack");
    let mut suite = Suite::new();
    suite.test_with_tools(
        "a_busybox_rootfs_runs_sh_ls_and_id_in_a_chroot",
        &[Root, Busybox],
        &["chroot"],
        busybox_chroot,
    );
    suite.test_with_tools(
        "a_host_binary_rootfs_runs_ls_in_a_chroot",
        &[Root],
        &["chroot"],
        host_chroot,
    );
    suite.test("building_again_is_up_to_date", &[Busybox], up_to_date);
    suite.test(
        "a_rootfs_from_another_source_is_replaced",
        &[Busybox],
        replaced,
    );
    suite.test(
        "a_rootfs_a_mounted_stack_uses_is_not_replaced",
        &[Root, Busybox, Overlayfs],
        in_use_not_replaced,
    );
    suite.test(
        "a_foreign_directory_is_refused_and_left_untouched",
        &[],
        foreign_refused,
    );
    suite.test("dry_run_writes_nothing", &[], dry_run);
    suite.test(
        "two_builds_of_one_directory_at_once_both_succeed",
        &[Busybox],
        concurrent,
    );
    suite.run()
}

/// `overlay-stack rootfs DIR ARGS…`, with a minute to copy and hash.
fn rootfs(dir: &Path, args: &[&str]) -> Result<Output, Failed> {
    run_for(cmd("overlay-stack").arg("rootfs").arg(dir).args(args), 60)
}

/// Builds and checks the one line that reports it.
fn build(dir: &Path, args: &[&str], kind: &str) -> Result<(), Failed> {
    let out = rootfs(dir, args)?;
    ensure(out.status.success(), describe(&out))?;
    let text = stdout(&out);
    let expected = format!("built a {kind} rootfs in {} (", dir.display());
    ensure(
        text.starts_with(&expected) && text.ends_with(" files)\n") && text.lines().count() == 1,
        format!("expected {expected:?}N files)\n{}", describe(&out)),
    )
}

/// The names in a directory, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn stamp(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("etc/underhood-release")).unwrap_or_default()
}

fn busybox_chroot() -> Result<(), Failed> {
    let tmp = scratch();
    let dir = tmp.path().join("rootfs");
    build(&dir, &[], "busybox")?;
    let out = run(std::process::Command::new("chroot").arg(&dir).args([
        "/bin/sh",
        "-c",
        "echo hi; ls /; id",
    ]))?;
    ensure(out.status.success(), describe(&out))?;
    ensure_eq(
        stdout(&out),
        "hi\nbin\ndev\netc\nhome\nproc\nroot\nrun\nsbin\nsys\ntmp\nusr\nvar\n\
         uid=0(root) gid=0(root)\n"
            .to_string(),
        "what the shell in the chroot printed",
    )?;
    let stamp = stamp(&dir);
    ensure(
        stamp.contains("SOURCE=\"busybox\"\n") && stamp.contains("SOURCE_VERSION=\"BusyBox v"),
        format!("the stamp:\n{stamp}"),
    )?;
    ensure_eq(
        names(tmp.path()),
        vec!["rootfs".to_string()],
        "the scratch dir",
    )
}

fn host_chroot() -> Result<(), Failed> {
    let tmp = scratch();
    let dir = tmp.path().join("rootfs");
    build(&dir, &["--from-host"], "host-binary")?;
    let out = run(std::process::Command::new("chroot")
        .arg(&dir)
        .args(["/bin/sh", "-c", "ls /bin"]))?;
    ensure(
        out.status.success() && stderr(&out).is_empty(),
        describe(&out),
    )?;
    let listed = stdout(&out);
    let listed: Vec<&str> = listed.lines().collect();
    for program in ["sh", "ls", "cat"] {
        ensure(
            listed.contains(&program),
            format!("no {program} in the chroot's /bin: {listed:?}"),
        )?;
    }
    ensure(
        stamp(&dir).contains("SOURCE=\"host binaries\"\n"),
        format!("the stamp:\n{}", stamp(&dir)),
    )
}

fn up_to_date() -> Result<(), Failed> {
    let tmp = scratch();
    let dir = tmp.path().join("rootfs");
    build(&dir, &[], "busybox")?;
    let before = std::fs::metadata(dir.join("etc/underhood-release"))?.modified()?;
    let out = rootfs(&dir, &[])?;
    ensure(out.status.success(), describe(&out))?;
    ensure_eq(
        stdout(&out),
        format!("{} is up to date\n", dir.display()),
        "the second build's report",
    )?;
    let after = std::fs::metadata(dir.join("etc/underhood-release"))?.modified()?;
    ensure_eq(after, before, "the stamp's mtime")
}

fn replaced() -> Result<(), Failed> {
    let tmp = scratch();
    let dir = tmp.path().join("rootfs");
    build(&dir, &[], "busybox")?;
    build(&dir, &["--from-host"], "host-binary")?;
    ensure(
        !dir.join("bin/busybox").exists() && dir.join("bin/sh").is_file(),
        format!(
            "the busybox tree is still there: {:?}",
            names(&dir.join("bin"))
        ),
    )?;
    ensure(
        stamp(&dir).contains("SOURCE=\"host binaries\"\n"),
        format!("the stamp:\n{}", stamp(&dir)),
    )?;
    ensure_eq(
        names(tmp.path()),
        vec!["rootfs".to_string()],
        "the scratch dir",
    )
}

fn in_use_not_replaced() -> Result<(), Failed> {
    let dir = scratch();
    let tree = dir.path().join("rootfs");
    let merged = dir.path().join("merged");
    build(&tree, &[], "busybox")?;
    let before = stamp(&tree);
    let out = run(cmd("overlay-stack")
        .arg("mount")
        .arg("--lower")
        .arg(&tree)
        .arg("--upper")
        .arg(dir.path().join("upper"))
        .arg("--work")
        .arg(dir.path().join("work"))
        .arg(&merged))?;
    ensure(out.status.success(), describe(&out))?;
    let _mounted = support::MountGuard(merged.clone());
    let out = rootfs(&tree, &["--from-host"])?;
    ensure(
        out.status.code() == Some(2)
            && stderr(&out).contains("uses it as a layer")
            && stderr(&out).contains(&merged.display().to_string()),
        describe(&out),
    )?;
    ensure_eq(stamp(&tree), before, "the stamp of the rootfs in use")?;
    ensure(
        merged.join("bin/busybox").exists(),
        "the stack lost its files",
    )
}

fn foreign_refused() -> Result<(), Failed> {
    let tmp = scratch();
    let dir = tmp.path().join("photos");
    std::fs::create_dir(&dir)?;
    std::fs::write(dir.join("cat.jpg"), "meow")?;
    let out = rootfs(&dir, &[])?;
    ensure_eq(out.status.code(), Some(2), "the exit status")?;
    let err = stderr(&out);
    let expected = format!("overlay-stack: {} is not empty", dir.display());
    ensure(
        err.starts_with(&expected) && err.lines().count() == 1,
        format!(
            "expected one line starting {expected:?}\n{}",
            describe(&out)
        ),
    )?;
    ensure(
        err.contains("give a new or empty directory"),
        describe(&out),
    )?;
    ensure_eq(names(&dir), vec!["cat.jpg".to_string()], "the directory")?;
    ensure_eq(
        std::fs::read_to_string(dir.join("cat.jpg"))?,
        "meow".into(),
        "the file",
    )?;
    ensure_eq(
        names(tmp.path()),
        vec!["photos".to_string()],
        "the scratch dir",
    )
}

fn dry_run() -> Result<(), Failed> {
    let tmp = scratch();
    let dir = tmp.path().join("rootfs");
    let out = rootfs(&dir, &["--dry-run"])?;
    ensure(out.status.success(), describe(&out))?;
    let text = stdout(&out);
    ensure(
        text.starts_with("overlay-stack would make ")
            && text.contains("nothing was done (--dry-run)")
            && text.contains(&format!("\", \"{}\")", dir.display())),
        describe(&out),
    )?;
    ensure_eq(
        names(tmp.path()),
        Vec::new(),
        "the scratch dir after --dry-run",
    )
}

fn concurrent() -> Result<(), Failed> {
    let tmp = scratch();
    let dir = tmp.path().join("rootfs");
    let outputs: Vec<Result<Output, Failed>> = std::thread::scope(|scope| {
        let builds: Vec<_> = (0..2).map(|_| scope.spawn(|| rootfs(&dir, &[]))).collect();
        builds
            .into_iter()
            .map(|b| b.join().expect("a build thread"))
            .collect()
    });
    for out in outputs {
        let out = out?;
        ensure(out.status.success(), describe(&out))?;
    }
    ensure(
        stamp(&dir).contains("SOURCE=\"busybox\"\n"),
        format!("the stamp:\n{}", stamp(&dir)),
    )?;
    ensure_eq(
        names(tmp.path()),
        vec!["rootfs".to_string()],
        "the scratch dir (no staging dir left)",
    )
}
