//! The command line: Docker's `run` flags, parsed by clap and then checked
//! into a [`Container`](crate::container::Container) with no side effect.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use steps::StepArgs;

#[derive(Debug, Parser)]
#[command(
    name = "mini-run",
    version,
    about = "docker run, built to be read: a container from namespaces, a cgroup, an overlay root and Docker's security defaults",
    after_help = "Exit codes: run and exec give the command's own exit status; 125 when mini-run \
                  itself failed (a bad flag of any subcommand included, as docker says); 126 when \
                  the command cannot be run; 127 when it is not found. ps, logs, stop, kill, rm, \
                  inspect, stats: 2 for an unknown container, an id prefix that is more than \
                  one's, or a bad value; 1 when the container is in the wrong state for it (rm of \
                  a running one, kill of a stopped one, logs of one run in the foreground). mini-run volume: 2 for a bad \
                  name or a volume that is not there, 1 when rm is refused because a container \
                  uses the volume. Each step: mini-run --explain run …"
)]
pub struct Cli {
    #[command(flatten)]
    pub steps: StepArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command in a new container, like docker run
    #[command(after_help = crate::spec::HELP)]
    Run(Box<RunArgs>),
    /// List the containers: running ones, or every one kept with -a
    #[command(alias = "list")]
    Ps {
        /// Show every container, also the ones that have exited
        #[arg(short = 'a', long = "all")]
        all: bool,
        /// Only the ids
        #[arg(short = 'q', long = "quiet")]
        quiet: bool,
    },
    /// Run a command in a running container: its namespaces, its cgroup,
    /// its capabilities (like docker exec)
    #[command(
        after_help = "Exit codes: the command's own status; 125 when mini-run exec itself failed \
                      (an unknown container and one that is not running included), so that every \
                      other status is the command's; 126 when the command cannot be run; 127 when \
                      it is not found."
    )]
    Exec(ExecArgs),
    /// Show what a container's command wrote (run -d keeps it in a log)
    Logs {
        /// Keep showing what it writes, until it exits
        #[arg(short = 'f', long = "follow")]
        follow: bool,
        #[arg(value_name = "CONTAINER")]
        container: String,
    },
    /// Stop running containers: SIGTERM, then SIGKILL after the timeout
    Stop {
        /// Seconds to wait after SIGTERM before SIGKILL
        #[arg(short = 't', long = "time", value_name = "SECS", default_value_t = 10)]
        time: u64,
        #[arg(value_name = "CONTAINER", required = true)]
        containers: Vec<String>,
    },
    /// Send a signal to running containers' first process (default SIGKILL)
    Kill {
        /// The signal, by name (TERM, SIGTERM) or number
        #[arg(
            short = 's',
            long = "signal",
            value_name = "SIGNAL",
            default_value = "KILL"
        )]
        signal: String,
        #[arg(value_name = "CONTAINER", required = true)]
        containers: Vec<String>,
    },
    /// Remove containers and their state: their upper layer and log; a
    /// running one is refused (exit 1) unless -f, which kills it first
    #[command(alias = "remove")]
    Rm {
        /// Kill a running container first (SIGKILL)
        #[arg(short = 'f', long = "force")]
        force: bool,
        #[arg(value_name = "CONTAINER", required = true)]
        containers: Vec<String>,
    },
    /// Everything about containers as JSON: pid, namespaces, cgroup and
    /// limits, layers, mounts, address and ports
    Inspect {
        #[arg(value_name = "CONTAINER", required = true)]
        containers: Vec<String>,
    },
    /// Live CPU, memory, pids and I/O per running container (like docker stats)
    Stats {
        /// Show one reading and stop
        #[arg(long = "no-stream")]
        no_stream: bool,
        #[arg(value_name = "CONTAINER")]
        containers: Vec<String>,
    },
    /// Give back what containers whose mini-run was killed left behind:
    /// their cgroups, addresses and ports; their state goes too if they
    /// ran with --rm or never started (a running container is left be)
    Cleanup,
    /// Named volumes (-v NAME:/path), kept under /var/lib/underhood/volumes
    /// (rootless: ~/.local/share/underhood/volumes)
    #[command(subcommand)]
    Volume(VolumeCommand),
}

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Make a volume (run -v NAME:… makes it on first use too)
    Create {
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// List the volumes, with the ones running containers use marked
    #[command(alias = "list")]
    Ls,
    /// Remove volumes and what is in them; one a running container uses is
    /// refused (exit 1)
    #[command(alias = "remove")]
    Rm {
        #[arg(value_name = "NAME", required = true)]
        names: Vec<String>,
    },
}

