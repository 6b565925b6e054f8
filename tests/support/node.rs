//! An SMSC not written here: node-smpp's server (`tests/interop/smsc.js`) on a free loopback
//! port. Needs `node` and `npm`; installs `tests/interop/node_modules` with `npm ci` (from
//! the lock file) the first time.
#![allow(dead_code)] // each test file uses a different part of this module

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// Runs `npm ci` once per test binary when node-smpp is not installed yet.
fn ensure_node_modules() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let dir = interop_dir();
        if dir.join("node_modules/smpp/package.json").exists() {
            return;
        }
        let out =
            Command::new("npm").args(["ci", "--no-audit", "--no-fund", "--prefix"]).arg(&dir).output().unwrap_or_else(
                |err| panic!("npm is needed for the interop tests (apt-get install nodejs npm): {err}"),
            );
        assert!(
            out.status.success(),
            "npm ci --prefix {} failed:\n{}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// A running `smsc.js`. Its JSON event lines are collected as they come.
pub struct NodeSmsc {
    pub port: u16,
    child: Child,
    /// Kept open: the script exits when its stdin ends, so it never outlives the test. MO
    /// requests go this way ([`NodeSmsc::send_mo`]).
    stdin: ChildStdin,
    events: Arc<Mutex<Vec<Value>>>,
}

impl NodeSmsc {
    /// Starts the SMSC; receipts follow each accepted submit_sm after `dlr_delay_ms`.
    pub fn start(dlr_delay_ms: u64) -> NodeSmsc {
        ensure_node_modules();
        let mut child = Command::new("node")
            .arg(interop_dir().join("smsc.js"))
            .args(["0", &dlr_delay_ms.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|err| panic!("node is needed for the interop tests (apt-get install nodejs npm): {err}"));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let events = Arc::new(Mutex::new(Vec::new()));
        let (banner_tx, banner) = mpsc::channel();
        let sink = events.clone();
        std::thread::spawn(move || {
            let mut banner_tx = Some(banner_tx);
            for line in stdout.lines().map_while(Result::ok) {
                if let Some(tx) = banner_tx.take() {
                    tx.send(line).ok();
                    continue;
                }
                match serde_json::from_str::<Value>(&line) {
                    Ok(event) => sink.lock().expect("events lock").push(event),
                    Err(_) => eprintln!("smsc.js: {line}"),
                }
            }
        });
        let line = banner.recv_timeout(Duration::from_secs(20)).expect("smsc.js prints `listening PORT`");
        let port = line
            .strip_prefix("listening ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected smsc.js banner {line:?}"));
        NodeSmsc { port, child, stdin, events }
    }

    /// Has node-smpp send a deliver_sm with these fields (an MO) on its first receiving
    /// session; its answer comes as a `mo_resp` event with this `id`.
    pub fn send_mo(&mut self, id: &str, fields: Value) {
        use std::io::Write;
        let line = serde_json::json!({"id": id, "mo": fields}).to_string();
        writeln!(self.stdin, "{line}").and_then(|()| self.stdin.flush()).expect("write to smsc.js");
    }

    /// Every event so far with `"event": kind`.
    pub fn events(&self, kind: &str) -> Vec<Value> {
        self.events.lock().expect("events lock").iter().filter(|e| e["event"] == kind).cloned().collect()
    }

    /// The submit_sm the SMSC received for `destination_addr`, in arrival order.
    pub fn submits_to(&self, destination_addr: &str) -> Vec<Value> {
        self.events("submit_sm").into_iter().filter(|e| e["destination_addr"] == destination_addr).collect()
    }

    /// Polls until `check` holds on the events, or panics after `secs` with `what`.
    pub fn wait_for(&self, secs: u64, what: &str, check: impl Fn(&NodeSmsc) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !check(self) {
            assert!(Instant::now() < deadline, "timed out after {secs} s waiting for: {what}");
            #[allow(clippy::disallowed_methods)] // a test thread, not a shard
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NodeSmsc {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}
