//! The kit's checks, one file per topic. Each check is an `async fn` that
//! returns what failed; [`crate::run`] names them and runs them in order.

pub(crate) mod cancel;
pub(crate) mod catalog;
pub(crate) mod limits;
pub(crate) mod query;
pub(crate) mod read_only;
pub(crate) mod schema;
