//! Reading and writing cgroup files. A cgroup file is read and written
//! whole, one value per `write(2)`; a write the kernel refuses fails with
//! an errno, which the error names along with the file and the value (the
//! way youki's `WrappedIoError` does).

use std::path::Path;

use nix::errno::Errno;
use steps::Error;

/// The call as a plan shows it: `write /sys/fs/cgroup/x/memory.max "67108864"`.
pub fn write_call(path: &Path, value: &str) -> String {
    format!("write {} \"{value}\"", path.display())
}

/// Writes `value` to a cgroup file in one `write(2)`.
pub fn write(path: &Path, value: &str) -> Result<(), Errno> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| errno_of(&e))?;
    file.write_all(value.as_bytes()).map_err(|e| errno_of(&e))
}

/// Reads a cgroup file.
pub fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::sys(format!("read {}", path.display()), errno_of(&e)))
}

/// A file holding one number, or `max`: `None` for `max`, for a missing
/// file, or for v1's "no limit" (a number near 2^63).
pub fn read_limit(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let value = text.trim();
    value.parse::<u64>().ok().filter(|n| *n < 1 << 62)
}

/// A file holding one number.
pub fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a flat keyed file (`cpu.stat`, `memory.events`,
/// `pids.events`, `memory.oom_control`): lines of `key value`.
pub fn keyed(path: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    keyed_in(&text, key)
}

pub fn keyed_in(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// The pids in a `cgroup.procs` file.
pub fn procs(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

pub fn errno_of(error: &std::io::Error) -> Errno {
    Errno::from_raw(error.raw_os_error().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_files() {
        let text = "usage_usec 1500\nuser_usec 1000\nnr_throttled 3\n";
        assert_eq!(keyed_in(text, "user_usec"), Some(1000));
        assert_eq!(keyed_in(text, "usage"), None);
        assert_eq!(keyed_in(text, "nr_throttled"), Some(3));
    }
}
