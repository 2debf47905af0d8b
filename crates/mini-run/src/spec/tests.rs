//! The spec parser without root: values, places of errors, the merge with
//! the command line, and paths relative to the file.

use std::path::{Path, PathBuf};

use super::*;
use crate::container::{Network, Root};

/// Parses `text` as `web.yaml` in `dir`.
fn parse_in(dir: &Path, text: &str) -> Result<Spec, Error> {
    Spec::parse(text, Path::new("web.yaml"), dir)
}

fn parse(text: &str) -> Result<Spec, Error> {
    parse_in(Path::new("/nonexistent"), text)
}

/// The message of the error `text` gives.
fn error(text: &str) -> String {
    match parse(text) {
        Ok(spec) => panic!("{text:?} was taken: {spec:?}"),
        Err(e) => {
            assert_eq!(e.code(), steps::exit::USAGE, "{e}");
            e.to_string()
        }
    }
}

#[test]
fn values_are_held_as_the_flags_would_hold_them() {
    let spec = parse(
        "# a comment\n\
         command: [sh, -c, 'echo $GREETING']\n\
         env:\n  GREETING: hello\n  N: 1\n  HOME:\n\
         workdir: /srv\n\
         user: 1000:1001\n\
         hostname: web\n\
         memory: 64m\n\
         cpus: 0.5\n\
         pids: 20\n\
         volumes:\n  - /tmp:/data:ro\n\
         network: none\n",
    )
    .unwrap();
    assert_eq!(
        spec,
        Spec {
            command: ["sh", "-c", "echo $GREETING"].map(String::from).to_vec(),
            // In the file's order; no value is the host's, as -e HOME says.
            env: ["GREETING=hello", "N=1", "HOME"].map(String::from).to_vec(),
            workdir: Some("/srv".into()),
            user: Some("1000:1001".into()),
            hostname: Some("web".into()),
            memory: Some("64m".into()),
            cpus: Some("0.5".into()),
            pids: Some("20".into()),
            volumes: vec!["/tmp:/data:ro".into()],
            network: Some("none".into()),
            ..Spec::default()
        }
    );
    // YAML 1.2, as yaml_serde reads it: 22:22 is a string (YAML 1.1 read
    // it as the base-60 number 1342, which is why compose quotes ports).
    let spec = parse("{memory: 1g, ports: ['8080:80', 22:22, 5353:53/udp]}").unwrap();
    assert_eq!(spec.memory.as_deref(), Some("1g"));
    assert_eq!(spec.ports, ["8080:80", "22:22", "5353:53/udp"]);
}

#[test]
fn every_error_has_the_file_line_and_column_of_the_value() {
    for (text, want) in [
        (
            "hostname: web\nmemory: abc\n",
            "web.yaml:2:9: memory: 'abc' is not a size like 64M, 512m, 1G or 1.5GiB \
             (K, M, G, T are powers of 1024), or max",
        ),
        (
            "cpus: 0\n",
            "web.yaml:1:7: cpus: '0' is out of range: give a number of CPUs from 0.01 to 1024",
        ),
        (
            "pids: lots\n",
            "web.yaml:1:7: pids: 'lots' is not a number of processes from 1 to 4194304, or max",
        ),
        (
            "ports:\n  - 8080:80\n  - 8080:http\n",
            "web.yaml:3:5: ports[1]: \"8080:http\": \"http\" is not a port: give 1 to 65535",
        ),
        (
            "ports: ['8080:80', '8080:81']\n",
            "web.yaml:1:20: ports[1]: \"8080:81\": host port 8080/tcp is published twice; \
             give each host port once",
        ),
        (
            "volumes:\n  - /tmp:/data:rx\n",
            "web.yaml:2:5: volumes[0]: \"/tmp:/data:rx\": \"rx\" is not a mode; use ro or rw",
        ),
        (
            "volumes:\n  - /tmp:data\n",
            "web.yaml:2:5: volumes[0]: \"data\": a path inside the container must be \
             absolute (start with /)",
        ),
        (
            "user: nobody\n",
            "web.yaml:1:7: user: \"nobody\": give the user and group by number, UID[:GID] \
             (mini-run does not read the image's /etc/passwd)",
        ),
        (
            "workdir: srv\n",
            "web.yaml:1:10: workdir: \"srv\": a path inside the container must be absolute \
             (start with /)",
        ),
        (
            "hostname: -web\n",
            "web.yaml:1:11: hostname: \"-web\": use letters, digits, '-' and '.', at most 63, \
             not starting with '-'",
        ),
        (
            "network: a/b\n",
            "web.yaml:1:10: network: \"a/b\": not a network; use bridge (the default), none, \
             host, or a bridge made with veth-bridge bridge add",
        ),
        (
            "command: echo hello\n",
            "web.yaml:1:10: command: \"echo hello\" is a string; give the command as a list, \
             like [sh, -c, 'echo hello']: mini-run runs it as Docker's exec form does, with no \
             shell to split a string into words",
        ),
        (
            "command: ['', x]\n",
            "web.yaml:1:11: command[0]: the program is empty; give one first in the list",
        ),
        (
            "env:\n  A=B: c\n",
            "web.yaml:2:3: env: \"A=B\" is not a variable's name; give one without =",
        ),
        (
            "env:\n  A: 1\n  A: 2\n",
            "web.yaml:3:3: env: A is given twice; give it once",
        ),
        (
            "env: [A=1]\n",
            "web.yaml:1:6: env: invalid type: sequence, expected a mapping of NAME: value, \
             one per line",
        ),
        (
            "env:\n  A: [1]\n",
            "web.yaml:2:6: env.A: invalid type: sequence, expected a value, or nothing for \
             the host's",
        ),
        (
            "memory:\n",
            "web.yaml:1:8: memory: no value; give a size like 64m, or leave it out",
        ),
        (
            "memory: 64m\nmemory: 32m\n",
            "web.yaml:2:1: memory is given twice; give it once",
        ),
        (
            "volumes: /tmp:/data\n",
            "web.yaml:1:10: volumes: invalid type: string \"/tmp:/data\", expected a list of \
             HOST:CTR[:ro], one per line after -",
        ),
        (
            "memory: \"64m\n",
            "web.yaml:2:1: found unexpected end of stream, while scanning a quoted scalar \
             at line 1 column 9",
        ),
        (
            "- memory\n",
            "web.yaml:1:1: invalid type: sequence, expected run options, one per line, \
             like memory: 64m",
        ),
        (
            "# only a comment\n",
            "web.yaml:1:1: the file holds no options; write one per line, like memory: 64m",
        ),
    ] {
        assert_eq!(error(text), want, "{text:?}");
    }
}

