//! Kernel budgets (`kernels/budgets.toml`): per kernel, the most registers and spill bytes ptxas
//! may allocate on sm_80 and sm_90; per kernel and probe case (one op at a small shape on the PTX
//! VM), the most global sectors per request, shared-memory bank conflicts per request and
//! instructions per output element. [`check`] compares measurements with the file; [`update`]
//! writes measured values, with the margins of [`Margins`], for new or changed kernels.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::kernel_report::{find_ptxas, source_resources};
use super::nvrtc::Arch;
use crate::error::{HeparError, Result};
use crate::ptx::{LaunchCounters, LaunchReport};

/// The architectures registers and spills are budgeted on, in the order of the arrays below.
pub const ARCHS: [Arch; 2] = [Arch::Sm80, Arch::Sm90];

/// What ptxas allocates for one kernel on each of [`ARCHS`], and a fingerprint of its PTX.
#[derive(Debug, Clone, PartialEq)]
pub struct StaticMeasure {
    pub file: String,
    pub kernel: String,
    pub registers: [u32; 2],
    /// Spill stores plus spill loads, bytes.
    pub spill_bytes: [u64; 2],
    /// FNV-1a of the kernel's sm_80 PTX entry: `update` re-measures a kernel when it changes.
    pub ptx_hash: String,
}

/// The VM counters of one kernel in one probe case (its launches in that case merged).
#[derive(Debug, Clone, PartialEq)]
pub struct CaseMeasure {
    pub kernel: String,
    pub case: String,
    /// 32-byte global sectors per warp-level load or store request.
    pub sectors_per_request: f64,
    /// Extra shared-memory wavefronts per shared load or store request.
    pub bank_conflicts_per_request: f64,
    /// Thread-level instructions per element of the probed op's output.
    pub instructions_per_output: f64,
}

fn ptxas_error(msg: String) -> HeparError {
    HeparError::Backend {
        backend: "ptxas",
        msg,
    }
}

/// 64-bit FNV-1a, as 16 hex digits: stable across Rust versions, unlike `DefaultHasher`.
fn fnv1a(text: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

/// The text of entry `kernel` in `ptx`: from its `.entry` line to the closing brace.
fn ptx_entry<'a>(ptx: &'a str, kernel: &str) -> Option<&'a str> {
    let start = ptx.find(&format!(".entry {kernel}("))?;
    let rest = &ptx[start..];
    let end = rest.find("\n}").map_or(rest.len(), |e| e + 2);
    Some(&rest[..end])
}

