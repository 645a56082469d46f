//! The training loop: for each epoch, the prefetched batches go through forward, loss, backward
//! and an AdamW step at the epoch's learning rate (the run's schedule); then the validation cases
//! are scored without gradients (Dice, IoU, precision and recall of the thresholded prediction,
//! see `metrics`), and the best (when the Dice improved) and last checkpoints saved, each holding
//! the history, from which `history.csv`, `history.json` and `curves.png` are then rewritten.
//!
//! Resuming is exact: batches depend only on (seed, epoch, batch), every kernel gives the same
//! bits on any thread split, and the checkpoint holds the weights, AdamW's moments, the
//! schedule and the history, so a run stopped at any point and resumed from its last
//! checkpoint repeats the uninterrupted run bit for bit (timings aside).

use super::config::{OptimizerKind, Stage, StageTraining, TargetChoice, TrainParameters};
use super::history::{read_history, write_history, write_history_json, EpochRecord};
use super::interrupt::stop_requested;
use super::metrics::{add_overlaps, Scores};
use super::patch_data::ValidationWindow;
use super::run_checkpoint::{
    load_run_checkpoint, save_run_checkpoint, LoadedRun, PartialEpoch, RunFolder, RunInfo,
};
use super::run_schedule::RunSchedule;
use super::stage_data::StageData;
use super::synthetic::ensure_synthetic_data;
use crate::backend::Device;
use crate::data::liver_boxes::LiverBoxes;
use crate::data::loader::{Batch, BatchSource, Prefetcher};
use crate::error::{HeparError, Result};
use crate::eval::metrics::Overlap;
use crate::infer::sliding_window::sliding_window;
use crate::nn::{parameters, Arch, ModelConfig, Network, NetworkOutput};
use crate::optim::{Adam, AdamConfig, Optimizer};
use crate::tensor::Tensor;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// The CoTNeXt stage to train; with `arch`, the stage that network's data comes from.
    pub stage: Stage,
    /// Another network of the registry (its `[train.<arch>]` section); `None` trains the stage's
    /// CoTNeXt network.
    pub arch: Option<Arch>,
    pub run_dir: PathBuf,
    /// Replaces the stage's `epochs` (the schedule's length) of a new run. With `resume` it must
    /// agree with the run's own count.
    pub epochs: Option<u64>,
    /// Continue from `run_dir/last.safetensors`, on the run's own schedule.
    pub resume: bool,
    /// With `resume`: add this many epochs to the run (see `run_schedule` for the rates).
    pub extend_epochs: Option<u64>,
    /// Progress bars and a line per epoch on stdout.
    pub show_progress: bool,
    /// Where the network trains.
    pub device: Device,
    /// Stage 2 (and 2D networks): build the slice stacks inside these liver boxes (the stage-1
    /// network's, see `infer::liver_boxes`) instead of the labels' livers.
    pub liver_boxes: Option<LiverBoxes>,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub run: RunFolder,
    /// Every epoch of the run so far (resumed runs included).
    pub history: Vec<EpochRecord>,
    pub first_epoch_this_call: u64,
    pub best_epoch: u64,
    pub best_val_dice: Option<f64>,
    /// Stopped early by a stop request (Ctrl-C); the last checkpoint resumes where it stopped.
    pub interrupted: Option<Interruption>,
}

impl RunSummary {
    /// Prints the epoch table (a blank line first); nothing when no epoch was recorded.
    pub fn print_epoch_table(&self) {
        if !self.history.is_empty() {
            print!(
                "\n{}",
                super::history::summary_table(&self.history, self.best_epoch)
            );
        }
    }
}

/// Where an interrupted run stopped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interruption {
    /// Epochs finished, and batches trained of the next one (0 at an epoch's end).
    pub epochs_done: u64,
    pub batches_done: usize,
    pub step: u64,
}

/// The network a run trains: the architecture's width from `[model.*]`, its input channels
/// from the data and its classes from the target (class ids: from the data when it defines
/// them, as the photo datasets do).
fn model_config(
    params: &TrainParameters,
    arch: Arch,
    in_channels: usize,
    classes: usize,
) -> ModelConfig {
    ModelConfig {
        in_channels,
        classes,
        base: params.model_for(arch).width,
        ..ModelConfig::default_for(arch)
    }
}

