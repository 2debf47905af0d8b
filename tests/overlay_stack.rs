//! overlay-stack against the real kernel: stacks mounted for real, and what
//! a learner sees in each layer with `ls` and `stat` — copy-up into the
//! upper layer, whiteouts, opaque directories, two stacks sharing one
//! base, committed layers, stacks too long for one page of options — the
//! classic mistakes refused before anything is made, a table of bad input
//! for every command, and every making command stopped after each step.
//!
//! Every stack lives in the test's scratch directory and is unmounted by a
//! guard, also when the test fails.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use support::tally::{self, Tally};
use support::{
    Failed, MountGuard, Requirement::*, Suite, cmd, describe, ensure, ensure_eq, run, scratch,
    stderr, stdout,
};

fn main() {
    let mut suite = Suite::new();
    let shared = scratch();
    let tools = UserTools {
        overlay_stack: support::copy_for_any_user("overlay-stack", shared.path()),
        ns_unshare: support::copy_for_any_user("ns-unshare", shared.path()),
    };
    suite.keep(shared);
    let as_user = tools.clone();
    suite.test(
        "a_user_mounts_a_stack_in_a_user_namespace_of_their_own",
        &[Root, UserNamespaces, RootlessOverlay],
        move || rootless(&as_user),
    );
    // Its twin, where the scratch directories' filesystem keeps no user.*
    // attributes (tmpfs before Linux 6.6): the mount must be refused.
    let mut unmet = support::unmet(&[Root, Overlayfs, UserNamespaces]);
    if support::machine().temp_user_xattrs {
        unmet.push("the scratch filesystem keeps user.* attributes".into());
    }
    let as_user = tools.clone();
    suite.test_unless(
        "a_rootless_upper_without_user_xattrs_is_refused",
        (!unmet.is_empty()).then(|| unmet.join("; ")),
        move || rootless_without_xattrs(&as_user),
    );
    let user_copy = tools.overlay_stack.clone();
    suite.test(
        "a_user_outside_a_user_namespace_is_told_how",
        &[Root, Overlayfs],
        move || rootless_refused(&tools),
    );
    // Root, to run some of the table as nobody.
    suite.test(
        "bad_input_gets_one_line_a_documented_code_and_changes_nothing",
        &[Root],
        move || bad_input(&user_copy),
    );
    suite.test(
        "a_changed_file_is_copied_up_and_the_lower_is_untouched",
        &[Root, Overlayfs],
        copy_up,
    );
    suite.test(
        "a_deleted_lower_file_becomes_a_whiteout",
        &[Root, Overlayfs],
        whiteout,
    );
    suite.test(
        "a_directory_made_again_is_opaque",
        &[Root, Overlayfs],
        opaque,
    );
    suite.test(
        "two_stacks_over_one_lower_see_their_own_changes_only",
        &[Root, Overlayfs],
        two_stacks,
    );
    suite.test(
        "a_committed_layer_carries_the_changes_into_a_new_stack",
        &[Root, Overlayfs],
        commit,
    );
    suite.test(
        "a_stack_too_long_for_one_page_mounts_through_short_links",
        &[Root, Overlayfs],
        many_layers,
    );
    suite.test(
        "history_lists_a_mounted_stacks_layers",
        &[Root, Overlayfs],
        history,
    );
    suite.test(
        "classic_mistakes_are_refused_before_anything_is_made",
        &[Root, Overlayfs],
        mistakes,
    );
    suite.test(
        "a_refused_mount_leaves_no_directory_behind",
        &[Root, Overlayfs],
        refused_mount,
    );
    suite.test(
        "an_upper_in_use_by_another_stack_is_refused",
        &[Root, Overlayfs],
        upper_in_use,
    );
    suite.test(
        "umount_refuses_what_is_not_an_overlay",
        &[Root],
        umount_not_overlay,
    );
    suite.test("dry_run_makes_nothing", &[], dry_run);
    suite.test(
        "a_mount_stopped_after_any_step_leaves_nothing",
        &[Root, Overlayfs],
        faults_in_mount,
    );
    suite.test(
        "a_commit_stopped_after_any_step_leaves_nothing",
        &[],
        faults_in_commit,
    );
    suite.test(
        "a_rootfs_build_stopped_after_any_step_leaves_nothing",
        &[Busybox],
        faults_in_rootfs,
    );
    suite.test(
        "an_import_stopped_after_any_step_leaves_nothing",
        &[],
        faults_in_import,
    );
    suite.run();
}

fn rootless_without_xattrs(tools: &UserTools) -> Result<(), Failed> {
    let f = nobodys_fixture()?;
    let script = format!(
        "cd {dir} && {ovl} mount --lower lower --upper upper --work work merged",
        dir = f.dir.path().display(),
        ovl = tools.overlay_stack.display()
    );
    let output = run(as_nobody(&tools.ns_unshare)
        .args(["-r", "--mount", "--", "sh", "-c"])
        .arg(&script))?;
    let err = stderr(&output);
    ensure(
        output.status.code() == Some(2)
            && err.lines().count() == 1
            && err.contains("keeps no user.* extended attributes"),
        describe(&output),
    )?;
    ensure(!f.path("upper").exists(), "the upper layer was made")
}

/// Copies of the binaries that an ordinary user can run.
#[derive(Clone)]
struct UserTools {
    overlay_stack: PathBuf,
    ns_unshare: PathBuf,
}

/// The uid and gid the rootless tests run as: nobody's.
const NOBODY: u32 = 65534;

/// A scratch directory that belongs to nobody, with a lower layer.
fn nobodys_fixture() -> Result<Fixture, Failed> {
    fn give(path: &Path) -> Result<(), Failed> {
        nix::unistd::chown(
            path,
            Some(nix::unistd::Uid::from_raw(NOBODY)),
            Some(nix::unistd::Gid::from_raw(NOBODY)),
        )?;
        if path.is_dir() {
            for entry in std::fs::read_dir(path)? {
                give(&entry?.path())?;
            }
        }
        Ok(())
    }
    let f = Fixture::new()?;
    give(f.dir.path())?;
    Ok(f)
}

fn as_nobody(program: &Path) -> Command {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(program);
    command
        .env("LC_ALL", "C")
        .env("PATH", "/usr/bin:/bin")
        .uid(NOBODY)
        .gid(NOBODY);
    command
}

fn rootless(tools: &UserTools) -> Result<(), Failed> {
    let f = nobodys_fixture()?;
    let script = format!(
        "cd {dir} && {ovl} mount --lower lower --upper upper --work work merged && \
         rm merged/etc/hostname && rm -r merged/app/cache && mkdir merged/app/cache && \
         {ovl} diff merged && grep -o userxattr /proc/self/mountinfo",
        dir = f.dir.path().display(),
        ovl = tools.overlay_stack.display()
    );
    let output = run(as_nobody(&tools.ns_unshare)
        .args(["-r", "--mount", "--", "sh", "-c"])
        .arg(&script))?;
    ensure(output.status.success(), describe(&output))?;
    ensure_eq(
        stdout(&output),
        "C /app\nC /app/cache\nC /etc\nD /etc/hostname\nuserxattr\n".into(),
        "diff inside the user namespace",
    )?;
    // The mount went with the namespace; the layers stay, in user.* attributes.
    ensure(
        mounted_under(f.dir.path()).is_empty(),
        "the mount outlived its namespace",
    )?;
    let marker = std::fs::symlink_metadata(f.path("upper/etc/hostname"))?;
    ensure(
        marker.file_type().is_char_device() && marker.rdev() == 0,
        "no whiteout in the upper layer",
    )?;
    ensure_eq(
        xattr_get(&f.path("upper/app/cache"), "user.overlay.opaque")?.as_deref(),
        Some("y"),
        "user.overlay.opaque",
    )
}

