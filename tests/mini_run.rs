//! `mini-run run` against the real kernel: what a learner observes inside
//! a container (pid 1, its hostname, its mounts, Docker's capabilities,
//! masked and read-only /proc), the exit codes docker run gives, limits
//! that bite (an OOM kill), bind mounts, an image whose symlinks try to
//! aim mini-run's writes at the host, signals passed on, a container from
//! a spec file and a bad one named at its line and column — and, after every
//! run, that the container left nothing: no state directory, no cgroup.
//! Every container prints its hostname (its short id) first, so a test
//! can look for what that one container might have left.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use support::{
    Failed, Nobody, Requirement::*, Suite, cgroups_named, cmd, container, describe, ensure,
    ensure_eq, left_nothing, mini_run, no_network, read_until, rootfs_copy, run_for, scratch,
    spawn_group, stderr, stdout, toolkit_first, walkdir,
};

const NEEDS: &[support::Requirement] = &[Root, Busybox, Overlayfs];
/// Root only to become nobody; the overlay is mounted in a user namespace.
const ROOTLESS: &[support::Requirement] = &[Root, Busybox, UserNamespaces, RootlessOverlay];

/// `--userns` as root: the image's layers are idmapped.
const USERNS: &[support::Requirement] = &[Root, Busybox, Overlayfs, IdmappedMounts];

/// Where root's named volumes are.
const VOLUMES: &str = "/var/lib/underhood/volumes";
const NET: &[support::Requirement] = &[Root, Busybox, Overlayfs, Nft];

fn main() {
    support::bin("mini-run");
    let mut suite = Suite::new();
    suite.test(
        "the_command_is_pid_1_with_the_short_id_as_hostname",
        NEEDS,
        pid_1,
    );
    suite.test("exit_codes_are_docker_run_s", NEEDS, exit_codes);
    suite.test("a_memory_limit_bites_with_an_oom_kill", NEEDS, oom_kill);
    suite.test("the_root_is_the_overlay_after_pivot_root", NEEDS, mounts);
    suite.test("docker_s_security_defaults_hold", NEEDS, security);
    suite.test(
        "a_workdir_through_a_leaked_descriptor_cannot_reach_the_host",
        NEEDS,
        leaked_descriptors,
    );
    suite.test("env_workdir_and_user", NEEDS, env_workdir_user);
    suite.test("bind_mounts_share_and_ro_refuses_writes", NEEDS, volumes);
    suite.test(
        "a_named_volume_outlives_its_container_until_rm",
        NEEDS,
        named_volumes,
    );
    suite.test(
        "an_image_symlink_cannot_aim_a_write_at_the_host",
        NEEDS,
        symlinked_etc,
    );
    suite.test(
        "sigterm_reaches_the_container_and_its_status_is_returned",
        NEEDS,
        sigterm,
    );
    suite.test(
        "with_init_the_command_is_pid_2_and_sigterm_reaches_it",
        NEEDS,
        init_signals,
    );
    suite.test_with_tools(
        "orphans_stay_zombies_under_a_plain_pid_1_and_init_reaps_them",
        NEEDS,
        &["nsenter"],
        orphans,
    );
    suite.test(
        "a_killed_mini_run_takes_its_container_and_cleanup_the_rest",
        NEEDS,
        killed,
    );
    suite.test_with_tools(
        "two_dozen_containers_at_once_get_distinct_addresses_and_go",
        NET,
        &["unshare", "nsenter", "ip", "nft"],
        two_dozen,
    );
    suite.test_with_tools(
        "cleanup_after_a_killed_mini_run_gives_back_its_address_and_ports",
        NET,
        &["unshare", "nsenter", "ip", "nft"],
        killed_on_a_bridge,
    );
    suite.test_with_tools(
        "the_default_bridge_is_made_on_first_use_with_nat",
        NET,
        &["unshare", "ip", "nft"],
        default_bridge,
    );
    suite.test_with_tools(
        "a_published_port_answers_and_goes_with_the_container",
        NET,
        &["unshare", "nsenter", "ip", "nft", "curl"],
        published_port,
    );
    suite.test(
        "with_t_the_container_has_a_terminal_of_its_own",
        NEEDS,
        terminal,
    );
    suite.test_with_tools(
        "without_t_the_host_terminal_is_no_controlling_terminal_and_ctrl_c_is_passed_on",
        NEEDS,
        &["setsid"],
        no_terminal,
    );
    suite.test(
        "a_closed_narration_pipe_leaves_nothing_behind",
        NEEDS,
        closed_narration,
    );
    suite.test(
        "explain_prints_the_same_container_by_hand_and_it_runs",
        NEEDS,
        by_hand,
    );
    suite.test_with_tools(
        "by_hand_on_a_bridge_the_chain_connects_and_gives_back",
        NET,
        &["unshare", "nsenter", "ip", "nft"],
        by_hand_on_a_bridge,
    );
    suite.test(
        "a_failure_or_a_kill_after_any_step_leaves_nothing",
        NEEDS,
        faults,
    );
    suite.test_with_tools(
        "on_a_bridge_a_failure_or_a_kill_after_any_step_leaves_nothing",
        NET,
        &["unshare", "nsenter", "ip", "nft"],
        faults_on_a_bridge,
    );
    suite.test("dry_run_makes_nothing", &[Busybox], dry_run);
    suite.test(
        "with_userns_root_inside_is_a_stranger_outside",
        USERNS,
        userns,
    );
    suite.test(
        "with_userns_an_idmapped_rootfs_keeps_the_container_s_ids_on_disk",
        USERNS,
        userns_rootfs,
    );
    suite.test(
        "with_userns_a_failure_or_a_kill_after_any_step_leaves_nothing",
        USERNS,
        userns_faults,
    );
    suite.test_with_tools(
        "rootless_root_inside_is_the_user_outside",
        ROOTLESS,
        &["setpriv"],
        rootless,
    );
    suite.test_with_tools(
        "rootless_what_needs_root_is_refused_by_its_flag",
        &[Root],
        &["setpriv"],
        rootless_refusals,
    );
    suite.test_with_tools(
        "rootless_a_failure_or_a_kill_after_any_step_leaves_nothing",
        ROOTLESS,
        &["setpriv"],
        rootless_faults,
    );
    suite.test_with_tools(
        "rootless_limits_go_into_a_delegated_cgroup",
        &[Root, Busybox, UserNamespaces, CgroupV2],
        &["setpriv", "sh"],
        delegated_cgroup,
    );
    suite.test(
        "a_spec_file_runs_the_container_it_describes",
        NEEDS,
        spec_file,
    );
    suite.test(
        "a_bad_spec_file_is_named_at_its_line_and_column",
        &[],
        bad_spec_file,
    );
    suite.test(
        "bad_input_to_run_is_one_line_and_a_documented_code",
        NEEDS,
        bad_input,
    );
    suite.test_with_tools(
        "where_user_namespaces_are_refused_rootless_says_where_to_look",
        &[Root, Busybox, UserNamespaces],
        &["unshare"],
        user_namespaces_refused,
    );
    suite.run()
}

fn pid_1() -> Result<(), Failed> {
    let (out, lines) = container(
        &[],
        "echo $$; cat /etc/hostname; ps -o pid,comm | tail -n +2",
    )?;
    ensure(out.status.success(), describe(&out))?;
    let id = stdout(&out).lines().next().unwrap_or_default().to_string();
    ensure_eq(&lines[0], &"1".to_string(), "the shell's pid")?;
    ensure_eq(&lines[1], &id, "/etc/hostname")?;
    // ps sees the container's processes only: sh (pid 1), ps and tail,
    // with the pids a new namespace hands out first.
    let pids: Vec<u32> = lines[2..]
        .iter()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    ensure(
        pids.first() == Some(&1) && pids.len() <= 3 && pids.iter().all(|p| *p < 10),
        format!("ps inside showed {:?}\n{}", &lines[2..], describe(&out)),
    )
}

fn exit_codes() -> Result<(), Failed> {
    let (out, _) = container(&[], "exit 3")?;
    ensure_eq(&out.status.code(), &Some(3), "the command's own status")?;
    let (out, _) = container(&[], "exec no-such-program")?;
    ensure_eq(
        &out.status.code(),
        &Some(127),
        "a shell's exec of a missing program",
    )?;
    for (args, code, says) in [
        (
            vec!["--", "no-such-program"],
            127,
            "exec \"no-such-program\": not found in the container's $PATH",
        ),
        (
            vec!["--", "/etc/passwd"],
            126,
            "exec \"/etc/passwd\": permission denied",
        ),
        (
            vec!["--memory", "abc", "--", "true"],
            125,
            "--memory: 'abc' is not a size",
        ),
        (
            vec!["--network", "moon", "--", "true"],
            125,
            "no bridge moon of the toolkit's",
        ),
        (
            vec!["--network", "a/b", "--", "true"],
            125,
            "--network \"a/b\": not a network",
        ),
        (
            vec!["--network", "host", "-p", "8080:80", "--", "true"],
            125,
            "-p publishes a port on a bridge",
        ),
        (vec!["--bogus"], 125, "unexpected argument '--bogus'"),
        (
            vec!["-w", "/etc/passwd", "--", "true"],
            125,
            "chdir(\"/etc/passwd\"): not a directory",
        ),
    ] {
        let out = mini_run(&args)?;
        ensure_eq(
            &out.status.code(),
            &Some(code),
            &format!("mini-run run {args:?}"),
        )?;
        let err = stderr(&out);
        ensure(
            err.lines().count() == 1 && err.starts_with("mini-run: ") && err.contains(says),
            format!("expected one line saying {says:?}\n{}", describe(&out)),
        )?;
    }
    Ok(())
}

