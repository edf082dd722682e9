//! Case claims and matching: the facts a customer gave (order number, name, phone, amount)
//! compared with what the seller center shows, before clerk writes anything on the case's
//! behalf.
//!
//! A run carries **claims** (`--claim customer="Li Wei"`, `claim.NAME` columns of an inputs
//! file, `claims` of a queued job). A playbook's `match:` rules pair each claim with a value
//! read from the page and say how to compare them ([`Compare`]). [`evaluate`] turns the
//! rules, the claims and the page values into one [`Check`] per rule and an overall
//! [`Verdict`]:
//!
//! - `matched`: every rule that could be checked agrees, every required rule was checked;
//! - `conflict`: some claim disagrees with the page (which claim, which field, both values);
//! - `unverifiable`: a required claim was not given, a page value could not be read or
//!   compared, or nothing at all could be compared.
//!
//! The engine refuses every write step of a run whose verdict is not `matched`, and ends a
//! read-only run that is not `matched` as `needs_review`. Nothing here touches a browser or
//! the evidence store: the comparisons are pure functions, tested below.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A run's claims, by name (`[a-z_][a-z0-9_]*`).
pub type Claims = BTreeMap<String, String>;

/// How a claim and a page value are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// Full-width forms folded to ASCII, case folded, runs of whitespace made one space,
    /// trimmed; then equal.
    Text,
    /// As `Text`, and the words in any order (`Li Wei` = `WEI li`).
    Name,
    /// Only the digits (full-width folded) count, and they are equal.
    Digits,
    /// Phone numbers, masked or not (`138****5678`, `+86 138 1234 5678`, or the last four
    /// digits alone): aligned from the right, every position known on both sides equal, and
    /// at least [`PHONE_MIN_DIGITS`] of them.
    Phone,
    /// Money: currency signs and codes, thousands separators and full-width digits
    /// understood; equal in minor units (and in currency when both sides name one).
    Amount,
}

/// Digits a phone comparison needs known on both sides before it can say `matched`.
pub const PHONE_MIN_DIGITS: usize = 4;

impl Compare {
    pub const NAMES: &'static [&'static str] = &["text", "name", "digits", "phone", "amount"];

    pub fn parse(s: &str) -> Option<Compare> {
        Some(match s {
            "text" => Compare::Text,
            "name" => Compare::Name,
            "digits" => Compare::Digits,
            "phone" => Compare::Phone,
            "amount" => Compare::Amount,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Compare::Text => "text",
            Compare::Name => "name",
            Compare::Digits => "digits",
            Compare::Phone => "phone",
            Compare::Amount => "amount",
        }
    }

    /// Checks a claimed value on its own (before any browser is started): `Err` says why it
    /// cannot be compared this way.
    pub fn check_claim(self, value: &str) -> Result<(), String> {
        match self {
            Compare::Text | Compare::Name if text(value).is_empty() => Err("it is empty".into()),
            Compare::Digits if digits(value).is_empty() => Err("it has no digits".into()),
            Compare::Phone => {
                let known = phone(value).iter().filter(|d| d.is_some()).count();
                if known == 0 {
                    Err("it has no digits".into())
                } else {
                    Ok(())
                }
            }
            Compare::Amount => amount(value).map(|_| ()),
            _ => Ok(()),
        }
    }

    /// Compares a claim with a page value.
    pub fn compare(self, claimed: &str, found: &str) -> (Verdict, Option<String>) {
        match self {
            Compare::Text => equal(text(claimed), text(found)),
            Compare::Name => equal(words(claimed), words(found)),
            Compare::Digits => {
                let f = digits(found);
                if f.is_empty() {
                    return (
                        Verdict::Unverifiable,
                        Some("the page value has no digits".into()),
                    );
                }
                equal(digits(claimed), f)
            }
            Compare::Phone => compare_phones(&phone(claimed), &phone(found)),
            Compare::Amount => match (amount(claimed), amount(found)) {
                (Err(e), _) => (
                    Verdict::Unverifiable,
                    Some(format!("the claim is not an amount: {e}")),
                ),
                (_, Err(e)) => (
                    Verdict::Unverifiable,
                    Some(format!("the page value is not an amount: {e}")),
                ),
                (Ok(a), Ok(b)) => match (a.currency, b.currency) {
                    (Some(x), Some(y)) if x != y => (
                        Verdict::Conflict,
                        Some(format!("currency {x} claimed, {y} on the page")),
                    ),
                    _ if a.minor == b.minor => (Verdict::Matched, None),
                    _ => (
                        Verdict::Conflict,
                        Some(format!(
                            "{} claimed, {} on the page",
                            show_minor(a.minor),
                            show_minor(b.minor)
                        )),
                    ),
                },
            },
        }
    }
}