/// A batch's target on `device`: the 0/1 mask [N, 1, ...] of the target's labels, or the class
/// ids [N, ...] for cross-entropy.
pub(super) fn target_tensor(
    labels: &[f32],
    label_shape: &[usize],
    target: TargetChoice,
    device: Device,
) -> Result<Tensor> {
    match target {
        TargetChoice::Classes => {
            let mut shape = label_shape.to_vec();
            shape.remove(1);
            Tensor::from_vec_on(labels.to_vec(), &shape, device)
        }
        TargetChoice::Liver | TargetChoice::Tumor => {
            let min_label = if target == TargetChoice::Liver {
                1.0
            } else {
                2.0
            };
            let mask: Vec<f32> = labels
                .iter()
                .map(|&l| if l >= min_label { 1.0 } else { 0.0 })
                .collect();
            Tensor::from_vec_on(mask, label_shape, device)
        }
    }
}

/// The network's output for a validation input: one forward pass, or the sliding window's
/// blended logits over the whole volume (patch-trained networks; no deep-supervision heads).
fn validation_output(
    model: &dyn Network,
    x: &Tensor,
    window: Option<&ValidationWindow>,
) -> Result<NetworkOutput> {
    match window {
        None => model.forward_all(x, false),
        Some(w) => Ok(NetworkOutput {
            logits: sliding_window(x, &w.roi, &w.options, &mut |patch| {
                model.forward(patch, false)
            })?,
            deep: Vec::new(),
        }),
    }
}

/// Validation loss, the mean per-case scores of `train::metrics` (of `sigmoid(logits) > 0.5`
/// for a 0/1 target, of the argmax averaged over the foreground classes for class ids) and the
/// mean per-case Dice of each scored class when there are several.
fn validate(
    model: &dyn Network,
    data: &StageData,
    training: &StageTraining,
    (target, classes): (TargetChoice, usize),
    device: Device,
) -> Result<(f64, Scores, Vec<f64>)> {
    let batches = &data.validation;
    let loss = training.loss_config();
    let scored = classes.max(2) - 1;
    let cases = batches.iter().map(|b| b.case + 1).max().unwrap_or(0);
    let mut counts = vec![vec![Overlap::default(); scored]; cases];
    let mut loss_sum = 0.0;
    crate::no_grad(|| -> Result<()> {
        for b in batches {
            let x = Tensor::from_vec_on(b.images.clone(), &b.image_shape, device)?;
            let truth = target_tensor(&b.target, &b.target_shape, target, device)?;
            let out = validation_output(model, &x, data.validation_window())?;
            loss_sum += loss.compute(&out, &truth)?.to_scalar()?;
            let spatial: usize = b.target_shape[2..].iter().product();
            add_overlaps(
                &out.logits.try_to_vec_f32()?,
                &truth.try_to_vec_f32()?,
                classes,
                spatial,
                &mut counts[b.case],
            );
        }
        Ok(())
    })?;
    // One class: its Dice is the run's Dice already.
    let per_class = (0..scored)
        .filter(|_| scored > 1)
        .map(|k| {
            counts
                .iter()
                .map(|case| Scores::of_case(case[k]).dice)
                .sum::<f64>()
                / counts.len().max(1) as f64
        })
        .collect();
    Ok((
        loss_sum / batches.len().max(1) as f64,
        Scores::mean_over_cases(&counts),
        per_class,
    ))
}

fn epoch_bar(show: bool, epoch: u64, epochs: u64, batches: usize) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(batches as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(format!("epoch {epoch}/{epochs}"));
    bar
}

/// What every training epoch shares.
struct EpochPlan<'a> {
    data: &'a StageData,
    training: &'a StageTraining,
    /// The config section named in errors (`train.liver`, `train.res3dunet`).
    section: String,
    target: TargetChoice,
    workers: usize,
    prefetch: usize,
    /// Named in the error when the loss stops being finite.
    last_checkpoint: PathBuf,
    device: Device,
}

/// The batches of an epoch from batch `first` on: what is left of an interrupted epoch.
struct RemainingBatches {
    source: Arc<dyn BatchSource>,
    first: usize,
}

impl BatchSource for RemainingBatches {
    fn batch_count(&self) -> usize {
        self.source.batch_count().saturating_sub(self.first)
    }
    fn make_batch(&self, index: usize) -> Result<Batch> {
        self.source.make_batch(self.first + index)
    }
}

