//! Running a lesson's commands the way a learner would type them: `sh -c`,
//! with the toolkit's binaries first on `$PATH`, in a scratch directory of
//! the lesson's own, in the C locale so output is the same everywhere; and,
//! for a lesson that asks for one, inside its sandbox ([`crate::sandbox`]).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wait_timeout::ChildExt;

use crate::lesson::{Lesson, LessonStep, Output, Sandbox};
use crate::sandbox::{self, NetworkSandbox};

/// Where the toolkit's binaries are: beside the running `lab`, unless
/// `$UNDERHOOD_BIN` says otherwise.
pub fn toolkit_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("UNDERHOOD_BIN") {
        return dir.into();
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A lesson's run: one scratch directory shared by its steps, removed at
/// the end, and the lesson's sandbox if it has one, torn down at the end.
#[derive(Debug)]
pub struct LessonRun {
    scratch: PathBuf,
    path: std::ffi::OsString,
    sandbox: Option<NetworkSandbox>,
}

impl LessonRun {
    /// Prepares a run with the binaries in `toolkit` first on `$PATH`, and
    /// makes the lesson's sandbox.
    pub fn new(lesson: &Lesson, toolkit: &Path) -> std::io::Result<Self> {
        let scratch =
            std::env::temp_dir().join(format!("lab-{}-{}", lesson.id(), std::process::id()));
        std::fs::create_dir_all(&scratch)?;
        let sandbox = match lesson.sandbox {
            None => None,
            Some(Sandbox::Network) => match NetworkSandbox::new(&scratch) {
                Ok(sandbox) => Some(sandbox),
                Err(e) => {
                    let _ = std::fs::remove_dir(&scratch);
                    return Err(std::io::Error::other(format!(
                        "cannot make the network sandbox: {e}"
                    )));
                }
            },
        };
        let mut dirs = vec![toolkit.to_path_buf()];
        if let Some(path) = std::env::var_os("PATH") {
            dirs.extend(std::env::split_paths(&path));
        }
        let path = std::env::join_paths(dirs).map_err(std::io::Error::other)?;
        Ok(Self {
            scratch,
            path,
            sandbox,
        })
    }

    pub fn scratch(&self) -> &Path {
        &self.scratch
    }

    /// Runs one step's command and captures what it prints.
    pub fn run(&self, step: &LessonStep) -> std::io::Result<Output> {
        let started = Instant::now();
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(&step.run)
            .current_dir(&self.scratch)
            .env("PATH", &self.path)
            .env("LC_ALL", "C")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a timeout ends everything it started.
            .process_group(0);
        let mut child = match &self.sandbox {
            Some(sandbox) => sandbox.spawn(&mut command)?,
            None => command.spawn()?,
        };
        let stdout_text = read_all(child.stdout.take().expect("piped"));
        let stderr_text = read_all(child.stderr.take().expect("piped"));
        let timeout = Duration::from_secs(step.timeout.unwrap_or(30));
        let status = match child.wait_timeout(timeout)? {
            Some(status) => status,
            None => {
                let group = nix::unistd::Pid::from_raw(-(child.id() as i32));
                let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
                let _ = child.wait();
                return Err(std::io::Error::other(format!(
                    "`{}` did not finish within {}s and was killed",
                    step.run,
                    timeout.as_secs()
                )));
            }
        };
        // The output ends when every process holding the pipes has closed
        // them: a process the step left in the background may not.
        let deadline = started + timeout + Duration::from_secs(1);
        let text_of = |rx: mpsc::Receiver<String>| {
            rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        };
        let (Ok(stdout), Ok(stderr)) = (text_of(stdout_text), text_of(stderr_text)) else {
            return Err(std::io::Error::other(format!(
                "`{}` ended, but a process it left in the background still holds its output \
                 open; send that process's output elsewhere (… >/dev/null 2>&1 &)",
                step.run
            )));
        };
        use std::os::unix::process::ExitStatusExt;
        let code = status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        Ok(Output {
            status: code,
            stdout,
            stderr,
        })
    }

    /// Tears the sandbox down and removes the scratch directory. An error
    /// means a step left something behind — a process still running, a
    /// mount outside a sandbox — which is a bug in the lesson; what the
    /// sandbox held is gone all the same.
    pub fn finish(mut self) -> std::io::Result<()> {
        let mut problems = Vec::new();
        if let Some(sandbox) = self.sandbox.take() {
            match sandbox.tear_down() {
                Ok(left) if !left.processes.is_empty() => problems.push(format!(
                    "the lesson left {} running in its sandbox, which lab ended; \
                     its last steps should stop {}",
                    sandbox::name_processes(&left.processes),
                    if left.processes.len() == 1 {
                        "it"
                    } else {
                        "them"
                    }
                )),
                Ok(_) => {}
                Err(e) => problems.push(format!("tearing the sandbox down: {e}")),
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.scratch) {
            problems.push(format!(
                "the lesson left {} behind ({e}); its last steps should clean up",
                self.scratch.display()
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(std::io::Error::other(problems.join("; ")))
        }
    }
}

/// Reads a pipe to its end in a thread; the text arrives on the channel.
fn read_all(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = pipe.read_to_end(&mut text);
        let _ = tx.send(String::from_utf8_lossy(&text).into_owned());
    });
    rx
}

/// The verdict on one lesson.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Passed {
        steps: usize,
    },
    Failed {
        step: usize,
        reasons: Vec<String>,
        output: Option<Output>,
    },
    Skipped(Vec<String>),
}

/// Runs every step of a lesson and checks each output. All steps run even
/// after a mismatch, so the clean-up steps a lesson ends with always run;
/// the verdict reports the first mismatch.
pub fn check(lesson: &Lesson, toolkit: &Path) -> Verdict {
    let run = match LessonRun::new(lesson, toolkit) {
        Ok(run) => run,
        Err(e) => {
            return Verdict::Failed {
                step: 0,
                reasons: vec![format!("cannot prepare the lesson: {e}")],
                output: None,
            };
        }
    };
    let mut first_failure: Option<Verdict> = None;
    for (index, step) in lesson.steps.iter().enumerate() {
        let verdict = match run.run(step) {
            Ok(output) => match step.expect.matches(&output, &step.shows) {
                Ok(()) => None,
                Err(reasons) => Some(Verdict::Failed {
                    step: index + 1,
                    reasons,
                    output: Some(output),
                }),
            },
            Err(e) => Some(Verdict::Failed {
                step: index + 1,
                reasons: vec![e.to_string()],
                output: None,
            }),
        };
        if first_failure.is_none() {
            first_failure = verdict;
        }
    }
    let finished = run.finish();
    match (first_failure, finished) {
        (Some(failure), _) => failure,
        (None, Err(e)) => Verdict::Failed {
            step: lesson.steps.len(),
            reasons: vec![e.to_string()],
            output: None,
        },
        (None, Ok(())) => Verdict::Passed {
            steps: lesson.steps.len(),
        },
    }
}
