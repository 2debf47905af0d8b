//! `hog`: a load generator for the cgroup lessons, like `stress` but small
//! enough to read. Each subcommand pushes against one controller's limit —
//! `memory` against `memory.max`, `cpu` against `cpu.max` and `cpu.weight`,
//! `forks` against `pids.max`, `io` against `io.max` — and prints what it
//! managed, so a lesson can run it inside `cg-limit` and show the limit
//! holding. Its output is read by the tests and shown in the book, so every
//! line has a fixed format, and each is flushed as soon as it is printed: the
//! OOM killer may end hog at any moment, and what it said must already be in
//! the pipe. See <https://docs.kernel.org/admin-guide/cgroup-v2.html>.
//!
//! Exit status: 0 done; 1 an operation failed (for `forks`: a fork was
//! refused); 2 bad usage.

use std::collections::TryReserveError;
use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cg_limit::units::{Bytes, human, parse_size};
use clap::{Parser, Subcommand};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::sys::wait::waitpid;
use nix::time::{ClockId, clock_gettime};
use nix::unistd::{Pid, pipe2};
use steps::error::describe;
use steps::sys::Fork;

/// The size of a page: the unit in which the kernel hands out memory and
/// charges it to a cgroup, and the alignment O_DIRECT transfers need.
const PAGE: usize = 4096;

/// What hog writes into memory and files: anything but zero, so no layer
/// (calloc, a zero-page mapping, a compressing device) can skip the work.
const FILL: u8 = 0xA5;

/// The most time any subcommand takes: a day is more than any lesson needs.
const MAX_SECONDS: f64 = 86_400.0;

/// How many additions a spinning thread makes between two looks at the
/// clock: enough that reading the clock costs nothing, few enough that it
/// stops within a fraction of a millisecond of its deadline.
const SPINS_PER_CHECK: u32 = 10_000;

const MAX_THREADS: usize = 1024;
const MAX_CHILDREN: usize = 100_000;

const AFTER_HELP: &str = "\
Each line of output is flushed as soon as it is printed, so what hog said
survives an OOM kill.

Exit status: 0 done; 1 an operation failed (for forks: a fork was refused);
2 bad usage.";

/// Push against one cgroup controller's limit and report what got through.
#[derive(Debug, Parser)]
#[command(
    name = "hog",
    version,
    about = "Load generator for the cgroup lessons: use memory, CPU, processes or I/O until a limit stops it",
    after_help = AFTER_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Allocate SIZE bytes and write to every page, so all of it is charged
    /// to memory.max
    ///
    /// Prints `allocated 8M`, `allocated 16M`, ... after each chunk. Under a
    /// memory.max smaller than SIZE the OOM killer ends hog, and the last
    /// line says how far it got.
    Memory {
        /// How much memory to use, like 64M or 1G
        #[arg(value_name = "SIZE", value_parser = parse_size_arg)]
        size: usize,
        /// Allocate and report in chunks of this size
        #[arg(long, value_name = "SIZE", default_value = "8M", value_parser = parse_size_arg)]
        step: usize,
    },
    /// Spin busy threads for SECONDS and report how much CPU time they got,
    /// to see cpu.max and cpu.weight at work
    ///
    /// Prints one line: `used 1.50s of CPU in 3.00s: 0.50 CPUs`.
    Cpu {
        /// How long to spin (wall-clock time), like 3 or 0.5
        #[arg(value_name = "SECONDS", value_parser = parse_seconds)]
        seconds: Duration,
        /// How many threads spin at once
        #[arg(long, value_name = "N", default_value = "1", value_parser = parse_threads)]
        threads: usize,
        /// Run only on this CPU (sched_setaffinity), so the threads compete
        /// for one CPU
        #[arg(long, value_name = "CPU", value_parser = parse_cpu)]
        pin: Option<usize>,
    },
    /// Start N child processes that wait, to run into pids.max
    ///
    /// Prints one line: `started 20 children`, or `started 9 children; fork
    /// 10 failed: ...` and exits 1 when the kernel refuses a fork. The
    /// children wait on a pipe only hog can write to, so they end with hog
    /// even if it is killed.
    Forks {
        /// How many children to start, 1 to 100000
        #[arg(value_name = "N", value_parser = parse_children)]
        count: usize,
        /// Keep the children this many seconds after printing, so their
        /// count can be read from pids.current
        #[arg(long, value_name = "SECONDS", default_value = "0", value_parser = parse_hold)]
        hold: Duration,
    },
    /// Write or read a file or block device, to see io.max at work
    #[command(subcommand)]
    Io(IoCommand),
}

