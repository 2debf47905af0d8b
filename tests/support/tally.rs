//! What the reliability harness checked, counted as it passes: tests
//! checked by the leak ledger, fault points walked, bad inputs refused
//! and escape attempts stopped. Each suite prints one line of its counts
//! and `tests/run` adds them up, for the README's summary.

use std::sync::atomic::{AtomicUsize, Ordering};

/// A kind of check the harness counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tally {
    /// A test run under the leak ledger that left nothing behind.
    LedgerChecked,
    /// A step of a plan after which a failure, an interrupt or a kill was
    /// injected, and everything was given back.
    FaultPoint,
    /// A bad value refused in one line, with its code, before any change.
    BadInput,
    /// An escape attempt against mini-run, stopped (or a known gap, shown).
    Escape,
}

const KINDS: [(Tally, &str); 4] = [
    (Tally::LedgerChecked, "ledger-checked"),
    (Tally::FaultPoint, "fault-points"),
    (Tally::BadInput, "bad-inputs"),
    (Tally::Escape, "escapes"),
];

static COUNTS: [AtomicUsize; 4] = [const { AtomicUsize::new(0) }; 4];

fn index(kind: Tally) -> usize {
    KINDS.iter().position(|(k, _)| *k == kind).unwrap_or(0)
}

/// Counts `n` more checks of `kind` that passed.
pub fn add(kind: Tally, n: usize) {
    COUNTS[index(kind)].fetch_add(n, Ordering::Relaxed);
}

/// How many checks of `kind` passed so far.
pub fn count(kind: Tally) -> usize {
    COUNTS[index(kind)].load(Ordering::Relaxed)
}

/// `reliability: ledger-checked=N fault-points=N bad-inputs=N escapes=N`,
/// the line `tests/run` looks for.
pub fn line() -> String {
    let counts: Vec<String> = KINDS
        .iter()
        .map(|(kind, name)| format!("{name}={}", count(*kind)))
        .collect();
    format!("reliability: {}", counts.join(" "))
}
