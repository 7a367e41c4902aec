//! [`StoreTrust`]: the tunnel's [`TrustSource`] backed by the hub store.
//!
//! The tunnel asks for a bundle during the TLS handshake and must not wait
//! on a database there, so the bundles live in an in-memory cache of the
//! store that [`StoreTrust::refresh`] reloads (at start, after a local
//! change, and periodically or on a notification when replicas share a
//! database). The revocation state is cached the same way:
//! [`StoreTrust::refresh_revocations`] reloads it, and a serving hub calls
//! it on every revocation notification from PostgreSQL
//! ([`crate::state::notify`]) and whenever the store's revocation revision
//! moves (polled every few tens of milliseconds when there are no
//! notifications), so a revocation made by the CLI or another replica is
//! enforced on new handshakes within one notification or one poll.
//!
//! A SPIFFE ID `spiffe://<td>/ws/<workspace>/…` maps to `<workspace>`'s
//! bundle only when `<td>` is that workspace's trust domain, so no ID can
//! borrow another workspace's bundle (security property 10).

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use ewii_quic::{TrustBundle, TrustSource};
use ewii_wire::svid::SpiffeId;

use crate::Error;
use crate::state::names;
use crate::state::store::{RevocationState, Store};

#[derive(Debug)]
struct Entry {
    trust_domain: String,
    bundle: Arc<TrustBundle>,
}

/// A [`TrustSource`] over the store's workspace CAs and imported bundles.
#[derive(Debug)]
pub struct StoreTrust {
    store: Store,
    cache: RwLock<HashMap<String, Entry>>,
    revoked: RwLock<(i64, RevocationState)>,
}

impl StoreTrust {
    /// Loads every workspace's bundle from `store`.
    pub async fn load(store: Store) -> Result<StoreTrust, Error> {
        let trust = StoreTrust {
            store,
            cache: RwLock::new(HashMap::new()),
            revoked: RwLock::new((-1, RevocationState::default())),
        };
        trust.refresh().await?;
        Ok(trust)
    }

    /// Reloads the revocation state if the store's revision moved; whether
    /// it did.
    pub async fn refresh_revocations(&self) -> Result<bool, Error> {
        let revision = self.store.revocation_revision().await?;
        let known = self
            .revoked
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .0;
        if revision == known {
            return Ok(false);
        }
        let state = self.store.revocation_state().await?;
        *self.revoked.write().unwrap_or_else(PoisonError::into_inner) = (revision, state);
        Ok(true)
    }

    /// The revocation revision the cache holds.
    pub fn revocation_revision(&self) -> i64 {
        self.revoked
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .0
    }

    /// Whether the deployment `spiffe_id` is revoked, or the SVID `serial`.
    pub fn revoked(&self, spiffe_id: &str, serial: &str) -> bool {
        let r = self.revoked.read().unwrap_or_else(PoisonError::into_inner);
        r.1.spiffe_ids.contains(spiffe_id) || r.1.serials.contains(serial)
    }

    /// Reloads every workspace's bundle from the store and swaps the cache
    /// in one step.
    pub async fn refresh(&self) -> Result<(), Error> {
        let mut fresh = HashMap::new();
        for b in self.store.all_trust_bundles().await? {
            let bundle = match TrustBundle::from_der(b.all()) {
                Ok(bundle) => bundle,
                Err(e) => {
                    // One bad workspace must not take the others down.
                    tracing::warn!(workspace = %b.workspace.name, "trust bundle left out: {e}");
                    continue;
                }
            };
            fresh.insert(
                b.workspace.name.clone(),
                Entry {
                    trust_domain: b.workspace.trust_domain.clone(),
                    bundle: Arc::new(bundle),
                },
            );
        }
        *self.cache.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        self.refresh_revocations().await?;
        Ok(())
    }
}

impl TrustSource for StoreTrust {
    fn bundle_for(&self, id: &SpiffeId) -> Option<Arc<TrustBundle>> {
        let workspace = names::workspace_of(id)?;
        let cache = self.cache.read().unwrap_or_else(PoisonError::into_inner);
        let entry = cache.get(workspace)?;
        (entry.trust_domain == id.trust_domain()).then(|| Arc::clone(&entry.bundle))
    }

    fn is_revoked(&self, id: &SpiffeId, serial: &str) -> bool {
        self.revoked(&id.to_string(), serial)
    }
}