#[test]
fn an_unknown_key_is_named_with_the_keys_there_are() {
    assert_eq!(
        error("hostname: web\n\nmem_limit: 64m\n"),
        "web.yaml:3:1: unknown field `mem_limit`, expected one of `image`, `rootfs`, \
         `command`, `env`, `workdir`, `user`, `hostname`, `memory`, `cpus`, `pids`, \
         `volumes`, `network`, `ports`, `init`, `tty`, `userns`, `name`, `rm`"
    );
}

#[test]
fn keys_that_exclude_each_other_are_refused_where_the_second_is() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tree")).unwrap();
    let error = |text| parse_in(dir.path(), text).unwrap_err().to_string();
    assert_eq!(
        error("rootfs: tree\nimage: img\n"),
        "web.yaml:2:8: image: rootfs is given too, and both choose the root; keep one"
    );
    assert_eq!(
        error("network: none\nports:\n  - 8080:80\n"),
        "web.yaml:3:5: ports[0]: ports are published on a bridge, and network: none has \
         none; leave network out (bridge is the default), or the ports"
    );
    assert_eq!(
        error("ports: ['8080:80']\nnetwork: host\n"),
        "web.yaml:2:10: network: ports are published on a bridge, and network: host has \
         none; leave network out (bridge is the default), or the ports"
    );
}

#[test]
fn relative_paths_are_relative_to_the_file_s_directory() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    for name in ["tree", "site"] {
        std::fs::create_dir(dir.join(name)).unwrap();
    }
    let spec = parse_in(
        dir,
        "rootfs: ./tree\nvolumes:\n  - ./site:/www:ro\n  - ..:/up\n  - /tmp:/tmp\n",
    )
    .unwrap();
    assert_eq!(spec.rootfs, Some(dir.join("tree")));
    assert_eq!(
        spec.volumes,
        [
            format!("{}:/www:ro", dir.join("site").display()),
            format!("{}/..:/up", dir.display()),
            "/tmp:/tmp".to_string(),
        ]
    );
    // A missing source is named where it was looked for.
    let error = parse_in(dir, "volumes: [./nope:/data]\n").unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "web.yaml:1:11: volumes[0]: \"./nope:/data\": {}: no such file or directory \
             (ENOENT); the host side must exist",
            dir.join("nope").display()
        )
    );
    // A bare name is not a path: it is a named volume, as in Docker.
    let spec = parse_in(dir, "volumes: [site:/data]\n").unwrap();
    assert_eq!(spec.volumes, ["site:/data"]);
    let error = parse_in(dir, "image: ./img\n").unwrap_err();
    assert!(
        error.to_string().starts_with(&format!(
            "web.yaml:1:8: image: {}: not an imported image",
            dir.join("img").display()
        )),
        "{error}"
    );
}

#[test]
fn a_missing_file_is_named_with_what_to_give() {
    let error = Spec::load(Path::new("/nonexistent/web.yaml")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "-f /nonexistent/web.yaml: no such file or directory (ENOENT); give a YAML file of \
         run options (mini-run run --help shows one)"
    );
    assert_eq!(error.code(), steps::exit::USAGE);
}

/// A command line as clap would make it: no --network unless given.
fn cli(set: impl FnOnce(&mut RunArgs)) -> RunArgs {
    let mut args = RunArgs::default();
    set(&mut args);
    args
}

