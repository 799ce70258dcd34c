//! How the picture looks: fonts, the colours of stages, sources and edges, and
//! the timing scale with its legend. Colours are light fills with a stronger
//! border of the same hue, so text stays dark and readable on every fill.

use super::text::{duration, html};

/// Text in general; a list so that every renderer and browser finds one.
pub const FONT: &str = "Helvetica,Arial,sans-serif";
/// Dockerfile instructions.
pub const MONO: &str = "DejaVu Sans Mono,Menlo,Consolas,monospace";

/// Secondary text: line numbers, stage bases, notes.
pub const MUTED: &str = "#6b7280";
pub const TEXT: &str = "#111827";
/// Base images and the edges that come from them.
pub const IMAGE_FILL: &str = "#f3f4f6";
pub const IMAGE_BORDER: &str = "#4b5563";
/// The build context and the edges of the COPYs that read it.
pub const CONTEXT_FILL: &str = "#fef3c7";
pub const CONTEXT_BORDER: &str = "#b45309";

/// A stage's cluster fill and the border its steps and edges share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageColours {
    pub fill: &'static str,
    pub border: &'static str,
}

const STAGES: [StageColours; 6] = [
    StageColours { fill: "#eff6ff", border: "#3b82f6" },
    StageColours { fill: "#f0fdf4", border: "#16a34a" },
    StageColours { fill: "#faf5ff", border: "#9333ea" },
    StageColours { fill: "#fff1f2", border: "#e11d48" },
    StageColours { fill: "#f0fdfa", border: "#0d9488" },
    StageColours { fill: "#fff7ed", border: "#ea580c" },
];

/// The colours of the stage at `position` among the stages built (they repeat
/// after six, which only very large Dockerfiles reach).
pub fn stage_colours(position: usize) -> StageColours {
    STAGES[position % STAGES.len()]
}

/// The fill of steps the last build took from its cache.
pub const CACHED_FILL: &str = "#e5e7eb";

/// Five steps from pale yellow to dark red (ColorBrewer YlOrRd): the longer a
/// step ran, the hotter its colour.
const HEAT: [&str; 5] = ["#ffffcc", "#fed976", "#fd8d3c", "#e31a1c", "#800026"];

/// Maps the seconds a step ran to a colour, relative to the slowest step of the
/// build, so that every build shows where its own time went.
#[derive(Debug, Clone, Copy)]
pub struct TimingScale {
    slowest: f64,
}

impl TimingScale {
    pub fn new(slowest: f64) -> TimingScale {
        TimingScale { slowest: slowest.max(0.0) }
    }

    /// Which of the five equal parts of `0..=slowest` `seconds` falls in.
    pub fn bucket(&self, seconds: f64) -> usize {
        if self.slowest <= 0.0 {
            return 0;
        }
        ((seconds / self.slowest * HEAT.len() as f64) as usize).min(HEAT.len() - 1)
    }

    pub fn fill(&self, seconds: f64) -> &'static str {
        HEAT[self.bucket(seconds)]
    }

    /// Whether text on the fill for `seconds` must be light to be read.
    pub fn is_dark(&self, seconds: f64) -> bool {
        self.bucket(seconds) >= 3
    }

    /// The legend, one row of swatches for the title: a range of seconds per
    /// colour, then the marks for cached steps and steps the last build did not have.
    pub fn legend(&self) -> String {
        let mut cells = String::from("<TD ALIGN=\"LEFT\"><FONT POINT-SIZE=\"10\"><B>step time </B></FONT></TD>");
        let part = self.slowest / HEAT.len() as f64;
        for (i, colour) in HEAT.iter().enumerate() {
            let range = if self.slowest <= 0.0 {
                if i > 0 {
                    continue;
                }
                "ran".to_string()
            } else if i == 0 {
                format!("0 – {}", duration(part))
            } else {
                format!("{} – {}", duration(part * i as f64).trim_end_matches(" s"), duration(part * (i + 1) as f64))
            };
            cells.push_str(&swatch(colour, false, &range));
        }
        cells.push_str(&swatch(CACHED_FILL, false, "CACHED"));
        cells.push_str(&swatch("#ffffff", true, "not in the last build"));
        format!("<TABLE BORDER=\"0\" CELLBORDER=\"0\" CELLSPACING=\"2\" CELLPADDING=\"1\"><TR>{cells}</TR></TABLE>")
    }
}

/// A colour swatch and its meaning; `dashed` as steps the last build lacked are drawn.
fn swatch(colour: &str, dashed: bool, text: &str) -> String {
    let style = if dashed { " STYLE=\"dashed\"" } else { "" };
    format!(
        "<TD BGCOLOR=\"{colour}\" BORDER=\"1\"{style} COLOR=\"#9ca3af\" WIDTH=\"20\" HEIGHT=\"12\"></TD>\
         <TD ALIGN=\"LEFT\"><FONT POINT-SIZE=\"10\">{} </FONT></TD>",
        html(text)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_map_to_five_parts_of_the_slowest_step() {
        let scale = TimingScale::new(10.0);
        assert_eq!(scale.bucket(0.0), 0);
        assert_eq!(scale.bucket(1.9), 0);
        assert_eq!(scale.bucket(2.0), 1);
        assert_eq!(scale.bucket(7.9), 3);
        assert_eq!(scale.bucket(10.0), 4);
        assert_eq!(scale.bucket(99.0), 4);
        assert!(!scale.is_dark(5.0) && scale.is_dark(9.0));
        assert_eq!(TimingScale::new(0.0).bucket(0.0), 0);
    }

    #[test]
    fn the_legend_names_every_range_and_mark() {
        let legend = TimingScale::new(10.0).legend();
        for text in ["0 – 2.00 s", "8.00 – 10.0 s", "CACHED", "not in the last build", HEAT[4]] {
            assert!(legend.contains(text), "{text} missing from {legend}");
        }
        let all_instant = TimingScale::new(0.0).legend();
        assert_eq!(all_instant.matches("BGCOLOR").count(), 3, "{all_instant}");
    }

    #[test]
    fn stage_colours_cycle() {
        assert_ne!(stage_colours(0), stage_colours(1));
        assert_eq!(stage_colours(0), stage_colours(6));
    }
}
