//! Tests of the RUN sandbox. The ones that run commands need root (as the
//! README's test command provides) and busybox-static, whose single binary
//! makes a complete root filesystem; they fail, never skip, without them.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::idmap::{map_args, parse_subid_ranges, plan_id_maps, IdMapLine, IdMapPlan, SubIdRange};
use super::process::OutputTail;
use super::protocol::{Ancestor, ChildError, FailureKind, Report, Stub};
use super::userns::{diagnose, Knobs};
use super::users::{resolve_user, ExecUser};
use super::*;

const BUSYBOX: &str = "/bin/busybox";

/// The `PATH` every fixture spec gives its command: the sandbox adds none.
const PATH: &str = "/bin";

fn require_root() {
    // SAFETY: geteuid cannot fail.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the sandbox tests run as root"
    );
}

/// A root filesystem snapshot: busybox with a link per applet in /bin, and
/// an /etc/passwd with root and `user` (1000), who is also in group `extra`.
fn busybox_layer(dir: &Path) {
    assert!(
        Path::new(BUSYBOX).exists(),
        "install busybox-static: the sandbox tests need {BUSYBOX}"
    );
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::copy(BUSYBOX, dir.join("bin/busybox")).unwrap();
    let list = Command::new(BUSYBOX).arg("--list").output().unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" && !applet.contains('/') {
            symlink("busybox", dir.join("bin").join(applet)).unwrap();
        }
    }
    fs::create_dir_all(dir.join("etc")).unwrap();
    fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
    )
    .unwrap();
    fs::write(
        dir.join("etc/group"),
        "root:x:0:\nuser:x:1000:\nextra:x:2000:user\n",
    )
    .unwrap();
}

/// Directories for one run: layers, an empty upper and a scratch dir.
struct Fixture {
    dir: tempfile::TempDir,
    lower: Vec<PathBuf>,
}

impl Fixture {
    fn new() -> Self {
        require_root();
        let dir = tempfile::Builder::new()
            .prefix("rbuild-sandbox-test")
            .tempdir()
            .unwrap();
        let base = dir.path().join("layer0");
        busybox_layer(&base);
        fs::create_dir(dir.path().join("upper")).unwrap();
        fs::create_dir(dir.path().join("scratch")).unwrap();
        Fixture {
            dir,
            lower: vec![base],
        }
    }

    /// Adds an empty layer on top and returns its path.
    fn add_layer(&mut self) -> PathBuf {
        let layer = self.dir.path().join(format!("layer{}", self.lower.len()));
        fs::create_dir(&layer).unwrap();
        self.lower.push(layer.clone());
        layer
    }

    fn upper(&self) -> PathBuf {
        self.dir.path().join("upper")
    }

    fn spec(&self, argv: &[&str]) -> RunSpec {
        RunSpec {
            lower: self.lower.clone(),
            upper: self.upper(),
            scratch: self.dir.path().join("scratch"),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: vec![("PATH".into(), PATH.into())],
            ..RunSpec::default()
        }
    }

    fn sh(&self, script: &str) -> RunSpec {
        self.spec(&["sh", "-c", script])
    }

    /// Runs `spec` and returns the outcome and the whole output.
    fn run(&self, spec: &RunSpec) -> (RunOutcome, String) {
        let mut out = Vec::new();
        let outcome = run(spec, &mut |b| out.extend_from_slice(b))
            .unwrap_or_else(|e| panic!("{spec:?} failed: {e}"));
        self.assert_no_leftovers();
        (outcome, String::from_utf8(out).unwrap())
    }

    /// Runs a script that must succeed and returns its output.
    fn ok(&self, spec: &RunSpec) -> String {
        let (outcome, out) = self.run(spec);
        assert_eq!(outcome.exit, ExitKind::Code(0), "{:?}: {out}", spec.argv);
        out
    }

    fn upper_entries(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        walk(&self.upper(), &self.upper(), &mut out);
        out
    }

    /// No mount of this fixture's directories in rbuild's mount namespace,
    /// and nothing left in the scratch directory.
    fn assert_no_leftovers(&self) {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let root = self.dir.path().to_str().unwrap();
        assert!(
            !mountinfo.contains(root),
            "a mount was left behind:\n{mountinfo}"
        );
        let scratch: Vec<_> = fs::read_dir(self.dir.path().join("scratch"))
            .unwrap()
            .collect();
        assert!(scratch.is_empty(), "scratch not cleaned: {scratch:?}");
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        out.insert(path.strip_prefix(root).unwrap().display().to_string());
        if fs::symlink_metadata(&path).unwrap().is_dir() {
            walk(root, &path, out);
        }
    }
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

/// Pids of processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmdline) = fs::read(entry.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmdline)
                .replace('\0', " ")
                .contains(marker)
            {
                found.push(name);
            }
        }
    }
    found
}

// ---- commands, output, environment -------------------------------------

#[test]
fn failing_command_gives_exit_code_and_output_tail() {
    let f = Fixture::new();
    let (outcome, out) =
        f.run(&f.sh("for i in $(seq 1 30); do echo line$i; done; echo oops >&2; exit 3"));
    assert_eq!(outcome.exit, ExitKind::Code(3));
    assert_eq!(outcome.output_tail.len(), OUTPUT_TAIL_LINES);
    assert_eq!(outcome.output_tail.first().unwrap(), "line12");
    assert_eq!(outcome.output_tail.last().unwrap(), "oops");
    assert!(out.starts_with("line1\nline2\n"));
    assert!(!outcome.exit.success());
}

#[test]
fn shell_form_echo() {
    let f = Fixture::new();
    let (outcome, out) = f.run(&f.sh("echo hi"));
    assert_eq!(outcome.exit, ExitKind::Code(0));
    assert_eq!(out, "hi\n");
    assert_eq!(outcome.output_tail, vec!["hi".to_string()]);
    assert!(outcome.warnings.is_empty());
}

#[test]
fn exec_form_looks_up_the_command_in_the_sandbox_path() {
    let f = Fixture::new();
    assert_eq!(f.ok(&f.spec(&["echo", "a  b", "$HOME"])), "a  b $HOME\n");
    assert_eq!(f.ok(&f.spec(&["/bin/echo", "abs"])), "abs\n");
}

#[test]
fn environment_is_exactly_the_given_one_plus_home() {
    let f = Fixture::new();
    let mut spec = f.spec(&["/bin/env"]);
    spec.env = vec![
        ("FOO".into(), "bar baz".into()),
        ("EMPTY".into(), String::new()),
    ];
    let out = f.ok(&spec);
    let got: BTreeSet<&str> = out.lines().collect();
    let want: BTreeSet<&str> = ["FOO=bar baz", "EMPTY=", "HOME=/root"]
        .into_iter()
        .collect();
    assert_eq!(got, want, "no PATH is added");
}