fn oom_kill() -> Result<(), Failed> {
    // A shell variable holding 100 MiB cannot fit in 32 MiB: the kernel's
    // OOM killer ends pid 1, and the container's status is 128 + SIGKILL.
    let (out, lines) = container(
        &["--memory", "32m"],
        "cat /sys/fs/cgroup/memory.max 2>/dev/null; x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived",
    )?;
    ensure(
        out.status.code() == Some(137),
        format!("status after the OOM kill\n{}", describe(&out)),
    )?;
    ensure(!lines.iter().any(|l| l == "survived"), describe(&out))?;
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        ensure_eq(
            &lines.first().cloned(),
            &Some("33554432".to_string()),
            "memory.max inside (cgroup v2)",
        )?;
    }
    Ok(())
}

fn mounts() -> Result<(), Failed> {
    let (out, lines) = container(&[], "cat /proc/self/mountinfo")?;
    ensure(out.status.success(), describe(&out))?;
    let point = |line: &String| line.split_whitespace().nth(4).unwrap_or("").to_string();
    let root = lines
        .iter()
        .find(|l| point(l) == "/")
        .ok_or("no mount at /")?;
    ensure(
        root.contains(" - overlay overlay "),
        format!("/ is not the overlay: {root}"),
    )?;
    for (target, kind) in [
        ("/proc", "proc"),
        ("/dev", "tmpfs"),
        ("/dev/pts", "devpts"),
        ("/dev/shm", "tmpfs"),
        ("/dev/mqueue", "mqueue"),
        ("/sys", "sysfs"),
    ] {
        let line = lines
            .iter()
            .find(|l| point(l) == target)
            .ok_or(format!("no {target} mount\n{}", describe(&out)))?;
        ensure(
            line.contains(&format!(" - {kind} ")),
            format!("{target} is not {kind}: {line}"),
        )?;
    }
    let sys = lines
        .iter()
        .find(|l| point(l) == "/sys")
        .expect("found above");
    ensure(
        sys.split_whitespace()
            .nth(5)
            .unwrap_or("")
            .starts_with("ro"),
        format!("/sys is writable: {sys}"),
    )?;
    // The host's root is gone: no mount outside the container's own.
    ensure(
        !lines
            .iter()
            .any(|l| point(l).starts_with("/run/underhood") || point(l) == "/.oldroot"),
        format!("a host path is still mounted\n{}", describe(&out)),
    )
}

fn security() -> Result<(), Failed> {
    let (out, lines) = container(
        &[],
        "grep -E '^(CapBnd|CapEff|NoNewPrivs)' /proc/self/status; \
         mount -t tmpfs t /tmp 2>/dev/null && echo mounted; \
         ls /proc/self/fd; \
         grep -q ' /proc/sys proc ro' /proc/self/mounts && echo proc-sys-ro; \
         test -s /proc/kcore || echo kcore-hidden",
    )?;
    ensure(out.status.success(), describe(&out))?;
    let shown = |want: &str| {
        lines.iter().any(|l| {
            l.replace('\t', " ")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                == want
        })
    };
    // Docker's defaults but mknod: chown, dac_override, fowner, fsetid,
    // kill, setgid, setuid, setpcap, net_bind_service, net_raw,
    // sys_chroot, audit_write, setfcap.
    ensure(
        shown("CapBnd: 00000000a00425fb"),
        format!("bounding set\n{}", describe(&out)),
    )?;
    ensure(
        shown("CapEff: 00000000a00425fb"),
        format!("effective set\n{}", describe(&out)),
    )?;
    ensure(
        shown("NoNewPrivs: 1"),
        format!("no_new_privs\n{}", describe(&out)),
    )?;
    ensure(!shown("mounted"), "root in the container could mount")?;
    ensure(
        shown("proc-sys-ro"),
        format!("/proc/sys is not read-only\n{}", describe(&out)),
    )?;
    ensure(shown("kcore-hidden"), "/proc/kcore is readable")?;
    // 0, 1, 2 and the directory ls itself opened: nothing of mini-run's.
    let fds: Vec<&String> = lines
        .iter()
        .filter(|l| l.chars().all(|c| c.is_ascii_digit()))
        .collect();
    ensure(
        fds.len() == 4,
        format!("descriptors open in the container: {fds:?}"),
    )
}

fn leaked_descriptors() -> Result<(), Failed> {
    // CVE-2024-21626: runc leaked a host directory's descriptor into the
    // container, and `-w /proc/self/fd/N` started the command in it, from
    // where `..` walks to the host's root. The host has
    // /run/underhood/containers while a container runs; the rootfs has not.
    for fd in 3..=12 {
        let workdir = format!("/proc/self/fd/{fd}");
        let out = mini_run(&[
            "-w",
            &workdir,
            "--",
            "sh",
            "-c",
            "hostname; cd ../../../../../..; test -e run/underhood/containers && echo ESCAPED",
        ])?;
        ensure(
            !stdout(&out).contains("ESCAPED"),
            format!("-w {workdir} reached the host\n{}", describe(&out)),
        )?;
        if let Some(id) = stdout(&out).lines().next() {
            left_nothing(id)?;
        }
        // Refused with one line, or (were fd N a directory inside) run.
        ensure(
            out.status.success()
                || (out.status.code() == Some(125) && stderr(&out).lines().count() == 1),
            format!("-w {workdir}\n{}", describe(&out)),
        )?;
    }
    Ok(())
}

fn env_workdir_user() -> Result<(), Failed> {
    let (out, lines) = container(
        &["-e", "GREETING=hello", "-w", "/srv/app", "-u", "1000:1001"],
        "echo $GREETING; pwd; id -u; id -g; grep CapEff /proc/self/status",
    )?;
    ensure(out.status.success(), describe(&out))?;
    ensure_eq(
        &lines[..4].to_vec(),
        &["hello", "/srv/app", "1000", "1001"]
            .map(String::from)
            .to_vec(),
        "env, workdir, uid, gid",
    )?;
    ensure(
        lines[4].ends_with("0000000000000000"),
        format!("a non-root user keeps capabilities: {}", lines[4]),
    )
}

fn volumes() -> Result<(), Failed> {
    let dir = scratch();
    std::fs::write(dir.path().join("from-host"), "hi\n")?;
    // A mount inside the :ro volume's source must be read-only too.
    let inner = dir.path().join("inner");
    std::fs::create_dir(&inner)?;
    nix::mount::mount(
        Some("tmpfs"),
        &inner,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=1m"),
    )?;
    let _inner = support::MountGuard(inner.clone());
    let rw = format!("{}:/data", dir.path().display());
    let ro = format!("{}:/ro:ro", dir.path().display());
    let (out, lines) = container(
        &["-v", &rw, "-v", &ro],
        "cat /data/from-host; echo made > /data/from-container; \
         echo x > /ro/nope 2>/dev/null || echo refused; \
         echo x > /ro/inner/nope 2>/dev/null || echo refused-inside",
    )?;
    ensure(out.status.success(), describe(&out))?;
    ensure_eq(
        &lines,
        &["hi", "refused", "refused-inside"]
            .map(String::from)
            .to_vec(),
        "inside",
    )?;
    ensure(
        !inner.join("nope").exists(),
        "a write through :ro reached a mount inside the volume",
    )?;
    ensure_eq(
        &std::fs::read_to_string(dir.path().join("from-container")).ok(),
        &Some("made\n".to_string()),
        "the write is on the host",
    )?;
    ensure(
        !dir.path().join("nope").exists(),
        "a write through :ro reached the host",
    )
}

/// A copy of the default rootfs to change.
/// Removes a named volume when dropped, whatever the test did.
struct VolumeGuard(String);

impl Drop for VolumeGuard {
    fn drop(&mut self) {
        let _ = run_for(cmd("mini-run").args(["volume", "rm", &self.0]), 30);
    }
}

fn named_volumes() -> Result<(), Failed> {
    let volume = VolumeGuard(format!("umr-{}", std::process::id()));
    let name = volume.0.as_str();
    let dir = Path::new(VOLUMES).join(name);
    let (_, lines) = container(&["-v", &format!("{name}:/data")], "echo kept > /data/note")?;
    ensure(lines.is_empty(), format!("{lines:?}"))?;
    // The next container finds what the last one wrote.
    let (_, lines) = container(
        &["-v", &format!("{name}:/data:ro")],
        "cat /data/note; echo x 2>/dev/null > /data/x || echo refused",
    )?;
    ensure_eq(
        &lines,
        &vec!["kept".to_string(), "refused".into()],
        "the second container",
    )?;
    let listed = |in_use: &str| -> Result<(), Failed> {
        let out = run_for(cmd("mini-run").args(["volume", "ls"]), 30)?;
        ensure(
            stdout(&out).lines().any(|l| {
                l.split_whitespace().collect::<Vec<_>>() == [name, in_use, &dir.to_string_lossy()]
            }),
            format!("volume ls: no {name} {in_use}\n{}", describe(&out)),
        )
    };
    listed("no")?;
    // In use by a running container: rm is refused, and removes nothing.
    let (mut child, _reader, id) = started_with(
        &[],
        &["-v", &format!("{name}:/data")],
        "hostname; echo ready; read line; exit 0",
    )?;
    listed("yes")?;
    let out = run_for(cmd("mini-run").args(["volume", "rm", name]), 30)?;
    ensure_eq(&out.status.code(), &Some(1), &describe(&out))?;
    ensure(stderr(&out).contains("in use"), describe(&out))?;
    ensure(dir.join("note").exists(), "rm removed a volume in use")?;
    ended(&mut child, &id)?;
    let out = run_for(cmd("mini-run").args(["volume", "rm", name]), 30)?;
    ensure(out.status.success(), describe(&out))?;
    ensure(!dir.exists(), "volume rm left the directory")?;
    // A run that fails takes back the volume it made.
    let out = mini_run(&["-v", &format!("{name}:/data"), "--", "no-such-command"])?;
    ensure_eq(&out.status.code(), &Some(127), &describe(&out))?;
    ensure(!dir.exists(), "a failed run left the volume it made")
}

