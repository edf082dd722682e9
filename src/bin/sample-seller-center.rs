//! `sample-seller-center`: runs clerk's sample seller center on 127.0.0.1 until Ctrl-C or
//! SIGTERM, for the demo and for trying playbooks by hand.
//!
//! Prints exactly one line, `sample seller center listening on http://127.0.0.1:PORT/`, to
//! stdout once it accepts connections, so scripts can wait for it and read the port.

use std::io::Write;

use clap::Parser;

use clerk::sample::{SampleCenter, SampleOptions};

/// Serve the sample seller center (users ops/ops-pass, alice/alice-pass, carol/carol-pass).
#[derive(Debug, Parser)]
#[command(name = "sample-seller-center", version)]
struct Args {
    /// Port on 127.0.0.1; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// HMAC key for session cookies and CSRF tokens (default: a fixed built-in key, so
    /// sessions survive restarts).
    #[arg(long, env = "SAMPLE_SELLER_CENTER_SECRET", hide_env_values = true)]
    secret: Option<String>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let center = match SampleCenter::start(SampleOptions {
        port: args.port,
        secret: args.secret,
    })
    .await
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "sample-seller-center: cannot listen on 127.0.0.1:{}: {e}",
                args.port
            );
            return std::process::ExitCode::from(1);
        }
    };
    let mut stdout = std::io::stdout();
    // If stdout is closed there is nobody to tell; keep serving anyway.
    let _ = writeln!(
        stdout,
        "sample seller center listening on {}",
        center.base_url()
    );
    let _ = stdout.flush();

    wait_for_stop_signal().await;
    center.shutdown().await;
    std::process::ExitCode::SUCCESS
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                eprintln!("sample-seller-center: cannot watch SIGTERM ({e}); stop with Ctrl-C");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
