//! Launches of `kernels/conv.cu`: convolution forward, backward-input and backward-weight over
//! dense NCDHW tensors, and the transposed convolution as the adjoint of `g.as_conv()`, exactly
//! as the CPU backend builds it (`conv_transpose_*` in src/backend/cpu/kernels/conv.rs).
//!
//! The forward pass has two kernels: the direct loop (one thread per output element, the
//! reference) and the implicit-GEMM kernel with output-stationary shared-memory tiles;
//! [`forward_path`] chooses between them. The input gradient (and so the transposed
//! convolution's forward pass) is the same tiled kernel run as the adjoint convolution, one
//! launch per stride phase ([`backward_input_path`]), where the rule allows; the weight gradient
//! uses the direct kernel.

use super::device::{DevicePtr, KernelArg, LaunchConfig};
use super::storage::CudaStorage;
use super::DeviceApi;
use crate::backend::{BackendStorage, ConvGeometry, ConvTransposeGeometry};
use crate::error::{HeparError, Result};

const FILE: &str = "conv.cu";
/// Threads per block of the weight-gradient kernel (`BW_THREADS` in the kernel file).
const WEIGHT_THREADS: u32 = 256;
/// Most blocks of a weight-gradient or tiled grid; the kernels loop over the blocks' work beyond it.
const MAX_WEIGHT_BLOCKS: usize = 1 << 20;
/// Weight-gradient blocks wanted in flight: several waves on the largest GPUs (132 SMs).
const TARGET_WEIGHT_BLOCKS: usize = 1024;
/// Fewest (batch, position) items one weight-gradient block reduces: 16 turns of its 256 threads,
/// so the block's final reduction stays a small part of its work.
const MIN_SPLIT_POSITIONS: usize = 4096;

/// `ConvParams` of `kernels/conv.cu` (same field order, all 64-bit).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct ConvParams {
    batch: i64,
    cin: i64,
    cout: i64,
    groups: i64,
    input: [i64; 3],
    kernel: [i64; 3],
    stride: [i64; 3],
    padding: [i64; 3],
    dilation: [i64; 3],
    output: [i64; 3],
}

impl ConvParams {
    fn new(g: &ConvGeometry) -> Self {
        let a = |v: [usize; 3]| v.map(|x| x as i64);
        ConvParams {
            batch: g.batch as i64,
            cin: g.in_channels as i64,
            cout: g.out_channels as i64,
            groups: g.groups as i64,
            input: a(g.input),
            kernel: a(g.kernel),
            stride: a(g.stride),
            padding: a(g.padding),
            dilation: a(g.dilation),
            output: a(g.output()),
        }
    }

    fn arg(&self) -> KernelArg {
        KernelArg::from_bytes(bytemuck::bytes_of(self))
    }
}

/// Threads per block of the tiled forward kernel (`IG_THREADS`).
const TILED_THREADS: u32 = 256;
/// Output channels, columns and (depth, height) rows of one tile (`IG_OC`, `IG_TW`, `IG_ROWS`).
const TILE_CHANNELS: usize = 16;
const TILE_COLUMNS: usize = 32;
const TILE_ROWS: usize = 32;
/// Shared memory one tiled block may use: the 48 KiB every GPU grants without an opt-in.
const TILED_SHARED_BYTES: usize = 48 * 1024;

/// `IgTile` of `kernels/conv.cu` (same field order, all 64-bit).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct IgTile {
    rows: [i64; 2],
    chunk: i64,
    patch: [i64; 3],
    sub_pitch: i64,
    wpitch: i64,
}

/// Which kernel computes a forward convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvPath {
    /// One thread per output element, reading its inputs from global memory.
    Direct,
    /// The implicit-GEMM kernel with the given tile.
    Tiled(IgTile),
}

impl IgTile {
    /// Input channels staged per step.
    pub fn chunk(&self) -> usize {
        self.chunk as usize
    }

    /// Dynamic shared memory of one block, in bytes.
    pub fn shared_bytes(&self, stride_w: usize, elem: usize) -> usize {
        let row_pitch = stride_w * self.sub_pitch as usize;
        let patch = (self.patch[0] * self.patch[1]) as usize * row_pitch;
        (self.chunk as usize * patch + TILE_CHANNELS * self.wpitch as usize) * elem
    }
}

/// The tile of the implicit-GEMM kernel for the convolution `p` with elements of `elem` bytes,
/// or `None` when even one input channel's patch and weights exceed the shared-memory budget.
/// Strided rows get their bank-conflict padding when it fits, else go unpadded (conflicting
/// stores, same results).
fn tile_for(p: &ConvParams, elem: usize) -> Option<IgTile> {
    tile_with(p, elem, true).or_else(|| tile_with(p, elem, false))
}

