//! Which kernel is running. Features arrive with kernel versions
//! (`cgroup.kill` in 5.14, unprivileged overlay mounts in 5.11), so the
//! binaries and the lesson runner ask for the release and compare its
//! major and minor numbers.

/// The running kernel's release, as `uname -r` prints it; empty if unknown.
pub fn release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The major and minor numbers of a release like `6.1.0-28-amd64`;
/// `(0, 0)` where there are none.
pub fn version(release: &str) -> (u32, u32) {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty());
    let major = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_parse_from_releases() {
        assert_eq!(version("6.1.0-28-amd64"), (6, 1));
        assert_eq!(version("5.15.0"), (5, 15));
        assert_eq!(version("garbage"), (0, 0));
    }
}
