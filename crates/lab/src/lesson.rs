//! # The lesson format
//!
//! A lesson is a YAML file `lessons/NN-slug.yaml`. The book renders it, the
//! `lab` runner walks a learner through it, and the test suite runs every
//! command in it and checks the output — so the book cannot drift from what
//! the binaries do. See `lessons/README.md` for the format.
//!
//! Mistakes are caught while the file is read, so that every error carries
//! the file, the line and what to fix: unknown keys, unknown requirements
//! and regular expressions that do not compile all fail in the parser.
//!
//! A lesson that changes a network stack says `sandbox: network`: the
//! runner then makes it a network namespace and a mount namespace of its
//! own ([`crate::sandbox`]), so that it never touches the machine's own
//! interfaces, routes or firewall.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

/// The format this `lab` reads. A lesson with a newer one is refused with a
/// hint to update, never half-understood.
pub const FORMAT_VERSION: u32 = 1;

/// One lesson file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lesson {
    pub format_version: u32,
    pub title: String,
    /// The chapter under `book/src` that explains the lesson and shows it.
    pub chapter: String,
    /// One sentence: what the learner sees happen.
    pub summary: String,
    #[serde(default)]
    pub requires: Vec<Requirement>,
    /// Programs that must be on `$PATH`, beyond the toolkit's own.
    #[serde(default)]
    pub tools: Vec<String>,
    /// What the lesson shows is measured — time, a CPU share, a rate — so
    /// the test suite runs it with no other lesson beside it.
    #[serde(default)]
    pub measures: bool,
    /// Where the steps run: on the machine itself (no `sandbox:`), or in a
    /// sandbox of the lesson's own.
    #[serde(default)]
    pub sandbox: Option<Sandbox>,
    pub steps: Vec<LessonStep>,
    /// Filled in from the file name, not from the YAML.
    #[serde(skip)]
    pub number: u32,
    #[serde(skip)]
    pub slug: String,
    #[serde(skip)]
    pub path: PathBuf,
    #[serde(skip)]
    source: String,
}

/// One step: what to notice, the command, what it shows, what must match.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LessonStep {
    /// Markdown: what to look at, said before the command runs.
    pub notice: String,
    /// One line of shell, run with `sh -c` and the toolkit's binaries first
    /// on `$PATH`.
    pub run: String,
    /// The output the book shows. It must itself satisfy `expect`.
    #[serde(default)]
    pub shows: String,
    #[serde(default)]
    pub expect: Expect,
    /// Seconds before the command is killed (default 30).
    #[serde(default)]
    pub timeout: Option<u64>,
}

/// What the output must show. Every pattern is a regular expression matched
/// against single lines.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The exit status (default 0).
    #[serde(default)]
    pub exit: i32,
    /// Each must match some line of stdout.
    #[serde(default)]
    pub stdout: Vec<Pattern>,
    /// None may match any line of stdout.
    #[serde(default)]
    pub not_stdout: Vec<Pattern>,
    /// Each must match some line of stderr.
    #[serde(default)]
    pub stderr: Vec<Pattern>,
    /// Exactly this many lines on stdout.
    #[serde(default)]
    pub stdout_lines: Option<usize>,
    /// Stdout must be exactly what the step `shows` (for output that is the
    /// same on every machine, like a plan printed by `--dry-run`).
    #[serde(default)]
    pub exact: bool,
}

/// A regular expression, compiled while the lesson is read.
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::Regex);

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        regex::Regex::new(&text).map(Pattern).map_err(|e| {
            serde::de::Error::custom(format!("pattern {text:?} is not a regular expression: {e}"))
        })
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}'", self.0.as_str())
    }
}

