//! The admin listener: probes, metrics, and the /api/v1 catalogue API.
