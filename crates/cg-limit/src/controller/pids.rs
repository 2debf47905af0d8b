//! # pids
//!
//! The pids controller counts a group's tasks — processes *and* threads —
//! and makes `fork()` and `clone()` fail with `EAGAIN` once the count
//! would pass the limit. Processes already running are never killed; the
//! group simply cannot grow, which is what stops a fork bomb. See
//! <https://docs.kernel.org/admin-guide/cgroup-v1/pids.html>.
//!
//! The files are the same in v1 and v2: `pids.max`, `pids.current`,
//! `pids.events` (how many forks were refused) and, since Linux 6.1,
//! `pids.peak`.

use std::path::Path;

use crate::cgfs;
use crate::controller::{Limits, Setting};
use crate::layout::{Controller, Version};

/// A limit on tasks, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PidsMax {
    Limit(u64),
    Max,
}

impl std::fmt::Display for PidsMax {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Limit(n) => write!(f, "{n}"),
            Self::Max => f.write_str("max"),
        }
    }
}

/// The kernel's own ceiling on pids (`PID_MAX_LIMIT` on 64-bit).
pub const MOST: u64 = 4_194_304;

/// Parses `--pids`: a count from 1 to 4194304, or `max`.
pub fn parse(text: &str) -> Result<PidsMax, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("max") {
        return Ok(PidsMax::Max);
    }
    match text.parse::<u64>() {
        Ok(n) if (1..=MOST).contains(&n) => Ok(PidsMax::Limit(n)),
        _ => Err(format!(
            "'{text}' is not a number of processes from 1 to {MOST}, or max"
        )),
    }
}

pub fn settings(_version: Version, limits: &Limits) -> Vec<Setting> {
    limits
        .pids
        .map(|max| Setting::new(
            Controller::Pids,
            "pids.max",
            max.to_string(),
            format!("--pids {max}"),
            "a fork or clone that would take the group's processes and threads past this fails with EAGAIN; nothing running is killed (docker run --pids-limit)".into(),
        ))
        .into_iter()
        .collect()
}

/// A group's tasks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub current: u64,
    /// `None` where the kernel keeps no peak (`pids.peak`, Linux 6.1+).
    pub peak: Option<u64>,
    /// The limit that holds: the group's own or a lower one above it.
    pub limit: Option<u64>,
    /// Forks refused because of the limit.
    pub refused: u64,
}

/// A group's tasks, `dir` in the hierarchy mounted at `top`; the files are
/// the same on v1 and v2.
pub fn usage(dir: &Path, top: &Path) -> Option<Usage> {
    Some(Usage {
        current: cgfs::read_u64(&dir.join("pids.current"))?,
        peak: cgfs::read_u64(&dir.join("pids.peak")),
        limit: super::lowest_above(dir, top, limit).map(|(l, _)| l),
        refused: cgfs::keyed(&dir.join("pids.events"), "max").unwrap_or(0),
    })
}

pub fn limit(dir: &Path) -> Option<u64> {
    cgfs::read_limit(&dir.join("pids.max"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_parse() {
        assert_eq!(parse("20"), Ok(PidsMax::Limit(20)));
        assert_eq!(parse("max"), Ok(PidsMax::Max));
        for bad in ["0", "-1", "abc", "4194305", "1e3", ""] {
            assert!(parse(bad).unwrap_err().contains("1 to 4194304"), "{bad}");
        }
    }

    #[test]
    fn pids_max_is_the_same_file_on_both() {
        let limits = Limits {
            pids: Some(PidsMax::Limit(20)),
            ..Limits::default()
        };
        for version in [Version::V1, Version::V2] {
            let s = &settings(version, &limits)[0];
            assert_eq!(
                (s.file, s.value.as_str(), s.flag.as_str()),
                ("pids.max", "20", "--pids 20")
            );
        }
    }
}
