//! The command line. Parsing only validates — sizes, rates, counts, names,
//! devices — and builds a [`Request`]; nothing here changes the system.

use std::ffi::OsString;

use clap::{Args, Parser, Subcommand};
use steps::{Error, StepArgs};

use crate::controller::{Limits, io, pids};
use crate::layout::Name;
use crate::units::{self, Bytes};

const AFTER_HELP: &str = "\
Subcommands (the command to run goes after --; a program named like a
subcommand must be):
  stats [NAME...] [--no-stream]   what the toolkit's cgroups use, like docker stats
  tree                            the toolkit's cgroups in the hierarchy, limits at each level
  create NAME [LIMITS]            a cgroup with limits and no process: a parent for
                                  runs named NAME/CHILD (removed by cleanup)
  cleanup [NAME...]               remove cgroups no running cg-limit holds, killing
                                  what is left in them (after a run was SIGKILLed)

Sizes take K, M, G, T (powers of 1024, any case, optional B or iB): 64M, 512m,
1.5G. Rates are sizes per second: 10MB/s. DEVICE is a block device (/dev/sda)
or MAJOR:MINOR.

The summary on stderr (leave it out with --quiet) shows wall time, CPU time and
throttling, peak memory and OOM kills, peak pids and refused forks, and I/O.

Exit status: the command's own, or 128+N when it was killed by signal N (137 for
SIGKILL, the OOM killer's signal); 1 cleanup could not remove a cgroup; 2 bad
usage; 125 cg-limit itself failed (what it made is removed); 126 the command
could not be executed; 127 it was not found.";

/// Run a command in a new cgroup with limits, watch it, remove the cgroup.
#[derive(Debug, Parser)]
#[command(
    name = "cg-limit",
    version,
    about = "Run a command in a new cgroup with limits (cgroup v2 and v1), and watch what it uses",
    after_help = AFTER_HELP,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(flatten)]
    pub limits: LimitArgs,

    /// The cgroup's name below the toolkit's parent (default: PROGRAM-PID);
    /// OUTER/NAME nests it in OUTER
    #[arg(long, value_name = "NAME", value_parser = parse_name)]
    pub name: Option<Name>,

    /// Print no summary when the command ends
    #[arg(long, short = 'q')]
    pub quiet: bool,

    #[command(flatten)]
    pub steps: StepArgs,

    /// The command and its arguments
    #[arg(
        value_name = "COMMAND",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<OsString>,

    #[command(subcommand)]
    pub subcommand: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what the toolkit's cgroups use, refreshed every second (like docker stats)
    Stats {
        /// Only these cgroups
        #[arg(value_name = "NAME", value_parser = parse_name)]
        names: Vec<Name>,
        /// Print one table and exit
        #[arg(long)]
        no_stream: bool,
    },
    /// Show the toolkit's cgroups in the hierarchy, with the limits at each level
    Tree,
    /// Make a cgroup with limits that holds no process, as a parent for runs named NAME/CHILD
    Create {
        #[arg(value_name = "NAME", value_parser = parse_name)]
        name: Name,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Remove the toolkit's cgroups that no running cg-limit holds, killing what runs in them
    Cleanup {
        /// Only these cgroups
        #[arg(value_name = "NAME", value_parser = parse_name)]
        names: Vec<Name>,
    },
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Self::Stats { .. } => "stats",
            Self::Tree => "tree",
            Self::Create { .. } => "create",
            Self::Cleanup { .. } => "cleanup",
        }
    }
}

