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

/// kubectl's tab writer while it watches (cli-runtime's GetNewTabWriter:
/// padding 3, minimum cell width 6, and `RememberWidths`): each batch of
/// rows is written as soon as it comes, every column as wide as the widest
/// cell it has had in any batch so far, so later rows line up with the
/// first table as long as they fit, and widen the columns when they do not.
#[derive(Debug, Default)]
pub struct Remembered {
    widths: Vec<usize>,
}

impl Remembered {
    /// Write `rows` (a batch: the first table, or one changed row).
    pub fn write(&mut self, out: &mut impl Write, rows: &[Vec<String>]) -> std::io::Result<()> {
        for row in rows {
            // The last cell of a line ends no column: it does not count.
            for (c, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
                let w = (cell.chars().count() + 3).max(6);
                if c >= self.widths.len() {
                    self.widths.resize(c + 1, 0);
                }
                self.widths[c] = self.widths[c].max(w);
            }
        }
        for row in rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<w$}", w = self.widths[c]));
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(row: &[&str]) -> Vec<String> {
        row.iter().map(|s| s.to_string()).collect()
    }

    /// kubectl get pods -w: the later rows keep the first table's columns,
    /// and a wider cell widens its column from then on.
    #[test]
    fn watched_rows_remember_the_widths_of_the_table() {
        let mut w = Remembered::default();
        let mut out = Vec::new();
        w.write(
            &mut out,
            &[
                cells(&["NAME", "READY", "STATUS", "RESTARTS", "AGE"]),
                cells(&["web", "0/1", "Pending", "0", "0s"]),
            ],
        )
        .unwrap();
        w.write(
            &mut out,
            &[cells(&["web", "0/1", "ContainerCreating", "0", "0s"])],
        )
        .unwrap();
        w.write(&mut out, &[cells(&["web", "1/1", "Running", "0", "2s"])])
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "NAME   READY   STATUS    RESTARTS   AGE\n\
             web    0/1     Pending   0          0s\n\
             web    0/1     ContainerCreating   0          0s\n\
             web    1/1     Running             0          2s\n"
        );
    }

    /// Go's tabwriter pads every cell to at least 6 (text and padding).
    #[test]
    fn a_column_of_short_cells_is_six_wide() {
        let mut w = Remembered::default();
        let mut out = Vec::new();
        w.write(&mut out, &[cells(&["a", "b", "c"])]).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "a     b     c\n");
    }
}
