//! Dockerfile parsing: the syntax tree (`parser::parse`) and the typed
//! instructions (`instructions::parse_dockerfile`) of a large generated
//! Dockerfile: 150 stages, about 3,500 lines, with every instruction kind,
//! line continuations, heredocs, JSON and shell forms, flags and variables.
//! `cargo bench -p rbuild-frontend --bench parse`.

use std::fmt::Write;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rbuild_frontend::{instructions, parser};

fn large_dockerfile(stages: usize) -> String {
    let mut d = String::from("# syntax=docker/dockerfile:1\n# escape=\\\nARG BASE=rbuild-bench/busybox:1\nARG VERSION=1.0\n\n");
    for s in 0..stages {
        write!(
            d,
            r#"FROM ${{BASE}} AS stage{s}
ARG VERSION
ENV STAGE={s} APP_HOME=/opt/app{s} PATH="/opt/app{s}/bin:$PATH"
LABEL org.example.stage="{s}" org.example.version="${{VERSION}}" \
      org.example.description="stage number {s} of a generated Dockerfile"
WORKDIR ${{APP_HOME}}
COPY --chown=1000:1000 --chmod=644 src/{s}/ ./src/
COPY ["conf/{s}.json", "./conf/"]
ADD --chown=0:0 vendor-{s}.tar.gz /opt/vendor/
RUN set -eux; \
    mkdir -p out/{s}; \
    for i in 1 2 3; do \
      echo "$i ${{STAGE:-none}}" >> out/{s}/log; \
    done
RUN <<EOF
set -e
echo stage {s} > /etc/stage
EOF
RUN ["/bin/sh", "-c", "echo exec form {s}"]
# a comment between instructions
USER 1000:1000
EXPOSE 8080/tcp 9090/udp
VOLUME ["/data{s}"]
HEALTHCHECK --interval=30s --timeout=3s CMD ["true"]
STOPSIGNAL SIGTERM
CMD ["sh", "-c", "echo $STAGE"]

"#
        )
        .unwrap();
    }
    d.push_str("FROM ${BASE}\n");
    for s in 0..stages {
        writeln!(d, "COPY --from=stage{s} /opt/app{s}/out /out/{s}").unwrap();
    }
    d
}

fn parse(c: &mut Criterion) {
    let source = large_dockerfile(150);
    // Fail early, with the parser's message, if the generated file stopped being valid.
    instructions::parse_dockerfile(&source).expect("the generated Dockerfile parses");

    let mut group = c.benchmark_group("dockerfile");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Bytes(source.len() as u64));
    group.bench_function("parse_syntax", |b| b.iter(|| parser::parse(&source).unwrap()));
    group.bench_function("parse_instructions", |b| {
        b.iter(|| instructions::parse_dockerfile(&source).unwrap())
    });
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