fn symlinked_etc() -> Result<(), Failed> {
    let dir = scratch();
    let root = rootfs_copy(dir.path())?;
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside)?;
    // The image's /etc/hosts points far above its root, at a host path:
    // mini-run must make and bind the file inside the rootfs instead.
    let _ = std::fs::remove_file(root.join("etc/hosts"));
    let escape = format!("../../../../../../../..{}/hosts", outside.display());
    std::os::unix::fs::symlink(&escape, root.join("etc/hosts"))?;
    std::os::unix::fs::symlink("/", root.join("escape"))?;
    let volume = format!("{}:/escape/data", dir.path().join("outside").display());
    // A directory target that is a dangling link to a host path.
    let dangling = format!("../../../../../../../..{}/made", outside.display());
    std::os::unix::fs::symlink(&dangling, root.join("cache"))?;
    let cache = format!("{}:/cache:ro", dir.path().join("outside").display());
    let (out, lines) = container(
        &[
            "--rootfs",
            root.to_str().unwrap(),
            "-v",
            &volume,
            "-v",
            &cache,
        ],
        "grep -c localhost /etc/hosts",
    )?;
    ensure(out.status.success(), describe(&out))?;
    ensure_eq(
        &lines,
        &vec!["2".to_string()],
        "the container's own /etc/hosts",
    )?;
    ensure(
        !outside.join("hosts").exists(),
        "mini-run created a file on the host through the image's symlink",
    )?;
    ensure(
        !outside.join("made").exists(),
        "mini-run made a directory on the host through the image's symlink",
    )?;
    ensure(
        root.join(outside.strip_prefix("/").unwrap())
            .join("made")
            .is_dir(),
        "the dangling link's directory was not made inside the rootfs",
    )?;
    // The volume went where / means the rootfs: into it, not to the host's /data.
    ensure(
        root.join("data").is_dir(),
        "the volume's target was not made inside the rootfs",
    )?;
    ensure(
        !Path::new("/data").exists() || Path::new("/data").is_dir(),
        "host /data touched",
    )
}

/// A container started in the background: mini-run, its stdout, and the
/// container's short id.
type Started = (
    support::ChildGuard,
    BufReader<std::process::ChildStdout>,
    String,
);

/// A container running `script` in the background, once it printed its
/// short id and then `ready`.
fn started(script: &str) -> Result<Started, Failed> {
    started_with(&[], &[], script)
}

/// [`started`], with mini-run's own options (before `run`) and `run`'s
/// first; the container's stdin is a pipe of the test's.
fn started_with(options: &[&str], run: &[&str], script: &str) -> Result<Started, Failed> {
    start(
        cmd("mini-run")
            .args(options)
            .args(["run", "--rm"])
            .args(no_network(run))
            .args(run)
            .args(["--", "sh", "-c", script]),
    )
}

/// Spawns `command`, a container whose script prints its short id and
/// then `ready`, and waits for both.
fn start(command: &mut std::process::Command) -> Result<Started, Failed> {
    let mut child = spawn_group(
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )?;
    let mut reader = BufReader::new(child.0.stdout.take().ok_or("no stdout")?);
    let mut id = String::new();
    reader.read_line(&mut id)?;
    let mut ready = String::new();
    reader.read_line(&mut ready)?;
    ensure_eq(&ready.trim(), &"ready", "the container started")?;
    Ok((child, reader, id.trim().to_string()))
}

fn sigterm() -> Result<(), Failed> {
    // pid 1 ignores signals it has no handler for; this one has one.
    let container = started(
        "trap 'echo got-term; exit 7' TERM; hostname; echo ready; while :; do sleep 0.1; done",
    )?;
    let id = container.2.clone();
    let (code, rest) = signalled(container, nix::sys::signal::Signal::SIGTERM)?;
    ensure_eq(&code, &Some(7), "the container's status")?;
    ensure_eq(&rest.trim(), &"got-term", "the trap ran")?;
    left_nothing(&id)
}

/// Closes a started container's stdin, which its script waits on, and
/// checks that it ended with 0 and left nothing.
fn ended(child: &mut support::ChildGuard, id: &str) -> Result<(), Failed> {
    drop(child.0.stdin.take());
    let status = child.0.wait()?;
    ensure_eq(&status.code(), &Some(0), "the container's status")?;
    left_nothing(id)
}

/// Sends `signal` to a started container's mini-run and waits for it:
/// its exit code, and what the container printed after `ready`.
fn signalled(
    (mut child, mut reader, _): Started,
    signal: nix::sys::signal::Signal,
) -> Result<(Option<i32>, String), Failed> {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.0.id() as i32), signal)?;
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest)?;
    Ok((child.0.wait()?.code(), rest))
}

fn init_signals() -> Result<(), Failed> {
    let (_, lines) = container(&["--init"], "ps -o pid,comm")?;
    ensure_eq(
        &lines
            .iter()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>(),
        &vec![
            "PID COMMAND".to_string(),
            "1 mini-run".into(),
            "2 ps".into(),
        ],
        "ps inside: the init, then the command",
    )?;
    // The init's binary is mini-run's, on the host: not to be read.
    let (_, lines) = container(&["--init"], "cat /proc/1/exe > /dev/null || echo refused")?;
    ensure_eq(&lines, &vec!["refused".to_string()], "reading /proc/1/exe")?;
    // sleep has no handler for SIGTERM; as pid 2 it needs none.
    let container = started_with(&[], &["--init"], "hostname; echo ready; exec sleep 1000")?;
    let id = container.2.clone();
    let (code, _) = signalled(container, nix::sys::signal::Signal::SIGTERM)?;
    ensure_eq(
        &code,
        &Some(143),
        "128 + SIGTERM, as docker run --init gives",
    )?;
    left_nothing(&id)
}

/// The host pid of the container's pid 1: mini-run's one child.
fn pid_1_on_host(mini_run: &std::process::Child) -> Result<String, Failed> {
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", mini_run.id()))?;
    Ok(children
        .split_whitespace()
        .next()
        .ok_or("mini-run has no child")?
        .to_string())
}

fn orphans() -> Result<(), Failed> {
    // In the container's namespaces, a subshell starts a `cat` in the
    // background and exits: that `cat` is an orphan, and the kernel gives
    // it to pid 1. Let go only then (had it ended first, the subshell
    // could have reaped it), it is a zombie until pid 1 waits for it. The
    // script waits (up to 10 s) for either outcome.
    let script = |outcome: &str| {
        format!(
            "mkfifo /tmp/go; (cat /tmp/go > /dev/null & echo $! > /tmp/orphan); \
             p=$(cat /tmp/orphan); echo go > /tmp/go; i=0; \
             while [ $i -lt 200 ]; do \
               s=$(cut -d' ' -f3 /proc/$p/stat 2>/dev/null); \
               case {outcome}:$s in zombie:Z) echo zombie; exit;; reaped:) echo reaped; exit;; esac; \
               sleep 0.05; i=$((i+1)); \
             done; echo \"state $s\""
        )
    };
    // pid 1 is cat, which never waits; then mini-run's init, which does.
    for (run, outcome) in [(&[][..], "zombie"), (&["--init"][..], "reaped")] {
        let (mut child, _reader, id) = started_with(&[], run, "hostname; echo ready; exec cat")?;
        let pid = pid_1_on_host(&child.0)?;
        if run.is_empty() {
            // `ready` comes just before the shell execs cat: a shell
            // still there would reap the orphan itself.
            let comm = format!("/proc/{pid}/comm");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while std::fs::read_to_string(&comm)?.trim() != "cat" {
                ensure(
                    std::time::Instant::now() < deadline,
                    "pid 1 never became cat",
                )?;
                std::thread::yield_now();
            }
        }
        let out = run_for(
            std::process::Command::new("nsenter").args([
                "-t",
                &pid,
                "-p",
                "-m",
                "--",
                "sh",
                "-c",
                &script(outcome),
            ]),
            30,
        )?;
        ensure_eq(
            &stdout(&out).trim(),
            &outcome,
            &format!("the orphan under {run:?}\n{}", describe(&out)),
        )?;
        ended(&mut child, &id)?;
    }
    Ok(())
}

fn terminal() -> Result<(), Failed> {
    use nix::sys::termios::{LocalFlags, tcgetattr};
    use std::os::fd::AsFd;
    // The test stands for a learner's terminal emulator: mini-run's stdin,
    // stdout and stderr are the slave of a pty of the test's, 40 rows by
    // 100 columns, in the usual cooked mode with echo.
    let size = nix::pty::Winsize {
        ws_row: 40,
        ws_col: 100,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size), None)?;
    let master = std::fs::File::from(pty.master);
    let slave = std::fs::File::from(pty.slave);
    let before = tcgetattr(slave.as_fd())?;
    let mut child = spawn_group(
        cmd("mini-run")
            .args(["run", "--rm", "--network", "none", "-it", "--"])
            .args([
                "sh",
                "-c",
                "hostname; tty; stty size; read line; stty size; echo \"got $line\"; exit 7",
            ])
            .stdin(slave.try_clone()?)
            .stdout(slave.try_clone()?)
            .stderr(slave.try_clone()?),
    )?;
    let mut seen = String::new();
    read_until(&master, &mut seen, "40 100")?;
    ensure(seen.contains("/dev/pts/0"), format!("tty inside:\n{seen}"))?;
    // The host's terminal is raw while the container runs: no echo, no
    // line editing of its own; the container's terminal does both.
    let during = tcgetattr(slave.as_fd())?;
    ensure(
        !during
            .local_flags
            .intersects(LocalFlags::ECHO | LocalFlags::ICANON),
        "the host's terminal is not in raw mode",
    )?;
    // A resize, then SIGWINCH, as a terminal emulator sends them.
    let bigger = libc_winsize(50, 120);
    steps::sys::set_window_size(master.as_fd(), &bigger)?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.0.id() as i32),
        nix::sys::signal::Signal::SIGWINCH,
    )?;
    std::io::Write::write_all(&mut &master, b"hello\n")?;
    read_until(&master, &mut seen, "got hello")?;
    ensure(
        seen.contains("50 120"),
        format!("the new size inside:\n{seen}"),
    )?;
    let status = child.0.wait()?;
    ensure_eq(&status.code(), &Some(7), "the container's status")?;
    let after = tcgetattr(slave.as_fd())?;
    ensure_eq(
        &after.local_flags,
        &before.local_flags,
        "the host's terminal put back as it was",
    )?;
    left_nothing(seen.split_whitespace().next().ok_or("no output")?)
}

