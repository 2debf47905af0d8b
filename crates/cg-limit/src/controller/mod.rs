//! # One file per controller
//!
//! A controller is the part of the kernel that accounts for and limits one
//! resource. Each module here says, for cgroup v1 and v2 side by side,
//! which file a flag of cg-limit's writes and why — the same flag maps to
//! `memory.max` on v2 and `memory.limit_in_bytes` on v1 — and how the
//! usage is read back for the summary, `stats` and `tree`.

pub mod cpu;
pub mod io;
pub mod memory;
pub mod pids;

use std::path::{Path, PathBuf};

use steps::Chapter;

use crate::layout::{Cgroup, Controller, Layout, Version};

/// What a run or `create` asks to limit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    pub memory: Option<crate::units::Bytes>,
    pub memory_swap: Option<crate::units::Bytes>,
    pub cpus: Option<f64>,
    pub cpu_weight: Option<u32>,
    pub pids: Option<pids::PidsMax>,
    pub io: Vec<io::Throttle>,
}

impl Limits {
    /// The controllers these limits need.
    pub fn controllers(&self) -> Vec<Controller> {
        let mut needed = Vec::new();
        if self.memory.is_some() || self.memory_swap.is_some() {
            needed.push(Controller::Memory);
        }
        if self.cpus.is_some() || self.cpu_weight.is_some() {
            needed.push(Controller::Cpu);
        }
        if self.pids.is_some() {
            needed.push(Controller::Pids);
        }
        if !self.io.is_empty() {
            needed.push(Controller::Io);
        }
        needed
    }
}

/// One value for one file, and the flag that asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub controller: Controller,
    pub file: &'static str,
    pub value: String,
    /// The flag as a learner typed it, e.g. `--memory 64M`.
    pub flag: String,
    /// Why this file gets this value.
    pub why: String,
    /// Written only where the kernel has the file (swap accounting may be
    /// compiled out or switched off): a default, not something asked for.
    pub if_present: bool,
}

impl Setting {
    pub fn new(
        controller: Controller,
        file: &'static str,
        value: String,
        flag: String,
        why: String,
    ) -> Self {
        Self {
            controller,
            file,
            value,
            flag,
            why,
            if_present: false,
        }
    }

    /// The same, written only where the kernel has the file.
    pub fn if_present(self) -> Self {
        Self {
            if_present: true,
            ..self
        }
    }

    pub fn chapter(&self) -> Chapter {
        chapter_of(self.controller)
    }
}

pub fn chapter_of(controller: Controller) -> Chapter {
    match controller {
        Controller::Memory => steps::chapter::MEMORY,
        Controller::Cpu | Controller::CpuAcct => steps::chapter::CPU,
        Controller::Pids => steps::chapter::PIDS,
        Controller::Io => steps::chapter::IO,
    }
}

/// Every file the limits write, in the order they must be written.
pub fn settings(version: Version, limits: &Limits) -> Vec<Setting> {
    let mut all = memory::settings(version, limits);
    all.extend(cpu::settings(version, limits));
    all.extend(pids::settings(version, limits));
    all.extend(io::settings(version, limits));
    all
}

/// What a cgroup has used, by controller; `None` where the controller is
/// not available.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    pub memory: Option<memory::Usage>,
    pub cpu: Option<cpu::Usage>,
    pub pids: Option<pids::Usage>,
    pub io: Option<io::Usage>,
}

/// Reads a cgroup's usage from its files, with the memory and pids limits
/// that hold there: the group's own or a lower one above it, up to the
/// root of the controller's hierarchy.
pub fn usage(layout: &Layout, cgroup: &Cgroup) -> Usage {
    let version = layout.version();
    let dir_and_top = |controller| Some((cgroup.dir(controller)?, layout.mount_of(controller)?));
    Usage {
        memory: dir_and_top(Controller::Memory)
            .and_then(|(dir, top)| memory::usage(version, dir, top)),
        cpu: cpu::usage(version, cgroup),
        pids: dir_and_top(Controller::Pids).and_then(|(dir, top)| pids::usage(dir, top)),
        io: cgroup
            .dir(Controller::Io)
            .and_then(|d| io::usage(version, d)),
    }
}

/// Limits are inherited: a cgroup can never use more than any cgroup above
/// it allows. The lowest of `read` over `dir` and its ancestors up to the
/// hierarchy's root `top`, and the directory that has it.
pub fn lowest_above<T: PartialOrd>(
    dir: &Path,
    top: &Path,
    read: impl Fn(&Path) -> Option<T>,
) -> Option<(T, PathBuf)> {
    let mut best: Option<(T, PathBuf)> = None;
    let mut at = Some(dir);
    while let Some(level) = at {
        if let Some(value) = read(level)
            && best.as_ref().is_none_or(|(b, _)| value < *b)
        {
            best = Some((value, level.to_path_buf()));
        }
        if level == top {
            break;
        }
        at = level.parent().filter(|p| p.starts_with(top));
    }
    best
}
