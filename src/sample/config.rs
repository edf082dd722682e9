//! The channel config of the sample seller center (written by `clerk demo`, used by the
//! tests and the benchmarks).

/// First line of a config the demo wrote (and may therefore rewrite).
pub const DEMO_CONFIG_MARKER: &str = "# written by `clerk demo`";

/// The channel config the demo uses for a sample seller center on `port`.
pub fn demo_config(port: u16, operator: &str) -> String {
    let mut operators = vec!["ops".to_owned(), "alice".to_owned()];
    if !operators.iter().any(|o| o == operator) {
        operators.push(operator.to_owned());
    }
    format!(
        r##"{DEMO_CONFIG_MARKER}
# Channels clerk may work in. See README.md for every key.

[[channel]]
id = "sample"
base_url = "http://127.0.0.1:{port}/"
# The chat widget is served from another site (localhost) in its own process.
allowed_origins = ["http://127.0.0.1:{port}", "http://localhost:{port}"]
owner = "ops-lead"
operators = {operators:?}
reviewers = ["carol"]
modes = ["read_only", "draft", "submit", "login"]
session = "sessions/sample.json"
logged_in_check = {{ url = "/account", selector = "#account-user" }}
# Landing on a login page at any step means the session has expired.
login_url = ["/login**", "/app/#/login**"]
# The single-page app sends a request id and a client timestamp with every write.
volatile_fields = ["requestId", "clientTs"]
approval_ttl_hours = 24
# Drafts and submits write only when the case's claims match the page (playbook `match:`).
require_match = true
# The server's own words: the order API's responses (and the documents a run opens) are
# kept as WARC records beside the screenshots (`clerk verify --server-match RUN`).
record_responses = ["/api/orders/**"]
"##
    )
}