fn tile_with(p: &ConvParams, elem: usize, pad_phases: bool) -> Option<IgTile> {
    let u = |v: i64| v.max(0) as usize;
    // 2D convolutions tile 32 rows of height; 3D ones 4 of depth x 8 of height.
    let rows = if p.output[0] == 1 { [1, 32] } else { [4, 8] };
    debug_assert_eq!(rows[0] * rows[1], TILE_ROWS);
    let extent = |tile: usize, axis: usize| {
        (tile - 1) * u(p.stride[axis]) + (u(p.kernel[axis]) - 1) * u(p.dilation[axis]) + 1
    };
    let patch = [
        extent(rows[0], 0),
        extent(rows[1], 1),
        extent(TILE_COLUMNS, 2),
    ];
    let s = u(p.stride[2]);
    // Each stride phase of a staged row starts 32 / s banks after the previous one.
    let mut sub_pitch = patch[2].div_ceil(s);
    if pad_phases && s > 1 && 32 % s == 0 {
        while sub_pitch % 32 != 32 / s % 32 {
            sub_pitch += 1;
        }
    }
    let taps: usize = p.kernel.iter().map(|&k| u(k)).product();
    let per_channel = patch[0] * patch[1] * s * sub_pitch + TILE_CHANNELS * taps;
    let cig = u(p.cin / p.groups.max(1));
    let chunk = (TILED_SHARED_BYTES / elem / per_channel).min(cig);
    (chunk > 0).then(|| IgTile {
        rows: rows.map(|r| r as i64),
        chunk: chunk as i64,
        patch: patch.map(|e| e as i64),
        sub_pitch: sub_pitch as i64,
        wpitch: (chunk * taps) as i64,
    })
}

/// The dispatch rule for one launch of the tiled kernel computing `p`.
fn tiled_rule(p: &ConvParams, elem: usize) -> ConvPath {
    let cog = p.cout / p.groups.max(1);
    if cog < (TILE_CHANNELS / 2) as i64 || p.output[2] < (TILE_COLUMNS / 2) as i64 {
        return ConvPath::Direct;
    }
    tile_for(p, elem).map_or(ConvPath::Direct, ConvPath::Tiled)
}

/// The dispatch rule of the forward convolution (README, "GPU kernels"): the implicit-GEMM kernel
/// when a tile is mostly useful work — at least 8 output channels per group (half of a tile's 16)
/// and at least 16 output columns (half of its 32) — and one input channel's patch and weights fit
/// in 48 KiB of shared memory; otherwise the direct kernel, which also serves depthwise and narrow
/// layers, where a tile would be mostly idle lanes or accumulators.
pub fn forward_path(g: &ConvGeometry, elem: usize) -> ConvPath {
    tiled_rule(&ConvParams::new(g), elem)
}

/// `IgMap` of `kernels/conv.cu` (same field order, all 64-bit).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
struct IgMap {
    adjoint: i64,
    full: [i64; 3],
    first: [i64; 3],
    step: [i64; 3],
    tap_full: [i64; 3],
    tap_first: [i64; 3],
    tap_step: [i64; 3],
}

impl IgMap {
    /// Outputs where they are computed, weights as given.
    fn forward(p: &ConvParams) -> Self {
        IgMap {
            adjoint: 0,
            full: p.output,
            first: [0; 3],
            step: [1; 3],
            tap_full: p.kernel,
            tap_first: [0; 3],
            tap_step: [1; 3],
        }
    }
}

/// One stride phase of an input gradient along one axis: the stride-1 convolution's kernel,
/// padding, dilation and output length, and where its outputs and taps lie in `g`'s.
struct AxisPhase {
    kernel: i64,
    padding: i64,
    dilation: i64,
    out: i64,
    first: i64,
    tap_first: i64,
    tap_step: i64,
}

