//! `cg-limit tree`: the toolkit's cgroups where they sit in the hierarchy,
//! from its root down, with each level's own limits — and, in parentheses,
//! the lower limit an ancestor imposes. Limits are inherited: a cgroup
//! can never use more than any cgroup above it allows, whatever its own
//! files say. On v1 each controller has a tree of its own, so there is one
//! tree per hierarchy.

use std::path::{Path, PathBuf};

use steps::Palette;

use crate::CgroupFs;
use crate::cgfs;
use crate::controller::{cpu, io, lowest_above, memory, pids};
use crate::layout::{Controller, Layout, Version};
use crate::units::human;

/// One column of the tree: a heading and how to show a directory's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Memory,
    Cpus,
    Weight,
    Pids,
    Io,
    Procs,
}

impl Column {
    fn heading(self) -> &'static str {
        match self {
            Self::Memory => "MEMORY",
            Self::Cpus => "CPUS",
            Self::Weight => "WEIGHT",
            Self::Pids => "PIDS",
            Self::Io => "IO",
            Self::Procs => "PROCS",
        }
    }

    /// The value at `dir`, and whether an ancestor's lower limit holds.
    fn value(self, version: Version, dir: &Path, top: &Path) -> (String, bool) {
        let has = |file: &str| dir.join(file).exists();
        match self {
            Self::Memory => {
                let file = match version {
                    Version::V2 => "memory.max",
                    Version::V1 => "memory.limit_in_bytes",
                };
                inherited(dir, top, file, |d| memory::limit(version, d), human)
            }
            Self::Cpus => {
                let file = match version {
                    Version::V2 => "cpu.max",
                    Version::V1 => "cpu.cfs_quota_us",
                };
                inherited(
                    dir,
                    top,
                    file,
                    |d| cpu::limit(version, d),
                    |c| format!("{c}"),
                )
            }
            Self::Weight => match cpu::weight(version, dir) {
                Some(w) => (w.to_string(), false),
                None => ("-".into(), false),
            },
            Self::Pids => inherited(dir, top, "pids.max", pids::limit, |n| n.to_string()),
            Self::Io => {
                let limits = io::limit(version, dir);
                let has_file = has("io.max") || has("blkio.throttle.read_bps_device");
                match (has_file, limits.is_empty()) {
                    (false, _) => ("-".into(), false),
                    (true, true) => ("max".into(), false),
                    (true, false) => (limits.join("; "), false),
                }
            }
            Self::Procs => (cgfs::procs(dir).len().to_string(), false),
        }
    }
}

/// A limit column: `-` where the controller's `file` is missing, the
/// group's own limit read by `read`, or `1G (32M)` when an ancestor holds
/// the group lower than that.
fn inherited<T: PartialOrd + Copy>(
    dir: &Path,
    top: &Path,
    file: &str,
    read: impl Fn(&Path) -> Option<T>,
    show: impl Fn(T) -> String,
) -> (String, bool) {
    if !dir.join(file).exists() {
        return ("-".into(), false);
    }
    let own = read(dir);
    let holds = lowest_above(dir, top, &read).map(|(v, _)| v);
    let own_text = own.map(&show).unwrap_or_else(|| "max".into());
    match holds {
        Some(holds) if own.is_none_or(|o| holds < o) => {
            (format!("{own_text} ({})", show(holds)), true)
        }
        _ => (own_text, false),
    }
}

/// A node of the tree to draw.
#[derive(Debug)]
struct Node {
    label: String,
    dir: PathBuf,
    children: Vec<Node>,
}

