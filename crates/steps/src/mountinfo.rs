//! Reading `/proc/PID/mountinfo`, which every tool looks at: its fields
//! are separated by spaces, so a mount point or source with a space, tab,
//! newline or backslash in it is written with octal escapes (`\040` for a
//! space, `\134` for a backslash). See
//! <https://man7.org/linux/man-pages/man5/proc_pid_mountinfo.5.html>.

/// A mountinfo field as it really is: its octal escapes undone.
pub fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| {
            let text = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_escapes_are_undone_and_the_rest_kept() {
        assert_eq!(unescape("/a\\040b/c"), "/a b/c");
        assert_eq!(unescape("/back\\134slash"), "/back\\slash");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/tail\\"), "/tail\\");
        assert_eq!(unescape("/not\\9xy"), "/not\\9xy");
    }
}
