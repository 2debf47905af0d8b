//! # mini-run
//!
//! `docker run`, built to be read. A container is not a thing the kernel
//! knows: it is an ordinary process that mini-run starts in new
//! namespaces (ns-unshare), in a cgroup with limits (cg-limit), on an
//! overlay of an image's layers (overlay-stack), on a bridge with an
//! address and published ports (veth-bridge), with the mounts, the
//! `pivot_root` and the security defaults Docker gives every container.
//! mini-run composes the other tools' libraries and shows each step as the
//! standalone command or kernel call it is (`--explain`, `--dry-run`).
//! See the book's part "A container of your own".
//!
//! * [`container`] checks the flags into a [`container::Container`];
//! * [`plan`] turns it into the steps of the caller, the parent and the
//!   child, which [`run`] executes;
//! * [`by_hand`] is the same container as a chain of the standalone
//!   tools' commands, which `--explain` prints;
//! * [`network`] connects the container to a bridge, and back;
//! * [`passfd`] passes descriptors between mini-run and the container;
//! * [`init`] is `--init`'s pid 1, which passes signals on and reaps;
//! * [`inroot`] resolves mount targets inside the rootfs, never outside;
//! * [`rootless`] is a container without root: a user namespace, and
//!   what is left out;
//! * [`security`] holds Docker's defaults: capabilities, masked and
//!   read-only paths;
//! * [`spec`] reads the same options from a YAML file (`run -f`);
//! * [`state`] is a container's id and its directory under `/run` (or
//!   the user's runtime directory);
//! * [`tty`] is `-t`: the container's terminal, and the relay to it;
//! * [`volume`] keeps the named volumes under `/var/lib/underhood`.

pub mod by_hand;
pub mod cli;
pub mod container;
pub mod exec;
pub mod init;
pub mod inroot;
pub mod lifecycle;
pub mod network;
pub mod passfd;
pub mod plan;
pub mod record;
pub mod rootless;
pub mod run;
pub mod security;
pub mod spec;
pub mod state;
pub mod tty;
pub mod volume;
