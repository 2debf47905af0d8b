//! # memory
//!
//! The memory controller counts the pages a group's processes use —
//! anonymous memory, page cache, kernel memory on their behalf — and holds
//! them under a limit. At the limit the kernel first reclaims (drops cache,
//! swaps); when nothing more can be reclaimed, the OOM killer ends a process
//! of the group, and the group's `oom_kill` count goes up. See
//! <https://docs.kernel.org/admin-guide/cgroup-v2.html#memory>.
//!
//! | flag            | v2                | v1                             |
//! |-----------------|-------------------|--------------------------------|
//! | `--memory`      | `memory.max`      | `memory.limit_in_bytes`        |
//! | `--memory-swap` | `memory.swap.max` (swap only) | `memory.memsw.limit_in_bytes` (memory + swap) |
//! | neither         | `memory.swap.max` 0 | `memory.memsw.limit_in_bytes` = `--memory` |
//! | peak            | `memory.peak`     | `memory.max_usage_in_bytes`    |
//! | OOM kills       | `memory.events`   | `memory.oom_control`           |
//!
//! Without `--memory-swap`, a `--memory` limit comes with no swap, as
//! Kubernetes gives its containers, so that the limit holds the same on a
//! machine with swap as on one without. `docker run --memory` alone lets a
//! container swap as much again; `--memory-swap` gives that back.

use std::path::Path;

use crate::cgfs;
use crate::controller::{Limits, Setting};
use crate::layout::{Controller, Version};
use crate::units::Bytes;

pub fn settings(version: Version, limits: &Limits) -> Vec<Setting> {
    let mut out = Vec::new();
    let Some(memory) = limits.memory else {
        return out;
    };
    let flag = format!("--memory {memory}");
    let why = "the most memory the group may use: at the limit the kernel reclaims, then its OOM killer ends a process of the group (docker run --memory)";
    let (file, value) = match version {
        Version::V2 => ("memory.max", memory.file_value()),
        Version::V1 => ("memory.limit_in_bytes", v1_value(memory)),
    };
    out.push(setting(file, value, flag.clone(), why.into()));
    if let (None, Bytes::Limit(bytes)) = (limits.memory_swap, memory) {
        let why = "and no swap, unless --memory-swap asks for it: the limit holds on a machine with swap too (docker would allow as much swap again; Kubernetes allows none)";
        let (file, value) = match version {
            Version::V2 => ("memory.swap.max", "0".to_string()),
            Version::V1 => ("memory.memsw.limit_in_bytes", bytes.to_string()),
        };
        out.push(setting(file, value, flag, why.into()).if_present());
    }
    if let Some(total) = limits.memory_swap {
        let flag = format!("--memory-swap {total}");
        match version {
            Version::V2 => {
                // Docker's --memory-swap is memory and swap together; v2
                // limits swap on its own.
                let swap = match (total, memory) {
                    (Bytes::Limit(total), Bytes::Limit(memory)) => {
                        Bytes::Limit(total.saturating_sub(memory))
                    }
                    _ => Bytes::Max,
                };
                let why = format!(
                    "memory and swap together, as docker counts them: v2 limits swap alone, so {total} - {memory} = {swap} of swap"
                );
                out.push(setting("memory.swap.max", swap.file_value(), flag, why));
            }
            Version::V1 => {
                let why = "memory and swap together: v1 counts them as one (needs swap accounting, swapaccount=1)".to_string();
                out.push(setting(
                    "memory.memsw.limit_in_bytes",
                    v1_value(total),
                    flag,
                    why,
                ));
            }
        }
    }
    out
}

fn setting(file: &'static str, value: String, flag: String, why: String) -> Setting {
    Setting::new(Controller::Memory, file, value, flag, why)
}

/// v1 has no `max`: -1 means no limit.
fn v1_value(bytes: Bytes) -> String {
    match bytes {
        Bytes::Limit(n) => n.to_string(),
        Bytes::Max => "-1".into(),
    }
}

/// What a group's memory looks like.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes charged now, page cache included.
    pub current: u64,
    /// Of which inactive file cache: what `docker stats` leaves out.
    pub inactive_file: u64,
    /// The most ever charged; `None` where the kernel keeps no peak
    /// (`memory.peak` is Linux 5.19+).
    pub peak: Option<u64>,
    /// The limit that holds: the group's own or a lower one above it
    /// (`None`: no limit anywhere up to the root).
    pub limit: Option<u64>,
    /// Processes the OOM killer ended in the group and below it.
    pub oom_kills: u64,
}

