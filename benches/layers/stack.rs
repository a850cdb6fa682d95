//! `stack`: the whole canonical stack against the whole peer stack and the bare
//! router, through `Router::oneshot` on the same handler (`GET /users/{id}`, `Path`
//! and `Json`), the loggers writing to real files.
//!
//! The stacks are defined in `stacks.rs`, shared with the load benchmark's server.
//! Each request carries a peer address (1,000 clients in turn) and its response
//! body is read to the end, as a server would. The routers are finalized with
//! `with_state(())` first, as `axum::serve` does. Overhead is a row minus `bare`
//! (`around_tower_ops` minus `around_bare` for the stack as one service).

use std::cell::Cell;
use std::hint::black_box;
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use criterion::Criterion;
use http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::stacks::{Kind, LogTo};
use crate::support::runtime;

/// Distinct client addresses the requests cycle through.
const CLIENTS: u32 = 1000;

fn request(client: u32) -> Request<Body> {
    let addr = SocketAddr::from(([10, 0, (client >> 8) as u8, client as u8], 40_000));
    let mut req = Request::get("/users/42").body(Body::empty()).unwrap();
    req.extensions_mut().insert(ConnectInfo(addr));
    req
}

pub fn bench(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("stack");
    let dir = std::env::temp_dir().join(format!("tower-ops-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for kind in Kind::ALL {
        let log = LogTo::File(dir.join(format!("{}.log", kind.name())));
        let (dispatch, _writer) = kind.dispatch(&log).unwrap();
        let _log = tracing::dispatcher::set_default(&dispatch);
        // `with_state` turns every handler into its route with the layers applied,
        // once, as `into_make_service` does on a server. Without it, a bare
        // `Router` applies every `Router::layer` layer again on each request.
        let app = {
            let _rt = rt.enter();
            kind.router().with_state::<()>(())
        };
        let next = Cell::new(0u32);
        group.bench_function(kind.name(), |b| {
            b.to_async(&rt).iter(|| {
                let client = next.get();
                next.set((client + 1) % CLIENTS);
                let req = request(client);
                let app = app.clone();
                async move {
                    let response = app.oneshot(req).await.unwrap();
                    assert!(response.status().is_success());
                    black_box(response.into_body().collect().await.unwrap());
                }
            })
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}
