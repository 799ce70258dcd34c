use std::cell::RefCell;

use super::*;
use crate::instructions::parse_dockerfile;

/// A resolver with a fixed set of images that records what it was asked for.
#[derive(Default)]
struct FakeImages {
    images: BTreeMap<String, ImageMeta>,
    asked: RefCell<Vec<String>>,
}

impl ImageResolver for FakeImages {
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ImageMeta, String> {
        self.asked.borrow_mut().push(format!("{reference} for {platform}"));
        self.images
            .get(reference)
            .cloned()
            .ok_or_else(|| format!("image {reference:?} not found"))
    }
}

fn options(args: &[(&str, &str)], target: Option<&str>) -> LowerOptions {
    LowerOptions {
        build_args: args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        target: target.map(str::to_string),
        platform: Platform::host(),
    }
}

fn lower_src(src: &str, opts: &LowerOptions, images: &FakeImages) -> Result<BuildGraph, DockerfileError> {
    lower(&parse_dockerfile(src).unwrap(), opts, images)
}

fn target_image(src: &str, args: &[(&str, &str)]) -> ImageMeta {
    lower_src(src, &options(args, None), &FakeImages::default())
        .unwrap()
        .target_stage()
        .image
        .clone()
}

fn copy_ops(graph: &BuildGraph) -> Vec<(CopyOp, Option<NodeIndex>)> {
    graph
        .graph
        .node_indices()
        .filter_map(|id| match &graph.step(id).op {
            Op::Copy(c) => Some((c.clone(), graph.copy_from(id))),
            _ => None,
        })
        .collect()
}

#[test]
fn global_arg_in_from_and_stage_redeclaration() {
    let mut images = FakeImages::default();
    images.images.insert("base:2".into(), ImageMeta::default());
    let src = "ARG TAG=1\nFROM base:${TAG}\nARG TAG\nENV SEEN=$TAG\n";
    let graph = lower_src(src, &options(&[("TAG", "2")], None), &images).unwrap();
    assert_eq!(graph.target_stage().base, Base::Image("base:2".into()));
    assert_eq!(graph.target_stage().image.env_value("SEEN"), Some("2"));
    assert!(graph.warnings.is_empty(), "{:?}", graph.warnings);
}

#[test]
fn global_arg_is_invisible_in_stage_until_redeclared() {
    let image = target_image("ARG V=global\nFROM scratch\nENV A=${V:-unset}\nARG V\nENV B=$V\n", &[]);
    assert_eq!(image.env_value("A"), Some("unset"));
    assert_eq!(image.env_value("B"), Some("global"));
}

#[test]
fn stage_arg_default_and_override() {
    let src = "FROM scratch\nARG X=def\nLABEL x=$X\n";
    assert_eq!(target_image(src, &[]).labels["x"], "def");
    assert_eq!(target_image(src, &[("X", "cli")]).labels["x"], "cli");
}

