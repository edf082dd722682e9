//! Command handlers that read the store or decide approvals, and print what they find, for
//! people (tables) or machines (`--json`).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;

use crate::approval::{self, Approval};
use crate::cli::args::{ApprovalsCommand, Cli, RunsCommand, VerifyArgs};
use crate::cli::common::{current_user, engine, exit};
use crate::evidence::{self, verify::Scope, RunFilter, Store};
use crate::playbook;
use crate::runner::RunRequest;

fn open_store(cli: &Cli) -> anyhow::Result<Store> {
    crate::cli::common::open_store(cli)
}

/// `clerk runs list|show`.
pub fn runs(cli: &Cli, command: &RunsCommand) -> anyhow::Result<ExitCode> {
    let store = open_store(cli)?;
    match command {
        RunsCommand::List {
            channel,
            case,
            since,
            status,
            json,
        } => {
            let since = match since {
                Some(s) => Some(evidence::parse_since(s).map_err(|e| exit(2, e.to_string()))?),
                None => None,
            };
            let filter = RunFilter {
                channel: channel.clone(),
                case_ref: case.clone(),
                since,
                status: status.clone(),
            };
            let runs = store.list_runs(&filter)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
            } else {
                print!("{}", evidence::RunTable(&runs));
            }
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::Show { run, json } => match store.run(run)? {
            Some(detail) => {
                if *json {
                    println!("{}", serde_json::to_string_pretty(&detail)?);
                } else {
                    print!("{detail}");
                }
                Ok(ExitCode::SUCCESS)
            }
            None => Err(exit(2, format!("no run {run} (see `clerk runs list`)"))),
        },
    }
}

