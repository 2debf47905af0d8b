//! Plans and builds into temporary directories, without root. Running the
//! trees (chroot) is in `tests/overlay_rootfs.rs`.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use steps::Step;

use super::*;

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("underhood-rootfs-")
        .tempdir()
        .expect("scratch dir")
}

/// The host's static busybox, or `None` with a note that the test is
/// skipped.
fn static_busybox() -> Option<Source> {
    match Source::detect(false) {
        Ok(source @ Source::Busybox { .. }) => Some(source),
        _ => {
            eprintln!("skipped: no static busybox on $PATH");
            None
        }
    }
}

/// The plan's calls with its staging directory written `STAGING`.
fn calls(plan: &Plan<Op>) -> Vec<String> {
    let staging = plan
        .steps()
        .iter()
        .find_map(|op| match op {
            Op::MakeStaging { staging } => Some(staging.display().to_string()),
            _ => None,
        })
        .expect("a staging step");
    plan.calls()
        .into_iter()
        .map(|call| call.replace(&staging, "STAGING"))
        .collect()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_busybox_plan_makes_dirs_copies_links_and_renames() {
    let Some(source) = static_busybox() else {
        return;
    };
    let Source::Busybox { path } = &source else {
        unreachable!()
    };
    let tmp = scratch();
    let dir = tmp.path().join("rootfs");
    let plan = plan(&dir, &source).unwrap();
    let calls = calls(&plan);
    let applets = busybox::applets(path).unwrap().len();
    let d = dir.display();
    assert_eq!(
        calls,
        [
            "mkdir(\"STAGING\", 0755)".to_string(),
            "mkdir 15 directories in \"STAGING\": bin sbin usr usr/bin usr/sbin etc proc sys \
             dev tmp (1777) root (0700) run var var/tmp (1777) home"
                .to_string(),
            format!("copy \"{}\" → \"STAGING/bin/busybox\"", path.display()),
            format!("symlink {applets} applets → /bin/busybox (bin/sh, bin/ls, sbin/ip, …)"),
            "write \"STAGING/etc/passwd\"".to_string(),
            "write \"STAGING/etc/group\"".to_string(),
            "write \"STAGING/etc/underhood-release\"".to_string(),
            format!("rename(\"STAGING\", \"{d}\")"),
        ]
    );
    let Op::MakeStaging { staging } = &plan.steps()[0] else {
        unreachable!()
    };
    // Beside DIR, so the rename stays on one filesystem.
    assert_eq!(staging.parent(), dir.parent());
    assert!(
        plan.steps()
            .iter()
            .all(|s| s.chapter() == steps::chapter::ROOTFS)
    );
    // Planning wrote nothing.
    assert!(names_in(tmp.path()).is_empty());
}

#[test]
fn a_busybox_build_is_a_tree_with_links_modes_and_a_stamp() {
    let Some(source) = static_busybox() else {
        return;
    };
    let tmp = scratch();
    let dir = tmp.path().join("rootfs");
    let plan = plan(&dir, &source).unwrap();
    let built = build(&plan, &Narrator::quiet("test")).unwrap();
    let Built::Made { files, .. } = &built else {
        panic!("{built:?}")
    };
    assert_eq!(built.dir(), dir);
    assert_eq!(names_in(tmp.path()), ["rootfs"], "no staging dir is left");
    for name in [
        "bin", "sbin", "usr", "etc", "proc", "sys", "dev", "run", "var", "home",
    ] {
        assert!(dir.join(name).is_dir(), "{name}");
    }
    let mode = |p: &str| dir.join(p).symlink_metadata().unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("tmp"), 0o1777);
    assert_eq!(mode("var/tmp"), 0o1777);
    assert_eq!(mode("root"), 0o700);
    assert_eq!(mode("bin/busybox"), 0o755);
    assert_eq!(mode("etc/passwd"), 0o644);
    assert_eq!(mode(""), 0o755);
    assert_eq!(
        std::fs::read_link(dir.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(
        std::fs::read_link(dir.join("usr/bin/nc")).unwrap(),
        Path::new("../../bin/busybox")
    );
    // The links resolve inside the tree, even seen from outside.
    assert_eq!(
        std::fs::canonicalize(dir.join("sbin/ip")).unwrap(),
        std::fs::canonicalize(dir.join("bin/busybox")).unwrap()
    );
    let passwd = std::fs::read_to_string(dir.join("etc/passwd")).unwrap();
    assert!(passwd.starts_with("root:x:0:0:"), "{passwd}");
    assert!(passwd.contains("\nnobody:x:65534:65534:"), "{passwd}");
    let stamp = Stamp::read(&dir).expect("a stamp");
    assert_eq!(stamp.source, stamp::BUSYBOX);
    assert!(stamp.version.unwrap().starts_with("BusyBox v"));
    // busybox, the links, passwd, group and the stamp.
    let links = busybox::applets(Path::new(stamp.path.as_deref().unwrap()))
        .unwrap()
        .len();
    assert_eq!(*files, 1 + links + 3);

    // Again: the same stamp, nothing to do.
    let again = super::plan(&dir, &source).unwrap();
    assert_eq!(
        again.calls(),
        [format!("read \"{}/etc/underhood-release\"", dir.display())]
    );
    let inode = dir.metadata().unwrap().ino();
    assert_eq!(
        build(&again, &Narrator::quiet("test")).unwrap(),
        Built::UpToDate { dir: dir.clone() }
    );
    assert_eq!(dir.metadata().unwrap().ino(), inode);
}

#[test]
fn a_foreign_directory_is_refused_in_one_line_and_left_alone() {
    let tmp = scratch();
    let dir = tmp.path().join("photos");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("cat.jpg"), "meow").unwrap();
    let error = plan(&dir, &Source::Host).unwrap_err();
    assert_eq!(error.code(), steps::exit::USAGE);
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("{} is not empty", dir.display())),
        "{message}"
    );
    assert!(
        message.contains("give a new or empty directory"),
        "{message}"
    );
    assert!(!message.contains('\n'), "{message}");
    assert_eq!(names_in(&dir), ["cat.jpg"]);
    assert_eq!(names_in(tmp.path()), ["photos"]);

    // Files and symlinks are refused too.
    let file = tmp.path().join("file");
    std::fs::write(&file, "").unwrap();
    assert_eq!(plan(&file, &Source::Host).unwrap_err().code(), 2);
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&dir, &link).unwrap();
    assert_eq!(plan(&link, &Source::Host).unwrap_err().code(), 2);
    assert_eq!(plan(Path::new("/"), &Source::Host).unwrap_err().code(), 2);
}

