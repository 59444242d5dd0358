//! The catalogue: entries by id, their live material, last reload result, references.
