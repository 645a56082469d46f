//! The `hepar` subcommands, one module each. `main.rs` only parses arguments and dispatches here.

pub mod bench;
pub mod inspect;
pub mod predict;
pub mod synth;
pub mod train;
pub mod verify;
