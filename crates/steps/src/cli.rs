//! The flags every binary shares: `--explain`, `--dry-run` and `--color`.

use std::io::IsTerminal;

use crate::narrate::{Mode, Narrator, Palette};

/// When to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colour when writing to a terminal and `NO_COLOR` is not set.
    #[default]
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether output to `stream` gets colour. `auto` follows the
    /// <https://no-color.org> convention and stays plain for pipes, files and
    /// `TERM=dumb`.
    pub fn enabled_for(self, stream: &impl IsTerminal) -> bool {
        match self {
            Self::Always => true,
            Self::Never => false,
            Self::Auto => {
                let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
                let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
                !no_color && !dumb && stream.is_terminal()
            }
        }
    }
}

/// Flatten this into a binary's clap parser.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StepArgs {
    /// Narrate each step on stderr as it runs: the kernel call, why, and the
    /// book chapter that explains it
    #[arg(long, global = true)]
    pub explain: bool,

    /// Print the plan of kernel calls and stop without making any
    #[arg(long, global = true)]
    pub dry_run: bool,

    /// Colour: auto (a terminal, unless NO_COLOR is set), always or never
    #[arg(long, value_name = "WHEN", default_value = "auto", global = true)]
    pub color: ColorChoice,
}

impl StepArgs {
    /// The narrator these flags ask for. Narration goes to stderr, so its
    /// colour follows stderr.
    pub fn narrator(&self, program: &'static str) -> Narrator {
        let mode = if self.dry_run {
            Mode::DryRun
        } else if self.explain {
            Mode::Explain
        } else {
            Mode::Quiet
        };
        let palette = Palette::new(self.color.enabled_for(&std::io::stderr()));
        Narrator::new(program, mode, palette)
    }

    /// A palette for the program's own output on stdout.
    pub fn stdout_palette(&self) -> Palette {
        Palette::new(self.color.enabled_for(&std::io::stdout()))
    }
}

/// Parses the command line like `P::parse()`, but reports bad usage as one
/// line — what was wrong and where to look — with exit code 2, instead of
/// clap's multi-line block. `--help` and `--version` print as usual.
pub fn parse<P: clap::Parser>(program: &str) -> P {
    parse_or_exit(program, crate::exit::USAGE)
}

/// clap's message as one line: a note it puts on a line of its own
/// (`  [possible values: on, off]`) follows after `; `, and a newline that
/// came with a value is shown as `\n`, so that it cannot break the line.
fn one_line(message: &str) -> String {
    let mut lines = message.lines();
    let mut out = lines.next().unwrap_or_default().to_string();
    for line in lines {
        match line
            .trim()
            .strip_prefix('[')
            .and_then(|l| l.strip_suffix(']'))
        {
            Some(note) if line.starts_with("  ") => {
                out.push_str("; ");
                out.push_str(note);
            }
            _ => {
                out.push_str("\\n");
                out.push_str(line);
            }
        }
    }
    out
}

/// [`parse`], ending with `code` on bad usage: `mini-run` keeps 2 and
/// every small code for the container's own exit status, as `docker run`
/// does, and says 125 for its own failures, bad usage included.
pub fn parse_or_exit<P: clap::Parser>(program: &str, code: u8) -> P {
    crate::fault::running(program);
    match P::try_parse() {
        Ok(parsed) => parsed,
        Err(error) => {
            use clap::error::ErrorKind;
            if matches!(
                error.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) || matches!(
                error.kind(),
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                error.exit();
            }
            let rendered = error.render().to_string();
            // The message ends at the first blank line; a value with a
            // newline in it must not break it in two.
            let (message, rest) = rendered
                .trim_start()
                .split_once("\n\n")
                .unwrap_or((rendered.trim(), ""));
            let message = one_line(message.trim_start_matches("error: "));
            let first = if message.is_empty() {
                "bad usage"
            } else {
                &message
            };
            let tip = rest
                .lines()
                .filter_map(|line| {
                    let line = line.trim();
                    line.strip_prefix("tip: ")
                        .or_else(|| line.strip_prefix('[').and_then(|l| l.strip_suffix(']')))
                })
                .map(|tip| format!("; {tip}"))
                .collect::<String>();
            eprintln!("{program}: {first}{tip}; see '{program} --help'");
            std::process::exit(i32::from(code));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn clap_s_notes_follow_on_the_line_and_a_value_s_newline_is_escaped() {
        assert_eq!(
            super::one_line("invalid value 'maybe' for '<STATE>'\n  [possible values: on, off]"),
            "invalid value 'maybe' for '<STATE>'; possible values: on, off"
        );
        assert_eq!(
            super::one_line("invalid value 'a\nb' for '--name'"),
            "invalid value 'a\\nb' for '--name'"
        );
    }
}
