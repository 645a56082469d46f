//! Work splits that do not depend on the thread pool, so results are the same bits on any number
//! of threads. A kernel cuts its work into pieces sized from the problem alone, and sums that span
//! pieces combine their partial results in piece order, never in the order threads finish them
//! (rayon's `fold`/`reduce`/`sum` combine where work-stealing happened to split).

use super::scalar::Float;
use rayon::prelude::*;

/// How many tasks a kernel whose split shapes its arithmetic aims for, whatever the pool's size:
/// enough to keep a dozen threads busy, few enough that per-task overhead stays small.
pub const PARALLEL_TASKS: usize = 32;

/// How many tasks a reduction across tasks aims for. Each run of tasks keeps a private partial
/// sum, so this also bounds the reduction's parallelism.
pub const REDUCTION_TASKS: usize = 16;

/// At most this many private partial sums for one reduction.
const MAX_PARTIALS: usize = REDUCTION_TASKS;
/// At least this many partial sums when there are as many tasks, however large the result.
const MIN_PARTIALS: usize = 4;
/// Elements of private partial sums one reduction may hold at once, beyond the minimum.
const PARTIAL_BUDGET: usize = 1 << 22;
/// Output elements per task of the final, element-parallel combine.
const COMBINE_CHUNK: usize = 1 << 14;

/// How many partial sums a reduction of `tasks` tasks into `len` outputs keeps.
fn partial_count(tasks: usize, len: usize) -> usize {
    let by_memory = (PARTIAL_BUDGET / len.max(1)).clamp(MIN_PARTIALS, MAX_PARTIALS);
    tasks.min(by_memory).max(1)
}

/// `out = sum over task of contribution(task)`, where `work(scratch, task, acc)` adds task's
/// contribution into `acc` (zeroed `len = out.len()` elements). Tasks run in contiguous runs,
/// each run in task order into its own accumulator; the accumulators are then added in run order.
/// The run boundaries depend on `tasks` and `out.len()` only, so the bits do too.
pub fn sum_of_tasks<T, S, I, W>(tasks: usize, out: &mut [T], init: I, work: W)
where
    T: Float,
    I: Fn() -> S + Sync,
    W: Fn(&mut S, usize, &mut [T]) + Sync,
{
    let len = out.len();
    out.fill(T::zero());
    if tasks == 0 || len == 0 {
        return;
    }
    let runs = partial_count(tasks, len);
    let per_run = tasks.div_ceil(runs);
    let partials: Vec<Vec<T>> = (0..tasks.div_ceil(per_run))
        .into_par_iter()
        .map(|run| {
            let mut scratch = init();
            let mut acc = vec![T::zero(); len];
            for task in run * per_run..((run + 1) * per_run).min(tasks) {
                work(&mut scratch, task, &mut acc);
            }
            acc
        })
        .collect();
    out.par_chunks_mut(COMBINE_CHUNK)
        .enumerate()
        .for_each(|(c, dst)| {
            let range = c * COMBINE_CHUNK..c * COMBINE_CHUNK + dst.len();
            for partial in &partials {
                for (d, &p) in dst.iter_mut().zip(&partial[range.clone()]) {
                    *d += p;
                }
            }
        });
}

/// Sum of `f(chunk)` over `chunk_len`-element chunks of `x`, computed in parallel and added in
/// chunk order.
pub fn ordered_chunk_sum<T: Sync>(
    x: &[T],
    chunk_len: usize,
    f: impl Fn(&[T]) -> f64 + Sync + Send,
) -> f64 {
    let parts: Vec<f64> = x.par_chunks(chunk_len.max(1)).map(f).collect();
    parts.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("thread pool")
    }

    /// Values whose float sum changes with the order of addition.
    fn awkward(i: usize) -> f32 {
        let sign = if i.is_multiple_of(3) { -1.0 } else { 1.0 };
        sign * (1.0 + (i as f32 * 0.37).sin() * 1e4) / (1 + i % 7) as f32
    }

    #[test]
    fn sum_of_tasks_is_the_same_bits_on_any_pool() {
        let run = |threads: usize| {
            pool(threads).install(|| {
                let mut out = vec![0f32; 37];
                sum_of_tasks(
                    1000,
                    &mut out,
                    || (),
                    |_, task, acc| {
                        for (j, a) in acc.iter_mut().enumerate() {
                            *a += awkward(task * 37 + j);
                        }
                    },
                );
                out
            })
        };
        let one: Vec<u32> = run(1).iter().map(|v| v.to_bits()).collect();
        for threads in [2, 3, 5] {
            let other: Vec<u32> = run(threads).iter().map(|v| v.to_bits()).collect();
            assert_eq!(one, other, "{threads} threads");
        }
        // And it is the sum: compare against f64.
        let exact: Vec<f64> = (0..37)
            .map(|j| (0..1000).map(|t| awkward(t * 37 + j) as f64).sum())
            .collect();
        for (got, want) in run(1).iter().zip(&exact) {
            assert!(
                (*got as f64 - want).abs() <= 1e-3 * want.abs().max(1e3),
                "{got} vs {want}"
            );
        }
    }

    #[test]
    fn sum_of_tasks_with_no_tasks_writes_zeros() {
        let mut out = vec![5f64; 4];
        sum_of_tasks(0, &mut out, || (), |_, _, _: &mut [f64]| unreachable!());
        assert_eq!(out, vec![0.0; 4]);
    }

    #[test]
    fn ordered_chunk_sum_is_the_same_bits_on_any_pool() {
        let x: Vec<f32> = (0..100_003).map(awkward).collect();
        let sum = |threads: usize| {
            pool(threads).install(|| {
                ordered_chunk_sum(&x, 1000, |c| c.iter().map(|&v| v as f64).sum()).to_bits()
            })
        };
        let one = sum(1);
        assert_eq!(one, sum(2));
        assert_eq!(one, sum(3));
    }
}
