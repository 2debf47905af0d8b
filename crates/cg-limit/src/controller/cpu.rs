//! # cpu
//!
//! Two ways to govern CPU time. A **quota** is a hard ceiling: in every
//! period (100 ms by default) the group may run for at most the quota,
//! across all CPUs, then it is *throttled* until the next period — even if
//! the machine is idle. A **weight** is a share: it matters only when CPUs
//! are contended, and then sibling groups get CPU time in proportion to
//! their weights. See <https://docs.kernel.org/scheduler/sched-bwc.html>.
//!
//! | flag           | v2                     | v1                                   |
//! |----------------|------------------------|--------------------------------------|
//! | `--cpus 0.5`   | `cpu.max` "50000 100000" | `cpu.cfs_period_us` 100000, `cpu.cfs_quota_us` 50000 |
//! | `--cpu-weight` | `cpu.weight` (1–10000, default 100) | `cpu.shares` (2–262144, default 1024) |
//! | usage          | `cpu.stat` usage/user/system_usec | `cpuacct.usage`, `cpuacct.stat`   |
//! | throttling     | `cpu.stat` nr_throttled, throttled_usec | `cpu.stat` nr_throttled, throttled_time |

use std::time::Duration;

use crate::cgfs;
use crate::controller::{Limits, Setting};
use crate::layout::{Cgroup, Controller, Version};

/// The CFS period cg-limit uses, as docker does: 100 ms.
pub const PERIOD_US: u64 = 100_000;

/// The quota for `--cpus`: that many periods' worth of CPU time per period.
pub fn quota_us(cpus: f64) -> u64 {
    (cpus * PERIOD_US as f64).round() as u64
}

/// systemd's conversion of a v2 weight to v1 shares: the defaults, 100
/// and 1024, correspond.
pub fn weight_to_shares(weight: u32) -> u64 {
    (u64::from(weight) * 1024 / 100).clamp(2, 262_144)
}

pub fn settings(version: Version, limits: &Limits) -> Vec<Setting> {
    let mut out = Vec::new();
    if let Some(cpus) = limits.cpus {
        let quota = quota_us(cpus);
        let flag = format!("--cpus {cpus}");
        let why = format!(
            "at most {quota} µs of CPU time in every {PERIOD_US} µs period, over all CPUs, then the group is throttled until the next period (docker run --cpus)"
        );
        match version {
            Version::V2 => out.push(setting(
                "cpu.max",
                format!("{quota} {PERIOD_US}"),
                flag,
                why,
            )),
            Version::V1 => {
                out.push(setting(
                    "cpu.cfs_period_us",
                    PERIOD_US.to_string(),
                    flag.clone(),
                    "the length of a CFS bandwidth period; the quota below is per period".into(),
                ));
                out.push(setting("cpu.cfs_quota_us", quota.to_string(), flag, why));
            }
        }
    }
    if let Some(weight) = limits.cpu_weight {
        let flag = format!("--cpu-weight {weight}");
        match version {
            Version::V2 => out.push(setting(
                "cpu.weight",
                weight.to_string(),
                flag,
                format!(
                    "when CPUs are contended, sibling groups share them in proportion to their weights; {weight} against the default 100 (docker run --cpu-shares, converted)"
                ),
            )),
            Version::V1 => {
                let shares = weight_to_shares(weight);
                out.push(setting(
                    "cpu.shares",
                    shares.to_string(),
                    flag,
                    format!(
                        "v1 calls the weight shares, default 1024: weight {weight} is {weight} × 1024 / 100 = {shares} shares, as systemd converts it"
                    ),
                ));
            }
        }
    }
    out
}

fn setting(file: &'static str, value: String, flag: String, why: String) -> Setting {
    Setting::new(Controller::Cpu, file, value, flag, why)
}

/// CPU time a group has used, and how often it was throttled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub total: Duration,
    pub user: Duration,
    pub system: Duration,
    /// Periods in which the group ran, with a quota set.
    pub periods: u64,
    /// Periods at whose end the group had used up its quota.
    pub throttled_periods: u64,
    /// Time the group's threads spent waiting for the next period.
    pub throttled: Duration,
}

