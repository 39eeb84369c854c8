//! A fixed CPU budget for a child process, so a benchmark can give every instance of a
//! service the same CPU, as if each ran on a machine of its own: a cgroup v1 `cpu` group
//! with a CFS quota when `/sys/fs/cgroup/cpu` is writable (root), else pinning to one CPU
//! with `taskset`. The group is removed on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

/// The cgroup v1 `cpu` hierarchy.
const CPU_CGROUP: &str = "/sys/fs/cgroup/cpu";
/// The CFS period every quota is a share of: one second, so a burst of work (a history
/// commit) runs at full speed within the budget instead of being stretched by throttling
/// every 100 ms, as it would not be on a machine of its own.
const PERIOD_US: u64 = 1_000_000;
/// The group's weight against other processes (1024 is one ordinary process's).
const SHARES: u64 = 8_192;

/// How a budget is enforced.
#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    /// A cgroup with a CFS quota of this many CPUs.
    Quota(f64),
    /// Pinned to this CPU (a whole core, shared with whatever else runs there).
    Pinned(usize),
}

/// A process under a CPU budget.
#[derive(Debug)]
pub struct CpuBudget {
    pid: u32,
    method: Method,
    group: Option<PathBuf>,
}

impl CpuBudget {
    /// Puts `pid` (every thread of it) under a quota of `cpus` CPUs in a cgroup named
    /// after `name`; when cgroups are not writable, pins it to CPU `fallback_cpu` instead.
    pub fn apply(
        name: &str,
        pid: u32,
        cpus: f64,
        fallback_cpu: usize,
    ) -> anyhow::Result<CpuBudget> {
        match quota_group(name, pid, cpus) {
            Ok(group) => Ok(CpuBudget {
                pid,
                method: Method::Quota(cpus),
                group: Some(group),
            }),
            Err(why) => {
                let status = Command::new("taskset")
                    .args([
                        "-a",
                        "-p",
                        "-c",
                        &fallback_cpu.to_string(),
                        &pid.to_string(),
                    ])
                    .stdout(std::process::Stdio::null())
                    .status()
                    .context("run taskset")?;
                if !status.success() {
                    bail!("no cgroup ({why:#}) and taskset failed: {status}");
                }
                Ok(CpuBudget {
                    pid,
                    method: Method::Pinned(fallback_cpu),
                    group: None,
                })
            }
        }
    }

    pub fn method(&self) -> &Method {
        &self.method
    }

    /// One line saying how the budget is enforced.
    pub fn describe(&self) -> String {
        match self.method {
            Method::Quota(cpus) => format!(
                "cgroup v1 cpu quota {cpus} CPU ({} us per {PERIOD_US} us), cpu.shares {SHARES}",
                quota_us(cpus)
            ),
            Method::Pinned(cpu) => format!("taskset: pinned to CPU {cpu} (no writable cgroup)"),
        }
    }

    /// CPU time the process has used so far (user and system, every thread), in seconds.
    pub fn cpu_seconds(&self) -> Option<f64> {
        process_cpu_seconds(self.pid)
    }

    /// CFS periods that ran out of quota so far (`nr_throttled` of the group); `None`
    /// when pinned.
    pub fn throttled_periods(&self) -> Option<u64> {
        let stat = std::fs::read_to_string(self.group.as_ref()?.join("cpu.stat")).ok()?;
        stat.lines()
            .find_map(|l| l.strip_prefix("nr_throttled "))
            .and_then(|v| v.trim().parse().ok())
    }
}

impl Drop for CpuBudget {
    fn drop(&mut self) {
        let Some(group) = &self.group else { return };
        // A group is removed only once empty: what still runs goes back to the root.
        if let Ok(procs) = std::fs::read_to_string(group.join("cgroup.procs")) {
            for pid in procs.lines() {
                let _ = std::fs::write(Path::new(CPU_CGROUP).join("cgroup.procs"), pid);
            }
        }
        let _ = std::fs::remove_dir(group);
    }
}

fn quota_us(cpus: f64) -> u64 {
    ((cpus * PERIOD_US as f64) as u64).max(1_000)
}

/// Creates the group, sets its quota and moves `pid` into it.
fn quota_group(name: &str, pid: u32, cpus: f64) -> anyhow::Result<PathBuf> {
    let group = Path::new(CPU_CGROUP).join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&group).with_context(|| format!("create {}", group.display()))?;
    let setup = || -> anyhow::Result<()> {
        std::fs::write(group.join("cpu.cfs_period_us"), PERIOD_US.to_string())?;
        std::fs::write(group.join("cpu.cfs_quota_us"), quota_us(cpus).to_string())?;
        // The quota is a ceiling; the weight lets the group reach it on a busy machine.
        std::fs::write(group.join("cpu.shares"), SHARES.to_string())?;
        // cgroup.procs moves the whole process, threads it already has included.
        std::fs::write(group.join("cgroup.procs"), pid.to_string())?;
        Ok(())
    };
    if let Err(e) = setup() {
        let _ = std::fs::remove_dir(&group);
        return Err(e.context(format!("set up {}", group.display())));
    }
    Ok(group)
}

/// A process's user and system CPU time from `/proc/PID/stat`, in seconds.
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / clock_ticks() as f64)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on every Linux this runs on).
fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}
