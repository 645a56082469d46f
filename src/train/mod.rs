//! Training the seed's two networks on the CPU: the `[train.*]` / `[model.*]` settings, the
//! stage's data as batches, the epoch loop with validation, the run's history and checkpoints,
//! and the synthetic phantoms a fresh machine starts from.

pub mod config;
pub mod history;
pub mod interrupt;
pub mod metrics;
pub mod objective;
pub mod patch_data;
pub mod photo_data;
pub mod prediction_images;
pub mod run_checkpoint;
pub mod run_dirs;
pub mod run_schedule;
pub mod stage_data;
pub mod synthetic;
pub mod trainer;

pub use config::{Stage, StageTraining, TrainParameters};
pub use run_checkpoint::{load_run_checkpoint, RunFolder, RunInfo};
pub use trainer::{train, Interruption, RunSummary, TrainOptions};
