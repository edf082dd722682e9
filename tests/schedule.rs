//! `clerk schedule` from the command line, on the real binary: add, list, show, pause,
//! resume, remove; the JSON it prints; the records it leaves (and that `clerk verify` accepts
//! them); exit code 2 naming the problem for every invalid request, 3 for a non-operator.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::common;

struct Data {
    dir: tempfile::TempDir,
}

impl Data {
    fn new() -> Data {
        let dir = tempfile::tempdir().unwrap();
        // Inputs from the test's own servers on this host are allowed explicitly.
        std::fs::write(
            dir.path().join("clerk.toml"),
            format!(
                "{}\n[serve]\ninputs_url_allow = [\"http://127.0.0.1:\"]\n",
                clerk::sample::demo_config(8931, "ops")
            ),
        )
        .unwrap();
        Data { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn clerk_as(&self, user: &str, args: &[&str]) -> Output {
        std::process::Command::new(common::clerk_bin())
            .arg("--data-dir")
            .arg(self.path())
            .args(["--as", user])
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.clerk_as("ops", args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    /// Runs `args`, expects exit code `code` and `needle` in stderr.
    fn fails(&self, code: i32, args: &[&str], needle: &str) {
        let out = self.clerk_as("ops", args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{args:?}: expected {needle:?} in {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }

    fn journal_types(&self) -> Vec<String> {
        std::fs::read_to_string(self.path().join("journal.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                v["event"]["type"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    fn count(&self, kind: &str) -> usize {
        self.journal_types().iter().filter(|t| *t == kind).count()
    }
}

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("playbooks")
        .join(format!("{name}.yaml"))
}

#[test]
fn schedule_add_list_show_pause_resume_remove_from_the_command_line() {
    let data = Data::new();
    let rows = data.path().join("open-refunds.csv");
    std::fs::write(&rows, "order_id\nSO-100001\nSO-100002\n").unwrap();
    let logistics = shipped("logistics-screenshot");

    let out = data.ok(&[
        "schedule",
        "add",
        "morning-logistics",
        "--playbook",
        logistics.to_str().unwrap(),
        "--cron",
        "0 8 * * *",
        "--tz",
        "Asia/Shanghai",
        "--inputs",
        rows.to_str().unwrap(),
        "--case-from",
        "order_id",
        "--jobs",
        "2",
    ]);
    assert!(out.contains("schedule morning-logistics added"), "{out}");
    assert!(out.contains("T08:00:00+08:00"), "{out}");
    // By name (an embedded playbook), every 30 minutes, rows from a URL.
    data.ok(&[
        "schedule",
        "add",
        "carrier-wait",
        "--playbook",
        "order-lookup",
        "--every",
        "30m",
        "--inputs-from-url",
        "http://127.0.0.1:9/waiting-for-carrier.jsonl",
    ]);

    let list = data.json(&["schedule", "list", "--json"]);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let (carrier, morning) = (&list[0], &list[1]);
    assert_eq!(carrier["name"], "carrier-wait");
    assert_eq!(morning["name"], "morning-logistics");
    assert_eq!(morning["playbook"], logistics.to_str().unwrap());
    assert_eq!(morning["playbook_name"], "logistics-screenshot");
    assert_eq!(morning["channel"], "sample");
    assert_eq!(morning["mode"], "read_only");
    assert_eq!(morning["playbook_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(
        morning["trigger"],
        serde_json::json!({"kind": "cron", "expr": "0 8 * * *"})
    );
    assert_eq!(morning["tz"], "Asia/Shanghai");
    assert_eq!(morning["inputs"]["kind"], "file");
    let stored = morning["inputs"]["path"].as_str().unwrap();
    assert_eq!(
        Path::new(stored),
        std::fs::canonicalize(&rows).unwrap(),
        "inputs are kept as an absolute path"
    );
    assert_eq!(morning["case_from"], "order_id");
    assert_eq!(morning["jobs"], 2);
    assert_eq!(morning["paused"], false);
    assert_eq!(morning["created_by"], "ops");
    assert!(morning["last_fired"].is_null());
    let next_local = morning["next_firing_local"].as_str().unwrap();
    assert!(next_local.ends_with("T08:00:00+08:00"), "{next_local}");
    let next_utc = morning["next_firing"].as_str().unwrap();
    assert!(next_utc.ends_with("T00:00:00.000Z"), "{next_utc}");

    assert_eq!(carrier["playbook"], "order-lookup");
    assert!(carrier["playbook_file"].is_null());
    assert_eq!(
        carrier["trigger"],
        serde_json::json!({"kind": "every", "every": "30m", "seconds": 1800})
    );
    assert!(carrier["tz"].is_null());
    assert_eq!(
        carrier["inputs"],
        serde_json::json!({"kind": "url", "url": "http://127.0.0.1:9/waiting-for-carrier.jsonl"})
    );
    let next = carrier["next_firing"].as_str().unwrap();
    assert!(
        next.contains(":00:00.000Z") || next.contains(":30:00.000Z"),
        "{next}"
    );

    let table = data.ok(&["schedule", "list"]);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.contains("morning-logistics"), "{table}");
    assert!(table.contains("cron 0 8 * * *"), "{table}");
    assert!(table.contains("every 30m"), "{table}");
    assert!(table.contains("Asia/Shanghai"), "{table}");

    let show = data.json(&["schedule", "show", "morning-logistics", "--json"]);
    assert_eq!(&show, morning);
    let text = data.ok(&["schedule", "show", "morning-logistics"]);
    assert!(
        text.contains("trigger    cron 0 8 * * * (Asia/Shanghai)"),
        "{text}"
    );
    assert!(text.contains("state      active"), "{text}");

    // Pause (as alice), pause again, resume, resume again.
    let out = data.clerk_as(
        "alice",
        &[
            "schedule",
            "pause",
            "morning-logistics",
            "--reason",
            "carrier portal down",
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    let show = data.json(&["schedule", "show", "morning-logistics", "--json"]);
    assert_eq!(show["paused"], true);
    assert_eq!(show["pause"]["by"], "alice");
    assert_eq!(show["pause"]["reason"], "carrier portal down");
    assert!(show["next_firing"].is_null());
    let table = data.ok(&["schedule", "list"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("morning-logistics") && l.contains(" yes ")),
        "{table}"
    );
    data.fails(
        2,
        &[
            "schedule",
            "pause",
            "morning-logistics",
            "--reason",
            "again",
        ],
        "already paused (by alice",
    );
    let out = data.ok(&["schedule", "resume", "morning-logistics"]);
    assert!(out.contains("resumed; next firing"), "{out}");
    assert_eq!(
        data.json(&["schedule", "show", "morning-logistics", "--json"])["paused"],
        false
    );
    data.fails(
        2,
        &["schedule", "resume", "morning-logistics"],
        "schedule `morning-logistics` is not paused",
    );

    // Remove, then add the name again.
    data.ok(&["schedule", "remove", "carrier-wait"]);
    assert_eq!(
        data.json(&["schedule", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    data.fails(
        2,
        &["schedule", "show", "carrier-wait"],
        "no schedule named `carrier-wait`",
    );
    data.ok(&[
        "schedule",
        "add",
        "carrier-wait",
        "--playbook",
        "order-lookup",
        "--every",
        "2h",
        "--inputs-from-url",
        "https://ops.invalid/waiting.csv",
    ]);
    let again = data.json(&["schedule", "show", "carrier-wait", "--json"]);
    assert_eq!(again["trigger"]["every"], "2h");
    assert!(again["last_slot"].is_null());

    // The journal holds every change, chained; verify accepts it.
    let types = data.journal_types();
    assert_eq!(data.count("schedule_added"), 3, "{types:?}");
    assert_eq!(data.count("schedule_paused"), 1, "{types:?}");
    assert_eq!(data.count("schedule_resumed"), 1, "{types:?}");
    assert_eq!(data.count("schedule_removed"), 1, "{types:?}");
    let journal = std::fs::read_to_string(data.path().join("journal.jsonl")).unwrap();
    assert!(journal.contains(r#""tz":"Asia/Shanghai""#), "{journal}");
    assert!(journal.contains(r#""reason":"carrier portal down""#));
    let out = data.clerk_as("ops", &["verify", "--all"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // A rebuilt index agrees (schedule records are indexed).
    data.ok(&["reindex"]);
    let out = data.clerk_as("ops", &["verify", "--all"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        data.json(&["schedule", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn invalid_schedules_exit_2_naming_the_problem() {
    let data = Data::new();
    let rows = data.path().join("rows.csv");
    std::fs::write(&rows, "order_id\nSO-100001\n").unwrap();
    let rows = rows.to_str().unwrap();
    let lookup = shipped("order-lookup");
    let lookup = lookup.to_str().unwrap();
    fn add<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["schedule", "add"];
        args.extend_from_slice(extra);
        args
    }
    data.ok(&add(&[
        "first",
        "--playbook",
        lookup,
        "--cron",
        "0 8 * * *",
        "--inputs",
        rows,
    ]));

    data.fails(
        2,
        &add(&["x", "--playbook", "/nonexistent/p.yaml", "--every", "1h"]),
        "playbook `/nonexistent/p.yaml`: no such file",
    );
    data.fails(
        2,
        &add(&["x", "--playbook", "no-such-playbook", "--every", "1h"]),
        "no such playbook",
    );
    let broken = data.path().join("broken.yaml");
    std::fs::write(&broken, "name: t\nversion: \"1\"\nmode: yolo\n").unwrap();
    data.fails(
        2,
        &add(&["x", "--playbook", broken.to_str().unwrap(), "--every", "1h"]),
        "unknown mode `yolo`",
    );
    data.fails(
        2,
        &add(&[
            "x",
            "--playbook",
            lookup,
            "--cron",
            "0 25 * * *",
            "--inputs",
            rows,
        ]),
        "invalid cron expression `0 25 * * *`: hour field `25`",
    );
    data.fails(
        2,
        &add(&[
            "x",
            "--playbook",
            lookup,
            "--cron",
            "0 8 * *",
            "--inputs",
            rows,
        ]),
        "expected 5 fields",
    );
    data.fails(
        2,
        &add(&[
            "x",
            "--playbook",
            lookup,
            "--cron",
            "0 8 * * *",
            "--tz",
            "Mars/Olympus_Mons",
            "--inputs",
            rows,
        ]),
        "unknown time zone `Mars/Olympus_Mons`",
    );
    data.fails(
        2,
        &add(&[
            "x",
            "--playbook",
            lookup,
            "--every",
            "30s",
            "--inputs",
            rows,
        ]),
        "invalid interval `30s`: the shortest interval is 1 minute",
    );
    data.fails(
        2,
        &add(&["x", "--playbook", lookup, "--every", "5w", "--inputs", rows]),
        "unknown unit",
    );
    data.fails(
        2,
        &add(&[
            "first",
            "--playbook",
            lookup,
            "--every",
            "1h",
            "--inputs",
            rows,
        ]),
        "a schedule named `first` already exists",
    );
    data.fails(
        2,
        &add(&["bad name", "--playbook", lookup, "--every", "1h"]),
        "schedule name `bad name` is not valid",
    );
    data.fails(
        2,
        &add(&["x", "--playbook", lookup, "--every", "1h"]),
        "playbook order-lookup needs inputs (order_id)",
    );
    data.fails(
        2,
        &add(&[
            "x",
            "--playbook",
            lookup,
            "--every",
            "1h",
            "--inputs",
            rows,
            "--case-from",
            "ticket",
        ]),
        "--case-from `ticket` is not an input of playbook order-lookup",
    );
    let bad_rows = data.path().join("bad.csv");
    std::fs::write(&bad_rows, "order_id\nSO-100001\nnot-an-order\n").unwrap();
    data.fails(
        2,
        &add(&[
            "x",
            "--playbook",
            lookup,
            "--every",
            "1h",
            "--inputs",
            bad_rows.to_str().unwrap(),
        ]),
        "row 2",
    );
    data.fails(
        2,
        &add(&[
            "x",
            "--playbook",
            lookup,
            "--every",
            "1h",
            "--inputs-from-url",
            "ftp://x/rows.csv",
        ]),
        "only http and https",
    );
    data.fails(
        2,
        &add(&[
            "x",
            "--playbook",
            lookup,
            "--every",
            "1h",
            "--inputs-from-url",
            "https://bot:hunter2@ops.invalid/rows.csv",
        ]),
        "carries a user name or password",
    );
    data.fails(
        2,
        &add(&[
            "x",
            "--playbook",
            lookup,
            "--every",
            "1h",
            "--jobs",
            "0",
            "--inputs",
            rows,
        ]),
        "--jobs must be at least 1",
    );
    let login = shipped("login");
    data.fails(
        2,
        &add(&["x", "--playbook", login.to_str().unwrap(), "--every", "1h"]),
        "mode login cannot be scheduled",
    );
    // Usage errors from clap exit 2 too.
    data.fails(
        2,
        &add(&[
            "x",
            "--playbook",
            lookup,
            "--cron",
            "0 8 * * *",
            "--every",
            "1h",
        ]),
        "cannot be used with",
    );
    data.fails(
        2,
        &add(&["x", "--playbook", lookup, "--every", "1h", "--tz", "UTC"]),
        "'--every <EVERY>' cannot be used with '--tz <TZ>'",
    );
    data.fails(2, &add(&["x", "--playbook", lookup]), "--cron");
    data.fails(2, &["schedule", "pause", "first"], "--reason");
    for verb in ["resume", "remove", "show"] {
        data.fails(
            2,
            &["schedule", verb, "ghost"],
            "no schedule named `ghost` (see `clerk schedule list`)",
        );
    }
    data.fails(
        2,
        &["schedule", "pause", "ghost", "--reason", "r"],
        "no schedule named `ghost`",
    );

    // Someone who is not an operator of the channel: refused (3), and on record.
    let out = data.clerk_as(
        "mallory",
        &add(&["y", "--playbook", lookup, "--every", "1h", "--inputs", rows]),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("`mallory` is not an operator of channel `sample`"),
        "{stderr}"
    );

    // Nothing but the first schedule and the refusal was recorded; the store verifies.
    assert_eq!(data.count("schedule_added"), 1);
    assert_eq!(data.count("refused"), 1);
    assert_eq!(data.journal_types().len(), 2, "{:?}", data.journal_types());
    let out = data.clerk_as("ops", &["verify", "--all"]);
    assert_eq!(out.status.code(), Some(0));
}
