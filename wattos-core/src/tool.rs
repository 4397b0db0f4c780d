//! The tool seam (filled in by the agents work): name, description, JSON Schema arguments, invocation.
