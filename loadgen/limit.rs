//! `--find-limit`: a closed-loop probe measures the most the broker takes, then open-loop
//! steps at 10%, 20%, … of that rate run until one does not hold (throughput stops following
//! the offered rate, a failure, or the p99 past the SLO). Between the last step that held and
//! the first that did not, bisection narrows the limit to within 5%; then a confirmation run
//! at the limit must hold and one 10% above must not (else the search moves and confirms
//! again), and `trials` repeated runs at the limit give its spread. Also draws the
//! latency/throughput curve as an SVG.
//!
//! Invariant: at most `max_steps` steps, `refine` bisections, 3 confirmation rounds and
//! `trials` trials after the probe, each of fixed duration, so a search is bounded in time.
//! The search itself is a pure function of the runs' results (tested with a model broker).

use anyhow::Result;
use serde::Serialize;

use crate::plot::{self, Chart};
use crate::RunResult;

/// Share of the offered rate that must be acknowledged for a step to hold.
pub const KEEP_UP: f64 = 0.95;
/// Bisection stops once the bracket is this narrow (relative).
const BRACKET: f64 = 0.05;
/// Rounds of confirmation before the search gives up narrowing.
const CONFIRM_ROUNDS: usize = 3;

/// Why a run of the search was made.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// 10%, 20%, … of the probe.
    Step,
    /// Halfway between the last rate that held and the first that did not.
    Bisect,
    /// At the limit found: must hold.
    Confirm,
    /// 10% above the limit: must not hold.
    Above,
    /// Repeated at the limit, for its spread.
    Trial,
}

/// One run of the search.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub phase: Phase,
    pub offered_msgs_per_sec: f64,
    pub result: RunResult,
    /// p99 (of the latency the SLO is on) in ms.
    pub p99_ms: f64,
    pub held: bool,
}

/// The sustainable limit found.
#[derive(Debug, Clone, Serialize)]
pub struct Limit {
    pub msgs_per_sec: f64,
    pub mb_per_sec: f64,
    pub partitions: i32,
    pub per_partition_msgs_per_sec: f64,
    pub per_partition_mb_per_sec: f64,
    pub slo_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    /// Runs at the limit that held (confirmation and trials), and the spread of their
    /// acknowledged rates.
    pub runs: usize,
    pub min_msgs_per_sec: f64,
    pub max_msgs_per_sec: f64,
    /// The run 10% above the limit did not hold (false: the limit is a lower bound, e.g.
    /// every step up to `max_steps` held).
    pub confirmed: bool,
}

/// How the search runs.
#[derive(Debug, Clone, Copy)]
pub struct Search {
    pub max_steps: usize,
    pub refine: usize,
    pub trials: usize,
    pub slo_ms: f64,
    /// The SLO is on the produce ack (else end to end).
    pub ack: bool,
}

/// Whether a step at `offered` msgs/s held: kept up, no failures, p99 within the SLO.
pub fn held(offered: f64, r: &RunResult, p99_ms: f64, slo_ms: f64) -> bool {
    r.failed == 0 && r.acked_msgs_per_sec >= KEEP_UP * offered && p99_ms <= slo_ms
}

/// Offered rate of step `i` (1-based) given the probe's maximum.
pub fn step_rate(max_msgs_per_sec: f64, i: usize) -> f64 {
    max_msgs_per_sec * i as f64 / 10.0
}

