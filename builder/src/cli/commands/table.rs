//! Tables laid out the way Docker's CLI lays them out (Go's `tabwriter` with
//! minimum width 10 and padding 3): every column but the last is as wide as
//! its widest cell plus three spaces, and at least ten characters.

const MIN_WIDTH: usize = 10;
const PADDING: usize = 3;

/// A table: a header row and data rows with the same number of cells.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.iter().map(|h| h.to_string()).collect()],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.rows[0].len());
        self.rows.push(cells);
    }

    /// The laid-out text, one line per row.
    pub fn render(&self) -> String {
        let columns = self.rows[0].len();
        // Widths count characters, as tabwriter counts runes ("…" is one).
        let widths: Vec<usize> = (0..columns.saturating_sub(1))
            .map(|c| {
                let widest = self
                    .rows
                    .iter()
                    .map(|r| r[c].chars().count())
                    .max()
                    .unwrap_or(0);
                (widest + PADDING).max(MIN_WIDTH)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            for (c, cell) in row.iter().enumerate() {
                out.push_str(cell);
                if let Some(width) = widths.get(c) {
                    let pad = width - cell.chars().count();
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push('\n');
        }
        out
    }
}

/// `s` cut to `max` characters, the last of them `…` (Docker's `Ellipsis`).
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut cut: String = s.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lays_out_like_docker_images() {
        let mut table = Table::new(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]);
        table.row(
            ["rl", "1", "16f1b2bc3ee4", "12 minutes ago", "1.99MB"]
                .map(String::from)
                .to_vec(),
        );
        table.row(
            ["<none>", "<none>", "699f8d0f3d0b", "26 minutes ago", "48B"]
                .map(String::from)
                .to_vec(),
        );
        assert_eq!(
            table.render(),
            "REPOSITORY   TAG       IMAGE ID       CREATED          SIZE\n\
             rl           1         16f1b2bc3ee4   12 minutes ago   1.99MB\n\
             <none>       <none>    699f8d0f3d0b   26 minutes ago   48B\n"
        );
    }

    #[test]
    fn an_empty_last_cell_leaves_the_padding_before_it() {
        let mut table = Table::new(&["SIZE", "COMMENT"]);
        table.row(vec!["0B".into(), String::new()]);
        assert_eq!(table.render(), "SIZE      COMMENT\n0B        \n");
    }

    #[test]
    fn ellipsis_counts_characters() {
        assert_eq!(ellipsis("short", 45), "short");
        let long = "RUN |1 SECRET_ARG=argvalue /bin/sh -c id > /tmp/id.txt # buildkit";
        let cut = ellipsis(long, 45);
        assert_eq!(cut, "RUN |1 SECRET_ARG=argvalue /bin/sh -c id > /…");
        assert_eq!(cut.chars().count(), 45);
    }
}