fn no_terminal() -> Result<(), Failed> {
    // mini-run in a terminal that is its controlling terminal, as in a
    // learner's shell (setsid --ctty makes the pty the session's). The
    // container shares the terminal as its stdin, stdout and stderr, but
    // not as its controlling terminal (field 7 of /proc/self/stat, tty_nr,
    // is 0): with it, ioctl(TIOCSTI) could type commands into the shell
    // that waits for mini-run. Ctrl-C then reaches mini-run alone, which
    // passes it on.
    let pty = nix::pty::openpty(None, None)?;
    let master = std::fs::File::from(pty.master);
    let slave = std::fs::File::from(pty.slave);
    let child = std::process::Command::new("setsid")
        .arg("--ctty")
        .arg(support::bin("mini-run"))
        .args(["run", "--rm", "--network", "none", "--", "sh", "-c"])
        .arg(
            "hostname; echo \"tty_nr $(cut -d' ' -f7 /proc/self/stat)\"; \
             trap 'echo got-int; exit 9' INT; echo ready; while :; do sleep 0.1; done",
        )
        .stdin(slave.try_clone()?)
        .stdout(slave.try_clone()?)
        .stderr(slave.try_clone()?)
        .spawn()?;
    // setsid, not a group leader here, execs mini-run without a fork:
    // the guard's group is mini-run's session.
    let mut child = support::ChildGuard(child);
    drop(slave);
    let mut seen = String::new();
    read_until(&master, &mut seen, "ready")?;
    ensure(
        seen.lines().any(|l| l.trim() == "tty_nr 0"),
        format!("the container has a controlling terminal:\n{seen}"),
    )?;
    std::io::Write::write_all(&mut &master, b"\x03")?;
    read_until(&master, &mut seen, "got-int")?;
    let status = child.0.wait()?;
    ensure_eq(&status.code(), &Some(9), "the container's status")?;
    left_nothing(seen.split_whitespace().next().ok_or("no output")?)
}

fn libc_winsize(rows: u16, cols: u16) -> nix::libc::winsize {
    nix::libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

fn closed_narration() -> Result<(), Failed> {
    // `mini-run --explain run … 2>&1 | head`: the reader of the narration
    // goes away while the container runs, and mini-run still has steps to
    // tell (and to take: the cgroup and state to remove).
    let (mut child, mut reader, id) = started_with(
        &["--explain"],
        &[],
        "hostname; echo ready; read line; echo $line",
    )?;
    drop(child.0.stderr.take());
    let mut stdin = child.0.stdin.take().ok_or("no stdin")?;
    std::io::Write::write_all(&mut stdin, b"go\n")?;
    drop(stdin);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest)?;
    let status = child.0.wait()?;
    ensure_eq(&rest.trim(), &"go", "the container read its stdin")?;
    ensure_eq(&status.code(), &Some(0), "mini-run's status")?;
    left_nothing(&id)
}

/// The chain `--explain` prints, from its stderr: the indented lines
/// under `[mini-run] by hand`.
fn chain_of(out: &Output) -> Result<String, Failed> {
    let text = stderr(out);
    let mut lines = text
        .lines()
        .skip_while(|l| !l.starts_with("[mini-run] by hand"))
        .skip(1)
        .map_while(|l| l.strip_prefix("    ").filter(|_| !l.starts_with("     ")));
    let chain: Vec<&str> = lines.by_ref().collect();
    ensure(!chain.is_empty(), format!("no chain in\n{}", describe(out)))?;
    Ok(chain.join("\n") + "\n")
}

/// Runs `chain` with sh in `dir`, the toolkit's programs first in PATH,
/// under `prefix` (nsenter into a sandbox, say).
fn run_chain(prefix: &[&str], dir: &Path, chain: &str) -> Result<Output, Failed> {
    std::fs::write(dir.join("chain.sh"), chain)?;
    let (program, rest) = match prefix.split_first() {
        Some((p, rest)) => (*p, rest),
        None => ("sh", &[][..]),
    };
    let mut command = std::process::Command::new(program);
    command.args(rest);
    if !prefix.is_empty() {
        command.arg("sh");
    }
    run_for(
        command
            .arg("chain.sh")
            .current_dir(dir)
            .env("PATH", toolkit_first()),
        60,
    )
}

/// No mount is left under `dir`.
fn no_mounts_under(dir: &Path) -> Result<(), Failed> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
    let left: Vec<&str> = mounts
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(4)
                .is_some_and(|m| m.starts_with(&*dir.to_string_lossy()))
        })
        .collect();
    ensure(left.is_empty(), format!("mounts left: {left:?}"))
}

fn by_hand() -> Result<(), Failed> {
    let dir = scratch();
    let script = "echo \"$GREETING: pid $$ on $(hostname) in $(pwd)\"; cat /data/note";
    std::fs::create_dir(dir.path().join("data"))?;
    std::fs::write(dir.path().join("data/note"), "from a volume\n")?;
    let volume = format!("{}/data:/data:ro", dir.path().display());
    let out = run_for(
        cmd("mini-run")
            .args([
                "--explain",
                "run",
                "--rm",
                "--network",
                "none",
                "--memory",
                "32m",
            ])
            .args([
                "--hostname",
                "hand",
                "-e",
                "GREETING=hi there",
                "-w",
                "/srv",
            ])
            .args(["-v", &volume, "--", "sh", "-c", script]),
        60,
    )?;
    ensure(out.status.success(), describe(&out))?;
    let want = "hi there: pid 1 on hand in /srv\nfrom a volume\n";
    ensure_eq(&stdout(&out).as_ref(), &want, "mini-run's container")?;
    let chain = chain_of(&out)?;
    for tool in [
        "overlay-stack mount",
        "cg-limit --memory 32M",
        "ns-unshare --fork",
        "overlay-stack umount",
    ] {
        ensure(chain.contains(tool), format!("no {tool} in\n{chain}"))?;
    }
    // The same, by hand: the same output, and nothing left.
    let work = dir.path().join("by-hand");
    std::fs::create_dir(&work)?;
    let out = run_chain(&[], &work, &chain)?;
    ensure(out.status.success(), describe(&out))?;
    ensure_eq(
        &stdout(&out).as_ref(),
        &want,
        &format!("the chain's container\n{chain}"),
    )?;
    no_mounts_under(dir.path())?;
    let name = chain
        .split_whitespace()
        .skip_while(|w| *w != "--name")
        .nth(1)
        .ok_or("no --name in the chain")?;
    ensure(cgroups_named(name).is_empty(), "cg-limit's cgroup is left")
}

fn by_hand_on_a_bridge() -> Result<(), Failed> {
    let sandbox = NetSandbox::new()?;
    let out = support::run(&mut sandbox.command(&["--explain"], "ip -4 -o addr show eth0"))?;
    ensure(out.status.success(), describe(&out))?;
    let chain = chain_of(&out)?;
    let work = scratch();
    let netns = format!("--net={}", sandbox.netns().display());
    let out = run_chain(&["nsenter", &netns], work.path(), &chain)?;
    ensure(out.status.success(), format!("{}\n{chain}", describe(&out)))?;
    ensure(
        address_of(&stdout(&out).lines().map(String::from).collect::<Vec<_>>()).is_some(),
        format!("no address on eth0 by hand\n{}", describe(&out)),
    )?;
    no_mounts_under(work.path())?;
    sandbox.left_nothing()
}

/// The container's id in mini-run's narration: its state directory's name.
/// The container's short id, from its state directory's path in the
/// narration: under /run, or rootless under the user's runtime directory.
fn id_in(narration: &str) -> Option<String> {
    let at = narration.find("underhood/containers/")? + "underhood/containers/".len();
    narration.get(at..at + 12).map(String::from)
}

fn faults() -> Result<(), Failed> {
    // With a limit and a named volume, so that their steps are walked too.
    let volume = VolumeGuard(format!("umr-fault-{}", std::process::id()));
    let spec = format!("{}:/data", volume.0);
    let args = ["--network", "none", "--memory", "32m", "-v", &spec];
    walk_faults(
        &|| cmd("mini-run"),
        &args,
        ChildSteps::FirstOfEachKind,
        (&volume.0, &Path::new(VOLUMES).join(&volume.0)),
        &|| Ok(()),
    )
}

fn faults_on_a_bridge() -> Result<(), Failed> {
    // The same walk with a connection and a published port, in a sandbox:
    // no lease, veth or rule may be left either.
    let sandbox = NetSandbox::new()?;
    let volume = VolumeGuard(format!("umr-bfault-{}", std::process::id()));
    let spec = format!("{}:/data", volume.0);
    let args = ["--network", &sandbox.bridge, "-p", "18083:80", "-v", &spec];
    let netns = format!("--net={}", sandbox.netns().display());
    let in_sandbox = || {
        let mut command = std::process::Command::new("nsenter");
        command.arg(&netns).arg(support::bin("mini-run"));
        command
    };
    // The network is the caller's and the parent's: the child's steps
    // are walked on the host.
    walk_faults(
        &in_sandbox,
        &args,
        ChildSteps::None,
        (&volume.0, &Path::new(VOLUMES).join(&volume.0)),
        &|| sandbox.left_nothing(),
    )
}