#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// Read the options from a YAML file first; the command line's own
    /// options win (see below)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Use this directory as the root filesystem as it is (writes go into it),
    /// instead of an image
    #[arg(long, value_name = "DIR", conflicts_with = "image")]
    pub rootfs: Option<PathBuf>,

    /// Set an environment variable (NAME=VALUE, or NAME to pass on the host's value)
    #[arg(short = 'e', long = "env", value_name = "NAME[=VALUE]")]
    pub env: Vec<String>,

    /// The directory the command starts in, inside the container
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,

    /// Run as this user and group, by number (UID[:GID])
    #[arg(
        short = 'u',
        long = "user",
        value_name = "UID[:GID]",
        allow_hyphen_values = true
    )]
    pub user: Option<String>,

    /// The container's hostname (default: its short id)
    #[arg(long = "hostname", value_name = "NAME", allow_hyphen_values = true)]
    pub hostname: Option<String>,

    /// Memory limit, e.g. 64m or 1g (cgroup memory.max)
    #[arg(
        short = 'm',
        long = "memory",
        value_name = "SIZE",
        allow_hyphen_values = true
    )]
    pub memory: Option<String>,

    /// CPUs the container may use, e.g. 0.5 (cgroup cpu.max)
    #[arg(long = "cpus", value_name = "N", allow_hyphen_values = true)]
    pub cpus: Option<String>,

    /// Most processes the container may have (cgroup pids.max)
    #[arg(
        long = "pids-limit",
        alias = "pids",
        value_name = "N",
        allow_hyphen_values = true
    )]
    pub pids: Option<String>,

    /// Bind-mount a host directory or file (/host/path:/ctr/path[:ro]), or a
    /// named volume, made on first use and kept (NAME:/ctr/path[:ro])
    #[arg(short = 'v', long = "volume", value_name = "HOST|NAME:CTR[:ro]")]
    pub volumes: Vec<String>,

    /// Network: bridge (the default: a veth on the toolkit's bridge
    /// underhood0, made on first use, with NAT), none (only loopback), host
    /// (the host's own stack), or the name of a bridge made with veth-bridge
    /// bridge add
    #[arg(long = "network", alias = "net", value_name = "MODE")]
    pub network: Option<String>,

    /// Publish a container's port on the host: HOSTPORT:CTRPORT[/tcp|/udp]
    #[arg(
        short = 'p',
        long = "publish",
        value_name = "HOST:CTR[/PROTO]",
        allow_hyphen_values = true
    )]
    pub publish: Vec<String>,

    /// Give the container a terminal of its own, /dev/pts/0 from its own
    /// devpts, with the host's terminal in raw mode around it (-it: an
    /// interactive shell)
    #[arg(short = 't', long = "tty")]
    pub tty: bool,

    /// Keep stdin attached: mini-run always does, so that mini-run run --
    /// sh works as it reads; -i is taken so that -it reads as in Docker
    #[arg(short = 'i', long = "interactive")]
    pub interactive: bool,

    /// Run in a user namespace of its own: root inside is a stranger
    /// outside. As root, the container's ids 0-65535 are host ids from
    /// 1000000000 (or /etc/subuid's range for "underhood"), its layers
    /// idmapped; without root always, with your own uid as its root
    #[arg(long = "userns")]
    pub userns: bool,

    /// Run a tiny init as pid 1 (like docker run --init): it passes signals
    /// on to the command, which runs as pid 2, and reaps orphaned processes
    #[arg(long = "init")]
    pub init: bool,

    /// Remove the container when it exits; without it, it is kept, for
    /// mini-run ps -a and inspect (and logs, with -d), until mini-run rm
    #[arg(long = "rm")]
    pub remove: bool,

    /// Run in the background: print the container's id once its command
    /// runs; its output goes to a log (mini-run logs)
    #[arg(short = 'd', long = "detach")]
    pub detach: bool,

    /// A name for the container, unique among this user's containers; the
    /// other commands take it in place of the id
    #[arg(long = "name", value_name = "NAME", allow_hyphen_values = true)]
    pub name: Option<String>,

    /// An image imported with overlay-stack import (a directory holding
    /// image.json); none: the default busybox rootfs
    #[arg(value_name = "IMAGE")]
    pub image: Option<PathBuf>,

    /// The command and its arguments (default: the image's, or sh)
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct ExecArgs {
    /// Give the command a terminal of its own, from the container's devpts
    #[arg(short = 't', long = "tty")]
    pub tty: bool,

    /// Keep stdin attached (always so; -i is taken so that -it reads as in Docker)
    #[arg(short = 'i', long = "interactive")]
    pub interactive: bool,

    /// Set an environment variable, over the container's (NAME=VALUE)
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,

    /// Run as this user and group, by number (default: the container's)
    #[arg(
        short = 'u',
        long = "user",
        value_name = "UID[:GID]",
        allow_hyphen_values = true
    )]
    pub user: Option<String>,

    /// The directory the command starts in (default: the container's)
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,

    #[arg(value_name = "CONTAINER")]
    pub container: String,

    /// The command and its arguments
    #[arg(
        value_name = "CMD",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

impl RunArgs {
    /// `--network`, or the default, bridge. The flag is kept unset when not
    /// given, so that a spec file's `network:` can tell it from the default.
    pub fn network(&self) -> &str {
        self.network.as_deref().unwrap_or("bridge")
    }
}
