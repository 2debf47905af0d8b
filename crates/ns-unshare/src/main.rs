//! `ns-unshare`: the command line over the library. See `ns-unshare --help`.

use std::io::Write;
use std::process::ExitCode;

use ns_unshare::run::Outcome;
use ns_unshare::{Cli, plan, run, table};

fn main() -> ExitCode {
    steps::sys::restore_sigpipe();
    let cli: Cli = steps::cli::parse("ns-unshare");
    let narrator = cli.steps.narrator("ns-unshare");
    let result = cli.request().and_then(|request| plan(&request));
    let plan = match result {
        Ok(plan) => plan,
        Err(error) => return ExitCode::from(narrator.report(&error)),
    };
    if narrator.is_dry_run() {
        let _ = narrator.print_plan(&plan, &mut std::io::stdout().lock());
        return ExitCode::SUCCESS;
    }
    match run::run(&plan, &narrator) {
        Ok(Outcome::Ended(exit)) => steps::process::end_like(exit),
        Ok(Outcome::Listed(columns)) => {
            let text = table::render(&columns, cli.steps.stdout_palette());
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            ExitCode::SUCCESS
        }
        Err(error) => ExitCode::from(narrator.report(&error)),
    }
}