/// How a pass over an epoch's batches ended.
enum EpochEnd {
    /// Every batch trained: the epoch's mean loss.
    Finished(f64),
    /// A stop was requested; the batches trained so far.
    Stopped(PartialEpoch),
}

/// One pass over epoch `epoch`'s batches (0-based), from where `done` left it: forward, loss,
/// backward, AdamW step. `step` counts optimizer steps over the whole run.
fn train_epoch(
    model: &dyn Network,
    optimizer: &mut dyn Optimizer,
    plan: &EpochPlan,
    (epoch, done): (u64, PartialEpoch),
    bar: &indicatif::ProgressBar,
    step: &mut u64,
) -> Result<EpochEnd> {
    let loss_config = plan.training.loss_config();
    let source = plan.data.training_source(epoch)?;
    let total = source.batch_count();
    let batches = Prefetcher::start(
        Arc::new(RemainingBatches {
            source,
            first: done.batches_done,
        }),
        plan.workers,
        plan.prefetch,
    );
    bar.set_position(done.batches_done as u64);
    let (mut loss_sum, mut count) = (done.loss_sum, done.batches_done);
    for batch in batches {
        let batch = batch?;
        let target = target_tensor(&batch.labels, &batch.label_shape, plan.target, plan.device)?;
        let x = Tensor::from_vec_on(batch.images, &batch.image_shape, plan.device)?;
        optimizer.zero_grad();
        let loss = loss_config.compute(&model.forward_all(&x, true)?, &target)?;
        let value = loss.to_scalar()?;
        *step += 1;
        if !value.is_finite() {
            bar.abandon();
            let last_good = if plan.last_checkpoint.is_file() {
                format!(
                    "; the last good checkpoint is {}",
                    plan.last_checkpoint.display()
                )
            } else {
                String::new()
            };
            return Err(HeparError::NonFinite {
                op: "train",
                msg: format!(
                    "loss is {value} at epoch {}, step {step} (batch {} of the epoch); lower \
                     {}.learning_rate or check the data{last_good}",
                    epoch + 1,
                    count + 1,
                    plan.section,
                ),
            });
        }
        loss.backward()?;
        optimizer.step()?;
        loss_sum += value;
        count += 1;
        bar.inc(1);
        bar.set_message(format!("loss {:.4}", loss_sum / count as f64));
        // At the epoch's last batch the epoch finishes (validation, checkpoint) before stopping.
        if stop_requested() && count < total {
            return Ok(EpochEnd::Stopped(PartialEpoch {
                batches_done: count,
                loss_sum,
            }));
        }
    }
    Ok(EpochEnd::Finished(loss_sum / count.max(1) as f64))
}

/// Opens the run folder: removes what killed writes left behind, then loads the last checkpoint
/// (`resume`) or makes sure there is none to overwrite.
fn open_run(run: &RunFolder, options: &TrainOptions, stage: Stage) -> Result<Option<LoadedRun>> {
    for stale in crate::util::atomic_write::remove_stale_temp_files(&run.dir)? {
        if options.show_progress {
            eprintln!(
                "removed {}, left by a write that was interrupted",
                stale.display()
            );
        }
    }
    if options.resume {
        if !run.last().is_file() {
            return Err(HeparError::Checkpoint(format!(
                "--resume: {} does not exist; start the run without --resume",
                run.last().display()
            )));
        }
        let loaded = load_run_checkpoint(&run.last())?;
        if loaded.info.stage != stage {
            return Err(HeparError::Checkpoint(format!(
                "{} is a {} run, not {}",
                run.last().display(),
                loaded.info.stage,
                stage
            )));
        }
        return Ok(Some(loaded));
    }
    if options.extend_epochs.is_some() {
        return Err(HeparError::invalid(
            "train --extend-epochs",
            "extends an existing run: pass it with --resume (and the run's --out)",
        ));
    }
    if run.last().exists() {
        return Err(HeparError::invalid(
            "train",
            format!(
                "{} already holds a run; pass --resume to continue it or --out for a new folder",
                run.dir.display()
            ),
        ));
    }
    Ok(None)
}

