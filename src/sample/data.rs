//! The sample seller center's deterministic data set: 200 orders `SO-100001`..`SO-100200`.
//!
//! Everything is derived from a small linear congruential generator seeded per order, so the
//! data is identical on every machine, in every process and across restarts: tests and demo
//! playbooks can hard-code what they expect to read from a page (and compare it with
//! [`order`]) without the server having to persist anything.

use std::sync::OnceLock;

/// How many orders the data set holds.
pub const ORDER_COUNT: u32 = 200;

/// The first order number; ids are `SO-{FIRST_ORDER_NO + i}` for `i` in `0..ORDER_COUNT`.
const FIRST_ORDER_NO: u32 = 100_001;

/// Every status an order can have, in lifecycle order.
pub const STATUSES: [&str; 6] = [
    "pending_payment",
    "paid",
    "shipped",
    "delivered",
    "refunded",
    "cancelled",
];

/// One order of the sample shop.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Order {
    /// `SO-1000xx`.
    pub id: String,
    /// One of [`STATUSES`], exactly as shown in `#order-status`.
    pub status: String,
    pub customer: String,
    /// The customer's mobile number, masked as seller centers show it: `138****5678`.
    pub phone: String,
    /// `YYYY-MM-DD HH:MM` (shop local time).
    pub created: String,
    /// 1 to 4 lines.
    pub items: Vec<Item>,
    /// Sum of `quantity * unit_price_cents` over the items.
    pub total_cents: i64,
    /// Present for shipped and delivered orders and for about half of the refunded ones.
    pub carrier: Option<String>,
    /// Present exactly when `carrier` is.
    pub tracking_no: Option<String>,
    /// Tracking events, oldest first; 2 to 6 when the order has a tracking number, else none.
    pub events: Vec<TrackingEvent>,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Item {
    pub sku: String,
    pub name: String,
    pub quantity: u32,
    pub unit_price_cents: i64,
}

/// One carrier scan.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TrackingEvent {
    /// `YYYY-MM-DD HH:MM`, shown in `li.event .time`.
    pub time: String,
    /// Shown in `li.event .desc` (and in `#latest-event` for the newest event).
    pub description: String,
}

impl Order {
    /// Exactly the text shown in `#order-total`, e.g. `CNY 1234.50`.
    pub fn total_display(&self) -> String {
        format_cny(self.total_cents)
    }

    /// The newest tracking event (what `#latest-event` shows), if any.
    pub fn latest_event(&self) -> Option<&TrackingEvent> {
        self.events.last()
    }
}

impl Item {
    /// `quantity * unit_price_cents`.
    pub fn line_total_cents(&self) -> i64 {
        i64::from(self.quantity) * self.unit_price_cents
    }
}

/// Formats cents the way every page of the sample center shows money: `CNY 12.50`.
pub fn format_cny(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("CNY {sign}{}.{:02}", abs / 100, abs % 100)
}

/// The whole data set, in id order.
pub fn orders() -> &'static [Order] {
    static ORDERS: OnceLock<Vec<Order>> = OnceLock::new();
    ORDERS.get_or_init(|| (0..ORDER_COUNT).map(generate).collect())
}

/// The order with this id (`SO-100001`..`SO-100200`), if it exists.
pub fn order(id: &str) -> Option<&'static Order> {
    let n: u32 = id.strip_prefix("SO-")?.parse().ok()?;
    // Reject non-canonical spellings such as `SO-+100001` or `SO-0100001`.
    if format!("SO-{n}") != id {
        return None;
    }
    let index = n.checked_sub(FIRST_ORDER_NO)?;
    orders().get(usize::try_from(index).ok()?)
}

/// Knuth's MMIX LCG; the high bits are the usable ones.
struct Lcg(u64);

