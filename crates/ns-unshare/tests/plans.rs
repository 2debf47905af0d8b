//! Plans, without root and without touching the kernel: the flags become
//! the calls util-linux `unshare` makes, in its order, with its implications.

use clap::Parser;
use ns_unshare::plan::{NsStep, Op, Side};
use ns_unshare::{Cli, Request, plan};
use steps::Plan;

fn plan_of(args: &[&str]) -> Result<Plan<NsStep>, steps::Error> {
    let cli = Cli::try_parse_from(std::iter::once("ns-unshare").chain(args.iter().copied()))
        .expect("flags parse");
    cli.request().and_then(|request| plan(&request))
}

fn calls(args: &[&str]) -> Vec<String> {
    plan_of(args).expect("a plan").calls()
}

fn euid() -> u32 {
    nix::unistd::Uid::effective().as_raw()
}

fn egid() -> u32 {
    nix::unistd::Gid::effective().as_raw()
}

#[test]
fn the_man_page_example() {
    assert_eq!(
        calls(&["--fork", "--pid", "--mount-proc", "readlink", "/proc/self"]),
        [
            "unshare(CLONE_NEWPID|CLONE_NEWNS)",
            "fork()",
            "parent: waitpid(child)",
            "child: mount(\"none\", \"/\", NULL, MS_REC|MS_PRIVATE, NULL)",
            "child: mount(\"proc\", \"/proc\", \"proc\", MS_NOSUID|MS_NODEV|MS_NOEXEC, NULL)",
            "child: execvp(\"readlink\", [\"readlink\", \"/proc/self\"])",
        ]
    );
}

#[test]
fn map_root_user_maps_the_caller_and_denies_setgroups_first() {
    assert_eq!(
        calls(&["-r", "id"]),
        [
            "unshare(CLONE_NEWUSER)".to_string(),
            format!("write /proc/self/uid_map \"0 {} 1\"", euid()),
            "write /proc/self/setgroups \"deny\"".to_string(),
            format!("write /proc/self/gid_map \"0 {} 1\"", egid()),
            "execvp(\"id\", [\"id\"])".to_string(),
        ]
    );
}

#[test]
fn map_current_user_maps_to_itself() {
    let calls = calls(&["-c", "id"]);
    assert!(
        calls.contains(&format!("write /proc/self/uid_map \"{0} {0} 1\"", euid())),
        "{calls:?}"
    );
}

#[test]
fn implications_follow_util_linux() {
    // --mount-proc implies --mount, --kill-child implies --fork, -r implies --user.
    let calls = calls(&["--kill-child", "--mount-proc", "-r", "true"]);
    assert_eq!(calls[0], "unshare(CLONE_NEWUSER|CLONE_NEWNS)");
    assert_eq!(calls[1], "fork()");
    assert!(
        calls.contains(&"child: prctl(PR_SET_PDEATHSIG, SIGKILL)".to_string()),
        "{calls:?}"
    );
}

#[test]
fn kill_child_takes_a_signal_name_or_number() {
    assert!(
        calls(&["--kill-child=TERM", "true"])
            .contains(&"child: prctl(PR_SET_PDEATHSIG, SIGTERM)".into())
    );
    assert!(
        calls(&["--kill-child=9", "true"])
            .contains(&"child: prctl(PR_SET_PDEATHSIG, SIGKILL)".into())
    );
}

#[test]
fn hostname_implies_uts() {
    assert_eq!(
        calls(&["--hostname", "box", "true"])[..2],
        ["unshare(CLONE_NEWUTS)", "sethostname(\"box\")"]
    );
}

#[test]
fn time_offsets_are_written_between_unshare_and_fork() {
    assert_eq!(
        calls(&["-T", "--boottime", "86400", "--monotonic=-5", "-f", "true"])[..4],
        [
            "unshare(CLONE_NEWTIME)",
            "write /proc/self/timens_offsets \"boottime 86400 0\"",
            "write /proc/self/timens_offsets \"monotonic -5 0\"",
            "fork()",
        ]
    );
}

#[test]
fn clock_offsets_without_a_time_namespace_are_refused() {
    let error = plan_of(&["--monotonic", "5", "true"]).unwrap_err();
    assert_eq!(error.code(), steps::exit::USAGE);
    assert!(error.to_string().contains("-T"), "{error}");
}

#[test]
fn setgroups_allow_conflicts_with_a_group_map() {
    assert_eq!(
        plan_of(&["-r", "--setgroups", "allow", "true"])
            .unwrap_err()
            .code(),
        2
    );
}