/// Which of the child's steps a walk takes. Its forty-odd mounts, links
/// and hidden paths fail and end alike, one kind after another: the first
/// of each kind stands for the rest, which keeps the walk short enough for
/// the VM lane's emulated machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChildSteps {
    FirstOfEachKind,
    None,
}

/// The child's call in a `--dry-run` line, by its name: `mount`, `symlink`…
fn child_call(step: &str) -> Option<&str> {
    let (_, call) = step.split_once(" child: ")?;
    call.split(['(', ' ']).next()
}

/// For each step N of `mini-run run ARGS -- true` that `children` takes,
/// started by `mini_run`: fail@N leaves nothing, kill@N leaves nothing once
/// `mini-run cleanup` ran, and so does int@N after a step of mini-run's
/// own; `also` checks what else must be left as it was.
fn walk_faults(
    mini_run: &dyn Fn() -> std::process::Command,
    run_args: &[&str],
    children: ChildSteps,
    (volume, dir): (&str, &Path),
    also: &dyn Fn() -> Result<(), Failed>,
) -> Result<(), Failed> {
    use std::os::unix::process::ExitStatusExt;
    let remove_volume = || run_for(mini_run().args(["volume", "rm", volume]), 30);
    let args: Vec<&str> = ["run", "--rm"]
        .into_iter()
        .chain(run_args.iter().copied())
        .chain(["--", "true"])
        .collect();
    let plan = run_for(mini_run().arg("--dry-run").args(&args), 30)?;
    let steps: Vec<String> = stdout(&plan)
        .lines()
        .filter(|l| l.chars().nth(3) == Some('.'))
        .map(String::from)
        .collect();
    ensure(steps.len() > 50, describe(&plan))?;
    let variable = steps::fault::VARIABLE;
    let walked = (1..=steps.len()).filter(|&n| match child_call(&steps[n - 1]) {
        None => true,
        Some(call) => {
            children == ChildSteps::FirstOfEachKind
                && (n == 1 || child_call(&steps[n - 2]) != Some(call))
        }
    });
    for n in walked {
        // The command replaced the child at its execve: no fault comes
        // after that step, and the container runs.
        let runs = steps[n - 1].contains("child: execve(");
        let out = run_for(
            mini_run()
                .arg("--explain")
                .args(&args)
                .env(variable, format!("fail@{n}")),
            60,
        )?;
        let said = format!("mini-run: injected failure after step {n} ({variable}=fail@{n})");
        let failed = out.status.code() == Some(125) && stderr(&out).lines().any(|l| l == said);
        ensure(
            failed || (runs && out.status.success()),
            format!("fail@{n}, after {}\n{}", steps[n - 1], describe(&out)),
        )?;
        if let Some(id) = id_in(&stderr(&out)) {
            left_nothing(&id).map_err(|e| format!("fail@{n}: {e:?}"))?;
        }
        also().map_err(|e| format!("fail@{n}: {e:?}"))?;
        ensure(
            runs == dir.exists(),
            format!(
                "fail@{n}: the volume {}",
                if runs { "is gone" } else { "is left" }
            ),
        )?;
        if runs {
            remove_volume()?;
        }
        support::tally::add(support::tally::Tally::FaultPoint, 1);

        // A Ctrl-C after a step of mini-run's own: before the clone it
        // stops mini-run, after it the container ends by it, or has ended.
        if !steps[n - 1].contains(" child: ") {
            let out = run_for(
                mini_run()
                    .arg("--explain")
                    .args(&args)
                    .env(variable, format!("int@{n}")),
                60,
            )?;
            ensure(
                matches!(out.status.code(), Some(130) | Some(0)),
                format!("int@{n}, after {}\n{}", steps[n - 1], describe(&out)),
            )?;
            if let Some(id) = id_in(&stderr(&out)) {
                left_nothing(&id).map_err(|e| format!("int@{n}: {e:?}"))?;
            }
            also().map_err(|e| format!("int@{n}: {e:?}"))?;
            // Stopped before the clone, mini-run took its volume back; else
            // the container ran (and may have ended by the SIGINT passed
            // on), and keeps it.
            let ran = !stderr(&out).contains("it was not run");
            ensure(ran == dir.exists(), format!("int@{n}: the volume"))?;
            if ran {
                remove_volume()?;
            }
            support::tally::add(support::tally::Tally::FaultPoint, 1);
        }

        // SIGKILL after the step, then mini-run cleanup.
        let mut child = spawn_group(
            mini_run()
                .arg("--explain")
                .args(&args)
                .env(variable, format!("kill@{n}"))
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        )?;
        let mut narration = String::new();
        for line in BufReader::new(child.0.stderr.take().ok_or("no stderr")?).lines() {
            let line = line?;
            if line.contains("kill mini-run now") {
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(child.0.id() as i32),
                    nix::sys::signal::Signal::SIGKILL,
                )?;
            }
            narration.push_str(&line);
            narration.push('\n');
        }
        let status = child.0.wait()?;
        ensure(
            status.signal() == Some(9) || (runs && status.success()),
            format!("kill@{n}, after {}: {status}\n{narration}", steps[n - 1]),
        )?;
        let out = run_for(mini_run().arg("cleanup"), 30)?;
        ensure(out.status.success(), describe(&out))?;
        if let Some(id) = id_in(&narration) {
            left_nothing(&id).map_err(|e| format!("kill@{n}: {e:?}"))?;
        }
        also().map_err(|e| format!("kill@{n}: {e:?}"))?;
        // Killed after its last step, the run had ended as a run does:
        // nothing left to undo, and the volume it made is kept.
        let kept = runs || n == steps.len();
        ensure(kept == dir.exists(), format!("kill@{n}: the volume"))?;
        if kept {
            remove_volume()?;
        }
        support::tally::add(support::tally::Tally::FaultPoint, 1);
    }
    Ok(())
}

fn dry_run() -> Result<(), Failed> {
    let out = mini_run(&["--dry-run", "--memory", "64m", "--", "true"])?;
    ensure(out.status.success(), describe(&out))?;
    let text = stdout(&out);
    for call in [
        "clone(CLONE_NEWIPC|CLONE_NEWUTS|CLONE_NEWNET|CLONE_NEWPID|CLONE_NEWNS|SIGCHLD)",
        "cg-limit create mini-run-",
        "overlay-stack mount --lower ",
        "child: mount(\"none\", \"/\", NULL, MS_REC|MS_PRIVATE, NULL)",
        "child: chdir(\"/run/underhood/containers/",
        "child: execve(\"true\", [\"true\"], [1 variables])",
        "parent: cg-limit cleanup mini-run-",
    ] {
        ensure(
            text.contains(call),
            format!("the plan lacks {call}\n{text}"),
        )?;
    }
    ensure(text.contains("--memory 64"), text.clone())
}

fn killed() -> Result<(), Failed> {
    let (mut child, mut reader, id) = started("hostname; echo ready; exec sleep 1000")?;
    // SIGKILL to mini-run alone: no handler runs, nothing is undone.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.0.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    child.0.wait()?;
    // The container died with it: its pid 1 had mini-run's death as its
    // own (PR_SET_PDEATHSIG), and its stdout closed.
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest)?;
    ensure(
        std::path::Path::new("/run/underhood/containers").exists(),
        "the state directory should still be there for cleanup to find",
    )?;
    // Another test's cleanup, running meanwhile, may have been first:
    // what matters is that nothing is left once one has run.
    let out = run_for(cmd("mini-run").arg("cleanup"), 30)?;
    ensure(out.status.success(), describe(&out))?;
    left_nothing(&id)
}

fn two_dozen() -> Result<(), Failed> {
    // All started at once, and all alive together: each prints its id and
    // address, then waits for its stdin to close.
    let sandbox = NetSandbox::new()?;
    let mut running = Vec::new();
    for n in 0..24 {
        let mut child = spawn_group(
            sandbox
                .command(
                    &["--memory", "32m"],
                    &format!(
                        "hostname; echo {n}; ip -4 -o addr show eth0; echo ready; read line; exit 0"
                    ),
                )
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        )?;
        let reader = BufReader::new(child.0.stdout.take().ok_or("no stdout")?);
        running.push((child, reader));
    }
    let mut ids = std::collections::BTreeSet::new();
    let mut addresses = std::collections::BTreeSet::new();
    for (n, (_, reader)) in running.iter_mut().enumerate() {
        let mut lines = Vec::new();
        for line in reader.lines() {
            let line = line?;
            if line == "ready" {
                break;
            }
            lines.push(line);
        }
        ensure_eq(&lines.get(1), &Some(&n.to_string()), "its output")?;
        ids.insert(lines[0].clone());
        addresses.insert(address_of(&lines).ok_or(format!("no address in {lines:?}"))?);
    }
    ensure_eq(&ids.len(), &24, "distinct containers")?;
    ensure_eq(&addresses.len(), &24, "distinct addresses, all at once")?;
    for (child, _) in &mut running {
        drop(child.0.stdin.take());
    }
    for (child, _) in &mut running {
        let status = child.0.wait()?;
        ensure(status.success(), format!("a container ended with {status}"))?;
    }
    for id in &ids {
        left_nothing(id)?;
    }
    sandbox.left_nothing()
}

fn killed_on_a_bridge() -> Result<(), Failed> {
    // SIGKILL to mini-run while its container holds an address and a
    // published port: cleanup, run in the same network, gives both back.
    let sandbox = NetSandbox::new()?;
    let (mut child, _reader, id) =
        start(&mut sandbox.command(&["-p", "18081:80"], "hostname; echo ready; exec sleep 1000"))?;
    ensure(
        std::fs::read_dir(sandbox.leases())?.count() == 1,
        "the container holds a lease",
    )?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.0.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    child.0.wait()?;
    let bin = support::bin("mini-run");
    let out = sandbox.exec(&[bin.to_str().ok_or("a path")?, "cleanup"])?;
    ensure(
        stdout(&out).lines().any(|l| l == format!("removed {id}")),
        format!("cleanup did not remove {id}\n{}", describe(&out)),
    )?;
    left_nothing(&id)?;
    sandbox.left_nothing()
}

