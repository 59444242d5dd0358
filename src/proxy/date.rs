//! The `date` of a response to an HTTP/2 client, sent never-indexed: HPACK keeps no stale dates.
//!
//! h2's encoder inserts each new value into the connection's dynamic table
//! (a new `date` every second) and encodes a field by walking the chain of
//! entries with its name from the oldest, comparing each value
//! (`index_occupied`): a long-lived connection's 4 KiB table filled with
//! ~60 stale dates, compared on every response. A sensitive value is sent
//! as a never-indexed literal with the static table's name (RFC 7541
//! §6.2.3) and never inserted. Every date on the connection must be:
//! one indexed date (hyper's, on a response of our own) would be walked
//! again, and matched.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, Entry, HeaderMap, HeaderValue};

/// Mark the response's `date` sensitive; one of ours, sensitive, where it
/// has none (hyper would add its own, indexed). One lookup.
pub fn never_indexed(headers: &mut HeaderMap) {
    match headers.entry(header::DATE) {
        Entry::Occupied(mut e) => e.iter_mut().for_each(|v| v.set_sensitive(true)),
        Entry::Vacant(e) => {
            e.insert(now());
        }
    }
}

/// The current date, sensitive, rendered once a second per thread (as
/// hyper's is).
fn now() -> HeaderValue {
    thread_local! {
        static CACHED: RefCell<(u64, HeaderValue)> =
            const { RefCell::new((u64::MAX, HeaderValue::from_static(""))) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with_borrow_mut(|(at, value)| {
        if *at != secs {
            *value = render(now);
            *at = secs;
        }
        value.clone()
    })
}

/// `t` as an IMF-fixdate (RFC 9110 §5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`.
fn render(t: SystemTime) -> HeaderValue {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = time::OffsetDateTime::from(t);
    let text = format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[usize::from(t.weekday().number_days_from_monday())],
        t.day(),
        MONTHS[usize::from(u8::from(t.month())) - 1],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let mut value =
        HeaderValue::from_maybe_shared(Bytes::from(text)).expect("a date is a valid header value");
    value.set_sensitive(true);
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn renders_an_imf_fixdate() {
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(render(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        let t = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(render(t), "Fri, 15 Jan 2027 08:00:00 GMT");
    }

    #[test]
    fn every_date_is_sensitive() {
        let mut h = HeaderMap::new();
        h.insert(header::DATE, HeaderValue::from_static("upstream's"));
        h.append(header::DATE, HeaderValue::from_static("another"));
        never_indexed(&mut h);
        assert!(h.get_all(header::DATE).iter().all(|v| v.is_sensitive()));
        assert_eq!(h.get(header::DATE).unwrap(), "upstream's");
        let mut h = HeaderMap::new();
        never_indexed(&mut h);
        let ours = h.get(header::DATE).unwrap();
        assert!(ours.is_sensitive() && ours.len() == 29, "{ours:?}");
    }
}