/// The phases of axis `a` of `g`'s input gradient; `None` when the tiles cannot serve it (a
/// dilated strided axis, or a stride larger than the kernel, which leaves phases without taps).
fn axis_phases(g: &ConvGeometry, a: usize) -> Option<Vec<AxisPhase>> {
    let (k, s, d, pad) = (
        g.kernel[a] as i64,
        g.stride[a] as i64,
        g.dilation[a] as i64,
        g.padding[a] as i64,
    );
    let input = g.input[a] as i64;
    if s == 1 {
        // Input i receives output i + pad - d t through tap t: a convolution with the kernel
        // flipped and padding d (k - 1) - pad.
        return Some(vec![AxisPhase {
            kernel: k,
            padding: d * (k - 1) - pad,
            dilation: d,
            out: input,
            first: 0,
            tap_first: 0,
            tap_step: 1,
        }]);
    }
    if d != 1 || k < s {
        return None;
    }
    // Input r + s m receives output (r + pad - t) / s through the taps t = k0 + s j; with
    // c0 = (r + pad - k0) / s that is output m + c0 - j: a stride-1 convolution over the output
    // with n taps flipped and padding n - 1 - c0.
    Some(
        (0..s.min(input))
            .map(|r| {
                let k0 = (r + pad) % s;
                let n = (k - k0 + s - 1) / s;
                let c0 = (r + pad - k0) / s;
                AxisPhase {
                    kernel: n,
                    padding: n - 1 - c0,
                    dilation: 1,
                    out: (input - r + s - 1) / s,
                    first: r,
                    tap_first: k0,
                    tap_step: s,
                }
            })
            .collect(),
    )
}

/// The launches of the tiled kernel that compute `g`'s input gradient: one per stride phase
/// (one in all at stride 1), or `None` when some axis cannot be tiled.
fn adjoint_launches(g: &ConvGeometry) -> Option<Vec<(ConvParams, IgMap)>> {
    let axes = [axis_phases(g, 0)?, axis_phases(g, 1)?, axis_phases(g, 2)?];
    let out = g.output().map(|v| v as i64);
    let mut launches = Vec::new();
    for pd in &axes[0] {
        for ph in &axes[1] {
            for pw in &axes[2] {
                let ph3 = [pd, ph, pw];
                let p = ConvParams {
                    batch: g.batch as i64,
                    cin: g.out_channels as i64,
                    cout: g.in_channels as i64,
                    groups: g.groups as i64,
                    input: out,
                    kernel: ph3.map(|x| x.kernel),
                    stride: [1; 3],
                    padding: ph3.map(|x| x.padding),
                    dilation: ph3.map(|x| x.dilation),
                    output: ph3.map(|x| x.out),
                };
                let map = IgMap {
                    adjoint: 1,
                    full: g.input.map(|v| v as i64),
                    first: ph3.map(|x| x.first),
                    step: g.stride.map(|v| v as i64),
                    tap_full: g.kernel.map(|v| v as i64),
                    tap_first: ph3.map(|x| x.tap_first),
                    tap_step: ph3.map(|x| x.tap_step),
                };
                launches.push((p, map));
            }
        }
    }
    Some(launches)
}

/// Which kernel computes the input gradient of `g` (and so a transposed convolution's forward
/// pass): the tiled kernel run as the adjoint convolution, one launch per stride phase, when
/// every phase passes the forward rule; else the direct gather. The tile of the first phase is
/// returned.
pub fn backward_input_path(g: &ConvGeometry, elem: usize) -> ConvPath {
    let Some(launches) = adjoint_launches(g) else {
        return ConvPath::Direct;
    };
    let paths: Vec<ConvPath> = launches.iter().map(|(p, _)| tiled_rule(p, elem)).collect();
    if paths.iter().all(|p| matches!(p, ConvPath::Tiled(_))) {
        paths[0]
    } else {
        ConvPath::Direct
    }
}

/// Output channels, tile columns and threads of the tiled weight-gradient kernel (`WG_OC`,
/// `WG_TW`, `WG_THREADS`), and its (input channel, tap) columns per warp by element size
/// (`WG_CPW_F32`, `WG_CPW_F64`).
const WGRAD_CHANNELS: usize = 16;
const WGRAD_COLUMNS: usize = 32;
const WGRAD_THREADS: u32 = 256;
const WGRAD_WARPS: usize = WGRAD_THREADS as usize / 32;
fn wgrad_columns_per_warp(elem: usize) -> usize {
    if elem > 4 {
        2
    } else {
        8
    }
}
/// Fewest position tiles one weight-gradient split reduces, so that the final shuffle reduction
/// and the stores of its partial sums stay a small part of a block's work.
const MIN_SPLIT_TILES: usize = 16;

/// `WgTile` of `kernels/conv.cu` (same field order, all 64-bit).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct WgTile {
    rows: [i64; 2],
    span: i64,
    patch: [i64; 3],
    sub_pitch: i64,
    splits: i64,
}

impl WgTile {
    /// Ranges of position tiles reduced by separate blocks (added in order by a second pass).
    pub fn splits(&self) -> usize {
        self.splits as usize
    }

