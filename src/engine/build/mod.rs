//! Dockerfile builds executed by berth's own runtime: no daemon, no external builder.
//!
//! The one design decision to know: a build step is a function from a **step state** (the
//! layers so far, as store blobs, and the image config) to the next one, and the cache maps
//! `hash(parent state, instruction, inputs)` to the resulting state. An unchanged rebuild
//! therefore only hashes its inputs and reads small JSON files; nothing runs. Steps that change
//! files (RUN, COPY, ADD, WORKDIR) work on a throwaway overlay whose upper directory becomes
//! the new layer.
pub mod context;
pub mod ignore;
pub mod layer;
pub mod parser;
pub mod shell;
