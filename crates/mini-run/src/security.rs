//! # Docker's security defaults, as data
//!
//! Namespaces decide what a container *sees*; these decide what root inside
//! it may still *do* to the kernel it shares with the host. Each list is
//! Docker's (moby's `oci/defaults.go` and `caps/defaults.go`), so what a
//! learner observes here is what `docker run` gives them.
//! See [capabilities(7)](https://man7.org/linux/man-pages/man7/capabilities.7.html)
//! and the book's security chapter.

use caps::Capability;

/// The capabilities a container keeps: Docker's default fourteen but one.
/// Root in a container may chown, bind port 80, chroot or send signals,
/// but not mount, load modules, change the clock, trace processes, or
/// reboot. Everything else is dropped from the bounding set, so no program
/// the container runs, setuid or not, can get it back.
///
/// Docker also keeps `CAP_MKNOD`: its device cgroup lets a container open
/// only the few devices it gives it, so a node made for the host's disk is
/// useless. mini-run has no device cgroup yet, and with `CAP_MKNOD` root in
/// the container could `mknod /tmp/sda b 8 0` and read the host's disk: so
/// it is dropped, and the container keeps thirteen.
pub const DEFAULT_CAPABILITIES: [Capability; 13] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_KILL,
    Capability::CAP_AUDIT_WRITE,
];

/// Paths in `/proc` and `/sys` that leak the host or hand out a lever on
/// it, hidden: a file gets `/dev/null` bound over it, a directory an empty
/// read-only tmpfs. `/proc/kcore` is the host's memory as an ELF core,
/// `/proc/keys` the kernel's keyrings, `/proc/timer_list` and
/// `/proc/sched_debug` what every host process is doing.
pub const MASKED: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths that stay visible but become read-only: `/proc/sys` holds the
/// kernel's settings for the whole machine (most are not namespaced), and
/// a write to `/proc/sysrq-trigger` reboots or crashes the host.
pub const READ_ONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The capabilities outside [`DEFAULT_CAPABILITIES`] that this kernel
/// knows: the ones to drop.
pub fn to_drop() -> Vec<Capability> {
    let known = caps::runtime::thread_all_supported();
    let mut drop: Vec<Capability> = known
        .into_iter()
        .filter(|c| !DEFAULT_CAPABILITIES.contains(c))
        .collect();
    drop.sort_by_key(|c| c.index());
    drop
}

/// `CAP_SYS_ADMIN,CAP_NET_ADMIN,…`, or the first few and a count.
pub fn names(caps: &[Capability], most: usize) -> String {
    let mut shown: Vec<String> = caps.iter().take(most).map(|c| c.to_string()).collect();
    if caps.len() > most {
        shown.push(format!("… {} in all", caps.len()));
    }
    shown.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockers_defaults_are_kept_and_the_dangerous_ones_dropped() {
        let drop = to_drop();
        for dangerous in [
            Capability::CAP_SYS_ADMIN,
            Capability::CAP_SYS_MODULE,
            Capability::CAP_SYS_PTRACE,
            Capability::CAP_SYS_BOOT,
            Capability::CAP_NET_ADMIN,
            Capability::CAP_MKNOD,
        ] {
            assert!(drop.contains(&dangerous), "{dangerous}");
        }
        assert!(DEFAULT_CAPABILITIES.iter().all(|c| !drop.contains(c)));
    }
}
