//! One self-contained printable page: inline CSS (with `@media print`), no
//! script, nothing fetched; charts are SVG drawn here. Every text that
//! comes from data is escaped.

use std::fmt::Write as _;

use lastmile_core::Tier;

use crate::bulletin::Bulletin;
use crate::period::GroupKey;
use crate::report::{Report, Row, TrendStep};

/// Tier colours (1, 3, 5, 10), distinguishable in greyscale print by
/// lightness too.
const COLOURS: [&str; 4] = ["#c0392b", "#e67e22", "#2e8b57", "#1f4e99"];

const STYLE: &str = "\
body{font-family:system-ui,'PingFang SC','Microsoft YaHei','Noto Sans CJK SC',sans-serif;margin:2em;color:#222}\
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}\
th,td{border:1px solid #bbb;padding:.2em .5em;text-align:right}th{background:#eee}\
td.t,th.t{text-align:left}td.t{white-space:nowrap}.meta{color:#555;font-size:.9em}figure{margin:.5em 0}\
figcaption{font-size:.85em;color:#555}svg text{font-family:inherit}\
@media print{body{margin:1cm;font-size:10pt}h2{break-after:avoid}figure,tr{break-inside:avoid}}";

/// The page of `report`, with `bulletin`'s rankings when given.
pub fn to_html(report: &Report, bulletin: Option<&Bulletin>) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let title = format!("13510 响应达标情况 / compliance — {}", report.period.label);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"zh-CN\">\n<head>\n<meta charset=\"utf-8\"/>\n<title>{}</title>\n\
         <style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        esc(&title),
        esc(&title)
    );
    let p = &report.period;
    let _ = write!(
        out,
        "<p class=\"meta\">周期 / period: <b>{}</b>, {} – {} (不含 / exclusive); 时区 / time zone: {}; \
         事件 / incidents: {}</p>\n<p class=\"meta\">{}</p>\n",
        esc(&p.label),
        esc(&p.from),
        esc(&p.to),
        esc(&p.time_zone),
        report.incidents,
        esc(&report.note)
    );
    out.push_str("<h2>各梯队合计 / totals per tier</h2>\n");
    rows_table(&mut out, &report.totals, &[]);
    if let Some(b) = bulletin {
        bulletin_section(&mut out, b);
    }
    out.push_str("<h2>各镇街达标率 / share met per town</h2>\n<figure>\n");
    town_chart(&mut out, &report.towns);
    out.push_str("<figcaption>每个镇街各梯队达标事件占比 / share of each town's incidents that met each tier (0–100%); “–”: no incident required the tier.</figcaption>\n</figure>\n");
    trend_section(&mut out, report);
    out.push_str("<h2>分组明细 / rows</h2>\n");
    let keys: Vec<GroupKey> = report.group_by.iter().copied().filter(|k| *k != GroupKey::Tier).collect();
    rows_table(&mut out, &report.rows, &keys);
    units_table(&mut out, report);
    eta_table(&mut out, report);
    out.push_str("</body>\n</html>\n");
    out
}

/// `& < > " '` as entities: safe in text and in quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{:.1}%", v * 100.0))
}

fn secs(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{v:.1}"))
}

fn points(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{v:+.1}"))
}

fn tier_name(minutes: u32) -> String {
    format!("{minutes} 分钟 / tier-{minutes}")
}