fn rootless_refused(tools: &UserTools) -> Result<(), Failed> {
    let f = nobodys_fixture()?;
    let output = run(as_nobody(&tools.overlay_stack)
        .arg("mount")
        .arg("--lower")
        .arg(f.path("lower"))
        .arg("--upper")
        .arg(f.path("upper"))
        .arg("--work")
        .arg(f.path("work"))
        .arg(f.path("merged")))?;
    let err = stderr(&output);
    ensure(
        output.status.code() == Some(125)
            && err.lines().count() == 1
            && err.contains("(EPERM)")
            && err.contains("ns-unshare -r --mount"),
        describe(&output),
    )?;
    for made in ["upper", "work", "merged"] {
        ensure(!f.path(made).exists(), format!("{made} was left behind"))?;
    }
    Ok(())
}

/// A stack in a scratch directory: `lower` with some files, and the paths
/// of `upper`, `work` and `merged`, not yet made.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Result<Self, Failed> {
        let dir = scratch();
        let lower = dir.path().join("lower");
        std::fs::create_dir_all(lower.join("etc"))?;
        std::fs::create_dir_all(lower.join("app/cache"))?;
        std::fs::write(lower.join("etc/motd"), "from the lower layer\n")?;
        std::fs::write(lower.join("etc/hostname"), "base\n")?;
        std::fs::write(lower.join("app/cache/a"), "a\n")?;
        std::fs::write(lower.join("app/cache/b"), "b\n")?;
        Ok(Self { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Mounts `lowers` (names in the scratch dir, topmost first) with the
    /// upper `NAME-upper` at `NAME`.
    fn mount(&self, name: &str, lowers: &[&str]) -> Result<MountGuard, Failed> {
        let lower: Vec<String> = lowers
            .iter()
            .map(|l| self.path(l).display().to_string())
            .collect();
        let output = run(cmd("overlay-stack")
            .arg("mount")
            .arg("--lower")
            .arg(lower.join(":"))
            .arg("--upper")
            .arg(self.path(&format!("{name}-upper")))
            .arg("--work")
            .arg(self.path(&format!("{name}-work")))
            .arg(self.path(name)))?;
        ensure(output.status.success(), describe(&output))?;
        Ok(MountGuard(self.path(name)))
    }
}

fn read(path: &Path) -> Result<String, Failed> {
    std::fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()).into())
}

fn diff(target: &Path, long: bool) -> Result<String, Failed> {
    let mut command = cmd("overlay-stack");
    command.arg("diff").arg(target);
    if long {
        command.arg("--long");
    }
    let output = run(&mut command)?;
    ensure(output.status.success(), describe(&output))?;
    Ok(stdout(&output))
}

fn copy_up() -> Result<(), Failed> {
    let f = Fixture::new()?;
    let lower_before = std::fs::metadata(f.path("lower/etc/motd"))?;
    let _mount = f.mount("merged", &["lower"])?;
    // Nothing is in the upper layer until something is written.
    ensure_eq(
        std::fs::read_dir(f.path("merged-upper"))?.count(),
        0,
        "entries in a fresh upper layer",
    )?;
    std::fs::write(f.path("merged/etc/motd"), "changed in the container\n")?;
    ensure_eq(
        read(&f.path("merged-upper/etc/motd"))?,
        "changed in the container\n".into(),
        "the copied-up file in upper/",
    )?;
    ensure_eq(
        read(&f.path("lower/etc/motd"))?,
        "from the lower layer\n".into(),
        "the lower layer's file",
    )?;
    let lower_after = std::fs::metadata(f.path("lower/etc/motd"))?;
    ensure_eq(
        (lower_after.ino(), lower_after.mtime()),
        (lower_before.ino(), lower_before.mtime()),
        "the lower file's inode and mtime",
    )?;
    // A file the container only read stays in the lower layer alone.
    read(&f.path("merged/etc/hostname"))?;
    ensure(
        !f.path("merged-upper/etc/hostname").exists(),
        "a file only read was copied up",
    )?;
    std::fs::write(f.path("merged/new-file"), "new\n")?;
    ensure_eq(
        diff(&f.path("merged"), false)?,
        "C /etc\nC /etc/motd\nA /new-file\n".into(),
        "overlay-stack diff",
    )
}

fn whiteout() -> Result<(), Failed> {
    let f = Fixture::new()?;
    let _mount = f.mount("merged", &["lower"])?;
    std::fs::remove_file(f.path("merged/etc/hostname"))?;
    ensure(
        !f.path("merged/etc/hostname").exists(),
        "the deleted file is still in the merged view",
    )?;
    let marker = std::fs::symlink_metadata(f.path("merged-upper/etc/hostname"))?;
    ensure(
        marker.file_type().is_char_device() && marker.rdev() == 0,
        format!("upper/etc/hostname is not a 0:0 character device: {marker:?}"),
    )?;
    ensure_eq(
        read(&f.path("lower/etc/hostname"))?,
        "base\n".into(),
        "the lower layer keeps the deleted file",
    )?;
    let long = diff(&f.path("merged"), true)?;
    ensure(
        long.lines().any(|l| {
            l.starts_with("D /etc/hostname") && l.contains("whiteout: character device 0:0")
        }),
        format!("diff --long:\n{long}"),
    )
}

fn opaque() -> Result<(), Failed> {
    let f = Fixture::new()?;
    let _mount = f.mount("merged", &["lower"])?;
    std::fs::remove_dir_all(f.path("merged/app/cache"))?;
    std::fs::create_dir(f.path("merged/app/cache"))?;
    std::fs::write(f.path("merged/app/cache/c"), "c\n")?;
    let names: Vec<_> = std::fs::read_dir(f.path("merged/app/cache"))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    ensure_eq(names, vec!["c".into()], "the remade directory's entries")?;
    let value = xattr_get(&f.path("merged-upper/app/cache"), "trusted.overlay.opaque")?;
    ensure_eq(value.as_deref(), Some("y"), "trusted.overlay.opaque")?;
    let long = diff(&f.path("merged"), true)?;
    ensure(
        long.lines()
            .any(|l| l.starts_with("C /app/cache") && l.contains("opaque directory")),
        format!("diff --long:\n{long}"),
    )
}

fn xattr_get(path: &Path, name: &str) -> Result<Option<String>, Failed> {
    Ok(xattr::get(path, name)?.map(|v| String::from_utf8_lossy(&v).into_owned()))
}

/// The mount points at or below `dir`.
fn mounted_under(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|target| Path::new(target).starts_with(dir))
        .map(String::from)
        .collect()
}