/// The limits, as `docker run` and systemd name them.
#[derive(Debug, Clone, Default, PartialEq, Args)]
pub struct LimitArgs {
    /// Memory limit, like docker run --memory: 64M, 1G
    #[arg(long, short = 'm', value_name = "SIZE", value_parser = parse_size)]
    pub memory: Option<Bytes>,
    /// Memory and swap together, like docker run --memory-swap (needs --memory); without it, no swap
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub memory_swap: Option<Bytes>,
    /// CPU quota in CPUs, like docker run --cpus: 0.5 is half of one CPU
    #[arg(long, value_name = "CPUS", value_parser = parse_cpus)]
    pub cpus: Option<f64>,
    /// Share of contended CPU against siblings, 1-10000 (default 100)
    #[arg(long, value_name = "N", value_parser = parse_weight)]
    pub cpu_weight: Option<u32>,
    /// Most processes and threads, like docker run --pids-limit
    #[arg(long, value_name = "N", value_parser = parse_pids)]
    pub pids: Option<pids::PidsMax>,
    /// Read rate limit for a disk, like docker run --device-read-bps (repeatable)
    #[arg(long, value_name = "DEVICE=RATE")]
    pub io_read_bps: Vec<String>,
    /// Write rate limit for a disk, like docker run --device-write-bps (repeatable)
    #[arg(long, value_name = "DEVICE=RATE")]
    pub io_write_bps: Vec<String>,
}

fn parse_size(text: &str) -> Result<Bytes, String> {
    units::parse_size(text)
}

fn parse_cpus(text: &str) -> Result<f64, String> {
    units::parse_cpus(text)
}

fn parse_pids(text: &str) -> Result<pids::PidsMax, String> {
    pids::parse(text)
}

fn parse_name(text: &str) -> Result<Name, String> {
    Name::parse(text)
}

fn parse_weight(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(n) if (1..=10_000).contains(&n) => Ok(n),
        _ => Err(format!(
            "'{text}' is not a weight from 1 to 10000 (the default is 100)"
        )),
    }
}