/// What a lesson needs from the machine; `lab doctor` checks each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Requirement {
    /// Run as root (uid 0).
    Root,
    /// Unprivileged users may create user namespaces.
    UserNamespaces,
    /// The kernel has time namespaces (5.6+).
    TimeNamespaces,
    /// A cgroup v2 hierarchy with controllers (not v1 or hybrid).
    CgroupV2,
    /// OverlayFS is available.
    Overlayfs,
    /// nftables' `nft` is installed.
    Nft,
    /// A static busybox is installed.
    Busybox,
    /// OverlayFS can be mounted in a user namespace (Linux 5.11+) over the
    /// temporary directory, whose filesystem keeps `user.*` attributes.
    RootlessOverlay,
    /// The filesystem of `/var/cache`, where the default rootfs is kept,
    /// takes idmapped mounts (ext4, xfs, btrfs; tmpfs from Linux 6.3).
    IdmappedMounts,
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Root => "root",
            Self::UserNamespaces => "user-namespaces",
            Self::TimeNamespaces => "time-namespaces",
            Self::CgroupV2 => "cgroup-v2",
            Self::Overlayfs => "overlayfs",
            Self::Nft => "nft",
            Self::Busybox => "busybox",
            Self::RootlessOverlay => "rootless-overlay",
            Self::IdmappedMounts => "idmapped-mounts",
        })
    }
}

/// A sandbox a lesson's steps run in, made before the first step and torn
/// down after the last, whatever happened in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sandbox {
    /// A network namespace of the lesson's own, with only `lo`, brought up,
    /// and a mount namespace with an empty tmpfs on `/run`, where the
    /// toolkit keeps its leases and `ip netns` its names. The steps see a
    /// "host" of their own; the machine's interfaces, routes, firewall and
    /// `/run` are out of their reach. See [`crate::sandbox`].
    Network,
}

impl Sandbox {
    /// Programs the runner itself needs to make the sandbox.
    pub fn tools(self) -> &'static [&'static str] {
        match self {
            Self::Network => &["ip"],
        }
    }
}

impl fmt::Display for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Network => "network",
        })
    }
}

/// A problem in a lesson file, with where it is and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LessonError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for LessonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for LessonError {}

impl Lesson {
    /// `01` in `lessons/01-pid.yaml`, zero-padded like the file name.
    pub fn id(&self) -> String {
        format!("{:02}-{}", self.number, self.slug)
    }

    /// The line where a step's `run:` stands, for error messages.
    pub fn step_line(&self, index: usize) -> Option<usize> {
        self.source
            .lines()
            .enumerate()
            .filter(|(_, line)| {
                let trimmed = line.trim_start();
                trimmed.starts_with("run:") || trimmed.starts_with("- run:")
            })
            .nth(index)
            .map(|(n, _)| n + 1)
    }

    fn error_at(&self, line: Option<usize>, message: impl Into<String>) -> LessonError {
        LessonError {
            path: self.path.clone(),
            line,
            message: message.into(),
        }
    }

    /// Parses one lesson and checks what the parser alone cannot.
    pub fn parse(path: &Path, source: &str) -> Result<Lesson, Vec<LessonError>> {
        let (number, slug) = parse_file_name(path).map_err(|e| vec![e])?;
        let mut lesson: Lesson = yaml_serde::from_str(source).map_err(|e| {
            let line = e.location().map(|l| l.line());
            // The parser's message repeats the position; we give it in front.
            let message = e.to_string();
            let message = message
                .split(" at line ")
                .next()
                .unwrap_or(&message)
                .to_string();
            vec![LessonError {
                path: path.to_path_buf(),
                line,
                message: format!("{message}; see lessons/README.md for the format"),
            }]
        })?;
        lesson.number = number;
        lesson.slug = slug;
        lesson.path = path.to_path_buf();
        lesson.source = source.to_string();
        let problems = lesson.check();
        if problems.is_empty() {
            Ok(lesson)
        } else {
            Err(problems)
        }
    }

