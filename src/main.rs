//! The smsgate binary: `smsgate [--config FILE] [--check]`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: smsgate [--config FILE] [--check]\n\
  --config FILE  node configuration (default config/smsgate.toml)\n\
  --check        validate the configuration and the rules file, then exit";

fn main() -> ExitCode {
    let mut config = PathBuf::from("config/smsgate.toml");
    let mut check = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" => match args.next() {
                Some(p) => config = PathBuf::from(p),
                None => return usage("--config needs a file"),
            },
            "--check" => check = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => return usage(&format!("unknown argument `{other}`")),
        }
    }
    let loaded = match smsgate::config::load(&config) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("smsgate: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if check {
        println!("{}: ok; {}: ok", loaded.config_file.display(), loaded.rules_file.display());
        return ExitCode::SUCCESS;
    }
    if let Err(e) = smsgate::observe::init_logging(&loaded.config.log) {
        eprintln!("smsgate: {e}");
        return ExitCode::from(2);
    }
    let trigger = shards::ShutdownTrigger::new();
    let hangups = Arc::new(AtomicU64::new(0));
    let on_hangup = {
        let hangups = hangups.clone();
        move || {
            hangups.fetch_add(1, Ordering::SeqCst);
        }
    };
    if let Err(e) = shards::shutdown::on_signals(trigger.clone(), on_hangup) {
        tracing::error!(error = %e, "cannot install signal handlers");
        return ExitCode::FAILURE;
    }
    match smsgate::app::run(loaded, trigger, hangups) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "smsgate failed");
            ExitCode::FAILURE
        }
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("smsgate: {problem}\n{USAGE}");
    ExitCode::from(2)
}
