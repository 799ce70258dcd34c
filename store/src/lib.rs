//! rbuild's image store: content-addressed blobs, layer snapshots, deterministic
//! layer tars, image configs and manifests, and the archive formats images are
//! exported in. It knows nothing of Dockerfiles.
