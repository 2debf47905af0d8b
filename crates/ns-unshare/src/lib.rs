//! # ns-unshare
//!
//! A faithful `unshare(1)` from util-linux, built to be read: the flags
//! become a [`steps::Plan`] of kernel calls ([`plan`]), which [`run`]
//! executes. Beyond util-linux it sets a hostname, shows the namespaces of
//! processes side by side (`--list`) and joins the namespaces of a running
//! process (`--enter`), which is what `nsenter(1)` and `docker exec` do.

pub mod cli;
pub mod idmap;
pub mod namespace;
pub mod plan;
pub mod run;
pub mod table;

pub use cli::{Cli, Request};
pub use namespace::Namespace;

/// The plan the flags ask for.
pub fn plan(request: &Request) -> Result<steps::Plan<plan::NsStep>, steps::Error> {
    match request {
        Request::Unshare(unshare) => Ok(plan::unshare_plan(unshare)),
        Request::Enter(enter) => plan::enter_plan(enter),
        Request::List(pids) => Ok(plan::list_plan(pids)),
    }
}
