//! `clerk user add NAME [--role R]` sets a console user's password (and role);
//! `clerk user token NAME [--revoke]` makes (or revokes) their API tokens. Front-end code only: the hash,
//! the file and the rules are in [`crate::users`].

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::process::ExitCode;

use super::args::{Cli, UserCommand};
use super::common::{exit, load_config};

/// Runs `clerk user ...`.
pub fn run(cli: &Cli, command: &UserCommand) -> anyhow::Result<ExitCode> {
    match command {
        UserCommand::Logout { name } => {
            crate::users::end_sessions(&cli.data_dir, name)
                .map_err(|e| exit(e.exit_code(), e.to_string()))?;
            println!("every console session of {name} is ended");
            Ok(ExitCode::SUCCESS)
        }
        UserCommand::Token { name, revoke } => {
            let config = load_config(cli)?;
            let fail = |e: crate::users::UserError| exit(e.exit_code(), e.to_string());
            if *revoke {
                let n = crate::users::revoke_tokens(&cli.data_dir, name).map_err(fail)?;
                println!("revoked {n} token(s) of {name}; their console sessions are ended");
                return Ok(ExitCode::SUCCESS);
            }
            let now = crate::evidence::timestamp(chrono::Utc::now());
            let token =
                crate::users::create_token(&cli.data_dir, &config, name, &now).map_err(fail)?;
            eprintln!(
                "API token for {name} (shown once; keep it in ~/.config/clerk/token, mode 0600, or CLERK_TOKEN):"
            );
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        UserCommand::Add { name, role } => {
            let config = load_config(cli)?;
            let role = match role.as_deref() {
                Some(r) => Some(
                    serde_json::from_value::<crate::users::Role>(serde_json::json!(r))
                        .map_err(|e| exit(2, format!("--role {r}: {e}")))?,
                ),
                None => None,
            };
            if role.is_none() && crate::users::role_of(&cli.data_dir, &config, name).is_none() {
                let e = crate::users::UserError::NotInConfig(name.clone());
                return Err(exit(e.exit_code(), e.to_string()));
            }
            let password = if std::io::stdin().is_terminal() {
                let first = prompt(&format!("Password for {name}: "))?;
                let again = prompt("Again: ")?;
                if first != again {
                    return Err(exit(2, "the passwords differ"));
                }
                first
            } else {
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line)?;
                line.trim_end_matches(['\r', '\n']).to_owned()
            };
            let role = crate::users::add_user(&cli.data_dir, &config, name, &password, role)
                .map_err(|e| exit(e.exit_code(), e.to_string()))?;
            println!(
                "password of {name} ({role}) stored in {}",
                crate::users::passwords_path(&cli.data_dir).display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Reads a line from the terminal with echo off (restored afterwards, also on error).
fn prompt(text: &str) -> anyhow::Result<String> {
    eprint!("{text}");
    std::io::stderr().flush()?;
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is plain data; tcgetattr fills it or fails, and we only set it back.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    let have = unsafe { libc::tcgetattr(fd, &mut saved) } == 0;
    if have {
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        quiet.c_lflag |= libc::ECHONL;
        // SAFETY: a valid termios copied from tcgetattr.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    }
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if have {
        // SAFETY: restores the settings read above.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    }
    read?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}