fn two_stacks() -> Result<(), Failed> {
    let f = Fixture::new()?;
    let _one = f.mount("one", &["lower"])?;
    let _two = f.mount("two", &["lower"])?;
    std::fs::write(f.path("one/etc/motd"), "one\n")?;
    std::fs::remove_file(f.path("two/etc/motd"))?;
    std::fs::write(f.path("two/only-in-two"), "2\n")?;
    ensure_eq(read(&f.path("one/etc/motd"))?, "one\n".into(), "one's motd")?;
    ensure(!f.path("two/etc/motd").exists(), "two still has motd")?;
    ensure(!f.path("one/only-in-two").exists(), "one sees two's file")?;
    ensure_eq(
        read(&f.path("lower/etc/motd"))?,
        "from the lower layer\n".into(),
        "the shared lower",
    )?;
    ensure_eq(
        diff(&f.path("one"), false)?,
        "C /etc\nC /etc/motd\n".into(),
        "one's diff",
    )?;
    ensure_eq(
        diff(&f.path("two"), false)?,
        "C /etc\nD /etc/motd\nA /only-in-two\n".into(),
        "two's diff",
    )
}

fn commit() -> Result<(), Failed> {
    let f = Fixture::new()?;
    {
        let _first = f.mount("first", &["lower"])?;
        std::fs::write(f.path("first/etc/motd"), "committed\n")?;
        std::fs::remove_file(f.path("first/etc/hostname"))?;
        let output = run(cmd("overlay-stack")
            .arg("commit")
            .arg(f.path("first-upper"))
            .arg(f.path("layer2")))?;
        ensure(output.status.success(), describe(&output))?;
        ensure(stdout(&output).contains("1 deleted"), describe(&output))?;
    }
    let marker = std::fs::symlink_metadata(f.path("layer2/etc/hostname"))?;
    ensure(
        marker.file_type().is_char_device() && marker.rdev() == 0,
        "the committed layer lost the whiteout",
    )?;
    let _second = f.mount("second", &["layer2", "lower"])?;
    ensure_eq(
        read(&f.path("second/etc/motd"))?,
        "committed\n".into(),
        "the new stack's motd",
    )?;
    ensure(
        !f.path("second/etc/hostname").exists(),
        "the new stack shows the file the layer deleted",
    )?;
    ensure_eq(
        diff(&f.path("second"), false)?,
        String::new(),
        "a fresh stack's diff",
    )
}

fn many_layers() -> Result<(), Failed> {
    let f = Fixture::new()?;
    let long = f.path("layers-with-a-rather-long-directory-name-for-each-layer");
    let count = 150;
    let mut lowers = Vec::new();
    for i in (0..count).rev() {
        let layer = long.join(format!("layer-number-{i:04}"));
        std::fs::create_dir_all(&layer)?;
        std::fs::write(layer.join(format!("file-{i:04}")), format!("{i}\n"))?;
        lowers.push(layer.display().to_string());
    }
    let joined = lowers.join(":");
    ensure(joined.len() > 4096, "the stack fits in a page after all")?;
    let output = run(cmd("overlay-stack")
        .args(["--explain", "mount", "--lower"])
        .arg(&joined)
        .arg(f.path("merged")))?;
    let _mount = MountGuard(f.path("merged"));
    ensure(output.status.success(), describe(&output))?;
    ensure(
        stderr(&output).contains("symlink(") && stderr(&output).contains("chdir("),
        describe(&output),
    )?;
    ensure_eq(
        read(&f.path("merged/file-0000"))?,
        "0\n".into(),
        "the bottom layer's file",
    )?;
    ensure_eq(
        read(&f.path("merged/file-0149"))?,
        "149\n".into(),
        "the top layer's file",
    )?;
    let history = run(cmd("overlay-stack").arg("history").arg(f.path("merged")))?;
    ensure(
        stdout(&history).lines().count() == count + 1
            && stdout(&history).contains("layer-number-0149"),
        describe(&history),
    )?;
    let output = run(cmd("overlay-stack").arg("umount").arg(f.path("merged")))?;
    ensure(output.status.success(), describe(&output))?;
    let links = PathBuf::from("/run/underhood/overlay");
    let left: Vec<_> = std::fs::read_dir(&links)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    let ours = left
        .iter()
        .filter_map(|dir| std::fs::read_link(dir.join("0")).ok())
        .any(|l| l.starts_with(f.dir.path()));
    ensure(!ours, "the short links survived umount")
}

fn history() -> Result<(), Failed> {
    let f = Fixture::new()?;
    let _mount = f.mount("merged", &["lower"])?;
    std::fs::write(f.path("merged/big"), vec![b'x'; 3 << 20])?;
    std::fs::remove_file(f.path("merged/etc/motd"))?;
    let output = run(cmd("overlay-stack").arg("history").arg(f.path("merged")))?;
    ensure(output.status.success(), describe(&output))?;
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    ensure(
        lines.len() == 3
            && lines[0].starts_with("LAYER")
            && lines[1].contains("merged-upper (upper)")
            && lines[1].contains("3M")
            && lines[2].contains("/lower"),
        describe(&output),
    )
}

fn mistakes() -> Result<(), Failed> {
    let f = Fixture::new()?;
    let lower = f.path("lower");
    // A tmpfs for a work dir on another filesystem than the upper.
    let other = f.path("other-fs");
    std::fs::create_dir(&other)?;
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&other)
        .status()?;
    ensure(status.success(), "mount a tmpfs")?;
    let _tmpfs = MountGuard(other.clone());
    // An overlay to put an upper on.
    let _ovl = f.mount("ovl", &["lower"])?;
    let busy_work = f.path("busy-work");
    std::fs::create_dir(&busy_work)?;
    std::fs::write(busy_work.join("notes.txt"), "x")?;

    let cases: Vec<(&str, Vec<PathBuf>, &str)> = vec![
        (
            "upper and work on different filesystems",
            vec![lower.clone(), f.path("u"), other.join("w")],
            "different filesystems",
        ),
        (
            "a work dir that is not empty",
            vec![lower.clone(), f.path("u"), busy_work.clone()],
            "not empty (it has notes.txt)",
        ),
        (
            "an upper on an overlayfs",
            vec![lower.clone(), f.path("ovl/u"), f.path("ovl/w")],
            "tmpfs",
        ),
        (
            "a lower that does not exist",
            vec![f.path("no-such-layer"), f.path("u"), f.path("w")],
            "no such directory",
        ),
        (
            "a lower with an option separator",
            vec![f.path("a,upperdir=x"), f.path("u"), f.path("w")],
            "separator",
        ),
    ];
    for (what, dirs, says) in cases {
        let output = run(cmd("overlay-stack")
            .arg("mount")
            .arg("--lower")
            .arg(&dirs[0])
            .arg("--upper")
            .arg(&dirs[1])
            .arg("--work")
            .arg(&dirs[2])
            .arg(f.path("m")))?;
        let err = stderr(&output);
        ensure(
            output.status.code() == Some(2) && err.lines().count() == 1 && err.contains(says),
            format!("{what}: {}", describe(&output)),
        )?;
        for made in [&dirs[1], &dirs[2]] {
            ensure(
                made == &busy_work || !made.exists(),
                format!("{what}: {} was made", made.display()),
            )?;
        }
        ensure(
            !f.path("m").exists(),
            format!("{what}: the mount point was made"),
        )?;
    }
    Ok(())
}