    /// Output rows (depth, height) of one position tile.
    pub fn rows(&self) -> [usize; 2] {
        self.rows.map(|r| r as usize)
    }

    /// Dynamic shared memory of one block, in bytes.
    pub fn shared_bytes(&self, stride_w: usize, elem: usize) -> usize {
        let row_pitch = stride_w * self.sub_pitch as usize;
        let patch = (self.patch[0] * self.patch[1]) as usize * row_pitch;
        let rows = (self.rows[0] * self.rows[1]) as usize;
        (self.span as usize * patch + WGRAD_CHANNELS * rows * WGRAD_COLUMNS) * elem
    }
}

/// Which kernel computes a weight gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightPath {
    /// Blocks per channel pair, threads striding over the positions (`conv_backward_weight_*`).
    Direct,
    /// The implicit-GEMM kernel with the given tile (`conv_backward_weight_tiled_*`).
    Tiled(WgTile),
}

/// Most input channels that one block of `block_cols` consecutive (input channel, tap) columns
/// of a group touches.
fn wgrad_span(cols: usize, taps: usize, block_cols: usize) -> usize {
    (0..cols.div_ceil(block_cols))
        .map(|b| {
            let c0 = b * block_cols;
            let c1 = (c0 + block_cols).min(cols) - 1;
            c1 / taps - c0 / taps + 1
        })
        .max()
        .unwrap_or(1)
}

/// The weight-gradient tile for `p`: the largest position tile (of those below) whose staged
/// patches and output-gradient rows fit in 48 KiB, or `None`.
fn wgrad_tile(p: &ConvParams, elem: usize) -> Option<WgTile> {
    let u = |v: i64| v.max(0) as usize;
    let candidates: &[[usize; 2]] = if p.output[0] == 1 {
        &[[1, 8], [1, 4], [1, 2], [1, 1]]
    } else {
        &[[2, 4], [2, 2], [1, 2], [1, 1]]
    };
    let taps: usize = p.kernel.iter().map(|&k| u(k)).product();
    let cig = u(p.cin / p.groups.max(1));
    let cog = u(p.cout / p.groups.max(1));
    let block_cols = WGRAD_WARPS * wgrad_columns_per_warp(elem);
    let span = wgrad_span(cig * taps, taps.max(1), block_cols);
    let s = u(p.stride[2]).max(1);
    candidates.iter().find_map(|&rows| {
        let extent = |tile: usize, axis: usize| {
            (tile - 1) * u(p.stride[axis]) + (u(p.kernel[axis]) - 1) * u(p.dilation[axis]) + 1
        };
        let patch = [
            extent(rows[0], 0),
            extent(rows[1], 1),
            extent(WGRAD_COLUMNS, 2),
        ];
        // Each stride phase of a staged row starts 32 / s banks after the previous one.
        let mut sub_pitch = patch[2].div_ceil(s);
        if s > 1 && 32 % s == 0 {
            while sub_pitch % 32 != 32 / s % 32 {
                sub_pitch += 1;
            }
        }
        let out = p.output.map(u);
        let tiles = u(p.batch)
            * out[0].div_ceil(rows[0])
            * out[1].div_ceil(rows[1])
            * out[2].div_ceil(WGRAD_COLUMNS);
        let items = u(p.groups) * cog.div_ceil(WGRAD_CHANNELS) * (cig * taps).div_ceil(block_cols);
        let splits = TARGET_WEIGHT_BLOCKS
            .div_ceil(items.max(1))
            .min(tiles.div_ceil(MIN_SPLIT_TILES))
            .max(1);
        let tile = WgTile {
            rows: rows.map(|r| r as i64),
            span: span as i64,
            patch: patch.map(|e| e as i64),
            sub_pitch: sub_pitch as i64,
            splits: splits as i64,
        };
        (tile.shared_bytes(s, elem) <= TILED_SHARED_BYTES).then_some(tile)
    })
}

/// The dispatch rule of the weight gradient (README, "GPU kernels"): the implicit-GEMM kernel
/// under the forward rule's conditions — at least 8 output channels per group and 16 output
/// columns (half a tile each) — when a position tile's patches fit in 48 KiB; otherwise the
/// direct kernel (depthwise and narrow layers).
pub fn backward_weight_path(g: &ConvGeometry, elem: usize) -> WeightPath {
    let p = ConvParams::new(g);
    let cog = p.cout / p.groups.max(1);
    if cog < (WGRAD_CHANNELS / 2) as i64 || p.output[2] < (WGRAD_COLUMNS / 2) as i64 {
        return WeightPath::Direct;
    }
    tiled_weight_path(g, elem)
}

