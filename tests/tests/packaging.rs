//! The Debian packages and the systemd units, checked with the real tools: the package
//! script builds both packages from the debug binaries, their contents and modes are
//! read back with dpkg-deb, they are unpacked into a throwaway root where the maintainer
//! scripts run (against stubbed adduser, chown, deb-systemd-helper... that log their
//! calls) through install, reinstall, remove and purge; lintian finds no error; the units pass
//! `systemd-analyze verify` and rate at most 2.5 in `systemd-analyze security`.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use system_tests::process::bin;
use system_tests::workspace_root;

/// The highest `systemd-analyze security` exposure a unit may have.
const MAX_EXPOSURE: f64 = 2.5;

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds both packages into `out` from the binaries beside this test.
fn build_debs(out: &Path) -> Vec<PathBuf> {
    let bin_dir = bin("host-app").parent().expect("bin dir").to_path_buf();
    let profile = bin_dir.file_name().expect("profile dir").to_owned();
    let target = bin_dir.parent().expect("target dir");
    let built = run(
        Command::new(workspace_root().join("packaging/build-debs.sh"))
            .arg("--target-dir")
            .arg(target)
            .arg("--profile")
            .arg(&profile)
            .arg("--out")
            .arg(out),
    );
    text(&built).lines().map(PathBuf::from).collect()
}

/// Debian's package checker: errors fail, warnings (config 0640, no manual pages) pass.
fn lintian_finds_no_error(debs: &[PathBuf]) {
    let out = Command::new("lintian")
        .args(["--tag-display-limit", "0"])
        .args(debs)
        .output()
        .expect("lintian is not installed: tests/run.sh installs it (apt-get install lintian)");
    let report = text(&out);
    let errors: Vec<&str> = report.lines().filter(|l| l.starts_with("E: ")).collect();
    assert!(errors.is_empty(), "lintian errors:\n{}", errors.join("\n"));
}

/// The packages owning the programs the unit's `Exec*=` lines run (other than the
/// package's own binaries), as this machine's dpkg knows them: `/bin/kill` is procps.
fn packages_the_unit_runs(pkg: &str) -> BTreeSet<String> {
    let unit = std::fs::read_to_string(
        workspace_root()
            .join("systemd")
            .join(format!("{pkg}.service")),
    )
    .expect("read the unit");
    let mut owners = BTreeSet::new();
    for line in unit.lines().filter(|l| l.starts_with("Exec")) {
        let (_, command) = line.split_once('=').expect("Exec*=value");
        let program = command.trim_start_matches(['-', '@', '+', '!', ':']);
        let program = program.split_whitespace().next().expect("a program");
        if program.starts_with("/usr/bin/") && program.ends_with(pkg) {
            continue;
        }
        let found = run(Command::new("dpkg").arg("-S").arg(program));
        let owner = text(&found)
            .split(':')
            .next()
            .expect("package: path")
            .trim()
            .to_owned();
        owners.insert(owner);
    }
    assert!(
        owners.contains("procps"),
        "ExecReload's kill(1): {owners:?}"
    );
    owners
}

/// `dpkg-deb -c`: path (without the leading `.`) to its mode string and owner.
fn listing(deb: &Path) -> Vec<(String, String, String)> {
    text(&run(Command::new("dpkg-deb").arg("-c").arg(deb)))
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let path = fields[5].trim_start_matches('.').to_owned();
            (path, fields[0].to_owned(), fields[1].to_owned())
        })
        .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Every file and directory under `root`, relative.
fn tree(root: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let path = entry.expect("dir entry").path();
            found.insert(path.strip_prefix(root).unwrap().display().to_string());
            if path.is_dir() && !path.is_symlink() {
                todo.push(path);
            }
        }
    }
    found
}

