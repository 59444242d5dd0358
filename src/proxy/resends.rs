//! How often one attempt sends its request again to its own endpoint: on new connections, and on any.

/// New connections one attempt is sent again on, at most: a second only
/// for a request the first left unprocessed over HTTP/2 (never written,
/// `REFUSED_STREAM`, past a `GOAWAY`'s last stream id), which the endpoint
/// never saw. A pod on its way down said so on the new connection too
/// (its `GOAWAY` after its first answer there, a batch of refused
/// streams): with the retry budget spent, or no other endpoint, such a
/// request got a `502`, although no endpoint had processed it. Sends on
/// any connection (refused on one that still serves) are bounded apart:
/// a burst refused by a stuck connection spent these there, a `502`.
const RESENDS: usize = 2;

/// Sends again to one endpoint in all, at most (five sends): a third on
/// any connection counts against those on new ones. Counted apart only,
/// a request refused on A, B, A (retired) and B again (the third, beside
/// B's room) went on two new connections more, refused there too: six.
const IN_ALL: usize = 2 * RESENDS;

/// One attempt's sends again to its endpoint so far (see
/// [`crate::proxy::forward`]), counted apart: on a new connection, and on
/// any connection (a request refused, `REFUSED_STREAM`, where it still
/// serves or beside another connection's room).
#[derive(Default)]
pub(super) struct Resends {
    /// Sends on a new connection.
    new: usize,
    /// Sends on any connection, the refusing one included.
    any: usize,
}

impl Resends {
    /// Whether the request may still be sent again to its endpoint: a
    /// copy of it is worth keeping.
    pub(super) fn more(&self) -> bool {
        self.new.min(self.any) < RESENDS && self.new + self.any < IN_ALL
    }

    /// Whether a refused request goes again on any connection: its own
    /// still serves (`serving`), or another has room (`beside`). Twice at
    /// most; thrice when another has room and no slot is free (`room`): a
    /// new connection only waited out `connect_timeout` for the slot the
    /// pooled ones kept, the limit's `504`.
    pub(super) fn on_any(&self, serving: bool, beside: bool, room: bool) -> bool {
        (serving || beside) && self.any < RESENDS + usize::from(room) && self.in_all()
    }

    /// Whether the request goes again on a new connection: twice at most
    /// (`RESENDS`), none while the refusing connection holds the slot it
    /// would need (`held`, `Endpoint::refused`); once after a third send
    /// on any connection (`IN_ALL`). The HTTP/1.1 path asks it too: an
    /// endpoint's connections may come up either way.
    pub(super) fn on_new(&self, held: bool) -> bool {
        self.new < RESENDS && !held && self.in_all()
    }

    /// Whether any send again is left of the `IN_ALL`. None once the end of
    /// the shutdown's grace cuts the request (`drain::cutting`): its task is
    /// being dropped, and its upstream connection's went first.
    fn in_all(&self) -> bool {
        self.new + self.any < IN_ALL && !crate::proxy::drain::cutting()
    }

    /// One send again more: on any connection (`on_any`), or on a new one.
    pub(super) fn count(&mut self, on_any: bool) {
        match on_any {
            true => self.any += 1,
            false => self.new += 1,
        }
    }
}
