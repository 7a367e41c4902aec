//! The kit's fixture: `kit_customers` and `kit_orders`, in portable SQL
//! accepted by SQLite, PostgreSQL and MariaDB, loaded through the driver's
//! own read-write `query` tool.

use ewii_driver_core::schema::StandardTool;
use ewii_driver_core::{CallContext, Limits, StatementClasses, dispatch};
use serde_json::json;

use crate::harness::Kit;
use crate::report::Check;

/// Rows in `kit_customers` (ids 1 to 30).
pub(crate) const CUSTOMERS: i64 = 30;
/// Rows in `kit_orders` (ids 1 to 60).
pub(crate) const ORDERS: i64 = 60;

/// Customer `id`'s country: FR, DE, US in turn.
fn country(id: i64) -> &'static str {
    match id % 3 {
        0 => "FR",
        1 => "DE",
        _ => "US",
    }
}

/// The fixture: portable SQL accepted by SQLite, PostgreSQL and MariaDB.
pub fn fixture_statements() -> Vec<String> {
    let mut s = vec![
        "CREATE TABLE kit_customers (\
            id INTEGER PRIMARY KEY, \
            name VARCHAR(100) NOT NULL, \
            email VARCHAR(200) UNIQUE, \
            country VARCHAR(2) NOT NULL DEFAULT 'FR')"
            .to_owned(),
        "CREATE TABLE kit_orders (\
            id INTEGER PRIMARY KEY, \
            customer_id INTEGER NOT NULL, \
            total_cents INTEGER NOT NULL, \
            note VARCHAR(200), \
            FOREIGN KEY (customer_id) REFERENCES kit_customers (id))"
            .to_owned(),
        "CREATE INDEX kit_orders_customer ON kit_orders (customer_id)".to_owned(),
    ];
    let customers: Vec<String> = (1..=CUSTOMERS)
        .map(|id| {
            let email = if id == 7 {
                "NULL".to_owned()
            } else {
                format!("'c{id:02}@example.com'")
            };
            format!("({id}, 'Customer {id:02}', {email}, '{}')", country(id))
        })
        .collect();
    s.push(format!(
        "INSERT INTO kit_customers (id, name, email, country) VALUES {}",
        customers.join(", ")
    ));
    let orders: Vec<String> = (1..=ORDERS)
        .map(|id| {
            let note = if id % 4 == 0 {
                "NULL".to_owned()
            } else {
                format!("'note {id:02}'")
            };
            format!("({id}, {}, {}, {note})", id % CUSTOMERS + 1, id * 100 + 7)
        })
        .collect();
    s.push(format!(
        "INSERT INTO kit_orders (id, customer_id, total_cents, note) VALUES {}",
        orders.join(", ")
    ));
    s
}

/// Loads the fixture and the harness's extra objects through the driver's
/// own read-write query tool.
pub(crate) async fn load(kit: &Kit<'_>) -> Check {
    let db = kit.open(false, Limits::default()).await?;
    // Allowed every class, `other` included: engine syntax the classifier
    // cannot parse (CREATE PROCEDURE … $$ … $$) is refused to a caller that
    // is not.
    let all = CallContext {
        statements: Some(StatementClasses::all()),
        ..CallContext::default()
    };
    for sql in fixture_statements()
        .into_iter()
        .chain(kit.h.extra_fixture())
    {
        dispatch(
            db.as_ref(),
            StandardTool::Query,
            json!({ "sql": sql }),
            &all,
        )
        .await
        .map_err(|e| format!("fixture statement failed: {e}\n{sql}"))?;
    }
    db.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixture_has_the_rows_the_checks_count_on() {
        let s = fixture_statements();
        assert_eq!(s.len(), 5);
        let customers = &s[3];
        assert_eq!(customers.matches("'Customer ").count() as i64, CUSTOMERS);
        // Customer 7 has no email: the NULL mapping check reads it.
        assert!(customers.contains("(7, 'Customer 07', NULL, 'DE')"));
        // DE customers above 20: what the parameter check expects.
        for id in [22, 25, 28] {
            assert!(customers.contains(&format!(
                "({id}, 'Customer {id}', 'c{id}@example.com', 'DE')"
            )));
        }
        assert_eq!(s[4].matches("'note ").count() as i64, ORDERS - ORDERS / 4);
    }
}
