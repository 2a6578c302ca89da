//! A customer's creation on its counter: the plan must be in the catalog, and its
//! periods start on an anchor day (1 for calendar months, or the signup day).

use crate::catalog::Catalog;
use crate::error::ApiError;
use crate::keys::Mode;
use crate::period::day_of_month;
use crate::protocol::{CreateCustomer, Customer};

/// A customer is created on its test counter first, then on its live one: once the
/// live one exists the customer is whole, and a retry after a partial creation goes on
/// past the test counter ([`creation_goes_on`]).
pub const CREATION_ORDER: [Mode; 2] = [Mode::Test, Mode::Live];

/// Whether creating the customer goes on after the test counter answered `status`.
pub fn creation_goes_on(status: u16) -> bool {
    status == 201 || status == 409
}

/// A key is revoked on whichever counter holds it, live first; the first answer that is
/// not a 404 is the answer.
pub const REVOCATION_ORDER: [Mode; 2] = [Mode::Live, Mode::Test];

/// The customer `c` asks for, on a counter of `livemode` that holds `existing` already.
pub fn create(
    c: CreateCustomer,
    catalog: &Catalog,
    existing: Option<&Customer>,
    livemode: bool,
    now_ms: i64,
) -> Result<Customer, ApiError> {
    if existing.is_some() {
        let msg = format!("Customer `{}` already exists.", c.id);
        return Err(ApiError::conflict("customer_exists", msg));
    }
    if catalog.plan(&c.plan).is_none() {
        let known: Vec<&str> = catalog.plans.keys().map(String::as_str).collect();
        let msg = format!(
            "Unknown plan `{}`; the catalog has: {}.",
            c.plan,
            known.join(", ")
        );
        return Err(ApiError::bad_request("unknown_plan", msg).with_param("plan"));
    }
    if c.anchor_to_signup && c.anchor_day.is_some() {
        let msg = "Give `anchor_day` or `anchor_to_signup`, not both.";
        return Err(ApiError::bad_request("invalid_value", msg).with_param("anchor_day"));
    }
    let anchor_day = match (c.anchor_day, c.anchor_to_signup) {
        (Some(day), _) => day,
        (None, true) => day_of_month(now_ms),
        (None, false) => 1,
    };
    if !(1..=31).contains(&anchor_day) {
        let msg = "`anchor_day` must be 1 to 31.";
        return Err(ApiError::bad_request("invalid_value", msg).with_param("anchor_day"));
    }
    Ok(Customer {
        livemode,
        id: c.id,
        plan: c.plan,
        anchor_day,
        created_ms: now_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_765_843_200_000; // 2025-12-16

    fn ask(plan: &str, anchor_day: Option<u32>, anchor_to_signup: bool) -> CreateCustomer {
        CreateCustomer {
            id: "acme".into(),
            plan: plan.into(),
            anchor_day,
            anchor_to_signup,
        }
    }

    fn plan_name() -> String {
        let catalog = crate::fixtures::catalog();
        catalog.plans.keys().next().unwrap().clone()
    }

    #[test]
    fn the_anchor_is_the_first_the_signup_day_or_the_day_given() {
        let catalog = crate::fixtures::catalog();
        let made = |a, s| create(ask(&plan_name(), a, s), &catalog, None, true, NOW);
        assert_eq!(made(None, false).unwrap().anchor_day, 1);
        assert_eq!(made(None, true).unwrap().anchor_day, 16);
        let c = made(Some(31), false).unwrap();
        assert_eq!((c.anchor_day, c.created_ms, c.livemode), (31, NOW, true));
        for bad in [Some(0), Some(32)] {
            let e = made(bad, false).unwrap_err();
            assert_eq!((e.status, e.param.as_deref()), (400, Some("anchor_day")));
        }
        let both = made(Some(3), true).unwrap_err();
        assert!(both.message.contains("not both"), "{}", both.message);
    }

    #[test]
    fn a_customer_is_created_once_and_only_on_a_plan_of_the_catalog() {
        let catalog = crate::fixtures::catalog();
        let unknown = create(ask("gold", None, false), &catalog, None, true, NOW).unwrap_err();
        assert_eq!(unknown.code.as_deref(), Some("unknown_plan"));
        assert!(unknown.message.contains(&plan_name()), "lists the plans");
        let first = create(ask(&plan_name(), None, false), &catalog, None, false, NOW).unwrap();
        assert!(!first.livemode);
        let again = create(
            ask(&plan_name(), None, false),
            &catalog,
            Some(&first),
            false,
            NOW,
        );
        assert_eq!(again.unwrap_err().status, 409);
    }

    #[test]
    fn creation_goes_on_past_a_test_counter_made_before() {
        assert_eq!(
            CREATION_ORDER.last(),
            Some(&Mode::Live),
            "live last: then whole"
        );
        assert!(creation_goes_on(201) && creation_goes_on(409));
        assert!(!creation_goes_on(400) && !creation_goes_on(503));
        assert_eq!(REVOCATION_ORDER[0], Mode::Live);
    }
}