impl std::fmt::Display for Compare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn equal(a: String, b: String) -> (Verdict, Option<String>) {
    if b.is_empty() {
        (
            Verdict::Unverifiable,
            Some("the page value is empty".into()),
        )
    } else if a == b {
        (Verdict::Matched, None)
    } else {
        (Verdict::Conflict, None)
    }
}

/// The outcome of one comparison, or of a whole run's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Matched,
    Conflict,
    Unverifiable,
    /// A rule whose claim was not given and that is not required: not compared.
    Skipped,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Matched => "matched",
            Verdict::Conflict => "conflict",
            Verdict::Unverifiable => "unverifiable",
            Verdict::Skipped => "skipped",
        }
    }
}

/// One rule's comparison, as the journal keeps it (`case_checked` records).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// The claim's name.
    pub claim: String,
    /// What was read on the page: `field NAME` or the locator, as `clerk check` shows it.
    pub field: String,
    /// How they were compared (`text`, `name`, `digits`, `phone`, `amount`).
    pub compare: String,
    /// The claimed value; `None` when no claim of that name was given.
    pub claimed: Option<String>,
    /// Where the claimed value came from: `claim`, or `input` (no claim of that name was
    /// given, so the run's input of the same name stands for it: what the operator typed
    /// from the customer's message).
    pub source: String,
    /// The page's value; `None` when it could not be read.
    pub found: Option<String>,
    pub verdict: Verdict,
    /// Why, when the verdict is not `matched` (or a detail of the comparison).
    pub reason: Option<String>,
}

impl Check {
    /// One line for messages: `claim customer "Li Wei" vs #customer-name "Wang Fang" (name):
    /// conflict`.
    pub fn describe(&self) -> String {
        let show = |v: &Option<String>| match v {
            Some(v) => format!("{v:?}"),
            None => "(none)".to_owned(),
        };
        let mut s = format!(
            "claim {} {} vs {} {} ({}): {}",
            self.claim,
            show(&self.claimed),
            self.field,
            show(&self.found),
            self.compare,
            self.verdict.as_str()
        );
        if let Some(r) = &self.reason {
            s.push_str(&format!(" ({r})"));
        }
        s
    }
}

/// One `match:` rule as the engine evaluates it: the page value is already read.
#[derive(Debug, Clone)]
pub struct Rule<'a> {
    pub claim: &'a str,
    /// What the page value is (for [`Check::field`]).
    pub field: String,
    pub compare: Compare,
    pub required: bool,
    /// The value read from the page, or why it could not be read.
    pub found: Result<String, String>,
}

/// A run's overall verdict and its checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
    pub checks: Vec<Check>,
}

impl Outcome {
    /// The checks that make the verdict what it is, one per line (for refusals and
    /// `needs_review` messages).
    pub fn explain(&self) -> String {
        let bad: Vec<String> = self
            .checks
            .iter()
            .filter(|c| matches!(c.verdict, Verdict::Conflict | Verdict::Unverifiable))
            .map(Check::describe)
            .collect();
        if bad.is_empty() {
            if self.verdict == Verdict::Matched {
                return "every claim matches".into();
            }
            return "no claim could be compared (give the customer's facts with --claim NAME=VALUE)"
                .into();
        }
        bad.join("; ")
    }
}

/// The claimed value of `name`: the claim, or else the run's input of the same name.
pub fn claimed<'a>(
    name: &str,
    claims: &'a Claims,
    inputs: &'a BTreeMap<String, String>,
) -> Option<(&'a str, &'static str)> {
    match claims.get(name) {
        Some(v) => Some((v.as_str(), "claim")),
        None => inputs
            .get(name)
            .filter(|v| !v.is_empty())
            .map(|v| (v.as_str(), "input")),
    }
}

