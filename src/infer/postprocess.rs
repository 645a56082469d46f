//! Mask clean-up after thresholding: 3D connected components (and the largest one), and per
//! axial slice binary closing, opening and hole filling.
//!
//! Masks are `bool` voxels in C order over `[depth_z, height_y, width_x]`; an axial slice is one
//! `z`. The morphology follows `scipy.ndimage` defaults: the structuring element is a disk of
//! radius `r` (offsets with `dy^2 + dx^2 <= r^2`, as `skimage.morphology.disk`), and outside the
//! slice counts as background for both dilation and erosion (`border_value=0`), so erosion clears
//! foreground within `r` of the slice border, and a closing (dilation then erosion) can therefore
//! shrink an object that touches the border. Hole filling is `binary_fill_holes`: background not
//! 4-connected to the slice border becomes foreground.
//!
//! Slices are processed in parallel, each by itself, so results do not depend on scheduling.

use crate::error::{HeparError, Result};
use rayon::prelude::*;
use std::collections::VecDeque;

/// Which neighbours of a voxel touch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connectivity {
    /// Voxels sharing a face (6 neighbours).
    Faces,
    /// Voxels sharing a face, an edge or a corner (26 neighbours).
    Full,
}

impl Connectivity {
    fn offsets(self) -> Vec<[isize; 3]> {
        let mut out = Vec::new();
        for dz in -1isize..=1 {
            for dy in -1isize..=1 {
                for dx in -1isize..=1 {
                    let steps = dz.abs() + dy.abs() + dx.abs();
                    if steps == 0 || (self == Connectivity::Faces && steps > 1) {
                        continue;
                    }
                    out.push([dz, dy, dx]);
                }
            }
        }
        out
    }
}

/// Connected components of a mask: `labels[i]` is 0 for background, else the component number
/// 1..=count. Components are numbered in the C order of their first voxel (z slowest, then y,
/// then x), as `scipy.ndimage.label` numbers them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Components {
    pub labels: Vec<u32>,
    /// Voxel count of component `k + 1` at index `k`.
    pub sizes: Vec<usize>,
}

impl Components {
    pub fn count(&self) -> usize {
        self.sizes.len()
    }

    /// The label of the largest component (the lowest label among equals), or `None`.
    pub fn largest(&self) -> Option<u32> {
        let mut best: Option<(usize, usize)> = None;
        for (k, &size) in self.sizes.iter().enumerate() {
            if best.is_none_or(|(_, s)| size > s) {
                best = Some((k, size));
            }
        }
        best.map(|(k, _)| k as u32 + 1)
    }

    /// The mask of one component.
    pub fn mask_of(&self, label: u32) -> Vec<bool> {
        self.labels.iter().map(|&l| l == label).collect()
    }
}

pub(crate) fn check_mask(op: &'static str, mask: &[bool], shape: [usize; 3]) -> Result<()> {
    let n: usize = shape.iter().product();
    if mask.len() != n {
        return Err(HeparError::shape(
            op,
            format!(
                "{} voxels for shape (z, y, x) {shape:?} ({n} voxels)",
                mask.len()
            ),
        ));
    }
    Ok(())
}

/// Labels the connected components of `mask` (shape `[z, y, x]`).
pub fn label_components(
    mask: &[bool],
    shape: [usize; 3],
    connectivity: Connectivity,
) -> Result<Components> {
    check_mask("label_components", mask, shape)?;
    let [depth, height, width] = shape;
    let offsets = connectivity.offsets();
    let mut labels = vec![0u32; mask.len()];
    let mut sizes = Vec::new();
    let mut queue = VecDeque::new();
    for seed in 0..mask.len() {
        if !mask[seed] || labels[seed] != 0 {
            continue;
        }
        let label = sizes.len() as u32 + 1;
        labels[seed] = label;
        queue.push_back(seed);
        let mut size = 0;
        while let Some(at) = queue.pop_front() {
            size += 1;
            let (z, y, x) = (at / (height * width), (at / width) % height, at % width);
            for &[dz, dy, dx] in &offsets {
                let (Some(nz), Some(ny), Some(nx)) = (
                    z.checked_add_signed(dz).filter(|&v| v < depth),
                    y.checked_add_signed(dy).filter(|&v| v < height),
                    x.checked_add_signed(dx).filter(|&v| v < width),
                ) else {
                    continue;
                };
                let next = (nz * height + ny) * width + nx;
                if mask[next] && labels[next] == 0 {
                    labels[next] = label;
                    queue.push_back(next);
                }
            }
        }
        sizes.push(size);
    }
    Ok(Components { labels, sizes })
}