impl Lcg {
    fn new(seed: u64) -> Lcg {
        // Neighbouring seeds give correlated LCG streams, so the seed is first scrambled
        // with the SplitMix64 finaliser.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let mut lcg = Lcg(z ^ (z >> 31));
        // Warm up so that the first outputs do not depend on the seed's low bits alone.
        for _ in 0..4 {
            lcg.next();
        }
        lcg
    }

    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    /// Uniform-ish integer in `0..n` (n > 0; the modulo bias is irrelevant here).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        // Callers pass non-empty constant tables.
        &items[self.below(items.len() as u64) as usize]
    }
}

const FIRST_NAMES: [&str; 16] = [
    "Wei", "Min", "Jing", "Lei", "Yan", "Hao", "Xiu", "Tao", "Emma", "Lukas", "Sofia", "Mateo",
    "Aiko", "Noah", "Priya", "Olga",
];
const LAST_NAMES: [&str; 12] = [
    "Li", "Zhang", "Wang", "Chen", "Liu", "Zhao", "Schmidt", "Rossi", "Tanaka", "Silva", "Kumar",
    "Novak",
];

/// (sku, name, unit price in cents)
const CATALOG: [(&str, &str, i64); 16] = [
    ("LH-MUG-01", "Stoneware mug, 350 ml", 3_900),
    ("LH-TEA-02", "Glass teapot with infuser", 12_800),
    ("LH-TWL-03", "Bamboo bath towel", 7_450),
    ("LH-CUT-04", "Acacia cutting board", 9_900),
    ("LH-LMP-05", "Rattan table lamp", 25_900),
    ("LH-CSH-06", "Linen cushion cover", 5_650),
    ("LH-BWL-07", "Ceramic rice bowl set (4)", 8_800),
    ("LH-CHP-08", "Walnut chopsticks (5 pairs)", 4_250),
    ("LH-VAS-09", "Celadon vase", 16_800),
    ("LH-TRY-10", "Lacquer serving tray", 11_900),
    ("LH-CDL-11", "Soy wax candle, osmanthus", 6_900),
    ("LH-BSK-12", "Seagrass storage basket", 13_500),
    ("LH-KNF-13", "Santoku knife, 18 cm", 29_900),
    ("LH-MAT-14", "Cotton table runner", 4_980),
    ("LH-JAR-15", "Airtight glass jar, 1 l", 3_450),
    ("LH-SLP-16", "Felt house slippers", 8_990),
];

/// (carrier, tracking number prefix, digits after the prefix)
const CARRIERS: [(&str, &str, u32); 5] = [
    ("SF Express", "SF", 13),
    ("ZTO Express", "ZT", 12),
    ("YTO Express", "YT", 13),
    ("JD Logistics", "JDV", 12),
    ("China Post EMS", "EM", 11),
];

const CITIES: [&str; 8] = [
    "Hangzhou",
    "Shanghai",
    "Suzhou",
    "Nanjing",
    "Guangzhou",
    "Shenzhen",
    "Wuhan",
    "Chengdu",
];