fn refused_mount() -> Result<(), Failed> {
    // A read-only filesystem cannot hold an upper layer, and only the
    // kernel says so, when asked: the directories overlay-stack made for
    // the mount must go again.
    let f = Fixture::new()?;
    let ro = f.path("ro");
    std::fs::create_dir(&ro)?;
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&ro)
        .status()?;
    ensure(status.success(), "mount a tmpfs")?;
    let _ro = MountGuard(ro.clone());
    std::fs::create_dir(ro.join("upper"))?;
    std::fs::create_dir(ro.join("work"))?;
    let status = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&ro)
        .status()?;
    ensure(status.success(), "remount the tmpfs read-only")?;
    let output = run(cmd("overlay-stack")
        .arg("mount")
        .arg("--lower")
        .arg(f.path("lower"))
        .arg("--upper")
        .arg(ro.join("upper"))
        .arg("--work")
        .arg(ro.join("work"))
        .arg(f.path("made/for/the/mount")))?;
    let _leak = MountGuard(f.path("made/for/the/mount"));
    let err = stderr(&output);
    ensure(
        output.status.code() == Some(125)
            && err.lines().count() == 1
            && err.contains("(EINVAL)")
            // What the kernel logs: 6.1 says "upper fs is r/o", later ones
            // "filesystem on … is read-only".
            && (err.contains("read-only") || err.contains("r/o")),
        describe(&output),
    )?;
    ensure(
        !f.path("made").exists(),
        "the mount point's directories survived",
    )?;
    ensure_eq(
        mounted_under(f.dir.path()).len(),
        1,
        "mounts under the scratch dir",
    )
}

fn upper_in_use() -> Result<(), Failed> {
    let f = Fixture::new()?;
    let _first = f.mount("first", &["lower"])?;
    let output = run(cmd("overlay-stack")
        .arg("mount")
        .arg("--lower")
        .arg(f.path("lower"))
        .arg("--upper")
        .arg(f.path("first-upper"))
        .arg("--work")
        .arg(f.path("second-work"))
        .arg(f.path("second")))?;
    let _leak = MountGuard(f.path("second"));
    ensure(
        output.status.code() == Some(2)
            && stderr(&output).contains("already in use by the stack mounted at"),
        describe(&output),
    )?;
    ensure(!f.path("second").exists(), "the mount point was made")
}

fn umount_not_overlay() -> Result<(), Failed> {
    let dir = scratch();
    let output = run(cmd("overlay-stack").arg("umount").arg(dir.path()))?;
    ensure(
        output.status.code() == Some(2) && stderr(&output).contains("not a mount point"),
        describe(&output),
    )
}

fn dry_run() -> Result<(), Failed> {
    let f = Fixture::new()?;
    let output = run(cmd("overlay-stack")
        .args(["--dry-run", "mount", "--lower"])
        .arg(f.path("lower"))
        .arg("--upper")
        .arg(f.path("u"))
        .arg("--work")
        .arg(f.path("w"))
        .arg(f.path("m")))?;
    ensure(output.status.success(), describe(&output))?;
    let text = stdout(&output);
    ensure(
        text.contains("mount(\"overlay\"") && text.contains("lowerdir="),
        describe(&output),
    )?;
    for made in ["u", "w", "m"] {
        ensure(!f.path(made).exists(), format!("--dry-run made {made}"))?;
    }
    Ok(())
}

// Bad input (issue 9): one table for every subcommand.

/// Who runs a case.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Who {
    Root,
    /// nobody, through setpriv: a host where overlay-stack is not root.
    Nobody,
}

/// One bad input: the arguments (run in the table's scratch directory),
/// the exit code `overlay-stack --help` documents for it, and what its
/// one line must name — the field, the value, the errno.
struct Bad {
    args: Vec<String>,
    code: i32,
    names: Vec<String>,
    who: Who,
    /// `$PATH` first, for the case of a busybox that is not a program.
    path_first: Option<PathBuf>,
}

fn bad(args: &[&str], code: i32, names: &[&str]) -> Bad {
    Bad {
        args: args.iter().map(|a| a.to_string()).collect(),
        code,
        names: names.iter().map(|n| n.to_string()).collect(),
        who: Who::Root,
        path_first: None,
    }
}

