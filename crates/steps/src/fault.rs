//! Fault injection, for tests only: `UNDERHOOD_FAULT=fail@N` makes a tool
//! fail right after step N of its plan (counted from 1, as `--dry-run`
//! numbers them), as if that step's call had failed; `UNDERHOOD_FAULT=kill@N`
//! ends the tool with SIGKILL there instead, which no clean-up survives,
//! and `UNDERHOOD_FAULT=int@N` sends it SIGINT, as a Ctrl-C would.
//! A test walks N over every step and checks that each failure leaves
//! nothing behind, and that each kill does once the tool's cleanup
//! command has run. The variable is read once; unset, it costs nothing.

use std::sync::OnceLock;

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

fn parse(text: &str) -> Option<(Fault, usize)> {
    let (what, step) = text.split_once('@')?;
    let fault = match what {
        "fail" => Fault::Fail,
        "kill" => Fault::Kill,
        "int" => Fault::Interrupt,
        _ => return None,
    };
    Some((fault, step.parse().ok().filter(|n| *n > 0)?))
}

/// The fault asked for after step `number` (from 1), if any.
pub fn after(number: usize) -> Option<Fault> {
    static ASKED: OnceLock<Option<(Fault, usize)>> = OnceLock::new();
    let asked = ASKED.get_or_init(|| std::env::var(VARIABLE).ok().and_then(|v| parse(&v)));
    asked.and_then(|(fault, step)| (step == number).then_some(fault))
}

/// The error an injected failure gives.
pub fn error(number: usize) -> crate::Error {
    crate::Error::setup(format!(
        "injected failure after step {number} ({VARIABLE}=fail@{number})"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variable_names_a_fault_and_a_step() {
        assert_eq!(parse("fail@3"), Some((Fault::Fail, 3)));
        assert_eq!(parse("kill@12"), Some((Fault::Kill, 12)));
        assert_eq!(parse("int@2"), Some((Fault::Interrupt, 2)));
        for bad in ["", "fail", "fail@", "fail@0", "boom@3", "fail@x"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
