//! Load generator for the labeling API, loopback only (127.0.0.1).
//!
//! It starts the server as a child process (this same binary, `__serve` mode) on a fresh
//! database, signs in N labelers and has each loop `next` -> `submit` until the time is up.
//! With `--kill-at S` it SIGKILLs the server S seconds in, restarts it on the same database,
//! and clients retry unacknowledged submissions with the same client id. At the end it checks
//! that every acknowledged label is in the database exactly once, and reports the -wal file's
//! size (largest seen while serving, and at the end, before the server is stopped).
//!
//! `cargo run -p labeling_ui --example loadgen -- --labelers 64 --seconds 15 [--kill-at 7]
//!  [--rate 3200] [--items 120000]`
//!
//! Without `--rate` the labelers have no think time (closed loop: measures peak throughput, and
//! latency is then mostly queueing, about labelers / throughput). With `--rate R` they send R
//! submissions per second in total on a fixed schedule (open loop).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use labeling_ui::auth::{add_user, Role};
use labeling_ui::{create_project, db, import_items, ImportItem, Prompt};
use serde_json::{json, Value};

type Http = Client<HttpConnector, Full<Bytes>>;

#[derive(Clone, Copy)]
struct Opts {
    labelers: usize,
    seconds: u64,
    kill_at: Option<u64>,
    items: usize,
    /// Total submissions per second to pace at (open loop); `None`: closed loop, no think time.
    rate: Option<f64>,
}

fn parse_opts() -> Result<Opts> {
    let mut o = Opts {
        labelers: 64,
        seconds: 15,
        kill_at: None,
        items: 120_000,
        rate: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let v = pair.get(1).context("flag needs a value")?;
        match pair[0].as_str() {
            "--labelers" => o.labelers = v.parse()?,
            "--seconds" => o.seconds = v.parse::<u64>()?.min(300),
            "--kill-at" => o.kill_at = Some(v.parse()?),
            "--items" => o.items = v.parse()?,
            "--rate" => o.rate = Some(v.parse()?),
            f => bail!("unknown flag {f}"),
        }
    }
    Ok(o)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if args.get(1).map(String::as_str) == Some("__serve") {
        let (db, addr) = (args.get(2).context("db")?, args.get(3).context("addr")?);
        return rt
            .block_on(labeling_ui::cli::serve(db, addr.parse()?, false))
            .map_err(Into::into);
    }
    rt.block_on(bench(parse_opts()?))
}

struct Server {
    child: std::process::Child,
}

impl Server {
    fn start(db: &str, addr: &str) -> Result<Self> {
        let child = std::process::Command::new(std::env::current_exe()?)
            .args(["__serve", db, addr])
            .stdout(std::process::Stdio::null())
            .spawn()?;
        Ok(Server { child })
    }
    /// CPU seconds the server has used so far (Linux /proc; 0 elsewhere).
    fn cpu_secs(&self) -> f64 {
        cpu_secs(&format!("/proc/{}/stat", self.child.id()))
    }

    /// SIGKILL: no graceful shutdown, no flushing beyond what SQLite already committed.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// utime + stime from a /proc stat file, assuming the usual 100 ticks per second.
fn cpu_secs(stat_path: &str) -> f64 {
    let Ok(text) = std::fs::read_to_string(stat_path) else {
        return 0.0;
    };
    let Some(after) = text.rsplit_once(')').map(|(_, rest)| rest) else {
        return 0.0;
    };
    let fields: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (tick(11) + tick(12)) / 100.0
}

async fn wait_up(http: &Http, base: &str) -> Result<()> {
    let start = Instant::now();
    while call(http, base, "GET", "/api/me", None, None, "")
        .await
        .is_err()
    {
        if start.elapsed() > Duration::from_secs(30) {
            bail!("server did not come up");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// One request; returns status and JSON body (Null when the body is not JSON).
async fn call(
    http: &Http,
    base: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    cookie: Option<&str>,
    csrf: &str,
) -> Result<(u16, Value, Option<String>)> {
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"));
    if let Some(c) = cookie {
        req = req.header("cookie", c).header("x-csrf-token", csrf);
    }
    let payload = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Bytes::from(b.to_string())
        }
        None => Bytes::new(),
    };
    let res = http.request(req.body(Full::new(payload))?).await?;
    let status = res.status().as_u16();
    let set_cookie = res
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.split(';').next().unwrap_or_default().to_owned());
    let bytes = res.into_body().collect().await?.to_bytes();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        set_cookie,
    ))
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    /// (completion time, latency) per acknowledged submission, for the per-second timeline.
    done: Vec<(Instant, u64)>,
    acked: HashSet<String>,
    duplicates: usize,
    retries: usize,
    in_flight_at_end: usize,
}

struct Labeler {
    http: Http,
    base: String,
    cookie: String,
    csrf: String,
    name: String,
}

