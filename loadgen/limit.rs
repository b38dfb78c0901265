//! `--find-limit`: a closed-loop probe measures the most the broker takes, then open-loop
//! steps at 10%, 20%, … of that rate run until throughput stops following the offered rate
//! or the p99 crosses the SLO. The last step that held is the sustainable limit. Also draws
//! the latency/throughput curve as an SVG.
//!
//! Invariant: at most `max_steps` steps after the probe, each of fixed duration, so a search
//! is bounded in time.

use serde::Serialize;

use crate::RunResult;

/// Share of the offered rate that must be acknowledged for a step to hold.
pub const KEEP_UP: f64 = 0.95;

/// One step of the search.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
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
}

/// Whether a step at `offered` msgs/s held: kept up, no failures, p99 within the SLO.
pub fn held(offered: f64, r: &RunResult, p99_ms: f64, slo_ms: f64) -> bool {
    r.failed == 0 && r.acked_msgs_per_sec >= KEEP_UP * offered && p99_ms <= slo_ms
}

/// Offered rate of step `i` (1-based) given the probe's maximum.
pub fn step_rate(max_msgs_per_sec: f64, i: usize) -> f64 {
    max_msgs_per_sec * i as f64 / 10.0
}

/// The limit: the highest step that held, if any.
pub fn limit(steps: &[Step], partitions: i32, slo_ms: f64, ack_latency: bool) -> Option<Limit> {
    let best = steps.iter().rfind(|s| s.held)?;
    let r = &best.result;
    let lat = r.slo_latency(ack_latency);
    let n = f64::from(partitions.max(1));
    Some(Limit {
        msgs_per_sec: r.acked_msgs_per_sec,
        mb_per_sec: r.acked_mb_per_sec,
        partitions,
        per_partition_msgs_per_sec: r.acked_msgs_per_sec / n,
        per_partition_mb_per_sec: r.acked_mb_per_sec / n,
        slo_ms,
        p50_ms: lat.p50,
        p99_ms: lat.p99,
        p999_ms: lat.p999,
    })
}

/// An SVG of latency percentiles (log scale) against achieved throughput, one point per
/// step, with the SLO and the limit marked.
pub fn svg(
    steps: &[Step],
    slo_ms: f64,
    limit: Option<&Limit>,
    title: &str,
    ack_latency: bool,
) -> String {
    let (w, h, left, right, top, bottom) = (820.0, 500.0, 70.0, 150.0, 40.0, 50.0);
    let pw = w - left - right;
    let ph = h - top - bottom;
    let lat = |s: &Step| {
        let l = s.result.slo_latency(ack_latency);
        [l.p50, l.p99, l.p999]
    };
    let xmax = steps
        .iter()
        .map(|s| s.result.acked_mb_per_sec)
        .fold(1.0f64, f64::max)
        * 1.1;
    let ys: Vec<f64> = steps.iter().flat_map(&lat).chain([slo_ms]).collect();
    let ymin = ys
        .iter()
        .copied()
        .filter(|v| *v > 0.0)
        .fold(f64::MAX, f64::min)
        .min(slo_ms)
        .max(0.001);
    let ymax = ys.iter().copied().fold(0.0f64, f64::max).max(slo_ms) * 1.5;
    let (lmin, lmax) = (ymin.log10().floor(), ymax.log10().ceil());
    let x = |v: f64| left + pw * v / xmax;
    let y = |v: f64| top + ph * (1.0 - (v.max(ymin).log10() - lmin) / (lmax - lmin).max(1e-9));
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{left}\" y=\"24\" font-size=\"15\">{}</text>\n",
        escape(title)
    );
    s += &format!(
        "<rect x=\"{left}\" y=\"{top}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#444\"/>\n"
    );
    // Decades on the y axis, five ticks on x.
    let mut d = lmin;
    while d <= lmax {
        let v = 10f64.powf(d);
        s += &format!(
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{yy}\" y2=\"{yy}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{} ms</text>\n",
            left + pw,
            left - 6.0,
            y(v) + 4.0,
            trim(v),
            yy = y(v)
        );
        d += 1.0;
    }
    for i in 0..=5 {
        let v = xmax * f64::from(i) / 5.0;
        s += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{:.0}</text>\n",
            x(v),
            top + ph + 18.0,
            v
        );
    }
    s += &format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">acknowledged MB/s</text>\n",
        left + pw / 2.0,
        h - 10.0
    );
    s += &format!(
        "<line x1=\"{left}\" x2=\"{}\" y1=\"{yy}\" y2=\"{yy}\" stroke=\"red\" stroke-dasharray=\"6 4\"/><text x=\"{}\" y=\"{}\" fill=\"red\">SLO p99 {} ms</text>\n",
        left + pw,
        left + pw + 8.0,
        y(slo_ms) + 4.0,
        trim(slo_ms),
        yy = y(slo_ms)
    );
    if let Some(l) = limit {
        s += &format!(
            "<line x1=\"{xx}\" x2=\"{xx}\" y1=\"{top}\" y2=\"{}\" stroke=\"green\" stroke-dasharray=\"4 4\"/><text x=\"{}\" y=\"{}\" fill=\"green\">limit {:.1} MB/s ({:.1}/partition)</text>\n",
            top + ph,
            x(l.mb_per_sec) + 4.0,
            top + 14.0,
            l.mb_per_sec,
            l.per_partition_mb_per_sec,
            xx = x(l.mb_per_sec)
        );
    }
    for (i, (name, colour)) in [("p50", "#1f77b4"), ("p99", "#ff7f0e"), ("p99.9", "#9467bd")]
        .iter()
        .enumerate()
    {
        let pts: Vec<String> = steps
            .iter()
            .map(|st| format!("{:.1},{:.1}", x(st.result.acked_mb_per_sec), y(lat(st)[i])))
            .collect();
        s += &format!(
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"/>\n",
            pts.join(" ")
        );
        for p in &pts {
            let (px, py) = p.split_once(',').unwrap_or(("0", "0"));
            s += &format!("<circle cx=\"{px}\" cy=\"{py}\" r=\"3\" fill=\"{colour}\"/>\n");
        }
        s += &format!(
            "<text x=\"{}\" y=\"{}\" fill=\"{colour}\">{name}</text>\n",
            left + pw + 8.0,
            top + 40.0 + 16.0 * i as f64
        );
    }
    s += "</svg>\n";
    s
}

fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
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
        let l = limit(&steps, 4, 10.0, true).expect("limit");
        assert_eq!(l.msgs_per_sec, 19_900.0);
        assert_eq!(l.per_partition_msgs_per_sec, 4_975.0);
        assert_eq!(l.p99_ms, 2.0);
        assert!(limit(&steps[2..], 4, 10.0, true).is_none());
        assert_eq!(step_rate(50_000.0, 3), 15_000.0);
        let svg = svg(&steps, 10.0, Some(&l), "a <test>", true);
        assert!(
            svg.starts_with("<svg") && svg.contains("polyline") && svg.contains("a &lt;test&gt;")
        );
    }

    #[test]
    fn failures_never_hold() {
        let mut r = result(1000.0, 1.0);
        r.failed = 1;
        assert!(!held(1000.0, &r, 1.0, 10.0));
    }
}