/// ptxas registers and spills of every kernel of `sources` (file name, full CUDA source) on
/// sm_80 and sm_90, files assembled in parallel.
pub fn measure_static(sources: &[(String, String)]) -> Result<Vec<StaticMeasure>> {
    let ptxas = find_ptxas()?;
    let jobs: Vec<(usize, usize)> = (0..sources.len())
        .flat_map(|f| (0..ARCHS.len()).map(move |a| (f, a)))
        .collect();
    let assembled: Vec<_> = jobs
        .par_iter()
        .map(|&(f, a)| {
            let (file, text) = &sources[f];
            source_resources(&ptxas, file, text, ARCHS[a]).map(|r| (f, a, r))
        })
        .collect::<Result<_>>()?;
    let mut out: BTreeMap<(String, String), StaticMeasure> = BTreeMap::new();
    for (f, a, (ptx, kernels)) in assembled {
        for k in kernels {
            let m = out
                .entry((k.file.clone(), k.kernel.clone()))
                .or_insert_with(|| StaticMeasure {
                    file: k.file.clone(),
                    kernel: k.kernel.clone(),
                    registers: [0; 2],
                    spill_bytes: [0; 2],
                    ptx_hash: String::new(),
                });
            m.registers[a] = k.registers;
            m.spill_bytes[a] = k.spill_store_bytes + k.spill_load_bytes;
            if ARCHS[a] == Arch::Sm80 {
                let entry = ptx_entry(&ptx, &k.kernel).ok_or_else(|| {
                    ptxas_error(format!(
                        "{}: no `.entry {}` in its PTX",
                        sources[f].0, k.kernel
                    ))
                })?;
                m.ptx_hash = fnv1a(entry);
            }
        }
    }
    Ok(out.into_values().collect())
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// The counters of the launches of one probe case, merged per kernel. `outputs` is the number
/// of elements the probed op produced.
pub fn measure_case(case: &str, outputs: usize, reports: &[LaunchReport]) -> Vec<CaseMeasure> {
    let mut by_kernel: BTreeMap<&str, LaunchCounters> = BTreeMap::new();
    for r in reports {
        by_kernel
            .entry(r.kernel.as_str())
            .or_default()
            .merge(&r.counters);
    }
    by_kernel
        .into_iter()
        .map(|(kernel, c)| CaseMeasure {
            kernel: kernel.to_string(),
            case: case.to_string(),
            sectors_per_request: ratio(
                c.global_load_sectors + c.global_store_sectors,
                c.global_load_requests + c.global_store_requests,
            ),
            bank_conflicts_per_request: c.bank_conflicts_per_shared_request(),
            instructions_per_output: c.thread_instructions.iter().sum::<u64>() as f64
                / outputs.max(1) as f64,
        })
        .collect()
}

/// One kernel's budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelBudget {
    pub name: String,
    pub file: String,
    /// The PTX the budget was measured on (see [`StaticMeasure::ptx_hash`]).
    pub ptx_hash: String,
    pub max_registers_sm80: u32,
    pub max_registers_sm90: u32,
    pub max_spill_bytes: u64,
    #[serde(default)]
    pub case: Vec<CaseBudget>,
}

/// One kernel's budget in one probe case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseBudget {
    pub case: String,
    pub max_sectors_per_request: f64,
    pub max_bank_conflicts_per_request: f64,
    pub max_instructions_per_output: f64,
}

/// The budgets file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Budgets {
    #[serde(default)]
    pub kernel: Vec<KernelBudget>,
}

const HEADER: &str = "\
# Kernel budgets, checked by `hepar kernels check` (and CI). Per kernel: the most registers ptxas
# may allocate on sm_80 / sm_90 and the most spill bytes (stores + loads). Per kernel and probe
# case (an op at a small shape on the PTX VM): the most 32-byte global sectors per load/store
# request (4 = coalesced f32, 8 = coalesced f64, 32 = one sector per lane), extra shared-memory
# wavefronts per request from bank conflicts, and thread instructions per output element.
# `hepar kernels check --update` writes measured values for new or changed kernels (ptx_hash),
# with margins: registers + 8, spills as measured, the VM ratios x 1.10 rounded up.
";

impl Budgets {
    pub fn load(path: &Path) -> Result<Budgets> {
        let text = std::fs::read_to_string(path).map_err(|e| HeparError::io(path, e))?;
        toml::from_str(&text)
            .map_err(|e| HeparError::invalid("kernel budgets", format!("{}: {e}", path.display())))
    }

    pub fn to_toml(&self) -> Result<String> {
        let body = toml::to_string(self)
            .map_err(|e| HeparError::invalid("kernel budgets", e.to_string()))?;
        Ok(format!("{HEADER}\n{body}"))
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        crate::util::atomic_write::write_atomic(path, self.to_toml()?.as_bytes())
    }

    fn find(&self, kernel: &str) -> Option<&KernelBudget> {
        self.kernel.iter().find(|k| k.name == kernel)
    }
}

/// The margins `update` adds to measured values.
pub struct Margins;

impl Margins {
    pub const REGISTERS: u32 = 8;
    pub const RATIO: f64 = 1.10;

    /// `x * RATIO` rounded up to `1 / scale`.
    fn ratio(x: f64, scale: f64) -> f64 {
        (x * Self::RATIO * scale - 1e-9).ceil().max(0.0) / scale
    }