#[test]
fn commands_are_found_only_in_the_given_path() {
    let f = Fixture::new();
    let mut spec = f.sh("echo $PATH");
    spec.env = vec![("PATH".into(), "/bin:/nowhere".into())];
    assert_eq!(f.ok(&spec), "/bin:/nowhere\n");
    let mut spec = f.spec(&["echo", "x"]);
    spec.env = vec![("PATH".into(), "/nowhere".into())];
    let err = run(&spec, &mut |_| {}).unwrap_err();
    assert!(matches!(err, SandboxError::Exec { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("executable file not found in $PATH"),
        "{err}"
    );
    // Without PATH a name without '/' is not looked up anywhere, not even
    // in the working directory.
    spec.env.clear();
    spec.workdir = "/bin".into();
    let err = run(&spec, &mut |_| {}).unwrap_err();
    assert!(
        err.to_string().contains("the command's environment has no PATH"),
        "{err}"
    );
    f.assert_no_leftovers();
}

#[test]
fn home_comes_from_passwd_unless_set() {
    let f = Fixture::new();
    assert_eq!(f.ok(&f.sh("echo $HOME")), "/root\n");
    let mut spec = f.sh("echo $HOME");
    spec.user = "user".into();
    assert_eq!(f.ok(&spec), "/home/user\n");
    spec.user = "4242".into();
    assert_eq!(f.ok(&spec), "/\n");
    spec.env.push(("HOME".into(), "/custom".into()));
    assert_eq!(f.ok(&spec), "/custom\n");
}

#[test]
fn user_by_name_gets_its_groups() {
    let f = Fixture::new();
    let mut spec = f.sh("id -u; id -g; id -G");
    spec.user = "user".into();
    assert_eq!(lines(&f.ok(&spec)), ["1000", "1000", "1000 2000"]);
}

#[test]
fn user_by_uid_and_gid() {
    let f = Fixture::new();
    let mut spec = f.sh("id -u; id -g; id -G");
    spec.user = "1000:1000".into();
    assert_eq!(lines(&f.ok(&spec)), ["1000", "1000", "1000"]);
    spec.user = "user:root".into();
    assert_eq!(lines(&f.ok(&spec)), ["1000", "0", "0"]);
    spec.user = String::new();
    assert_eq!(lines(&f.ok(&spec)), ["0", "0", "0"]);
}

#[test]
fn unknown_user_is_an_error() {
    let f = Fixture::new();
    let mut spec = f.sh("true");
    spec.user = "nobody-here".into();
    let err = run(&spec, &mut |_| {}).unwrap_err();
    assert!(matches!(err, SandboxError::User { .. }), "{err}");
    assert!(
        err.to_string().contains("unable to find user nobody-here"),
        "{err}"
    );
    f.assert_no_leftovers();
    assert!(f.upper_entries().is_empty(), "{:?}", f.upper_entries());
}

#[test]
fn workdir_is_created_owned_by_the_user() {
    let f = Fixture::new();
    let mut spec = f.sh("pwd; touch made-here");
    spec.workdir = "/work/./dir/../dir".into();
    spec.user = "user".into();
    assert_eq!(f.ok(&spec), "/work/dir\n");
    for dir in ["work", "work/dir"] {
        let meta = fs::metadata(f.upper().join(dir)).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (1000, 1000, 0o755),
            "{dir}"
        );
    }
    assert!(f.upper().join("work/dir/made-here").exists());
}

#[test]
fn stdin_and_extra_files() {
    let f = Fixture::new();
    let mut spec = f.sh("cat; cat <&3; cat <&7");
    spec.stdin = Some(b"from stdin\n".to_vec());
    spec.extra_files = vec![(3, b"from fd 3\n".to_vec()), (7, b"from fd 7\n".to_vec())];
    assert_eq!(f.ok(&spec), "from stdin\nfrom fd 3\nfrom fd 7\n");
    // Without stdin the command reads /dev/null.
    assert_eq!(f.ok(&f.sh("cat; echo done")), "done\n");
    let mut bad = f.sh("true");
    bad.extra_files = vec![(1, Vec::new())];
    assert!(matches!(
        run(&bad, &mut |_| {}),
        Err(SandboxError::InvalidSpec(_))
    ));
}

#[test]
fn only_the_command_descriptors_are_open() {
    let f = Fixture::new();
    let mut spec = f.sh("ls /proc/self/fd");
    spec.extra_files = vec![(5, b"x".to_vec())];
    // 0, 1, 2, 5, and the directory ls is reading.
    let out = f.ok(&spec);
    let fds: Vec<u32> = out.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(&fds[..4], &[0, 1, 2, 3], "{out}");
    assert!(fds.len() == 5 && fds[4] == 5, "{out}");
}

/// An attached command reads and writes the given descriptors, under either isolation, and
/// the output callback gets nothing.
#[test]
fn attached_streams_are_the_commands_own() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::sync::Arc;
    for isolation in [Isolation::Namespaces, Isolation::Chroot] {
        let f = Fixture::new();
        let (mut feed, stdin) = UnixStream::pair().unwrap();
        let (mut collect, stdout) = UnixStream::pair().unwrap();
        feed.write_all(b"typed\n").unwrap();
        feed.shutdown(std::net::Shutdown::Write).unwrap();
        let stdout = Arc::new(std::os::fd::OwnedFd::from(stdout));
        let mut spec = f.sh("read line; echo out-$line; echo err-$line >&2");
        spec.isolation = isolation;
        spec.stdio = Stdio::Attached {
            stdin: Arc::new(stdin.into()),
            stdout: stdout.clone(),
            stderr: stdout,
            terminal: false,
        };
        let mut captured = Vec::new();
        let outcome = run(&spec, &mut |b| captured.extend_from_slice(b)).unwrap();
        assert_eq!(outcome.exit, ExitKind::Code(0), "{isolation:?}");
        drop(spec);
        let mut text = String::new();
        collect.read_to_string(&mut text).unwrap();
        assert_eq!(text, "out-typed\nerr-typed\n", "{isolation:?}");
        assert!(captured.is_empty(), "{isolation:?}: {captured:?}");
    }
}

/// With `terminal`, the pseudo-terminal given as stdin is the command's controlling terminal
/// (`/dev/tty` opens only then).
#[test]
fn an_attached_terminal_becomes_the_controlling_terminal() {
    use std::io::Read;
    use std::sync::Arc;
    let f = Fixture::new();
    let master = rustix::pty::openpt(rustix::pty::OpenptFlags::RDWR | rustix::pty::OpenptFlags::NOCTTY).unwrap();
    rustix::pty::grantpt(&master).unwrap();
    rustix::pty::unlockpt(&master).unwrap();
    let name = rustix::pty::ptsname(&master, Vec::new()).unwrap();
    let flags = rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY;
    let slave = Arc::new(rustix::fs::open(name.as_c_str(), flags, rustix::fs::Mode::empty()).unwrap());
    let mut spec = f.sh("test -t 0 && echo stdin-is-a-tty; (exec 3</dev/tty) && echo has-a-controlling-tty");
    spec.stdio = Stdio::Attached { stdin: slave.clone(), stdout: slave.clone(), stderr: slave.clone(), terminal: true };
    let outcome = run(&spec, &mut |_| {}).unwrap();
    assert_eq!(outcome.exit, ExitKind::Code(0));
    drop(spec);
    drop(slave);
    let mut text = Vec::new();
    // Read until EIO: every copy of the slave is closed.
    let _ = std::fs::File::from(master).read_to_end(&mut text);
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("stdin-is-a-tty") && text.contains("has-a-controlling-tty"), "{text}");
}