/// What the table's scratch directory holds, symlinks not followed, each
/// entry with its type and size: a refused command must change none of it.
fn tree_of(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let shown = path.strip_prefix(root).unwrap_or(&path).display();
            out.push(format!("{shown} {:?} {}", meta.file_type(), meta.len()));
            if meta.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The scratch directory of the table: layers, a file, a symlink to `/`,
/// images good and bad, an imported image and two damaged copies of it,
/// a busybox that is not a program, and a directory of nobody's.
fn bad_input_fixture(dir: &Path) -> Result<(), Failed> {
    let at = |name: &str| dir.join(name);
    for made in ["lower/etc", "upper/etc", "layers", "fakebin", "mine/lower"] {
        std::fs::create_dir_all(at(made))?;
    }
    std::fs::write(at("lower/etc/motd"), "lower\n")?;
    std::fs::write(at("upper/etc/motd"), "upper\n")?;
    std::fs::write(at("afile"), "a file\n")?;
    std::os::unix::fs::symlink("/", at("rootlink"))?;
    one_layer_image(&at("one.tar"))?;
    docker_save(&at("truncated.tar"), Some(b"[{\"Config\": "), None)?;
    docker_save(&at("map.tar"), Some(b"{\"Config\": \"c.json\"}"), None)?;
    docker_save(&at("badconfig.tar"), None, Some(b"{\"rootfs\": "))?;
    std::fs::write(
        at("badindex.tar"),
        tar_of(&[
            ("oci-layout", b"{\"imageLayoutVersion\":\"1.0.0\"}"),
            ("index.json", b"{\"manifests\": ["),
        ])?,
    )?;
    let out = run(cmd("overlay-stack")
        .arg("import")
        .arg(at("one.tar"))
        .arg(at("img")))?;
    ensure(out.status.success(), describe(&out))?;
    let record = std::fs::read_to_string(at("img/image.json"))?;
    for (copy, json) in [
        ("img-truncated", record[..record.len() / 2].to_string()),
        (
            "img-escaping",
            record.replace("\"layers/1\"", "\"../../../..\""),
        ),
    ] {
        std::fs::create_dir(at(copy))?;
        std::fs::write(at(copy).join("image.json"), json)?;
    }
    // The start of an ELF header, and nothing after it: the first busybox
    // on $PATH.
    use std::os::unix::fs::PermissionsExt;
    let mut truncated = b"\x7fELF\x02\x01\x01".to_vec();
    truncated.resize(20, 0);
    std::fs::write(at("fakebin/busybox"), truncated)?;
    std::fs::set_permissions(
        at("fakebin/busybox"),
        std::fs::Permissions::from_mode(0o755),
    )?;
    for mine in [at("mine"), at("mine/lower")] {
        nix::unistd::chown(
            &mine,
            Some(nix::unistd::Uid::from_raw(NOBODY)),
            Some(nix::unistd::Gid::from_raw(NOBODY)),
        )?;
    }
    Ok(())
}

/// The table: the arguments, the exit code, what the line names. Sizes
/// are left out: overlay-stack takes none. Where a regression would
/// write over the host (a mount on `/`, a copy of `/`), the case is
/// planned only (`--dry-run`): it is refused as the plan is made, before
/// any step, either way. One case a line, as a table reads.
#[rustfmt::skip]
fn bad_input_cases(dir: &Path) -> Vec<Bad> {
    let long = "x".repeat(300);
    let long = long.as_str();
    let long_rootfs = "r".repeat(240);
    let long_rootfs = long_rootfs.as_str();
    // mount's flags, with the lower, upper, work and target given.
    let mount = |lower: &'static str, upper: &'static str, work: &'static str, target: &str| {
        ["mount", "--lower", lower, "--upper", upper, "--work", work].iter().map(|s| s.to_string())
            .chain([target.to_string()]).collect::<Vec<String>>()
    };
    let mount_image = |image: &'static str| -> Vec<String> {
        ["mount", "--image", image, "--upper", "u", "--work", "w", "m"].map(String::from).to_vec()
    };
    let dry = |args: Vec<String>| [vec!["--dry-run".to_string()], args].concat();
    let case = |args: Vec<String>, code: i32, names: &[&str]| Bad {
        args,
        code,
        names: names.iter().map(|n| n.to_string()).collect(),
        who: Who::Root,
        path_first: None,
    };
    let mut cases = vec![
        // Usage.
        bad(&["frobnicate"], 2, &["'frobnicate'"]),
        bad(&["commit", "--no-such-flag", "upper", "l"], 2, &["'--no-such-flag'"]),
        bad(&["commit", "upper", "l", "extra"], 2, &["'extra'"]),
        // Names: --ref names an image in a tar that holds several.
        bad(&["import", "one.tar", "d", "--ref", "../x"], 2, &["\"../x\"", "--ref"]),
        bad(&["import", "one.tar", "d", "--ref", "a/b"], 2, &["\"a/b\"", "--ref"]),
        bad(&["import", "one.tar", "d", "--ref", ""], 2, &["no image named \"\"", "--ref"]),
        bad(&["import", "one.tar", "d", "--ref", long], 2, &[long, "--ref"]),
        bad(&["import", "one.tar", "d", "--ref", "-x"], 2, &["'-x'", "'-- -x'"]),
        bad(&["import", "one.tar", "d", "--ref", "a\nb"], 2, &["\"a\\nb\"", "--ref"]),
        bad(&["import", "one.tar", "d", "--ref", "é"], 2, &["\"é\"", "--ref"]),
        // Names: the directories overlay-stack makes, and the paths it reads.
        bad(&["commit", "upper", ""], 2, &["'<LAYER>'"]),
        bad(&["commit", "upper", long], 2, &["LAYER xxxx", "300 bytes", "NAME_MAX"]),
        bad(&["commit", "upper", "-x"], 2, &["'-x'", "'-- -x'"]),
        bad(&["commit", "upper", "a\nb"], 2, &["LAYER a\\nb", "a newline"]),
        bad(&["commit", "upper", "a/b"], 2, &["LAYER a/b", "mkdir -p a"]),
        bad(&["commit", "upper", "x/.."], 2, &["LAYER x/..", "not a name"]),
        bad(&["commit", "upper", "upper/inside"], 2, &["LAYER upper/inside", "beside"]),
        bad(&["commit", "upper", "afile"], 2, &["LAYER afile", "already exists"]),
        bad(&["import", "one.tar", ""], 2, &["'<DIR>'"]),
        bad(&["import", "one.tar", long], 2, &["DIR xxxx", "300 bytes"]),
        bad(&["import", "one.tar", "d\nx"], 2, &["DIR d\\nx", "a newline"]),
        bad(&["import", "one.tar", "a/b"], 2, &["DIR a/b", "mkdir -p a"]),
        bad(&["rootfs", long], 2, &["DIR xxxx", "300 bytes"]),
        bad(&["rootfs", long_rootfs], 2, &["DIR rrrr", "240 bytes", "staging"]),
        bad(&["rootfs", "r\nx"], 2, &["DIR r\\nx", "a newline"]),
        case(mount("lower", "u", "w", long), 2, &["TARGET xxxx", "300 bytes"]),
        case(mount("lower", "u", "w", "m\nx"), 2, &["TARGET m\\nx", "a newline"]),
        bad(&["diff", "a\nb"], 2, &["UPPER a\\nb", "a newline"]),
        bad(&["history", "a\nb"], 2, &["LAYER a\\nb", "a newline"]),
        bad(&["umount", "a\nb"], 2, &["TARGET a\\nb", "a newline"]),
        // Layer paths that overlayfs would split, or read options from.
        case(mount("lower,upperdir=/etc", "u", "w", "m"), 2, &["--lower lower,upperdir=/etc", "','", "separator"]),
        case(mount("low\\er", "u", "w", "m"), 2, &["--lower low\\er", "'\\'"]),
        case(mount("lower:missing", "u", "w", "m"), 2, &["--lower", "missing: no such directory", "separated by ':'"]),
        case(mount("lower", "u:x", "w", "m"), 2, &["--upper u:x", "':'"]),
        case(mount("lower", "u", "w,x", "m"), 2, &["--work w,x", "','"]),
        case(mount_image("i,x"), 2, &["--image i,x", "','"]),
        bad(&["commit", "upper", "l:x"], 2, &["LAYER l:x", "':'", "could not be mounted"]),
        bad(&["import", "one.tar", "d\\x"], 2, &["DIR d\\x", "'\\'"]),
        bad(&["rootfs", "r,x"], 2, &["DIR r,x", "','"]),
        // A root filesystem, or a layer, that is missing, a file, / or a
        // symlink to /.
        bad(&["commit", "missing", "l"], 2, &["UPPER missing", "no such directory"]),
        bad(&["commit", "afile", "l"], 2, &["UPPER afile", "not a directory"]),
        bad(&["--dry-run", "commit", "/", "l"], 2, &["UPPER /", "root directory"]),
        bad(&["--dry-run", "commit", "rootlink", "l"], 2, &["UPPER rootlink", "root directory"]),
        case(mount("missing", "u", "w", "m"), 2, &["--lower", "missing: no such directory"]),
        case(mount("afile", "u", "w", "m"), 2, &["--lower", "afile: not a directory"]),
        case(dry(mount("/", "u", "w", "m")), 2, &["overlaps --lower /"]),
        case(dry(mount("rootlink", "u", "w", "m")), 2, &["overlaps --lower", "rootlink"]),
        case(mount("lower", "afile", "w", "m"), 2, &["--upper", "afile: not a directory"]),
        case(dry(mount("lower", "rootlink", "w", "m")), 2, &["--upper", "rootlink: the root directory"]),
        case(dry(mount("lower", "u", "w", "/")), 2, &["TARGET /: the root directory"]),
        case(dry(mount("lower", "u", "w", "rootlink")), 2, &["TARGET rootlink: the root directory"]),
        case(mount("lower", "u", "w", "afile"), 2, &["afile: the mount point is not a directory"]),
        case(mount_image("missing"), 2, &["--image missing", "no such directory"]),
        case(mount_image("afile"), 2, &["--image afile", "no such directory"]),
        case(dry(mount_image("/")), 2, &["--image: /: not an imported image", "overlay-stack import"]),
        bad(&["diff", "missing"], 2, &["UPPER missing", "no such directory"]),
        bad(&["diff", "afile"], 2, &["UPPER afile", "no such directory"]),
        bad(&["diff", "/"], 2, &["UPPER /", "--lower"]),
        bad(&["diff", "rootlink"], 2, &["UPPER rootlink", "--lower"]),
        bad(&["diff", "upper", "--lower", "missing"], 2, &["--lower missing"]),
        bad(&["history", "missing"], 2, &["LAYER missing", "no such directory"]),
        bad(&["history", "afile"], 2, &["LAYER afile", "no such directory"]),
        bad(&["history", "lower", "/"], 2, &["LAYER /", "root directory"]),
        bad(&["umount", "missing"], 2, &["missing: does not exist"]),
        bad(&["umount", "afile"], 2, &["afile: is not a mount point"]),
        bad(&["--dry-run", "umount", "/"], 2, &["TARGET /: the root directory"]),
        bad(&["--dry-run", "umount", "rootlink"], 2, &["TARGET rootlink: the root directory"]),
        bad(&["--dry-run", "rootfs", "/"], 2, &["/ cannot hold a rootfs"]),
        bad(&["--dry-run", "rootfs", "rootlink"], 2, &["rootlink is a symbolic link"]),
        bad(&["rootfs", "afile"], 2, &["afile exists and is not a directory"]),
        bad(&["rootfs", "lower"], 2, &["lower is not empty", "no etc/underhood-release"]),
        bad(&["import", "missing.tar", "d"], 2, &["missing.tar", "(ENOENT)"]),
        bad(&["import", "afile", "d"], 2, &["afile: not an image", "docker save"]),
        bad(&["import", "/", "d"], 2, &["/: not an image", "index.json"]),
        bad(&["import", "rootlink", "d"], 2, &["rootlink: not an image"]),
        bad(&["--dry-run", "import", "one.tar", "/"], 2, &["DIR /: not a name"]),
        bad(&["import", "one.tar", "rootlink"], 2, &["DIR rootlink", "not a directory"]),
        bad(&["import", "one.tar", "afile"], 2, &["DIR afile", "not a directory"]),
        bad(&["import", "one.tar", "lower"], 2, &["DIR lower: not empty"]),
        // Malformed JSON.
        bad(&["import", "truncated.tar", "d"], 2, &["truncated.tar:manifest.json: not a docker save manifest", "save it again"]),
        bad(&["import", "map.tar", "d"], 2, &["map.tar:manifest.json", "expected a sequence", "save it again"]),
        bad(&["import", "badconfig.tar", "d"], 2, &["badconfig.tar:", "not an image config", "save it again"]),
        bad(&["import", "badindex.tar", "d"], 2, &["badindex.tar:index.json: not an OCI image index", "save it again"]),
        bad(&["history", "img-truncated"], 2, &["img-truncated/image.json: not an image record", "import the image again"]),
        case(mount_image("img-truncated"), 2, &["--image", "img-truncated/image.json: not an image record"]),
        case(mount_image("img-escaping"), 2, &["img-escaping/image.json: layers[0].dir \"../../../..\"", "import the image again"]),
    ];
    // A command that is not a program: overlay-stack runs only busybox,
    // the first on $PATH, for a rootfs.
    let mut broken = bad(&["rootfs", "r"], 125, &["fakebin/busybox", "not a valid ELF file", "busybox-static"]);
    broken.path_first = Some(dir.join("fakebin"));
    cases.push(broken);
    // Not root: mounting needs CAP_SYS_ADMIN, the others a directory the
    // user may write in.
    let as_nobody = [
        case(mount("mine/lower", "mine/u", "mine/w", "mine/m"), 125, &["mount(\"overlay\"", "(EPERM)", "ns-unshare -r --mount"]),
        bad(&["commit", "upper", "layers/l"], 125, &["layers/.l.commit-", "(EACCES)", "commit into one of yours"]),
        bad(&["import", "one.tar", "layers/d"], 125, &["layers/.d.import-", "(EACCES)", "import into a directory of yours"]),
        bad(&["rootfs", "layers/r"], 125, &["layers/.r.staging-", "(EACCES)", "a directory you may write to"]),
    ];
    for mut case in as_nobody {
        case.who = Who::Nobody;
        cases.push(case);
    }
    cases
}

