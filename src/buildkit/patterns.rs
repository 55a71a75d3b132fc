//! `.dockerignore` semantics (moby/patternmatcher): filled in by the next commits.
