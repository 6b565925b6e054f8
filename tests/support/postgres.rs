//! A real PostgreSQL server started by the test (never the system one on 5432): `initdb` into
//! a temporary directory, then `pg_ctl start` on a free loopback port with its unix socket in
//! that directory. PostgreSQL refuses to run as root, so as root the server runs as the OS
//! user `postgres` (Debian's package creates it) through `runuser`. It can be stopped
//! abruptly and started again on the same port (outage tests).
#![allow(dead_code)] // each test file uses a different part of this module
#![allow(clippy::disallowed_methods)] // a test thread, not a shard: waiting for the server is fine

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub struct PgServer {
    pub port: u16,
    dir: tempfile::TempDir,
    running: bool,
}

/// Debian's PostgreSQL binaries (the highest installed version).
fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries under /usr/lib/postgresql (apt-get install postgresql)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("pg_ctl").exists())
        .collect();
    versions.sort();
    versions.pop().expect("pg_ctl under /usr/lib/postgresql/*/bin")
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

/// Runs a PostgreSQL binary, as `postgres` when we are root.
fn pg_command(bin: &str, args: &[&str]) -> Command {
    let path = bin_dir().join(bin);
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path).args(args);
        c
    } else {
        let mut c = Command::new(path);
        c.args(args);
        c
    }
}

impl PgServer {
    pub fn start() -> PgServer {
        let port = TcpListener::bind("127.0.0.1:0").expect("bind port 0").local_addr().expect("addr").port();
        let dir = tempfile::Builder::new().prefix("smsgate-pg").tempdir().expect("temp dir");
        if is_root() {
            let ok = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status().expect("chown");
            assert!(ok.success(), "chown the PostgreSQL directory to postgres");
        }
        let data = dir.path().join("data");
        let out = pg_command(
            "initdb",
            &["-D", data.to_str().expect("utf-8"), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
        )
        .output()
        .expect("run initdb");
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let mut s = PgServer { port, dir, running: false };
        s.restart();
        s
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// libpq connection string for smsgate and for the test's own client.
    pub fn url(&self) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname=postgres", self.port)
    }

    /// A connection for the test's own checks; a statement blocked for 20 s fails the test
    /// instead of hanging it.
    pub fn client(&self) -> postgres::Client {
        let url = format!("{} options='-c statement_timeout=20000'", self.url());
        postgres::Client::connect(&url, postgres::NoTls).expect("connect to the test PostgreSQL")
    }

    /// Starts the server (again) on the same port and waits until it accepts connections.
    pub fn restart(&mut self) {
        assert!(!self.running, "already running");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=40",
            self.port,
            self.socket_dir().display()
        );
        let log = self.dir.path().join("server.log");
        let out = pg_command(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().expect("utf-8"),
                "-o",
                &opts,
                "-l",
                log.to_str().expect("utf-8"),
                "-w",
                "start",
            ],
        )
        .output()
        .expect("run pg_ctl start");
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        self.running = true;
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "PostgreSQL did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server at once (an outage: open connections are cut).
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        let _ = pg_command("pg_ctl", &["-D", self.data().to_str().expect("utf-8"), "-m", "immediate", "-w", "stop"])
            .output();
        self.running = false;
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}