/// The address in `ip -4 -o addr show eth0`'s line.
fn address_of(lines: &[String]) -> Option<String> {
    lines.iter().find_map(|l| {
        let mut words = l.split_whitespace();
        words.find(|w| *w == "inet")?;
        Some(words.next()?.to_string())
    })
}

/// A network namespace standing for the host, for containers on a bridge:
/// the machine's own interfaces, routes and firewall stay untouched. Its
/// bridge is made with veth-bridge, as `docker network create` would;
/// mini-run runs in the namespace through nsenter, so its state and its
/// cgroups are the machine's and the usual checks apply. Dropping it
/// drops the namespace (and its links and rules with it) and the
/// bridge's leases.
struct NetSandbox {
    dir: tempfile::TempDir,
    bridge: String,
    /// The namespace's ledger once its bridge and NAT were made.
    ledger: support::ledger::Ledger,
}

impl NetSandbox {
    fn new() -> Result<Self, Failed> {
        static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut sandbox = Self {
            dir: scratch(),
            bridge: format!("umr{}x{n}", std::process::id() % 100000),
            ledger: Default::default(),
        };
        let host = sandbox.netns();
        std::fs::write(&host, "")?;
        let made = support::run(
            std::process::Command::new("unshare")
                .arg(format!("--net={}", host.display()))
                .arg("true"),
        )?;
        ensure(made.status.success(), describe(&made))?;
        for script in [
            "ip link set lo up".to_string(),
            "echo 0 > /proc/sys/net/ipv4/ip_forward".to_string(),
        ] {
            let out = sandbox.exec(&["sh", "-c", &script])?;
            ensure(out.status.success(), describe(&out))?;
        }
        let bin = support::bin("veth-bridge");
        let bin = bin.to_str().ok_or("a path")?;
        for args in [
            vec![bin, "bridge", "add", &sandbox.bridge],
            vec![bin, "nat", &sandbox.bridge, "on"],
        ] {
            let out = sandbox.exec(&args)?;
            ensure(out.status.success(), describe(&out))?;
        }
        sandbox.ledger = support::ledger::Ledger::of_netns(&sandbox.netns())?;
        Ok(sandbox)
    }

    fn netns(&self) -> PathBuf {
        self.dir.path().join("host")
    }

    /// A command in the sandbox's network namespace.
    fn exec(&self, args: &[&str]) -> Result<Output, Failed> {
        run_for(
            std::process::Command::new("nsenter")
                .arg(format!("--net={}", self.netns().display()))
                .args(args),
            60,
        )
    }

    /// `mini-run run --network BRIDGE ARGS… -- sh -c SCRIPT` in the
    /// sandbox.
    fn command(&self, args: &[&str], script: &str) -> std::process::Command {
        let mut command = std::process::Command::new("nsenter");
        command
            .arg(format!("--net={}", self.netns().display()))
            .arg(support::bin("mini-run"))
            .args(["run", "--rm", "--network", &self.bridge])
            .args(args)
            .args(["--", "sh", "-c", script]);
        command
    }

    fn leases(&self) -> PathBuf {
        Path::new("/run/underhood/net").join(&self.bridge)
    }

    /// No lease is left, and the sandbox's namespace is as it was once
    /// its bridge and NAT were made: no veth, address, route or rule of a
    /// container's, no sysctl changed (the namespace's own leak ledger).
    fn left_nothing(&self) -> Result<(), Failed> {
        let leases: Vec<_> = std::fs::read_dir(self.leases())?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        ensure(leases.is_empty(), format!("leases left: {leases:?}"))?;
        let changes = support::ledger::Ledger::of_netns(&self.netns())?.changes_since(&self.ledger);
        ensure(
            changes.is_empty(),
            format!(
                "the sandbox's namespace changed:\n  {}",
                changes.join("\n  ")
            ),
        )
    }
}

impl Drop for NetSandbox {
    fn drop(&mut self) {
        if let Ok(host) = std::fs::metadata(self.netns()) {
            use std::os::unix::fs::MetadataExt;
            let _ = std::fs::remove_file(format!(
                "/run/underhood/net/.forwarding-net:[{}]",
                host.ino()
            ));
        }
        let _ = nix::mount::umount2(&self.netns(), nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir_all(self.leases());
        let _ = std::fs::remove_dir("/run/underhood/net");
        let _ = std::fs::remove_dir("/run/underhood");
    }
}

fn default_bridge() -> Result<(), Failed> {
    // The default network, in a network and mount namespace of the test's
    // own with a tmpfs over /run: the bridge underhood0 and its state are
    // made on first use, as on a fresh machine, and go with the namespaces.
    let script = r#"mount -t tmpfs sandbox /run && ip link set lo up &&
        mini-run run --rm -- sh -c 'hostname; ip -4 -o addr show eth0; ip route; ping -c 1 -W 5 10.208.0.1 >/dev/null && echo gateway-answers' &&
        echo "leases $(ls /run/underhood/net/underhood0 | wc -l)" &&
        echo "containers $(ls /run/underhood/containers 2>/dev/null | wc -l)" &&
        nft list ruleset | grep -c masquerade"#;
    let out = support::in_own_network(script)?;
    ensure(out.status.success(), describe(&out))?;
    let lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
    left_nothing(lines.first().ok_or(describe(&out))?)?;
    ensure_eq(
        &address_of(&lines),
        &Some("10.208.0.2/24".to_string()),
        "the first container's address",
    )?;
    for want in [
        "default via 10.208.0.1 dev eth0",
        "gateway-answers",
        "leases 0",
        "containers 0",
        "1",
    ] {
        ensure(
            lines.iter().any(|l| l.trim() == want),
            format!("no line {want:?}\n{}", describe(&out)),
        )?;
    }
    Ok(())
}

fn published_port() -> Result<(), Failed> {
    let sandbox = NetSandbox::new()?;
    // busybox httpd in the background; the shell waits for a line on stdin.
    let (mut child, _reader, id) = start(&mut sandbox.command(
        &["-p", "18080:80"],
        "hostname; mkdir /www; echo hello from the container > /www/index.html; \
         httpd -p 80 -h /www; echo ready; read line; exit 0",
    ))?;
    // From the sandbox host itself, and through the bridge's address.
    for url in ["http://127.0.0.1:18080/", "http://10.208.0.1:18080/"] {
        let out = sandbox.exec(&["curl", "-sS", "--max-time", "10", url])?;
        ensure_eq(
            &stdout(&out).trim(),
            &"hello from the container",
            &format!("curl {url}\n{}", describe(&out)),
        )?;
    }
    ended(&mut child, &id)?;
    sandbox.left_nothing()
}

/// The spec of [`spec_file`]: a hostname of its own, so that the test can
/// find the container's state directory by it, and a volume relative to
/// the file.
const WEB_YAML: &str = "\
hostname: from-a-spec
memory: 48m
env:
  GREETING: hello
volumes:
  - ./site:/www:ro
network: none
command: [sh, -c, 'echo $GREETING $FROM_FLAG; hostname; cat /www/index.html; ls /sys/class/net; echo ready; read line; exit 0']
";

fn spec_file() -> Result<(), Failed> {
    let dir = scratch();
    std::fs::create_dir(dir.path().join("site"))?;
    std::fs::write(dir.path().join("site/index.html"), "from the host\n")?;
    let spec = dir.path().join("web.yaml");
    std::fs::write(&spec, WEB_YAML)?;
    // Run from /, so that ./site can only be found beside the file; -e
    // adds to the file's env. No --network: the file's none is the one.
    let mut child = spawn_group(
        cmd("mini-run")
            .args(["run", "--rm", "-e", "FROM_FLAG=too", "-f"])
            .arg(&spec)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )?;
    let mut reader = BufReader::new(child.0.stdout.take().ok_or("no stdout")?);
    let mut lines = Vec::new();
    for line in (&mut reader).lines() {
        let line = line?;
        if line == "ready" {
            break;
        }
        lines.push(line);
    }
    ensure_eq(
        &lines,
        &["hello too", "from-a-spec", "from the host", "lo"]
            .map(String::from)
            .to_vec(),
        "env, hostname, the volume's file and the network, inside",
    )?;
    // From the host, while it runs: the container whose /etc/hostname says
    // from-a-spec, and its cgroup's memory limit.
    let id = std::fs::read_dir("/run/underhood/containers")?
        .flatten()
        .find(|e| {
            std::fs::read_to_string(e.path().join("hostname"))
                .is_ok_and(|h| h.trim() == "from-a-spec")
        })
        .map(|e| e.file_name().to_string_lossy()[..12].to_string())
        .ok_or("no container's state says hostname from-a-spec")?;
    let limits: Vec<String> = cgroups_named(&format!("mini-run-{id}"))
        .iter()
        .flat_map(|cgroup| ["memory.max", "memory.limit_in_bytes"].map(|f| cgroup.join(f)))
        .filter_map(|file| std::fs::read_to_string(file).ok())
        .map(|limit| limit.trim().to_string())
        .collect();
    ensure_eq(
        &limits,
        &vec![(48u64 << 20).to_string()],
        "the cgroup's memory limit",
    )?;
    ended(&mut child, &id)
}

fn bad_spec_file() -> Result<(), Failed> {
    let dir = scratch();
    std::fs::write(
        dir.path().join("web.yaml"),
        "hostname: web\nenv:\n  GREETING: hello\nmemory: lots\n",
    )?;
    for (args, says) in [
        (
            vec!["-f", "web.yaml"],
            "mini-run: web.yaml:4:9: memory: 'lots' is not a size",
        ),
        (
            vec!["-f", "none.yaml"],
            "mini-run: -f none.yaml: no such file or directory (ENOENT); give a YAML file",
        ),
    ] {
        // --explain would narrate any step taken: the one line is all.
        let out = run_for(
            cmd("mini-run")
                .args(["--explain", "run", "--rm"])
                .args(&args)
                .args(["--", "true"])
                .current_dir(dir.path()),
            30,
        )?;
        ensure_eq(&out.status.code(), &Some(125), &format!("{args:?}"))?;
        let err = stderr(&out);
        ensure(
            err.lines().count() == 1 && err.starts_with(says) && stdout(&out).is_empty(),
            format!("expected one line starting {says:?}\n{}", describe(&out)),
        )?;
    }
    Ok(())
}

fn rootless() -> Result<(), Failed> {
    use std::os::unix::fs::MetadataExt;
    let nobody = Nobody::new()?;
    let shared = nobody.dir.path().join("shared");
    std::fs::create_dir(&shared)?;
    std::os::unix::fs::lchown(&shared, Some(Nobody::ID), Some(Nobody::ID))?;
    let volume = format!("{}:/shared", shared.display());
    let out = run_for(
        nobody.mini_run().args(["run", "--rm", "-v", &volume, "--", "sh", "-c"]).arg(
            "hostname; id -u; cat /proc/self/uid_map; echo $$; echo hi > /etc/motd; cat /etc/motd; touch /shared/made",
        ),
        60,
    )?;
    ensure(out.status.success(), describe(&out))?;
    let text = stdout(&out);
    let lines: Vec<String> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    ensure(lines.len() == 5, describe(&out))?;
    left_nothing(&lines[0])?;
    nobody.left_nothing()?;
    // Root inside, nobody outside: the one id mapped is the caller's.
    let inside: Vec<&str> = lines[1..].iter().map(String::as_str).collect();
    ensure_eq(
        &inside[..],
        &["0", "0 65534 1", "1", "hi"][..],
        &describe(&out),
    )?;
    ensure_eq(
        &stderr(&out).trim(),
        &"mini-run: rootless: --network none (a bridge and a veth are made on the host, which needs root; --network none says so and this line goes)",
        &describe(&out),
    )?;
    // What root inside made is the user's on the host.
    let made = std::fs::metadata(shared.join("made"))?;
    ensure_eq(
        &(made.uid(), made.gid()),
        &(65534, 65534),
        "the file's owner",
    )?;
    // Said, --network none needs no line.
    let out = run_for(
        nobody
            .mini_run()
            .args(["run", "--rm", "--network", "none", "--", "true"]),
        60,
    )?;
    ensure(
        out.status.success() && stderr(&out).is_empty(),
        describe(&out),
    )?;
    nobody.left_nothing()
}

fn rootless_refusals() -> Result<(), Failed> {
    let nobody = Nobody::new()?;
    for (flags, says) in [
        (
            &["--memory", "64m"][..],
            "--memory, --cpus and --pids-limit need a cgroup",
        ),
        (
            &["-p", "8080:80"][..],
            "--network bridge and -p need a veth",
        ),
        (
            &["--network", "bridge"][..],
            "--network bridge and -p need a veth",
        ),
        (
            &["--network", "host"][..],
            "--network host: not available rootless",
        ),
        (&["-u", "1000"][..], "-u 1000:1000: rootless"),
    ] {
        let out = run_for(
            nobody
                .mini_run()
                .arg("run")
                .args(flags)
                .args(["--", "true"]),
            60,
        )?;
        let said = stderr(&out);
        ensure(
            out.status.code() == Some(125)
                && said.lines().count() == 1
                && said.starts_with(&format!("mini-run: {says}")),
            format!("{flags:?}: {}", describe(&out)),
        )?;
        nobody.left_nothing()?;
        support::tally::add(support::tally::Tally::BadInput, 1);
    }
    Ok(())
}

fn rootless_faults() -> Result<(), Failed> {
    let nobody = Nobody::new()?;
    let volume = "umr-rootless";
    let spec = format!("{volume}:/data");
    walk_faults(
        &|| nobody.mini_run(),
        &["--network", "none", "-v", &spec],
        ChildSteps::FirstOfEachKind,
        (volume, &nobody.volumes().join(volume)),
        &|| nobody.left_nothing(),
    )
}

/// A cgroup made for a test, removed with what is under it when dropped.
struct CgroupGuard(PathBuf);

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        fn remove(dir: &Path) {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for entry in entries.flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        remove(&entry.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(dir);
        }
        remove(&self.0);
    }
}

