//! Narration: `--explain` tells each step on stderr as it runs, `--dry-run`
//! prints the whole plan on stdout and stops. Stdout otherwise stays the
//! program's own, so `--explain` never changes what a pipeline sees.

use std::io::Write;

use colored::Colorize;

use crate::{Error, Plan, Step};

/// What the narrator does with steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Run the steps, say nothing.
    Quiet,
    /// Run the steps and narrate each on stderr.
    Explain,
    /// Print the plan, run nothing.
    DryRun,
}

/// Colours for one output stream; all plain when `on` is false.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Palette {
    on: bool,
}

impl Palette {
    pub fn new(on: bool) -> Self {
        // Whether to colour is decided here, per stream, not by `colored`'s
        // own guess from the environment.
        if on {
            colored::control::set_override(true);
        }
        Self { on }
    }

    pub fn plain() -> Self {
        Self { on: false }
    }

    pub fn is_on(self) -> bool {
        self.on
    }

    fn paint(self, text: &str, style: impl Fn(&str) -> colored::ColoredString) -> String {
        if self.on {
            style(text).to_string()
        } else {
            text.to_string()
        }
    }

    /// A kernel call or command.
    pub fn call(self, text: &str) -> String {
        self.paint(text, |t| t.cyan().bold())
    }
    pub fn dim(self, text: &str) -> String {
        self.paint(text, |t| t.dimmed())
    }
    pub fn bold(self, text: &str) -> String {
        self.paint(text, |t| t.bold())
    }
    pub fn good(self, text: &str) -> String {
        self.paint(text, |t| t.green().bold())
    }
    pub fn bad(self, text: &str) -> String {
        self.paint(text, |t| t.red().bold())
    }
    pub fn warn(self, text: &str) -> String {
        self.paint(text, |t| t.yellow())
    }
}

/// Tells the steps of one binary as they run.
#[derive(Debug, Clone)]
pub struct Narrator {
    program: &'static str,
    mode: Mode,
    palette: Palette,
}

impl Narrator {
    pub fn new(program: &'static str, mode: Mode, palette: Palette) -> Self {
        Self {
            program,
            mode,
            palette,
        }
    }

    /// A narrator that never says anything, for library callers and tests.
    pub fn quiet(program: &'static str) -> Self {
        Self::new(program, Mode::Quiet, Palette::plain())
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn is_dry_run(&self) -> bool {
        self.mode == Mode::DryRun
    }

    pub fn palette(&self) -> Palette {
        self.palette
    }

    /// `[ns-unshare 2/7] unshare(CLONE_NEWPID)` and, below it, why and where
    /// the book explains it.
    pub fn render_step(&self, index: usize, total: usize, step: &dyn Step) -> String {
        let p = self.palette;
        let counter = format!("[{} {}/{}]", self.program, index + 1, total);
        format!(
            "{} {}\n    {} {}",
            p.dim(&counter),
            p.call(&step.call()),
            step.why(),
            p.dim(&format!("[book: {}]", step.chapter().path)),
        )
    }

    /// Narrate a step that is about to run (explain mode only).
    pub fn announce(&self, index: usize, total: usize, step: &dyn Step) {
        if self.mode == Mode::Explain {
            let text = self.render_step(index, total, step);
            // One write per step, so the lines of a parent and a forked
            // child do not interleave mid-step.
            let _ = std::io::stderr().write_all(format!("{text}\n").as_bytes());
        }
    }

    /// A line of narration that is not a step: what a step observed, or how
    /// the program ends (explain mode only).
    pub fn note(&self, text: &str) {
        if self.mode == Mode::Explain {
            let line = format!(
                "{} {}\n",
                self.palette.dim(&format!("[{}]", self.program)),
                text
            );
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }

    /// The whole plan, for `--dry-run`, written to `out`.
    pub fn print_plan<S: Step>(&self, plan: &Plan<S>, out: &mut impl Write) -> std::io::Result<()> {
        let p = self.palette;
        writeln!(
            out,
            "{} would make {}; nothing was done (--dry-run):",
            self.program,
            crate::units::plural(plan.len() as u64, "call", "calls")
        )?;
        for (index, step) in plan.steps().iter().enumerate() {
            writeln!(out, "{:>3}. {}", index + 1, p.call(&step.call()))?;
            writeln!(
                out,
                "     {} {}",
                step.why(),
                p.dim(&format!("[book: {}]", step.chapter().path))
            )?;
        }
        Ok(())
    }

    /// Report an error on stderr as one line, `program: message`, and give
    /// back the exit code to end with.
    pub fn report(&self, error: &Error) -> u8 {
        let line = format!(
            "{}: {}\n",
            self.program,
            self.palette.bad(&error.to_string())
        );
        let _ = std::io::stderr().write_all(line.as_bytes());
        error.code()
    }
}