/// The tiled weight-gradient kernel for `g` whenever its tile fits, whatever the rule says (the
/// kernel serves every geometry; tests run it on depthwise and narrow layers too).
pub fn tiled_weight_path(g: &ConvGeometry, elem: usize) -> WeightPath {
    wgrad_tile(&ConvParams::new(g), elem).map_or(WeightPath::Direct, WeightPath::Tiled)
}

/// Checks the geometry and that each operand holds exactly the elements it describes.
fn check<D: DeviceApi>(
    op: &'static str,
    g: &ConvGeometry,
    operands: &[(&str, &CudaStorage<D>, usize)],
) -> Result<()> {
    g.validate()
        .map_err(|e| HeparError::invalid(op, format!("{g:?}: {e}")))?;
    if let Some((first, rest)) = operands.split_first() {
        for (_, s, _) in rest {
            first.1.require_same_dtype(op, s)?;
        }
        first.1.require_compute(op)?;
    }
    for (what, s, want) in operands {
        if s.len() != *want {
            return Err(HeparError::shape(
                op,
                format!(
                    "{what} has {} elements, the geometry needs {want} ({g:?})",
                    s.len()
                ),
            ));
        }
    }
    Ok(())
}

fn check_bias<D: DeviceApi>(
    op: &'static str,
    x: &CudaStorage<D>,
    bias: Option<&CudaStorage<D>>,
    channels: usize,
) -> Result<()> {
    if let Some(b) = bias {
        x.require_same_dtype(op, b)?;
        if b.len() != channels {
            return Err(HeparError::shape(
                op,
                format!("bias has {} elements for {channels} channels", b.len()),
            ));
        }
    }
    Ok(())
}

/// The bias pointer and its flag; a null pointer when there is none (never read then).
fn bias_args<D: DeviceApi>(bias: Option<&CudaStorage<D>>) -> [KernelArg; 2] {
    match bias {
        Some(b) => [b.arg(), 1i32.into()],
        None => [DevicePtr(0).into(), 0i32.into()],
    }
}

/// The forward convolution by the kernel [`forward_path`] picks.
fn launch_forward<D: DeviceApi>(
    x: &CudaStorage<D>,
    weight: &CudaStorage<D>,
    bias: Option<&CudaStorage<D>>,
    g: &ConvGeometry,
) -> Result<CudaStorage<D>> {
    match forward_path(g, x.dtype().size_in_bytes()) {
        ConvPath::Direct => launch_forward_direct(x, weight, bias, g),
        ConvPath::Tiled(tile) => {
            let y = x.alloc_like(g.output_len(), x.dtype())?;
            let p = ConvParams::new(g);
            launch_tiled(x, weight, bias, &y, &p, &tile, &IgMap::forward(&p))?;
            Ok(y)
        }
    }
}

/// One launch of the tiled kernel: blocks per output tile (channels x rows x columns of one
/// batch item and group) of `p`, written into `y` as `map` places them.
fn launch_tiled<D: DeviceApi>(
    x: &CudaStorage<D>,
    weight: &CudaStorage<D>,
    bias: Option<&CudaStorage<D>>,
    y: &CudaStorage<D>,
    p: &ConvParams,
    tile: &IgTile,
    map: &IgMap,
) -> Result<()> {
    let u = |v: i64| v.max(0) as usize;
    let out = p.output.map(u);
    if out.contains(&0) || u(p.batch) == 0 || u(p.cout) == 0 {
        return Ok(());
    }
    let tiles = out[0].div_ceil(tile.rows[0] as usize)
        * out[1].div_ceil(tile.rows[1] as usize)
        * out[2].div_ceil(TILE_COLUMNS);
    let groups = u(p.groups);
    let cog = u(p.cout) / groups;
    let blocks = u(p.batch) * groups * cog.div_ceil(TILE_CHANNELS) * tiles;
    let config = LaunchConfig {
        grid_dim: (blocks.min(MAX_WEIGHT_BLOCKS) as u32, 1, 1),
        block_dim: (TILED_THREADS, 1, 1),
        shared_mem_bytes: tile.shared_bytes(u(p.stride[2]), x.dtype().size_in_bytes()) as u32,
    };
    let [b, has_b] = bias_args(bias);
    let args = [
        x.arg(),
        weight.arg(),
        b,
        has_b,
        y.arg(),
        p.arg(),
        KernelArg::from_bytes(bytemuck::bytes_of(tile)),
        KernelArg::from_bytes(bytemuck::bytes_of(map)),
    ];
    x.context()
        .launch(FILE, &x.kernel_name("conv_forward_tiled"), &config, &args)
}