fn delegated_cgroup() -> Result<(), Failed> {
    let nobody = Nobody::new()?;
    let root = rootfs_copy(nobody.dir.path())?;
    for path in std::iter::once(root.clone()).chain(walkdir(&root)) {
        std::os::unix::fs::lchown(&path, Some(Nobody::ID), Some(Nobody::ID))?;
    }
    // Delegated as systemd does it: the directory and the files that say
    // who is in it and which controllers its children get are nobody's.
    let top = CgroupGuard(
        Path::new("/sys/fs/cgroup").join(format!("t-delegated-{}", std::process::id())),
    );
    std::fs::create_dir(&top.0)?;
    std::fs::write(top.0.join("cgroup.subtree_control"), "+memory +pids")
        .map_err(|e| format!("enable memory and pids below {}: {e}", top.0.display()))?;
    let leaf = top.0.join("leaf");
    std::fs::create_dir(&leaf)?;
    for dir in [&top.0, &leaf] {
        for file in [
            "",
            "cgroup.procs",
            "cgroup.subtree_control",
            "cgroup.threads",
        ] {
            std::os::unix::fs::lchown(dir.join(file), Some(Nobody::ID), Some(Nobody::ID))?;
        }
    }
    // Root puts the shell in the leaf, then it becomes nobody: as a user
    // session inside systemd's user@UID.service is.
    let script = format!("echo $$ > {}/cgroup.procs && exec \"$@\"", leaf.display());
    let rootfs = root.display().to_string();
    let out = run_for(
        nobody
            .mini_run_after(&["sh", "-c", &script, "sh"])
            .args(["run", "--rm", "--rootfs", &rootfs, "--network", "none"])
            .args(["--memory", "64m", "--pids-limit", "20", "--", "sh", "-c"])
            .arg(
                "hostname; cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max /proc/self/cgroup",
            ),
        60,
    )?;
    ensure(out.status.success(), describe(&out))?;
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    ensure_eq(
        &lines.get(1..).unwrap_or_default(),
        &&["67108864", "20", "0::/"][..],
        &describe(&out),
    )?;
    left_nothing(lines[0])?;
    nobody.left_nothing()?;
    // The toolkit's parent under the delegated cgroup went with its last
    // container.
    ensure(
        !top.0.join("underhood").exists(),
        format!("left behind: {:?}", walkdir(&top.0.join("underhood"))),
    )
}

fn userns() -> Result<(), Failed> {
    use std::os::unix::fs::MetadataExt;
    let dir = scratch();
    // The host's root owns one directory; the container's root the other.
    let roots = dir.path().join("roots");
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&roots)?;
    std::fs::create_dir(&theirs)?;
    std::os::unix::fs::lchown(&theirs, Some(1_000_000_000), Some(1_000_000_000))?;
    let roots_volume = format!("{}:/roots", roots.display());
    let theirs_volume = format!("{}:/theirs", theirs.display());
    let (out, lines) = container(
        &["--userns", "-v", &roots_volume, "-v", &theirs_volume],
        "id -u; cat /proc/self/uid_map; stat -c %u /etc/passwd; echo x > /etc/new && echo wrote /etc/new; touch /roots/x 2>&1; touch /theirs/made",
    )?;
    ensure(out.status.success(), describe(&out))?;
    let lines: Vec<String> = lines
        .iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    ensure_eq(
        &lines,
        &[
            "0",
            "0 1000000000 65536",
            // The image's files are root's on disk: through the idmapped
            // layer, the container's root's.
            "0",
            "wrote /etc/new",
            // The host's root's directory is a stranger's.
            "touch: /roots/x: Permission denied",
        ]
        .map(String::from)
        .to_vec(),
        &describe(&out),
    )?;
    let made = std::fs::metadata(theirs.join("made"))?;
    ensure_eq(
        &(made.uid(), made.gid()),
        &(1_000_000_000, 1_000_000_000),
        "the owner on the host of what the container's root made",
    )?;
    // A named volume is idmapped as the layers are: on disk its files
    // have the container's ids, whichever container wrote them.
    let volume = VolumeGuard(format!("umr-userns-{}", std::process::id()));
    let data = format!("{}:/data", volume.0);
    let (out, _) = container(&["--userns", "-v", &data], "echo one > /data/note")?;
    ensure(out.status.success(), describe(&out))?;
    let note = std::fs::metadata(Path::new(VOLUMES).join(&volume.0).join("note"))?;
    ensure_eq(
        &(note.uid(), note.gid()),
        &(0, 0),
        "the owner on disk of /data/note",
    )?;
    let (out, lines) = container(&["-v", &data], "echo two >> /data/note; cat /data/note")?;
    ensure(out.status.success(), describe(&out))?;
    let (out, more) = container(&["--userns", "-v", &data], "cat /data/note")?;
    ensure(out.status.success(), describe(&out))?;
    ensure_eq(
        &(lines, more),
        &(
            vec!["one".to_string(), "two".to_string()],
            vec!["one".to_string(), "two".to_string()],
        ),
        "the volume across containers",
    )
}

