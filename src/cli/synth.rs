//! `hepar synth --out DIR --cases N [--seed S] [--shape Z,Y,X] [--kind liver|ribfrac]`: writes
//! synthetic CT phantoms in the LiTS layout (volume-K.nii.gz, segmentation-K.nii.gz), or with
//! bright linear rib lesions in the RibFrac layout (images/, labels/ with its CSV), or
//! (`--kind photos`) `--cases` photos in each 2D photo layout: `OUT/kvasir` and `OUT/pets`.

use crate::data::synth::{write_dataset, write_ribfrac_dataset};
use crate::data::synth_photos::{write_photo_datasets, DEFAULT_PHOTO_SIZE_HW};
use crate::{HeparError, Result};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct SynthArgs {
    /// Output folder (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Number of cases.
    #[arg(long, default_value_t = 8)]
    pub cases: usize,
    /// Seed: the same seed gives the same files.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Grid size as Z,Y,X (slices, rows, columns).
    #[arg(long, default_value = "64,128,128")] // keep in step with synth::DEFAULT_SHAPE_ZYX
    pub shape: String,
    /// liver: labels 0/1/2 in the LiTS layout; ribfrac: rib-fracture components in the RibFrac
    /// layout (`DIR/images`, `DIR/labels` with `ribfrac-info.csv`); photos: shapes on textured
    /// backgrounds in the Kvasir-SEG (`DIR/kvasir`) and Oxford-IIIT Pet (`DIR/pets`) layouts.
    #[arg(long, default_value = "liver")]
    pub kind: SynthKind,
    /// Photo size as H,W (rows, columns), for --kind photos.
    #[arg(long)]
    pub size: Option<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SynthKind {
    Liver,
    Ribfrac,
    Photos,
}

/// Parses "Z,Y,X".
pub fn parse_shape(text: &str) -> Result<[usize; 3]> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let bad = || {
        HeparError::invalid(
            "synth --shape",
            format!("{text:?}: expected three positive integers Z,Y,X such as 64,128,128"),
        )
    };
    if parts.len() != 3 {
        return Err(bad());
    }
    let mut shape = [0usize; 3];
    for (s, p) in shape.iter_mut().zip(parts) {
        *s = p.parse().map_err(|_| bad())?;
        if *s == 0 {
            return Err(bad());
        }
    }
    Ok(shape)
}

/// Parses "H,W".
pub fn parse_size(text: &str) -> Result<[usize; 2]> {
    let parts: Vec<Option<usize>> = text.split(',').map(|p| p.trim().parse().ok()).collect();
    match parts[..] {
        [Some(h), Some(w)] if h >= 8 && w >= 8 => Ok([h, w]),
        _ => Err(HeparError::invalid(
            "synth --size",
            format!("{text:?}: expected two integers H,W of at least 8, such as 96,128"),
        )),
    }
}

fn run_photos(args: &SynthArgs) -> Result<()> {
    let size = match &args.size {
        Some(text) => parse_size(text)?,
        None => DEFAULT_PHOTO_SIZE_HW,
    };
    let start = std::time::Instant::now();
    write_photo_datasets(&args.out, args.cases, args.seed, size)?;
    println!(
        "wrote {} synthetic photos of {}x{} (h x w) in each layout to {} and {} in {:.1} s",
        args.cases,
        size[0],
        size[1],
        args.out.join("kvasir").display(),
        args.out.join("pets").display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

pub fn run(args: SynthArgs) -> Result<()> {
    if args.cases == 0 {
        return Err(HeparError::invalid("synth --cases", "must be at least 1"));
    }
    let write = match args.kind {
        SynthKind::Photos => return run_photos(&args),
        SynthKind::Liver => write_dataset,
        SynthKind::Ribfrac => write_ribfrac_dataset,
    };
    let shape = parse_shape(&args.shape)?;
    let start = std::time::Instant::now();
    write(&args.out, args.cases, args.seed, shape)?;
    println!(
        "wrote {} synthetic cases of shape (z, y, x) {:?} to {} in {:.1} s",
        args.cases,
        shape,
        args.out.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn photo_sizes_parse_and_bad_ones_are_named() {
        assert_eq!(parse_size("96, 128").unwrap(), [96, 128]);
        for bad in ["96", "4,128", "a,b", "1,2,3"] {
            let err = parse_size(bad).unwrap_err().to_string();
            assert!(err.contains("--size"), "{bad}: {err}");
        }
    }
}