/// Stubs of the system tools the maintainer scripts call; each logs its arguments.
/// `getent` answers from the users and groups `adduser` made.
fn stubs(dir: &Path) -> (PathBuf, PathBuf) {
    let bin = dir.join("stub-bin");
    let state = dir.join("stub-state");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("group.dialout"), "").unwrap();
    let log = dir.join("calls.log");
    let logger = format!("echo \"$(basename \"$0\") $*\" >> '{}'\n", log.display());
    let state = state.display();
    let scripts = [
        ("getent", format!("[ -e '{state}'/\"$1.$2\" ]")),
        (
            "adduser",
            format!(
                "{logger}if [ \"$1\" = --system ]; then for n; do name=$n; done; touch '{state}'/passwd.\"$name\" '{state}'/group.\"$name\"; fi"
            ),
        ),
        (
            "deluser",
            format!("{logger}for n; do name=$n; done; rm -f '{state}'/passwd.\"$name\""),
        ),
        (
            "delgroup",
            format!("{logger}for n; do name=$n; done; rm -f '{state}'/group.\"$name\""),
        ),
        ("chown", logger.clone()),
        (
            "deb-systemd-helper",
            format!("{logger}[ \"$2\" != was-enabled ] || [ ! -e '{state}'/enabled ]"),
        ),
        ("deb-systemd-invoke", logger.clone()),
        ("systemctl", logger.clone()),
    ];
    for (name, body) in scripts {
        let path = bin.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    (bin, log)
}

/// Runs one maintainer script of the unpacked package in `root`, with the stubs first on PATH.
fn maintainer_script(control: &Path, script: &str, arg: &str, root: &Path, stub_bin: &Path) {
    let path = format!(
        "{}:{}",
        stub_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    run(Command::new("sh")
        .arg(control.join(script))
        .arg(arg)
        .env("DPKG_ROOT", root)
        .env("PATH", path));
}

fn calls(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

struct Expect {
    package: &'static str,
    binaries: &'static [&'static str],
    conffiles: &'static [&'static str],
}

const PACKAGES: [Expect; 2] = [
    Expect {
        package: "edge-node",
        binaries: &["edge-node", "plant-sim"],
        conffiles: &[
            "/etc/edge-node/edge-node.toml",
            "/etc/edge-node/modbus-tags.example.csv",
        ],
    },
    Expect {
        package: "host-app",
        binaries: &["host-app"],
        conffiles: &["/etc/host-app/host-app.toml"],
    },
];

