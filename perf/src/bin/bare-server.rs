//! bare-server: hyper on glommio answering every request with a fixed 200 and no work. It is
//! built like smsgate's HTTP ingress (one pinned executor per core from the `shards` crate,
//! a SO_REUSEPORT listener per shard, smsgate's hyper adapter, HTTP/1.1 and HTTP/2 on one
//! port), so the gap between the two is the cost of smsgate's own work.
//!
//! `bare-server [--listen ADDR] [--cpus 0,1]`; SIGINT/SIGTERM stop it.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use shards::{Shutdown, ShutdownTrigger};
use smsgate::ingress::http::serve_connections;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
bare-server: hyper on glommio answering a fixed 200, the HTTP ceiling of this machine

USAGE: bare-server [--listen ADDR] [--cpus LIST]
  --listen ADDR   address [default: 127.0.0.1:8090]; not port 0 (every shard binds it)
  --cpus LIST     comma-separated CPUs, one shard each [default: every CPU]
";

/// The answer's body: about the size of smsgate's submit answer, so both send alike.
const BODY: &[u8] =
    br#"{"id":"0000000000000000","status":"submitted","link":"100","smsc_message_id":"00000000","segments":1}"#;

/// smsgate's header read timeout, so hyper does the same timer work per connection.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let mut listen: SocketAddr = ([127, 0, 0, 1], 8090).into();
    let mut cpus: Option<Vec<usize>> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let parsed = match a.as_str() {
            "--listen" => args.next().and_then(|v| v.parse().ok()).map(|v| listen = v),
            "--cpus" => {
                args.next().and_then(|v| v.split(',').map(|c| c.trim().parse().ok()).collect()).map(|v| cpus = Some(v))
            }
            "-h" | "--help" => {
                print!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ => None,
        };
        if parsed.is_none() {
            eprintln!("bare-server: bad argument {a}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    let cpus = match shards::executor::cpus(cpus.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bare-server: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = shards::listener::ensure_free(listen) {
        eprintln!("bare-server: {e}");
        return ExitCode::FAILURE;
    }
    let trigger = ShutdownTrigger::new();
    if let Err(e) = shards::shutdown::on_signals(trigger.clone(), || {}) {
        eprintln!("bare-server: signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    println!("bare-server listening on {listen} with {} shards", cpus.len());
    match shards::run(&cpus, &trigger, move |_info, shutdown| serve(listen, shutdown)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bare-server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(listen: SocketAddr, shutdown: Shutdown) {
    let listener = match glommio::net::TcpListener::bind(listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bare-server: cannot listen on {listen}: {e}");
            return;
        }
    };
    serve_connections(listener, HEADER_READ_TIMEOUT, shutdown, || {
        hyper::service::service_fn(|req: Request<Incoming>| async {
            // Read the body as smsgate does; a broken one still gets the fixed answer.
            let _ = req.into_body().collect().await;
            let mut resp = Response::new(Full::new(Bytes::from_static(BODY)));
            *resp.status_mut() = StatusCode::OK;
            resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Ok::<_, Infallible>(resp)
        })
    })
    .await
}
