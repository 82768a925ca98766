//! `rudder label ...` subcommands. The `cli` crate mounts [`LabelArgs`] and calls [`run`].

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::auth::{add_user, Role};
use crate::db::Mode;
use crate::error::{AppError, Result};
use crate::export::{export_jsonl, ExportOptions, Ties};
use crate::import::{create_project, create_ranking_project, import_items, parse_jsonl};
use crate::{app, db, AppState};

/// Arguments of `rudder label`.
#[derive(Debug, Args)]
pub struct LabelArgs {
    #[command(subcommand)]
    pub command: LabelCommand,
}

/// The labeling subcommands.
///
/// `rudder label generate --project P --model M --prompts prompts.jsonl --n 2` is not here: it
/// needs the model crate, so the `cli` crate adds it, samples the responses itself and stores
/// them with [`crate::import_items`] (atomic, all or nothing).
#[derive(Debug, Subcommand)]
pub enum LabelCommand {
    /// Serve the labeling page and JSON API (creates and migrates the database).
    Serve {
        /// SQLite file path or `sqlite://` URL.
        #[arg(long, env = "RUDDER_LABEL_DB")]
        db: String,
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: SocketAddr,
        /// Mark the session cookie `Secure` (when served behind TLS).
        #[arg(long)]
        secure_cookies: bool,
    },
    /// Create a user and print its password (generated; shown only now, it stays the user's
    /// password).
    AddUser {
        name: String,
        #[arg(long, value_enum)]
        role: Role,
        #[arg(long, env = "RUDDER_LABEL_DB")]
        db: String,
    },
    /// Create a project (pairwise, or ranking K responses at once).
    CreateProject {
        name: String,
        /// How many different labelers see each comparison (ranking mode: each item).
        #[arg(long, default_value_t = 1)]
        overlap: i64,
        /// `pairwise`: pick the better of two; `ranking`: order K responses (ties and
        /// "unacceptable" flags allowed), exported as pairs.
        #[arg(long, value_enum, default_value_t = Mode::Pairwise)]
        mode: Mode,
        /// Responses shown per ranking, 3-9 (ranking mode only; items need at least K).
        #[arg(long, required_if_eq("mode", "ranking"))]
        k: Option<i64>,
        #[arg(long, env = "RUDDER_LABEL_DB")]
        db: String,
    },
    /// Import items from JSONL (`{"prompt","responses"}` or TRL `{"prompt","chosen","rejected"}`).
    Import {
        #[arg(long)]
        project: String,
        file: PathBuf,
        #[arg(long, env = "RUDDER_LABEL_DB")]
        db: String,
    },
    /// Export preferences in TRL format (majority over labelers), or raw labels.
    Export {
        #[arg(long)]
        project: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value_t = Ties::Drop)]
        ties: Ties,
        /// One row per individual label (ranking: per ranking) instead of the majority
        /// (ranking: the expanded pairs).
        #[arg(long)]
        raw: bool,
        /// Ranking projects: at most N pairs per ranking (a random subset seeded by the ranking
        /// id, so re-exports agree). Default: all K(K-1)/2 of a strict ranking.
        #[arg(long, value_name = "N")]
        max_pairs_per_ranking: Option<usize>,
        #[arg(long, env = "RUDDER_LABEL_DB")]
        db: String,
    },
    /// Print progress and agreement for a project as JSON.
    Stats {
        #[arg(long)]
        project: String,
        #[arg(long, env = "RUDDER_LABEL_DB")]
        db: String,
    },
}

/// What `add-user` prints: the password is generated and shown once, but it is the user's
/// password from then on (not a one-time code).
fn added(role: Role, name: &str, password: &str) -> String {
    format!(
        "created {} '{}'; password (generated, shown only now: keep it, only its hash is stored): {password}",
        role.as_str(),
        name.trim()
    )
}

/// Runs one `rudder label` subcommand.
pub async fn run(args: LabelArgs) -> Result<()> {
    match args.command {
        LabelCommand::Serve {
            db,
            addr,
            secure_cookies,
        } => serve(&db, addr, secure_cookies).await,
        LabelCommand::AddUser { name, role, db } => {
            let password = add_user(&db::open(&db).await?, &name, role).await?;
            println!("{}", added(role, &name, &password));
            Ok(())
        }
        LabelCommand::CreateProject {
            name,
            overlap,
            mode,
            k,
            db,
        } => {
            let pool = db::open(&db).await?;
            let id = match (mode, k) {
                (Mode::Pairwise, None) => create_project(&pool, &name, overlap).await?,
                (Mode::Pairwise, Some(_)) => {
                    return Err(AppError::BadRequest(
                        "--k applies to --mode ranking only".into(),
                    ))
                }
                (Mode::Ranking, k) => {
                    let k =
                        k.ok_or_else(|| AppError::BadRequest("--mode ranking needs --k".into()))?;
                    create_ranking_project(&pool, &name, overlap, k).await?
                }
            };
            let what = k.map_or(String::new(), |k| format!(", ranking {k} responses"));
            println!(
                "created project '{}' (id {id}, overlap {overlap}{what})",
                name.trim()
            );
            Ok(())
        }
        LabelCommand::Import { project, file, db } => {
            let pool = db::open(&db).await?;
            let items = parse_jsonl(&tokio::fs::read_to_string(&file).await?)?;
            let r = import_items(&pool, &project, items).await?;
            println!(
                "imported {} items ({} comparisons, {} rankings) into '{project}'",
                r.items, r.comparisons, r.rankings
            );
            Ok(())
        }
        LabelCommand::Export {
            project,
            out,
            ties,
            raw,
            max_pairs_per_ranking,
            db,
        } => {
            let pool = db::open(&db).await?;
            let opts = ExportOptions {
                ties,
                raw,
                max_pairs_per_ranking,
            };
            let (text, rows) = export_jsonl(&pool, &project, opts).await?;
            tokio::fs::write(&out, text).await?;
            println!("wrote {rows} rows to {}", out.display());
            Ok(())
        }
        LabelCommand::Stats { project, db } => {
            let stats = crate::stats::project_stats(&db::open(&db).await?, &project).await?;
            println!("{}", serde_json::to_string_pretty(&stats)?);
            Ok(())
        }
    }
}

/// Serves until Ctrl-C / SIGTERM.
pub async fn serve(db: &str, addr: SocketAddr, secure_cookies: bool) -> Result<()> {
    let pool = db::open(db).await?;
    let mut state = AppState::new(pool.clone());
    state.secure_cookies = secure_cookies;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    println!("labeling UI listening on http://{local}");
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(AppError::Io)?;
    pool.close().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generated password is the user's password, reusable: not called one-time.
    #[test]
    fn add_user_says_what_the_password_is() {
        let line = added(Role::Labeler, " ann ", "pw123");
        assert_eq!(
            line,
            "created labeler 'ann'; password (generated, shown only now: keep it, only its hash \
             is stored): pw123"
        );
        assert!(!line.contains("one-time"));
    }
}
