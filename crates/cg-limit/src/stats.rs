//! `cg-limit stats`: what each of the toolkit's cgroups uses, like
//! `docker stats` — which reads exactly these files for each container.
//!
//! CPU % is the CPU time the group used between two readings divided by
//! the time between them: 100% is one whole CPU, 50% is what `--cpus 0.5`
//! allows. Memory usage leaves out inactive file cache, as docker does
//! (the kernel drops that first when the group nears its limit); the
//! limit is the one that holds, the group's own or an ancestor's, or the
//! machine's memory when there is none.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use steps::{Error, Palette};

use crate::CgroupFs;
use crate::controller::{self, Usage};
use crate::layout::Name;
use crate::units::human;

/// How often the stream refreshes, and how long `--no-stream` measures CPU.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// One row: a cgroup's usage between two readings.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub name: String,
    pub cpu_percent: Option<f64>,
    pub memory: Option<(u64, u64)>,
    pub pids: Option<u64>,
    pub io: Option<(u64, u64)>,
}

struct Reading {
    name: Name,
    usage: Usage,
    at: Instant,
}

fn read(fs: &dyn CgroupFs, names: &[Name]) -> Vec<Reading> {
    let layout = fs.layout();
    names
        .iter()
        .map(|name| Reading {
            name: name.clone(),
            usage: controller::usage(layout, &layout.cgroup(name)),
            at: Instant::now(),
        })
        .collect()
}

fn machine_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Rows from two readings of the same cgroups.
fn rows(before: &[Reading], after: &[Reading]) -> Vec<Row> {
    let total = machine_memory();
    after
        .iter()
        .map(|now| {
            let then = before.iter().find(|b| b.name == now.name);
            let cpu_percent = match (
                then.and_then(|t| t.usage.cpu.map(|c| (c, t.at))),
                now.usage.cpu,
            ) {
                (Some((old, at)), Some(new)) => {
                    let wall = now.at.duration_since(at).as_secs_f64();
                    let used = new.total.saturating_sub(old.total).as_secs_f64();
                    (wall > 0.0).then(|| used / wall * 100.0)
                }
                _ => None,
            };
            Row {
                name: now.name.to_string(),
                cpu_percent,
                memory: now.usage.memory.map(|m| {
                    (
                        m.current.saturating_sub(m.inactive_file),
                        m.limit.unwrap_or(total),
                    )
                }),
                pids: now.usage.pids.map(|p| p.current),
                io: now.usage.io.map(|io| (io.read, io.written)),
            }
        })
        .collect()
}

/// The table, docker's columns.
pub fn table(rows: &[Row], p: Palette) -> String {
    let dash = || "--".to_string();
    let mut cells: Vec<[String; 6]> = vec![[
        "NAME".into(),
        "CPU %".into(),
        "MEM USAGE / LIMIT".into(),
        "MEM %".into(),
        "PIDS".into(),
        "BLOCK I/O".into(),
    ]];
    for row in rows {
        cells.push([
            row.name.clone(),
            row.cpu_percent
                .map(|c| format!("{c:.2}%"))
                .unwrap_or_else(dash),
            row.memory
                .map(|(used, limit)| format!("{} / {}", human(used), human(limit)))
                .unwrap_or_else(dash),
            row.memory
                .filter(|(_, limit)| *limit > 0)
                .map(|(used, limit)| format!("{:.2}%", used as f64 / limit as f64 * 100.0))
                .unwrap_or_else(dash),
            row.pids.map(|n| n.to_string()).unwrap_or_else(dash),
            row.io
                .map(|(r, w)| format!("{} / {}", human(r), human(w)))
                .unwrap_or_else(dash),
        ]);
    }
    steps::table::columns(&cells, p)
}

/// Shows the table once (`stream` false) or every second until Ctrl-C.
pub fn run(fs: &dyn CgroupFs, wanted: &[Name], stream: bool, p: Palette) -> Result<u8, Error> {
    let existing = fs.layout().existing();
    for name in wanted {
        if !existing.contains(name) {
            return Err(Error::usage(format!(
                "there is no toolkit cgroup named {name}; cg-limit stats without names shows all there are"
            )));
        }
    }
    let cgroups = || -> Vec<(Name, String)> {
        fs.layout()
            .existing()
            .into_iter()
            .filter(|n| wanted.is_empty() || wanted.contains(n))
            .map(|n| (n.clone(), n.to_string()))
            .collect()
    };
    watch(fs, &cgroups, stream, p)
}

/// The table for the cgroups `cgroups` gives, each with the label to show
/// for it (asked again at each refresh: groups come and go), once or
/// every second until Ctrl-C. `mini-run stats` shows containers this way.
pub fn watch(
    fs: &dyn CgroupFs,
    cgroups: &dyn Fn() -> Vec<(Name, String)>,
    stream: bool,
    p: Palette,
) -> Result<u8, Error> {
    let terminal = std::io::stdout().is_terminal();
    let mut labelled = cgroups();
    let names = |labelled: &[(Name, String)]| -> Vec<Name> {
        labelled.iter().map(|(n, _)| n.clone()).collect()
    };
    let mut before = read(fs, &names(&labelled));
    loop {
        std::thread::sleep(INTERVAL);
        let after = read(fs, &names(&labelled));
        let mut rows = rows(&before, &after);
        for row in &mut rows {
            if let Some((_, label)) = labelled.iter().find(|(n, _)| n.as_str() == row.name) {
                row.name = label.clone();
            }
        }
        let text = table(&rows, p);
        let mut out = std::io::stdout().lock();
        let written = if !stream {
            out.write_all(text.as_bytes())
        } else if terminal {
            // Clear the screen and draw again, as docker stats does.
            out.write_all(format!("\x1b[2J\x1b[H{text}").as_bytes())
        } else {
            out.write_all(format!("{text}\n").as_bytes())
        };
        if written.and_then(|()| out.flush()).is_err() || !stream {
            return Ok(0);
        }
        // The last reading is the next one's start; a newcomer's starts now.
        let next = cgroups();
        let newcomers: Vec<Name> = names(&next)
            .into_iter()
            .filter(|n| !after.iter().any(|a| &a.name == n))
            .collect();
        before = after
            .into_iter()
            .filter(|a| next.iter().any(|(n, _)| n == &a.name))
            .chain(read(fs, &newcomers))
            .collect();
        labelled = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_dockers_columns() {
        let rows = [
            Row {
                name: "hog-42".into(),
                cpu_percent: Some(49.987),
                memory: Some((1 << 20, 64 << 20)),
                pids: Some(1),
                io: Some((0, 20 << 20)),
            },
            Row {
                name: "outer".into(),
                cpu_percent: None,
                memory: None,
                pids: None,
                io: None,
            },
        ];
        assert_eq!(
            table(&rows, Palette::plain()),
            "NAME     CPU %    MEM USAGE / LIMIT   MEM %   PIDS   BLOCK I/O\n\
             hog-42   49.99%   1M / 64M            1.56%   1      0B / 20M\n\
             outer    --       --                  --      --     --\n"
        );
    }
}