#[derive(Debug, Subcommand)]
enum IoCommand {
    /// Write SIZE bytes to PATH (created with mode 0644 if missing, never
    /// truncated) and wait until they reach the device
    ///
    /// Prints one line: `wrote 20M to /dev/loop0 in 2.01s: 10.0M/s`.
    Write(IoArgs),
    /// Read SIZE bytes from PATH, or up to its end
    ///
    /// Prints one line: `read 20M from /dev/loop0 in 2.01s: 10.0M/s`.
    Read(IoArgs),
}

#[derive(Debug, clap::Args)]
struct IoArgs {
    /// A file or a block device such as /dev/loop0
    #[arg(value_name = "PATH")]
    path: PathBuf,
    /// How many bytes to move, like 20M
    #[arg(value_name = "SIZE", value_parser = parse_size_arg)]
    size: usize,
    /// Bypass the page cache (O_DIRECT), so every block goes to the device
    /// and is counted by io.max as it happens; SIZE and --block must then be
    /// multiples of 4096
    #[arg(long)]
    direct: bool,
    /// Move this many bytes per read(2) or write(2)
    #[arg(long, value_name = "SIZE", default_value = "1M", value_parser = parse_size_arg)]
    block: usize,
}

/// Which way `hog io` moves data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Write,
    Read,
}

/// Why hog stopped early, printed as `hog: <message>`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HogError {
    /// Bad input, found before doing anything: exit 2.
    Usage(String),
    /// A call the operation needed failed: exit 1.
    Failed(String),
}

impl HogError {
    fn code(&self) -> u8 {
        match self {
            Self::Usage(_) => steps::exit::USAGE,
            Self::Failed(_) => 1,
        }
    }

    fn message(&self) -> &str {
        match self {
            Self::Usage(message) | Self::Failed(message) => message,
        }
    }
}

fn main() -> ExitCode {
    steps::sys::restore_sigpipe();
    let cli: Cli = steps::cli::parse("hog");
    let result = match cli.command {
        Command::Memory { size, step } => memory(size, step),
        Command::Cpu {
            seconds,
            threads,
            pin,
        } => cpu(seconds, threads, pin),
        Command::Forks { count, hold } => forks(count, hold),
        Command::Io(IoCommand::Write(args)) => io(Direction::Write, &args),
        Command::Io(IoCommand::Read(args)) => io(Direction::Read, &args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("hog: {}", error.message());
            ExitCode::from(error.code())
        }
    }
}

// ---------------------------------------------------------------------------
// Parsing: clap calls these, so bad values are reported before anything runs.

/// A size like `64M`; `max` means nothing here.
fn parse_size_arg(text: &str) -> Result<usize, String> {
    match parse_size(text)? {
        Bytes::Max => Err("give a size like 100M, not max".into()),
        Bytes::Limit(bytes) => usize::try_from(bytes)
            .map_err(|_| format!("'{text}' does not fit in this machine's address space")),
    }
}

/// A positive number of seconds, like `3` or `0.5`.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    match parse_duration(text) {
        Some(seconds) if !seconds.is_zero() => Ok(seconds),
        _ => Err(format!(
            "'{text}' is not a number of seconds like 3 or 0.5 (more than 0, at most {MAX_SECONDS})"
        )),
    }
}

/// A number of seconds that may be 0, for `--hold`.
fn parse_hold(text: &str) -> Result<Duration, String> {
    parse_duration(text).ok_or_else(|| {
        format!("'{text}' is not a number of seconds like 0, 3 or 0.5 (at most {MAX_SECONDS})")
    })
}

fn parse_duration(text: &str) -> Option<Duration> {
    let seconds: f64 = text.trim().parse().ok()?;
    if !(0.0..=MAX_SECONDS).contains(&seconds) {
        return None;
    }
    Duration::try_from_secs_f64(seconds).ok()
}

fn parse_threads(text: &str) -> Result<usize, String> {
    parse_count(text, 1, MAX_THREADS, "a number of threads")
}

fn parse_children(text: &str) -> Result<usize, String> {
    parse_count(text, 1, MAX_CHILDREN, "a number of children")
}