impl LimitArgs {
    /// The limits, with the checks that span flags.
    pub fn limits(&self) -> Result<Limits, Error> {
        let mut throttles = Vec::new();
        for (flag, direction, values) in [
            ("--io-read-bps", io::Direction::Read, &self.io_read_bps),
            ("--io-write-bps", io::Direction::Write, &self.io_write_bps),
        ] {
            for value in values {
                io::add(&mut throttles, direction, value)
                    .map_err(|e| Error::usage(format!("{flag}: {e}")))?;
            }
        }
        match (self.memory, self.memory_swap) {
            (None, Some(_)) => {
                return Err(Error::usage(
                    "--memory-swap is memory and swap together: give --memory as well",
                ));
            }
            (Some(Bytes::Limit(memory)), Some(Bytes::Limit(total))) if total < memory => {
                return Err(Error::usage(format!(
                    "--memory-swap {} is less than --memory {}: it counts memory and swap together, so give at least as much",
                    units::human(total),
                    units::human(memory)
                )));
            }
            (Some(Bytes::Max), Some(Bytes::Limit(_))) => {
                return Err(Error::usage(
                    "--memory-swap needs a --memory limit, not --memory max",
                ));
            }
            _ => {}
        }
        Ok(Limits {
            memory: self.memory,
            memory_swap: self.memory_swap,
            cpus: self.cpus,
            cpu_weight: self.cpu_weight,
            pids: self.pids,
            io: throttles,
        })
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Run(crate::plan::Run),
    Stats { names: Vec<Name>, stream: bool },
    Tree,
    Create { name: Name, limits: Limits },
    Cleanup { names: Vec<Name> },
}

impl Cli {
    pub fn request(&self) -> Result<Request, Error> {
        // The shared flags (--dry-run, --explain, --color) go anywhere;
        // a run's own belong to a run, not to a subcommand.
        if let Some(subcommand) = &self.subcommand {
            let name = subcommand.name();
            if self.limits != LimitArgs::default() || self.name.is_some() || self.quiet {
                return Err(Error::usage(format!(
                    "limits, --name and --quiet before `{name}` are a run's: give {name}'s own after it (cg-limit {name} --help), or run a program named {name} after --"
                )));
            }
        }
        Ok(match &self.subcommand {
            Some(Command::Stats { names, no_stream }) => Request::Stats {
                names: names.clone(),
                stream: !no_stream,
            },
            Some(Command::Tree) => Request::Tree,
            Some(Command::Create { name, limits }) => Request::Create {
                name: name.clone(),
                limits: limits.limits()?,
            },
            Some(Command::Cleanup { names }) => Request::Cleanup {
                names: names.clone(),
            },
            None => {
                let name = self.name.clone().unwrap_or_else(|| {
                    Name::for_program(&self.command[0].to_string_lossy(), std::process::id())
                });
                Request::Run(crate::plan::Run {
                    name,
                    limits: self.limits.limits()?,
                    command: self.command.clone(),
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Request, String> {
        let cli = Cli::try_parse_from(std::iter::once("cg-limit").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.request().map_err(|e| e.to_string())
    }

    #[test]
    fn a_run_with_limits() {
        let Ok(Request::Run(run)) =
            parse(&["--memory", "64M", "--cpus", "0.5", "--", "hog", "cpu", "3"])
        else {
            panic!("not a run");
        };
        assert_eq!(run.limits.memory, Some(Bytes::Limit(64 << 20)));
        assert_eq!(run.limits.cpus, Some(0.5));
        assert_eq!(run.command, ["hog", "cpu", "3"]);
        assert!(run.name.as_str().starts_with("hog-"));
    }

    #[test]
    fn the_command_may_come_without_double_dash() {
        let Ok(Request::Run(run)) = parse(&["--pids", "20", "--name", "demo", "sh", "-c", "true"])
        else {
            panic!("not a run");
        };
        assert_eq!(run.command, ["sh", "-c", "true"]);
        assert_eq!(run.name.as_str(), "demo");
    }

    #[test]
    fn subcommands() {
        assert_eq!(parse(&["tree"]), Ok(Request::Tree));
        assert_eq!(
            parse(&["stats", "--no-stream"]),
            Ok(Request::Stats {
                names: vec![],
                stream: false
            })
        );
        assert!(matches!(
            parse(&["create", "outer", "--memory", "32M"]),
            Ok(Request::Create { .. })
        ));
        // A program called like a subcommand runs after --.
        assert!(matches!(parse(&["--", "tree"]), Ok(Request::Run(_))));
        // The shared flags may come first; a run's may not.
        assert!(matches!(
            parse(&["--dry-run", "create", "outer"]),
            Ok(Request::Create { .. })
        ));
        assert_eq!(parse(&["--explain", "tree"]), Ok(Request::Tree));
        let error = parse(&["--memory", "32M", "create", "outer"]).unwrap_err();
        assert!(error.contains("give create's own after it"), "{error}");
        assert!(matches!(
            parse(&["--memory", "32M", "--", "create", "outer"]),
            Ok(Request::Run(_))
        ));
    }

    #[test]
    fn bad_values_say_what_is_accepted() {
        for (args, wanted) in [
            (&["--memory", "abc", "true"][..], "64M"),
            (&["--memory", "0", "true"][..], "no memory"),
            (&["--cpus", "0", "true"][..], "0.01 to 1024"),
            (&["--cpu-weight", "0", "true"][..], "1 to 10000"),
            (&["--pids", "-1", "true"][..], "1 to 4194304"),
            (&["--name", "../x", "true"][..], "not a cgroup name"),
            (
                &["--memory-swap", "1G", "true"][..],
                "give --memory as well",
            ),
            (
                &["--memory", "1G", "--memory-swap", "512M", "true"][..],
                "less than --memory",
            ),
            (
                &["--io-read-bps", "/dev/null=1M", "true"][..],
                "not a block device",
            ),
            (&["--memory", "64M"][..], "COMMAND"),
        ] {
            let error = parse(args).unwrap_err();
            assert!(error.contains(wanted), "{args:?}: {error}");
        }
    }
}
