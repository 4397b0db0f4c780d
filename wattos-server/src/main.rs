//! `wattos-server`: loads and validates the configuration, sets up logging and metrics, serves until
//! SIGINT/SIGTERM.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;

use wattos_server::bootstrap::build_state;
use wattos_server::settings::Settings;
use wattos_server::{serve, shutdown_signal};

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "\
Usage: wattos-server [--config FILE] [--worker] [--check-config]

Configuration comes from FILE (or $WATTOS_CONFIG) plus WATTOS_* environment variables,
e.g. WATTOS_SERVER__BIND=0.0.0.0:8080. Without any, the server runs in embedded mode on
127.0.0.1:8080 with no external services.

  --config FILE    TOML configuration file
  --worker         run as a worker only: consume background jobs, serve only health and
                   metrics (same as WATTOS_SERVER__ROLE=worker)
  --check-config   validate the configuration, print it (secrets redacted) and exit
  --version        print the version
  -h, --help       print this help";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut config_path: Option<PathBuf> = None;
    let mut check_only = false;
    let mut worker_only = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => match args.next() {
                Some(p) => config_path = Some(PathBuf::from(p)),
                None => {
                    eprintln!("wattos-server: --config needs a file\n\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "--check-config" => check_only = true,
            "--worker" => worker_only = true,
            "--version" => {
                println!("wattos-server {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("wattos-server: unknown argument '{other}'\n\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }

    let settings = match Settings::load(config_path.as_deref()) {
        Ok(mut c) => {
            if worker_only {
                c.jobs.role = wattos_server::jobs::ServerRole::Worker;
            }
            c
        }
        Err(e) => {
            eprintln!("wattos-server: {e}");
            return ExitCode::from(2);
        }
    };
    if check_only {
        println!("configuration is valid:\n{settings:#?}");
        return ExitCode::SUCCESS;
    }
    // Kept alive until the process ends: flushes the trace exporter on drop.
    let _tracing = match wattos_server::otel::init_tracing(&settings.core.telemetry) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("wattos-server: {e}");
            return ExitCode::from(2);
        }
    };

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wattos-server: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let bind = settings.core.server.bind;
        let listener = match tokio::net::TcpListener::bind(bind).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("wattos-server: cannot listen on {bind}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let addr = listener.local_addr().unwrap_or(bind);
        let retention_every = settings.conversations.retention_interval;
        let state = match build_state(settings).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("wattos-server: {e}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(%addr, mode = ?state.config().mode, "wattos-server listening");
        println!("WattOS server listening on http://{addr} (health: http://{addr}/health)");
        // One token stops both the HTTP server and the job worker.
        let stop = tokio_util::sync::CancellationToken::new();
        let worker = state
            .jobs()
            .and_then(|j| j.spawn_worker(stop.child_token()));
        // Conversation retention needs the tenant registry (authentication on).
        let retention = match (state.conversations(), state.auth()) {
            (Some(conv), Some(auth)) => Some(
                wattos_server::conversations::RetentionSweeper::new(
                    conv.conversations().clone(),
                    auth.parts().tenants.clone(),
                    retention_every,
                )
                .spawn(stop.child_token()),
            ),
            _ => None,
        };
        let signal = {
            let stop = stop.clone();
            async move {
                shutdown_signal().await;
                stop.cancel();
            }
        };
        let grace = state.config().server.shutdown_grace;
        let events = state.events().cloned();
        let served = serve(listener, state, signal).await;
        stop.cancel();
        if let Some(r) = retention {
            r.abort();
        }
        if let Some(w) = worker {
            match tokio::time::timeout(grace, w).await {
                Ok(Ok(Err(e))) => tracing::error!(error = %e, "job worker failed"),
                Err(_) => tracing::warn!("job worker still busy after the grace period"),
                _ => {}
            }
        }
        // Events still buffered get a moment to go out (a down sink cannot hold the exit up).
        if let Some(ev) = events
            && !ev.flush(grace.min(std::time::Duration::from_secs(5))).await
        {
            tracing::warn!(stats = ?ev.stats(), "platform events still pending at exit were lost");
        }
        match served {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("wattos-server: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
