//! A listener's client auth over the API: the view and the runtime change.

use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Reply, bad_request, no_listener, problem};
use crate::config::{ClientAuthConfig, ClientAuthMode, EntryKind};
use crate::identity::{AllowRule, RuleSpec};
use crate::reload::Reloader;

/// `{mode, ca, crl}` of a listener as it runs now.
pub(super) fn client_auth_view(r: &Reloader, name: &str) -> Result<Value, (StatusCode, Value)> {
    let ca = r.client_auth(name).ok_or_else(|| no_listener(name))?;
    let crl: Vec<String> = ca
        .ca
        .as_deref()
        .and_then(|id| r.entry_spec(id))
        .map(|(spec, _)| spec.source.crl_sources())
        .unwrap_or_default();
    let allow = ca.allow.as_ref().map(|a| a.rules.clone());
    Ok(json!({
        "listener": name,
        "mode": ca.mode.as_str(),
        "ca": ca.ca,
        "crl": crl,
        "allow": allow,
        "allow_expired_crl": ca.allow_expired_crl,
    }))
}

/// PUT body of /listeners/{name}/client-auth.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClientAuthChange {
    mode: String,
    /// An entry id or `{"ref": id}`; absent keeps the current CA, `null`
    /// removes it (else a CA set here could never be let go, nor its
    /// entry deleted).
    #[serde(default, deserialize_with = "present")]
    ca: Option<Option<CaRef>>,
    /// Absent keeps the listener's current setting.
    #[serde(default)]
    allow_expired_crl: Option<bool>,
    /// Absent: keep the current rules (kept, not applied, while the mode
    /// does not verify); `null`: no rules; a list: these rules. Read as
    /// written and checked by [`checked_rules`], not while the body is
    /// read: a refused rule's error then never goes through the redaction
    /// of body values, which blanked its wording's `**` and `/**` too.
    #[serde(default, deserialize_with = "present")]
    allow: Option<Option<Vec<RuleSpec>>>,
}

/// The rules of a PUT, checked: a refused one is named by its place and
/// field, with why and without the value given (SPEC §5).
fn checked_rules(specs: Vec<RuleSpec>) -> Result<Vec<AllowRule>, (StatusCode, Value)> {
    specs
        .into_iter()
        .enumerate()
        .map(|(i, spec)| {
            AllowRule::try_from(spec)
                .map_err(|e| bad_request(e.without_value(&format!("allow[{i}]"))))
        })
        .collect()
}

/// Tells a field given as `null` (`Some(None)`) from an absent one (`None`).
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// `ca`: an entry id, or `{"ref": id}` with no other key. Written out: an
/// untagged enum's struct variant took unknown keys (`{"ref": "x",
/// "typo": 1}`) and arrays (`["x"]`), which every other body refuses.
struct CaRef(String);

impl<'de> Deserialize<'de> for CaRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<CaRef, D::Error> {
        use serde::de::{Error, MapAccess, Visitor};
        struct Either;
        impl<'de> Visitor<'de> for Either {
            type Value = CaRef;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an entry id or {\"ref\": id}")
            }
            fn visit_str<E: Error>(self, id: &str) -> Result<CaRef, E> {
                Ok(CaRef(id.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<CaRef, A::Error> {
                let mut id = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "ref" if id.is_some() => return Err(Error::duplicate_field("ref")),
                        "ref" => id = Some(map.next_value::<String>()?),
                        other => return Err(Error::unknown_field(other, &["ref"])),
                    }
                }
                id.map(CaRef).ok_or_else(|| Error::missing_field("ref"))
            }
        }
        d.deserialize_any(Either)
    }
}