#[test]
fn a_host_build_copies_programs_libraries_and_loader_at_host_paths() {
    let tmp = scratch();
    // An empty directory is fine to build into.
    let dir = tmp.path().join("host");
    std::fs::create_dir(&dir).unwrap();
    let plan = plan(&dir, &Source::Host).unwrap();
    let calls = calls(&plan);
    assert!(
        calls.contains(&"copy \"/bin/sh\" → \"STAGING/bin/sh\"".to_string()),
        "{calls:#?}"
    );
    let loader = match elf::read(Path::new("/bin/ls")).unwrap() {
        elf::Executable::Dynamic { interpreter } => Some(interpreter),
        _ => None,
    };
    if let Some(loader) = &loader {
        let copy = format!(
            "copy \"{}\" → \"STAGING{}\"",
            loader.display(),
            loader.display()
        );
        assert!(calls.contains(&copy), "{calls:#?}");
        let why = plan
            .steps()
            .iter()
            .find(|s| {
                matches!(
                    s,
                    Op::Copy {
                        role: Role::Library { .. },
                        ..
                    }
                )
            })
            .expect("a library")
            .why();
        assert!(why.starts_with("needed by sh"), "{why}");
    }
    assert_eq!(
        calls.last().unwrap(),
        &format!("rename(\"STAGING\", \"{}\")", dir.display())
    );

    let built = build(&plan, &Narrator::quiet("test")).unwrap();
    assert!(
        matches!(built, Built::Made { files, .. } if files > 5),
        "{built:?}"
    );
    assert!(dir.join("bin/sh").is_file());
    assert!(dir.join("bin/ls").is_file() || dir.join("usr/bin/ls").is_file());
    if let Some(loader) = &loader {
        let inside = dir.join(loader.strip_prefix("/").unwrap());
        let meta = inside.symlink_metadata().unwrap();
        assert!(meta.is_file(), "the loader is copied, not linked");
        assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
    }
    let stamp = Stamp::read(&dir).unwrap();
    assert_eq!(stamp.source, stamp::HOST_BINARIES);
    assert_eq!(stamp.path, None);
    assert_eq!(
        build(
            &super::plan(&dir, &Source::Host).unwrap(),
            &Narrator::quiet("t")
        )
        .unwrap(),
        Built::UpToDate { dir }
    );
}

