/*
 * The floor: what starting a container costs when nothing but the kernel
 * calls are made. bench/container/run times mini-run, runc, crun and
 * bubblewrap against this program, on the same rootfs.
 *
 * It makes the calls mini-run makes, in the same order, with no plan, no
 * narration and no checks beyond the return values: clone() into new PID,
 * mount, UTS, IPC and network namespaces; in the child, join a new memory
 * cgroup (64 MiB) and unshare a cgroup namespace; make / private; bind the
 * rootfs, or mount an overlay with it as the lower layer (-o); mount proc,
 * a tmpfs /dev with the host's null, zero, full, random, urandom and tty
 * bound in, devpts, shm, mqueue and sysfs read-only; hide and make
 * read-only Docker's paths; pivot_root; drop all but the 13 capabilities
 * mini-run keeps (Docker's 14 less CAP_MKNOD); no_new_privs; execve. The
 * parent waits, removes the cgroup (and the overlay's directories), and
 * exits as the child did.
 *
 * Left out, because they are mini-run's bookkeeping rather than the
 * container: the state directory and its lock, the /etc/hostname, hosts
 * and resolv.conf it writes and binds, the sync pipe (the child joins its
 * cgroup itself here, by writing 0 to cgroup.procs), signal forwarding and
 * PR_SET_PDEATHSIG. A cgroup is made in the memory hierarchy only (mini-run
 * makes one per controller it uses).
 *
 * Usage: floor [-o SCRATCH] ROOTFS CGROUP PROGRAM [ARG...]
 *   ROOTFS   the root filesystem, bound as it is; with -o, the overlay's
 *            lower layer (upper, work and the mount point are made in
 *            SCRATCH/<pid> and removed at the end)
 *   CGROUP   a v1 memory cgroup directory to make this container's
 *            cgroup in, e.g. /sys/fs/cgroup/memory/underhood-bench
 * Exit: the program's status; 125 when a call failed (which is named).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *call)
{
    fprintf(stderr, "floor: %s: %s\n", call, strerror(errno));
    exit(125);
}
#define TRY(call) \
    do { if ((call) < 0) die(#call); } while (0)

static char *rootfs, *cgroup, *scratch, **program;
static char cg[4096], dir[4096], upper[4200], work[4200], merged[4200];

static void write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, text, strlen(text)) < 0)
        die(path);
    close(fd);
}

/* mini-run's kernel_mounts, in its order; paths relative to the new root. */
#define NOSUID_NODEV_NOEXEC (MS_NOSUID | MS_NODEV | MS_NOEXEC)
static const struct { const char *source, *target, *type; unsigned long flags; const char *data; } mounts[] = {
    { "proc",   "proc",        "proc",   NOSUID_NODEV_NOEXEC, NULL },
    { "tmpfs",  "dev",         "tmpfs",  MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k" },
    { "devpts", "dev/pts",     "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620" },
    { "shm",    "dev/shm",     "tmpfs",  NOSUID_NODEV_NOEXEC, "mode=1777,size=65536k" },
    { "mqueue", "dev/mqueue",  "mqueue", NOSUID_NODEV_NOEXEC, NULL },
    { "sysfs",  "sys",         "sysfs",  NOSUID_NODEV_NOEXEC | MS_RDONLY, NULL },
};
static const char *devices[] = { "null", "zero", "full", "random", "urandom", "tty" };
static const char *links[][2] = {
    { "/proc/self/fd", "dev/fd" }, { "/proc/self/fd/0", "dev/stdin" },
    { "/proc/self/fd/1", "dev/stdout" }, { "/proc/self/fd/2", "dev/stderr" },
    { "pts/ptmx", "dev/ptmx" },
};
/* Docker's masked and read-only paths (mini-run's security.rs). */
static const char *masked[] = {
    "proc/asound", "proc/acpi", "proc/interrupts", "proc/kcore", "proc/keys",
    "proc/latency_stats", "proc/timer_list", "proc/timer_stats",
    "proc/sched_debug", "proc/scsi", "sys/firmware", "sys/devices/virtual/powercap",
};
static const char *read_only[] = { "proc/bus", "proc/fs", "proc/irq", "proc/sys", "proc/sysrq-trigger" };
/* mini-run's 13 (security.rs): Docker's 14 less mknod, which mini-run drops
 * for want of a device cgroup. chown, dac_override, fowner, fsetid, kill,
 * setgid, setuid, setpcap, net_bind_service, net_raw, sys_chroot,
 * audit_write, setfcap. */
static const unsigned long long keep =
    1ULL << CAP_CHOWN | 1ULL << CAP_DAC_OVERRIDE | 1ULL << CAP_FOWNER | 1ULL << CAP_FSETID |
    1ULL << CAP_KILL | 1ULL << CAP_SETGID | 1ULL << CAP_SETUID | 1ULL << CAP_SETPCAP |
    1ULL << CAP_NET_BIND_SERVICE | 1ULL << CAP_NET_RAW | 1ULL << CAP_SYS_CHROOT |
    1ULL << CAP_AUDIT_WRITE | 1ULL << CAP_SETFCAP;

static void drop_capabilities(void)
{
    for (int cap = 0; prctl(PR_CAPBSET_READ, cap) >= 0; cap++)
        if (!(keep >> cap & 1))
            TRY(prctl(PR_CAPBSET_DROP, cap));
    TRY(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0));
    struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2] = {
        { (__u32)keep, (__u32)keep, 0 }, { (__u32)(keep >> 32), (__u32)(keep >> 32), 0 },
    };
    TRY(syscall(SYS_capset, &header, data));
}

