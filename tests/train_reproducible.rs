//! Training is reproducible to the bit: two runs of one configuration give the same weights,
//! optimizer state and history (timings aside), and a `hepar train` killed at a random moment
//! (SIGKILL, mid-epoch or mid-write) and resumed ends exactly where the uninterrupted run does.
//! Every folder a kill leaves is consistent: its checkpoint loads, its history.csv never runs
//! ahead of the checkpoint, and the next start removes the temporary files of killed writes.
//! Ctrl-C (SIGINT) stops after the step under way with a checkpoint that resumes exactly there.

mod common;

use hepar::train::history::{read_history, EpochRecord};
use hepar::train::run_checkpoint::LoadedRun;
use hepar::train::{load_run_checkpoint, train, Stage, TrainOptions, TrainParameters};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const EPOCHS: u64 = 4;

fn temp_dir(tag: &str) -> PathBuf {
    common::tiny_data::temp_dir("repro", tag)
}

/// Three 16x32x32 phantoms, width-8 networks, a few short epochs.
fn tiny_config(dir: &Path) -> String {
    tiny_config_with(dir, 2)
}

/// [`tiny_config`] with `tumor_batches` batches per tumour epoch.
fn tiny_config_with(dir: &Path, tumor_batches: usize) -> String {
    let sections = common::tiny_data::tiny_data_sections(dir, 2);
    format!(
        r#"{sections}
[train.liver]
epochs = {EPOCHS}

[train.tumor]
epochs = {EPOCHS}
batch_size = 4
batches_per_epoch = {tumor_batches}

[model.liver]
width = 8

[model.tumor]
width = 8
"#
    )
}

fn options(stage: Stage, run_dir: PathBuf, resume: bool) -> TrainOptions {
    TrainOptions {
        arch: None,
        stage,
        run_dir,
        epochs: None,
        resume,
        extend_epochs: None,
        show_progress: false,
        device: hepar::backend::Device::Cpu,
        liver_boxes: None,
    }
}

/// A score's bits; a missing score (never the case in these runs) is NaN's.
fn score_bits(score: Option<f64>) -> u64 {
    score.unwrap_or(f64::NAN).to_bits()
}

/// A history's bits, `seconds` (wall time) left out.
fn history_bits(history: &[EpochRecord]) -> Vec<[u64; 8]> {
    history
        .iter()
        .map(|r| {
            [
                r.epoch,
                r.train_loss.to_bits(),
                r.val_loss.to_bits(),
                r.val_dice.to_bits(),
                score_bits(r.val_iou),
                score_bits(r.val_precision),
                score_bits(r.val_recall),
                r.learning_rate.to_bits(),
            ]
        })
        .collect()
}

/// Everything a checkpoint says about where training stands, as bytes and bits.
#[derive(Debug, PartialEq)]
struct RunState {
    epoch: u64,
    step: u64,
    model: Vec<(String, Vec<usize>, Vec<u8>)>,
    optimizer: Vec<(String, Vec<usize>, Vec<u8>)>,
    optimizer_scalars: Vec<(String, u64)>,
    history: Vec<[u64; 8]>,
    best: (Option<u64>, u64),
}

