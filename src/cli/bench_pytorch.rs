//! The PyTorch side of `hepar bench --compare pytorch`: `benches/pytorch/hepar_bench.py serve`
//! as a child process that times one run of a workload per request, so the two engines alternate
//! on the same machine in the same run.

use crate::error::{HeparError, Result};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

const SCRIPT: &str = "benches/pytorch/hepar_bench.py";

/// A running PyTorch benchmark server.
pub struct PytorchBench {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// The version line it reported (`torch 2.x, N threads`).
    pub description: String,
}

/// One timed PyTorch run.
#[derive(Debug, Clone, Copy)]
pub struct PytorchRun {
    pub seconds: f64,
    /// The server's peak resident set since it built the workload (the script keeps one
    /// workload at a time), when the platform reports it.
    pub peak_rss_bytes: Option<u64>,
}

/// The script: `HEPAR_PYTORCH_BENCH`, else `benches/pytorch/hepar_bench.py` here, else in the
/// source tree this binary was built from.
fn script_path() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("HEPAR_PYTORCH_BENCH") {
        return Some(PathBuf::from(path));
    }
    [
        PathBuf::from(SCRIPT),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(SCRIPT),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

impl PytorchBench {
    /// Starts the server with `threads` intra-op threads; the error says why PyTorch cannot be
    /// compared (no python3, no torch, no script).
    pub fn start(threads: usize) -> Result<PytorchBench> {
        let script = script_path().ok_or_else(|| {
            HeparError::Config(format!(
                "{SCRIPT} not found (set HEPAR_PYTORCH_BENCH to its path)"
            ))
        })?;
        let python = std::env::var("HEPAR_PYTHON").unwrap_or_else(|_| "python3".to_string());
        let mut child = Command::new(&python)
            .arg(&script)
            .args(["serve", "--threads", &threads.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| HeparError::Config(format!("cannot start {python}: {e}")))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        let ready = stdout
            .read_line(&mut line)
            .ok()
            .filter(|&n| n > 0)
            .and_then(|_| serde_json::from_str::<serde_json::Value>(&line).ok());
        let Some(ready) = ready else {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            let _ = child.wait();
            let last = err.lines().last().unwrap_or("no output").to_string();
            return Err(HeparError::Config(format!(
                "{python} {} did not start: {last}",
                script.display()
            )));
        };
        let description = format!(
            "torch {}, {} threads",
            ready["torch"].as_str().unwrap_or("?"),
            ready["threads"]
        );
        Ok(PytorchBench {
            child,
            stdin,
            stdout,
            description,
        })
    }

    /// Seconds of one run of `workload` (the first request also warms it up, untimed).
    pub fn time(&mut self, workload: &str) -> Result<f64> {
        Ok(self.run(workload)?.seconds)
    }

    /// One run of `workload`: its seconds and the server's peak resident set so far.
    pub fn run(&mut self, workload: &str) -> Result<PytorchRun> {
        let fail = |msg: String| HeparError::Config(format!("PyTorch bench, {workload}: {msg}"));
        writeln!(self.stdin, "{workload}")
            .and_then(|_| self.stdin.flush())
            .map_err(|e| fail(e.to_string()))?;
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .map_err(|e| fail(e.to_string()))?;
        let reply: serde_json::Value = serde_json::from_str(&line)
            .map_err(|_| fail(format!("unreadable reply `{}`", line.trim())))?;
        if let Some(err) = reply["error"].as_str() {
            return Err(fail(err.to_string()));
        }
        let seconds = reply["seconds"]
            .as_f64()
            .ok_or_else(|| fail(format!("no seconds in `{}`", line.trim())))?;
        Ok(PytorchRun {
            seconds,
            peak_rss_bytes: reply["peak_rss_bytes"].as_u64(),
        })
    }
}

impl Drop for PytorchBench {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
