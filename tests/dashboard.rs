//! The web dashboard in a real browser: headless Debian Chromium driven by playwright-core
//! (`dashboard/tests/dashboard.test.mjs`) against smsgate + smsc-sim + a PostgreSQL started
//! here. It signs in as a client, sends a test message and sees it reach `delivered`, sees a
//! refusal arrive in the live feed (Server-Sent Events), checks phone width and the dark
//! theme, then signs in as the admin and watches rates and refusals under load.
//! Needs `chromium` (Debian) and `npm`; scripts/test.sh installs both. With
//! `SMSGATE_SCREENSHOTS=DIR` it also saves the screenshots (docs/dashboard.png comes from here).
#![allow(clippy::disallowed_methods)] // a test thread

#[path = "support/postgres.rs"]
mod pg;
mod support;

use pg::PgServer;
use std::path::Path;
use std::process::Command;
use support::*;

const ADMIN_KEY: &str = "admin-key-0123456789abcdef";

#[test]
fn the_dashboard_in_a_browser() {
    let dashboard = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboard");
    if !dashboard.join("node_modules/playwright-core/package.json").exists() {
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dashboard)
            .output()
            .expect("npm is needed for the dashboard test (apt-get install nodejs npm)");
        assert!(out.status.success(), "npm ci failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(Path::new("/usr/bin/chromium").exists(), "Debian's chromium is needed (apt-get install chromium)");

    let pg = PgServer::start();
    let sim = Sim::start(&["--dlr-delay-ms", "300"]);
    let dir = tempfile::tempdir().expect("dir");
    let mut cfg = GatewayConfig::one_link(sim.port);
    cfg.extra_config = format!(
        "[admin]\napi_key = \"{ADMIN_KEY}\"\n\n[history]\npostgres_url = \"{}\"\nspill_dir = \"{}\"\nflush_interval_ms = 100\n",
        pg.url(),
        dir.path().join("spill").display()
    );
    let gw = Gateway::start(dir.path(), &cfg);
    let mut node = Command::new("node");
    node.arg(dashboard.join("tests/dashboard.test.mjs"))
        .env("SMSGATE_URL", format!("http://127.0.0.1:{}", gw.port))
        .env("CLIENT_KEY", API_KEY)
        .env("ADMIN_KEY", ADMIN_KEY);
    if let Ok(shots) = std::env::var("SMSGATE_SCREENSHOTS") {
        node.env("SCREENSHOT_DIR", shots);
    }
    let out = node.output().expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains(" passed, 0 failed"),
        "browser test failed:\n{stdout}\n{}\nsmsgate log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
}