/// A CPU number the kernel's CPU mask can hold; whether that CPU exists and
/// may be used is for sched_setaffinity to say.
fn parse_cpu(text: &str) -> Result<usize, String> {
    parse_count(text, 0, CpuSet::count() - 1, "a CPU number")
}

fn parse_count(text: &str, low: usize, high: usize, what: &str) -> Result<usize, String> {
    text.trim()
        .parse()
        .ok()
        .filter(|n| (low..=high).contains(n))
        .ok_or_else(|| format!("'{text}' is not {what} from {low} to {high}"))
}

// ---------------------------------------------------------------------------
// memory: push against memory.max.

fn memory(size: usize, step: usize) -> Result<ExitCode, HogError> {
    let mut chunks = Vec::new();
    let mut total = 0;
    while total < size {
        let len = step.min(size - total);
        let chunk = touched_chunk(len).map_err(|error| {
            HogError::Failed(format!(
                "malloc({}) after allocating {}: {error}",
                human(len as u64),
                human(total as u64)
            ))
        })?;
        // Kept until hog ends: memory that is freed is uncharged again.
        chunks.push(chunk);
        total += len;
        say(&format!("allocated {}", human(total as u64)));
    }
    black_box(&chunks);
    Ok(ExitCode::SUCCESS)
}

/// `len` bytes that really count against memory.max. Allocating is not
/// enough: the kernel gives a process a page — and charges it to the cgroup
/// — only when the page is first written, and a zeroed Vec (calloc, which
/// gets fresh pages from mmap) is never written. So every page gets a
/// non-zero byte: filling the whole chunk with one does that, and unlike a
/// fill with zeros the compiler cannot turn it back into calloc. Asking with
/// `try_reserve_exact` first turns a refused allocation (under `ulimit -v`,
/// say) into an error instead of an abort.
fn touched_chunk(len: usize) -> Result<Vec<u8>, TryReserveError> {
    let mut chunk = Vec::new();
    chunk.try_reserve_exact(len)?;
    chunk.resize(len, FILL);
    Ok(black_box(chunk))
}

// ---------------------------------------------------------------------------
// cpu: push against cpu.max (a quota per period) and cpu.weight (a share).

fn cpu(seconds: Duration, threads: usize, pin: Option<usize>) -> Result<ExitCode, HogError> {
    if let Some(cpu) = pin {
        // Threads inherit the affinity of the thread that creates them, so
        // pinning before spawning pins them all.
        pin_to(cpu)?;
    }
    let cpu_start = process_cpu_time()?;
    let start = Instant::now();
    let deadline = start + seconds;
    let stop = AtomicBool::new(false);
    let spawned = std::thread::scope(|scope| {
        for n in 1..=threads {
            let spinner = std::thread::Builder::new().spawn_scoped(scope, || {
                spin_until(deadline, &stop);
            });
            if let Err(error) = spinner {
                // pids.max counts threads too: stop the others and report.
                stop.store(true, Ordering::Relaxed);
                return Err(HogError::Failed(format!(
                    "pthread_create (thread {n} of {threads}): {}",
                    describe_io(&error)
                )));
            }
        }
        Ok(())
    });
    spawned?;
    let wall = start.elapsed();
    let cpu = process_cpu_time()?.saturating_sub(cpu_start);
    say(&cpu_line(cpu, wall));
    Ok(ExitCode::SUCCESS)
}

fn spin_until(deadline: Instant, stop: &AtomicBool) {
    let mut counter: u64 = 0;
    loop {
        for _ in 0..SPINS_PER_CHECK {
            counter = black_box(counter.wrapping_add(1));
        }
        if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
            return;
        }
    }
}

/// The CPU time used so far by all of this process's threads.
fn process_cpu_time() -> Result<Duration, HogError> {
    clock_gettime(ClockId::CLOCK_PROCESS_CPUTIME_ID)
        .map(Duration::from)
        .map_err(|errno| {
            HogError::Failed(format!(
                "clock_gettime(CLOCK_PROCESS_CPUTIME_ID): {}",
                describe(errno)
            ))
        })
}

