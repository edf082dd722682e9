//! `clerk db`: the cluster database's schema.

use super::args::{Cli, DbCommand};
use super::common::{exit, load_config};

pub fn run(cli: &Cli, command: &DbCommand) -> anyhow::Result<()> {
    // The driver blocks: never on a thread of the CLI's runtime.
    crate::db::off_runtime(|| run_blocking(cli, command))
}

fn run_blocking(cli: &Cli, command: &DbCommand) -> anyhow::Result<()> {
    let config = load_config(cli)?;
    let Some(url) = config.cluster.database() else {
        return Err(exit(
            2,
            format!(
                "{} has no [cluster] database: this installation keeps its queue and journal \
                 in the data directory (add [cluster] database = \"postgres://…\" to run \
                 several nodes)",
                config.path.display()
            ),
        ));
    };
    let target = crate::db::target(url);
    match command {
        DbCommand::Migrate => {
            let m = crate::db::migrate(url).map_err(|e| exit(1, e.to_string()))?;
            if m.applied.is_empty() {
                println!("{target}: schema at version {}, nothing to do", m.to);
            } else {
                println!(
                    "{target}: schema migrated from version {} to {} ({})",
                    m.from,
                    m.to,
                    m.applied.join(", ")
                );
            }
            Ok(())
        }
        DbCommand::Status => {
            let mut client = crate::db::connect(url).map_err(|e| exit(1, e.to_string()))?;
            let have =
                crate::db::current_version(&mut client).map_err(|e| exit(1, e.to_string()))?;
            let need = crate::db::schema_version();
            println!("{target}: schema version {have}, this clerk needs {need}");
            if have != need {
                let what = crate::db::check_schema(&mut client)
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                return Err(exit(1, what));
            }
            if config.cluster.shared_journal().is_some() {
                let summary =
                    crate::db::journal::summary(&mut client).map_err(|e| exit(1, e.to_string()))?;
                println!("{summary}");
            }
            Ok(())
        }
    }
}