/// Evaluates every rule. The verdict is `conflict` if any check conflicts, else
/// `unverifiable` if any check is, or if no check compared anything; else `matched`.
pub fn evaluate(rules: &[Rule<'_>], claims: &Claims, inputs: &BTreeMap<String, String>) -> Outcome {
    let mut checks = Vec::with_capacity(rules.len());
    for r in rules {
        let given = claimed(r.claim, claims, inputs);
        let (verdict, reason) = match (&given, &r.found) {
            (None, _) if !r.required => (Verdict::Skipped, Some("not claimed".to_owned())),
            (None, _) => (
                Verdict::Unverifiable,
                Some(format!(
                    "no claim {} was given (--claim {}=VALUE)",
                    r.claim, r.claim
                )),
            ),
            (Some(_), Err(why)) => (Verdict::Unverifiable, Some(why.clone())),
            (Some((v, _)), Ok(found)) => r.compare.compare(v, found),
        };
        checks.push(Check {
            claim: r.claim.to_owned(),
            field: r.field.clone(),
            compare: r.compare.as_str().to_owned(),
            claimed: given.map(|(v, _)| v.to_owned()),
            source: given.map(|(_, s)| s).unwrap_or("claim").to_owned(),
            found: r.found.as_ref().ok().cloned(),
            verdict,
            reason,
        });
    }
    let verdict = if checks.iter().any(|c| c.verdict == Verdict::Conflict) {
        Verdict::Conflict
    } else if checks.iter().any(|c| c.verdict == Verdict::Unverifiable)
        || !checks.iter().any(|c| c.verdict == Verdict::Matched)
    {
        Verdict::Unverifiable
    } else {
        Verdict::Matched
    };
    Outcome { verdict, checks }
}

/// Full-width ASCII forms (`０-９`, `Ａ-Ｚ`, `＄`, …) and the ideographic space folded to
/// ASCII.
pub fn fold_width(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            '\u{FFE5}' => '¥',
            _ => c,
        })
        .collect()
}

/// [`Compare::Text`]'s form of a value.
pub fn text(s: &str) -> String {
    fold_width(s)
        .to_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// [`Compare::Name`]'s form: the folded words, sorted.
fn words(s: &str) -> String {
    let folded = text(s).replace([',', '·', '.'], " ");
    let mut w: Vec<&str> = folded.split_whitespace().collect();
    w.sort_unstable();
    w.join(" ")
}

fn digits(s: &str) -> String {
    fold_width(s).chars().filter(char::is_ascii_digit).collect()
}

/// A phone number's positions: `Some(digit)` or `None` for a masked one. Separators
/// (spaces, `-`, `.`, parentheses, `+`) are dropped.
fn phone(s: &str) -> Vec<Option<u8>> {
    fold_width(s)
        .chars()
        .filter_map(|c| match c {
            '0'..='9' => Some(Some(c as u8 - b'0')),
            '*' | 'x' | 'X' | '•' | '●' | '×' | '#' | '?' => Some(None),
            _ => None,
        })
        .collect()
}

fn compare_phones(a: &[Option<u8>], b: &[Option<u8>]) -> (Verdict, Option<String>) {
    if !b.iter().any(Option::is_some) {
        return (
            Verdict::Unverifiable,
            Some("the page value has no digits".into()),
        );
    }
    let mut known = 0;
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if let (Some(x), Some(y)) = (x, y) {
            if x != y {
                return (
                    Verdict::Conflict,
                    Some("the digits shown on both sides differ".into()),
                );
            }
            known += 1;
        }
    }
    if known < PHONE_MIN_DIGITS {
        return (
            Verdict::Unverifiable,
            Some(format!(
                "only {known} digit(s) are shown on both sides; {PHONE_MIN_DIGITS} are needed"
            )),
        );
    }
    (Verdict::Matched, Some(format!("{known} digits compared")))
}

