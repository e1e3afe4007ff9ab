//! Benchmark for the status page and the history database (run by
//! scripts/bench-web, not by CI).
//!
//! 1. Serves the real routes with 200 probe instances and 10,000 history
//!    rows, and times requests to `/`, a probe page and `/api/v1/events`
//!    on loopback (client-side time, so an upper bound of server time).
//! 2. Writes 30 days of 5-minute runs for 200 probes (1,728,000 runs, or a
//!    fraction given by `--fraction` and extrapolated) through the real
//!    history writer and reports the database size.
//!
//! `--serve SECONDS` keeps the populated server up (for screenshots) and
//! prints its address.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use driftwatch::config::HistoryConfig;
use driftwatch::history::History;
use driftwatch::http::{self as web, Catalog, CatalogProbe, Context, TriggerRefusal, TriggerSink};
use driftwatch::metrics::Metrics;
use driftwatch::model::outcome::{ErrorReason, ProbeError, ResourceChange};
use driftwatch::model::outcome::{Outcome, RunReport};
use driftwatch::state::State;

struct NoTriggers;

impl TriggerSink for NoTriggers {
    fn run_probe(&self, _: &str) -> Result<(), TriggerRefusal> {
        Err(TriggerRefusal::Unavailable)
    }
    fn sync(&self, _: Option<&str>) -> Result<(), TriggerRefusal> {
        Err(TriggerRefusal::Unavailable)
    }
    fn is_ready(&self) -> bool {
        true
    }
}

const LAYERS: [&str; 4] = ["terraform", "kubernetes", "ansible", "command"];

fn probe_name(i: usize) -> (String, String, &'static str) {
    let layer = LAYERS[i % LAYERS.len()];
    let name = match layer {
        "terraform" => format!("network-{:03}", i),
        "kubernetes" => format!("apps-{:03}", i),
        "ansible" => format!("hosts-{:03}", i),
        _ => format!("static-pods-{:03}", i),
    };
    let root = if layer == "terraform" {
        format!("envs/region-{}", i % 7)
    } else {
        String::new()
    };
    (name, root, layer)
}