#[test]
fn packages_hold_the_binaries_units_and_conffiles_and_their_scripts_install_and_purge_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let debs = build_debs(&dir.path().join("out"));
    assert_eq!(debs.len(), 2, "{debs:?}");
    let arch = text(&run(Command::new("dpkg").arg("--print-architecture")));
    lintian_finds_no_error(&debs);
    for (expect, deb) in PACKAGES.iter().zip(&debs) {
        let pkg = expect.package;
        let name = deb.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with(&format!("{pkg}_"))
                && name.ends_with(&format!("_{}.deb", arch.trim())),
            "{name}"
        );
        let field = |f: &str| text(&run(Command::new("dpkg-deb").arg("-f").arg(deb).arg(f)));
        assert_eq!(field("Package").trim(), pkg);
        assert_eq!(field("Architecture").trim(), arch.trim());
        let depends = field("Depends");
        for needed in packages_the_unit_runs(pkg) {
            assert!(
                depends.split(',').any(|d| d.trim() == needed),
                "{pkg}: the unit runs a program of {needed}, Depends: {depends}"
            );
        }
        assert!(
            depends.contains("adduser"),
            "adduser and deluser in the scripts"
        );

        // Contents: owned by root, with the modes the layout promises.
        let files = listing(deb);
        let entry = |path: &str| {
            files
                .iter()
                .find(|(p, _, _)| p == path)
                .unwrap_or_else(|| panic!("{pkg}: no {path} in {files:?}"))
        };
        assert!(
            files.iter().all(|(_, _, owner)| owner == "root/root"),
            "{files:?}"
        );
        for b in expect.binaries {
            assert_eq!(entry(&format!("/usr/bin/{b}")).1, "-rwxr-xr-x");
        }
        assert_eq!(
            entry(&format!("/lib/systemd/system/{pkg}.service")).1,
            "-rw-r--r--"
        );
        for c in expect.conffiles {
            assert_eq!(entry(c).1, "-rw-r-----", "{c}");
        }

        // Control files: conffiles listed, maintainer scripts executable and `sh -n` clean.
        let control = dir.path().join(format!("{pkg}-control"));
        run(Command::new("dpkg-deb").arg("-e").arg(deb).arg(&control));
        let conffiles: Vec<String> = std::fs::read_to_string(control.join("conffiles"))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(conffiles, expect.conffiles);
        for script in ["postinst", "prerm", "postrm"] {
            let path = control.join(script);
            assert_eq!(mode(&path), 0o755, "{pkg} {script}");
            let body = std::fs::read_to_string(&path).unwrap();
            assert!(
                body.starts_with("#!/bin/sh\n") && body.contains("\nset -e\n"),
                "{script}"
            );
            assert!(!body.contains("@PKG@"), "{script} keeps a placeholder");
            run(Command::new("sh").arg("-n").arg(&path));
        }

        // Unpacked into a throwaway root: the files land with their modes.
        let root = dir.path().join(format!("{pkg}-root"));
        run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&root));
        for b in expect.binaries {
            assert_eq!(mode(&root.join(format!("usr/bin/{b}"))), 0o755);
        }
        for c in expect.conffiles {
            assert_eq!(mode(&root.join(c.trim_start_matches('/'))), 0o640);
        }

        // postinst configure, twice: one system user, config readable by its group only,
        // state 0700, the unit enabled; nothing started outside a running systemd.
        let (stub_bin, log) = stubs(&dir.path().join(format!("{pkg}-stubs")));
        maintainer_script(&control, "postinst", "configure", &root, &stub_bin);
        let first = calls(&log);
        let adduser = format!(
            "adduser --system --group --no-create-home --home /var/lib/{pkg} --gecos {pkg} service {pkg}"
        );
        assert!(first.contains(&adduser), "{first:?}");
        let etc = root.join("etc").join(pkg);
        assert!(
            first.contains(&format!("chown root:{pkg} {}", etc.display())),
            "{first:?}"
        );
        let state = root.join("var/lib").join(pkg);
        assert!(
            first.contains(&format!("chown {pkg}:{pkg} {}", state.display())),
            "{first:?}"
        );
        assert!(
            first.contains(&format!("deb-systemd-helper enable {pkg}.service")),
            "{first:?}"
        );
        assert!(
            first.iter().all(|c| !c.starts_with("deb-systemd-invoke")),
            "{first:?}"
        );
        assert_eq!(
            first.contains(&format!("adduser {pkg} dialout")),
            pkg == "edge-node",
            "only the edge node joins dialout: {first:?}"
        );
        assert_eq!(mode(&etc), 0o750);
        assert_eq!(mode(&state), 0o700);
        maintainer_script(&control, "postinst", "configure", &root, &stub_bin);
        let second = calls(&log)[first.len()..].to_vec();
        assert!(
            second.iter().all(|c| !c.starts_with("adduser --system")),
            "{second:?}"
        );

        // Remove, then purge: the unit masked then forgotten, state, config and user gone.
        std::fs::write(state.join("history"), "kept until purge").unwrap();
        maintainer_script(&control, "prerm", "remove", &root, &stub_bin);
        for (path, _, _) in &files {
            let on_disk = root.join(path.trim_start_matches('/'));
            if on_disk.is_file() && !expect.conffiles.contains(&path.as_str()) {
                std::fs::remove_file(on_disk).unwrap(); // what dpkg removes
            }
        }
        maintainer_script(&control, "postrm", "remove", &root, &stub_bin);
        assert!(state.join("history").exists(), "remove keeps the state");
        maintainer_script(&control, "postrm", "purge", &root, &stub_bin);
        let purge = calls(&log);
        assert!(
            purge.contains(&format!("deb-systemd-helper purge {pkg}.service")),
            "{purge:?}"
        );
        assert!(
            purge.contains(&format!("deluser --system --quiet {pkg}")),
            "{purge:?}"
        );
        assert!(
            !etc.exists() && !state.exists(),
            "purge leaves {:?}",
            tree(&root)
        );
        let left: Vec<String> = tree(&root)
            .into_iter()
            .filter(|p| !root.join(p).is_dir())
            .collect();
        assert!(left.is_empty(), "{pkg}: files left after purge: {left:?}");
    }
}