#[test]
fn the_command_line_wins_and_adds_to_lists() {
    let file = parse(
        "command: [sleep, '1']\nenv: {A: file, B: file}\nhostname: web\nmemory: 64m\n\
         volumes: ['/tmp:/data']\nnetwork: none\n",
    )
    .unwrap();
    // Nothing on the command line: the file as it is.
    let args = file.clone().under(&cli(|_| {}));
    assert_eq!(args.command, ["sleep", "1"]);
    assert_eq!(args.network(), "none");
    // Scalars replace the file's; lists come after the file's; a command
    // replaces the file's.
    let args = file.under(&cli(|a| {
        a.hostname = Some("db".into());
        a.env = vec!["A=flag".into()];
        a.volumes = vec!["/var:/var".into()];
        a.network = Some("host".into());
        a.command = vec!["true".into()];
    }));
    assert_eq!(args.hostname.as_deref(), Some("db"));
    assert_eq!(args.memory.as_deref(), Some("64m"));
    assert_eq!(args.env, ["A=file", "B=file", "A=flag"]);
    assert_eq!(args.volumes, ["/tmp:/data", "/var:/var"]);
    assert_eq!(args.network(), "host");
    assert_eq!(args.command, ["true"]);
    // And the container: -e replaces the file's variable by name (after
    // the default PATH).
    let container = Container::from_args(&args).unwrap();
    assert_eq!(container.env[1..], ["A=flag", "B=file"]);
    assert_eq!(container.network, Network::Host);
}

#[test]
fn the_root_on_the_command_line_replaces_the_file_s_image_or_rootfs() {
    let file = Spec {
        rootfs: Some(PathBuf::from("/srv/tree")),
        ..Spec::default()
    };
    let args = file
        .clone()
        .under(&cli(|a| a.image = Some("/srv/img".into())));
    assert_eq!(
        (args.image, args.rootfs),
        (Some(PathBuf::from("/srv/img")), None)
    );
    let args = file.under(&cli(|_| {}));
    assert_eq!(args.rootfs, Some(PathBuf::from("/srv/tree")));
}

#[test]
fn a_spec_file_runs_through_the_same_checks_as_flags() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tree")).unwrap();
    let path = dir.path().join("web.yaml");
    std::fs::write(&path, "rootfs: tree\ncommand: [hostname]\nnetwork: none\n").unwrap();
    let args = apply(&cli(|a| a.file = Some(path.clone()))).unwrap();
    let container = Container::from_args(&args).unwrap();
    assert_eq!(
        container.root,
        Root::Dir(dir.path().join("tree").canonicalize().unwrap())
    );
    assert_eq!(container.command, ["hostname"]);
    assert_eq!(container.network, Network::None);
}

#[test]
fn the_help_s_example_is_a_spec_that_works() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("site")).unwrap();
    // The example's lines, without the image, which is not there.
    let example: String = HELP
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .filter(|l| !l.starts_with("image:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let spec = parse_in(dir.path(), &example).unwrap();
    assert_eq!(spec.env, ["GREETING=hello"]);
    assert_eq!(spec.ports, ["8080:80"]);
}

/// The chapter that shows the format, "A container as a file".
const CHAPTER: &str = include_str!("../../../../book/src/containers/README.md");

#[test]
fn the_book_s_example_and_its_errors_are_what_mini_run_says() {
    let section = CHAPTER
        .split("## A container as a file")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("the section");
    let mut blocks = section
        .split("```text\n")
        .skip(1)
        .map(|b| b.split("```").next().expect("a closed block").to_string());
    let (example, errors) = (blocks.next().unwrap(), blocks.next().unwrap());
    // The example, on a rootfs instead of the image, which is not there.
    let dir = tempfile::tempdir().unwrap();
    for name in ["tree", "site"] {
        std::fs::create_dir(dir.path().join(name)).unwrap();
    }
    let example = example.replace("image: ./alpine ", "rootfs: ./tree  ");
    parse_in(dir.path(), &example).unwrap();
    let line_9 = |with: &str| {
        let mut lines: Vec<&str> = example.lines().collect();
        lines[8] = with;
        lines.join("\n")
    };
    for broken in [
        line_9("memory: lots"),
        line_9("mem_limit: 64m"),
        format!("{example}  - 8080:81\n"),
    ] {
        let said = format!("mini-run: {}", parse_in(dir.path(), &broken).unwrap_err());
        assert!(
            errors.lines().any(|l| l == said),
            "the book does not show\n{said}\nbut\n{errors}"
        );
    }
}

#[test]
fn init_and_tty_are_switches_and_a_bare_volume_name_is_a_named_volume() {
    let spec = parse("init: true\ntty: false\nvolumes: [notes:/data]\n").unwrap();
    assert!(spec.init);
    assert!(!spec.tty);
    assert_eq!(spec.volumes, ["notes:/data"]);
    assert_eq!(
        error("memory: 64m\ninit: yes\n"),
        "web.yaml:2:7: init: \"yes\" is not a switch; give true or false"
    );
    // A switch on the command line stays on.
    let cli = RunArgs {
        init: true,
        ..RunArgs::default()
    };
    assert!(parse("init: false\n").unwrap().under(&cli).init);
}