#[test]
fn persistent_files_are_bound_by_a_helper_after_the_fork() {
    let plan = plan_of(&["--net=/run/demo", "--fork", "true"]).unwrap();
    let ops: Vec<(Side, &Op)> = plan.steps().iter().map(|s| (s.side, &s.op)).collect();
    assert!(
        matches!(ops[0], (Side::Caller, Op::StartHelper(_))),
        "{ops:?}"
    );
    assert_eq!(plan.calls()[1], "unshare(CLONE_NEWNET)");
    assert_eq!(
        plan.calls()[3],
        "parent: helper: mount(\"/proc/$NS_UNSHARE/ns/net\", \"/run/demo\", NULL, MS_BIND, NULL)"
    );
    assert_eq!(plan.calls()[4], "parent: waitpid(child)");
}

#[test]
fn a_pid_namespace_file_binds_pid_for_children() {
    let calls = calls(&["--pid=/run/pid", "-f", "true"]);
    assert!(
        calls.iter().any(|c| c.contains("/ns/pid_for_children")),
        "{calls:?}"
    );
}

#[test]
fn id_ranges_are_written_by_a_helper_outside() {
    let calls = calls(&[
        "--map-users=0:100000:65536",
        "--map-groups=100000,0,65536",
        "true",
    ]);
    assert_eq!(calls[0], "fork() = id-map helper");
    assert_eq!(calls[1], "unshare(CLONE_NEWUSER)");
    assert_eq!(
        calls[2],
        "helper: write /proc/$NS_UNSHARE/uid_map \"0 100000 65536\"; write /proc/$NS_UNSHARE/gid_map \"0 100000 65536\""
    );
}

#[test]
fn root_and_wd_change_directory_before_proc_is_mounted() {
    let calls = calls(&[
        "-R",
        "/srv/root",
        "-w",
        "/tmp",
        "--mount-proc",
        "-f",
        "true",
    ]);
    let chroot = calls
        .iter()
        .position(|c| c == "child: chroot(\"/srv/root\")")
        .unwrap();
    let chdir = calls
        .iter()
        .position(|c| c == "child: chdir(\"/tmp\")")
        .unwrap();
    let proc_mount = calls
        .iter()
        .position(|c| c.contains("mount(\"proc\""))
        .unwrap();
    assert!(chroot < chdir && chdir < proc_mount, "{calls:?}");
}

#[test]
fn propagation_unchanged_leaves_slash_alone_but_keeps_proc_private() {
    let calls = calls(&["--propagation", "unchanged", "--mount-proc", "true"]);
    assert!(
        !calls.iter().any(|c| c.contains("\"/\", NULL")),
        "{calls:?}"
    );
    assert!(
        calls.contains(&"mount(\"none\", \"/proc\", NULL, MS_REC|MS_PRIVATE, NULL)".to_string())
    );
}

#[test]
fn no_program_means_a_login_shell() {
    let cli = Cli::try_parse_from(["ns-unshare", "-u"]).unwrap();
    let Ok(Request::Unshare(request)) = cli.request() else {
        panic!("an unshare request")
    };
    match request.program {
        ns_unshare::cli::Program::Shell(_) => {}
        other => panic!("expected the shell, got {other:?}"),
    }
}

#[test]
fn options_after_the_program_belong_to_it() {
    let calls = calls(&["-u", "ls", "-l", "--fork"]);
    assert_eq!(
        calls.last().unwrap(),
        "execvp(\"ls\", [\"ls\", \"-l\", \"--fork\"])"
    );
}

#[test]
fn list_takes_pids() {
    assert_eq!(calls(&["--list", "1", "2"]).len(), 3);
    assert_eq!(plan_of(&["--list", "x"]).unwrap_err().code(), 2);
}

#[test]
fn enter_opens_every_file_then_joins_in_order() {
    // root joins the user namespace last, anyone else first (like nsenter).
    let joins = if nix::unistd::Uid::effective().is_root() {
        ["setns(fd, CLONE_NEWNET)", "setns(fd, CLONE_NEWUSER)"]
    } else {
        ["setns(fd, CLONE_NEWUSER)", "setns(fd, CLONE_NEWNET)"]
    };
    let calls = calls(&["--enter", "--user=/a", "--net=/b", "true"]);
    assert_eq!(
        calls[..2],
        ["open(\"/a\", O_RDONLY)", "open(\"/b\", O_RDONLY)"]
    );
    assert_eq!(calls[2..4], joins);
    assert_eq!(calls[4], "execvp(\"true\", [\"true\"])");
}

#[test]
fn entering_a_pid_namespace_forks() {
    let calls = calls(&["--enter", "--pid=/p", "true"]);
    assert_eq!(
        calls[2..],
        [
            "fork()",
            "parent: waitpid(child)",
            "child: execvp(\"true\", [\"true\"])"
        ]
    );
}

#[test]
fn entering_a_time_namespace_needs_no_fork() {
    // setns(CLONE_NEWTIME) moves the caller itself, unlike unshare.
    let calls = calls(&["--enter", "--time=/t", "true"]);
    assert_eq!(calls[2], "execvp(\"true\", [\"true\"])");
}