/// The largest connected component of `mask` (all false when the mask is empty).
pub fn largest_component(
    mask: &[bool],
    shape: [usize; 3],
    connectivity: Connectivity,
) -> Result<Vec<bool>> {
    let components = label_components(mask, shape, connectivity)?;
    Ok(match components.largest() {
        Some(label) => components.mask_of(label),
        None => vec![false; mask.len()],
    })
}

/// The disk structuring element of radius `r`: offsets `(dy, dx)` with `dy^2 + dx^2 <= r^2`.
pub fn disk_offsets(radius: usize) -> Vec<(isize, isize)> {
    let r = radius as isize;
    let mut out = Vec::new();
    for dy in -r..=r {
        for dx in -r..=r {
            if dy * dy + dx * dx <= r * r {
                out.push((dy, dx));
            }
        }
    }
    out
}

/// The disk's half-width along x at each row offset `dy` in `-r..=r` (index `dy + r`).
fn disk_half_widths(radius: usize) -> Vec<usize> {
    let r = radius as isize;
    (-r..=r)
        .map(|dy| {
            let mut w = 0usize;
            while ((w + 1) * (w + 1)) as isize + dy * dy <= r * r {
                w += 1;
            }
            w
        })
        .collect()
}

/// Ones in `row[lo..hi)` for every row of a slice, from per-row prefix sums.
struct RowCounts {
    prefix: Vec<u32>,
    width: usize,
}

impl RowCounts {
    fn new(slice: &[bool], width: usize) -> Self {
        let rows = slice.len() / width;
        let mut prefix = vec![0u32; rows * (width + 1)];
        for y in 0..rows {
            let row = &slice[y * width..(y + 1) * width];
            let p = &mut prefix[y * (width + 1)..(y + 1) * (width + 1)];
            for x in 0..width {
                p[x + 1] = p[x] + row[x] as u32;
            }
        }
        RowCounts { prefix, width }
    }

    fn ones(&self, y: usize, lo: usize, hi: usize) -> u32 {
        let p = &self.prefix[y * (self.width + 1)..];
        p[hi] - p[lo]
    }
}

/// Dilation (`erode == false`) or erosion of one slice by the disk, outside counted as 0.
fn morph_slice(
    slice: &[bool],
    height: usize,
    width: usize,
    radius: usize,
    erode: bool,
) -> Vec<bool> {
    let counts = RowCounts::new(slice, width);
    let half = disk_half_widths(radius);
    let r = radius as isize;
    let mut out = vec![false; slice.len()];
    for y in 0..height {
        for x in 0..width {
            let mut any = false;
            let mut all = true;
            for (k, &w) in half.iter().enumerate() {
                let yy = y as isize + k as isize - r;
                let (lo, hi) = (x as isize - w as isize, x + w + 1);
                let inside = yy >= 0 && (yy as usize) < height && lo >= 0 && hi <= width;
                let ones = if yy >= 0 && (yy as usize) < height {
                    counts.ones(yy as usize, lo.max(0) as usize, hi.min(width))
                } else {
                    0
                };
                any |= ones > 0;
                all &= inside && ones as usize == 2 * w + 1;
            }
            out[y * width + x] = if erode { all } else { any };
        }
    }
    out
}

/// Applies `step` (which must map an empty slice to an empty one) to every axial slice of `mask`
/// in parallel.
fn per_slice(
    op: &'static str,
    mask: &[bool],
    shape: [usize; 3],
    step: impl Fn(&[bool]) -> Vec<bool> + Sync + Send,
) -> Result<Vec<bool>> {
    check_mask(op, mask, shape)?;
    let plane = shape[1] * shape[2];
    if plane == 0 {
        return Ok(Vec::new());
    }
    // Every step here maps an empty slice to an empty slice; most slices of a CT are empty.
    let slices: Vec<Vec<bool>> = mask
        .par_chunks(plane)
        .map(|s| {
            if s.contains(&true) {
                step(s)
            } else {
                vec![false; s.len()]
            }
        })
        .collect();
    Ok(slices.concat())
}

/// Per-slice dilation by a disk of `radius`.
pub fn dilate_slices(mask: &[bool], shape: [usize; 3], radius: usize) -> Result<Vec<bool>> {
    let [_, h, w] = shape;
    per_slice("dilate_slices", mask, shape, |s| {
        morph_slice(s, h, w, radius, false)
    })
}

/// Per-slice erosion by a disk of `radius` (outside the slice is background).
pub fn erode_slices(mask: &[bool], shape: [usize; 3], radius: usize) -> Result<Vec<bool>> {
    let [_, h, w] = shape;
    per_slice("erode_slices", mask, shape, |s| {
        morph_slice(s, h, w, radius, true)
    })
}

