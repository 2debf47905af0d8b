//! The layers of a stack with what each holds, like `docker history`.
//!
//! `docker history IMAGE` lists an image's layers newest first with the
//! command that made each and its size. Here a stack is given as its layer
//! directories (topmost first, as in `lowerdir`), as a mount point (the
//! upper layer, then the lowers), or as an imported image.

use std::fmt::Write as _;
use std::path::PathBuf;

use steps::Palette;
use steps::units::human;

use crate::image::HistoryRow;
use crate::tree::Size;

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRow {
    pub path: PathBuf,
    /// `upper` for the writable layer of a mount, else empty.
    pub role: &'static str,
    pub size: Size,
}

/// Measures each layer; `upper` is the writable layer of a mount, if any.
pub fn layer_rows(
    upper: Option<PathBuf>,
    lowers: &[PathBuf],
) -> Result<Vec<LayerRow>, steps::Error> {
    let mut rows = Vec::new();
    let layers = upper
        .into_iter()
        .map(|u| (u, "upper"))
        .chain(lowers.iter().map(|l| (l.clone(), "")));
    for (path, role) in layers {
        let size = crate::tree::size(&path).map_err(|e| {
            steps::Error::setup(format!("cannot read layer {}: {e}", path.display()))
                .hint("a layer must be a directory you can read")
        })?;
        rows.push(LayerRow { path, role, size });
    }
    Ok(rows)
}

/// The table: a layer per line, topmost first.
pub fn render_layers(rows: &[LayerRow], palette: Palette) -> String {
    let width = rows
        .iter()
        .map(|r| label(r).len())
        .max()
        .unwrap_or(0)
        .max("LAYER".len());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}",
        palette.bold(&format!(
            "{:<width$}  {:>7}  {:>6}  {:>7}  {:>6}",
            "LAYER", "SIZE", "FILES", "DELETES", "OPAQUE"
        ))
    );
    for row in rows {
        let _ = writeln!(
            out,
            "{:<width$}  {:>7}  {:>6}  {:>7}  {:>6}",
            label(row),
            human(row.size.bytes),
            row.size.files,
            row.size.whiteouts,
            row.size.opaque_dirs
        );
    }
    out
}

/// An imported image's table, newest step first, like `docker history`;
/// without `no_trunc`, CREATED BY is cut at 45 characters as Docker cuts it.
pub fn render_image(rows: &[HistoryRow], no_trunc: bool, palette: Palette) -> String {
    let created_by = |row: &HistoryRow| {
        let text = row.created_by.replace('\t', " ");
        if no_trunc || text.chars().count() <= 45 {
            text
        } else {
            format!("{}…", text.chars().take(44).collect::<String>())
        }
    };
    let width = rows
        .iter()
        .map(|r| created_by(r).chars().count())
        .max()
        .unwrap_or(0)
        .max("CREATED BY".len());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}",
        palette.bold(&format!(
            "{:<19}  {:<20}  {:<width$}  {:>7}",
            "LAYER", "CREATED", "CREATED BY", "SIZE"
        ))
    );
    for row in rows {
        let by = created_by(row);
        let pad = width - by.chars().count();
        let _ = writeln!(
            out,
            "{:<19}  {:<20}  {by}{:pad$}  {:>7}",
            row.layer.as_deref().unwrap_or("-"),
            row.created
                .as_deref()
                .map_or("-", |c| c.get(..19).unwrap_or(c)),
            "",
            row.size.map_or("-".to_string(), human)
        );
    }
    out
}

fn label(row: &LayerRow) -> String {
    if row.role.is_empty() {
        row.path.display().to_string()
    } else {
        format!("{} ({})", row.path.display(), row.role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_measured_topmost_first() {
        let dir = tempfile::tempdir().unwrap();
        let upper = dir.path().join("upper");
        let base = dir.path().join("base");
        std::fs::create_dir_all(&upper).unwrap();
        std::fs::create_dir_all(base.join("etc")).unwrap();
        std::fs::write(base.join("etc/motd"), vec![b'x'; 2048]).unwrap();
        let rows = layer_rows(Some(upper.clone()), std::slice::from_ref(&base)).unwrap();
        let text = render_layers(&rows, Palette::plain());
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("LAYER"), "{text}");
        assert!(
            lines[1].starts_with(&format!("{} (upper)", upper.display())),
            "{text}"
        );
        assert!(lines[2].contains("2K"), "{text}");
    }
}
