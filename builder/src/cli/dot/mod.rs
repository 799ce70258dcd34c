//! The lowered build graph as a Graphviz DOT picture (`rbuild graph`).
//!
//! Each stage is a cluster (named, with its base) holding its steps top-down in
//! Dockerfile order, each step showing its first line and instruction text.
//! Base images and the build context are nodes of their own above the stages.
//! A step's parent filesystem is a solid edge; what a COPY/ADD reads (another
//! stage, an image or the context) is a dashed edge labelled with the copied
//! paths. With timings, steps are filled by how long the last build ran them,
//! cached steps are grey, and a legend explains the colours.

mod style;
pub mod text;

use std::collections::HashMap;
use std::fmt::Write as _;

use petgraph::visit::EdgeRef;
use rbuild_frontend::graph::{Base, BuildGraph, Edge, MountKind, Op, Source, StagePlan, Step, StepId};

use crate::engine::timings::{BuildTimings, StepTiming};
use style::{stage_colours, StageColours, TimingScale};
use text::{duration, html, quoted, shorten, wrap};

/// Instruction text wraps at this many characters…
const WRAP_WIDTH: usize = 46;
/// …over at most this many lines (the tooltip has the whole text).
const WRAP_LINES: usize = 4;
/// Edge labels (the copied paths) are cut at this length.
const EDGE_LABEL_MAX: usize = 26;

/// The DOT text of `graph`, titled `title` (the Dockerfile's name), with the
/// last build's `timings` drawn on it when given.
pub fn render(graph: &BuildGraph, title: &str, timings: Option<&BuildTimings>) -> String {
    Picture::new(graph, timings).render(title)
}

struct Picture<'a> {
    graph: &'a BuildGraph,
    timings: Option<&'a BuildTimings>,
    scale: TimingScale,
    /// Position in `graph.stages` of each Dockerfile stage index, for colours.
    positions: HashMap<usize, usize>,
}

/// What the last build says about a node.
enum Timing<'a> {
    /// No timings asked for.
    Off,
    Recorded(&'a StepTiming),
    /// Timings asked for, but the last build had no such step.
    Missing,
}