#[test]
fn args_stay_out_of_the_image_env_but_reach_run() {
    let g = lower_src(
        "FROM scratch\nARG A=1\nENV B=2\nRUN echo hi\n",
        &options(&[], None),
        &FakeImages::default(),
    )
    .unwrap();
    let stage = g.target_stage();
    assert_eq!(stage.image.env_value("A"), None);
    assert_eq!(stage.image.env_value("B"), Some("2"));
    assert_eq!(stage.image.env_value("PATH"), Some(DEFAULT_PATH));
    let run = stage
        .steps
        .iter()
        .find_map(|id| match &g.step(*id).op {
            Op::Run(r) => Some(r.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(run.argv, vec!["/bin/sh", "-c", "echo hi"]);
    assert!(run.env.contains(&("A".to_string(), "1".to_string())));
    assert!(run.env.contains(&("B".to_string(), "2".to_string())));
    let history = g.step(*stage.steps.last().unwrap()).history.clone().unwrap();
    assert_eq!(history.created_by, "RUN |1 A=1 /bin/sh -c echo hi # buildkit");
}

#[test]
fn platform_args_are_global_and_declarable() {
    let host = Platform::host();
    let image = target_image("FROM scratch\nARG TARGETARCH\nENV ARCH=$TARGETARCH OS=$TARGETOS\n", &[]);
    assert_eq!(image.env_value("ARCH"), Some(host.architecture.as_str()));
    assert_eq!(image.env_value("OS"), Some(""));
}

#[test]
fn env_values_see_the_environment_before_the_line() {
    let image = target_image("FROM scratch\nENV abc=hello\nENV abc=bye def=$abc\n", &[]);
    assert_eq!(image.env_value("abc"), Some("bye"));
    assert_eq!(image.env_value("def"), Some("hello"));
}

#[test]
fn unused_build_arg_warns() {
    let g = lower_src("FROM scratch\n", &options(&[("NOPE", "1"), ("HTTP_PROXY", "x")], None), &FakeImages::default())
        .unwrap();
    assert_eq!(g.warnings.len(), 1);
    assert!(g.warnings[0].message.contains("NOPE"));
    assert!(!g.warnings[0].message.contains("HTTP_PROXY"));
}

#[test]
fn unneeded_stages_are_pruned_and_never_resolved() {
    let images = FakeImages::default();
    let src = "FROM missing:image AS unused\nCOPY nothing /\nFROM scratch AS a\nCOPY x /x\nFROM a\nCOPY --from=a /x /y\n";
    let g = lower_src(src, &options(&[], None), &images).unwrap();
    assert!(images.asked.borrow().is_empty());
    let built: Vec<usize> = g.stages.iter().map(|s| s.index).collect();
    assert_eq!(built, vec![1, 2]);
    assert!(g.graph.node_weights().all(|s| s.stage != Some(0)));
}

#[test]
fn target_selects_stage_and_unknown_target_fails() {
    let src = "FROM scratch AS one\nLABEL a=1\nFROM scratch AS Two\nLABEL b=2\n";
    let g = lower_src(src, &options(&[], Some("ONE")), &FakeImages::default()).unwrap();
    assert_eq!(g.target_stage().name.as_deref(), Some("one"));
    assert_eq!(g.stages.len(), 1);
    let err = lower_src(src, &options(&[], Some("three")), &FakeImages::default()).unwrap_err();
    assert!(err.message.contains("three"));
}

#[test]
fn copy_from_stage_name_index_and_context() {
    let src = "FROM scratch AS build\nCOPY a /a\nFROM scratch\nCOPY --from=BUILD /a /b\nCOPY --from=0 /a /c\nCOPY local /d\n";
    let g = lower_src(src, &options(&[], None), &FakeImages::default()).unwrap();
    let build_last = g.stages[0].last;
    let copies = copy_ops(&g);
    assert_eq!(copies.len(), 4);
    let from_build: Vec<_> = copies.iter().filter(|(_, from)| *from == Some(build_last)).collect();
    assert_eq!(from_build.len(), 2);
    let context_copies = copies
        .iter()
        .filter(|(_, from)| matches!(g.step(from.unwrap()).op, Op::Source(Source::Context)))
        .count();
    assert_eq!(context_copies, 2);
}

#[test]
fn copy_from_later_stage_or_same_index_fails() {
    let err = lower_src(
        "FROM scratch\nCOPY --from=later /a /b\nFROM scratch AS later\n",
        &options(&[], Some("later")),
        &FakeImages::default(),
    );
    assert!(err.is_ok(), "the first stage is not needed by `later`");
    let err = lower_src(
        "FROM scratch AS first\nCOPY --from=later /a /b\nFROM scratch AS later\nFROM first\n",
        &options(&[], None),
        &FakeImages::default(),
    )
    .unwrap_err();
    assert!(err.message.contains("defined later"), "{}", err.message);
    assert_eq!(err.line, 2);
    let err = lower_src("FROM scratch\nCOPY --from=0 /a /b\n", &options(&[], None), &FakeImages::default()).unwrap_err();
    assert!(err.message.contains("earlier stage"));
}

#[test]
fn unknown_base_image_names_the_from_line() {
    let err = lower_src("FROM scratch AS a\nFROM nothere:1\n", &options(&[], None), &FakeImages::default()).unwrap_err();
    assert_eq!(err.line, 2);
    assert!(err.message.contains("nothere:1"));
}

#[test]
fn config_instructions() {
    let image = target_image(
        concat!(
            "FROM scratch\n",
            "ENV P=/srv\n",
            "WORKDIR $P\nWORKDIR app\n",
            "USER nobody:nogroup\n",
            "EXPOSE 80 53/udp\n",
            "VOLUME [\"/data\", \"$P/v\"]\n",
            "STOPSIGNAL SIGINT\n",
            "SHELL [\"/bin/ash\", \"-eo\"]\n",
            "CMD serve\n",
            "HEALTHCHECK --timeout=3s CMD [\"check\"]\n",
            "ONBUILD COPY $P /x\n",
            "MAINTAINER someone\n",
            "LABEL \"key one\"=\"v 1\"\n",
        ),
        &[],
    );
    assert_eq!(image.working_dir, "/srv/app");
    assert_eq!(image.user, "nobody:nogroup");
    assert_eq!(image.exposed_ports.iter().cloned().collect::<Vec<_>>(), vec!["53/udp", "80/tcp"]);
    assert!(image.volumes.contains("/data") && image.volumes.contains("/srv/v"));
    assert_eq!(image.stop_signal.as_deref(), Some("SIGINT"));
    assert_eq!(image.cmd, Some(vec!["/bin/ash".into(), "-eo".into(), "serve".into()]));
    let hc = image.healthcheck.unwrap();
    assert_eq!(hc.test, vec!["CMD", "check"]);
    assert_eq!(hc.timeout, Some(3_000_000_000));
    assert_eq!(image.on_build, vec!["COPY $P /x"]);
    assert_eq!(image.author.as_deref(), Some("someone"));
    assert_eq!(image.labels["key one"], "v 1");
}

#[test]
fn entrypoint_resets_inherited_cmd_only() {
    let image = target_image("FROM scratch AS a\nCMD [\"x\"]\nFROM a\nENTRYPOINT [\"e\"]\n", &[]);
    assert_eq!(image.cmd, None);
    let image = target_image("FROM scratch\nCMD [\"x\"]\nENTRYPOINT [\"e\"]\n", &[]);
    assert_eq!(image.cmd, Some(vec!["x".to_string()]));
}

#[test]
fn base_image_config_and_onbuild_triggers() {
    let mut images = FakeImages::default();
    images.images.insert(
        "base".into(),
        ImageMeta {
            env: [("PATH".to_string(), "/bin".to_string())].into_iter().collect(),
            on_build: vec!["LABEL from=onbuild".into()],
            ..Default::default()
        },
    );
    let g = lower_src("FROM base\nENV PATH=$PATH:/x\n", &options(&[], None), &images).unwrap();
    let image = &g.target_stage().image;
    assert_eq!(image.env_value("PATH"), Some("/bin:/x"));
    assert_eq!(image.labels["from"], "onbuild");
    assert!(image.on_build.is_empty(), "triggers are not inherited");
}

#[test]
fn run_mounts_become_inputs_of_the_step() {
    let src = "FROM scratch AS build\nFROM scratch AS unused\nFROM scratch\nWORKDIR /app\nARG CACHE=go\n\
               RUN --mount=type=bind,from=build,source=/out,target=in \\\n    --mount=type=cache,id=$CACHE,target=/c \\\n    --mount=target=/src true\n";
    let graph = lower_src(src, &options(&[], None), &FakeImages::default()).unwrap();
    // The stage a mount reads is built; the one nothing reads is not.
    let built: Vec<_> = graph.stages.iter().map(|s| s.name.clone()).collect();
    assert_eq!(built, [Some("build".to_string()), None]);
    let run = graph.graph.node_indices().find(|id| matches!(graph.step(*id).op, Op::Run(_))).unwrap();
    let Op::Run(op) = &graph.step(run).op else { unreachable!() };
    assert_eq!(op.mounts[0].target, "/app/in");
    assert!(matches!(&op.mounts[1].kind, MountKind::Cache { id, .. } if id == "go"));
    let mut inputs: Vec<(Edge, String)> = graph
        .graph
        .edges_directed(run, petgraph::Direction::Incoming)
        .map(|e| (*e.weight(), graph.step(petgraph::visit::EdgeRef::source(&e)).display.clone()))
        .collect();
    inputs.sort_by_key(|(edge, _)| format!("{edge:?}"));
    let edges: Vec<Edge> = inputs.iter().map(|(e, _)| *e).collect();
    assert_eq!(edges, [Edge::MountFrom(0), Edge::MountFrom(2), Edge::Parent]);
    assert_eq!(inputs[1].1, "load build context", "a bind mount without from= reads the context");
}

#[test]
fn a_bad_run_mount_is_refused_with_its_line() {
    let err = lower_src("FROM scratch\n\nRUN --mount=type=cache true\n", &options(&[], None), &FakeImages::default())
        .unwrap_err();
    assert_eq!(err.line, 3);
    assert!(err.message.contains("--mount=type=cache: a cache mount needs a target"), "{}", err.message);
    let src = "FROM scratch AS first\nRUN --mount=from=later,target=/x true\nFROM scratch AS later\n";
    let err = lower_src(src, &options(&[], Some("first")), &FakeImages::default())
        .unwrap_err();
    assert_eq!(err.line, 2);
    assert!(err.message.contains("defined later"), "{}", err.message);
}

#[test]
fn stages_are_built_for_their_from_platform_and_bases_resolved_for_it() {
    let arm64 = Platform::parse("linux/arm64").unwrap();
    let images = FakeImages {
        images: [("golang".to_string(), ImageMeta::default()), ("alpine".to_string(), ImageMeta::default())].into(),
        ..FakeImages::default()
    };
    let src = "FROM --platform=$BUILDPLATFORM golang AS build\nARG TARGETARCH\nENV GOARCH=$TARGETARCH\n\
               FROM build AS more\n\
               FROM alpine\nCOPY --from=more / /\n";
    let opts = LowerOptions { platform: arm64.clone(), ..options(&[], None) };
    let g = lower_src(src, &opts, &images).unwrap();
    let host = Platform::host();
    assert_eq!(g.stages[0].platform, host, "$BUILDPLATFORM is the host's");
    assert_eq!(g.stages[1].platform, host, "a stage on another has its platform");
    assert_eq!(g.stages[2].platform, arm64, "a stage without --platform is the build's");
    // The cross-compiling stage still sees the target in TARGETARCH.
    assert_eq!(g.stages[0].image.env_value("GOARCH"), Some("arm64"));
    assert_eq!(*images.asked.borrow(), vec![format!("golang for {host}"), "alpine for linux/arm64/v8".to_string()]);
    let copy = g.stages[2].steps[0];
    assert_eq!(g.step_platform(g.step(copy)), &arm64);

    let err = lower_src("FROM --platform=linux scratch\n", &options(&[], None), &FakeImages::default()).unwrap_err();
    assert!(err.message.contains("--platform=linux"), "{}", err.message);
}

#[test]
fn copy_heredoc_is_expanded_unless_quoted() {
    let g = lower_src(
        "FROM scratch\nENV N=world\nCOPY <<EOF /a\nhello $N\nEOF\nCOPY <<'EOF' /b\nhello $N\nEOF\n",
        &options(&[], None),
        &FakeImages::default(),
    )
    .unwrap();
    let contents: Vec<String> = copy_ops(&g).into_iter().map(|(c, _)| c.inline_files[0].content.clone()).collect();
    assert_eq!(contents, vec!["hello world\n", "hello $N\n"]);
}

#[test]
fn child_stage_inherits_parent_args() {
    let image = target_image(
        "FROM scratch AS parent\nARG FOO=123\nFROM parent AS child\nLABEL foo=x${FOO}\nFROM scratch\nCOPY --from=child /a /a\nLABEL other=x${FOO}\n",
        &[],
    );
    assert_eq!(image.labels["other"], "x");
    let g = lower_src(
        "FROM scratch AS parent\nARG FOO=123\nFROM parent AS child\nLABEL foo=x${FOO}\n",
        &options(&[], None),
        &FakeImages::default(),
    )
    .unwrap();
    assert_eq!(g.target_stage().image.labels["foo"], "x123");
}

fn run_ops(src: &str) -> Vec<RunOp> {
    let g = lower_src(src, &options(&[], None), &FakeImages::default()).unwrap();
    g.graph
        .node_weights()
        .filter_map(|s| match &s.op {
            Op::Run(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn run_heredoc_forms() {
    let runs = run_ops(concat!(
        "FROM scratch\n",
        "RUN <<EOF\necho one\necho two\nEOF\n",
        "RUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF\n",
        "RUN cat <<A > /a && cat <<B > /b\nfirst\nA\nsecond\nB\n",
        "SHELL [\"/bin/ash\", \"-c\"]\nRUN <<-EOF\n\techo tab\n\tEOF\n",
    ));
    assert_eq!(runs[0].argv, vec!["/bin/sh", "-c", "echo one\necho two\n"]);
    assert!(runs[0].heredocs.is_empty());
    assert_eq!(runs[1].argv, vec!["/usr/bin/env", "python3", "/dev/fd/3"]);
    assert_eq!(runs[1].heredocs[0].file_descriptor, 3);
    assert_eq!(runs[1].heredocs[0].content, "#!/usr/bin/env python3\nprint(1)\n");
    assert_eq!(
        runs[2].argv,
        vec!["/bin/sh", "-c", "cat <<A > /a && cat <<B > /b\nfirst\nA\nsecond\nB"]
    );
    assert_eq!(runs[3].argv, vec!["/bin/ash", "-c", "echo tab\n"]);
}

#[test]
fn shebang_lines() {
    assert_eq!(shebang("#!/bin/sh\necho"), Some(vec!["/bin/sh".to_string()]));
    assert_eq!(shebang("#! /usr/bin/env  python3 -u\n"), Some(vec!["/usr/bin/env".to_string(), "python3 -u".to_string()]));
    assert_eq!(shebang("echo"), None);
    assert_eq!(shebang("#!\n"), None);
}

/// Images pinned to a digest, and one named directory context.
struct PinningImages;

impl ImageResolver for PinningImages {
    fn resolve(&self, reference: &str, _: &Platform) -> Result<ImageMeta, String> {
        let mut meta = ImageMeta::default();
        meta.set_env("FROM_IMAGE", reference);
        Ok(meta)
    }

    fn pinned(&self, reference: &str, _: &Platform) -> String {
        format!("{reference}@sha256:pinned")
    }

    fn is_named_directory(&self, name: &str) -> bool {
        name == "assets"
    }
}

#[test]
fn images_are_pinned_and_named_directories_are_copy_sources() {
    let src = "FROM base:1\nCOPY --from=assets /a /a\nCOPY --from=tools:2 /t /t\nCOPY --from=assets /b /b\n";
    let graph = lower_src_with(src, &PinningImages).unwrap();
    assert_eq!(graph.target_stage().base, Base::Image("base:1".into()), "the stage keeps the written name");
    assert_eq!(graph.target_stage().image.env_value("FROM_IMAGE"), Some("base:1"));
    let root = graph.step(graph.target_stage().root);
    assert_eq!(root.op, Op::Source(Source::Image("base:1@sha256:pinned".into())));
    let inputs: Vec<Op> = copy_ops(&graph).iter().map(|(_, from)| graph.step(from.unwrap()).op.clone()).collect();
    assert_eq!(
        inputs,
        vec![
            Op::Source(Source::NamedContext("assets".into())),
            Op::Source(Source::Image("tools:2@sha256:pinned".into())),
            Op::Source(Source::NamedContext("assets".into())),
        ]
    );
    let sources = graph.graph.node_indices().filter(|id| matches!(graph.step(*id).op, Op::Source(Source::NamedContext(_))));
    assert_eq!(sources.count(), 1, "one source step per named context");

}

#[test]
fn a_stage_from_a_named_directory_starts_with_a_copy_of_it() {
    let graph = lower_src_with("FROM assets\nRUN ls\nCOPY --from=assets /a /b\n", &PinningImages).unwrap();
    let stage = graph.target_stage();
    assert_eq!(stage.base, Base::Context("assets".into()));
    assert_eq!(stage.image, ImageMeta::empty(), "the empty image's config");
    assert_eq!(graph.step(stage.root).op, Op::Source(Source::Scratch));
    assert_eq!(stage.steps.len(), 3, "the directory's layer is the stage's first step");
    let first = graph.step(stage.steps[0]);
    assert_eq!(first.display, "FROM assets");
    assert_eq!(first.location.map(|l| l.start_line), Some(1));
    let Op::Copy(copy) = &first.op else { panic!("{:?}", first.op) };
    assert_eq!((copy.sources.clone(), copy.dest.as_str(), copy.chown.as_ref()), (vec![".".to_string()], "/", None));
    assert_eq!(first.history.as_ref().map(|h| h.created_by.as_str()), Some("load build context assets"));
    let copies = copy_ops(&graph);
    let inputs: Vec<Op> = copies.iter().map(|(_, from)| graph.step(from.unwrap()).op.clone()).collect();
    assert_eq!(inputs, vec![Op::Source(Source::NamedContext("assets".into())); 2], "one source for FROM and COPY --from");
    let sources = graph.graph.node_indices().filter(|id| matches!(graph.step(*id).op, Op::Source(Source::NamedContext(_))));
    assert_eq!(sources.count(), 1);
}

fn lower_src_with(src: &str, resolver: &dyn ImageResolver) -> Result<BuildGraph, DockerfileError> {
    lower(&parse_dockerfile(src).unwrap(), &options(&[], None), resolver)
}

/// `FROM scratch` starts from BuildKit's empty image: PATH and `/` as the working directory, and
/// nothing else; a later WORKDIR still replaces it.
#[test]
fn a_scratch_stage_has_the_empty_images_config() {
    let g = lower_src("FROM scratch\nCOPY a /a\n", &options(&[], None), &FakeImages::default()).unwrap();
    let image = &g.target_stage().image;
    assert_eq!(image.working_dir, "/");
    assert_eq!(image.env.iter().collect::<Vec<_>>(), [(&"PATH".to_string(), &DEFAULT_PATH.to_string())]);
    assert_eq!(*image, ImageMeta { working_dir: "/".into(), env: image.env.clone(), ..ImageMeta::default() });

    let g = lower_src("FROM scratch\nWORKDIR app\n", &options(&[], None), &FakeImages::default()).unwrap();
    assert_eq!(g.target_stage().image.working_dir, "/app");
}

/// Found by the `dockerfile` fuzz target: a `--from` that names a stage only once ENV, a parent
/// stage's ARG or a base image's ONBUILD trigger is applied points at a stage the build did not
/// choose (stages are chosen before any of those is known), which panicked. It is an error now.
#[test]
fn copy_from_a_stage_the_build_did_not_choose_is_an_error() {
    let mut images = FakeImages::default();
    images.images.insert(
        "onbuild".into(),
        ImageMeta { on_build: vec!["COPY --from=0 /a /b".into()], ..ImageMeta::default() },
    );
    for src in [
        &b"FROM scratch\nFROM onbuild\n"[..],
        b"FROM scratch AS a\nFROM scratch\nENV S=a\nCOPY --from=$S /x /y\n",
        b"FROM scratch AS a\nFROM scratch AS p\nARG S=a\nFROM p\nCOPY --from=$S /x /y\n",
    ] {
        let src = std::str::from_utf8(src).unwrap();
        let err = lower_src(src, &options(&[], None), &images).unwrap_err();
        assert!(err.message.contains("invalid --from="), "{src:?}: {err:?}");
        assert!(err.message.contains("not chosen"), "{src:?}: {err:?}");
    }
    // Named directly, the same stage is chosen and the trigger copies from it.
    let src = "FROM scratch AS a\nCOPY x /a\nFROM onbuild\nCOPY --from=a /a /c\n";
    let graph = lower_src(src, &options(&[], None), &images).unwrap();
    assert_eq!(graph.stages.len(), 2);
}
