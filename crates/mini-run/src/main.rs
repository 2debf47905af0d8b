//! `mini-run`: the command line over the library. See `mini-run --help`.

use std::process::ExitCode;

use mini_run::cli::{Cli, Command, ExecArgs, RunArgs, VolumeCommand};
use mini_run::container::{Container, Root};
use mini_run::state::Id;
use mini_run::{plan, rootless, run};
use steps::{Error, Narrator};

fn main() -> ExitCode {
    // SIGPIPE stays ignored here, unlike in the other tools: a narration
    // piped into `head` must not kill mini-run half-way through setting up
    // a container, which would leave its cgroup and state behind. The
    // narrator drops what it cannot write; the command gets SIGPIPE back.
    let cli: Cli = steps::cli::parse_or_exit("mini-run", steps::exit::SETUP);
    let narrator = cli.steps.narrator("mini-run");
    match &cli.command {
        Command::Cleanup => match cgroup_fs().and_then(|fs| run::cleanup(fs.as_deref(), &narrator))
        {
            Ok(lines) => {
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                for line in lines {
                    let _ = writeln!(out, "{line}");
                }
                ExitCode::SUCCESS
            }
            Err(error) => ExitCode::from(narrator.report(&error)),
        },
        Command::Ps { all, quiet } => {
            use std::io::Write;
            let text = mini_run::lifecycle::ps(*all, *quiet, narrator.palette());
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            ExitCode::SUCCESS
        }
        Command::Exec(args) => match exec(args, &narrator) {
            Ok(code) => code,
            // As with run: mini-run's own failures are 125, so that every
            // other status is the command's.
            Err(error) => {
                let code = narrator.report(&error);
                ExitCode::from(match code {
                    126 | 127 => code,
                    _ => steps::exit::SETUP,
                })
            }
        },
        Command::Logs { follow, container } => {
            match mini_run::record::find(container)
                .and_then(|found| mini_run::lifecycle::logs(&found, *follow))
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => ExitCode::from(narrator.report(&error)),
            }
        }
        Command::Stop { time, containers } => each(containers, &narrator, "stop", |found| {
            mini_run::lifecycle::stop(found, std::time::Duration::from_secs(*time), &narrator)
        }),
        Command::Kill { signal, containers } => match mini_run::lifecycle::parse_signal(signal) {
            Ok(signal) => each(containers, &narrator, "kill", |found| {
                mini_run::lifecycle::kill(found, signal)
            }),
            Err(error) => ExitCode::from(narrator.report(&error)),
        },
        Command::Rm { force, containers } => match cgroup_fs() {
            Ok(fs) => each(containers, &narrator, "rm", |found| {
                mini_run::lifecycle::rm(found, *force, fs.as_deref(), &narrator)
            }),
            Err(error) => ExitCode::from(narrator.report(&error)),
        },
        Command::Inspect { containers } => {
            let mut all = Vec::new();
            let mut code = 0;
            for wanted in containers {
                match mini_run::record::find(wanted) {
                    Ok(found) => all.push(mini_run::lifecycle::inspect(&found)),
                    Err(error) => {
                        let c = narrator.report(&error);
                        if code == 0 {
                            code = c;
                        }
                    }
                }
            }
            let text = serde_json::to_string_pretty(&all).unwrap_or_default();
            // A reader that went away (inspect | head) is no failure.
            use std::io::Write;
            let _ = writeln!(std::io::stdout().lock(), "{text}");
            ExitCode::from(code)
        }
        Command::Stats {
            no_stream,
            containers,
        } => match stats(containers, !*no_stream, &narrator) {
            Ok(code) => ExitCode::from(code),
            Err(error) => ExitCode::from(narrator.report(&error)),
        },
        Command::Volume(command) => match volume(command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => ExitCode::from(narrator.report(&error)),
        },
        Command::Run(args) => match go(args, &narrator) {
            Ok(code) => code,
            Err(error) => {
                // Like docker run: every failure of mini-run's own is 125,
                // so that 1, 2, … always mean the container's command.
                let code = narrator.report(&error);
                ExitCode::from(if code == steps::exit::USAGE {
                    steps::exit::SETUP
                } else {
                    code
                })
            }
        },
    }
}

/// Does `what` to each container named, saying each one's name as it is
/// done, as docker does; exits with the first failure's code. With
/// `--dry-run`, only finds each and says what `verb` would do.
fn each(
    containers: &[String],
    narrator: &Narrator,
    verb: &str,
    mut what: impl FnMut(&mini_run::record::Found) -> Result<(), Error>,
) -> ExitCode {
    use std::io::Write;
    let mut code = 0;
    for wanted in containers {
        let done = mini_run::record::find(wanted).and_then(|found| {
            if !narrator.is_dry_run() {
                return what(&found).map(|()| true);
            }
            let _ = writeln!(
                std::io::stdout().lock(),
                "mini-run would {verb} {} ({}); nothing was done (--dry-run)",
                found.shown(),
                found.status.describe(mini_run::record::now())
            );
            Ok(false)
        });
        match done {
            Ok(false) => {}
            Ok(true) => {
                let _ = writeln!(std::io::stdout().lock(), "{wanted}");
            }
            Err(error) => {
                let c = narrator.report(&error);
                if code == 0 {
                    code = c;
                }
            }
        }
    }
    ExitCode::from(code)
}