/// A root holding the binaries where the units name them, for `systemd-analyze verify`.
fn unit_root(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::fs::create_dir_all(root.join("lib/systemd/system")).unwrap();
    for b in ["edge-node", "host-app"] {
        std::fs::copy(bin(b), root.join("usr/bin").join(b)).unwrap();
    }
    // ExecReload's kill(1), where the units name it.
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/kill", root.join("bin/kill")).expect("kill(1) at /bin/kill");
    // The targets and slices the units order against, from this machine's systemd.
    for entry in std::fs::read_dir("/lib/systemd/system").expect("systemd's unit directory") {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if (name.ends_with(".target") || name.ends_with(".slice")) && path.is_file() {
            std::fs::copy(&path, root.join("lib/systemd/system").join(&name)).unwrap();
        }
    }
    root
}

#[test]
fn units_verify_and_rate_at_most_2_5_in_systemd_analyze_security() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = unit_root(dir.path());
    for unit in ["edge-node.service", "host-app.service"] {
        let source = workspace_root().join("systemd").join(unit);
        let installed = root.join("lib/systemd/system").join(unit);
        std::fs::copy(&source, &installed).unwrap();
        let verify = run(Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", root.display()))
            .arg(&installed));
        let complaints = String::from_utf8_lossy(&verify.stderr).into_owned();
        assert!(
            !complaints.contains(unit),
            "systemd-analyze verify {unit}: {complaints}"
        );

        let security = Command::new("systemd-analyze")
            .args(["security", "--no-pager", "--offline=true"])
            .arg(&source)
            .output()
            .expect("run systemd-analyze security");
        let report = text(&security);
        let exposure: f64 = report
            .lines()
            .find_map(|l| {
                l.split_once("Overall exposure level for ")?
                    .1
                    .split(": ")
                    .nth(1)
            })
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level for {unit}: {report}"));
        assert!(
            exposure <= MAX_EXPOSURE,
            "{unit}: exposure {exposure} above {MAX_EXPOSURE}\n{report}"
        );
    }
}

#[test]
fn units_run_the_packaged_binaries_as_their_own_users() {
    for (unit, user) in [
        ("edge-node.service", "edge-node"),
        ("host-app.service", "host-app"),
    ] {
        let body = std::fs::read_to_string(workspace_root().join("systemd").join(unit)).unwrap();
        let lines: Vec<&str> = body.lines().collect();
        assert!(lines.contains(&format!("User={user}").as_str()), "{unit}");
        assert!(lines.contains(&"Type=notify"), "{unit}");
        assert!(lines.contains(&"WatchdogSec=30"), "{unit}");
        assert!(
            lines.contains(&"ExecReload=/bin/kill -HUP $MAINPID"),
            "{unit}"
        );
        assert!(lines.contains(&"UMask=0077"), "{unit}");
        let exec: Vec<&&str> = lines
            .iter()
            .filter(|l| l.starts_with("ExecStart"))
            .collect();
        assert!(
            exec.iter()
                .all(|l| l.contains(&format!("=/usr/bin/{user} "))),
            "{unit}: {exec:?}"
        );
        assert!(exec.iter().any(|l| l.contains(" check-config ")), "{unit}");
    }
    let host =
        std::fs::read_to_string(workspace_root().join("config/host-app.example.toml")).unwrap();
    // No web login yet: the packaged host serves its API on loopback only.
    assert!(host.contains("listen = \"127.0.0.1:8080\""));
}

/// The host unit's descriptor limit covers the embedded broker's connection limits as
/// the packaged configuration sets them: 3 descriptors per logged-in connection (client
/// socket and both ends of the loopback link to the engine), 1 per pending socket, and
/// 256 for listeners, API clients and SQLite.
#[test]
fn host_unit_open_files_limit_covers_the_broker_connection_limits() {
    let unit = std::fs::read_to_string(workspace_root().join("systemd/host-app.service")).unwrap();
    let limit: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("LimitNOFILE="))
        .expect("host-app.service sets LimitNOFILE")
        .parse()
        .unwrap();
    let config: toml::Table = toml::from_str(
        &std::fs::read_to_string(workspace_root().join("config/host-app.example.toml")).unwrap(),
    )
    .unwrap();
    let embedded = &config["broker"]["embedded"];
    let key = |k: &str| {
        embedded[k]
            .as_integer()
            .unwrap_or_else(|| panic!("broker.embedded.{k} in the example configuration"))
            as u64
    };
    let needed = 3 * key("max_connections") + key("max_pending_connections") + 256;
    assert!(limit >= needed, "LimitNOFILE={limit}, needed {needed}");
}
