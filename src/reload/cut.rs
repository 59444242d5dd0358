//! A re-read file holding fewer sections than are served from it: a writer half-way?

use crate::material::Material;

/// A source re-read with fewer sections than are served from it.
pub(super) struct Cut {
    /// Its index in the entry's sources (`pem::origins`).
    pub(super) source: usize,
    /// CRLs (a CRL file), else certificates (a chain or a CA bundle).
    pub(super) crls: bool,
    pub(super) read: usize,
    pub(super) served: usize,
}

impl Cut {
    /// The first source of `read` that holds fewer sections than the
    /// same source of `served`: the certificate file, then each CRL file.
    pub(super) fn find(served: &Material, read: &Material) -> Option<Cut> {
        let certs = |m: &Material| match m {
            Material::Pair(p) => p.key.cert.len(),
            Material::Ca(c) => c.roots.len(),
        };
        let (was, now) = (certs(served), certs(read));
        if now < was {
            return Some(Cut {
                source: 0,
                crls: false,
                read: now,
                served: was,
            });
        }
        let (Material::Ca(served), Material::Ca(read)) = (served, read) else {
            return None;
        };
        // Counts compare source by source only over the same CRL sources.
        if served.crl_counts.len() != read.crl_counts.len() {
            return None;
        }
        let (at, (&now, &was)) = read
            .crl_counts
            .iter()
            .zip(&served.crl_counts)
            .enumerate()
            .find(|(_, (now, was))| now < was)?;
        Some(Cut {
            source: 1 + at,
            crls: true,
            read: now,
            served: was,
        })
    }
}