fn table(out: &mut String, header: &[&str], text_columns: usize, rows: impl IntoIterator<Item = Vec<String>>) {
    out.push_str("<table>\n<thead><tr>");
    for (i, h) in header.iter().enumerate() {
        let class = if i < text_columns { " class=\"t\"" } else { "" };
        let _ = write!(out, "<th{class}>{}</th>", esc(h));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for cells in rows {
        out.push_str("<tr>");
        for (i, c) in cells.iter().enumerate() {
            let class = if i < text_columns { " class=\"t\"" } else { "" };
            let _ = write!(out, "<td{class}>{}</td>", esc(c));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
}

fn group_cell(r: &Row, key: GroupKey) -> String {
    let v = match key {
        GroupKey::Town => &r.town,
        GroupKey::Grid => &r.grid,
        GroupKey::Day => &r.day,
        GroupKey::Week => &r.week,
        GroupKey::Month => &r.month,
        GroupKey::Tier => return r.tier.to_string(),
    };
    match v.as_deref() {
        None | Some("") => "–".to_string(),
        Some(v) => v.to_string(),
    }
}

fn rows_table(out: &mut String, rows: &[Row], keys: &[GroupKey]) {
    let figures = [
        "梯队 / tier",
        "事件 / incidents",
        "达标 / met",
        "达标率 / share met",
        "应到 / slots",
        "到达 / slots met",
        "不足 / short",
        "超时 / breached",
        "升级 / escalated",
        "到场中位 / arrival median s",
        "到场 P90 / arrival p90 s",
        "响应中位 / ack median s",
        "呼叫 / pages",
        "拒绝 / declined",
        "超时未应 / timed out",
    ];
    let header: Vec<&str> = keys.iter().map(|k| k.name()).chain(figures).collect();
    let cells = rows.iter().map(|r| {
        let mut c: Vec<String> = keys.iter().map(|k| group_cell(r, *k)).collect();
        c.extend([
            r.tier.to_string(),
            r.incidents.to_string(),
            r.incidents_met.to_string(),
            pct(r.share_met),
            r.slots_required.to_string(),
            r.slots_met.to_string(),
            r.short_at_report.to_string(),
            r.breached.to_string(),
            r.escalated.to_string(),
            secs(r.arrival_median_s),
            secs(r.arrival_p90_s),
            secs(r.ack_median_s),
            r.pages.to_string(),
            r.pages_declined.to_string(),
            r.pages_timed_out.to_string(),
        ]);
        c
    });
    table(out, &header, keys.len(), cells);
}

fn bulletin_section(out: &mut String, b: &Bulletin) {
    let _ = writeln!(
        out,
        "<h2>通报 / bulletin: {}{}</h2>",
        esc(&b.period),
        b.previous_period.as_deref().map(|p| format!(" (对比 / vs {})", esc(p))).unwrap_or_default()
    );
    for t in &b.tiers {
        let _ = writeln!(out, "<h3>{}</h3>", esc(&tier_name(t.tier)));
        let header = [
            "排名 / rank",
            "镇街 / town",
            "事件 / incidents",
            "达标 / met",
            "达标率 / share met",
            "上期 / previous",
            "变化 / change (points)",
        ];
        let cells = t.towns.iter().map(|w| {
            vec![
                w.rank.to_string(),
                w.town.clone(),
                w.incidents.to_string(),
                w.incidents_met.to_string(),
                pct(Some(w.share_met)),
                pct(w.previous_share_met),
                points(w.change_points),
            ]
        });
        table(out, &header, 2, cells);
    }
}

fn units_table(out: &mut String, report: &Report) {
    out.push_str("<h2>单位 / units</h2>\n");
    let header = [
        "单位 / unit",
        "梯队 / tier",
        "呼叫 / pages",
        "响应 / acknowledged",
        "响应率 / ack rate",
        "响应中位 / ack median s",
        "拒绝 / declined",
        "超时未应 / timed out",
        "核验到场 / verified arrivals",
        "按时到场 / within target",
    ];
    let cells = report.units.iter().map(|u| {
        vec![
            u.unit_id.clone(),
            u.tier.to_string(),
            u.pages.to_string(),
            u.acknowledged.to_string(),
            pct(u.ack_rate),
            secs(u.ack_median_s),
            u.declined.to_string(),
            u.timed_out.to_string(),
            u.verified_arrivals.to_string(),
            u.arrivals_within_target.to_string(),
        ]
    });
    table(out, &header, 1, cells);
}

fn eta_table(out: &mut String, report: &Report) {
    out.push_str("<h2>预计到达误差 / ETA error (actual − promised, seconds; positive: later)</h2>\n");
    let header = [
        "梯队 / tier",
        "到场 / arrivals",
        "误差中位 / median error",
        "偏差 / bias",
        "绝对误差中位 / median |error|",
        "绝对误差 P90 / p90 |error|",
        "按承诺到场 / by promise",
    ];
    let cells = report.eta.iter().map(|e| {
        let s = &e.stats;
        vec![
            e.tier.to_string(),
            s.arrivals.to_string(),
            secs(s.median_error_s),
            secs(s.bias_s),
            secs(s.median_abs_error_s),
            secs(s.p90_abs_error_s),
            pct(s.share_by_promise),
        ]
    });
    table(out, &header, 0, cells);
}

const PLOT_H: f64 = 200.0;
/// Room above the plot for a rotated "100%" label.
const TOP: f64 = 36.0;
const LEFT: f64 = 48.0;

/// The 0–100% axis with gridlines every 25%, across `width`.
fn y_axis(out: &mut String, width: f64) {
    for i in 0..=4 {
        let y = TOP + PLOT_H - PLOT_H * i as f64 / 4.0;
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT}\" y1=\"{y}\" x2=\"{:.1}\" y2=\"{y}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">{}%</text>",
            width - 10.0,
            LEFT - 4.0,
            y + 3.5,
            i * 25
        );
    }
    let _ =
        writeln!(out, "<line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{:.1}\" stroke=\"#555\"/>", TOP + PLOT_H);
}

fn legend(out: &mut String, y: f64) {
    for (i, tier) in Tier::ALL.into_iter().enumerate() {
        let x = LEFT + i as f64 * 130.0;
        let _ = writeln!(
            out,
            "<rect x=\"{x}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{y}\" font-size=\"11\">{}</text>",
            y - 9.0,
            COLOURS[i],
            x + 14.0,
            esc(&tier_name(tier.minutes()))
        );
    }
}

fn y_of(share: f64) -> f64 {
    TOP + PLOT_H - PLOT_H * share.clamp(0.0, 1.0)
}

/// Grouped bars: per town, one bar per tier.
fn town_chart(out: &mut String, towns: &[Row]) {
    const BAR: f64 = 14.0;
    const GROUP: f64 = 4.0 * (BAR + 2.0) + 28.0;
    let names: Vec<&str> = towns.iter().filter(|r| r.tier == 1).map(|r| r.town.as_deref().unwrap_or("")).collect();
    let width = (LEFT + names.len() as f64 * GROUP + 16.0).max(560.0);
    let height = TOP + PLOT_H + 60.0;
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {width:.0} {height:.0}\" role=\"img\" aria-label=\"share met per tier per town\">"
    );
    y_axis(out, width);
    for (g, group) in towns.chunks(4).enumerate() {
        let x0 = LEFT + 14.0 + g as f64 * GROUP;
        for (i, r) in group.iter().enumerate() {
            let x = x0 + i as f64 * (BAR + 2.0);
            let cx = x + BAR / 2.0;
            let colour = COLOURS[i];
            match r.share_met {
                Some(share) => {
                    let y = y_of(share);
                    let _ = writeln!(
                        out,
                        "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{BAR}\" height=\"{:.1}\" fill=\"{colour}\">\
                         <title>{} {}: {} ({}/{})</title></rect>\
                         <text x=\"{cx:.1}\" y=\"{:.1}\" font-size=\"9\" text-anchor=\"start\" \
                         transform=\"rotate(-90 {cx:.1} {:.1})\" dominant-baseline=\"middle\">{:.0}%</text>",
                        TOP + PLOT_H - y,
                        esc(r.town.as_deref().unwrap_or("")),
                        esc(&tier_name(r.tier)),
                        pct(Some(share)),
                        r.incidents_met,
                        r.incidents,
                        y - 3.0,
                        y - 3.0,
                        share * 100.0
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "<text x=\"{cx:.1}\" y=\"{:.1}\" font-size=\"9\" text-anchor=\"middle\" fill=\"{colour}\">–</text>",
                        TOP + PLOT_H - 3.0
                    );
                }
            }
        }
        let name = group.first().and_then(|r| r.town.as_deref()).unwrap_or("");
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            x0 + 2.0 * (BAR + 2.0) - 1.0,
            TOP + PLOT_H + 16.0,
            esc(if name.is_empty() { "–" } else { name })
        );
    }
    legend(out, TOP + PLOT_H + 44.0);
    out.push_str("</svg>\n");
}

