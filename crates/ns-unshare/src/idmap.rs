//! # User and group id maps
//!
//! A new user namespace starts with no ids mapped: every id shows as the
//! overflow id 65534 ("nobody"), and the process cannot become anyone.
//! Writing `/proc/PID/uid_map` — lines of `INSIDE OUTSIDE COUNT` — says which
//! ids inside stand for which ids outside. An unprivileged process may map
//! only its own id, once, and must first write `deny` to
//! `/proc/PID/setgroups` before it may write a `gid_map` (since Linux 3.19:
//! otherwise dropping a group with `setgroups(2)` could grant access).
//! See <https://man7.org/linux/man-pages/man7/user_namespaces.7.html>.

/// `COUNT` ids starting at `outer` outside appear as ids starting at `inner`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub inner: u32,
    pub outer: u32,
    pub count: u32,
}

impl IdRange {
    /// The line the kernel reads from `uid_map`/`gid_map`.
    pub fn map_line(&self) -> String {
        format!("{} {} {}", self.inner, self.outer, self.count)
    }
}

/// `OUTER,INNER,COUNT` (util-linux 2.38) or `INNER:OUTER:COUNT` (2.39+).
pub fn parse_range(text: &str) -> Result<IdRange, String> {
    let (parts, outer_first): (Vec<&str>, bool) = if text.contains(',') {
        (text.split(',').collect(), true)
    } else {
        (text.split(':').collect(), false)
    };
    let numbers = parts
        .iter()
        .map(|p| p.trim().parse::<u32>())
        .collect::<Result<Vec<_>, _>>()
        .ok()
        .filter(|n| n.len() == 3);
    let Some(n) = numbers else {
        return Err(format!(
            "'{text}' is not OUTER,INNER,COUNT or INNER:OUTER:COUNT (three whole numbers)"
        ));
    };
    let (inner, outer) = if outer_first {
        (n[1], n[0])
    } else {
        (n[0], n[1])
    };
    if n[2] == 0 {
        return Err(format!("'{text}' maps no ids: COUNT must be at least 1"));
    }
    if inner.checked_add(n[2]).is_none() || outer.checked_add(n[2]).is_none() {
        return Err(format!("'{text}' runs past the largest id, 4294967295"));
    }
    Ok(IdRange {
        inner,
        outer,
        count: n[2],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_util_linux_range_syntaxes_parse() {
        let old = parse_range("100000,0,65536").unwrap();
        let new = parse_range("0:100000:65536").unwrap();
        assert_eq!(old, new);
        assert_eq!(old.map_line(), "0 100000 65536");
    }

    #[test]
    fn bad_ranges_say_what_is_accepted() {
        assert!(
            parse_range("1,2")
                .unwrap_err()
                .contains("OUTER,INNER,COUNT")
        );
        assert!(parse_range("0:1000:0").unwrap_err().contains("at least 1"));
        assert!(parse_range("4294967295:0:2").is_err());
    }
}