    fn check(&self) -> Vec<LessonError> {
        let mut problems = Vec::new();
        if self.format_version > FORMAT_VERSION {
            problems.push(self.error_at(
                Some(1),
                format!(
                    "format_version {} is newer than this lab reads ({FORMAT_VERSION}); update underhood",
                    self.format_version
                ),
            ));
        } else if self.format_version == 0 {
            problems
                .push(self.error_at(Some(1), format!("format_version must be {FORMAT_VERSION}")));
        }
        if self.steps.is_empty() {
            problems.push(self.error_at(None, "a lesson needs at least one step under steps:"));
        }
        match self.sandbox {
            Some(sandbox) if !self.requires.contains(&Requirement::Root) => {
                problems.push(self.error_at(
                    self.line_of("sandbox:"),
                    format!(
                        "sandbox: {sandbox} makes namespaces, which needs root; add root to requires:"
                    ),
                ));
            }
            _ => {}
        }
        if !self.chapter.ends_with(".md")
            || self.chapter.starts_with('/')
            || self.chapter.contains("..")
        {
            problems.push(self.error_at(
                self.line_of("chapter:"),
                format!(
                    "chapter '{}' must be a page under book/src, like namespaces/pid.md",
                    self.chapter
                ),
            ));
        }
        for (index, step) in self.steps.iter().enumerate() {
            let line = self.step_line(index);
            if step.run.trim().is_empty() || step.run.trim().contains('\n') {
                problems.push(self.error_at(
                    line,
                    format!("step {}: run must be one line of shell", index + 1),
                ));
            }
            if step.notice.trim().is_empty() {
                problems.push(self.error_at(
                    line,
                    format!("step {}: say what to notice in notice:", index + 1),
                ));
            }
            if let Err(reason) = step
                .expect
                .matches(
                    &Output {
                        status: step.expect.exit,
                        stdout: step.shows.clone(),
                        stderr: String::new(),
                    },
                    &step.shows,
                )
                .map(|_| ())
                .or_else(|reasons| {
                    // What the book shows is stdout; stderr patterns are checked
                    // against real runs only.
                    let stdout_only: Vec<_> = reasons
                        .into_iter()
                        .filter(|r| !r.starts_with("stderr"))
                        .collect();
                    if stdout_only.is_empty() {
                        Ok(())
                    } else {
                        Err(stdout_only)
                    }
                })
            {
                problems.push(self.error_at(
                    line,
                    format!(
                        "step {}: the output under shows: does not satisfy expect: {}; fix one of them",
                        index + 1,
                        reason.join("; ")
                    ),
                ));
            }
        }
        problems
    }

    /// Steps that change a network stack while the lesson has no network
    /// sandbox: run as they are, they would change this machine's own
    /// interfaces, routes or firewall. The parser lets them through (the
    /// test is a heuristic, on the command's text); `lab lint` reports them.
    pub fn unsandboxed_network_changes(&self) -> Vec<LessonError> {
        if self.sandbox == Some(Sandbox::Network) {
            return Vec::new();
        }
        self.steps
            .iter()
            .enumerate()
            .filter_map(|(index, step)| {
                let change = network_change(&step.run)?;
                Some(self.error_at(
                    self.step_line(index),
                    format!(
                        "step {}: `{change}` changes a network stack, and without a sandbox that \
                         is this machine's own; add `sandbox: network` to the lesson",
                        index + 1
                    ),
                ))
            })
            .collect()
    }

    fn line_of(&self, key: &str) -> Option<usize> {
        self.source
            .lines()
            .position(|line| line.trim_start().starts_with(key))
            .map(|n| n + 1)
    }
}