static int child(void *unused)
{
    (void)unused;
    char path[4200];
    struct stat st;

    /* Join the cgroup ("0" is the writer), then make it the cgroup
     * namespace's root. */
    snprintf(path, sizeof path, "%s/cgroup.procs", cg);
    write_file(path, "0");
    TRY(unshare(CLONE_NEWCGROUP));
    TRY(sethostname("floor", 5));
    TRY(mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL));

    const char *root = rootfs;
    if (scratch) {
        char options[12800];
        snprintf(options, sizeof options, "lowerdir=%s,upperdir=%s,workdir=%s", rootfs, upper, work);
        TRY(mount("overlay", merged, "overlay", 0, options));
        root = merged;
    } else {
        TRY(mount(rootfs, rootfs, NULL, MS_BIND | MS_REC, NULL));
    }
    TRY(chdir(root));

    for (size_t i = 0; i < sizeof mounts / sizeof *mounts; i++) {
        if (mkdir(mounts[i].target, 0755) < 0 && errno != EEXIST)
            die(mounts[i].target);
        TRY(mount(mounts[i].source, mounts[i].target, mounts[i].type, mounts[i].flags, mounts[i].data));
    }
    for (size_t i = 0; i < sizeof devices / sizeof *devices; i++) {
        char host[64];
        snprintf(host, sizeof host, "/dev/%s", devices[i]);
        snprintf(path, sizeof path, "dev/%s", devices[i]);
        int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
        TRY(fd);
        close(fd);
        TRY(mount(host, path, NULL, MS_BIND, NULL));
    }
    for (size_t i = 0; i < sizeof links / sizeof *links; i++)
        TRY(symlink(links[i][0], links[i][1]));
    for (size_t i = 0; i < sizeof masked / sizeof *masked; i++) {
        if (stat(masked[i], &st) < 0)
            continue; /* not every kernel has every one */
        if (S_ISDIR(st.st_mode))
            TRY(mount("tmpfs", masked[i], "tmpfs", MS_RDONLY, "size=0"));
        else
            TRY(mount("/dev/null", masked[i], NULL, MS_BIND, NULL));
    }
    for (size_t i = 0; i < sizeof read_only / sizeof *read_only; i++) {
        if (stat(read_only[i], &st) < 0)
            continue;
        TRY(mount(read_only[i], read_only[i], NULL, MS_BIND | MS_REC, NULL));
        TRY(mount(NULL, read_only[i], NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | NOSUID_NODEV_NOEXEC, NULL));
    }

    /* The rootfs becomes /; the old root, stacked on it, is detached. */
    TRY(syscall(SYS_pivot_root, ".", "."));
    TRY(umount2(".", MNT_DETACH));
    TRY(chdir("/"));

    drop_capabilities();
    TRY(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
    execvp(program[0], program);
    die(program[0]);
    return 125;
}

int main(int argc, char **argv)
{
    static char stack[256 * 1024];
    int arg = 1;
    if (argc > 2 && strcmp(argv[1], "-o") == 0) {
        scratch = argv[2];
        arg = 3;
    }
    if (argc - arg < 3) {
        fprintf(stderr, "usage: floor [-o SCRATCH] ROOTFS CGROUP PROGRAM [ARG...]\n");
        return 2;
    }
    rootfs = argv[arg];
    cgroup = argv[arg + 1];
    program = &argv[arg + 2];

    /* The container's cgroup with its limit; the child joins it. */
    snprintf(cg, sizeof cg, "%s/floor-%d", cgroup, getpid());
    TRY(mkdir(cg, 0755));
    char limit[4200];
    snprintf(limit, sizeof limit, "%s/memory.limit_in_bytes", cg);
    write_file(limit, "67108864");
    /* A fresh upper layer, work directory and mount point, as mini-run's. */
    if (scratch) {
        snprintf(dir, sizeof dir, "%s/%d", scratch, getpid());
        snprintf(upper, sizeof upper, "%s/upper", dir);
        snprintf(work, sizeof work, "%s/work", dir);
        snprintf(merged, sizeof merged, "%s/merged", dir);
        TRY(mkdir(dir, 0700));
        TRY(mkdir(upper, 0755));
        TRY(mkdir(work, 0755));
        TRY(mkdir(merged, 0755));
    }

    pid_t pid = clone(child, stack + sizeof stack,
                      CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | SIGCHLD, NULL);
    TRY(pid);
    int status;
    TRY(waitpid(pid, &status, 0));

    /* The mounts went with the child's mount namespace; the rest goes here. */
    TRY(rmdir(cg));
    if (scratch) {
        char inner[4300];
        snprintf(inner, sizeof inner, "%s/work", work); /* made by overlayfs */
        if (rmdir(inner) < 0 && errno != ENOENT)
            die(inner);
        TRY(rmdir(work));
        TRY(rmdir(upper)); /* empty unless the program wrote to / */
        TRY(rmdir(merged));
        TRY(rmdir(dir));
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
