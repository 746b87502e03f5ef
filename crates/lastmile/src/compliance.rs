//! `lastmile compliance`: the 13510 compliance report, offline from a data
//! directory's journal (the server may be running on it: the report reads
//! committed history only) or online from a server's
//! `GET /v1/reports/compliance`. The same code renders both (the server's).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use lastmile_server::LastmileConfig;
use lastmile_server::app::reports::{ComplianceQuery, ReportFormat, compliance_from};
use lastmile_server::history::History;

#[derive(clap::Args)]
pub struct ComplianceArgs {
    /// Read the journal in this data directory (offline).
    #[arg(long, conflicts_with = "server")]
    pub data_dir: Option<PathBuf>,
    /// Ask this server's gateway instead, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub server: Option<String>,
    /// Bearer token for --server (or LASTMILE_TOKEN).
    #[arg(long, env = "LASTMILE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) for an https --server.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// The configuration (its district time zone); default: the embedded one.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The weekly report (一周一上报): an ISO week, e.g. 2026-W48.
    #[arg(long)]
    pub week: Option<String>,
    /// The monthly bulletin (一月一通报): e.g. 2026-11 (towns ranked, with
    /// the change against the month before).
    #[arg(long)]
    pub month: Option<String>,
    /// A range instead: from (RFC 3339 instant or date, district time) ...
    #[arg(long, requires = "to")]
    pub from: Option<String>,
    /// ... to (exclusive).
    #[arg(long, requires = "from")]
    pub to: Option<String>,
    /// Split rows by these keys (tier, town, grid, day, week, month), e.g. town,tier.
    #[arg(long)]
    pub group_by: Option<String>,
    /// json, csv, units.csv or html.
    #[arg(long, default_value = "json")]
    pub format: String,
    /// Write here instead of standard output.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

pub fn run(args: ComplianceArgs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let format = ReportFormat::parse(&args.format).map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let body = match (&args.data_dir, &args.server) {
        (Some(dir), None) => offline(dir, &args, format)?,
        (None, Some(server)) => runtime.block_on(online(server, &args))?,
        _ => bail!("give --data-dir DIR (offline, from the journal) or --server URL (online)"),
    };
    match &args.out {
        Some(path) => std::fs::write(path, body).with_context(|| format!("cannot write {}", path.display())),
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            out.write_all(body.as_bytes())?;
            if !body.ends_with('\n') {
                out.write_all(b"\n")?;
            }
            Ok(())
        }
    }
}

fn query(args: &ComplianceArgs, format: ReportFormat) -> ComplianceQuery {
    ComplianceQuery {
        week: args.week.clone(),
        month: args.month.clone(),
        from: args.from.clone(),
        to: args.to.clone(),
        group_by: args.group_by.clone(),
        format,
    }
}

fn offline(dir: &Path, args: &ComplianceArgs, format: ReportFormat) -> anyhow::Result<String> {
    let config = match &args.config {
        Some(path) => LastmileConfig::load(path)?,
        None => LastmileConfig::embedded()?,
    };
    let tz = config.time_zone()?;
    let reader = lastmile_store::open_history_reader(dir)?;
    let history = History::new(1, Some(Arc::from(reader)), None);
    let rendered =
        compliance_from(&history, &query(args, format), &tz).map_err(|e| anyhow::anyhow!("{}", e.message))?;
    Ok(rendered.body)
}

async fn online(server: &str, args: &ComplianceArgs) -> anyhow::Result<String> {
    let mut params: Vec<(&str, &str)> = vec![("format", &args.format)];
    for (name, value) in [
        ("week", &args.week),
        ("month", &args.month),
        ("from", &args.from),
        ("to", &args.to),
        ("group_by", &args.group_by),
    ] {
        if let Some(v) = value {
            params.push((name, v));
        }
    }
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
    let url = format!("{}/v1/reports/compliance?{}", server.trim_end_matches('/'), query.join("&"));
    let (status, _, body) = crate::http_get::get(&url, args.token.as_deref(), args.ca.as_deref()).await?;
    let text = String::from_utf8_lossy(&body).into_owned();
    if status != 200 {
        bail!("{url}: HTTP {status}: {text}");
    }
    Ok(text)
}

/// Percent-encodes a query value (RFC 3986 unreserved kept).
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(super::encode("2026-11-01T00:00:00+08:00"), "2026-11-01T00%3A00%3A00%2B08%3A00");
        assert_eq!(super::encode("town,tier"), "town%2Ctier");
    }
}
