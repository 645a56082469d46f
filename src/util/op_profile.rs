//! Where a step's time goes, per op (`hepar bench --profile`). Off unless a [`Profile`] is
//! recording on the calling thread (ops are made on the thread that runs the step; kernels'
//! worker threads make none), and then cheap: one clock read per op.
//!
//! Backward steps are timed around each node's closure. Forward ops have no single call to wrap
//! (each op computes its result, then makes its tensor), so an op is charged the time since the
//! previous op on its thread finished: its own work plus any untracked host work just before it.
//! Ops run inside a backward closure are part of that backward step and are not charged again.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Whether the time was spent computing an op's output, its inputs' gradients, or updating the
/// parameters (a phase that is not an op).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pass {
    Forward,
    Backward,
    Update,
}

impl Pass {
    pub fn name(self) -> &'static str {
        match self {
            Pass::Forward => "forward",
            Pass::Backward => "backward",
            Pass::Update => "update",
        }
    }
}

type Totals = BTreeMap<(&'static str, Pass), (Duration, u64)>;

thread_local! {
    static RECORDING: Cell<bool> = const { Cell::new(false) };
    static TOTALS: RefCell<Totals> = const { RefCell::new(BTreeMap::new()) };
    static LAST_OP_END: Cell<Option<Instant>> = const { Cell::new(None) };
    static IN_BACKWARD: Cell<bool> = const { Cell::new(false) };
}

fn add(name: &'static str, pass: Pass, time: Duration) {
    TOTALS.with(|t| {
        let mut totals = t.borrow_mut();
        let entry = totals.entry((name, pass)).or_default();
        entry.0 += time;
        entry.1 += 1;
    });
}

/// Called as op `name` makes its output tensor.
pub fn forward_op_done(name: &'static str) {
    if !RECORDING.with(Cell::get) || IN_BACKWARD.with(Cell::get) {
        return;
    }
    let now = Instant::now();
    if let Some(last) = LAST_OP_END.with(|l| l.replace(Some(now))) {
        add(name, Pass::Forward, now - last);
    }
}

/// Runs the backward closure of op `name`, charging its time to the op.
pub fn time_backward<R>(name: &'static str, f: impl FnOnce() -> R) -> R {
    time_as(name, Pass::Backward, f)
}

/// Charges `f`'s time to a parameter update phase (an optimizer step).
pub fn time_update<R>(name: &'static str, f: impl FnOnce() -> R) -> R {
    time_as(name, Pass::Update, f)
}

fn time_as<R>(name: &'static str, pass: Pass, f: impl FnOnce() -> R) -> R {
    if !RECORDING.with(Cell::get) {
        return f();
    }
    let start = Instant::now();
    let outer = IN_BACKWARD.with(|b| b.replace(true));
    let result = f();
    IN_BACKWARD.with(|b| b.set(outer));
    let end = Instant::now();
    add(name, pass, end - start);
    LAST_OP_END.with(|l| l.set(Some(end)));
    result
}

/// One row of a profile: an op and pass, its calls and seconds, and its share of the total.
#[derive(Clone, Debug, serde::Serialize)]
pub struct OpTime {
    pub op: &'static str,
    pub pass: Pass,
    pub calls: u64,
    pub seconds: f64,
    pub share: f64,
}

/// A recording in progress on this thread.
pub struct Profile {
    start: Instant,
}

impl Profile {
    /// Starts recording (clearing any earlier totals) on the calling thread's clock.
    pub fn start() -> Self {
        TOTALS.with(|t| t.borrow_mut().clear());
        let start = Instant::now();
        LAST_OP_END.with(|l| l.set(Some(start)));
        RECORDING.with(|r| r.set(true));
        Profile { start }
    }

    /// Stops recording: the rows by time, largest first, with a last row `other` for the time no
    /// op was charged (after the last op); shares are of the whole recording, so they sum to 1.
    pub fn finish(self) -> Vec<OpTime> {
        RECORDING.with(|r| r.set(false));
        let total = self.start.elapsed();
        let totals = TOTALS.with(|t| std::mem::take(&mut *t.borrow_mut()));
        let charged: Duration = totals.values().map(|(t, _)| *t).sum();
        let seconds = total.as_secs_f64().max(f64::MIN_POSITIVE);
        let mut rows: Vec<OpTime> = totals
            .into_iter()
            .map(|((op, pass), (time, calls))| OpTime {
                op,
                pass,
                calls,
                seconds: time.as_secs_f64(),
                share: time.as_secs_f64() / seconds,
            })
            .collect();
        rows.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        let other = total.saturating_sub(charged).as_secs_f64();
        rows.push(OpTime {
            op: "other",
            pass: Pass::Forward,
            calls: 0,
            seconds: other,
            share: other / seconds,
        });
        LAST_OP_END.with(|l| l.set(None));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_ops_take_the_time_since_the_last_op_and_backward_its_closure() {
        let profile = Profile::start();
        std::thread::sleep(Duration::from_millis(20));
        forward_op_done("slow_op");
        forward_op_done("quick_op");
        time_backward("slow_op", || {
            std::thread::sleep(Duration::from_millis(10));
            // An op inside a backward closure belongs to that backward step.
            forward_op_done("inner_op");
        });
        let rows = profile.finish();
        let find = |op: &str, pass: Pass| rows.iter().find(|r| r.op == op && r.pass == pass);
        let slow = find("slow_op", Pass::Forward).expect("slow forward row");
        assert!(slow.seconds >= 0.02 && slow.calls == 1);
        assert!(
            find("slow_op", Pass::Backward)
                .expect("backward row")
                .seconds
                >= 0.01
        );
        assert!(find("quick_op", Pass::Forward).expect("quick row").seconds < slow.seconds);
        assert!(find("inner_op", Pass::Forward).is_none());
        let shares: f64 = rows.iter().map(|r| r.share).sum();
        assert!((shares - 1.0).abs() < 1e-9, "shares sum to {shares}");
        // Not recording: nothing is kept.
        forward_op_done("after");
        assert!(TOTALS.with(|t| t.borrow().is_empty()));
    }
}