/// What a command printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Expect {
    /// Whether `output` is what the lesson expects; if not, every reason.
    /// `shows` is the output the book prints, for `exact`.
    pub fn matches(&self, output: &Output, shows: &str) -> Result<(), Vec<String>> {
        let mut reasons = Vec::new();
        if self.exact && output.stdout.trim_end() != shows.trim_end() {
            let first_difference = output
                .stdout
                .lines()
                .zip(shows.lines())
                .position(|(got, shown)| got != shown)
                .unwrap_or_else(|| output.stdout.lines().count().min(shows.lines().count()));
            reasons.push(format!(
                "stdout differs from what the book shows, from line {}",
                first_difference + 1
            ));
        }
        if output.status != self.exit {
            reasons.push(format!(
                "exit status {} where the lesson expects {}",
                output.status, self.exit
            ));
        }
        let any_line =
            |text: &str, pattern: &Pattern| text.lines().any(|line| pattern.0.is_match(line));
        for pattern in &self.stdout {
            if !any_line(&output.stdout, pattern) {
                reasons.push(format!("stdout has no line matching {pattern}"));
            }
        }
        for pattern in &self.not_stdout {
            if any_line(&output.stdout, pattern) {
                reasons.push(format!(
                    "stdout has a line matching {pattern}, which it must not"
                ));
            }
        }
        for pattern in &self.stderr {
            if !any_line(&output.stderr, pattern) {
                reasons.push(format!("stderr has no line matching {pattern}"));
            }
        }
        if let Some(expected) = self.stdout_lines {
            let lines = output.stdout.lines().count();
            if lines != expected {
                reasons.push(format!(
                    "stdout has {lines} lines where the lesson expects {expected}"
                ));
            }
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }
}

/// The part of a command that changes a network stack, if one does: a
/// heuristic on its text. A command that starts in a new network namespace
/// of its own (`ns-unshare --net …`, `unshare -rn …`) changes only that.
fn network_change(run: &str) -> Option<String> {
    use std::sync::OnceLock;
    static CHANGES: OnceLock<[regex::Regex; 2]> = OnceLock::new();
    let [changes, veth_bridge] = CHANGES.get_or_init(|| {
        [
            regex::Regex::new(concat!(
                r"\bip(?:\s+-\S+)*\s+(?:link|l|address|addr|a|route|r|neighbour|neigh|n|rule|netns)",
                r"\s+(?:add|del|delete|set|change|replace|flush|attach)\b",
                r"|\bnft(?:\s+-\S+)*\s+(?:add|create|insert|replace|delete|destroy|flush|-f)\b",
                r"|\bip6?tables\b.*\s-[AIDNXFP]\b",
                r"|\bbridge\s+(?:link|fdb|vlan|mdb)\s+(?:add|del|set|replace)\b",
                r"|\bsysctl\s.*-w\s+net\.",
            ))
            .expect("a valid pattern"),
            regex::Regex::new(
                r"\bveth-bridge(?:\s+--\S+)*\s+(?:bridge|connect|disconnect|nat|publish|unpublish)\b",
            )
            .expect("a valid pattern"),
        ]
    });
    if starts_in_a_new_netns(run) {
        return None;
    }
    if let Some(found) = changes.find(run) {
        return Some(found.as_str().to_string());
    }
    let found = veth_bridge.find(run)?;
    (!run.contains("--dry-run")).then(|| found.as_str().to_string())
}

/// `ns-unshare --net …`, `unshare -rn …`: the options before the program
/// ask for a new network namespace.
fn starts_in_a_new_netns(run: &str) -> bool {
    let mut words = run.split_whitespace().skip_while(|w| *w == "sudo");
    if !matches!(words.next(), Some("ns-unshare" | "unshare")) {
        return false;
    }
    words.take_while(|w| w.starts_with('-')).any(|option| {
        option == "--net"
            || option.starts_with("--net=")
            || (!option.starts_with("--") && option[1..].contains('n'))
    })
}

fn parse_file_name(path: &Path) -> Result<(u32, String), LessonError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let parsed = name.strip_suffix(".yaml").and_then(|stem| {
        let (number, slug) = stem.split_once('-')?;
        let valid_slug = !slug.is_empty()
            && slug
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        (number.len() == 2 && valid_slug)
            .then(|| number.parse::<u32>().ok().map(|n| (n, slug.to_string())))
            .flatten()
    });
    parsed.ok_or_else(|| LessonError {
        path: path.to_path_buf(),
        line: None,
        message: "a lesson file is named NN-slug.yaml: two digits, a dash, lower-case words (e.g. 01-pid.yaml)"
            .into(),
    })
}

