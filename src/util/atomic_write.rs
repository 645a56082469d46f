//! Atomic file writes: write a temporary file beside the target, sync it, then rename it into
//! place, so a crash never leaves a half-written output or checkpoint behind.

use crate::error::{HeparError, Result};
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically (temp file in the same folder + rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// Like [`write_atomic`], with a closure that streams the content into the temporary file.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| HeparError::io(&dir, e))?;
    let file_name = path
        .file_name()
        .ok_or_else(|| HeparError::format(path, "not a file path"))?
        .to_string_lossy()
        .into_owned();
    let tmp = dir.join(temp_name(&file_name, std::process::id()));
    let result = (|| {
        let file = std::fs::File::create(&tmp)?;
        let mut writer = std::io::BufWriter::new(file);
        fill(&mut writer)?;
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(HeparError::io(path, e));
    }
    Ok(())
}

/// The temporary file a write of `file_name` by process `pid` goes through.
fn temp_name(file_name: &str, pid: u32) -> String {
    format!(".{file_name}.{pid}.tmp")
}

/// The writing process's id when `name` is one of our temporary files.
fn temp_file_pid(name: &str) -> Option<u32> {
    let inner = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (file_name, pid) = inner.rsplit_once('.')?;
    if file_name.is_empty() {
        return None;
    }
    pid.parse().ok()
}

/// Whether process `pid` still runs (a write of its may be under way). Without /proc, every
/// other process counts as running, so nothing of theirs is removed.
fn process_runs(pid: u32) -> bool {
    if pid == std::process::id() {
        return false;
    }
    let proc_root = Path::new("/proc");
    !proc_root.is_dir() || proc_root.join(pid.to_string()).exists()
}

/// Removes the temporary files that writes killed before their rename left in `dir`, those of
/// processes no longer running; returns the paths removed. A missing folder has none.
pub fn remove_stale_temp_files(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(HeparError::io(dir, e)),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| HeparError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = temp_file_pid(&name).is_some_and(|pid| !process_runs(pid));
        if stale && entry.file_type().is_ok_and(|t| t.is_file()) {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|e| HeparError::io(&path, e))?;
            removed.push(path);
        }
    }
    removed.sort();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_temp_files_of_dead_processes_are_removed_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("hepar-stale-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // No process has this id (above the kernel's pid_max); ours counts as dead too, since
        // a temp file of ours at a fresh start is from nothing under way.
        let dead = dir.join(temp_name("last.safetensors", 4_194_305));
        let own = dir.join(temp_name("history.csv", std::process::id()));
        let live = dir.join(temp_name("best.safetensors", 1)); // init always runs
        let kept = [
            "last.safetensors",
            ".hidden",
            ".x.tmp",
            ".a.b.tmp",
            "notes.123.tmp",
        ];
        for p in [&dead, &own, &live] {
            std::fs::write(p, b"partial").unwrap();
        }
        for k in kept {
            std::fs::write(dir.join(k), b"keep").unwrap();
        }
        let removed = remove_stale_temp_files(&dir).unwrap();
        let mut want = vec![dead.clone(), own.clone()];
        want.sort();
        assert_eq!(removed, want);
        assert!(!dead.exists() && !own.exists());
        assert!(live.exists(), "a running process's temp file was removed");
        for k in kept {
            assert!(dir.join(k).exists(), "{k} was removed");
        }
        assert!(remove_stale_temp_files(&dir.join("missing"))
            .unwrap()
            .is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn atomic_write_replaces_content_and_leaves_no_temp_file() {
        let dir = std::env::temp_dir().join(format!("hepar-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("out.bin");
        write_atomic(&target, b"first").unwrap();
        write_atomic(&target, b"second").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"second");
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