fn trend_section(out: &mut String, report: &Report) {
    let (what, caption) = match report.trend.step {
        TrendStep::Week => (
            "每周 / per ISO week",
            "每个 ISO 周各梯队达标率 / share met per tier per ISO week of the period; a gap: no incident required the tier that week.",
        ),
        TrendStep::Day => (
            "每日 / per day",
            "本期不超过一周，按日显示 / the period spans one week at most, so one point per day; a gap: no incident required the tier that day.",
        ),
    };
    let _ = writeln!(out, "<h2>达标趋势 / trend, {what}</h2>\n<figure>");
    trend_chart(out, &report.trend.rows);
    let _ = writeln!(out, "<figcaption>{}</figcaption>\n</figure>", esc(caption));
    let header = ["时间 / when", "1 分钟 / tier-1", "3 分钟 / tier-3", "5 分钟 / tier-5", "10 分钟 / tier-10"];
    let cells = report.trend.rows.chunks(4).map(|point| {
        let mut c = vec![point_label(&point[0]).to_string()];
        c.extend(point.iter().map(|r| format!("{} ({}/{})", pct(r.share_met), r.incidents_met, r.incidents)));
        c
    });
    table(out, &header, 1, cells);
}

fn point_label(r: &Row) -> &str {
    r.week.as_deref().or(r.day.as_deref()).unwrap_or("")
}