/// The schedule a resumed run trains on: its own, extended when asked. `--epochs` must agree
/// with it, so a resume can neither restart nor shorten the schedule unnoticed.
fn resumed_schedule(
    resumed: &LoadedRun,
    options: &TrainOptions,
    run: &RunFolder,
) -> Result<RunSchedule> {
    let mut schedule = resumed.info.schedule();
    let total = schedule.total_epochs();
    let trained = resumed.checkpoint.epoch;
    if let Some(epochs) = options.epochs.filter(|&e| e != total) {
        return Err(HeparError::invalid(
            "train --resume",
            format!(
                "--epochs {epochs} disagrees with the run's {total} epochs: --resume continues the run's own schedule; to train further, pass --extend-epochs N instead"
            ),
        ));
    }
    if let Some(extra) = options.extend_epochs {
        let segment = schedule.extend(trained, extra)?;
        if options.show_progress {
            println!(
                "extending the run from {total} to {} epochs: from epoch {} the learning rate anneals by a cosine from {:.3e} (the rate of epoch {trained}) to {:.1e} over {} epochs",
                schedule.total_epochs(),
                segment.first_epoch + 1,
                segment.start_lr,
                segment.eta_min,
                segment.epochs
            );
        }
    } else if trained >= total {
        // A kill during the final epoch's derived writes leaves them behind the checkpoint, and
        // a finished run is never resumed: derive them again before refusing.
        let info = RunInfo {
            history: resumed_history(resumed, run)?,
            ..resumed.info.clone()
        };
        write_derived_files(run, &info)?;
        return Err(HeparError::invalid(
            "train --resume",
            format!(
                "{} already finished {trained} of {total} epochs; pass --extend-epochs N to train N more",
                run.dir.display()
            ),
        ));
    }
    Ok(schedule)
}

/// The history a resumed run continues: the checkpoint's own, or for checkpoints that predate
/// it, `history.csv` up to the checkpoint's epoch.
fn resumed_history(resumed: &LoadedRun, run: &RunFolder) -> Result<Vec<EpochRecord>> {
    let epoch = resumed.checkpoint.epoch;
    let mut history = if resumed.info.history.is_empty() && epoch > 0 {
        read_history(&run.history())?
    } else {
        resumed.info.history.clone()
    };
    history.retain(|h| h.epoch <= epoch);
    Ok(history)
}

/// Warns when the configuration's training settings differ from the resumed run's, which are
/// the ones used (so the resume repeats the run).
fn note_changed_settings(resumed: &RunInfo, configured: &StageTraining, show: bool) {
    let own = StageTraining {
        epochs: configured.epochs,
        ..resumed.training.clone()
    };
    if show && own != *configured {
        eprintln!(
            "note: the configuration's [train.{}] settings differ from the run's; the resume keeps the run's own",
            resumed.stage
        );
    }
}

/// Rewrites the files derived from the checkpoint's history: `history.csv`, `history.json` and
/// `curves.png`.
fn write_derived_files(run: &RunFolder, info: &RunInfo) -> Result<()> {
    let class = info.training.target_for(info.stage).name();
    write_history(&run.history(), &info.history)?;
    write_history_json(&run.history_json(), &info.history, class, info.best_epoch)?;
    crate::report::curves::write_curves(&run.curves(), &info.history, class, info.best_epoch)
}

/// Saves the epoch's checkpoints, then derives the history files from them. Best goes first: a
/// kill between the two leaves a last checkpoint that retrains the epoch and rewrites the same
/// best.
fn save_epoch(
    run: &RunFolder,
    model: &dyn Network,
    optimizer: &dyn Optimizer,
    (epoch, step): (u64, u64),
    info: &RunInfo,
    improved: bool,
) -> Result<()> {
    if improved {
        save_run_checkpoint(&run.best(), model, optimizer, epoch, step, info)?;
    }
    save_run_checkpoint(&run.last(), model, optimizer, epoch, step, info)?;
    write_derived_files(run, info)
}

fn patches_section(arch: Arch) -> String {
    format!("patches.{}", arch.name())
}

