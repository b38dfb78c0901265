//! SVG charts of latency percentiles on a log scale: against achieved throughput (the
//! `--find-limit` curve) or against time (a single run with `--plot`).
//!
//! Invariant: drawing only; the y axis spans whole decades that contain every plotted
//! value, so each grid line sits at the value its label names.

use crate::stats::Latency;

/// One line of the chart.
pub struct Series<'a> {
    pub name: &'a str,
    pub colour: &'a str,
    pub ys: Vec<f64>,
}

/// What to draw.
pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub xs: Vec<f64>,
    pub series: Vec<Series<'a>>,
    /// A horizontal line (the SLO), labelled.
    pub hline: Option<(f64, String)>,
    /// A vertical line (the limit), labelled.
    pub vline: Option<(f64, String)>,
}

/// The y range in whole decades (log10 of the lowest and highest grid line) holding `ys`.
pub fn decades(ys: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::MAX, f64::MIN);
    for v in ys.filter(|v| *v > 0.0 && v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return (-1.0, 1.0);
    }
    let (a, b) = (lo.max(1e-3).log10().floor(), hi.log10().ceil());
    (a, if b > a { b } else { a + 1.0 })
}

pub fn svg(c: &Chart<'_>) -> String {
    let (w, h, left, right, top, bottom) = (820.0, 500.0, 80.0, 160.0, 40.0, 50.0);
    let pw = w - left - right;
    let ph = h - top - bottom;
    let xmax = c.xs.iter().copied().fold(1e-9f64, f64::max) * 1.1;
    let (lmin, lmax) = decades(
        c.series
            .iter()
            .flat_map(|s| s.ys.iter().copied())
            .chain(c.hline.iter().map(|(v, _)| *v)),
    );
    let floor = 10f64.powf(lmin);
    let x = |v: f64| left + pw * v / xmax;
    let y = |v: f64| top + ph * (1.0 - (v.max(floor).log10() - lmin) / (lmax - lmin));
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{left}\" y=\"24\" font-size=\"15\">{}</text>\n\
         <rect x=\"{left}\" y=\"{top}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#444\"/>\n",
        escape(c.title)
    );
    // Whole decades on y (each line at the value its label names), five ticks on x.
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
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
            x(v),
            top + ph + 18.0,
            trim_to(v, if xmax < 10.0 { 1 } else { 0 })
        );
    }
    s += &format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n\
         <text transform=\"translate(16 {}) rotate(-90)\" text-anchor=\"middle\">latency, ms (log scale)</text>\n",
        left + pw / 2.0,
        h - 10.0,
        escape(c.x_label),
        top + ph / 2.0
    );
    if let Some((v, label)) = &c.hline {
        s += &format!(
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{yy}\" y2=\"{yy}\" stroke=\"red\" stroke-dasharray=\"6 4\"/><text x=\"{}\" y=\"{}\" fill=\"red\">{}</text>\n",
            left + pw,
            left + pw + 8.0,
            y(*v) + 4.0,
            escape(label),
            yy = y(*v)
        );
    }
    if let Some((v, label)) = &c.vline {
        s += &format!(
            "<line x1=\"{xx}\" x2=\"{xx}\" y1=\"{top}\" y2=\"{}\" stroke=\"green\" stroke-dasharray=\"4 4\"/><text x=\"{}\" y=\"{}\" fill=\"green\">{}</text>\n",
            top + ph,
            x(*v) + 4.0,
            top + 14.0,
            escape(label),
            xx = x(*v)
        );
    }
    for (i, ser) in c.series.iter().enumerate() {
        let pts: Vec<(f64, f64)> =
            c.xs.iter()
                .zip(&ser.ys)
                .map(|(xv, yv)| (x(*xv), y(*yv)))
                .collect();
        let line: Vec<String> = pts.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
        s += &format!(
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"/>\n",
            line.join(" "),
            ser.colour
        );
        for (px, py) in &pts {
            s += &format!(
                "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"3\" fill=\"{}\"/>\n",
                ser.colour
            );
        }
        s += &format!(
            "<text x=\"{}\" y=\"{}\" fill=\"{}\">{}</text>\n",
            left + pw + 8.0,
            top + 40.0 + 16.0 * i as f64,
            ser.colour,
            escape(ser.name)
        );
    }
    s += "</svg>\n";
    s
}

/// The colours of the p50, p99 and p99.9 lines.
pub const PERCENTILES: [(&str, &str); 3] =
    [("p50", "#1f77b4"), ("p99", "#ff7f0e"), ("p99.9", "#9467bd")];

/// The p50, p99 and p99.9 lines of `points`, whose latencies `lat` gives.
pub fn percentile_series<T>(points: &[T], lat: impl Fn(&T) -> Latency) -> Vec<Series<'static>> {
    PERCENTILES
        .iter()
        .enumerate()
        .map(|(i, (name, colour))| Series {
            name,
            colour,
            ys: points
                .iter()
                .map(|p| {
                    let l = lat(p);
                    [l.p50, l.p99, l.p999][i]
                })
                .collect(),
        })
        .collect()
}

pub fn trim(v: f64) -> String {
    trim_to(v, 3)
}

fn trim_to(v: f64, places: usize) -> String {
    let s = format!("{v:.places$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decades_hold_every_value_and_lines_sit_at_their_labels() {
        assert_eq!(decades([0.5, 0.7, 12.0].into_iter()), (-1.0, 2.0));
        assert_eq!(decades([1.0].into_iter()), (0.0, 1.0));
        let c = Chart {
            title: "t <x>",
            x_label: "seconds",
            xs: vec![1.0, 2.0],
            series: vec![Series {
                name: "p99",
                colour: "#000",
                ys: vec![0.5, 0.7],
            }],
            hline: Some((10.0, "SLO".into())),
            vline: None,
        };
        let s = svg(&c);
        assert!(s.contains("t &lt;x&gt;") && s.contains("latency, ms (log scale)"));
        // Decades 0.1, 1, 10: three grid labels, 0.1 at the bottom edge of the plot.
        assert!(s.contains(">0.1 ms<") && s.contains(">1 ms<") && s.contains(">10 ms<"));
        assert!(
            s.contains("y1=\"450\" y2=\"450\""),
            "0.1 ms line at the bottom: {s}"
        );
    }
}