/// The chain from the hierarchy's root down to a toolkit parent, with
/// the toolkit's cgroups below it.
fn chain(top: &Path, parent: &Path) -> Node {
    let below = Node {
        label: crate::layout::PARENT.into(),
        dir: parent.to_path_buf(),
        children: subtree(parent),
    };
    let mut node = below;
    let mut at = parent.parent();
    while let Some(dir) = at {
        if !dir.starts_with(top) {
            break;
        }
        let label = if dir == top {
            "/".to_string()
        } else {
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        node = Node {
            label,
            dir: dir.to_path_buf(),
            children: vec![node],
        };
        if dir == top {
            break;
        }
        at = dir.parent();
    }
    node
}

fn subtree(dir: &Path) -> Vec<Node> {
    crate::layout::child_cgroups(dir)
        .into_iter()
        .map(|child| Node {
            label: child
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            children: subtree(&child),
            dir: child,
        })
        .collect()
}

/// Lines of `(tree label, dir)` in drawing order.
fn flatten(node: &Node, prefix: &str, last: bool, root: bool, out: &mut Vec<(String, PathBuf)>) {
    let label = if root {
        node.label.clone()
    } else {
        format!("{prefix}{}{}", if last { "└─ " } else { "├─ " }, node.label)
    };
    out.push((label, node.dir.clone()));
    let inner = if root {
        String::new()
    } else {
        format!("{prefix}{}", if last { "   " } else { "│  " })
    };
    for (i, child) in node.children.iter().enumerate() {
        flatten(child, &inner, i + 1 == node.children.len(), false, out);
    }
}

fn columns(controllers: &[Controller]) -> Vec<Column> {
    let mut columns = Vec::new();
    for controller in controllers {
        match controller {
            Controller::Memory => columns.push(Column::Memory),
            Controller::Cpu => columns.extend([Column::Cpus, Column::Weight]),
            Controller::Pids => columns.push(Column::Pids),
            Controller::Io => columns.push(Column::Io),
            Controller::CpuAcct => {}
        }
    }
    columns.push(Column::Procs);
    columns
}

/// Draws one hierarchy's tree as a table.
fn table(
    version: Version,
    top: &Path,
    roots: &[Node],
    columns: &[Column],
    p: Palette,
) -> (String, bool) {
    let mut lines: Vec<(String, PathBuf)> = Vec::new();
    for root in roots {
        flatten(root, "", true, true, &mut lines);
    }
    lines.dedup_by(|a, b| a.1 == b.1);
    let mut rows: Vec<Vec<String>> = vec![
        std::iter::once("CGROUP".to_string())
            .chain(columns.iter().map(|c| c.heading().to_string()))
            .collect(),
    ];
    let mut any_inherited = false;
    for (label, dir) in &lines {
        let mut row = vec![label.clone()];
        for column in columns {
            let (value, inherited) = column.value(version, dir, top);
            any_inherited |= inherited;
            row.push(value);
        }
        rows.push(row);
    }
    let widths: Vec<usize> = (0..=columns.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for (n, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                let pad = widths[i] - cell.chars().count();
                format!("{cell}{}", " ".repeat(pad))
            })
            .collect();
        let line = cells.join("  ");
        let line = line.trim_end();
        if n == 0 {
            text.push_str(&p.bold(line));
        } else {
            text.push_str(line);
        }
        text.push('\n');
    }
    (text, any_inherited)
}

/// The whole view.
pub fn render(fs: &dyn CgroupFs, p: Palette) -> String {
    let layout = fs.layout();
    let version = fs.version();
    let found = layout.toolkit_parents();
    let mut text = String::new();
    let mut any_inherited = false;
    let sections: Vec<(String, PathBuf, Vec<Controller>)> = match layout {
        Layout::V2 { mount } => vec![(
            format!(
                "cgroup v2: one hierarchy at {}, with every controller in it",
                mount.display()
            ),
            mount.clone(),
            vec![
                Controller::Memory,
                Controller::Cpu,
                Controller::Pids,
                Controller::Io,
            ],
        )],
        Layout::V1 { hierarchies } => hierarchies
            .iter()
            .filter(|h| h.controllers != [Controller::CpuAcct])
            .map(|h| {
                let names: Vec<&str> = h.controllers.iter().map(|c| c.v1_name()).collect();
                (
                    format!(
                        "cgroup v1: the {} hierarchy at {}",
                        names.join(","),
                        h.mount.display()
                    ),
                    h.mount.clone(),
                    h.controllers.clone(),
                )
            })
            .collect(),
    };
    for (heading, top, controllers) in sections {
        let roots: Vec<Node> = found
            .iter()
            .filter(|(_, parent)| parent.starts_with(&top))
            .map(|(_, parent)| chain(&top, parent))
            .collect();
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&format!("{}\n", p.dim(&heading)));
        if roots.is_empty() {
            text.push_str(
                "no toolkit cgroups: start one with cg-limit -- COMMAND, or cg-limit create NAME\n",
            );
            continue;
        }
        let (table, inherited) = table(version, &top, &roots, &columns(&controllers), p);
        any_inherited |= inherited;
        text.push_str(&table);
    }
    if any_inherited {
        text.push_str(
            "\n(N): the limit that holds there, set by a cgroup above: no cgroup may use more than its ancestors allow\n",
        );
    }
    text
}