/// Every bad input of the table: its documented exit code, one line on
/// stderr that starts with `overlay-stack: ` and names what was wrong,
/// nothing on stdout, and the scratch directory as it was (the leak
/// ledger checks the rest of the host). A non-ASCII name, for contrast,
/// is taken.
fn bad_input(user_copy: &Path) -> Result<(), Failed> {
    let scratch = scratch();
    let dir = scratch.path();
    bad_input_fixture(dir)?;
    let mut problems = Vec::new();
    for case in bad_input_cases(dir) {
        let before = tree_of(dir);
        let mut command = match case.who {
            Who::Root => cmd("overlay-stack"),
            Who::Nobody => {
                let mut command = Command::new("setpriv");
                command
                    .args([&format!("--reuid={NOBODY}"), &format!("--regid={NOBODY}")])
                    .args(["--clear-groups", "--"])
                    .arg(user_copy)
                    .env_clear()
                    .env("LC_ALL", "C")
                    .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
                command
            }
        };
        if let Some(first) = &case.path_first {
            let path = std::env::var_os("PATH").unwrap_or_default();
            let mut joined = first.clone().into_os_string();
            joined.push(":");
            joined.push(path);
            command.env("PATH", joined);
        }
        let out = run(command.args(&case.args).current_dir(dir))?;
        let names: Vec<&str> = case.names.iter().map(String::as_str).collect();
        let mut wrong = support::refusal_problems(&out, "overlay-stack", case.code, &names);
        let after = tree_of(dir);
        if after != before {
            let made: Vec<&String> = after.iter().filter(|l| !before.contains(l)).collect();
            let gone: Vec<&String> = before.iter().filter(|l| !after.contains(l)).collect();
            wrong.push(format!(
                "changed the scratch dir: made {made:?}, took {gone:?}"
            ));
        }
        if wrong.is_empty() {
            tally::add(Tally::BadInput, 1);
        } else {
            problems.push(format!(
                "{:?}: {}\n{}",
                case.args,
                wrong.join("; "),
                describe(&out)
            ));
        }
    }
    ensure(problems.is_empty(), problems.join("\n"))?;
    // Names are bytes: a non-ASCII one is a name like another.
    let out = run(cmd("overlay-stack")
        .args(["commit", "upper", "layers/lé"])
        .current_dir(dir))?;
    ensure(out.status.success(), describe(&out))?;
    ensure(dir.join("layers/lé/etc/motd").exists(), "no layer lé")
}

// Faults after every step (issue 9): for each command that makes
// something, the walk takes its --dry-run plan and, for every step N,
// runs it with UNDERHOOD_FAULT=fail@N, int@N and kill@N.

/// A command walked over the steps of its plan.
struct Walk<'a> {
    args: Vec<std::ffi::OsString>,
    /// Nothing of the command's is left (nor, after a kill, once
    /// `after_kill` has cleaned up).
    left_nothing: &'a dyn Fn() -> Result<(), Failed>,
    /// After kill@N, given N and the plan's steps: the tool's own cleanup,
    /// and the checks of what a SIGKILL may leave until then.
    after_kill: &'a AfterKill<'a>,
}

/// Given N of kill@N and the plan's steps, cleans up and checks.
type AfterKill<'a> = dyn Fn(usize, &[String]) -> Result<(), Failed> + 'a;

