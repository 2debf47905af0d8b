//! # io
//!
//! The io controller (`blkio` in v1) throttles a group's reads and writes
//! to one block device, in bytes per second. The limit is per device,
//! named by its `MAJOR:MINOR` numbers as `ls -l /dev` shows them.
//!
//! v1 throttles only I/O the group issues directly (`O_DIRECT`, reads):
//! buffered writes reach the disk later, written back by the kernel on
//! nobody's account. v2 charges writeback to the group that dirtied the
//! pages (with the memory controller enabled alongside), so buffered writes
//! are throttled too. See
//! <https://docs.kernel.org/admin-guide/cgroup-v2.html#io>.
//!
//! | flag             | v2                    | v1                                |
//! |------------------|-----------------------|-----------------------------------|
//! | `--io-read-bps`  | `io.max` "8:0 rbps=N" | `blkio.throttle.read_bps_device` "8:0 N" |
//! | `--io-write-bps` | `io.max` "8:0 wbps=N" | `blkio.throttle.write_bps_device` "8:0 N" |
//! | usage            | `io.stat`             | `blkio.throttle.io_service_bytes` |

use std::path::Path;

use crate::cgfs;
use crate::controller::{Limits, Setting};
use crate::layout::{Controller, Version};
use crate::units::human;

/// Throttling of one block device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttle {
    /// The device as the user named it (`/dev/loop0` or `7:0`).
    pub device: String,
    pub major: u64,
    pub minor: u64,
    pub read_bps: Option<u64>,
    pub write_bps: Option<u64>,
}

impl Throttle {
    fn numbers(&self) -> String {
        format!("{}:{}", self.major, self.minor)
    }
}

/// Which way a flag throttles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Read,
    Write,
}

/// Parses `DEV=RATE` and adds it to `throttles`, merging the read and the
/// write limit of one device. `DEV` is a block device's path or
/// `MAJOR:MINOR`; looking a path up is the only thing this does to the
/// system.
pub fn add(throttles: &mut Vec<Throttle>, direction: Direction, text: &str) -> Result<(), String> {
    let Some((device, rate)) = text.rsplit_once('=') else {
        return Err(format!(
            "'{text}' needs the form DEVICE=RATE, like /dev/sda=10MB/s or 8:0=10M"
        ));
    };
    let rate = crate::units::parse_rate(rate)?;
    let (major, minor) = device_numbers(device)?;
    let index = match throttles
        .iter()
        .position(|t| (t.major, t.minor) == (major, minor))
    {
        Some(index) => index,
        None => {
            throttles.push(Throttle {
                device: device.to_string(),
                major,
                minor,
                read_bps: None,
                write_bps: None,
            });
            throttles.len() - 1
        }
    };
    match direction {
        Direction::Read => throttles[index].read_bps = Some(rate),
        Direction::Write => throttles[index].write_bps = Some(rate),
    }
    Ok(())
}

fn device_numbers(device: &str) -> Result<(u64, u64), String> {
    if let Some((major, minor)) = device.split_once(':')
        && let (Ok(major), Ok(minor)) = (major.parse(), minor.parse())
    {
        return Ok((major, minor));
    }
    let stat = nix::sys::stat::stat(device).map_err(|e| {
        format!(
            "'{device}': {}; name a block device like /dev/sda or give MAJOR:MINOR (lsblk shows both)",
            steps::error::describe(e)
        )
    })?;
    let kind =
        nix::sys::stat::SFlag::from_bits_truncate(stat.st_mode) & nix::sys::stat::SFlag::S_IFMT;
    if kind != nix::sys::stat::SFlag::S_IFBLK {
        return Err(format!(
            "'{device}' is not a block device; io limits apply to disks like /dev/sda or /dev/loop0 (lsblk lists them)"
        ));
    }
    Ok((
        nix::sys::stat::major(stat.st_rdev),
        nix::sys::stat::minor(stat.st_rdev),
    ))
}

pub fn settings(version: Version, limits: &Limits) -> Vec<Setting> {
    let mut out = Vec::new();
    for throttle in &limits.io {
        let flags = |parts: &mut Vec<String>| {
            if let Some(rate) = throttle.read_bps {
                parts.push(format!(
                    "--io-read-bps {}={}/s",
                    throttle.device,
                    human(rate)
                ));
            }
            if let Some(rate) = throttle.write_bps {
                parts.push(format!(
                    "--io-write-bps {}={}/s",
                    throttle.device,
                    human(rate)
                ));
            }
        };
        let why = |read: bool, write: bool| {
            let (what, docker) = match (read, write) {
                (true, true) => ("reads and writes", "--device-read-bps/--device-write-bps"),
                (true, false) => ("reads", "--device-read-bps"),
                _ => ("writes", "--device-write-bps"),
            };
            format!(
                "{what} of {} (device {}) by the group are held to this many bytes a second (docker run {docker})",
                throttle.device,
                throttle.numbers()
            )
        };
        match version {
            Version::V2 => {
                let mut value = throttle.numbers();
                if let Some(rate) = throttle.read_bps {
                    value.push_str(&format!(" rbps={rate}"));
                }
                if let Some(rate) = throttle.write_bps {
                    value.push_str(&format!(" wbps={rate}"));
                }
                let mut parts = Vec::new();
                flags(&mut parts);
                let why = why(throttle.read_bps.is_some(), throttle.write_bps.is_some());
                out.push(setting("io.max", value, parts.join(" "), why));
            }
            Version::V1 => {
                for (file, rate, direction, read) in [
                    (
                        "blkio.throttle.read_bps_device",
                        throttle.read_bps,
                        "--io-read-bps",
                        true,
                    ),
                    (
                        "blkio.throttle.write_bps_device",
                        throttle.write_bps,
                        "--io-write-bps",
                        false,
                    ),
                ] {
                    if let Some(rate) = rate {
                        out.push(setting(
                            file,
                            format!("{} {rate}", throttle.numbers()),
                            format!("{direction} {}={}/s", throttle.device, human(rate)),
                            why(read, !read),
                        ));
                    }
                }
            }
        }
    }
    out
}