/// Runs the search above a probe that reached `max` msgs/s; `run(rate, phase)` makes one
/// open-loop run. Returns every run, and the limit's offered rate if one held.
pub fn search(
    max: f64,
    cfg: &Search,
    mut run: impl FnMut(f64, Phase) -> Result<RunResult>,
) -> Result<(Vec<Step>, Option<f64>)> {
    let mut steps: Vec<Step> = Vec::new();
    let mut go = |rate: f64, phase: Phase, steps: &mut Vec<Step>| -> Result<bool> {
        let r = run(rate, phase)?;
        let p99 = r.slo_latency(cfg.ack).p99;
        let ok = held(rate, &r, p99, cfg.slo_ms);
        steps.push(Step {
            phase,
            offered_msgs_per_sec: rate,
            result: r,
            p99_ms: p99,
            held: ok,
        });
        Ok(ok)
    };
    let (mut lo, mut hi) = (None::<f64>, None::<f64>);
    for i in 1..=cfg.max_steps {
        let rate = step_rate(max, i);
        if go(rate, Phase::Step, &mut steps)? {
            lo = Some(rate);
        } else {
            hi = Some(rate);
            break;
        }
    }
    let Some(mut lo) = lo else {
        return Ok((steps, None));
    };
    let Some(mut hi) = hi else {
        // Every step held: the limit is at least the last one (not confirmed).
        return Ok((steps, Some(lo)));
    };
    for _ in 0..cfg.refine {
        if hi / lo - 1.0 <= BRACKET {
            break;
        }
        let mid = (lo + hi) / 2.0;
        if go(mid, Phase::Bisect, &mut steps)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    // Confirm: the limit holds again and 10% above it does not; else move and confirm again.
    for _ in 0..CONFIRM_ROUNDS {
        if !go(lo, Phase::Confirm, &mut steps)? {
            hi = lo;
            lo *= 0.9;
            continue;
        }
        let above = lo * 1.1;
        if above < hi && go(above, Phase::Above, &mut steps)? {
            lo = above;
            continue;
        }
        // Not held 10% above (that run, or an earlier one at or below it).
        for _ in 1..cfg.trials.max(1) {
            go(lo, Phase::Trial, &mut steps)?;
        }
        return Ok((steps, Some(lo)));
    }
    // Never confirmed: the highest rate that held below the lowest that did not (the limit
    // is then reported unconfirmed).
    let best = steps
        .iter()
        .filter(|s| s.held && s.offered_msgs_per_sec < hi)
        .map(|s| s.offered_msgs_per_sec)
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    Ok((steps, best))
}

/// The limit at offered rate `rate`: the runs there that held (the last step, or the
/// confirmation and trials), with their spread.
pub fn limit(
    steps: &[Step],
    rate: Option<f64>,
    partitions: i32,
    slo_ms: f64,
    ack: bool,
) -> Option<Limit> {
    let rate = rate?;
    let at: Vec<&Step> = steps
        .iter()
        .filter(|s| s.held && (s.offered_msgs_per_sec - rate).abs() <= 1e-6 * rate.max(1.0))
        .collect();
    let best = *at.last()?;
    let r = &best.result;
    let lat = r.slo_latency(ack);
    let n = f64::from(partitions.max(1));
    let acked = at.iter().map(|s| s.result.acked_msgs_per_sec);
    let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let msgs = mean(acked.clone().collect());
    let mb = mean(at.iter().map(|s| s.result.acked_mb_per_sec).collect());
    let confirmed = steps.iter().any(|s| {
        !s.held && s.offered_msgs_per_sec > rate && s.offered_msgs_per_sec <= rate * 1.1 + 1e-6
    });
    Some(Limit {
        msgs_per_sec: msgs,
        mb_per_sec: mb,
        partitions,
        per_partition_msgs_per_sec: msgs / n,
        per_partition_mb_per_sec: mb / n,
        slo_ms,
        p50_ms: lat.p50,
        p99_ms: lat.p99,
        p999_ms: lat.p999,
        runs: at.len(),
        min_msgs_per_sec: acked.clone().fold(f64::MAX, f64::min),
        max_msgs_per_sec: acked.fold(0.0, f64::max),
        confirmed,
    })
}

/// An SVG of latency percentiles (log scale) against achieved throughput, one point per
/// run in order of throughput, with the SLO and the limit marked.
pub fn svg(steps: &[Step], slo_ms: f64, limit: Option<&Limit>, title: &str, ack: bool) -> String {
    let mut sorted: Vec<&Step> = steps.iter().collect();
    sorted.sort_by(|a, b| {
        a.result
            .acked_mb_per_sec
            .total_cmp(&b.result.acked_mb_per_sec)
    });
    let series = plot::percentile_series(&sorted, |st| st.result.slo_latency(ack));
    plot::svg(&Chart {
        title,
        x_label: "acknowledged MB/s",
        xs: sorted.iter().map(|s| s.result.acked_mb_per_sec).collect(),
        series,
        hline: Some((slo_ms, format!("SLO p99 {} ms", plot::trim(slo_ms)))),
        vline: limit.map(|l| {
            (
                l.mb_per_sec,
                format!(
                    "limit {:.1} MB/s ({:.1}/partition)",
                    l.mb_per_sec, l.per_partition_mb_per_sec
                ),
            )
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Latency;

    fn result(acked: f64, p99: f64) -> RunResult {
        RunResult {
            acked_msgs_per_sec: acked,
            acked_mb_per_sec: acked / 1000.0,
            ack_latency_ms: Latency {
                p99,
                p50: p99 / 4.0,
                p999: p99 * 2.0,
                count: 1,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn step(offered: f64, acked: f64, p99: f64) -> Step {
        let r = result(acked, p99);
        Step {
            phase: Phase::Step,
            offered_msgs_per_sec: offered,
            held: held(offered, &r, p99, 10.0),
            p99_ms: p99,
            result: r,
        }
    }

    #[test]
    fn the_limit_is_the_last_step_that_held() {
        let steps = vec![
            step(10_000.0, 10_000.0, 1.0),
            step(20_000.0, 19_900.0, 2.0),
            step(30_000.0, 29_000.0, 12.0), // p99 over the SLO
            step(40_000.0, 30_000.0, 50.0), // fell behind
        ];
        assert_eq!(
            steps.iter().map(|s| s.held).collect::<Vec<_>>(),
            [true, true, false, false]
        );
        let l = limit(&steps, Some(20_000.0), 4, 10.0, true).expect("limit");
        assert_eq!(l.msgs_per_sec, 19_900.0);
        assert_eq!(l.per_partition_msgs_per_sec, 4_975.0);
        assert_eq!(l.p99_ms, 2.0);
        assert!(!l.confirmed, "nothing ran within 10% above");
        assert!(limit(&steps[2..], Some(20_000.0), 4, 10.0, true).is_none());
        assert_eq!(step_rate(50_000.0, 3), 15_000.0);
        let svg = svg(&steps, 10.0, Some(&l), "a <test>", true);
        assert!(svg.contains("latency, ms (log scale)"));
        assert!(
            svg.starts_with("<svg") && svg.contains("polyline") && svg.contains("a &lt;test&gt;")
        );
    }

    /// A broker that keeps up to `cap` msgs/s with a 1 ms p99 and falls behind above it,
    /// with a little noise from run to run.
    fn model(cap: f64) -> impl FnMut(f64, Phase) -> Result<RunResult> {
        let mut n = 0u32;
        move |rate, _| {
            n += 1;
            let noise = 1.0 + 0.01 * f64::from(n % 3);
            Ok(if rate <= cap * noise {
                result(rate, 1.0)
            } else {
                result(cap, 40.0)
            })
        }
    }

    #[test]
    fn the_search_bisects_confirms_and_repeats() {
        let cfg = Search {
            max_steps: 12,
            refine: 6,
            trials: 3,
            slo_ms: 10.0,
            ack: true,
        };
        let (steps, rate) = search(100_000.0, &cfg, model(37_000.0)).expect("search");
        let rate = rate.expect("a limit");
        assert!(
            (0.95 * 37_000.0..=37_000.0 * 1.03).contains(&rate),
            "{rate}"
        );
        let phases: Vec<Phase> = steps.iter().map(|s| s.phase).collect();
        assert_eq!(&phases[..4], [Phase::Step; 4]);
        assert!(phases.contains(&Phase::Bisect) && phases.contains(&Phase::Confirm));
        assert_eq!(phases.iter().filter(|p| **p == Phase::Trial).count(), 2);
        let l = limit(&steps, Some(rate), 4, 10.0, true).expect("limit");
        assert!(l.confirmed, "a run within 10% above did not hold");
        assert!(l.runs >= 3, "confirmation and two trials: {}", l.runs);
        assert!(l.min_msgs_per_sec <= l.max_msgs_per_sec);
        // Bounded: steps, bisections, confirmation rounds and trials.
        assert!(steps.len() <= 12 + 6 + 2 * 3 + 2, "{}", steps.len());
        // A broker that holds nothing has no limit; one that holds everything a lower bound.
        let (_, none) = search(100_000.0, &cfg, model(1.0)).expect("search");
        assert!(none.is_none());
        // A confirmation that never holds (noise) falls back to the best rate that held.
        let mut flaky = model(37_000.0);
        let (_, fallback) = search(100_000.0, &cfg, |rate, phase| {
            if phase == Phase::Confirm {
                return Ok(result(rate * 0.5, 40.0));
            }
            flaky(rate, phase)
        })
        .expect("search");
        // Each failed confirmation lowers the bracket; the fallback is the best rate that
        // held below the lowest that did not: the 20% step.
        assert_eq!(fallback, Some(20_000.0));
        let cfg3 = Search {
            max_steps: 3,
            ..cfg
        };
        let (all, some) = search(100_000.0, &cfg3, model(1e9)).expect("search");
        assert_eq!((all.len(), some), (3, Some(30_000.0)));
        assert!(!limit(&all, some, 1, 10.0, true).expect("limit").confirmed);
    }

    #[test]
    fn failures_never_hold() {
        let mut r = result(1000.0, 1.0);
        r.failed = 1;
        assert!(!held(1000.0, &r, 1.0, 10.0));
    }
}
