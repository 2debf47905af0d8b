//! The summary cg-limit prints on stderr when the command has ended: how
//! it ended — an OOM kill named as such, not just "exit 137" — and what the
//! group used, measured by the kernel.

use std::time::Duration;

use steps::Palette;
use steps::process::Exit;

use crate::run::Report;
use crate::units::{human, plural};

fn seconds(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

fn of(limit: Option<u64>, show: impl Fn(u64) -> String) -> String {
    match limit {
        Some(limit) => format!("of {}", show(limit)),
        None => "(no limit)".into(),
    }
}

/// The first line: the name, how the command ended, and why, if the
/// kernel ended it.
pub fn headline(report: &Report) -> String {
    let memory = report.usage.memory;
    let oom_kills = memory.map(|m| m.oom_kills).unwrap_or(0);
    let limit = memory
        .and_then(|m| m.limit)
        .map(human)
        .unwrap_or_else(|| "?".into());
    let name = &report.name;
    let after = seconds(report.wall);
    match report.exit {
        Exit::Signal(nix::sys::signal::Signal::SIGKILL) if oom_kills > 0 => format!(
            "{name} was killed by the kernel OOM killer: memory limit {limit} reached (exit {})",
            report.exit.shell_status()
        ),
        exit @ Exit::Signal(_) => {
            format!("{name} {exit} after {after} (exit {})", exit.shell_status())
        }
        exit if oom_kills > 0 => format!(
            "{name} {exit} after {after}; the kernel OOM killer ended {} in it: memory limit {limit} reached",
            plural(oom_kills, "process", "processes")
        ),
        exit => format!("{name} {exit} after {after}"),
    }
}

/// The whole summary.
pub fn render(report: &Report, p: Palette) -> String {
    let mut lines = vec![format!("cg-limit: {}", p.bold(&headline(report)))];
    let usage = &report.usage;
    if let Some(cpu) = usage.cpu {
        // An average over a few milliseconds says nothing: leave it out.
        let wall = report.wall.as_secs_f64();
        let average = if wall >= 0.1 {
            format!(" = {:.2} CPUs", cpu.total.as_secs_f64() / wall)
        } else {
            String::new()
        };
        let mut line = format!(
            "  cpu     {}{average} over {} (user {}, system {})",
            seconds(cpu.total),
            seconds(report.wall),
            seconds(cpu.user),
            seconds(cpu.system)
        );
        if cpu.periods > 0 {
            line.push_str(&format!(
                "; throttled in {} of {} periods, {} in all",
                cpu.throttled_periods,
                cpu.periods,
                seconds(cpu.throttled)
            ));
        }
        lines.push(line);
    }
    if let Some(memory) = usage.memory {
        let (peak, sampled) = match (memory.peak, report.sampled.memory) {
            (Some(peak), _) => (human(peak), ""),
            (None, Some(peak)) => (human(peak), " (sampled: this kernel keeps no memory.peak)"),
            (None, None) => ("?".into(), " (this kernel keeps no memory.peak)"),
        };
        let kills = match memory.oom_kills {
            0 => "no OOM kill".to_string(),
            n => plural(n, "OOM kill", "OOM kills"),
        };
        lines.push(format!(
            "  memory  peak {peak} {}{sampled}; {kills}",
            of(memory.limit, human)
        ));
    }
    if let Some(pids) = usage.pids {
        let (peak, sampled) = match (pids.peak, report.sampled.pids) {
            (Some(peak), _) => (peak.to_string(), ""),
            (None, Some(peak)) => (
                peak.to_string(),
                " (sampled: this kernel keeps no pids.peak)",
            ),
            (None, None) => ("?".into(), " (this kernel keeps no pids.peak)"),
        };
        let mut line = format!(
            "  pids    peak {peak} {}{sampled}",
            of(pids.limit, |n| n.to_string())
        );
        if pids.refused > 0 {
            line.push_str(&format!(
                "; {} refused (EAGAIN)",
                plural(pids.refused, "fork", "forks")
            ));
        }
        lines.push(line);
    }
    if let Some(io) = usage.io {
        lines.push(format!(
            "  io      read {}, wrote {}",
            human(io.read),
            human(io.written)
        ));
    }
    if report.left > 0 {
        lines.push(format!(
            "  left    {} still running when the command ended; cg-limit killed {}",
            plural(report.left as u64, "process was", "processes were"),
            if report.left == 1 { "it" } else { "them" }
        ));
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::{Usage, cpu, memory, pids};
    use crate::run::Sampled;
    use nix::sys::signal::Signal;

    fn report(exit: Exit, oom_kills: u64) -> Report {
        Report {
            name: "hog-42".into(),
            exit,
            wall: Duration::from_millis(3020),
            usage: Usage {
                memory: Some(memory::Usage {
                    current: 0,
                    inactive_file: 0,
                    peak: Some(32 << 20),
                    limit: Some(32 << 20),
                    oom_kills,
                }),
                cpu: Some(cpu::Usage {
                    total: Duration::from_millis(1510),
                    user: Duration::from_millis(1500),
                    system: Duration::from_millis(10),
                    periods: 30,
                    throttled_periods: 29,
                    throttled: Duration::from_millis(1490),
                }),
                pids: Some(pids::Usage {
                    current: 0,
                    peak: None,
                    limit: Some(10),
                    refused: 1,
                }),
                io: None,
            },
            sampled: Sampled {
                memory: None,
                pids: Some(10),
            },
            left: 2,
        }
    }

    #[test]
    fn an_oom_kill_is_named() {
        let text = render(&report(Exit::Signal(Signal::SIGKILL), 1), Palette::plain());
        assert_eq!(
            text,
            "cg-limit: hog-42 was killed by the kernel OOM killer: memory limit 32M reached (exit 137)
  cpu     1.51s = 0.50 CPUs over 3.02s (user 1.50s, system 0.01s); throttled in 29 of 30 periods, 1.49s in all
  memory  peak 32M of 32M; 1 OOM kill
  pids    peak 10 of 10 (sampled: this kernel keeps no pids.peak); 1 fork refused (EAGAIN)
  left    2 processes were still running when the command ended; cg-limit killed them
"
        );
    }

    #[test]
    fn other_endings() {
        let line = |exit, kills| headline(&report(exit, kills));
        assert_eq!(line(Exit::Code(0), 0), "hog-42 exited with 0 after 3.02s");
        assert_eq!(
            line(Exit::Signal(Signal::SIGTERM), 0),
            "hog-42 was killed by SIGTERM after 3.02s (exit 143)"
        );
        assert_eq!(
            line(Exit::Signal(Signal::SIGKILL), 0),
            "hog-42 was killed by SIGKILL after 3.02s (exit 137)"
        );
        assert_eq!(
            line(Exit::Code(137), 1),
            "hog-42 exited with 137 after 3.02s; the kernel OOM killer ended 1 process in it: memory limit 32M reached"
        );
    }
}