/// A group's memory, `dir` in the hierarchy mounted at `top`.
pub fn usage(version: Version, dir: &Path, top: &Path) -> Option<Usage> {
    let stat = std::fs::read_to_string(dir.join("memory.stat")).unwrap_or_default();
    let usage = match version {
        Version::V2 => Usage {
            current: cgfs::read_u64(&dir.join("memory.current"))?,
            inactive_file: cgfs::keyed_in(&stat, "inactive_file").unwrap_or(0),
            peak: cgfs::read_u64(&dir.join("memory.peak")),
            limit: effective(version, dir, top).map(|(l, _)| l),
            oom_kills: cgfs::keyed(&dir.join("memory.events"), "oom_kill").unwrap_or(0),
        },
        Version::V1 => Usage {
            current: cgfs::read_u64(&dir.join("memory.usage_in_bytes"))?,
            inactive_file: cgfs::keyed_in(&stat, "total_inactive_file").unwrap_or(0),
            peak: cgfs::read_u64(&dir.join("memory.max_usage_in_bytes")),
            limit: effective(version, dir, top).map(|(l, _)| l),
            oom_kills: cgfs::keyed(&dir.join("memory.oom_control"), "oom_kill").unwrap_or(0),
        },
    };
    Some(usage)
}

/// The limit a cgroup directory has of its own.
pub fn limit(version: Version, dir: &Path) -> Option<u64> {
    match version {
        Version::V2 => cgfs::read_limit(&dir.join("memory.max")),
        Version::V1 => cgfs::read_limit(&dir.join("memory.limit_in_bytes")),
    }
}

/// The limit that holds for a cgroup directory: the lowest of its own and
/// its ancestors' up to the hierarchy's root (`top`), and the directory
/// that sets it.
pub fn effective(version: Version, dir: &Path, top: &Path) -> Option<(u64, std::path::PathBuf)> {
    super::lowest_above(dir, top, |d| limit(version, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(memory: &str, swap: Option<&str>) -> Limits {
        Limits {
            memory: Some(crate::units::parse_size(memory).unwrap()),
            memory_swap: swap.map(|s| crate::units::parse_size(s).unwrap()),
            ..Limits::default()
        }
    }

    #[test]
    fn memory_maps_to_each_versions_file() {
        let v2 = settings(Version::V2, &limits("64M", None));
        assert_eq!(
            (v2[0].file, v2[0].value.as_str()),
            ("memory.max", "67108864")
        );
        assert_eq!(v2[0].flag, "--memory 64M");
        let v1 = settings(Version::V1, &limits("64M", None));
        assert_eq!(
            (v1[0].file, v1[0].value.as_str()),
            ("memory.limit_in_bytes", "67108864")
        );
    }

    #[test]
    fn swap_is_total_in_v1_and_the_difference_in_v2() {
        let v2 = settings(Version::V2, &limits("64M", Some("96M")));
        assert_eq!(
            (v2[1].file, v2[1].value.as_str()),
            ("memory.swap.max", "33554432")
        );
        let v1 = settings(Version::V1, &limits("64M", Some("96M")));
        assert_eq!(
            (v1[1].file, v1[1].value.as_str()),
            ("memory.memsw.limit_in_bytes", "100663296")
        );
        let v1 = settings(Version::V1, &limits("64M", Some("max")));
        assert_eq!(v1[1].value, "-1");
        assert!(
            v1.iter().all(|s| !s.if_present),
            "asked for: always written"
        );
    }

    #[test]
    fn a_memory_limit_alone_comes_with_no_swap_where_the_kernel_counts_it() {
        let v2 = settings(Version::V2, &limits("64M", None));
        assert_eq!(
            (v2[1].file, v2[1].value.as_str(), v2[1].if_present),
            ("memory.swap.max", "0", true)
        );
        let v1 = settings(Version::V1, &limits("64M", None));
        assert_eq!(
            (v1[1].file, v1[1].value.as_str(), v1[1].if_present),
            ("memory.memsw.limit_in_bytes", "67108864", true)
        );
        assert_eq!(settings(Version::V2, &limits("max", None)).len(), 1);
    }
}