/// Per-slice binary closing (dilation, then erosion) by a disk of `radius`.
pub fn close_slices(mask: &[bool], shape: [usize; 3], radius: usize) -> Result<Vec<bool>> {
    let [_, h, w] = shape;
    per_slice("close_slices", mask, shape, |s| {
        morph_slice(&morph_slice(s, h, w, radius, false), h, w, radius, true)
    })
}

/// Per-slice binary opening (erosion, then dilation) by a disk of `radius`.
pub fn open_slices(mask: &[bool], shape: [usize; 3], radius: usize) -> Result<Vec<bool>> {
    let [_, h, w] = shape;
    per_slice("open_slices", mask, shape, |s| {
        morph_slice(&morph_slice(s, h, w, radius, true), h, w, radius, false)
    })
}

/// Fills one slice's holes: background not 4-connected to the border becomes foreground.
fn fill_holes_slice(slice: &[bool], height: usize, width: usize) -> Vec<bool> {
    let mut outside = vec![false; slice.len()];
    let mut queue = VecDeque::new();
    let visit = |i: usize, outside: &mut Vec<bool>, queue: &mut VecDeque<usize>| {
        if !slice[i] && !outside[i] {
            outside[i] = true;
            queue.push_back(i);
        }
    };
    for x in 0..width {
        visit(x, &mut outside, &mut queue);
        visit((height - 1) * width + x, &mut outside, &mut queue);
    }
    for y in 0..height {
        visit(y * width, &mut outside, &mut queue);
        visit(y * width + width - 1, &mut outside, &mut queue);
    }
    while let Some(at) = queue.pop_front() {
        let (y, x) = (at / width, at % width);
        if y > 0 {
            visit(at - width, &mut outside, &mut queue);
        }
        if y + 1 < height {
            visit(at + width, &mut outside, &mut queue);
        }
        if x > 0 {
            visit(at - 1, &mut outside, &mut queue);
        }
        if x + 1 < width {
            visit(at + 1, &mut outside, &mut queue);
        }
    }
    outside.iter().map(|&o| !o).collect()
}

