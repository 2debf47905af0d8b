//! Fault injection, for tests only: `UNDERHOOD_FAULT=fail@N` makes a tool
//! fail right after step N of its plan (counted from 1, as `--dry-run`
//! numbers them), as if that step's call had failed; `UNDERHOOD_FAULT=kill@N`
//! ends the tool with SIGKILL there instead, which no clean-up survives,
//! and `UNDERHOOD_FAULT=int@N` sends it SIGINT, as a Ctrl-C would.
//! A test walks N over every step and checks that each failure leaves
//! nothing behind, and that each kill does once the tool's cleanup
//! command has run. The variable is read once; unset, it costs nothing.
//!
//! A tool's plan may run another tool's inside it (mini-run makes its
//! cgroup with cg-limit's plan): `fail@N` counts the steps of the program
//! that was started, and `PROGRAM:fail@N` (`cg-limit:fail@3`) those of
//! the plans of the tool named, wherever they run.

use std::sync::OnceLock;

use nix::sys::signal::{Signal, kill};
use nix::unistd::getpid;

/// What to do after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Fail as if the step had.
    Fail,
    /// End the tool with SIGKILL.
    Kill,
    /// Send the tool SIGINT.
    Interrupt,
}

/// The variable that asks for a fault.
pub const VARIABLE: &str = "UNDERHOOD_FAULT";

/// The fault asked for: for which program (none: the one started), what,
/// after which step.
type Asked = (Option<String>, Fault, usize);

fn parse(text: &str) -> Option<Asked> {
    let (program, text) = match text.split_once(':') {
        Some((program, rest)) if !program.is_empty() => (Some(program.to_string()), rest),
        Some(_) => return None,
        None => (None, text),
    };
    let (what, step) = text.split_once('@')?;
    let fault = match what {
        "fail" => Fault::Fail,
        "kill" => Fault::Kill,
        "int" => Fault::Interrupt,
        _ => return None,
    };
    Some((program, fault, step.parse().ok().filter(|n| *n > 0)?))
}

/// The program that was started, which an unnamed fault is for.
static STARTED: OnceLock<String> = OnceLock::new();

/// Says which program was started (the command line's parser does).
pub fn running(program: &str) {
    let _ = STARTED.set(program.to_string());
}

/// The fault asked for after step `number` (from 1) of a plan of
/// `program`'s, if any.
pub fn after(program: &str, number: usize) -> Option<Fault> {
    static ASKED: OnceLock<Option<Asked>> = OnceLock::new();
    let asked = ASKED.get_or_init(|| std::env::var(VARIABLE).ok().and_then(|v| parse(&v)));
    let (named, fault, step) = asked.as_ref()?;
    let for_us = match named {
        Some(named) => named == program,
        None => STARTED.get().is_some_and(|started| started == program),
    };
    (for_us && *step == number).then_some(*fault)
}

/// What a tool's executor looks at between step `number` (from 1) of a
/// plan of `program`'s and the next: first a fault a test asked for there
/// (a failure is the error; a kill or an interrupt is sent to this
/// process, as `kill` from another terminal would send it), then a
/// SIGINT, SIGTERM or SIGHUP that came while `held` held it back. A
/// signal that came is returned, for the executor to stop and undo.
pub fn between(
    program: &str,
    number: usize,
    held: Option<&crate::process::Supervision>,
) -> Result<Option<Signal>, crate::Error> {
    match after(program, number) {
        None => {}
        Some(Fault::Fail) => return Err(error(number)),
        // As kill -9 would: no undo runs.
        Some(Fault::Kill) => drop(kill(getpid(), Signal::SIGKILL)),
        // As a Ctrl-C would; held back, it is taken just below.
        Some(Fault::Interrupt) => drop(kill(getpid(), Signal::SIGINT)),
    }
    match held {
        None => Ok(None),
        Some(held) => held
            .take_pending()
            .map_err(|e| crate::Error::sys("signalfd(SIGINT|SIGTERM|SIGHUP)", e)),
    }
}

/// The error an injected failure gives, naming the variable as it was
/// set (`cg-limit:fail@3` for a nested tool's plan).
pub fn error(number: usize) -> crate::Error {
    let asked = std::env::var(VARIABLE).unwrap_or_else(|_| format!("fail@{number}"));
    crate::Error::setup(format!(
        "injected failure after step {number} ({VARIABLE}={asked})"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variable_names_a_fault_and_a_step() {
        assert_eq!(parse("fail@3"), Some((None, Fault::Fail, 3)));
        assert_eq!(parse("kill@12"), Some((None, Fault::Kill, 12)));
        assert_eq!(parse("int@2"), Some((None, Fault::Interrupt, 2)));
        assert_eq!(
            parse("cg-limit:fail@3"),
            Some((Some("cg-limit".into()), Fault::Fail, 3))
        );
        for bad in ["", "fail", "fail@", "fail@0", "boom@3", "fail@x", ":fail@3"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