impl Labeler {
    async fn post(&self, path: &str, body: &Value) -> Result<(u16, Value)> {
        let (s, v, _) = call(
            &self.http,
            &self.base,
            "POST",
            path,
            Some(body),
            Some(&self.cookie),
            &self.csrf,
        )
        .await?;
        Ok((s, v))
    }

    /// Retries through connection errors and 5xx (a server restart) until `deadline`.
    async fn post_retry(
        &self,
        path: &str,
        body: &Value,
        deadline: Instant,
        tally: &mut Tally,
    ) -> Option<Value> {
        loop {
            match self.post(path, body).await {
                Ok((200, v)) => return Some(v),
                Ok((s, v)) if s < 500 => panic!("{} got {s}: {v}", self.name),
                _ if Instant::now() >= deadline => return None,
                _ => {
                    tally.retries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    /// `pace`: (first send, interval). Latency is then measured from the scheduled send time,
    /// so a server that falls behind is charged for the queueing it causes.
    async fn run(self, deadline: Instant, pace: Option<(Instant, Duration)>) -> Tally {
        let mut tally = Tally::default();
        let mut seq = 0u64;
        // One `next` to start; after that each submission's answer carries the next comparison.
        let first = "/api/projects/bench/next";
        let mut next = self
            .post_retry(first, &json!({}), deadline, &mut tally)
            .await;
        while Instant::now() < deadline {
            let Some(id) = next
                .as_ref()
                .and_then(|n| n["comparison"]["assignment_id"].as_i64())
            else {
                break;
            };
            let client_id = format!("{}-{seq}", self.name);
            seq += 1;
            let choice = ["A", "A", "B"][(seq % 3) as usize];
            let body = json!({ "assignment_id": id, "choice": choice, "client_id": client_id, "project": "bench" });
            let start = match pace {
                Some((first, every)) => {
                    let at = first + every * (seq - 1) as u32;
                    tokio::time::sleep_until(at.into()).await;
                    at
                }
                None => Instant::now(),
            };
            match self
                .post_retry(
                    "/api/labels",
                    &body,
                    deadline + Duration::from_secs(10),
                    &mut tally,
                )
                .await
            {
                Some(mut v) => {
                    let us = start.elapsed().as_micros() as u64;
                    tally.latencies_us.push(us);
                    tally.done.push((Instant::now(), us));
                    tally.duplicates += usize::from(v["duplicate"] == json!(true));
                    tally.acked.insert(client_id);
                    next = Some(v["next"].take());
                }
                None => {
                    tally.in_flight_at_end += 1;
                    break;
                }
            }
        }
        tally
    }
}

async fn prepare(db_path: &str, o: Opts) -> Result<Vec<(String, String)>> {
    let pool = db::open(db_path).await?;
    create_project(&pool, "bench", 1).await?;
    let items: Vec<ImportItem> = (0..o.items)
        .map(|i| ImportItem {
            prompt: Prompt::Text(format!("prompt {i}")),
            responses: vec![format!("response a {i}"), format!("response b {i}")],
        })
        .collect();
    import_items(&pool, "bench", items).await?;
    let mut users = Vec::new();
    for i in 0..o.labelers {
        let name = format!("bench{i}");
        let pw = add_user(&pool, &name, Role::Labeler).await?;
        users.push((name, pw));
    }
    pool.close().await;
    Ok(users)
}

async fn sign_in(http: &Http, base: &str, name: &str, pw: &str) -> Result<Labeler> {
    let (s, v, cookie) = call(
        http,
        base,
        "POST",
        "/api/login",
        Some(&json!({ "name": name, "password": pw })),
        None,
        "",
    )
    .await?;
    if s != 200 {
        bail!("login {name}: {s} {v}");
    }
    Ok(Labeler {
        http: http.clone(),
        base: base.to_owned(),
        cookie: cookie.context("no cookie")?,
        csrf: v["csrf_token"].as_str().context("csrf")?.to_owned(),
        name: name.to_owned(),
    })
}

/// Per second of the run: acknowledged submissions and their p99 latency (shows the restart).
fn print_timeline(start: Instant, done: &[(Instant, u64)]) {
    let mut secs: Vec<Vec<u64>> = Vec::new();
    for (at, us) in done {
        let s = at.duration_since(start).as_secs() as usize;
        if secs.len() <= s {
            secs.resize(s + 1, Vec::new());
        }
        secs[s].push(*us);
    }
    for (s, lat) in secs.iter_mut().enumerate() {
        lat.sort_unstable();
        eprintln!(
            "t={s:>3}s acked={:>6} p99={:>8.2} ms",
            lat.len(),
            pct(lat, 0.99)
        );
    }
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

async fn bench(o: Opts) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db_path = dir
        .path()
        .join("bench.sqlite")
        .to_string_lossy()
        .into_owned();
    let users = prepare(&db_path, o).await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let (addr, base) = (
        format!("127.0.0.1:{port}"),
        format!("http://127.0.0.1:{port}"),
    );
    let mut server = Server::start(&db_path, &addr)?;
    let http: Http = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(o.labelers * 2)
        .build_http();
    wait_up(&http, &base).await?;
    let labelers = sign_in_all(&http, &base, &users).await?;
    let start = Instant::now();
    let (mut server_cpu, client_cpu0) = (-server.cpu_secs(), cpu_secs("/proc/self/stat"));
    let deadline = start + Duration::from_secs(o.seconds);
    let wal = WalWatch::start(format!("{db_path}-wal"));
    // Paced: each labeler sends every labelers/rate seconds, start times spread evenly.
    let every = o
        .rate
        .map(|r| Duration::from_secs_f64(o.labelers as f64 / r));
    let tasks: Vec<_> = labelers
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            let pace = every.map(|e| (start + e.mul_f64(i as f64 / o.labelers as f64), e));
            tokio::spawn(l.run(deadline, pace))
        })
        .collect();
    let mut restart_ms = None;
    if let Some(k) = o.kill_at {
        tokio::time::sleep(Duration::from_secs(k)).await;
        server_cpu += server.cpu_secs();
        server.kill();
        let t = Instant::now();
        server = Server::start(&db_path, &addr)?;
        wait_up(&http, &base).await?;
        restart_ms = Some(t.elapsed().as_millis());
    }
    let all = collect(tasks).await?;
    let elapsed = start.elapsed().as_secs_f64();
    wal.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let wal = (
        wal.task.await?,
        file_len(&format!("{db_path}-wal")),
        file_len(&db_path),
    );
    print_timeline(start, &all.done);
    let cpu = (
        server_cpu + server.cpu_secs(),
        cpu_secs("/proc/self/stat") - client_cpu0,
    );
    server.kill();
    report(&db_path, o, all, elapsed, restart_ms, (cpu, wal)).await
}

fn file_len(path: &str) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Samples the -wal file's size every 50 ms while the load runs (issue #22: it grew without
/// bound under sustained load); the task returns the largest size seen.
struct WalWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<u64>,
}

impl WalWatch {
    fn start(path: String) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut max = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                max = max.max(file_len(&path));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            max
        });
        WalWatch { stop, task }
    }
}