fn report(i: usize, seq: u64, at: DateTime<Utc>) -> RunReport {
    let (name, root, layer) = probe_name(i);
    let mut report = RunReport {
        probe: if root.is_empty() {
            name.clone()
        } else {
            format!("{name}:{root}")
        },
        name,
        root,
        layer: layer.to_string(),
        run_id: seq,
        trigger: "schedule".into(),
        repo: "infra".into(),
        commit: format!("{:040x}", 0x5eed_0000_u64 + seq / 2000),
        started_at: at,
        duration: Duration::from_millis(800 + (seq % 2000)),
        verdict: driftwatch::model::outcome::Verdict::InSync,
        exit_code: Some(0),
        ..RunReport::default()
    };
    // 1 in 8 probes drifted, 1 in 20 erroring; drift flaps now and then.
    let drifted = i % 8 == 3 && (seq / 200) % 5 != 0;
    let result = if i % 20 == 7 {
        Err(ProbeError::new(
            ErrorReason::Unreachable,
            format!("host db{i} unreachable: ssh: connect to host port 22: Connection refused"),
        ))
    } else if drifted {
        Ok(Outcome::drifted(
            (0..(1 + i % 6))
                .map(|k| {
                    ResourceChange::new(format!("Deployment/prod/web-{k}"), "configured")
                        .with_diff(format!("~ spec.replicas: 6 -> {k}\n- metadata.annotations.release: \"41\"\n+ metadata.annotations.release: \"42\""))
                })
                .collect(),
        ))
    } else {
        Ok(Outcome::in_sync())
    };
    report.apply_result(result);
    report
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

async fn time_requests(
    client: &reqwest::Client,
    url: &str,
    count: usize,
) -> (Duration, Duration, Duration, usize) {
    let mut times = Vec::with_capacity(count);
    let mut bytes = 0;
    for _ in 0..count {
        let start = Instant::now();
        let body = client.get(url).send().await.unwrap().bytes().await.unwrap();
        times.push(start.elapsed());
        bytes = body.len();
    }
    times.sort();
    (
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        *times.last().unwrap(),
        bytes,
    )
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let probes: usize = arg("--probes").map(|v| v.parse().unwrap()).unwrap_or(200);
    let rows: usize = arg("--rows").map(|v| v.parse().unwrap()).unwrap_or(10_000);
    let fraction: f64 = arg("--fraction").map(|v| v.parse().unwrap()).unwrap_or(1.0);
    let serve: Option<u64> = arg("--serve").map(|v| v.parse().unwrap());
    let skip_size = args.iter().any(|a| a == "--no-size");

    // --- Status page with `probes` instances and `rows` history rows.
    let dir = tempfile::tempdir().unwrap();
    let state = Arc::new(State::load(dir.path()));
    let history = Arc::new(History::open(dir.path(), HistoryConfig::default()));
    let now = Utc::now();
    let per_probe = rows / probes;
    let mut seq = 0u64;
    for step in (0..per_probe).rev() {
        for i in 0..probes {
            seq += 1;
            let at = now - chrono::Duration::minutes(5 * step as i64)
                + chrono::Duration::seconds(i as i64);
            let report = report(i, seq, at);
            history.record(&report);
            if step == 0 {
                state.record(&report);
            }
        }
        history.flush(Duration::from_secs(600));
    }
    history.flush(Duration::from_secs(600));
    let catalog = Catalog {
        probes: (0..probes)
            .map(|i| {
                let (name, _, layer) = probe_name(i);
                CatalogProbe {
                    name,
                    layer: layer.into(),
                    repo: "infra".into(),
                    path: format!("{layer}/{i}"),
                    schedule: Some("*/5 * * * *".into()),
                    ..Default::default()
                }
            })
            .collect(),
        repos: vec![],
    };
    let metrics = Arc::new(Metrics::new(state.clone(), &Default::default(), 100));
    let mut ctx = Context::new(state, metrics, catalog, Arc::new(NoTriggers)).unwrap();
    ctx.history = Some(history.clone());
    let app = web::router(ctx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    println!(
        "status page: {probes} probe instances, {} history rows (runs)",
        history.run_count().unwrap()
    );
    if let Some(seconds) = serve {
        println!("serving on http://{addr}/ for {seconds}s");
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        return;
    }
    let client = reqwest::Client::new();
    let (name, root, _) = probe_name(3);
    let drifted_probe = if root.is_empty() {
        name
    } else {
        format!("{name}:{root}")
    };
    let drifted_probe = web::html::encode_segment(&drifted_probe);
    for (label, path) in [
        ("GET /", "/".to_string()),
        ("GET /probes/<drifted>", format!("/probes/{drifted_probe}")),
        (
            "GET /api/v1/probes/<p>/runs",
            format!("/api/v1/probes/{drifted_probe}/runs"),
        ),
        ("GET /api/v1/events", "/api/v1/events".to_string()),
        ("GET /api/v1/episodes", "/api/v1/episodes".to_string()),
    ] {
        let url = format!("http://{addr}{path}");
        time_requests(&client, &url, 10).await; // warm up
        let (p50, p99, max, bytes) = time_requests(&client, &url, 200).await;
        println!(
            "{label:<30} p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  ({} KiB)",
            ms(p50),
            ms(p99),
            ms(max),
            bytes / 1024
        );
    }

    if skip_size {
        return;
    }
    // --- Database size: 30 days of 5-minute runs for 200 probes.
    let size_dir = tempfile::tempdir().unwrap();
    let history = History::open(size_dir.path(), HistoryConfig::default());
    let steps_total = 30 * 24 * 12;
    let steps = ((steps_total as f64) * fraction).round() as usize;
    let start = Instant::now();
    let mut seq = 0u64;
    for step in (0..steps).rev() {
        for i in 0..200 {
            seq += 1;
            let at = now - chrono::Duration::minutes(5 * step as i64)
                + chrono::Duration::seconds(i as i64);
            history.record(&report(i, seq, at));
        }
        if step % 25 == 0 {
            history.flush(Duration::from_secs(600));
        }
    }
    history.flush(Duration::from_secs(600));
    let elapsed = start.elapsed();
    let runs = history.run_count().unwrap();
    let dropped = history.dropped();
    // Closing the last connection checkpoints the WAL into the main file.
    drop(history);
    if let Ok(keep) = std::env::var("WEB_BENCH_KEEP_DB") {
        let _ = std::fs::copy(size_dir.path().join("history.db"), keep);
    }
    let db_size = std::fs::metadata(size_dir.path().join("history.db"))
        .unwrap()
        .len();
    let wal_size = std::fs::metadata(size_dir.path().join("history.db-wal"))
        .map(|m| m.len())
        .unwrap_or(0);
    let size = db_size;
    println!(
        "history db: {runs} runs written in {:.1}s ({:.0} runs/s), dropped {}; history.db {:.1} MiB ({:.0} bytes/run), plus WAL {:.1} MiB (bounded by the auto-checkpoint)",
        elapsed.as_secs_f64(),
        runs as f64 / elapsed.as_secs_f64(),
        dropped,
        size as f64 / 1048576.0,
        size as f64 / runs.max(1) as f64,
        wal_size as f64 / 1048576.0
    );
    if fraction < 1.0 {
        let full = 200 * steps_total;
        println!(
            "extrapolated to 30 days x 200 probes ({full} runs): {:.0} MiB",
            size as f64 / runs.max(1) as f64 * full as f64 / 1048576.0
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