#[test]
fn a_rootfs_from_another_source_is_swapped_out() {
    let tmp = scratch();
    let dir = tmp.path().join("rootfs");
    std::fs::create_dir(&dir).unwrap();
    let old = Stamp {
        layout: stamp::LAYOUT,
        source: stamp::BUSYBOX.into(),
        path: Some("/nowhere/busybox".into()),
        version: Some("BusyBox v0.1".into()),
        sha256: "00".repeat(32),
    };
    std::fs::create_dir(dir.join("etc")).unwrap();
    std::fs::write(dir.join(stamp::FILE), old.render()).unwrap();
    std::fs::write(dir.join("leftover"), "old").unwrap();
    let plan = plan(&dir, &Source::Host).unwrap();
    let calls = calls(&plan);
    let d = dir.display();
    assert_eq!(
        calls[calls.len() - 2..],
        [
            format!("renameat2(\"STAGING\", \"{d}\", RENAME_EXCHANGE)"),
            "rm -r \"STAGING\"".to_string(),
        ]
    );
    build(&plan, &Narrator::quiet("test")).unwrap();
    assert!(!dir.join("leftover").exists());
    assert_eq!(Stamp::read(&dir).unwrap().source, stamp::HOST_BINARIES);
    assert_eq!(names_in(tmp.path()), ["rootfs"]);
}

#[test]
fn a_failed_build_leaves_nothing_behind() {
    let tmp = scratch();
    let dir = tmp.path().join("rootfs");
    let good = plan(&dir, &Source::Host).unwrap();
    // The same plan, with a file that vanished from the host since.
    let mut broken = Plan::new();
    for op in good.steps() {
        match op {
            Op::Copy {
                root,
                path,
                mode,
                role,
                ..
            } if path == Path::new("bin/sh") => broken.push(Op::Copy {
                from: tmp.path().join("gone"),
                root: root.clone(),
                path: path.clone(),
                mode: *mode,
                role: role.clone(),
            }),
            other => broken.push(other.clone()),
        }
    }
    let error = build(&broken, &Narrator::quiet("test")).unwrap_err();
    assert_eq!(error.code(), steps::exit::SETUP);
    let message = error.to_string();
    assert!(message.contains("/gone\" → \""), "{message}");
    assert!(message.contains("(ENOENT)"), "{message}");
    assert!(
        names_in(tmp.path()).is_empty(),
        "{:?}",
        names_in(tmp.path())
    );
}

