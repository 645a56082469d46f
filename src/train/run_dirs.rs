//! Where runs go when no `--out` is given: a new folder per run, `runs/<name>-<UTC timestamp>`
//! (so running the same command twice never collides with the first run), and `runs/latest`, a
//! symbolic link to the newest run, for the user and for `--resume`.

use crate::error::{HeparError, Result};
use std::path::{Path, PathBuf};

/// The folder holding every run.
pub const RUNS: &str = "runs";
/// The link to the newest run inside [`RUNS`].
pub const LATEST: &str = "latest";

/// `YYYYMMDD-HHMMSS` of a time in seconds since 1970 (UTC), from the proleptic Gregorian
/// calendar's day count.
pub fn utc_timestamp(unix_seconds: u64) -> String {
    let days = (unix_seconds / 86_400) as i64;
    let secs = unix_seconds % 86_400;
    // Civil date from the day count (Howard Hinnant's days-to-civil algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A new, empty run folder `runs/<name>-<timestamp>` (with `-2`, `-3`... when that second is
/// taken), created.
pub fn new_run_dir(runs: &Path, name: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(runs).map_err(|e| HeparError::io(runs, e))?;
    let stem = format!("{name}-{}", utc_timestamp(now_seconds()));
    // Far more runs than one second can start; past that something else is wrong.
    for k in 1..=1000 {
        let dir = match k {
            1 => runs.join(&stem),
            k => runs.join(format!("{stem}-{k}")),
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(HeparError::io(&dir, e)),
        }
    }
    Err(HeparError::invalid(
        "train",
        format!(
            "{}: every run folder name for {stem} is taken",
            runs.display()
        ),
    ))
}

/// Points `runs/latest` at `run` (a folder inside `runs`), replacing the old link atomically.
pub fn point_latest(runs: &Path, run: &Path) -> Result<()> {
    let link = runs.join(LATEST);
    let target = run
        .strip_prefix(runs)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| run.to_path_buf());
    let tmp = runs.join(format!(".{LATEST}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    symlink(&target, &tmp).map_err(|e| HeparError::io(&tmp, e))?;
    std::fs::rename(&tmp, &link).map_err(|e| HeparError::io(&link, e))
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    // No cheap directory links elsewhere: a text file naming the run instead.
    std::fs::write(link, target.to_string_lossy().as_bytes())
}

/// The run `--resume` continues when no `--out` is given: `runs/latest` when it is a run of
/// `name`, else the newest `runs/<name>-<timestamp>` folder, else the folder `runs/<name>` of
/// older versions.
pub fn latest_run_dir(runs: &Path, name: &str) -> Result<PathBuf> {
    let prefix = format!("{name}-");
    let is_ours = |dir_name: &str| {
        dir_name
            .strip_prefix(&prefix)
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
    };
    if let Ok(target) = std::fs::read_link(runs.join(LATEST)) {
        if target
            .file_name()
            .is_some_and(|n| is_ours(&n.to_string_lossy()))
        {
            return Ok(runs.join(target));
        }
    }
    let mut ours: Vec<String> = std::fs::read_dir(runs)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| is_ours(n))
                .collect()
        })
        .unwrap_or_default();
    // Timestamps sort as text; a `-k` suffix sorts after its second's first run.
    ours.sort_by_key(|n| {
        let rest = &n[prefix.len()..];
        let (stamp, k) = match rest.get(15..).and_then(|s| s.strip_prefix('-')) {
            Some(k) => (&rest[..15], k.parse::<u64>().unwrap_or(0)),
            None => (rest, 1),
        };
        (stamp.to_string(), k)
    });
    if let Some(newest) = ours.last() {
        return Ok(runs.join(newest));
    }
    let legacy = runs.join(name);
    if legacy.is_dir() {
        return Ok(legacy);
    }
    Err(HeparError::invalid(
        "train --resume",
        format!(
            "no {name} run in {} to resume; pass the run folder with --out",
            runs.display()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_follow_the_calendar() {
        assert_eq!(utc_timestamp(0), "19700101-000000");
        // 2000-02-29 12:34:56 UTC (a leap day).
        assert_eq!(utc_timestamp(951_827_696), "20000229-123456");
        // 2026-12-03 13:19:11 UTC.
        assert_eq!(utc_timestamp(1_796_303_951), "20261203-131911");
    }

    #[test]
    fn new_folders_never_collide_and_latest_finds_the_newest() {
        let runs = std::env::temp_dir().join(format!("hepar-run-dirs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&runs);
        let a = new_run_dir(&runs, "liver").unwrap();
        let b = new_run_dir(&runs, "liver").unwrap();
        assert_ne!(a, b);
        assert!(a.is_dir() && b.is_dir());
        new_run_dir(&runs, "tumor").unwrap();
        assert_eq!(latest_run_dir(&runs, "liver").unwrap(), b);
        point_latest(&runs, &a).unwrap();
        assert_eq!(latest_run_dir(&runs, "liver").unwrap(), a);
        assert!(runs.join(LATEST).join(".").is_dir());
        let err = latest_run_dir(&runs, "unet3d_3class")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no unet3d_3class run"), "{err}");
        std::fs::remove_dir_all(&runs).unwrap();
    }
}