/// One thread per output element: the forward gather.
fn launch_forward_direct<D: DeviceApi>(
    x: &CudaStorage<D>,
    weight: &CudaStorage<D>,
    bias: Option<&CudaStorage<D>>,
    g: &ConvGeometry,
) -> Result<CudaStorage<D>> {
    let n = g.output_len();
    let y = x.alloc_like(n, x.dtype())?;
    if n > 0 {
        let ctx = x.context();
        let [b, has_b] = bias_args(bias);
        let args = [
            x.arg(),
            weight.arg(),
            b,
            has_b,
            y.arg(),
            ConvParams::new(g).arg(),
        ];
        ctx.launch(
            FILE,
            &x.kernel_name("conv_forward"),
            &ctx.grid_stride(n),
            &args,
        )?;
    }
    Ok(y)
}

/// The input gradient of `g` (with a bias: the transposed convolution's forward pass) by the
/// kernel [`backward_input_path`] picks.
fn launch_backward_input<D: DeviceApi>(
    grad_out: &CudaStorage<D>,
    weight: &CudaStorage<D>,
    bias: Option<&CudaStorage<D>>,
    g: &ConvGeometry,
) -> Result<CudaStorage<D>> {
    let elem = grad_out.dtype().size_in_bytes();
    match (backward_input_path(g, elem), adjoint_launches(g)) {
        (ConvPath::Tiled(_), Some(launches)) => {
            // The phases tile the input gradient: together they write every element once.
            let gx = grad_out.alloc_like(g.input_len(), grad_out.dtype())?;
            for (p, map) in &launches {
                if let ConvPath::Tiled(tile) = tiled_rule(p, elem) {
                    launch_tiled(grad_out, weight, bias, &gx, p, &tile, map)?;
                }
            }
            Ok(gx)
        }
        _ => launch_backward_input_direct(grad_out, weight, bias, g),
    }
}

/// One thread per input element, gathering from the output positions and taps that read it.
fn launch_backward_input_direct<D: DeviceApi>(
    grad_out: &CudaStorage<D>,
    weight: &CudaStorage<D>,
    bias: Option<&CudaStorage<D>>,
    g: &ConvGeometry,
) -> Result<CudaStorage<D>> {
    let n = g.input_len();
    let gx = grad_out.alloc_like(n, grad_out.dtype())?;
    if n > 0 {
        let ctx = grad_out.context();
        let [b, has_b] = bias_args(bias);
        let args = [
            grad_out.arg(),
            weight.arg(),
            b,
            has_b,
            gx.arg(),
            ConvParams::new(g).arg(),
        ];
        ctx.launch(
            FILE,
            &grad_out.kernel_name("conv_backward_input"),
            &ctx.grid_stride(n),
            &args,
        )?;
    }
    Ok(gx)
}

/// How many blocks share the reduction of one (out, in) channel pair: enough blocks to fill a
/// large GPU, but each reducing at least `MIN_SPLIT_POSITIONS` (batch, position) items.
fn weight_splits(g: &ConvGeometry) -> usize {
    let pairs = g.out_channels * (g.in_channels / g.groups);
    let total = g.batch * g.output().iter().product::<usize>();
    TARGET_WEIGHT_BLOCKS
        .div_ceil(pairs.max(1))
        .min(total.div_ceil(MIN_SPLIT_POSITIONS))
        .max(1)
}

/// The weight gradient of `g` by the kernel [`backward_weight_path`] picks.
fn launch_backward_weight<D: DeviceApi>(
    x: &CudaStorage<D>,
    grad_out: &CudaStorage<D>,
    g: &ConvGeometry,
) -> Result<CudaStorage<D>> {
    launch_backward_weight_on(
        x,
        grad_out,
        g,
        backward_weight_path(g, x.dtype().size_in_bytes()),
    )
}

/// The weight gradient of `g` by the kernel `path` names (tests force the tiled one).
pub fn conv_backward_weight_on<D: DeviceApi>(
    x: &CudaStorage<D>,
    grad_out: &CudaStorage<D>,
    g: &ConvGeometry,
    path: WeightPath,
) -> Result<CudaStorage<D>> {
    check(
        "conv_backward_weight",
        g,
        &[
            ("input", x, g.input_len()),
            ("grad_out", grad_out, g.output_len()),
        ],
    )?;
    launch_backward_weight_on(x, grad_out, g, path)
}

