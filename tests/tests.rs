//! The integration suite, linked once (as ripgrep does): one module per capability, all
//! against real headless Chromium and real HTTP servers on 127.0.0.1. One binary keeps CI's
//! link time flat as the suite grows.

#[allow(dead_code)]
mod common;

mod approval;
mod authz;
mod case_matching;
mod cli;
mod cluster;
mod console;
mod console_browser;
mod crash;
mod deployment;
mod evidence_store;
mod guard;
mod identity;
mod locators;
mod object_storage;
mod order_note;
mod pause;
mod playbook_check;
mod policy;
mod pool;
mod queue;
mod readonly;
mod remote;
mod replay;
mod rollback;
mod sample_center;
mod sample_spa;
mod schedule;
mod scheduler;
mod serve;
mod shared_journal;
mod spa;
mod stats;
mod tlog;
mod warc;
