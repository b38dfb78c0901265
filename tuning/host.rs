//! Host check: what on this machine limits a thread-per-core io_uring broker, with the fix for
//! each finding.
//!
//! Invariant: only reads (procfs, sysfs, rlimits, one io_uring_setup probe that is closed at
//! once); never changes the system.

use std::path::Path;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Level {
    Ok,
    Info,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub level: Level,
    pub found: String,
    /// What to do about it (empty when nothing needs doing).
    pub fix: String,
}

fn finding(check: &'static str, level: Level, found: String, fix: &str) -> Finding {
    Finding {
        check,
        level,
        found,
        fix: fix.to_string(),
    }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// The bracketed choice of a sysfs list such as `always [madvise] never`.
pub fn selected(list: &str) -> Option<&str> {
    let start = list.find('[')?;
    let end = list[start..].find(']')? + start;
    Some(&list[start + 1..end])
}

fn io_uring() -> Finding {
    let disabled = read("/proc/sys/kernel/io_uring_disabled").unwrap_or_else(|| "0".into());
    if disabled != "0" {
        return finding(
            "io_uring",
            Level::Fail,
            format!("kernel.io_uring_disabled = {disabled}"),
            "sysctl -w kernel.io_uring_disabled=0 (and persist it in /etc/sysctl.d/)",
        );
    }
    // io_uring_setup(1 entry) with zeroed params: a file descriptor means io_uring works.
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup reads and writes only `params`, which is large enough for the
    // kernel's struct io_uring_params (120 bytes).
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    if fd >= 0 {
        // SAFETY: `fd` is a descriptor this function just received and owns.
        unsafe { libc::close(fd as i32) };
        finding("io_uring", Level::Ok, "available".into(), "")
    } else {
        let e = std::io::Error::last_os_error();
        finding(
            "io_uring",
            Level::Fail,
            format!("io_uring_setup failed: {e}"),
            "use Linux 5.8 or newer with io_uring enabled; in containers allow the io_uring syscalls (seccomp)",
        )
    }
}

fn memlock() -> Finding {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only the struct passed.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) } == 0;
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let want: u64 = 512 << 20;
    if !ok {
        return finding(
            "memlock",
            Level::Warn,
            "cannot read RLIMIT_MEMLOCK".into(),
            "",
        );
    }
    let cur = r.rlim_cur;
    if r.rlim_cur == libc::RLIM_INFINITY || cur >= want {
        let shown = if r.rlim_cur == libc::RLIM_INFINITY {
            "unlimited".into()
        } else {
            format!("{} MiB", cur >> 20)
        };
        finding("memlock", Level::Ok, shown, "")
    } else if root {
        finding(
            "memlock",
            Level::Info,
            format!("{} KiB (root may exceed it)", cur >> 10),
            "",
        )
    } else {
        finding(
            "memlock",
            Level::Warn,
            format!("{} KiB locked memory allowed", cur >> 10),
            "io_uring buffers need locked memory: `ulimit -l unlimited`, or LimitMEMLOCK=infinity in the systemd unit",
        )
    }
}

fn governor() -> Finding {
    let mut govs: Vec<String> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/sys/devices/system/cpu") {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with("cpu") && name[3..].chars().all(|c| c.is_ascii_digit()) {
                if let Some(g) = read(&format!(
                    "/sys/devices/system/cpu/{name}/cpufreq/scaling_governor"
                )) {
                    govs.push(g);
                }
            }
        }
    }
    govs.sort();
    govs.dedup();
    match govs.as_slice() {
        [] => finding("cpu governor", Level::Info, "no cpufreq (virtual machine?)".into(), ""),
        [g] if g == "performance" => finding("cpu governor", Level::Ok, g.clone(), ""),
        _ => finding(
            "cpu governor",
            Level::Warn,
            govs.join(","),
            "frequency scaling adds latency when a core wakes: `cpupower frequency-set -g performance`",
        ),
    }
}

