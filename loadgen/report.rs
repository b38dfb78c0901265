//! What the load generator prints: the live progress line, the result table, and the
//! `--find-limit` steps and limit.
//!
//! Invariant: formatting only; every figure comes from the run's results.

use crate::limit::{Limit, Step};
use crate::plot::{self, Chart};
use crate::stats::{Latency, Stats};
use crate::RunResult;

/// One line per interval: rates, p99s and failures.
pub fn progress_line(t: f64, iv: &Stats, secs: f64) -> String {
    let ack = Latency::of(&iv.ack);
    let e2e = Latency::of(&iv.e2e);
    format!(
        "[{t:5.1}s] sent {:>9.0} msg/s {:>8.1} MB/s | acked {:>9.0} msg/s p99 {:>7.2} ms | e2e p99 {:>7.2} ms | failed {}",
        iv.sent as f64 / secs,
        iv.sent_bytes as f64 / secs / 1e6,
        iv.acked as f64 / secs,
        ack.p99,
        e2e.p99,
        iv.failed
    )
}

/// One row of the result table.
fn table_row(name: &str, rate: f64, mb: f64, l: &Latency) -> String {
    format!(
        "{name:<14}{rate:>11.0}{mb:>9.1}{:>9.2}{:>9.2}{:>9.2}{:>9.2}{:>9.2}{:>9.2}",
        l.p50, l.p90, l.p99, l.p999, l.p9999, l.max
    )
}

/// The result table of a run.
pub fn print_result(r: &RunResult) {
    println!(
        "{:<14}{:>11}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}",
        "", "msgs/s", "MB/s", "p50", "p90", "p99", "p99.9", "p99.99", "max ms"
    );
    println!(
        "{}",
        table_row(
            "produce ack",
            r.acked_msgs_per_sec,
            r.acked_mb_per_sec,
            &r.ack_latency_ms
        )
    );
    if r.consumed > 0 {
        println!(
            "{}",
            table_row(
                "end-to-end",
                r.consumed as f64 / r.seconds,
                r.consumed_mb_per_sec,
                &r.e2e_latency_ms
            )
        );
    }
    println!(
        "sent {}  acknowledged {}  failed {}  consumed {}  in {:.1} s",
        r.sent, r.acked, r.failed, r.consumed, r.seconds
    );
}

/// The steps of a `--find-limit` search as a table.
pub fn print_steps(steps: &[Step], ack_slo: bool) {
    println!(
        "\n{:>4} {:<8}{:>12}{:>12}{:>9}{:>9}{:>9}{:>9}  held",
        "run", "phase", "offered/s", "acked/s", "MB/s", "p50", "p99", "p99.9"
    );
    for (i, s) in steps.iter().enumerate() {
        let l = s.result.slo_latency(ack_slo);
        println!(
            "{:>4} {:<8}{:>12.0}{:>12.0}{:>9.1}{:>9.2}{:>9.2}{:>9.2}  {}",
            i + 1,
            format!("{:?}", s.phase).to_lowercase(),
            s.offered_msgs_per_sec,
            s.result.acked_msgs_per_sec,
            s.result.acked_mb_per_sec,
            l.p50,
            l.p99,
            l.p999,
            if s.held { "yes" } else { "no" }
        );
    }
}

/// The limit found, or that none was.
pub fn print_limit(limit: Option<&Limit>, slo: f64, ack_slo: bool) {
    match limit {
        Some(l) => println!(
            "\nlimit at p99 <= {} ms ({}): {:.0} msg/s, {:.1} MB/s on {} partitions = {:.0} msg/s, {:.2} MB/s per partition (p50 {:.2} ms, p99 {:.2} ms)",
            slo,
            if ack_slo { "produce ack" } else { "end-to-end" },
            l.msgs_per_sec,
            l.mb_per_sec,
            l.partitions,
            l.per_partition_msgs_per_sec,
            l.per_partition_mb_per_sec,
            l.p50_ms,
            l.p99_ms
        ),
        None => println!("\nno step held the SLO of p99 <= {slo} ms"),
    }
    if let Some(l) = limit {
        println!(
            "{} run(s) at the limit: {:.0} to {:.0} msg/s acknowledged (spread {:.1}%); {}",
            l.runs,
            l.min_msgs_per_sec,
            l.max_msgs_per_sec,
            100.0 * (l.max_msgs_per_sec - l.min_msgs_per_sec) / l.msgs_per_sec.max(1e-9),
            if l.confirmed {
                "10% above it did not hold"
            } else {
                "not confirmed from above (every step held up to --max-steps): a lower bound"
            }
        );
    }
}

/// An SVG of a run's latency percentiles (log scale) over time, one point per second.
pub fn timeline_svg(r: &RunResult, title: &str, slo_ms: f64, ack: bool) -> String {
    let series = plot::percentile_series(&r.timeline, |s| {
        if ack {
            s.ack_latency_ms
        } else {
            s.e2e_latency_ms
        }
    });
    plot::svg(&Chart {
        title,
        x_label: if ack {
            "seconds (produce-ack latency)"
        } else {
            "seconds (end-to-end latency)"
        },
        xs: r.timeline.iter().map(|s| s.t).collect(),
        series,
        hline: Some((slo_ms, format!("SLO p99 {} ms", plot::trim(slo_ms)))),
        vline: None,
    })
}
