//! The units people type: sizes (`64M`, `512m`, `1G`, `1.5GiB`), rates
//! (`10MB/s`) and CPU counts (`0.5`). Powers of 1024, as `docker run
//! --memory` and systemd read them.

/// Bytes, or no limit (`max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bytes {
    Limit(u64),
    Max,
}

impl Bytes {
    /// `67108864` or `max`: what a cgroup file takes.
    pub fn file_value(self) -> String {
        match self {
            Self::Limit(n) => n.to_string(),
            Self::Max => "max".into(),
        }
    }
}

impl std::fmt::Display for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Max => f.write_str("max"),
            Self::Limit(n) => f.write_str(&human(*n)),
        }
    }
}

pub use steps::units::{human, plural};

const SIZE_HELP: &str =
    "a size like 64M, 512m, 1G or 1.5GiB (K, M, G, T are powers of 1024), or max";

/// Parses a size; `what` names the flag for the error.
pub fn parse_size(text: &str) -> Result<Bytes, String> {
    let trimmed = text.trim();
    if trimmed.eq_ignore_ascii_case("max") {
        return Ok(Bytes::Max);
    }
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let unit = unit.trim().to_ascii_lowercase();
    let multiplier: u64 = match unit.trim_end_matches("ib").trim_end_matches('b') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return Err(format!("'{text}' is not {SIZE_HELP}")),
    };
    let value: f64 = number
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite())
        .ok_or_else(|| format!("'{text}' is not {SIZE_HELP}"))?;
    let bytes = value * multiplier as f64;
    if bytes < 1.0 {
        return Err(format!("'{text}' is no memory at all; give {SIZE_HELP}"));
    }
    if bytes >= u64::MAX as f64 {
        return Err(format!(
            "'{text}' is larger than any machine; give {SIZE_HELP}"
        ));
    }
    Ok(Bytes::Limit(bytes as u64))
}

/// Parses a rate: a size per second (`10MB/s`, `10M`).
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let size = text.trim().trim_end_matches("/s").trim_end_matches("/S");
    match parse_size(size) {
        Ok(Bytes::Limit(n)) => Ok(n),
        Ok(Bytes::Max) => Err(format!("'{text}': a rate needs a number, like 10MB/s")),
        Err(_) => Err(format!("'{text}' is not a rate like 10MB/s or 512K/s")),
    }
}

/// Parses a CPU count like `docker run --cpus`: a positive decimal.
pub fn parse_cpus(text: &str) -> Result<f64, String> {
    let cpus: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a number of CPUs like 0.5 or 2"))?;
    if !(0.01..=1024.0).contains(&cpus) {
        return Err(format!(
            "'{text}' is out of range: give a number of CPUs from 0.01 to 1024"
        ));
    }
    Ok(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_people_type() {
        assert_eq!(parse_size("64M"), Ok(Bytes::Limit(64 << 20)));
        assert_eq!(parse_size("512m"), Ok(Bytes::Limit(512 << 20)));
        assert_eq!(parse_size("1G"), Ok(Bytes::Limit(1 << 30)));
        assert_eq!(parse_size("1.5GiB"), Ok(Bytes::Limit(3 << 29)));
        assert_eq!(parse_size("100MB"), Ok(Bytes::Limit(100 << 20)));
        assert_eq!(parse_size("4096"), Ok(Bytes::Limit(4096)));
        assert_eq!(parse_size("max"), Ok(Bytes::Max));
    }

    #[test]
    fn bad_sizes_say_what_is_accepted() {
        for bad in ["abc", "-1", "0", "1e99", "18446744073709551616", "64Q", ""] {
            let error = parse_size(bad).unwrap_err();
            assert!(
                error.contains("64M") || error.contains("no memory") || error.contains("larger"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn rates_and_cpus() {
        assert_eq!(parse_rate("10MB/s"), Ok(10 << 20));
        assert_eq!(parse_rate("512K/s"), Ok(512 << 10));
        assert!(parse_rate("fast").unwrap_err().contains("10MB/s"));
        assert_eq!(parse_cpus("0.5"), Ok(0.5));
        assert!(parse_cpus("0").is_err());
        assert!(parse_cpus("-1").is_err());
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(64 << 20), "64M");
        assert_eq!(human(3 << 29), "1.5G");
        assert_eq!(human(100), "100B");
    }
}