fn userns_rootfs() -> Result<(), Failed> {
    use std::os::unix::fs::MetadataExt;
    let dir = scratch();
    let root = rootfs_copy(dir.path())?;
    let rootfs = root.display().to_string();
    let (out, lines) = container(
        &["--userns", "--rootfs", &rootfs, "-u", "1000:1000"],
        "id -u; echo y > /tmp/by-1000",
    )?;
    ensure(out.status.success(), describe(&out))?;
    ensure_eq(&lines, &vec!["1000".to_string()], &describe(&out))?;
    let (out, _) = container(&["--userns", "--rootfs", &rootfs], "echo z > /etc/by-root")?;
    ensure(out.status.success(), describe(&out))?;
    // Through the idmapped --rootfs, the ids on disk are the container's.
    for (file, id) in [("tmp/by-1000", 1000), ("etc/by-root", 0)] {
        let meta = std::fs::metadata(root.join(file))?;
        ensure_eq(&(meta.uid(), meta.gid()), &(id, id), file)?;
    }
    Ok(())
}

fn userns_faults() -> Result<(), Failed> {
    let volume = VolumeGuard(format!("umr-ufault-{}", std::process::id()));
    let spec = format!("{}:/data", volume.0);
    walk_faults(
        &|| cmd("mini-run"),
        &["--network", "none", "--userns", "-v", &spec],
        ChildSteps::FirstOfEachKind,
        (&volume.0, &Path::new(VOLUMES).join(&volume.0)),
        &|| Ok(()),
    )
}

/// `mini-run run` with each bad value the reliability harness names:
/// exit 125 (mini-run's own failure), 126 or 127 (the command's), one
/// line that names the flag or file and the fix, and nothing left (the
/// ledger around the test, and no container's state). Refused values are
/// refused before any step: under `--explain` no step is narrated.
fn bad_input() -> Result<(), Failed> {
    let dir = scratch();
    let at = |name: &str| dir.path().join(name).display().to_string();
    std::fs::write(at("a-file"), "")?;
    std::os::unix::fs::symlink("/", at("root-link"))?;
    std::fs::create_dir(at("dir"))?;
    std::fs::write(at("unclosed.yaml"), "memory: [64m\n")?;
    std::fs::write(at("unknown.yaml"), "nosuchkey: 1\n")?;
    std::fs::write(at("tabs.yaml"), "env:\n\t- A=1\n")?;
    std::fs::write(at("not-executable"), "#!/bin/sh\necho hi\n")?;
    let long = "x".repeat(300);
    let host_dir = at("dir");
    let bind = |target: &str| format!("{host_dir}:{target}");
    let (bind_root, bind_proc) = (bind("/"), bind("/proc/x"));
    let bind_program = format!("{}:/p", dir.path().display());
    let rootfs = |path: String| vec!["--rootfs".to_string(), path];
    let flag = |flag: &str, value: &str| vec![format!("{flag}={value}")];
    let mut cases: Vec<(Vec<String>, i32, String)> = Vec::new();
    let mut add =
        |args: Vec<String>, code: i32, says: &str| cases.push((args, code, says.to_string()));
    for size in ["abc", "-1", "0", "1e99", "18446744073709551616"] {
        add(flag("--memory", size), 125, &format!("--memory: '{size}'"));
    }
    for cpus in ["abc", "-1", "0", "5000", "1e99"] {
        add(flag("--cpus", cpus), 125, &format!("--cpus: '{cpus}'"));
    }
    for pids in ["abc", "-1", "0", "18446744073709551616"] {
        add(
            flag("--pids-limit", pids),
            125,
            &format!("--pids-limit: '{pids}'"),
        );
    }
    for name in ["../x", "a/b", "", &long, "-x", "a\nb", "é"] {
        add(
            flag("--name", name),
            125,
            &format!("--name {name:?}: use letters"),
        );
        add(
            flag("--hostname", name),
            125,
            &format!("--hostname {name:?}: use letters"),
        );
    }
    for network in ["a-bridge-name-over-15", "a/b", "", "é"] {
        add(
            flag("--network", network),
            125,
            &format!("--network {network:?}: "),
        );
    }
    for port in [
        "0:80",
        "65536:80",
        "-1:80",
        "18446744073709551616:80",
        "8080:0",
        "abc",
    ] {
        add(flag("-p", port), 125, &format!("-p {port}: "));
    }
    for user in ["abc", "-1", "4294967296", "0:abc"] {
        add(
            flag("-u", user),
            125,
            &format!("-u {user:?}: give the user and group by number"),
        );
    }
    add(
        flag("-w", "relative"),
        125,
        "--workdir \"relative\": a path inside the container must be absolute",
    );
    add(flag("-e", "=x"), 125, "-e \"=x\": not NAME=VALUE");
    add(flag("-v", &bind_root), 125, "the target cannot be /");
    add(flag("-v", &bind_proc), 125, "/proc/x is in /proc");
    add(
        flag("-v", "a name:/x:rw"),
        125,
        "\"a name\" is not a volume name",
    );
    add(
        flag("-v", &format!("{host_dir}:/x:exec")),
        125,
        "\"exec\" is not a mode; use ro or rw",
    );
    add(
        flag("-v", &format!("{host_dir},nosuch:/x")),
        125,
        "the host side must exist",
    );
    add(
        flag("-v", "../x:/y"),
        125,
        "give the host side as an absolute path",
    );
    add(
        rootfs(at("missing")),
        125,
        "no such file or directory (ENOENT); give a directory holding a root filesystem",
    );
    add(
        rootfs(at("a-file")),
        125,
        "not a directory; give a directory holding a root filesystem",
    );
    add(
        rootfs("/".into()),
        125,
        "--rootfs /: that is the host's own /",
    );
    add(rootfs(at("root-link")), 125, "that is the host's own /");
    add(
        vec![at("no-image")],
        125,
        "not an imported image (it has no image.json)",
    );
    add(
        vec![at("dir")],
        125,
        "not an imported image (it has no image.json)",
    );
    add(
        flag("-f", &at("unclosed.yaml")),
        125,
        "unclosed.yaml:1:9: memory: ",
    );
    add(
        flag("-f", &at("unknown.yaml")),
        125,
        "unknown.yaml:1:1: unknown field `nosuchkey`, expected one of",
    );
    add(flag("-f", &at("tabs.yaml")), 125, "tabs.yaml:");
    add(flag("-f", &at("a-file")), 125, "the file holds no options");
    add(
        flag("-f", &at("missing.yaml")),
        125,
        "no such file or directory (ENOENT); give a YAML file",
    );
    add(flag("-f", &at("dir")), 125, "is a directory (EISDIR)");
    let command = |args: Vec<String>, code, says: &str| {
        (
            args.into_iter()
                .chain(["--".to_string()])
                .collect::<Vec<_>>(),
            code,
            says.to_string(),
        )
    };
    let with_command = [
        (
            command(vec![], 127, "exec \"/no/such/program\": not found"),
            "/no/such/program",
        ),
        (
            command(
                vec![],
                127,
                "exec \"no-such-program\": not found in the container's $PATH",
            ),
            "no-such-program",
        ),
        (
            command(
                flag("-v", &bind_program),
                126,
                "exec \"/p/not-executable\": permission denied (EACCES)",
            ),
            "/p/not-executable",
        ),
    ];
    let mut problems = Vec::new();
    let mut checked = 0;
    let all = cases
        .into_iter()
        .map(|(args, code, says)| (args, code, says, None))
        .chain(
            with_command
                .into_iter()
                .map(|((args, code, says), program)| (args, code, says, Some(program))),
        );
    for (args, code, says, program) in all {
        let mut command = cmd("mini-run");
        // A refused value stops before the first step, which --explain
        // would narrate; a command that cannot run is found only after
        // all of them, and undone.
        if program.is_none() {
            command.arg("--explain");
        }
        command.args(["run", "--rm"]);
        if !args.iter().any(|a| a.starts_with("--network=")) {
            command.args(["--network", "none"]);
        }
        command.args(&args);
        match program {
            Some(program) => command.arg(program),
            None => command.args(["--", "true"]),
        };
        let out = run_for(&mut command, 60)?;
        let wrong = support::refusal_problems(&out, "mini-run", code, &[&says]);
        if wrong.is_empty() {
            checked += 1;
            support::tally::add(support::tally::Tally::BadInput, 1);
        } else {
            problems.push(format!(
                "{args:?} {program:?}: {}\n{}",
                wrong.join(", "),
                describe(&out)
            ));
        }
    }
    ensure(problems.is_empty(), problems.join("\n"))?;
    ensure(checked > 60, format!("only {checked} cases"))?;
    let states = std::fs::read_dir("/run/underhood/containers")
        .map(|entries| entries.count())
        .unwrap_or(0);
    ensure_eq(states, 0, "containers' state left by refused runs")
}

/// Rootless mini-run on a host that refuses user namespaces (as Debian's
/// `kernel.unprivileged_userns_clone=0` or Ubuntu's AppArmor do, with
/// EPERM), stood for by util-linux `unshare -U` with no id mapped: the
/// kernel refuses a nested user namespace to a process whose ids are not
/// mapped. One line says where to look, and nothing is left in the
/// runtime directory.
fn user_namespaces_refused() -> Result<(), Failed> {
    // The home gets the rootfs cache, made before the clone and kept as
    // a cache is; the runtime directory gets nothing.
    let (home, dir) = (scratch(), scratch());
    let out = run_for(
        std::process::Command::new("unshare")
            .arg("-U")
            .arg(support::bin("mini-run"))
            .args(["run", "--rm", "--network", "none", "--", "true"])
            .env("LC_ALL", "C")
            .env("HOME", home.path())
            .env("XDG_RUNTIME_DIR", dir.path()),
        60,
    )?;
    let err = stderr(&out);
    ensure(
        out.status.code() == Some(125)
            && err.lines().count() == 1
            && err.starts_with("mini-run: clone(CLONE_NEWUSER")
            && err.contains("user namespaces may be disabled or limited"),
        describe(&out),
    )?;
    let left = walkdir(dir.path());
    ensure(
        left.is_empty(),
        format!("left in the runtime directory: {left:?}"),
    )?;
    support::tally::add(support::tally::Tally::BadInput, 1);
    Ok(())
}