fn launch_backward_weight_on<D: DeviceApi>(
    x: &CudaStorage<D>,
    grad_out: &CudaStorage<D>,
    g: &ConvGeometry,
    path: WeightPath,
) -> Result<CudaStorage<D>> {
    match path {
        WeightPath::Direct => launch_backward_weight_direct(x, grad_out, g),
        WeightPath::Tiled(tile) => launch_backward_weight_tiled(x, grad_out, g, &tile),
    }
}

/// Blocks per (output channels, column block, split) of the tiled kernel; with several splits,
/// the second pass adds them in split order.
fn launch_backward_weight_tiled<D: DeviceApi>(
    x: &CudaStorage<D>,
    grad_out: &CudaStorage<D>,
    g: &ConvGeometry,
    tile: &WgTile,
) -> Result<CudaStorage<D>> {
    let n = g.weight_len();
    let elem = x.dtype().size_in_bytes();
    let splits = tile.splits();
    let gw = x.alloc_like(n, x.dtype())?;
    if n == 0 {
        return Ok(gw);
    }
    let parts = if splits == 1 {
        gw.clone()
    } else {
        x.alloc_like(n * splits, x.dtype())?
    };
    let taps = g.kernel.iter().product::<usize>();
    // Without positions every block still writes its (empty, zero) sums.
    let cig = g.in_channels / g.groups;
    let cog = g.out_channels / g.groups;
    let block_cols = WGRAD_WARPS * wgrad_columns_per_warp(elem);
    let blocks =
        g.groups * cog.div_ceil(WGRAD_CHANNELS) * (cig * taps).div_ceil(block_cols) * splits;
    let config = LaunchConfig {
        grid_dim: (blocks.min(MAX_WEIGHT_BLOCKS) as u32, 1, 1),
        block_dim: (WGRAD_THREADS, 1, 1),
        shared_mem_bytes: tile.shared_bytes(g.stride[2], elem) as u32,
    };
    let args = [
        x.arg(),
        grad_out.arg(),
        parts.arg(),
        ConvParams::new(g).arg(),
        KernelArg::from_bytes(bytemuck::bytes_of(tile)),
    ];
    let ctx = x.context();
    ctx.launch(
        FILE,
        &x.kernel_name("conv_backward_weight_tiled"),
        &config,
        &args,
    )?;
    if splits > 1 {
        sum_splits(&parts, &gw, n, taps, splits)?;
    }
    Ok(gw)
}

/// gw = the sum over splits, in split order, of `parts` (conv_weight_splits_sum).
fn sum_splits<D: DeviceApi>(
    parts: &CudaStorage<D>,
    gw: &CudaStorage<D>,
    n: usize,
    taps: usize,
    splits: usize,
) -> Result<()> {
    let ctx = parts.context();
    let args = [
        parts.arg(),
        gw.arg(),
        (n as i64).into(),
        (taps as i64).into(),
        (splits as i64).into(),
    ];
    ctx.launch(
        FILE,
        &parts.kernel_name("conv_weight_splits_sum"),
        &ctx.grid_stride(n),
        &args,
    )
}