/// `sched_setaffinity(0, {cpu})`: from now on this thread, and every thread
/// it starts, runs only on `cpu`.
fn pin_to(cpu: usize) -> Result<(), HogError> {
    let call = format!("sched_setaffinity(0, {{CPU {cpu}}})");
    let mut set = CpuSet::new();
    set.set(cpu)
        .and_then(|()| sched_setaffinity(Pid::from_raw(0), &set))
        .map_err(|errno| {
            let mut message = format!("{call}: {}", describe(errno));
            if let Ok(allowed) = sched_getaffinity(Pid::from_raw(0)) {
                let cpus = (0..CpuSet::count()).filter(|&n| allowed.is_set(n).unwrap_or(false));
                message += &format!("; hint: this process may run on CPUs {}", cpu_ranges(cpus));
            }
            HogError::Failed(message)
        })
}

/// `used 1.50s of CPU in 3.00s: 0.50 CPUs`.
fn cpu_line(cpu: Duration, wall: Duration) -> String {
    let cpus = if wall.is_zero() {
        0.0
    } else {
        cpu.as_secs_f64() / wall.as_secs_f64()
    };
    format!(
        "used {:.2}s of CPU in {:.2}s: {cpus:.2} CPUs",
        cpu.as_secs_f64(),
        wall.as_secs_f64()
    )
}

/// CPU numbers the way the kernel lists them in `cpuset.cpus`: `0-3,6`.
fn cpu_ranges(cpus: impl IntoIterator<Item = usize>) -> String {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for cpu in cpus {
        match ranges.last_mut() {
            Some((_, last)) if *last + 1 == cpu => *last = cpu,
            _ => ranges.push((cpu, cpu)),
        }
    }
    let parts: Vec<String> = ranges
        .iter()
        .map(|&(first, last)| {
            if first == last {
                first.to_string()
            } else {
                format!("{first}-{last}")
            }
        })
        .collect();
    parts.join(",")
}

// ---------------------------------------------------------------------------
// forks: push against pids.max.

