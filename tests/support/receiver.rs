//! A real HTTP receiver for webhook tests (std `TcpListener`, one thread per connection), and
//! a signature check by Python's `hmac`, an implementation smsgate did not write.
// Test code on plain threads: blocking waits and a mutex are fine here.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
#![allow(dead_code)] // each test file uses a different part of this module

use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    /// Header names lower-cased.
    pub headers: HashMap<String, String>,
    pub body: String,
    /// What the receiver answered (0: nothing, it hung).
    pub answered: u16,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("webhook body is JSON")
    }
    pub fn event_id(&self) -> &str {
        self.headers.get("x-smsgate-event-id").map_or("", String::as_str)
    }
}

/// A tiny HTTP/1.1 receiver. Answers 503 to the first `fail_first` requests, then 204; with
/// `hang`, reads each request and never answers.
pub struct Receiver {
    pub port: u16,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub fn start(port: u16, fail_first: usize, hang: bool) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind receiver");
        let port = listener.local_addr().expect("receiver addr").port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(AtomicUsize::new(fail_first));
        let g = got.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (g, failures) = (g.clone(), failures.clone());
                std::thread::spawn(move || serve(conn, &g, &failures, hang));
            }
        });
        Receiver { port, got }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Requests answered with a 2xx.
    pub fn delivered(&self) -> Vec<Received> {
        self.got().into_iter().filter(|r| (200..300).contains(&r.answered)).collect()
    }
}

fn serve(conn: TcpStream, got: &Mutex<Vec<Received>>, failures: &AtomicUsize, hang: bool) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone stream"));
    let mut writer = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let body = String::from_utf8_lossy(&body).into_owned();
        if hang {
            got.lock().unwrap().push(Received { path, headers, body, answered: 0 });
            std::thread::sleep(Duration::from_secs(120));
            return;
        }
        let fail = failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        let status = if fail { 503 } else { 204 };
        got.lock().unwrap().push(Received { path, headers, body, answered: status });
        let reason = if fail { "Service Unavailable" } else { "No Content" };
        let head = format!("HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\n\r\n");
        if writer.write_all(head.as_bytes()).is_err() {
            return;
        }
    }
}

/// Python's `hmac` checks `X-Smsgate-Signature` over `t.body`.
pub fn python_verifies(secret: &str, header: &str, body: &str) -> bool {
    let script = "import hmac, hashlib, sys\n\
        secret, header = sys.argv[1].encode(), sys.argv[2]\n\
        body = sys.stdin.buffer.read()\n\
        parts = dict(p.split('=', 1) for p in header.split(','))\n\
        mac = hmac.new(secret, parts['t'].encode() + b'.' + body, hashlib.sha256).hexdigest()\n\
        sys.exit(0 if hmac.compare_digest(mac, parts['v1']) else 1)\n";
    let mut child = Command::new("python3")
        .args(["-c", script, secret, header])
        .stdin(Stdio::piped())
        .spawn()
        .expect("python3 to check the signature");
    child.stdin.take().expect("stdin").write_all(body.as_bytes()).expect("write body");
    child.wait().expect("python3").success()
}