    fn kernel(s: &StaticMeasure, cases: &[&CaseMeasure]) -> KernelBudget {
        let mut case: Vec<CaseBudget> = cases.iter().map(|c| Self::case(c)).collect();
        case.sort_by(|a, b| a.case.cmp(&b.case));
        KernelBudget {
            name: s.kernel.clone(),
            file: s.file.clone(),
            ptx_hash: s.ptx_hash.clone(),
            max_registers_sm80: (s.registers[0] + Self::REGISTERS).min(255),
            max_registers_sm90: (s.registers[1] + Self::REGISTERS).min(255),
            max_spill_bytes: s.spill_bytes[0].max(s.spill_bytes[1]),
            case,
        }
    }

    fn case(c: &CaseMeasure) -> CaseBudget {
        CaseBudget {
            case: c.case.clone(),
            max_sectors_per_request: Self::ratio(c.sectors_per_request, 100.0),
            max_bank_conflicts_per_request: Self::ratio(c.bank_conflicts_per_request, 1000.0),
            max_instructions_per_output: Self::ratio(c.instructions_per_output, 10.0),
        }
    }
}

/// One row of the check's table: a kernel in one case (or without one).
#[derive(Debug, Clone)]
pub struct CheckRow {
    pub kernel: String,
    pub case: String,
    /// "measured/budget" per column: regs sm_80, regs sm_90, spills, sectors/request,
    /// conflicts/request, instructions/output.
    pub cells: [String; 6],
    /// Why the row fails (empty: it passes).
    pub failures: Vec<String>,
}

impl CheckRow {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// The check's outcome.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    pub rows: Vec<CheckRow>,
    /// Budgets of kernels that no longer exist (not a failure; `--update` removes them).
    pub stale: Vec<String>,
}

impl CheckReport {
    pub fn failures(&self) -> Vec<String> {
        self.rows
            .iter()
            .flat_map(|r| r.failures.iter().map(move |f| format!("{}: {f}", r.kernel)))
            .collect()
    }

    pub fn passed(&self) -> bool {
        self.rows.iter().all(CheckRow::passed)
    }

    /// The table, then one line per failure and a verdict.
    pub fn format(&self) -> String {
        let heads = [
            "regs sm_80",
            "regs sm_90",
            "spill B",
            "sect/req",
            "confl/req",
            "instr/out",
        ];
        let mut s = format!("{:<34} {:<36}", "kernel", "case");
        for h in heads {
            s.push_str(&format!(" {h:>15}"));
        }
        s.push_str("  result\n");
        for r in &self.rows {
            s.push_str(&format!("{:<34} {:<36}", r.kernel, r.case));
            for c in &r.cells {
                s.push_str(&format!(" {c:>15}"));
            }
            s.push_str(if r.passed() { "  PASS\n" } else { "  FAIL\n" });
        }
        for k in &self.stale {
            s.push_str(&format!(
                "note: budget for `{k}`, which no kernel file defines any more\n"
            ));
        }
        let failures = self.failures();
        for f in &failures {
            s.push_str(&format!("FAIL {f}\n"));
        }
        let kernels: BTreeSet<&str> = self.rows.iter().map(|r| r.kernel.as_str()).collect();
        if failures.is_empty() {
            s.push_str(&format!(
                "{} kernels, {} rows: all within budget\n",
                kernels.len(),
                self.rows.len()
            ));
        } else {
            s.push_str(&format!(
                "{} kernels: {} budget failure(s)\n",
                kernels.len(),
                failures.len()
            ));
        }
        s
    }
}

fn cell_u(measured: u64, budget: Option<u64>) -> String {
    match budget {
        Some(b) => format!("{measured}/{b}"),
        None => format!("{measured}/-"),
    }
}