impl<'a> Picture<'a> {
    fn new(graph: &'a BuildGraph, timings: Option<&'a BuildTimings>) -> Picture<'a> {
        // The scale is set by the slowest step that is in this picture.
        let slowest = timings
            .map(|t| {
                graph
                    .graph
                    .node_weights()
                    .filter_map(|step| t.find(step))
                    .filter(|t| !t.cached)
                    .map(|t| t.seconds)
                    .fold(0.0, f64::max)
            })
            .unwrap_or(0.0);
        let positions = graph.stages.iter().enumerate().map(|(pos, s)| (s.index, pos)).collect();
        Picture { graph, timings, scale: TimingScale::new(slowest), positions }
    }

    fn render(&self, title: &str) -> String {
        let mut out = String::new();
        out.push_str("digraph build {\n");
        self.header(&mut out, title);
        for id in self.graph.graph.node_indices() {
            if self.graph.step(id).stage.is_none() && self.draws_source(id) {
                self.source_node(&mut out, id);
            }
        }
        for (position, stage) in self.graph.stages.iter().enumerate() {
            self.cluster(&mut out, position, stage);
        }
        for edge in self.graph.graph.edge_references() {
            self.edge(&mut out, edge.source(), edge.target(), *edge.weight());
        }
        out.push_str("}\n");
        out
    }

    fn header(&self, out: &mut String, title: &str) {
        let target = self.graph.target_stage();
        let mut subtitle = format!(
            "target: {} · {} stage{} built",
            stage_title(target),
            self.graph.stages.len(),
            if self.graph.stages.len() == 1 { "" } else { "s" }
        );
        // With timings, the legend is a row under the title, where it crowds no step.
        let mut legend = String::new();
        if let Some(timings) = self.timings {
            subtitle.push_str(&format!(" · {}", self.timing_summary(timings)));
            legend = format!("<TR><TD ALIGN=\"LEFT\">{}</TD></TR>", self.scale.legend());
        }
        let _ = writeln!(
            out,
            "  graph [rankdir=TB, fontname=\"{font}\", fontsize=12, fontcolor=\"{text}\", \
             bgcolor=\"white\", pad=0.3, nodesep=0.3, ranksep=0.4, labelloc=t, labeljust=l, \
             label=<<TABLE BORDER=\"0\" CELLSPACING=\"0\" CELLPADDING=\"2\">\
             <TR><TD ALIGN=\"LEFT\"><FONT POINT-SIZE=\"16\"><B>{title}</B></FONT></TD></TR>\
             <TR><TD ALIGN=\"LEFT\"><FONT POINT-SIZE=\"10\" COLOR=\"{muted}\">{subtitle}</FONT></TD></TR>\
             {legend}<TR><TD></TD></TR></TABLE>>];",
            font = style::FONT,
            text = style::TEXT,
            muted = style::MUTED,
            title = html(title),
            subtitle = html(&subtitle),
        );
        let _ = writeln!(
            out,
            "  node [shape=box, style=\"rounded,filled\", fillcolor=\"white\", fontname=\"{}\", fontsize=11, \
             fontcolor=\"{}\", penwidth=1.3, margin=\"0.12,0.06\"];",
            style::FONT,
            style::TEXT
        );
        let _ = writeln!(
            out,
            "  edge [arrowsize=0.7, penwidth=1.3, fontname=\"{}\", fontsize=9];",
            style::FONT
        );
    }

    fn timing_summary(&self, timings: &BuildTimings) -> String {
        let recorded: Vec<&StepTiming> = self.graph.graph.node_weights().filter_map(|s| timings.find(s)).collect();
        let ran: Vec<&&StepTiming> = recorded.iter().filter(|t| !t.cached).collect();
        let total = total(&ran.iter().map(|t| t.seconds).collect::<Vec<_>>());
        format!(
            "last build {}: {} step{} ran for {} in total, {} cached",
            timings.finished.replace('T', " ").replace('Z', " UTC"),
            ran.len(),
            if ran.len() == 1 { "" } else { "s" },
            duration(total),
            recorded.len() - ran.len()
        )
    }

    /// Scratch is no picture of its own: a stage says `FROM scratch` in its
    /// title. It is drawn only when a COPY --from reads it.
    fn draws_source(&self, id: StepId) -> bool {
        match &self.graph.step(id).op {
            Op::Source(Source::Scratch) => self
                .graph
                .graph
                .edges(id)
                .any(|e| matches!(e.weight(), Edge::CopyFrom | Edge::MountFrom(_))),
            _ => true,
        }
    }

    fn source_node(&self, out: &mut String, id: StepId) {
        let step = self.graph.step(id);
        let (kind, name, shape, fill, border) = match &step.op {
            Op::Source(Source::Image(reference)) => {
                ("base image", reference.as_str(), "box3d", style::IMAGE_FILL, style::IMAGE_BORDER)
            }
            Op::Source(Source::Context) => ("", "build context", "folder", style::CONTEXT_FILL, style::CONTEXT_BORDER),
            Op::Source(Source::NamedContext(name)) => {
                ("build context", name.as_str(), "folder", style::CONTEXT_FILL, style::CONTEXT_BORDER)
            }
            _ => ("", "scratch", "box", style::IMAGE_FILL, style::IMAGE_BORDER),
        };
        let mut label = String::new();
        if !kind.is_empty() {
            let _ = write!(label, "<FONT POINT-SIZE=\"9\" COLOR=\"{}\">{kind}</FONT><BR/>", style::MUTED);
        }
        let _ = write!(label, "<B>{}</B>", html(name));
        // Sources the build did not time keep their own look.
        let timing = match self.timing(step) {
            Timing::Recorded(t) => Some(t),
            _ => None,
        };
        if let Some(t) = timing {
            let _ = write!(label, "<BR/><FONT POINT-SIZE=\"9\">{}</FONT>", html(&timing_text(t)));
        }
        let _ = writeln!(
            out,
            "  n{} [shape={shape}, style=filled, fillcolor=\"{fill}\", color=\"{border}\", label=<{label}>, tooltip={}];",
            id.index(),
            quoted(&step.display)
        );
    }

    fn cluster(&self, out: &mut String, position: usize, stage: &StagePlan) {
        let colours = stage_colours(position);
        let is_target = position == self.graph.target;
        let base = match &stage.base {
            Base::Scratch => "FROM scratch".to_string(),
            Base::Image(reference) => format!("FROM {reference}"),
            Base::Stage(index) => format!("FROM {}", self.stage_name(*index)),
            Base::Context(name) => format!("FROM {name} (build context)"),
        };
        let _ = writeln!(out, "  subgraph cluster_stage_{} {{", stage.index);
        let _ = writeln!(
            out,
            "    style=\"rounded,filled\"; fillcolor=\"{}\"; color=\"{}\"; penwidth={}; margin=14;",
            colours.fill,
            colours.border,
            if is_target { "2.5" } else { "1.2" }
        );
        let mut notes = String::new();
        if is_target {
            notes.push_str(" (target)");
        }
        if let Some(seconds) = self.stage_seconds(stage) {
            notes.push_str(&format!(" · ran {}", duration(seconds)));
        }
        // Graphviz rejects an empty <FONT></FONT>.
        if !notes.is_empty() {
            notes = format!("<FONT COLOR=\"{}\">{}</FONT>", style::MUTED, html(&notes));
        }
        let _ = writeln!(
            out,
            "    label=<<B>{}</B>{notes}<BR ALIGN=\"LEFT\"/><FONT FACE=\"{}\" POINT-SIZE=\"9\" COLOR=\"{}\">line {} · {}</FONT><BR ALIGN=\"LEFT\"/>>;",
            html(&stage_title(stage)),
            style::MONO,
            style::MUTED,
            stage.location.start_line,
            html(&base)
        );
        if stage.steps.is_empty() {
            // Graphviz drops empty clusters; a stage with only FROM still shows.
            let _ = writeln!(
                out,
                "    empty_{} [shape=plaintext, style=\"\", label=<<I>no instructions</I>>, fontcolor=\"{}\"];",
                stage.index,
                style::MUTED
            );
        }
        for id in &stage.steps {
            self.step_node(out, *id, colours);
        }
        out.push_str("  }\n");
    }

    /// The seconds the last build ran the stage's steps for (one after the
    /// other; parallel stages overlap), when timings are drawn.
    fn stage_seconds(&self, stage: &StagePlan) -> Option<f64> {
        let timings = self.timings?;
        let ran: Vec<f64> = stage
            .steps
            .iter()
            .filter_map(|id| timings.find(self.graph.step(*id)))
            .filter(|t| !t.cached)
            .map(|t| t.seconds)
            .collect();
        (!ran.is_empty()).then(|| total(&ran))
    }

    fn stage_name(&self, index: usize) -> String {
        self.graph
            .stages
            .iter()
            .find(|s| s.index == index)
            .and_then(|s| s.name.clone())
            .unwrap_or_else(|| index.to_string())
    }

    fn step_node(&self, out: &mut String, id: StepId, colours: StageColours) {
        let step = self.graph.step(id);
        let config_only = matches!(step.op, Op::Config);
        let timing = self.timing(step);
        let (fill, dark, dashed) = match timing {
            Timing::Off => ("#ffffff", false, false),
            Timing::Recorded(t) if t.cached => (style::CACHED_FILL, false, false),
            Timing::Recorded(t) => (self.scale.fill(t.seconds), self.scale.is_dark(t.seconds), false),
            Timing::Missing => ("#ffffff", false, true),
        };
        let (text_colour, muted) = match (dark, config_only) {
            (true, _) => ("#ffffff", "#f3f4f6"),
            // Config-only steps change no files: quieter than the ones that do.
            (false, true) => (style::MUTED, "#9ca3af"),
            (false, false) => (style::TEXT, style::MUTED),
        };
        let line = step.location.map(|l| l.start_line.to_string()).unwrap_or_default();
        let mut lines = wrap(&step.display, WRAP_WIDTH, WRAP_LINES).into_iter();
        let first = lines.next().unwrap_or_default();
        // The keyword in bold, the rest as written.
        let (keyword, rest) = first.split_once(' ').unwrap_or((first.as_str(), ""));
        let mut code = format!("<B>{}</B> {}", html(keyword), html(rest));
        for more in lines {
            let _ = write!(code, "<BR/>{}", html(&more));
        }
        let mut label = format!(
            "<TABLE BORDER=\"0\" CELLBORDER=\"0\" CELLSPACING=\"0\" CELLPADDING=\"1\">\
             <TR><TD ALIGN=\"RIGHT\" VALIGN=\"TOP\"><FONT POINT-SIZE=\"9\" COLOR=\"{muted}\">{line}</FONT></TD>\
             <TD ALIGN=\"LEFT\" BALIGN=\"LEFT\"><FONT FACE=\"{mono}\" POINT-SIZE=\"10\" COLOR=\"{text_colour}\">{code}</FONT></TD></TR>",
            mono = style::MONO,
        );
        let note = match timing {
            Timing::Off => None,
            Timing::Recorded(t) => Some(timing_text(t)),
            Timing::Missing => Some("not in the last build".to_string()),
        };
        if let Some(note) = note {
            let _ = write!(
                label,
                "<TR><TD></TD><TD ALIGN=\"LEFT\"><FONT POINT-SIZE=\"9\" COLOR=\"{text_colour}\"><B>{}</B></FONT></TD></TR>",
                html(&note)
            );
        }
        label.push_str("</TABLE>");
        let style = if dashed { "rounded,filled,dashed" } else { "rounded,filled" };
        let _ = writeln!(
            out,
            "    n{} [style=\"{style}\", fillcolor=\"{fill}\", color=\"{}\", penwidth={}, label=<{label}>, tooltip={}];",
            id.index(),
            colours.border,
            if config_only { "0.8" } else { "1.3" },
            quoted(&step.display)
        );
    }

    fn timing(&self, step: &Step) -> Timing<'a> {
        match self.timings {
            None => Timing::Off,
            Some(timings) => timings.find(step).map_or(Timing::Missing, Timing::Recorded),
        }
    }

    fn edge(&self, out: &mut String, from: StepId, to: StepId, kind: Edge) {
        let source = self.graph.step(from);
        if matches!(source.op, Op::Source(Source::Scratch)) && kind == Edge::Parent {
            return;
        }
        let colour = match &source.op {
            Op::Source(Source::Context | Source::NamedContext(_)) => style::CONTEXT_BORDER,
            Op::Source(_) => style::IMAGE_BORDER,
            _ => self.stage_border(source.stage),
        };
        let from_node = format!("n{}", from.index());
        match kind {
            Edge::Parent => {
                // Within a stage the chain takes the stage's colour.
                let colour = if source.stage.is_some() { self.stage_border(self.graph.step(to).stage) } else { colour };
                let _ = writeln!(out, "  {from_node} -> n{} [color=\"{colour}\", weight=4];", to.index());
            }
            Edge::CopyFrom | Edge::MountFrom(_) => {
                let label = match (&self.graph.step(to).op, kind) {
                    (Op::Copy(copy), _) => copy.sources.join(" "),
                    (Op::Run(run), Edge::MountFrom(index)) => match &run.mounts[index].kind {
                        MountKind::Bind { source, .. } => format!("--mount {source} → {}", run.mounts[index].target),
                        _ => format!("--mount → {}", run.mounts[index].target),
                    },
                    _ => String::new(),
                };
                // A COPY of heredocs only is wired to the context but reads nothing from it.
                if label.is_empty() && matches!(source.op, Op::Source(Source::Context)) {
                    return;
                }
                let label = shorten(&label, EDGE_LABEL_MAX);
                // weight=0: copies bend, the stages' chains stay straight.
                let _ = writeln!(
                    out,
                    "  {from_node} -> n{} [style=dashed, color=\"{colour}\", fontcolor=\"{colour}\", weight=0, label=<{}>];",
                    to.index(),
                    html(&label)
                );
            }
        }
    }

    fn stage_border(&self, stage: Option<usize>) -> &'static str {
        stage
            .and_then(|index| self.positions.get(&index))
            .map(|position| stage_colours(*position).border)
            .unwrap_or(style::IMAGE_BORDER)
    }
}

/// `stage 1 · runtime`, or `stage 1` for an unnamed stage.
fn stage_title(stage: &StagePlan) -> String {
    match &stage.name {
        Some(name) => format!("stage {} · {name}", stage.index),
        None => format!("stage {}", stage.index),
    }
}

/// The sum of `seconds`; 0 (not `Sum`'s -0) when empty.
fn total(seconds: &[f64]) -> f64 {
    seconds.iter().fold(0.0, |sum, s| sum + s)
}

fn timing_text(timing: &StepTiming) -> String {
    if timing.cached {
        "CACHED".to_string()
    } else {
        format!("ran {}", duration(timing.seconds))
    }
}

#[cfg(test)]
mod tests;
