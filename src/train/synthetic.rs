//! The first-run convenience: when `[data] root` is the synthetic folder and holds no case,
//! phantoms are written there before training, so `hepar train` works on a fresh machine.

use super::config::TrainParameters;
use crate::data::dataset::Dataset;
use crate::error::Result;

/// Writes `[train.synthetic]` phantoms into the data root when it is the synthetic folder and
/// has no case; returns whether it did. Says so on stderr.
pub fn ensure_synthetic_data(params: &TrainParameters) -> Result<bool> {
    if !params.uses_synthetic_data() {
        return Ok(false);
    }
    let root = &params.data.data.root;
    let has_cases = root.is_dir()
        && Dataset::discover(root)
            .map(|d| !d.cases.is_empty())
            .unwrap_or(false);
    if has_cases {
        return Ok(false);
    }
    let s = &params.synthetic;
    let [z, y, x] = s.shape_zyx;
    eprintln!(
        "{} holds no cases: writing {} synthetic CT phantoms ({z}x{y}x{x}, seed {}) there first",
        root.display(),
        s.cases,
        s.seed
    );
    let start = std::time::Instant::now();
    crate::data::synth::write_dataset(root, s.cases, s.seed, s.shape_zyx)?;
    eprintln!("wrote them in {:.1} s", start.elapsed().as_secs_f64());
    Ok(true)
}
