//! The vector store seam (filled in by the RAG work): tenant-namespaced upsert, delete and search.
