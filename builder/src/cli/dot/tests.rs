use rbuild_frontend::graph::{BuildGraph, ImageMeta, Platform};
use rbuild_frontend::lower::{ImageResolver, LowerOptions};

use super::render;
use crate::engine::plan::plan_build;
use crate::engine::timings::{BuildTimings, StepTiming};

struct AnyImage;
impl ImageResolver for AnyImage {
    fn resolve(&self, _: &str, _: &Platform) -> Result<ImageMeta, String> {
        Ok(ImageMeta::default())
    }
}

fn lowered(text: &str, target: Option<&str>) -> BuildGraph {
    let options = LowerOptions { build_args: Default::default(), target: target.map(Into::into), platform: Platform::host() };
    plan_build("Dockerfile", text, &options, &AnyImage, &mut |_| {}).unwrap().graph.unwrap()
}

const FOUR_STAGES: &str = "\
FROM alpine:3.19 AS deps
RUN echo \"<deps> & 'more'\" > /deps.txt
FROM scratch AS assets
COPY site/ /srv/
COPY <<EOF /srv/inline.txt
inline
EOF
FROM deps AS build
COPY --from=assets /srv/ /src/
RUN make
FROM scratch
COPY --from=build /deps.txt /out/
COPY --from=busybox:1 /bin/busybox /bin/
ENV A=b
";

/// The line of `dot` that declares node `id` (`  n3 [...]`).
fn node_line<'a>(dot: &'a str, id: &str) -> &'a str {
    dot.lines()
        .find(|l| l.trim_start().starts_with(&format!("{id} [")))
        .unwrap_or_else(|| panic!("no node {id} in\n{dot}"))
}

/// The node id of the step whose tooltip is `display`.
fn node_of(dot: &str, display: &str) -> String {
    let tooltip = format!("tooltip={}", super::text::quoted(display));
    let line = dot
        .lines()
        .find(|l| l.contains(&tooltip))
        .unwrap_or_else(|| panic!("no node with tooltip {tooltip} in\n{dot}"));
    line.trim_start().split(' ').next().unwrap().to_string()
}

fn edge_line<'a>(dot: &'a str, from: &str, to: &str) -> Option<&'a str> {
    dot.lines().find(|l| l.trim_start().starts_with(&format!("{from} -> {to} ")))
}

#[test]
fn stages_are_clusters_labelled_with_name_line_and_base() {
    let dot = render(&lowered(FOUR_STAGES, None), "Dockerfile", None);
    assert!(dot.starts_with("digraph build {\n") && dot.ends_with("}\n"), "{dot}");
    for (index, title, base) in [
        (0, "stage 0 · deps", "line 1 · FROM alpine:3.19"),
        (1, "stage 1 · assets", "line 3 · FROM scratch"),
        (2, "stage 2 · build", "line 8 · FROM deps"),
        (3, "stage 3", "line 11 · FROM scratch"),
    ] {
        let start = dot.find(&format!("subgraph cluster_stage_{index} {{")).unwrap_or_else(|| panic!("stage {index}: {dot}"));
        let cluster = &dot[start..start + dot[start..].find("\n  }\n").unwrap()];
        assert!(cluster.contains(&format!("<B>{title}</B>")), "{cluster}");
        assert!(cluster.contains(base), "{cluster}");
    }
    // The last stage is the target and says so.
    assert!(dot.contains("<B>stage 3</B><FONT COLOR=\"#6b7280\"> (target)</FONT>"), "{dot}");
    assert!(dot.contains("target: stage 3 · 4 stages built"), "{dot}");
}

#[test]
fn instruction_text_is_escaped_in_labels_and_tooltips() {
    let dot = render(&lowered(FOUR_STAGES, None), "Dockerfile <dev>", None);
    let run = node_of(&dot, "RUN echo \"<deps> & 'more'\" > /deps.txt");
    let line = node_line(&dot, &run);
    assert!(line.contains("<B>RUN</B> echo &quot;&lt;deps&gt; &amp; &#39;more&#39;&quot; &gt; /deps.txt"), "{line}");
    // The Dockerfile line number is in the label.
    assert!(line.contains(">2</FONT>"), "{line}");
    assert!(dot.contains("<B>Dockerfile &lt;dev&gt;</B>"), "{dot}");
    // Nothing unescaped slipped into any label: every `<` opens a known tag
    // (tooltips are quoted strings, where `<` is plain text).
    for line in dot.lines().map(|l| l.split(", tooltip=").next().unwrap()) {
        for (i, _) in line.match_indices('<') {
            if line[..i].ends_with('=') {
                continue; // `label=<…>` opens an HTML-like label
            }
            let rest = &line[i + 1..];
            let known = ["<", "B>", "/B>", "BR", "FONT", "/FONT", "TABLE", "/TABLE", "TR", "/TR", "TD", "/TD", "I>", "/I>"];
            assert!(known.iter().any(|k| rest.starts_with(k)), "stray < in {line}");
        }
    }
}

