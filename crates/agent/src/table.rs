//! Text tables as kubectl and docker print them: columns padded to their
//! widest cell, three spaces apart (`get`'s printer; `describe` pads its
//! events table with two), the last column unpadded.

use std::io::Write;

/// Columns padded to the widest cell, three spaces apart, as docker prints them
/// (and kubectl: its tab writer pads the same way).
pub fn write(out: &mut impl Write, rows: &[Vec<String>]) -> std::io::Result<()> {
    write_spaced(out, rows, 3)
}

/// [`write`] with `gap` spaces between columns (kubectl describe's tab writer
/// pads with 2).
pub fn write_spaced(out: &mut impl Write, rows: &[Vec<String>], gap: usize) -> std::io::Result<()> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}{:gap$}", "", w = widths[c]));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}
