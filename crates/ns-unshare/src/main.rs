//! `ns-unshare`: the command line over the library. See `ns-unshare --help`.

use std::io::Write;
use std::process::ExitCode;

use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
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
        Ok(Outcome::Exit(code)) => ExitCode::from(code),
        Ok(Outcome::Signaled(signal)) => die_of(signal),
        Ok(Outcome::Listed(columns)) => {
            let text = table::render(&columns, cli.steps.stdout_palette());
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            ExitCode::SUCCESS
        }
        Err(error) => ExitCode::from(narrator.report(&error)),
    }
}

/// The child died of `signal`: die of it too, so that the shell sees what
/// happened to the program, as util-linux does. Should the signal not end
/// us (SIGCHLD-like defaults), fall back to the shell's 128+N.
fn die_of(signal: Signal) -> ExitCode {
    if signal != Signal::SIGKILL {
        let _ = steps::sys::reset_signal(signal);
    }
    let mut set = SigSet::empty();
    set.add(signal);
    let _ = sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None);
    let _ = kill(nix::unistd::getpid(), signal);
    ExitCode::from(128 + signal as u8)
}