fn cell_f(measured: f64, budget: Option<f64>, digits: usize) -> String {
    match budget {
        Some(b) => format!("{measured:.digits$}/{b}"),
        None => format!("{measured:.digits$}/-"),
    }
}

/// The static part of a kernel's row: cells and failures.
fn static_cells(
    s: &StaticMeasure,
    b: Option<&KernelBudget>,
    failures: &mut Vec<String>,
) -> [String; 3] {
    let regs = [
        b.map(|b| b.max_registers_sm80),
        b.map(|b| b.max_registers_sm90),
    ];
    for (i, arch) in ARCHS.iter().enumerate() {
        if let Some(max) = regs[i] {
            if s.registers[i] > max {
                failures.push(format!(
                    "{} registers on {} > budget {max}",
                    s.registers[i],
                    arch.sm_name()
                ));
            }
        }
        if let Some(b) = b {
            if s.spill_bytes[i] > b.max_spill_bytes {
                failures.push(format!(
                    "{} spill bytes on {} > budget {}",
                    s.spill_bytes[i],
                    arch.sm_name(),
                    b.max_spill_bytes
                ));
            }
        }
    }
    [
        cell_u(s.registers[0] as u64, regs[0].map(u64::from)),
        cell_u(s.registers[1] as u64, regs[1].map(u64::from)),
        cell_u(
            s.spill_bytes[0].max(s.spill_bytes[1]),
            b.map(|b| b.max_spill_bytes),
        ),
    ]
}

/// The VM part of a row: cells and failures.
fn case_cells(c: &CaseMeasure, b: Option<&CaseBudget>, failures: &mut Vec<String>) -> [String; 3] {
    let limits = [
        (
            "global sectors/request",
            c.sectors_per_request,
            b.map(|b| b.max_sectors_per_request),
            2,
        ),
        (
            "shared bank conflicts/request",
            c.bank_conflicts_per_request,
            b.map(|b| b.max_bank_conflicts_per_request),
            3,
        ),
        (
            "instructions/output element",
            c.instructions_per_output,
            b.map(|b| b.max_instructions_per_output),
            1,
        ),
    ];
    let mut cells: [String; 3] = Default::default();
    for (i, (what, measured, budget, digits)) in limits.into_iter().enumerate() {
        if let Some(max) = budget {
            if measured > max + 1e-9 {
                failures.push(format!(
                    "[{}] {what} {measured:.digits$} > budget {max}",
                    c.case
                ));
            }
        }
        cells[i] = cell_f(measured, budget, digits);
    }
    cells
}

/// Checks every measured kernel against `budgets`: a kernel without a budget, a case without a
/// budget, a kernel no probe case launched, or any value over its budget fails.
pub fn check(statics: &[StaticMeasure], cases: &[CaseMeasure], budgets: &Budgets) -> CheckReport {
    let mut report = CheckReport::default();
    for s in statics {
        let kb = budgets.find(&s.kernel);
        let mine: Vec<&CaseMeasure> = cases.iter().filter(|c| c.kernel == s.kernel).collect();
        let mut base_failures = Vec::new();
        if kb.is_none() {
            base_failures.push(format!(
                "no budget in kernels/budgets.toml ({}); run `hepar kernels check --update`",
                s.file
            ));
        }
        let static_part = static_cells(s, kb, &mut base_failures);
        if mine.is_empty() {
            base_failures.push(
                "not launched by any probe case (add one in src/cli/kernels_check.rs)".into(),
            );
            let [a, b, c] = static_part;
            report.rows.push(CheckRow {
                kernel: s.kernel.clone(),
                case: "-".into(),
                cells: [a, b, c, "-".into(), "-".into(), "-".into()],
                failures: base_failures,
            });
            continue;
        }
        for (i, c) in mine.iter().enumerate() {
            // The static failures are reported once, on the kernel's first row.
            let mut failures = if i == 0 {
                std::mem::take(&mut base_failures)
            } else {
                Vec::new()
            };
            let cb = kb.and_then(|k| k.case.iter().find(|b| b.case == c.case));
            if kb.is_some() && cb.is_none() {
                failures.push(format!(
                    "[{}] no budget for this case; run `hepar kernels check --update`",
                    c.case
                ));
            }
            let [d, e, f] = case_cells(c, cb, &mut failures);
            let [a, b, cc] = static_part.clone();
            report.rows.push(CheckRow {
                kernel: s.kernel.clone(),
                case: c.case.clone(),
                cells: [a, b, cc, d, e, f],
                failures,
            });
        }
    }
    let known: BTreeSet<&str> = statics.iter().map(|s| s.kernel.as_str()).collect();
    report.stale = budgets
        .kernel
        .iter()
        .filter(|k| !known.contains(k.name.as_str()))
        .map(|k| k.name.clone())
        .collect();
    report
}

