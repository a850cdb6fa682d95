//! The load benchmark's target: one of the compared stacks on a trivial axum
//! application, served over loopback. `scripts/load.sh` starts it once per stack
//! and drives it with `wrk`; see `benches/README.md`.
//!
//! ```text
//! cargo run --release --example load_server -- tower_ops 3000
//! curl -i localhost:3000/users/42
//! ```
//!
//! The first argument is the stack: `bare`, `peer` (tower-http request id and
//! trace, axum-prometheus, tower_governor, tower-http body limit), `tower_ops`
//! (the canonical `Stack`), or `around_bare` / `around_tower_ops` (the router
//! behind an outer `fallback_service`, bare or wrapped in the stack as one
//! service). A stack name ending in `+serve` (`bare+serve`, `tower_ops+serve`)
//! is served by `tower_ops::serve` with its defaults instead of `axum::serve`:
//! `STACKS="bare bare+serve" scripts/load.sh` compares the two servers on the
//! same router. The second argument is the port (default `PORT`, else any free one). It
//! prints `listening on http://ADDR` to stderr once it accepts connections, logs
//! one JSON line per request to the file named by `LOG_FILE` (or to stdout when it
//! is unset), and stops on Ctrl-C or SIGTERM. The stacks are the criterion group
//! `stack`'s, from `benches/layers/stacks.rs`.

use std::io::Write;
use std::net::SocketAddr;

#[path = "../benches/layers/stacks.rs"]
mod stacks;

use stacks::{Kind, LogTo};

fn usage() -> String {
    let names: Vec<_> = Kind::ALL.iter().map(|k| k.name()).collect();
    format!("usage: load_server <{}>[+serve] [PORT]", names.join("|"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let name = args.next().ok_or_else(usage)?;
    let (name, ours) = match name.strip_suffix("+serve") {
        Some(name) => (name.to_owned(), true),
        None => (name, false),
    };
    let kind: Kind = name.parse()?;
    let port = match args.next().or_else(|| std::env::var("PORT").ok()) {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| format!("{p:?} is not a port number\n{}", usage()))?,
        None => 0,
    };
    let log = match std::env::var_os("LOG_FILE") {
        Some(path) => LogTo::File(path.into()),
        None => LogTo::Stdout,
    };
    let (dispatch, writer) = kind.dispatch(&log)?;
    tracing::dispatcher::set_global_default(dispatch)?;
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(kind, port, ours));
    drop(writer);
    result
}

async fn run(kind: Kind, port: u16, ours: bool) -> Result<(), Box<dyn std::error::Error>> {
    let app = kind.router();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let mut stderr = std::io::stderr();
    writeln!(stderr, "listening on http://{}", listener.local_addr()?)?;
    stderr.flush()?;
    if ours {
        let shutdown = tower_ops::shutdown::Shutdown::builder().build();
        tower_ops::serve::serve(listener, app)
            .with_shutdown(shutdown)
            .await?;
        return Ok(());
    }
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stop())
    .await?;
    Ok(())
}

/// Ctrl-C or SIGTERM (what the load script sends).
async fn stop() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