#[test]
fn concurrent_builds_of_one_dir_both_succeed() {
    let tmp = scratch();
    let dir = tmp.path().join("rootfs");
    let source = Source::detect(false).unwrap();
    // Both plan before either builds: each expects to make DIR.
    let plans: Vec<Plan<Op>> = (0..2).map(|_| plan(&dir, &source).unwrap()).collect();
    let results: Vec<Result<Built, Error>> = std::thread::scope(|scope| {
        let handles: Vec<_> = plans
            .iter()
            .map(|plan| scope.spawn(|| build(plan, &Narrator::quiet("test"))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let made = results
        .iter()
        .filter(|r| matches!(r, Ok(Built::Made { .. })))
        .count();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert!(made >= 1, "{results:?}");
    assert_eq!(names_in(tmp.path()), ["rootfs"]);
    assert!(Stamp::read(&dir).is_some());
}

#[test]
fn the_default_dir_is_a_cache() {
    let dir = default_dir();
    if nix::unistd::Uid::effective().is_root() {
        assert_eq!(dir, Path::new(SYSTEM_CACHE));
    } else {
        assert!(dir.ends_with(USER_CACHE), "{dir:?}");
    }
    assert!(dir.is_absolute());
}

#[test]
fn dry_run_shows_each_step_with_why_and_chapter() {
    let tmp = scratch();
    let plan = plan(&tmp.path().join("r"), &Source::Host).unwrap();
    let narrator = Narrator::new(
        "overlay-stack",
        steps::narrate::Mode::DryRun,
        steps::Palette::plain(),
    );
    let mut out = Vec::new();
    narrator.print_plan(&plan, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("nothing was done (--dry-run)"), "{text}");
    assert!(text.contains("[book: overlay/rootfs.md]"), "{text}");
    assert!(text.contains("found the way ldd finds it"), "{text}");
    assert!(names_in(tmp.path()).is_empty());
}

#[test]
fn leftovers_of_killed_builds_are_removed_but_no_live_ones() {
    let tmp = scratch();
    let dir = tmp.path().join("rootfs");
    let hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    let make = |name: &str, old: bool| {
        let path = tmp.path().join(name);
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("half"), "").unwrap();
        if old {
            std::fs::File::open(&path)
                .unwrap()
                .set_modified(hours_ago)
                .unwrap();
        }
        path
    };
    // No pid is above the kernel's pid_max (at most 2^22).
    let killed = make(".rootfs.staging-999999999-0", true);
    let fresh = make(".rootfs.staging-999999998-0", false);
    let running = make(&format!(".rootfs.staging-{}-99", std::process::id()), true);
    let other = make(".other.staging-999999999-0", true);
    let plan = plan(&dir, &Source::Host).unwrap();
    let removed: Vec<&Path> = plan
        .steps()
        .iter()
        .filter_map(|op| match op {
            Op::RemoveLeftover { path } => Some(path.as_path()),
            _ => None,
        })
        .collect();
    assert_eq!(removed, [killed.as_path()]);
    assert_eq!(plan.calls()[0], format!("rm -r \"{}\"", killed.display()));
    build(&plan, &Narrator::quiet("test")).unwrap();
    assert!(!killed.exists());
    assert!(fresh.exists() && running.exists() && other.exists());
}

/// A rootfs at `TMP/rootfs` whose stamp names `TMP/bin/busybox`, and the
/// record beside it of that file's fingerprint. The check by `stat(2)`
/// never runs or reads busybox, so a stand-in file will do.
fn recorded_rootfs(tmp: &Path) -> (PathBuf, PathBuf, Record) {
    let busybox = tmp.join("bin/busybox");
    std::fs::create_dir_all(tmp.join("bin")).unwrap();
    std::fs::write(&busybox, "a stand-in for busybox").unwrap();
    let dir = tmp.join("rootfs");
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    let stamp = Stamp {
        layout: stamp::LAYOUT,
        source: stamp::BUSYBOX.into(),
        path: Some(busybox.display().to_string()),
        version: Some("BusyBox v1.35.0".into()),
        sha256: "ab".repeat(32),
    };
    std::fs::write(dir.join(stamp::FILE), stamp.render()).unwrap();
    let record = Record {
        fingerprint: Fingerprint::of(&busybox).unwrap(),
        stamp,
    };
    write_record(&dir, &record);
    (dir, busybox, record)
}

fn write_record(dir: &Path, record: &Record) {
    std::fs::write(fingerprint::path_for(dir).unwrap(), record.render()).unwrap();
}

#[test]
fn an_unchanged_busybox_keeps_the_rootfs_on_stat_alone() {
    let tmp = scratch();
    let (dir, busybox, _) = recorded_rootfs(tmp.path());
    let plan = plan_if_unchanged(&dir, &busybox).expect("the record holds");
    assert_eq!(
        plan.calls(),
        [
            format!(
                "stat(\"{}\"): as in \"{}/.rootfs.source-stat\"",
                busybox.display(),
                tmp.path().display()
            ),
            format!("read \"{}/etc/underhood-release\"", dir.display()),
        ]
    );
    assert_eq!(
        build(&plan, &Narrator::quiet("test")).unwrap(),
        Built::UpToDate { dir: dir.clone() }
    );
    // Leftovers of killed builds are removed on this path too.
    let killed = tmp.path().join(".rootfs.staging-999999999-0");
    std::fs::create_dir(&killed).unwrap();
    std::fs::File::open(&killed)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(7200))
        .unwrap();
    let plan = plan_if_unchanged(&dir, &busybox).unwrap();
    assert_eq!(plan.calls()[0], format!("rm -r \"{}\"", killed.display()));
}

#[test]
fn a_changed_busybox_needs_the_long_check() {
    // Written in place: another size (and mtime and ctime).
    let tmp = scratch();
    let (dir, busybox, _) = recorded_rootfs(tmp.path());
    std::fs::write(&busybox, "a newer stand-in for busybox").unwrap();
    assert_eq!(plan_if_unchanged(&dir, &busybox), None);

    // Replaced by a file of the same size and contents: another inode.
    let tmp = scratch();
    let (dir, busybox, _) = recorded_rootfs(tmp.path());
    let new = tmp.path().join("bin/busybox.new");
    std::fs::copy(&busybox, &new).unwrap();
    std::fs::rename(&new, &busybox).unwrap();
    assert_eq!(plan_if_unchanged(&dir, &busybox), None);

    // Its mtime set back by hand, as `touch -d` or `cp -p` would.
    let tmp = scratch();
    let (dir, busybox, _) = recorded_rootfs(tmp.path());
    std::fs::File::options()
        .write(true)
        .open(&busybox)
        .unwrap()
        .set_modified(std::time::SystemTime::UNIX_EPOCH)
        .unwrap();
    assert_eq!(plan_if_unchanged(&dir, &busybox), None);

    // Gone.
    std::fs::remove_file(&busybox).unwrap();
    assert_eq!(plan_if_unchanged(&dir, &busybox), None);
}

#[test]
fn a_missing_or_foreign_record_needs_the_long_check() {
    let tmp = scratch();
    let (dir, busybox, record) = recorded_rootfs(tmp.path());
    let record_path = fingerprint::path_for(&dir).unwrap();

    // No record, or one cut short.
    std::fs::remove_file(&record_path).unwrap();
    assert_eq!(plan_if_unchanged(&dir, &busybox), None);
    let text = record.render();
    std::fs::write(&record_path, &text[..text.len() - 10]).unwrap();
    assert_eq!(plan_if_unchanged(&dir, &busybox), None);

    // A record from a builder of another layout.
    let mut older = record.clone();
    older.stamp.layout = stamp::LAYOUT - 1;
    write_record(&dir, &older);
    assert_eq!(plan_if_unchanged(&dir, &busybox), None);

    // The same file by another path: the stamp names its path.
    write_record(&dir, &record);
    let link = tmp.path().join("busybox-link");
    std::os::unix::fs::symlink(&busybox, &link).unwrap();
    assert_eq!(plan_if_unchanged(&dir, &link), None);
    assert!(plan_if_unchanged(&dir, &busybox).is_some());

    // DIR rebuilt from another source since (overlay-stack rootfs
    // --from-host): its stamp is not the recorded one.
    let host = Stamp {
        source: stamp::HOST_BINARIES.into(),
        path: None,
        version: None,
        ..record.stamp.clone()
    };
    std::fs::write(dir.join(stamp::FILE), host.render()).unwrap();
    assert_eq!(plan_if_unchanged(&dir, &busybox), None);

    // DIR removed.
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(plan_if_unchanged(&dir, &busybox), None);
}

#[test]
fn a_record_reads_back_whole_and_not_cut_short() {
    let tmp = scratch();
    let (_, _, record) = recorded_rootfs(tmp.path());
    let text = record.render();
    assert_eq!(Record::parse(&text), Some(record.clone()));
    // A crash mid-write leaves a prefix: none of them is a record.
    let whole = text.trim_end().len();
    for cut in 0..whole {
        assert_eq!(Record::parse(&text[..cut]), None, "{}", &text[..cut]);
    }
    // The rootfs's own stamp is no record.
    assert_eq!(Record::parse(&record.stamp.render()), None);
}

#[test]
fn a_file_changed_just_now_is_not_yet_settled() {
    let tmp = scratch();
    let file = tmp.path().join("busybox");
    std::fs::write(&file, "new").unwrap();
    let now = std::time::SystemTime::now();
    let fingerprint = Fingerprint::of(&file).unwrap();
    assert!(!fingerprint.settled_at(now));
    assert!(fingerprint.settled_at(now + fingerprint::SETTLE + std::time::Duration::from_secs(1)));
}

#[test]
fn the_long_check_remembers_busybox_for_the_next_run() {
    let Some(source) = static_busybox() else {
        return;
    };
    let Source::Busybox { path } = &source else {
        unreachable!()
    };
    let tmp = scratch();
    let dir = tmp.path().join("rootfs");
    let record_path = tmp.path().join(".rootfs.source-stat");
    let fingerprint = Fingerprint::of(path);
    assert_eq!(plan_if_unchanged(&dir, path), None);

    let plan = plan_remembering(&dir, &source, fingerprint).unwrap();
    let calls = calls(&plan);
    assert_eq!(
        calls[calls.len() - 2..],
        [
            format!("write \"{}\"", record_path.display()),
            format!("rename(\"STAGING\", \"{}\")", dir.display()),
        ]
    );
    build(&plan, &Narrator::quiet("test")).unwrap();
    let record = Record::read(&dir).expect("a record");
    assert_eq!(Some(record.stamp), Stamp::read(&dir));
    assert!(plan_if_unchanged(&dir, path).is_some());

    // Found up to date the long way, the record is written again.
    std::fs::remove_file(&record_path).unwrap();
    let again = plan_remembering(&dir, &source, fingerprint).unwrap();
    assert_eq!(
        again.calls(),
        [
            format!("write \"{}\"", record_path.display()),
            format!("read \"{}/etc/underhood-release\"", dir.display()),
        ]
    );
    build(&again, &Narrator::quiet("test")).unwrap();
    assert!(plan_if_unchanged(&dir, path).is_some());
}