/// The budgets with measured values (plus margins) for every kernel that has no budget or
/// whose PTX changed, budgets added for its new cases, and budgets of vanished kernels
/// removed; other budgets are kept as they are. Also returns the kernels (re)budgeted.
pub fn update(
    statics: &[StaticMeasure],
    cases: &[CaseMeasure],
    budgets: &Budgets,
) -> (Budgets, Vec<String>) {
    let mut out = Budgets::default();
    let mut changed = Vec::new();
    for s in statics {
        let mine: Vec<&CaseMeasure> = cases.iter().filter(|c| c.kernel == s.kernel).collect();
        match budgets.find(&s.kernel) {
            Some(old) if old.ptx_hash == s.ptx_hash => {
                let mut kept = old.clone();
                for c in &mine {
                    if !kept.case.iter().any(|b| b.case == c.case) {
                        kept.case.push(Margins::case(c));
                        changed.push(format!("{} [{}]", s.kernel, c.case));
                    }
                }
                kept.case.sort_by(|a, b| a.case.cmp(&b.case));
                out.kernel.push(kept);
            }
            _ => {
                out.kernel.push(Margins::kernel(s, &mine));
                changed.push(s.kernel.clone());
            }
        }
    }
    (out, changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statics(regs: u32) -> Vec<StaticMeasure> {
        vec![StaticMeasure {
            file: "k.cu".into(),
            kernel: "k_f32".into(),
            registers: [regs, regs],
            spill_bytes: [0, 0],
            ptx_hash: "h".into(),
        }]
    }

    fn cases(sectors: f64) -> Vec<CaseMeasure> {
        vec![CaseMeasure {
            kernel: "k_f32".into(),
            case: "k [10]".into(),
            sectors_per_request: sectors,
            bank_conflicts_per_request: 0.0,
            instructions_per_output: 12.0,
        }]
    }

    #[test]
    fn update_then_check_passes_and_regressions_fail() {
        let (b, changed) = update(&statics(20), &cases(4.0), &Budgets::default());
        assert_eq!(changed, vec!["k_f32".to_string()]);
        assert_eq!(b.kernel[0].max_registers_sm80, 28);
        assert_eq!(b.kernel[0].case[0].max_sectors_per_request, 4.4);
        assert_eq!(b.kernel[0].case[0].max_bank_conflicts_per_request, 0.0);
        assert!(check(&statics(20), &cases(4.0), &b).passed());
        let r = check(&statics(29), &cases(4.0), &b);
        assert!(r.failures()[0].contains("registers on sm_80"), "{r:?}");
        let r = check(&statics(20), &cases(32.0), &b);
        assert!(r.failures()[0].contains("global sectors/request"), "{r:?}");
        // A missing budget fails, naming the kernel; the file round-trips through TOML.
        let r = check(&statics(20), &cases(4.0), &Budgets::default());
        assert!(!r.passed() && r.failures()[0].starts_with("k_f32: no budget"));
        let back: Budgets = toml::from_str(&b.to_toml().unwrap()).unwrap();
        assert_eq!(back, b);
    }
}
