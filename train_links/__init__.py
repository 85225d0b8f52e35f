"""RecursiveLink training: small adapters that pass hidden states between frozen LLM agents (RecursiveMAS)."""