// ---- the diff ------------------------------------------------------------

#[test]
fn new_file_lands_in_upper() {
    let f = Fixture::new();
    f.ok(&f.sh("echo data > /newfile"));
    assert_eq!(
        fs::read_to_string(f.upper().join("newfile")).unwrap(),
        "data\n"
    );
    assert_eq!(f.upper_entries(), BTreeSet::from(["newfile".to_string()]));
}

#[test]
fn deleted_lower_file_becomes_a_whiteout() {
    let f = Fixture::new();
    f.ok(&f.sh("rm /etc/group"));
    let meta = fs::symlink_metadata(f.upper().join("etc/group")).unwrap();
    assert!(meta.file_type().is_char_device());
    assert_eq!(meta.rdev(), 0);
}

#[test]
fn replaced_directory_is_opaque() {
    let mut f = Fixture::new();
    let top = f.add_layer();
    fs::create_dir_all(top.join("data/sub")).unwrap();
    fs::write(top.join("data/old"), "old").unwrap();
    f.ok(&f.sh("rm -rf /data && mkdir /data && echo new > /data/new"));
    let mut value = [0u8; 4];
    let n = rustix::fs::lgetxattr(f.upper().join("data"), "trusted.overlay.opaque", &mut value)
        .unwrap();
    assert_eq!(&value[..n], b"y");
    assert_eq!(
        f.upper_entries(),
        BTreeSet::from(["data".to_string(), "data/new".to_string()])
    );
}

#[test]
fn chown_gives_upper_file_the_owner() {
    let f = Fixture::new();
    f.ok(&f.sh("touch /owned && chown 1000:1000 /owned && chown 1000:2000 /etc/passwd"));
    let meta = fs::metadata(f.upper().join("owned")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1000, 1000));
    let meta = fs::metadata(f.upper().join("etc/passwd")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1000, 2000));
}

#[test]
fn generated_etc_files_are_read_only_and_not_in_the_diff() {
    let f = Fixture::new();
    let out = f.ok(&f.sh(
        "cat /etc/hosts /etc/hostname; grep -c nameserver /etc/resolv.conf >/dev/null && echo resolv; \
         (echo x >> /etc/hosts) 2>/dev/null || echo read-only",
    ));
    assert!(out.starts_with("127.0.0.1\tlocalhost buildkitsandbox\n::1\tlocalhost ip6-localhost ip6-loopback\nbuildkitsandbox\n"), "{out}");
    assert!(out.ends_with("resolv\nread-only\n"), "{out}");
    assert!(f.upper_entries().is_empty(), "{:?}", f.upper_entries());
}

#[test]
fn mount_points_missing_from_the_image_stay_out_of_the_diff() {
    // A FROM scratch-like layer: only /bin, no /etc, /proc, /dev or /sys.
    let f = Fixture::new();
    fs::remove_dir_all(f.lower[0].join("etc")).unwrap();
    f.ok(&f.sh(
        "cat /etc/hostname >/dev/null && ls /proc/self >/dev/null && ls /sys/class >/dev/null",
    ));
    assert!(f.upper_entries().is_empty(), "{:?}", f.upper_entries());
    // What a command writes next to them stays.
    f.ok(&f.sh("echo keep > /etc/kept"));
    assert_eq!(
        f.upper_entries(),
        BTreeSet::from(["etc".to_string(), "etc/kept".to_string()])
    );
}

#[test]
fn dangling_resolv_conf_symlink_is_followed_inside_the_root() {
    let f = Fixture::new();
    symlink(
        "../run/resolve/stub.conf",
        f.lower[0].join("etc/resolv.conf"),
    )
    .unwrap();
    let out = f.ok(&f.sh("grep -c nameserver /run/resolve/stub.conf"));
    assert_ne!(out.trim(), "0");
    assert!(f.upper_entries().is_empty(), "{:?}", f.upper_entries());
}

#[test]
fn layers_stack_top_to_bottom() {
    let mut f = Fixture::new();
    let mid = f.add_layer();
    fs::write(mid.join("file"), "middle").unwrap();
    fs::write(mid.join("gone"), "middle").unwrap();
    let top = f.add_layer();
    fs::write(top.join("file"), "top\n").unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        top.join("gone"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    )
    .unwrap();
    assert_eq!(
        f.ok(&f.sh("cat /file; test -e /gone || echo whited-out")),
        "top\nwhited-out\n"
    );
}

// ---- isolation -------------------------------------------------------------

#[test]
fn host_files_are_not_visible() {
    let f = Fixture::new();
    let secret = f.dir.path().join("host-secret");
    fs::write(&secret, "secret").unwrap();
    let script = format!(
        "test -e {0} && echo visible; test -e /root && echo root-visible; ls /; cat /proc/1/root/{0} 2>/dev/null; true",
        secret.display()
    );
    let out = f.ok(&f.sh(&script));
    let listing: BTreeSet<&str> = out.lines().collect();
    assert_eq!(
        listing,
        BTreeSet::from(["bin", "dev", "etc", "proc", "sys"]),
        "{out}"
    );
}

#[test]
fn hostname_and_pid_namespace() {
    let f = Fixture::new();
    let out = f.ok(&f.sh(
        "hostname; echo $$; tr '\\0' ' ' < /proc/1/cmdline; echo; ls /proc | grep -c '^[0-9]'",
    ));
    let l = lines(&out);
    assert_eq!(l[0], DEFAULT_HOSTNAME);
    assert_eq!(l[1], "1");
    assert!(l[2].starts_with("sh -c hostname"), "{out}");
    // sh, ls and grep.
    assert!(l[3].parse::<u32>().unwrap() <= 3, "{out}");
    let mut spec = f.sh("hostname");
    spec.hostname = "custom".into();
    assert_eq!(f.ok(&spec), "custom\n");
}

#[test]
fn network_none_has_only_loopback_up() {
    let f = Fixture::new();
    let mut spec = f.sh(
        "cat /proc/net/dev; echo --; cat /proc/net/route; echo --; cat /sys/class/net/lo/flags",
    );
    spec.network = NetworkMode::None;
    let out = f.ok(&spec);
    let parts: Vec<&str> = out.split("--\n").collect();
    let devices: Vec<&str> = parts[0]
        .lines()
        .skip(2)
        .map(|l| l.split(':').next().unwrap().trim())
        .collect();
    assert_eq!(devices, ["lo"]);
    assert_eq!(parts[1].lines().count(), 1, "routes: {}", parts[1]);
    let flags = u32::from_str_radix(parts[2].trim().trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & libc::IFF_UP as u32, libc::IFF_UP as u32);
}

