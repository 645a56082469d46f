//! A run's learning rate for every epoch, kept in its checkpoint so `--resume` continues the
//! run's own schedule. It is a list of cosine segments: the first spans the epochs the run was
//! started with; `--extend-epochs N` ends the schedule at the epochs trained so far and adds a
//! segment from there. The rate never jumps: the new segment starts at the rate of the last
//! trained epoch and anneals to `eta_min` over the epochs still to train (what was left of the
//! old schedule, plus N).

use super::config::{ScheduleKind, StageTraining};
use crate::error::{HeparError, Result};
use crate::optim::{CosineAnnealing, LrSchedule};
use serde::{Deserialize, Serialize};

/// Cosine annealing from `start_lr` to `eta_min` over epochs `first_epoch..first_epoch + epochs`
/// (0-based), the same closed form as `CosineAnnealing`. A later segment may take over before
/// the end.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CosineSegment {
    pub first_epoch: u64,
    pub epochs: u64,
    pub start_lr: f64,
    pub eta_min: f64,
}

impl CosineSegment {
    fn end(&self) -> u64 {
        self.first_epoch + self.epochs
    }

    fn lr_at(&self, epoch: u64) -> f64 {
        CosineAnnealing {
            base_lr: self.start_lr,
            t_max: self.epochs,
            eta_min: self.eta_min,
        }
        .lr_at(epoch - self.first_epoch)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSchedule {
    pub segments: Vec<CosineSegment>,
}

impl RunSchedule {
    /// The schedule a run starts with: one cosine over `cosine_fraction` of the stage's epochs,
    /// then (when the fraction is below 1) a flat segment at `eta_min` to the end; a constant
    /// rate is one flat segment (a cosine from the rate to itself), StepLR one flat segment per
    /// step.
    pub fn new(training: &StageTraining) -> Self {
        let flat = |first_epoch: u64, epochs: u64, lr: f64| CosineSegment {
            first_epoch,
            epochs,
            start_lr: lr,
            eta_min: lr,
        };
        let segments = match training.schedule {
            ScheduleKind::Cosine => {
                let annealed = ((training.epochs as f64 * training.cosine_fraction).round() as u64)
                    .clamp(1, training.epochs.max(1));
                let mut segments = vec![CosineSegment {
                    first_epoch: 0,
                    epochs: annealed,
                    start_lr: training.learning_rate,
                    eta_min: training.eta_min,
                }];
                if annealed < training.epochs {
                    segments.push(flat(annealed, training.epochs - annealed, training.eta_min));
                }
                segments
            }
            ScheduleKind::Constant => vec![flat(0, training.epochs, training.learning_rate)],
            ScheduleKind::Step => {
                let step = training.step_size.max(1);
                (0..training.epochs.div_ceil(step).max(1))
                    .map(|k| {
                        let first = k * step;
                        let lr = training.learning_rate * training.gamma.powi(k as i32);
                        flat(
                            first,
                            step.min(training.epochs.saturating_sub(first)).max(1),
                            lr,
                        )
                    })
                    .collect()
            }
        };
        RunSchedule { segments }
    }

    /// Epochs the whole schedule spans: to the end of its last segment.
    pub fn total_epochs(&self) -> u64 {
        self.segments.last().map_or(0, CosineSegment::end)
    }

    /// The learning rate of epoch `epoch` (0-based); past the end, the last segment continues.
    pub fn lr_at(&self, epoch: u64) -> f64 {
        let segment = self
            .segments
            .iter()
            .rev()
            .find(|s| s.first_epoch <= epoch)
            .or(self.segments.first())
            .expect("a schedule has a segment");
        segment.lr_at(epoch.max(segment.first_epoch))
    }

    /// Adds `extra` epochs to a run that has trained `trained` epochs, as the module describes;
    /// returns the new segment.
    pub fn extend(&mut self, trained: u64, extra: u64) -> Result<CosineSegment> {
        if extra == 0 {
            return Err(HeparError::invalid(
                "train --extend-epochs",
                "0 adds no epochs; give the number of epochs to add",
            ));
        }
        let total = self.total_epochs();
        if trained > total {
            return Err(HeparError::invalid(
                "train --extend-epochs",
                format!("the run trained {trained} epochs, more than its schedule's {total}"),
            ));
        }
        let first = self.segments[0];
        let start_lr = match trained {
            0 => first.start_lr,
            t => self.lr_at(t - 1),
        };
        let eta_min = self.segments.last().map_or(first.eta_min, |s| s.eta_min);
        // Segments that have not started are replaced; the one running ends where the new one
        // starts (a segment rules from its first epoch until the next segment's).
        self.segments.retain(|s| s.first_epoch < trained);
        let segment = CosineSegment {
            first_epoch: trained,
            epochs: total - trained + extra,
            start_lr,
            eta_min,
        };
        self.segments.push(segment);
        Ok(segment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(epochs: u64) -> RunSchedule {
        RunSchedule {
            segments: vec![CosineSegment {
                first_epoch: 0,
                epochs,
                start_lr: 1e-3,
                eta_min: 1e-5,
            }],
        }
    }

    #[test]
    fn one_segment_is_the_cosine_annealing_closed_form() {
        let s = schedule(12);
        let cosine = CosineAnnealing {
            base_lr: 1e-3,
            t_max: 12,
            eta_min: 1e-5,
        };
        for e in 0..15 {
            assert_eq!(s.lr_at(e), cosine.lr_at(e));
        }
        assert_eq!(s.total_epochs(), 12);
    }

    #[test]
    fn a_cosine_over_part_of_the_run_then_holds_at_eta_min() {
        let training = StageTraining {
            epochs: 12,
            cosine_fraction: 0.75,
            ..StageTraining::liver_default()
        };
        let s = RunSchedule::new(&training);
        assert_eq!(s.total_epochs(), 12);
        let cosine = CosineAnnealing {
            base_lr: training.learning_rate,
            t_max: 9,
            eta_min: training.eta_min,
        };
        for e in 0..9 {
            assert_eq!(s.lr_at(e), cosine.lr_at(e), "epoch {e}");
            assert!(s.lr_at(e) > training.eta_min);
        }
        // PyTorch's CosineAnnealingLR(T_max = 9) would rise again from epoch 10; this holds.
        for e in 9..12 {
            assert_eq!(s.lr_at(e), training.eta_min, "epoch {e}");
        }
        // The whole run, as before the fraction existed.
        let whole = RunSchedule::new(&StageTraining {
            cosine_fraction: 1.0,
            ..training
        });
        assert_eq!(whole.segments.len(), 1);
        assert_eq!(whole.segments[0].epochs, 12);
    }

    #[test]
    fn extending_a_finished_run_anneals_on_from_its_last_rate() {
        let mut s = schedule(12);
        let last = s.lr_at(11);
        let seg = s.extend(12, 8).unwrap();
        assert_eq!(s.total_epochs(), 20);
        assert_eq!((seg.first_epoch, seg.epochs, seg.start_lr), (12, 8, last));
        // The trained epochs keep their rates; the new ones never rise above the last one.
        assert_eq!(s.lr_at(11), last);
        for e in 12..20 {
            assert!(s.lr_at(e) <= last && s.lr_at(e) >= 1e-5, "epoch {e}");
            assert!(
                e == 12 || s.lr_at(e) < s.lr_at(e - 1),
                "epoch {e} does not decay"
            );
        }
    }

    #[test]
    fn extending_a_running_schedule_stretches_what_is_left() {
        let mut s = schedule(12);
        let before: Vec<f64> = (0..5).map(|e| s.lr_at(e)).collect();
        s.extend(5, 3).unwrap();
        assert_eq!(s.total_epochs(), 15);
        assert_eq!((0..5).map(|e| s.lr_at(e)).collect::<Vec<_>>(), before);
        assert_eq!(s.lr_at(5), before[4]);
        assert!(s.lr_at(14) < s.lr_at(13));
        // Twice: the earlier extension's segment rules until the second starts.
        let second = s.lr_at(6);
        s.extend(7, 1).unwrap();
        assert_eq!(s.total_epochs(), 16);
        assert_eq!(s.segments.len(), 3);
        assert_eq!((s.lr_at(6), s.lr_at(7)), (second, second));
        // Before any epoch ran, an extension is a longer first cosine.
        let mut fresh = schedule(4);
        fresh.extend(0, 2).unwrap();
        assert_eq!(fresh.segments.len(), 1);
        assert_eq!(fresh.lr_at(0), 1e-3);
        assert_eq!(fresh.total_epochs(), 6);
        assert!(s.extend(7, 0).is_err());
        assert!(s.extend(17, 1).is_err());
    }
}