fn forks(count: usize, hold: Duration) -> Result<ExitCode, HogError> {
    // The children wait for end of file on this pipe. Only hog keeps the
    // write end, so when hog closes it — or dies, even by SIGKILL — every
    // child reads EOF and ends: no child outlives hog.
    let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC)
        .map_err(|errno| HogError::Failed(format!("pipe2(O_CLOEXEC): {}", describe(errno))))?;
    let mut children = Vec::with_capacity(count);
    let mut failed = None;
    for n in 1..=count {
        // hog has started no threads, which steps::sys::fork requires.
        match steps::sys::fork() {
            Ok(Fork::Child) => wait_for_eof(read_end, write_end),
            Ok(Fork::Parent { child }) => children.push(child),
            Err(errno) => {
                failed = Some((n, errno));
                break;
            }
        }
    }
    say(&forks_line(children.len(), failed));
    std::thread::sleep(hold);
    drop(write_end);
    for child in children {
        reap(child);
    }
    Ok(if failed.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The child's whole life: let go of the write end, so that hog's copy is
/// the only one, then read until hog closes it.
fn wait_for_eof(read_end: OwnedFd, write_end: OwnedFd) -> ! {
    drop(write_end);
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(&read_end, &mut byte) {
            Ok(0) => break,
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    std::process::exit(0)
}

/// `waitpid(child)`, so no zombie is left counting against pids.max.
fn reap(child: Pid) {
    while let Err(Errno::EINTR) = waitpid(child, None) {}
}

/// `started 20 children`, or `started 9 children; fork 10 failed: ...`.
fn forks_line(started: usize, failed: Option<(usize, Errno)>) -> String {
    let children = if started == 1 { "child" } else { "children" };
    match failed {
        None => format!("started {started} {children}"),
        Some((n, errno)) => {
            format!(
                "started {started} {children}; fork {n} failed: {}",
                describe(errno)
            )
        }
    }
}

// ---------------------------------------------------------------------------
// io: push against io.max (bytes and operations per second, per device).

fn io(direction: Direction, args: &IoArgs) -> Result<ExitCode, HogError> {
    if args.direct && (args.size % PAGE != 0 || args.block % PAGE != 0) {
        return Err(HogError::Usage(format!(
            "with --direct, SIZE and --block must be multiples of {PAGE} \
             (O_DIRECT moves whole blocks), not {} and {}",
            human(args.size as u64),
            human(args.block as u64)
        )));
    }
    let path = &args.path;
    let file = open(direction, path, args.direct)?;
    // O_DIRECT copies straight between the device and this buffer, which
    // must therefore start on a page boundary: take a slightly larger Vec
    // and start the slice where the first aligned byte is.
    let mut storage = vec![FILL; args.block + PAGE];
    let start = storage.as_ptr().align_offset(PAGE);
    let buffer = &mut storage[start..start + args.block];
    let began = Instant::now();
    let bytes = match direction {
        Direction::Write => write_blocks(file, path, buffer, args.size, args.direct)?,
        Direction::Read => read_blocks(file, path, buffer, args.size)?,
    };
    say(&io_line(direction, bytes as u64, path, began.elapsed()));
    Ok(ExitCode::SUCCESS)
}

fn open(direction: Direction, path: &Path, direct: bool) -> Result<File, HogError> {
    let mut options = OpenOptions::new();
    match direction {
        // No O_TRUNC: PATH may be a block device, whose contents stay.
        Direction::Write => options.write(true).create(true).mode(0o644),
        Direction::Read => options.read(true),
    };
    if direct {
        options.custom_flags(OFlag::O_DIRECT.bits());
    }
    options.open(path).map_err(|error| {
        let mut message = format!(
            "open({path:?}, {}): {}",
            open_flags(direction, direct),
            describe_io(&error)
        );
        if direct && error.raw_os_error() == Some(Errno::EINVAL as i32) {
            message += "; hint: this filesystem may not support O_DIRECT; try without --direct";
        }
        HogError::Failed(message)
    })
}

/// Writes `size` bytes in blocks, then waits until they are on the device:
/// without O_DIRECT, write(2) only fills the page cache, and the writeback
/// that io.max throttles happens later — fsync makes it happen now.
fn write_blocks(
    mut file: File,
    path: &Path,
    buffer: &[u8],
    size: usize,
    direct: bool,
) -> Result<usize, HogError> {
    let mut done = 0;
    while done < size {
        let len = buffer.len().min(size - done);
        file.write_all(&buffer[..len]).map_err(|error| {
            HogError::Failed(format!(
                "write({path:?}, {}) at offset {done}: {}",
                human(len as u64),
                describe_io(&error)
            ))
        })?;
        done += len;
    }
    if !direct {
        file.sync_all().map_err(|error| {
            HogError::Failed(format!("fsync({path:?}): {}", describe_io(&error)))
        })?;
    }
    Ok(done)
}

/// Reads up to `size` bytes in blocks; stops early at end of file.
fn read_blocks(
    mut file: File,
    path: &Path,
    buffer: &mut [u8],
    size: usize,
) -> Result<usize, HogError> {
    let mut done = 0;
    while done < size {
        let len = buffer.len().min(size - done);
        match file.read(&mut buffer[..len]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => {
                return Err(HogError::Failed(format!(
                    "read({path:?}, {}) at offset {done}: {}",
                    human(len as u64),
                    describe_io(&error)
                )));
            }
        }
    }
    Ok(done)
}

/// `O_WRONLY|O_CREAT|O_DIRECT`: the flags as open(2) is called with them.
fn open_flags(direction: Direction, direct: bool) -> String {
    let base = match direction {
        Direction::Write => "O_WRONLY|O_CREAT",
        Direction::Read => "O_RDONLY",
    };
    if direct {
        format!("{base}|O_DIRECT")
    } else {
        base.to_string()
    }
}

/// `wrote 20M to /dev/loop0 in 2.01s: 10.0M/s`.
fn io_line(direction: Direction, bytes: u64, path: &Path, wall: Duration) -> String {
    let (verb, preposition) = match direction {
        Direction::Write => ("wrote", "to"),
        Direction::Read => ("read", "from"),
    };
    let nanos = wall.as_nanos().max(1);
    let per_second = u64::try_from(u128::from(bytes) * 1_000_000_000 / nanos).unwrap_or(u64::MAX);
    format!(
        "{verb} {} {preposition} {} in {:.2}s: {}/s",
        human(bytes),
        path.display(),
        wall.as_secs_f64(),
        human(per_second)
    )
}

// ---------------------------------------------------------------------------

/// Prints one line of output and flushes it at once: the OOM killer does not
/// wait for buffers.
fn say(line: &str) {
    let mut out = io::stdout().lock();
    // If stdout is gone there is no one left to tell.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// An `io::Error` the way `describe` renders an errno.
fn describe_io(error: &io::Error) -> String {
    match error.raw_os_error() {
        Some(raw) => describe(Errno::from_raw(raw)),
        None => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_reject_max() {
        assert_eq!(parse_size_arg("8M"), Ok(8 << 20));
        assert_eq!(
            parse_size_arg("max"),
            Err("give a size like 100M, not max".to_string())
        );
        assert!(parse_size_arg("lots").unwrap_err().contains("64M"));
    }

    #[test]
    fn seconds_are_positive_decimals() {
        assert_eq!(parse_seconds("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
        for bad in ["0", "-1", "abc", "", "inf", "NaN", "100000"] {
            let error = parse_seconds(bad).unwrap_err();
            assert!(error.contains("seconds like 3 or 0.5"), "{bad}: {error}");
        }
    }

    #[test]
    fn hold_may_be_zero() {
        assert_eq!(parse_hold("0"), Ok(Duration::ZERO));
        assert_eq!(parse_hold("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_hold("-0.5").is_err());
    }

    #[test]
    fn counts_have_ranges() {
        assert_eq!(parse_children("1"), Ok(1));
        assert_eq!(parse_children("100000"), Ok(100_000));
        assert_eq!(
            parse_children("0"),
            Err("'0' is not a number of children from 1 to 100000".to_string())
        );
        assert!(parse_children("100001").is_err());
        assert_eq!(parse_threads("4"), Ok(4));
        assert!(parse_threads("0").is_err());
        assert_eq!(parse_cpu("0"), Ok(0));
        assert!(parse_cpu("-1").is_err());
        assert!(parse_cpu(&CpuSet::count().to_string()).is_err());
    }

    #[test]
    fn cli_builds_and_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli =
            Cli::try_parse_from(["hog", "io", "write", "/dev/loop0", "20M", "--direct"]).unwrap();
        let Command::Io(IoCommand::Write(args)) = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(args.size, 20 << 20);
        assert_eq!(args.block, 1 << 20);
        assert!(args.direct);
    }

    #[test]
    fn cpu_line_has_two_decimals() {
        assert_eq!(
            cpu_line(Duration::from_millis(1500), Duration::from_secs(3)),
            "used 1.50s of CPU in 3.00s: 0.50 CPUs"
        );
        assert_eq!(
            cpu_line(Duration::from_millis(1990), Duration::from_millis(1004)),
            "used 1.99s of CPU in 1.00s: 1.98 CPUs"
        );
        assert_eq!(
            cpu_line(Duration::ZERO, Duration::ZERO),
            "used 0.00s of CPU in 0.00s: 0.00 CPUs"
        );
    }

    #[test]
    fn cpu_ranges_read_like_cpuset_cpus() {
        assert_eq!(cpu_ranges([0, 1, 2, 3]), "0-3");
        assert_eq!(cpu_ranges([0, 2, 3, 5]), "0,2-3,5");
        assert_eq!(cpu_ranges([]), "");
    }

    #[test]
    fn forks_line_says_where_it_stopped() {
        assert_eq!(forks_line(20, None), "started 20 children");
        assert_eq!(forks_line(1, None), "started 1 child");
        assert_eq!(
            forks_line(9, Some((10, Errno::EAGAIN))),
            "started 9 children; fork 10 failed: resource temporarily unavailable (EAGAIN)"
        );
    }

    #[test]
    fn io_line_shows_size_time_and_rate() {
        let path = Path::new("/dev/loop0");
        assert_eq!(
            io_line(Direction::Write, 20 << 20, path, Duration::from_secs(2)),
            "wrote 20M to /dev/loop0 in 2.00s: 10M/s"
        );
        assert_eq!(
            io_line(Direction::Read, 20 << 20, path, Duration::from_millis(2010)),
            "read 20M from /dev/loop0 in 2.01s: 10.0M/s"
        );
        assert_eq!(
            io_line(Direction::Read, 0, path, Duration::ZERO),
            "read 0B from /dev/loop0 in 0.00s: 0B/s"
        );
    }

    #[test]
    fn open_flags_as_open_sees_them() {
        assert_eq!(
            open_flags(Direction::Write, true),
            "O_WRONLY|O_CREAT|O_DIRECT"
        );
        assert_eq!(open_flags(Direction::Read, false), "O_RDONLY");
    }

    #[test]
    fn touched_chunks_have_the_size_asked() {
        let chunk = touched_chunk(3 * PAGE + 1).unwrap();
        assert_eq!(chunk.len(), 3 * PAGE + 1);
        assert!(chunk.iter().step_by(PAGE).all(|&byte| byte != 0));
    }
}