fn generate(index: u32) -> Order {
    let number = FIRST_ORDER_NO + index;
    let mut rng = Lcg::new(u64::from(number));

    // Weights (out of 100): pending 10, paid 18, shipped 25, delivered 32, refunded 8, cancelled 7.
    let roll = rng.below(100);
    let status = match roll {
        0..=9 => "pending_payment",
        10..=27 => "paid",
        28..=52 => "shipped",
        53..=84 => "delivered",
        85..=92 => "refunded",
        _ => "cancelled",
    };

    let customer = format!("{} {}", rng.pick(&FIRST_NAMES), rng.pick(&LAST_NAMES));

    // Orders are spread over roughly 40 days before 2024-06-30, older ids being older.
    let base = chrono::NaiveDate::from_ymd_opt(2024, 5, 20)
        .and_then(|d| d.and_hms_opt(8, 0, 0))
        .unwrap_or_default();
    let created_at =
        base + chrono::Duration::minutes(i64::from(index) * 290 + rng.below(240) as i64);
    let created = created_at.format("%Y-%m-%d %H:%M").to_string();

    let item_count = 1 + rng.below(4) as usize;
    let mut items: Vec<Item> = Vec::with_capacity(item_count);
    while items.len() < item_count {
        let (sku, name, price) = *rng.pick(&CATALOG);
        if items.iter().any(|i| i.sku == sku) {
            continue;
        }
        items.push(Item {
            sku: sku.to_owned(),
            name: name.to_owned(),
            quantity: 1 + rng.below(3) as u32,
            unit_price_cents: price,
        });
    }
    let total_cents = items.iter().map(Item::line_total_cents).sum();

    let tracked = match status {
        "shipped" | "delivered" => true,
        "refunded" => rng.below(2) == 0,
        _ => false,
    };
    let (carrier, tracking_no, events) = if tracked {
        let (carrier, prefix, digits) = *rng.pick(&CARRIERS);
        let mut no = prefix.to_owned();
        for _ in 0..digits {
            no.push(char::from(b'0' + rng.below(10) as u8));
        }
        let events = tracking_events(&mut rng, created_at, status);
        (Some(carrier.to_owned()), Some(no), events)
    } else {
        (None, None, Vec::new())
    };

    Order {
        id: format!("SO-{number}"),
        status: status.to_owned(),
        customer,
        phone: masked_phone(number),
        created,
        items,
        total_cents,
        carrier,
        tracking_no,
        events,
    }
}

/// A masked mainland mobile number, from its own stream (so the rest of an order does not
/// change with it): a 3-digit prefix, 4 masked digits, the last 4.
fn masked_phone(number: u32) -> String {
    const PREFIXES: [&str; 8] = ["138", "139", "150", "151", "186", "188", "135", "177"];
    let mut rng = Lcg::new(u64::from(number) ^ 0x5048_4f4e_4500_0000);
    let prefix = PREFIXES[rng.below(PREFIXES.len() as u64) as usize];
    format!("{prefix}****{:04}", rng.below(10_000))
}

/// 2 to 6 scans after `created`, oldest first; delivered (and refunded) parcels end with a
/// delivery scan, shipped ones are still on the way.
fn tracking_events(
    rng: &mut Lcg,
    created: chrono::NaiveDateTime,
    status: &str,
) -> Vec<TrackingEvent> {
    let count = 2 + rng.below(5) as usize;
    let origin = *rng.pick(&CITIES);
    let destination = *rng.pick(&CITIES);
    let delivered = status != "shipped";
    let mut descriptions = vec![format!("Picked up by courier in {origin}")];
    let middle = [
        format!("Departed {origin} sorting center"),
        "In transit".to_owned(),
        format!("Arrived at {destination} sorting center"),
        format!("Out for delivery in {destination}"),
    ];
    let mut m = 0;
    while descriptions.len() < count - usize::from(delivered) && m < middle.len() {
        descriptions.push(middle[m].clone());
        m += 1;
    }
    if delivered {
        descriptions.push(format!("Delivered in {destination}, signed by recipient"));
    }
    let mut at = created + chrono::Duration::hours(6 + rng.below(20) as i64);
    descriptions
        .into_iter()
        .map(|description| {
            let event = TrackingEvent {
                time: at.format("%Y-%m-%d %H:%M").to_string(),
                description,
            };
            at += chrono::Duration::minutes(180 + rng.below(900) as i64);
            event
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_contiguous_and_lookup_roundtrips() {
        let all = orders();
        assert_eq!(all.len(), 200);
        assert_eq!(all[0].id, "SO-100001");
        assert_eq!(all[199].id, "SO-100200");
        for o in all {
            assert_eq!(order(&o.id), Some(o));
        }
        assert!(order("SO-100000").is_none());
        assert!(order("SO-100201").is_none());
        assert!(order("SO-0100001").is_none());
        assert!(order("so-100001").is_none());
    }

    #[test]
    fn cny_formatting() {
        assert_eq!(format_cny(123_450), "CNY 1234.50");
        assert_eq!(format_cny(5), "CNY 0.05");
        assert_eq!(format_cny(-1_250), "CNY -12.50");
    }
}
