//! The `clerk` binary: parse the command line, set up logging, run, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// A reader that stopped reading (`clerk queue list | head -1`) ends clerk quietly, as it
/// ends `cat` or ripgrep: `println!` panics on a closed stdout, and this hook turns exactly
/// that panic into a silent exit 0. Every other panic is reported as usual.
fn exit_quietly_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        // "failed printing to stdout: Broken pipe (os error 32)" (EPIPE is 32 on Linux).
        if message.starts_with("failed printing to stdout") && message.contains("(os error 32)") {
            std::process::exit(0);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    exit_quietly_on_closed_stdout();
    let cli = clerk::cli::Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_env("CLERK_LOG").unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{level},chromiumoxide=off,sled=warn,tungstenite=warn"
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    if let clerk::cli::Command::Serve { port } = cli.command {
        let code = runtime.block_on(serve(&cli, port));
        clerk::browser::kill_all();
        runtime.shutdown_timeout(std::time::Duration::from_secs(2));
        return code;
    }
    let code = runtime.block_on(async {
        tokio::select! {
            result = clerk::cli::run(cli) => match result {
                Ok(code) => code,
                Err(err) => {
                    let code = err
                        .downcast_ref::<clerk::cli::Exit>()
                        .map(|e| e.code)
                        .unwrap_or(1);
                    eprintln!("error: {err:#}");
                    ExitCode::from(code)
                }
            },
            _ = tokio::signal::ctrl_c() => {
                eprintln!("interrupted: stopping browsers; runs in flight will be marked interrupted at the next start");
                ExitCode::from(130)
            }
        }
    });
    // Whatever path got us here, no Chromium outlives clerk.
    clerk::browser::kill_all();
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    code
}

/// `clerk serve`: the daemon, in the foreground, until SIGTERM or Ctrl-C.
async fn serve(cli: &clerk::cli::Cli, port: Option<u16>) -> ExitCode {
    let engine = match clerk::cli::engine(cli) {
        Ok(e) => e,
        Err(err) => {
            eprintln!("error: {err:#}");
            return ExitCode::from(
                err.downcast_ref::<clerk::cli::Exit>()
                    .map(|e| e.code)
                    .unwrap_or(1),
            );
        }
    };
    let opts = clerk::serve::ServeOptions::from_config(&engine.config, port);
    let pool = clerk::browser::PoolConfig {
        browsers: engine.config.serve.browsers.max(1),
        ..clerk::browser::PoolConfig::default()
    };
    match clerk::serve::serve(engine.with_pool(pool), opts).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
