//! Tables as `docker ps` and `docker stats` print them: columns as wide
//! as their widest cell, three spaces apart, the header in bold.

use crate::Palette;

/// The rows as a table, the first row the header; no trailing spaces.
pub fn columns<const N: usize>(rows: &[[String; N]], p: Palette) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for (n, row) in rows.iter().enumerate() {
        let line = row
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("   ");
        let line = line.trim_end();
        text.push_str(&if n == 0 {
            p.bold(line)
        } else {
            line.to_string()
        });
        text.push('\n');
    }
    text
}