/// An amount of money: minor units (cents, fen) and the currency when named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amount {
    pub minor: i64,
    pub currency: Option<&'static str>,
}

const CURRENCIES: &[(&str, &str)] = &[
    ("CNY", "CNY"),
    ("RMB", "CNY"),
    ("HKD", "HKD"),
    ("HK$", "HKD"),
    ("USD", "USD"),
    ("US$", "USD"),
    ("EUR", "EUR"),
    ("GBP", "GBP"),
    ("JPY", "JPY"),
    ("元", "CNY"),
    ("¥", "CNY"),
    ("$", "USD"),
    ("€", "EUR"),
    ("£", "GBP"),
];

/// Parses `¥1,299.00`, `CNY 1299`, `１２９．５`, `129.5 元`, `-20.00` into minor units.
pub fn amount(s: &str) -> Result<Amount, String> {
    let mut rest = fold_width(s).trim().to_owned();
    let mut currency = None;
    for (sign, code) in CURRENCIES {
        // ASCII upper-casing keeps every byte offset.
        let upper = rest.to_ascii_uppercase();
        if let Some(at) = upper.find(sign) {
            if currency.is_some_and(|c| c != *code) {
                return Err(format!("{s:?} names two currencies"));
            }
            currency = Some(*code);
            rest.replace_range(at..at + sign.len(), " ");
        }
    }
    let compact: String = rest
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ',')
        .collect();
    let (negative, number) = match compact.strip_prefix('-') {
        Some(n) => (true, n),
        None => (false, compact.as_str()),
    };
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty() {
        return Err(format!("{s:?} has no number"));
    }
    if !whole.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("{s:?} is not a number of money"));
    }
    if frac.len() > 2 {
        return Err(format!("{s:?} has more than two decimals"));
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| format!("{s:?} is too large"))?
    };
    let frac_minor: i64 = match frac.len() {
        0 => 0,
        1 => frac.parse::<i64>().unwrap_or(0) * 10,
        _ => frac.parse::<i64>().unwrap_or(0),
    };
    let minor = whole
        .checked_mul(100)
        .and_then(|w| w.checked_add(frac_minor))
        .ok_or_else(|| format!("{s:?} is too large"))?;
    Ok(Amount {
        minor: if negative { -minor } else { minor },
        currency,
    })
}