/// The lessons in these files; all problems of all files at once.
pub fn load_files(paths: &[PathBuf]) -> Result<Vec<Lesson>, Vec<LessonError>> {
    let mut lessons = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        match std::fs::read_to_string(path) {
            Ok(source) => match Lesson::parse(path, &source) {
                Ok(lesson) => lessons.push(lesson),
                Err(mut errors) => problems.append(&mut errors),
            },
            Err(e) => problems.push(LessonError {
                path: path.clone(),
                line: None,
                message: format!("cannot read: {e}"),
            }),
        }
    }
    if problems.is_empty() {
        Ok(lessons)
    } else {
        Err(problems)
    }
}

/// Every lesson in `dir`, in order; all problems of all files at once.
pub fn load_all(dir: &Path) -> Result<Vec<Lesson>, Vec<LessonError>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        vec![LessonError {
            path: dir.to_path_buf(),
            line: None,
            message: format!("cannot read the lessons directory: {e}; pass --lessons DIR"),
        }]
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    paths.sort();
    // Sorted by name is sorted by number: names start with two digits.
    let lessons = load_files(&paths)?;
    let mut problems = Vec::new();
    for pair in lessons.windows(2) {
        if pair[0].number == pair[1].number {
            problems.push(LessonError {
                path: pair[1].path.clone(),
                line: None,
                message: format!(
                    "lesson number {:02} is used twice; renumber one",
                    pair[1].number
                ),
            });
        }
    }
    if problems.is_empty() {
        Ok(lessons)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "format_version: 1
title: The PID namespace
chapter: namespaces/pid.md
summary: pid 1 inside
requires: [root]
steps:
  - notice: pid 1
    run: ns-unshare --fork --pid --mount-proc readlink /proc/self
    shows: |
      1
    expect:
      stdout: ['^1$']
";

    fn parse(source: &str) -> Result<Lesson, Vec<LessonError>> {
        Lesson::parse(Path::new("lessons/01-pid.yaml"), source)
    }

    #[test]
    fn a_good_lesson_parses() {
        let lesson = parse(GOOD).unwrap();
        assert_eq!(lesson.number, 1);
        assert_eq!(lesson.id(), "01-pid");
        assert_eq!(lesson.requires, vec![Requirement::Root]);
        assert_eq!(lesson.step_line(0), Some(8));
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let errors = parse(&GOOD.replace("    shows:", "    show:")).unwrap_err();
        assert_eq!(errors[0].line, Some(9));
        assert!(
            errors[0].message.contains("unknown field `show`"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn an_unknown_requirement_lists_the_known_ones() {
        let errors = parse(&GOOD.replace("[root]", "[rooot]")).unwrap_err();
        assert_eq!(errors[0].line, Some(5));
        assert!(
            errors[0].message.contains("user-namespaces"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn a_bad_pattern_is_caught_while_reading() {
        let errors = parse(&GOOD.replace("'^1$'", "'^(1$'")).unwrap_err();
        assert!(
            errors[0].message.contains("not a regular expression"),
            "{}",
            errors[0]
        );
        assert!(errors[0].line.is_some());
    }

    #[test]
    fn shown_output_must_satisfy_the_expectation() {
        let errors = parse(&GOOD.replace("      1\n", "      2\n")).unwrap_err();
        assert_eq!(errors[0].line, Some(8));
        assert!(
            errors[0].message.contains("does not satisfy"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn a_newer_format_is_refused() {
        let errors = parse(&GOOD.replace("format_version: 1", "format_version: 2")).unwrap_err();
        assert!(errors[0].message.contains("newer"), "{}", errors[0]);
    }

    #[test]
    fn file_names_carry_the_number() {
        let error = Lesson::parse(Path::new("lessons/pid.yaml"), GOOD).unwrap_err();
        assert!(error[0].message.contains("NN-slug.yaml"));
    }

    #[test]
    fn a_network_sandbox_is_asked_for_by_name() {
        let lesson = parse(&GOOD.replace("requires:", "sandbox: network\nrequires:")).unwrap();
        assert_eq!(lesson.sandbox, Some(Sandbox::Network));
        assert_eq!(parse(GOOD).unwrap().sandbox, None);
    }

    #[test]
    fn an_unknown_sandbox_is_named_with_its_line_and_the_known_ones() {
        let errors = parse(&GOOD.replace("requires:", "sandbox: net\nrequires:")).unwrap_err();
        assert_eq!(errors[0].line, Some(5));
        assert!(
            errors[0].message.contains("unknown variant `net`")
                && errors[0].message.contains("`network`"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn a_sandbox_needs_root() {
        let source = GOOD
            .replace("requires: [root]", "requires: []")
            .replace("summary:", "sandbox: network\nsummary:");
        let errors = parse(&source).unwrap_err();
        assert_eq!(errors[0].line, Some(4));
        assert!(
            errors[0].message.contains("add root to requires"),
            "{}",
            errors[0]
        );
    }

    fn with_step(run: &str, sandbox: bool) -> Lesson {
        let mut source = GOOD.replace(
            "ns-unshare --fork --pid --mount-proc readlink /proc/self",
            &format!("{run:?}"),
        );
        if sandbox {
            source = source.replace("requires:", "sandbox: network\nrequires:");
        }
        parse(&source).unwrap()
    }

    #[test]
    fn network_changes_outside_a_sandbox_are_reported() {
        for run in [
            "veth-bridge bridge add ub0",
            "veth-bridge --explain connect ub0 --netns web 2>&1",
            "ip link add d0 type dummy && ip -brief link",
            "ip -4 addr add 10.0.0.1/24 dev d0",
            "ip route replace default via 10.0.0.1",
            "nft add table inet t",
            "ip netns add web",
        ] {
            let problems = with_step(run, false).unsandboxed_network_changes();
            assert_eq!(problems.len(), 1, "{run}");
            assert_eq!(problems[0].line, Some(8), "{run}");
            assert!(
                problems[0].message.contains("add `sandbox: network`"),
                "{}",
                problems[0]
            );
            assert!(
                with_step(run, true)
                    .unsandboxed_network_changes()
                    .is_empty(),
                "{run}"
            );
        }
    }

    #[test]
    fn reading_or_a_new_namespace_is_no_network_change() {
        for run in [
            "ip -brief link",
            "ip route",
            "veth-bridge show",
            "veth-bridge --dry-run bridge add ub0",
            "ns-unshare --net sh -c 'ip link set lo up && ip -brief address'",
            "unshare -rn ip link set lo up",
            "nft list ruleset",
        ] {
            assert!(
                with_step(run, false)
                    .unsandboxed_network_changes()
                    .is_empty(),
                "{run}"
            );
        }
    }

    #[test]
    fn expectations_report_every_reason() {
        let expect = Expect {
            exit: 0,
            stdout: vec![Pattern(regex::Regex::new("^1$").unwrap())],
            not_stdout: vec![Pattern(regex::Regex::new("sshd").unwrap())],
            stderr: vec![],
            stdout_lines: Some(1),
            exact: false,
        };
        let output = Output {
            status: 1,
            stdout: "2\nsshd\n".into(),
            stderr: String::new(),
        };
        assert_eq!(expect.matches(&output, "").unwrap_err().len(), 4);
    }

    #[test]
    fn exact_output_names_the_first_differing_line() {
        let expect = Expect {
            exact: true,
            ..Expect::default()
        };
        let output = Output {
            status: 0,
            stdout: "a\nb\nc\n".into(),
            stderr: String::new(),
        };
        assert_eq!(expect.matches(&output, "a\nb\nc\n"), Ok(()));
        let reasons = expect.matches(&output, "a\nB\nc\n").unwrap_err();
        assert!(reasons[0].ends_with("from line 2"), "{reasons:?}");
    }
}
