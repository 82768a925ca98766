//! Real headless Chromium over WebDriver: sign in, label three comparisons with the keyboard,
//! undo one, check the export; and an XSS probe in the model text must never execute.
//!
//! Needs `/usr/bin/chromium` and `chromedriver` (`scripts/install-test-deps.sh`). Without them
//! the test fails when `CI` is set and prints "skipped" otherwise.

use std::net::TcpListener as StdListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use labeling_ui::auth::{add_user, Role};
use labeling_ui::{
    app, create_project, db, export_jsonl, import_items, AppState, ExportOptions, ImportItem,
    Prompt,
};
use serde_json::{json, Value};

const SCRIPT: &str = "<script>window.__xss = 1</script>";
const IMG: &str = "<img src=x onerror=\"window.__xss = 2\">";

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromedriver_path() -> Option<String> {
    ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .map(String::from)
}

fn free_port() -> Result<u16> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn start_driver(path: &str) -> Result<(Driver, u16)> {
    let port = free_port()?;
    let child = Command::new(path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("spawn chromedriver")?;
    let driver = Driver(child);
    let start = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if start.elapsed() > Duration::from_secs(20) {
            bail!("chromedriver did not start");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok((driver, port))
}

async fn browser(driver_port: u16, profile: &Path) -> Result<Client> {
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
    ];
    let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    let caps = json!({ "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args } });
    let caps = caps.as_object().cloned().context("caps")?;
    let client = ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .context("WebDriver session")?;
    Ok(client)
}

async fn js(c: &Client, script: &str) -> Result<Value> {
    Ok(c.execute(script, vec![]).await?)
}

async fn press(c: &Client, key: char) -> Result<()> {
    let keys = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: key })
        .then(KeyAction::Up { value: key });
    Ok(c.perform_actions(keys).await?)
}

/// Waits until the page shows an assignment different from `prev`; returns its id.
async fn wait_assignment(c: &Client, prev: &str) -> Result<String> {
    let start = Instant::now();
    loop {
        let v = js(
            c,
            "return document.getElementById('label-view').dataset.assignment || ''",
        )
        .await?;
        let v = v.as_str().unwrap_or_default().to_owned();
        if !v.is_empty() && v != prev {
            return Ok(v);
        }
        if start.elapsed() > Duration::from_secs(15) {
            bail!("page stayed on assignment {prev:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn items() -> Vec<ImportItem> {
    let it = |p: &str, a: &str, b: &str| ImportItem {
        prompt: Prompt::Text(p.into()),
        responses: vec![a.into(), b.into()],
    };
    vec![
        it(
            "Probe <b>bold</b>?",
            &format!("line one\n{SCRIPT}"),
            &format!("{IMG}\nline two"),
        ),
        it("second", "alpha response", "beta response"),
        it("third", "gamma response", "delta response"),
        it("fourth", "epsilon response", "zeta response"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_labels_with_keyboard_undoes_and_exports() -> Result<()> {
    let Some(driver_path) = chromedriver_path().filter(|_| Path::new("/usr/bin/chromium").exists())
    else {
        if std::env::var_os("CI").is_some() {
            bail!("chromium/chromedriver missing: run scripts/install-test-deps.sh");
        }
        println!(
            "skipped: chromium or chromedriver not installed (run scripts/install-test-deps.sh)"
        );
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let pool = db::open(dir.path().join("b.sqlite").to_str().context("utf8")?).await?;
    create_project(&pool, "p", 1).await?;
    import_items(&pool, "p", items()).await?;
    let password = add_user(&pool, "ann", Role::Labeler).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let router = app(AppState::new(pool.clone()));
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let (_driver, port) = start_driver(&driver_path).await?;
    let c = browser(port, &dir.path().join("profile")).await?;
    let result = drive(&c, &base, &password).await;
    c.close().await.ok();
    server.abort();
    let expected = result?;
    let (text, rows) = export_jsonl(&pool, "p", ExportOptions::default()).await?;
    assert_eq!(rows, 2, "two labels survive the undo:\n{text}");
    let got: Vec<(String, String)> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).map(|v| {
                (
                    v["chosen"].as_str().unwrap_or_default().to_owned(),
                    v["rejected"].as_str().unwrap_or_default().to_owned(),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    assert_eq!(got, expected);
    Ok(())
}

/// Runs the page; returns the (chosen, rejected) pairs the export must hold.
async fn drive(c: &Client, base: &str, password: &str) -> Result<Vec<(String, String)>> {
    c.goto(base).await?;
    c.wait()
        .for_element(Locator::Id("login-name"))
        .await?
        .send_keys("ann")
        .await?;
    c.find(Locator::Id("login-password"))
        .await?
        .send_keys(password)
        .await?;
    c.find(Locator::Css("#login-form button"))
        .await?
        .click()
        .await?;
    c.wait()
        .for_element(Locator::Css("tr[data-project='p'] button"))
        .await?
        .click()
        .await?;
    let mut prev = String::new();
    let mut expected = Vec::new();
    for (i, key) in ['1', '2', '1'].into_iter().enumerate() {
        prev = wait_assignment(c, &prev).await?;
        let a = c.find(Locator::Id("resp-a")).await?.text().await?;
        let b = c.find(Locator::Id("resp-b")).await?.text().await?;
        if i == 0 {
            xss_probe(c, &a, &b).await?;
            // For looking at the page: LABEL_SCREENSHOT=/path/shot.png
            if let Some(path) = std::env::var_os("LABEL_SCREENSHOT") {
                std::fs::write(path, c.screenshot().await?)?;
            }
        }
        let raw_a = js(c, "return document.getElementById('resp-a').textContent").await?;
        let raw_b = js(c, "return document.getElementById('resp-b').textContent").await?;
        let (a, b) = (
            raw_a.as_str().unwrap_or(&a).to_owned(),
            raw_b.as_str().unwrap_or(&b).to_owned(),
        );
        press(c, key).await?;
        press(c, fantoccini::key::Key::Enter.into()).await?;
        expected.push(if key == '1' { (a, b) } else { (b, a) });
    }
    let third = wait_assignment(c, &prev).await?;
    press(c, 'u').await?;
    let back = wait_assignment(c, &third).await?;
    assert_eq!(back, prev, "undo brings back the third comparison");
    expected.truncate(2);
    Ok(expected)
}

async fn xss_probe(c: &Client, a: &str, b: &str) -> Result<()> {
    let shown = format!("{a}\n{b}");
    assert!(
        shown.contains(SCRIPT) && shown.contains(IMG),
        "markup shown as text: {shown}"
    );
    assert!(
        shown.contains("line one\n") || shown.contains("\nline two"),
        "newlines kept"
    );
    let prompt = c.find(Locator::Id("prompt")).await?.text().await?;
    assert!(
        prompt.contains("<b>bold</b>"),
        "prompt shown as text: {prompt}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fired = js(c, "return window.__xss === undefined && document.querySelectorAll('#comparison img, #comparison script, #prompt b').length === 0").await?;
    assert_eq!(
        fired,
        json!(true),
        "injected markup must never become DOM or run"
    );
    Ok(())
}

/// Ranking mode, keyboard only: rank four responses (one tie, one flagged unacceptable),
/// submit, undo with U, rank again differently; the export holds exactly the second ranking's
/// pairs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_ranks_four_with_keyboard_and_exports() -> Result<()> {
    let Some(driver_path) = chromedriver_path().filter(|_| Path::new("/usr/bin/chromium").exists())
    else {
        if std::env::var_os("CI").is_some() {
            bail!("chromium/chromedriver missing: run scripts/install-test-deps.sh");
        }
        println!("skipped: chromium or chromedriver not installed");
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let pool = db::open(dir.path().join("r.sqlite").to_str().context("utf8")?).await?;
    labeling_ui::create_ranking_project(&pool, "rk", 1, 4).await?;
    let four = |p: &str, r: [&str; 4]| ImportItem {
        prompt: Prompt::Text(p.into()),
        responses: r.iter().map(|s| s.to_string()).collect(),
    };
    let items = vec![
        four(
            "rank these",
            ["wolf", &format!("xray {IMG}"), "yak", "zebra"],
        ),
        four("next one", ["a1", "a2", "a3", "a4"]),
    ];
    import_items(&pool, "rk", items).await?;
    let password = add_user(&pool, "ann", Role::Labeler).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let router = app(AppState::new(pool.clone()));
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let (_driver, port) = start_driver(&driver_path).await?;
    let c = browser(port, &dir.path().join("profile")).await?;
    let result = drive_ranking(&c, &base, &password).await;
    c.close().await.ok();
    server.abort();
    result?;
    let (text, _) = export_jsonl(&pool, "rk", ExportOptions::default()).await?;
    let mut got: Vec<(String, String, i64)> = text
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l)?;
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            Ok((
                s("chosen"),
                s("rejected"),
                v["rank_gap"].as_i64().unwrap_or(0),
            ))
        })
        .collect::<Result<_>>()?;
    got.sort();
    let x = format!("xray {IMG}");
    // Second ranking: zebra > (wolf = yak) > xray, xray flagged unacceptable.
    let mut want = vec![
        ("zebra".to_string(), "wolf".to_string(), 1),
        ("zebra".into(), "yak".into(), 1),
        ("zebra".into(), x.clone(), 2),
        ("wolf".into(), x.clone(), 1),
        ("yak".into(), x.clone(), 1),
    ];
    want.sort();
    assert_eq!(got, want, "{text}");
    Ok(())
}

async fn sign_in_and_open(c: &Client, base: &str, password: &str, project: &str) -> Result<()> {
    c.goto(base).await?;
    c.wait()
        .for_element(Locator::Id("login-name"))
        .await?
        .send_keys("ann")
        .await?;
    c.find(Locator::Id("login-password"))
        .await?
        .send_keys(password)
        .await?;
    c.find(Locator::Css("#login-form button"))
        .await?
        .click()
        .await?;
    c.wait()
        .for_element(Locator::Css(&format!(
            "tr[data-project='{project}'] button"
        )))
        .await?
        .click()
        .await?;
    Ok(())
}

/// The cards as shown: `(number key, text, rank label)` in list order.
async fn cards(c: &Client) -> Result<Vec<(u32, String, String)>> {
    let v = js(
        c,
        "return [...document.querySelectorAll('#rank-list li')].map(li => \
         [Number(li.dataset.n), li.querySelector('.text').textContent, li.dataset.rank])",
    )
    .await?;
    Ok(serde_json::from_value(v)?)
}

/// Puts the cards in `order` (texts, best first) with number keys and arrow keys only; returns
/// whether any card had to move (the cards come in a random order, sometimes the wanted one).
async fn order_by_keys(c: &Client, order: &[&str]) -> Result<bool> {
    let mut moved = false;
    for (target, text) in order.iter().enumerate() {
        let now = cards(c).await?;
        let at = now.iter().position(|(_, t, _)| t == text).context("card")?;
        press(c, char::from_digit(now[at].0, 10).context("digit")?).await?;
        for _ in target..at {
            moved = true;
            press(c, fantoccini::key::Key::Up.into()).await?;
        }
    }
    let texts: Vec<String> = cards(c).await?.into_iter().map(|(_, t, _)| t).collect();
    assert_eq!(texts, order, "arrow keys put the cards in order");
    Ok(moved)
}

/// Selects the card showing `text` by its number and presses `key` (t: tie, x: flag).
async fn on_card(c: &Client, text: &str, key: char) -> Result<()> {
    let now = cards(c).await?;
    let n = now.iter().find(|(_, t, _)| t == text).context("card")?.0;
    press(c, char::from_digit(n, 10).context("digit")?).await?;
    press(c, key).await
}

async fn drive_ranking(c: &Client, base: &str, password: &str) -> Result<()> {
    sign_in_and_open(c, base, password, "rk").await?;
    let first = wait_assignment(c, "").await?;
    let x = format!("xray {IMG}");
    let shown = cards(c).await?;
    assert_eq!(shown.len(), 4);
    let fired = js(c, "return window.__xss === undefined && document.querySelectorAll('#rank-list img').length === 0").await?;
    assert_eq!(fired, json!(true), "model text stays text");
    // First ranking: wolf > yak > zebra > xray; submitted, then undone with U.
    let moved = order_by_keys(c, &["wolf", "yak", "zebra", &x]).await?;
    press(c, fantoccini::key::Key::Enter.into()).await?;
    if !moved {
        // The page guards an untouched (random) order: "press Enter again to submit".
        press(c, fantoccini::key::Key::Enter.into()).await?;
    }
    let second = wait_assignment(c, &first).await?;
    press(c, 'u').await?;
    assert_eq!(
        wait_assignment(c, &second).await?,
        first,
        "U reopens the ranked item"
    );
    // Second ranking: zebra > wolf = yak > xray (unacceptable).
    order_by_keys(c, &["zebra", "wolf", "yak", &x]).await?;
    on_card(c, "yak", 't').await?;
    on_card(c, &x, 'x').await?;
    let ranks: Vec<String> = cards(c).await?.into_iter().map(|(_, _, r)| r).collect();
    assert_eq!(
        ranks,
        ["1", "2", "2", "3"],
        "tie shares rank 2, flagged card last"
    );
    let bad = js(
        c,
        "return document.querySelectorAll('#rank-list li.bad').length",
    )
    .await?;
    assert_eq!(bad, json!(1));
    if let Some(path) = std::env::var_os("RANK_SCREENSHOT") {
        std::fs::write(path, c.screenshot().await?)?;
    }
    press(c, fantoccini::key::Key::Enter.into()).await?;
    assert_eq!(wait_assignment(c, &first).await?, second);
    // Dragging (HTML5 drag and drop, dispatched from script: WebDriver cannot drag natively):
    // the last card dropped on the first takes its place.
    let before: Vec<String> = cards(c).await?.into_iter().map(|(_, t, _)| t).collect();
    js(
        c,
        "const li = [...document.querySelectorAll('#rank-list li')];          const dt = new DataTransfer();          li[3].dispatchEvent(new DragEvent('dragstart', {dataTransfer: dt, bubbles: true}));          li[0].dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));          return true",
    )
    .await?;
    let after: Vec<String> = cards(c).await?.into_iter().map(|(_, t, _)| t).collect();
    let want = [&before[3], &before[0], &before[1], &before[2]];
    assert_eq!(
        after.iter().collect::<Vec<_>>(),
        want,
        "drag moves the card"
    );
    Ok(())
}
