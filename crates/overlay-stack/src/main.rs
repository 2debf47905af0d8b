//! `overlay-stack`: the command line over the library. See
//! `overlay-stack --help`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use overlay_stack::cli::{self, Cli, Command};
use overlay_stack::{commit, diff, history, image, interrupt, mounts, paths, plan, rootfs, tree};
use steps::units::{human, plural};
use steps::{Error, Narrator};

fn main() -> ExitCode {
    steps::sys::restore_sigpipe();
    let cli: Cli = steps::cli::parse("overlay-stack");
    let narrator = cli.steps.narrator("overlay-stack");
    let code = match go(&cli, &narrator) {
        Ok(()) => ExitCode::SUCCESS,
        // One line, whatever a path or a value in it holds.
        Err(error) => ExitCode::from(narrator.report(&Error::with_code(
            paths::one_line(&error.to_string()),
            error.code(),
        ))),
    };
    // A Ctrl-C that stopped a plan, now undone, ends overlay-stack as the
    // shell expects of a program it interrupted: by the signal.
    match interrupt::stopping_signal() {
        Some(signal) => steps::process::end_like(steps::process::Exit::Signal(signal)),
        None => code,
    }
}

/// Prints the plan and says so when the narrator only plans; else holds
/// Ctrl-C and the like until the step under way is done, for the executor
/// to undo the plan instead of leaving half of it.
fn dry_run<S: steps::Step>(narrator: &Narrator, plan: &steps::Plan<S>) -> Result<bool, Error> {
    if narrator.is_dry_run() {
        let _ = narrator.print_plan(plan, &mut std::io::stdout().lock());
        return Ok(true);
    }
    interrupt::hold()?;
    Ok(false)
}

fn go(cli: &Cli, narrator: &Narrator) -> Result<(), Error> {
    let out = cli.steps.stdout_palette();
    match &cli.command {
        Command::Mount { .. } => {
            let mut stack = cli.command.stack().expect("a mount has a stack");
            if let Command::Mount {
                image: Some(dir), ..
            } = &cli.command
            {
                paths::check_layer("--image", dir)?;
                if !dir.is_dir() {
                    return Err(Error::usage(format!(
                        "--image {}: no such directory; give a directory made by \
                         overlay-stack import",
                        paths::shown(dir)
                    )));
                }
                let image = image::Image::load(dir).map_err(|e| e.context("--image"))?;
                stack.lowers.extend(image.lowers(dir));
            }
            let (stack, make) = stack.check()?;
            let plan = plan::mount_plan(&stack, &make);
            if !dry_run(narrator, &plan)? {
                plan::execute(&plan, Some(&stack), narrator)?;
            }
        }
        Command::Umount { target } => {
            let plan = plan::umount_plan(target)?;
            if !dry_run(narrator, &plan)? {
                plan::execute(&plan, None, narrator)?;
            }
        }
        Command::Diff { upper, lower, long } => {
            let (upper, lowers) = diff_subject(upper, &cli::lowers(lower))?;
            let entries = diff::diff(&upper, &lowers)
                .map_err(|e| Error::setup(format!("cannot read {}: {e}", upper.display())))?;
            print!("{}", diff::render(&entries, *long, out));
        }
        Command::History { layers, no_trunc } => {
            if let [one] = layers.as_slice()
                && one.join(image::record::RECORD).exists()
            {
                let image = image::Image::load(one)?;
                print!(
                    "{}",
                    history::render_image(&image.history(), *no_trunc, out)
                );
                return Ok(());
            }
            let rows = match layers.as_slice() {
                [one] if mounts::is_mount_point(one) => {
                    let mount = mounts::find(one).ok_or_else(|| {
                        Error::usage(format!(
                            "{}: a mount point, but not an overlay",
                            one.display()
                        ))
                    })?;
                    history::layer_rows(mount.upper.clone(), &mount.resolved_lowers())?
                }
                _ => {
                    for layer in layers {
                        check_layer_dir(layer)?;
                    }
                    history::layer_rows(None, layers)?
                }
            };
            print!("{}", history::render_layers(&rows, out));
        }
        Command::Commit { upper, layer } => {
            let plan = commit::plan(upper, layer)?;
            if !dry_run(narrator, &plan)? {
                commit::execute(&plan, narrator)?;
                let size = tree::size(layer).unwrap_or_default();
                println!(
                    "committed {} as the layer {}: {}, {}, {} deleted",
                    upper.display(),
                    layer.display(),
                    plural(size.files, "file", "files"),
                    human(size.bytes),
                    size.whiteouts
                );
            }
        }
        Command::Rootfs { dir, from_host } => {
            let source = rootfs::Source::detect(*from_host)?;
            let dir = dir.clone().unwrap_or_else(rootfs::default_dir);
            let plan = rootfs::plan(&dir, &source)?;
            if !dry_run(narrator, &plan)? {
                match rootfs::build(&plan, narrator)? {
                    rootfs::Built::Made { dir, files } => println!(
                        "built a {} rootfs in {} ({files} files)",
                        source.kind(),
                        dir.display()
                    ),
                    rootfs::Built::UpToDate { dir } => {
                        println!("{} is up to date", dir.display())
                    }
                }
            }
        }
        Command::Import {
            image: source,
            dir,
            reference,
        } => {
            let options = image::ImportOptions {
                reference: reference.clone(),
            };
            let plan = image::plan(source, dir, &options)?;
            if !dry_run(narrator, &plan)? {
                let image = image::execute(&plan, narrator)?;
                if image.dropped_attributes > 0 {
                    eprintln!(
                        "overlay-stack: warning: {} dropped: the filesystem of {} cannot keep \
                         them (tmpfs keeps user.* attributes only from Linux 6.6)",
                        plural(
                            image.dropped_attributes,
                            "extended attribute",
                            "extended attributes"
                        ),
                        dir.display()
                    );
                }
                println!(
                    "imported {} from {} into {}",
                    plural(image.layers.len() as u64, "layer", "layers"),
                    source.display(),
                    dir.display()
                );
            }
        }
    }
    Ok(())
}

