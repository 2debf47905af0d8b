//! Running a lesson's commands the way a learner would type them: `sh -c`,
//! with the toolkit's binaries first on `$PATH`, in a scratch directory of
//! the lesson's own, in the C locale so output is the same everywhere.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use wait_timeout::ChildExt;

use crate::lesson::{Lesson, LessonStep, Output};

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
/// the end.
#[derive(Debug)]
pub struct LessonRun {
    scratch: PathBuf,
    path: std::ffi::OsString,
}

impl LessonRun {
    /// Prepares a run with the binaries in `toolkit` first on `$PATH`.
    pub fn new(lesson: &Lesson, toolkit: &Path) -> std::io::Result<Self> {
        let scratch =
            std::env::temp_dir().join(format!("lab-{}-{}", lesson.id(), std::process::id()));
        std::fs::create_dir_all(&scratch)?;
        let mut dirs = vec![toolkit.to_path_buf()];
        if let Some(path) = std::env::var_os("PATH") {
            dirs.extend(std::env::split_paths(&path));
        }
        let path = std::env::join_paths(dirs).map_err(std::io::Error::other)?;
        Ok(Self { scratch, path })
    }

    pub fn scratch(&self) -> &Path {
        &self.scratch
    }

    /// Runs one step's command and captures what it prints.
    pub fn run(&self, step: &LessonStep) -> std::io::Result<Output> {
        let mut child = Command::new("sh")
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
            .process_group(0)
            .spawn()?;
        let mut stdout_pipe = child.stdout.take().expect("piped");
        let mut stderr_pipe = child.stderr.take().expect("piped");
        let stderr_reader = std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = stderr_pipe.read_to_end(&mut text);
            text
        });
        let stdout_reader = std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = stdout_pipe.read_to_end(&mut text);
            text
        });
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
        let stdout =
            String::from_utf8_lossy(&stdout_reader.join().unwrap_or_default()).into_owned();
        let stderr =
            String::from_utf8_lossy(&stderr_reader.join().unwrap_or_default()).into_owned();
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

    /// Removes the scratch directory; an error means a step left something
    /// behind in it (a mount, say), which is a bug in the lesson.
    pub fn finish(self) -> std::io::Result<()> {
        std::fs::remove_dir_all(&self.scratch).map_err(|e| {
            std::io::Error::other(format!(
                "the lesson left {} behind ({e}); its last steps should clean up",
                self.scratch.display()
            ))
        })
    }
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
                reasons: vec![format!("cannot make a scratch directory: {e}")],
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
