//! `hotproxy demo`: dev PKI, a built-in mTLS echo backend, and the proxy.