/// `clerk verify`.
pub async fn verify(cli: &Cli, args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    if !args.proof.is_empty() {
        return crate::cli::tlog::verify_proofs(args);
    }
    if !args.consistency.is_empty() {
        return crate::cli::tlog::verify_consistency(cli, args);
    }
    if let Some(run) = &args.server_match {
        let store = open_store(cli)?;
        let report = evidence::server_match::server_match(&store, run)
            .map_err(|e| exit(2, e.to_string()))?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{report}");
        }
        return Ok(if report.ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    // With a shared journal: this node's copy is caught up, compared line by line with the
    // shared journal, and blobs of other nodes' runs are fetched from their recorded copies.
    let shared = match (&args.bundle, crate::cli::common::config_path(cli).exists()) {
        (None, true) => {
            let config = crate::cli::common::load_config(cli)?;
            if let Some(url) = config.cluster.shared_journal() {
                let journal = crate::db::journal::PgJournal::open(url, &config.cluster.node_name())
                    .map_err(|e| exit(2, format!("the shared journal: {e}")))?;
                // First as it is (a copy that no longer agrees is not opened, only reported),
                // then caught up.
                let first = evidence::compare_copy(&cli.data_dir, &journal)
                    .map_err(|e| exit(1, e.to_string()))?;
                if first.first_difference.is_some() {
                    Some(first)
                } else {
                    let store = crate::cli::common::open_store_with(cli, Some(&config))?;
                    let cmp = store.compare_shared().map_err(|e| exit(1, e.to_string()))?;
                    if let Some(blobs) = evidence::blob::open(config.cluster.evidence_store())
                        .map_err(|e| exit(2, e.to_string()))?
                    {
                        let records =
                            evidence::verify::records_in_scope(&cli.data_dir, &scope_of(args))?;
                        let restored = evidence::blob::restore_missing(
                            store.data_dir(),
                            blobs.as_ref(),
                            &records,
                        )
                        .await
                        .map_err(|e| exit(1, e.to_string()))?;
                        if !restored.is_empty() {
                            eprintln!(
                                "fetched {} blob(s) of other nodes' runs from {}",
                                restored.len(),
                                blobs.describe()
                            );
                        }
                    }
                    cmp
                }
            } else {
                None
            }
        }
        _ => None,
    };
    let report = if let Some(dir) = &args.bundle {
        evidence::verify::verify_bundle(dir)?
    } else {
        let scope = match (&args.run, &args.case) {
            (Some(r), _) => Scope::Run(r.clone()),
            (_, Some(c)) => Scope::Case(c.clone()),
            _ => Scope::All,
        };
        match crate::cli::daemon::Daemon::find(cli).filter(|_| !args.no_index) {
            // The daemon owns the index: it verifies, so the index is checked too.
            Some(d) => {
                d.announce();
                let body = serde_json::json!({ "run": args.run, "case": args.case });
                let v = crate::cli::daemon::daemon_call(&d, move |d| d.post("/api/verify", body))
                    .await?;
                serde_json::from_value(v).context("reading the daemon's verify report")?
            }
            None if args.no_index => evidence::verify::verify_without_index(&cli.data_dir, &scope)?,
            None => evidence::verify::verify(&cli.data_dir, &scope)?,
        }
    };
    // Copies in object storage (`[cluster] evidence`), read back and hashed.
    let copies = match (&args.bundle, crate::cli::common::config_path(cli).exists()) {
        (None, true) => {
            let config = crate::cli::common::load_config(cli)?;
            match evidence::blob::open(config.cluster.evidence_store())
                .map_err(|e| exit(2, e.to_string()))?
            {
                Some(blobs) => {
                    let scope = match (&args.run, &args.case) {
                        (Some(r), _) => Scope::Run(r.clone()),
                        (_, Some(c)) => Scope::Case(c.clone()),
                        _ => Scope::All,
                    };
                    let records = evidence::verify::records_in_scope(&cli.data_dir, &scope)?;
                    Some(
                        evidence::blob::check_copies(blobs.as_ref(), &records, &cli.data_dir)
                            .await
                            .map_err(|e| exit(1, e.to_string()))?,
                    )
                }
                None => None,
            }
        }
        _ => None,
    };
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        if let Some(c) = &copies {
            v["object_storage"] = serde_json::to_value(c)?;
        }
        if let Some(c) = &shared {
            v["shared_journal"] = serde_json::to_value(c)?;
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{report}");
        if let Some(c) = &copies {
            print!("{c}");
        }
        if let Some(c) = &shared {
            match &c.index_difference {
                None => println!(
                    "shared journal's index: {} rows, each what its record says",
                    c.index_rows
                ),
                Some(d) => println!(
                    "shared journal's index (clerk_journal_keys): DIFFERS at seq {}: {} \
                     (queries may hide or misfile records; `clerk reindex` rebuilds it)",
                    d.seq, d.what
                ),
            }
            match &c.first_difference {
                None => println!(
                    "shared journal {}: {} records; this node's copy agrees line by line",
                    c.journal, c.shared_records
                ),
                Some(d) => println!(
                    "shared journal {}: DIFFERS at seq {}: {} ({} records there, {} in this node's copy)",
                    c.journal, d.seq, d.what, c.shared_records, c.local_records
                ),
            }
        }
    }
    Ok(
        if report.ok()
            && copies.as_ref().is_none_or(|c| c.ok())
            && shared.as_ref().is_none_or(|c| c.ok())
        {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        },
    )
}

fn scope_of(args: &VerifyArgs) -> Scope {
    match (&args.run, &args.case) {
        (Some(r), _) => Scope::Run(r.clone()),
        (_, Some(c)) => Scope::Case(c.clone()),
        _ => Scope::All,
    }
}

/// `clerk export`. With `[cluster] evidence`, a blob whose local file is gone or damaged is
/// first restored from its recorded copy in object storage (checked against its hash).
pub async fn export(
    cli: &Cli,
    run: Option<String>,
    case: Option<String>,
    out: &Path,
    wacz: bool,
) -> anyhow::Result<ExitCode> {
    let store = open_store(cli)?;
    let scope = match (run, case) {
        (Some(r), _) => Scope::Run(r),
        (_, Some(c)) => Scope::Case(c),
        _ => return Err(exit(2, "say what to export: --run RUN or --case REF")),
    };
    if crate::cli::common::config_path(cli).exists() {
        let config = crate::cli::common::load_config(cli)?;
        if let Some(blobs) = evidence::blob::open(config.cluster.evidence_store())
            .map_err(|e| exit(2, e.to_string()))?
        {
            let records = evidence::verify::records_in_scope(&cli.data_dir, &scope)?;
            let restored =
                evidence::blob::restore_missing(store.data_dir(), blobs.as_ref(), &records)
                    .await
                    .map_err(|e| exit(1, e.to_string()))?;
            for r in &restored {
                eprintln!("restored {r} from {}", blobs.describe());
            }
        }
    }
    crate::cli::common::attach_log_key(&store, &crate::cli::common::log_settings(cli)?)?;
    let report =
        evidence::export::export_with(&store, &scope, out, Some(&current_user(cli)), wacz)?;
    print!("{report}");
    Ok(ExitCode::SUCCESS)
}

/// `clerk reindex`.
pub fn reindex(cli: &Cli) -> anyhow::Result<ExitCode> {
    let store = open_store(cli)?;
    let report = store.reindex()?;
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}

/// The write a draft held, as a reviewer reads it: method, URL, content type and the
/// decoded body, volatile fields marked.
fn held_write_text(w: &crate::write::Write, volatile: &[String]) -> String {
    use crate::write::Body;
    let mut out = format!(
        "\nthe write the page sends (held during the draft, nothing was sent):\n  {} {}\n  content type {}\n",
        w.method,
        w.url,
        w.content_type.as_deref().unwrap_or("none")
    );
    let mark = |k: &str| {
        if volatile.iter().any(|v| v == k) {
            "  (volatile: not compared)"
        } else {
            ""
        }
    };
    match &w.body {
        Body::None => out.push_str("  no body\n"),
        Body::Json { value } => {
            if let serde_json::Value::Object(map) = value {
                let width = map.keys().map(|k| k.len()).max().unwrap_or(4).max(5);
                out.push_str(&format!("  {:<width$}  {:<7}  VALUE\n", "FIELD", "TYPE"));
                for (k, v) in map {
                    let (text, kind) = crate::write::typed_text(v);
                    out.push_str(&format!("  {k:<width$}  {kind:<7}  {text}{}\n", mark(k)));
                }
            } else {
                out.push_str(&format!("  {}\n", crate::write::typed_text(value).0));
            }
        }
        Body::Form { fields } => {
            let width = fields
                .iter()
                .map(|(k, _)| k.len())
                .max()
                .unwrap_or(4)
                .max(5);
            out.push_str(&format!("  {:<width$}  VALUE\n", "FIELD"));
            for (k, v) in fields {
                out.push_str(&format!("  {k:<width$}  {v}{}\n", mark(k)));
            }
        }
        Body::Multipart { parts } => {
            for p in parts {
                match (&p.value, &p.filename) {
                    (Some(v), _) => out.push_str(&format!("  {}  {v}{}\n", p.name, mark(&p.name))),
                    (None, Some(f)) => out.push_str(&format!(
                        "  {}  file {f} ({}, {} bytes, sha256 {})\n",
                        p.name,
                        p.content_type.as_deref().unwrap_or("?"),
                        p.bytes.unwrap_or(0),
                        p.sha256.as_deref().unwrap_or("?")
                    )),
                    _ => out.push_str(&format!("  {}\n", p.name)),
                }
            }
        }
        Body::Text { text } => out.push_str(&format!("  {text}\n")),
        Body::Opaque {
            sha256,
            bytes,
            complete,
        } => out.push_str(&if *complete {
            format!("  {bytes} bytes, sha256 {sha256}\n")
        } else {
            "  a body the browser did not expose whole (a file from disk)\n".to_owned()
        }),
    }
    out
}

fn render_approval(a: &Approval, store: &Store) -> String {
    let r = &a.request;
    let mut out = format!(
        "approval   {}\nstate      {}\nchannel    {}\nplaybook   {} (sha256 {})\nrun        {}\ncase       {}\nrequester  {}\ncreated    {}\nexpires    {}\ndraft hash {}\n",
        r.approval_id,
        a.state.as_str(),
        r.content.channel,
        r.content.playbook,
        r.content.playbook_sha256,
        r.run_id,
        r.case_ref.clone().unwrap_or_else(|| "-".into()),
        r.requester,
        r.created_at,
        r.expires_at,
        r.draft_hash,
    );
    if !r.content.claims.is_empty() {
        let claims: Vec<String> = r
            .content
            .claims
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        out.push_str(&format!(
            "claims     {} (matched the page)\n",
            claims.join(", ")
        ));
    }
    out.push_str(&format!(
        "will submit {} {}\n",
        r.content.write.method, r.content.write.url
    ));
    if let Some(held) = &r.held {
        out.push_str(&held_write_text(held, &r.volatile));
    }
    if !r.content.values.is_empty() {
        out.push_str("\nform values:\n");
        let width = r
            .content
            .values
            .iter()
            .map(|v| v.name.len())
            .max()
            .unwrap_or(4)
            .max(5);
        out.push_str(&format!("  {:<width$}  VALUE\n", "FIELD"));
        for v in &r.content.values {
            out.push_str(&format!("  {:<width$}  {}\n", v.name, v.value));
        }
    }
    if let Some(sha) = &r.screenshot_sha256 {
        out.push_str(&format!(
            "\nscreenshot {}\n           sha256 {}\n",
            store.screenshot_path(sha).display(),
            sha
        ));
    }
    if let Some(d) = &a.decision {
        out.push_str(&format!(
            "\n{} by {} at {}{}\n",
            d.decision,
            d.reviewer,
            d.decided_at,
            d.note
                .as_ref()
                .map(|n| format!(": {n}"))
                .unwrap_or_default()
        ));
    }
    if let Some(run) = &a.used_by_run {
        out.push_str(&format!("used by run {run}\n"));
    }
    for refusal in &a.refusals {
        out.push_str(&format!("refused: {refusal}\n"));
    }
    out
}

/// `clerk approvals list|show`.
pub fn approvals(cli: &Cli, command: &ApprovalsCommand) -> anyhow::Result<ExitCode> {
    let engine = engine(cli)?;
    match command {
        ApprovalsCommand::List {
            pending,
            channel,
            json,
        } => {
            let list = approval::list(&engine, *pending, channel.as_deref())
                .map_err(|e| exit(1, e.to_string()))?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!(
                    "{:<34} {:<9} {:<10} {:<16} {:<10} CREATED",
                    "APPROVAL", "STATE", "CHANNEL", "PLAYBOOK", "REQUESTER"
                );
                for a in &list {
                    println!(
                        "{:<34} {:<9} {:<10} {:<16} {:<10} {}",
                        a.request.approval_id,
                        a.state.as_str(),
                        a.request.content.channel,
                        a.request.content.playbook,
                        a.request.requester,
                        a.request.created_at
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ApprovalsCommand::Show { id, json } => {
            let a = approval::load(&engine, id).map_err(|e| exit(2, e.to_string()))?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&a)?);
            } else {
                print!(
                    "{}",
                    crate::display::visible(&render_approval(&a, &engine.store))
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Records a refusal of `action` by `user` and returns the exit-3 error saying it.
fn refused(
    engine: &crate::runner::Engine,
    action: &str,
    approval_id: Option<&str>,
    user: &str,
    reason: String,
) -> anyhow::Error {
    if let Err(e) = engine.store.append(crate::evidence::Event::Refused {
        action: action.to_owned(),
        approval_id: approval_id.map(str::to_owned),
        run_id: None,
        user: user.to_owned(),
        reason: reason.clone(),
        at: crate::evidence::timestamp((engine.clock)()),
    }) {
        tracing::error!("cannot record the refusal: {e}");
    }
    exit(3, format!("refused: {reason}"))
}

/// Who is acting, for a decision (`approve`, `reject`, `policy_enable`): with named users,
/// the user of the caller's own API token and their role (a name on the command line —
/// `--as`, the OS user — proves nothing); without, the claimed name and no role.
fn acting_user(
    cli: &Cli,
    engine: &crate::runner::Engine,
    action: &str,
    approval_id: Option<&str>,
) -> anyhow::Result<(String, Option<crate::channel::Role>)> {
    if !crate::users::declared(&cli.data_dir, &engine.config) {
        return Ok((current_user(cli), None));
    }
    let claimed = current_user(cli);
    let Some(token) = crate::cli::common::user_token() else {
        return Err(refused(
            engine,
            action,
            approval_id,
            &claimed,
            format!(
                "this installation has named users, so {action} needs the user's own API token \
                 (CLERK_TOKEN, CLERK_TOKEN_FILE or ~/.config/clerk/token, made with `clerk user token NAME`) \
                 or the console; `{claimed}` was only claimed"
            ),
        ));
    };
    let book = crate::users::TokenBook::new(&cli.data_dir);
    let Some((user, role)) = book.user_of(&engine.config, &token) else {
        return Err(refused(
            engine,
            action,
            approval_id,
            &claimed,
            "unknown or revoked API token".to_owned(),
        ));
    };
    if cli.user.as_deref().is_some_and(|u| u != user) {
        return Err(refused(
            engine,
            action,
            approval_id,
            &user,
            format!(
                "authenticated as `{user}`, the command names `{claimed}`: you can only act as yourself (leave --as out)"
            ),
        ));
    }
    Ok((user, Some(role)))
}

/// `clerk approve|reject`.
pub fn decide(
    cli: &Cli,
    id: &str,
    approve: bool,
    note: Option<String>,
) -> anyhow::Result<ExitCode> {
    let engine = engine(cli)?;
    let action = if approve { "approve" } else { "reject" };
    let (reviewer, role) = acting_user(cli, &engine, action, Some(id))?;
    if let Some(role) = role {
        if !crate::users::may_decide(role) {
            return Err(refused(
                &engine,
                action,
                Some(id),
                &reviewer,
                format!(
                    "`{reviewer}` is {} and may not decide approvals",
                    role.as_str()
                ),
            ));
        }
    }
    match crate::policy::decide(&engine, id, &reviewer, approve, note) {
        Ok(a) => {
            println!(
                "{} {} by {reviewer}",
                a.request.approval_id,
                a.state.as_str()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(exit(3, format!("refused: {e}"))),
    }
}

/// `clerk submit`: an approved draft, executed once.
pub async fn submit(
    cli: &Cli,
    id: &str,
    playbook_path: Option<&Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let engine = engine(cli)?;
    let a = approval::load(&engine, id).map_err(|e| exit(2, e.to_string()))?;
    // The approved playbook is the exact text the draft ran, kept in the store by its hash;
    // a file given with --playbook is run only to be refused (with both hashes) if it is not
    // that text.
    let pb = match playbook_path {
        Some(p) => playbook::load(p, Some(&engine.config)).map_err(|d| exit(2, d.to_string()))?,
        None => engine
            .stored_playbook(&a.request.content.playbook_sha256)
            .map_err(|e| {
                exit(
                    2,
                    format!(
                        "{e}\n(approval {id} is for playbook `{}`; give its file with --playbook: \
                         it must hash to {})",
                        a.request.content.playbook, a.request.content.playbook_sha256
                    ),
                )
            })?,
    };
    let mut inputs = approval::inputs_of(&a);
    for name in pb.secret_inputs() {
        if inputs.get(name).map(String::as_str) == Some(crate::playbook::SECRET) {
            let var = format!("CLERK_SECRET_{}", name.to_ascii_uppercase());
            match std::env::var(&var) {
                Ok(v) => {
                    inputs.insert(name.to_owned(), v);
                }
                Err(_) => {
                    return Err(exit(
                        2,
                        format!(
                            "secret input {name} was given to the draft; give it again in {var}"
                        ),
                    ))
                }
            }
        }
    }
    let report = engine
        .run(RunRequest {
            playbook: Arc::new(pb),
            inputs,
            operator: current_user(cli),
            case_ref: a.request.case_ref.clone(),
            batch_id: None,
            approval: Some(id.to_owned()),
            claims: Default::default(),
            replay_of: None,
            rollback_of: None,
            offline: None,
            sample: false,
        })
        .await?;
    crate::cli::common::print_submit(id, &report, json)
}

/// `clerk replay RUN`: the run again, compared with what was recorded.
pub async fn replay(
    cli: &Cli,
    run: &str,
    playbook_path: Option<&Path>,
    offline: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let engine = engine(cli)?;
    let pb = match playbook_path {
        Some(p) => Some(Arc::new(
            playbook::load(p, Some(&engine.config)).map_err(|d| exit(2, d.to_string()))?,
        )),
        None => None,
    };
    let report = crate::replay::replay(&engine, run, &current_user(cli), pb, offline)
        .await
        .map_err(replay_error)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", crate::replay::render(&report));
    }
    Ok(if report.same {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A replay that could not be made: the store's and the engine's failures as they are,
/// everything else (no such run, not replayable, bad samples) as a usage error (exit 2).
fn replay_error(e: crate::replay::ReplayError) -> anyhow::Error {
    match e {
        crate::replay::ReplayError::Store(_) | crate::replay::ReplayError::Engine(_) => {
            anyhow::Error::new(e)
        }
        other => exit(2, other.to_string()),
    }
}

/// `clerk test PLAYBOOK --samples DIR`: exit 0 when every sample replays the same, 1 when
/// one changed or could not be replayed, 2 when there was nothing to replay.
pub async fn test(
    cli: &Cli,
    playbook_path: &Path,
    samples: &Path,
    junit: Option<&Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let engine = engine(cli)?;
    let pb = crate::cli::common::load_playbook(cli, playbook_path, Some(&engine.config))?;
    let report = crate::replay::test_samples(&engine, pb, samples, &current_user(cli))
        .await
        .map_err(replay_error)?;
    engine.shutdown().await;
    if let Some(path) = junit {
        std::fs::write(path, crate::replay::junit(&report))
            .with_context(|| format!("writing the JUnit report to {}", path.display()))?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", crate::replay::render_test(&report));
    }
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else if report.same + report.changed + report.errors == 0 {
        eprintln!(
            "no recorded read-only run of this playbook in {}",
            samples.display()
        );
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    })
}

/// `clerk rollback RUN`: the compensating action of a sent write, drafted here (or queued
/// through a running daemon).
pub async fn rollback(
    cli: &Cli,
    run: &str,
    extra: &std::collections::BTreeMap<String, String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if let Some(d) = crate::cli::daemon::Daemon::find(cli) {
        return crate::cli::daemon::rollback_via(cli, &d, run, extra, json).await;
    }
    let engine = engine(cli)?;
    let user = current_user(cli);
    let plan = {
        let (engine, run, extra) = (engine.clone(), run.to_owned(), extra.clone());
        tokio::task::spawn_blocking(move || crate::rollback::plan(&engine, &run, &user, &extra))
            .await?
            .map_err(|e| match e {
                crate::rollback::RollbackError::Store(_) => anyhow::Error::new(e),
                other => exit(2, other.to_string()),
            })?
    };
    let report = engine.run(plan.request).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        match (&report.approval_id, report.status) {
            (Some(id), crate::runner::RunStatus::Drafted) => println!(
                "rollback of {run} drafted ({}, run {}): approval {id} waits for a reviewer (clerk approvals show {id}); once approved, clerk submit {id} sends it",
                plan.playbook.name,
                report.run_id.as_deref().unwrap_or("-")
            ),
            _ => println!(
                "rollback of {run} ({}) ended {}: {}",
                plan.playbook.name,
                report.status.as_str(),
                report.error.as_deref().unwrap_or("")
            ),
        }
    }
    Ok(ExitCode::from(crate::cli::common::status_code(
        report.status,
    )))
}

/// `clerk policy list|enable`.
pub fn policy(cli: &Cli, command: &crate::cli::args::PolicyCommand) -> anyhow::Result<ExitCode> {
    use crate::cli::args::PolicyCommand;
    let engine = engine(cli)?;
    match command {
        PolicyCommand::List { channel, json } => {
            let mut all = Vec::new();
            for c in &engine.config.channels {
                if channel.as_ref().is_some_and(|want| *want != c.id) {
                    continue;
                }
                all.extend(crate::policy::states(&engine, c)?);
            }
            if *json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else if all.is_empty() {
                println!("no auto-approval policies");
            }
            if !*json {
                for s in &all {
                    println!(
                        "{} {} ({}): {}; {}; {} approved automatically",
                        s.channel,
                        s.name,
                        s.policy_id,
                        match &s.suspended {
                            Some((by, why, at)) => format!("SUSPENDED since {at} by {by} ({why})"),
                            None => "active".into(),
                        },
                        if s.earned {
                            format!("earned: {}", s.figures.describe())
                        } else {
                            format!("not earned yet: {}", s.figures.describe())
                        },
                        s.auto_approved
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Enable { name, channel } => {
            let c = engine
                .config
                .channel(channel)
                .map_err(|e| exit(2, e.to_string()))?
                .clone();
            let (user, role) = acting_user(cli, &engine, "policy_enable", None)?;
            let admin = role == Some(crate::channel::Role::Admin);
            match crate::policy::enable(&engine, &c, name, &user, admin) {
                Ok(id) => {
                    println!("{id} enabled");
                    Ok(ExitCode::SUCCESS)
                }
                Err(crate::policy::PolicyError::Store(e)) => Err(anyhow::Error::new(e)),
                Err(e @ crate::policy::PolicyError::Unknown { .. }) => Err(exit(2, e.to_string())),
                Err(e) => Err(exit(3, format!("refused: {e}"))),
            }
        }
    }
}
