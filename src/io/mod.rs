//! Files in and out: host-side tensors, PyTorch `.pth` checkpoints (zip + pickle subset),
//! safetensors, our own training checkpoints, the shared golden fixtures and their scores, and
//! the check of a loaded state_dict against a model's parameter list.

pub mod checkpoint;
pub mod fixture;
pub mod host_tensor;
pub mod named_tensors;
pub mod pickle;
pub mod pth;
pub mod safetensors_io;
pub mod score;
pub mod state_dict;
pub mod tensor_bridge;
pub mod zip;

#[cfg(test)]
pub(crate) mod test_support;

pub use checkpoint::{
    checkpoint_from_file, is_checkpoint, load_checkpoint, save_checkpoint, OptimizerState,
    TrainingCheckpoint,
};
pub use fixture::{
    Fixture, FixtureKind, FixtureSchedule, FixtureTensors, ForwardTensors, NetworkMode, Tolerance,
    TrainSettings, TrainTensors,
};
pub use host_tensor::{DType, HostData, HostTensor};
pub use named_tensors::NamedTensors;
pub use pth::{load_pth, parse_pth};
pub use safetensors_io::{parse_safetensors, read_safetensors, write_safetensors, TensorFile};
pub use score::{score, score_tensors};
pub use state_dict::{is_batchnorm_statistic, parameter_count, ShapeMismatch, StateDictReport};