fn show_minor(m: i64) -> String {
    let sign = if m < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", m.abs() / 100, m.abs() % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(c: Compare, a: &str, b: &str) -> Verdict {
        c.compare(a, b).0
    }

    #[test]
    fn text_folds_case_width_and_spaces() {
        assert_eq!(
            cmp(Compare::Text, "so-100042", "SO-100042"),
            Verdict::Matched
        );
        assert_eq!(
            cmp(Compare::Text, "ＳＯ－１０００４２", "SO-100042"),
            Verdict::Matched
        );
        assert_eq!(
            cmp(Compare::Text, "  Li\u{3000} Wei ", "li wei"),
            Verdict::Matched
        );
        assert_eq!(
            cmp(Compare::Text, "SO-100043", "SO-100042"),
            Verdict::Conflict
        );
        assert_eq!(cmp(Compare::Text, "x", "  "), Verdict::Unverifiable);
    }

    #[test]
    fn names_match_in_any_word_order() {
        assert_eq!(cmp(Compare::Name, "Wei LI", "Li Wei"), Verdict::Matched);
        assert_eq!(cmp(Compare::Name, "Li, Wei", "Li Wei"), Verdict::Matched);
        assert_eq!(cmp(Compare::Name, "Li Wen", "Li Wei"), Verdict::Conflict);
        // Word order may change, words may not merge.
        assert_eq!(cmp(Compare::Name, "LiWei", "Li Wei"), Verdict::Conflict);
    }

    #[test]
    fn phones_masked_partial_and_full_width() {
        assert_eq!(cmp(Compare::Phone, "5678", "138****5678"), Verdict::Matched);
        assert_eq!(
            cmp(Compare::Phone, "13812345678", "138****5678"),
            Verdict::Matched
        );
        assert_eq!(
            cmp(Compare::Phone, "+86 138-1234-5678", "138****5678"),
            Verdict::Matched
        );
        assert_eq!(
            cmp(Compare::Phone, "１３８１２３４５６７８", "138****5678"),
            Verdict::Matched
        );
        assert_eq!(
            cmp(Compare::Phone, "5679", "138****5678"),
            Verdict::Conflict
        );
        assert_eq!(
            cmp(Compare::Phone, "13912345678", "138****5678"),
            Verdict::Conflict
        );
        // Too few digits visible on both sides to tell.
        assert_eq!(
            cmp(Compare::Phone, "678", "138****5678"),
            Verdict::Unverifiable
        );
        assert_eq!(
            cmp(Compare::Phone, "1381234xxxx", "*******5678"),
            Verdict::Unverifiable
        );
        assert_eq!(cmp(Compare::Phone, "5678", "***"), Verdict::Unverifiable);
    }

    #[test]
    fn amounts_in_minor_units() {
        let a = |s| amount(s).map(|a| (a.minor, a.currency));
        assert_eq!(a("¥1,299.00"), Ok((129_900, Some("CNY"))));
        assert_eq!(a("CNY 1299"), Ok((129_900, Some("CNY"))));
        assert_eq!(a("１２９．５"), Ok((12_950, None)));
        assert_eq!(a("129.5 元"), Ok((12_950, Some("CNY"))));
        assert_eq!(a("￥20"), Ok((2_000, Some("CNY"))));
        assert_eq!(a("-20.00"), Ok((-2_000, None)));
        assert_eq!(a("HK$ 3.10"), Ok((310, Some("HKD"))));
        assert!(a("1.234").is_err());
        assert!(a("twenty").is_err());
        assert!(a("").is_err());
        assert!(a("$1 €1").is_err());
        assert_eq!(
            cmp(Compare::Amount, "129.5", "CNY 129.50"),
            Verdict::Matched
        );
        assert_eq!(
            cmp(Compare::Amount, "129.51", "CNY 129.50"),
            Verdict::Conflict
        );
        assert_eq!(
            cmp(Compare::Amount, "$129.50", "CNY 129.50"),
            Verdict::Conflict
        );
        assert_eq!(cmp(Compare::Amount, "129.50", "n/a"), Verdict::Unverifiable);
    }

    #[test]
    fn verdicts_combine() {
        let rule = |claim, required, found: Result<&str, &str>| Rule {
            claim,
            field: format!("#{claim}"),
            compare: Compare::Text,
            required,
            found: found.map(str::to_owned).map_err(str::to_owned),
        };
        let inputs = BTreeMap::from([("order_id".to_owned(), "SO-100042".to_owned())]);
        let mut claims = Claims::new();
        // The input stands for an unclaimed order id; an optional claim not given is skipped.
        let o = evaluate(
            &[
                rule("order_id", true, Ok("SO-100042")),
                rule("customer", false, Ok("Li Wei")),
            ],
            &claims,
            &inputs,
        );
        assert_eq!(o.verdict, Verdict::Matched);
        assert_eq!(o.checks[0].source, "input");
        assert_eq!(o.checks[1].verdict, Verdict::Skipped);
        // A claim that disagrees.
        claims.insert("customer".into(), "Wang Fang".into());
        let o = evaluate(
            &[
                rule("order_id", true, Ok("SO-100042")),
                rule("customer", false, Ok("Li Wei")),
            ],
            &claims,
            &inputs,
        );
        assert_eq!(o.verdict, Verdict::Conflict);
        assert!(o.explain().contains("\"Wang Fang\""), "{}", o.explain());
        // A page value that cannot be read.
        let o = evaluate(
            &[rule("customer", false, Err("not found"))],
            &claims,
            &inputs,
        );
        assert_eq!(o.verdict, Verdict::Unverifiable);
        // Nothing compared at all.
        let o = evaluate(&[rule("phone", false, Ok("1"))], &Claims::new(), &inputs);
        assert_eq!(o.verdict, Verdict::Unverifiable);
        // A required claim missing.
        let o = evaluate(&[rule("phone", true, Ok("1"))], &Claims::new(), &inputs);
        assert_eq!(o.verdict, Verdict::Unverifiable);
    }
}