#[test]
fn network_host_sees_the_host_interfaces() {
    let f = Fixture::new();
    let out = f.ok(&f.sh("cat /proc/net/dev"));
    let names = |text: &str| -> BTreeSet<String> {
        text.lines()
            .skip(2)
            .map(|l| l.split(':').next().unwrap().trim().to_string())
            .collect()
    };
    assert_eq!(
        names(&out),
        names(&fs::read_to_string("/proc/net/dev").unwrap())
    );
}

#[test]
fn capabilities_are_limited() {
    let f = Fixture::new();
    let out = f.ok(&f.sh("grep -E '^Cap(Bnd|Eff|Inh)' /proc/self/status; mount -t tmpfs x /etc 2>/dev/null || echo no-mount"));
    let l = lines(&out);
    // CAP_CHOWN … CAP_SETFCAP, Docker's default set.
    assert_eq!(
        l[0].split_whitespace().nth(1),
        Some("0000000000000000"),
        "{out}"
    );
    assert_eq!(
        l[1].split_whitespace().nth(1),
        Some("00000000a80425fb"),
        "{out}"
    );
    assert_eq!(
        l[2].split_whitespace().nth(1),
        Some("00000000a80425fb"),
        "{out}"
    );
    assert_eq!(l[3], "no-mount");
    let mut spec = f.sh("grep CapEff /proc/self/status");
    spec.user = "user".into();
    assert!(f.ok(&spec).contains("0000000000000000"));
}

// ---- no leftovers ----------------------------------------------------------

#[test]
fn background_processes_die_with_the_command() {
    let f = Fixture::new();
    let start = Instant::now();
    let (outcome, _) = f.run(&f.sh("sleep 31415 & sleep 31416 & echo started"));
    assert_eq!(outcome.exit, ExitKind::Code(0));
    assert!(start.elapsed() < Duration::from_secs(20));
    assert!(processes_with("sleep 3141").is_empty());
    let (outcome, _) = f.run(&f.sh("sleep 31417 & exit 4"));
    assert_eq!(outcome.exit, ExitKind::Code(4));
    assert!(processes_with("sleep 31417").is_empty());
}

#[test]
fn setup_failure_leaves_nothing_behind() {
    let f = Fixture::new();
    let mut spec = f.sh("true");
    spec.workdir = "/etc/passwd/sub".into();
    let err = run(&spec, &mut |_| {}).unwrap_err();
    assert!(matches!(err, SandboxError::Setup { .. }), "{err}");
    f.assert_no_leftovers();
    assert!(f.upper_entries().is_empty(), "{:?}", f.upper_entries());
}

#[test]
fn killing_rbuild_kills_the_sandbox() {
    let f = Fixture::new();
    kill_rbuild_during(&f.sh("sleep 27182 & sleep 27183"), "sleep 2718");
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mountinfo.contains(f.dir.path().to_str().unwrap()));
}

#[test]
fn killing_rbuild_kills_the_chroot_sandbox() {
    let f = Fixture::new();
    let mut spec = f.sh("sleep 16180 & (setsid sleep 16181 &); sleep 16182");
    spec.isolation = Isolation::Chroot;
    kill_rbuild_during(&spec, "sleep 1618");
}