/// The steps of `overlay-stack --dry-run ARGS`, as it numbers them.
fn planned_steps(args: &[std::ffi::OsString]) -> Result<Vec<String>, Failed> {
    let output = run(cmd("overlay-stack").arg("--dry-run").args(args))?;
    ensure(output.status.success(), describe(&output))?;
    Ok(stdout(&output)
        .lines()
        .filter_map(|line| {
            let (number, call) = line.trim_start().split_once(". ")?;
            number.parse::<usize>().ok()?;
            Some(call.to_string())
        })
        .collect())
}

/// fail@N: exit 125 with one line saying so, and nothing left; int@N:
/// ends by SIGINT, nothing left; kill@N: ends by SIGKILL, and nothing
/// left once `after_kill` has run. Each fault point (a fault after a
/// step) that passed is counted. Returns how many steps were walked.
fn walk_faults(walk: &Walk) -> Result<usize, Failed> {
    use std::os::unix::process::ExitStatusExt;
    let steps = planned_steps(&walk.args)?;
    ensure(!steps.is_empty(), "the plan has no steps")?;
    let variable = steps::fault::VARIABLE;
    let with = |fault: String| {
        let mut command = cmd("overlay-stack");
        command.args(&walk.args).env(variable, fault);
        command
    };
    for (n, step) in (1..).zip(&steps) {
        let out = run(&mut with(format!("fail@{n}")))?;
        let said = format!("overlay-stack: injected failure after step {n} ({variable}=fail@{n})");
        ensure(
            out.status.code() == Some(125) && stderr(&out).lines().eq([said.as_str()]),
            format!("fail@{n}, after {step}\n{}", describe(&out)),
        )?;
        (walk.left_nothing)().map_err(|e| {
            format!(
                "fail@{n}, after {step}: {}",
                e.message().unwrap_or_default()
            )
        })?;
        tally::add(Tally::FaultPoint, 1);

        let out = run(&mut with(format!("int@{n}")))?;
        ensure(
            out.status.signal() == Some(nix::sys::signal::Signal::SIGINT as i32),
            format!("int@{n}, after {step}\n{}", describe(&out)),
        )?;
        (walk.left_nothing)()
            .map_err(|e| format!("int@{n}, after {step}: {}", e.message().unwrap_or_default()))?;
        tally::add(Tally::FaultPoint, 1);

        let out = run(&mut with(format!("kill@{n}")))?;
        ensure(
            out.status.signal() == Some(nix::sys::signal::Signal::SIGKILL as i32),
            format!("kill@{n}, after {step}\n{}", describe(&out)),
        )?;
        (walk.after_kill)(n, &steps).map_err(|e| {
            format!(
                "kill@{n}, after {step}: {}",
                e.message().unwrap_or_default()
            )
        })?;
        (walk.left_nothing)().map_err(|e| {
            format!(
                "kill@{n}, after {step}, cleaned up: {}",
                e.message().unwrap_or_default()
            )
        })?;
        tally::add(Tally::FaultPoint, 1);
    }
    Ok(steps.len())
}

/// The paths a plan's `mkdir("…", 0755)` steps make.
fn planned_dirs(steps: &[String]) -> Vec<PathBuf> {
    steps
        .iter()
        .filter_map(|s| s.strip_prefix("mkdir(\"")?.strip_suffix("\", 0755)"))
        .map(PathBuf::from)
        .collect()
}

/// The short links' directory a plan `chdir()`s to, if it has one.
fn planned_links(steps: &[String]) -> Option<PathBuf> {
    steps
        .iter()
        .find_map(|s| s.strip_prefix("chdir(\"")?.strip_suffix("\")"))
        .map(PathBuf::from)
}

/// `mount` with an upper and a work directory, over one lower layer and
/// over one too long for a page (through short links): stopped after any
/// step, it leaves no mount, no directory it made and no links. Killed,
/// it leaves the stack mounted only after the last step, and before that
/// the links (for `umount` to remove) and the empty directories the
/// mount would have made, which a mount run again takes as they are.
fn faults_in_mount() -> Result<(), Failed> {
    let f = Fixture::new()?;
    let long = f.path("layers-with-a-rather-long-directory-name-for-each-layer");
    let mut many = Vec::new();
    for i in (0..150).rev() {
        let layer = long.join(format!("layer-number-{i:04}"));
        std::fs::create_dir_all(&layer)?;
        many.push(layer.display().to_string());
    }
    for lower in [f.path("lower").display().to_string(), many.join(":")] {
        let mut args: Vec<std::ffi::OsString> = vec!["mount".into(), "--lower".into()];
        args.push(lower.into());
        for (flag, dir) in [("--upper", "made/upper"), ("--work", "made/work")] {
            args.push(flag.into());
            args.push(f.path(dir).into());
        }
        args.push(f.path("made/merged").into());
        let _guard = MountGuard(f.path("made/merged"));
        let steps = planned_steps(&args)?;
        let links = planned_links(&steps);
        let umount = || {
            run(cmd("overlay-stack")
                .arg("umount")
                .arg(f.path("made/merged")))
        };
        let left_nothing = || {
            let mounted = mounted_under(f.dir.path());
            ensure(mounted.is_empty(), format!("still mounted: {mounted:?}"))?;
            ensure(!f.path("made").exists(), "the directories made are left")?;
            match &links {
                Some(links) => ensure(!links.exists(), format!("{} is left", links.display())),
                None => Ok(()),
            }
        };
        let after_kill = |n: usize, steps: &[String]| {
            let last = n == steps.len();
            ensure(
                mounted_under(f.dir.path()).is_empty() != last,
                "mounted, and only after the last step",
            )?;
            if last || links.as_ref().is_some_and(|l| l.exists()) {
                let out = umount()?;
                ensure(out.status.success(), describe(&out))?;
            }
            // What is left before the mount: empty directories of the
            // plan (after it, a stack's own, as any umount leaves them),
            // and the stack mounts over them as it would have.
            let planned = planned_dirs(steps);
            let made = if last {
                vec![]
            } else {
                support::walkdir(&f.path("made"))
            };
            for dir in made {
                ensure(
                    planned.contains(&dir) && std::fs::read_dir(&dir)?.next().is_none(),
                    format!(
                        "{} is left, not an empty directory of the plan",
                        dir.display()
                    ),
                )?;
            }
            let again = run(cmd("overlay-stack").args(&args))?;
            ensure(again.status.success(), describe(&again))?;
            let out = umount()?;
            ensure(out.status.success(), describe(&out))?;
            std::fs::remove_dir_all(f.path("made"))?;
            Ok(())
        };
        let walked = walk_faults(&Walk {
            args: args.clone(),
            left_nothing: &left_nothing,
            after_kill: &after_kill,
        })?;
        ensure(
            walked == if links.is_some() { 6 } else { 4 },
            format!("{walked} steps: {steps:?}"),
        )?;
    }
    Ok(())
}

/// Hidden entries beside a command's result: its staging directories.
fn hidden_in(dir: &Path) -> Result<Vec<String>, Failed> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect();
    names.sort();
    Ok(names)
}

