//! `--list`: the namespaces of processes side by side, like `lsns` turned
//! sideways, so that what differs stands out.

use steps::Palette;

use crate::run::Column;

/// The table, with a `*` after each id that differs from the first column's.
pub fn render(columns: &[Column], palette: Palette) -> String {
    let headers: Vec<String> = columns
        .iter()
        .map(|c| match c.pid {
            None => format!("{} (self)", c.command),
            Some(pid) => format!("{pid} ({})", c.command),
        })
        .collect();
    let cell = |column: &Column, row: usize| -> (String, bool) {
        let (_, id) = &column.ids[row];
        let base = &columns[0].ids[row].1;
        match id {
            Ok(id) => {
                let differs = base.as_ref().ok() != Some(id);
                (format!("{id}{}", if differs { " *" } else { "" }), differs)
            }
            Err(errno) => (format!("? ({errno:?})"), false),
        }
    };
    let rows = columns.first().map_or(0, |c| c.ids.len());
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            (0..rows)
                .map(|r| cell(c, r).0.len())
                .chain([headers[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();

    let mut out = format!("{:<10}", "NAMESPACE");
    for (header, width) in headers.iter().zip(&widths) {
        out.push_str(&format!("  {}", palette.bold(&format!("{header:<width$}"))));
    }
    let out_trimmed = out.trim_end().to_string();
    let mut out = out_trimmed + "\n";
    for row in 0..rows {
        let (namespace, _) = columns[0].ids[row];
        let mut line = format!("{:<10}", namespace.proc_name());
        for (column, width) in columns.iter().zip(&widths) {
            let (text, differs) = cell(column, row);
            let padded = format!("{text:<width$}");
            line.push_str("  ");
            line.push_str(&if differs {
                palette.warn(&padded)
            } else {
                padded
            });
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if columns.len() > 1 {
        out.push_str(
            "* differs from ns-unshare's own: that process has a namespace of its own there\n",
        );
    }
    out
}