/// One line per tier across the trend's points; a point without incidents
/// breaks the line.
fn trend_chart(out: &mut String, rows: &[Row]) {
    const STEP: f64 = 74.0;
    let points: Vec<&[Row]> = rows.chunks(4).collect();
    let width = (LEFT + 30.0 + points.len() as f64 * STEP).max(560.0);
    let height = TOP + PLOT_H + 60.0;
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {width:.0} {height:.0}\" role=\"img\" aria-label=\"share met per tier over time\">"
    );
    y_axis(out, width);
    let x_of = |i: usize| LEFT + 30.0 + i as f64 * STEP;
    for (i, point) in points.iter().enumerate() {
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{}</text>",
            x_of(i),
            TOP + PLOT_H + 16.0,
            esc(point_label(&point[0]))
        );
    }
    for (t, colour) in COLOURS.into_iter().enumerate() {
        let mut run: Vec<(f64, f64)> = Vec::new();
        let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
        for (i, point) in points.iter().enumerate() {
            match point.get(t).and_then(|r| r.share_met) {
                Some(share) => run.push((x_of(i), y_of(share))),
                None => runs.push(std::mem::take(&mut run)),
            }
        }
        runs.push(run);
        for run in runs.iter().filter(|r| r.len() > 1) {
            let coords: Vec<String> = run.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            let _ = writeln!(
                out,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"/>",
                coords.join(" ")
            );
        }
        for (i, point) in points.iter().enumerate() {
            let Some(r) = point.get(t) else { continue };
            let Some(share) = r.share_met else { continue };
            let _ = writeln!(
                out,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\"><title>{} {}: {} ({}/{})</title></circle>",
                x_of(i),
                y_of(share),
                esc(point_label(r)),
                esc(&tier_name(r.tier)),
                pct(Some(share)),
                r.incidents_met,
                r.incidents
            );
        }
    }
    legend(out, TOP + PLOT_H + 44.0);
    out.push_str("</svg>\n");
}
