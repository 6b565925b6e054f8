//! A real Aerospike server (`asd`) started and stopped by the test, on free loopback ports,
//! with a file-backed namespace `smsgate` in a temporary directory (an in-memory namespace
//! would lose everything when stopped). No registry here packages Aerospike: the test runs
//! when `SMSGATE_TEST_ASD` names an `asd` binary (built from the Community Edition sources,
//! see README), and otherwise says visibly that it was skipped.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct AerospikeServer {
    pub port: u16,
    asd: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl AerospikeServer {
    /// Starts `asd` from `SMSGATE_TEST_ASD`; `None` (after a SKIPPED line on stderr, past the
    /// harness's capture) when it is not set.
    pub fn from_env(test: &str) -> Option<AerospikeServer> {
        let Ok(asd) = std::env::var("SMSGATE_TEST_ASD") else {
            writeln!(
                std::io::stderr(),
                "SKIPPED {test}: SMSGATE_TEST_ASD is not set (path of an Aerospike `asd` binary; \
                 see README, \"State store conformance\")"
            )
            .ok();
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let port = crate::support::free_port();
        let (fabric, heartbeat) = (crate::support::free_port(), crate::support::free_port());
        let d = dir.path().display();
        for sub in ["work/usr/udf/lua", "work/smd"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("work dir");
        }
        let conf = format!(
            "service {{\n  run-as-daemon false\n  proto-fd-max 1024\n  work-directory {d}/work\n  cluster-name smsgate-test\n}}\n\
             mod-lua {{\n  user-path {d}/work/usr/udf/lua\n}}\n\
             logging {{\n  console {{\n    context any info\n  }}\n}}\n\
             network {{\n  service {{\n    address 127.0.0.1\n    port {port}\n  }}\n  \
             heartbeat {{\n    mode mesh\n    address 127.0.0.1\n    port {heartbeat}\n    interval 150\n    timeout 10\n  }}\n  \
             fabric {{\n    address 127.0.0.1\n    port {fabric}\n  }}\n}}\n\
             namespace smsgate {{\n  replication-factor 1\n  nsup-period 1\n  \
             storage-engine device {{\n    file {d}/smsgate.dat\n    filesize 512M\n  }}\n}}\n"
        );
        std::fs::write(dir.path().join("asd.conf"), conf).expect("write asd.conf");
        let mut s = AerospikeServer { port, asd: PathBuf::from(asd), dir, child: None };
        s.start();
        Some(s)
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the server (again, on the same ports and data file) and waits until it serves.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::File::create(self.log_path()).expect("asd log");
        let child = Command::new(&self.asd)
            .args(["--foreground", "--config-file"])
            .arg(self.dir.path().join("asd.conf"))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start asd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.log().contains("service ready") {
            let exited = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            assert!(exited.is_none(), "asd exited: {exited:?}\n{}", self.log());
            assert!(Instant::now() < deadline, "asd did not become ready:\n{}", self.log());
            // A test thread, not a shard: waiting for the server here is fine.
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server abruptly (SIGKILL: no goodbye to the clients, like a crashed node).
    /// The file-backed namespace keeps what the server had flushed.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server the way an operator does (SIGTERM: it flushes its write buffers).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            crate::support::signal(&c, "TERM");
            let _ = c.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open and nothing answers, like a node
    /// stuck on its disk. [`AerospikeServer::resume`] thaws it.
    pub fn freeze(&self) {
        crate::support::signal(self.child.as_ref().expect("running"), "STOP");
    }

    pub fn resume(&self) {
        crate::support::signal(self.child.as_ref().expect("running"), "CONT");
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("asd.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for AerospikeServer {
    fn drop(&mut self) {
        self.kill();
    }
}