/// Runs `spec` in a stand-in for rbuild (a forked child), SIGKILLs that once
/// processes matching `marker` run, and waits for them to vanish.
fn kill_rbuild_during(spec: &RunSpec, marker: &str) {
    let pid = match super::process::fork().unwrap() {
        super::process::Forked::Child => {
            let _ = run(spec, &mut |_| {});
            super::process::exit_child(0)
        }
        super::process::Forked::Parent(pid) => pid,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while processes_with(marker).len() < 2 {
        assert!(Instant::now() < deadline, "the sandbox did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kills and reaps our own child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    super::process::wait_for(pid).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_with(marker).is_empty() {
        assert!(
            Instant::now() < deadline,
            "sandbox processes outlived rbuild: {:?}",
            processes_with(marker)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---- run mounts (RUN --mount), in both isolations ---------------------------

fn bind_mount(target: &str, source: &Path, readonly: bool) -> RunMount {
    RunMount {
        target: target.into(),
        kind: MountKind::Bind {
            source: source.to_path_buf(),
            readonly,
        },
    }
}

/// A host directory next to the fixture's, holding `files` (name, text).
fn host_dir(f: &Fixture, name: &str, files: &[(&str, &str)]) -> PathBuf {
    host_dir_in(f.dir.path(), name, files)
}

fn host_dir_in(parent: &Path, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = parent.join(name);
    fs::create_dir(&dir).unwrap();
    for (file, text) in files {
        fs::write(dir.join(file), text).unwrap();
    }
    dir
}

fn mount_spec(f: &Fixture, isolation: Isolation, mounts: Vec<RunMount>, script: &str) -> RunSpec {
    let mut spec = f.sh(script);
    spec.isolation = isolation;
    spec.mounts = mounts;
    spec
}

fn names_in(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

fn writable_bind_writes_through(isolation: Isolation) {
    let f = Fixture::new();
    let cache = host_dir(&f, "cache", &[("old", "old\n"), ("kept", "kept\n")]);
    let spec = mount_spec(
        &f,
        isolation,
        vec![bind_mount("/var/cache/app", &cache, false)],
        "cat /var/cache/app/old && rm /var/cache/app/old && echo new > /var/cache/app/new && mkdir /var/cache/app/d",
    );
    assert_eq!(f.ok(&spec), "old\n");
    assert_eq!(names_in(&cache), BTreeSet::from(["d", "kept", "new"].map(String::from)));
    assert_eq!(fs::read_to_string(cache.join("new")).unwrap(), "new\n");
    // Neither the writes nor the mount point /var/cache/app (and /var).
    assert!(f.upper_entries().is_empty(), "{:?}", f.upper_entries());
    // The next run sees what the last one left.
    let spec = mount_spec(&f, isolation, vec![bind_mount("/c", &cache, false)], "cat /c/new /c/kept");
    assert_eq!(f.ok(&spec), "new\nkept\n");
}

#[test]
fn run_mount_writable_bind_writes_through() {
    writable_bind_writes_through(Isolation::Namespaces);
}

#[test]
fn chroot_run_mount_writable_bind_writes_through() {
    writable_bind_writes_through(Isolation::Chroot);
}

/// Writes to a read-only bind fail with the namespaces isolation; the
/// chroot isolation's copy takes them and drops them.
fn readonly_bind_keeps_the_source(isolation: Isolation, want: &str) {
    let f = Fixture::new();
    // Under `run_mounts_in_a_user_namespace`, on a nosuid,nodev,noexec
    // mount, whose flags the user namespace locks.
    let src = match std::env::var_os(NOSUID_DIR) {
        Some(dir) => {
            let parent = tempfile::tempdir_in(dir).unwrap().keep();
            host_dir_in(&parent, "context", &[("f", "ctx\n")])
        }
        None => host_dir(&f, "context", &[("f", "ctx\n")]),
    };
    let spec = mount_spec(
        &f,
        isolation,
        vec![bind_mount("/src", &src, true)],
        "cat /src/f; (echo x > /src/g) 2>/dev/null && echo written || echo refused",
    );
    assert_eq!(f.ok(&spec), format!("ctx\n{want}\n"));
    assert_eq!(names_in(&src), BTreeSet::from(["f".to_string()]));
    assert!(f.upper_entries().is_empty(), "{:?}", f.upper_entries());
}

#[test]
fn run_mount_readonly_bind_refuses_writes() {
    readonly_bind_keeps_the_source(Isolation::Namespaces, "refused");
}

/// Where `run_mounts_in_a_user_namespace` mounted a nosuid,nodev,noexec tmpfs.
const NOSUID_DIR: &str = "RBUILD_TEST_NOSUID_DIR";

/// The namespaces isolation's run-mount tests once more as root of a user
/// namespace that maps only root, as a rootless rbuild runs: this test
/// binary runs them under unshare(1), in a mount namespace of its own with
/// a nosuid,nodev,noexec tmpfs for the read-only bind's source.
#[test]
fn run_mounts_in_a_user_namespace() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount -t tmpfs -o nosuid,nodev,noexec tmpfs "$0" && exec unshare --user --map-root-user "$1" tests::run_mount_"#)
        .arg(dir.path())
        .arg(std::env::current_exe().unwrap())
        .env(NOSUID_DIR, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("test tests::run_mount_readonly_bind_refuses_writes ... ok"), "{stdout}");
    assert!(!stdout.contains("chroot") && stdout.contains(" 0 failed"), "{stdout}");
}

#[test]
fn chroot_run_mount_readonly_bind_drops_writes() {
    readonly_bind_keeps_the_source(Isolation::Chroot, "written");
}

fn file_bind_is_readable_and_leaves_nothing(isolation: Isolation) {
    let f = Fixture::new();
    let secrets = host_dir(&f, "secrets", &[("token", "s3cret")]);
    let spec = mount_spec(
        &f,
        isolation,
        vec![bind_mount("/run/secrets/token", &secrets.join("token"), true)],
        "cat /run/secrets/token; echo; touch /run/next",
    );
    assert_eq!(f.ok(&spec), "s3cret\n");
    // /run stays, for what the command wrote next to the mount; the stub
    // /run/secrets and the mount point do not.
    assert_eq!(f.upper_entries(), BTreeSet::from(["run", "run/next"].map(String::from)));
}

#[test]
fn run_mount_file_bind() {
    file_bind_is_readable_and_leaves_nothing(Isolation::Namespaces);
}

#[test]
fn chroot_run_mount_file_bind() {
    file_bind_is_readable_and_leaves_nothing(Isolation::Chroot);
}

fn tmpfs_is_empty_and_not_in_the_diff(isolation: Isolation) {
    let f = Fixture::new();
    let tmpfs = RunMount {
        target: "/etc/tmp".into(),
        kind: MountKind::Tmpfs { size: Some(1 << 20) },
    };
    let spec = mount_spec(&f, isolation, vec![tmpfs], "ls -A /etc/tmp; echo x > /etc/tmp/f && cat /etc/tmp/f");
    assert_eq!(f.ok(&spec), "x\n");
    assert!(f.upper_entries().is_empty(), "{:?}", f.upper_entries());
}

#[test]
fn run_mount_tmpfs() {
    tmpfs_is_empty_and_not_in_the_diff(Isolation::Namespaces);
    let f = Fixture::new();
    let tmpfs = RunMount {
        target: "/t".into(),
        kind: MountKind::Tmpfs { size: Some(1 << 20) },
    };
    let spec = mount_spec(&f, Isolation::Namespaces, vec![tmpfs], "grep ' /t ' /proc/mounts");
    let out = f.ok(&spec);
    assert!(out.contains(" /t tmpfs rw,nosuid,nodev") && out.contains("size=1024k"), "{out}");
}

#[test]
fn chroot_run_mount_tmpfs() {
    tmpfs_is_empty_and_not_in_the_diff(Isolation::Chroot);
}

/// Parents missing from the image are created and taken out of the diff
/// again, also when the command writes next to them; a nested mount sits
/// on the one before it.
fn missing_parents_and_nesting(isolation: Isolation) {
    let f = Fixture::new();
    let outer = host_dir(&f, "outer", &[("o", "o\n")]);
    let inner = host_dir(&f, "inner", &[("i", "i\n")]);
    let mounts = vec![
        bind_mount("/a/b/c", &outer, false),
        bind_mount("/a/b/c/in", &inner, false),
    ];
    let spec = mount_spec(&f, isolation, mounts.clone(), "cat /a/b/c/o /a/b/c/in/i; echo w > /a/b/c/in/w");
    assert_eq!(f.ok(&spec), "o\ni\n");
    assert!(f.upper_entries().is_empty(), "{:?}", f.upper_entries());
    assert_eq!(names_in(&inner), BTreeSet::from(["i", "w"].map(String::from)));
    // The inner mount point, created in the outer source, stays there as it
    // would in a real mount; nothing of the inner source leaks into it.
    assert!(!outer.join("in/i").exists() && !outer.join("in/w").exists());

    fs::remove_dir_all(f.upper()).unwrap();
    fs::create_dir(f.upper()).unwrap();
    let spec = mount_spec(&f, isolation, mounts, "echo n > /a/next");
    f.ok(&spec);
    assert_eq!(f.upper_entries(), BTreeSet::from(["a", "a/next"].map(String::from)));
}

#[test]
fn run_mount_missing_parents_and_nesting() {
    missing_parents_and_nesting(Isolation::Namespaces);
}

#[test]
fn chroot_run_mount_missing_parents_and_nesting() {
    missing_parents_and_nesting(Isolation::Chroot);
}

/// A target reached through the image's symlinks (to an absolute host
/// path, or climbing with `..`) stays inside the root.
fn symlinked_target_stays_inside(isolation: Isolation) {
    let f = Fixture::new();
    let outside = host_dir(&f, "outside", &[]);
    let src = host_dir(&f, "src", &[("f", "in\n")]);
    symlink(&outside, f.lower[0].join("abs")).unwrap();
    symlink("../../../../../../../..", f.lower[0].join("etc/up")).unwrap();
    let mounts = vec![
        bind_mount("/abs/m", &src, false),
        bind_mount("/etc/up/tmp/climbed", &src, false),
    ];
    let check = format!("cat /abs/m/f {}/m/f /tmp/climbed/f", outside.display());
    let spec = mount_spec(&f, isolation, mounts, &check);
    assert_eq!(f.ok(&spec), "in\nin\nin\n");
    assert!(names_in(&outside).is_empty(), "{:?}", names_in(&outside));
    assert!(!Path::new("/tmp/climbed").exists());
    assert!(f.upper_entries().is_empty(), "{:?}", f.upper_entries());
}

#[test]
fn run_mount_through_symlinks_stays_inside_the_root() {
    symlinked_target_stays_inside(Isolation::Namespaces);
}

#[test]
fn chroot_run_mount_through_symlinks_stays_inside_the_root() {
    symlinked_target_stays_inside(Isolation::Chroot);
}

/// A listening socket on the host, answering "pong" to each connection.
fn pong_server(path: &Path) {
    let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            use std::io::Write;
            let _ = stream.and_then(|mut s| s.write_all(b"pong"));
        }
    });
}

#[test]
fn run_mount_unix_socket() {
    let f = Fixture::new();
    let sockets = host_dir(&f, "sockets", &[]);
    pong_server(&sockets.join("agent.sock"));
    let mounts = vec![bind_mount("/run/buildkit/agent", &sockets.join("agent.sock"), false)];
    let spec = mount_spec(&f, Isolation::Namespaces, mounts, "test -S /run/buildkit/agent && echo socket");
    assert_eq!(f.ok(&spec), "socket\n");
    assert!(f.upper_entries().is_empty(), "{:?}", f.upper_entries());
}

/// The chroot isolation's stand-in socket forwards connections: the test
/// connects to it (busybox has no unix-socket client) while the command
/// waits, then lets the command end through a tmpfs.
#[test]
fn chroot_run_mount_unix_socket_forwards() {
    let f = Fixture::new();
    let sockets = host_dir(&f, "sockets", &[]);
    pong_server(&sockets.join("agent.sock"));
    let mounts = vec![
        bind_mount("/run/buildkit/agent", &sockets.join("agent.sock"), false),
        RunMount {
            target: "/sync".into(),
            kind: MountKind::Tmpfs { size: None },
        },
    ];
    let spec = mount_spec(
        &f,
        Isolation::Chroot,
        mounts,
        "test -S /run/buildkit/agent && echo socket; i=0; \
         while [ ! -e /sync/done ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; cat /sync/done",
    );
    let tree = f.dir.path().join("scratch/rootfs");
    let client = std::thread::spawn(move || {
        use std::io::Read;
        let deadline = Instant::now() + Duration::from_secs(15);
        let socket = tree.join("run/buildkit/agent");
        while !fs::symlink_metadata(&socket).map(|m| m.file_type().is_socket()).unwrap_or(false) {
            assert!(Instant::now() < deadline, "no socket in the tree");
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut reply = String::new();
        std::os::unix::net::UnixStream::connect(&socket)
            .unwrap()
            .read_to_string(&mut reply)
            .unwrap();
        fs::write(tree.join("sync/done"), &reply).unwrap();
    });
    assert_eq!(f.ok(&spec), "socket\npong");
    client.join().unwrap();
    assert!(f.upper_entries().is_empty(), "{:?}", f.upper_entries());
}

fn mount_errors_name_the_target(isolation: Isolation) {
    let f = Fixture::new();
    let dir = host_dir(&f, "dir", &[]);
    for (target, message) in [
        ("/etc/passwd", "exists in the image but is not a directory"),
        ("/etc/passwd/sub", "has a parent that is not a directory"),
        ("relative", "the target must be an absolute path"),
    ] {
        let spec = mount_spec(&f, isolation, vec![bind_mount(target, &dir, false)], "true");
        match run(&spec, &mut |_| {}) {
            Err(SandboxError::Mount { target: t, message: m }) => {
                assert_eq!(t, target);
                assert!(m.contains(message), "{target}: {m}");
            }
            other => panic!("{target}: {other:?}"),
        }
        f.assert_no_leftovers();
    }
    let spec = mount_spec(
        &f,
        isolation,
        vec![bind_mount("/bin", &f.lower[0].join("etc/passwd"), false)],
        "true",
    );
    let err = run(&spec, &mut |_| {}).unwrap_err();
    assert!(err.to_string().starts_with("RUN --mount target /bin: "), "{err}");
    assert!(err.to_string().contains("not a regular file"), "{err}");
    f.assert_no_leftovers();
    assert!(f.upper_entries().is_empty(), "{:?}", f.upper_entries());
}

#[test]
fn run_mount_errors_name_the_target() {
    mount_errors_name_the_target(Isolation::Namespaces);
}

#[test]
fn chroot_run_mount_errors_name_the_target() {
    mount_errors_name_the_target(Isolation::Chroot);
}

// ---- pure parts --------------------------------------------------------------

#[test]
fn subid_ranges_by_name_or_uid() {
    let text = "# comment\nalice:100000:65536\nbob:165536:65536\n1001:231072:1000\nalice:300000:10\nbroken\nalice:x:1\nalice:5:0\n";
    assert_eq!(
        parse_subid_ranges(text, Some("alice"), 1000),
        vec![
            SubIdRange {
                start: 100000,
                count: 65536
            },
            SubIdRange {
                start: 300000,
                count: 10
            }
        ]
    );
    assert_eq!(
        parse_subid_ranges(text, Some("carol"), 1001),
        vec![SubIdRange {
            start: 231072,
            count: 1000
        }]
    );
    assert!(parse_subid_ranges(text, None, 4000).is_empty());
}

#[test]
fn id_maps_with_ranges() {
    let subuid = "alice:100000:65536\n";
    let plan = plan_id_maps(
        1000,
        1000,
        Some("alice"),
        Some(subuid),
        Some(subuid),
        true,
        true,
    );
    let IdMapPlan::Ranges { uid_map, gid_map } = plan else {
        panic!("{plan:?}")
    };
    let want = vec![
        IdMapLine {
            inside: 0,
            outside: 1000,
            count: 1,
        },
        IdMapLine {
            inside: 1,
            outside: 100000,
            count: 65536,
        },
    ];
    assert_eq!(uid_map, want);
    assert_eq!(gid_map, want);
    assert_eq!(
        map_args(&uid_map),
        ["0", "1000", "1", "1", "100000", "65536"]
    );

    // Two ranges follow each other inside.
    let two = "alice:100000:10\nalice:200000:5\n";
    let IdMapPlan::Ranges { uid_map, .. } =
        plan_id_maps(1000, 1000, Some("alice"), Some(two), Some(two), true, true)
    else {
        panic!()
    };
    assert_eq!(
        uid_map[2],
        IdMapLine {
            inside: 11,
            outside: 200000,
            count: 5
        }
    );

    // A repeated or overlapping line is mapped once.
    let repeated = "alice:100000:65536\nalice:100000:65536\nalice:150000:10\n";
    let IdMapPlan::Ranges { uid_map, .. } = plan_id_maps(
        1000,
        1000,
        Some("alice"),
        Some(repeated),
        Some(repeated),
        true,
        true,
    ) else {
        panic!()
    };
    assert_eq!(uid_map.len(), 2, "{uid_map:?}");
}

#[test]
fn id_maps_fall_back_to_root_only_with_a_warning() {
    let plan = plan_id_maps(
        1000,
        1000,
        Some("alice"),
        Some("bob:100000:65536\n"),
        None,
        true,
        true,
    );
    let IdMapPlan::Single {
        uid_map,
        gid_map,
        warning,
    } = plan
    else {
        panic!()
    };
    assert_eq!(
        uid_map,
        IdMapLine {
            inside: 0,
            outside: 1000,
            count: 1
        }
    );
    assert_eq!(
        gid_map,
        IdMapLine {
            inside: 0,
            outside: 1000,
            count: 1
        }
    );
    // bob holds 100000-165535: the suggestion overlaps no existing line.
    assert!(warning.contains("alice:165536:65536"), "{warning}");
    assert!(warning.contains("--add-subuids 165536-231071"), "{warning}");
    assert!(warning.contains("/etc/subuid and /etc/subgid"), "{warning}");

    let ranges = "alice:100000:65536\n";
    let plan = plan_id_maps(
        1000,
        1000,
        Some("alice"),
        Some(ranges),
        Some(ranges),
        false,
        true,
    );
    let IdMapPlan::Single { warning, .. } = plan else {
        panic!()
    };
    assert!(
        warning.contains("newuidmap/newgidmap were not found"),
        "{warning}"
    );
}

#[test]
fn the_suggested_range_overlaps_no_line_of_either_file() {
    use super::idmap::free_subid_range;
    let range = |files: &[Option<&str>]| {
        let r = free_subid_range(files, 65536);
        (r.start, r.count)
    };
    assert_eq!(range(&[None, None]), (100_000, 65536));
    assert_eq!(range(&[Some(""), Some("# nothing\n")]), (100_000, 65536));
    // Overlaps in one file or the other, out of order, and a gap too small to use.
    let subuid = "carol:300000:65536\nbob:100000:65536\n";
    let subgid = "dave:165536:100000\nerin:265536:30000\n";
    assert_eq!(range(&[Some(subuid), Some(subgid)]), (365_536, 65536));
    // A gap that fits is used.
    assert_eq!(range(&[Some("bob:100000:65536\ncarol:300000:65536\n"), None]), (165_536, 65536));
    // A line below the minimum does not matter; malformed lines are passed over.
    assert_eq!(range(&[Some("x:1000:10\nbroken\ny:a:b\n"), None]), (100_000, 65536));
}

#[test]
fn blocked_user_namespaces_are_explained() {
    let knobs = |f: fn(&mut Knobs)| {
        let mut k = Knobs::default();
        f(&mut k);
        k
    };
    let (cause, fix) = diagnose(libc::ENOSPC, &knobs(|k| k.max_user_namespaces = Some(0)));
    assert!(
        cause.contains("user.max_user_namespaces is 0")
            && fix.contains("sysctl -w user.max_user_namespaces")
    );
    let (cause, fix) = diagnose(
        libc::EPERM,
        &knobs(|k| k.unprivileged_userns_clone = Some(0)),
    );
    assert!(
        cause.contains("unprivileged_userns_clone") && fix.contains("unprivileged_userns_clone=1")
    );
    let (cause, fix) = diagnose(libc::EPERM, &knobs(|k| k.apparmor_restrict = Some(1)));
    assert!(cause.contains("AppArmor") && fix.contains("userns,"));
    let (cause, fix) = diagnose(libc::EPERM, &knobs(|k| k.seccomp_mode = Some(2)));
    assert!(cause.contains("seccomp") && fix.contains("seccomp"));
    let (cause, _) = diagnose(libc::EPERM, &Knobs::default());
    assert!(cause.contains("Operation not permitted"), "{cause}");
}

#[test]
fn user_resolution_follows_buildkit() {
    let passwd = "root:x:0:0:root:/root:/bin/sh\n# c\nuser:x:1000:1000::/home/user:/bin/sh\nsvc:x:1001:1001:::\n";
    let group = "root:x:0:\nuser:x:1000:\nextra:x:2000:user,svc\nwheel:x:10:user\n";
    let r = |spec| resolve_user(spec, Some(passwd), Some(group));
    assert_eq!(
        r("").unwrap(),
        ExecUser {
            uid: 0,
            gid: 0,
            additional_gids: vec![0],
            home: "/root".into()
        }
    );
    assert_eq!(
        r("user").unwrap(),
        ExecUser {
            uid: 1000,
            gid: 1000,
            additional_gids: vec![1000, 2000, 10],
            home: "/home/user".into()
        }
    );
    assert_eq!(r("1000").unwrap().additional_gids, vec![1000, 2000, 10]);
    assert_eq!(r("user:extra").unwrap().additional_gids, vec![2000]);
    assert_eq!(r("user:4000").unwrap().gid, 4000);
    assert_eq!(r("1000:1000").unwrap().additional_gids, vec![1000]);
    assert_eq!(r("root:root").unwrap().uid, 0);
    assert_eq!(r("svc").unwrap().home, "/");
    let unknown_uid = r("4242").unwrap();
    assert_eq!(
        (unknown_uid.uid, unknown_uid.gid, unknown_uid.home.as_str()),
        (4242, 0, "/")
    );
    assert!(r("ghost")
        .unwrap_err()
        .contains("unable to find user ghost"));
    assert!(r("user:ghosts")
        .unwrap_err()
        .contains("unable to find group ghosts"));
    assert!(r("99999999999").is_err());
    // No files at all: root still works, names do not.
    assert_eq!(resolve_user("", None, None).unwrap().uid, 0);
    assert_eq!(resolve_user("5:6", None, None).unwrap().gid, 6);
    assert!(resolve_user("user", None, None)
        .unwrap_err()
        .contains("no /etc/passwd"));
}

#[test]
fn reports_round_trip() {
    let reports = vec![
        Report::Stub(Stub {
            rel: b"etc/hosts".to_vec(),
            dir: false,
        }),
        Report::Ancestor(Ancestor {
            rel: b"etc".to_vec(),
            mode: 0o755,
            uid: 1,
            gid: 2,
        }),
        Report::Warning("careful".into()),
        Report::Failure(ChildError::of(FailureKind::User, "resolve", "no such user")),
        Report::Status(256),
    ];
    let bytes: Vec<u8> = reports.iter().flat_map(Report::encode).collect();
    assert_eq!(Report::decode_all(&bytes), (reports.clone(), true));
    let (partial, complete) = Report::decode_all(&bytes[..bytes.len() - 2]);
    assert!(!complete);
    assert_eq!(partial, reports[..4]);
}

#[test]
fn output_tail_keeps_the_last_lines() {
    let mut tail = OutputTail::default();
    for i in 0..25 {
        tail.push(format!("l{i}\r\n").as_bytes());
    }
    tail.push(b"part");
    tail.push(b"ial");
    let lines = tail.finish();
    assert_eq!(lines.len(), OUTPUT_TAIL_LINES);
    assert_eq!(lines[0], "l6");
    assert_eq!(lines.last().unwrap(), "partial");
}

#[test]
fn resolv_conf_for_each_network() {
    let host = "search example.com\nnameserver 127.0.0.53\nnameserver 10.0.0.1\noptions edns0\n";
    assert_eq!(etcfiles::resolv_conf_from(host, NetworkMode::Host), host);
    assert_eq!(
        etcfiles::resolv_conf_from(host, NetworkMode::None),
        "search example.com\nnameserver 10.0.0.1\noptions edns0\n"
    );
    assert_eq!(
        etcfiles::resolv_conf_from("nameserver 127.0.0.53\n", NetworkMode::None),
        "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
    );
}

#[test]
fn exit_status_decoding() {
    assert_eq!(super::process::decode_status(3 << 8), ExitKind::Code(3));
    assert_eq!(
        super::process::decode_status(libc::SIGKILL),
        ExitKind::Signal(9)
    );
    assert_eq!(ExitKind::Signal(9).to_string(), "killed by signal 9");
}

// ---- chroot isolation ----------------------------------------------------------

fn chroot_spec(f: &Fixture, script: &str) -> RunSpec {
    let mut spec = f.sh(script);
    spec.isolation = Isolation::Chroot;
    spec
}

#[test]
fn chroot_runs_commands_as_the_user() {
    let f = Fixture::new();
    let (outcome, out) = f.run(&chroot_spec(&f, "echo hi; exit 3"));
    assert_eq!((outcome.exit, out.as_str()), (ExitKind::Code(3), "hi\n"));
    assert!(
        outcome.warnings.iter().any(|w| w.contains("/proc")),
        "{:?}",
        outcome.warnings
    );
    let mut spec = chroot_spec(
        &f,
        "id -u; id -G; pwd; echo $HOME; cat /etc/hostname; echo x > /dev/null && echo null-ok",
    );
    spec.user = "user".into();
    spec.workdir = "/w".into();
    assert_eq!(
        lines(&f.ok(&spec)),
        [
            "1000",
            "1000 2000",
            "/w",
            "/home/user",
            "buildkitsandbox",
            "null-ok"
        ]
    );
    let meta = fs::metadata(f.upper().join("w")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1000, 1000));
    assert_eq!(f.upper_entries(), BTreeSet::from(["w".to_string()]));
}

#[test]
fn chroot_unchanged_tree_gives_an_empty_diff() {
    let f = Fixture::new();
    f.ok(&chroot_spec(
        &f,
        "ls / >/dev/null; cat /etc/passwd >/dev/null",
    ));
    assert!(f.upper_entries().is_empty(), "{:?}", f.upper_entries());
}

#[test]
fn chroot_diff_matches_overlayfs() {
    let mut f = Fixture::new();
    let top = f.add_layer();
    fs::create_dir_all(top.join("data/sub")).unwrap();
    fs::write(top.join("data/old"), "old").unwrap();
    fs::write(top.join("data/sub/x"), "x").unwrap();
    fs::write(top.join("linked"), "shared").unwrap();
    f.ok(&chroot_spec(
        &f,
        "echo data > /new && chown 1000:1000 /new && rm /etc/group && \
         rm -rf /data && mkdir /data && echo n > /data/n && mkdir -p /a/b && touch /a/b/c && \
         ln /linked /linked2 && chmod 700 /bin && echo gone > /dev/made && mkdir -p /proc/x",
    ));
    let upper = f.upper();
    let want: BTreeSet<String> = [
        "a",
        "a/b",
        "a/b/c",
        "bin",
        "data",
        "data/n",
        "etc",
        "etc/group",
        "linked",
        "linked2",
        "new",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(f.upper_entries(), want);
    let new = fs::metadata(upper.join("new")).unwrap();
    assert_eq!((new.uid(), new.gid()), (1000, 1000));
    assert_eq!(fs::read_to_string(upper.join("new")).unwrap(), "data\n");
    let group = fs::symlink_metadata(upper.join("etc/group")).unwrap();
    assert!(group.file_type().is_char_device() && group.rdev() == 0);
    let mut value = [0u8; 4];
    let n =
        rustix::fs::lgetxattr(upper.join("data"), "trusted.overlay.opaque", &mut value).unwrap();
    assert_eq!(&value[..n], b"y");
    assert!(rustix::fs::lgetxattr(upper.join("a"), "trusted.overlay.opaque", &mut value).is_err());
    assert_eq!(
        fs::metadata(upper.join("bin")).unwrap().mode() & 0o7777,
        0o700
    );
    assert_eq!(
        fs::metadata(upper.join("linked")).unwrap().ino(),
        fs::metadata(upper.join("linked2")).unwrap().ino()
    );
    // /etc is only there to hold the whiteout: the layer's own metadata.
    let etc = fs::metadata(upper.join("etc")).unwrap();
    let lower_etc = fs::metadata(f.lower[0].join("etc")).unwrap();
    assert_eq!(etc.mode(), lower_etc.mode());
}

#[test]
fn chroot_applies_lower_whiteouts_and_opaque_dirs() {
    let mut f = Fixture::new();
    let mid = f.add_layer();
    fs::create_dir_all(mid.join("dir")).unwrap();
    fs::write(mid.join("dir/below"), "below").unwrap();
    fs::write(mid.join("file"), "mid\n").unwrap();
    let top = f.add_layer();
    fs::create_dir_all(top.join("dir")).unwrap();
    rustix::fs::lsetxattr(
        top.join("dir"),
        "trusted.overlay.opaque",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    fs::write(top.join("dir/above"), "above").unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        top.join("file"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    )
    .unwrap();
    assert_eq!(
        lines(&f.ok(&chroot_spec(&f, "ls /dir; test -e /file || echo file-gone"))),
        ["above", "file-gone"]
    );
    assert!(f.upper_entries().is_empty(), "{:?}", f.upper_entries());
}

#[test]
fn chroot_kills_background_processes() {
    let f = Fixture::new();
    let (outcome, _) = f.run(&chroot_spec(
        &f,
        "sleep 31418 & (setsid sleep 31419 &) ; echo bye",
    ));
    assert_eq!(outcome.exit, ExitKind::Code(0));
    assert!(
        processes_with("sleep 3141").is_empty(),
        "{:?}",
        processes_with("sleep 3141")
    );
}

#[test]
fn chroot_stdin_and_network_none() {
    let f = Fixture::new();
    let mut spec = chroot_spec(&f, "cat; cat <&3");
    spec.stdin = Some(b"in\n".to_vec());
    spec.extra_files = vec![(3, b"three\n".to_vec())];
    assert_eq!(f.ok(&spec), "in\nthree\n");
    // Without /proc, busybox ifconfig lists the interfaces that are up and
    // have an address, through ioctls.
    let mut spec = chroot_spec(
        &f,
        "ifconfig 2>/dev/null | grep -o '^[a-z0-9]*'; ifconfig lo 2>/dev/null | grep -c UP",
    );
    spec.network = NetworkMode::None;
    assert_eq!(lines(&f.ok(&spec)), ["lo", "1"]);
}
