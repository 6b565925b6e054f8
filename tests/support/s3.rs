//! A real S3-compatible server for the tests: moto's server (PyPI `moto[server]`, not written
//! here) on a free loopback port, with signature checking on (`INITIAL_NO_AUTH_ACTION_COUNT`):
//! after the three IAM calls that create the test's user, every request must carry a valid AWS
//! Signature V4 of that user's key, so smsgate's signing is checked by another implementation.
//! Objects are written with boto3. The venv is made under target/tmp on first use
//! (scripts/test.sh makes it up front).

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Creates the IAM user smsgate signs as; prints its key id and secret.
const SETUP: &str = r#"
import sys, json, boto3
iam = boto3.client("iam", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
iam.create_user(UserName="smsgate")
key = iam.create_access_key(UserName="smsgate")["AccessKey"]
policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
iam.put_user_policy(UserName="smsgate", PolicyName="s3", PolicyDocument=json.dumps(policy))
print(key["AccessKeyId"], key["SecretAccessKey"])
"#;

/// Writes stdin to bucket/key (creating the bucket); prints the ETag.
const PUT: &str = r#"
import sys, boto3
endpoint, key_id, secret, bucket, key = sys.argv[1:6]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id=key_id, aws_secret_access_key=secret)
try:
    s3.create_bucket(Bucket=bucket)
except s3.exceptions.BucketAlreadyOwnedByYou:
    pass
s3.put_object(Bucket=bucket, Key=key, Body=sys.stdin.buffer.read())
print(s3.head_object(Bucket=bucket, Key=key)["ETag"])
"#;

pub struct S3Server {
    pub port: u16,
    pub access_key_id: String,
    pub secret_access_key: String,
    python: PathBuf,
    child: Option<Child>,
}

/// The venv with moto's server and boto3, made once even when several tests of one binary
/// start a server at the same moment.
fn venv() -> PathBuf {
    static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = MAKING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("s3-venv");
    let ready = || venv.join("bin/moto_server").exists();
    if !ready() {
        let made = Command::new("python3").args(["-m", "venv"]).arg(&venv).status().expect("python3 -m venv");
        assert!(made.success(), "python3 -m venv {} failed", venv.display());
        let pip = Command::new(venv.join("bin/pip")).args(["install", "-q", "moto[server]"]).status().expect("pip");
        assert!(pip.success() && ready(), "pip install moto[server] failed");
    }
    venv
}

impl S3Server {
    pub fn start() -> S3Server {
        let venv = venv();
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let child = Command::new(venv.join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "3")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            // A test thread: waiting for the server's port is fine here.
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(Duration::from_millis(50));
        }
        let python = venv.join("bin/python");
        let endpoint = format!("http://127.0.0.1:{port}");
        let out = Command::new(&python).args(["-c", SETUP, &endpoint]).output().expect("run boto3");
        assert!(out.status.success(), "IAM set-up failed: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut words = text.split_whitespace();
        let (id, secret) = (words.next().expect("key id"), words.next().expect("secret"));
        S3Server {
            port,
            access_key_id: id.to_owned(),
            secret_access_key: secret.to_owned(),
            python,
            child: Some(child),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Writes `body` to `bucket/key` with boto3; returns the new ETag.
    pub fn put(&self, bucket: &str, key: &str, body: &str) -> String {
        let mut child = Command::new(&self.python)
            .args(["-c", PUT, &self.endpoint(), &self.access_key_id, &self.secret_access_key, bucket, key])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run boto3");
        child.stdin.take().expect("stdin").write_all(body.as_bytes()).expect("write body");
        let out = child.wait_with_output().expect("boto3 put");
        assert!(out.status.success(), "put_object failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Kills the server: an outage.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