fn exec(args: &ExecArgs, narrator: &Narrator) -> Result<ExitCode, Error> {
    let found = mini_run::record::find(&args.container)?;
    let plan = mini_run::exec::exec_plan(&found, args)?;
    if narrator.is_dry_run() {
        let _ = narrator.print_plan(&plan, &mut std::io::stdout().lock());
        return Ok(ExitCode::SUCCESS);
    }
    let exit = mini_run::exec::run(&plan, narrator)?;
    Ok(ExitCode::from(exit.shell_status()))
}

fn stats(containers: &[String], stream: bool, narrator: &Narrator) -> Result<u8, Error> {
    let Some(fs) = cgroup_fs()? else {
        return Err(Error::setup(
            "stats reads the containers' cgroups, and this user has none delegated: containers run without one",
        ));
    };
    let mut wanted = Vec::new();
    for name in containers {
        let found = mini_run::record::find(name)?;
        if !matches!(found.status, mini_run::record::Status::Running(_)) {
            return Err(mini_run::lifecycle::not_running(&found));
        }
        wanted.push(found);
    }
    mini_run::lifecycle::stats(&*fs, &wanted, stream, narrator.palette())
}

fn volume(command: &VolumeCommand) -> Result<(), Error> {
    use mini_run::volume;
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match command {
        VolumeCommand::Create { name } => {
            volume::create(name)?;
            let _ = writeln!(out, "{name}");
        }
        VolumeCommand::Ls => {
            let _ = writeln!(out, "{:<24} {:<8} DIRECTORY", "VOLUME", "IN USE");
            for (name, in_use) in volume::list() {
                let used = if in_use { "yes" } else { "no" };
                let dir = volume::dir(&name);
                let _ = writeln!(out, "{name:<24} {used:<8} {}", dir.display());
            }
        }
        VolumeCommand::Rm { names } => {
            for name in names {
                volume::remove(name)?;
                let _ = writeln!(out, "{name}");
            }
        }
    }
    Ok(())
}

/// `--explain`: first the same container as the standalone tools'
/// commands, on stderr like the rest of the narration.
fn explain_by_hand(container: &Container, id: &Id, default_rootfs: &std::path::Path) {
    use std::io::Write;
    if container.userns.is_some() {
        let _ = writeln!(
            std::io::stderr(),
            "[mini-run] by hand: not shown in a user namespace (the standalone tools' chain makes its mounts and cgroup on the host, and has no idmapped layers); run --explain as root without --userns to see it"
        );
        return;
    }
    let mut text = format!(
        "[mini-run] by hand, the same container from the standalone tools, run from an empty directory ({}):\n",
        mini_run::by_hand::LEFT_OUT
    );
    for command in mini_run::by_hand::commands(container, id, default_rootfs) {
        text.push_str(&format!("    {command}\n"));
    }
    let _ = std::io::stderr().write_all(text.as_bytes());
}

/// Where containers' cgroups are made: the machine's hierarchy as root;
/// without root, the subtree delegated to the caller if there is one.
fn cgroup_fs() -> Result<Option<Box<dyn cg_limit::CgroupFs>>, Error> {
    if rootless::is_rootless() {
        Ok(cg_limit::delegated())
    } else {
        cg_limit::open().map(Some)
    }
}

fn go(args: &RunArgs, narrator: &Narrator) -> Result<ExitCode, Error> {
    let args = mini_run::spec::apply(args)?;
    let mut container = Container::from_args(&args)?;
    let fs = cgroup_fs()?;
    if rootless::is_rootless() {
        if let Some(notice) = rootless::adapt(&mut container, &args, fs.is_some())? {
            eprintln!("mini-run: {notice}");
        }
    } else if args.userns {
        let map = rootless::IdMap::remapped()?;
        rootless::check_remapped(&container, &map)?;
        container.userns = Some(map);
    }
    if let mini_run::container::Network::Bridge(name) = &container.network {
        mini_run::network::check(name)?;
    }
    let cgroups = match &fs {
        Some(fs) => plan::Cgroups::of(&**fs),
        None => plan::Cgroups {
            fs: None,
            version: match cg_limit::layout::Mounted::detect() {
                cg_limit::layout::Mounted::V2 => cg_limit::Version::V2,
                _ => cg_limit::Version::V1,
            },
        },
    };
    let default_rootfs = match container.root {
        Root::Default => {
            let narrator = Narrator::new("overlay-stack", narrator.mode(), narrator.palette());
            overlay_stack::rootfs::ensure_default(&narrator)?
        }
        _ => overlay_stack::rootfs::default_dir(),
    };
    let id = Id::new()?;
    let plan = plan::run_plan(&container, &id, cgroups, &default_rootfs)?;
    if narrator.is_dry_run() {
        let _ = narrator.print_plan(&plan, &mut std::io::stdout().lock());
        return Ok(ExitCode::SUCCESS);
    }
    if narrator.mode() == steps::narrate::Mode::Explain {
        explain_by_hand(&container, &id, &default_rootfs);
    }
    let exit = run::run(&plan, narrator, fs.as_deref())?;
    Ok(ExitCode::from(exit.shell_status()))
}
