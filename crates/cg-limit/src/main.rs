//! `cg-limit`: the command line over the library. See `cg-limit --help`.

use std::process::ExitCode;

use cg_limit::cli::{Cli, Request};
use cg_limit::run::Outcome;
use cg_limit::{CgroupFs, cleanup, plan, run, stats, summary, tree};
use steps::{Error, Narrator};

fn main() -> ExitCode {
    steps::sys::restore_sigpipe();
    let cli: Cli = steps::cli::parse("cg-limit");
    let narrator = cli.steps.narrator("cg-limit");
    match go(&cli, &narrator) {
        Ok(code) => code,
        Err(error) => ExitCode::from(narrator.report(&error)),
    }
}

fn go(cli: &Cli, narrator: &Narrator) -> Result<ExitCode, Error> {
    let request = cli.request()?;
    let fs = cg_limit::open()?;
    let out = cli.steps.stdout_palette();
    match request {
        Request::Run(run) => {
            let plan = plan::run_plan(&*fs, &run)?;
            if narrator.is_dry_run() {
                let _ = narrator.print_plan(&plan, &mut std::io::stdout().lock());
                return Ok(ExitCode::SUCCESS);
            }
            let cgroup = fs.layout().cgroup(&run.name);
            match run::run(&plan, narrator, &*fs, &cgroup)? {
                Outcome::Ended(report) => {
                    if !cli.quiet {
                        let text = summary::render(&report, narrator.palette());
                        eprint!("{text}");
                    }
                    Ok(steps::process::end_like(report.exit))
                }
                Outcome::Created { .. } => unreachable!("a run's plan forks"),
            }
        }
        Request::Create { name, limits } => {
            let plan = plan::create_plan(&*fs, &name, &limits)?;
            if narrator.is_dry_run() {
                let _ = narrator.print_plan(&plan, &mut std::io::stdout().lock());
                return Ok(ExitCode::SUCCESS);
            }
            let cgroup = fs.layout().cgroup(&name);
            run::run(&plan, narrator, &*fs, &cgroup)?;
            println!(
                "created {name} at {}; it stays until cg-limit cleanup {name}",
                cgroup.lock_dir().display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Request::Stats { names, stream } => {
            stats::run(&*fs, &names, stream, out).map(ExitCode::from)
        }
        Request::Tree => {
            print!("{}", tree::render(&*fs as &dyn CgroupFs, out));
            Ok(ExitCode::SUCCESS)
        }
        Request::Cleanup { names } => {
            cleanup::run(&*fs, &names, &mut std::io::stdout().lock(), out).map(ExitCode::from)
        }
    }
}