/// `commit`: stopped after any step, no layer and no copy is left.
/// Killed before the rename, it leaves its hidden copy `.NAME.commit-PID`,
/// which the next commit of NAME removes as the first step of its plan.
fn faults_in_commit() -> Result<(), Failed> {
    let f = Fixture::new()?;
    std::fs::create_dir_all(f.path("upper/etc"))?;
    std::fs::write(f.path("upper/etc/motd"), "changed\n")?;
    std::fs::create_dir(f.path("layers"))?;
    let layer = f.path("layers/committed");
    let args: Vec<std::ffi::OsString> = vec![
        "commit".into(),
        f.path("upper").into(),
        layer.clone().into(),
    ];
    let left_nothing = || {
        ensure(!layer.exists(), "the layer is left")?;
        let hidden = hidden_in(&f.path("layers"))?;
        ensure(hidden.is_empty(), format!("left: {hidden:?}"))
    };
    let after_kill = |n: usize, steps: &[String]| {
        if n < steps.len() {
            let hidden = hidden_in(&f.path("layers"))?;
            ensure(
                hidden.len() == 1 && hidden[0].starts_with(".committed.commit-"),
                format!("left: {hidden:?}"),
            )?;
            next_run_removes(&args, &f.path("layers").join(&hidden[0]))?;
        }
        ensure(layer.join("etc/motd").exists(), "the layer was not made")?;
        // The layer is what the command is for, not a leftover.
        Ok(std::fs::remove_dir_all(&layer)?)
    };
    let walked = walk_faults(&Walk {
        args: args.clone(),
        left_nothing: &left_nothing,
        after_kill: &after_kill,
    })?;
    ensure_eq(walked, 2, "the commit's steps")
}

/// After a kill left `staging`: the next run of the same command plans
/// to remove it first (`--dry-run` shows it, and makes nothing), and
/// does, and finishes.
fn next_run_removes(args: &[std::ffi::OsString], staging: &Path) -> Result<(), Failed> {
    let remove = format!("rm -r \"{}\"", staging.display());
    let steps = planned_steps(args)?;
    ensure(
        steps.first() == Some(&remove),
        format!("the next run does not remove it first: {steps:?}"),
    )?;
    ensure(staging.exists(), "--dry-run removed it")?;
    let out = run(cmd("overlay-stack").args(args))?;
    ensure(out.status.success(), describe(&out))?;
    ensure(!staging.exists(), "the next run left it")
}

/// `rootfs DIR`, a new busybox tree: stopped after any step, neither DIR
/// nor a staging directory is left. Killed before the rename, it leaves
/// its staging directory, which a later build removes once it is an hour
/// old (made older here) and its process gone.
fn faults_in_rootfs() -> Result<(), Failed> {
    let scratch = scratch();
    let dir = scratch.path().join("rootfs");
    let left_nothing = || {
        ensure(!dir.exists(), "the rootfs is left")?;
        let hidden = hidden_in(scratch.path())?;
        ensure(hidden.is_empty(), format!("left: {hidden:?}"))
    };
    let after_kill = |n: usize, steps: &[String]| {
        if n == steps.len() {
            ensure(dir.join("bin/sh").exists(), "the build did not finish")?;
            return Ok(std::fs::remove_dir_all(&dir)?);
        }
        let hidden = hidden_in(scratch.path())?;
        ensure(
            hidden.len() == 1 && hidden[0].starts_with(".rootfs.staging-"),
            format!("left: {hidden:?}"),
        )?;
        let staging = scratch.path().join(&hidden[0]);
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        std::fs::File::open(&staging)?.set_modified(two_hours_ago)?;
        let plan = run(cmd("overlay-stack").args(["--dry-run", "rootfs"]).arg(&dir))?;
        ensure(
            stdout(&plan).contains(&format!("rm -r \"{}\"", staging.display())),
            format!("the next build does not remove it\n{}", describe(&plan)),
        )?;
        let out = run(cmd("overlay-stack").arg("rootfs").arg(&dir))?;
        ensure(out.status.success(), describe(&out))?;
        ensure(!staging.exists(), "the next build left it")?;
        Ok(std::fs::remove_dir_all(&dir)?)
    };
    let walked = walk_faults(&Walk {
        args: vec!["rootfs".into(), dir.clone().into()],
        left_nothing: &left_nothing,
        after_kill: &after_kill,
    })?;
    ensure(walked >= 5, format!("{walked} steps"))
}

/// A tar of `members`, each a file.
fn tar_of(members: &[(&str, &[u8])]) -> Result<Vec<u8>, Failed> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_714_557_600);
        builder.append_data(&mut header, name, *data)?;
    }
    Ok(builder.into_inner()?)
}

/// A `docker save` tar of one layer holding `/etc/motd`.
fn one_layer_image(path: &Path) -> Result<(), Failed> {
    docker_save(path, None, None)
}

/// [`one_layer_image`], its `manifest.json` or its config replaced by
/// the bytes given: an image that is not what it says it is. A config
/// given is still named by its digest, so that it is read and parsed.
fn docker_save(path: &Path, manifest: Option<&[u8]>, config: Option<&[u8]>) -> Result<(), Failed> {
    use sha2::Digest;
    let sha256 = |bytes: &[u8]| format!("{:x}", sha2::Sha256::digest(bytes));
    let layer = tar_of(&[("etc/motd", b"hello\n")])?;
    let config = match config {
        Some(bytes) => bytes.to_vec(),
        None => serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha256(&layer))]},
        }))?,
    };
    let config_name = format!("{}.json", sha256(&config));
    let layer_name = format!("{}/layer.tar", sha256(&layer));
    let manifest = match manifest {
        Some(bytes) => bytes.to_vec(),
        None => serde_json::to_vec(&serde_json::json!([
            {"Config": config_name, "RepoTags": ["one:latest"], "Layers": [layer_name]}
        ]))?,
    };
    let image = tar_of(&[
        (&config_name, &config),
        (&layer_name, &layer),
        ("manifest.json", &manifest),
    ])?;
    Ok(std::fs::write(path, image)?)
}

/// `import` of a one-layer image: stopped after any step, neither DEST
/// nor the staging directory is left. Killed before the rename, it leaves
/// the hidden `.DEST.import-PID`, which the next import into DEST removes
/// as the first step of its plan.
fn faults_in_import() -> Result<(), Failed> {
    let scratch = scratch();
    let image = scratch.path().join("one.tar");
    one_layer_image(&image)?;
    let images = scratch.path().join("images");
    std::fs::create_dir(&images)?;
    let dest = images.join("one");
    let args: Vec<std::ffi::OsString> =
        vec!["import".into(), image.clone().into(), dest.clone().into()];
    let left_nothing = || {
        ensure(!dest.exists(), "the image is left")?;
        let hidden = hidden_in(&images)?;
        ensure(hidden.is_empty(), format!("left: {hidden:?}"))
    };
    let after_kill = |n: usize, steps: &[String]| {
        if n < steps.len() {
            let hidden = hidden_in(&images)?;
            ensure(
                hidden.len() == 1 && hidden[0].starts_with(".one.import-"),
                format!("left: {hidden:?}"),
            )?;
            next_run_removes(&args, &images.join(&hidden[0]))?;
        }
        ensure(dest.join("layers/1/etc/motd").exists(), "not imported")?;
        // The image is what the command is for, not a leftover.
        Ok(std::fs::remove_dir_all(&dest)?)
    };
    let walked = walk_faults(&Walk {
        args: args.clone(),
        left_nothing: &left_nothing,
        after_kill: &after_kill,
    })?;
    ensure_eq(walked, 5, "the import's steps")
}
