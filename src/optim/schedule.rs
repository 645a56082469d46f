//! Learning-rate schedules, as functions of the epoch (or step) count.

/// A schedule gives the learning rate after `t` calls to the scheduler's step.
pub trait LrSchedule {
    fn lr_at(&self, t: u64) -> f64;
}

/// Cosine annealing from `base_lr` to `eta_min` over `t_max` steps (PyTorch's CosineAnnealingLR
/// closed form; beyond `t_max` it continues the cosine, as PyTorch does).
#[derive(Clone, Copy, Debug)]
pub struct CosineAnnealing {
    pub base_lr: f64,
    pub t_max: u64,
    pub eta_min: f64,
}

impl LrSchedule for CosineAnnealing {
    fn lr_at(&self, t: u64) -> f64 {
        let t_max = self.t_max.max(1) as f64;
        self.eta_min
            + (self.base_lr - self.eta_min)
                * (1.0 + (std::f64::consts::PI * t as f64 / t_max).cos())
                / 2.0
    }
}

/// Multiplies the rate by `gamma` every `step_size` steps.
#[derive(Clone, Copy, Debug)]
pub struct StepDecay {
    pub base_lr: f64,
    pub step_size: u64,
    pub gamma: f64,
}

impl LrSchedule for StepDecay {
    fn lr_at(&self, t: u64) -> f64 {
        self.base_lr * self.gamma.powi((t / self.step_size.max(1)) as i32)
    }
}