/// Blocks per (out channel, in channel of its group), each reducing part of the batch and
/// positions; with several parts, a second pass adds them in a fixed order.
fn launch_backward_weight_direct<D: DeviceApi>(
    x: &CudaStorage<D>,
    grad_out: &CudaStorage<D>,
    g: &ConvGeometry,
) -> Result<CudaStorage<D>> {
    let n = g.weight_len();
    let gw = x.alloc_like(n, x.dtype())?;
    if n == 0 {
        return Ok(gw);
    }
    let ctx = x.context();
    let taps = g.kernel.iter().product::<usize>();
    let splits = weight_splits(g);
    let blocks = g.out_channels * (g.in_channels / g.groups) * splits;
    let parts = if splits == 1 {
        gw.clone()
    } else {
        x.alloc_like(n * splits, x.dtype())?
    };
    let config = LaunchConfig {
        grid_dim: (blocks.min(MAX_WEIGHT_BLOCKS) as u32, 1, 1),
        block_dim: (WEIGHT_THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    let args = [
        x.arg(),
        grad_out.arg(),
        parts.arg(),
        ConvParams::new(g).arg(),
        (splits as i64).into(),
    ];
    ctx.launch(FILE, &x.kernel_name("conv_backward_weight"), &config, &args)?;
    if splits > 1 {
        sum_splits(&parts, &gw, n, taps, splits)?;
    }
    Ok(gw)
}

pub fn conv<D: DeviceApi>(
    x: &CudaStorage<D>,
    weight: &CudaStorage<D>,
    bias: Option<&CudaStorage<D>>,
    g: &ConvGeometry,
) -> Result<CudaStorage<D>> {
    let op = "conv";
    check(
        op,
        g,
        &[
            ("input", x, g.input_len()),
            ("weight", weight, g.weight_len()),
        ],
    )?;
    check_bias(op, x, bias, g.out_channels)?;
    launch_forward(x, weight, bias, g)
}

pub fn conv_backward_input<D: DeviceApi>(
    grad_out: &CudaStorage<D>,
    weight: &CudaStorage<D>,
    g: &ConvGeometry,
) -> Result<CudaStorage<D>> {
    check(
        "conv_backward_input",
        g,
        &[
            ("grad_out", grad_out, g.output_len()),
            ("weight", weight, g.weight_len()),
        ],
    )?;
    launch_backward_input(grad_out, weight, None, g)
}

pub fn conv_backward_weight<D: DeviceApi>(
    x: &CudaStorage<D>,
    grad_out: &CudaStorage<D>,
    g: &ConvGeometry,
) -> Result<CudaStorage<D>> {
    check(
        "conv_backward_weight",
        g,
        &[
            ("input", x, g.input_len()),
            ("grad_out", grad_out, g.output_len()),
        ],
    )?;
    launch_backward_weight(x, grad_out, g)
}

/// Checks a transposed convolution and returns its adjoint convolution.
fn adjoint(op: &'static str, g: &ConvTransposeGeometry) -> Result<ConvGeometry> {
    g.validate()
        .map_err(|e| HeparError::invalid(op, format!("{g:?}: {e}")))?;
    Ok(g.as_conv())
}

/// Transposed convolution forward: the backward-input pass of `g.as_conv()`, plus the bias.
pub fn conv_transpose<D: DeviceApi>(
    x: &CudaStorage<D>,
    weight: &CudaStorage<D>,
    bias: Option<&CudaStorage<D>>,
    g: &ConvTransposeGeometry,
) -> Result<CudaStorage<D>> {
    let op = "conv_transpose";
    let c = adjoint(op, g)?;
    check(
        op,
        &c,
        &[
            ("input", x, g.input_len()),
            ("weight", weight, g.weight_len()),
        ],
    )?;
    check_bias(op, x, bias, g.out_channels)?;
    launch_backward_input(x, weight, bias, &c)
}

/// Input gradient of the transposed convolution: the forward pass of `g.as_conv()`.
pub fn conv_transpose_backward_input<D: DeviceApi>(
    grad_out: &CudaStorage<D>,
    weight: &CudaStorage<D>,
    g: &ConvTransposeGeometry,
) -> Result<CudaStorage<D>> {
    let op = "conv_transpose_backward_input";
    let c = adjoint(op, g)?;
    check(
        op,
        &c,
        &[
            ("grad_out", grad_out, g.output_len()),
            ("weight", weight, g.weight_len()),
        ],
    )?;
    launch_forward(grad_out, weight, None, &c)
}

/// Weight gradient of the transposed convolution: the weight gradient of `g.as_conv()` with the
/// roles swapped (its input is our output gradient, its output gradient our input).
pub fn conv_transpose_backward_weight<D: DeviceApi>(
    x: &CudaStorage<D>,
    grad_out: &CudaStorage<D>,
    g: &ConvTransposeGeometry,
) -> Result<CudaStorage<D>> {
    let op = "conv_transpose_backward_weight";
    let c = adjoint(op, g)?;
    check(
        op,
        &c,
        &[
            ("input", x, g.input_len()),
            ("grad_out", grad_out, g.output_len()),
        ],
    )?;
    launch_backward_weight(grad_out, x, &c)
}

/// The weight gradient of `g` on a GPU storage by the kernel `path` names, whatever the dispatch
/// rule would pick (tests run the tiled kernel on depthwise and narrow layers this way).
pub fn storage_backward_weight_on(
    x: &crate::backend::Storage,
    grad_out: &crate::backend::Storage,
    g: &ConvGeometry,
    path: WeightPath,
) -> Result<crate::backend::Storage> {
    use crate::backend::Storage;
    let op = "conv_backward_weight";
    match (x, grad_out) {
        (Storage::PtxVm(x), Storage::PtxVm(gy)) => {
            conv_backward_weight_on(x, gy, g, path).map(Storage::PtxVm)
        }
        (Storage::Cuda(x), Storage::Cuda(gy)) => {
            conv_backward_weight_on(x, gy, g, path).map(Storage::Cuda)
        }
        _ => Err(HeparError::invalid(
            op,
            format!(
                "the GPU kernels need both operands on one GPU device, not {} and {}",
                x.device(),
                grad_out.device()
            ),
        )),
    }
}
