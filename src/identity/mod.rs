//! Who a client is: the verified certificate parsed once per connection, and the `allow` rules read from it.

pub mod allow;
pub mod gate;
pub mod rechecks;
pub mod record;

pub use allow::{AllowList, AllowRule, RuleError, RuleSpec};
pub use record::Identity;