async fn sign_in_all(http: &Http, base: &str, users: &[(String, String)]) -> Result<Vec<Labeler>> {
    let mut labelers = Vec::new();
    for (name, pw) in users {
        labelers.push(sign_in(http, base, name, pw).await?);
    }
    Ok(labelers)
}

async fn collect(tasks: Vec<tokio::task::JoinHandle<Tally>>) -> Result<Tally> {
    let mut all = Tally::default();
    for t in tasks {
        let r = t.await?;
        all.latencies_us.extend(r.latencies_us);
        all.done.extend(r.done);
        all.acked.extend(r.acked);
        all.duplicates += r.duplicates;
        all.retries += r.retries;
        all.in_flight_at_end += r.in_flight_at_end;
    }
    Ok(all)
}

async fn report(
    db_path: &str,
    o: Opts,
    mut t: Tally,
    elapsed: f64,
    restart_ms: Option<u128>,
    // (server, loadgen) CPU seconds; (largest, final) -wal size and database size in bytes.
    (cpu, wal): ((f64, f64), (u64, u64, u64)),
) -> Result<()> {
    let pool = db::open(db_path).await?;
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT client_id FROM labels WHERE undone_at IS NULL")
            .fetch_all(&pool)
            .await?;
    let stored: HashSet<String> = rows.iter().cloned().collect();
    let lost = t.acked.iter().filter(|c| !stored.contains(*c)).count();
    let doubled = rows.len() - stored.len();
    let per_assignment: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM (SELECT assignment_id FROM labels WHERE undone_at IS NULL GROUP BY assignment_id HAVING COUNT(*) > 1)").fetch_one(&pool).await?;
    t.latencies_us.sort_unstable();
    let summary = json!({
        "labelers": o.labelers, "seconds": elapsed, "target_rate": o.rate, "kill_at": o.kill_at, "restart_ms": restart_ms,
        "acked": t.acked.len(), "submissions_per_s": t.acked.len() as f64 / elapsed,
        "p50_ms": pct(&t.latencies_us, 0.5), "p99_ms": pct(&t.latencies_us, 0.99), "max_ms": pct(&t.latencies_us, 1.0),
        "stored": rows.len(), "lost_acked": lost, "duplicated": doubled as i64 + per_assignment,
        "server_cpu_s": cpu.0, "loadgen_cpu_s": cpu.1,
        "server_cpu_ms_per_label": cpu.0 * 1000.0 / t.acked.len().max(1) as f64,
        "retried_requests": t.retries, "duplicate_answers": t.duplicates, "unacked_at_deadline": t.in_flight_at_end,
        "wal_mb_max": wal.0 as f64 / 1e6, "wal_mb_end": wal.1 as f64 / 1e6, "db_mb_end": wal.2 as f64 / 1e6,
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    if lost > 0 || doubled > 0 || per_assignment > 0 {
        bail!("lost or duplicated labels");
    }
    Ok(())
}
