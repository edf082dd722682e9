//! PSS (`/proc/PID/smaps_rollup`) of processes, for the benchmarks (included with
//! `#[path]`). PSS shares each page among the processes that map it, so a sum over
//! processes is what they really cost (summed RSS counts shared pages once per process).

use std::path::Path;

/// Summed PSS in KiB of every process for which `pick(pid, exe)` is true.
pub fn pss_kib(pick: impl Fn(u32, Option<&Path>) -> bool) -> f64 {
    let mut total = 0.0;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let exe = std::fs::read_link(e.path().join("exe")).ok();
        if !pick(pid, exe.as_deref()) {
            continue;
        }
        let Ok(rollup) = std::fs::read_to_string(e.path().join("smaps_rollup")) else {
            continue;
        };
        for line in rollup.lines() {
            if let Some(v) = line.strip_prefix("Pss:") {
                total += v
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .unwrap_or(0.0);
            }
        }
    }
    total
}