#[test]
fn parent_edges_are_solid_copies_dashed_and_labelled_with_what_they_copy() {
    let dot = render(&lowered(FOUR_STAGES, None), "Dockerfile", None);
    let deps_run = node_of(&dot, "RUN echo \"<deps> & 'more'\" > /deps.txt");
    let copy_assets = node_of(&dot, "COPY --from=assets /srv/ /src/");
    let make = node_of(&dot, "RUN make");
    let site = node_of(&dot, "COPY site/ /srv/");
    let inline = node_of(&dot, "COPY <<EOF /srv/inline.txt");
    let copy_build = node_of(&dot, "COPY --from=build /deps.txt /out/");
    let copy_image = node_of(&dot, "COPY --from=busybox:1 /bin/busybox /bin/");

    // FROM deps: the stage builds on deps' last step.
    let parent = edge_line(&dot, &deps_run, &copy_assets).expect("parent edge from stage deps");
    assert!(!parent.contains("dashed"), "{parent}");
    assert!(!edge_line(&dot, &copy_assets, &make).unwrap().contains("dashed"));
    // COPY --from: dashed, labelled with the copied paths.
    let from_assets = edge_line(&dot, &inline, &copy_assets).expect("copy edge from assets' last step");
    assert!(from_assets.contains("style=dashed") && from_assets.contains("label=</srv/>"), "{from_assets}");
    let from_build = edge_line(&dot, &make, &copy_build).expect("copy edge from build");
    assert!(from_build.contains("style=dashed") && from_build.contains("label=</deps.txt>"), "{from_build}");
    assert_eq!(dot.matches("style=dashed").count(), 4, "three --from copies and one context copy:\n{dot}");

    // Base images are nodes: the FROM one with a solid edge, the --from one dashed.
    let alpine = node_of(&dot, "FROM alpine:3.19");
    assert!(node_line(&dot, &alpine).contains("<B>alpine:3.19</B>"));
    assert!(!edge_line(&dot, &alpine, &deps_run).expect("edge from the base image").contains("dashed"));
    let busybox = node_of(&dot, "FROM busybox:1");
    assert!(edge_line(&dot, &busybox, &copy_image).unwrap().contains("style=dashed"));

    // The context is a node with an edge to the one COPY that reads it.
    let context = node_of(&dot, "load build context");
    assert!(node_line(&dot, &context).contains("shape=folder"));
    assert_eq!(dot.lines().filter(|l| l.trim_start().starts_with(&format!("{context} -> "))).count(), 1);
    assert!(edge_line(&dot, &context, &site).is_some());
    // A heredoc COPY reads nothing from the context.
    assert!(edge_line(&dot, &context, &inline).is_none(), "{dot}");

    // Scratch has no node: its stages say FROM scratch instead.
    assert!(!dot.contains("tooltip=\"FROM scratch\""), "{dot}");
}

#[test]
fn only_the_stages_the_target_needs_are_drawn() {
    let dot = render(&lowered(FOUR_STAGES, Some("build")), "Dockerfile", None);
    assert!(dot.contains("cluster_stage_2") && !dot.contains("cluster_stage_3"), "{dot}");
    assert!(!dot.contains("step time"), "no legend without timings");
}

#[test]
fn a_stage_without_instructions_still_shows() {
    let dot = render(&lowered("FROM alpine AS base\nFROM base\nRUN true\n", None), "Dockerfile", None);
    assert!(dot.contains("subgraph cluster_stage_0 {") && dot.contains("empty_0 ["), "{dot}");
}

#[test]
fn timings_colour_steps_mark_cached_ones_and_add_a_legend() {
    let graph = lowered(FOUR_STAGES, None);
    let step = |display: &str| {
        graph.graph.node_weights().find(|s| s.display == display).unwrap_or_else(|| panic!("no step {display}"))
    };
    let timings = BuildTimings {
        dockerfile: "/x/Dockerfile".into(),
        finished: "2024-05-01T12:00:00Z".into(),
        steps: vec![
            StepTiming::new(step("RUN make"), false, 10.0),
            StepTiming::new(step("COPY site/ /srv/"), false, 0.5),
            StepTiming::new(step("COPY --from=assets /srv/ /src/"), true, 0.0),
        ],
    };
    let dot = render(&graph, "Dockerfile", Some(&timings));
    let make = node_line(&dot, &node_of(&dot, "RUN make")).to_string();
    assert!(make.contains("fillcolor=\"#800026\"") && make.contains("ran 10.0 s"), "slowest is darkest: {make}");
    assert!(make.contains("COLOR=\"#ffffff\""), "light text on the dark fill: {make}");
    let site = node_line(&dot, &node_of(&dot, "COPY site/ /srv/")).to_string();
    assert!(site.contains("fillcolor=\"#ffffcc\"") && site.contains("ran 0.50 s"), "{site}");
    let cached = node_line(&dot, &node_of(&dot, "COPY --from=assets /srv/ /src/")).to_string();
    assert!(cached.contains("fillcolor=\"#e5e7eb\"") && cached.contains("CACHED"), "{cached}");
    let missing = node_line(&dot, &node_of(&dot, "ENV A=b")).to_string();
    assert!(missing.contains("dashed") && missing.contains("not in the last build"), "{missing}");
    assert!(dot.contains("<B>step time </B>") && dot.contains("8.00 – 10.0 s"), "the legend is in the title: {dot}");
    assert!(dot.contains("<B>stage 2 · build</B><FONT COLOR=\"#6b7280\"> · ran 10.0 s</FONT>"), "{dot}");
    assert!(dot.contains("<B>stage 1 · assets</B><FONT COLOR=\"#6b7280\"> · ran 0.50 s</FONT>"), "{dot}");
    assert!(dot.contains("<B>stage 0 · deps</B><BR"), "nothing of deps ran: {dot}");
    assert!(dot.contains("last build 2024-05-01 12:00:00 UTC: 2 steps ran for 10.5 s in total, 1 cached"), "{dot}");
}