/// Per-slice hole filling (`scipy.ndimage.binary_fill_holes` on each axial slice).
pub fn fill_holes_slices(mask: &[bool], shape: [usize; 3]) -> Result<Vec<bool>> {
    let [_, h, w] = shape;
    per_slice("fill_holes_slices", mask, shape, |s| {
        fill_holes_slice(s, h, w)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(rows: &[&str]) -> (Vec<bool>, [usize; 3]) {
        let h = rows.len();
        let w = rows[0].len();
        let mask = rows
            .iter()
            .flat_map(|r| r.chars().map(|c| c == '#'))
            .collect();
        (mask, [1, h, w])
    }

    fn show(mask: &[bool], width: usize) -> Vec<String> {
        mask.chunks(width)
            .map(|r| r.iter().map(|&b| if b { '#' } else { '.' }).collect())
            .collect()
    }

    /// Morphology by its definition, one offset at a time.
    fn brute_morph(mask: &[bool], h: usize, w: usize, r: usize, erode: bool) -> Vec<bool> {
        let disk = disk_offsets(r);
        let at = |y: isize, x: isize| {
            y >= 0
                && x >= 0
                && (y as usize) < h
                && (x as usize) < w
                && mask[y as usize * w + x as usize]
        };
        (0..h * w)
            .map(|i| {
                let (y, x) = ((i / w) as isize, (i % w) as isize);
                if erode {
                    disk.iter().all(|&(dy, dx)| at(y + dy, x + dx))
                } else {
                    disk.iter().any(|&(dy, dx)| at(y + dy, x + dx))
                }
            })
            .collect()
    }

    #[test]
    fn disk_of_radius_three_has_29_offsets() {
        assert_eq!(disk_offsets(0), vec![(0, 0)]);
        assert_eq!(disk_offsets(1).len(), 5);
        let d3 = disk_offsets(3);
        assert_eq!(d3.len(), 29);
        assert!(d3.contains(&(3, 0)) && d3.contains(&(2, 2)) && !d3.contains(&(3, 1)));
        assert_eq!(disk_half_widths(3), vec![0, 2, 2, 3, 2, 2, 0]);
    }

    #[test]
    fn components_are_numbered_in_scan_order_and_counted() {
        // Two diagonal voxels: one component with 26-connectivity, two with 6.
        let (mask, shape) = parse(&["#...", ".#..", "...#", "...#"]);
        let full = label_components(&mask, shape, Connectivity::Full).unwrap();
        assert_eq!(full.sizes, vec![2, 2]);
        let faces = label_components(&mask, shape, Connectivity::Faces).unwrap();
        assert_eq!(faces.sizes, vec![1, 1, 2]);
        assert_eq!(faces.labels[0], 1);
        assert_eq!(faces.labels[5], 2);
        assert_eq!(faces.labels[11], 3);
        // 3D: voxels touching across slices only by a corner.
        let mut mask = vec![false; 2 * 2 * 2];
        mask[0] = true; // (0, 0, 0)
        mask[7] = true; // (1, 1, 1)
        let full = label_components(&mask, [2, 2, 2], Connectivity::Full).unwrap();
        assert_eq!(full.count(), 1);
        let faces = label_components(&mask, [2, 2, 2], Connectivity::Faces).unwrap();
        assert_eq!(faces.count(), 2);
        assert!(label_components(&mask, [2, 2, 3], Connectivity::Full).is_err());
    }

    #[test]
    fn largest_component_keeps_one_and_prefers_the_first_among_equals() {
        let (mask, shape) = parse(&["##..#", "##..#", ".....", "#...."]);
        let largest = largest_component(&mask, shape, Connectivity::Full).unwrap();
        assert_eq!(show(&largest, 5), vec!["##...", "##...", ".....", "....."]);
        let (mask, shape) = parse(&["#.#", "...", "..."]);
        let largest = largest_component(&mask, shape, Connectivity::Full).unwrap();
        assert_eq!(show(&largest, 3), vec!["#..", "...", "..."]);
        let empty = largest_component(&[false; 4], [1, 2, 2], Connectivity::Full).unwrap();
        assert_eq!(empty, vec![false; 4]);
    }

    #[test]
    fn closing_fills_a_hole_and_opening_removes_a_spur() {
        // Radius 1 is the 4-neighbour cross. Dilating the ring covers all but the corners of the
        // slice; eroding that back leaves the solid 3 x 3 block.
        let (mask, shape) = parse(&[".....", ".###.", ".#.#.", ".###.", "....."]);
        let closed = close_slices(&mask, shape, 1).unwrap();
        assert_eq!(
            show(&closed, 5),
            vec![".....", ".###.", ".###.", ".###.", "....."]
        );
        // Erosion keeps only (2, 2) and (2, 3), the voxels whose whole cross is inside; dilating
        // them gives two crosses side by side, and the spur to the right is gone.
        let (mask, shape) = parse(&[".......", ".###...", ".######", ".###...", "......."]);
        let opened = open_slices(&mask, shape, 1).unwrap();
        assert_eq!(
            show(&opened, 7),
            vec![".......", "..##...", ".####..", "..##...", "......."]
        );
    }

    #[test]
    fn erosion_treats_outside_the_slice_as_background() {
        // A full slice erodes to its interior; closing then cannot restore the border row.
        let mask = vec![true; 4 * 5];
        let eroded = erode_slices(&mask, [1, 4, 5], 1).unwrap();
        assert_eq!(show(&eroded, 5), vec![".....", ".###.", ".###.", "....."]);
        let closed = close_slices(&mask, [1, 4, 5], 1).unwrap();
        assert_eq!(closed, eroded);
    }

    #[test]
    fn fast_morphology_equals_the_definition() {
        let (h, w) = (13, 17);
        let mut state = 12345u64;
        let mask: Vec<bool> = (0..2 * h * w)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 33).is_multiple_of(3)
            })
            .collect();
        for r in [1, 2, 3] {
            let dilated = dilate_slices(&mask, [2, h, w], r).unwrap();
            let eroded = erode_slices(&mask, [2, h, w], r).unwrap();
            for z in 0..2 {
                let s = &mask[z * h * w..(z + 1) * h * w];
                assert_eq!(
                    &dilated[z * h * w..(z + 1) * h * w],
                    brute_morph(s, h, w, r, false)
                );
                assert_eq!(
                    &eroded[z * h * w..(z + 1) * h * w],
                    brute_morph(s, h, w, r, true)
                );
            }
        }
    }

    #[test]
    fn holes_not_connected_to_the_border_are_filled() {
        let (mask, shape) = parse(&[
            "#####..", "#...#..", "#.#.#..", "#####..", "..#.#..", "..#.#..",
        ]);
        let filled = fill_holes_slices(&mask, shape).unwrap();
        assert_eq!(
            show(&filled, 7),
            vec!["#####..", "#####..", "#####..", "#####..", "..#.#..", "..#.#.."]
        );
        // A hole closed only diagonally is connected to the outside by 8- but not 4-connectivity:
        // it is filled, as binary_fill_holes' default (4-connected background) does.
        let (mask, shape) = parse(&[".#.", "#.#", ".#."]);
        let filled = fill_holes_slices(&mask, shape).unwrap();
        assert_eq!(show(&filled, 3), vec![".#.", "###", ".#."]);
    }
}