pub fn usage(version: Version, cgroup: &Cgroup) -> Option<Usage> {
    match version {
        Version::V2 => {
            let stat =
                std::fs::read_to_string(cgroup.dir(Controller::Cpu)?.join("cpu.stat")).ok()?;
            let usec = |key| Duration::from_micros(cgfs::keyed_in(&stat, key).unwrap_or(0));
            Some(Usage {
                total: Duration::from_micros(cgfs::keyed_in(&stat, "usage_usec")?),
                user: usec("user_usec"),
                system: usec("system_usec"),
                periods: cgfs::keyed_in(&stat, "nr_periods").unwrap_or(0),
                throttled_periods: cgfs::keyed_in(&stat, "nr_throttled").unwrap_or(0),
                throttled: usec("throttled_usec"),
            })
        }
        Version::V1 => {
            let acct = cgroup.dir(Controller::CpuAcct)?;
            let total = Duration::from_nanos(cgfs::read_u64(&acct.join("cpuacct.usage"))?);
            // cpuacct.stat counts in USER_HZ ticks.
            let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
                .ok()
                .flatten()
                .filter(|hz| *hz > 0)
                .unwrap_or(100) as u64;
            let stat = std::fs::read_to_string(acct.join("cpuacct.stat")).unwrap_or_default();
            let ticks =
                |key| Duration::from_millis(cgfs::keyed_in(&stat, key).unwrap_or(0) * 1000 / hz);
            let throttling = cgroup
                .dir(Controller::Cpu)
                .and_then(|d| std::fs::read_to_string(d.join("cpu.stat")).ok())
                .unwrap_or_default();
            Some(Usage {
                total,
                user: ticks("user"),
                system: ticks("system"),
                periods: cgfs::keyed_in(&throttling, "nr_periods").unwrap_or(0),
                throttled_periods: cgfs::keyed_in(&throttling, "nr_throttled").unwrap_or(0),
                throttled: Duration::from_nanos(
                    cgfs::keyed_in(&throttling, "throttled_time").unwrap_or(0),
                ),
            })
        }
    }
}

/// The quota a cgroup directory has of its own, in CPUs.
pub fn limit(version: Version, dir: &std::path::Path) -> Option<f64> {
    match version {
        Version::V2 => {
            let text = std::fs::read_to_string(dir.join("cpu.max")).ok()?;
            let (quota, period) = text.trim().split_once(' ')?;
            let quota: f64 = quota.parse().ok()?;
            let period: f64 = period.parse().ok()?;
            Some(quota / period)
        }
        Version::V1 => {
            let quota: i64 = std::fs::read_to_string(dir.join("cpu.cfs_quota_us"))
                .ok()?
                .trim()
                .parse()
                .ok()?;
            let period = cgfs::read_u64(&dir.join("cpu.cfs_period_us"))?;
            (quota > 0).then(|| quota as f64 / period as f64)
        }
    }
}

/// The weight a cgroup directory has, in v2's units.
pub fn weight(version: Version, dir: &std::path::Path) -> Option<u64> {
    match version {
        Version::V2 => cgfs::read_u64(&dir.join("cpu.weight")),
        Version::V1 => cgfs::read_u64(&dir.join("cpu.shares")).map(|s| s * 100 / 1024),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus_become_a_quota_per_period() {
        let limits = Limits {
            cpus: Some(0.5),
            ..Limits::default()
        };
        let v2 = settings(Version::V2, &limits);
        assert_eq!(
            (v2[0].file, v2[0].value.as_str()),
            ("cpu.max", "50000 100000")
        );
        let v1 = settings(Version::V1, &limits);
        let files: Vec<_> = v1.iter().map(|s| (s.file, s.value.as_str())).collect();
        assert_eq!(
            files,
            [
                ("cpu.cfs_period_us", "100000"),
                ("cpu.cfs_quota_us", "50000")
            ]
        );
    }

    #[test]
    fn weights_become_shares_on_v1() {
        assert_eq!(weight_to_shares(100), 1024);
        assert_eq!(weight_to_shares(300), 3072);
        assert_eq!(weight_to_shares(1), 10);
        assert_eq!(weight_to_shares(10000), 102_400);
        let limits = Limits {
            cpu_weight: Some(300),
            ..Limits::default()
        };
        assert_eq!(settings(Version::V1, &limits)[0].value, "3072");
        assert_eq!(settings(Version::V2, &limits)[0].file, "cpu.weight");
    }
}