/// A layer named on the command line of `history`: a directory, and
/// not the whole system.
fn check_layer_dir(layer: &Path) -> Result<(), Error> {
    paths::check("LAYER", layer)?;
    let shown = paths::shown(layer);
    if !layer.is_dir() {
        return Err(Error::usage(format!(
            "LAYER {shown}: no such directory; give layer directories (topmost first), a \
             mount point or an imported image"
        )));
    }
    if paths::is_root(layer) {
        return Err(Error::usage(format!(
            "LAYER {shown}: the root directory, not a layer; give layer directories \
             (topmost first), a mount point or an imported image"
        )));
    }
    Ok(())
}

/// The upper layer to read and the lowers to compare it with: from the
/// mount at `given`, from a mount whose upper is `given`, or as given
/// with `--lower`.
fn diff_subject(given: &Path, lowers: &[PathBuf]) -> Result<(PathBuf, Vec<PathBuf>), Error> {
    paths::check("UPPER", given)?;
    if !given.is_dir() {
        return Err(Error::usage(format!(
            "UPPER {}: no such directory; give a mount point or an upper layer",
            paths::shown(given)
        )));
    }
    for lower in lowers {
        paths::check("--lower", lower)?;
        if !lower.is_dir() {
            return Err(Error::usage(format!(
                "--lower {}: no such directory; give the stack's lower layers, topmost first",
                paths::shown(lower)
            )));
        }
    }
    let canonical = std::fs::canonicalize(given).unwrap_or_else(|_| given.to_path_buf());
    let all = mounts::overlay_mounts().unwrap_or_default();
    let mounted = all
        .iter()
        .rev()
        .find(|m| m.target == canonical || m.upper.as_deref() == Some(canonical.as_path()));
    match mounted {
        Some(mount) if lowers.is_empty() => {
            let upper = mount.upper.clone().ok_or_else(|| {
                Error::usage(format!(
                    "{}: a read-only stack has no upper layer, so nothing changed",
                    given.display()
                ))
            })?;
            Ok((upper, mount.resolved_lowers()))
        }
        Some(_) => Ok((given.to_path_buf(), lowers.to_vec())),
        // Not mounted: what changed is known only against the lowers, and
        // the root directory is never an upper layer.
        None if lowers.is_empty() => Err(Error::usage(format!(
            "UPPER {}: not a mounted stack nor the upper layer of one; give the layers it \
             goes on with --lower, topmost first",
            paths::shown(given)
        ))),
        None if paths::is_root(given) => Err(Error::usage(format!(
            "UPPER {}: the root directory, not an upper layer; give the --upper of a stack",
            paths::shown(given)
        ))),
        None => Ok((given.to_path_buf(), lowers.to_vec())),
    }
}
