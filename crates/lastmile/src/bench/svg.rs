//! The latency chart: an HDR percentile plot (latency against percentile,
//! the tail stretched on a log scale of 1/(1-p)), hand-written SVG so the
//! binary needs no plotting library.

use std::fmt::Write;

use hdrhistogram::Histogram;

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 520.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 230.0;
const TOP: f64 = 60.0;
const BOTTOM: f64 = 70.0;
/// The x axis runs to 99.999% (five nines).
const MAX_NINES: f64 = 5.0;
const COLOURS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// One line of the chart: a name and a histogram of microseconds.
pub struct Series<'a> {
    pub name: String,
    pub micros: &'a Histogram<u64>,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The chart as SVG text.
pub fn percentile_chart(title: &str, subtitle: &str, series: &[Series<'_>]) -> String {
    let axes = Axes::around(series);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="13">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(out, r#"<text x="{LEFT}" y="24" font-size="17" font-weight="bold">{}</text>"#, escape(title));
    let _ = writeln!(out, r##"<text x="{LEFT}" y="44" fill="#555">{}</text>"##, escape(subtitle));
    latency_grid(&mut out, &axes);
    percentile_grid(&mut out, &axes);
    for (i, s) in series.iter().enumerate() {
        line(&mut out, &axes, i, s);
    }
    out.push_str("</svg>\n");
    out
}

/// Where a latency and a percentile fall on the plot.
struct Axes {
    plot_w: f64,
    plot_h: f64,
    /// y: log10 of milliseconds, whole decades around the data.
    lo_decade: f64,
    hi_decade: f64,
}

impl Axes {
    fn around(series: &[Series<'_>]) -> Axes {
        let nonempty = series.iter().filter(|s| !s.micros.is_empty());
        let max_us = nonempty.clone().map(|s| s.micros.max()).max().unwrap_or(1).max(1) as f64;
        let min_us = nonempty.map(|s| s.micros.min()).min().unwrap_or(1).max(1) as f64;
        let lo_decade = (min_us / 1000.0).log10().floor();
        let hi_decade = (max_us / 1000.0).log10().ceil().max(lo_decade + 1.0);
        Axes { plot_w: WIDTH - LEFT - RIGHT, plot_h: HEIGHT - TOP - BOTTOM, lo_decade, hi_decade }
    }

    /// The height of `us` microseconds.
    fn y(&self, us: f64) -> f64 {
        let d = ((us.max(1.0) / 1000.0).log10() - self.lo_decade) / (self.hi_decade - self.lo_decade);
        TOP + self.plot_h * (1.0 - d.clamp(0.0, 1.0))
    }

    /// The place of a percentile, given as its nines (2: 99%).
    fn x(&self, nines: f64) -> f64 {
        LEFT + self.plot_w * (nines / MAX_NINES).clamp(0.0, 1.0)
    }
}

/// Grid and y labels, one per decade and the 2x / 5x lines between.
fn latency_grid(out: &mut String, axes: &Axes) {
    let mut decade = axes.lo_decade;
    while decade <= axes.hi_decade {
        for (m, major) in [(1.0, true), (2.0, false), (5.0, false)] {
            let ms = m * 10f64.powf(decade);
            let us = ms * 1000.0;
            if (us / 1000.0).log10() > axes.hi_decade + 1e-9 {
                continue;
            }
            let yy = axes.y(us);
            let stroke = if major { "#bbb" } else { "#eee" };
            let _ = writeln!(
                out,
                r#"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="{stroke}"/>"#,
                LEFT + axes.plot_w
            );
            let label = if ms >= 1.0 { format!("{ms:.0} ms") } else { format!("{ms} ms") };
            let _ = writeln!(
                out,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="{}">{label}</text>"##,
                LEFT - 6.0,
                yy + 4.0,
                if major { "#333" } else { "#999" }
            );
        }
        decade += 1.0;
    }
}

/// The percentile lines and labels, the frame and the axis titles.
fn percentile_grid(out: &mut String, axes: &Axes) {
    let (plot_w, plot_h) = (axes.plot_w, axes.plot_h);
    for (nines, label) in [(0.0, "0%"), (1.0, "90%"), (2.0, "99%"), (3.0, "99.9%"), (4.0, "99.99%"), (5.0, "99.999%")] {
        let xx = axes.x(nines);
        let _ = writeln!(
            out,
            r##"<line x1="{xx:.1}" y1="{TOP}" x2="{xx:.1}" y2="{:.1}" stroke="#ddd"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 18.0
        );
    }
    let _ =
        writeln!(out, r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>"##);
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile (log scale of 1/(1-p))</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 22.0
    );
    let _ = writeln!(
        out,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">latency (log scale)</text>"#,
        TOP + plot_h / 2.0
    );
}

/// The `i`th series: its legend entry and its line.
fn line(out: &mut String, axes: &Axes, i: usize, s: &Series<'_>) {
    let colour = COLOURS[i % COLOURS.len()];
    let ly = TOP + 20.0 + 44.0 * i as f64;
    let lx = LEFT + axes.plot_w + 16.0;
    let _ = writeln!(
        out,
        r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="3"/>"#,
        lx + 24.0
    );
    let _ = writeln!(out, r#"<text x="{:.1}" y="{:.1}">{}</text>"#, lx + 30.0, ly + 4.0, escape(&s.name));
    if s.micros.is_empty() {
        let _ = writeln!(out, r##"<text x="{:.1}" y="{:.1}" fill="#777">(no samples)</text>"##, lx + 30.0, ly + 20.0);
        return;
    }
    let h = s.micros;
    let _ = writeln!(
        out,
        r##"<text x="{:.1}" y="{:.1}" fill="#555" font-size="11">p50 {} · p99 {} · n {}</text>"##,
        lx + 30.0,
        ly + 19.0,
        fmt_us(h.value_at_quantile(0.5)),
        fmt_us(h.value_at_quantile(0.99)),
        h.len()
    );
    // Points up to the resolution the sample count supports.
    let max_nines = (h.len() as f64).log10().min(MAX_NINES);
    let mut points = Vec::new();
    let steps = 200;
    for k in 0..=steps {
        let nines = max_nines * k as f64 / steps as f64;
        let q = 1.0 - 10f64.powf(-nines);
        points.push(format!("{:.1},{:.1}", axes.x(nines), axes.y(h.value_at_quantile(q) as f64)));
    }
    // The maximum, at the right end of the sample's resolution.
    points.push(format!("{:.1},{:.1}", axes.x(max_nines), axes.y(h.max() as f64)));
    let _ =
        writeln!(out, r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#, points.join(" "));
}

/// Microseconds, human-readable.
pub fn fmt_us(us: u64) -> String {
    if us >= 10_000_000 {
        format!("{:.1} s", us as f64 / 1e6)
    } else if us >= 1_000_000 {
        format!("{:.2} s", us as f64 / 1e6)
    } else if us >= 10_000 {
        format!("{:.1} ms", us as f64 / 1e3)
    } else if us >= 1_000 {
        format!("{:.2} ms", us as f64 / 1e3)
    } else {
        format!("{us} µs")
    }
}