fn cores(requested: Option<usize>) -> Finding {
    let n = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    match requested {
        Some(c) if c > n => finding(
            "cores",
            Level::Warn,
            format!("--cores {c} but only {n} usable cores"),
            "use --cores at most the usable cores: two shards on one core take turns and double the latency tail",
        ),
        Some(c) if c == n => finding(
            "cores",
            Level::Info,
            format!("{n} cores, all used by the broker"),
            "leave a core for the kernel's network and io_uring workers if clients share the host",
        ),
        Some(c) => finding("cores", Level::Ok, format!("{c} of {n} cores"), ""),
        None => finding("cores", Level::Ok, format!("{n} usable cores"), ""),
    }
}

fn scheduler(data_dir: &Path) -> Finding {
    use std::os::unix::fs::MetadataExt;
    let dir = if data_dir.exists() {
        data_dir
    } else {
        Path::new(".")
    };
    let Ok(meta) = std::fs::metadata(dir) else {
        return finding(
            "disk scheduler",
            Level::Info,
            format!("cannot stat {}", dir.display()),
            "",
        );
    };
    let (major, minor) = (libc::major(meta.dev()), libc::minor(meta.dev()));
    let base = format!("/sys/dev/block/{major}:{minor}");
    let s = read(&format!("{base}/queue/scheduler"))
        .or_else(|| read(&format!("{base}/../queue/scheduler")));
    let Some(s) = s else {
        return finding(
            "disk scheduler",
            Level::Info,
            format!("no block queue for {major}:{minor} (tmpfs, overlay?)"),
            "",
        );
    };
    let active = selected(&s).unwrap_or(&s).to_string();
    match active.as_str() {
        "none" | "mq-deadline" | "kyber" => finding("disk scheduler", Level::Ok, active, ""),
        _ => finding(
            "disk scheduler",
            Level::Warn,
            active,
            "on SSD/NVMe use `none` or `mq-deadline`: echo none > /sys/block/<dev>/queue/scheduler",
        ),
    }
}

fn thp() -> Finding {
    let Some(s) = read("/sys/kernel/mm/transparent_hugepage/enabled") else {
        return finding(
            "transparent huge pages",
            Level::Info,
            "not available".into(),
            "",
        );
    };
    match selected(&s) {
        Some("always") => finding(
            "transparent huge pages",
            Level::Warn,
            "always".into(),
            "background compaction causes latency spikes: echo madvise > /sys/kernel/mm/transparent_hugepage/enabled",
        ),
        Some(v) => finding("transparent huge pages", Level::Ok, v.to_string(), ""),
        None => finding("transparent huge pages", Level::Info, s, ""),
    }
}

fn swappiness() -> Finding {
    match read("/proc/sys/vm/swappiness").and_then(|s| s.parse::<u32>().ok()) {
        Some(v) if v > 10 => finding(
            "swappiness",
            Level::Warn,
            v.to_string(),
            "the page cache serves fetches; swapping the broker out costs far more: sysctl -w vm.swappiness=1",
        ),
        Some(v) => finding("swappiness", Level::Ok, v.to_string(), ""),
        None => finding("swappiness", Level::Info, "unknown".into(), ""),
    }
}

/// Runs every check.
pub fn check(data_dir: &Path, requested_cores: Option<usize>) -> Vec<Finding> {
    vec![
        io_uring(),
        memlock(),
        cores(requested_cores),
        governor(),
        scheduler(data_dir),
        thp(),
        swappiness(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sysfs_selections() {
        assert_eq!(selected("always [madvise] never"), Some("madvise"));
        assert_eq!(selected("[none] mq-deadline"), Some("none"));
        assert_eq!(selected("none"), None);
    }

    #[test]
    fn core_count_checks() {
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        assert_eq!(cores(Some(n + 1)).level, Level::Warn);
        assert_eq!(cores(Some(n)).level, Level::Info);
        assert_eq!(cores(None).level, Level::Ok);
    }

    #[test]
    fn every_check_reports_and_warnings_carry_a_fix() {
        let f = check(Path::new("."), None);
        assert_eq!(f.len(), 7);
        for x in &f {
            if matches!(x.level, Level::Warn | Level::Fail) {
                assert!(!x.fix.is_empty(), "{x:?}");
            }
        }
    }
}
