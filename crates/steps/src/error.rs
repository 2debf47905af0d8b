//! Errors that teach: each names the kernel call that failed with its
//! arguments, the errno by name and meaning, and — where we know one — a hint
//! a learner can act on. They print as one lower-case line.

use std::fmt;

use nix::errno::Errno;

/// The exit codes every underhood binary documents. A program a binary runs
/// passes its own exit code through; these are the binary's own.
pub mod exit {
    /// Bad flags or values: nothing was done.
    pub const USAGE: u8 = 2;
    /// The tool itself failed (a kernel call was refused); what it had set up
    /// is undone. Docker and coreutils' `env`/`chroot` use 125 the same way.
    pub const SETUP: u8 = 125;
    /// The program was found but could not be executed.
    pub const NOT_EXECUTABLE: u8 = 126;
    /// The program was not found.
    pub const NOT_FOUND: u8 = 127;
}

/// A failure of the tool itself, ready to print as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
    code: u8,
}

impl Error {
    /// Bad input, caught before any side effect.
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: exit::USAGE,
        }
    }

    /// A kernel call that failed: `call` is the call as the plan shows it.
    pub fn sys(call: impl fmt::Display, errno: Errno) -> Self {
        Self {
            message: format!("{call}: {}", describe(errno)),
            code: exit::SETUP,
        }
    }

    /// A call made through `std::io` that failed: like [`Error::sys`] with
    /// the errno it carries, or with its text when it carries none.
    pub fn io(call: impl fmt::Display, error: &std::io::Error) -> Self {
        match error.raw_os_error() {
            Some(code) => Self::sys(call, Errno::from_raw(code)),
            None => Self::setup(format!("{call}: {error}")),
        }
    }

    /// Any other failure of the tool's own setup.
    pub fn setup(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: exit::SETUP,
        }
    }

    /// An error passed on from another process of the tool, with the exit
    /// code it chose.
    pub fn with_code(message: impl Into<String>, code: u8) -> Self {
        Self {
            message: message.into(),
            code,
        }
    }

    /// `execvp` failed: 127 when the program does not exist, 126 otherwise,
    /// like a shell.
    pub fn exec(program: &str, errno: Errno) -> Self {
        let (code, hint) = match errno {
            Errno::ENOENT => (
                exit::NOT_FOUND,
                "check the program's name, and that it exists inside the new root and $PATH",
            ),
            Errno::EACCES => (exit::NOT_EXECUTABLE, "the file needs execute permission"),
            Errno::ENOEXEC => (
                exit::NOT_EXECUTABLE,
                "not a binary this kernel runs, nor a script with a #! line",
            ),
            _ => (exit::NOT_EXECUTABLE, ""),
        };
        let error = Self {
            message: format!("execvp(\"{program}\"): {}", describe(errno)),
            code,
        };
        if hint.is_empty() {
            error
        } else {
            error.hint(hint)
        }
    }

    /// Adds a hint a learner can act on.
    pub fn hint(mut self, hint: impl fmt::Display) -> Self {
        self.message = format!("{}; hint: {hint}", self.message);
        self
    }

    /// Adds what the tool was doing, in front.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    pub fn code(&self) -> u8 {
        self.code
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// `operation not permitted (EPERM)`: the meaning in lower case, as the C
/// library words it (what `perror` and the shell print, so what a learner
/// will search for), then the name to look up in `errno(3)`.
pub fn describe(errno: Errno) -> String {
    let text = std::io::Error::from_raw_os_error(errno as i32).to_string();
    let desc = match text.rsplit_once(" (os error ") {
        Some((desc, _)) => desc.to_string(),
        None => errno.desc().to_string(),
    };
    let mut lower = desc.chars();
    let desc = match lower.next() {
        Some(first) => first.to_lowercase().chain(lower).collect(),
        None => String::new(),
    };
    format!("{desc} ({errno:?})")
}

/// An `std::io` error worded as [`describe`] words an errno; its own text
/// when it carries no errno.
pub fn describe_io(error: &std::io::Error) -> String {
    match error.raw_os_error() {
        Some(code) => describe(Errno::from_raw(code)),
        None => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sys_error_names_call_errno_and_hint() {
        let e = Error::sys("unshare(CLONE_NEWUSER)", Errno::EPERM)
            .hint("see /proc/sys/user/max_user_namespaces");
        assert_eq!(
            e.to_string(),
            "unshare(CLONE_NEWUSER): operation not permitted (EPERM); hint: see /proc/sys/user/max_user_namespaces"
        );
        assert_eq!(e.code(), exit::SETUP);
    }

    #[test]
    fn errnos_read_as_the_c_library_words_them() {
        assert_eq!(
            describe(Errno::EAGAIN),
            "resource temporarily unavailable (EAGAIN)"
        );
        assert_eq!(
            describe(Errno::ENOENT),
            "no such file or directory (ENOENT)"
        );
    }

    #[test]
    fn io_errors_read_as_the_call_and_its_errno() {
        let e = Error::io("mkdir(\"/x\")", &std::io::Error::from_raw_os_error(13));
        assert_eq!(e.to_string(), "mkdir(\"/x\"): permission denied (EACCES)");
        assert_eq!(e.code(), exit::SETUP);
        let custom = std::io::Error::other("short read");
        assert_eq!(Error::io("read", &custom).to_string(), "read: short read");
        assert_eq!(describe_io(&custom), "short read");
    }

    #[test]
    fn exec_errors_use_shell_exit_codes() {
        assert_eq!(Error::exec("nope", Errno::ENOENT).code(), 127);
        assert_eq!(Error::exec("/etc/passwd", Errno::EACCES).code(), 126);
    }
}
