//! # The step engine
//!
//! Every underhood binary works in two phases, the way bubblewrap does with
//! its `SetupOp` list: it first turns its flags into a [`Plan`] — a list of
//! [`Step`]s, built without touching the kernel — and only then executes the
//! plan. Because a step knows how to show itself as the kernel call it makes,
//! the teaching features fall out of the architecture:
//!
//! * `--dry-run` prints the plan and stops;
//! * `--explain` narrates each step on stderr, numbered, as it runs, with one
//!   line of why and the book chapter that explains it;
//! * errors name the call that failed, its arguments, the errno and a hint.

pub mod chapter;
pub mod cli;
pub mod error;
pub mod fault;
pub mod kernel;
pub mod lock;
pub mod mountinfo;
pub mod narrate;
pub mod process;
pub mod sys;
pub mod table;
pub mod units;

use std::ops::ControlFlow;

pub use chapter::Chapter;
pub use cli::{ColorChoice, StepArgs};
pub use error::{Error, exit};
pub use narrate::{Narrator, Palette};

/// One thing a binary does to the kernel, shown the way a learner would
/// write it in C or type it in a shell.
pub trait Step {
    /// The call as it is made, e.g. `unshare(CLONE_NEWPID|CLONE_NEWNS)`.
    fn call(&self) -> String;
    /// One line saying why this step is needed.
    fn why(&self) -> String;
    /// The book chapter that explains the mechanism.
    fn chapter(&self) -> Chapter;
}

/// Which process makes a step, in a plan that splits across a `fork()`:
/// the parent and the child walk the same plan, each making only its own
/// steps, and each step says whose it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Before any fork, or in a plan that does not fork.
    Caller,
    /// The tool itself after the fork: it waits for the child.
    Parent,
    /// The forked child that goes on to run the program.
    Child,
}

impl Side {
    /// `parent: waitpid(child)`: a call as the side that makes it shows it.
    pub fn label(self, call: String) -> String {
        match self {
            Self::Caller => call,
            Self::Parent => format!("parent: {call}"),
            Self::Child => format!("child: {call}"),
        }
    }

    /// Whether a step of this side is the other process's, seen from `here`.
    pub fn is_other_than(self, here: Side) -> bool {
        matches!(
            (self, here),
            (Self::Parent, Self::Child) | (Self::Child, Self::Parent)
        )
    }
}

/// A step of a plan that splits across a `fork()`: the call, and the process
/// that makes it. Shown as that process shows it (`child: execvp(…)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sided<O> {
    pub side: Side,
    pub op: O,
}

impl<O: Step> Step for Sided<O> {
    fn call(&self) -> String {
        self.side.label(self.op.call())
    }

    fn why(&self) -> String {
        self.op.why()
    }

    fn chapter(&self) -> Chapter {
        self.op.chapter()
    }
}

/// An ordered list of steps with no side effects until [`Plan::execute`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan<S> {
    steps: Vec<S>,
}

impl<S> Default for Plan<S> {
    fn default() -> Self {
        Self { steps: Vec::new() }
    }
}

impl<S: Step> Plan<S> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, step: S) {
        self.steps.push(step);
    }

    pub fn steps(&self) -> &[S] {
        &self.steps
    }

    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Every step rendered as its call: what unit tests compare against.
    pub fn calls(&self) -> Vec<String> {
        self.steps.iter().map(Step::call).collect()
    }

    /// Runs the steps in order, narrating each one first when the narrator
    /// explains. `run` returns `Break` to end the walk early with a value for
    /// the caller; an error ends it at once. Plans that split across a
    /// `fork()` walk their steps themselves with [`Narrator::announce`].
    pub fn execute<T>(
        &self,
        narrator: &Narrator,
        mut run: impl FnMut(&S) -> Result<ControlFlow<T>, Error>,
    ) -> Result<ControlFlow<T>, Error> {
        for (index, step) in self.steps.iter().enumerate() {
            narrator.announce(index, self.len(), step);
            if let ControlFlow::Break(value) = run(step)? {
                return Ok(ControlFlow::Break(value));
            }
        }
        Ok(ControlFlow::Continue(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Write(&'static str);

    impl Step for Write {
        fn call(&self) -> String {
            format!("write /sys/fs/cgroup/demo/memory.max \"{}\"", self.0)
        }
        fn why(&self) -> String {
            "limit the memory".into()
        }
        fn chapter(&self) -> Chapter {
            chapter::NAMESPACES
        }
    }

    fn plan() -> Plan<Write> {
        let mut plan = Plan::new();
        plan.push(Write("67108864"));
        plan.push(Write("max"));
        plan
    }

    #[test]
    fn execute_runs_steps_in_order_and_stops_on_break() {
        let mut seen = Vec::new();
        let flow = plan().execute(&Narrator::quiet("test"), |step| {
            seen.push(step.0);
            Ok(ControlFlow::Break(7))
        });
        assert_eq!(flow, Ok(ControlFlow::Break(7)));
        assert_eq!(seen, ["67108864"]);
    }

    #[test]
    fn execute_stops_at_the_first_error() {
        let mut count = 0;
        let result: Result<ControlFlow<()>, Error> =
            plan().execute(&Narrator::quiet("test"), |_| {
                count += 1;
                Err(Error::setup("refused"))
            });
        assert_eq!(result.unwrap_err().code(), exit::SETUP);
        assert_eq!(count, 1);
    }

    #[test]
    fn dry_run_prints_numbered_calls_with_why_and_chapter() {
        let narrator = Narrator::new("cg-limit", narrate::Mode::DryRun, Palette::plain());
        let mut out = Vec::new();
        narrator.print_plan(&plan(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "cg-limit would make 2 calls; nothing was done (--dry-run):\n  \
             1. write /sys/fs/cgroup/demo/memory.max \"67108864\"\n     \
             limit the memory [book: namespaces/README.md]\n  \
             2. write /sys/fs/cgroup/demo/memory.max \"max\"\n     \
             limit the memory [book: namespaces/README.md]\n"
        );
    }

    #[test]
    fn explain_lines_count_steps() {
        let narrator = Narrator::new("cg-limit", narrate::Mode::Explain, Palette::plain());
        let line = narrator.render_step(0, 2, &Write("max"));
        assert!(
            line.starts_with("[cg-limit 1/2] write /sys/fs/cgroup/demo/memory.max \"max\"\n"),
            "{line}"
        );
    }

    #[test]
    fn colour_choices() {
        assert!(ColorChoice::Always.enabled_for(&std::io::stderr()));
        assert!(!ColorChoice::Never.enabled_for(&std::io::stderr()));
        assert_eq!(Palette::plain().bad("x"), "x");
    }
}