fn run_state(path: &Path) -> RunState {
    let run = load_run_checkpoint(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let tensors = |named: &hepar::io::NamedTensors| {
        named
            .iter()
            .map(|(name, t)| {
                (
                    name.to_string(),
                    t.shape().to_vec(),
                    t.data().as_le_bytes().into_owned(),
                )
            })
            .collect()
    };
    RunState {
        epoch: run.checkpoint.epoch,
        step: run.checkpoint.step,
        model: tensors(&run.checkpoint.model),
        optimizer: tensors(&run.checkpoint.optimizer.tensors),
        optimizer_scalars: run
            .checkpoint
            .optimizer
            .scalars
            .iter()
            .map(|(k, v)| (k.clone(), v.to_bits()))
            .collect(),
        history: history_bits(&run.info.history),
        best: (
            run.info.best_val_dice.map(f64::to_bits),
            run.info.best_epoch,
        ),
    }
}

/// The final state of a run, as its last and best checkpoints and its history.csv hold it.
fn final_state(run_dir: &Path) -> (RunState, RunState, Vec<[u64; 8]>) {
    (
        run_state(&run_dir.join("last.safetensors")),
        run_state(&run_dir.join("best.safetensors")),
        history_bits(&read_history(&run_dir.join("history.csv")).unwrap()),
    )
}

fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".tmp"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn two_runs_of_one_configuration_are_the_same_bits() {
    let dir = temp_dir("twice");
    let params = TrainParameters::from_toml_str(&tiny_config(&dir)).unwrap();
    for stage in [Stage::Liver, Stage::Tumor] {
        let (a, b) = (
            dir.join(format!("{stage}-a")),
            dir.join(format!("{stage}-b")),
        );
        let first = train(&params, &options(stage, a.clone(), false)).unwrap();
        let second = train(&params, &options(stage, b.clone(), false)).unwrap();
        assert_eq!(first.history.len() as u64, EPOCHS);
        assert_eq!(
            history_bits(&first.history),
            history_bits(&second.history),
            "{stage}: histories differ"
        );
        let (fa, fb) = (final_state(&a), final_state(&b));
        assert!(fa == fb, "{stage}: the two runs' checkpoints differ");
        // The checkpoint's history is the run's, and history.csv is derived from it.
        assert_eq!(fa.0.history, history_bits(&first.history));
        assert_eq!(fa.2, fa.0.history);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn spawn_train(config: &Path, run_dir: &Path, resume: bool) -> Child {
    spawn_stage(Stage::Liver, config, run_dir, resume)
}

fn spawn_stage(stage: Stage, config: &Path, run_dir: &Path, resume: bool) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hepar"));
    command
        .args(["train", "--stage", &stage.to_string()])
        .args(["--config", config.to_str().unwrap()])
        .args(["--out", run_dir.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if resume {
        command.arg("--resume");
    }
    command.spawn().expect("start hepar train")
}

fn finish(child: Child, what: &str) {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What a kill may leave: a checkpoint that loads, and a history.csv that is a prefix of the
/// checkpoint's history, at most the one epoch being saved behind it.
fn assert_consistent_after_kill(run_dir: &Path, what: &str) {
    let last = run_dir.join("last.safetensors");
    let csv = read_history(&run_dir.join("history.csv"))
        .unwrap_or_else(|e| panic!("{what}: history.csv: {e}"));
    if !last.exists() {
        assert!(csv.is_empty(), "{what}: a history without a checkpoint");
        return;
    }
    let run: LoadedRun =
        load_run_checkpoint(&last).unwrap_or_else(|e| panic!("{what}: checkpoint: {e}"));
    let kept = history_bits(&run.info.history);
    let csv = history_bits(&csv);
    assert!(
        csv.len() <= kept.len() && kept.len() <= csv.len() + 1,
        "{what}: history.csv has {} epochs, the checkpoint {}",
        csv.len(),
        kept.len()
    );
    assert_eq!(csv[..], kept[..csv.len()], "{what}: history.csv disagrees");
    assert_eq!(kept.len() as u64, run.checkpoint.epoch, "{what}");
}

/// A few pseudo-random fractions from the clock, printed so a failure can be replayed.
fn kill_points(count: usize) -> Vec<f64> {
    let mut state = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        })
        .collect()
}

#[test]
fn a_run_killed_anywhere_and_resumed_is_the_uninterrupted_run() {
    let dir = temp_dir("kill");
    let config = dir.join("tiny.toml");
    std::fs::write(&config, tiny_config(&dir)).unwrap();
    let params = TrainParameters::load(&config).unwrap();
    // The uninterrupted run, in this process (it also writes the phantoms and the cache, so the
    // killed runs below only train).
    let reference_dir = dir.join("reference");
    train(
        &params,
        &options(Stage::Liver, reference_dir.clone(), false),
    )
    .unwrap();
    let reference = final_state(&reference_dir);
    // And its length as a process, to aim the kills inside it.
    let timed = Instant::now();
    finish(
        spawn_train(&config, &dir.join("timed"), false),
        "timing run",
    );
    let duration = timed.elapsed();

    // One kill right after the first checkpoint appears, then kills at random moments.
    let points = kill_points(3);
    eprintln!("kill points (fractions of {duration:?}): {points:?}");
    for (trial, point) in std::iter::once(None)
        .chain(points.into_iter().map(Some))
        .enumerate()
    {
        let run_dir = dir.join(format!("killed-{trial}"));
        let what = format!("trial {trial} (kill at {point:?})");
        let mut child = spawn_train(&config, &run_dir, false);
        match point {
            None => {
                let deadline = Instant::now() + Duration::from_secs(120);
                while !run_dir.join("last.safetensors").exists() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            Some(p) => std::thread::sleep(duration.mul_f64(p)),
        }
        let _ = child.kill(); // SIGKILL; it may have finished already
        let _ = child.wait();
        assert_consistent_after_kill(&run_dir, &what);
        // Resume (or start again, when no checkpoint was written) until the run is done.
        let resume = run_dir.join("last.safetensors").exists();
        let trained = if resume {
            run_state(&run_dir.join("last.safetensors")).epoch
        } else {
            0
        };
        eprintln!(
            "{what}: killed after {trained} of {EPOCHS} epochs, temp files {:?}",
            temp_files(&run_dir)
        );
        if trial == 0 {
            assert!(
                trained < EPOCHS,
                "{what}: the kill came too late to test a resume"
            );
        }
        if trained < EPOCHS {
            finish(spawn_train(&config, &run_dir, resume), &what);
        } else {
            // Killed during the final epoch's derived writes (or after the end): a resume refuses
            // the finished run, after tidying its folder.
            let out = spawn_train(&config, &run_dir, true)
                .wait_with_output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success() && stderr.contains("already finished"),
                "{what}: resuming the finished run: {stderr}"
            );
        }
        assert!(
            temp_files(&run_dir).is_empty(),
            "{what}: temporary files left: {:?}",
            temp_files(&run_dir)
        );
        assert!(
            final_state(&run_dir) == reference,
            "{what}: the resumed run differs from the uninterrupted one"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_start_removes_stale_temp_files_and_rewrites_a_lagging_history() {
    let dir = temp_dir("stale");
    let params = TrainParameters::from_toml_str(&tiny_config(&dir)).unwrap();
    let run_dir = dir.join("run");
    let mut short = params.clone();
    short.liver.epochs = 2;
    train(&short, &options(Stage::Liver, run_dir.clone(), false)).unwrap();
    let full = read_history(&run_dir.join("history.csv")).unwrap();
    // As if killed inside a checkpoint write, and between the checkpoint's rename and the
    // history's: a temp file of a dead process, and a CSV one epoch behind.
    let stale = run_dir.join(".last.safetensors.4194305.tmp");
    std::fs::write(&stale, b"half a checkpoint").unwrap();
    hepar::train::history::write_history(&run_dir.join("history.csv"), &full[..1]).unwrap();
    let err = train(
        &short,
        &TrainOptions {
            extend_epochs: Some(1),
            ..options(Stage::Liver, run_dir.clone(), true)
        },
    );
    let summary = err.unwrap();
    assert!(!stale.exists(), "the stale temp file is still there");
    let csv = read_history(&run_dir.join("history.csv")).unwrap();
    assert_eq!(history_bits(&csv[..2]), history_bits(&full));
    assert_eq!(history_bits(&csv), history_bits(&summary.history));
    assert_eq!(csv.len(), 3);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[cfg(unix)]
fn send_sigint(child: &Child) {
    // SAFETY: kill(2) on our own child's pid.
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(sent, 0, "kill -INT failed");
}

#[cfg(unix)]
#[test]
fn ctrl_c_saves_where_it_stopped_and_the_resume_is_the_uninterrupted_run() {
    let dir = temp_dir("sigint");
    let config = dir.join("tiny.toml");
    // Many short batches per epoch, so the interrupt lands inside an epoch.
    std::fs::write(&config, tiny_config_with(&dir, 24)).unwrap();
    let params = TrainParameters::load(&config).unwrap();
    let reference_dir = dir.join("reference");
    train(
        &params,
        &options(Stage::Tumor, reference_dir.clone(), false),
    )
    .unwrap();
    let reference = final_state(&reference_dir);

    let run_dir = dir.join("run");
    let child = spawn_stage(Stage::Tumor, &config, &run_dir, false);
    wait_for(&run_dir.join("last.safetensors"));
    std::thread::sleep(Duration::from_millis(30));
    send_sigint(&child);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(130),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("interrupted") && stdout.contains("--resume"),
        "{stdout}"
    );
    let stopped = load_run_checkpoint(&run_dir.join("last.safetensors")).unwrap();
    assert!(stopped.checkpoint.epoch < EPOCHS, "{stdout}");
    eprintln!(
        "stopped after {} epochs and {:?} (step {})",
        stopped.checkpoint.epoch, stopped.info.partial_epoch, stopped.checkpoint.step
    );
    assert_consistent_after_kill(&run_dir, "after Ctrl-C");
    finish(spawn_stage(Stage::Tumor, &config, &run_dir, true), "resume");
    assert!(
        final_state(&run_dir) == reference,
        "the resumed run differs from the uninterrupted one"
    );

    // Twice: out at once, 130 again, the folder still consistent. (The first stop may win the
    // race and exit cleanly before the second signal lands; either way nothing is lost.)
    let run_dir = dir.join("twice");
    let child = spawn_stage(Stage::Tumor, &config, &run_dir, false);
    wait_for(&run_dir.join("last.safetensors"));
    send_sigint(&child);
    std::thread::sleep(Duration::from_millis(2));
    send_sigint(&child);
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(130), "{stdout}{stderr}");
    assert!(
        stderr.contains("quitting without saving") || stdout.contains("Resume with"),
        "{stdout}{stderr}"
    );
    assert_consistent_after_kill(&run_dir, "after two Ctrl-Cs");
    std::fs::remove_dir_all(&dir).unwrap();
}