/// Trains one stage as configured; see the module documentation.
pub fn train(params: &TrainParameters, options: &TrainOptions) -> Result<RunSummary> {
    let arch = options.arch.unwrap_or(match options.stage {
        Stage::Liver => Arch::CotNext3d,
        Stage::Tumor => Arch::CotNext2d,
    });
    let stage = TrainParameters::stage_of(arch);
    let section = TrainParameters::section_of(arch);
    let run = RunFolder::new(&options.run_dir);

    // Decide about the run folder before any expensive work.
    let resumed = open_run(&run, options, stage)?;
    let mut params = params.clone();
    if let Some(epochs) = options.epochs.filter(|_| resumed.is_none()) {
        params.training_for_mut(arch).epochs = epochs;
    }
    params.validate()?;
    let schedule = match &resumed {
        Some(r) => {
            if r.info.model.arch != arch {
                return Err(HeparError::Checkpoint(format!(
                    "{} is a {} run, not {arch}",
                    run.last().display(),
                    r.info.model.arch
                )));
            }
            note_changed_settings(&r.info, params.training_for(arch), options.show_progress);
            let schedule = resumed_schedule(r, options, &run)?;
            *params.training_for_mut(arch) = StageTraining {
                epochs: schedule.total_epochs(),
                ..r.info.training.clone()
            };
            schedule
        }
        None => RunSchedule::new(params.training_for(arch)),
    };
    let training = params.training_for(arch).clone();
    let target = training.target_for(stage);
    let epochs = schedule.total_epochs();

    ensure_synthetic_data(&params)?;
    if params.uses_synthetic_data() && params.synthetic.reduced_inputs && options.show_progress {
        eprintln!(
            "training on the synthetic phantoms at reduced inputs (stage 1 {:?}, stage 2 slices {:?}); \
             set [train.synthetic] reduced_inputs = false for the [preprocess] sizes",
            params.synthetic.stage1_shape_zyx, params.synthetic.stage2_slice_shape_yx
        );
    }
    let mut data_params = params.effective_data();
    if let Some(slices) = training.slices {
        data_params.preprocess.stage2.stack_slices = slices;
    }
    let data = match params.patch_settings(arch)? {
        Some(patches) => {
            StageData::prepare_patches(&data_params, &training, &patches, &patches_section(arch))?
        }
        None => StageData::prepare(
            stage,
            &data_params,
            &training,
            options.liver_boxes.as_ref(),
            options.show_progress,
        )?,
    };

    let classes = match (target, data.classes) {
        (TargetChoice::Classes, Some(classes)) => classes,
        _ => target.classes(),
    };
    let config = model_config(&params, arch, data.in_channels, classes);
    let mut input_shape = vec![1, data.in_channels];
    input_shape.extend(&data.input_shape);
    config.check_input(&input_shape).map_err(|e| {
        HeparError::Config(format!(
            "{section}: the data's input does not suit the network: {e}"
        ))
    })?;
    let model = crate::nn::build(&config, params.model_for(arch).init_seed)?;
    crate::nn::to_device(&model, options.device)?;
    let mut optimizer = Adam::new(
        parameters(&model),
        AdamConfig {
            lr: training.learning_rate,
            beta1: training.betas[0],
            beta2: training.betas[1],
            eps: training.eps,
            weight_decay: training.weight_decay,
            decoupled: training.optimizer == OptimizerKind::Adamw,
        },
    );
    let mut info = RunInfo {
        stage,
        model: config,
        training: training.clone(),
        epochs,
        schedule: Some(schedule.clone()),
        data: data_params,
        best_val_dice: None,
        best_epoch: 0,
        history: Vec::new(),
        partial_epoch: None,
    };
    let (mut epoch, mut step) = (0u64, 0u64);
    if let Some(r) = &resumed {
        if r.info.model != config {
            return Err(HeparError::Checkpoint(format!(
                "{} was trained with network {:?}, the configuration now gives {:?}",
                run.last().display(),
                r.info.model,
                config
            )));
        }
        crate::nn::load_state_dict(
            &model,
            &r.checkpoint.model,
            &run.last().display().to_string(),
        )?;
        r.restore_optimizer(&mut optimizer)?;
        epoch = r.checkpoint.epoch;
        step = r.checkpoint.step;
        info.best_val_dice = r.info.best_val_dice;
        info.best_epoch = r.info.best_epoch;
        info.history = resumed_history(r, &run)?;
        info.partial_epoch = r.info.partial_epoch.filter(|p| p.batches_done > 0);
        // The derived files may lag the checkpoint by the epoch a kill interrupted: derive
        // them again.
        write_derived_files(&run, &info)?;
    }
    std::fs::create_dir_all(&run.dir).map_err(|e| HeparError::io(&run.dir, e))?;
    if options.show_progress {
        println!(
            "training {arch} on the {stage} stage's data ({} parameters, input {:?} x {} channel(s)) on {} cases, validating on {}; run folder {}",
            crate::nn::parameter_count(&model),
            data.input_shape,
            data.in_channels,
            data.training_cases,
            data.validation_cases,
            run.dir.display()
        );
        if let Some(p) = info.partial_epoch {
            println!(
                "resuming epoch {} of {epochs} after its batch {} (step {step})",
                epoch + 1,
                p.batches_done
            );
        } else if epoch > 0 {
            println!("resuming after epoch {epoch} (step {step}) of {epochs}");
        }
    }

    let first_epoch_this_call = epoch + 1;
    let plan = EpochPlan {
        data: &data,
        training: &training,
        section: section.clone(),
        target,
        workers: params.data.data.workers,
        prefetch: params.data.data.prefetch,
        last_checkpoint: run.last(),
        device: options.device,
    };
    let mut interrupted = None;
    while epoch < epochs {
        let started = Instant::now();
        let lr = schedule.lr_at(epoch);
        optimizer.set_learning_rate(lr);
        let display_epoch = epoch + 1;
        let bar = epoch_bar(
            options.show_progress,
            display_epoch,
            epochs,
            data.batches_per_epoch(),
        );
        let done = info.partial_epoch.take().unwrap_or(PartialEpoch {
            batches_done: 0,
            loss_sum: 0.0,
        });
        let train_loss = match train_epoch(
            &model,
            &mut optimizer,
            &plan,
            (epoch, done),
            &bar,
            &mut step,
        )? {
            EpochEnd::Finished(loss) => loss,
            EpochEnd::Stopped(partial) => {
                bar.abandon();
                info.partial_epoch = Some(partial);
                save_run_checkpoint(&run.last(), &model, &optimizer, epoch, step, &info)?;
                interrupted = Some(Interruption {
                    epochs_done: epoch,
                    batches_done: partial.batches_done,
                    step,
                });
                break;
            }
        };
        bar.finish_and_clear();
        let (val_loss, scores, dice_per_class) =
            validate(&*model, &data, &training, (target, classes), options.device)?;
        let val_dice = scores.dice;
        // The seeds' 2D networks show their predictions as the U-Net course does.
        if matches!(arch, Arch::Unet2dClassic | Arch::KerasUnet2d) {
            super::prediction_images::write_prediction_image(
                &*model,
                &data.validation,
                (target, classes),
                options.device,
                &super::prediction_images::prediction_image_path(&run.dir, display_epoch),
            )?;
        }
        let record = EpochRecord {
            epoch: display_epoch,
            train_loss,
            val_loss,
            val_dice,
            val_iou: Some(scores.iou),
            val_precision: Some(scores.precision),
            val_recall: Some(scores.recall),
            val_dice_per_class: dice_per_class,
            learning_rate: lr,
            // Milliseconds are plenty, and keep the record equal to its CSV line.
            seconds: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        };
        epoch += 1;
        let improved = info.best_val_dice.is_none_or(|best| val_dice > best);
        if improved {
            info.best_val_dice = Some(val_dice);
            info.best_epoch = display_epoch;
        }
        info.history.push(record.clone());
        save_epoch(&run, &model, &optimizer, (epoch, step), &info, improved)?;
        if options.show_progress {
            println!(
                "epoch {display_epoch}/{epochs}  train loss {:.4}  val loss {:.4}  val Dice {:.3}  IoU {:.3}  precision {:.3}  recall {:.3}  lr {:.2e}  {:.1} s{}",
                record.train_loss,
                record.val_loss,
                record.val_dice,
                scores.iou,
                scores.precision,
                scores.recall,
                lr,
                record.seconds,
                if improved { "  (best)" } else { "" }
            );
        }
        if stop_requested() && epoch < epochs {
            interrupted = Some(Interruption {
                epochs_done: epoch,
                batches_done: 0,
                step,
            });
            break;
        }
    }
    Ok(RunSummary {
        run,
        history: info.history,
        first_epoch_this_call,
        best_epoch: info.best_epoch,
        best_val_dice: info.best_val_dice,
        interrupted,
    })
}
