//! `api`: the edgeml server (`api` / `api serve`) and the standalone training worker
//! (`api worker`).

use std::sync::Arc;

use anyhow::Context;
use api::config::Config;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "api",
    version,
    about = "edgeml server: uploads, review, retraining, model registry, predictions"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    cfg: Config,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the api and web app (the default).
    Serve(Config),
    /// Run training jobs from the shared database and storage, without serving HTTP.
    Worker {
        #[command(flatten)]
        cfg: Config,
        /// Run at most one queued job, then exit.
        #[arg(long)]
        once: bool,
        /// Serve this worker's `/metrics` and `/health` on this address (for Prometheus).
        #[arg(long, env = "METRICS_LISTEN")]
        metrics_listen: Option<std::net::SocketAddr>,
    },
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        None => serve(cli.cfg).await,
        Some(Cmd::Serve(cfg)) => serve(cfg).await,
        Some(Cmd::Worker {
            cfg,
            once,
            metrics_listen,
        }) => worker(cfg, once, metrics_listen).await,
    }
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    init_logs(cfg.production);
    let listen = cfg.listen;
    let st = api::app::state(cfg).await.context("starting the server")?;
    api::app::bootstrap(&st)
        .await
        .context("first-start bootstrap")?;
    // A deep accept queue: bursts of new connections wait in the kernel instead of being
    // refused (the accept loop caps how many are open at once).
    let socket = if listen.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }?;
    socket.set_reuseaddr(true)?;
    socket
        .bind(listen)
        .with_context(|| format!("binding {listen}"))?;
    let listener = socket.listen(4096)?;
    let server = api::app::start(st, listener, shutdown_signal()).await?;
    let st = server.state.clone();
    eprintln!(
        "edgeml api on http://{} (docs: http://{}/docs)",
        server.addr, server.addr
    );
    if st.cfg.admin_token.is_none() {
        eprintln!("development admin token: {}", st.admin_token);
    }
    // `start` wired the signal to a graceful stop; wait for the server to finish.
    server.wait().await.context("server")
}

async fn worker(
    cfg: Config,
    once: bool,
    metrics_listen: Option<std::net::SocketAddr>,
) -> anyhow::Result<()> {
    init_logs(cfg.production);
    let st = api::app::state(cfg).await.context("starting the worker")?;
    let w = st.worker(Arc::new(tokio::sync::OnceCell::new()));
    let (tx, rx) = tokio::sync::watch::channel(false);
    let metrics = match metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {addr}"))?;
            eprintln!(
                "edgeml worker metrics on http://{}/metrics",
                listener.local_addr()?
            );
            Some(tokio::spawn(api::app::serve_worker_metrics(
                st.clone(),
                listener,
                rx.clone(),
            )))
        }
        None => None,
    };
    if once {
        match w.run_once().await? {
            Some((run, outcome)) => eprintln!("run {run}: {outcome:?}"),
            None => eprintln!("no queued run"),
        }
        return Ok(());
    }
    let stop = tx.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    w.run_forever(rx).await;
    // The worker stopped (signal): its metrics server drains and stops with it.
    let _ = tx.send(true);
    if let Some(m) = metrics {
        let _ = m.await;
    }
    st.db.close().await;
    Ok(())
}
