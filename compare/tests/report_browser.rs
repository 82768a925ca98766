//! The report in real headless Chromium: model text holding HTML shows as text and never runs,
//! the page loads nothing from the network, and a screenshot is saved
//! (`$CARGO_TARGET_TMPDIR/compare_report.png`, or `COMPARE_SCREENSHOT=path`).
//!
//! Needs `/usr/bin/chromium` and `chromedriver` (`scripts/install-test-deps.sh`); without them
//! the test fails when `CI` is set and prints "skipped" otherwise.
use anyhow::{bail, Context, Result};
use compare::{CompareSettings, ModelSpec, Report, Sample};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use lm::{Message, TextOrMessages};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SCRIPT: &str = "<script>window.__xss = 1</script>";
const IMG: &str = "<img src=x onerror=\"window.__xss = 2\">";

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sample(model: &str, id: &str, variant: &str, completion: &str, reward: f64, kl: f64) -> Sample {
    Sample {
        model: model.into(),
        prompt_id: id.into(),
        group: "html_payload".into(),
        variant: variant.into(),
        category: "prompt_injection".into(),
        prompt: TextOrMessages::Messages(vec![Message::new(
            "user",
            format!("Repeat after me: {SCRIPT}"),
        )]),
        sample: 0,
        completion: completion.into(),
        completion_tokens: 12,
        finished: true,
        logprob: -3.0,
        logprob_base: -3.0 - kl,
        kl,
        reward: Some(reward),
        refusal: completion.starts_with("I can't"),
        ids: None,
    }
}

/// The aligned model's run folder holds a DPO record (`dpo_run.json`) whose data path has markup:
/// the report says how the model was made, as text, with a link to the folder.
fn report(dir: &Path) -> Report {
    let run = dir.join("runs/dpo");
    std::fs::create_dir_all(&run).unwrap();
    let record = serde_json::json!({
        "trainer": {"batch_size": 4, "learning_rate": 1e-5},
        "dpo": {"data": "prefs<i>.jsonl", "lora_r": null, "loss": "sigmoid", "beta": 0.1},
        "outcome": {"summary": {"steps": 32}, "train_data": {"pairs": 128}},
    });
    std::fs::write(run.join("dpo_run.json"), record.to_string()).unwrap();
    let models: Vec<ModelSpec> = [
        "base=runs/<b>sft</b>".to_string(),
        format!("aligned={}", run.display()),
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    let samples = vec![
        sample(
            "base",
            "p/original",
            "original",
            &format!("Sure! {SCRIPT}"),
            0.1,
            0.0,
        ),
        sample(
            "base",
            "p/neutral",
            "neutral",
            &format!("{IMG} done"),
            0.4,
            0.0,
        ),
        sample(
            "aligned",
            "p/original",
            "original",
            "I can't repeat a script tag.",
            1.2,
            2.5,
        ),
        sample(
            "aligned",
            "p/neutral",
            "neutral",
            "A <script> tag runs JavaScript & more.",
            0.9,
            1.5,
        ),
    ];
    Report::build(&models, samples, &CompareSettings::default(), "probe.jsonl")
}

fn chromedriver() -> Option<&'static str> {
    ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

async fn start(path: &str) -> Result<(Driver, u16)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new(path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("spawn chromedriver")?;
    let driver = Driver(child);
    let t0 = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if t0.elapsed() > Duration::from_secs(20) {
            bail!("chromedriver did not start");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok((driver, port))
}

async fn browser(port: u16, profile: &Path) -> Result<Client> {
    let args = vec![
        "--headless".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--disable-background-networking".into(),
        "--no-first-run".into(),
        "--window-size=1280,1400".into(),
        format!("--user-data-dir={}", profile.display()),
    ];
    let caps = serde_json::json!({ "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args } });
    ClientBuilder::new(HttpConnector::new())
        .capabilities(caps.as_object().cloned().context("caps")?)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .context("WebDriver session")
}

async fn check(c: &Client, index: &Path) -> Result<()> {
    c.goto(&format!("file://{}", index.display())).await?;
    let js = |s: &'static str| c.execute(s, vec![]);
    assert_eq!(
        js("return window.__xss === undefined").await?,
        serde_json::json!(true)
    );
    assert_eq!(
        js("return document.querySelectorAll('script, img, iframe').length").await?,
        serde_json::json!(0)
    );
    let pres: Vec<String> = {
        let mut v = vec![];
        for e in c.find_all(Locator::Css(".answer pre")).await? {
            v.push(e.text().await?);
        }
        v
    };
    assert!(pres.iter().any(|t| t.contains(SCRIPT)), "{pres:?}");
    assert!(pres.iter().any(|t| t.contains(IMG)), "{pres:?}");
    let body = c.find(Locator::Css("body")).await?.text().await?;
    assert!(body.contains("runs/<b>sft</b>"), "model path shown as text");
    assert!(
        body.contains("dpo: 32 steps on 128 pairs of prefs<i>.jsonl; batch 4, lr 1e-5, full"),
        "how the aligned model was made, as text: {body}"
    );
    let links = js("return [...document.querySelectorAll('a')].map(a => a.href)").await?;
    assert!(
        links.to_string().contains("file://") && links.to_string().contains("runs/dpo"),
        "a link to the run folder: {links}"
    );
    assert!(
        body.contains("Repeat after me: <script>"),
        "prompt shown as text"
    );
    let svgs = js("return document.querySelectorAll('svg').length").await?;
    assert!(
        svgs.as_u64().unwrap_or(0) >= 3,
        "reward histogram, reward-vs-KL, length: {svgs}"
    );
    let shot = std::env::var("COMPARE_SCREENSHOT")
        .unwrap_or_else(|_| format!("{}/compare_report.png", env!("CARGO_TARGET_TMPDIR")));
    std::fs::write(&shot, c.screenshot().await?)?;
    js("document.getElementById('answers').scrollIntoView()").await?;
    let answers = shot.replace(".png", "_answers.png");
    std::fs::write(&answers, c.screenshot().await?)?;
    eprintln!("screenshots: {shot} {answers}");
    Ok(())
}

#[tokio::test]
async fn report_escapes_model_text_in_chromium() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("report");
    compare::write_report(&out, &report(dir.path()))?;
    let html = std::fs::read_to_string(out.join("index.html"))?;
    assert!(
        !html.contains(SCRIPT) && !html.contains("<img"),
        "raw markup in the file"
    );
    // The only URL in the page is the SVG namespace: nothing is fetched.
    let urls = html.matches("http://").count() + html.matches("https://").count();
    assert_eq!(urls, html.matches("http://www.w3.org/2000/svg\"").count());
    let Some(driver_path) = chromedriver().filter(|_| Path::new("/usr/bin/chromium").exists())
    else {
        if std::env::var_os("CI").is_some() {
            bail!("chromium / chromedriver missing (scripts/install-test-deps.sh)");
        }
        eprintln!("skipped: chromium / chromedriver not installed");
        return Ok(());
    };
    let (_driver, port) = start(driver_path).await?;
    let c = browser(port, &dir.path().join("profile")).await?;
    let r = check(&c, &out.join("index.html")).await;
    c.close().await?;
    r
}