fn setting(file: &'static str, value: String, flag: String, why: String) -> Setting {
    Setting::new(Controller::Io, file, value, flag, why)
}

/// Bytes a group has read and written, over all devices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub read: u64,
    pub written: u64,
}

pub fn usage(version: Version, dir: &Path) -> Option<Usage> {
    match version {
        Version::V2 => {
            // "8:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0"
            let text = std::fs::read_to_string(dir.join("io.stat")).ok()?;
            let mut usage = Usage::default();
            for field in text.split_whitespace() {
                if let Some((key, value)) = field.split_once('=') {
                    let value: u64 = value.parse().unwrap_or(0);
                    match key {
                        "rbytes" => usage.read += value,
                        "wbytes" => usage.written += value,
                        _ => {}
                    }
                }
            }
            Some(usage)
        }
        Version::V1 => {
            // "7:0 Read 4096", "7:0 Write 0", …, "Total 4096"
            let recursive = dir.join("blkio.throttle.io_service_bytes_recursive");
            let path = if recursive.exists() {
                recursive
            } else {
                dir.join("blkio.throttle.io_service_bytes")
            };
            let text = std::fs::read_to_string(path).ok()?;
            let mut usage = Usage::default();
            for line in text.lines() {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if let [_, kind, value] = fields.as_slice() {
                    let value: u64 = value.parse().unwrap_or(0);
                    match *kind {
                        "Read" => usage.read += value,
                        "Write" => usage.written += value,
                        _ => {}
                    }
                }
            }
            Some(usage)
        }
    }
}

/// The io limits a cgroup directory has of its own, as its file says.
pub fn limit(version: Version, dir: &Path) -> Vec<String> {
    let lines = |file: &str| -> Vec<String> {
        cgfs::read(&dir.join(file))
            .map(|t| t.lines().map(str::to_string).collect())
            .unwrap_or_default()
    };
    match version {
        Version::V2 => lines("io.max"),
        Version::V1 => {
            let mut all: Vec<String> = lines("blkio.throttle.read_bps_device")
                .into_iter()
                .map(|l| format!("read {l}"))
                .collect();
            all.extend(
                lines("blkio.throttle.write_bps_device")
                    .into_iter()
                    .map(|l| format!("write {l}")),
            );
            all
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_and_write_of_one_device_merge() {
        let mut throttles = Vec::new();
        add(&mut throttles, Direction::Read, "7:0=10MB/s").unwrap();
        add(&mut throttles, Direction::Write, "7:0=1M").unwrap();
        assert_eq!(throttles.len(), 1);
        let limits = Limits {
            io: throttles,
            ..Limits::default()
        };
        let v2 = settings(Version::V2, &limits);
        assert_eq!(v2.len(), 1);
        assert_eq!(
            (v2[0].file, v2[0].value.as_str()),
            ("io.max", "7:0 rbps=10485760 wbps=1048576")
        );
        assert_eq!(
            v2[0].flag,
            "--io-read-bps 7:0=10M/s --io-write-bps 7:0=1M/s"
        );
        let v1: Vec<_> = settings(Version::V1, &limits)
            .into_iter()
            .map(|s| (s.file, s.value))
            .collect();
        assert_eq!(
            v1,
            [
                ("blkio.throttle.read_bps_device", "7:0 10485760".to_string()),
                ("blkio.throttle.write_bps_device", "7:0 1048576".to_string())
            ]
        );
    }

    #[test]
    fn devices_must_be_block_devices() {
        let mut throttles = Vec::new();
        let error = add(&mut throttles, Direction::Read, "/etc/passwd=1M").unwrap_err();
        assert!(error.contains("not a block device"), "{error}");
        let error = add(&mut throttles, Direction::Read, "/nonexistent=1M").unwrap_err();
        assert!(error.contains("ENOENT"), "{error}");
        let error = add(&mut throttles, Direction::Read, "/dev/sda").unwrap_err();
        assert!(error.contains("DEVICE=RATE"), "{error}");
        let error = add(&mut throttles, Direction::Read, "8:0=fast").unwrap_err();
        assert!(error.contains("10MB/s"), "{error}");
    }
}