pub(super) fn set_client_auth(r: &mut Reloader, name: &str, change: ClientAuthChange) -> Reply {
    // A malformed rule is a malformed body: refused before anything else,
    // as when the rules were checked while the body was read.
    let rules = match change.allow {
        Some(Some(specs)) => Some(Some(checked_rules(specs)?)),
        Some(None) => Some(None),
        None => None,
    };
    let current = r.client_auth(name).ok_or_else(|| no_listener(name))?;
    // No TLS there (the configuration file refuses `tls` on one): a mode
    // would be shown and enforced nowhere, and hold its CA referenced.
    if r.config()
        .listeners
        .iter()
        .any(|l| l.name == name && l.front.redirect_https.is_some())
    {
        return Err(problem(
            StatusCode::CONFLICT,
            format!(
                "listener {name} is a redirect_https listener: plain HTTP, no client certificates"
            ),
        ));
    }
    let mode = ClientAuthMode::parse(&change.mode).ok_or_else(|| {
        bad_request(
            "mode: not one of none, request, require_any, verify_if_given, require_and_verify",
        )
    })?;
    let ca = match change.ca {
        Some(Some(CaRef(id))) => {
            let (spec, _) = r
                .entry_spec(&id)
                .ok_or_else(|| bad_request("ca: no entry has that id"))?;
            if spec.kind != EntryKind::CaBundle {
                return Err(bad_request(format!(
                    "ca: entry {id} is a {}, not a ca-bundle",
                    spec.kind.as_str()
                )));
            }
            Some(id)
        }
        Some(None) => None,
        None => current.ca,
    };
    if matches!(
        mode,
        ClientAuthMode::VerifyIfGiven | ClientAuthMode::RequireAndVerify
    ) && ca.is_none()
    {
        return Err(bad_request(format!(
            "mode {} verifies client certificates and needs a ca (a ca-bundle entry)",
            mode.as_str()
        )));
    }
    // Absent keeps the rules whatever the mode, as an absent `ca` keeps the
    // CA: a mode that verifies no one does not apply them, and a later PUT
    // back to a verifying mode must not admit every certificate of the CA.
    let allow = match rules {
        None => current.allow,
        Some(None) => None,
        Some(Some(rules)) if rules.is_empty() => {
            return Err(bad_request(
                "allow: an empty list would refuse every client; send null to remove the rules"
                    .to_owned(),
            ));
        }
        Some(Some(_)) if !mode.verifies() => {
            return Err(bad_request(format!(
                "allow rules need a verified identity: use mode verify_if_given or require_and_verify, not {}",
                mode.as_str()
            )));
        }
        Some(Some(rules)) => Some(std::sync::Arc::new(crate::identity::AllowList { rules })),
    };
    let allow_expired_crl = change
        .allow_expired_crl
        .unwrap_or(current.allow_expired_crl);
    let next = ClientAuthConfig {
        mode,
        ca,
        allow,
        allow_expired_crl,
    };
    stranded_route_allow(r, name, &next)?;
    r.set_client_auth(name, next).map_err(bad_request)?;
    client_auth_view(r, name).map(|v| (StatusCode::OK, v, None))
}

/// A route `allow` on the listener needs a verified client, which the
/// configuration file insists on (`listeners[N].routes[M].allow`): a mode
/// that verifies no one there would answer 403 to every request to that
/// route. 409: the body is well-formed; the listener's routes refuse it.
fn stranded_route_allow(
    r: &Reloader,
    name: &str,
    next: &ClientAuthConfig,
) -> Result<(), (StatusCode, Value)> {
    let listeners = &r.config().listeners;
    let Some((n, l)) = listeners.iter().enumerate().find(|(_, l)| l.name == name) else {
        return Ok(());
    };
    let Some(m) = l.stranded_route_allow(next) else {
        return Ok(());
    };
    // By place alone: the route's host, path_prefix and rules may be
    // `${NAME}` values, which the resolved configuration cannot tell.
    Err(problem(
        StatusCode::CONFLICT,
        format!(
            "listener {name}: listeners[{n}].routes[{m}].allow needs a verified identity, and mode {} verifies no client certificate: every request to that route would get 403; use mode verify_if_given or require_and_verify, or remove the route's allow from the configuration file",
            next.mode.as_str()
        ),
    ))
}
